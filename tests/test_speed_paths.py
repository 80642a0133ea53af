"""The fast paths of issue 18 give exactly what the straightforward code gives.

* ``rasterize`` / ``fill_polygons`` (vectorised scanline) against ``skimage.draw.polygon`` called per
  polygon, the reference the rasterisation rule is defined by: random and real polygons.
* the regular-layout Aperio reader against the full expat parser, on real MoNuSeg files and on layouts
  it must hand back to the full parser.
* ``collate`` against ``torch.stack`` of permuted views, and ``load_npy`` against ``np.load``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.draw import polygon as sk_polygon

from nucfuse_datasets.datasets._aperio_fast import fast_aperio_regions
from nucfuse_datasets.datasets._raster import fill_polygons, rasterize
from nucfuse_datasets.datasets.monuseg import parse_aperio_xml
from nucfuse_datasets.io.files import load_npy, parse_aperio

REAL_MONUSEG = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "monuseg"


def skimage_raster(polys: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The rule written out: skimage per polygon in order, later ids overwrite (empty/outside: skipped)."""
    out = np.zeros(shape, np.int32)
    for n, xy in enumerate(polys, start=1):
        xy = np.asarray(xy, float)
        if xy.ndim != 2 or xy.shape[0] < 3:
            continue
        x, y = xy[:, 0], xy[:, 1]
        if x.max() < 0 or y.max() < 0 or x.min() > shape[1] - 1 or y.min() > shape[0] - 1:
            continue
        rr, cc = sk_polygon(y, x, shape=shape)
        out[rr, cc] = n
    return out


def random_polygons(rng: np.random.Generator) -> tuple[list[np.ndarray], tuple[int, int]]:
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
    polys = []
    for _ in range(int(rng.integers(1, 7))):
        n = int(rng.integers(0, 10))
        kind = int(rng.integers(5))
        if kind == 0:
            xy = rng.uniform(-10, 50, (n, 2))
        elif kind == 1:  # vertices on pixel centres: the vertex rule and horizontal edges
            xy = rng.integers(-5, 45, (n, 2)).astype(float)
        elif kind == 2:  # half-pixel vertices: edges through pixel centres
            xy = rng.integers(-10, 90, (n, 2)) / 2.0
        elif kind == 3:  # within and just outside the 1e-12 vertex tolerance
            xy = rng.integers(-5, 45, (n, 2)) + rng.choice([0.0, 5e-13, -5e-13, 2e-12, 1e-9], (n, 2))
        else:  # far outside the tile in places
            xy = rng.uniform(-1e4, 1e4, (n, 2))
        polys.append(xy)
    return polys, shape


def test_rasterize_equals_skimage_on_random_polygons() -> None:
    rng = np.random.default_rng(18)
    for _ in range(1500):
        polys, shape = random_polygons(rng)
        ours, n = rasterize(polys, shape)
        assert n == len(polys)
        np.testing.assert_array_equal(ours, skimage_raster(polys, shape))


def test_fill_polygons_equals_skimage_per_polygon() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        polys, shape = random_polygons(rng)
        for xy, (rr, cc) in zip(polys, fill_polygons(polys, shape), strict=True):
            ref = skimage_raster([xy], shape)
            expected_r, expected_c = np.nonzero(ref)
            np.testing.assert_array_equal(rr, expected_r)
            np.testing.assert_array_equal(cc, expected_c)


def test_rasterize_mixes_holes_and_plain_polygons_in_order() -> None:
    sq = np.array([[0, 0], [9, 0], [9, 9], [0, 9]], float)
    hole = np.array([[3, 3], [6, 3], [6, 6], [3, 6]], float)
    lab, n = rasterize([sq, (sq + 2, [hole + 2]), sq + 5], (20, 20))
    assert n == 3
    assert lab[1, 1] == 1 and lab[4, 4] == 2 and lab[6, 6] == 3  # later overwrite earlier
    assert lab[5, 5] == 3 and lab[3, 12] == 0


def _real_xml() -> list[Path]:
    files = sorted(REAL_MONUSEG.rglob("*.xml")) if REAL_MONUSEG.is_dir() else []
    if not files:
        pytest.skip(f"real MoNuSeg samples not found at {REAL_MONUSEG}; skipping")
    return files


def test_real_monuseg_fast_reader_and_raster_match_the_full_path() -> None:
    for path in _real_xml():
        fast = fast_aperio_regions(path)
        assert fast is not None, f"{path.name}: regular layout expected"
        root, annotations = parse_aperio(path)
        slow = [xy for ann in annotations for _, xy in ann.regions]
        assert fast[0] == root
        assert len(fast[1]) == len(slow)
        for a, b in zip(fast[1], slow, strict=True):
            np.testing.assert_array_equal(a, b)
        regions, _ = parse_aperio_xml(path)
        np.testing.assert_array_equal(rasterize(regions, (1000, 1000))[0], skimage_raster(slow, (1000, 1000)))


