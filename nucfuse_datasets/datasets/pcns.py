"""PCNS, Pan-Cancer-Nuclei-Seg (Hou et al., Sci Data 2020): TCGA H&E patches with corrected instance maps.

Native content (``manual_segmentation_data.tar.gz`` from the TCIA collection's Box folder; the folder
structure inside the archive is not documented, so every file is found recursively and paired by patch id)::

    **/<PatchID>_crop.png                       the H&E patch (RGB or RGBA)
    **/<PatchID>_labeled_mask_corrected.png     its instance label map (the annotation used)
    **/<PatchID>_labeled_mask_common{0,1,2}.png per-annotator maps for 27 patches (not used)

and, optionally, the TCIA crosswalk ``Pan-Cancer-Nuclei-Seg_1365patches_to_TCGA-ID_readme.txt``: free text
followed by a CSV section whose header starts with ``Patch-ID,`` and has a ``CancerType`` column.

Conversion: a patch without ``_labeled_mask_corrected.png`` is skipped and counted in the manifest (the
crosswalk lists 1,365 patch ids; the paper uses 1,356 tiles). A corrected mask without its patch is an
error. Label maps are read by :func:`nucfuse_datasets.datasets._labels.read_instance_map` (8/16/32-bit;
RGB-encoded ids decoded as ``R + 256·G + 65536·B``). The tile size is whatever the files hold. With the
crosswalk present, ``meta.extra["cancer_type"]`` is the TCGA study code (``"brca"``) and ``meta.organ`` the
organ it stands for; without it both stay unset. The crosswalk's TCGA id also gives ``meta.extra`` its
``tcga_case``, ``tcga_project`` and ``primary_site`` from the barcode's tissue source site code
(:mod:`nucfuse_datasets.datasets._tcga`); ``meta.organ`` falls back to that primary site when the cancer type
names no organ of :data:`CANCER_ORGANS`.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, PaperStats, Sources
from nucfuse_datasets.datasets._labels import read_instance_map
from nucfuse_datasets.datasets._parallel import Job, Skipped
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.datasets._tcga import tcga_fields
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import read_image, to_rgb_uint8
from nucfuse_datasets.io.prepared import TMP_PREFIX
from nucfuse_datasets.io.store import RawSample

__all__ = ["CANCER_ORGANS", "PCNS", "parse_crosswalk"]

IMAGE_SUFFIX = "_crop.png"
LABEL_SUFFIX = "_labeled_mask_corrected.png"
CROSSWALK_FILE = "Pan-Cancer-Nuclei-Seg_1365patches_to_TCGA-ID_readme.txt"
#: Patch ids listed in the TCIA crosswalk (the gap to the paper's 1,356 tiles is attributed to patches
#: without a corrected mask; a third-party loader lists exactly nine such ids: 49, 59, 299, 310, 376, 450,
#: 760, 981 and 1312 — UNCONFIRMED).
CROSSWALK_PATCHES = 1365
BOX_URL = "https://stonybrookmedicine.app.box.com/v/cnn-nuclear-segmentations-2019/file/586046955275"
TCIA_PAGE = "https://www.cancerimagingarchive.net/analysis-result/pan-cancer-nuclei-seg/"

#: TCGA study code → organ (the 14 cancer types of the manual set).
CANCER_ORGANS: dict[str, str] = {
    "blca": "bladder",
    "brca": "breast",
    "cesc": "cervix",
    "coad": "colon",
    "gbm": "brain",
    "luad": "lung",
    "lusc": "lung",
    "paad": "pancreas",
    "prad": "prostate",
    "read": "rectum",
    "skcm": "skin",
    "stad": "stomach",
    "ucec": "uterus",
    "uvm": "eye",
}

_SKIP_DIRS = ("prepared", TMP_PREFIX, "__MACOSX", ".")
_MAX_DEPTH = 8


def _norm_header(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def parse_crosswalk(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    r"""Read the TCIA patch→TCGA crosswalk: patch id → ``{"cancer_type": ..., "tcga_id": ...}``.

    The file is free text followed by a CSV section whose header line starts with ``Patch-ID,``; header
    names are matched ignoring case, spaces and punctuation (``CancerType``, ``Cancer Type``), values are
    stripped and cancer types lower-cased. Rows with an empty id are ignored. A gzip-compressed file is
    accepted, and so are Windows line endings and a byte-order mark.

    Raises:
        InvalidSourceError: no ``Patch-ID,`` header, or no cancer-type column.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> _ = p.write_text("Readme\n\nPatch-ID,TCGA-ID,CancerType\n1,TCGA-AA-0001,BRCA\n")
        >>> parse_crosswalk(p)
        {'1': {'cancer_type': 'brca', 'tcga_id': 'TCGA-AA-0001'}}
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidSourceError(f"{path}: cannot read the PCNS crosswalk ({exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InvalidSourceError(f"{path}: corrupt gzip-compressed crosswalk ({exc})") from None
    text = raw.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().lower().startswith("patch-id,")), None)
    if start is None:
        raise InvalidSourceError(f"{path}: no CSV section starting with 'Patch-ID,'; not the PCNS crosswalk")
    rows = list(csv.reader(io.StringIO("\n".join(lines[start:]))))
    header = [_norm_header(h) for h in rows[0]]
    try:
        col_type = header.index("cancertype")
    except ValueError:
        raise InvalidSourceError(f"{path}: the 'Patch-ID' table has no 'CancerType' column ({rows[0]})") from None
    col_tcga = next((i for i, h in enumerate(header) if "tcga" in h), None)
    out: dict[str, dict[str, str]] = {}
    for row in rows[1:]:
        if not row or not row[0].strip():
            continue
        pid = _patch_id_key(row[0].strip())
        entry: dict[str, str] = {}
        if col_type < len(row) and row[col_type].strip():
            entry["cancer_type"] = row[col_type].strip().lower()
        if col_tcga is not None and col_tcga < len(row) and row[col_tcga].strip():
            entry["tcga_id"] = row[col_tcga].strip()
        out[pid] = entry
    return out


