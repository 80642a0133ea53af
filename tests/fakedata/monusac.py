"""Fake MoNuSAC: per-patient folders with .svs/.tif/.xml, RGBA and RGB TIFFs, a test tile without .tif,
Ambiguous regions, Macrophages, stray class names and the three sub-image name styles (``_001``, ``_1`` and
the prostate files' hyphen, ``-1``).

Every sub-image's nuclei are outlines from ``fake_polygons`` (none hidden by another), written as
one Annotation per class in the outlines' order. Stray (``Description``, ``1``) and ``Ambiguous``
regions are extra and never become instances.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.fakedata import FakeData
from tests.fakedata._common import aperio_xml, fake_polygons, paint_nuclei, rgba, tile, write_tiff, zip_tree

NAME = "monusac"
TRAIN_DIR = "MoNuSAC_images_and_annotations"
TEST_DIR = "MoNuSAC Testing Data and Annotations"


@dataclass
class Sub:
    """One fake sub-image and what its XML holds."""

    patient: str
    suffix: str
    h: int
    w: int
    n: int  # nucleus outlines (all become instances)
    macrophage: bool = False  # 2 of the outlines are in a Macrophage annotation
    empty_macrophage: bool = False  # a Macrophage annotation without regions
    ambiguous: bool = False  # an Ambiguous rectangle (becomes the ignore mask)
    stray: bool = False  # "Description" (2 regions) and "1" (1 region) annotations
    rgb: bool = False  # a 3-channel .tif (the others are RGBA)
    tif: bool = True  # False: only .svs + .xml (the missing-tif quirk)
    sep: str = "_"  # "-": the hyphen style of the organisers' prostate sub-images (TCGA-G9-6342-01Z-00-DX1-1)

    @property
    def stem(self) -> str:
        return f"{self.patient}{self.sep}{self.suffix}"


TRAIN = [
    Sub("TCGA-55-1594-01Z-00-DX1", "001", 64, 80, 6),  # lung, "_001" style
    Sub("TCGA-55-1594-01Z-00-DX1", "002", 40, 90, 4, rgb=True),  # small tile, RGB tif
    Sub("TCGA-5P-A9K0-01Z-00-DX1", "1", 72, 72, 6, macrophage=True),  # kidney, "_1" style
    Sub("TCGA-G9-6342-01Z-00-DX1", "1", 48, 56, 4, sep="-"),  # prostate, "-1" style
]
TEST = [
    Sub("TCGA-2Z-A9JG-01Z-00-DX1", "1", 64, 64, 6, ambiguous=True),
    Sub("TCGA-2Z-A9JG-01Z-00-DX1", "2", 64, 64, 6, tif=False),  # .svs + .xml only
    Sub("TCGA-F9-A8NY-01Z-00-DX1", "1", 64, 64, 6, stray=True, empty_macrophage=True),
]
#: The Ambiguous rectangle (x0, y0, x1, y1) of the ambiguous sub-image, in pixel-centre coordinates.
AMBIGUOUS_BOX = (40, 4, 56, 20)
N_STRAY_REGIONS = {"Description": 2, "1": 1}


def ambiguous_pixels() -> int:
    x0, y0, x1, y1 = AMBIGUOUS_BOX
    return (x1 - x0 + 1) * (y1 - y0 + 1)


def image_of(sub: Sub, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    image, _, _ = tile(sub.h, sub.w, seed, density=0.0)
    polys = fake_polygons(sub.h, sub.w, rng, sub.n)
    return paint_nuclei(image, polys), polys


def _xml(sub: Sub, polys: list[np.ndarray]) -> str:
    half = len(polys) // 2
    groups: dict[str, list[np.ndarray]] = {}
    if sub.macrophage:
        groups = {"Epithelial": polys[:2], "Macrophage": polys[2:4], "Lymphocyte": polys[4:]}
    else:
        groups = {"Epithelial": polys[:half]}
        if sub.stray:
            groups[""] = [np.array([[5, 40], [15, 40], [15, 50], [5, 50]], float)] * 2  # Attribute "Description"
            groups["1"] = [np.array([[20, 40], [30, 40], [30, 50]], float)]
        groups["Lymphocyte"] = polys[half:]
    if sub.empty_macrophage:
        groups["Macrophage"] = []
    if sub.ambiguous:
        x0, y0, x1, y1 = AMBIGUOUS_BOX
        groups["Ambiguous"] = [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)]
    return aperio_xml([], mpp=None, classes=groups)


def _write(split_dir: Path, sub: Sub, seed: int) -> None:
    folder = split_dir / sub.patient
    folder.mkdir(parents=True, exist_ok=True)
    image, polys = image_of(sub, seed)
    import tifffile

    # the .svs: a plain tiled RGB TIFF whose level 0 is the sub-image
    tifffile.imwrite(folder / f"{sub.stem}.svs", image, photometric="rgb", tile=(16, 16))
    if sub.tif:
        write_tiff(folder / f"{sub.stem}.tif", image if sub.rgb else rgba(image))
    (folder / f"{sub.stem}.xml").write_text(_xml(sub, polys))


def seed_of(split: str, i: int) -> int:
    return (500 if split == "train" else 600) + i


def make(workdir: Path) -> FakeData:
    native = workdir / "native"
    for split, subs, top in (("train", TRAIN, TRAIN_DIR), ("test", TEST, TEST_DIR)):
        for i, sub in enumerate(subs):
            _write(native / top, sub, seed_of(split, i))
    archives = workdir / "archives"
    out = {}
    for key, top in (("train", TRAIN_DIR), ("test", TEST_DIR)):
        staging = workdir / f"staging-{key}"
        shutil.copytree(native / top, staging / top)
        out[key] = zip_tree(staging, archives / f"{top}.zip", macosx_junk=key == "test")
    n_train = sum(s.n for s in TRAIN)
    n_test = sum(s.n for s in TEST)
    return FakeData(
        native_dir=native,
        archives=out,
        tiles={"train": len(TRAIN), "test": len(TEST), "all": len(TRAIN) + len(TEST)},
        nuclei={"train": n_train, "test": n_test, "all": n_train + n_test},
    )


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import InvalidSourceError, UnsafeArchiveError
    from tests.reliability.corpus import (
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        MONUSAC_TEST,
        MONUSAC_XML,
        PARAMETER_ENTITY,
        Case,
        empty,
        escape,
        garbage,
        native,
        same_stem,
        text,
        truncated,
        zip_member,
    )

    return [
        Case(
            "zip-backslash-dotdot",
            "monusac",
            zip_member("train", lambda ctx: escape("MoNuSAC_images_and_annotations")(ctx).replace("/", "\\")),
            UnsafeArchiveError,
            ("'..'",),
        ),
        Case(
            "xml-billion-laughs-monusac",
            "monusac",
            native(MONUSAC_XML, text(BILLION_LAUGHS)),
            InvalidSourceError,
            ("refused",),
            max_seconds=2.0,
        ),
        Case(
            "xml-external-entity-monusac",
            "monusac",
            native(MONUSAC_XML, text(EXTERNAL_ENTITY)),
            InvalidSourceError,
            ("refused",),
            max_seconds=2.0,
        ),
        Case(
            "xml-parameter-entity-monusac",
            "monusac",
            native(MONUSAC_XML, text(PARAMETER_ENTITY)),
            InvalidSourceError,
            ("refused",),
            max_seconds=2.0,
        ),
        Case("xml-truncated-monusac", "monusac", native(MONUSAC_XML, truncated(0.5)), InvalidSourceError, ("xml",)),
        Case(
            "xml-vertex-not-a-number-monusac",
            "monusac",
            native(MONUSAC_XML, lambda p: p.read_bytes().replace(b'X="', b'X="x', 1)),
            InvalidSourceError,
            ("non-numeric",),
        ),
        Case(
            "svs-only-and-corrupt-monusac",
            "monusac",
            native(f"{MONUSAC_TEST}/TCGA-2Z-A9JG-01Z-00-DX1/TCGA-2Z-A9JG-01Z-00-DX1_2.svs", garbage),
            InvalidSourceError,
            ("missing", "cannot be read"),
        ),
        Case("empty-xml-monusac", "monusac", native(MONUSAC_XML, empty), InvalidSourceError, ("xml",)),
        Case(
            "duplicate-tif-tiff-monusac",
            "monusac",
            same_stem("MoNuSAC_images_and_annotations/*/*.tif", ".TIF"),
            InvalidSourceError,
            ("both",),
        ),
    ]
