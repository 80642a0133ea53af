r"""Experiment 1 of the paper: one model per dataset → ranking table and cross-correlation matrix.

For every recipe and every dataset, train on that dataset alone (its 80 % patches, NucFuse-test tiles excluded),
evaluate ``best.pt`` on NucFuse-test, collect the per-subset scores into ``results.csv`` and write
``analysis/analysis.md`` (ranking table, cross-correlation matrix;
:func:`nucfuse_datasets.benchmark.analysis.render_report`)
plus ``ranking.csv``, ``performance_matrix.csv`` (P) and ``cross_correlation.csv`` (C).

Usage (from the repository root)::

    python -m examples.experiments.ranking --out runs/exp1 --root DATA --dry-run      # print the 20 runs
    python -m examples.experiments.ranking --out runs/exp1 --root DATA \
        --launcher "torchrun --nproc_per_node=4"                                       # run them
    # a quick look: --models hovernext --datasets pcns,puma --train-arg=--epochs=5

Datasets are names (``pcns``) or ``tag=name`` entries (``a=synthetic``, with ``--dataset-option a.seed=1``);
the evaluation covers the same list (the full NucFuse-test for the paper's 10 datasets).

``--stain`` runs the paper's stain-normalisation experiment (§4.3.1): every training with the recipes'
``data.stain`` option on (non-deterministic Macenko stain augmentation over 7 MoNuSeg references, p = 0.5, and
Avg-post normalisation of validation and test tiles; :mod:`examples.common.stain_option`), and ``analysis.md``
ends with what the paper reports for it (HoVerNeXt mean PQ 48.10 → 47.49, NuInsSeg 8th → 5th) next to this run's
numbers. Use a separate ``--out`` for it.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from examples.experiments._driver import (
    Run,
    add_common_arguments,
    entry_list,
    parse_entries,
    parse_models,
    render,
    run_or_plan,
    shared_args,
    write_results,
)
from nucfuse_datasets.benchmark import paper
from nucfuse_datasets.benchmark.analysis import cross_correlations, ranking_table
from nucfuse_datasets.benchmark.protocol import PAPER_RANKING

__all__ = ["build_runs", "main"]


def build_runs(args: argparse.Namespace) -> list[Run]:
    """The runs of experiment 1: every recipe × every dataset."""
    entries = parse_entries(args.datasets)
    test = entry_list(entries)
    paper = [t for t, _ in entries] == list(PAPER_RANKING) and all(t == n for t, n in entries)
    out = Path(args.out)
    runs = []
    for recipe in parse_models(args.models):
        train_common, eval_common = shared_args(args, recipe)
        for tag, name in entries:
            folder = out / recipe / tag
            train_args = [*train_common, "--datasets", entry_list([(tag, name)]), "--out", str(folder)]
            train_args += ["--train-set", tag]
            if getattr(args, "stain", False):
                train_args += [
                    "--set",
                    "data.stain.enabled=true",
                    "--set",
                    f"data.stain.references={args.stain_references}",
                ]
            eval_args = ["--checkpoint", str(folder / "best.pt"), "--out", str(folder / "eval"), *eval_common]
            eval_args += ["--datasets", "nucfuse-test" if paper else test]  # every model on the whole test set
            runs.append(Run(recipe, tag, folder, train_args, eval_args))
    return runs


def _write_matrix(path: Path, names: Sequence[str], matrix: Any) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["trained_on \\ tested_on", *names])
        for name, row in zip(names, matrix, strict=True):
            writer.writerow([name, *(f"{v:.6g}" for v in row)])


def stain_section(table: Sequence[dict[str, Any]]) -> str:
    """Markdown: what the paper reports for the stain experiment next to this run's ranking table."""
    rep = paper.reported()["stain"]
    lines = [
        "## Stain normalisation: the paper's numbers and this run",
        "",
        f"The paper ({rep['model']}, §4.3.1): mean PQ {rep['mean_pq']['without']:.2f} without, "
        f"{rep['mean_pq']['with']:.2f} with stain normalisation; NuInsSeg moved from rank "
        f"{rep['rank_change']['nuinsseg']['without']} to {rep['rank_change']['nuinsseg']['with']}; improved: "
        f"{', '.join(rep['improved'])}; decreased: {', '.join(rep['decreased'])}.",
        "",
    ]
    models = [k[len("rank_") :] for k in (table[0] if table else {}) if k.startswith("rank_")]
    for m in models:
        mean = float(np.nanmean([r[m] for r in table]))
        ranks = ", ".join(f"{r['train_set']} {r[f'rank_{m}']:g}" for r in table)
        lines.append(f"* This run, {m}: mean PQ {mean:.2f}; PQ rank per dataset: {ranks}.")
    return "\n".join(lines) + "\n"


def _write_matrices(rows: list[dict[str, Any]], tags: Sequence[str], out: Path) -> None:
    per_model = cross_correlations(rows, datasets=list(tags))
    for model, (names, P, C) in per_model.items():
        suffix = "" if len(per_model) == 1 else f"_{model.lower()}"
        _write_matrix(out / f"performance_matrix{suffix}.csv", names, P)
        _write_matrix(out / f"cross_correlation{suffix}.csv", names, C)


def analyse(rows: list[dict[str, Any]], tags: Sequence[str], out: Path, *, plots: bool, stain: bool = False) -> Path:
    """Write ``results.csv``, ``ranking.csv``, the P and C matrices and ``analysis/``; returns ``analysis.md``.

    The matrices are per model (``cross_correlation_<model>.csv``; no suffix when the run has one model), with the
    default relative formula ``C[i, j] = P[i, j] / P[j, j]``.
    """
    write_results(rows, out / "results.csv")
    table = ranking_table(rows, train_sets=list(tags))
    if table:
        with open(out / "ranking.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(table)
    _write_matrices(rows, tags, out)
    report = render(rows, out / "analysis", plots=plots)
    if stain:
        with open(report, "a", encoding="utf-8") as fh:
            fh.write("\n" + stain_section(table))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or print) experiment 1; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m examples.experiments.ranking", description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--datasets", default=",".join(PAPER_RANKING), help="datasets to rank (names or tag=name)")
    parser.add_argument("--stain", action="store_true", help="the stain-normalisation experiment (data.stain on)")
    parser.add_argument(
        "--stain-references", default="monuseg", help="'monuseg' (7 MoNuSeg organ images) or a JSON of StainEstimates"
    )
    args = parser.parse_args(argv)
    rows = run_or_plan(build_runs(args), args)
    if rows is None:
        return 0
    tags = [t for t, _ in parse_entries(args.datasets)]
    report = analyse(rows, tags, Path(args.out), plots=not args.no_plots, stain=args.stain)
    print(f"results: {Path(args.out) / 'results.csv'}; analysis: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
