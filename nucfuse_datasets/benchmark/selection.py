"""Which tiles NucFuse-test holds and which datasets take part: the selection behind ``NucFuseTest``/``NucFuseTrain``.

Example:
    >>> from nucfuse_datasets.benchmark.selection import TRAIN_ONLY
    >>> sorted(TRAIN_ONLY)
    ['pannuke']
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nucfuse_datasets.benchmark.protocol import (
    MIN_TEST_SIZE,
    TEST_TILES_PER_DATASET,
    ids_hash,
    pinned_test_ids,
    select_ids,
)
from nucfuse_datasets.datasets._base import NucleiDataset
from nucfuse_datasets.datasets._registry import PAPER_RANKING, get_dataset_class
from nucfuse_datasets.errors import (
    ArgumentError,
    DatasetNotFoundError,
    NucFuseError,
    NucFuseWarning,
    TestSetMismatchError,
)
from nucfuse_datasets.io.config import PathLike, resolve_root
from nucfuse_datasets.schema import Sample

__all__ = [
    "AVAILABLE",
    "SmallTestSetWarning",
    "TestSelection",
    "available_datasets",
    "nucfuse_test_split",
    "select_test_tiles",
]

DatasetSpec = str | NucleiDataset
DatasetsArg = Sequence[DatasetSpec] | Mapping[str, DatasetSpec] | str | None

#: ``datasets=AVAILABLE``: only the datasets that are prepared (or whose native files are all present) under root.
AVAILABLE = "available"

#: Appended to missing-dataset and pinned-id errors of the composites.
AVAILABLE_HINT = (
    "To work with the datasets you have, pass datasets='available' (CLI: --datasets available); add "
    "test_ids='rule' (CLI: --test-ids rule) when your copies lack tiles of the pinned NucFuse-test lists."
)
Transform = Callable[[Sample], Any]


class SmallTestSetWarning(NucFuseWarning):
    """A dataset has fewer eligible test tiles than the protocol's 14."""


@dataclass(frozen=True)
class TestSelection:
    """The NucFuse-test tiles chosen from one dataset.

    Attributes:
        subset: the subset tag (the dataset name unless renamed).
        indices: indices into the dataset (split ``"all"``).
        ids: the chosen sample ids, sorted.
        source: ``"pinned"`` (shipped id list) or ``"rule"`` (computed from local data by the selection rule);
            ``"none"`` for a dataset outside NucFuse-test (PanNuke in ``NucFuseTrain``: no tile is held out).
        pool: where the tiles were drawn from (``"test split"`` or ``"whole dataset"``).
        n_eligible: number of eligible candidate tiles.
    """

    __test__ = False  # not a pytest test class

    subset: str
    indices: tuple[int, ...]
    ids: tuple[str, ...]
    source: str
    pool: str
    n_eligible: int

    @property
    def sha256(self) -> str:
        """Hash of the id list (:func:`nucfuse_datasets.benchmark.protocol.ids_hash`)."""
        return ids_hash(self.ids)


def nucfuse_test_split(cls: type[NucleiDataset] | NucleiDataset) -> str:
    """The split NucFuse-test draws a dataset's tiles from: its official test split, else ``"all"``.

    ``NucFuseTest`` opens only this split, so an evaluating user needs exactly the files the test set is drawn
    from (MoNuSeg's ``MoNuSegTestData/`` alone, say); ``NucFuseTrain`` and the leakage audit open ``"all"``.

    Example:
        >>> from nucfuse_datasets import get_dataset_class
        >>> nucfuse_test_split(get_dataset_class("monuseg")), nucfuse_test_split(get_dataset_class("tnbc"))
        ('test', 'all')
    """
    return cls.test_split or "all"


def _eligible(ds: NucleiDataset) -> tuple[list[int], str]:
    pool = "test split" if ds.test_split else "whole dataset"
    out = []
    for i in range(len(ds)):
        meta = ds.meta(i)
        if ds.test_split and meta.split != ds.test_split:
            continue
        h, w = ds.tile_shape(i)
        if h < MIN_TEST_SIZE or w < MIN_TEST_SIZE:
            continue
        if meta.extra.get("has_macrophage"):
            continue
        out.append(i)
    return out, pool


