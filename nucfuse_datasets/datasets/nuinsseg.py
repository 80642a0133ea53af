"""NuInsSeg (Mahbod et al., Sci Data 2024): 665 H&E tiles of 31 human and mouse organs, instance maps.

Native layout (Zenodo ``NuInsSeg.zip``; Kaggle ``ipateam/nuinsseg`` has the same folders)::

    <species> <organ>/tissue images/<stem>.png               512×512 H&E (RGB or RGBA)
    <species> <organ>/label masks modify/<stem>.tif           uint16 instance maps, overlaps resolved (used)
    <species> <organ>/label masks/<stem>.tif                  overlap pixels as extra labels (not used)
    <species> <organ>/vague areas/mask binary/<stem>.png      ambiguous regions, 0/255 → ``ignore``
    <species> <organ>/vague areas/mask binary_vague/...       the same, as one loader found it
    <species> <organ>/{mask binary, distance maps, ...}/      derived files (not used)

Folder names are kept as they are (``human salivory gland``, ``human tonsile``); ``meta.organ`` gives the
organ with those typos corrected, ``meta.extra`` the species and the folder. A tile without a vague-area
file gets no ignore mask.

Cross-validation: the authors recommend ``KFold(n_splits=5, shuffle=True, random_state=19)``. The order of
the files they fed it is not published; this library uses the tiles sorted by ``"<folder>/<stem>"`` (Python
string order). :func:`kfold_test_folds` reproduces scikit-learn's ``KFold`` in numpy, the converter stores
each tile's held-out fold in ``meta.extra["cv_fold"]`` (0–4), and :func:`nuinsseg_folds` returns the
``(train, test)`` indices of every fold. The source split of every tile stays ``"all"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, PaperStats, Sources, files_by_stem
from nucfuse_datasets.datasets._labels import read_binary_mask, read_instance_map
from nucfuse_datasets.datasets._parallel import Job
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.errors import ArgumentError, InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import read_image, to_rgb_uint8
from nucfuse_datasets.io.prepared import TMP_PREFIX
from nucfuse_datasets.io.store import RawSample, safe_id

__all__ = ["CV_SEED", "CV_SPLITS", "ORGAN_FIXES", "NuInsSeg", "kfold_test_folds", "nuinsseg_folds", "organ_of"]

IMAGES = "tissue images"
LABELS = "label masks modify"
VAGUE = ("vague areas/mask binary", "vague areas/mask binary_vague")
#: The authors' recommended cross-validation: ``KFold(n_splits=5, shuffle=True, random_state=19)``.
CV_SPLITS = 5
CV_SEED = 19
#: Folder-name typos of the source → the organ name used in ``meta.organ``.
ORGAN_FIXES = {"salivory gland": "salivary gland", "tonsile": "tonsil"}
SPECIES = ("human", "mouse")


def kfold_test_folds(n: int, n_splits: int = CV_SPLITS, seed: int = CV_SEED) -> list[np.ndarray]:
    """Held-out positions of each fold of scikit-learn's ``KFold(n_splits, shuffle=True, random_state=seed)``.

    Same algorithm as scikit-learn: ``np.random.RandomState(seed).shuffle(np.arange(n))``, then consecutive
    blocks of ``n // n_splits`` positions, one more for the first ``n % n_splits`` folds. Each fold's
    positions are returned in ascending order, as ``KFold.split`` yields them.

    Raises:
        ArgumentError: fewer items than folds, or fewer than 2 folds.

    Example:
        >>> [f.tolist() for f in kfold_test_folds(7, n_splits=3, seed=0)]
        [[1, 2, 6], [0, 3], [4, 5]]
    """
    if n_splits < 2:
        raise ArgumentError(f"KFold needs at least 2 splits, got {n_splits}")
    if n < n_splits:
        raise ArgumentError(f"KFold with {n_splits} splits needs at least {n_splits} items, got {n}")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_splits, n // n_splits, dtype=np.int64)
    sizes[: n % n_splits] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.sort(order[bounds[k] : bounds[k + 1]]) for k in range(n_splits)]


def nuinsseg_folds(ds: NucleiDataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` indices into ``ds`` for each of the 5 recommended cross-validation folds.

    Uses the fold stored per tile at conversion time (``meta.extra["cv_fold"]``), so it works on any
    prepared NuInsSeg instance without reading pixels.

    Raises:
        ArgumentError: ``ds`` has tiles without a stored fold (not a NuInsSeg dataset).

    Example:
        >>> from nucfuse_datasets import NuInsSeg  # doctest: +SKIP
        >>> ds = NuInsSeg(root, download=True)  # doctest: +SKIP
        >>> train, test = nuinsseg_folds(ds)[0]  # doctest: +SKIP
        >>> len(train), len(test)  # doctest: +SKIP
        (532, 133)
    """
    folds = np.empty(len(ds), dtype=np.int64)
    for i in range(len(ds)):
        value = ds.meta(i).extra.get("cv_fold")
        if not isinstance(value, int) or isinstance(value, bool):
            raise ArgumentError(f"{ds.name}: tile {ds.sample_ids[i]!r} has no cross-validation fold in its metadata")
        folds[i] = value
    return [(np.flatnonzero(folds != k), np.flatnonzero(folds == k)) for k in range(CV_SPLITS)]


