"""Dataset-level aggregation of per-image :class:`PairResult` values.

Three modes, one empty-image policy each (see :func:`aggregate`):

* ``"mean"`` (the paper's): plain per-image mean, with NucFuseRank's rule that AJI and
  dice_2 count as 0 on an image whose DQ is 0;
* ``"pooled"``: the counts (TP, FP, FN, ΣIoU, AJI's C and U, Dice sums) are summed over the
  images first, then the ratios are taken once (stardist, torchmetrics, CoNIC mPQ+, MONAI);
* ``"weighted"``: the per-image values of ``"mean"`` weighted by each image's GT nuclei count
  (NucEval's "normalized" averaging).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.metrics._validate import check_choice
from nucfuse_datasets.metrics.result import METRIC_KEYS, PairResult

__all__ = ["AGGREGATE_KEYS", "EMPTY_CHOICES", "MODE_CHOICES", "aggregate", "per_image_values"]

#: Accepted ``mode`` values.
MODE_CHOICES: tuple[str, ...] = ("mean", "pooled", "weighted")
#: Accepted ``empty`` values.
EMPTY_CHOICES: tuple[str, ...] = ("zero", "skip", "nan")
#: Keys of every :func:`aggregate` result (all modes), in order.
AGGREGATE_KEYS: tuple[str, ...] = (
    *METRIC_KEYS,
    "n_images",
    "n_skipped",
    "n_true",
    "n_pred",
    "tp",
    "fp",
    "fn",
    "sum_iou",
)


def per_image_values(result: PairResult) -> dict[str, float]:
    """The per-image values NucFuseRank reports for one image (used by ``"mean"``/``"weighted"``).

    Identical to :meth:`PairResult.metrics`, except that ``aji`` and ``dice_2`` are 0.0 when
    ``dq == 0`` (``EvaluateAll.py`` only computes them when DQ is non-zero). ``aji_plus`` and
    ``dice_1`` (not reported by NucFuseRank) are left as they are.

    Args:
        result: one image's result.

    Returns:
        Dict keyed by :data:`~nucfuse_datasets.metrics.result.METRIC_KEYS`.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import evaluate_pair
        >>> from nucfuse_datasets.metrics.aggregate import per_image_values
        >>> r = evaluate_pair(np.array([[1, 1, 2, 2]]), np.array([[3, 3, 3, 3]]))  # merge
        >>> r.dq, r.aji, per_image_values(r)["aji"]
        (0.0, 0.5, 0.0)
    """
    values = result.metrics()
    if result.dq == 0:
        values["aji"] = 0.0
        values["dice_2"] = 0.0
    return values


def _pooled(results: Sequence[PairResult], eps: float) -> dict[str, float]:
    tp = sum(r.tp for r in results)
    fp = sum(r.fp for r in results)
    fn = sum(r.fn for r in results)
    sum_iou = 0.0
    for r in results:
        sum_iou += r.sum_iou

    def div(num: float, den: float) -> float:
        return num / den if den else 0.0

    dq = div(tp, tp + 0.5 * fp + 0.5 * fn + eps)
    sq = div(sum_iou, tp + eps)
    return {
        "pq": dq * sq,
        "dq": dq,
        "sq": sq,
        "aji": div(sum(r.aji_inter for r in results), sum(r.aji_union for r in results)),
        "aji_plus": div(sum(r.aji_plus_inter for r in results), sum(r.aji_plus_union for r in results)),
        "dice_1": div(2 * sum(r.dice_1_inter for r in results), sum(r.dice_1_total for r in results)),
        "dice_2": div(2 * sum(r.dice_2_inter for r in results), sum(r.dice_2_total for r in results)),
        "precision": div(tp, tp + fp + eps),
        "recall": div(tp, tp + fn + eps),
    }


def _per_image(results: Sequence[PairResult], weighted: bool) -> dict[str, float]:
    rows = [per_image_values(r) for r in results]
    out: dict[str, float] = {}
    if weighted:
        weights = np.array([r.n_true for r in results], dtype=np.float64)
        total = float(weights.sum())
        for key in METRIC_KEYS:
            vals = np.array([row[key] for row in rows], dtype=np.float64)
            out[key] = float(np.dot(weights, vals) / total) if total else 0.0
    else:
        for key in METRIC_KEYS:
            out[key] = float(np.mean(np.array([row[key] for row in rows], dtype=np.float64)))
    return out


def aggregate(
    results: Sequence[PairResult],
    *,
    mode: str = "mean",
    empty: str = "zero",
    eps: float = 0.0,
) -> dict[str, float]:
    """Aggregate per-image results into dataset-level scores.

    Modes (every mode returns the keys :data:`AGGREGATE_KEYS`: the nine metrics ``pq, dq, sq,
    aji, aji_plus, dice_1, dice_2, precision, recall``, then ``n_images`` (images included),
    ``n_skipped``, and the summed ``n_true, n_pred, tp, fp, fn, sum_iou`` of the included
    images):

    * ``"mean"`` (default; the NucFuseRank paper's): ``np.mean`` of the per-image values, with
      AJI = dice_2 = 0 on images whose DQ is 0 (see :func:`per_image_values`). Per-image means
      are not multiplicative: mean PQ != mean DQ x mean SQ.
    * ``"pooled"``: dataset-level ratios of summed counts: ``DQ = TP / (TP + FP/2 + FN/2 +
      eps)``, ``SQ = ΣIoU / (TP + eps)``, ``PQ = DQ · SQ`` (so ``PQ = ΣIoU / (TP + FP/2 + FN/2)``
      with ``eps=0``), ``precision = TP / (TP + FP + eps)``, ``recall = TP / (TP + FN + eps)``,
      ``AJI = ΣC / ΣU``, ``AJI+`` likewise, ``dice_1``/``dice_2`` from summed intersections and
      totals. ``eps=1e-6`` gives CoNIC's pooled form; a zero denominator gives 0.0.
    * ``"weighted"``: the per-image values of ``"mean"`` weighted by ``n_true`` (GT nuclei),
      NucEval's normalised averaging; 0.0 if no included image has a GT nucleus.

    Empty images (GT without instances, :attr:`PairResult.empty`):

    * ``"zero"`` (NucFuseRank, CoNIC; default): included with their values (every metric 0 for
      an image without any true positive, including both-empty images).
    * ``"skip"`` (PanNuke, CellViT inference): left out; ``n_skipped`` counts them. If every
      image is skipped the metrics are NaN (there is nothing to average).
    * ``"nan"``: an empty image's metrics are undefined, so every metric is NaN as soon as one
      is present (what a plain mean over per-image NaN gives); use it to make empties loud.

    Args:
        results: per-image results, e.g. from :func:`evaluate_pair`.
        mode: ``"mean"``, ``"pooled"`` or ``"weighted"``.
        empty: ``"zero"``, ``"skip"`` or ``"nan"``.
        eps: epsilon of the pooled ratios (``"pooled"`` only; 0.0 or CoNIC's 1e-6).

    Returns:
        Dict keyed by :data:`AGGREGATE_KEYS`; counts are ``int``, metrics ``float``.

    Raises:
        ArgumentError: unknown mode/empty, ``eps`` with a mode other than ``"pooled"``, an
            empty ``results`` sequence, or an item that is not a :class:`PairResult`.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import aggregate, evaluate_pair
        >>> gt = np.array([[1, 1, 0, 2, 2]])
        >>> good = evaluate_pair(gt, gt)
        >>> blank = evaluate_pair(np.zeros((1, 5), int), np.zeros((1, 5), int))
        >>> round(aggregate([good, blank])["pq"], 4)
        0.5
        >>> round(aggregate([good, blank], empty="skip")["pq"], 6)
        0.999999
        >>> aggregate([good, blank], mode="pooled")["pq"]
        1.0
    """
    mode = check_choice(mode, "mode", MODE_CHOICES)
    empty = check_choice(empty, "empty", EMPTY_CHOICES)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ArgumentError(f"eps must be a finite number >= 0; got {eps!r}.")
    if eps and mode != "pooled":
        raise ArgumentError(f"eps only applies to mode='pooled'; got eps={eps!r} with mode={mode!r}.")
    items = list(results)
    if not items:
        raise ArgumentError("aggregate needs at least one PairResult; got an empty sequence.")
    for item in items:
        if not isinstance(item, PairResult):
            raise ArgumentError(
                f"aggregate needs PairResult items; got {type(item).__name__} "
                "(use PairResult.from_dict to load stored results)."
            )
    n_empty = sum(r.empty for r in items)
    included = [r for r in items if not r.empty] if empty == "skip" else items

    metrics: dict[str, float]
    if not included or (empty == "nan" and n_empty):
        metrics = dict.fromkeys(METRIC_KEYS, math.nan)
    elif mode == "pooled":
        metrics = _pooled(included, float(eps))
    else:
        metrics = _per_image(included, weighted=mode == "weighted")

    sum_iou = 0.0
    for r in included:
        sum_iou += r.sum_iou
    out: dict[str, Any] = dict(metrics)
    out.update(
        n_images=len(included),
        n_skipped=len(items) - len(included),
        n_true=sum(r.n_true for r in included),
        n_pred=sum(r.n_pred for r in included),
        tp=sum(r.tp for r in included),
        fp=sum(r.fp for r in included),
        fn=sum(r.fn for r in included),
        sum_iou=sum_iou,
    )
    return out