def select_test_tiles(subset: str, ds: NucleiDataset, test_ids: str = "pinned") -> TestSelection:
    """Choose the NucFuse-test tiles of one dataset (see :mod:`nucfuse_datasets.benchmark.protocol`).

    Args:
        subset: subset tag; pinned lists apply when it equals the dataset's name.
        ds: the dataset, split ``"all"`` or its official test split (:func:`nucfuse_test_split`).
        test_ids: ``"pinned"`` to use the shipped id list where there is one (else the rule), ``"rule"`` to always
            compute the selection from the local data.

    Raises:
        TestSetMismatchError: a pinned id is missing from the local data.

    Example:
        >>> import nucfuse_datasets as nf
        >>> ds = nf.get_dataset("synthetic", root=getfixture("tmp_path"), n_tiles=16)
        >>> sel = select_test_tiles("synthetic", ds)
        >>> sel.source, sel.pool, sel.n_eligible, len(sel.ids)
        ('rule', 'whole dataset', 16, 14)
    """
    if test_ids not in ("pinned", "rule"):
        raise ArgumentError(f"test_ids must be 'pinned' or 'rule', got {test_ids!r}")
    eligible, pool = _eligible(ds)
    pinned = pinned_test_ids(ds.name) if (test_ids == "pinned" and subset == ds.name) else None
    if pinned is not None:
        present = set(ds.sample_ids)
        missing = [i for i in pinned if i not in present]
        if missing:
            raise TestSetMismatchError(
                f"{ds.store_path}: {len(missing)} of the {len(pinned)} shipped NucFuse-test tiles of {ds.name} are "
                f"not in the local data (e.g. {missing[:3]}); the local copy differs from the reference one. Prepare "
                "the complete dataset, or pass test_ids='rule' (CLI: --test-ids rule) to select tiles from what is "
                "present."
            )
        indices = tuple(ds.index_of(i) for i in pinned)
        return TestSelection(subset, indices, tuple(pinned), "pinned", pool, len(eligible))
    ids = select_ids(subset, [ds.sample_ids[i] for i in eligible])
    if len(ids) < TEST_TILES_PER_DATASET:
        warnings.warn(
            SmallTestSetWarning(
                f"{subset}: only {len(ids)} tiles of at least {MIN_TEST_SIZE}×{MIN_TEST_SIZE} are eligible "
                f"for NucFuse-test (the protocol takes {TEST_TILES_PER_DATASET})"
            ),
            stacklevel=2,
        )
    indices = tuple(ds.index_of(i) for i in ids)
    return TestSelection(subset, indices, tuple(ids), "rule", pool, len(eligible))


def available_datasets(
    root: PathLike | None = None,
    names: Sequence[str] = PAPER_RANKING,
    dataset_options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    for_test: bool = False,
) -> list[str]:
    """The datasets among ``names`` that are prepared under ``root``, or whose native files are all there.

    Nothing is prepared, downloaded or written; a dataset whose sources are present is prepared when a composite
    (or ``get_dataset``) first opens it.

    Args:
        root: data root.
        names: candidate dataset names.
        dataset_options: per-dataset constructor options.
        for_test: count a dataset when what NucFuse-test needs is there (its official test split where it has one,
            :func:`nucfuse_test_split`); otherwise every split is needed (NucFuse-train).

    Example:
        >>> root = getfixture("tmp_path")
        >>> available_datasets(root)  # an empty root
        []
        >>> import nucfuse_datasets as nf
        >>> _ = nf.get_dataset("synthetic", root=root, n_tiles=4)
        >>> available_datasets(root, ["monuseg", "synthetic"], {"synthetic": {"n_tiles": 4}})
        ['synthetic']
    """
    options = dict(dataset_options or {})
    out = []
    for name in names:
        cls = get_dataset_class(name)
        split = nucfuse_test_split(cls) if for_test else "all"
        try:
            ds = cls.deferred(root, split=split, **dict(options.get(name, options.get(cls.name, {}))))
            if ds._current_store() is None:
                ds._locate_sources(download=False)  # raises when a needed source is missing
        except NucFuseError:
            continue
        if cls.resources or ds._current_store() is not None:  # generated datasets count once prepared
            out.append(name)
    return out


