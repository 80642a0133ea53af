"""Name → dataset class registry: the one source of truth for the API, the CLI, the tests and the docs."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any, TypeVar

from nucfuse_datasets.errors import ArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.datasets._base import NucleiDataset

__all__ = ["PAPER_RANKING", "get_dataset", "get_dataset_class", "list_datasets", "register"]

#: The NucFuseRank ranking (mean PQ of HoVerNeXt and CellViT trained on each dataset alone).
PAPER_RANKING: tuple[str, ...] = (
    "pcns",
    "puma",
    "monuseg",
    "cpm17",
    "tnbc",
    "nuinsseg",
    "consep",
    "monusac",
    "dsb2018",
    "cryonuseg",
)

_REGISTRY: dict[str, type[NucleiDataset]] = {}
_LOADED = False
T = TypeVar("T", bound="type[NucleiDataset]")


def register(cls: T) -> T:
    """Class decorator that registers a dataset under its ``name`` attribute."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ArgumentError(f"dataset name {name!r} registered twice ({_REGISTRY[name]!r} and {cls!r})")
    _REGISTRY[name] = cls
    return cls


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    package = importlib.import_module("nucfuse_datasets.datasets")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _LOADED = True


def _order(name: str) -> tuple[int, str]:
    if name in PAPER_RANKING:
        return (PAPER_RANKING.index(name), name)
    return (len(PAPER_RANKING) + (0 if name == "pannuke" else 1), name)


def list_datasets() -> list[str]:
    """Registered dataset names: the paper's ranking order, then PanNuke, then the rest.

    Example:
        >>> from nucfuse_datasets import list_datasets
        >>> list_datasets()[:1] + ["..."] + list_datasets()[-1:]  # doctest: +ELLIPSIS
        [...]
    """
    _load_all()
    return sorted(_REGISTRY, key=_order)


def dataset_classes() -> list[type[NucleiDataset]]:
    """Registered classes in :func:`list_datasets` order."""
    _load_all()
    return [_REGISTRY[n] for n in list_datasets()]


def get_dataset_class(name: str) -> type[NucleiDataset]:
    """The class registered under ``name`` (case-insensitive).

    Raises:
        ArgumentError: no dataset has that name; the message lists the valid names.

    Example:
        >>> get_dataset_class("MoNuSeg").__name__, get_dataset_class("monuseg").license
        ('MoNuSeg', 'CC BY-NC-SA 4.0')
    """
    _load_all()
    key = name.lower().strip()
    if key not in _REGISTRY:
        raise ArgumentError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    return _REGISTRY[key]


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
