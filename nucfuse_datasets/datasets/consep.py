"""CoNSeP (Graham et al., Medical Image Analysis 2019, HoVer-Net): 41 colorectal H&E tiles of 1000×1000.

Native layout (``consep.zip``, gated behind a Warwick sign-in since about November 2023)::

    CoNSeP/README.txt
    CoNSeP/Train/Images/train_<N>.png     27 tiles (RGB or RGBA PNG)
    CoNSeP/Train/Labels/train_<N>.mat     inst_map, type_map, inst_type, inst_centroid
    CoNSeP/Train/Overlay/                 (renderings, ignored)
    CoNSeP/Test/{Images,Labels,Overlay}/test_<N>.*   14 tiles

Conversion:

* ``inst_map`` (stored as ``double`` in some releases) is checked to hold non-negative integers and
  cast; the store renumbers the ids 1..N in ascending order.
* The class of instance ``k`` is ``inst_type[k - 1]`` ("in order of inst_map id"). When the ids have
  gaps and ``inst_type`` has one entry per *present* id instead, the entries are matched to the sorted
  present ids. Any other length is refused. Without ``inst_type`` the class is the majority value of
  ``type_map`` inside the instance.
* ``classes="original"`` (default) keeps the 7 source classes; ``classes="merged"`` applies the
  HoVer-Net paper's merge (3+4 → epithelial, 5+6+7 → spindle-shaped) and gets its own prepared store.

Preparation is per split: an extracted folder holding only ``Train/`` (or only ``Test/``) serves that split
(:attr:`Resource.split_markers <nucfuse_datasets.io.download.Resource.split_markers>`); ``consep.zip`` serves both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, Option, PaperStats, Sources
from nucfuse_datasets.datasets._mat import integral_array, label_map, load_mat
from nucfuse_datasets.datasets._parallel import Job
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import read_image, to_rgb_uint8
from nucfuse_datasets.io.store import RawSample

__all__ = ["MERGE", "MERGED_CLASS_NAMES", "ORIGINAL_CLASS_NAMES", "CoNSeP", "instance_classes"]

#: The 7 source classes (CoNSeP README; ``type_map``/``inst_type`` values 1..7).
ORIGINAL_CLASS_NAMES: tuple[str, ...] = (
    "background",
    "other",
    "inflammatory",
    "healthy epithelial",
    "dysplastic/malignant epithelial",
    "fibroblast",
    "muscle",
    "endothelial",
)
#: The 4 classes of the HoVer-Net paper's evaluation.
MERGED_CLASS_NAMES: tuple[str, ...] = ("background", "other", "inflammatory", "epithelial", "spindle-shaped")
#: Original class id -> merged class id (3+4 epithelial, 5+6+7 spindle-shaped).
MERGE: dict[int, int] = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 4, 7: 4}

SPLIT_DIRS = {"train": "Train", "test": "Test"}

_NUM = re.compile(r"(\d+)")


def _natural_key(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in _NUM.split(text))


def instance_classes(
    inst: np.ndarray, inst_type: np.ndarray | None, type_map: np.ndarray | None, where: str
) -> dict[int, int]:
    """Class of every instance id of ``inst`` from ``inst_type`` (or, without it, from ``type_map``).

    ``inst_type`` is indexed by instance id (``inst_type[k - 1]``) when it has ``max id`` entries; when
    it has one entry per present id (ids with gaps), entry ``j`` belongs to the ``j``-th smallest id.

    Raises:
        InvalidSourceError: ``inst_type`` fits neither rule, or neither array is available.

    Example:
        >>> import numpy as np
        >>> inst = np.array([[0, 1], [2, 2]])
        >>> instance_classes(inst, np.array([[4.0], [2.0]]), None, "x")
        {1: 4, 2: 2}
    """
    ids = np.unique(inst)
    ids = ids[ids > 0]
    if ids.size == 0:
        return {}
    if inst_type is not None:
        types = integral_array(np.asarray(inst_type).reshape(-1), f"{where}: inst_type")
        top = int(ids[-1])
        if types.size == top:
            return {int(k): int(types[k - 1]) for k in ids}
        if types.size == ids.size:
            return {int(k): int(t) for k, t in zip(ids, types, strict=True)}
        raise InvalidSourceError(
            f"{where}: inst_type has {types.size} entries but inst_map has {ids.size} instances (largest id {top})"
        )
    if type_map is None:
        raise InvalidSourceError(f"{where}: neither inst_type nor type_map is present; cannot assign classes")
    tmap = label_map(type_map, f"{where}: type_map")
    if tmap.shape != inst.shape:
        raise InvalidSourceError(f"{where}: type_map shape {tmap.shape} differs from inst_map shape {inst.shape}")
    out: dict[int, int] = {}
    fg = inst > 0
    pairs = np.stack([inst[fg], tmap[fg]], axis=1)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for (k, t), c in zip(uniq.tolist(), counts.tolist(), strict=True):
        if k not in best or c > best[k][0]:  # ties: the smaller class id (sorted order)
            best[k] = (c, t)
    for k, (_, t) in best.items():
        out[int(k)] = int(t)
    return out


@register
class CoNSeP(NucleiDataset):
    """CoNSeP: 27 training + 14 test colorectal adenocarcinoma tiles (1000×1000, 40×) with 7 nucleus classes.

    Args:
        root: data root.
        split: ``"train"``, ``"test"`` or ``"all"``.
        download: the source is gated, so nothing is ever fetched: when neither ``consep.zip`` nor
            its extracted folder is present, :class:`~nucfuse_datasets.errors.ManualDownloadRequired`
            explains how to get it (``manual_instructions``).
        transforms: Sample transform.
        **options: ``classes=`` ``"original"`` (default; the 7 source classes) or ``"merged"`` (the HoVer-Net paper's 4
            classes: other, inflammatory, epithelial, spindle-shaped); each has its own prepared store.
        progress: progress bars.

    Example:
        >>> from nucfuse_datasets import CoNSeP  # doctest: +SKIP
        >>> test = CoNSeP(root, split="test", classes="merged")  # doctest: +SKIP
        >>> len(test), test.class_names  # doctest: +SKIP
        (14, ('background', 'other', 'inflammatory', 'epithelial', 'spindle-shaped'))
    """

    name = "consep"
    title = "CoNSeP"
    description = (
        "Colorectal Nuclear Segmentation and Phenotypes (HoVer-Net): 41 H&E tiles of 1000×1000 px at 40× from "
        "16 colorectal adenocarcinoma slides, every nucleus segmented and typed into 7 classes."
    )
    license = "Apache 2.0 per kaiko-ai/eva and InstanSeg (UNCONFIRMED at the source)"
    citation = (
        "Graham S. et al. HoVer-Net: Simultaneous segmentation and classification of nuclei in multi-tissue "
        "histology images. Medical Image Analysis 58, 101563 (2019)."
    )
    homepage = "https://warwick.ac.uk/fac/cross_fac/tia/data/hovernet/"
    resources = (
        Resource(
            key="consep",
            filename="consep.zip",
            urls=("https://warwick.ac.uk/fac/cross_fac/tia/data/hovernet/consep.zip",),
            md5="54dc1511bdad92186490e667b1156445",
            hash_source=(
                "md5 of the historic consep.zip (before the 2023 sign-in), recorded in a third-party loader "
                "module; not checked against a fresh download"
            ),
            marker="Train/Labels",
            split_markers=(("train", "Train/Labels"), ("test", "Test/Labels")),
            manual=True,
            page="https://warwick.ac.uk/fac/cross_fac/tia/data/hovernet/",
            note="Behind a Warwick sign-in since about November 2023; mirror: https://opendatalab.com/OpenDataLab/CoNSeP",
        ),
    )
    splits = ("train", "test")
    test_split = "test"
    content_depth = 1  # the folder holding Train/ and Test/ may lie one level deeper than usual (re-zipped copies)
    class_names = ORIGINAL_CLASS_NAMES
    magnification = 40.0
    expected_counts = (
        ExpectedCount("train", 27, None, "CoNSeP release"),
        ExpectedCount("test", 14, None, "CoNSeP release"),
        # 24,319 nuclei in the original release; Table 1 says 24,332 (0.05 % more)
        ExpectedCount("all", 41, 24319, "CoNSeP original release (Table 1: 24,332)", tolerance=0.001),
    )
    paper = PaperStats(41, 24332, "41 (sic; colorectal only)", "1000×1000", 38.89, 432)
    manual_instructions = (
        "CoNSeP is behind a sign-in since about November 2023. Either sign in at "
        "https://warwick.ac.uk/fac/cross_fac/tia/data/hovernet/ and download 'consep.zip', or create an account "
        "at https://opendatalab.com/OpenDataLab/CoNSeP (the mirror the NucFuseRank authors point to) and download "
        "the CoNSeP archive there. Put 'consep.zip' as downloaded into <root>/consep/ (its md5 is checked "
        "against 54dc1511bdad92186490e667b1156445), or extract any copy so that <root>/consep/CoNSeP/Train/"
        "{Images/train_1.png..train_27.png, Labels/train_1.mat..train_27.mat} and CoNSeP/Test/{Images,Labels}/"
        "test_1..test_14 exist (an archive with another name or hash, e.g. consep_dataset.zip or the mirror's, "
        "must be extracted). The Kaggle 'tiled-consep-224x224px' copy is a tiled derivative and is not accepted."
    )

    declared_options = (
        Option("classes", "original", ("original", "merged"), "the 7 release classes, or HoVer-Net's 4 merged ones"),
    )
    classes: str

    def _configure(self) -> None:
        # an instance attribute: the merged variant has its own class list (class-level value: original)
        self.class_names = MERGED_CLASS_NAMES if self.classes == "merged" else ORIGINAL_CLASS_NAMES

    def _convert(self, sources: Sources) -> Iterator[Job]:
        base = sources["consep"]
        for split, sub in SPLIT_DIRS.items():
            if not getattr(sources, "wants", lambda _: True)(split):
                continue  # one archive feeds both splits; only the asked-for split is converted
            image_dir, label_dir = base / sub / "Images", base / sub / "Labels"
            if not image_dir.is_dir() or not label_dir.is_dir():
                raise InvalidSourceError(f"{base / sub}: missing Images/ or Labels/ of the CoNSeP {split} split")
            images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() == ".png" and p.name[0] != "."}
            labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() == ".mat" and p.name[0] != "."}
            if set(images) != set(labels):
                raise InvalidSourceError(
                    f"{base / sub}: images and labels do not pair up (images without label: "
                    f"{sorted(set(images) - set(labels))[:5]}, labels without image: "
                    f"{sorted(set(labels) - set(images))[:5]})"
                )
            for stem in sorted(images, key=_natural_key):
                # one job per tile: `prepare(workers=N)` reads and converts tiles in N processes
                yield Job(_convert_one, (base, split, images[stem], labels[stem], self.classes))


def _convert_one(base: Path, split: str, png: Path, mat: Path, scheme: str) -> RawSample:
    """One CoNSeP tile from its PNG and ``.mat`` (``scheme``: the ``classes`` option); runs in a worker."""
    image = to_rgb_uint8(read_image(png), png)
    data = load_mat(mat, ["inst_map"], optional=["inst_type", "type_map"])
    inst = label_map(data["inst_map"], f"{mat}: inst_map")
    if inst.shape != image.shape[:2]:
        raise InvalidSourceError(f"{mat}: inst_map shape {inst.shape} differs from image {image.shape[:2]}")
    classes = instance_classes(inst, data.get("inst_type"), data.get("type_map"), str(mat))
    if any(c not in MERGE for c in classes.values()):
        bad = sorted({c for c in classes.values() if c not in MERGE})
        raise InvalidSourceError(f"{mat}: class ids {bad} outside CoNSeP's 0..7")
    if scheme == "merged":
        classes = {k: MERGE[c] for k, c in classes.items()}
    return RawSample(
        sample_id=png.stem,
        split=split,
        image=image,
        instances=inst,
        classes=classes,
        meta={
            "organ": "colon",
            "magnification": 40.0,
            "original_file": png.relative_to(base.parent).as_posix(),
            "extra": {"class_scheme": scheme},
        },
    )
