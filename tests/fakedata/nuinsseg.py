"""Fake NuInsSeg (Zenodo zip): organ folders with typos, PNG tiles, uint16 PackBits label TIFFs, vague areas.

Quirks reproduced: ``human salivory gland`` / ``human tonsile`` folder names; RGBA and RGB tiles; the unused
``label masks`` variant (with an extra overlap label) beside ``label masks modify``; vague areas under
``vague areas/mask binary`` and, once, ``vague areas/mask binary_vague``; a tile without any vague-area file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tests.fakedata import FakeData
from tests.fakedata._common import rgba, tile, write_png, write_tiff_pil, zip_tree

NAME = "nuinsseg"
TOP = "NuInsSeg"
SIZE = 64
#: folder -> [(stem, alpha?, vague sub-folder or None, vague rectangle (y0, y1, x0, x1) or None)]
ORGANS: dict[str, list[tuple[str, bool, str | None, tuple[int, int, int, int] | None]]] = {
    "human bladder": [
        ("human_bladder_01", True, "mask binary", (4, 14, 6, 26)),
        ("human_bladder_02", True, "mask binary", None),  # an all-zero vague mask
    ],
    "human salivory gland": [("human_salivory_gland_01", False, "mask binary_vague", (30, 40, 30, 37))],
    "human tonsile": [("human_tonsile_01", False, None, None)],
    "mouse heart": [
        ("mouse_heart_01", False, "mask binary", (50, 60, 0, 64)),
        ("mouse_heart_02", True, None, None),
    ],
}


def _rect_mask(rect: tuple[int, int, int, int] | None) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.uint8)
    if rect is not None:
        y0, y1, x0, x1 = rect
        m[y0:y1, x0:x1] = 255
    return m


def expected() -> dict[str, dict[str, object]]:
    """Per stem: folder and vague-area pixel count (None = no vague file), from ORGANS."""
    out: dict[str, dict[str, object]] = {}
    for folder, tiles in ORGANS.items():
        for stem, _, sub, rect in tiles:
            out[stem] = {"folder": folder, "vague": None if sub is None else int((_rect_mask(rect) > 0).sum())}
    return out


def organs_of(ids: Sequence[str]) -> dict[str, list[tuple[str, bool, str | None, tuple[int, int, int, int] | None]]]:
    """Real stems (``human_brain_8``) grouped under a folder named after the stem without its number (the real
    folder names differ in places, e.g. ``human salivory gland`` for ``human_salivory_*``; the sample id is the
    stem either way). Every tile gets an all-zero vague mask."""
    out: dict[str, list[tuple[str, bool, str | None, tuple[int, int, int, int] | None]]] = {}
    for sid in ids:
        folder = re.sub(r"_\d+$", "", sid).replace("_", " ")
        out.setdefault(folder, []).append((sid, False, "mask binary", None))
    return out


def make(workdir: Path, ids: Sequence[str] | None = None) -> FakeData:
    """Write the fake; ``ids`` (real stems such as ``mouse_femur_01``) replace the tiles of :data:`ORGANS`."""
    native = workdir / "native"
    nuclei = 0
    tiles = 0
    seed = 900
    for folder, entries in (ORGANS if ids is None else organs_of(ids)).items():
        base = native / TOP / folder
        for stem, alpha, vague_sub, rect in entries:
            seed += 1
            image, inst, _ = tile(SIZE, SIZE, seed)
            write_png(base / "tissue images" / f"{stem}.png", rgba(image) if alpha else image)
            label = inst.astype(np.uint16)
            write_tiff_pil(base / "label masks modify" / f"{stem}.tif", label, compression="packbits")
            # the unused variant: overlap pixels carry an extra label
            overlap = label.copy()
            overlap[0:3, 0:3] = label.max() + 1
            write_tiff_pil(base / "label masks" / f"{stem}.tif", overlap, compression="packbits")
            write_png(base / "mask binary" / f"{stem}.png", np.where(inst > 0, 255, 0).astype(np.uint8), mode="L")
            if vague_sub is not None:
                write_png(base / "vague areas" / vague_sub / f"{stem}.png", _rect_mask(rect), mode="L")
            nuclei += int(np.unique(label).size - 1)
            tiles += 1
        (base / "Imagj_zips").mkdir(parents=True, exist_ok=True)
        (base / "Imagj_zips" / f"{entries[0][0]}.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    archive = zip_tree(native, workdir / "archives" / "NuInsSeg.zip")
    return FakeData(native_dir=native, archives={"main": archive}, tiles={"all": tiles}, nuclei={"all": nuclei})


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import InvalidSourceError
    from tests.reliability.corpus import (
        NUINS_IMG,
        NUINS_LABEL,
        NUINS_VAGUE,
        Case,
        _float_label,
        _half,
        garbage,
        native,
        np,
        png_of,
        same_stem,
        tiff_of,
    )

    return [
        Case("tiff-garbage-nuinsseg-label", "nuinsseg", native(NUINS_LABEL, garbage), InvalidSourceError, ("decode",)),
        Case(
            "size-mismatch-nuinsseg-vague",
            "nuinsseg",
            native(NUINS_VAGUE, png_of(_half)),
            InvalidSourceError,
            ("differs",),
        ),
        Case(
            "16bit-png-nuinsseg",
            "nuinsseg",
            native(NUINS_IMG, png_of(lambda h, w: np.full((h, w), 1000, np.uint16))),
            InvalidSourceError,
            ("8-bit",),
        ),
        Case(
            "label-float-tiff-nuinsseg",
            "nuinsseg",
            native(NUINS_LABEL, tiff_of(_float_label)),
            InvalidSourceError,
            ("non-integer",),
        ),
        Case("duplicate-tif-tiff-nuinsseg", "nuinsseg", same_stem(NUINS_LABEL, ".tiff"), InvalidSourceError, ("both",)),
    ]
