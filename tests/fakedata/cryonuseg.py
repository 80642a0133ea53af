"""Fake CryoNuSeg (Kaggle zip, no top folder): RGB TIFF tiles and three mark-ups, two with doubled folder names.

Mark-up ``a1-round2`` adds one nucleus per tile to ``a1``; mark-up ``a2`` splits one nucleus of ``a1`` in two.
Decoy folders (``label masks``, ``mask binary``) sit beside ``label masks modify``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tests.fakedata import FakeData
from tests.fakedata._common import tile, write_png, write_tiff, write_tiff_pil, zip_tree

NAME = "cryonuseg"
SIZE = 64
STEMS = ["Human_AdrenalGland_01", "Human_Larynx_02", "Human_LymphNodes_03"]
ORGANS = {"Human_AdrenalGland_01": "adrenal gland", "Human_Larynx_02": "larynx", "Human_LymphNodes_03": "lymph nodes"}
A1 = "Annotator 1 (biologist)"
A1R2 = "Annotator 1 (biologist second round of manual marks up)"
A2 = "Annotator 2 (bioinformatician)"
#: annotator option -> folder holding 'label masks modify' (doubled names for the second and third mark-ups)
FOLDERS = {"a1": A1, "a1-round2": f"{A1R2}/{A1R2}", "a2": f"{A2}/{A2}"}
#: nuclei each mark-up has per tile beyond annotator 1's first round (see :func:`markups`)
EXTRA_PER_TILE = {"a1": 0, "a1-round2": 1, "a2": 1}


def markups(inst: np.ndarray) -> dict[str, np.ndarray]:
    """The three mark-ups of one tile, derived from one synthetic instance map."""
    a1 = inst.astype(np.int32)
    round2 = a1.copy()
    free = np.argwhere(np.lib.stride_tricks.sliding_window_view(a1, (4, 4)).max(axis=(2, 3)) == 0)
    y, x = free[0]
    round2[y : y + 4, x : x + 4] = a1.max() + 1  # a nucleus the first round missed, on empty background
    a2 = a1.copy()
    ids, areas = np.unique(a1[a1 > 0], return_counts=True)
    big = ids[np.argmax(areas)]
    cols = np.nonzero((a1 == big).any(axis=0))[0]
    split = (a1 == big) & (np.arange(SIZE)[None, :] >= (cols.min() + cols.max() + 1) // 2)
    a2[split] = a1.max() + 1  # annotator 2 sees two nuclei there
    return {"a1": a1, "a1-round2": round2, "a2": a2}


def make(workdir: Path, ids: Sequence[str] | None = None) -> FakeData:
    """Write the fake; ``ids`` (real names such as ``Human_Skin_02``) replace :data:`STEMS`."""
    native = workdir / "native"
    nuclei = 0
    stems = STEMS if ids is None else list(ids)
    for i, stem in enumerate(stems):
        image, inst, _ = tile(SIZE, SIZE, 1200 + i)
        nuclei += int(np.unique(inst).size - 1)
        write_tiff_pil(native / "tissue images" / f"{stem}.tif", image)
        for key, labels in markups(inst).items():
            folder = native / FOLDERS[key]
            # uint16 for annotator 1, int32 for annotator 2: both integer TIFFs
            write_tiff(
                folder / "label masks modify" / f"{stem}.tif", labels.astype(np.uint16 if key != "a2" else np.int32)
            )
            decoy = labels.astype(np.uint16)
            decoy[0:2, 0:2] = labels.max() + 1  # the overlap-as-new-label variant: one label more
            write_tiff(folder / "label masks" / f"{stem}.tif", decoy)
            write_png(folder / "mask binary" / f"{stem}.png", np.where(labels > 0, 255, 0).astype(np.uint8), mode="L")
    archive = zip_tree(native, workdir / "archives" / "segmentation-of-nuclei-in-cryosectioned-he-images.zip")
    return FakeData(
        native_dir=native,
        archives={"main": archive},
        tiles={"all": len(stems)},
        nuclei={"all": nuclei},
        options={},
    )


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import InvalidSourceError, ManualDownloadRequired, UnexpectedContentError
    from tests.reliability.corpus import (
        CRYO_IMG,
        CRYO_LABEL,
        Case,
        _negative_label,
        _rgb16,
        local_html,
        local_truncated,
        native,
        renamed,
        same_stem,
        tiff_of,
    )

    return [
        Case("html-local-unpinned", "cryonuseg", local_html(pinned=False), UnexpectedContentError, ("html page",)),
        Case(
            "truncated-zip-unpinned",
            "cryonuseg",
            local_truncated("main", 0.6, pinned=False),
            InvalidSourceError,
            ("truncated",),
        ),
        Case(
            "kaggle-archive-zip",
            "cryonuseg",
            renamed("main", "archive.zip", pinned=False),
            ManualDownloadRequired,
            ("rename it",),
        ),
        Case(
            "16bit-rgb-tiff-cryonuseg", "cryonuseg", native(CRYO_IMG, tiff_of(_rgb16)), InvalidSourceError, ("8-bit",)
        ),
        Case(
            "label-negative-tiff-cryonuseg",
            "cryonuseg",
            native(CRYO_LABEL, tiff_of(_negative_label)),
            InvalidSourceError,
            ("negative",),
        ),
        Case(
            "duplicate-tif-tiff-cryonuseg", "cryonuseg", same_stem(CRYO_LABEL, ".tiff"), InvalidSourceError, ("both",)
        ),
    ]