def _resolve_parts(
    datasets: DatasetsArg,
    default: Sequence[str],
    root: PathLike | None,
    download: bool,
    dataset_options: Mapping[str, Mapping[str, Any]] | None,
    progress: bool | None,
    *,
    for_test: bool = False,
) -> list[tuple[str, NucleiDataset]]:
    """``(tag, dataset)`` pairs of a composite, opened with split ``"all"`` (or ``for_test``, the test pool split)."""
    if datasets is None:
        items: list[tuple[str, DatasetSpec]] = [(n, n) for n in default]
    elif isinstance(datasets, str) and datasets == AVAILABLE:
        items = [(n, n) for n in available_datasets(root, default, dataset_options, for_test=for_test)]
        if not items:
            needs = "the files of its official test split (or all its files)" if for_test else "its native files"
            raise DatasetNotFoundError(
                f"datasets='available': none of {', '.join(default)} is prepared or has {needs} under "
                f"{resolve_root(root)}. Put a dataset's files into <root>/<name>/ (see `nucfuse info NAME`), or run "
                "`nucfuse download NAME` for one that downloads automatically."
            )
    elif isinstance(datasets, Mapping):
        items = list(datasets.items())
    elif isinstance(datasets, str | NucleiDataset):
        raise ArgumentError(
            "datasets must be a list (or a mapping tag -> dataset, or 'available'), not a single dataset"
        )
    else:
        items = [(d if isinstance(d, str) else d.name, d) for d in datasets]
    tags = [t for t, _ in items]
    if len(set(tags)) != len(tags):
        raise ArgumentError(f"duplicate subset tags {tags}; pass a mapping tag -> dataset to rename")
    if not items:
        raise ArgumentError("no datasets given")
    options = dict(dataset_options or {})
    parts = []
    for tag, spec in items:
        if isinstance(spec, NucleiDataset):
            allowed = ("all", nucfuse_test_split(spec)) if for_test else ("all",)
            if spec.split not in allowed:
                which = " or ".join(repr(a) for a in dict.fromkeys(allowed))
                purpose = "NucFuse-test draws from it" if for_test else "NucFuse draws from every split"
                raise ArgumentError(f"{tag}: pass the dataset with split={which} ({purpose}), not {spec.split!r}")
            parts.append((tag, spec))
            continue
        cls = get_dataset_class(spec)
        kwargs = dict(options.get(tag, options.get(cls.name, {})))
        split = nucfuse_test_split(cls) if for_test else "all"
        try:
            ds = cls(root=root, split=split, download=download, progress=progress, **kwargs)
        except DatasetNotFoundError as exc:
            need = ""
            if split != "all":
                need = (
                    f"\nNucFuse-test draws {cls.name}'s tiles from its official {split!r} split only: the files of "
                    f"that split are all it needs (`nucfuse info {cls.name}` lists them)."
                )
            raise type(exc)(f"{exc}{need}\n{AVAILABLE_HINT}") from None
        parts.append((tag, ds))
    return parts


#: Datasets that are not NucFuse-test members: ``NucFuseTrain`` keeps all their tiles. The paper trains on PanNuke's
#: training data (Table 1: 6,320 patches, the 80 % KFold share of its 7,901 tiles) and never tests on it.
TRAIN_ONLY = frozenset({"pannuke"})


def _select(tag: str, ds: NucleiDataset, test_ids: str) -> TestSelection:
    try:
        return select_test_tiles(tag, ds, test_ids)
    except TestSetMismatchError as exc:
        raise TestSetMismatchError(f"{exc}\n{AVAILABLE_HINT}") from None


def _with_subset(sample: Sample, subset: str, **extra: Any) -> Sample:
    meta = sample.meta.model_copy(update={"extra": {**sample.meta.extra, "subset": subset, **extra}})
    return Sample.model_construct(**{**{k: getattr(sample, k) for k in Sample.model_fields}, "meta": meta})
