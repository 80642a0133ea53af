"""Property tests (hypothesis) and real-data tests of nucfuse_datasets.metrics.

The expected values come from a deliberately naive implementation written here from the
definitions in ``docs/metrics.md`` (one boolean mask per instance, Python loops), which shares
no code with the library.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from nucfuse_datasets.errors import ArgumentError, MetricInputError
from nucfuse_datasets.metrics import METRIC_KEYS, PairResult, aggregate, evaluate_pair

EPS = 1e-6
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "nuinsseg"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the naive reference ------------------------------------------------------------------


def naive(gt: np.ndarray, pred: np.ndarray, thr: float = 0.5, inclusive: bool = False) -> dict[str, Any]:
    """All metrics from per-instance masks, straight from the definitions."""
    g_ids = [i for i in np.unique(gt).tolist() if i != 0]
    p_ids = [j for j in np.unique(pred).tolist() if j != 0]
    g_masks = [gt == i for i in g_ids]
    p_masks = [pred == j for j in p_ids]
    n_t, n_p = len(g_ids), len(p_ids)
    inter = np.zeros((n_t, n_p), dtype=np.int64)
    union = np.zeros((n_t, n_p), dtype=np.int64)
    for a, gm in enumerate(g_masks):
        for b, pm in enumerate(p_masks):
            inter[a, b] = int(np.count_nonzero(gm & pm))
            union[a, b] = int(np.count_nonzero(gm | pm))
    iou = np.zeros((n_t, n_p))
    nz = inter > 0
    iou[nz] = inter[nz] / union[nz]

    def passes(v: float) -> bool:
        return v >= thr if inclusive else v > thr

    if (thr > 0.5) or (thr == 0.5 and not inclusive):
        pairs = [(a, b) for a in range(n_t) for b in range(n_p) if inter[a, b] > 0 and passes(iou[a, b])]
    else:
        rows, cols = linear_sum_assignment(-iou) if n_t and n_p else ([], [])
        pairs = [(a, b) for a, b in zip(rows, cols, strict=True) if iou[a, b] > 0 and passes(iou[a, b])]
    tp = len(pairs)
    fp, fn = n_p - tp, n_t - tp
    sum_iou = float(np.array([iou[a, b] for a, b in pairs], dtype=np.float64).sum())
    dq = tp / (tp + 0.5 * fp + 0.5 * fn + EPS)
    sq = sum_iou / (tp + EPS)

    score = np.zeros((n_t, n_p))
    score[nz] = inter[nz] / (union[nz] + EPS)
    area_g = [int(m.sum()) for m in g_masks]
    area_p = [int(m.sum()) for m in p_masks]

    # MoNuSeg AJI: best prediction per GT (first on ties), reuse allowed.
    c = u = 0
    used: set[int] = set()
    for a in range(n_t):
        best, best_b = 0.0, -1
        for b in range(n_p):
            if score[a, b] > best:
                best, best_b = score[a, b], b
        if best_b >= 0:
            c += int(inter[a, best_b])
            u += int(union[a, best_b])
            used.add(best_b)
        else:
            u += area_g[a]
    u += sum(area_p[b] for b in range(n_p) if b not in used)

    # AJI+: one-to-one assignment on the same scores.
    cp = up = 0
    used_g: set[int] = set()
    used_p: set[int] = set()
    if n_t and n_p:
        for a, b in zip(*linear_sum_assignment(-score), strict=True):
            if score[a, b] > 0:
                cp += int(inter[a, b])
                up += int(union[a, b])
                used_g.add(int(a))
                used_p.add(int(b))
    up += sum(area_g[a] for a in range(n_t) if a not in used_g)
    up += sum(area_p[b] for b in range(n_p) if b not in used_p)

    fg_i = int(np.count_nonzero((gt > 0) & (pred > 0)))
    fg_t = int(np.count_nonzero(gt > 0)) + int(np.count_nonzero(pred > 0))
    d2_i = sum(int(inter[a, b]) for a in range(n_t) for b in range(n_p) if inter[a, b] > 0)
    d2_t = sum(area_g[a] + area_p[b] for a in range(n_t) for b in range(n_p) if inter[a, b] > 0)
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "sum_iou": sum_iou,
        "dq": dq,
        "sq": sq,
        "pq": dq * sq,
        "aji": c / u if u else 0.0,
        "aji_plus": cp / up if up else 0.0,
        "dice_1": 2 * fg_i / fg_t if fg_t else 0.0,
        "dice_2": 2 * d2_i / d2_t if d2_t else 0.0,
        "precision": tp / (tp + fp + EPS),
        "recall": tp / (tp + fn + EPS),
        "n_true": n_t,
        "n_pred": n_p,
        "pairs": tuple((g_ids[a], p_ids[b]) for a, b in sorted(pairs)),
    }


def ellipse(w: int) -> np.ndarray:
    fp = np.zeros((2 * w + 1, 2 * w + 1), bool)
    for i, dy in enumerate(range(-w, w + 1)):
        half = int(np.rint(w * np.sqrt((w * w - dy * dy) / (w * w))))
        fp[i, w - half : w + half + 1] = True
    return fp


def naive_nuceval(
    gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None, fraction: float, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """NucEval's preprocessing, one instance at a time (removal rule, then ring)."""
    gt, pred = gt.copy(), pred.copy()
    if ignore is not None:
        amb = ignore != 0
        for arr in (gt, pred):
            for i in [i for i in np.unique(arr).tolist() if i != 0]:
                m = arr == i
                if np.count_nonzero(m & amb) / np.count_nonzero(m) > fraction:
                    arr[m] = 0
            arr[amb] = 0
    if width > 0:
        fp = ellipse(width)
        ring = np.zeros(gt.shape, bool)
        for i in [i for i in np.unique(gt).tolist() if i != 0]:
            m = gt == i
            dil = ndimage.binary_dilation(m, structure=fp)
            ero = ndimage.binary_erosion(m, structure=fp, border_value=1)
            ring |= dil & ~ero
        gt[ring] = 0
        pred[ring] = 0
    return gt, pred


