"""TNBC (Naylor et al., IEEE TMI 2018): 50 H&E tiles of triple-negative breast cancer with binary masks.

Native layout (Zenodo ``TNBC_NucleiSegmentation.zip``)::

    TNBC_NucleiSegmentation/Slide_XX/XX_N.png   RGBA H&E tiles (512×512), XX = patient 01..11
    TNBC_NucleiSegmentation/GT_XX/XX_N.png      binary ground truth (0/255)
    __MACOSX/...                                (junk, ignored)

Conversion: the ground truth is *binary*, so instances are its connected components
(:func:`nucfuse_datasets.datasets._labels.binary_to_instances`): holes of at most :data:`MAX_HOLE` = 1 pixel
are filled first (annotation rounding), then foreground pixels are grouped with :data:`CONNECTIVITY` = 8
(edge or corner contact). **Nuclei that touch in the mask merge into one instance**; nothing in the source
can separate them. 8-connectivity keeps thin, diagonally drawn parts of one nucleus together (4-connectivity
would split them into fragments) at the cost of merging nuclei that meet only at a corner. The patient id
(``XX``) is ``meta.extra["patient"]``, so splits can group tiles by patient.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, Option, PaperStats, Sources
from nucfuse_datasets.datasets._labels import binary_to_instances, read_binary_mask
from nucfuse_datasets.datasets._parallel import Job
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import read_image, to_rgb_uint8
from nucfuse_datasets.io.store import RawSample

__all__ = ["CONNECTIVITY", "MAX_HOLE", "TNBC"]

TOP = "TNBC_NucleiSegmentation"
#: Pixel connectivity used to turn the binary ground truth into instances.
CONNECTIVITY = 8
#: Holes of at most this many pixels inside the binary ground truth are filled.
MAX_HOLE = 1
_SLIDE = re.compile(r"^Slide_(\d+)$")

V11 = Resource(
    key="v1.1",
    filename="TNBC_NucleiSegmentation.zip",
    urls=("https://zenodo.org/records/2579118/files/TNBC_NucleiSegmentation.zip?download=1",),
    md5="1605712a752b201b57eacc8f866adb4f",
    size=25_232_361,
    hash_source="Zenodo-published md5 and size of record 2579118 (v1.1), as quoted in third-party code",
    marker=TOP,
    page="https://zenodo.org/records/2579118",
)
V1 = Resource(
    key="v1",
    filename="TNBC_NucleiSegmentation.zip",
    urls=("https://zenodo.org/records/1175282/files/TNBC_NucleiSegmentation.zip",),
    sha256="da708c3a988f4ad4b9bbb9283b387faf703f0bc0e5e689927306bd27ea13a57f",
    hash_source="pinned in constantinpape/torch-em@6f71247 histopathology/tnbc.py (Zenodo record 1175282, v1)",
    marker=TOP,
    page="https://zenodo.org/records/1175282",
    note=(
        "The first Zenodo version; whether it is byte-identical to v1.1 is UNCONFIRMED, so it is a separate "
        "source (source='v1'), not a mirror. Both are served under the same file name."
    ),
)


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _pngs(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() == ".png" and not p.name.startswith((".", "._"))
    }


@register
class TNBC(NucleiDataset):
    """TNBC nuclei segmentation: 50 H&E tiles (512×512, 40×) from 11 patients, binary ground truth.

    Args:
        root: data root.
        split: ``"all"`` (the only split).
        download: fetch the zip of the chosen ``source`` when missing.
        transforms: Sample transform.
        **options: ``source=`` ``"v1.1"`` (default; Zenodo record 2579118, md5 and size published) or ``"v1"`` (record
            1175282, sha256 pinned by torch-em). Each source gets its own prepared store.
        progress: progress bars.

    Example:
        >>> from nucfuse_datasets import TNBC  # doctest: +SKIP
        >>> ds = TNBC(root, download=True)  # doctest: +SKIP
        >>> len(ds), ds.meta(0).extra["patient"]  # doctest: +SKIP
        (50, '01')
    """

    name = "tnbc"
    title = "TNBC"
    description = (
        "Triple-negative breast cancer H&E tiles (512×512, 40×) from 11 patients of the Curie Institute, "
        "with binary nucleus masks; instances are the masks' connected components."
    )
    license = "CC BY 4.0"
    citation = (
        "Naylor P., Laé M., Reyal F., Walter T. Segmentation of nuclei in histopathology images by deep "
        "regression of the distance map. IEEE TMI 38(2), 448–459 (2019). Zenodo DOI 10.5281/zenodo.1175282."
    )
    homepage = "https://zenodo.org/records/2579118"
    resources = (V11, V1)
    splits = ("all",)
    test_split = None
    magnification = 40.0
    expected_counts = (
        ExpectedCount("all", 50, 4056, "NucFuseRank paper Table 1", tolerance=0.02),
        ExpectedCount("all", 50, 4022, "NucFuseRank PublicDataSetList", tolerance=0.02),
    )
    paper = PaperStats(50, 4056, "1", "512×512", 20.28, 144)
    manual_instructions = (
        "Zenodo is open: download=True fetches it. By hand: download 'TNBC_NucleiSegmentation.zip' from "
        "https://zenodo.org/records/2579118 (v1.1; or https://zenodo.org/records/1175282 with source='v1') and "
        "put the zip, or its extracted 'TNBC_NucleiSegmentation/' folder, into <root>/tnbc/."
    )

    declared_options = (Option("source", "v1.1", tuple(r.key for r in resources), "which upstream copy"),)
    source: str

    def _convert(self, sources: Sources) -> Iterator[Job]:
        top = sources[self.source] / TOP
        slides = sorted(
            (p for p in top.iterdir() if p.is_dir() and _SLIDE.match(p.name)), key=lambda p: _natural(p.name)
        )
        if not slides:
            raise InvalidSourceError(f"{top}: no 'Slide_XX' folders; not the TNBC layout")
        for slide in slides:
            patient = _SLIDE.match(slide.name).group(1)  # type: ignore[union-attr]
            gt = top / f"GT_{patient}"
            if not gt.is_dir():
                raise InvalidSourceError(f"{slide}: no ground-truth folder {gt.name!r} beside it")
            images, masks = _pngs(slide), _pngs(gt)
            if set(images) != set(masks):
                raise InvalidSourceError(
                    f"{slide} / {gt}: images and ground truth do not pair up (images without GT: "
                    f"{sorted(set(images) - set(masks))[:5]}, GT without image: {sorted(set(masks) - set(images))[:5]})"
                )
            for stem in sorted(images, key=_natural):
                yield Job(_convert_one, (stem, patient, images[stem], masks[stem]))  # read in a worker


def _convert_one(stem: str, patient: str, image_path: Path, mask_path: Path) -> RawSample:
    """One TNBC tile: its image and the connected components of its binary ground truth; runs in a worker."""
    image = to_rgb_uint8(read_image(image_path), image_path)
    mask = read_binary_mask(mask_path)
    if mask.shape != image.shape[:2]:
        raise InvalidSourceError(f"{mask_path}: mask shape {mask.shape} differs from image {image.shape[:2]}")
    instances = binary_to_instances(mask, connectivity=CONNECTIVITY, max_hole=MAX_HOLE)
    return RawSample(
        sample_id=stem,
        split="all",
        image=image,
        instances=instances,
        meta={
            "organ": "breast",
            "magnification": 40.0,
            "original_file": f"{TOP}/Slide_{patient}/{image_path.name}",
            "extra": {"patient": patient},
        },
    )
