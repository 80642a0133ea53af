"""Matplotlib figures of the analyses (the ``plot`` extra). Each function returns a ``Figure``; nothing is shown.

Where a reference value is given (``paper=`` mappings), it is drawn as a black marker over the bars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nucfuse_datasets.errors import DependencyNotFoundError

__all__ = [
    "plot_cross_correlation",
    "plot_fusion_gain",
    "plot_fusion_increments",
    "plot_grouped_bars",
    "plot_ranking",
    "plot_top_training_sets",
]

_REF_STYLE = {"marker": "_", "color": "black", "markersize": 14, "markeredgewidth": 2.5, "linestyle": "none"}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise DependencyNotFoundError("plots need matplotlib: pip install 'nucfuse-datasets[plot]'") from None
    return plt


def plot_grouped_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    reference: Mapping[str, Sequence[float]] | None = None,
    reference_label: str = "paper",
    ylabel: str = "PQ (%)",
    title: str = "",
    ax: Any = None,
) -> Any:
    """Grouped bars: one group per entry of ``groups``, one bar per series; ``reference`` values as markers.

    NaN values are left out. Returns the figure.

    Example:
        >>> fig = plot_grouped_bars(["a", "b"], {"m": [50.0, 40.0]}, reference={"m": [51.0, math.nan]})
        >>> len(fig.axes)
        1
    """
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(groups) * max(1, len(series)) + 2), 4.2))
    else:
        fig = ax.figure
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    labelled = False
    for i, (name, values) in enumerate(series.items()):
        pos = x - 0.4 + width * (i + 0.5)
        vals = np.array(values, float)
        ax.bar(pos, np.nan_to_num(vals, nan=0.0), width, label=name)
        for p, v in zip(pos, vals, strict=True):
            if np.isfinite(v) and len(groups) * len(series) <= 40:
                ax.annotate(
                    f"{v:.1f}",
                    (p, max(v, 0.0)),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=0 if len(groups) * len(series) <= 12 else 90,
                )
        ref = np.array((reference or {}).get(name, [math.nan] * len(groups)), float)
        if np.isfinite(ref).any():
            ax.plot(pos, ref, label=reference_label if not labelled else None, **_REF_STYLE)
            labelled = True
    ax.set_xticks(x, groups, rotation=35, ha="right")
    ax.set_ylabel(ylabel)
    finite = [x for v in series.values() for x in np.asarray(v, float).ravel() if np.isfinite(x)]
    top = max([*finite, 1.0])
    ax.set_ylim(0, top * 1.25 + 0.5)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncols=min(3, len(series) + 1), loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_ranking(
    table: Sequence[Mapping[str, Any]], metric: str = "pq", paper: Mapping[str, Mapping[str, float]] | None = None
) -> Any:
    """Bars of a :func:`~nucfuse_datasets.benchmark.analysis.ranking_table` (one bar per model, datasets in rank order).

    Args:
        table: the ranking table.
        metric: the metric's name for the axis label.
        paper: ``{model: {train_set: value}}`` drawn as markers (e.g. the paper's Table 2).

    Example:
        >>> from nucfuse_datasets.benchmark.analysis import ranking_table
        >>> rows = [{"model": "m", "train_set": d, "test_subset": "overall", "pq": v}
        ...         for d, v in (("pcns", 55.0), ("puma", 54.0))]
        >>> len(plot_ranking(ranking_table(rows)).axes)
        1
    """
    skip = {"train_set", "mean", "rank", "mean_of_model_ranks"}
    models = [k for k in table[0] if k not in skip and not k.startswith("rank_")]
    names = [f"{int(r['rank']) if float(r['rank']).is_integer() else r['rank']}. {r['train_set']}" for r in table]
    series = {m: [r[m] for r in table] for m in models}
    ref = {m: [paper.get(m, {}).get(r["train_set"], math.nan) for r in table] for m in models} if paper else None
    return plot_grouped_bars(
        names, series, reference=ref, ylabel=f"{metric.upper()} (%)", title="Ranking by the mean over models"
    )


def plot_cross_correlation(names: Sequence[str], matrix: np.ndarray, title: str = "C") -> Any:
    """Heat map of a cross-correlation (or performance) matrix, values written in.

    As in the paper's Figure 3 the training dataset is on the horizontal axis and the test subset on the vertical
    one, i.e. the cell at column ``i``, row ``j`` is ``matrix[i, j]`` (rows of ``matrix``: trained on).

    Example:
        >>> import numpy as np
        >>> len(plot_cross_correlation(["a", "b"], np.array([[1.0, 1.5], [0.75, 1.0]])).axes)  # map + colour bar
        2
    """
    plt = _pyplot()
    n = len(names)
    shown = np.asarray(matrix, float).T
    fig, ax = plt.subplots(figsize=(1.6 + 0.62 * n, 1.2 + 0.55 * n))
    im = ax.imshow(shown, cmap="viridis")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("training dataset")
    ax.set_ylabel("test subset")
    finite = shown[np.isfinite(shown)]
    mid = float(np.mean([finite.min(), finite.max()])) if finite.size else 0.0
    for j in range(n):
        for i in range(n):
            if np.isfinite(shown[j, i]):
                color = "black" if shown[j, i] > mid else "white"
                ax.text(i, j, f"{shown[j, i]:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def plot_top_training_sets(
    top: Sequence[Mapping[str, Any]], names: Sequence[str], metric: str = "pq", title: str = ""
) -> Any:
    """Figure 4: per test subset (rows) the top training datasets (columns) marked 1, 2, 3, coloured by score.

    Args:
        top: rows of :func:`~nucfuse_datasets.benchmark.analysis.top_training_sets` for one model.
        names: the datasets, in axis order.
        metric: the metric key of the rows.
        title: the figure title.

    Example:
        >>> top = [{"test_subset": "a", "position": 1, "train_set": "b", "pq": 50.0, "relative": 1.1}]
        >>> len(plot_top_training_sets(top, ["a", "b"]).axes)
        2
    """
    plt = _pyplot()
    n = len(names)
    grid = np.full((n, n), math.nan)
    marks = {}
    for t in top:
        j, i = names.index(t["test_subset"]), names.index(t["train_set"])
        grid[j, i] = t[metric]
        marks[(j, i)] = t["position"]
    fig, ax = plt.subplots(figsize=(1.6 + 0.62 * n, 1.2 + 0.55 * n))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="YlGn")
    for (j, i), pos in marks.items():
        ax.text(i, j, f"#{pos}\n{grid[j, i]:.1f}", ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("training dataset")
    ax.set_ylabel("test subset")
    ax.set_title(title or "Top training datasets per test subset")
    fig.colorbar(im, ax=ax, shrink=0.8, label=f"{metric.upper()} (%)")
    fig.tight_layout()
    return fig


def plot_fusion_gain(
    gains: Sequence[Mapping[str, Any]],
    metric: str = "pq",
    paper: Mapping[str, Mapping[int, float]] | None = None,
) -> Any:
    """Figures 5–6: observed and expected score of top-k fusion against k, one line pair per model.

    Args:
        gains: rows of :func:`~nucfuse_datasets.benchmark.analysis.fusion_gain`.
        metric: the metric's name for the axis label.
        paper: ``{model: {k: value}}`` drawn as markers (the paper's reported observed values).

    Example:
        >>> gains = [{"model": "m", "k": 1, "added": "a", "observed": 50.0, "expected": 50.0},
        ...          {"model": "m", "k": 2, "added": "b", "observed": 58.0, "expected": 55.0}]
        >>> len(plot_fusion_gain(gains).axes)
        1
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labelled = False
    for c, m in enumerate(sorted({g["model"] for g in gains})):
        rows = [g for g in gains if g["model"] == m]
        ks = [g["k"] for g in rows]
        color = f"C{c}"
        ax.plot(ks, [g["observed"] for g in rows], "o-", color=color, label=f"{m} observed")
        ax.plot(ks, [g["expected"] for g in rows], "s--", color=color, alpha=0.7, label=f"{m} expected")
        ref = (paper or {}).get(m, {})
        if ref:
            ax.plot(list(ref), list(ref.values()), label=None if labelled else "paper", **_REF_STYLE)
            labelled = True
    ks_all = sorted({g["k"] for g in gains})
    added = {g["k"]: g.get("added", "") for g in gains}
    ax.set_xticks(ks_all, [f"{k}\n+{added[k]}" for k in ks_all], fontsize=7)
    ax.set_xlabel("k (top-k datasets fused; the dataset added at each step)")
    ax.set_ylabel(f"{metric.upper()} (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_fusion_increments(gains: Sequence[Mapping[str, Any]], metric: str = "pq") -> Any:
    """Figure 7: per step k the expected and observed increment, one panel per model.

    Example:
        >>> gains = [{"model": "m", "k": 2, "added": "b", "observed_increment": 8.0, "expected_increment": 5.0}]
        >>> len(plot_fusion_increments(gains).axes)
        1
    """
    plt = _pyplot()
    models = sorted({g["model"] for g in gains})
    fig, axes = plt.subplots(len(models), 1, figsize=(7, 3.2 * len(models)), squeeze=False)
    for ax, m in zip(axes[:, 0], models, strict=True):
        rows = [g for g in gains if g["model"] == m and np.isfinite(g["observed_increment"])]
        labels = [f"k={g['k']}\n+{g['added']}" for g in rows]
        plot_grouped_bars(
            labels,
            {
                "expected increment": [g["expected_increment"] for g in rows],
                "observed increment": [g["observed_increment"] for g in rows],
            },
            ylabel=f"Δ {metric.upper()} (points)",
            title=m,
            ax=ax,
        )
        lo = min([0.0] + [min(g["expected_increment"], g["observed_increment"]) for g in rows])
        ax.set_ylim(lo * 1.2 - 0.5, ax.get_ylim()[1])
        ax.axhline(0, color="black", linewidth=0.8)
    fig.tight_layout()
    return fig
