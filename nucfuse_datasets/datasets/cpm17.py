"""CPM-17 (Vu et al., Front. Bioeng. Biotechnol. 2019): 64 H&E tiles of 500×500 or 600×600, train 32 / test 32.

Native layout (a Google Drive *folder* shared by the HoVer-Net authors; no archive, no checksum)::

    cpm17/train/Images/image_NN.png      32 tiles (channel count UNCONFIRMED: RGB or RGBA accepted)
    cpm17/train/Labels/image_NN.mat      ``inst_map``: the instance map (MATLAB v5/v7)
    cpm17/train/Overlay/image_NN.png     renderings (ignored)
    cpm17/test/{Images,Labels,Overlay}/  32 tiles

The same file names occur in both splits, so sample ids are ``<split>_<stem>`` (``train_image_00``).
``inst_map`` is checked to hold non-negative integers (a ``double`` map is cast); the store renumbers
ids 1..N. The tiles mix 20× and 40× scans and no source says which tile is which, so
``meta.magnification`` is left unset. Preparation is per split: an extracted folder holding only ``train/`` (or
only ``test/``) serves that split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, PaperStats, Sources
from nucfuse_datasets.datasets._mat import label_map, load_mat
from nucfuse_datasets.datasets._parallel import Job
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import read_image, to_rgb_uint8
from nucfuse_datasets.io.store import RawSample

__all__ = ["CPM17", "DRIVE_FOLDER"]

#: The CPM-17 sub-folder of the HoVer-Net authors' Drive folder (NucFuseRank list; torch-em ``cpm.py``).
DRIVE_FOLDER = "https://drive.google.com/drive/folders/1sJ4nmkif6j4s2FOGj8j6i_Ye7z9w0TfA"
#: The parent folder announced in vqdang/hover_net issue #5 (2019-07-04).
DRIVE_PARENT = "https://drive.google.com/drive/folders/1l55cv3DuY-f7-JotDN7N5nbNnjbLWchK"

_NUM = re.compile(r"(\d+)")


def _natural_key(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in _NUM.split(text))


@register
class CPM17(NucleiDataset):
    """CPM-17: 32 training + 32 test H&E tiles (500×500 or 600×600, 20× and 40×) with instance maps.

    The source is a Google Drive folder: download it by hand (see ``manual_instructions``).

    Example:
        >>> from nucfuse_datasets import CPM17  # doctest: +SKIP
        >>> test = CPM17(root, split="test")  # doctest: +SKIP
        >>> len(test), test.sample_ids[0]  # doctest: +SKIP
        (32, 'test_image_00')
    """

    name = "cpm17"
    title = "CPM-17"
    description = (
        "Computational Precision Medicine 2017 nuclei segmentation challenge data (MICCAI 2017), as shared by "
        "the HoVer-Net authors: H&E tiles of 500×500 or 600×600 px from 4 cancer types, mixed 20× and 40×, "
        "with instance maps in .mat files."
    )
    license = "UNCONFIRMED (no licence stated by any source found; treat as research-only)"
    citation = (
        "Vu Q.D. et al. Methods for segmentation and classification of digital microscopy tissue images. "
        "Frontiers in Bioengineering and Biotechnology 7:53 (2019)."
    )
    homepage = DRIVE_FOLDER
    resources = (
        Resource(
            key="cpm17",
            filename="cpm17.zip",
            sha256=None,
            hash_source=(
                "none published: the source is a Google Drive folder, zipped on request by Drive; the sha256 of "
                "your zip is recorded on first use"
            ),
            marker="train/Labels",
            split_markers=(("train", "train/Labels"), ("test", "test/Labels")),
            manual=True,
            page=DRIVE_FOLDER,
            note="A Drive folder, not a file: use 'Download' on the folder and save the zip as cpm17.zip.",
        ),
    )
    splits = ("train", "test")
    test_split = "test"
    content_depth = 1  # the folder holding the split folders may lie one level deeper (Drive zips add a top folder)
    magnification = None
    expected_counts = (
        ExpectedCount("train", 32, None, "official CPM-17 split"),
        ExpectedCount("test", 32, None, "official CPM-17 split"),
        # Table 1 and the NucFuseRank dataset list agree on 7,570
        ExpectedCount("all", 64, 7570, "NucFuseRank paper Table 1", tolerance=0.01),
    )
    paper = PaperStats(64, 7570, "4", "500–600", 27.25, 285)
    manual_instructions = (
        f"CPM-17 is shared as a Google Drive folder ({DRIVE_FOLDER}; parent folder {DRIVE_PARENT}), which cannot "
        "be fetched automatically. Open it in a browser, choose 'Download' on the folder (Drive zips it, e.g. "
        "'cpm17-<date>-001.zip'), and either rename the zip to 'cpm17.zip' and put it into <root>/cpm17/, or "
        "extract it so that <root>/cpm17/cpm17/{train,test}/{Images/image_NN.png, Labels/image_NN.mat} exist "
        "(any folder name works as long as it holds train/ and test/). If Drive splits the download into several "
        "zips, extract them all into the same folder."
    )

    def _convert(self, sources: Sources) -> Iterator[Job]:
        base = sources["cpm17"]
        for split in ("train", "test"):
            if not getattr(sources, "wants", lambda _: True)(split):
                continue  # one archive feeds both splits; only the asked-for split is converted
            image_dir, label_dir = base / split / "Images", base / split / "Labels"
            if not image_dir.is_dir() or not label_dir.is_dir():
                raise InvalidSourceError(f"{base / split}: missing Images/ or Labels/ of the CPM-17 {split} split")
            images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() == ".png" and p.name[0] != "."}
            labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() == ".mat" and p.name[0] != "."}
            if set(images) != set(labels):
                raise InvalidSourceError(
                    f"{base / split}: images and labels do not pair up (images without label: "
                    f"{sorted(set(images) - set(labels))[:5]}, labels without image: "
                    f"{sorted(set(labels) - set(images))[:5]})"
                )
            for stem in sorted(images, key=_natural_key):
                yield Job(_convert_one, (base, split, images[stem], labels[stem]))  # read in a worker


def _convert_one(base: Path, split: str, png: Path, mat: Path) -> RawSample:
    """One CPM-17 tile from its PNG and ``.mat``; runs in a worker."""
    image = to_rgb_uint8(read_image(png), png)
    inst = label_map(load_mat(mat, ["inst_map"])["inst_map"], f"{mat}: inst_map")
    if inst.shape != image.shape[:2]:
        raise InvalidSourceError(f"{mat}: inst_map shape {inst.shape} differs from image {image.shape[:2]}")
    return RawSample(
        sample_id=f"{split}_{png.stem}",
        split=split,
        image=image,
        instances=inst,
        meta={
            "original_file": png.relative_to(base.parent).as_posix(),
        },
    )
