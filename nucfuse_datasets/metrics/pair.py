"""Per-image metrics: :func:`evaluate_pair` and the single-metric functions.

Everything is computed from one sparse contingency table per pair (relabel -> bincount ->
all metrics), with the exact floating-point expressions of the reference code
(NucFuseRank / CellViT ``get_fast_pq``, HoVerNet ``get_fast_aji``, ``get_fast_aji_plus``,
``get_dice_1``, ``get_fast_dice_2``), so every value the reference returns as a number comes
out bit-identical. Written from the definitions in the project's metrics reference; no code is
copied from those projects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from nucfuse_datasets.metrics._assign import max_weight_pairs
from nucfuse_datasets.metrics._relabel import relabel
from nucfuse_datasets.metrics._table import Overlap, overlap, overlap_raw
from nucfuse_datasets.metrics._validate import (
    as_ignore_mask,
    as_label_map,
    check_choice,
    check_fraction,
    check_pair,
    check_threshold,
    check_width,
)
from nucfuse_datasets.metrics.nuceval import apply_boundary, apply_ignore
from nucfuse_datasets.metrics.result import PairResult, PanopticQuality

__all__ = [
    "MATCH_CHOICES",
    "aji",
    "aji_plus",
    "dice_1",
    "dice_2",
    "evaluate_pair",
    "panoptic_quality",
]

#: Accepted values of ``match``: ``"strict"`` (IoU > threshold) or ``"inclusive"`` (>=).
MATCH_CHOICES: tuple[str, ...] = ("strict", "inclusive")

_EPS = 1.0e-6


def _table(
    gt: Any,
    pred: Any,
    ignore: Any = None,
    ignore_fraction: float = 0.25,
    boundary_width: int = 0,
) -> tuple[Overlap, int, int]:
    g_arr = as_label_map(gt, "gt")
    p_arr = as_label_map(pred, "pred")
    check_pair(g_arr, p_arr)
    if ignore is None and boundary_width <= 0:
        fast = overlap_raw(g_arr, p_arr)
        if fast is not None:
            return fast, 0, 0
    g, p = relabel(g_arr), relabel(p_arr)
    n_t0, n_p0 = g.n, p.n
    if ignore is not None:
        g, p = apply_ignore(g, p, as_ignore_mask(ignore, g_arr.shape), ignore_fraction)
    if boundary_width > 0:
        g, p = apply_boundary(g, p, boundary_width)
    return overlap(g, p), n_t0 - g.n, n_p0 - p.n


def _div(num: float, den: float) -> float:
    """``num / den``, or 0.0 when the denominator is 0 (never NaN)."""
    return num / den if den else 0.0


def _match(ov: Overlap, match: str, thr: float) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Entries matched by PQ and their IoU, in ascending GT order."""
    total = ov.true_area[ov.rows] + ov.pred_area[ov.cols]
    iou = ov.inter / (total - ov.inter)
    unique = thr >= 0.5 if match == "strict" else thr > 0.5
    if unique:
        # Each instance has at most one partner with IoU > 0.5 (or >= t > 0.5): no search.
        hit = np.flatnonzero(iou > thr if match == "strict" else iou >= thr)
    else:
        # Matching is no longer unique: HoVerNet's maximum-total-IoU assignment, then the
        # threshold is applied to the assigned pairs.
        hit = max_weight_pairs(ov.rows, ov.cols, iou, ov.n_true, ov.n_pred)
        hit = hit[iou[hit] > thr] if match == "strict" else hit[iou[hit] >= thr]
    return hit, iou[hit]


