r"""Experiment 1 of the paper: one model per dataset → ranking table and cross-correlation matrix.

For every recipe and every dataset, train on that dataset alone (its 80 % patches, NucFuse-test tiles excluded),
evaluate ``best.pt`` on NucFuse-test, collect the per-subset scores into ``results.csv`` and write
``analysis/analysis.md`` (ranking table, cross-correlation matrix; :func:`nucfuse_datasets.analysis.render_report`)
plus ``ranking.csv``, ``performance_matrix.csv`` (P) and ``cross_correlation.csv`` (C).

Usage (from the repository root)::

    python -m examples.experiments.ranking --out runs/exp1 --root DATA --dry-run      # print the 20 runs
    python -m examples.experiments.ranking --out runs/exp1 --root DATA \
        --launcher "torchrun --nproc_per_node=4"                                       # run them
    # a quick look: --models hovernext --datasets pcns,puma --train-arg=--epochs=5

Datasets are names (``pcns``) or ``tag=name`` entries (``a=synthetic``, with ``--dataset-option a.seed=1``);
the evaluation covers the same list (the full NucFuse-test for the paper's 10 datasets).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.experiments._driver import (
    Run,
    add_common_arguments,
    collect,
    entry_list,
    execute,
    parse_entries,
    parse_models,
    print_plan,
    render,
    shared_args,
    write_results,
)
from nucfuse_datasets.analysis import cross_correlation, ranking_table
from nucfuse_datasets.protocol import PAPER_RANKING

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
            eval_args = ["--checkpoint", str(folder / "best.pt"), "--out", str(folder / "eval"), *eval_common]
            if not paper:
                eval_args += ["--datasets", test]
            runs.append(Run(recipe, tag, folder, train_args, eval_args))
    return runs


def _write_matrix(path: Path, names: Sequence[str], matrix: Any) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["trained_on \\ tested_on", *names])
        for name, row in zip(names, matrix, strict=True):
            writer.writerow([name, *(f"{v:.6g}" for v in row)])


def analyse(rows: list[dict[str, Any]], tags: Sequence[str], out: Path, *, plots: bool) -> Path:
    """Write ``results.csv``, ``ranking.csv``, the P and C matrices and ``analysis/``; returns ``analysis.md``."""
    write_results(rows, out / "results.csv")
    table = ranking_table(rows, train_sets=list(tags))
    if table:
        with open(out / "ranking.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(table)
    names, P, C = cross_correlation(rows, datasets=list(tags))
    _write_matrix(out / "performance_matrix.csv", names, P)
    _write_matrix(out / "cross_correlation.csv", names, C)
    return render(rows, out / "analysis", plots=plots)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or print) experiment 1; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m examples.experiments.ranking", description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--datasets", default=",".join(PAPER_RANKING), help="datasets to rank (names or tag=name)")
    args = parser.parse_args(argv)
    runs = build_runs(args)
    if args.dry_run:
        print_plan(runs, args.launcher)
        return 0
    execute(runs, launcher=args.launcher, rerun=args.rerun)
    rows = collect(runs)
    tags = [t for t, _ in parse_entries(args.datasets)]
    report = analyse(rows, tags, Path(args.out), plots=not args.no_plots)
    print(f"results: {Path(args.out) / 'results.csv'}; analysis: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
