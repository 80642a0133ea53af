"""Fake CPM-17: the Drive folder ``cpm17/{train,test}/{Images,Labels,Overlay}`` zipped as Drive does it.

The same stems (``image_00``, ``image_01``) occur in both splits; tiles come in two sizes (like
500² and 600²); ``inst_map`` is int32 in some files and float64 in others, with gaps in the ids.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io

from tests.fakedata import FakeData
from tests.fakedata._common import rgba, tile, write_png, zip_tree

NAME = "cpm17"
#: (split, stem, size, inst_map dtype)
TILES = [
    ("train", "image_00", 64, np.int32),
    ("train", "image_01", 80, np.float64),
    ("test", "image_00", 64, np.float64),
    ("test", "image_01", 80, np.uint16),
]


def seed_of(split: str, stem: str) -> int:
    return (900 if split == "train" else 950) + int(stem.split("_")[1])


def tiles_of(ids: Sequence[str]) -> list[tuple[str, str, int, type]]:
    """The two training tiles of :data:`TILES`, then one 64-px test tile per sample id (``test_image_05``)."""
    dtypes = (np.float64, np.uint16, np.int32)
    test = [("test", sid.removeprefix("test_"), 64, dtypes[i % 3]) for i, sid in enumerate(ids)]
    return [t for t in TILES if t[0] == "train"] + test


def make(workdir: Path, ids: Sequence[str] | None = None) -> FakeData:
    """Write the fake; ``ids`` (real test sample ids such as ``test_image_05``) replace the test tiles of TILES."""
    native = workdir / "native"
    top = native / "cpm17"
    nuclei = {"train": 0, "test": 0}
    chosen = TILES if ids is None else tiles_of(ids)
    for split, stem, size, dtype in chosen:
        image, inst, _ = tile(size, size, seed_of(split, stem), density=3.0)
        folder = top / split
        write_png(folder / "Images" / f"{stem}.png", rgba(image) if split == "test" else image)
        (folder / "Labels").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(folder / "Labels" / f"{stem}.mat", {"inst_map": inst.astype(dtype)})
        write_png(folder / "Overlay" / f"{stem}.png", image)
        nuclei[split] += len(np.unique(inst)) - 1  # ids may have gaps: count the distinct ids
    # Drive's "Download folder" zip keeps the folder's name as the top folder
    staging = workdir / "staging"
    shutil.copytree(top, staging / "cpm17")
    archive = zip_tree(staging, workdir / "archives" / "cpm17.zip")
    return FakeData(
        native_dir=native,
        archives={"cpm17": archive},
        tiles={s: sum(t[0] == s for t in chosen) for s in ("train", "test")} | {"all": len(chosen)},
        nuclei={**nuclei, "all": nuclei["train"] + nuclei["test"]},
    )


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import InvalidSourceError
    from tests.reliability.corpus import (
        CPM_MAT,
        Case,
        _empty_folders,
        _hw,
        empty,
        mat_bytes,
        mat_of,
        native,
        np,
        set_pixel,
        truncated,
        with_inst_map,
    )

    return [
        Case("mat-truncated-cpm17", "cpm17", native(CPM_MAT, truncated(0.5)), InvalidSourceError, (".mat",)),
        Case(
            "mat-missing-variable-cpm17",
            "cpm17",
            native(CPM_MAT, lambda p: mat_bytes({"labels": np.zeros(_hw(p))})),
            InvalidSourceError,
            ("inst_map", "missing"),
        ),
        Case(
            "size-mismatch-cpm17",
            "cpm17",
            native(CPM_MAT, lambda p: mat_bytes({"inst_map": np.zeros((10, 12), np.int32)})),
            InvalidSourceError,
            ("differs",),
        ),
        Case(
            "label-nan-mat-cpm17",
            "cpm17",
            native(CPM_MAT, mat_of(with_inst_map(set_pixel(np.nan)))),
            InvalidSourceError,
            ("non-finite",),
        ),
        Case("empty-mat-cpm17", "cpm17", native(CPM_MAT, empty), InvalidSourceError, (".mat",)),
        Case(
            "empty-extracted-folders-cpm17",
            "cpm17",
            lambda ctx: _empty_folders(
                ctx, [f"cpm17/{s}/{k}" for s in ("train", "test") for k in ("Images", "Labels")]
            ),
            InvalidSourceError,
            ("produced no samples", "nucfuse info cpm17"),
            rerun=False,
        ),
    ]
