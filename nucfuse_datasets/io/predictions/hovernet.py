"""HoVer-Net's tile outputs (``vqdang/hover_net``, ``run_infer.py tile``): ``mat/<name>.mat`` and ``json/<name>.json``.

For every input image ``<name>.<ext>`` HoVer-Net's tile mode writes, under its ``--output_dir``:

* ``mat/<name>.mat`` (``scipy.io.savemat``): ``inst_map`` (H×W ``int32``, 0 = background, ids not necessarily
  consecutive), ``inst_uid`` (N×1 ids), ``inst_type`` (N×1 type ids, only with ``--nr_types``) and
  ``inst_centroid`` (N×2 (x, y)); ``raw_map`` with ``--save_raw_map`` (not read). ``inst_uid`` lists the ids that
  have a JSON entry: an id of ``inst_map`` whose traced outline had fewer than 3 points is in the map but not in
  ``inst_uid`` (it is scored, with class 0).
* ``json/<name>.json``: ``{"mag": null, "nuc": {"<id>": {"bbox": [[r0, c0], [r1, c1]], "centroid": [x, y],
  "contour": [[x, y], ...], "type_prob": p or null, "type": t or null}}}``, the JSON keys being the ids of
  ``inst_map``; the contour is the first outline ``cv2.findContours`` traced on the nucleus' mask, in (x, y) =
  (column, row) order, at pixel centres.

Reading: the ``.mat`` map is exact (integral floats accepted, as MATLAB-saved maps store them). The JSON contours
are filled with OpenCV's filled contour (:func:`~nucfuse_datasets.io.predictions.fill.fill_contours`), which
reproduces ``inst_map`` except where a nucleus had holes or several pieces. Types become classes: type 0 (HoVer-Net's
"no label") is class 0; others are the type id, or ``class_map[type]`` when a ``class_map`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets._labelmap import check_ids
from nucfuse_datasets.errors import InvalidPredictionError
from nucfuse_datasets.io.predictions._common import (
    Budget,
    ClassMap,
    Prediction,
    check_points,
    finish,
    left_out,
    load_json,
    ring,
)
from nucfuse_datasets.io.predictions.fill import fill_contours

__all__ = ["read_hovernet_json", "read_hovernet_mat"]

_MAT_VARIABLES = ("inst_map", "inst_uid", "inst_type")


def _whos(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{variable: (shape, MATLAB class)}`` from the headers only (nothing is decompressed into memory)."""
    from scipy.io import whosmat
    from scipy.io.matlab import matfile_version

    try:
        major, _ = matfile_version(str(path))
    except Exception as exc:  # scipy raises ValueError, MatReadError, OSError...
        raise InvalidPredictionError(f"{path}: not a readable MATLAB .mat file ({exc})") from None
    if major == 2:
        raise InvalidPredictionError(
            f"{path}: MATLAB v7.3 (HDF5) .mat file, which scipy cannot read; HoVer-Net writes v5 files with "
            "scipy.io.savemat. Re-save it with scipy.io.savemat (or save(..., '-v7') in MATLAB)"
        )
    try:
        return {name: (tuple(int(n) for n in shp), cls) for name, shp, cls in whosmat(str(path))}
    except Exception as exc:
        raise InvalidPredictionError(f"{path}: cannot read .mat file ({exc})") from None


