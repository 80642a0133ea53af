"""The bad-input corpus of prediction files: hostile or broken outputs of the tools, one case each.

Every case writes one file into an empty predictions folder (named for the tile ``tnbc__01_1`` of a 32×32 tile),
and ``test_bad_predictions.py`` runs it through the public API (``find_predictions`` then ``read_prediction``),
expecting exactly ``error``, a message naming the file and containing ``fragments``, nothing written, and an
answer within ``max_seconds``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import tifffile
from PIL import Image

from nucfuse_datasets.errors import InvalidPredictionError, NucFuseError, UnsafePredictionError
from nucfuse_datasets.io.predictions._common import EXTRA_VERTICES, MAX_BOX_COVER, MAX_JSON_BYTES, VERTICES_PER_PIXEL

SHAPE = (32, 32)
KEY = ("tnbc", "01_1")
NAME = "tnbc__01_1"
SQUARE = [[2, 2], [9, 2], [9, 9], [2, 9], [2, 2]]


@dataclasses.dataclass(frozen=True)
class PredictionCase:
    """One bad prediction file: ``make(folder)`` writes it and returns the file name the message must contain."""

    id: str
    make: Callable[[Path], str]
    error: type[NucFuseError]
    fragments: tuple[str, ...] = ()  # lower-case substrings the message must contain
    format: str | None = None  # passed to find_predictions (None: recognised from the layout)
    read: dict[str, Any] = dataclasses.field(default_factory=dict)  # read_prediction keyword arguments
    shape: tuple[int, int] = SHAPE  # the tile's size
    max_seconds: float = 10.0


# --------------------------------------------------------------------------- byte makers


def _write(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data() if callable(data) else data)
        return name

    return make


def _text(name: str, text: str) -> Callable[[Path], str]:
    return _write(name, text.encode())


def _geojson(geometry_coords: Any, gtype: str = "Polygon", **props: Any) -> str:
    feature = {"type": "Feature", "geometry": {"type": gtype, "coordinates": geometry_coords}, "properties": props}
    return json.dumps({"type": "FeatureCollection", "features": [feature]})


def _hovernet_json(nuc: Any) -> str:
    return json.dumps({"mag": None, "nuc": nuc})


def _mat(data: dict[str, Any]) -> Callable[[], bytes]:
    def make() -> bytes:
        buf = io.BytesIO()
        scipy.io.savemat(buf, data)
        return buf.getvalue()

    return make


def _good_map() -> np.ndarray:
    arr = np.zeros(SHAPE, np.int32)
    arr[2:8, 2:8] = 1
    return arr


def _npy(obj: Any) -> Callable[[], bytes]:
    def make() -> bytes:
        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=True)
        return buf.getvalue()

    return make


def _tiff(arr: np.ndarray) -> Callable[[], bytes]:
    def make() -> bytes:
        buf = io.BytesIO()
        tifffile.imwrite(buf, arr)
        return buf.getvalue()

    return make


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _png_bomb() -> bytes:
    """A small PNG whose header declares 50000×50000 pixels (decoding it would need 2.5 GB)."""
    data = bytearray(_png(np.zeros((1, 1), np.uint8)))
    start = 8 + 8  # signature, then the IHDR chunk's length and type
    data[start : start + 8] = struct.pack(">II", 50000, 50000)
    crc = zlib.crc32(bytes(data[12 : 12 + 4 + 13])) & 0xFFFFFFFF
    data[start + 13 : start + 17] = struct.pack(">I", crc)
    return bytes(data)


def _mat73() -> bytes:
    """The 128-byte header of a MATLAB v7.3 (HDF5) file, then HDF5's signature."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM" + b"\x00" * 384 + b"\x89HDF\r\n\x1a\n"


def _oversize(folder: Path) -> str:
    with open(folder / f"{NAME}.geojson", "wb") as fh:  # sparse: takes no disk space
        fh.truncate(MAX_JSON_BYTES + 1)
    return f"{NAME}.geojson"


