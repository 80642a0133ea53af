"""The paper's figures as PNG files: from its own tables, and from a user's result rows with its values overlaid.

* :func:`paper_figures` — from the paper's data (:mod:`nucfuse_datasets.benchmark.paper`): ``table2.png`` (Table 2 as
  ranking
  bars, one panel per model, datasets in that model's PQ-rank order) and ``table3.png`` (Table 3 as grouped bars).
  With ``rows``, the user's values of the same cells are drawn as black markers.
* :func:`result_figures` — from the user's result rows: ``ranking.png`` (Table 2 style), ``breakdown.png``
  (Figure 2: per training set the score on each test subset), ``cross_correlation_<model>.png`` (Figure 3, one per
  model, the default relative formula), ``top3_<model>.png`` (Figure 4), ``fusion.png`` (Figures 5–6: observed
  and expected top-k curves) and ``fusion_increments.png`` (Figure 7). The paper's values are drawn as black
  markers where the rows have the same cells (Table 2 on the ranking, the reported k = 1 and k = 9 scores on the
  fusion curve).
* :func:`write_figures` — both; ``nucfuse figures [RESULTS] --out DIR`` on the command line.

Needs matplotlib (``pip install 'nucfuse-datasets[plot]'``).

Example:
    >>> paths = write_figures(getfixture("tmp_path"))
    >>> sorted(paths)
    ['table2', 'table3']
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nucfuse_datasets.benchmark import paper
from nucfuse_datasets.benchmark.analysis import (
    cross_correlations,
    fusion_gain,
    plot_cross_correlation,
    plot_fusion_gain,
    plot_fusion_increments,
    plot_grouped_bars,
    plot_ranking,
    plot_top_training_sets,
    ranking_table,
    top_training_sets,
)
from nucfuse_datasets.benchmark.analysis._plots import _pyplot
from nucfuse_datasets.benchmark.analysis._rows import Row, models_of, value
from nucfuse_datasets.datasets._registry import PAPER_RANKING
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.io.config import PathLike

__all__ = ["paper_figures", "result_figures", "write_figures"]

_TABLE3_LABELS = {
    ("HoVerNeXt", "top9"): "HoVerNeXt / NucFuse-train",
    ("CellViT", "top9"): "CellViT / NucFuse-train",
    ("HoVerNeXt", "pannuke"): "HoVerNeXt / PanNuke",
    ("CellViT", "pannuke"): "CellViT / PanNuke",
    ("CellSAM", "pretrained"): "CellSAM",
}


def _index(order: Sequence[str], name: str) -> int:
    return order.index(name) if name in order else len(order)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _user(rows: Sequence[Row] | None, model: str, train_set: str, subset: str, metric: str) -> float:
    return value(rows, model, train_set, subset, metric) if rows else math.nan


def paper_figures(out: PathLike, rows: Sequence[Row] | None = None, metric: str = "pq") -> dict[str, Path]:
    """Write ``table2.png`` (and ``table3.png`` for PQ) from the paper's data; ``rows`` overlaid where they match.

    Raises:
        ArgumentError: ``metric`` is not one of Table 2's (``pq``, ``aji``, ``dice_2``, ``precision``, ``recall``).

    Example:
        >>> sorted(paper_figures(getfixture("tmp_path"), metric="aji"))
        ['table2']
    """
    if metric not in paper.TABLE2_METRICS:
        raise ArgumentError(f"the paper's Table 2 has {paper.TABLE2_METRICS}, not {metric!r}")
    plt = _pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    t2 = paper.table2()
    fig, axes = plt.subplots(1, len(paper.MODELS), figsize=(13, 4.6))
    for ax, model in zip(axes, paper.MODELS, strict=True):
        mine = sorted((r for r in t2 if r.model == model), key=lambda r: (-getattr(r, metric), r.dataset))
        groups = [f"{i}. {r.dataset}" for i, r in enumerate(mine, 1)]
        ref = {model: [_user(rows, model, r.dataset, "overall", metric) for r in mine]}
        plot_grouped_bars(
            groups,
            {model: [getattr(r, metric) for r in mine]},
            reference=ref,
            reference_label="your run",
            ylabel=f"{metric.upper()} (%)",
            title=f"Table 2, {model}: trained on one dataset, tested on NucFuse-test",
            ax=ax,
        )
    fig.tight_layout()
    paths["table2"] = _save(fig, out / "table2.png")
    if metric == "pq":
        t3 = paper.table3()
        subsets = [r.test_subset for r in t3 if (r.model, r.train_set) == paper.TABLE3_RUNS[0]]
        cell = {(r.model, r.train_set, r.test_subset): r.pq for r in t3}
        series = {lab: [cell[(run[0], run[1], s)] for s in subsets] for run, lab in _TABLE3_LABELS.items()}
        ref = {lab: [_user(rows, *run, s, "pq") for s in subsets] for run, lab in _TABLE3_LABELS.items()}
        groups = ["NucFuse-test" if s == "overall" else s for s in subsets]
        fig, ax = plt.subplots(figsize=(14, 4.8))
        plot_grouped_bars(
            groups,
            series,
            reference=ref,
            reference_label="your run",
            title="Table 3: NucFuse-train vs PanNuke training, and CellSAM",
            ax=ax,
        )
        paths["table3"] = _save(fig, out / "table3.png")
    return paths


def _breakdown(rows: Sequence[Row], metric: str) -> Any:
    plt = _pyplot()
    singles = [r["train_set"] for r in ranking_table(rows, metric=metric)]
    order = list(PAPER_RANKING)
    subsets = sorted({str(r["test_subset"]) for r in rows} - {"overall"}, key=lambda s: (_index(order, s), s))
    singles = [s for s in singles if any(r["train_set"] == s and r["test_subset"] != "overall" for r in rows)]
    if not singles or not subsets:
        return None
    models = models_of(rows)
    ncols = 2 if len(singles) > 1 else 1
    nrows = math.ceil(len(singles) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 3.4 * nrows), squeeze=False)
    for ax, train in zip(axes.flat, singles, strict=False):
        series = {m: [value(rows, m, train, s, metric) for s in subsets] for m in models}
        plot_grouped_bars(subsets, series, ylabel=f"{metric.upper()} (%)", title=f"trained on {train}", ax=ax)
    for ax in list(axes.flat)[len(singles) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _paper_table2(metric: str) -> Mapping[str, Mapping[str, float]] | None:
    if metric not in paper.TABLE2_METRICS:
        return None
    out: dict[str, dict[str, float]] = {}
    for r in paper.table2():
        out.setdefault(r.model, {})[r.dataset] = float(getattr(r, metric))
    return out


def result_figures(
    rows: Sequence[Row], out: PathLike, metric: str = "pq", ranking: Sequence[str] | None = None
) -> dict[str, Path]:
    """Write the figures of the user's result rows (see the module docstring); returns ``{name: path}``.

    Figures whose data are absent (no per-subset rows, no ``top<k>`` rows) are not written. ``ranking`` is the
    order of the ``top<k>`` runs (default: the paper's; the paper's fusion values are overlaid only then).

    Example:
        >>> rows = [{"model": "m", "train_set": a, "test_subset": b, "pq": v}
        ...         for (a, b), v in {("x", "x"): 60, ("x", "y"): 20, ("y", "x"): 40, ("y", "y"): 50,
        ...                           ("x", "overall"): 40, ("y", "overall"): 45}.items()]
        >>> sorted(result_figures(rows, getfixture("tmp_path")))
        ['breakdown', 'cross_correlation_m', 'ranking', 'top3_m']
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    table = ranking_table(rows, metric=metric)
    if table:
        paths["ranking"] = _save(plot_ranking(table, metric, paper=_paper_table2(metric)), out / "ranking.png")
    fig = _breakdown(rows, metric)
    if fig is not None:
        paths["breakdown"] = _save(fig, out / "breakdown.png")
    for model, (names, _P, C) in cross_correlations(rows, metric=metric).items():
        if len(names) < 2 or not (C == C).any():
            continue
        slug = _slug(model)
        title = f"{model}: C[i, j] = P(trained on i, tested on j) / P(j, j)"
        paths[f"cross_correlation_{slug}"] = _save(
            plot_cross_correlation(names, C, title=title), out / f"cross_correlation_{slug}.png"
        )
        top = top_training_sets(rows, n=3, metric=metric, datasets=names, model=model)
        fig = plot_top_training_sets(top, names, metric, title=f"{model}: top three training datasets")
        paths[f"top3_{slug}"] = _save(fig, out / f"top3_{slug}.png")
    gains = fusion_gain(rows, metric=metric, ranking=ranking)
    if any(g["k"] > 1 for g in gains):
        reported: dict[str, dict[int, float]] = {}
        if metric == "pq" and (ranking is None or tuple(ranking) == PAPER_RANKING):
            for model, by_k in paper.reported()["fusion"]["observed"].items():
                if model in {g["model"] for g in gains}:
                    reported[model] = {int(k): float(v) for k, v in by_k.items()}
        paths["fusion"] = _save(plot_fusion_gain(gains, metric, paper=reported), out / "fusion.png")
        if any(math.isfinite(g["observed_increment"]) for g in gains):
            paths["fusion_increments"] = _save(plot_fusion_increments(gains, metric), out / "fusion_increments.png")
    return paths


def write_figures(out: PathLike, rows: Sequence[Row] | None = None, metric: str = "pq") -> dict[str, Path]:
    """:func:`paper_figures` and, with ``rows``, :func:`result_figures`, into ``out``; returns ``{name: path}``.

    Example:
        >>> sorted(write_figures(getfixture("tmp_path"), metric="recall"))
        ['table2']
    """
    paths = paper_figures(out, rows, metric=metric)
    if rows:
        paths |= result_figures(rows, out, metric=metric)
    return paths
