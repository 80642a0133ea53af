"""Property-based fuzzing of the native-format parsers (issue "Reliability and security").

Every reader of a native source format is fed random bytes, structurally valid documents with random
content, and mutations (truncations, byte flips, insertions) of valid files. The contract checked is
the one stated in :mod:`nucfuse_datasets.io.files` and :mod:`nucfuse_datasets.errors`: a reader either
returns a well-formed result or raises an :class:`~nucfuse_datasets.errors.InvalidSourceError` that
names the file — never a raw ``KeyError``, ``struct.error``, ``zlib.error``, ``OverflowError`` or
``MemoryError`` — and every example finishes within the hypothesis ``deadline``.

Files are written to a module-scoped temporary folder (function-scoped fixtures such as ``tmp_path``
would be shared by all the examples of a test, which hypothesis rightly refuses).

The last section holds plain regression tests with the minimal inputs of the bugs the fuzzer found.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest
import scipy.io
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from nucfuse_datasets.datasets import monuseg
from nucfuse_datasets.datasets._mat import integral_array, label_map, load_mat
from nucfuse_datasets.datasets.puma import NUCLEUS_CLASSES, parse_nuclei_geojson, rasterize_features
from nucfuse_datasets.errors import InvalidSourceError, NucFuseError
from nucfuse_datasets.io.files import (
    MAX_COORDINATE,
    iter_xml_events,
    load_npy,
    parse_aperio,
    read_image,
    read_label_image,
    to_rgb_uint8,
)

T = TypeVar("T")

# Pillow warns about the damaged TIFF headers these tests make on purpose; the read itself must still end well
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin"),
    pytest.mark.filterwarnings("ignore:.*VAX D-float.*"),
]

FUZZ = settings(
    max_examples=80,
    deadline=5000,  # generous for a loaded 2-core CI machine; examples take milliseconds
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_IDS = itertools.count()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the files of every example of this module."""
    return tmp_path_factory.mktemp("fuzz")


@contextlib.contextmanager
def written(folder: Path, suffix: str, data: bytes) -> Iterator[Path]:
    """``data`` in a fresh file with ``suffix``, removed afterwards."""
    path = folder / f"f{next(_IDS):06d}{suffix}"
    path.write_bytes(data)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def attempt(fn: Callable[..., T], *args: Any, source: Path | None = None, **kwargs: Any) -> T | None:
    """``fn(*args)``, or None when it raised a library error; any other exception fails the test.

    With ``source``, the error must be an ``InvalidSourceError`` whose message names that file.
    """
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if not isinstance(exc, NucFuseError):
            raise AssertionError(f"{fn.__qualname__} leaked {type(exc).__name__}: {exc}") from exc
        if source is not None:
            assert isinstance(exc, InvalidSourceError), f"{fn.__qualname__} raised {type(exc).__name__}: {exc}"
            assert str(source) in str(exc), f"the error does not name the file: {exc}"
        return None


