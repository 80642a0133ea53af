"""Fake PUMA: RGBA ROI TIFFs (one ``.tiff``), nuclei GeoJSON with MultiPolygons, holes and non-nucleus features.

Per ROI, 6 outlines from ``fake_polygons`` (none hidden by another); outlines 1 and 2 form one
MultiPolygon feature, outline 3 has an interior ring (a hole), and two extra features are skipped
by the converter (a ``tissue_tumor`` polygon and a feature with a null geometry). So each ROI has
5 nuclei and 2 skipped features.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nucfuse_datasets.datasets.puma import NUCLEUS_CLASSES
from tests.fakedata import FakeData
from tests.fakedata._common import fake_polygons, paint_nuclei, rgba, tile, write_tiff, zip_tree

NAME = "puma"
ROI_DIR = "01_training_dataset_tif_ROIs"
NUCLEI_DIR = "01_training_dataset_geojson_nuclei"
ROIS = [("primary", 1), ("primary", 2), ("metastatic", 1), ("metastatic", 103)]
SIZE = 64
NUCLEI_PER_ROI = 5  # 6 outlines, two of them one MultiPolygon
SKIPPED_PER_ROI = {"feature of non-nucleus class 'tissue_tumor'": 1, "feature without geometry": 1}


def stem(kind: str, idx: int) -> str:
    return f"training_set_{kind}_roi_{idx:03d}"


def ring(xy: np.ndarray) -> list[list[float]]:
    """A closed GeoJSON ring (first position repeated at the end)."""
    pts = [[round(float(x), 3), round(float(y), 3)] for x, y in xy]
    return [*pts, pts[0]]


def circle(cx: float, cy: float, r: float, n: int = 16) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])


def feature(geometry: dict | None, cls: str | None) -> dict:
    props: dict = {"objectType": "annotation"}
    if cls is not None:
        props["classification"] = {"name": cls, "color": [255, 0, 0]}
    return {"type": "Feature", "id": "x", "geometry": geometry, "properties": props}


def hole_of(xy: np.ndarray) -> np.ndarray:
    """A small ring around the outline's centre: the interior ring of that nucleus."""
    return circle(float(xy[:, 0].mean()), float(xy[:, 1].mean()), 1.6, n=12)


def nuclei_geojson(polys: list[np.ndarray], offset: int) -> dict:
    """FeatureCollection: 5 nuclei (one MultiPolygon, one with a hole) and 2 features the converter skips."""
    names = [NUCLEUS_CLASSES[(offset + i) % len(NUCLEUS_CLASSES)] for i in range(5)]
    feats = [
        feature({"type": "Polygon", "coordinates": [ring(polys[0])]}, names[0]),
        feature({"type": "MultiPolygon", "coordinates": [[ring(polys[1])], [ring(polys[2])]]}, names[1]),
        feature({"type": "Polygon", "coordinates": [ring(polys[3]), ring(hole_of(polys[3]))]}, names[2]),
        feature(None, names[3]),  # a null geometry
        feature({"type": "Polygon", "coordinates": [ring(circle(30.0, 30.0, 5.0))]}, "tissue_tumor"),
        feature({"type": "Polygon", "coordinates": [ring(polys[4])]}, names[3]),
        feature({"type": "Polygon", "coordinates": [ring(polys[5])]}, names[4]),
    ]
    return {"type": "FeatureCollection", "features": feats}


def polygons(i: int) -> list[np.ndarray]:
    """The 6 outlines the fake draws for ROI number ``i`` (position in ``ROIS``)."""
    return fake_polygons(SIZE, SIZE, np.random.default_rng(400 + i), 6)


def rois_of(ids: Sequence[str]) -> list[tuple[str, int]]:
    """``(kind, number)`` of real ROI names (``training_set_primary_roi_001``)."""
    out = []
    for sid in ids:
        kind, _, num = sid.removeprefix("training_set_").partition("_roi_")
        out.append((kind, int(num)))
    return out


def make(workdir: Path, ids: Sequence[str] | None = None) -> FakeData:
    """Write the fake; ``ids`` (real ROI names such as ``training_set_metastatic_roi_009``) replace :data:`ROIS`."""
    native = workdir / "native"
    rois, nuclei = native / ROI_DIR, native / NUCLEI_DIR
    rois.mkdir(parents=True)
    nuclei.mkdir(parents=True)
    chosen = ROIS if ids is None else rois_of(ids)
    for i, (kind, idx) in enumerate(chosen):
        image, _, _ = tile(SIZE, SIZE, 400 + i, density=0.0)
        polys = polygons(i)
        ext = ".tiff" if idx == 103 else ".tif"  # the ROI 103 quirk
        write_tiff(rois / f"{stem(kind, idx)}{ext}", rgba(paint_nuclei(image, polys)))
        (nuclei / f"{stem(kind, idx)}_nuclei.geojson").write_text(json.dumps(nuclei_geojson(polys, i)))
    archives = workdir / "archives"
    out = {}
    for key, folder, filename in (
        ("rois", rois, "01_training_dataset_tif_ROIs.zip"),
        ("nuclei", nuclei, "01_training_dataset_geojson_nuclei.zip"),
    ):
        staging = workdir / f"staging-{key}"
        shutil.copytree(folder, staging / folder.name)
        out[key] = zip_tree(staging, archives / filename)
    n = len(chosen)
    return FakeData(
        native_dir=native,
        archives=out,
        tiles={"all": n},
        nuclei={"all": NUCLEI_PER_ROI * n},
    )


def bad_inputs() -> list:
    """This dataset's cases of the bad-input corpus (``tests/reliability``): each breaks the fake in one way."""
    from nucfuse_datasets.errors import InvalidSourceError, UnsafeArchiveError
    from tests.reliability.corpus import (
        PUMA_GEOJSON,
        Case,
        absolute,
        empty,
        local_truncated,
        native,
        text,
        truncated,
        zip_member,
    )

    return [
        Case(
            "truncated-zip-pinned",
            "puma",
            local_truncated("rois", 0.7, pinned=True),
            InvalidSourceError,
            ("truncated",),
        ),
        Case("zip-absolute", "puma", zip_member("nuclei", absolute()), UnsafeArchiveError, ("absolute path",)),
        Case("geojson-truncated", "puma", native(PUMA_GEOJSON, truncated(0.5)), InvalidSourceError, ("geojson",)),
        Case("geojson-not-a-collection", "puma", native(PUMA_GEOJSON, text("42")), InvalidSourceError, ("geojson",)),
        Case(
            "geojson-ragged-coordinates",
            "puma",
            native(
                PUMA_GEOJSON,
                text(
                    '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
                    '"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [4, 0, 1], [4]]]}}]}'
                ),
            ),
            InvalidSourceError,
            ("coordinates",),
        ),
        Case("empty-geojson-puma", "puma", native(PUMA_GEOJSON, empty), InvalidSourceError, ("geojson",)),
    ]
