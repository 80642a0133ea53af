"""PUMA (Schuiveling et al., GigaScience 2025): melanoma ROIs of 1024×1024 with 10-class nuclei polygons.

Native layout (Zenodo record 15050523, CC0)::

    01_training_dataset_tif_ROIs/training_set_{primary|metastatic}_roi_NNN.tif   RGBA TIFFs
        (metastatic ROI 103 has the extension .tiff)
    01_training_dataset_geojson_nuclei/training_set_{primary|metastatic}_roi_NNN_nuclei.geojson
    01_training_dataset_geojson_tissue/..._tissue.geojson                        (optional; not used)

GeoJSON: a ``FeatureCollection`` of ``Feature``s whose ``geometry`` is a ``Polygon`` or a
``MultiPolygon`` in **pixel coordinates** (x = column, y = row), used as they are (identity
transform); the class is ``properties.classification.name``.

Conversion:

* every nucleus feature becomes **one** instance, in document order, later features overwriting
  earlier ones where they overlap (:mod:`nucfuse_datasets.datasets._raster`); all parts of a
  ``MultiPolygon`` get the same id; interior rings are holes; a feature that covers no pixel is dropped;
* the class id is the position of the class name in :data:`NUCLEUS_CLASSES` (names compared
  case-insensitively); features with another class name, without a class, with a null geometry or a
  non-polygon geometry are skipped and counted in the manifest's ``skipped``;
* malformed JSON, or a geometry whose coordinates are not numeric, not finite or beyond ±2**31 px,
  raise ``InvalidSourceError`` naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets.datasets._base import ExpectedCount, NucleiDataset, PaperStats, Sources, find_marker
from nucfuse_datasets.datasets._parallel import Job, report_skip
from nucfuse_datasets.datasets._raster import fill_polygon
from nucfuse_datasets.datasets._registry import register
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.download import Resource
from nucfuse_datasets.io.files import MAX_COORDINATE, read_image, to_rgb_uint8
from nucfuse_datasets.io.store import RawSample

__all__ = ["NUCLEUS_CLASSES", "PUMA", "TISSUE_CLASSES", "parse_nuclei_geojson", "rasterize_features"]

#: Nucleus classes of the GeoJSON ``classification.name``; class id = position + 1.
NUCLEUS_CLASSES: tuple[str, ...] = (
    "nuclei_tumor",
    "nuclei_stroma",
    "nuclei_endothelium",
    "nuclei_histiocyte",
    "nuclei_melanophage",
    "nuclei_lymphocyte",
    "nuclei_plasma_cell",
    "nuclei_neutrophil",
    "nuclei_apoptosis",
    "nuclei_epithelium",
)
#: Tissue classes of the (unused) tissue GeoJSON, for reference.
TISSUE_CLASSES: tuple[str, ...] = (
    "tissue_stroma",
    "tissue_blood_vessel",
    "tissue_tumor",
    "tissue_epidermis",
    "tissue_necrosis",
    "tissue_white_background",
)

ROI_DIR = "01_training_dataset_tif_ROIs"
NUCLEI_DIR = "01_training_dataset_geojson_nuclei"
TISSUE_DIR = "01_training_dataset_geojson_tissue"
ZENODO = "https://zenodo.org/records/15050523"

_STEM = re.compile(r"^training_set_(primary|metastatic)_roi_(\d+)$")
_NUCLEI_SUFFIX = "_nuclei"

#: A nucleus: its class name (or None) and its polygons as (exterior, holes), all (x, y) float arrays.
Feature = tuple[str | None, list[tuple[np.ndarray, list[np.ndarray]]]]


def _ring(value: Any, path: Path, index: int) -> np.ndarray:
    try:
        raw = np.asarray(value)
        if raw.dtype.kind not in "iufO":  # strings and booleans are not GeoJSON positions
            raise TypeError(raw.dtype)
        xy = raw.astype(np.float64)  # "O": Python ints beyond int64, converted or refused below
    except (TypeError, ValueError):
        raise InvalidSourceError(f"{path}: feature {index} has non-numeric coordinates") from None
    except OverflowError:  # a JSON integer beyond the float range
        raise InvalidSourceError(f"{path}: feature {index} has coordinates beyond the float range") from None
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise InvalidSourceError(f"{path}: feature {index} has a ring that is not a list of [x, y] positions")
    if not np.all(np.isfinite(xy[:, :2])):
        raise InvalidSourceError(f"{path}: feature {index} has non-finite coordinates")
    if xy.size and float(np.abs(xy[:, :2]).max()) > MAX_COORDINATE:
        raise InvalidSourceError(f"{path}: feature {index} has coordinates beyond ±2**31 px")
    return xy[:, :2]


def _polygon(rings: Any, path: Path, index: int) -> tuple[np.ndarray, list[np.ndarray]]:
    if not isinstance(rings, list) or not rings:
        raise InvalidSourceError(f"{path}: feature {index} has a Polygon without rings")
    return _ring(rings[0], path, index), [_ring(r, path, index) for r in rings[1:]]


def parse_nuclei_geojson(path: Path, skip: Any = None) -> list[Feature]:
    """Nucleus features of a PUMA GeoJSON file, in document order.

    Accepts a ``FeatureCollection``, a bare list of ``Feature``s or a single ``Feature``. Features
    with a null or non-polygon geometry are left out (and reported to ``skip(reason)`` if given).

    Raises:
        InvalidSourceError: unreadable or malformed JSON, or malformed polygon coordinates.

    Example:
        >>> import json, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a_nuclei.geojson"
        >>> sq = [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]
        >>> _ = p.write_text(json.dumps({"type": "FeatureCollection", "features": [
        ...     {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[sq], [sq]]},
        ...      "properties": {"classification": {"name": "nuclei_tumor"}}}]}))
        >>> [(name, len(parts)) for name, parts in parse_nuclei_geojson(p)]
        [('nuclei_tumor', 2)]
    """
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidSourceError(f"{path}: malformed GeoJSON ({exc})") from None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, list):
        features = data
    else:
        raise InvalidSourceError(f"{path}: not a GeoJSON FeatureCollection or list of Features")
    if not isinstance(features, list):
        raise InvalidSourceError(f"{path}: 'features' is not a list")
    out: list[Feature] = []
    for i, feat in enumerate(features):
        if not isinstance(feat, dict):
            raise InvalidSourceError(f"{path}: feature {i} is not a JSON object")
        geom = feat.get("geometry")
        props = feat.get("properties") if isinstance(feat.get("properties"), dict) else {}
        cls = props.get("classification") if isinstance(props, dict) else None
        name = cls.get("name") if isinstance(cls, dict) else None
        name = name if isinstance(name, str) else None
        if geom is None:
            if skip is not None:
                skip("feature without geometry")
            continue
        if not isinstance(geom, dict):
            raise InvalidSourceError(f"{path}: feature {i} has a malformed geometry")
        kind, coords = geom.get("type"), geom.get("coordinates")
        if kind == "Polygon":
            parts = [_polygon(coords, path, i)]
        elif kind == "MultiPolygon":
            if not isinstance(coords, list) or not coords:
                raise InvalidSourceError(f"{path}: feature {i} has a MultiPolygon without polygons")
            parts = [_polygon(p, path, i) for p in coords]
        else:
            if skip is not None:
                skip(f"feature with a {kind} geometry (not a polygon)")
            continue
        out.append((name, parts))
    return out


def rasterize_features(
    features: list[Feature], shape: tuple[int, int], skip: Any = None
) -> tuple[np.ndarray, dict[int, int]]:
    """Instance map and class of every nucleus feature (one id per feature, parts and holes included).

    Features are filled in order with id = 1 + their position among the nucleus features, later
    ones overwriting earlier ones. Features whose class is not a PUMA nucleus class are left out
    (and reported to ``skip(reason)``).

    Example:
        >>> import numpy as np
        >>> sq = np.array([[0, 0], [3, 0], [3, 3], [0, 3]], float)
        >>> lab, cls = rasterize_features([("nuclei_tumor", [(sq, []), (sq + 5, [])])], (10, 10))
        >>> sorted(np.unique(lab).tolist()), cls
        ([0, 1], {1: 1})
    """
    lookup = {n: i for i, n in enumerate(NUCLEUS_CLASSES, start=1)}
    out = np.zeros(shape, np.int32)
    classes: dict[int, int] = {}
    k = 0
    for name, parts in features:
        cls = lookup.get(name.strip().lower()) if name is not None else None
        if cls is None:
            if skip is not None:
                skip("feature without a class" if name is None else f"feature of non-nucleus class {name!r}")
            continue
        k += 1
        for exterior, holes in parts:
            rr, cc = fill_polygon(exterior, shape, holes)
            out[rr, cc] = k
        classes[k] = cls
    present = set(np.unique(out).tolist()) - {0}
    return out, {i: c for i, c in classes.items() if i in present}


def _find_dir(base: Path, name: str, pattern: str, max_depth: int) -> Path | None:
    """``name/`` under ``base`` (normal layout), else a folder directly holding files like ``pattern``."""
    found = find_marker(base, name, max_depth=max_depth)
    if found is not None:
        return found / name
    level = [base] if base.is_dir() else []
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for folder in level:
            if any(folder.glob(pattern)):
                return folder
            try:
                nxt.extend(
                    sorted(
                        p
                        for p in folder.iterdir()
                        if p.is_dir() and not p.name.startswith((".tmp-", "prepared")) and p.name != "__MACOSX"
                    )
                )
            except OSError:
                continue
        level = nxt
    return None


@register
class PUMA(NucleiDataset):
    """PUMA: 1024×1024 melanoma ROIs (primary and metastatic) with nuclei of 10 classes.

    Only the challenge's training set is public, so there is one split, ``"all"``. Whether an ROI is
    primary or metastatic is in ``meta.extra["melanoma"]``.

    Example:
        >>> from nucfuse_datasets import PUMA  # doctest: +SKIP
        >>> ds = PUMA(root, download=True)  # doctest: +SKIP
        >>> ds.meta(0).extra["melanoma"], ds.class_names[1]  # doctest: +SKIP
        ('metastatic', 'nuclei_tumor')
    """

    name = "puma"
    title = "PUMA"
    description = (
        "Panoptic segmentation of nUclei and tissue in advanced MelanomA (PUMA challenge): 1024×1024 px ROIs at "
        "40× from primary and metastatic melanoma, nuclei outlined as GeoJSON polygons in 10 classes."
    )
    license = "CC0 1.0"
    citation = (
        "Schuiveling M. et al. A novel dataset for nuclei and tissue segmentation in melanoma with baseline nuclei "
        "segmentation and tissue segmentation benchmarks. GigaScience 14 (2025)."
    )
    homepage = ZENODO
    resources = (
        Resource(
            key="rois",
            filename="01_training_dataset_tif_ROIs.zip",
            urls=(f"{ZENODO}/files/01_training_dataset_tif_ROIs.zip",),
            sha256="af48b879f8ff7e74b84a7114924881606f13f108aa0f9bcc21d3593b717ee022",
            hash_source="pinned in constantinpape/torch-em@6f71247 histopathology/puma.py (Zenodo publishes md5 only)",
            marker=ROI_DIR,
            page=ZENODO,
        ),
        Resource(
            key="nuclei",
            filename="01_training_dataset_geojson_nuclei.zip",
            urls=(f"{ZENODO}/files/01_training_dataset_geojson_nuclei.zip",),
            sha256="eda271225900d6de0759e0281f3731a570e09f2adab58bd36425b9d2dfad91a0",
            hash_source="pinned in constantinpape/torch-em@6f71247 histopathology/puma.py (Zenodo publishes md5 only)",
            marker=NUCLEI_DIR,
            page=ZENODO,
        ),
        Resource(
            key="tissue",
            filename="01_training_dataset_geojson_tissue.zip",
            urls=(f"{ZENODO}/files/01_training_dataset_geojson_tissue.zip",),
            sha256="fc2835135cc28324f52eac131327f0f12c554c0b1f334a108bf4b65e0f18c42b",
            hash_source="pinned in constantinpape/torch-em@6f71247 histopathology/puma.py (Zenodo publishes md5 only)",
            marker=TISSUE_DIR,
            page=ZENODO,
            required=False,
            note="Tissue annotations; optional and not used by the converter (nuclei only).",
        ),
    )
    splits = ("all",)
    test_split = None
    class_names = ("background", *NUCLEUS_CLASSES)
    magnification = 40.0
    expected_counts = (
        # Zenodo versions hold 205 (v3/v4) or 206 (v5) ROIs; nuclei: 97,187 (Table 1), 97,378 (third-party
        # config, 205 ROIs), 97,429 (NucFuseRank list, 206 ROIs)
        ExpectedCount("all", 205, 97187, "NucFuseRank paper Table 1 (103 primary + 102 metastatic)", tolerance=0.005),
    )
    paper = PaperStats(205, 97187, "8", "1024×1024", 29.63, 3056)
    manual_instructions = ""

    def active_resources(self, splits: Iterable[str] | None = None) -> tuple[Resource, ...]:
        """The ROI and nuclei archives (the tissue archive is not needed)."""
        return tuple(r for r in super().active_resources(splits) if r.required)

    @classmethod
    def _content_root(cls, res: Resource, base: Path, max_depth: int) -> Path | None:
        # the folder that directly holds the files (normally the zip's top folder)
        pattern = {"rois": "training_set_*_roi_*.tif*", "nuclei": "training_set_*_nuclei.geojson"}.get(
            res.key, "training_set_*_tissue.geojson"
        )
        return _find_dir(base, res.marker or "", pattern, max_depth)

    def _convert(self, sources: Sources) -> Iterator[Job]:
        rois: dict[str, Path] = {}
        for p in sorted(sources["rois"].iterdir()):
            if p.suffix.lower() not in (".tif", ".tiff") or p.name.startswith("."):
                continue
            if p.stem in rois:
                raise InvalidSourceError(f"{p}: ROI {p.stem} exists as both {rois[p.stem].name} and {p.name}")
            rois[p.stem] = p
        nuclei = {
            p.stem[: -len(_NUCLEI_SUFFIX)]: p
            for p in sources["nuclei"].iterdir()
            if p.suffix.lower() == ".geojson" and p.stem.endswith(_NUCLEI_SUFFIX) and not p.name.startswith(".")
        }
        if set(rois) != set(nuclei):
            raise InvalidSourceError(
                f"{sources['rois']} / {sources['nuclei']}: ROIs and nuclei annotations do not pair up (ROIs "
                f"without nuclei: {sorted(set(rois) - set(nuclei))[:5]}, nuclei without ROI: "
                f"{sorted(set(nuclei) - set(rois))[:5]}); are both archives from the same Zenodo version?"
            )
        if not rois:
            raise InvalidSourceError(f"{sources['rois']}: no training_set_*_roi_*.tif files")
        for stem in sorted(rois):
            yield Job(_convert_one, (stem, rois[stem], nuclei[stem]))  # read and rasterised in a worker


def _convert_one(stem: str, tif: Path, geojson: Path) -> RawSample:
    """One PUMA ROI: its TIFF and rasterised nuclei (skipped features reported); runs in a worker."""
    m = _STEM.match(stem)
    if m is None:
        raise InvalidSourceError(f"{tif}: unexpected ROI name (expected training_set_<primary|metastatic>_roi_NNN)")
    image = to_rgb_uint8(read_image(tif), tif)
    features = parse_nuclei_geojson(geojson, skip=report_skip)
    instances, classes = rasterize_features(features, image.shape[:2], skip=report_skip)
    return RawSample(
        sample_id=stem,
        split="all",
        image=image,
        instances=instances,
        classes=classes,
        meta={
            "magnification": 40.0,
            "original_file": f"{ROI_DIR}/{tif.name}",
            "extra": {"melanoma": m.group(1), "roi": int(m.group(2))},
        },
    )
