"""Nuclei instance-segmentation metrics: PQ/DQ/SQ, AJI, AJI+, Dice, precision and recall; class-aware scores.

Faithful to the numbers of the NucFuseRank benchmark (Torbati et al. 2026), bit for bit on
every case where the reference code returns a number, but robust where it breaks: empty
images, maps without background, huge or non-contiguous ids, any integer dtype. One sparse
contingency table per image pair makes it hundreds of times faster than the per-instance
mask loops of HoVerNet/CellViT. See ``docs/metrics.md`` for definitions and policies.
Class-aware scores (PanNuke mPQ/bPQ, CoNIC mPQ+, HoVer-Net type F1) are :func:`class_scores`
and its parts (``docs/class-aware-scoring.md``).

Example:
    >>> import numpy as np
    >>> from nucfuse_datasets.metrics import aggregate, evaluate_pair
    >>> gt = np.array([[1, 1, 0, 2, 2, 2]], dtype=np.uint16)
    >>> pred = np.array([[4, 4, 0, 0, 6, 6]], dtype=np.int64)
    >>> r = evaluate_pair(gt, pred)
    >>> r.tp, round(r.pq, 4), r.aji, round(r.dice_2, 4)
    (2, 0.8333, 0.8, 0.8889)
    >>> round(aggregate([r])["pq"], 4)
    0.8333
"""

from __future__ import annotations

from nucfuse_datasets.metrics._relabel import remap_label
from nucfuse_datasets.metrics.aggregate import (
    AGGREGATE_KEYS,
    EMPTY_CHOICES,
    MODE_CHOICES,
    aggregate,
    per_image_values,
)
from nucfuse_datasets.metrics.class_aware import (
    CLASS_PROTOCOLS,
    HOVERNET_WEIGHTS,
    ClassStats,
    class_scores,
    image_class_stats,
    reduce_class_stats,
)
from nucfuse_datasets.metrics.pair import (
    MATCH_CHOICES,
    aji,
    aji_plus,
    dice_1,
    dice_2,
    evaluate_pair,
    panoptic_quality,
)
from nucfuse_datasets.metrics.policy import MetricPolicy
from nucfuse_datasets.metrics.result import METRIC_KEYS, PairResult, PanopticQuality

__all__ = [
    "AGGREGATE_KEYS",
    "CLASS_PROTOCOLS",
    "EMPTY_CHOICES",
    "HOVERNET_WEIGHTS",
    "MATCH_CHOICES",
    "METRIC_KEYS",
    "MODE_CHOICES",
    "ClassStats",
    "MetricPolicy",
    "PairResult",
    "PanopticQuality",
    "aggregate",
    "aji",
    "aji_plus",
    "class_scores",
    "dice_1",
    "dice_2",
    "evaluate_pair",
    "image_class_stats",
    "panoptic_quality",
    "per_image_values",
    "reduce_class_stats",
    "remap_label",
]