def read_hovernet_mat(path: Path, shape: tuple[int, int], class_map: ClassMap | None = None) -> Prediction:
    """Read HoVer-Net's ``mat/<name>.mat``: ``inst_map`` exactly, ``inst_type`` per ``inst_uid`` as classes.

    Raises:
        InvalidPredictionError: not a v5 ``.mat`` file, no ``inst_map`` or one of another shape than the tile's,
            ids that are not non-negative integers, ``inst_uid``/``inst_type`` of different lengths.

    Example:
        >>> import tempfile, pathlib, scipy.io
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tile.mat"
        >>> scipy.io.savemat(p, {"inst_map": np.array([[0, 3], [3, 5]], np.int32),
        ...                      "inst_uid": np.array([[3], [5]]), "inst_type": np.array([[2], [1]])})
        >>> pred = read_hovernet_mat(p, (2, 2))
        >>> pred.instances.tolist(), pred.classes.tolist()
        ([[0, 3], [3, 5]], [0, 0, 0, 2, 0, 1])
    """
    from scipy.io import loadmat

    whos = _whos(path)
    if "inst_map" not in whos:
        raise InvalidPredictionError(
            f"{path}: no inst_map variable (found: {sorted(whos)}); HoVer-Net's mat/ files hold inst_map, "
            "inst_uid, inst_type and inst_centroid"
        )
    if whos["inst_map"][0] != tuple(shape):
        raise InvalidPredictionError(
            f"{path}: inst_map has shape {whos['inst_map'][0]}, the tile is {shape[0]}×{shape[1]}; was HoVer-Net "
            "run on this tile at its own size?"
        )
    limit = shape[0] * shape[1] + 1
    for name in ("inst_uid", "inst_type"):
        if name in whos and int(np.prod(whos[name][0])) > limit:
            raise InvalidPredictionError(f"{path}: {name} has shape {whos[name][0]}, more entries than pixels")
    try:
        data = loadmat(str(path), variable_names=[v for v in _MAT_VARIABLES if v in whos])
    except Exception as exc:  # MatReadError, ValueError, zlib.error, EOFError...
        raise InvalidPredictionError(f"{path}: cannot read .mat file ({exc})") from None
    types = None
    if "inst_type" in data:
        if "inst_uid" not in data:
            raise InvalidPredictionError(f"{path}: inst_type without inst_uid (HoVer-Net writes both)")
        uid = check_ids(
            np.asarray(data["inst_uid"]).ravel(), f"{path}: inst_uid", InvalidPredictionError, integral_floats=True
        )
        typ = check_ids(
            np.asarray(data["inst_type"]).ravel(), f"{path}: inst_type", InvalidPredictionError, integral_floats=True
        )
        if uid.size != typ.size:
            raise InvalidPredictionError(
                f"{path}: inst_uid has {uid.size} entries but inst_type {typ.size}; they must pair up"
            )
        if np.unique(uid).size != uid.size:
            raise InvalidPredictionError(f"{path}: inst_uid lists an id twice")
        types = {int(i): (int(t) or None) for i, t in zip(uid.tolist(), typ.tolist(), strict=True)}
    return finish(path, "hovernet-mat", data["inst_map"], shape, types, class_map)


def _nuclei(doc: Any, path: Path) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("nuc"), dict):
        raise InvalidPredictionError(
            f'{path}: not a HoVer-Net JSON file (expected {{"mag": ..., "nuc": {{id: {{"contour": ..., '
            f'"type": ...}}}}}}, got {type(doc).__name__}'
            + (f" with keys {sorted(map(str, doc))[:8]}" if isinstance(doc, dict) else "")
            + ")"
        )
    return doc["nuc"]


def read_hovernet_json(path: Path, shape: tuple[int, int], class_map: ClassMap | None = None) -> Prediction:
    """Read HoVer-Net's ``json/<name>.json``: each ``nuc`` entry's contour, filled with OpenCV, gets its id.

    Entries are filled in file order (HoVer-Net writes ascending ids), a later one overwriting an earlier one.

    Raises:
        InvalidPredictionError: not ``{"nuc": {...}}``, an id that is not a positive integer, a malformed contour
            or type, coordinates far outside the tile, or over the bounds of
            :mod:`~nucfuse_datasets.io.predictions._common`.
        DependencyNotFoundError: OpenCV is not installed.

    Example:
        >>> import json, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "tile.json"
        >>> _ = p.write_text(json.dumps({"mag": None, "nuc": {"4": {"contour": [[1, 1], [3, 1], [3, 2], [1, 2]],
        ...                                                       "type": 2}}}))
        >>> pred = read_hovernet_json(p, (4, 5))
        >>> pred.instances.tolist(), pred.classes.tolist()
        ([[0, 0, 0, 0, 0], [0, 4, 4, 4, 0], [0, 4, 4, 4, 0], [0, 0, 0, 0, 0]], [0, 0, 0, 0, 2])
    """
    nuclei = _nuclei(load_json(path, "HoVer-Net JSON"), path)
    budget = Budget(shape, str(path))
    contours, ids = [], []
    types: dict[int, Any] = {}
    for key, entry in nuclei.items():
        where = f"{path}: nucleus {key!r}"
        if not (isinstance(key, str) and key.isdigit() and key.isascii()) or not 0 < int(key) < 2**31:
            raise InvalidPredictionError(f"{where}: ids must be positive integers below 2**31")
        if not isinstance(entry, dict) or "contour" not in entry:
            raise InvalidPredictionError(f"{where}: an entry must be an object with a 'contour'")
        xy = ring(entry["contour"], where)
        check_points(xy, shape, where)
        budget.add(xy)
        value = entry.get("type")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidPredictionError(f"{where}: 'type' must be a non-negative integer or null, got {value!r}")
        if left_out(value, class_map):
            continue
        contours.append(xy)
        ids.append(int(key))
        types[int(key)] = value or None
    inst = fill_contours(contours, ids, shape, "fill HoVer-Net's JSON contours")
    has_types = any(entry.get("type") is not None for entry in nuclei.values())
    return finish(path, "hovernet-json", inst, shape, types if has_types else None, class_map)