def _aji_counts(ov: Overlap, union: NDArray[np.int64], score: NDArray[np.float64]) -> tuple[int, int]:
    """MoNuSeg AJI: best prediction per GT by inter/(union+1e-6), first (lowest id) on ties."""
    area_sum = int(ov.true_area.sum()) + int(ov.pred_area.sum())
    r = ov.rows
    if r.size == 0:
        return 0, area_sum
    starts = np.flatnonzero(np.concatenate(([True], r[1:] != r[:-1])))
    row_max = np.maximum.reduceat(score, starts)
    best = np.flatnonzero(score == np.repeat(row_max, np.diff(np.append(starts, r.size))))
    first = best[np.concatenate(([True], r[best][1:] != r[best][:-1]))]
    used_pred = np.unique(ov.cols[first])
    inter = int(ov.inter[first].sum())
    union_total = (
        int(union[first].sum()) + area_sum - int(ov.true_area[r[first]].sum()) - int(ov.pred_area[used_pred].sum())
    )
    return inter, union_total


def _aji_plus_counts(ov: Overlap, union: NDArray[np.int64], score: NDArray[np.float64]) -> tuple[int, int]:
    """AJI+: one-to-one pairing by a maximum-weight assignment on inter/(union+1e-6)."""
    area_sum = int(ov.true_area.sum()) + int(ov.pred_area.sum())
    hit = max_weight_pairs(ov.rows, ov.cols, score, ov.n_true, ov.n_pred)
    if hit.size == 0:
        return 0, area_sum
    inter = int(ov.inter[hit].sum())
    union_total = (
        int(union[hit].sum()) + area_sum - int(ov.true_area[ov.rows[hit]].sum()) - int(ov.pred_area[ov.cols[hit]].sum())
    )
    return inter, union_total


