"""The paper's analyses from result tables: dataset ranking, cross-correlation matrix, top-k fusion gain.

A *result row* is a mapping with ``model`` (``"HoVerNeXt"``), ``train_set`` (a dataset name such as ``"monuseg"``,
or ``"top<k>"`` for the fusion of the first k ranked datasets), ``test_subset`` (a dataset name or ``"overall"``)
and metric columns (``pq``, ``aji``, ...; fractions or ×100, used as given). :meth:`EvaluationReport.to_rows
<nucfuse_datasets.evaluation.EvaluationReport.to_rows>` produces them; :func:`load_results` reads CSV/JSON files.

* :func:`ranking_table`: the paper's Table 2 — per model the metric on the whole test set, the rank per model,
  the mean over models, the ranking by that mean (how the paper ranks) and the mean rank.
* :func:`cross_correlation`: ``P[i, j]`` = metric on test subset ``j`` of the model trained on dataset ``i``, and the
  paper's matrix ``C[i, j] = (P[i, j] + P[j, i]) / (2 · P[i, j])`` exactly as written (``C[i, i] = 1``; not symmetric).
* :func:`fusion_gain`: observed metric of each top-k model against what its members reach alone. The paper's exact
  definition of the "expected" curve is not available to us; this library defines ``expected_uniform`` = mean of the
  k members' single-dataset scores, ``expected_weighted`` = the same weighted by each member's number of training
  patches (paper Table 1), and ``best_single`` = the best member.

Example:
    >>> from nucfuse_datasets.protocol import PAPER_TABLE2_PQ
    >>> rows = [{"model": m, "train_set": d, "test_subset": "overall", "pq": v[i]}
    ...         for d, v in PAPER_TABLE2_PQ.items() for i, m in enumerate(["HoVerNeXt", "CellViT"])]
    >>> [r["train_set"] for r in ranking_table(rows)][:3]
    ['pcns', 'puma', 'monuseg']
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets._config import PathLike
from nucfuse_datasets._registry import PAPER_RANKING
from nucfuse_datasets.errors import ArgumentError, DependencyNotFoundError, InvalidSourceError

__all__ = [
    "PAPER_TRAIN_PATCHES",
    "cross_correlation",
    "fusion_gain",
    "load_results",
    "plot_cross_correlation",
    "plot_fusion_gain",
    "plot_ranking",
    "ranking_table",
    "render_report",
]

Row = Mapping[str, Any]

#: Training patches per dataset (the paper's Table 1, "256² training tiles"): the weights of ``expected_weighted``.
PAPER_TRAIN_PATCHES = {
    "pcns": 1342,
    "puma": 3056,
    "monuseg": 592,
    "cpm17": 285,
    "tnbc": 144,
    "nuinsseg": 2604,
    "consep": 432,
    "monusac": 2692,
    "dsb2018": 186,
    "cryonuseg": 64,
}


def load_results(path: PathLike) -> list[dict[str, Any]]:
    r"""Read result rows from a CSV file, a JSON list, or a folder of evaluation-report JSON files.

    Numeric columns are converted to floats. Report JSONs must carry ``model`` and ``train_set`` in their ``meta``.

    Raises:
        InvalidSourceError: the file has no ``model``/``train_set``/``test_subset`` columns or cannot be parsed.

    Example:
        >>> p = getfixture("tmp_path") / "rows.csv"
        >>> _ = p.write_text("model,train_set,test_subset,pq\nm,monuseg,overall,53.4\n")
        >>> load_results(p)
        [{'model': 'm', 'train_set': 'monuseg', 'test_subset': 'overall', 'pq': 53.4}]
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    if path.is_dir():
        from nucfuse_datasets.evaluation import EvaluationReport

        for f in sorted(path.glob("*.json")):
            rows += EvaluationReport.from_json(f.read_text()).to_rows()
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidSourceError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and "per_image" in data:
            from nucfuse_datasets.evaluation import EvaluationReport

            rows = EvaluationReport.from_json(path.read_text()).to_rows()
        elif isinstance(data, list):
            rows = [dict(r) for r in data]
        else:
            raise InvalidSourceError(f"{path}: expected a list of result rows or an evaluation report")
    else:
        with open(path, newline="") as fh:
            rows = [dict(r) for r in csv.DictReader(fh)]
    for r in rows:
        for key in ("model", "train_set", "test_subset"):
            if key not in r:
                raise InvalidSourceError(f"{path}: result rows need a {key!r} column (got {sorted(r)})")
        for k, v in list(r.items()):
            if k not in ("model", "train_set", "test_subset") and isinstance(v, str):
                with contextlib.suppress(ValueError):
                    r[k] = float(v)
    return rows


def _value(rows: Iterable[Row], model: str, train_set: str, test_subset: str, metric: str) -> float:
    hits = [
        r[metric]
        for r in rows
        if r["model"] == model and r["train_set"] == train_set and r["test_subset"] == test_subset and metric in r
    ]
    if len(hits) > 1:
        raise ArgumentError(f"several rows for model={model} train_set={train_set} test_subset={test_subset}")
    return float(hits[0]) if hits else math.nan


