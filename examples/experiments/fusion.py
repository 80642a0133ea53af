r"""Experiment 2 of the paper: top-k fusion, k = 1..10.

For every recipe and every k, train on the first k datasets of the ranking fused (NucFuse-train is k = 9),
evaluate ``best.pt`` on NucFuse-test, collect the scores into ``results.csv`` (train sets ``top1``..``top10``) and
write ``analysis/analysis.md`` with :func:`nucfuse_datasets.benchmark.analysis.render_report`. Pass experiment 1's
``results.csv`` with ``--singles`` to get the fusion table: ``observed`` top-k scores against the ``expected``
curve (per test subset the best of the k members' single-dataset scores, averaged over the subsets; see
:mod:`nucfuse_datasets.benchmark.analysis.fusion`) and the per-step increments (the paper's Figures 5–7).

Usage (from the repository root)::

    python -m examples.experiments.fusion --out runs/exp2 --root DATA --dry-run
    python -m examples.experiments.fusion --out runs/exp2 --root DATA --singles runs/exp1/results.csv \
        --launcher "torchrun --nproc_per_node=4"

``--sources`` replaces the paper's ranking by another ordered list (names or ``tag=name``; e.g. synthetic
sources for a dry run on a laptop); ``--ks`` selects k values (``1-10``, ``1,3,9``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

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
from nucfuse_datasets.benchmark.analysis import load_results
from nucfuse_datasets.benchmark.protocol import PAPER_RANKING
from nucfuse_datasets.errors import ArgumentError

__all__ = ["build_runs", "main", "parse_ks"]


def parse_ks(text: str, n: int) -> list[int]:
    """``"1-10"`` / ``"1,3,9"`` / ``"2-4,9"`` → sorted k values within ``1..n``."""
    ks: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        values = range(int(lo), int(hi) + 1) if sep else [int(lo)]
        ks.update(values)
    bad = sorted(k for k in ks if not 1 <= k <= n)
    if bad or not ks:
        raise ArgumentError(f"k values must lie in 1..{n}, got {sorted(ks)}")
    return sorted(ks)


def build_runs(args: argparse.Namespace) -> list[Run]:
    """The runs of experiment 2: every recipe × every k."""
    sources = parse_entries(args.sources)
    paper = [t for t, _ in sources] == list(PAPER_RANKING) and all(t == n for t, n in sources)
    test = parse_entries(args.test_datasets) if args.test_datasets else sources
    test_is_paper = [t for t, _ in test] == list(PAPER_RANKING) and all(t == n for t, n in test)
    out = Path(args.out)
    runs = []
    for recipe in parse_models(args.models):
        train_common, eval_common = shared_args(args, recipe)
        for k in parse_ks(args.ks, len(sources)):
            label = f"top{k}"
            folder = out / recipe / label
            data = ["--k", str(k)] if paper else ["--datasets", entry_list(sources[:k])]
            train_args = [*train_common, *data, "--out", str(folder), "--train-set", label]
            eval_args = ["--checkpoint", str(folder / "best.pt"), "--out", str(folder / "eval"), *eval_common]
            eval_args += ["--datasets", "nucfuse-test" if test_is_paper else entry_list(test)]
            runs.append(Run(recipe, label, folder, train_args, eval_args))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or print) experiment 2; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m examples.experiments.fusion", description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--ks", default="1-10", help="k values (default 1-10)")
    parser.add_argument("--sources", default=",".join(PAPER_RANKING), help="the ranking to take the top k from")
    parser.add_argument("--test-datasets", help="NucFuse-test subsets (default: the sources)")
    parser.add_argument("--singles", help="experiment 1's results.csv, for the fusion-gain table")
    args = parser.parse_args(argv)
    rows = run_or_plan(build_runs(args), args)
    if rows is None:
        return 0
    out = Path(args.out)
    write_results(rows, out / "results.csv")
    merged = rows + (load_results(args.singles) if args.singles else [])
    ranking = [t for t, _ in parse_entries(args.sources)]
    report = render(merged, out / "analysis", plots=not args.no_plots, ranking=ranking)
    print(f"results: {out / 'results.csv'}; analysis: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