REGULAR = (
    '<Annotations MicronsPerPixel="0.25"><Annotation Id="1"><Regions>'
    '<Region Id="1"><Vertices><Vertex X="1.5" Y="2"/><Vertex X="4" Y="2" Z="0"/><Vertex X="4e0" Y="5."/>'
    "</Vertices></Region>"
    '<Region Id="2"><Vertices><Vertex X="-1" Y=".5"/><Vertex X="+3" Y="7"/><Vertex X="8" Y="1.25E1"/>'
    "</Vertices></Region></Regions></Annotation></Annotations>"
)


@pytest.mark.parametrize(
    ("text", "fast_expected"),
    [
        (REGULAR, True),
        ('<?xml version="1.0"?>\n' + REGULAR, True),
        (REGULAR.replace('<Vertex X="1.5" Y="2"/>', '<Vertex Y="2" X="1.5"/>'), False),
        (REGULAR.replace("<Regions>", "<Regions><!-- <Vertex X='1' Y='1'/> -->"), False),
        (REGULAR.replace('X="1.5"', 'X="&#49;.5"'), False),
        (REGULAR.replace('<Region Id="2">', '<Region Id="9"/><Region Id="2">'), False),
        (REGULAR.replace('X="-1"', 'X=" -1"'), False),
        (REGULAR.replace("<Regions>", '<Regions><Vertex X="1" Y="1"/>'), False),
    ],
    ids=["regular", "declaration", "y-first", "comment", "char-ref", "self-closing", "space", "stray-vertex"],
)
def test_fast_reader_answers_only_for_the_regular_layout(tmp_path: Path, text: str, fast_expected: bool) -> None:
    path = tmp_path / "a.xml"
    path.write_text(text)
    fast = fast_aperio_regions(path)
    assert (fast is not None) == fast_expected
    root, annotations = parse_aperio(path)
    slow = [xy for ann in annotations for _, xy in ann.regions]
    regions, mpp = parse_aperio_xml(path)  # either way the same answer as the full parser
    assert mpp == float(root["MicronsPerPixel"])
    assert len(regions) == len(slow)
    for a, b in zip(regions, slow, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fast_reader_leaves_malformed_xml_to_the_full_parser(tmp_path: Path) -> None:
    from nucfuse_datasets.errors import InvalidSourceError

    path = tmp_path / "a.xml"
    path.write_text(REGULAR.replace("</Annotation></Annotations>", "</Annotations>"))
    assert fast_aperio_regions(path) is None
    with pytest.raises(InvalidSourceError, match="malformed XML"):
        parse_aperio_xml(path)


def test_collate_equals_stack_of_permuted_views() -> None:
    torch = pytest.importorskip("torch")
    from nucfuse_datasets.schema import Sample, SampleMeta, collate

    rng = np.random.default_rng(0)
    samples = [
        Sample(
            image=rng.integers(0, 256, (16, 12, 3), dtype=np.uint8),
            instances=rng.integers(0, 9, (16, 12)).astype(np.int32),
            ignore=None if k % 2 else rng.integers(0, 2, (16, 12)).astype(bool),
            meta=SampleMeta(dataset="d", sample_id=f"s{k}", split="all"),
        )
        for k in range(5)
    ]
    batch = collate(samples)
    expected = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1) for s in samples])
    assert batch["image"].is_contiguous() and batch["image"].dtype == torch.uint8
    assert torch.equal(batch["image"], expected)
    assert torch.equal(batch["instances"], torch.stack([torch.from_numpy(s.instances) for s in samples]))
    masks = [np.zeros((16, 12), bool) if s.ignore is None else s.ignore for s in samples]
    assert torch.equal(batch["ignore"], torch.from_numpy(np.stack(masks)))
    mixed = collate([samples[0], samples[1].replace(image=samples[1].image[:8], instances=samples[1].instances[:8])])
    assert isinstance(mixed["image"], list) and mixed["image"][1].shape == (3, 8, 12)
    assert mixed["image"][1].is_contiguous()


@pytest.mark.parametrize("dtype", ["u1", "<i4", ">i4", "<f8", ">u2", "?"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_load_npy_equals_np_load(tmp_path: Path, dtype: str, order: str) -> None:
    rng = np.random.default_rng(1)
    for shape in [(), (0,), (3, 0), (7,), (5, 6), (2, 3, 4)]:
        arr = np.asarray(rng.integers(0, 100, shape)).astype(dtype)
        arr = np.asfortranarray(arr) if order == "F" else arr
        path = tmp_path / "a.npy"
        np.save(path, arr)
        ours, ref = load_npy(path), np.load(path)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        assert ours.tobytes(order="A") == ref.tobytes(order="A")
        assert ours.flags.f_contiguous == ref.flags.f_contiguous and ours.flags.writeable