def _organ_dirs(base: Path) -> list[Path]:
    """Folders directly under ``base`` that hold ``tissue images/`` and ``label masks modify/``."""
    if not base.is_dir():
        return []
    return sorted(
        p
        for p in base.iterdir()
        if p.is_dir()
        and not p.name.startswith((TMP_PREFIX, "prepared"))
        and (p / IMAGES).is_dir()
        and (p / LABELS).is_dir()
    )


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    return files_by_stem(folder, suffixes) if folder.is_dir() else {}


def organ_of(folder: str) -> tuple[str | None, str]:
    """``(species, organ)`` of an organ folder name, with the source's typos corrected.

    Example:
        >>> organ_of("human salivory gland"), organ_of("mouse heart"), organ_of("odd")
        (('human', 'salivary gland'), ('mouse', 'heart'), (None, 'odd'))
    """
    species, _, rest = folder.strip().partition(" ")
    if species.lower() in SPECIES and rest:
        organ = rest.strip().lower()
        return species.lower(), ORGAN_FIXES.get(organ, organ)
    return None, folder.strip().lower()


@register
class NuInsSeg(NucleiDataset):
    """NuInsSeg: 665 H&E tiles (512×512) of 31 human and mouse organs, instance maps and vague areas.

    Each tile's vague (ambiguous) area becomes the Sample's ``ignore`` mask; the authors' 5-fold
    cross-validation is available through :func:`nuinsseg_folds` (or :meth:`folds`).

    Example:
        >>> from nucfuse_datasets import NuInsSeg  # doctest: +SKIP
        >>> ds = NuInsSeg(root, download=True)  # doctest: +SKIP
        >>> s = ds[0]; s.meta.organ, s.meta.extra["species"], s.ignore is not None  # doctest: +SKIP
        ('bladder', 'human', True)
        >>> train, test = ds.folds()[0]  # doctest: +SKIP
    """

    name = "nuinsseg"
    title = "NuInsSeg"
    description = (
        "H&E tiles (512×512) of 31 human and mouse organs with manually outlined nuclei, overlap-resolved "
        "instance maps and ambiguous ('vague') areas."
    )
    license = "CC BY 4.0"
    citation = (
        "Mahbod A. et al. NuInsSeg: A fully annotated dataset for nuclei instance segmentation in H&E-stained "
        "histological images. Scientific Data 11, 295 (2024). Zenodo DOI 10.5281/zenodo.10518968."
    )
    homepage = "https://zenodo.org/records/10518968"
    resources = (
        Resource(
            key="main",
            filename="NuInsSeg.zip",
            urls=(
                "https://zenodo.org/records/10518968/files/NuInsSeg.zip?download=1",
                "https://zenodo.org/api/records/10518968/files/NuInsSeg.zip/content",
            ),
            size=1_627_427_342,
            hash_source=(
                "no hash recorded in any source we have (size from third-party code); the sha256 of the first "
                "download is recorded and enforced. Both URLs serve the same Zenodo file."
            ),
            marker=f"human bladder/{LABELS}",
            page="https://zenodo.org/records/10518968",
            note="About 1.6 GB.",
        ),
    )
    splits = ("all",)
    test_split = None
    magnification = None
    expected_counts = (
        ExpectedCount("all", 665, 30698, "NucFuseRank paper Table 1 and PublicDataSetList", tolerance=0.01),
    )
    paper = PaperStats(665, 30698, "31", "512×512", 11.54, 2604)
    manual_instructions = (
        "Zenodo is open: download=True fetches it (1.6 GB). By hand: download 'NuInsSeg.zip' from "
        "https://zenodo.org/records/10518968 (or the same folders from Kaggle 'ipateam/nuinsseg') and put the zip, "
        "or the extracted organ folders ('human bladder/', ...), into <root>/nuinsseg/."
    )
    converter_version = 1

    def folds(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(train, test)`` indices of the 5 recommended cross-validation folds (see :func:`nuinsseg_folds`)."""
        return nuinsseg_folds(self)

    @classmethod
    def _content_root(cls, res: Resource, base: Path, max_depth: int) -> Path | None:
        found = super()._content_root(res, base, max_depth)
        if found is not None:
            return found
        # no 'human bladder' folder: any folder whose sub-folders have the organ layout
        level = [base] if base.is_dir() else []
        for _ in range(max_depth + 1):
            nxt: list[Path] = []
            for folder in level:
                if _organ_dirs(folder):
                    return folder
                nxt.extend(
                    c
                    for c in sorted(folder.iterdir())
                    if c.is_dir() and not c.name.startswith((TMP_PREFIX, "prepared")) and c.name != "__MACOSX"
                )
            level = nxt
        return None

    def _convert(self, sources: Sources) -> Iterator[Job]:
        base = sources["main"]
        organs = _organ_dirs(base)
        if not organs:
            raise InvalidSourceError(f"{base}: no organ folders with '{IMAGES}/' and '{LABELS}/'; not NuInsSeg")
        tiles: list[tuple[str, Path, str, Path, Path, Path | None]] = []
        stems: dict[str, list[str]] = {}
        for organ_dir in organs:
            images = _files(organ_dir / IMAGES, (".png",))
            labels = _files(organ_dir / LABELS, (".tif", ".tiff"))
            if set(images) != set(labels):
                raise InvalidSourceError(
                    f"{organ_dir}: '{IMAGES}' and '{LABELS}' do not pair up (images without labels: "
                    f"{sorted(set(images) - set(labels))[:5]}, labels without image: "
                    f"{sorted(set(labels) - set(images))[:5]})"
                )
            vague: dict[str, Path] = {}
            for sub in VAGUE:
                for stem, path in _files(organ_dir / sub, (".png", ".tif", ".tiff")).items():
                    vague.setdefault(stem, path)
            for stem in images:
                key = f"{organ_dir.name}/{stem}"
                tiles.append((key, organ_dir, stem, images[stem], labels[stem], vague.get(stem)))
                stems.setdefault(stem, []).append(organ_dir.name)
        tiles.sort(key=lambda t: t[0])
        fold_of = np.empty(len(tiles), dtype=np.int64)
        if len(tiles) >= CV_SPLITS:
            for k, positions in enumerate(kfold_test_folds(len(tiles))):
                fold_of[positions] = k
        else:
            fold_of[:] = -1
        for pos, (_, organ_dir, stem, image_path, label_path, vague_path) in enumerate(tiles):
            # stems embed the organ (human_bladder_01); should two folders share one, prefix the folder
            sid = stem if len(stems[stem]) == 1 else safe_id(f"{organ_dir.name}__{stem}")
            # one job per tile (the fold computed here, over all tiles): converted in N processes with workers=N
            yield Job(_convert_one, (sid, organ_dir, image_path, label_path, vague_path, int(fold_of[pos])))


def _convert_one(
    sid: str, organ_dir: Path, image_path: Path, label_path: Path, vague_path: Path | None, fold: int
) -> RawSample:
    """One NuInsSeg tile: image, instance map and vague-area mask; runs in a worker."""
    image = to_rgb_uint8(read_image(image_path), image_path)
    instances, _ = read_instance_map(label_path)
    if instances.shape != image.shape[:2]:
        raise InvalidSourceError(f"{label_path}: label shape {instances.shape} differs from {image.shape[:2]}")
    ignore = None
    if vague_path is not None:
        ignore = read_binary_mask(vague_path)
        if ignore.shape != image.shape[:2]:
            raise InvalidSourceError(f"{vague_path}: vague-area shape {ignore.shape} differs from {image.shape[:2]}")
    species, organ = organ_of(organ_dir.name)
    extra: dict[str, str | int | bool | None] = {
        "species": species,
        "folder": organ_dir.name,
        "has_vague_mask": vague_path is not None,
    }
    if fold >= 0:
        extra["cv_fold"] = fold
    return RawSample(
        sample_id=sid,
        split="all",
        image=image,
        instances=instances,
        ignore=ignore,
        meta={
            "organ": organ,
            "original_file": f"{organ_dir.name}/{IMAGES}/{image_path.name}",
            "extra": extra,
        },
    )
