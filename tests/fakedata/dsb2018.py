"""Fake DSB 2018 stage1_train: RGBA H&E PNGs, greyscale fluorescence PNGs, one mask PNG per nucleus."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tests.fakedata import FakeData
from tests.fakedata._common import rgba, tile, write_png, zip_tree

NAME = "dsb2018"
N_HE = 3
N_FLUO = 2


def _image_id(i: int, kind: str) -> str:
    return hashlib.sha256(f"{kind}-{i}".encode()).hexdigest()


def _write(base: Path, image_id: str, image: np.ndarray, instances: np.ndarray) -> int:
    folder = base / image_id
    write_png(folder / "images" / f"{image_id}.png", rgba(image))
    ids = [k for k in np.unique(instances) if k]
    for k in ids:
        mask = np.where(instances == k, 255, 0).astype(np.uint8)
        write_png(folder / "masks" / f"{hashlib.sha256(f'{image_id}-{k}'.encode()).hexdigest()}.png", mask, mode="L")
    return len(ids)


def make(workdir: Path) -> FakeData:
    native = workdir / "native"
    base = native / "stage1_train"
    nuclei = 0
    for i in range(N_HE):
        image, inst, _ = tile(64, 80, 200 + i)
        nuclei += _write(base, _image_id(i, "he"), image, inst)
    for i in range(N_FLUO):
        # fluorescence: greyscale stored as RGB(A), bright nuclei on black
        image, inst, _ = tile(64, 64, 300 + i)
        grey = np.where(inst > 0, 200, 10).astype(np.uint8)
        _write(base, _image_id(i, "fluo"), np.stack([grey] * 3, axis=-1), inst)
    # the fixed copy is a GitHub archive of the whole repository: one top folder
    staging = workdir / "staging" / "kaggle-dsbowl-2018-dataset-fixes-30354551efef351c1241da7c6d48cf938d76f02a"
    import shutil

    shutil.copytree(base, staging / "stage1_train")
    (staging / "README.md").write_text("fixed stage1_train\n")
    archive = zip_tree(
        workdir / "staging",
        workdir / "archives" / "kaggle-dsbowl-2018-dataset-fixes-30354551efef351c1241da7c6d48cf938d76f02a.zip",
    )
    return FakeData(
        native_dir=native,
        archives={"fixed": archive},
        tiles={"train": N_HE, "all": N_HE},
        nuclei={"train": nuclei, "all": nuclei},
    )


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import ChecksumError, InvalidSourceError
    from tests.reliability.corpus import (
        DSB_HE_MASK,
        DSB_HE_PNG,
        Case,
        _half,
        dsb_ids_collapsing,
        garbage,
        local_html,
        native,
        png_of,
        truncated,
    )

    return [
        Case(
            "html-local-pinned", "dsb2018", local_html(pinned=True), ChecksumError, ("html page", "download it again")
        ),
        Case("png-truncated-dsb2018", "dsb2018", native(DSB_HE_PNG, truncated(0.6)), InvalidSourceError, ("decode",)),
        Case("png-garbage-dsb2018-mask", "dsb2018", native(DSB_HE_MASK, garbage), InvalidSourceError, ("decode",)),
        Case("size-mismatch-dsb2018", "dsb2018", native(DSB_HE_MASK, png_of(_half)), InvalidSourceError, ("differs",)),
        Case("duplicate-safe-id-dsb2018", "dsb2018", dsb_ids_collapsing, InvalidSourceError, ("duplicate",)),
    ]
