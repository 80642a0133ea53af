"""Top-k fusion (the paper's Experiment 2): observed scores against the expected curve (Figures 5–7).

The paper (§4.2): "the expected value was calculated using the maximum PQ values from the results of Experiment 1
for the corresponding k datasets"; it represents "the maximum performance gain achievable by adding a new
dataset". Two readings are selectable (``expected=``):

* ``"per_subset"`` (default, the paper's): for each NucFuse-test subset take the best of the k members'
  single-dataset scores on that subset, then aggregate over the subsets as the test set itself is aggregated
  (the NucFuse-test score is the mean over its tiles; with 14 tiles per subset that is the plain mean over the
  subsets — Table 3's NucFuse-test row is the mean of its 10 subsets). Adding a dataset raises the expected value
  exactly where that dataset is the best source so far. Needs the single-dataset rows per test subset.
* ``"overall_max"``: the best of the k members' overall scores. Because the ranking orders the datasets by their
  overall score, the first member is (nearly) always the best one alone, so this curve is flat and every increment
  after k = 1 is (nearly) zero: with Table 2 the CellViT curve stays at 55.14 from k = 1 on, and HoVerNeXt's rises
  once, by 0.09 at k = 2 (PUMA 55.75 over PCNS 55.66). That is why the paper's curve cannot be this one.

``observed`` is the score of the model trained on the first k datasets fused (rows with ``train_set ==
"top<k>"``; for k = 1 the first dataset's single-dataset row when there is no ``top1`` row).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nucfuse_datasets.benchmark.analysis._rows import Row, models_of, value
from nucfuse_datasets.datasets._registry import PAPER_RANKING
from nucfuse_datasets.errors import ArgumentError

__all__ = ["EXPECTED", "fusion_gain"]

#: The selectable readings of the expected curve (see the module docstring).
EXPECTED = ("per_subset", "overall_max")


def _subsets(rows: Sequence[Row], model: str, first: str, subsets: Sequence[str] | None) -> list[str]:
    if subsets is not None:
        return list(subsets)
    return sorted(
        {str(r["test_subset"]) for r in rows if r["model"] == model and r["train_set"] == first} - {"overall"}
    )


def _expected(
    rows: Sequence[Row],
    model: str,
    members: Sequence[str],
    metric: str,
    test_subset: str,
    how: str,
    subsets: Sequence[str],
    weights: Mapping[str, float] | None,
) -> float:
    if how == "overall_max" or test_subset != "overall":
        vals = [value(rows, model, d, test_subset, metric) for d in members]
        return math.nan if any(math.isnan(v) for v in vals) else float(max(vals))
    if not subsets:
        return math.nan
    best = []
    for s in subsets:
        vals = [value(rows, model, d, s, metric) for d in members]
        if any(math.isnan(v) for v in vals):
            return math.nan
        best.append(max(vals))
    w = np.array([1.0 if weights is None else float(weights[s]) for s in subsets])
    return float(np.dot(w, best) / w.sum())


def fusion_gain(
    rows: Sequence[Row],
    metric: str = "pq",
    test_subset: str = "overall",
    *,
    ranking: Sequence[str] | None = None,
    expected: str = "per_subset",
    subsets: Sequence[str] | None = None,
    subset_weights: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Observed top-k fusion scores against the expected curve, per model and k (Figures 6 and 7).

    Args:
        rows: result rows: ``top<k>`` runs and the single-dataset runs of Experiment 1 (per test subset for
            ``expected="per_subset"``).
        metric: the metric column.
        test_subset: ``"overall"`` (NucFuse-test) or one subset.
        ranking: the order the top k are taken from (default: the paper's ranking).
        expected: ``"per_subset"`` (default, the paper's) or ``"overall_max"``; see
            :mod:`nucfuse_datasets.benchmark.analysis.fusion`.
        subsets: the test subsets to aggregate over (default: those of the first dataset's single-dataset rows).
        subset_weights: weights of the subsets in the aggregate (default: equal, as for 14 tiles per subset).

    Returns:
        One row per model and k with an observed score: ``model``, ``k``, ``added`` (the k-th dataset),
        ``observed``, ``expected`` (NaN when a member's score is missing), ``gain`` (observed − expected), and the
        per-step increments ``observed_increment`` and ``expected_increment`` (value at k minus value at k − 1;
        NaN for k = 1 or when k − 1 is missing) — the paper's Figure 7.

    Raises:
        ArgumentError: an unknown ``expected`` reading, or ``subset_weights`` missing a subset.

    Example:
        >>> rows = [{"model": "m", "train_set": d, "test_subset": s, "pq": v}
        ...         for d, per in {"a": {"a": 60, "b": 40}, "b": {"a": 30, "b": 50}}.items() for s, v in per.items()]
        >>> rows += [{"model": "m", "train_set": "a", "test_subset": "overall", "pq": 50},
        ...          {"model": "m", "train_set": "top2", "test_subset": "overall", "pq": 58}]
        >>> g = fusion_gain(rows, ranking=["a", "b"])[-1]
        >>> g["k"], g["observed"], g["expected"], g["gain"], g["observed_increment"], g["expected_increment"]
        (2, 58.0, 55.0, 3.0, 8.0, 5.0)
    """
    if expected not in EXPECTED:
        raise ArgumentError(f"expected must be one of {EXPECTED}, got {expected!r}")
    order = list(ranking) if ranking is not None else list(PAPER_RANKING)
    out: list[dict[str, Any]] = []
    for m in models_of(rows):
        names = _subsets(rows, m, order[0], subsets)
        if subset_weights is not None:
            missing = [s for s in names if s not in subset_weights]
            if missing:
                raise ArgumentError(f"subset_weights has no weight for {missing}")
        previous: dict[str, Any] | None = None
        for k in range(1, len(order) + 1):
            observed = value(rows, m, f"top{k}", test_subset, metric)
            if k == 1 and math.isnan(observed):
                observed = value(rows, m, order[0], test_subset, metric)
            if math.isnan(observed):
                previous = None
                continue
            exp = _expected(rows, m, order[:k], metric, test_subset, expected, names, subset_weights)
            row = {
                "model": m,
                "k": k,
                "added": order[k - 1],
                "observed": observed,
                "expected": exp,
                "gain": observed - exp,
                "observed_increment": observed - previous["observed"] if previous else math.nan,
                "expected_increment": exp - previous["expected"] if previous else math.nan,
            }
            out.append(row)
            previous = row
    return out
