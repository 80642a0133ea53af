"""Fake TNBC (Zenodo v1.1 zip): RGBA tiles in Slide_XX/, binary 0/255 masks in GT_XX/, __MACOSX junk.

Every mask is drawn so that its connected-component count is known by construction: separate disks
(one with a filled 1-px hole, one with a 4-px hole that stays), a pair of overlapping disks (one instance),
and two squares touching only at a corner (one instance with 8-connectivity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fakedata import FakeData
from tests.fakedata._common import rgba, tile, write_png, zip_tree

NAME = "tnbc"
TOP = "TNBC_NucleiSegmentation"
SIZE = 64
#: patient -> number of tiles
PATIENTS = {"01": 2, "02": 1, "03": 2}


def disk(mask: np.ndarray, cy: int, cx: int, r: int) -> None:
    yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = True


def draw_mask(extra_disk: bool) -> tuple[np.ndarray, int]:
    """A 64×64 binary ground truth and its number of 8-connected components (by construction)."""
    m = np.zeros((SIZE, SIZE), bool)
    disk(m, 12, 12, 5)
    m[12, 12] = False  # 1-px hole: filled by the converter
    disk(m, 12, 40, 5)
    m[11:13, 39:41] = False  # 4-px hole: kept
    disk(m, 40, 12, 5)
    n = 3
    disk(m, 40, 40, 5)
    disk(m, 40, 49, 5)  # overlaps the previous disk: the two merge
    n += 1
    m[52:56, 2:6] = True
    m[56:60, 6:10] = True  # touches the square above only at a corner: one instance with 8-connectivity
    n += 1
    if extra_disk:
        disk(m, 24, 56, 4)
        n += 1
    return m, n


def make(workdir: Path) -> FakeData:
    native = workdir / "native"
    top = native / TOP
    nuclei = 0
    tiles = 0
    for p, (patient, count) in enumerate(PATIENTS.items()):
        for k in range(1, count + 1):
            mask, n = draw_mask(extra_disk=(k % 2 == 0))
            image, _, _ = tile(SIZE, SIZE, 700 + 10 * p + k, density=0.0)
            image[mask] = (image[mask] * np.array([0.45, 0.35, 0.7])).astype(np.uint8)
            write_png(top / f"Slide_{patient}" / f"{patient}_{k}.png", rgba(image))
            write_png(top / f"GT_{patient}" / f"{patient}_{k}.png", np.where(mask, 255, 0).astype(np.uint8), mode="L")
            nuclei += n
            tiles += 1
    # macOS leftovers of a hand-extracted zip
    (top / "Slide_01" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    junk = native / "__MACOSX" / TOP / "Slide_01"
    junk.mkdir(parents=True)
    (junk / "._01_1.png").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    archive = zip_tree(native, workdir / "archives" / "TNBC_NucleiSegmentation.zip", macosx_junk=True)
    return FakeData(native_dir=native, archives={"v1.1": archive}, tiles={"all": tiles}, nuclei={"all": nuclei})


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import ChecksumError, InvalidSourceError, UnsafeArchiveError
    from tests.reliability.corpus import (
        TNBC_GT,
        TNBC_IMG,
        Case,
        _colour_no_background,
        _half,
        empty,
        empty_zip,
        escape,
        garbage,
        local_appended,
        native,
        png_of,
        zip_member,
    )

    return [
        Case("hash-local-wrong", "tnbc", local_appended, ChecksumError, ("expected", "delete the file")),
        Case("empty-zip", "tnbc", empty_zip, InvalidSourceError, ("does not contain", "tnbc_nucleisegmentation")),
        Case(
            "zip-dotdot", "tnbc", zip_member("v1.1", escape("TNBC_NucleiSegmentation")), UnsafeArchiveError, ("'..'",)
        ),
        Case("png-garbage-tnbc", "tnbc", native(TNBC_GT, garbage), InvalidSourceError, ("decode",)),
        Case(
            "colour-ground-truth-tnbc",
            "tnbc",
            native(TNBC_GT, png_of(_colour_no_background)),
            InvalidSourceError,
            ("colour channels differ",),
        ),
        Case("size-mismatch-tnbc", "tnbc", native(TNBC_GT, png_of(_half)), InvalidSourceError, ("differs",)),
        Case("empty-png-tnbc", "tnbc", native(TNBC_IMG, empty), InvalidSourceError, ("decode",)),
    ]
