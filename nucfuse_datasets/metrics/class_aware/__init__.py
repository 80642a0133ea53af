"""Class-aware nuclei scores, equal to the official PanNuke, CoNIC and HoVer-Net codes.

* :func:`image_class_stats` reduces one image pair (instance maps + class lookups, the
  :class:`~nucfuse_datasets.schema.Sample` convention) to a small JSON-safe :class:`ClassStats`,
  from one sparse contingency table;
* :func:`reduce_class_stats` turns per-image stats into the scores of one protocol of
  :data:`CLASS_PROTOCOLS`: ``"pannuke"`` (mPQ, bPQ over tissues), ``"conic"`` (mPQ+, PQ) or
  ``"hovernet"`` (F1_d, type accuracy, per-type F1);
* :func:`class_scores` does both for a list of images.

Definitions, quirks of each official code and every divergence: ``docs/class-aware-scoring.md``.

Example:
    >>> import numpy as np
    >>> from nucfuse_datasets.metrics import class_scores
    >>> inst = np.array([[1, 1, 0, 2, 2]])
    >>> gt, pred = [(inst, np.array([0, 1, 2]))], [(inst, np.array([0, 1, 1]))]
    >>> round(class_scores(gt, pred, "pannuke")["mpq"], 4)
    0.3333
"""

from __future__ import annotations

from nucfuse_datasets.metrics.class_aware.image import image_class_stats
from nucfuse_datasets.metrics.class_aware.scores import (
    CLASS_PROTOCOLS,
    HOVERNET_WEIGHTS,
    class_scores,
    reduce_class_stats,
)
from nucfuse_datasets.metrics.class_aware.stats import ClassStats

__all__ = [
    "CLASS_PROTOCOLS",
    "HOVERNET_WEIGHTS",
    "ClassStats",
    "class_scores",
    "image_class_stats",
    "reduce_class_stats",
]
