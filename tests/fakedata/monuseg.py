"""Fake MoNuSeg: the two Drive zips' layouts with LZW/PackBits TIFFs and Aperio XML quirks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fakedata import FakeData
from tests.fakedata._common import aperio_xml, fake_polygons, paint_nuclei, tile, write_tiff_pil, zip_tree

NAME = "monuseg"
TRAIN = ["TCGA-50-5931-01Z-00-DX1", "TCGA-A7-A13E-01Z-00-DX1", "TCGA-NH-A8F7-01A-01-TS1"]
TEST = ["TCGA-2Z-A9J9-01A-01-TS1", "TCGA-HT-8564-01Z-00-DX1"]
SIZE = 96
NUCLEI = 8  # non-degenerate regions per tile


def _write(folder_img: Path, folder_xml: Path, stem: str, seed: int, compression: str, mpp: float | None) -> None:
    rng = np.random.default_rng(seed)
    image, _, _ = tile(SIZE, SIZE, seed, density=0.0)
    polys = fake_polygons(SIZE, SIZE, rng, NUCLEI)
    write_tiff_pil(folder_img / f"{stem}.tif", paint_nuclei(image, polys), compression=compression)
    degenerate = np.array([[10.25, 10.5], [14.75, 12.0]])  # a 2-vertex Region (fills no pixel)
    regions = [*polys[:3], degenerate, *polys[3:]]
    (folder_xml / f"{stem}.xml").write_text(aperio_xml(regions, mpp=mpp))


def make(workdir: Path) -> FakeData:
    native = workdir / "native"
    train = native / "MoNuSeg 2018 Training Data"
    (train / "Tissue Images").mkdir(parents=True)
    (train / "Annotations").mkdir(parents=True)
    for i, stem in enumerate(TRAIN):
        mpp = None if stem.startswith("TCGA-NH-A8F7") else 0.2468  # NH-A8F7 has no MicronsPerPixel
        _write(train / "Tissue Images", train / "Annotations", stem, i, "tiff_lzw", mpp)
    test = native / "MoNuSegTestData"
    test.mkdir(parents=True)
    for i, stem in enumerate(TEST):
        _write(test, test, stem, 100 + i, "packbits", 0.2527)
    archives = workdir / "archives"
    staging_train = workdir / "staging-train"
    staging_test = workdir / "staging-test"
    import shutil

    shutil.copytree(train, staging_train / train.name)
    shutil.copytree(test, staging_test / test.name)
    return FakeData(
        native_dir=native,
        archives={
            "train": zip_tree(staging_train, archives / "MoNuSeg 2018 Training Data.zip", macosx_junk=True),
            "test": zip_tree(staging_test, archives / "MoNuSegTestData.zip"),
        },
        tiles={"train": len(TRAIN), "test": len(TEST), "all": len(TRAIN) + len(TEST)},
        nuclei={
            "train": NUCLEI * len(TRAIN),
            "test": NUCLEI * len(TEST),
            "all": NUCLEI * (len(TRAIN) + len(TEST)),
        },
    )


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import ChecksumError, DatasetNotFoundError, InvalidSourceError
    from tests.reliability.corpus import (
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        MONUSEG_EMPTY,
        MONUSEG_TRAIN_TIF,
        MONUSEG_TRAIN_XML,
        NO_REGIONS,
        Case,
        _empty_folders,
        _grey,
        download_tampered,
        empty,
        garbage,
        misnamed_folder,
        native,
        renamed,
        same_stem,
        text,
        tiff_of,
        truncated,
    )

    return [
        Case("hash-download-wrong", "monuseg", download_tampered, ChecksumError, ("expected", "discarded", "by hand")),
        Case(
            "archive-renamed-by-browser",
            "monuseg",
            renamed("test", "MoNuSegTestData (1).zip", pinned=True),
            DatasetNotFoundError,
            ("download=true",),
        ),
        Case("folder-misnamed", "monuseg", misnamed_folder, DatasetNotFoundError, ("annotations",)),
        Case(
            "xml-billion-laughs-monuseg",
            "monuseg",
            native(MONUSEG_TRAIN_XML, text(BILLION_LAUGHS)),
            InvalidSourceError,
            ("refused",),
            max_seconds=2.0,
        ),
        Case(
            "xml-external-entity-monuseg",
            "monuseg",
            native(MONUSEG_TRAIN_XML, text(EXTERNAL_ENTITY)),
            InvalidSourceError,
            ("refused",),
            max_seconds=2.0,
        ),
        Case(
            "xml-truncated-monuseg", "monuseg", native(MONUSEG_TRAIN_XML, truncated(0.5)), InvalidSourceError, ("xml",)
        ),
        Case(
            "tiff-truncated-monuseg",
            "monuseg",
            native(MONUSEG_TRAIN_TIF, truncated(0.3)),
            InvalidSourceError,
            ("tiff", "truncated or damaged", "extract it again"),
        ),
        Case(
            "tiff-garbage-monuseg",
            "monuseg",
            native(MONUSEG_TRAIN_TIF, lambda p: b"II*\x00" + garbage(p)),
            InvalidSourceError,
            ("tiff",),
        ),
        Case(
            "greyscale-tiff-monuseg",
            "monuseg",
            native(MONUSEG_TRAIN_TIF, tiff_of(_grey)),
            InvalidSourceError,
            ("greyscale",),
        ),
        Case("empty-xml-monuseg", "monuseg", native(MONUSEG_TRAIN_XML, empty), InvalidSourceError, ("xml",)),
        Case(
            "xml-without-regions-monuseg",
            "monuseg",
            native(MONUSEG_TRAIN_XML, text(NO_REGIONS)),
            InvalidSourceError,
            ("region",),
        ),
        Case(
            "duplicate-tif-tiff-monuseg",
            "monuseg",
            same_stem("MoNuSegTestData/*.tif", ".tiff"),
            InvalidSourceError,
            ("both",),
        ),
        Case(
            "empty-extracted-folders-monuseg",
            "monuseg",
            lambda ctx: _empty_folders(ctx, MONUSEG_EMPTY),
            InvalidSourceError,
            ("produced no samples", "searched", "nucfuse info monuseg"),
            rerun=False,
        ),
    ]
