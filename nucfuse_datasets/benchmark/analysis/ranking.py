"""The paper's Table 2: single-dataset training sets ranked by the mean over models of one metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nucfuse_datasets.benchmark.analysis._rows import Row, models_of, rank, value
from nucfuse_datasets.datasets._registry import PAPER_RANKING

__all__ = ["ranking_table"]


def ranking_table(
    rows: Sequence[Row],
    metric: str = "pq",
    test_subset: str = "overall",
    train_sets: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Rank single-dataset training sets by ``metric`` on ``test_subset`` (the paper's Table 2).

    Returns one dict per training set, best first, with

    * ``<model>``: the metric of each model;
    * ``rank_<model>``: the rank among the training sets for that model (the paper's "PQ Rank");
    * ``mean``: the mean of the metric over the models;
    * ``rank``: the rank by that mean — **the paper's "Mean Rank"**, the ranking the paper uses;
    * ``mean_of_model_ranks``: the mean of the ``rank_<model>`` values (not in the paper; it can order the
      datasets differently when the models disagree).

    Training sets named ``top<k>`` (fusions) are left out unless ``train_sets`` names them.

    Example:
        >>> from nucfuse_datasets.benchmark import paper
        >>> table = ranking_table(paper.result_rows(2))
        >>> [(r["train_set"], r["rank"], r["mean_of_model_ranks"]) for r in table[:2]]
        [('pcns', 1.0, 1.5), ('puma', 2.0, 2.0)]
    """
    models = models_of(rows)
    sets = (
        list(train_sets)
        if train_sets is not None
        else sorted(
            {str(r["train_set"]) for r in rows if not str(r["train_set"]).startswith("top")},
            key=lambda s: (PAPER_RANKING.index(s) if s in PAPER_RANKING else len(PAPER_RANKING), s),
        )
    )
    table = {s: {m: value(rows, m, s, test_subset, metric) for m in models} for s in sets}
    out: list[dict[str, Any]] = [{"train_set": s, **table[s]} for s in sets]
    for m in models:
        for row, r in zip(out, rank([table[s][m] for s in sets]), strict=True):
            row[f"rank_{m}"] = r
    for row in out:
        vals = [row[m] for m in models if not math.isnan(row[m])]
        row["mean"] = float(np.mean(vals)) if vals else math.nan
    for row, r in zip(out, rank([r["mean"] for r in out]), strict=True):
        row["rank"] = r
        row["mean_of_model_ranks"] = float(np.mean([row[f"rank_{m}"] for m in models])) if models else math.nan
    return sorted(out, key=lambda r: (r["rank"], r["train_set"]))
