"""PanNuke (Gamper et al. 2019, 2020): 256×256 H&E tiles of 19 tissues in three folds, 5 nucleus classes.

Native layout (``fold_1.zip`` … ``fold_3.zip`` from the Warwick TIA page)::

    Fold N/images/foldN/images.npy   (n, 256, 256, 3)  float (UNCONFIRMED dtype; integer arrays are accepted)
    Fold N/images/foldN/types.npy    (n,)              tissue name per tile (a unicode array)
    Fold N/masks/foldN/masks.npy     (n, 256, 256, 6)  channels 0–4: instance ids of Neoplastic,
                                                        Inflammatory, Connective, Dead, Epithelial; 5: background

Conversion, tile by tile (a fold is never loaded whole; each tile is one job that reads just its rows by offset,
so ``prepare(workers=N)`` converts tiles in N processes and memory stays flat in the fold's size):

* images: float values must lie in 0..255 and are rounded to ``uint8``;
* masks: values of channels 0–4 must be non-negative integers (float maps are checked, then cast).
  Instance ids are unique across the 5 class channels, so the instance map is the per-pixel
  maximum over them and the class of an id is its channel + 1. An id found in two channels, or an
  instance that the maximum hides completely, is refused with ``InvalidSourceError``; pixels where two
  instances overlap go to the larger id and are counted in ``meta.extra["overlap_pixels"]``;
* ``types.npy`` is read without pickle: an object array is refused with a message saying so;
* splits are the three folds (``fold1``, ``fold2``, ``fold3``); sample ids are ``fold<N>_<index>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, PaperStats, Sources, find_marker
from nucfuse_datasets.datasets._parallel import SETTLE, Job, Settle
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import load_npy, read_row
from nucfuse_datasets.io.store import RawSample

__all__ = ["CLASS_NAMES", "FOLD_SIZES", "PanNuke", "instances_from_channels", "tile_image"]

CLASS_NAMES: tuple[str, ...] = ("background", "Neoplastic", "Inflammatory", "Connective", "Dead", "Epithelial")
#: Tiles per fold in the Warwick fold files.
FOLD_SIZES: dict[int, int] = {1: 2656, 2: 2523, 3: 2722}
PAGE = "https://warwick.ac.uk/fac/cross_fac/tia/data/pannuke"

#: Raw tissue names whose lower-case form is not a plain organ name.
_ORGAN_NAMES = {"Adrenal_gland": "adrenal gland", "Bile-duct": "bile duct", "HeadNeck": "head and neck"}

_SHA256 = {
    1: "6e19ad380300e8ce9480f9ab6a14cc91fa4b6a511609b40e3d70bdf9c881ed0b",
    2: "5bc540cc509f64b5f5a274d6e5a245527dbd3e6d3155d43555115c5d54709b07",
    3: "c14d372981c42f611ebc80afad01702b89cad8c1b3089daa31931cf5a4b1a39d",
}
_MD5 = {
    1: "e1b16ef84db3e3368d9f5bd4e61ed65c",
    2: "f1839d332c4b8e12c7c01882020ac457",
    3: "441950a966ee73d6e9780196815a0b20",
}


def _fold_resource(n: int) -> Resource:
    return Resource(
        key=f"fold{n}",
        filename=f"fold_{n}.zip",
        urls=(f"{PAGE}/fold_{n}.zip",),
        sha256=_SHA256[n],
        md5=_MD5[n],
        hash_source=(
            "sha256 pinned in constantinpape/torch-em@6f71247 histopathology/pannuke.py; md5 recorded in a "
            "third-party loader module (no publisher hash)"
        ),
        marker=f"Fold {n}/masks/fold{n}/masks.npy",
        page=PAGE,
        note="Large (Kaggle copies are 12–13 GiB per fold uncompressed).",
        splits=(f"fold{n}",),
    )


def tile_image(value: np.ndarray, where: str) -> np.ndarray:
    """One tile of ``images.npy`` as ``H×W×3 uint8`` (float values in 0..255 are rounded).

    Raises:
        InvalidSourceError: wrong shape, non-finite or out-of-range values, or an unsupported dtype.

    Example:
        >>> import numpy as np
        >>> tile_image(np.full((2, 2, 3), 254.6), "x")[0, 0].tolist()
        [255, 255, 255]
    """
    arr = np.asarray(value)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidSourceError(f"{where}: expected an H×W×3 image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise InvalidSourceError(f"{where}: non-finite image values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < -0.5 or hi >= 255.5:
            raise InvalidSourceError(f"{where}: image values {lo}..{hi} outside 0..255")
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    raise InvalidSourceError(f"{where}: unsupported image dtype {arr.dtype}")


def instances_from_channels(mask: np.ndarray, where: str) -> tuple[np.ndarray, dict[int, int], int]:
    """Instance map, classes and overlap count from one ``H×W×6`` PanNuke mask.

    Returns:
        ``(int64 instance map = max over channels 0–4, {id: channel + 1}, pixels claimed by two instances)``.

    Raises:
        InvalidSourceError: wrong shape, values that are not non-negative integers, an id present in
            two channels, or an instance hidden completely by the maximum.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((2, 2, 6)); m[0, 0, 0] = 3; m[1, 1, 4] = 7
        >>> inst, classes, overlap = instances_from_channels(m, "x")
        >>> inst.tolist(), classes, overlap
        ([[3, 0], [0, 7]], {3: 1, 7: 5}, 0)
    """
    arr = np.asarray(mask)
    if arr.ndim != 3 or arr.shape[2] < 5:
        raise InvalidSourceError(f"{where}: expected an H×W×6 mask, got shape {arr.shape}")
    chans = arr[..., :5]
    if np.issubdtype(chans.dtype, np.floating):
        if not np.all(np.isfinite(chans)) or not np.array_equal(chans, np.round(chans)):
            raise InvalidSourceError(f"{where}: mask channels hold non-integer values (dtype {chans.dtype})")
    elif not np.issubdtype(chans.dtype, np.integer):
        raise InvalidSourceError(f"{where}: unsupported mask dtype {chans.dtype}")
    chans = chans.astype(np.int64)
    if chans.size and int(chans.min()) < 0:
        raise InvalidSourceError(f"{where}: negative instance ids")
    classes: dict[int, int] = {}
    for c in range(5):
        for k in np.unique(chans[..., c]).tolist():
            if k == 0:
                continue
            if k in classes:
                raise InvalidSourceError(
                    f"{where}: instance id {k} occurs in channel {classes[k] - 1} ({CLASS_NAMES[classes[k]]}) and "
                    f"channel {c} ({CLASS_NAMES[c + 1]}); ids must be unique across the class channels"
                )
            classes[k] = c + 1
    instances = chans.max(axis=2)
    overlap = int(np.count_nonzero(np.count_nonzero(chans, axis=2) > 1))
    if overlap:
        hidden = sorted(set(classes) - set(np.unique(instances).tolist()))
        if hidden:
            raise InvalidSourceError(
                f"{where}: instance(s) {hidden[:10]} are completely covered by other channels' instances"
            )
    return instances, classes, overlap


def _fold_dir(base: Path, n: int, max_depth: int) -> Path | None:
    """The ``Fold N`` folder: the one holding ``images/foldN/images.npy``."""
    return find_marker(base, f"images/fold{n}/images.npy", max_depth=max_depth)


@register
class PanNuke(NucleiDataset):
    """PanNuke: 7,901 H&E tiles of 256×256 (40×) from 19 tissues, in three folds, with 5 nucleus classes.

    Not part of NucFuse-test (``test_split`` is ``None`` and the paper uses PanNuke only as an
    alternative training set).

    Example:
        >>> from nucfuse_datasets import PanNuke  # doctest: +SKIP
        >>> fold3 = PanNuke(root, split="fold3", download=True)  # doctest: +SKIP
        >>> len(fold3), fold3.meta(0).extra["tissue"]  # doctest: +SKIP
        (2722, 'Breast')
    """

    name = "pannuke"
    title = "PanNuke"
    description = (
        "Pan-cancer nuclei instance segmentation and classification: 256×256 px H&E tiles at 40× from 19 tissue "
        "types, semi-automatically annotated in 5 classes, distributed as three folds of numpy arrays."
    )
    license = "CC BY-NC-SA 4.0"
    citation = (
        "Gamper J. et al. PanNuke: an open pan-cancer histology dataset for nuclei instance segmentation and "
        "classification. European Congress on Digital Pathology (ECDP) 2019. Gamper J. et al. PanNuke dataset "
        "extension, insights and baselines. arXiv:2003.10778 (2020)."
    )
    homepage = PAGE
    resources = tuple(_fold_resource(n) for n in (1, 2, 3))
    splits = ("fold1", "fold2", "fold3")
    test_split = None
    class_names = CLASS_NAMES
    magnification = 40.0
    expected_counts = (
        *(ExpectedCount(f"fold{n}", size, None, "Warwick fold files") for n, size in FOLD_SIZES.items()),
        # 7,901 tiles in the fold files; Table 1 says 7,904 tiles and 189,744 nuclei
        ExpectedCount("all", 7901, 189744, "fold files (tiles); paper Table 1 (nuclei)", tolerance=0.01),
    )
    paper = PaperStats(7904, 189744, "19", "256×256", 24.00, 6320)
    manual_instructions = ""

    @classmethod
    def _content_root(cls, res: Resource, base: Path, max_depth: int) -> Path | None:
        # the "Fold N" folder itself (one level below the extraction folder in the Warwick zips)
        return _fold_dir(base, int(res.key[-1]), max_depth + 1)

    def _convert(self, sources: Sources) -> Iterator[Job | Settle]:
        # every fold is converted on its own; nothing is skipped because another fold exists. Each fold's
        # extraction (about 13 GB of arrays) is released before the next one is extracted.
        for n in (1, 2, 3):
            if not sources.wants(f"fold{n}"):
                continue  # preparation is per fold: PanNuke(root, split="fold1") needs only fold_1.zip
            yield from self._convert_fold(n, sources[f"fold{n}"])
            yield SETTLE  # every job of this fold has read its tile before the fold's files are deleted
            sources.release(f"fold{n}")

    def _convert_fold(self, n: int, fold: Path) -> Iterator[Job]:
        img_path = fold / "images" / f"fold{n}" / "images.npy"
        types_path = fold / "images" / f"fold{n}" / "types.npy"
        mask_path = fold / "masks" / f"fold{n}" / "masks.npy"
        for p in (img_path, types_path, mask_path):
            if not p.is_file():
                raise InvalidSourceError(f"{p}: missing from PanNuke fold {n}")
        images = load_npy(img_path, mmap_mode="r")
        masks = load_npy(mask_path, mmap_mode="r")
        types = self._types(types_path)
        # the Warwick tiles are 256×256; other sizes are accepted as long as images and masks agree
        if images.ndim != 4 or images.shape[3] != 3:
            raise InvalidSourceError(f"{img_path}: expected shape (n, 256, 256, 3), got {images.shape}")
        if masks.ndim != 4 or masks.shape[1:3] != images.shape[1:3] or masks.shape[3] != 6:
            raise InvalidSourceError(
                f"{mask_path}: expected shape (n, {images.shape[1]}, {images.shape[2]}, 6), got {masks.shape}"
            )
        if not (images.shape[0] == masks.shape[0] == types.shape[0]):
            raise InvalidSourceError(
                f"{fold}: images.npy has {images.shape[0]} tiles, masks.npy {masks.shape[0]}, "
                f"types.npy {types.shape[0]}"
            )
        # where the rows lie, not the memory maps, travel to the jobs: each reads its tile's rows by offset
        image_rows, mask_rows = _Rows.of(images, img_path), _Rows.of(masks, mask_path)
        for i in range(len(types)):
            yield Job(_convert_tile, (n, i, fold.name, image_rows, mask_rows, str(types[i])))

    @staticmethod
    def _types(path: Path) -> np.ndarray:
        try:
            types = load_npy(path)
        except InvalidSourceError as exc:
            if "pickle" not in str(exc):
                raise  # unreadable or truncated: the reader's message says so
            raise InvalidSourceError(
                f"{exc}. PanNuke's types.npy is expected to be a unicode string array (dtype '<U…'); an array that "
                "needs pickle is not loaded (if you trust the file, re-save it as a string array with numpy)"
            ) from None
        if types.ndim != 1 or types.dtype.kind not in "US":
            raise InvalidSourceError(f"{path}: expected a 1-D array of tissue names, got {types.dtype} {types.shape}")
        if types.dtype.kind == "S":
            types = types.astype(str)
        return types


@dataclass(frozen=True)
class _Rows:
    """Where the rows of a memory-mapped ``.npy`` lie (picklable: a job reads one row without the parent's map)."""

    path: Path  # as given (for messages)
    filename: str  # the memory map's (absolute) file name
    offset: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    order: str

    @classmethod
    def of(cls, arr: np.ndarray, path: Path) -> _Rows:
        if not isinstance(arr, np.memmap) or arr.filename is None:
            raise InvalidSourceError(f"{path}: cannot be memory-mapped")
        order = "C" if arr.flags.c_contiguous else "F"
        return cls(path, str(arr.filename), int(arr.offset), arr.dtype, tuple(arr.shape), order)

    def read(self, i: int) -> np.ndarray:
        """Row ``i``, read with one ``readinto`` (:func:`~nucfuse_datasets.io.files.read_row`)."""
        arr = np.memmap(self.filename, self.dtype, "r", self.offset, self.shape, self.order)  # type: ignore[call-overload]
        return read_row(arr, i)


def _convert_tile(n: int, i: int, rel: str, images: _Rows, masks: _Rows, tissue: str) -> RawSample:
    """Tile ``i`` of PanNuke fold ``n``, reading only its rows of ``images.npy`` and ``masks.npy``; runs in a worker."""
    # one read per tile, not through a memory map: memory stays flat in the fold's size
    image = tile_image(images.read(i), f"{images.path}[{i}]")
    instances, classes, overlap = instances_from_channels(masks.read(i), f"{masks.path}[{i}]")
    extra: dict[str, Any] = {"tissue": tissue, "fold": n, "index": i}
    if overlap:
        extra["overlap_pixels"] = overlap
    return RawSample(
        sample_id=f"fold{n}_{i:04d}",
        split=f"fold{n}",
        image=image,
        instances=instances,
        classes=classes,
        meta={
            "organ": _ORGAN_NAMES.get(tissue, tissue.replace("_", " ").lower()),
            "magnification": 40.0,
            "original_file": f"{rel}/images/fold{n}/images.npy[{i}]",
            "extra": extra,
        },
    )