def evaluate_pair(
    gt: Any,
    pred: Any,
    *,
    match: str = "strict",
    iou_threshold: float = 0.5,
    ignore: Any = None,
    ignore_fraction: float = 0.25,
    boundary_width: int = 0,
    return_pairs: bool = False,
) -> PairResult:
    """Score one prediction against its ground truth: PQ/DQ/SQ, AJI, AJI+, Dice, P/R.

    Both maps are 2-D integer instance maps of the same shape; 0 is always background (present
    or not) and any non-negative ids are accepted (non-contiguous, huge, ``uint64``). Defaults
    reproduce NucFuseRank's per-image numbers bit for bit: strict ``IoU > 0.5`` matching, the
    ``+1e-6`` terms in DQ, SQ, precision and recall, MoNuSeg AJI, ascending-id tie-breaking.
    Values that the reference code cannot compute (it raises or returns NaN: empty maps,
    nothing overlapping) are 0.0 here; :func:`aggregate` decides how empty images count.

    Args:
        gt: ground-truth instance map (H, W), any integer dtype.
        pred: predicted instance map (H, W), any integer dtype.
        match: ``"strict"`` (a pair matches when IoU > ``iou_threshold``, the default) or
            ``"inclusive"`` (IoU >= threshold; stardist/cellpose convention).
        iou_threshold: matching threshold, ``[0, 1)`` for strict, ``(0, 1]`` for inclusive.
            Above 0.5 (or at 0.5 with strict) every instance has at most one candidate, so
            matching is unique. Otherwise (``< 0.5``, or ``0.5`` inclusive, where a 50/50 split
            gives two candidates) pairs come from a maximum-total-IoU one-to-one assignment
            (Hungarian, as HoVerNet does) and the assigned pairs that pass the threshold are
            matches.
        ignore: optional ambiguous-region mask (H, W), non-zero = ambiguous (NucEval). GT and
            predicted instances with more than ``ignore_fraction`` of their area inside it are
            removed; the mask's pixels are then background in both maps.
        ignore_fraction: removal fraction for ``ignore`` (default 0.25, strictly more than).
        boundary_width: width ``w`` in pixels of the boundary-uncertainty ring around each GT
            instance (dilation minus erosion with a ``(2w+1)`` ellipse) blanked in both maps
            before scoring (NucEval); 0 (default) disables it.
        return_pairs: also return the matched ``(gt_id, pred_id)`` pairs (original ids) and
            their IoUs.

    Returns:
        A :class:`PairResult`.

    Raises:
        MetricInputError: a map is not a 2-D integer array, has negative ids, or the shapes
            differ; the ignore mask has the wrong shape or type.
        ArgumentError: an option is outside its documented values.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import evaluate_pair
        >>> gt = np.zeros((20, 30), dtype=np.uint16)
        >>> gt[5:15, 2:8] = 1     # 60 px
        >>> gt[5:15, 8:10] = 2    # 20 px, touching
        >>> pred = (gt > 0).astype(np.int32)   # one prediction merges both
        >>> r = evaluate_pair(gt, pred)
        >>> r.tp, r.fp, r.fn, r.sum_iou
        (1, 0, 1, 0.75)
        >>> round(r.pq, 6), r.aji, r.aji_plus, r.dice_1, round(r.dice_2, 4)
        (0.499999, 0.5, 0.6, 1.0, 0.6667)
    """
    match = check_choice(match, "match", MATCH_CHOICES)
    thr = check_threshold(iou_threshold, match)
    frac = check_fraction(ignore_fraction)
    width = check_width(boundary_width)
    ov, n_t_removed, n_p_removed = _table(gt, pred, ignore, frac, width)

    hit, hit_iou = _match(ov, match, thr)
    tp = int(hit.size)
    fp = ov.n_pred - tp
    fn = ov.n_true - tp
    sum_iou = float(hit_iou.sum())
    dq = tp / (tp + 0.5 * fp + 0.5 * fn + _EPS)
    sq = sum_iou / (tp + _EPS)

    total = ov.true_area[ov.rows] + ov.pred_area[ov.cols]
    union = total - ov.inter
    score = ov.inter / (union + _EPS)
    aji_c, aji_u = _aji_counts(ov, union, score)
    ajip_c, ajip_u = _aji_plus_counts(ov, union, score)
    inter_sum = int(ov.inter.sum())
    fg_total = int(ov.true_area.sum()) + int(ov.pred_area.sum())
    pair_total = int(total.sum())

    pairs = pair_ious = None
    if return_pairs:
        pairs = tuple(zip(ov.true_ids[ov.rows[hit]].tolist(), ov.pred_ids[ov.cols[hit]].tolist(), strict=True))
        pair_ious = tuple(hit_iou.tolist())
    return PairResult(
        pq=float(dq * sq),
        dq=float(dq),
        sq=float(sq),
        tp=tp,
        fp=fp,
        fn=fn,
        sum_iou=sum_iou,
        aji=_div(aji_c, aji_u),
        aji_plus=_div(ajip_c, ajip_u),
        dice_1=_div(2 * inter_sum, fg_total),
        dice_2=_div(2 * inter_sum, pair_total),
        precision=tp / (tp + fp + _EPS),
        recall=tp / (tp + fn + _EPS),
        n_true=ov.n_true,
        n_pred=ov.n_pred,
        aji_inter=aji_c,
        aji_union=aji_u,
        aji_plus_inter=ajip_c,
        aji_plus_union=ajip_u,
        dice_1_inter=inter_sum,
        dice_1_total=fg_total,
        dice_2_inter=inter_sum,
        dice_2_total=pair_total,
        n_true_removed=n_t_removed,
        n_pred_removed=n_p_removed,
        pairs=pairs,
        pair_ious=pair_ious,
    )


