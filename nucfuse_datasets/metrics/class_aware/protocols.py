"""The three class-aware reductions of per-image :class:`ClassStats` (PanNuke, CoNIC, HoVer-Net).

Each reduction uses the official code's floating-point expressions in the official order, so
the scores equal the official ones (bit for bit on the oracle; see
``docs/class-aware-scoring.md`` for the one summation-order difference). Inputs are validated
by :func:`~nucfuse_datasets.metrics.reduce_class_stats`; these functions are private.
Written from the definitions; no code of the official repositories is copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nucfuse_datasets.metrics.class_aware.stats import ClassStats

__all__ = ["conic_scores", "hovernet_scores", "nanmean", "pannuke_scores"]

_EPS = 1.0e-6
_NAN = float("nan")


def nanmean(values: Sequence[float]) -> float:
    """``np.nanmean`` of a 1-D list (same sum, so same bits), NaN without a warning when all are NaN."""
    arr = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(arr)
    count = int(keep.sum())
    if count == 0:
        return _NAN
    return float(np.sum(np.where(keep, arr, 0.0)) / np.intp(count))


def _pq_pannuke(tp: int, fp: int, fn: int, sum_iou: float) -> float:
    """PanNuke-metrics ``get_fast_pq``: DQ without epsilon, SQ with ``+1e-6``."""
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = sum_iou / (tp + 1.0e-6)
    return dq * sq


def _pq_conic(tp: float, fp: float, fn: float, sum_iou: float) -> float:
    """CoNIC ``get_pq`` / ``compute_stats.py``: ``+1e-6`` in both DQ and SQ."""
    dq = tp / ((tp + 0.5 * fp + 0.5 * fn) + _EPS)
    sq = sum_iou / (tp + _EPS)
    return dq * sq


def pannuke_scores(stats: Sequence[ClassStats], tissues: Sequence[str] | None) -> dict[str, Any]:
    """PanNuke ``run.py``: per-image class PQ (NaN without GT of the class) -> images -> tissues."""
    n = stats[0].n_classes
    per_image: list[list[float]] = []
    mpq_img: list[float] = []
    bpq_img: list[float] = []
    for s in stats:
        pq = [_pq_pannuke(s.tp[k], s.fp[k], s.fn[k], s.sum_iou[k]) if s.tp[k] + s.fn[k] else _NAN for k in range(n)]
        per_image.append(pq)
        mpq_img.append(nanmean(pq))
        bpq_img.append(
            _pq_pannuke(s.binary_tp, s.binary_fp, s.binary_fn, s.binary_sum_iou) if s.binary_n_true else _NAN
        )
    per_class = {
        k + 1: {
            "pq": nanmean([pq[k] for pq in per_image]),
            "n_images": sum(1 for s in stats if s.tp[k] + s.fn[k]),
            "n_true": sum(s.tp[k] + s.fn[k] for s in stats),
        }
        for k in range(n)
    }
    per_tissue: dict[str, dict[str, Any]] = {}
    if tissues is None:
        mpq, bpq = nanmean(mpq_img), nanmean(bpq_img)
    else:
        for name in sorted(set(tissues)):  # PanNuke's 19 names are in this (sorted) order in run.py
            idx = [i for i, t in enumerate(tissues) if t == name]
            per_tissue[name] = {
                "mpq": nanmean([mpq_img[i] for i in idx]),
                "bpq": nanmean([bpq_img[i] for i in idx]),
                "n_images": len(idx),
            }
        mpq = nanmean([v["mpq"] for v in per_tissue.values()])
        bpq = nanmean([v["bpq"] for v in per_tissue.values()])
    return {"mpq": mpq, "bpq": bpq, "per_class": per_class, "per_tissue": per_tissue}


def conic_scores(stats: Sequence[ClassStats]) -> dict[str, Any]:
    """CoNIC ``compute_stats.py``: per-class counts summed over the set, then PQ+ per class, mean."""
    n = stats[0].n_classes
    info = np.array(
        [[[s.tp[k], s.fp[k], s.fn[k], s.sum_iou[k]] for k in range(n)] for s in stats], dtype=np.float64
    ).reshape(len(stats), n, 4)
    total = np.sum(info, axis=0)  # image by image, as compute_stats.py sums its array
    per_class: dict[int, dict[str, Any]] = {}
    values = []
    for k in range(n):
        tp, fp, fn, sum_iou = (float(v) for v in total[k])
        dq = tp / ((tp + 0.5 * fp + 0.5 * fn) + _EPS)
        sq = sum_iou / (tp + _EPS)
        values.append(dq * sq)
        per_class[k + 1] = {
            "pq+": dq * sq,
            "dq+": dq,
            "sq+": sq,
            "tp": int(tp),
            "fp": int(fp),
            "fn": int(fn),
            "sum_iou": sum_iou,
        }
    binary = [_pq_conic(s.binary_tp, s.binary_fp, s.binary_fn, s.binary_sum_iou) for s in stats]
    return {
        "mpq+": float(np.mean(np.array(values, dtype=np.float64))),
        "pq": float(np.mean(np.array(binary, dtype=np.float64))),
        "per_class": per_class,
    }


def _types(stats: Sequence[ClassStats], exhaustive: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated (paired true, paired pred, unpaired true, unpaired pred) types of all images.

    With ``exhaustive=False`` a real GT nucleus of class 0 plays HoVer-Net's type ``-1`` (GT whose
    type is not annotated); a phantom stays type 0.
    """
    pt: list[int] = []
    pp: list[int] = []
    ut: list[int] = []
    up: list[int] = []
    for s in stats:
        relabel = not exhaustive and not s.true_phantom
        for t, p in s.paired_types:
            pt.append(-1 if relabel and t == 0 else t)
            pp.append(p)
        ut.extend(-1 if relabel and t == 0 else t for t in s.unpaired_true_types)
        up.extend(s.unpaired_pred_types)
    return (
        np.array(pt, dtype=np.int64),
        np.array(pp, dtype=np.int64),
        np.array(ut, dtype=np.int64),
        np.array(up, dtype=np.int64),
    )


