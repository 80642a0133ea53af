"""A slow, independent re-implementation of the three class-aware protocols, for the tests.

Written from the definitions (PanNuke-metrics ``run.py``, CoNIC ``compute_stats.py``, HoVer-Net
``run_nuclei_type_stat``), not from ``nucfuse_datasets``: one boolean mask per instance, every
pair's IoU from the masks, per-class maps built explicitly, centroids from ``np.nonzero`` and the
centroid assignment by brute force over all assignments (so only for a handful of nuclei per
image). Nothing here imports the code under test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

Image = tuple[np.ndarray, np.ndarray]  # (instances, classes lookup)


def _ids(inst: np.ndarray, classes: np.ndarray, k: int | None) -> list[int]:
    """Instance ids present in ``inst``; only those of class ``k`` unless ``k`` is None."""
    ids = [int(v) for v in np.unique(inst) if v != 0]
    return ids if k is None else [i for i in ids if int(classes[i]) == k]


def match(gt: np.ndarray, pred: np.ndarray, gt_ids: list[int], pred_ids: list[int]) -> tuple[int, int, int, float]:
    """(tp, fp, fn, sum of IoU) of the pairs with IoU > 0.5 among the listed instances."""
    tp, ious = 0, []
    for g in gt_ids:
        gm = gt == g
        for p in pred_ids:
            pm = pred == p
            inter = int(np.logical_and(gm, pm).sum())
            if inter and inter / (int(gm.sum()) + int(pm.sum()) - inter) > 0.5:
                tp += 1
                ious.append(inter / (int(gm.sum()) + int(pm.sum()) - inter))
    return tp, len(pred_ids) - tp, len(gt_ids) - tp, math.fsum(ious)


def per_image(gt: Image, pred: Image, n_classes: int) -> dict[str, list[tuple[int, int, int, float]] | tuple]:
    """Per class 1..n (tp, fp, fn, sum_iou), and the binary one (all nuclei, class 0 included)."""
    (g, gc), (p, pc) = gt, pred
    classes = [match(g, p, _ids(g, gc, k), _ids(p, pc, k)) for k in range(1, n_classes + 1)]
    return {"classes": classes, "binary": match(g, p, _ids(g, gc, None), _ids(p, pc, None))}


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else math.nan


def pannuke(gt: list[Image], pred: list[Image], n_classes: int, tissues: list[str] | None) -> dict:
    """mPQ and bPQ: per image and class, PQ without DQ epsilon (NaN without GT); images -> tissues."""

    def pq(tp: int, fp: int, fn: int, s: float) -> float:
        return (tp / (tp + fp / 2 + fn / 2)) * (s / (tp + 1e-6))

    rows, mpq, bpq = [], [], []
    for g, p in zip(gt, pred, strict=True):
        st = per_image(g, p, n_classes)
        row = [pq(*c) if c[0] + c[2] else math.nan for c in st["classes"]]
        rows.append(row)
        mpq.append(_nanmean(row))
        b = st["binary"]
        bpq.append(pq(*b) if b[0] + b[2] else math.nan)
    groups = {"": list(range(len(gt)))} if tissues is None else {}
    for i, t in enumerate(tissues or []):
        groups.setdefault(t, []).append(i)
    return {
        "mpq": _nanmean([_nanmean([mpq[i] for i in idx]) for idx in groups.values()]),
        "bpq": _nanmean([_nanmean([bpq[i] for i in idx]) for idx in groups.values()]),
        "per_class": [_nanmean([r[k] for r in rows]) for k in range(n_classes)],
    }


def conic(gt: list[Image], pred: list[Image], n_classes: int) -> dict:
    """mPQ+ (counts pooled over the set per class, then the mean over classes) and mean binary PQ."""
    totals = [[0, 0, 0, 0.0] for _ in range(n_classes)]
    binary = []
    for g, p in zip(gt, pred, strict=True):
        st = per_image(g, p, n_classes)
        for k, c in enumerate(st["classes"]):
            totals[k] = [a + b for a, b in zip(totals[k], c, strict=True)]
        tp, fp, fn, s = st["binary"]
        binary.append(tp / (tp + fp / 2 + fn / 2 + 1e-6) * (s / (tp + 1e-6)))
    per_class = [tp / (tp + fp / 2 + fn / 2 + 1e-6) * (s / (tp + 1e-6)) for tp, fp, fn, s in totals]
    return {"mpq+": sum(per_class) / n_classes, "pq": sum(binary) / len(binary), "per_class": per_class}


def centroids(inst: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(x, y) centres of mass in ascending id order as float32, and types; phantom (0, 0) type 0 if none."""
    ids = _ids(inst, classes, None)
    if not ids:
        return np.zeros((1, 2), np.float32), [0]
    pts = []
    for i in ids:
        ys, xs = np.nonzero(inst == i)
        pts.append((xs.mean(), ys.mean()))
    return np.array(pts, np.float64).astype(np.float32), [int(classes[i]) for i in ids]