def panoptic_quality(gt: Any, pred: Any, *, match: str = "strict", iou_threshold: float = 0.5) -> PanopticQuality:
    """Detection, segmentation and panoptic quality ``(dq, sq, pq)`` of one image.

    ``DQ = TP / (TP + FP/2 + FN/2 + 1e-6)``, ``SQ = ΣIoU / (TP + 1e-6)``, ``PQ = DQ · SQ``
    (NucFuseRank/CellViT). For the counts use :func:`evaluate_pair`.

    Args:
        gt: ground-truth instance map (H, W).
        pred: predicted instance map (H, W).
        match: ``"strict"`` (IoU > threshold) or ``"inclusive"`` (>=).
        iou_threshold: matching threshold (see :func:`evaluate_pair`).

    Returns:
        ``PanopticQuality(dq, sq, pq)``, a named tuple.

    Raises:
        MetricInputError: invalid maps.
        ArgumentError: invalid options.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import panoptic_quality
        >>> gt = np.array([[1, 1, 1, 1, 0, 0]])
        >>> pred = np.array([[5, 5, 0, 0, 0, 0]])        # IoU exactly 0.5
        >>> panoptic_quality(gt, pred).pq
        0.0
        >>> round(panoptic_quality(gt, pred, match="inclusive").pq, 6)
        0.499999
    """
    r = evaluate_pair(gt, pred, match=match, iou_threshold=iou_threshold)
    return PanopticQuality(r.dq, r.sq, r.pq)


def aji(gt: Any, pred: Any) -> float:
    """Aggregated Jaccard Index, MoNuSeg version (as HoVerNet/NucFuseRank ``get_fast_aji``).

    Each GT instance takes the prediction with the highest ``inter / (union + 1e-6)`` (lowest
    id on exact ties; a prediction may be taken by several GT instances).
    ``AJI = ΣC / (ΣU + Σ|unpaired G| + Σ|predictions never taken|)``; 0.0 if both maps are
    empty.

    Args:
        gt: ground-truth instance map (H, W).
        pred: predicted instance map (H, W).

    Returns:
        The AJI.

    Raises:
        MetricInputError: invalid maps.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import aji
        >>> gt = np.array([[1, 1, 2, 2]])
        >>> aji(gt, np.array([[3, 3, 3, 3]]))   # one prediction reused by both nuclei
        0.5
    """
    return evaluate_pair(gt, pred).aji


def aji_plus(gt: Any, pred: Any) -> float:
    """AJI+ (HoVerNet ``get_fast_aji_plus``): AJI with a one-to-one Hungarian pairing.

    Args:
        gt: ground-truth instance map (H, W).
        pred: predicted instance map (H, W).

    Returns:
        The AJI+; 0.0 if both maps are empty.

    Raises:
        MetricInputError: invalid maps.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import aji_plus
        >>> round(aji_plus(np.array([[1, 1, 2, 2]]), np.array([[3, 3, 3, 3]])), 4)
        0.3333
    """
    return evaluate_pair(gt, pred).aji_plus


def dice_1(gt: Any, pred: Any) -> float:
    """Binary foreground Dice ``2|FG_gt ∩ FG_pred| / (|FG_gt| + |FG_pred|)`` (HoVerNet's "Dice").

    Args:
        gt: ground-truth instance map (H, W).
        pred: predicted instance map (H, W).

    Returns:
        The Dice; 0.0 if both maps are empty.

    Raises:
        MetricInputError: invalid maps.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import dice_1
        >>> dice_1(np.array([[1, 1, 2, 2]]), np.array([[3, 3, 3, 3]]))   # ignores instances
        1.0
    """
    return evaluate_pair(gt, pred).dice_1


def dice_2(gt: Any, pred: Any) -> float:
    """Ensemble Dice over every overlapping pair (NucFuseRank's "Dice", HoVerNet ``get_fast_dice_2``).

    ``2 Σ|G_i ∩ P_j| / Σ(|G_i| + |P_j|)`` over all pairs with a non-empty intersection;
    instances that overlap nothing do not count; 0.0 when no pair overlaps.

    Args:
        gt: ground-truth instance map (H, W).
        pred: predicted instance map (H, W).

    Returns:
        The ensemble Dice.

    Raises:
        MetricInputError: invalid maps.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import dice_2
        >>> round(dice_2(np.array([[1, 1, 2, 2]]), np.array([[3, 3, 3, 3]])), 4)
        0.6667
    """
    return evaluate_pair(gt, pred).dice_2
