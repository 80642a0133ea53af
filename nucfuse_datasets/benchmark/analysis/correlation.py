"""Dataset cross-correlation (the paper's §3.4, Figure 3) and the top training sets per test subset (Figure 4).

``P[i, j]`` is the metric on NucFuse-test subset ``j`` of the model trained on dataset ``i`` alone. The paper
defines ``C`` from ``P`` and draws **one matrix per model** (Figure 3a HoVerNeXt, 3b CellViT).

Two formulas are selectable (``formula=``):

* ``"relative"`` (default): ``C[i, j] = P[i, j] / P[j, j]``, the score on test subset ``j`` relative to training on
  ``j``'s own training split. This is the reading that fits everything the paper reports about its matrices:
  values above 1.0 "when the highest performance on a given test subset was not achieved by training on the
  corresponding dataset", a maximum of 1.08 (trained on PUMA, tested on CryoNuSeg) together with a minimum of 0.60
  (trained on NuInsSeg, tested on CoNSeP), and PCNS above 0.87 on every test subset.
* ``"as_written"``: ``C[i, j] = (P[i, j] + P[j, i]) / (2 · P[i, j])``, the formula as printed in §3.4. With it
  ``1/C[i, j] + 1/C[j, i] = 2`` for every pair, so a minimum of 0.60 would force a 3.0 elsewhere — which
  contradicts the reported maximum of 1.08. Kept for comparison.

Both give ``C[i, i] = 1``; neither is symmetric. Cells with a missing or zero denominator are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nucfuse_datasets.benchmark.analysis._rows import Row, models_of, value
from nucfuse_datasets.datasets._registry import PAPER_RANKING
from nucfuse_datasets.errors import ArgumentError

__all__ = ["FORMULAS", "cross_correlation", "cross_correlations", "top_training_sets"]

#: The selectable cross-correlation formulas (see the module docstring).
FORMULAS = ("relative", "as_written")


def _names(rows: Sequence[Row], datasets: Sequence[str] | None) -> list[str]:
    if datasets is not None:
        return list(datasets)
    trained = {str(r["train_set"]) for r in rows}
    tested = {str(r["test_subset"]) for r in rows}
    both = trained & tested - {"overall"}
    return sorted(both, key=lambda s: (PAPER_RANKING.index(s) if s in PAPER_RANKING else len(PAPER_RANKING), s))


def _cell_models(rows: Sequence[Row], names: Sequence[str], metric: str) -> list[str]:
    wanted = set(names)
    return models_of([r for r in rows if r["train_set"] in wanted and r["test_subset"] in wanted and metric in r])


def _matrix(rows: Sequence[Row], names: Sequence[str], models: Sequence[str], metric: str) -> np.ndarray:
    n = len(names)
    P = np.full((n, n), math.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            vals = [v for v in (value(rows, m, a, b, metric) for m in models) if not math.isnan(v)]
            if vals:
                P[i, j] = float(np.mean(vals))
    return P


def _correlate(P: np.ndarray, formula: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        C = P / np.diag(P)[None, :] if formula == "relative" else (P + P.T) / (2.0 * P)
    C[~np.isfinite(C)] = math.nan
    return C


def cross_correlation(
    rows: Sequence[Row],
    datasets: Sequence[str] | None = None,
    metric: str = "pq",
    model: str | None = None,
    formula: str = "relative",
    *,
    average_models: bool = False,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Performance matrix ``P`` and cross-correlation matrix ``C`` of one model (rows: trained on, columns: tested on).

    Args:
        rows: result rows (single-dataset training sets tested on each NucFuse-test subset).
        datasets: the datasets, in matrix order (default: every training set that is also a test subset, in the
            paper's ranking order).
        metric: the metric column.
        model: the model; may be left out when the rows hold one model.
        formula: ``"relative"`` (default, ``P[i, j] / P[j, j]``) or ``"as_written"``
            (``(P[i, j] + P[j, i]) / (2 · P[i, j])``); see :mod:`nucfuse_datasets.benchmark.analysis.correlation`.
        average_models: with ``model=None`` and several models, average ``P`` over the models before computing
            ``C`` (not what the paper draws; an explicit choice).

    Returns:
        ``(names, P, C)``.

    Raises:
        ArgumentError: an unknown formula, or several models in ``rows`` with neither ``model`` nor
            ``average_models`` (use :func:`cross_correlations` for one matrix per model).

    Example:
        >>> rows = [{"model": "m", "train_set": a, "test_subset": b, "pq": v}
        ...         for (a, b), v in {("x", "x"): .6, ("x", "y"): .2, ("y", "x"): .4, ("y", "y"): .5}.items()]
        >>> names, P, C = cross_correlation(rows, ["x", "y"])
        >>> C.round(3).tolist()
        [[1.0, 0.4], [0.667, 1.0]]
        >>> cross_correlation(rows, ["x", "y"], formula="as_written")[2].round(3).tolist()
        [[1.0, 1.5], [0.75, 1.0]]
    """
    if formula not in FORMULAS:
        raise ArgumentError(f"formula must be one of {FORMULAS}, got {formula!r}")
    names = _names(rows, datasets)
    if model is not None:
        models = [model]
    else:
        models = _cell_models(rows, names, metric)
        if len(models) > 1 and not average_models:
            raise ArgumentError(
                f"the rows hold several models ({', '.join(models)}); the paper draws one matrix per model: pass "
                "model=..., use cross_correlations(rows) for a {model: (names, P, C)} mapping, or "
                "average_models=True to average P over the models first"
            )
    P = _matrix(rows, names, models, metric)
    return names, P, _correlate(P, formula)