def assert_matches(r: PairResult, expected: dict[str, Any]) -> None:
    for key in ("tp", "fp", "fn", "n_true", "n_pred"):
        assert getattr(r, key) == expected[key], key
    for key in (*METRIC_KEYS, "sum_iou"):
        assert getattr(r, key) == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key
    if r.pairs is not None:
        assert r.pairs == expected["pairs"]


# --- strategies -------------------------------------------------------------------------


@st.composite
def pixel_maps(draw: st.DrawFn, max_side: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Two maps of random pixels drawn from a few ids (fragmented, heavily overlapping)."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    ids = st.sampled_from([0, 0, *draw(st.lists(st.integers(1, 2**40), min_size=1, max_size=5))])
    gt = draw(arrays(np.int64, (h, w), elements=ids))
    ids_p = st.sampled_from([0, 0, *draw(st.lists(st.integers(1, 300), min_size=1, max_size=5))])
    pred = draw(arrays(np.int64, (h, w), elements=ids_p))
    return gt, pred


@st.composite
def blob_maps(draw: st.DrawFn, side: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Two maps of painted rectangles, the prediction a perturbed copy (realistic IoUs)."""
    gt = np.zeros((side, side), np.int64)
    pred = np.zeros((side, side), np.int64)
    n = draw(st.integers(0, 6))
    for k in range(n):
        r0, c0 = draw(st.integers(0, side - 2)), draw(st.integers(0, side - 2))
        r1, c1 = draw(st.integers(r0 + 1, side)), draw(st.integers(c0 + 1, side))
        gid = draw(st.integers(1, 10**6))
        gt[r0:r1, c0:c1] = gid
        if draw(st.booleans()) or k == 0:
            dr, dc = draw(st.integers(-2, 2)), draw(st.integers(-2, 2))
            pr0, pc0 = min(max(r0 + dr, 0), side - 1), min(max(c0 + dc, 0), side - 1)
            pr1, pc1 = max(min(r1 + dr, side), pr0 + 1), max(min(c1 + dc, side), pc0 + 1)
            pred[pr0:pr1, pc0:pc1] = draw(st.integers(1, 10**3))
    return gt, pred


MATCHES = st.sampled_from([(0.5, False), (0.5, True), (0.3, False), (0.3, True), (0.75, False), (0.1, True)])


# --- properties ---------------------------------------------------------------------------


@SETTINGS
@given(maps=st.one_of(pixel_maps(), blob_maps()), match=MATCHES)
def test_matches_naive_definitions(maps: tuple[np.ndarray, np.ndarray], match: tuple[float, bool]) -> None:
    gt, pred = maps
    thr, inclusive = match
    r = evaluate_pair(gt, pred, iou_threshold=thr, match="inclusive" if inclusive else "strict", return_pairs=True)
    assert_matches(r, naive(gt, pred, thr, inclusive))


@SETTINGS
@given(maps=st.one_of(pixel_maps(), blob_maps()), data=st.data())
def test_id_permutation_invariance(maps: tuple[np.ndarray, np.ndarray], data: st.DataObject) -> None:
    gt, pred = maps
    base = evaluate_pair(gt, pred)
    ids = [i for i in np.unique(gt).tolist() if i != 0]
    new = data.draw(st.permutations([i * 7 + 3 for i in ids]))
    lut = dict(zip(ids, new, strict=True)) | {0: 0}
    permuted = np.vectorize(lut.__getitem__, otypes=[np.int64])(gt) if gt.size else gt
    r = evaluate_pair(permuted, pred)
    # Order-free quantities never change; AJI/AJI+ may (ties go to the lowest id).
    for key in ("tp", "fp", "fn", "pq", "dq", "sq", "sum_iou", "dice_1", "dice_2", "precision", "recall"):
        assert getattr(r, key) == pytest.approx(getattr(base, key), rel=1e-12, abs=0), key
    # An order-preserving relabelling changes nothing at all.
    mono = np.where(gt > 0, gt * 1000 + 2**33, 0)
    r_mono = evaluate_pair(mono, pred, return_pairs=True)
    assert r_mono.metrics() == base.metrics()


@SETTINGS
@given(maps=st.one_of(pixel_maps(), blob_maps()))
def test_identical_maps(maps: tuple[np.ndarray, np.ndarray]) -> None:
    gt, _ = maps
    n = len([i for i in np.unique(gt) if i != 0])
    r = evaluate_pair(gt, gt)
    assert (r.tp, r.fp, r.fn, r.n_true, r.n_pred) == (n, 0, 0, n, n)
    assert r.sum_iou == float(n)
    assert r.dq == n / (n + EPS) and r.sq == n / (n + EPS)
    expected = 1.0 if n else 0.0
    assert (r.aji, r.aji_plus, r.dice_1, r.dice_2) == (expected,) * 4


@SETTINGS
@given(maps=st.one_of(pixel_maps(), blob_maps()))
def test_symmetry(maps: tuple[np.ndarray, np.ndarray]) -> None:
    gt, pred = maps
    a, b = evaluate_pair(gt, pred), evaluate_pair(pred, gt)
    assert (a.tp, a.fp, a.fn) == (b.tp, b.fn, b.fp)
    for key in ("pq", "dq", "sq", "dice_1", "dice_2"):
        assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-12, abs=0), key
    assert (a.precision, a.recall) == (b.recall, b.precision)


DTYPES = st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64])


@st.composite
def any_int_map(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(DTYPES)
    shape = draw(st.tuples(st.integers(0, 6), st.integers(0, 6)))
    info = np.iinfo(dtype)
    special = [0, 0, 1, 2, int(info.max), int(info.min), 2**24, 2**24 + 1]
    elements = st.one_of(
        st.sampled_from([v for v in special if info.min <= v <= info.max]),
        st.integers(int(info.min), int(info.max)),
    )
    return draw(arrays(dtype, shape, elements=elements))


@settings(max_examples=300, deadline=None)
@given(gt=any_int_map(), pred=any_int_map(), thr=st.floats(0.0, 1.0), inclusive=st.booleans())
def test_never_raises_anything_else(gt: np.ndarray, pred: np.ndarray, thr: float, inclusive: bool) -> None:
    try:
        r = evaluate_pair(gt, pred, iou_threshold=thr, match="inclusive" if inclusive else "strict")
    except (MetricInputError, ArgumentError):
        return
    for key in METRIC_KEYS:
        value = getattr(r, key)
        assert math.isfinite(value) and 0.0 <= value <= 1.0, key
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))


@SETTINGS
@given(
    maps=st.lists(st.one_of(pixel_maps(4), blob_maps(8)), min_size=1, max_size=5),
    mode=st.sampled_from(["mean", "pooled", "weighted"]),
    empty=st.sampled_from(["zero", "skip", "nan"]),
)
def test_aggregate_bounds_and_nan_only_when_documented(
    maps: list[tuple[np.ndarray, np.ndarray]], mode: str, empty: str
) -> None:
    results = [evaluate_pair(g, p) for g, p in maps]
    out = aggregate(results, mode=mode, empty=empty)
    n_empty = sum(r.empty for r in results)
    nan_expected = (empty == "nan" and n_empty > 0) or (empty == "skip" and n_empty == len(results))
    for key in METRIC_KEYS:
        if nan_expected:
            assert math.isnan(out[key])
        else:
            assert 0.0 <= out[key] <= 1.0
    assert out["n_images"] + out["n_skipped"] == len(results)


@SETTINGS
@given(
    maps=blob_maps(),
    ignore=arrays(np.uint8, (16, 16), elements=st.sampled_from([0, 0, 0, 255])),
    fraction=st.sampled_from([0.0, 0.25, 0.5]),
    width=st.integers(0, 2),
)
def test_ignore_and_boundary_match_naive(
    maps: tuple[np.ndarray, np.ndarray], ignore: np.ndarray, fraction: float, width: int
) -> None:
    gt, pred = maps
    r = evaluate_pair(gt, pred, ignore=ignore, ignore_fraction=fraction, boundary_width=width, return_pairs=True)
    g2, p2 = naive_nuceval(gt, pred, ignore, fraction, width)
    assert_matches(r, naive(g2, p2))
    n_t = len([i for i in np.unique(gt) if i != 0])
    assert r.n_true + r.n_true_removed == n_t


# --- real NuInsSeg label maps (read in place) ------------------------------------------


def _nuinsseg(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gt_path = REALDATA / "human bladder" / "label masks modify" / f"{name}.tif"
    amb_path = REALDATA / "human bladder" / "vague areas" / "mask binary" / f"{name}.png"
    pred_path = REALDATA / "predictions" / f"{name}.npy"
    for path in (gt_path, amb_path, pred_path):
        if not path.is_file():
            pytest.skip(f"real NuInsSeg samples not found at {path}; skipping")
    import tifffile
    from PIL import Image

    gt = tifffile.imread(gt_path)
    with Image.open(amb_path) as im:
        amb = np.asarray(im)
    pred = np.load(pred_path, allow_pickle=False)
    return gt, amb, pred


def test_nuinsseg_bladder_01_vague_areas() -> None:
    gt, amb, pred = _nuinsseg("human_bladder_01")
    assert gt.dtype == np.uint16 and pred.dtype == np.uint8
    plain = evaluate_pair(gt, pred, return_pairs=True)
    assert plain.n_true == 24
    assert_matches(plain, naive(gt, pred))
    r = evaluate_pair(gt, pred, ignore=amb, return_pairs=True)
    # 5 of the 24 labels have more than 25 % of their area in the vague mask
    assert (r.n_true, r.n_true_removed) == (19, 5)
    g2, p2 = naive_nuceval(gt, pred, amb, 0.25, 0)
    assert_matches(r, naive(g2, p2))
    assert r.n_pred + r.n_pred_removed == plain.n_pred


@pytest.mark.parametrize("width", [1, 2])
def test_nuinsseg_boundary_zone(width: int) -> None:
    gt, amb, pred = _nuinsseg("human_bladder_01")
    r = evaluate_pair(gt, pred, ignore=amb, boundary_width=width, return_pairs=True)
    g2, p2 = naive_nuceval(gt, pred, amb, 0.25, width)
    assert_matches(r, naive(g2, p2))


def test_nuinsseg_bladder_02_untouched_by_vague_areas() -> None:
    gt, amb, pred = _nuinsseg("human_bladder_02")
    assert np.count_nonzero(amb) > 0
    plain = evaluate_pair(gt, pred)
    r = evaluate_pair(gt, pred, ignore=amb)
    assert (r.n_true, r.n_true_removed) == (3, 0)
    assert r.metrics() == plain.metrics()
    assert_matches(plain, naive(gt, pred))
