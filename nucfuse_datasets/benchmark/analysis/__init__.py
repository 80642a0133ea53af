"""The paper's analyses from result tables: ranking, cross-correlation, top training sets, top-k fusion.

A *result row* is a mapping with ``model`` (``"HoVerNeXt"``), ``train_set`` (a dataset name such as ``"monuseg"``,
or ``"top<k>"`` for the fusion of the first k ranked datasets), ``test_subset`` (a dataset name or ``"overall"``)
and metric columns (``pq``, ``aji``, ...; fractions or ×100, used as given). :meth:`EvaluationReport.to_rows
<nucfuse_datasets.benchmark.evaluation.EvaluationReport.to_rows>` produces them;
:func:`load_results` reads CSV/JSON files;
:func:`nucfuse_datasets.benchmark.paper.result_rows` gives the paper's Tables 2 and 3 in this form.

* :func:`ranking_table` — Table 2: per model the metric on the whole test set and its rank, the mean over models,
  ``rank`` (the paper's "Mean Rank", by that mean) and ``mean_of_model_ranks``.
* :func:`cross_correlation` — Figure 3, one model: ``P[i, j]`` = metric on test subset ``j`` of the model trained on
  ``i``, and ``C`` — by default ``C[i, j] = P[i, j] / P[j, j]`` (``formula="relative"``, the reading that fits the
  paper's reported values), or the formula as printed (``formula="as_written"``); see
  :mod:`nucfuse_datasets.benchmark.analysis.correlation`. Several models without ``model=`` raise, unless
  ``average_models=True``; :func:`cross_correlations` gives one matrix per model.
* :func:`top_training_sets` — Figure 4: the three best training datasets per test subset, per model.
* :func:`fusion_gain` — Figures 5–7: ``observed`` top-k scores against the ``expected`` curve (the best member per
  test subset, aggregated like the test set; see :mod:`nucfuse_datasets.benchmark.analysis.fusion`) and the per-step
  increments.
* :func:`render_report` — ``analysis.md`` plus the figures.

Example:
    >>> from nucfuse_datasets.benchmark import paper
    >>> [r["train_set"] for r in ranking_table(paper.result_rows(2))][:3]
    ['pcns', 'puma', 'monuseg']
"""

from __future__ import annotations

from nucfuse_datasets.benchmark import paper as _paper
from nucfuse_datasets.benchmark.analysis._plots import (
    plot_cross_correlation,
    plot_fusion_gain,
    plot_fusion_increments,
    plot_grouped_bars,
    plot_ranking,
    plot_top_training_sets,
)
from nucfuse_datasets.benchmark.analysis._rows import load_results
from nucfuse_datasets.benchmark.analysis.correlation import (
    FORMULAS,
    cross_correlation,
    cross_correlations,
    top_training_sets,
)
from nucfuse_datasets.benchmark.analysis.fusion import EXPECTED, fusion_gain
from nucfuse_datasets.benchmark.analysis.ranking import ranking_table
from nucfuse_datasets.benchmark.analysis.report import render_report

__all__ = [
    "EXPECTED",
    "FORMULAS",
    "PAPER_TRAIN_PATCHES",
    "cross_correlation",
    "cross_correlations",
    "fusion_gain",
    "load_results",
    "plot_cross_correlation",
    "plot_fusion_gain",
    "plot_fusion_increments",
    "plot_grouped_bars",
    "plot_ranking",
    "plot_top_training_sets",
    "ranking_table",
    "render_report",
    "top_training_sets",
]

#: Training patches per dataset (the paper's Table 1, "256² training tiles"); a view of
#: :func:`nucfuse_datasets.benchmark.paper.train_patches`, kept for existing code.
PAPER_TRAIN_PATCHES: dict[str, int] = _paper.train_patches()
