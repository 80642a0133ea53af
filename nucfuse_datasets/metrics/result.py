"""Result types of the metrics: :class:`PairResult` and :class:`PanopticQuality`."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from nucfuse_datasets.errors import ArgumentError

__all__ = ["METRIC_KEYS", "PairResult", "PanopticQuality"]

#: The per-image metric values, in report order.
METRIC_KEYS: tuple[str, ...] = (
    "pq",
    "dq",
    "sq",
    "aji",
    "aji_plus",
    "dice_1",
    "dice_2",
    "precision",
    "recall",
)


class PanopticQuality(NamedTuple):
    """``(dq, sq, pq)`` of one image, in HoVerNet's ``get_fast_pq`` order.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import panoptic_quality
        >>> gt = np.array([[1, 1, 0, 2, 2]])
        >>> dq, sq, pq = panoptic_quality(gt, gt)
        >>> round(pq, 6)
        0.999999
    """

    dq: float
    sq: float
    pq: float


_INT_FIELDS = (
    "tp",
    "fp",
    "fn",
    "n_true",
    "n_pred",
    "aji_inter",
    "aji_union",
    "aji_plus_inter",
    "aji_plus_union",
    "dice_1_inter",
    "dice_1_total",
    "dice_2_inter",
    "dice_2_total",
    "n_true_removed",
    "n_pred_removed",
)
_FLOAT_FIELDS = (*METRIC_KEYS, "sum_iou")


@dataclass(frozen=True)
class PairResult:
    """Every metric of one (ground truth, prediction) pair, plus the counts behind them.

    All values are finite Python ``float``/``int``; nothing is NaN. Where a ratio has a zero
    denominator (e.g. AJI, dice_1 or dice_2 when nothing overlaps or both maps are empty) the
    value is 0.0, which is what NucFuseRank reports for such images. How empty images enter a
    dataset score is decided by :func:`~nucfuse_datasets.metrics.aggregate` (``empty=``).

    The integer count fields let any aggregation be recomputed exactly:
    ``aji = aji_inter / aji_union``, ``aji_plus = aji_plus_inter / aji_plus_union``,
    ``dice_1 = 2 * dice_1_inter / dice_1_total`` (binary foreground Dice),
    ``dice_2 = 2 * dice_2_inter / dice_2_total`` (ensemble Dice over every overlapping pair),
    ``dq = tp / (tp + fp/2 + fn/2 + 1e-6)``, ``sq = sum_iou / (tp + 1e-6)``, ``pq = dq * sq``,
    ``precision = tp / (tp + fp + 1e-6)``, ``recall = tp / (tp + fn + 1e-6)``.

    Attributes:
        pq: panoptic quality ``dq * sq``.
        dq: detection quality (F1 of the matching, with NucFuseRank's ``+1e-6``).
        sq: segmentation quality (mean IoU of the matched pairs, ``+1e-6``).
        tp: matched pairs.
        fp: unmatched predicted instances.
        fn: unmatched GT instances.
        sum_iou: sum of the matched pairs' IoU.
        aji: Aggregated Jaccard Index (MoNuSeg; a prediction may serve several GT instances).
        aji_plus: AJI+ (one-to-one Hungarian pairing).
        dice_1: binary foreground Dice.
        dice_2: ensemble Dice over all overlapping (GT, prediction) pairs (NucFuseRank's "Dice").
        precision: ``tp / (tp + fp + 1e-6)``.
        recall: ``tp / (tp + fn + 1e-6)``.
        n_true: GT instances scored (after ignore/boundary removal).
        n_pred: predicted instances scored (after ignore/boundary removal).
        aji_inter: AJI numerator C (pixels).
        aji_union: AJI denominator U (pixels).
        aji_plus_inter: AJI+ numerator (pixels).
        aji_plus_union: AJI+ denominator (pixels).
        dice_1_inter: ``|FG_gt ∩ FG_pred|`` (pixels).
        dice_1_total: ``|FG_gt| + |FG_pred|`` (pixels).
        dice_2_inter: sum of the intersections of all overlapping pairs (pixels).
        dice_2_total: sum of ``|G_i| + |P_j|`` over all overlapping pairs (pixels).
        n_true_removed: GT instances dropped by the ignore mask or the boundary zone.
        n_pred_removed: predicted instances dropped by the ignore mask or the boundary zone.
        pairs: matched ``(gt_id, pred_id)`` in the caller's original ids, by ascending GT id;
            ``None`` unless requested with ``return_pairs=True``.
        pair_ious: IoU of each pair in ``pairs``; ``None`` unless requested.

    Example:
        >>> import json
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import PairResult, evaluate_pair
        >>> gt = np.array([[1, 1, 0, 2, 2, 2]])
        >>> pred = np.array([[7, 7, 0, 0, 9, 9]])
        >>> r = evaluate_pair(gt, pred, return_pairs=True)
        >>> r.tp, r.fp, r.fn, r.pairs
        (2, 0, 0, ((1, 7), (2, 9)))
        >>> PairResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
        True
    """

    pq: float
    dq: float
    sq: float
    tp: int
    fp: int
    fn: int
    sum_iou: float
    aji: float
    aji_plus: float
    dice_1: float
    dice_2: float
    precision: float
    recall: float
    n_true: int
    n_pred: int
    aji_inter: int
    aji_union: int
    aji_plus_inter: int
    aji_plus_union: int
    dice_1_inter: int
    dice_1_total: int
    dice_2_inter: int
    dice_2_total: int
    n_true_removed: int = 0
    n_pred_removed: int = 0
    pairs: tuple[tuple[int, int], ...] | None = None
    pair_ious: tuple[float, ...] | None = None

    @property
    def empty(self) -> bool:
        """True when the ground truth has no instance (``n_true == 0``).

        This is the image that ``aggregate(..., empty="skip")`` leaves out (PanNuke/CellViT
        skip images whose GT is empty, whatever the prediction). See also :attr:`both_empty`.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import evaluate_pair
            >>> r = evaluate_pair(np.zeros((2, 2), int), np.eye(2, dtype=int))
            >>> r.empty, r.both_empty, r.fp
            (True, False, 1)
        """
        return self.n_true == 0

    @property
    def both_empty(self) -> bool:
        """True when neither map has an instance.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import evaluate_pair
            >>> evaluate_pair(np.zeros((2, 2), int), np.zeros((2, 2), int)).both_empty
            True
        """
        return self.n_true == 0 and self.n_pred == 0

    def metrics(self) -> dict[str, float]:
        """The nine metric values (:data:`METRIC_KEYS`) as a dict.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import evaluate_pair
            >>> sorted(evaluate_pair(np.zeros((2, 2), int), np.zeros((2, 2), int)).metrics().values())
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        """
        return {key: getattr(self, key) for key in METRIC_KEYS}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (``pairs`` as a list of ``[gt, pred]``).

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import evaluate_pair
            >>> d = evaluate_pair(np.array([[0, 3]]), np.array([[0, 3]])).to_dict()
            >>> d["tp"], d["dice_2"], d["pairs"]
            (1, 1.0, None)
        """
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.pairs is not None:
            out["pairs"] = [[int(g), int(p)] for g, p in self.pairs]
        if self.pair_ious is not None:
            out["pair_ious"] = [float(v) for v in self.pair_ious]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. after a JSON round trip).

        Args:
            data: the dict; the optional keys ``n_true_removed``, ``n_pred_removed``,
                ``pairs`` and ``pair_ious`` may be missing.

        Returns:
            The equal :class:`PairResult`.

        Raises:
            ArgumentError: a required key is missing, a key is unknown, or a value has the
                wrong type.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import PairResult, evaluate_pair
            >>> r = evaluate_pair(np.array([[1, 1, 0]]), np.array([[0, 2, 2]]))
            >>> PairResult.from_dict(r.to_dict()) == r
            True
        """
        if not isinstance(data, dict):
            raise ArgumentError(f"PairResult.from_dict needs a dict; got {type(data).__name__}.")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ArgumentError(f"PairResult.from_dict: unknown key(s) {unknown}.")
        optional = {"n_true_removed", "n_pred_removed", "pairs", "pair_ious"}
        missing = sorted(names - optional - set(data))
        if missing:
            raise ArgumentError(f"PairResult.from_dict: missing key(s) {missing}.")
        kwargs: dict[str, Any] = {}
        for key in _INT_FIELDS:
            if key in data:
                kwargs[key] = _to_int(data[key], key)
        for key in _FLOAT_FIELDS:
            kwargs[key] = _to_float(data[key], key)
        pairs = data.get("pairs")
        if pairs is not None:
            try:
                kwargs["pairs"] = tuple((_to_int(g, "pairs"), _to_int(p, "pairs")) for g, p in pairs)
            except (TypeError, ValueError):
                raise ArgumentError("PairResult.from_dict: pairs must be a list of [gt_id, pred_id].") from None
        ious = data.get("pair_ious")
        if ious is not None:
            if not isinstance(ious, (list, tuple)):
                raise ArgumentError("PairResult.from_dict: pair_ious must be a list of floats.")
            kwargs["pair_ious"] = tuple(_to_float(v, "pair_ious") for v in ious)
        return cls(**kwargs)


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise ArgumentError(f"PairResult.from_dict: {key} must be an integer; got {value!r}.")


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(f"PairResult.from_dict: {key} must be a number; got {value!r}.")
    out = float(value)
    if not math.isfinite(out):
        raise ArgumentError(f"PairResult.from_dict: {key} must be finite; got {value!r}.")
    return out
