"""The dataset registry: ``@register`` fills it from each dataset module; ``list_datasets`` and ``get_dataset`` read it.

The one source of truth for the API, the CLI, the tests and the docs. Imports run one way: the dataset modules
import this module for :func:`register`, and this module imports the dataset modules only on first use
(:func:`load_all`, by name), so no dataset module is imported by it at import time. The public functions are
re-exported by :mod:`nucfuse_datasets` (``nf.get_dataset``, ``nf.list_datasets``, ...).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any, TypeVar

from nucfuse_datasets.benchmark import paper
from nucfuse_datasets.errors import ArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.datasets._base import NucleiDataset

__all__ = [
    "PAPER_RANKING",
    "dataset_classes",
    "get_dataset",
    "get_dataset_class",
    "list_datasets",
    "load_all",
    "register",
    "registered",
]

_REGISTRY: dict[str, type[NucleiDataset]] = {}
_LOADED = False
T = TypeVar("T", bound="type[NucleiDataset]")


def register(cls: T) -> T:
    """Class decorator that registers a dataset under its ``name`` attribute.

    Raises:
        ArgumentError: another class is registered under the same name.
    """
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ArgumentError(f"dataset name {name!r} registered twice ({_REGISTRY[name]!r} and {cls!r})")
    _REGISTRY[name] = cls
    return cls


def load_all() -> None:
    """Import every public module of :mod:`nucfuse_datasets.datasets` once (each registers its class)."""
    global _LOADED
    if _LOADED:
        return
    package = importlib.import_module("nucfuse_datasets.datasets")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _LOADED = True


def registered() -> dict[str, type[NucleiDataset]]:
    """Name -> class of every registered dataset (all dataset modules loaded first)."""
    load_all()
    return _REGISTRY


#: The NucFuseRank ranking (mean PQ of HoVerNeXt and CellViT trained on each dataset alone): Table 2's "Mean Rank"
#: column, read from the paper's data (:func:`nucfuse_datasets.benchmark.paper.ranking`).
PAPER_RANKING: tuple[str, ...] = paper.ranking()

#: Datasets of the paper's Table 1 (the ranked ten and PanNuke), from the paper's data.
_TABLE1: frozenset[str] = frozenset(paper.train_patches())


def _order(name: str) -> tuple[int, int, str]:
    if name in PAPER_RANKING:
        return (0, PAPER_RANKING.index(name), name)
    return (1 if name in _TABLE1 else 2, 0, name)  # in Table 1 but not ranked (PanNuke), then the rest


def list_datasets() -> list[str]:
    """Registered dataset names: the paper's ranking order, then the rest of its Table 1 (PanNuke), then the rest.

    Example:
        >>> from nucfuse_datasets import list_datasets
        >>> list_datasets()[:1] + ["..."] + list_datasets()[-1:]  # doctest: +ELLIPSIS
        [...]
    """
    return sorted(registered(), key=_order)


def dataset_classes() -> list[type[NucleiDataset]]:
    """Registered classes in :func:`list_datasets` order."""
    classes = registered()
    return [classes[n] for n in list_datasets()]


def get_dataset_class(name: str) -> type[NucleiDataset]:
    """The class registered under ``name`` (case-insensitive).

    Raises:
        ArgumentError: no dataset has that name; the message lists the valid names.

    Example:
        >>> get_dataset_class("MoNuSeg").__name__, get_dataset_class("monuseg").license
        ('MoNuSeg', 'CC BY-NC-SA 4.0')
    """
    classes = registered()
    key = name.lower().strip()
    if key not in classes:
        raise ArgumentError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    return classes[key]


def get_dataset(
    name: str,
    root: Any = None,
    split: str = "all",
    download: bool = False,
    transforms: Any = None,
    **kwargs: Any,
) -> NucleiDataset:
    """Build a registered dataset by name.

    Args:
        name: a name from :func:`list_datasets`.
        root: data folder; ``None`` resolves ``NUCFUSE_DATA_DIR``, then ``pooch.os_cache("nucfuse")``.
        split: a source split of the dataset, or ``"all"``.
        download: download the sources when they are missing (where the host allows it).
        transforms: callable applied to each :class:`~nucfuse_datasets.schema.Sample`.
        **kwargs: dataset-specific options (``annotator=`` for CryoNuSeg, ...).

    Example:
        >>> import nucfuse_datasets as nf
        >>> ds = nf.get_dataset("synthetic", root=getfixture("tmp_path"), n_tiles=2, tile_size=64)
        >>> len(ds)
        2
    """
    cls = get_dataset_class(name)
    return cls(root=root, split=split, download=download, transforms=transforms, **kwargs)
