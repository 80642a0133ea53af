"""CryoNuSeg (Mahbod et al., Comput. Biol. Med. 2021): 30 frozen-section H&E tiles of 10 organs, 3 mark-ups.

Native layout (the Kaggle dataset ``ipateam/segmentation-of-nuclei-in-cryosectioned-he-images``)::

    tissue images/Human_<Organ>_<NN>.tif                                   512×512 RGB
    Annotator 1 (biologist)/label masks modify/<stem>.tif                  mark-up "a1" (default)
    Annotator 1 (biologist second round of manual marks up)/
        Annotator 1 (biologist second round of manual marks up)/label masks modify/<stem>.tif   "a1-round2"
    Annotator 2 (bioinformatician)/Annotator 2 (bioinformatician)/label masks modify/<stem>.tif "a2"
    <annotator>/.../{label masks, mask binary, distance maps, Imagj_zips, ...}   not used

Note the doubled folder names of the second and third mark-ups; every mark-up is looked up both as
``<name>/label masks modify`` and as ``<name>/<name>/label masks modify``. ``label masks modify`` holds the
overlap-resolved integer instance maps (as in NuInsSeg). The ``annotator=`` option picks the mark-up; the
default, Annotator 1's first round, is the one whose counts match the paper. ``meta.organ`` comes from the
file name (``Human_AdrenalGland_01`` → ``"adrenal gland"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, Option, PaperStats, Sources, files_by_stem
from nucfuse_datasets.datasets._labels import read_instance_map
from nucfuse_datasets.datasets._parallel import Job
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import read_image, to_rgb_uint8
from nucfuse_datasets.io.store import RawSample

__all__ = ["ANNOTATORS", "ANNOTATOR_COUNTS", "CryoNuSeg", "label_folder", "organ_from_stem"]

IMAGES = "tissue images"
LABELS = "label masks modify"
KAGGLE_SLUG = "ipateam/segmentation-of-nuclei-in-cryosectioned-he-images"
#: ``annotator=`` value → the mark-up's folder name.
ANNOTATORS: dict[str, str] = {
    "a1": "Annotator 1 (biologist)",
    "a1-round2": "Annotator 1 (biologist second round of manual marks up)",
    "a2": "Annotator 2 (bioinformatician)",
}
#: Expected counts per mark-up: nuclei visible in the label maps (``datasets.md`` §14; the declared
#: counts are 7,596, 8,044 and 8,251). Annotator 1's first round matches the paper's Table 1 (7,592).
ANNOTATOR_COUNTS: dict[str, tuple[ExpectedCount, ...]] = {
    "a1": (ExpectedCount("all", 30, 7592, "NucFuseRank paper Table 1 (Annotator 1, round 1)", tolerance=0.001),),
    "a1-round2": (ExpectedCount("all", 30, 8036, "label maps of Annotator 1, round 2", tolerance=0.001),),
    "a2": (ExpectedCount("all", 30, 8242, "label maps of Annotator 2", tolerance=0.001),),
}
_STEM = re.compile(r"^Human_([A-Za-z]+)_(\d+)$")


def organ_from_stem(stem: str) -> str | None:
    """Organ of a CryoNuSeg file stem (``Human_<Organ>_<NN>``), CamelCase split into lower-case words.

    Example:
        >>> organ_from_stem("Human_AdrenalGland_01"), organ_from_stem("Human_Skin_03"), organ_from_stem("x")
        ('adrenal gland', 'skin', None)
    """
    m = _STEM.match(stem)
    if m is None:
        return None
    return " ".join(w.lower() for w in re.findall(r"[A-Z][a-z]*|[a-z]+", m.group(1)))


def label_folder(base: Path, annotator: str) -> Path | None:
    """``label masks modify`` of a mark-up under ``base``: ``<name>/...`` or the doubled ``<name>/<name>/...``.

    Returns ``None`` when neither exists.

    Example:
        >>> import tempfile, pathlib
        >>> base = pathlib.Path(tempfile.mkdtemp()); name = ANNOTATORS["a2"]
        >>> (base / name / name / LABELS).mkdir(parents=True)
        >>> label_folder(base, "a2").relative_to(base).as_posix()
        'Annotator 2 (bioinformatician)/Annotator 2 (bioinformatician)/label masks modify'
    """
    name = ANNOTATORS[annotator]
    for candidate in (base / name / LABELS, base / name / name / LABELS):
        if candidate.is_dir():
            return candidate
    return None


def _tifs(folder: Path) -> dict[str, Path]:
    return files_by_stem(folder, (".tif", ".tiff"))


@register
class CryoNuSeg(NucleiDataset):
    """CryoNuSeg: 30 H&E tiles (512×512) of frozen sections from 10 organs, three annotation mark-ups.

    Args:
        root: data root.
        split: ``"all"`` (the only split).
        download: no effect: Kaggle needs a login, so the zip is placed by hand.
        transforms: Sample transform.
        **options: ``annotator=`` ``"a1"`` (default; Annotator 1, first round, matches the paper's counts),
            ``"a1-round2"`` (Annotator 1, second round) or ``"a2"`` (Annotator 2). Each mark-up gets its own
            prepared store.
        progress: progress bars.

    Example:
        >>> from nucfuse_datasets import CryoNuSeg  # doctest: +SKIP
        >>> ds = CryoNuSeg(root, annotator="a2")  # doctest: +SKIP
        >>> len(ds), ds.meta(0).organ  # doctest: +SKIP
        (30, 'adrenal gland')
    """

    name = "cryonuseg"
    title = "CryoNuSeg"
    description = (
        "H&E tiles (512×512) of cryosectioned (frozen) tissue from 10 human organs, 3 per organ, with nucleus "
        "instance maps drawn by two annotators (one of them twice)."
    )
    license = "UNCONFIRMED (the CryoNuSeg GitHub repository's MIT licence covers the code only)"
    citation = (
        "Mahbod A. et al. CryoNuSeg: A dataset for nuclei instance segmentation of cryosectioned H&E-stained "
        "histological images. Computers in Biology and Medicine 132, 104349 (2021)."
    )
    homepage = f"https://www.kaggle.com/datasets/{KAGGLE_SLUG}"
    resources = (
        Resource(
            key="main",
            filename="segmentation-of-nuclei-in-cryosectioned-he-images.zip",
            urls=(f"https://www.kaggle.com/datasets/{KAGGLE_SLUG}",),
            hash_source="no published hash or size; the sha256 of the first local copy is recorded and enforced",
            marker=IMAGES,
            manual=True,
            page=f"https://www.kaggle.com/datasets/{KAGGLE_SLUG}",
            note="Kaggle login required; the Kaggle CLI saves the zip under this name.",
        ),
    )
    splits = ("all",)
    test_split = None
    magnification = None
    expected_counts = ANNOTATOR_COUNTS["a1"]
    paper = PaperStats(30, 7592, "10", "512×512", 63.26, 64)
    manual_instructions = (
        "Kaggle needs an account. Either run\n"
        f"    kaggle datasets download -d {KAGGLE_SLUG}\n"
        "(Kaggle CLI with an API token in ~/.kaggle/kaggle.json), which saves "
        "'segmentation-of-nuclei-in-cryosectioned-he-images.zip', or press Download on "
        f"https://www.kaggle.com/datasets/{KAGGLE_SLUG} (the browser saves 'archive.zip': rename it). Put the zip, "
        "or its extracted content ('tissue images/' and the 'Annotator ...' folders), into <root>/cryonuseg/."
    )
    converter_version = 1
    declared_options = (
        Option("annotator", "a1", tuple(ANNOTATORS), "whose mark-up: Annotator 1 (first or second round) or 2"),
    )
    annotator: str

    def _configure(self) -> None:
        self.expected_counts = ANNOTATOR_COUNTS[self.annotator]  # the chosen mark-up's published counts

    def _convert(self, sources: Sources) -> Iterator[Job]:
        base = sources["main"]
        image_dir = base / IMAGES
        labels_dir = label_folder(base, self.annotator)
        if labels_dir is None:
            name = ANNOTATORS[self.annotator]
            found = sorted(p.name for p in base.iterdir() if p.is_dir())
            raise InvalidSourceError(
                f"{base}: no '{name}/{LABELS}' (nor '{name}/{name}/{LABELS}') for annotator={self.annotator!r}; "
                f"folders found: {found}"
            )
        images, labels = _tifs(image_dir), _tifs(labels_dir)
        if set(images) != set(labels):
            only_img, only_lab = sorted(set(images) - set(labels)), sorted(set(labels) - set(images))
            raise InvalidSourceError(
                f"{image_dir} / {labels_dir}: images and label maps do not pair up (images without labels: "
                f"{only_img[:5]}, labels without image: {only_lab[:5]})"
            )
        for stem in sorted(images):
            # one job per tile: `prepare(workers=N)` reads and converts tiles in N processes
            yield Job(_convert_one, (stem, base, images[stem], labels[stem], self.annotator))


def _convert_one(stem: str, base: Path, image_path: Path, label_path: Path, annotator: str) -> RawSample:
    """One CryoNuSeg tile from its image and ``annotator``'s label map; runs in a worker."""
    image = to_rgb_uint8(read_image(image_path), image_path)
    instances, _ = read_instance_map(label_path)
    if instances.shape != image.shape[:2]:
        raise InvalidSourceError(f"{label_path}: label shape {instances.shape} differs from {image.shape[:2]}")
    return RawSample(
        sample_id=stem,
        split="all",
        image=image,
        instances=instances,
        meta={
            "organ": organ_from_stem(stem),
            "original_file": f"{IMAGES}/{image_path.name}",
            "extra": {
                "annotator": ANNOTATORS[annotator],
                "label_file": label_path.relative_to(base).as_posix(),
            },
        },
    )