def cross_correlations(
    rows: Sequence[Row],
    datasets: Sequence[str] | None = None,
    metric: str = "pq",
    formula: str = "relative",
) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """:func:`cross_correlation` for every model in ``rows``: ``{model: (names, P, C)}`` (Figure 3a, 3b).

    Example:
        >>> rows = [{"model": m, "train_set": a, "test_subset": b, "pq": v + d}
        ...         for (a, b), v in {("x", "x"): .6, ("x", "y"): .2, ("y", "x"): .4, ("y", "y"): .5}.items()
        ...         for m, d in (("A", 0.0), ("B", 0.1))]
        >>> {m: float(C[0, 1].round(3)) for m, (_, _, C) in cross_correlations(rows).items()}
        {'A': 0.4, 'B': 0.5}
    """
    names = _names(rows, datasets)
    return {
        m: cross_correlation(rows, names, metric, model=m, formula=formula) for m in _cell_models(rows, names, metric)
    }


def top_training_sets(
    rows: Sequence[Row],
    n: int = 3,
    metric: str = "pq",
    datasets: Sequence[str] | None = None,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """The ``n`` best training datasets for each test subset, per model (the paper's Figure 4).

    Returns rows ``{"model", "test_subset", "position" (1 = best), "train_set", <metric>, "relative"}``, where
    ``relative`` is the score relative to training on the test subset's own dataset (``C[i, j]`` of the default
    formula). Missing cells are skipped.

    Example:
        >>> rows = [{"model": "m", "train_set": a, "test_subset": b, "pq": v}
        ...         for (a, b), v in {("x", "x"): .6, ("x", "y"): .2, ("y", "x"): .4, ("y", "y"): .5}.items()]
        >>> [(t["test_subset"], t["position"], t["train_set"]) for t in top_training_sets(rows, n=1)]
        [('x', 1, 'x'), ('y', 1, 'y')]
    """
    if n < 1:
        raise ArgumentError(f"n must be at least 1, got {n}")
    names = _names(rows, datasets)
    models = [model] if model is not None else _cell_models(rows, names, metric)
    out: list[dict[str, Any]] = []
    for m in models:
        _, P, C = cross_correlation(rows, names, metric, model=m)
        for j, test in enumerate(names):
            order = [i for i in np.argsort(-P[:, j], kind="stable") if np.isfinite(P[i, j])]
            for pos, i in enumerate(order[:n], 1):
                out.append(
                    {
                        "model": m,
                        "test_subset": test,
                        "position": pos,
                        "train_set": names[i],
                        metric: float(P[i, j]),
                        "relative": float(C[i, j]),
                    }
                )
    return out
