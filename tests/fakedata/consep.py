"""Fake CoNSeP: ``CoNSeP/{Train,Test}/{Images,Labels,Overlay}`` with double-stored ``.mat`` maps.

Each label file holds ``inst_map`` (float64, ids 1..N), ``type_map`` (float64), ``inst_type``
(N×1 float64) and ``inst_centroid`` (N×2), as in the 2020 release. Instance ``k`` has class
``(k - 1) % 7 + 1``, so every class 1..7 occurs. One training image is RGBA.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io

from tests.fakedata import FakeData
from tests.fakedata._common import dense_ids, rgba, tile, write_png, zip_tree

NAME = "consep"
TRAIN = ["train_1", "train_2", "train_10"]
TEST = ["test_1", "test_2"]
SIZE = 64


def type_of(k: int) -> int:
    """The class the fake gives instance ``k`` (1..7)."""
    return (k - 1) % 7 + 1


def label_of(seed: int) -> np.ndarray:
    """The contiguous (1..N) instance map the fake writes for ``seed``."""
    _, inst, _ = tile(SIZE, SIZE, seed, density=3.0)
    return dense_ids(inst)


def write_mat(path: Path, inst: np.ndarray) -> None:
    n = int(inst.max())
    types = np.array([type_of(k) for k in range(1, n + 1)], float).reshape(-1, 1)
    type_map = np.zeros(inst.shape, float)
    for k in range(1, n + 1):
        type_map[inst == k] = type_of(k)
    centroids = np.array(
        [[np.nonzero(inst == k)[1].mean(), np.nonzero(inst == k)[0].mean()] for k in range(1, n + 1)], float
    ).reshape(-1, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        path,
        {
            "inst_map": inst.astype(np.float64),
            "type_map": type_map,
            "inst_type": types,
            "inst_centroid": centroids,
        },
    )


def seed_of(stem: str) -> int:
    split, idx = stem.split("_")
    return (700 if split == "train" else 800) + int(idx)


def make(workdir: Path, ids: Sequence[str] | None = None) -> FakeData:
    """Write the fake; ``ids`` (real test names such as ``test_12``) replace the test split :data:`TEST`."""
    native = workdir / "native"
    top = native / "CoNSeP"
    nuclei = {"train": 0, "test": 0}
    test = TEST if ids is None else list(ids)
    for split, stems in (("train", TRAIN), ("test", test)):
        folder = top / split.capitalize()
        for stem in stems:
            seed = seed_of(stem)
            image, _, _ = tile(SIZE, SIZE, seed, density=3.0)
            inst = label_of(seed)
            write_png(folder / "Images" / f"{stem}.png", rgba(image) if stem == "train_2" else image)
            write_mat(folder / "Labels" / f"{stem}.mat", inst)
            write_png(folder / "Overlay" / f"{stem}.png", image)
            nuclei[split] += int(inst.max())
    (top / "README.txt").write_text("CoNSeP dataset (fake)\n")
    staging = workdir / "staging"
    shutil.copytree(top, staging / "CoNSeP")
    archive = zip_tree(staging, workdir / "archives" / "consep.zip")
    return FakeData(
        native_dir=native,
        archives={"consep": archive},
        tiles={"train": len(TRAIN), "test": len(test), "all": len(TRAIN) + len(test)},
        nuclei={**nuclei, "all": nuclei["train"] + nuclei["test"]},
    )


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import InvalidSourceError, UnsafeArchiveError
    from tests.reliability.corpus import (
        CONSEP_MAT,
        CONSEP_PNG,
        Case,
        _grey,
        garbage,
        mat_of,
        native,
        np,
        png_of,
        set_pixel,
        text,
        with_inst_map,
        zip_member,
    )

    return [
        Case(
            "zip-symlink",
            "consep",
            zip_member("consep", lambda ctx: "CoNSeP/Train/Images/link.png", symlink="target.png"),
            UnsafeArchiveError,
            ("symbolic link",),
        ),
        Case("mat-garbage-consep", "consep", native(CONSEP_MAT, garbage), InvalidSourceError, (".mat",)),
        Case(
            "mat-v73-consep",
            "consep",
            native(
                CONSEP_MAT,
                text(
                    f"{'MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .':<116}        \x00\x02IM"
                    + "\0" * 512
                ),
            ),
            InvalidSourceError,
            ("v7.3",),
        ),
        Case("greyscale-png-consep", "consep", native(CONSEP_PNG, png_of(_grey)), InvalidSourceError, ("greyscale",)),
        Case(
            "label-negative-mat-consep",
            "consep",
            native(CONSEP_MAT, mat_of(with_inst_map(set_pixel(-1)))),
            InvalidSourceError,
            ("negative",),
        ),
        Case(
            "label-fraction-mat-consep",
            "consep",
            native(CONSEP_MAT, mat_of(with_inst_map(set_pixel(2.5)))),
            InvalidSourceError,
            ("non-integer",),
        ),
        Case(
            "class-out-of-range-consep",
            "consep",
            native(CONSEP_MAT, mat_of(lambda d: {**d, "inst_type": np.full_like(d["inst_type"], 9.0)})),
            InvalidSourceError,
            ("outside",),
        ),
    ]