def _patch_id_key(pid: str) -> str:
    """Canonical patch id: integers lose leading zeros (``"007"`` → ``"7"``), anything else stays."""
    return str(int(pid)) if pid.isdigit() else pid


def _sort_key(pid: str) -> tuple[int, int, str]:
    return (0, int(pid), "") if pid.isdigit() else (1, 0, pid)


def _walk_pngs(base: Path) -> Iterator[Path]:
    """Every ``*.png`` below ``base`` (sorted walk; prepared stores, temporaries, ``__MACOSX`` skipped)."""
    base_depth = len(base.parts)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(_SKIP_DIRS))
        if len(here.parts) - base_depth >= _MAX_DEPTH:
            dirnames[:] = []
        for name in sorted(filenames):
            if name.lower().endswith(".png") and not name.startswith("."):
                yield here / name


def _has_labels(base: Path) -> bool:
    return any(p.name.endswith(LABEL_SUFFIX) for p in _walk_pngs(base))


def _index(base: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Patch id → image and patch id → corrected label, over the whole tree; duplicates are errors."""
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for path in _walk_pngs(base):
        for suffix, table in ((IMAGE_SUFFIX, images), (LABEL_SUFFIX, labels)):
            if path.name.endswith(suffix) and len(path.name) > len(suffix):
                pid = _patch_id_key(path.name[: -len(suffix)])
                if pid in table:
                    raise InvalidSourceError(
                        f"{base}: patch id {pid!r} occurs twice ({table[pid]} and {path}); cannot pair files"
                    )
                table[pid] = path
    return images, labels


@register
class PCNS(NucleiDataset):
    """Pan-Cancer-Nuclei-Seg manual set: TCGA H&E patches of 14 cancer types with corrected instance maps.

    The archive must be downloaded by hand (Box); the optional TCIA crosswalk, which gives each patch's
    cancer type, is fetched with ``download=True``.

    Example:
        >>> from nucfuse_datasets import PCNS  # doctest: +SKIP
        >>> ds = PCNS(root)  # doctest: +SKIP
        >>> len(ds), ds.meta(0).extra.get("cancer_type")  # doctest: +SKIP
        (1356, 'blca')
    """

    name = "pcns"
    title = "PCNS (Pan-Cancer-Nuclei-Seg)"
    description = (
        "Manually corrected nucleus instance maps of H&E patches from TCGA slides of 14 cancer types "
        "(annotators corrected Mask R-CNN output), released with the TCIA Pan-Cancer-Nuclei-Seg collection."
    )
    license = "UNCONFIRMED (CC BY 3.0 per the Hugging Face copy; check the TCIA page before redistributing)"
    citation = (
        "Hou L. et al. Dataset of segmented nuclei in hematoxylin and eosin stained histopathology images of "
        "ten cancer types. Scientific Data 7, 185 (2020). TCIA DOI 10.7937/TCIA.2019.4A4DKP9U."
    )
    homepage = TCIA_PAGE
    resources = (
        Resource(
            key="main",
            filename="manual_segmentation_data.tar.gz",
            urls=(BOX_URL,),
            hash_source="no published hash or size; the sha256 of the first local copy is recorded and enforced",
            marker="**/*" + LABEL_SUFFIX,
            manual=True,
            page=BOX_URL,
            note="Box shared link (the TCIA page links it); the archive's inner folders are not documented.",
        ),
        Resource(
            key="crosswalk",
            filename=CROSSWALK_FILE,
            urls=(f"https://www.cancerimagingarchive.net/wp-content/uploads/{CROSSWALK_FILE}",),
            kind="file",
            hash_source="no published hash; the sha256 of the first download is recorded and enforced",
            page=TCIA_PAGE,
            required=False,
            note="Optional: patch id → TCGA id and cancer type. Without it the cancer type stays unset.",
        ),
    )
    splits = ("all",)
    test_split = None
    magnification = None
    expected_counts = (ExpectedCount("all", 1356, 37313, "NucFuseRank paper Table 1", tolerance=0.01),)
    paper = PaperStats(1356, 37313, "9", "256×256", 27.51, 1342)
    manual_instructions = (
        "Box needs a browser. Open https://stonybrookmedicine.app.box.com/v/cnn-nuclear-segmentations-2019/"
        "file/586046955275 (linked from https://www.cancerimagingarchive.net/analysis-result/pan-cancer-nuclei-seg/),"
        " press Download, and put 'manual_segmentation_data.tar.gz' (or everything it unpacks to: "
        "'<id>_crop.png' and '<id>_labeled_mask_corrected.png' files in any sub-folders) into <root>/pcns/. "
        f"Optional: also put the TCIA crosswalk '{CROSSWALK_FILE}' there (download=True fetches it) to get "
        "each patch's cancer type."
    )
    converter_version = 2  # 2: tcga_case, tcga_project and primary_site from the crosswalk's TCGA id

    @classmethod
    def _content_root(cls, res: Resource, base: Path, max_depth: int) -> Path | None:
        if res.key != "main":
            return super()._content_root(res, base, max_depth)
        return base if base.is_dir() and _has_labels(base) else None

    def _convert(self, sources: Sources) -> Iterator[Job | Skipped]:
        base = sources["main"]
        crosswalk = parse_crosswalk(sources["crosswalk"]) if "crosswalk" in sources else None
        images, labels = _index(base)
        orphans = sorted(set(labels) - set(images), key=_sort_key)
        if orphans:
            raise InvalidSourceError(
                f"{base}: corrected masks without their '_crop.png' patch: {orphans[:5]}"
                + (f" and {len(orphans) - 5} more" if len(orphans) > 5 else "")
            )
        if not images:
            raise InvalidSourceError(f"{base}: no '<id>{IMAGE_SUFFIX}' patches found; not the PCNS manual set")
        for pid in sorted(images, key=_sort_key):
            if pid not in labels:
                yield Skipped(f"patch without {LABEL_SUFFIX}")  # counted in order with the tiles
                continue
            # one job per patch, with its own crosswalk row (the table is parsed once, here)
            entry = crosswalk.get(pid) if crosswalk is not None else None
            yield Job(_convert_one, (pid, base, images[pid], labels[pid], crosswalk is not None, entry))


def _convert_one(
    pid: str, base: Path, image_path: Path, label_path: Path, has_crosswalk: bool, entry: dict[str, str] | None
) -> RawSample:
    """One PCNS patch (``entry``: its crosswalk row, ``None`` if absent); runs in a worker."""
    image = to_rgb_uint8(read_image(image_path), image_path)
    instances, encoding = read_instance_map(label_path)
    if instances.shape != image.shape[:2]:
        raise InvalidSourceError(
            f"{label_path}: label map shape {instances.shape} differs from the patch {image.shape[:2]}"
        )
    extra: dict[str, str | bool] = {"patch_id": pid}
    if encoding != "integer":
        extra["label_encoding"] = encoding
    organ = None
    if has_crosswalk:
        extra["in_crosswalk"] = entry is not None
        if entry:
            if "cancer_type" in entry:
                extra["cancer_type"] = entry["cancer_type"]
                organ = CANCER_ORGANS.get(entry["cancer_type"])
            if "tcga_id" in entry:
                extra["tcga_id"] = entry["tcga_id"]
                tcga = tcga_fields(entry["tcga_id"])  # tcga_case, tcga_project, primary_site (TSS code)
                extra.update(tcga)
                organ = organ or tcga.get("primary_site")
    return RawSample(
        sample_id=pid,
        split="all",
        image=image,
        instances=instances,
        meta={
            "organ": organ,
            "original_file": image_path.relative_to(base).as_posix(),
            "extra": extra,
        },
    )