def _many_vertices() -> bytes:
    n = VERTICES_PER_PIXEL * (SHAPE[0] + 1) * (SHAPE[1] + 1) + EXTRA_VERTICES + 10
    t = np.linspace(0, 2 * np.pi, n)
    ring = np.stack([16 + 10 * np.cos(t), 16 + 10 * np.sin(t)], axis=1).round(3).tolist()
    return _geojson([ring]).encode()


def _fill_bomb() -> bytes:
    """A zig-zag of 20,000 edges, each across the whole 512×512 tile: 10**7 row crossings to fill."""
    x = np.linspace(0, 512, 20_000).round(3)
    y = np.where(np.arange(x.size) % 2 == 0, 0.0, 512.0)
    return _geojson([np.stack([x, y], axis=1).tolist()]).encode()


def _box_bomb() -> bytes:
    whole = [[0, 0], [32, 0], [32, 32], [0, 32], [0, 0]]
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [whole]}, "properties": {}}
        for _ in range(MAX_BOX_COVER + 1)
    ]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def _seg_npy(obj: Any) -> Callable[[], bytes]:
    return _npy(np.array(obj, dtype=object) if not isinstance(obj, dict) else obj)


NaN_ = float("nan")


def _geojson_raw(number: str) -> str:
    """A GeoJSON polygon with one coordinate written as the literal ``number``."""
    return _geojson([[[0, 0], [1, 1], [2, 0]]]).replace("[1, 1]", f"[{number}, 1]")


GEO = f"{NAME}.geojson"
HJ = f"json/{NAME}.json"
MAT = f"mat/{NAME}.mat"


