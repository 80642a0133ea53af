""":class:`MetricPolicy`: every scoring choice in one JSON-serialisable record."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.metrics._validate import (
    check_choice,
    check_fraction,
    check_threshold,
    check_width,
)
from nucfuse_datasets.metrics.aggregate import EMPTY_CHOICES, MODE_CHOICES, aggregate
from nucfuse_datasets.metrics.pair import MATCH_CHOICES, evaluate_pair
from nucfuse_datasets.metrics.result import PairResult

__all__ = ["MetricPolicy"]


@dataclass(frozen=True)
class MetricPolicy:
    """How images are scored and aggregated, so that a report can store and replay it.

    The defaults are NucFuseRank's: strict IoU > 0.5, no ignore mask handling beyond the
    NucEval default fraction, no boundary zone, empty images count as 0, per-image mean.

    Attributes:
        match: ``"strict"`` (IoU > threshold) or ``"inclusive"`` (IoU >= threshold).
        iou_threshold: PQ matching threshold.
        ignore_fraction: an instance more than this fraction inside an ignore mask is removed.
        boundary_width: NucEval boundary-ring width in pixels (0 = off).
        empty: empty-image policy of :func:`aggregate` (``"zero"``, ``"skip"``, ``"nan"``).
        aggregation: :func:`aggregate` mode (``"mean"``, ``"pooled"``, ``"weighted"``).
        pooled_eps: ``eps`` of the pooled ratios (only with ``aggregation="pooled"``).

    Example:
        >>> import json
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import MetricPolicy
        >>> policy = MetricPolicy(empty="skip")
        >>> gt = np.array([[1, 1, 0, 2, 2]])
        >>> results = [policy.evaluate(gt, gt), policy.evaluate(0 * gt, 0 * gt)]
        >>> policy.aggregate(results)["n_skipped"]
        1
        >>> MetricPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
        True
    """

    match: str = "strict"
    iou_threshold: float = 0.5
    ignore_fraction: float = 0.25
    boundary_width: int = 0
    empty: str = "zero"
    aggregation: str = "mean"
    pooled_eps: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.match, "match", MATCH_CHOICES)
        object.__setattr__(self, "iou_threshold", check_threshold(self.iou_threshold, self.match))
        object.__setattr__(self, "ignore_fraction", check_fraction(self.ignore_fraction))
        object.__setattr__(self, "boundary_width", check_width(self.boundary_width))
        check_choice(self.empty, "empty", EMPTY_CHOICES)
        check_choice(self.aggregation, "aggregation", MODE_CHOICES)
        eps = self.pooled_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps >= 0):
            raise ArgumentError(f"pooled_eps must be a finite number >= 0; got {eps!r}.")
        if eps and self.aggregation != "pooled":
            raise ArgumentError("pooled_eps only applies to aggregation='pooled'.")
        object.__setattr__(self, "pooled_eps", float(eps))

    def evaluate(self, gt: Any, pred: Any, *, ignore: Any = None, return_pairs: bool = False) -> PairResult:
        """:func:`evaluate_pair` with this policy's options.

        Args:
            gt: ground-truth instance map.
            pred: predicted instance map.
            ignore: optional ambiguous-region mask for this image.
            return_pairs: also return the matched pairs.

        Returns:
            The image's :class:`PairResult`.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import MetricPolicy
            >>> MetricPolicy(match="inclusive").evaluate(np.array([[1, 1]]), np.array([[1, 0]])).tp
            1
        """
        return evaluate_pair(
            gt,
            pred,
            match=self.match,
            iou_threshold=self.iou_threshold,
            ignore=ignore,
            ignore_fraction=self.ignore_fraction,
            boundary_width=self.boundary_width,
            return_pairs=return_pairs,
        )

    def aggregate(self, results: Sequence[PairResult]) -> dict[str, float]:
        """:func:`aggregate` with this policy's mode, empty-image rule and epsilon.

        Args:
            results: per-image results.

        Returns:
            The aggregate dict.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import MetricPolicy
            >>> p = MetricPolicy(aggregation="pooled")
            >>> p.aggregate([p.evaluate(np.array([[1, 1]]), np.array([[1, 1]]))])["pq"]
            1.0
        """
        return aggregate(results, mode=self.aggregation, empty=self.empty, eps=self.pooled_eps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of the fields.

        Example:
            >>> from nucfuse_datasets.metrics import MetricPolicy
            >>> MetricPolicy().to_dict()["match"]
            'strict'
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricPolicy:
        """Rebuild a policy from :meth:`to_dict` output; missing keys take their defaults.

        Args:
            data: the dict.

        Returns:
            The policy.

        Raises:
            ArgumentError: unknown keys or invalid values.

        Example:
            >>> from nucfuse_datasets.metrics import MetricPolicy
            >>> MetricPolicy.from_dict({"empty": "skip"}).empty
            'skip'
        """
        if not isinstance(data, dict):
            raise ArgumentError(f"MetricPolicy.from_dict needs a dict; got {type(data).__name__}.")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ArgumentError(f"MetricPolicy.from_dict: unknown key(s) {unknown}.")
        return cls(**data)
