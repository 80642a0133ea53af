"""NucFuse-test and NucFuse-train: the paper's unified test set and fused training set.

Example:
    >>> from nucfuse_datasets import NucFuseTest, NucFuseTrain
    >>> root = getfixture("tmp_path")
    >>> parts = {"synthetic": {"n_tiles": 20, "tile_size": 256}}
    >>> test = NucFuseTest(root, datasets=["synthetic"], dataset_options=parts)
    >>> train = NucFuseTrain(root, datasets=["synthetic"], dataset_options=parts, split="all")
    >>> len(test), len(train)  # 14 whole tiles; the other 6 tiles give one 256² patch each
    (14, 6)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.utils.data import Dataset

from nucfuse_datasets.benchmark.protocol import (
    DEFAULT_K,
    PATCH_SIZE,
    ids_hash,
    kfold_split,
    patch_grid,
    top_k,
)
from nucfuse_datasets.benchmark.selection import (
    AVAILABLE,
    TRAIN_ONLY,
    DatasetsArg,
    TestSelection,
    Transform,
    _resolve_parts,
    _select,
    _with_subset,
    available_datasets,
    select_test_tiles,
)
from nucfuse_datasets.datasets._base import NucleiDataset
from nucfuse_datasets.datasets._registry import PAPER_RANKING
from nucfuse_datasets.errors import (
    ArgumentError,
)
from nucfuse_datasets.io.config import PathLike
from nucfuse_datasets.io.store import relabel_sequential
from nucfuse_datasets.schema import Sample, SampleMeta
from nucfuse_datasets.transforms.adapters import as_sample_transform

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.benchmark.evaluation import EvaluationReport

__all__ = ["AVAILABLE", "NucFuseTest", "NucFuseTrain", "TestSelection", "available_datasets", "select_test_tiles"]


class NucFuseTest(Dataset[Any]):
    """NucFuse-test: 14 whole tiles from each dataset, tagged with their source dataset.

    Args:
        root: data root.
        download: download missing sources.
        datasets: dataset names (default: the paper's 10 ranked datasets), ``"available"`` (those of the 10 whose
            test tiles are prepared or present under ``root``), or a mapping ``subset tag -> name or dataset
            instance`` to evaluate on other sources (e.g. several synthetic sets). Each dataset is opened with the
            split its NucFuse-test tiles come from (:func:`~nucfuse_datasets.benchmark.selection.nucfuse_test_split`):
            the official test split of MoNuSeg, MoNuSAC, CoNSeP and CPM-17, the whole dataset of the others; so
            only those files need to be on disk. A dataset instance may have that split or ``"all"``.
        test_ids: ``"pinned"`` (shipped id lists where available, else the rule) or ``"rule"``.
        transforms: applied to each Sample.
        dataset_options: per-dataset constructor options, keyed by subset tag or dataset name.
        progress: progress bars.

    Raises:
        TestSetMismatchError: the local data lack tiles of a shipped id list.

    Example:
        >>> options = {"synthetic": {"n_tiles": 16}}
        >>> test = NucFuseTest(getfixture("tmp_path"), datasets=["synthetic"], dataset_options=options)
        >>> len(test), test.subsets
        (14, ['synthetic'])
    """

    def __init__(
        self,
        root: PathLike | None = None,
        download: bool = False,
        datasets: DatasetsArg = None,
        *,
        test_ids: str = "pinned",
        transforms: Transform | None = None,
        dataset_options: Mapping[str, Mapping[str, Any]] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.transforms = as_sample_transform(transforms)
        self._parts = _resolve_parts(datasets, PAPER_RANKING, root, download, dataset_options, progress, for_test=True)
        self.selections: dict[str, TestSelection] = {tag: _select(tag, ds, test_ids) for tag, ds in self._parts}
        part_idx, local = [], []
        for p, (tag, _) in enumerate(self._parts):
            for i in self.selections[tag].indices:
                part_idx.append(p)
                local.append(i)
        self._part = np.array(part_idx, dtype=np.int64)
        self._local = np.array(local, dtype=np.int64)

    @property
    def subsets(self) -> list[str]:
        """Subset tags in order."""
        return [t for t, _ in self._parts]

    @property
    def ids(self) -> dict[str, list[str]]:
        """Chosen sample ids per subset."""
        return {tag: list(sel.ids) for tag, sel in self.selections.items()}

    @property
    def ids_sha256(self) -> str:
        """One hash over all ``subset/id`` entries: identifies the exact test set."""
        return ids_hash([f"{tag}/{i}" for tag, ids in self.ids.items() for i in ids])

    def __len__(self) -> int:
        return int(self._part.size)

    def subset_of(self, idx: int) -> str:
        """Subset tag of item ``idx``."""
        return self._parts[int(self._part[idx])][0]

    def key(self, idx: int) -> tuple[str, str]:
        """``(subset, sample_id)`` of item ``idx``, without reading pixels."""
        tag, ds = self._parts[int(self._part[idx])]
        return tag, ds.sample_ids[int(self._local[idx])]

    def meta(self, idx: int) -> SampleMeta:
        """Metadata of item ``idx`` without reading pixels (``extra["subset"]`` is its tag)."""
        tag, ds = self._parts[int(self._part[idx])]
        meta = ds.meta(int(self._local[idx]))
        return meta.model_copy(update={"extra": {**meta.extra, "subset": tag}})

    @property
    def parts(self) -> dict[str, NucleiDataset]:
        """Subset tag -> the dataset its tiles come from (opened with the split NucFuse-test draws from)."""
        return dict(self._parts)

    def load_sample(self, idx: int) -> Sample:
        """The untransformed Sample at ``idx`` (whole tile; ``meta.extra["subset"]`` is its tag)."""
        if not -len(self) <= idx < len(self):
            raise IndexError(f"NucFuseTest: index {idx} out of range for {len(self)} tiles")
        tag, ds = self._parts[int(self._part[idx])]
        return _with_subset(ds.load_sample(int(self._local[idx])), tag)

    def __getitem__(self, idx: int) -> Any:
        sample = self.load_sample(idx)
        return self.transforms(sample) if self.transforms is not None else sample

    def evaluate(self, predict_fn: Callable[[np.ndarray], Any], **kwargs: Any) -> EvaluationReport:
        """Score ``predict_fn`` (RGB uint8 H×W×3 → integer instance map H×W) on every tile.

        See :func:`nucfuse_datasets.benchmark.evaluation.evaluate` for the options.
        """
        from nucfuse_datasets.benchmark.evaluation import evaluate

        return evaluate(self, predict_fn, **kwargs)

    def evaluate_predictions(self, folder: PathLike, **kwargs: Any) -> EvaluationReport:
        """Score saved predictions (``<subset>__<sample_id>.npy|.tif|.png`` in ``folder``)."""
        from nucfuse_datasets.benchmark.evaluation import evaluate_folder

        return evaluate_folder(self, folder, **kwargs)

    def export(self, folder: PathLike) -> list[str]:
        """Write every tile as ``<subset>__<sample_id>.tif`` + ``.npy`` (the authors' BigTestFolder layout)."""
        from nucfuse_datasets.benchmark.evaluation import export_test_set

        return export_test_set(self, folder)

    def __repr__(self) -> str:
        per = ", ".join(f"{t}={len(s.ids)}" for t, s in self.selections.items())
        return f"NucFuseTest(n={len(self)}: {per})"


class NucFuseTrain(Dataset[Any]):
    """NucFuse-train: every non-test tile of the top-k datasets, in 256×256 patches, split 80/20 per dataset.

    Patches are cut on a grid from the top-left corner (``ceil(H/256) · ceil(W/256)`` per tile), white-padded at the
    right and bottom (image 255, instances 0, ignore False); instances cut by a patch border keep the part inside
    and are renumbered 1..n per patch. Classes are merged into one nucleus class, as in the paper, unless
    ``keep_classes=True``.

    The train/validation split is per source dataset: ``KFold(5, shuffle=True, random_state=42)`` fold 0 over the
    sorted patch names (``<sample_id>_<row>_<col>``, as the authors split their patch files), or over source tiles
    with ``group_by_tile=True`` so that no tile has patches on both sides.

    Args:
        root: data root.
        k: use the first ``k`` datasets of the paper's ranking (k = 9: NucFuse-train, all but CryoNuSeg).
        datasets: instead of ``k``, any list of names or mapping ``tag -> name or dataset (split "all")``; or
            ``"available"``: those of the top ``k`` that are prepared or present under ``root``.
        split: ``"train"`` (80 %), ``"val"`` (20 %) or ``"all"``.
        transforms: applied to each patch Sample.
        download: download missing sources.
        group_by_tile: split by source tile instead of by patch.
        keep_classes: keep the source classes instead of merging them.
        exclude_cases: TCGA case ids whose tiles are dropped (see :mod:`nucfuse_datasets.benchmark.leakage`).
        test_ids: ``"pinned"`` or ``"rule"`` (which tiles count as NucFuse-test; see :class:`NucFuseTest`).
        dataset_options: per-dataset constructor options, keyed by tag or name.
        patch_size: patch side (256 in the paper).
        progress: progress bars.

    Example:
        >>> train = NucFuseTrain(getfixture("tmp_path"), datasets=["synthetic"],
        ...                      dataset_options={"synthetic": {"n_tiles": 19, "tile_size": (256, 320)}})
        >>> len(train), train[0].image.shape  # 5 non-test tiles × 2 patches = 10, 80 % of them
        (8, (256, 256, 3))
    """

    def __init__(
        self,
        root: PathLike | None = None,
        k: int = DEFAULT_K,
        datasets: DatasetsArg = None,
        split: str = "train",
        transforms: Transform | None = None,
        download: bool = False,
        *,
        group_by_tile: bool = False,
        keep_classes: bool = False,
        exclude_cases: Collection[str] | None = None,
        test_ids: str = "pinned",
        dataset_options: Mapping[str, Mapping[str, Any]] | None = None,
        patch_size: int = PATCH_SIZE,
        progress: bool | None = None,
    ) -> None:
        if split not in ("train", "val", "all"):
            raise ArgumentError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if datasets is not None and datasets != AVAILABLE and k != DEFAULT_K:
            raise ArgumentError("pass either k or datasets, not both")
        self.split = split
        self.transforms = as_sample_transform(transforms)
        self.keep_classes = keep_classes
        self.patch_size = int(patch_size)
        names = top_k(k) if datasets is None or datasets == AVAILABLE else None
        self._parts = _resolve_parts(datasets, names or [], root, download, dataset_options, progress)
        excluded = {c.upper() for c in exclude_cases or ()}
        rows: list[tuple[int, int, int, int, bool]] = []
        self.selections: dict[str, TestSelection] = {}
        self.excluded_tiles: dict[str, list[str]] = {}
        for p, (tag, ds) in enumerate(self._parts):
            if ds.name in TRAIN_ONLY:  # not a NucFuse-test member: every tile trains
                selection = TestSelection(tag, (), (), "none", "not in NucFuse-test", 0)
            else:
                selection = _select(tag, ds, test_ids)
            self.selections[tag] = selection
            test_set = set(selection.indices)
            tiles = []
            for i in range(len(ds)):
                if i in test_set:
                    continue
                if excluded and _case_of(ds, i) in excluded:
                    self.excluded_tiles.setdefault(tag, []).append(ds.sample_ids[i])
                    continue
                tiles.append(i)
            patches = []  # (name, tile, y, x)
            for i in tiles:
                h, w = ds.tile_shape(i)
                sid = ds.sample_ids[i]
                for y, x in patch_grid(h, w, self.patch_size):
                    patches.append((f"{sid}_{y // self.patch_size:03d}_{x // self.patch_size:03d}", i, y, x))
            patches.sort(key=lambda t: t[0])
            is_val = self._validation_mask(patches, group_by_tile, tag)
            rows.extend((p, i, y, x, bool(v)) for (_, i, y, x), v in zip(patches, is_val, strict=True))
        keep = [r for r in rows if split == "all" or (r[4] == (split == "val"))]
        arr = np.array([r[:4] for r in keep], dtype=np.int64).reshape(-1, 4)
        self._part, self._tile, self._y, self._x = (arr[:, j].copy() for j in range(4))
        self._val = np.array([r[4] for r in keep], dtype=bool)

    @staticmethod
    def _validation_mask(patches: list[tuple[str, int, int, int]], group_by_tile: bool, tag: str) -> np.ndarray:
        n = len(patches)
        mask = np.zeros(n, bool)
        if n == 0:
            return mask
        if group_by_tile:
            tiles = sorted({t for _, t, _, _ in patches})
            if len(tiles) < 5:
                raise ArgumentError(f"{tag}: group_by_tile needs at least 5 training tiles, got {len(tiles)}")
            _, val = kfold_split(len(tiles))
            val_tiles = {tiles[i] for i in val}
            return np.array([t in val_tiles for _, t, _, _ in patches], bool)
        if n < 5:
            raise ArgumentError(f"{tag}: the 80/20 KFold split needs at least 5 training patches, got {n}")
        _, val = kfold_split(n)
        mask[val] = True
        return mask

    @property
    def subsets(self) -> list[str]:
        """Subset tags in order."""
        return [t for t, _ in self._parts]

    @property
    def parts(self) -> dict[str, NucleiDataset]:
        """Subset tag -> the dataset its patches come from (opened with split ``"all"``)."""
        return dict(self._parts)

    def __len__(self) -> int:
        return int(self._part.size)

    def counts(self) -> dict[str, dict[str, int]]:
        """Patches per subset in this split."""
        out: dict[str, dict[str, int]] = {}
        for p, (tag, _) in enumerate(self._parts):
            sel = self._part == p
            out[tag] = {"patches": int(sel.sum()), "tiles": len(set(self._tile[sel].tolist()))}
        return out

    def load_sample(self, idx: int) -> Sample:
        """The untransformed patch Sample at ``idx``."""
        if not -len(self) <= idx < len(self):
            raise IndexError(f"NucFuseTrain: index {idx} out of range for {len(self)} patches")
        idx = int(idx) % len(self)
        tag, ds = self._parts[int(self._part[idx])]
        tile, y, x, ps = int(self._tile[idx]), int(self._y[idx]), int(self._x[idx]), self.patch_size
        crop = ds.load_region(tile, y, y + ps, x, x + ps)
        h, w = crop.shape
        image = np.full((ps, ps, 3), 255, np.uint8)
        image[:h, :w] = crop.image
        inst = np.zeros((ps, ps), np.int64)
        inst[:h, :w] = crop.instances
        relabelled, old_ids = relabel_sequential(inst)
        classes = None
        if self.keep_classes and crop.classes is not None:
            classes = np.zeros(old_ids.size + 1, np.int32)
            classes[1:] = crop.classes[old_ids]
        ignore = None
        if crop.ignore is not None:
            ignore = np.zeros((ps, ps), bool)
            ignore[:h, :w] = crop.ignore
        src = crop.meta
        meta = src.model_copy(
            update={
                "sample_id": f"{src.sample_id}_{y // ps:03d}_{x // ps:03d}",
                "split": "val" if self._val[idx] else "train",
                "extra": {
                    **src.extra,
                    "subset": tag,
                    "source_tile": src.sample_id,
                    "source_split": src.split,
                    "patch_y": y,
                    "patch_x": x,
                },
            }
        )
        return Sample(
            image=image,
            instances=relabelled,
            classes=classes,
            class_names=ds.class_names if classes is not None else None,
            ignore=ignore,
            meta=meta,
        )

    def __getitem__(self, idx: int) -> Any:
        sample = self.load_sample(idx)
        return self.transforms(sample) if self.transforms is not None else sample

    def __repr__(self) -> str:
        per = ", ".join(f"{t}={c['patches']}" for t, c in self.counts().items())
        return f"NucFuseTrain(split={self.split!r}, n={len(self)}: {per})"


def _case_of(ds: NucleiDataset, idx: int) -> str | None:
    from nucfuse_datasets.benchmark.leakage import tcga_case

    return tcga_case(ds.meta(idx))