def cases() -> list[PredictionCase]:
    """Every case, in declaration order."""
    ipe, unsafe = InvalidPredictionError, UnsafePredictionError
    return [
        # ---- GeoJSON
        PredictionCase("geojson-deep-nesting", _text(GEO, "[" * 100_000), ipe, ("nested too deeply",)),
        PredictionCase("geojson-deep-object", _text(GEO, '{"a":' * 50_000 + "1" + "}" * 50_000), ipe, ("nested",)),
        PredictionCase("geojson-nan", _text(GEO, _geojson([[[0, 0], [NaN_, 1], [2, 2]]])), ipe, ("nan",)),
        PredictionCase("geojson-infinity", _text(GEO, _geojson([[[0, 0], [1e999, 1], [2, 2]]])), ipe, ("nan",)),
        PredictionCase("geojson-overflow-float", _text(GEO, _geojson_raw("1e999")), ipe, ("non-finite",)),
        PredictionCase(
            "geojson-huge-coordinates", _text(GEO, _geojson([[[0, 0], [1e12, 1], [2, 2]]])), ipe, ("far outside",)
        ),
        PredictionCase("geojson-huge-integer", _text(GEO, _geojson_raw("1" * 5000)), ipe, ("malformed",)),
        PredictionCase(
            "geojson-whole-slide-coordinates",
            _text(GEO, _geojson([[[20000, 30000], [20010, 30000], [20010, 30010], [20000, 30000]]])),
            ipe,
            ("whole slide",),
        ),
        PredictionCase(
            "geojson-string-coordinates", _text(GEO, _geojson([[["a", "b"], [1, 2], [3, 4]]])), ipe, ("numbers",)
        ),
        PredictionCase("geojson-ring-not-a-list", _text(GEO, _geojson([5])), ipe, ("list of [x, y]",)),
        PredictionCase("geojson-polygon-without-rings", _text(GEO, _geojson([])), ipe, ("non-empty list of rings",)),
        PredictionCase(
            "geojson-nested-coordinates", _text(GEO, _geojson(json.loads("[" * 40 + "1" + "]" * 40))), ipe, ("shape",)
        ),
        PredictionCase("geojson-too-many-vertices", _write(GEO, _many_vertices), ipe, ("vertices",)),
        PredictionCase("geojson-box-bomb", _write(GEO, _box_bomb), ipe, ("bounding boxes",)),
        PredictionCase(
            "geojson-fill-bomb", _write(GEO, _fill_bomb), ipe, ("too complex",), shape=(512, 512), max_seconds=5.0
        ),
        PredictionCase("geojson-oversize", _oversize, ipe, ("over the limit",)),
        PredictionCase("geojson-truncated", _text(GEO, _geojson([SQUARE])[:40]), ipe, ("malformed",)),
        PredictionCase("geojson-bad-utf8", _write(GEO, b'{"type": "\xff\xfe"}'), ipe, ("malformed",)),
        PredictionCase("geojson-not-geojson", _text(GEO, "42"), ipe, ("not geojson",)),
        PredictionCase(
            "geojson-features-not-a-list", _text(GEO, '{"type": "FeatureCollection", "features": 3}'), ipe, ("list",)
        ),
        PredictionCase(
            "geojson-geometry-malformed",
            _text(GEO, json.dumps([{"type": "Feature", "geometry": [1, 2]}])),
            ipe,
            ("malformed geometry",),
        ),
        PredictionCase(
            "geojson-points-only", _text(GEO, _geojson([[1, 2], [3, 4]], "MultiPoint")), ipe, ("no polygon",)
        ),
        PredictionCase(
            "geojson-unknown-class",
            _text(GEO, _geojson([SQUARE], classification={"name": "Tumour"})),
            ipe,
            ("not in class_map", "tumour"),
            read={"class_map": {"Tumor": 1}},
        ),
        # ---- HoVer-Net JSON
        PredictionCase(
            "hovernet-json-bad-id", _text(HJ, _hovernet_json({"abc": {"contour": SQUARE}})), ipe, ("positive",)
        ),
        PredictionCase(
            "hovernet-json-negative-id", _text(HJ, _hovernet_json({"-3": {"contour": SQUARE}})), ipe, ("positive",)
        ),
        PredictionCase("hovernet-json-no-nuc", _text(HJ, '{"mag": null}'), ipe, ("not a hover-net json",)),
        PredictionCase("hovernet-json-list", _text(HJ, "[1, 2]"), ipe, ("not a hover-net json",)),
        PredictionCase("hovernet-json-no-contour", _text(HJ, _hovernet_json({"1": {"type": 1}})), ipe, ("'contour'",)),
        PredictionCase(
            "hovernet-json-bool-type",
            _text(HJ, _hovernet_json({"1": {"contour": SQUARE, "type": True}})),
            ipe,
            ("'type'",),
        ),
        PredictionCase(
            "hovernet-json-whole-slide",
            _text(HJ, _hovernet_json({"1": {"contour": [[50000, 60000], [50010, 60000], [50010, 60010]]}})),
            ipe,
            ("far outside", "whole slide"),
        ),
        PredictionCase("hovernet-json-deep-nesting", _text(HJ, '{"mag": null, "nuc": ' + "[" * 100_000), ipe),
        # ---- HoVer-Net .mat
        PredictionCase("mat-garbage", _write(MAT, np.random.default_rng(0).bytes(4096)), ipe, ("matlab",)),
        PredictionCase("mat-empty", _write(MAT, b""), ipe, ("matlab",)),
        PredictionCase("mat-v7.3", _write(MAT, _mat73), ipe, ("v7.3",)),
        PredictionCase("mat-truncated", _write(MAT, lambda: _mat({"inst_map": _good_map()})()[:300]), ipe),
        PredictionCase("mat-no-inst-map", _write(MAT, _mat({"other": _good_map()})), ipe, ("no inst_map",)),
        PredictionCase(
            "mat-wrong-shape", _write(MAT, _mat({"inst_map": np.zeros((64, 64), np.int32)})), ipe, ("shape",)
        ),
        PredictionCase("mat-fractional-ids", _write(MAT, _mat({"inst_map": _good_map() * 0.5})), ipe, ("non-integer",)),
        PredictionCase("mat-negative-ids", _write(MAT, _mat({"inst_map": -_good_map()})), ipe, ("negative",)),
        PredictionCase(
            "mat-nan-ids", _write(MAT, _mat({"inst_map": np.where(_good_map() > 0, np.nan, 0.0)})), ipe, ("finite",)
        ),
        PredictionCase(
            "mat-uid-type-mismatch",
            _write(MAT, _mat({"inst_map": _good_map(), "inst_uid": [[1], [2]], "inst_type": [[1]]})),
            ipe,
            ("pair up",),
        ),
        PredictionCase(
            "mat-uid-duplicated",
            _write(MAT, _mat({"inst_map": _good_map(), "inst_uid": [[1], [1]], "inst_type": [[1], [2]]})),
            ipe,
            ("twice",),
        ),
        PredictionCase(
            "mat-type-without-uid",
            _write(MAT, _mat({"inst_map": _good_map(), "inst_type": [[1]]})),
            ipe,
            ("without inst_uid",),
        ),
        # ---- label images
        PredictionCase("png-bomb", _write(f"{NAME}.png", _png_bomb), ipe, ("50000×50000",), max_seconds=3.0),
        PredictionCase("tif-wrong-size", _write(f"{NAME}.tif", _tiff(np.zeros((8, 8), np.int32))), ipe, ("8×8",)),
        PredictionCase("tif-garbage", _write(f"{NAME}.tif", b"II*\x00" + b"\x07" * 200), ipe, ("decode",)),
        PredictionCase("png-empty", _write(f"{NAME}.png", b""), ipe, ("decode",)),
        PredictionCase(
            "tif-fractional", _write(f"{NAME}.tif", _tiff(_good_map() * np.float32(0.5))), ipe, ("non-integer",)
        ),
        PredictionCase(
            "png-rgb-colours",
            _write(f"{NAME}.png", _png(np.random.default_rng(1).integers(0, 255, (*SHAPE, 3), np.uint8))),
            ipe,
            ("2-d",),
        ),
        PredictionCase(
            "npy-pickled-objects", _write(f"{NAME}.npy", _npy(np.array([None, 1], dtype=object))), unsafe, ("pickle",)
        ),
        PredictionCase("npy-truncated", _write(f"{NAME}.npy", lambda: _npy(_good_map())()[:200]), ipe, ("truncated",)),
        PredictionCase("npy-wrong-shape", _write(f"{NAME}.npy", _npy(np.zeros((4, 32, 32), np.int32))), ipe, ("2-d",)),
        # ---- Cellpose
        PredictionCase(
            "seg-npy-refused", _write(f"{NAME}_seg.npy", _seg_npy({"masks": _good_map()})), unsafe, ("allow_pickle",)
        ),
        PredictionCase(
            "seg-npy-not-a-dict",
            _write(f"{NAME}_seg.npy", _seg_npy([1, 2, 3])),
            ipe,
            ("not a cellpose _seg.npy",),
            read={"allow_pickle": True},
        ),
        PredictionCase(
            "seg-npy-wrong-shape",
            _write(f"{NAME}_seg.npy", _seg_npy({"masks": np.zeros((8, 8), np.uint16)})),
            ipe,
            ("shape",),
            read={"allow_pickle": True},
        ),
        PredictionCase(
            "seg-npy-garbage",
            _write(f"{NAME}_seg.npy", np.random.default_rng(2).bytes(512)),
            ipe,
            ("cannot load",),
            read={"allow_pickle": True},
        ),
        PredictionCase(
            "cp-masks-float", _write(f"{NAME}_cp_masks.tif", _tiff(np.full(SHAPE, 0.25, np.float32))), ipe, ("non-",)
        ),
    ]
