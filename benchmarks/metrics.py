"""Benchmark: nucfuse_datasets.metrics.evaluate_pair against a per-instance-mask reference path.

Run from the repository root::

    python benchmarks/metrics.py            # full run (about a minute on 2 cores)
    python benchmarks/metrics.py --quick    # fewer maps and repeats

Both paths score the same random, realistic instance maps (ellipse nuclei; predictions with
jitter, missed nuclei, false positives, splits and merges) in one process. The reference path
is written here, from the metric definitions, with the structure of the field's reference code:
the maps are remapped id by id, and each metric is its own function working on one full-image
mask per instance (cost O(N * H * W) per metric). Two variants are timed: "field-style" builds
every instance's uint8 mask up front and computes each overlapping pair's intersection and
sum on those masks, as HoVerNet/CellViT do (about 1 GB of masks at 1000x1000); "lean" makes
boolean masks on the fly, which is faster and is the fairer lower bound. ``evaluate_pair`` builds one contingency table
per pair and derives every metric from it. The script checks that both give identical numbers
and prints the speed ratio, then times scoring 140 test-set-sized images.

This is not a unit test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from nucfuse_datasets.metrics import aggregate, evaluate_pair

EPS = 1.0e-6
KEYS = ("pq", "dq", "sq", "tp", "fp", "fn", "aji", "aji_plus", "dice_1", "dice_2", "precision", "recall")


# --- random realistic maps -------------------------------------------------------------


def _paint(canvas: np.ndarray, cy: float, cx: float, ry: float, rx: float, theta: float, value: int) -> None:
    h, w = canvas.shape
    r = int(np.ceil(max(ry, rx))) + 1
    y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, h)
    x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, w)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    inside = ((c * dy + s * dx) / ry) ** 2 + ((-s * dy + c * dx) / rx) ** 2 <= 1.0
    canvas[y0:y1, x0:x1][inside] = value


def make_pair(rng: np.random.Generator, size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A GT map with about ``n`` ellipse nuclei and a plausible prediction of it."""
    gt = np.zeros((size, size), np.int32)
    pred = np.zeros((size, size), np.int32)
    gt_ids = rng.permutation(np.arange(1, 3 * n + 1))[:n]  # non-contiguous, unordered ids
    pred_next = 1
    nuclei = []
    for k in range(n):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(4.0, 11.0, 2)
        theta = rng.uniform(0, np.pi)
        _paint(gt, cy, cx, ry, rx, theta, int(gt_ids[k]))
        nuclei.append((cy, cx, ry, rx, theta))
    merged_into: int | None = None
    for cy, cx, ry, rx, theta in nuclei:
        u = rng.uniform()
        if u < 0.05:  # missed nucleus
            continue
        jy, jx = rng.normal(0, 1.2, 2)
        sy, sx = rng.uniform(0.85, 1.15, 2)
        if u < 0.08:  # split into two halves
            for side in (-1, 1):
                oy, ox = side * ry * 0.45 * np.cos(theta), side * ry * 0.45 * np.sin(theta)
                _paint(pred, cy + jy + oy, cx + jx + ox, ry * 0.5, rx * sx, theta, pred_next)
                pred_next += 1
            continue
        if u < 0.11 and merged_into is not None:  # merged with the previous prediction
            _paint(pred, cy + jy, cx + jx, ry * sy, rx * sx, theta, merged_into)
            merged_into = None
            continue
        _paint(pred, cy + jy, cx + jx, ry * sy, rx * sx, theta, pred_next)
        merged_into = pred_next
        pred_next += 1
    for _ in range(max(1, n // 20)):  # false positives
        cy, cx = rng.uniform(0, size, 2)
        _paint(pred, cy, cx, rng.uniform(3, 8), rng.uniform(3, 8), rng.uniform(0, np.pi), pred_next)
        pred_next += 1
    return gt, pred


# --- the reference path: one function per metric, one full-image mask per instance ------


def _ids(label_map: np.ndarray) -> list[int]:
    return [int(i) for i in np.unique(label_map) if i != 0]


def ref_remap(label_map: np.ndarray) -> np.ndarray:
    out = np.zeros(label_map.shape, np.int32)
    for new, old in enumerate(_ids(label_map), start=1):
        out[label_map == old] = new
    return out


def _instance_masks(label_map: np.ndarray) -> list[np.ndarray]:
    """One full-image uint8 mask per instance id 1..N, built up front as the field's code does."""
    return [np.array(label_map == i, np.uint8) for i in range(1, int(label_map.max()) + 1)]


def _pairwise(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intersections and unions of every overlapping (GT, pred) pair, from per-instance masks."""
    g_masks, p_masks = _instance_masks(gt), _instance_masks(pred)
    inter = np.zeros((len(g_masks), len(p_masks)), np.int64)
    union = np.zeros((len(g_masks), len(p_masks)), np.int64)
    for i, t_mask in enumerate(g_masks):
        for j in np.unique(pred[t_mask > 0]):
            if j == 0:
                continue
            p_mask = p_masks[j - 1]
            total = int((t_mask + p_mask).sum())
            both = int((t_mask * p_mask).sum())
            inter[i, j - 1] = both
            union[i, j - 1] = total - both
    area_g = np.array([int(m.sum()) for m in g_masks], np.int64)
    area_p = np.array([int(m.sum()) for m in p_masks], np.int64)
    return inter, union, area_g, area_p


def _pairwise_lean(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same table with boolean masks made on the fly (less memory, fewer passes)."""
    n_t, n_p = int(gt.max()), int(pred.max())
    inter = np.zeros((n_t, n_p), np.int64)
    union = np.zeros((n_t, n_p), np.int64)
    area_g = np.array([np.count_nonzero(gt == i) for i in range(1, n_t + 1)], np.int64)
    area_p = np.array([np.count_nonzero(pred == j) for j in range(1, n_p + 1)], np.int64)
    for i in range(1, n_t + 1):
        g_mask = gt == i
        for j in np.unique(pred[g_mask]):
            if j == 0:
                continue
            p_mask = pred == j
            inter[i - 1, j - 1] = np.count_nonzero(g_mask & p_mask)
            union[i - 1, j - 1] = np.count_nonzero(g_mask | p_mask)
    return inter, union, area_g, area_p


PAIRWISE: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]] = {
    "field-style": _pairwise,
    "lean": _pairwise_lean,
}
_pairwise_impl = _pairwise


def ref_pq(gt: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    inter, union, _, _ = _pairwise_impl(gt, pred)
    iou = np.zeros(inter.shape)
    nz = inter > 0
    iou[nz] = inter[nz] / union[nz]
    rows, cols = np.nonzero(iou > 0.5)
    tp = len(rows)
    fp, fn = inter.shape[1] - tp, inter.shape[0] - tp
    sum_iou = iou[rows, cols].sum()
    dq = tp / (tp + 0.5 * fp + 0.5 * fn + EPS)
    sq = sum_iou / (tp + EPS)
    return {
        "dq": dq,
        "sq": sq,
        "pq": dq * sq,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp + EPS),
        "recall": tp / (tp + fn + EPS),
    }


def _aji_score(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    score = np.zeros(inter.shape)
    nz = inter > 0
    score[nz] = inter[nz] / (union[nz] + EPS)
    return score


def ref_aji(gt: np.ndarray, pred: np.ndarray) -> float:
    inter, union, area_g, area_p = _pairwise_impl(gt, pred)
    score = _aji_score(inter, union)
    c = u = 0
    used = set()
    for i in range(inter.shape[0]):
        j = int(np.argmax(score[i])) if inter.shape[1] else -1
        if j >= 0 and score[i, j] > 0:
            c += int(inter[i, j])
            u += int(union[i, j])
            used.add(j)
        else:
            u += int(area_g[i])
    u += sum(int(area_p[j]) for j in range(inter.shape[1]) if j not in used)
    return c / u if u else 0.0


def ref_aji_plus(gt: np.ndarray, pred: np.ndarray) -> float:
    inter, union, area_g, area_p = _pairwise_impl(gt, pred)
    score = _aji_score(inter, union)
    rows, cols = linear_sum_assignment(-score)
    keep = score[rows, cols] > 0
    rows, cols = rows[keep], cols[keep]
    c = int(inter[rows, cols].sum())
    u = int(union[rows, cols].sum()) + int(area_g.sum() - area_g[rows].sum()) + int(area_p.sum() - area_p[cols].sum())
    return c / u if u else 0.0


def ref_dice_1(gt: np.ndarray, pred: np.ndarray) -> float:
    g, p = gt > 0, pred > 0
    total = int(g.sum()) + int(p.sum())
    return 2 * int(np.count_nonzero(g & p)) / total if total else 0.0


def ref_dice_2(gt: np.ndarray, pred: np.ndarray) -> float:
    inter, _, area_g, area_p = _pairwise_impl(gt, pred)
    rows, cols = np.nonzero(inter)
    total = int((area_g[rows] + area_p[cols]).sum())
    return 2 * int(inter[rows, cols].sum()) / total if total else 0.0


def reference_all(gt: np.ndarray, pred: np.ndarray, variant: str = "field-style") -> dict[str, Any]:
    global _pairwise_impl
    _pairwise_impl = PAIRWISE[variant]
    g, p = ref_remap(gt), ref_remap(pred)
    out = ref_pq(g, p)
    out.update(aji=ref_aji(g, p), aji_plus=ref_aji_plus(g, p), dice_1=ref_dice_1(g, p), dice_2=ref_dice_2(g, p))
    return out


# --- timing --------------------------------------------------------------------------


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer maps and repeats")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    print(
        f"numpy {np.__version__}; medians. Reference paths (one function per metric, per-instance masks): "
        "field-style = full-image uint8 masks built up front (HoVerNet/CellViT structure); "
        "lean = boolean masks made on the fly."
    )
    configs = [(1000, 500), (1000, 500), (1000, 600), (256, 60), (256, 100), (256, 200)]
    if args.quick:
        configs = [(1000, 500), (256, 60), (256, 200)]
    all_identical = True
    for size, n in configs:
        gt, pred = make_pair(rng, size, n)
        ref_reps = 1 if size >= 1000 else (3 if args.quick else 5)
        evaluate_pair(gt, pred)  # warm-up
        t_ours, ours = _time(lambda gt=gt, pred=pred: evaluate_pair(gt, pred), 5 if args.quick else 21)
        parts = []
        for variant in PAIRWISE:
            t_ref, ref = _time(lambda gt=gt, pred=pred, v=variant: reference_all(gt, pred, v), ref_reps)
            diffs = [abs(float(ref[k]) - float(getattr(ours, k))) for k in KEYS]
            identical = all(ref[k] == getattr(ours, k) for k in KEYS)
            all_identical &= identical
            parts.append(
                f"{variant} reference {t_ref:6.3f} s -> {t_ref / t_ours:5.0f}x "
                f"(identical: {'yes' if identical else 'NO'}, max |diff| {max(diffs):.1e})"
            )
        print(
            f"{size}x{size}, {ours.n_true} GT / {ours.n_pred} pred: evaluate_pair {t_ours * 1e3:6.2f} ms; "
            + "; ".join(parts)
        )

    # 140 test-set-sized images: a mix of 256x256, 512x512 and 1000x1000 tiles.
    sizes = [(256, 60, 200)] * 70 + [(512, 120, 300)] * 50 + [(1000, 400, 600)] * 20
    if args.quick:
        sizes = sizes[::4]
    pairs = [make_pair(rng, s, int(rng.integers(lo, hi + 1))) for s, lo, hi in sizes]
    t0 = time.perf_counter()
    results = [evaluate_pair(g, p) for g, p in pairs]
    summary = aggregate(results)
    elapsed = time.perf_counter() - t0
    n_nuclei = sum(r.n_true for r in results)
    print(
        f"{len(pairs)} images (256^2 / 512^2 / 1000^2 mix, {n_nuclei} GT nuclei): scored and aggregated "
        f"in {elapsed:.2f} s ({elapsed / len(pairs) * 1e3:.1f} ms per image); mean PQ {summary['pq']:.4f}"
    )
    print("all outputs identical to the reference path:", "yes" if all_identical else "NO")
    return 0 if all_identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
