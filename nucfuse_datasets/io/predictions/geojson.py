"""GeoJSON nucleus outlines: CellViT's ``cells.geojson`` and QuPath's (or InstanSeg's) object exports.

Both are a ``FeatureCollection``, a bare JSON list of ``Feature`` s, or one ``Feature``; the class is
``properties.classification.name``. They differ in what a feature is and where a vertex sits:

* **CellViT** (``TIO-IKIM/CellViT`` ``cell_detection.py --geojson``, CellViT++ ``--geojson``) writes a bare list
  with **one feature per class**: ``{"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates":
  [[ring], [ring], ...]}, "properties": {"objectType": "annotation", "classification": {"name": "Neoplastic",
  "color": [255, 0, 0]}}}``, each polygon of the MultiPolygon one nucleus, each ring the nucleus' ``cv2``
  contour (pixel-centre vertices) closed by repeating its first point. Class names of the PanNuke models:
  Neoplastic, Inflammatory, Connective, Dead, Epithelial. Read: every polygon is one instance, filled as a
  contour (:func:`~nucfuse_datasets.io.predictions.fill.fill_contours`, needs OpenCV).
* **QuPath** (File ▸ Export objects as GeoJSON, ``exportObjectsToGeoJson``; InstanSeg's ``save_geojson``) writes
  **one feature per object**, ``properties.objectType`` ``"detection"``, ``"cell"`` or ``"annotation"``, vertices
  in pixel units with the origin at the top-left corner of the image (a traced outline runs along pixel edges).
  Read: every feature is one instance (the parts of a MultiPolygon share it; inner rings are holes), filled by
  pixel centres (:func:`~nucfuse_datasets.io.predictions.fill.fill_polygons`). A ``"cell"`` contributes its
  ``properties.nucleusGeometry`` when it has one. When the file holds detections or cells, its annotations (the
  regions the detection ran in) are left out.

Format ``"geojson"`` decides per file: CellViT's layout is recognised by content (every outline feature a
MultiPolygon, no two features of one class, no detection or cell objects); anything else is read as QuPath's.
Pass ``"cellvit"`` or ``"qupath"`` to force one. Features are filled in file order, later over earlier; points and
lines (CellViT's ``cell_detection.geojson``) are not outlines and are skipped, and a file with nothing else is an
error. Without a ``class_map`` the classes are ``None`` (the names are in ``Prediction.names_seen``); with one, every
name must be in it (``None`` as a value leaves those objects out, e.g. InstanSeg's ``"Cells"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nucfuse_datasets.errors import ArgumentError, InvalidPredictionError
from nucfuse_datasets.io.predictions._common import (
    Budget,
    ClassMap,
    Prediction,
    check_class_map,
    check_points,
    finish,
    left_out,
    load_json,
    ring,
)
from nucfuse_datasets.io.predictions.fill import fill_contours, fill_polygons

__all__ = ["CELLVIT_CLASSES", "read_geojson"]

#: CellViT's class names for its PanNuke models (``TYPE_NUCLEI_DICT``: type 1..5).
CELLVIT_CLASSES: tuple[str, ...] = ("Neoplastic", "Inflammatory", "Connective", "Dead", "Epithelial")
_OUTLINES = ("Polygon", "MultiPolygon")
_OBJECTS = ("detection", "cell")

#: An object: its class name (or None), its object type, its geometry type and its polygons (exterior, holes).
_Object = tuple["str | None", "str | None", str, list[tuple[NDArray[np.float64], list[NDArray[np.float64]]]]]


def _features(doc: Any, path: Path) -> list[Any]:
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, list):
        features = doc
    else:
        raise InvalidPredictionError(
            f"{path}: not GeoJSON (expected a FeatureCollection, a list of Features or a Feature, got "
            f"{type(doc).__name__})"
        )
    if not isinstance(features, list):
        raise InvalidPredictionError(f"{path}: 'features' is not a list")
    return features


def _name(props: dict[str, Any]) -> str | None:
    cls = props.get("classification")
    if not isinstance(cls, dict):
        return None
    name = cls.get("name")
    if isinstance(name, str):
        return name
    names = cls.get("names")  # a derived class written as a list of names
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return ": ".join(names)
    return None


def _polygon(rings: Any, where: str, shape: tuple[int, int], budget: Budget) -> tuple[Any, list[Any]]:
    if not isinstance(rings, list) or not rings:
        raise InvalidPredictionError(f"{where}: a Polygon must be a non-empty list of rings")
    out = []
    for k, value in enumerate(rings):
        xy = ring(value, f"{where}, ring {k}")
        check_points(xy, shape, where)
        budget.add(xy)
        out.append(xy)
    return out[0], out[1:]


def _objects(features: list[Any], path: Path, shape: tuple[int, int]) -> tuple[list[_Object], int]:
    """Every outline object, in file order, and the number of point or line features skipped."""
    budget = Budget(shape, str(path))
    objects: list[_Object] = []
    skipped = 0
    for i, feat in enumerate(features):
        where = f"{path}: feature {i}"
        if not isinstance(feat, dict):
            raise InvalidPredictionError(f"{where} is not a JSON object")
        props = feat.get("properties")
        props = props if isinstance(props, dict) else {}
        kind = props.get("objectType") if isinstance(props.get("objectType"), str) else None
        geom = feat.get("geometry")
        if kind == "cell" and isinstance(props.get("nucleusGeometry"), dict):
            geom = props["nucleusGeometry"]
        if geom is None:
            continue
        if not isinstance(geom, dict) or not isinstance(geom.get("type"), str):
            raise InvalidPredictionError(f"{where} has a malformed geometry (an object with a 'type' is expected)")
        gtype, coords = geom["type"], geom.get("coordinates")
        if gtype == "Polygon":
            parts = [_polygon(coords, where, shape, budget)]
        elif gtype == "MultiPolygon":
            if not isinstance(coords, list):
                raise InvalidPredictionError(f"{where}: a MultiPolygon's coordinates must be a list of polygons")
            parts = [_polygon(p, where, shape, budget) for p in coords]
        else:
            skipped += 1
            continue
        objects.append((_name(props), kind, gtype, parts))
    return objects, skipped


def _is_cellvit(objects: list[_Object]) -> bool:
    """CellViT's layout: one MultiPolygon feature per class, no QuPath detections or cells."""
    names = [name for name, _, _, _ in objects]
    return (
        bool(objects)
        and all(gtype == "MultiPolygon" and kind not in _OBJECTS for _, kind, gtype, _ in objects)
        and len(set(names)) == len(names)
    )


