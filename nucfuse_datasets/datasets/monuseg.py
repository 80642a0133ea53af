"""MoNuSeg (Kumar et al., IEEE TMI 2017/2020): 51 H&E tiles of 1000×1000 with Aperio XML polygons.

Native layout (the two Google Drive zips)::

    MoNuSeg 2018 Training Data/Tissue Images/TCGA-*.tif    37 LZW-compressed RGB TIFFs
    MoNuSeg 2018 Training Data/Annotations/TCGA-*.xml      Aperio ImageScope XML, one Region per nucleus
    __MACOSX/...                                           (junk, ignored)
    MoNuSegTestData/TCGA-*.tif + TCGA-*.xml                14 PackBits TIFFs with their XML side by side

Conversion: every ``Region``'s vertices (float pixel coordinates, ``X`` = column, slightly outside
the tile in places) are filled in document order, later regions overwriting earlier ones where
they overlap (see :mod:`nucfuse_datasets.datasets._raster`). A region that covers no pixel — the
2-vertex Region 180 of TCGA-50-5931 — is dropped, so every instance is a region that rasterises
to at least one pixel. ``MicronsPerPixel`` is taken from the XML root when present (it is missing
in TCGA-NH-A8F7).

Metadata: ``meta.extra`` holds ``tcga_case``, ``tcga_project`` and ``primary_site`` from the barcode's tissue source
site code (:mod:`nucfuse_datasets.datasets._tcga`, the GDC's table). ``meta.organ`` is the organisers' organ for the
30 original training images and that primary site for the 21 others (7 added training images, 14 test images). The
organisers' "liver" images (TCGA-18, -21, -38, -49, -50) are lung slides by their TSS codes (TCGA-LUSC, TCGA-LUAD);
their ``organ`` stays "liver", as the organisers and the NucFuseRank paper have it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nucfuse_datasets.datasets._aperio_fast import fast_aperio_regions
from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, PaperStats, Sources, files_by_stem
from nucfuse_datasets.datasets._parallel import Job
from nucfuse_datasets.datasets._raster import rasterize
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.datasets._tcga import tcga_fields
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import parse_aperio, read_image, to_rgb_uint8
from nucfuse_datasets.io.store import RawSample

__all__ = ["ORGANS", "TEST_IDS", "MoNuSeg", "parse_aperio_xml"]

#: Organ of each original training image (torch-em ``ORGAN_SPLITS``, from the organisers'
#: "Training_Patient_Organ_information.pdf"). The 7 images added later and the 14 test images have no organ in
#: any primary source we have: theirs is the primary site of their TCGA project (TSS code). The "liver" cases
#: are lung slides by their TSS codes (LUSC, LUAD); the organisers' label is kept, as the paper follows it.
ORGANS: dict[str, str] = {
    **dict.fromkeys(
        ["TCGA-A7-A13E", "TCGA-A7-A13F", "TCGA-AR-A1AK", "TCGA-AR-A1AS", "TCGA-E2-A1B5", "TCGA-E2-A14V"],
        "breast",
    ),
    **dict.fromkeys(
        ["TCGA-B0-5711", "TCGA-HE-7128", "TCGA-HE-7129", "TCGA-HE-7130", "TCGA-B0-5710", "TCGA-B0-5698"],
        "kidney",
    ),
    **dict.fromkeys(
        ["TCGA-18-5592", "TCGA-38-6178", "TCGA-49-4488", "TCGA-50-5931", "TCGA-21-5784", "TCGA-21-5786"],
        "liver",
    ),
    **dict.fromkeys(
        ["TCGA-G9-6336", "TCGA-G9-6348", "TCGA-G9-6356", "TCGA-G9-6363", "TCGA-CH-5767", "TCGA-G9-6362"],
        "prostate",
    ),
    **dict.fromkeys(["TCGA-DK-A2I6", "TCGA-G2-A2EK"], "bladder"),
    **dict.fromkeys(["TCGA-AY-A8YK", "TCGA-NH-A8F7"], "colon"),
    **dict.fromkeys(["TCGA-KB-A93J", "TCGA-RD-A8N9"], "stomach"),
}

#: The 7 training images "not part of the original MoNuSeg dataset".
EXTRA_TRAIN_IDS = (
    "TCGA-UZ-A9PN",
    "TCGA-F9-A8NY",
    "TCGA-MH-A561",
    "TCGA-XS-A8TJ",
    "TCGA-UZ-A9PJ",
    "TCGA-FG-A87N",
    "TCGA-BC-A217",
)

#: The official test set (case prefixes of the 14 test images).
TEST_IDS = (
    "TCGA-2Z-A9J9",
    "TCGA-44-2665",
    "TCGA-69-7764",
    "TCGA-A6-6782",
    "TCGA-AC-A2FO",
    "TCGA-AO-A0J2",
    "TCGA-CU-A0YN",
    "TCGA-EJ-A46H",
    "TCGA-FG-A4MU",
    "TCGA-GL-6846",
    "TCGA-HC-7209",
    "TCGA-HT-8564",
    "TCGA-IZ-8196",
    "TCGA-ZF-A9R5",
)

TRAIN_DIR = "MoNuSeg 2018 Training Data"
TEST_DIR = "MoNuSegTestData"


def parse_aperio_xml(path: Path) -> tuple[list[np.ndarray], float | None]:
    """Regions of a MoNuSeg Aperio XML file as ``N×2`` (x, y) float arrays, and ``MicronsPerPixel``.

    Regions are returned in document order. A Region with fewer than 3 vertices is returned as is
    (it fills no pixel).

    Raises:
        InvalidSourceError: unsafe or malformed XML, a vertex without numeric ``X``/``Y``, or no
            ``Region`` at all.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.xml"
        >>> _ = p.write_text('<Annotations MicronsPerPixel="0.25"><Annotation Id="1"><Regions>'
        ...     '<Region Id="1"><Vertices><Vertex X="1.5" Y="2"/><Vertex X="4" Y="2"/>'
        ...     '<Vertex X="4" Y="5"/></Vertices></Region></Regions></Annotation></Annotations>')
        >>> regions, mpp = parse_aperio_xml(p)
        >>> regions[0].tolist(), mpp
        ([[1.5, 2.0], [4.0, 2.0], [4.0, 5.0]], 0.25)
    """
    fast = fast_aperio_regions(path)  # regular files: same result, several times faster
    if fast is not None:
        root, regions = fast
    else:
        root, annotations = parse_aperio(path)
        regions = [xy for ann in annotations for _, xy in ann.regions]
    mpp_text = root.get("MicronsPerPixel")
    try:
        mpp = float(mpp_text) if mpp_text not in (None, "") else None
    except ValueError:
        mpp = None
    if not regions:
        raise InvalidSourceError(f"{path}: no <Region> elements; not a MoNuSeg annotation file")
    return regions, mpp


def _pairs(image_dir: Path, xml_dir: Path) -> list[tuple[str, Path, Path]]:
    tifs = files_by_stem(image_dir, (".tif", ".tiff"))
    xmls = files_by_stem(xml_dir, (".xml",))
    if set(tifs) != set(xmls):
        only_img = sorted(set(tifs) - set(xmls))
        only_xml = sorted(set(xmls) - set(tifs))
        raise InvalidSourceError(
            f"{image_dir} / {xml_dir}: images and annotations do not pair up "
            f"(images without XML: {only_img[:5]}, XML without image: {only_xml[:5]})"
        )
    return [(stem, tifs[stem], xmls[stem]) for stem in sorted(tifs)]


@register
class MoNuSeg(NucleiDataset):
    """MoNuSeg 2018: 37 training + 14 test H&E tiles (1000×1000, 40×), nuclei as polygons.

    Example:
        >>> from nucfuse_datasets import MoNuSeg  # doctest: +SKIP
        >>> train = MoNuSeg(root, split="train", download=True)  # doctest: +SKIP
        >>> len(train)  # doctest: +SKIP
        37
    """

    name = "monuseg"
    title = "MoNuSeg"
    description = (
        "Multi-organ nuclei segmentation challenge (MICCAI 2018): H&E tiles of 1000×1000 px at 40× "
        "from TCGA slides of 9 organs, every nucleus outlined as a polygon in Aperio XML."
    )
    license = "CC BY-NC-SA 4.0"
    citation = (
        "Kumar N. et al. A dataset and a technique for generalized nuclear segmentation for computational "
        "pathology. IEEE TMI 36(7), 2017. Kumar N. et al. A multi-organ nucleus segmentation challenge. "
        "IEEE TMI 39(5), 2020."
    )
    homepage = "https://monuseg.grand-challenge.org/Data/"
    resources = (
        Resource(
            key="train",
            filename="MoNuSeg 2018 Training Data.zip",
            urls=("https://drive.google.com/uc?export=download&id=1ZgqFJomqQGNnsx7w7QBzQQMVA16lbVCA",),
            sha256="25d3d3185bb2970b397cafa72eb664c9b4d24294aee382e7e3df9885affce742",
            hash_source="pinned in constantinpape/torch-em@6f71247 histopathology/monuseg.py (no publisher hash)",
            marker=f"{TRAIN_DIR}/Annotations",
            page="https://monuseg.grand-challenge.org/Data/",
            splits=("train",),
        ),
        Resource(
            key="test",
            filename="MoNuSegTestData.zip",
            urls=("https://drive.google.com/uc?export=download&id=1NKkSQ5T0ZNQ8aUhh0a8Dt2YKYCQXIViw",),
            sha256="13e522387ae8b1bcc0530e13ff9c7b4d91ec74959ef6f6e57747368d7ee6f88a",
            hash_source="pinned in constantinpape/torch-em@6f71247 histopathology/monuseg.py (no publisher hash)",
            marker=TEST_DIR,
            page="https://monuseg.grand-challenge.org/Data/",
            splits=("test",),
        ),
    )
    splits = ("train", "test")
    test_split = "test"
    magnification = 40.0
    expected_counts = (
        ExpectedCount("train", 37, None, "training zip: 30 original + 7 added images"),
        ExpectedCount("test", 14, None, "official test set"),
        # Table 1 says 30,827 nuclei; the NucFuseRank list says 28,846: counts depend on the rasteriser
        ExpectedCount("all", 51, 30827, "NucFuseRank paper Table 1", tolerance=0.08),
    )
    paper = PaperStats(51, 30827, "9", "1000×1000", 39.61, 592)
    converter_version = 2  # 2: tcga_project and primary_site in meta.extra, organ of the 21 others from the TSS code
    manual_instructions = (
        "Google Drive often refuses automated downloads ('too many accesses'). Then download the two files "
        "by hand from https://monuseg.grand-challenge.org/Data/ (training data and test data links) and put "
        "'MoNuSeg 2018 Training Data.zip' and 'MoNuSegTestData.zip' (or their extracted folders) into "
        "<root>/monuseg/."
    )

    def _convert(self, sources: Sources) -> Iterator[Job]:
        layouts = []
        if sources.wants("train"):  # preparation is per split: the test split needs only MoNuSegTestData
            train = sources["train"] / TRAIN_DIR
            layouts.append(("train", train / "Tissue Images", train / "Annotations"))
        if sources.wants("test"):
            test = sources["test"] / TEST_DIR
            layouts.append(("test", test, test))
        for split, image_dir, xml_dir in layouts:
            if not image_dir.is_dir():
                raise InvalidSourceError(f"{image_dir}: missing folder of the MoNuSeg {split} layout")
            for stem, tif, xml in _pairs(image_dir, xml_dir):
                yield Job(_convert_one, (stem, split, tif, xml))  # read and rasterised in a worker


def _convert_one(stem: str, split: str, tif: Path, xml: Path) -> RawSample:
    """One MoNuSeg tile: its TIFF and the rasterised regions of its XML; runs in a worker."""
    image = to_rgb_uint8(read_image(tif), tif)
    regions, mpp = parse_aperio_xml(xml)
    instances, _ = rasterize(regions, image.shape[:2])
    tcga = tcga_fields(stem)  # tcga_case, tcga_project, primary_site (the barcode's TSS code)
    case = tcga.get("tcga_case", "")
    extra: dict[str, str | bool] = {**tcga}
    if split == "train":
        extra["added_2018"] = case in EXTRA_TRAIN_IDS
    organ = ORGANS.get(case) or tcga.get("primary_site")  # the organisers' organ first
    return RawSample(
        sample_id=stem,
        split=split,
        image=image,
        instances=instances,
        meta={
            "organ": organ,
            "magnification": 40.0,
            "mpp": mpp,
            "original_file": f"{TRAIN_DIR}/Tissue Images/{tif.name}" if split == "train" else f"{TEST_DIR}/{tif.name}",
            "extra": extra,
        },
    )
