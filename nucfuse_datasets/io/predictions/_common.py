"""What every prediction reader shares: the result types, the bounds on untrusted files, class mapping, JSON loading.

Bounds (a prediction folder is untrusted input, like a downloaded annotation file):

* a JSON/GeoJSON file larger than :data:`MAX_JSON_BYTES` is refused before it is read;
* ``NaN``/``Infinity`` literals, malformed UTF-8 and nesting deeper than Python's recursion limit are refused;
* coordinates must be finite and lie within one tile size of the tile (:func:`check_points`): a prediction made on
  a whole slide, another image or another magnification fails with that hint instead of rasterising nonsense;
* all polygons together may have at most :data:`VERTICES_PER_PIXEL` vertices per pixel of the tile (plus
  :data:`EXTRA_VERTICES`), and their bounding boxes, clipped to the tile, may cover at most
  :data:`MAX_BOX_COVER` times its area, and the rows their edges cross may add up to at most
  :data:`CROSSINGS_PER_PIXEL` per tile pixel (:class:`Budget`): together they bound the rasterisation work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nucfuse_datasets._labelmap import check_label_map, relabel
from nucfuse_datasets.errors import ArgumentError, InvalidPredictionError

__all__ = [
    "CROSSINGS_PER_PIXEL",
    "EXTRA_CROSSINGS",
    "EXTRA_VERTICES",
    "MAX_BOX_COVER",
    "MAX_JSON_BYTES",
    "PREDICTION_FORMATS",
    "VERTICES_PER_PIXEL",
    "Budget",
    "ClassMap",
    "Prediction",
    "PredictionFile",
    "check_class_map",
    "check_points",
    "finish",
    "left_out",
    "load_json",
    "ring",
]

#: The formats a prediction folder can hold. ``"geojson"`` picks ``"cellvit"`` or ``"qupath"`` per file (see
#: :mod:`nucfuse_datasets.io.predictions.geojson`); the other names are one convention each.
PREDICTION_FORMATS: tuple[str, ...] = (
    "hovernet-mat",
    "hovernet-json",
    "geojson",
    "cellvit",
    "qupath",
    "cellpose",
    "label",
)
#: Largest JSON/GeoJSON prediction file read (bytes); a tile's real output is a few MB.
MAX_JSON_BYTES = 256 * 1024 * 1024
#: Vertices allowed per tile pixel, over all polygons of a file (a pixel-traced outline has at most 4 per pixel).
VERTICES_PER_PIXEL = 4
#: Vertices allowed on top of the per-pixel allowance (tiny tiles with smooth polygons).
EXTRA_VERTICES = 1 << 16
#: The polygons' bounding boxes, clipped to the tile, may cover at most this many times the tile's area.
MAX_BOX_COVER = 16
#: Filling is done row by row: each edge is crossed with every pixel row it spans. The crossings of all edges
#: (the sum of their heights in pixels) may be at most this many per tile pixel (plus :data:`EXTRA_CROSSINGS`);
#: nucleus outlines need about two per pixel of nucleus height.
CROSSINGS_PER_PIXEL = 4
#: Crossings allowed on top of the per-pixel allowance (small tiles).
EXTRA_CROSSINGS = 1 << 22

#: ``{class name or type id: class id}``; a value ``None`` leaves those objects out (e.g. InstanSeg's "Cells").
ClassMap = Mapping[Any, "int | None"]


@dataclass(frozen=True)
class PredictionFile:
    """One tile's prediction file, as :func:`~nucfuse_datasets.io.predictions.find_predictions` matched it.

    Attributes:
        path: the file.
        format: one of :data:`PREDICTION_FORMATS`.
    """

    path: Path
    format: str


@dataclass(frozen=True)
class Prediction:
    """A prediction read from a tool's file, in the library's :class:`~nucfuse_datasets.schema.Sample` convention.

    Attributes:
        instances: ``H×W`` ``int32`` instance map, 0 = background.
        classes: ``None``, or an ``int32`` lookup with ``classes[i]`` the class id of instance ``i`` and
            ``classes[0] == 0`` (0 also for an object the file gives no class).
        class_names: names of the class ids (entry 0 ``"background"``) when a name map made them, else ``None``.
        names_seen: the class names or type ids the file uses, sorted (to build a ``class_map`` from).
        path: the file read.
        format: the convention it was read with (``"cellvit"`` or ``"qupath"`` for a ``"geojson"`` file).
    """

    instances: NDArray[np.int32]
    classes: NDArray[np.int32] | None
    class_names: tuple[str, ...] | None
    names_seen: tuple[str, ...]
    path: Path
    format: str


def load_json(path: Path, what: str) -> Any:
    """Parse a JSON file of at most :data:`MAX_JSON_BYTES`, refusing ``NaN``/``Infinity`` and deep nesting.

    Raises:
        InvalidPredictionError: too large, unreadable, malformed, or one of the refused constructs; the message
            names the file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"; _ = p.write_text('{"nuc": {}}')
        >>> load_json(p, "HoVer-Net JSON")
        {'nuc': {}}
    """
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise InvalidPredictionError(f"{path}: cannot read the {what} file ({exc})") from None
    if size > MAX_JSON_BYTES:
        raise InvalidPredictionError(
            f"{path}: {what} file of {size} bytes, over the limit of {MAX_JSON_BYTES} bytes for one tile's "
            "prediction; is this a whole-slide output? Export the tile's objects only"
        )

    def refuse(constant: str) -> Any:
        raise ValueError(f"the non-standard constant {constant} (NaN or Infinity) is not allowed")

    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read(), parse_constant=refuse)
    except RecursionError:
        raise InvalidPredictionError(f"{path}: {what} nested too deeply to be a prediction (refused)") from None
    except (OSError, ValueError, MemoryError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidPredictionError(f"{path}: malformed {what} ({exc})") from None


def check_points(xy: NDArray[np.float64], shape: tuple[int, int], where: str) -> None:
    """Refuse non-finite coordinates and coordinates more than one tile size outside the ``H×W`` tile.

    ``xy`` is an ``N×2`` array of (x, y) = (column, row) positions.

    Example:
        >>> check_points(np.array([[0.0, 0.0], [20.0, 5.0]]), (10, 10), "demo.geojson")
        >>> check_points(np.array([[0.0, 1e6]]), (10, 10), "demo.geojson")
        Traceback (most recent call last):
        ...
        nucfuse_datasets.errors.InvalidPredictionError: demo.geojson: coordinates ...
    """
    if not xy.size:
        return
    if not np.all(np.isfinite(xy)):
        raise InvalidPredictionError(f"{where}: non-finite coordinates (NaN or infinity)")
    h, w = shape
    margin = max(h, w)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    if lo[0] < -margin or lo[1] < -margin or hi[0] > w + margin or hi[1] > h + margin:
        raise InvalidPredictionError(
            f"{where}: coordinates from ({lo[0]:.6g}, {lo[1]:.6g}) to ({hi[0]:.6g}, {hi[1]:.6g}) (x, y) lie far "
            f"outside the {h}×{w} tile; was the prediction made on another image, a whole slide or at another "
            "magnification? Coordinates must be pixel positions in the tile"
        )


def ring(value: Any, where: str) -> NDArray[np.float64]:
    """An ``N×2`` float array of (x, y) positions from a JSON list of ``[x, y]`` (or ``[x, y, z]``) numbers.

    Raises:
        InvalidPredictionError: not a list of numeric positions (the message names ``where``).

    Example:
        >>> ring([[1, 2], [3, 4.5]], "demo").tolist()
        [[1.0, 2.0], [3.0, 4.5]]
    """
    if not isinstance(value, list):
        raise InvalidPredictionError(f"{where}: expected a list of [x, y] positions, got {type(value).__name__}")
    if not value:
        return np.zeros((0, 2), np.float64)
    try:
        xy = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidPredictionError(f"{where}: positions that are not pairs of numbers") from None
    if xy.ndim != 2 or xy.shape[1] not in (2, 3):
        raise InvalidPredictionError(f"{where}: expected a list of [x, y] positions, got an array of shape {xy.shape}")
    return np.ascontiguousarray(xy[:, :2])


class Budget:
    """Counts the vertices and the clipped bounding-box area of a file's polygons against the bounds.

    Example:
        >>> b = Budget((10, 10), "demo.geojson")
        >>> b.add(np.array([[0.0, 0.0], [9.0, 0.0], [9.0, 9.0]]))
        >>> b.vertices, b.area
        (3, 100)
    """

    def __init__(self, shape: tuple[int, int], where: str) -> None:
        self.shape = shape
        self.where = where
        self.vertices = 0
        self.area = 0
        self.max_vertices = VERTICES_PER_PIXEL * (shape[0] + 1) * (shape[1] + 1) + EXTRA_VERTICES
        self.max_area = MAX_BOX_COVER * max(1, shape[0] * shape[1])
        self.crossings = 0
        self.max_crossings = CROSSINGS_PER_PIXEL * shape[0] * shape[1] + EXTRA_CROSSINGS

    def add(self, xy: NDArray[np.float64]) -> None:
        """Account for one ring of (x, y) vertices (already checked by :func:`check_points`)."""
        self.vertices += int(xy.shape[0])
        if self.vertices > self.max_vertices:
            raise InvalidPredictionError(
                f"{self.where}: more than {self.max_vertices} polygon vertices for a "
                f"{self.shape[0]}×{self.shape[1]} tile (at most {VERTICES_PER_PIXEL} per pixel); refused"
            )
        if not xy.size:
            return
        h, w = self.shape
        x0, y0 = np.clip(np.floor(xy.min(axis=0)), 0, [w, h])
        x1, y1 = np.clip(np.ceil(xy.max(axis=0)) + 1, 0, [w, h])
        self.area += int((x1 - x0) * (y1 - y0))
        self.crossings += int(np.abs(np.diff(xy[:, 1], append=xy[:1, 1])).sum()) + int(xy.shape[0])
        if self.crossings > self.max_crossings:
            raise InvalidPredictionError(
                f"{self.where}: polygons too complex to fill for a {h}×{w} tile (their edges cross more than "
                f"{self.max_crossings} pixel rows in all); refused"
            )
        if self.area > self.max_area:
            raise InvalidPredictionError(
                f"{self.where}: the polygons' bounding boxes cover more than {MAX_BOX_COVER} times the "
                f"{h}×{w} tile; not a nucleus segmentation of this tile (refused)"
            )


def left_out(value: Any, class_map: ClassMap | None) -> bool:
    """True when ``class_map`` maps the class name or type id ``value`` to ``None`` (leave those objects out).

    Example:
        >>> left_out("Cells", {"Nuclei": 1, "Cells": None}), left_out("Nuclei", {"Nuclei": 1}), left_out(2, None)
        (True, False, False)
    """
    if class_map is None or value is None:
        return False
    return any(key in class_map and class_map[key] is None for key in (value, str(value)))


def check_class_map(values: Any, class_map: ClassMap | None, path: Path) -> None:
    """Refuse class names or type ids (``None`` entries aside) that ``class_map`` lacks, listing all of them.

    Example:
        >>> check_class_map(["Tumor", "Stroma", None], {"Tumor": 1}, Path("a.geojson"))
        Traceback (most recent call last):
        ...
        nucfuse_datasets.errors.InvalidPredictionError: a.geojson: class(es) ['Stroma'] not in class_map ...
    """
    if class_map is None:
        return
    for key, cid in class_map.items():
        if cid is not None and (isinstance(cid, bool) or not isinstance(cid, (int, np.integer)) or cid < 0):
            raise ArgumentError(f"class_map[{key!r}] must be a non-negative int or None, got {cid!r}")
    present = {v for v in values if v is not None}
    missing = sorted({str(v) for v in present if v not in class_map and str(v) not in class_map})
    if missing:
        raise InvalidPredictionError(
            f"{path}: class(es) {missing} not in class_map (the file uses {sorted({str(v) for v in present})}; "
            f"class_map has {sorted(map(str, class_map))}); add them, or map them to None to leave those objects out"
        )


def _class_id(value: Any, class_map: ClassMap | None) -> int:
    """The class id of a checked name or type id (raw type ids without a ``class_map``)."""
    if class_map is None:
        return int(value) if isinstance(value, (int, np.integer)) else 0
    cid = class_map[value] if value in class_map else class_map[str(value)]
    return 0 if cid is None else int(cid)


def finish(
    path: Path,
    fmt: str,
    instances: Any,
    shape: tuple[int, int],
    types: Mapping[int, Any] | None,
    class_map: ClassMap | None,
) -> Prediction:
    """Check an instance map, apply the classes of its ids, and return the :class:`Prediction`.

    Args:
        path: the file (named in every message).
        fmt: the format it was read as.
        instances: the instance map (any integer dtype; integral floats, as ``.mat`` files store them, accepted).
        shape: the tile's ``(H, W)``.
        types: ``None`` (the format carries no classes) or ``{instance id: class name or type id}``; an object
            without a class maps to ``None`` there (class 0).
        class_map: maps names (or type ids) to class ids; an entry ``None`` removes those objects.

    Example:
        >>> p = finish(Path("x.mat"), "hovernet-mat", np.array([[0, 4], [2, 4]]), (2, 2), {2: 1, 4: 3}, None)
        >>> p.instances.dtype, p.classes.tolist()
        (dtype('int32'), [0, 0, 1, 0, 3])
    """
    arr = check_label_map(instances, f"{path}", InvalidPredictionError, shape=shape, integral_floats=True)
    seen = sorted({str(v) for v in types.values() if v is not None}) if types else []
    lookup: dict[int, int] = {}
    drop: list[int] = []
    if types and not (class_map is None and any(isinstance(v, str) for v in types.values())):
        check_class_map(types.values(), class_map, path)
        for iid, value in types.items():
            if left_out(value, class_map):
                drop.append(iid)
            else:
                lookup[iid] = 0 if value is None else _class_id(value, class_map)
    top = int(arr.max()) if arr.size else 0
    if drop:
        arr = np.where(np.isin(arr, np.asarray(drop, dtype=arr.dtype)), 0, arr)
    if top >= 2**31:  # keep the order, make the ids fit int32 (the metrics ignore id values)
        dense = relabel(arr)
        out = dense.labels.astype(np.int32)
        ids = [int(i) for i in dense.ids]
        remap = {old: new for new, old in enumerate(ids, start=1)}
        lookup = {remap[i]: c for i, c in lookup.items() if i in remap}
        top = len(ids)
    else:
        out = arr.astype(np.int32, copy=False)
        top = int(out.max()) if out.size else 0
    named = bool(types) and any(isinstance(v, str) for v in types.values())  # type: ignore[union-attr]
    classes = None
    if types is not None and not (named and class_map is None):  # names need a class_map to become ids
        classes = np.zeros(top + 1, np.int32)
        for iid, cid in lookup.items():
            if 0 < iid <= top:
                classes[iid] = cid
    names = None
    if class_map is not None and types is not None and any(isinstance(k, str) for k in class_map):
        width = max([0, *(int(v) for v in class_map.values() if v is not None)]) + 1
        table = ["background"] + [f"class {k}" for k in range(1, width)]
        for name, mapped in reversed(list(class_map.items())):  # the first name given for an id wins
            if mapped is not None and int(mapped) > 0:
                table[int(mapped)] = str(name)
        names = tuple(table)
    return Prediction(np.ascontiguousarray(out), classes, names, tuple(seen), path, fmt)