def read_geojson(
    path: Path, shape: tuple[int, int], class_map: ClassMap | None = None, convention: str | None = None
) -> Prediction:
    """Read a GeoJSON file of nucleus outlines as CellViT or QuPath writes it (see the module docstring).

    Args:
        path: the file.
        shape: the tile's ``(H, W)``.
        class_map: ``{classification name: class id}`` (``None`` values leave objects out).
        convention: ``"cellvit"``, ``"qupath"`` or ``None`` (decide from the content).

    Raises:
        InvalidPredictionError: not GeoJSON, malformed geometries, points only, coordinates far outside the tile,
            a class name missing from ``class_map``, or over the bounds of
            :mod:`~nucfuse_datasets.io.predictions._common`.
        DependencyNotFoundError: OpenCV is not installed (CellViT convention).

    Example:
        >>> import json, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tile.geojson"
        >>> square = [[1, 1], [3, 1], [3, 3], [1, 3], [1, 1]]  # pixel corners: 2×2 pixels
        >>> _ = p.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature",
        ...     "geometry": {"type": "Polygon", "coordinates": [square]},
        ...     "properties": {"objectType": "detection", "classification": {"name": "Tumor"}}}]}))
        >>> pred = read_geojson(p, (4, 4), class_map={"Tumor": 1})
        >>> pred.format, pred.instances.tolist(), pred.classes.tolist()
        ('qupath', [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], [0, 1])
    """
    if convention not in (None, "cellvit", "qupath"):
        raise ArgumentError(f"convention must be 'cellvit', 'qupath' or None, got {convention!r}")
    objects, skipped = _objects(_features(load_json(path, "GeoJSON"), path), path, shape)
    if not objects and skipped:
        raise InvalidPredictionError(
            f"{path}: {skipped} feature(s) but no polygon: points or lines are not nucleus outlines (CellViT's "
            "cell_detection.geojson holds centroids; score its cells.geojson instead)"
        )
    fmt = convention or ("cellvit" if _is_cellvit(objects) else "qupath")
    if fmt == "qupath" and any(kind in _OBJECTS for _, kind, _, _ in objects):
        objects = [obj for obj in objects if obj[1] in _OBJECTS]  # detections win over their parent annotations
    check_class_map([name for name, *_ in objects], class_map, path)
    types: dict[int, Any] = {}
    if fmt == "cellvit":
        contours: list[NDArray[np.float64]] = []
        ids: list[int] = []
        for name, _, _, parts in objects:
            if left_out(name, class_map):
                continue
            for exterior, _holes in parts:
                contours.append(exterior)
                ids.append(len(ids) + 1)
                types[ids[-1]] = name
        inst = fill_contours(contours, ids, shape, "fill CellViT's GeoJSON contours")
    else:
        polygons, owners = [], []
        for name, _, _, parts in objects:
            if left_out(name, class_map):
                continue
            types[len(types) + 1] = name
            polygons.extend(parts)
            owners.extend([len(types)] * len(parts))
        inst = fill_polygons(polygons, owners, shape)
    named = any(v is not None for v in types.values())
    return finish(path, fmt, inst, shape, types if named else None, class_map)