def _models(rows: Sequence[Row]) -> list[str]:
    return sorted({str(r["model"]) for r in rows})


def _rank(values: Sequence[float]) -> list[float]:
    """Rank 1 = highest; ties share the mean rank; NaN ranks last."""
    arr = np.array([(-v if not math.isnan(v) else math.inf) for v in values])
    order = np.argsort(arr, kind="stable")
    ranks = np.empty(len(arr))
    ranks[order] = np.arange(1, len(arr) + 1)
    for v in np.unique(arr):
        ranks[arr == v] = ranks[arr == v].mean()
    return ranks.tolist()


def ranking_table(
    rows: Sequence[Row],
    metric: str = "pq",
    test_subset: str = "overall",
    train_sets: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Rank single-dataset training sets by ``metric`` on ``test_subset`` (the paper's Table 2).

    Returns one dict per training set, best first, with ``<model>`` values, ``rank_<model>``, ``mean`` (over
    models), ``rank`` (by the mean, as the paper ranks) and ``mean_rank``.
    """
    models = _models(rows)
    sets = (
        list(train_sets)
        if train_sets is not None
        else sorted(
            {str(r["train_set"]) for r in rows if not str(r["train_set"]).startswith("top")},
            key=lambda s: (PAPER_RANKING.index(s) if s in PAPER_RANKING else len(PAPER_RANKING), s),
        )
    )
    table = {s: {m: _value(rows, m, s, test_subset, metric) for m in models} for s in sets}
    out = [{"train_set": s, **table[s]} for s in sets]
    for m in models:
        for row, rank in zip(out, _rank([table[s][m] for s in sets]), strict=True):
            row[f"rank_{m}"] = rank
    for row in out:
        vals = [row[m] for m in models if not math.isnan(row[m])]
        row["mean"] = float(np.mean(vals)) if vals else math.nan
        row["mean_rank"] = float(np.mean([row[f"rank_{m}"] for m in models]))
    for row, rank in zip(out, _rank([r["mean"] for r in out]), strict=True):
        row["rank"] = rank
    return sorted(out, key=lambda r: (r["rank"], r["train_set"]))


def cross_correlation(
    rows: Sequence[Row],
    datasets: Sequence[str] | None = None,
    metric: str = "pq",
    model: str | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Performance matrix ``P`` and the paper's cross-correlation matrix ``C``.

    ``P[i, j]`` is ``metric`` on test subset ``j`` of the model trained on dataset ``i`` (the mean over models
    when ``model`` is ``None``). ``C[i, j] = (P[i, j] + P[j, i]) / (2 · P[i, j])`` as the paper writes it; it is
    NaN where ``P[i, j]`` is 0 or missing.

    Example:
        >>> rows = [{"model": "m", "train_set": a, "test_subset": b, "pq": v}
        ...         for (a, b), v in {("x", "x"): .6, ("x", "y"): .2, ("y", "x"): .4, ("y", "y"): .5}.items()]
        >>> names, P, C = cross_correlation(rows, ["x", "y"])
        >>> C.round(3).tolist()
        [[1.0, 1.5], [0.75, 1.0]]
    """
    names = (
        list(datasets) if datasets is not None else [d for d in PAPER_RANKING if any(r["train_set"] == d for r in rows)]
    )
    models = [model] if model is not None else _models(rows)
    n = len(names)
    P = np.full((n, n), math.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            vals = [_value(rows, m, a, b, metric) for m in models]
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                P[i, j] = float(np.mean(vals))
    with np.errstate(divide="ignore", invalid="ignore"):
        C = (P + P.T) / (2.0 * P)
    C[~np.isfinite(C)] = math.nan
    return names, P, C


def fusion_gain(
    rows: Sequence[Row],
    metric: str = "pq",
    test_subset: str = "overall",
    weights: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Observed top-k fusion scores against their members' single-dataset scores, per model and k.

    Top-k models are rows with ``train_set == "top<k>"``; their members are the first k datasets of the paper's
    ranking. ``top1`` is the first dataset alone when no ``top1`` row exists.

    Example:
        >>> rows = [{"model": "m", "train_set": s, "test_subset": "overall", "pq": v}
        ...         for s, v in {"pcns": 50, "puma": 40, "top2": 55}.items()]
        >>> g = fusion_gain(rows)[-1]
        >>> g["k"], g["observed"], g["expected_uniform"], g["gain_uniform"], g["best_single"]
        (2, 55.0, 45.0, 10.0, 50.0)
    """
    w = dict(PAPER_TRAIN_PATCHES if weights is None else weights)
    out = []
    for m in _models(rows):
        for k in range(1, len(PAPER_RANKING) + 1):
            observed = _value(rows, m, f"top{k}", test_subset, metric)
            if k == 1 and math.isnan(observed):
                observed = _value(rows, m, PAPER_RANKING[0], test_subset, metric)
            if math.isnan(observed):
                continue
            members = PAPER_RANKING[:k]
            singles = [_value(rows, m, d, test_subset, metric) for d in members]
            if any(math.isnan(v) for v in singles):
                continue
            wts = np.array([w.get(d, 1.0) for d in members], float)
            expected_w = float(np.dot(wts, singles) / wts.sum())
            expected_u = float(np.mean(singles))
            out.append(
                {
                    "model": m,
                    "k": k,
                    "observed": observed,
                    "expected_uniform": expected_u,
                    "expected_weighted": expected_w,
                    "best_single": float(max(singles)),
                    "gain_uniform": observed - expected_u,
                    "gain_weighted": observed - expected_w,
                    "gain_over_best": observed - float(max(singles)),
                }
            )
    return out


# --------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise DependencyNotFoundError("plots need matplotlib: pip install 'nucfuse-datasets[plot]'") from None
    return plt


def plot_ranking(table: Sequence[Mapping[str, Any]], metric: str = "pq") -> Any:
    """Grouped bar chart of the ranking table (one bar per model, datasets in rank order).

    Example:
        >>> rows = [{"model": "m", "train_set": d, "test_subset": "overall", "pq": v}
        ...         for d, v in (("pcns", 55.0), ("puma", 54.0))]
        >>> len(plot_ranking(ranking_table(rows)).axes)
        1
    """
    plt = _pyplot()
    models = [k for k in table[0] if k not in ("train_set", "mean", "rank", "mean_rank") and not k.startswith("rank_")]
    x = np.arange(len(table))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, len(table) * 0.8), 4))
    for i, m in enumerate(models):
        ax.bar(x + i * width, [r[m] for r in table], width, label=m)
    ax.plot(x + width * (len(models) - 1) / 2, [r["mean"] for r in table], "k.-", label="mean")
    ax.set_xticks(x + width * (len(models) - 1) / 2, [r["train_set"] for r in table], rotation=45, ha="right")
    ax.set_ylabel(metric.upper())
    ax.legend()
    fig.tight_layout()
    return fig


def plot_cross_correlation(names: Sequence[str], matrix: np.ndarray, title: str = "C") -> Any:
    """Heat map of a (cross-correlation or performance) matrix with the values written in.

    Example:
        >>> import numpy as np
        >>> len(plot_cross_correlation(["a", "b"], np.array([[1.0, 1.5], [0.75, 1.0]])).axes)  # map + colour bar
        2
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("test subset j")
    ax.set_ylabel("trained on i")
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def plot_fusion_gain(gains: Sequence[Mapping[str, Any]], metric: str = "pq") -> Any:
    """Observed vs expected score of top-k fusion, per model.

    Example:
        >>> rows = [{"model": "m", "train_set": s, "test_subset": "overall", "pq": v}
        ...         for s, v in {"pcns": 50, "puma": 40, "top2": 55}.items()]
        >>> len(plot_fusion_gain(fusion_gain(rows)).axes)
        1
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in sorted({g["model"] for g in gains}):
        rows = [g for g in gains if g["model"] == m]
        ks = [g["k"] for g in rows]
        ax.plot(ks, [g["observed"] for g in rows], "o-", label=f"{m} observed")
        ax.plot(ks, [g["expected_weighted"] for g in rows], "--", label=f"{m} expected (weighted)")
    ax.set_xlabel("k (top-k datasets fused)")
    ax.set_ylabel(metric.upper())
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def _markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "_no rows_\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_report(rows: Sequence[Row], out: PathLike, metric: str = "pq", plots: bool = True) -> Path:
    """Write ``analysis.md`` (ranking, cross-correlation and fusion tables) and PNG figures into ``out``.

    Example:
        >>> rows = [{"model": "m", "train_set": d, "test_subset": "overall", "pq": v}
        ...         for d, v in (("pcns", 55.0), ("puma", 54.0))]
        >>> render_report(rows, getfixture("tmp_path"), plots=False).name
        'analysis.md'
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# NucFuse analysis ({metric.upper()})", ""]
    table = ranking_table(rows, metric=metric)
    parts += ["## Ranking (test subset: overall)", "", _markdown(table)]
    names, _P, C = cross_correlation(rows, metric=metric)
    if names:
        parts += ["## Cross-correlation matrix C (rows: trained on, columns: tested on)", ""]
        parts.append(
            _markdown(
                [{"train_set": a, **{b: float(C[i, j]) for j, b in enumerate(names)}} for i, a in enumerate(names)]
            )
        )
    gains = fusion_gain(rows, metric=metric)
    if gains:
        parts += ["## Top-k fusion", "", _markdown(gains)]
    (out / "analysis.md").write_text("\n".join(parts))
    if plots:
        plt = _pyplot()
        figures = []
        if table:
            figures.append(("ranking.png", plot_ranking(table, metric)))
        if names and np.isfinite(C).any():
            figures.append(("cross_correlation.png", plot_cross_correlation(names, C)))
        if gains:
            figures.append(("fusion_gain.png", plot_fusion_gain(gains, metric)))
        for fname, fig in figures:
            fig.savefig(out / fname, dpi=120)
            plt.close(fig)
    return out / "analysis.md"