@st.composite
def mutations(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` after 1–4 random edits: truncation, byte flips, insertions, deletions, duplications."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, len(data)))
        if op == "truncate":
            del data[at:]
        elif op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 32))]
    return bytes(data)


def cut(base: bytes) -> st.SearchStrategy[bytes]:
    """``base`` truncated at a random byte (strictly shorter)."""
    return st.integers(0, max(len(base) - 1, 0)).map(lambda n: base[:n])


# --- Aperio XML (MoNuSeg, MoNuSAC) -----------------------------------------------------------------

XML_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFFFD, exclude_categories=("Cs",))
XML_TEXT = st.text(XML_CHARS, max_size=12)
WEIRD_NUMBERS = st.sampled_from(
    [
        *("", " ", "nan", "NaN", "-inf", "Infinity", "1e400", "-1e400", "1e-400", "0x1F", "1,5", "1_000", " 7 ", "+3"),
        *(".5", "5.", "--1", "1e", "\u0661\u0662", "1" * 500, "9" * 5000, "1e308", "-0"),
    ]
)
#: Anything an attribute can hold: clean floats, non-finite, huge integers, garbage.
ANY_NUMBER = st.one_of(
    st.floats(-1e6, 1e6).map(repr),
    st.floats().map(repr),
    st.integers().map(str),
    st.integers(10**300, 10**400).map(str),
    WEIRD_NUMBERS,
    XML_TEXT,
)
CLEAN_NUMBER = st.floats(-1e6, 1e6, allow_nan=False).map(repr)
ENCODINGS = st.sampled_from(
    [
        *("utf-8", "UTF-8", "latin-1", "ascii", "cp1252", "utf-16", "utf-32", "shift_jis", "utf-7", "idna"),
        *("punycode", "rot13", "base64", "undefined", "unknown-encoding", "x" * 300),
    ]
)


def _attrs(attrs: dict[str, str]) -> str:
    return "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())


@st.composite
def aperio_documents(
    draw: st.DrawFn, number: st.SearchStrategy[str] = ANY_NUMBER, optional_xy: bool = True
) -> tuple[str, list[list[tuple[str | None, str | None]]]]:
    """An Aperio XML document and the (X, Y) strings of its regions' vertices in document order."""
    names = st.sampled_from(["Id", "Name", "MicronsPerPixel", "Type", "LineColor", "Zoom"])
    some_attrs = st.dictionaries(names, st.one_of(XML_TEXT, number), max_size=3)
    vertex = (
        st.fixed_dictionaries({}, optional={"X": number, "Y": number, "Z": st.just("0")})
        if optional_xy
        else st.fixed_dictionaries({"X": number, "Y": number})
    )
    expected: list[list[tuple[str | None, str | None]]] = []

    def region() -> str:
        vertices = draw(st.lists(vertex, max_size=6))
        expected.append([(v.get("X"), v.get("Y")) for v in vertices])
        body = "".join(f"<Vertex{_attrs(v)}/>" for v in vertices)
        return f"<Region{_attrs(draw(some_attrs))}><Vertices>{body}</Vertices></Region>"

    parts = [f"<Annotations{_attrs(draw(some_attrs))}>"]
    if draw(st.booleans()):
        parts.append('<Vertex X="1" Y="1"/>')  # a vertex outside any region is ignored
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.integers(0, 4)) == 0:
            parts.append(region())  # a region outside any annotation
            continue
        parts.append(f"<Annotation{_attrs(draw(some_attrs))}>")
        if draw(st.booleans()):
            attributes = draw(st.lists(XML_TEXT, max_size=2))
            parts.append("<Attributes>" + "".join(f"<Attribute Name={quoteattr(a)}/>" for a in attributes))
            parts.append("</Attributes>")
        parts.append("<Regions>" + "".join(region() for _ in range(draw(st.integers(0, 3)))) + "</Regions>")
        parts.append("</Annotation>")
    parts.append("</Annotations>")
    return "".join(parts), expected


def check_aperio(path: Path, result: tuple[dict[str, str], list[Any]] | None) -> list[np.ndarray] | None:
    """Structure of a successful ``parse_aperio`` result; its regions, flattened in document order."""
    if result is None:
        return None
    root, annotations = result
    assert isinstance(root, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in root.items())
    regions = []
    for ann in annotations:
        assert isinstance(ann.attrs, dict) and all(isinstance(n, str) for n in ann.names)
        for attrs, xy in ann.regions:
            assert isinstance(attrs, dict)
            assert isinstance(xy, np.ndarray) and xy.dtype == np.float64 and xy.ndim == 2 and xy.shape[1] == 2
            assert np.all(np.isfinite(xy)), f"{path}: non-finite vertices accepted"
            regions.append(xy)
    return regions


def check_events(events: list[tuple[str, str, dict[str, str]]] | None) -> None:
    """Events of ``iter_xml_events`` are properly nested start/end pairs."""
    if events is None:
        return
    stack: list[str] = []
    for kind, tag, attrs in events:
        assert isinstance(tag, str) and isinstance(attrs, dict)
        if kind == "start":
            stack.append(tag)
        else:
            assert kind == "end" and stack and stack.pop() == tag
    assert not stack


LATIN = ("latin-1", "ascii", "cp1252")
DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]*)?(e[-+]?[0-9]+)?")


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.tuples(st.sampled_from([b"<", b"<?xml", b"<Annotations>"]), st.binary(max_size=500)).map(b"".join),
    )
)
def test_aperio_random_bytes(work: Path, data: bytes) -> None:
    with written(work, ".xml", data) as path:
        check_aperio(path, attempt(parse_aperio, path, source=path))
        check_events(attempt(iter_xml_events, path, source=path))


@settings(FUZZ, max_examples=150)
@given(doc=aperio_documents(), declaration=st.none() | ENCODINGS)
def test_aperio_random_documents(work: Path, doc: tuple[str, list[Any]], declaration: str | None) -> None:
    text, expected = doc
    data = text.encode()
    if declaration is not None:
        data = f'<?xml version="1.0" encoding="{declaration}"?>'.encode() + data
    with written(work, ".xml", data) as path:
        regions = check_aperio(path, attempt(parse_aperio, path, source=path))
        check_events(attempt(iter_xml_events, path, source=path))
    plain = declaration is None or declaration.lower() == "utf-8" or (declaration in LATIN and text.isascii())
    vertices = [xy for region in expected for xy in region]
    if any(x is None or y is None for x, y in vertices):
        assert regions is None, "a Vertex without X/Y was accepted"
        return
    values = [(_float_or_none(x), _float_or_none(y)) for x, y in vertices]
    numbers = [v for xy in values for v in xy if v is not None]
    if any(not math.isfinite(v) or abs(v) > MAX_COORDINATE for v in numbers):
        assert regions is None, "non-finite or out-of-range vertices were accepted"
    clean = all(DECIMAL.fullmatch(v) and abs(float(v)) <= MAX_COORDINATE for xy in vertices for v in xy)
    if clean and plain:
        assert regions is not None, "a valid document was refused"
    if regions is not None:
        assert [r.shape[0] for r in regions] == [len(r) for r in expected]
        if clean:
            got = np.concatenate([r.reshape(-1, 2) for r in regions]) if regions else np.empty((0, 2))
            np.testing.assert_array_equal(got, np.array(values, dtype=np.float64).reshape(-1, 2))


@settings(FUZZ, max_examples=150)
@given(data=aperio_documents(CLEAN_NUMBER, optional_xy=False).flatmap(lambda d: mutations(d[0].encode())))
def test_aperio_mutated_documents(work: Path, data: bytes) -> None:
    with written(work, ".xml", data) as path:
        check_aperio(path, attempt(parse_aperio, path, source=path))
        check_events(attempt(iter_xml_events, path, source=path))


_LAUGHS = (
    '<!DOCTYPE Annotations [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
    '<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
    '<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">]>'
    '<Annotations Name="&h;">&h;</Annotations>'
)
UNSAFE_XML = [
    _LAUGHS,
    '<!DOCTYPE Annotations [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Annotations>&xxe;</Annotations>',
    '<!DOCTYPE Annotations SYSTEM "http://example.invalid/a.dtd"><Annotations/>',
    '<!DOCTYPE Annotations PUBLIC "-//X//DTD X//EN" "file:///etc/passwd"><Annotations/>',
    '<!DOCTYPE Annotations [<!ENTITY % p SYSTEM "http://example.invalid/p.dtd"> %p;]><Annotations/>',
    '<!DOCTYPE Annotations [<!ENTITY e "x">]><Annotations Id="&e;"/>',
    '<!DOCTYPE Annotations [<!ENTITY u SYSTEM "x.png" NDATA png>]><Annotations/>',
    '<!DOCTYPE Annotations [<!ENTITY big "' + "x" * 10_000 + '">]><Annotations>' + "&big;" * 1000 + "</Annotations>",
    "<!DOCTYPE Annotations><Annotations/>",
    "<Annotations>&xxe;</Annotations>",  # undefined entity, no DTD
]


@settings(FUZZ, max_examples=60)
@given(
    doc=st.sampled_from(UNSAFE_XML),
    declaration=st.sampled_from(["", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>\n']),
    spacing=st.sampled_from(["", "\n", "  \n\t"]),
)
def test_aperio_unsafe_documents_refused_quickly(work: Path, doc: str, declaration: str, spacing: str) -> None:
    with written(work, ".xml", (declaration + spacing + doc).encode()) as path:
        for parser in (parse_aperio, iter_xml_events):
            start = time.perf_counter()
            with pytest.raises(InvalidSourceError) as info:
                parser(path)
            assert time.perf_counter() - start < 1.0
            assert str(path) in str(info.value)


# --- rasterising parsed regions (MoNuSeg) --------------------------------------------------------------

#: Vertices the parsers accept: huge (up to ``MAX_COORDINATE``), negative, fractional.
COORD = st.one_of(
    st.floats(-4, 40),
    st.floats(-MAX_COORDINATE, MAX_COORDINATE),
    st.integers(-(2**31), 2**31).map(float),
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1e-300, 24.0, 24.5, -1.0, MAX_COORDINATE, -MAX_COORDINATE]),
)
#: Any finite vertex, for the parsers to accept or refuse.
ANY_COORD = st.one_of(
    COORD,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70).map(float),
    st.sampled_from([9.2e18, 9.3e18, -9.3e18, 1e19, 1e308, -1.7e308]),
)
REGION = st.lists(st.tuples(COORD, COORD), max_size=8).map(lambda v: np.array(v, dtype=np.float64).reshape(-1, 2))
SHAPE = st.tuples(st.integers(1, 24), st.integers(1, 24))


def check_label_map(out: np.ndarray, shape: tuple[int, int], allowed: set[int]) -> None:
    assert isinstance(out, np.ndarray) and out.shape == shape
    assert np.issubdtype(out.dtype, np.integer)
    present = set(np.unique(out).tolist()) - {0}
    assert int(out.min()) >= 0
    assert present <= allowed, f"ids {present - allowed} should not be in the map"


@FUZZ
@given(regions=st.lists(REGION, max_size=6), shape=SHAPE)
def test_monuseg_rasterize_regions(regions: list[np.ndarray], shape: tuple[int, int]) -> None:
    result = attempt(monuseg.rasterize, regions, shape)
    if result is not None:
        out, n = result
        assert n == len(regions)
        check_label_map(out, shape, {i for i, r in enumerate(regions, start=1) if len(r) >= 3})


def shifted(region: st.SearchStrategy[np.ndarray]) -> st.SearchStrategy[np.ndarray]:
    """Regions, some moved as a whole by a (possibly huge) offset: every vertex far outside the tile."""
    huge = st.one_of(st.sampled_from([9.3e18, 1e19, 2.0**64, 1e300]), st.floats(9.3e18, 1e308))
    offset = st.one_of(
        st.just((0.0, 0.0)), st.tuples(ANY_COORD, ANY_COORD), st.tuples(huge, st.just(0.0)), st.tuples(COORD, huge)
    )
    return st.tuples(region, offset).map(lambda t: t[0] + np.array(t[1]))


def aperio_xml(regions: list[np.ndarray]) -> str:
    """A MoNuSeg-like Aperio document with one Region per array."""
    body = "".join(
        f'<Region Id="{i}"><Vertices>'
        + "".join(f'<Vertex X="{x!r}" Y="{y!r}"/>' for x, y in r.tolist())
        + "</Vertices></Region>"
        for i, r in enumerate(regions, start=1)
    )
    return (
        f'<Annotations MicronsPerPixel="0.25"><Annotation Id="1"><Regions>{body}</Regions></Annotation></Annotations>'
    )


@FUZZ
@given(
    doc=st.one_of(
        aperio_documents(ANY_COORD.map(repr)).map(lambda d: d[0]),
        st.lists(shifted(REGION), min_size=1, max_size=5).map(aperio_xml),
    ),
    shape=SHAPE,
)
def test_monuseg_parse_then_rasterize(work: Path, doc: str, shape: tuple[int, int]) -> None:
    with written(work, ".xml", doc.encode()) as path:
        parsed = attempt(monuseg.parse_aperio_xml, path, source=path)
    if parsed is None:
        return
    regions, mpp = parsed
    assert mpp is None or isinstance(mpp, float)
    assert regions and all(r.ndim == 2 and r.shape[1] == 2 for r in regions)
    result = attempt(monuseg.rasterize, regions, shape)
    if result is not None:
        check_label_map(result[0], shape, set(range(1, len(regions) + 1)))


# --- PUMA GeoJSON -----------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
NUM = st.one_of(
    st.floats(-5, 70),
    st.integers(-5, 70),
    st.floats(),
    st.integers(10**300, 10**400),
    st.sampled_from(["1", "x", None, True, [], {}, [1, 2]]),
)
GOOD_POSITION = st.lists(st.floats(-5, 70), min_size=2, max_size=3)
BIG = st.one_of(st.integers(10**300, 10**400), st.integers(2**63, 2**70), st.floats(1e18, 1e308), st.just(1e19))
POSITION = st.one_of(
    GOOD_POSITION,
    st.lists(NUM, min_size=2, max_size=2),
    st.tuples(BIG, NUM).map(list),
    st.lists(NUM, max_size=3),
    JSON,
)
#: A valid ring moved as a whole along x by a (possibly huge) offset.
SHIFTED_RING = st.tuples(
    st.lists(GOOD_POSITION, min_size=3, max_size=5),
    st.one_of(st.integers(2**63, 2**70), st.floats(1e18, 1e308), st.just(1e19), st.floats(-100, 100)),
).map(lambda t: [[p[0] + t[1], *p[1:]] for p in t[0]])
RING = st.one_of(
    st.lists(GOOD_POSITION, min_size=3, max_size=7),
    SHIFTED_RING,
    st.lists(POSITION, min_size=3, max_size=5),
    st.lists(POSITION, max_size=7),
    JSON,
)
POLYGON = st.one_of(st.lists(RING, min_size=1, max_size=3), st.lists(RING, max_size=3), JSON)
GEOMETRY = st.one_of(
    st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": POLYGON}),
    st.fixed_dictionaries(
        {"type": st.just("MultiPolygon"), "coordinates": st.one_of(st.lists(POLYGON, max_size=3), JSON)}
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Point", "LineString", "GeometryCollection", 3, None]), "coordinates": JSON}
    ),
    st.none(),
    JSON,
)
CLASS_NAME = st.one_of(st.sampled_from([*NUCLEUS_CLASSES, " NUCLEI_Tumor ", "tissue_stroma", ""]), JSON)
PROPERTIES = st.one_of(
    st.fixed_dictionaries({"classification": st.one_of(st.fixed_dictionaries({"name": CLASS_NAME}), JSON)}), JSON
)
FEATURE = st.one_of(
    st.fixed_dictionaries({"type": st.just("Feature"), "geometry": GEOMETRY, "properties": PROPERTIES}), JSON
)
GEOJSON = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("FeatureCollection"), "features": st.one_of(st.lists(FEATURE, max_size=5), JSON)}
    ),
    st.lists(FEATURE, max_size=5),
    FEATURE,
)


def feature_collections(ring: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """FeatureCollections of classified Polygon / MultiPolygon nuclei whose rings come from ``ring``."""
    polygon = st.lists(ring, min_size=1, max_size=2)
    geometry = st.one_of(
        st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": polygon}),
        st.fixed_dictionaries(
            {"type": st.just("MultiPolygon"), "coordinates": st.lists(polygon, min_size=1, max_size=2)}
        ),
    )
    properties = st.fixed_dictionaries(
        {"classification": st.fixed_dictionaries({"name": st.sampled_from(NUCLEUS_CLASSES)})}
    )
    feature = st.fixed_dictionaries({"type": st.just("Feature"), "geometry": geometry, "properties": properties})
    return st.fixed_dictionaries(
        {"type": st.just("FeatureCollection"), "features": st.lists(feature, min_size=1, max_size=4)}
    )


VALID_GEOJSON = feature_collections(st.lists(GOOD_POSITION, min_size=3, max_size=6))


def check_geojson(path: Path, shape: tuple[int, int] = (16, 20)) -> None:
    """Parse a GeoJSON file; a successful parse must be well-formed and rasterise cleanly."""
    features = attempt(parse_nuclei_geojson, path, source=path, skip=lambda reason: None)
    if features is None:
        return
    assert isinstance(features, list)
    for name, parts in features:
        assert name is None or isinstance(name, str)
        assert isinstance(parts, list) and parts
        for exterior, holes in parts:
            for ring in (exterior, *holes):
                assert isinstance(ring, np.ndarray) and ring.dtype == np.float64
                assert ring.ndim == 2 and ring.shape[1] == 2 and np.all(np.isfinite(ring))
    skipped: list[str] = []
    result = attempt(rasterize_features, features, shape, skip=skipped.append)
    if result is None:
        return
    out, classes = result
    assert isinstance(out, np.ndarray) and out.shape == shape and out.dtype == np.int32
    assert int(out.min()) >= 0
    assert set(np.unique(out).tolist()) - {0} == set(classes)
    assert all(1 <= c <= len(NUCLEUS_CLASSES) for c in classes.values())
    assert all(isinstance(s, str) for s in skipped)


@settings(FUZZ, max_examples=150)
@given(doc=GEOJSON)
def test_puma_geojson_like_documents(work: Path, doc: Any) -> None:
    with written(work, ".geojson", json.dumps(doc).encode()) as path:
        check_geojson(path)


@FUZZ
@given(doc=feature_collections(RING))
def test_puma_polygon_coordinates(work: Path, doc: Any) -> None:
    with written(work, ".geojson", json.dumps(doc).encode()) as path:
        check_geojson(path)


@FUZZ
@given(doc=JSON)
def test_puma_random_json(work: Path, doc: Any) -> None:
    with written(work, ".geojson", json.dumps(doc).encode()) as path:
        check_geojson(path)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=600),
        VALID_GEOJSON.map(lambda d: json.dumps(d).encode()).flatmap(cut),
        VALID_GEOJSON.map(lambda d: json.dumps(d).encode()).flatmap(mutations),
        VALID_GEOJSON.map(lambda d: json.dumps(d).encode("utf-16")).flatmap(mutations),
        st.tuples(
            VALID_GEOJSON.map(lambda d: json.dumps(d).encode()),
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]),
            st.integers(0, 200),
        ).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]),
        st.just(b"[" * 100_000),
    )
)
def test_puma_mangled_text(work: Path, data: bytes) -> None:
    with written(work, ".geojson", data) as path:
        check_geojson(path)


# --- images (PNG / TIFF) -------------------------------------------------------------------------------


def _png(array: np.ndarray, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def _tif(array: np.ndarray, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kwargs)
    return buf.getvalue()


def _pil_tif(array: np.ndarray, compression: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="TIFF", compression=compression)
    return buf.getvalue()


@functools.cache
def valid_images() -> dict[str, tuple[str, bytes]]:
    """Small valid PNG/TIFF files, by name: (suffix, bytes)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, (16, 12)).astype(np.uint16)
    return {
        "png-rgb": (".png", _png(rgb)),
        "png-rgba": (".png", _png(np.dstack([rgb, rgb[..., :1]]))),
        "png-grey": (".png", _png(rgb[..., 0])),
        "png-16bit": (".png", _png(labels * 1000)),
        "png-palette": (".png", _png(rgb[..., 0] // 32, optimize=True)),
        "tif-rgb": (".tif", _tif(rgb, photometric="rgb")),
        "tif-rgb-zlib": (".tif", _tif(rgb, photometric="rgb", compression="zlib")),
        "tif-labels": (".tif", _tif(labels, photometric="minisblack")),
        "tif-float": (".tif", _tif(labels.astype(np.float32), photometric="minisblack")),
        "tif-tiled": (".tif", _tif(np.pad(rgb, ((0, 16), (0, 20), (0, 0))), photometric="rgb", tile=(16, 16))),
        "tif-pil-lzw": (".tiff", _pil_tif(rgb, "tiff_lzw")),
        "tif-pil-packbits": (".tif", _pil_tif(rgb, "packbits")),
    }


IMAGE_NAMES = st.sampled_from(sorted(valid_images()))
IMAGE_MAGIC = st.sampled_from(
    [b"", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00", b"\xff\xd8\xff"]
)


def check_image_readers(path: Path) -> None:
    """``read_image``, ``to_rgb_uint8`` and ``read_label_image`` on one file: well-formed or InvalidSourceError."""
    image = attempt(read_image, path, source=path)
    if image is not None:
        assert isinstance(image, np.ndarray)
        rgb = attempt(to_rgb_uint8, image, path, source=path)
        if rgb is not None:
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape == (*image.shape[:2], 3)
    labels = attempt(read_label_image, path, source=path)
    if labels is not None:
        assert isinstance(labels, np.ndarray) and labels.ndim == 2
        assert np.issubdtype(labels.dtype, np.integer)
        assert labels.size == 0 or int(labels.min()) >= 0


@FUZZ
@given(magic=IMAGE_MAGIC, data=st.binary(max_size=1500), suffix=st.sampled_from([".png", ".tif", ".tiff", ".jpg"]))
def test_images_random_bytes(work: Path, magic: bytes, data: bytes, suffix: str) -> None:
    with written(work, suffix, magic + data) as path:
        check_image_readers(path)


@settings(FUZZ, max_examples=120)
@given(
    name_and_data=IMAGE_NAMES.flatmap(
        lambda n: st.tuples(st.just(n), st.one_of(cut(valid_images()[n][1]), mutations(valid_images()[n][1])))
    ),
    swap_suffix=st.booleans(),
)
def test_images_truncated_or_mutated(work: Path, name_and_data: tuple[str, bytes], swap_suffix: bool) -> None:
    name, data = name_and_data
    suffix = valid_images()[name][0]
    if swap_suffix:
        suffix = ".png" if suffix != ".png" else ".tif"
    with written(work, suffix, data) as path:
        check_image_readers(path)


IMAGE_DTYPES = st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.bool_])
IMAGE_SHAPES = st.one_of(
    st.tuples(st.integers(1, 9), st.integers(1, 9)),
    st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 5)),
)


@st.composite
def image_arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(IMAGE_DTYPES))
    shape = draw(IMAGE_SHAPES)
    if dtype == np.float32:
        elements = st.one_of(st.integers(0, 9).map(float), st.floats(width=32))
    elif dtype == np.int32:
        elements = st.one_of(st.integers(0, 9), st.integers(-(2**31), 2**31 - 1))
    else:
        elements = None
    array = draw(arrays(dtype, shape, elements=elements))
    if len(shape) == 3 and draw(st.booleans()):
        array = np.repeat(array[..., :1], shape[2], axis=2)  # identical channels: a label map stored as RGB
    return array


def expected_labels(array: np.ndarray) -> np.ndarray | None:
    """What ``read_label_image`` documents for a decoded array: the label map, or None (refused)."""
    a = array
    if (
        a.ndim == 3
        and a.shape[2] in (1, 3, 4)
        and all(np.array_equal(a[..., 0], a[..., c]) for c in range(1, min(a.shape[2], 3)))
    ):
        a = a[..., 0]
    if a.ndim != 2:
        return None
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not (np.all(np.isfinite(a)) and np.all(a == np.round(a)) and np.all(np.abs(a) < 2.0**63)):
            return None
        a = a.astype(np.int64)
    return None if a.size and int(a.min()) < 0 else a


def _pil_writable(array: np.ndarray) -> bool:
    if array.dtype == np.uint8:
        return array.ndim == 2 or array.shape[2] in (3, 4)
    return array.ndim == 2 and array.dtype in (np.uint16, np.bool_)


@settings(FUZZ, max_examples=120)
@given(array=image_arrays(), as_png=st.booleans())
def test_images_valid_random_arrays(work: Path, array: np.ndarray, as_png: bool) -> None:
    as_png = as_png and _pil_writable(array)
    if as_png:
        data, suffix = _png(array), ".png"
    else:
        # (tifffile does not read back the 1-bit RGB it writes, so boolean stacks are stored as minisblack)
        rgb = array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype != np.bool_
        data, suffix = _tif(array, photometric="rgb" if rgb else "minisblack"), ".tif"
    with written(work, suffix, data) as path:
        image = attempt(read_image, path, source=path)
        assert image is not None, "a valid image was refused"
        np.testing.assert_array_equal(image, array)
        assert image.dtype == array.dtype
        rgb_out = attempt(to_rgb_uint8, image, path, source=path)
        if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] in (3, 4):
            assert rgb_out is not None
            np.testing.assert_array_equal(rgb_out, array[..., :3])
        else:
            assert rgb_out is None, f"to_rgb_uint8 accepted dtype {array.dtype} shape {array.shape}"
        labels = attempt(read_label_image, path, source=path)
        expected = expected_labels(array)
        if expected is None:
            assert labels is None, f"read_label_image accepted {array.dtype} {array.shape}: {array!r}"
        else:
            assert labels is not None, "a valid label map was refused"
            assert labels.ndim == 2 and np.issubdtype(labels.dtype, np.integer)
            np.testing.assert_array_equal(labels, expected)


# --- MATLAB .mat (CoNSeP, CPM17) ------------------------------------------------------------------------


def _mat(variables: dict[str, Any], **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, **kwargs)
    return buf.getvalue()


MAT_MAGIC = st.sampled_from(
    [
        b"",
        b"MATLAB 5.0 MAT-file".ljust(124, b" ") + b"\x00\x01IM",
        b"MATLAB 7.3 MAT-file".ljust(124, b" ") + b"\x00\x02IM",
        b"\x00" * 20,
        b"\x89HDF\r\n\x1a\n",
    ]
)


def check_mat(path: Path, optional: tuple[str, ...] = ("inst_type",)) -> None:
    """``load_mat`` then ``label_map``/``integral_array`` on one file: well-formed or InvalidSourceError."""
    data = attempt(load_mat, path, ["inst_map"], optional, source=path)
    if data is None:
        return
    assert isinstance(data, dict) and "inst_map" in data and set(data) <= {"inst_map", *optional}
    assert all(isinstance(v, np.ndarray) for v in data.values())
    labels = attempt(label_map, data["inst_map"], f"{path}:inst_map")
    if labels is not None:
        assert labels.ndim == 2 and labels.dtype == np.int64 and (labels.size == 0 or int(labels.min()) >= 0)
    if "inst_type" in data:
        ids = attempt(integral_array, data["inst_type"], f"{path}:inst_type")
        assert ids is None or (ids.dtype == np.int64 and (ids.size == 0 or int(ids.min()) >= 0))


@FUZZ
@given(magic=MAT_MAGIC, data=st.binary(max_size=1500))
def test_mat_random_bytes(work: Path, magic: bytes, data: bytes) -> None:
    with written(work, ".mat", magic + data) as path:
        check_mat(path)


@st.composite
def valid_mat_files(draw: st.DrawFn) -> bytes:
    inst = draw(arrays(np.int32, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=st.integers(0, 20)))
    variables: dict[str, Any] = {"inst_map": inst.astype(draw(st.sampled_from([np.float64, np.int32, np.uint16])))}
    if draw(st.booleans()):
        variables["inst_type"] = np.arange(int(inst.max()) + 1, dtype=np.float64)[:, None]
    fmt = draw(st.sampled_from(["5", "4"]))
    return _mat(variables, format=fmt, do_compression=fmt == "5" and draw(st.booleans()))


@settings(FUZZ, max_examples=120)
@given(data=valid_mat_files().flatmap(lambda b: st.one_of(cut(b), mutations(b))))
def test_mat_truncated_or_mutated(work: Path, data: bytes) -> None:
    with written(work, ".mat", data) as path:
        check_mat(path)


MAT_SHAPES = st.one_of(
    st.tuples(st.integers(1, 6), st.integers(1, 6)),
    st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
)
NUMERIC_DTYPES = [np.float64, np.float32, np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_, np.complex128]
MAT_NUMERIC = st.sampled_from(NUMERIC_DTYPES)


@st.composite
def mat_values(draw: st.DrawFn) -> Any:
    """A value for ``inst_map``: numeric arrays of any dtype/shape, strings, cell arrays, structs."""
    kind = draw(st.sampled_from(["numeric", "numeric", "numeric", "string", "cell", "struct", "scalar"]))
    if kind == "numeric":
        dtype = np.dtype(draw(MAT_NUMERIC))
        elements = None
        if dtype.kind in "fc":
            elements = st.one_of(st.integers(0, 9).map(float), st.floats(width=32 if dtype == np.float32 else 64))
        return draw(arrays(dtype, MAT_SHAPES, elements=elements))
    if kind == "string":
        return draw(
            st.one_of(
                st.text(max_size=5), st.lists(st.text(min_size=2, max_size=2), min_size=1, max_size=3).map(np.array)
            )
        )
    if kind == "cell":
        cell = np.empty((1, draw(st.integers(1, 3))), dtype=object)
        for i in range(cell.shape[1]):
            cell[0, i] = np.full((2, 2), draw(st.integers(0, 5)), dtype=np.float64)
        return cell
    if kind == "struct":
        return {"a": np.zeros((2, 2)), "b": draw(st.text(max_size=3))}
    return draw(st.one_of(st.integers(-5, 5), st.floats(), st.booleans()))


def expected_integral(value: np.ndarray) -> np.ndarray | None:
    """What ``integral_array`` documents: non-negative integers as int64, or None (refused)."""
    if value.dtype == np.bool_:
        return value.astype(np.int64)
    if value.dtype.kind not in "fiu":
        return None
    if value.size == 0:
        return value.astype(np.int64)
    if value.dtype.kind == "f" and not (np.all(np.isfinite(value)) and np.all(value == np.round(value))):
        return None
    if value.dtype.kind == "f" and float(value.max()) >= 2.0**62:  # documented: "label values too large"
        return None
    if value.dtype.kind in "iu" and int(value.max()) > np.iinfo(np.int64).max:
        return None
    return None if float(value.min()) < 0 else value.astype(np.int64)


@settings(FUZZ, max_examples=120)
@given(value=mat_values(), present=st.booleans(), compress=st.booleans())
def test_mat_valid_random_values(work: Path, value: Any, present: bool, compress: bool) -> None:
    variables = {"inst_map" if present else "other": value}
    with written(work, ".mat", _mat(variables, do_compression=compress)) as path:
        data = attempt(load_mat, path, ["inst_map"], source=path)
        if not present:
            assert data is None, "a missing variable was not reported"
            return
        assert data is not None, "a valid .mat file was refused"
        loaded = data["inst_map"]
        labels = attempt(label_map, loaded, f"{path}:inst_map")
        expected = expected_integral(loaded) if loaded.ndim == 2 else None
        if expected is None:
            assert labels is None, f"label_map accepted {loaded.dtype} {loaded.shape}: {loaded!r}"
        else:
            assert labels is not None and labels.dtype == np.int64
            np.testing.assert_array_equal(labels, expected)
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype.kind in "fiub" and value.size:
            np.testing.assert_array_equal(loaded, value)


@FUZZ
@given(
    value=arrays(
        st.sampled_from([*NUMERIC_DTYPES, np.float16, np.uint32]),
        st.integers(0, 3).flatmap(lambda n: st.tuples(*[st.integers(0, 4)] * n)),
    )
)
def test_integral_array_any_numeric(value: np.ndarray) -> None:
    result = attempt(integral_array, value, "x")
    expected = expected_integral(value)
    if expected is None:
        assert result is None, f"integral_array accepted {value!r}"
    else:
        assert result is not None and result.dtype == np.int64 and result.shape == value.shape
        np.testing.assert_array_equal(result, expected)


# --- .npy -----------------------------------------------------------------------------------------------

NPY_MAGIC = b"\x93NUMPY"


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npy_header(header: str, version: bytes = b"\x01\x00") -> bytes:
    raw = header.encode("latin1")
    raw += b" " * (-(len(raw) + 11) % 64) + b"\n"
    size = len(raw).to_bytes(2 if version[0] == 1 else 4, "little")
    return NPY_MAGIC + version + size + raw


NPY_DESCR = st.sampled_from(
    [
        *("'<f8'", "'>i4'", "'|u1'", "'<U3'", "'|V8'", "'|O'", "'<c16'", "'<M8[s]'", "'garbage'"),
        *("[('a', '<i4'), ('b', '|O')]", "<f8", "1", "{'x': 1}"),
    ]
)
NPY_DIM = st.one_of(st.integers(0, 4), st.integers(-3, 2**64), st.sampled_from([2**31, 2**33, 2**40, 2**62]))
NPY_HEADERS = st.builds(
    lambda descr, fortran, shape, extra: f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, {extra}}}",
    NPY_DESCR,
    st.sampled_from(["False", "True", "0", "None"]),
    st.lists(NPY_DIM, max_size=4).map(lambda dims: repr(tuple(dims)))
    | st.sampled_from(["(", "[2, 2]", "()" * 3, "(" * 300 + ")" * 300]),
    st.sampled_from(["", "'x': 1, "]),
)
#: Header texts that are no dict literal at all (numpy then retries with its Python 2 header filter).
BROKEN_NPY_HEADERS = st.one_of(
    st.sampled_from(["'''", "(", "\x00{", "{'descr': '<f8'", "{", '"', "\\", "{'a': 1}", "[]", "\t{}"]),
    st.text(st.characters(max_codepoint=255), max_size=20),
)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=600),
        st.tuples(
            st.sampled_from(
                [
                    NPY_MAGIC,
                    NPY_MAGIC + b"\x01\x00",
                    NPY_MAGIC + b"\x02\x00",
                    NPY_MAGIC + b"\x03\x00",
                    b"PK\x03\x04",
                    b"PK\x05\x06",
                    b"\x80\x04",
                ]
            ),
            st.binary(max_size=300),
        ).map(b"".join),
        st.tuples(
            NPY_HEADERS | BROKEN_NPY_HEADERS,
            st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00"]),
            st.binary(max_size=64),
        ).map(lambda t: _npy_header(t[0], t[1]) + t[2]),
    ),
    mmap=st.sampled_from([None, "r"]),
)
def test_npy_random_bytes_and_headers(work: Path, data: bytes, mmap: str | None) -> None:
    with written(work, ".npy", data) as path:
        array = attempt(load_npy, path, mmap, source=path)
        if array is not None:
            assert isinstance(array, np.ndarray) and not array.dtype.hasobject
            del array


NPY_ARRAYS = arrays(
    st.sampled_from([np.uint8, np.int32, np.float64, np.bool_, np.complex64, np.dtype("<U2")]),
    st.integers(0, 3).flatmap(lambda n: st.tuples(*[st.integers(0, 5)] * n)),
)


@FUZZ
@given(
    array_and_cut=NPY_ARRAYS.flatmap(lambda a: st.tuples(st.just(a), st.integers(0, len(_npy(a)) - 1))),
    mmap=st.sampled_from([None, "r"]),
)
def test_npy_truncated(work: Path, array_and_cut: tuple[np.ndarray, int], mmap: str | None) -> None:
    array, n = array_and_cut
    full = _npy(array)
    with written(work, ".npy", full) as path:
        loaded = attempt(load_npy, path, mmap, source=path)
        assert loaded is not None, "a valid .npy file was refused"
        np.testing.assert_array_equal(loaded, array)
        del loaded
    with written(work, ".npy", full[:n]) as path:
        assert attempt(load_npy, path, mmap, source=path) is None, f"a .npy cut at {n}/{len(full)} bytes was accepted"


@settings(FUZZ, max_examples=40)
@given(
    value=st.one_of(
        st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), min_size=1, max_size=4).map(
            lambda v: np.array([*v, None], dtype=object)
        ),
        st.just(np.zeros(2, dtype=[("a", "<i4"), ("b", "O")])),
    ),
    mmap=st.sampled_from([None, "r"]),
)
def test_npy_object_arrays_refused(work: Path, value: np.ndarray, mmap: str | None) -> None:
    with written(work, ".npy", _npy(value, allow_pickle=True)) as path:
        with pytest.raises(InvalidSourceError, match="pickle") as info:
            load_npy(path, mmap)
        assert str(path) in str(info.value)


# --- regressions: the minimal inputs of the bugs the fuzzer found -----------------------------------------


@pytest.mark.parametrize("encoding", ["no-such-codec", "rot13", "utf-32", "shift_jis", "idna", "punycode"])
@pytest.mark.parametrize("parser", [parse_aperio, iter_xml_events])
def test_regression_xml_declaring_an_unusable_encoding(tmp_path: Path, encoding: str, parser: Callable) -> None:
    # expat looks the declared encoding up in Python's codecs: LookupError / ValueError / UnicodeError leaked
    path = tmp_path / "a.xml"
    path.write_bytes(f'<?xml version="1.0" encoding="{encoding}"?><Annotations/>'.encode())
    with pytest.raises(InvalidSourceError, match="encoding") as info:
        parser(path)
    assert str(path) in str(info.value)


def test_regression_aperio_coordinates_beyond_int64(tmp_path: Path) -> None:
    # accepted by the parser, then skimage's polygon fill raised OverflowError while rasterising
    path = tmp_path / "a.xml"
    path.write_text(aperio_xml([np.array([[1e19, 0.0], [1e19, 5.0], [1e19 + 4096, 5.0]])]))
    with pytest.raises(InvalidSourceError, match="beyond") as info:
        monuseg.parse_aperio_xml(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("x", ["1" + "0" * 400, "1e19"], ids=["integer-beyond-float", "ring-beyond-int64"])
def test_regression_geojson_coordinates_out_of_range(tmp_path: Path, x: str) -> None:
    path = tmp_path / "a_nuclei.geojson"
    ring = f"[[{x}, 0], [{x}, 5], [{x}, 9]]"
    path.write_text(f'{{"type": "Feature", "geometry": {{"type": "Polygon", "coordinates": [{ring}]}}}}')
    with pytest.raises(InvalidSourceError, match="coordinates") as info:
        parse_nuclei_geojson(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", ["bad-zip", "npz"])
@pytest.mark.parametrize("mmap", [None, "r"])
def test_regression_npy_that_is_a_zip(tmp_path: Path, kind: str, mmap: str | None) -> None:
    # np.load raised zipfile.BadZipFile for b"PK\x03\x04", and returned an NpzFile (not an array) for a .npz
    path = tmp_path / "a.npy"
    if kind == "npz":
        with open(path, "wb") as fh:
            np.savez(fh, a=np.zeros(3))
    else:
        path.write_bytes(b"PK\x03\x04")
    with pytest.raises(InvalidSourceError, match=r"not a valid \.npy") as info:
        load_npy(path, mmap)
    assert str(path) in str(info.value)


def test_regression_npy_header_declaring_a_huge_array(tmp_path: Path) -> None:
    # np.load allocated the declared 8 TiB first: MemoryError (or a huge allocation on a big machine)
    path = tmp_path / "a.npy"
    path.write_bytes(_npy_header(f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({2**40},), }}") + bytes(16))
    with pytest.raises(InvalidSourceError, match="truncated") as info:
        load_npy(path)
    assert str(path) in str(info.value)


def test_regression_npy_header_that_is_no_literal(tmp_path: Path) -> None:
    # numpy's fallback parser of Python 2 headers raised tokenize.TokenError
    path = tmp_path / "a.npy"
    path.write_bytes(NPY_MAGIC + b"\x01\x00\x03\x00'''")
    with pytest.raises(InvalidSourceError, match=r"not a valid \.npy") as info:
        load_npy(path)
    assert str(path) in str(info.value)


def test_regression_npy_object_array_memory_mapped_says_pickle(tmp_path: Path) -> None:
    # with mmap_mode the refusal read "Array can't be memory-mapped", not the documented pickle refusal
    path = tmp_path / "a.npy"
    path.write_bytes(_npy(np.array([1, None], dtype=object), allow_pickle=True))
    with pytest.raises(InvalidSourceError, match="pickle"):
        load_npy(path, mmap_mode="r")


def test_regression_float_label_image_beyond_int64(tmp_path: Path) -> None:
    # the cast to int64 overflowed (RuntimeWarning; INT64_MIN on x86, reported as "negative values")
    path = tmp_path / "labels.tif"
    tifffile.imwrite(path, np.array([[0.0, 1e19]], dtype=np.float32), photometric="minisblack")
    with pytest.raises(InvalidSourceError, match="too large"):
        read_label_image(path)


def test_regression_integral_array_uint64_beyond_int64() -> None:
    # the cast to int64 wrapped 2**63 to a negative value, reported as "negative label values"
    with pytest.raises(InvalidSourceError, match="too large"):
        integral_array(np.array([[0, 2**63]], dtype=np.uint64), "x")


def test_regression_rasterize_polygon_beyond_int64() -> None:
    # fill_polygon passed a polygon lying wholly beyond 2**63 px to skimage.draw.polygon (OverflowError)
    out, n = monuseg.rasterize([np.array([[1e19, 0.0], [1e19, 5.0], [1e19 + 4096, 5.0]])], (4, 4))
    assert n == 1 and not out.any()


def test_regression_puma_string_and_boolean_coordinates(tmp_path) -> None:
    for coords in ([["1", "2"], ["3", "4"], ["1", "4"]], [[True, False], [False, True], [True, True]]):
        path = tmp_path / "strings.geojson"
        feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [coords]}, "properties": {}}
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
        with pytest.raises(InvalidSourceError, match="non-numeric"):
            parse_nuclei_geojson(path)
