"""The base class of every dataset: its constructor and the read path over the prepared store.

A dataset module defines a subclass of :class:`NucleiDataset` with class attributes (name,
licence, citation, resources, splits, classes, expected counts, the paper's Table 1 row, declared options) and
one method, ``_convert``, that turns the native files into
:class:`~nucfuse_datasets.io.store.RawSample` objects. Everything else is shared, in three modules:

* :mod:`nucfuse_datasets.datasets._spec`: what the class declares, option validation, store naming, ``info()``;
* :mod:`nucfuse_datasets.datasets._prepare`: the prepare ladder (prepared store → native files → download →
  a not-found error naming the files expected);
* this module: the constructor, ``deferred``, and reading samples back (``__getitem__``, ``load_region`` ...).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from nucfuse_datasets.datasets._prepare import Preparation
from nucfuse_datasets.datasets._sources import EXTRACT_MAX_RATIO, EXTRACT_MIN_BYTES, Sources, files_by_stem, find_marker
from nucfuse_datasets.datasets._spec import ExpectedCount, Option, PaperStats
from nucfuse_datasets.errors import (
    ArgumentError,
    NucFuseError,
    PreparedStoreError,
)
from nucfuse_datasets.io.config import PathLike, resolve_root
from nucfuse_datasets.io.files import load_npy
from nucfuse_datasets.schema import Sample, SampleMeta
from nucfuse_datasets.transforms.adapters import as_sample_transform

__all__ = [
    "EXTRACT_MAX_RATIO",
    "EXTRACT_MIN_BYTES",
    "ExpectedCount",
    "NucleiDataset",
    "Option",
    "PaperStats",
    "Sources",
    "Transform",
    "files_by_stem",
    "find_marker",
]

Transform = Callable[[Sample], Any]

#: Set by :meth:`NucleiDataset.deferred`: the constructor validates its options but does not prepare.
_DEFER_PREPARE: contextvars.ContextVar[bool] = contextvars.ContextVar("nucfuse_defer_prepare", default=False)


class NucleiDataset(Preparation, Dataset[Any]):
    """Base class of every dataset: a ``torch.utils.data.Dataset`` of :class:`~nucfuse_datasets.schema.Sample`.

    Args:
        root: data root; ``None`` resolves ``$NUCFUSE_DATA_DIR``, then ``pooch.os_cache("nucfuse")``.
            The dataset lives in ``<root>/<name>/`` (native files) and ``<root>/<name>/prepared/``.
        split: a value of ``splits`` or ``"all"``.
        download: download missing sources when the host allows it.
        transforms: callable applied to each Sample in ``__getitem__`` (a class, so it pickles); torchvision v2 and
            albumentations transforms are wrapped by :func:`nucfuse_datasets.transforms.adapters.as_sample_transform`.
        progress: show progress bars (``None`` = only on a terminal).

    Raises:
        DatasetNotFoundError: no prepared data, no native files and ``download=False``.
        ManualDownloadRequired: a source must be placed by hand; the message says how.
        ChecksumError: a local or downloaded archive has the wrong hash.
        InvalidSourceError: a native file is malformed.
    """

    def __init__(
        self,
        root: PathLike | None = None,
        split: str = "all",
        download: bool = False,
        transforms: Transform | None = None,
        *,
        progress: bool | None = None,
        **options: Any,
    ) -> None:
        self._set_options(options)
        valid = (*self.splits, "all") if "all" not in self.splits else self.splits
        if split not in valid:
            raise ArgumentError(f"{self.name}: unknown split {split!r}; valid splits: {', '.join(valid)}")
        self.root = resolve_root(root)
        self.split = split
        self.transforms = as_sample_transform(transforms)  # torchvision v2 / albumentations -> Sample adapters
        self.progress = progress
        if _DEFER_PREPARE.get():
            self._store_path = self.store_path
            entries: list[dict[str, Any]] = []
        else:
            store = self.prepare(download=download)
            self._store_path = store.path
            entries = [s for s in store.samples if split == "all" or s["split"] == split]
        self._ids = np.array([e["id"] for e in entries], dtype=str)
        self._splits = np.array([e["split"] for e in entries], dtype=str)
        self._meta = np.array([json.dumps(e["meta"]) for e in entries], dtype=str)
        self._shapes = np.array([(e["height"], e["width"]) for e in entries], dtype=np.int64).reshape(-1, 2)
        self._n_instances = np.array([e["n_instances"] for e in entries], dtype=np.int64)
        self._has_classes = np.array(["classes" in e["files"] for e in entries], dtype=bool)
        self._has_ignore = np.array(["ignore" in e["files"] for e in entries], dtype=bool)

    @classmethod
    def deferred(cls, root: PathLike | None = None, split: str = "all", **kwargs: Any) -> NucleiDataset:
        """An instance whose options are validated but which prepares nothing (and holds no samples).

        Used by ``nucfuse download`` and ``nucfuse verify --repair`` to reach :meth:`download_sources` and
        :meth:`prepare` with the dataset's options, without converting first.

        Example:
            >>> from nucfuse_datasets import get_dataset_class
            >>> ds = get_dataset_class("monuseg").deferred(getfixture("tmp_path"), split="test")
            >>> len(ds), [r.key for r in ds.active_resources(ds.needed_splits())]
            (0, ['test'])
        """
        token = _DEFER_PREPARE.set(True)
        try:
            return cls(root=root, split=split, **kwargs)
        finally:
            _DEFER_PREPARE.reset(token)

    # ------------------------------------------------------------------ Dataset protocol
    def __len__(self) -> int:
        return int(self._ids.size)

    def _meta_for(self, idx: int) -> SampleMeta:
        return SampleMeta(
            dataset=self.name,
            sample_id=str(self._ids[idx]),
            split=str(self._splits[idx]),
            **json.loads(self._meta[idx]),
        )

    def load_sample(self, idx: int) -> Sample:
        """The untransformed Sample at ``idx``."""
        if not -len(self) <= idx < len(self):
            raise IndexError(f"{self.name}: index {idx} out of range for {len(self)} samples")
        return self._read(idx, None)

    def load_region(self, idx: int, y0: int, y1: int, x0: int, x1: int) -> Sample:
        """The untransformed Sample cropped to rows ``y0:y1`` and columns ``x0:x1`` of tile ``idx``.

        Reads only the needed rows (memory-mapped TIFF and ``.npy``), so cutting patches from large tiles stays
        cheap. Instance ids are *not* renumbered; ``classes`` is the tile's full lookup.
        """
        return self._read(idx, (slice(y0, y1), slice(x0, x1)))

    def _read(self, idx: int, window: tuple[slice, slice] | None) -> Sample:
        """Sample ``idx`` from the store: whole files, or memory-mapped and cut to ``window``."""
        import tifffile

        idx = int(idx) % len(self)
        sid = str(self._ids[idx])
        base = self._store_path

        def pixels(path: Path) -> np.ndarray:  # an H×W(×C) array of the tile, or its window
            if window is None:
                return load_npy(path)
            return np.array(load_npy(path, mmap_mode="r")[window])

        current = base / "images" / f"{sid}.tif"
        try:
            image = tifffile.imread(current) if window is None else np.array(tifffile.memmap(current, mode="r")[window])
            current = base / "instances" / f"{sid}.npy"
            instances = pixels(current)
            current = base / "classes" / f"{sid}.npy"
            classes = load_npy(current) if self._has_classes[idx] else None
            current = base / "ignore" / f"{sid}.npy"
            ignore = pixels(current) if self._has_ignore[idx] else None
        except Exception as exc:  # tifffile and numpy raise many types on a damaged file
            raise self._unreadable(sid, current, exc) from None
        return Sample(
            image=image,
            instances=instances,
            classes=classes,
            class_names=self.class_names if classes is not None else None,
            ignore=ignore,
            meta=self._meta_for(idx),
        )

    def _unreadable(self, sid: str, path: Path, exc: BaseException) -> PreparedStoreError:
        detail = str(exc)
        if not isinstance(exc, NucFuseError):
            detail = f"{type(exc).__name__}: {detail}"
        opts = "".join(f" --option {k}={v}" for k, v in self.options.items())
        return PreparedStoreError(
            f"{path}: cannot read sample {sid!r} of the prepared {self.name} store ({detail}); the file is damaged. "
            f"Run `nucfuse verify {self.name} --repair{opts}` to re-prepare it from the native sources."
        )

    def __getitem__(self, idx: int) -> Any:
        sample = self.load_sample(idx)
        return self.transforms(sample) if self.transforms is not None else sample

    # ------------------------------------------------------------------ cheap index access
    @property
    def sample_ids(self) -> list[str]:
        """Sample ids in index order."""
        return [str(s) for s in self._ids]

    def meta(self, idx: int) -> SampleMeta:
        """Metadata of sample ``idx`` without reading any pixels."""
        return self._meta_for(idx)

    def tile_shape(self, idx: int) -> tuple[int, int]:
        """``(H, W)`` of sample ``idx`` without reading any pixels."""
        h, w = self._shapes[idx]
        return int(h), int(w)

    def n_instances(self, idx: int) -> int:
        """Number of nuclei in sample ``idx`` (from the manifest)."""
        return int(self._n_instances[idx])

    def index_of(self, sample_id: str) -> int:
        """Index of a sample id."""
        hits = np.flatnonzero(self._ids == sample_id)
        if hits.size == 0:
            raise KeyError(f"{self.name}: no sample {sample_id!r} in split {self.split!r}")
        return int(hits[0])

    def plot(self, idx: int, prediction: np.ndarray | None = None, **kwargs: Any) -> Any:
        """Plot sample ``idx`` with instance contours (and a prediction panel); needs the ``plot`` extra."""
        from nucfuse_datasets.viz import plot_sample

        return plot_sample(self.load_sample(idx), prediction=prediction, **kwargs)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"n={len(self)}, store={self.store_name!r})"
        )
