"""Fake PanNuke: three fold zips with ``images.npy``, ``types.npy`` (unicode) and 6-channel ``masks.npy``.

Tiles are 64×64 (the real ones are 256×256). Instance ``k`` of a tile sits in channel
``k % 5`` (ids unique across channels, as upstream); channel 5 is the background. Fold 1 and 3 are
float64 (the most likely upstream dtype), fold 2 is uint8 images with int16 masks. The last tile of
fold 3 has no nucleus.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.fakedata import FakeData
from tests.fakedata._common import tile, zip_tree

NAME = "pannuke"
SIZE = 64
#: fold -> (tissue names per tile, image dtype, mask dtype)
FOLDS = {
    1: (["Breast", "Adrenal_gland", "Colon"], np.float64, np.float64),
    2: (["HeadNeck", "Bile-duct"], np.uint8, np.int16),
    3: (["Skin", "Kidney", "Lung"], np.float64, np.float64),
}


def seed_of(fold: int, i: int) -> int:
    return 1000 + 10 * fold + i


def tile_arrays(fold: int, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image (H×W×3 uint8), the instance map and the 6-channel mask the fake writes for one tile."""
    image, inst, _ = tile(SIZE, SIZE, seed_of(fold, i), density=3.0)
    if fold == 3 and i == len(FOLDS[3][0]) - 1:
        inst = np.zeros_like(inst)  # a tile without nuclei
    mask = np.zeros((SIZE, SIZE, 6), np.int32)
    for k in np.unique(inst):
        if k:
            mask[..., k % 5][inst == k] = k
    mask[..., 5] = (inst == 0).astype(np.int32)
    return image, inst, mask


def make(workdir: Path) -> FakeData:
    native = workdir / "native"
    archives = workdir / "archives"
    out = {}
    tiles: dict[str, int] = {}
    nuclei: dict[str, int] = {}
    for n, (types, img_dtype, mask_dtype) in FOLDS.items():
        fold = native / f"Fold {n}"
        images, masks = [], []
        count = 0
        for i in range(len(types)):
            image, inst, mask = tile_arrays(n, i)
            images.append(image)
            masks.append(mask)
            count += len(np.unique(inst)) - (1 if (inst == 0).any() else 0)
        (fold / "images" / f"fold{n}").mkdir(parents=True)
        (fold / "masks" / f"fold{n}").mkdir(parents=True)
        np.save(fold / "images" / f"fold{n}" / "images.npy", np.stack(images).astype(img_dtype))
        np.save(fold / "images" / f"fold{n}" / "types.npy", np.array(types))
        np.save(fold / "masks" / f"fold{n}" / "masks.npy", np.stack(masks).astype(mask_dtype))
        (fold / "README.md").write_text("PanNuke fold (fake)\n")
        (fold / "by-nc-sa.md").write_text("CC BY-NC-SA 4.0\n")
        staging = workdir / f"staging-{n}"
        shutil.copytree(fold, staging / fold.name)
        out[f"fold{n}"] = zip_tree(staging, archives / f"fold_{n}.zip")
        tiles[f"fold{n}"] = len(types)
        nuclei[f"fold{n}"] = count
    tiles["all"] = sum(tiles.values())
    nuclei["all"] = sum(nuclei.values())
    return FakeData(native_dir=native, archives=out, tiles=tiles, nuclei=nuclei)


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import InvalidSourceError, UnexpectedContentError
    from tests.reliability.corpus import (
        PANNUKE_IMAGES,
        PANNUKE_MASKS,
        PANNUKE_TYPES,
        Case,
        _mask_scaled,
        as_objects,
        download_html,
        empty,
        native,
        np,
        npy_of,
        truncated,
    )

    return [
        Case("html-download", "pannuke", download_html, UnexpectedContentError, ("html page", "download it by hand")),
        Case(
            "npy-pickle-images",
            "pannuke",
            native(PANNUKE_IMAGES, npy_of(as_objects)),
            InvalidSourceError,
            ("pickle",),
        ),
        Case("npy-pickle-masks", "pannuke", native(PANNUKE_MASKS, npy_of(as_objects)), InvalidSourceError, ("pickle",)),
        Case(
            "npy-pickle-types",
            "pannuke",
            native(PANNUKE_TYPES, npy_of(lambda a: a.astype(object))),
            InvalidSourceError,
            ("pickle",),
        ),
        Case("npy-truncated-masks", "pannuke", native(PANNUKE_MASKS, truncated(0.5)), InvalidSourceError, (".npy",)),
        Case(
            "size-mismatch-pannuke",
            "pannuke",
            native(PANNUKE_MASKS, npy_of(lambda a: a[:, :32, :32])),
            InvalidSourceError,
            ("expected shape",),
        ),
        Case(
            "4-channel-npy-pannuke",
            "pannuke",
            native(PANNUKE_IMAGES, npy_of(lambda a: np.concatenate([a, a[..., :1]], axis=3))),
            InvalidSourceError,
            ("expected shape",),
        ),
        Case(
            "tile-count-mismatch-pannuke",
            "pannuke",
            native(PANNUKE_IMAGES, npy_of(lambda a: a[:-1])),
            InvalidSourceError,
            ("images.npy has 2 tiles",),
        ),
        Case(
            "mask-fraction-pannuke",
            "pannuke",
            native(PANNUKE_MASKS, npy_of(_mask_scaled(0.5))),
            InvalidSourceError,
            ("non-integer",),
        ),
        Case(
            "mask-negative-pannuke",
            "pannuke",
            native(PANNUKE_MASKS, npy_of(_mask_scaled(-3.0))),
            InvalidSourceError,
            ("negative",),
        ),
        Case(
            "image-out-of-range-pannuke",
            "pannuke",
            native(PANNUKE_IMAGES, npy_of(lambda a: a.astype(np.float64) * 2.0 + 1.0)),
            InvalidSourceError,
            ("outside 0..255",),
        ),
        Case("empty-npy-pannuke", "pannuke", native(PANNUKE_TYPES, empty), InvalidSourceError, (".npy",)),
    ]
