"""``analysis.md``: the ranking, the cross-correlation matrices, the top training sets and the fusion tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nucfuse_datasets.benchmark.analysis._rows import Row
from nucfuse_datasets.benchmark.analysis.correlation import cross_correlations, top_training_sets
from nucfuse_datasets.benchmark.analysis.fusion import fusion_gain
from nucfuse_datasets.benchmark.analysis.ranking import ranking_table
from nucfuse_datasets.io.config import PathLike

__all__ = ["render_report"]


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


def render_report(
    rows: Sequence[Row],
    out: PathLike,
    metric: str = "pq",
    plots: bool = True,
    ranking: Sequence[str] | None = None,
) -> Path:
    """Write ``analysis.md`` (ranking, cross-correlation per model, top-3 training sets, fusion) into ``out``.

    ``ranking`` is the order the ``top<k>`` runs took their datasets from (default: the paper's ranking).

    With ``plots`` (needs matplotlib, the ``plot`` extra) the figures of
    :func:`nucfuse_datasets.benchmark.analysis.figures.result_figures` are written next to it, with the paper's values
    overlaid where the rows have the same cells.

    Example:
        >>> rows = [{"model": "m", "train_set": d, "test_subset": "overall", "pq": v}
        ...         for d, v in (("pcns", 55.0), ("puma", 54.0))]
        >>> render_report(rows, getfixture("tmp_path"), plots=False).name
        'analysis.md'
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# NucFuse analysis ({metric.upper()})", ""]
    parts += ["## Ranking (test subset: overall)", "", _markdown(ranking_table(rows, metric=metric))]
    for model, (names, _P, C) in cross_correlations(rows, metric=metric).items():
        parts += [f"## Cross-correlation C = P[i, j] / P[j, j], {model} (rows: trained on, columns: tested on)", ""]
        parts.append(
            _markdown(
                [{"train_set": a, **{b: float(C[i, j]) for j, b in enumerate(names)}} for i, a in enumerate(names)]
            )
        )
    top = top_training_sets(rows, metric=metric)
    if top:
        parts += ["## Top three training datasets per test subset", "", _markdown(top)]
    gains = fusion_gain(rows, metric=metric, ranking=ranking)
    if gains:
        parts += ["## Top-k fusion (expected: best member per test subset)", "", _markdown(gains)]
    (out / "analysis.md").write_text("\n".join(parts))
    if plots:
        from nucfuse_datasets.benchmark.analysis.figures import result_figures

        result_figures(rows, out, metric=metric, ranking=ranking)
    return out / "analysis.md"