def brute_assignment(dist: np.ndarray) -> list[tuple[int, int]]:
    """The complete assignment (min(nA, nB) pairs) of least total distance, by trying all of them."""
    n_a, n_b = dist.shape
    best, best_pairs = math.inf, []
    if n_a <= n_b:
        for perm in itertools.permutations(range(n_b), n_a):
            pairs = list(enumerate(perm))
            cost = sum(dist[a, b] for a, b in pairs)
            if cost < best - 1e-9:
                best, best_pairs = cost, pairs
    else:
        for perm in itertools.permutations(range(n_a), n_b):
            pairs = [(a, b) for b, a in enumerate(perm)]
            cost = sum(dist[a, b] for a, b in pairs)
            if cost < best - 1e-9:
                best, best_pairs = cost, pairs
    return best_pairs


def hovernet_pairs(gt: Image, pred: Image, radius: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """(paired (true type, pred type), unpaired true types, unpaired pred types) of one image."""
    tc, tt = centroids(*gt)
    pc, pt = centroids(*pred)
    t64, p64 = tc.astype(np.float64), pc.astype(np.float64)
    dist = np.sqrt(((t64[:, None, :] - p64[None, :, :]) ** 2).sum(-1))
    kept = [(a, b) for a, b in brute_assignment(dist) if dist[a, b] <= radius]
    used_a, used_b = {a for a, _ in kept}, {b for _, b in kept}
    return (
        [(tt[a], pt[b]) for a, b in kept],
        [tt[a] for a in range(len(tt)) if a not in used_a],
        [pt[b] for b in range(len(pt)) if b not in used_b],
    )


def hovernet(
    gt: list[Image],
    pred: list[Image],
    type_ids: list[int],
    radius: float = 12.0,
    weights: tuple[float, float, float, float] = (2, 2, 1, 1),
) -> dict:
    """f1_d, acc_type and per-type F1 over the pooled centroid pairs (GT types exhaustive)."""
    paired, un_t, un_p = [], [], []
    for g, p in zip(gt, pred, strict=True):
        a, b, c = hovernet_pairs(g, p, radius)
        paired += a
        un_t += b
        un_p += c
    right = sum(1 for t, p in paired if t == p)
    f1 = {}
    for k in type_ids:
        tp = sum(1 for t, p in paired if t == k and p == k)
        fp = sum(1 for t, p in paired if t != k and p == k)
        fn = sum(1 for t, p in paired if t == k and p != k)
        den = 2 * tp + weights[0] * fp + weights[1] * fn + weights[2] * un_p.count(k) + weights[3] * un_t.count(k)
        f1[k] = 2 * tp / den if den else math.nan
    return {
        "f1_d": 2 * len(paired) / (2 * len(paired) + len(un_p) + len(un_t)),
        "acc_type": right / len(paired) if paired else math.nan,
        "per_class": f1,
        "paired": paired,
        "unpaired_true": un_t,
        "unpaired_pred": un_p,
    }