def _ratio(num: float, den: float) -> float:
    return num / den if den else _NAN


def hovernet_scores(
    stats: Sequence[ClassStats], type_ids: Sequence[int], weights: Sequence[float], exhaustive: bool
) -> dict[str, Any]:
    """HoVer-Net ``run_nuclei_type_stat``: detection F1, type accuracy and weighted per-type F1."""
    pt, pp, ut, up = _types(stats, exhaustive)
    tp_d, fp_d, fn_d = int(pt.size), int(up.size), int(ut.size)
    right = int(np.count_nonzero(pp == pt))
    wrong = int(np.count_nonzero(pp != pt))
    if not exhaustive:
        wrong -= int(np.count_nonzero(pt == -1))
    w0, w1, w2, w3 = weights
    per_class: dict[int, dict[str, Any]] = {}
    for k in type_ids:
        sel = (pt == k) | (pp == k)
        a, b = pt[sel], pp[sel]
        tp_dt = int(np.count_nonzero((a == k) & (b == k)))
        tn_dt = int(np.count_nonzero((a != k) & (b != k)))  # 0 after the selection, kept as in the formula
        fp_dt = int(np.count_nonzero((a != k) & (b == k)))
        fn_dt = int(np.count_nonzero((a == k) & (b != k)))
        if not exhaustive:
            fp_dt -= int(np.count_nonzero(a == -1))
        fp_k = int(np.count_nonzero(up == k))
        fn_k = int(np.count_nonzero(ut == k))
        num = 2 * (tp_dt + tn_dt)
        den = num + w0 * fp_dt + w1 * fn_dt + w2 * fp_k + w3 * fn_k
        per_class[int(k)] = {
            "f1": _ratio(num, den),
            "tp_dt": tp_dt,
            "fp_dt": fp_dt,
            "fn_dt": fn_dt,
            "fp_d": fp_k,
            "fn_d": fn_k,
        }
    return {
        "f1_d": _ratio(2 * tp_d, 2 * tp_d + fp_d + fn_d),
        "acc_type": _ratio(right, right + wrong),
        "tp_d": tp_d,
        "fp_d": fp_d,
        "fn_d": fn_d,
        "per_class": per_class,
    }
