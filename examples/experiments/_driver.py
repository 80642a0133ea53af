"""Shared machinery of the experiment drivers: runs, commands, execution, result collection.

A *run* is one training (``python -m examples.<recipe>.train ...``) followed by one evaluation of its ``best.pt``
on NucFuse-test (``python -m examples.<recipe>.evaluate ...``). The drivers build the runs of an experiment, print
them (``--dry-run``) or execute them (in this process, or through ``--launcher``, e.g. ``torchrun``), then collect
every ``EvaluationReport.to_rows()`` into ``results.csv`` and call
:func:`nucfuse_datasets.benchmark.analysis.render_report`.

Re-running a driver skips runs whose report exists and resumes trainings that have a ``last.pt``.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nucfuse_datasets.benchmark.evaluation import LEADERBOARD_METRICS, EvaluationReport
from nucfuse_datasets.errors import ArgumentError

__all__ = [
    "RECIPES",
    "RESULT_COLUMNS",
    "Run",
    "add_common_arguments",
    "collect",
    "entry_list",
    "execute",
    "parse_entries",
    "parse_models",
    "print_plan",
    "render",
    "run_or_plan",
    "shared_args",
    "write_results",
]

#: recipe -> (training module, evaluation module)
RECIPES = {
    "hovernext": ("examples.hovernext.train", "examples.hovernext.evaluate"),
    "cellvit": ("examples.cellvit.train", "examples.cellvit.evaluate"),
}
#: Columns of ``results.csv`` (the rows of :meth:`EvaluationReport.to_rows`).
RESULT_COLUMNS = ("model", "train_set", "test_subset", *LEADERBOARD_METRICS)


@dataclass
class Run:
    """One training + evaluation.

    Attributes:
        recipe: ``"hovernext"`` or ``"cellvit"``.
        train_set: training-set label (``"pcns"``, ``"top3"``...).
        folder: run folder (checkpoints, ``metrics.csv``, ``eval/report.*``).
        train_args: arguments of the training entry point.
        eval_args: arguments of the evaluation entry point.
    """

    recipe: str
    train_set: str
    folder: Path
    train_args: list[str] = field(default_factory=list)
    eval_args: list[str] = field(default_factory=list)

    @property
    def report(self) -> Path:
        """The evaluation report JSON."""
        return self.folder / "eval" / "report.json"

    @property
    def last(self) -> Path:
        """The training checkpoint to resume from."""
        return self.folder / "last.pt"


def parse_models(text: str) -> list[str]:
    """``"hovernext,cellvit"`` → the recipe names (validated)."""
    models = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in models if m not in RECIPES]
    if unknown or not models:
        raise ArgumentError(f"unknown models {unknown}; valid: {sorted(RECIPES)}")
    return models


def parse_entries(text: str) -> list[tuple[str, str]]:
    """``"pcns,a=synthetic"`` → ``[("pcns", "pcns"), ("a", "synthetic")]`` (tag, dataset name)."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        tag, _, name = item.partition("=")
        out.append((tag.strip(), (name or tag).strip()))
    if not out:
        raise ArgumentError("no datasets given")
    tags = [t for t, _ in out]
    if len(set(tags)) != len(tags):
        raise ArgumentError(f"duplicate dataset tags {tags}")
    return out


def entry_list(entries: Iterable[tuple[str, str]]) -> str:
    """The inverse of :func:`parse_entries` (plain names where tag == name)."""
    return ",".join(t if t == n else f"{t}={n}" for t, n in entries)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every driver has."""
    parser.add_argument("--out", required=True, help="experiment folder (runs, results.csv, analysis/)")
    parser.add_argument("--models", default="hovernext,cellvit", help="comma-separated recipes")
    for name in RECIPES:
        parser.add_argument(f"--config-{name}", help=f"config file of the {name} trainings")
    parser.add_argument("--root", help="data root")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training/evaluation device")
    parser.add_argument(
        "--dataset-option", action="append", default=[], metavar="TAG.KEY=VALUE", help="forwarded to every run"
    )
    parser.add_argument("--train-arg", action="append", default=[], metavar="ARG", help="extra training argument")
    parser.add_argument("--eval-arg", action="append", default=[], metavar="ARG", help="extra evaluation argument")
    parser.add_argument("--launcher", help='prefix of the training command, e.g. "torchrun --nproc_per_node=4"')
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    parser.add_argument("--rerun", action="store_true", help="retrain and re-evaluate runs that already have a report")
    parser.add_argument("--no-plots", action="store_true", help="no PNG figures in analysis/")


def shared_args(args: argparse.Namespace, recipe: str) -> tuple[list[str], list[str]]:
    """``(training args, evaluation args)`` common to every run of ``recipe``."""
    train: list[str] = []
    evaluate: list[str] = []
    config = getattr(args, f"config_{recipe}")
    if config:
        train += ["--config", config]
    for opt, value in (("--root", args.root), ("--device", args.device)):
        if value:
            train += [opt, value]
            evaluate += [opt, value]
    for item in args.dataset_option:
        train += ["--dataset-option", item]
        evaluate += ["--dataset-option", item]
    return train + list(args.train_arg), evaluate + list(args.eval_arg)


def _command(module: str, argv: Sequence[str], launcher: str | None, *, display: bool) -> list[str]:
    if launcher:
        return [*shlex.split(launcher), "-m", module, *argv]
    return ["python" if display else sys.executable, "-m", module, *argv]


def _train_argv(run: Run, resume: bool) -> list[str]:
    return [*run.train_args, "--resume", str(run.last)] if resume else list(run.train_args)


def print_plan(runs: Sequence[Run], launcher: str | None, file: Any = None) -> None:
    """Print the shell commands of every run (``--dry-run``)."""
    file = file or sys.stdout
    for run in runs:
        train_mod, eval_mod = RECIPES[run.recipe]
        print(f"# {run.recipe} / {run.train_set}", file=file)
        print(shlex.join(_command(train_mod, run.train_args, launcher, display=True)), file=file)
        print(shlex.join(_command(eval_mod, run.eval_args, None, display=True)), file=file)


def _call(module: str, argv: Sequence[str], launcher: str | None) -> None:
    if launcher:
        subprocess.run(_command(module, argv, launcher, display=False), check=True)
        return
    code = importlib.import_module(module).main(list(argv))
    if code:
        raise RuntimeError(f"{module} {shlex.join(argv)} exited with {code}")


def execute(runs: Sequence[Run], *, launcher: str | None = None, rerun: bool = False) -> None:
    """Train and evaluate every run (skipping finished ones unless ``rerun``; resuming interrupted trainings)."""
    for i, run in enumerate(runs, 1):
        train_mod, eval_mod = RECIPES[run.recipe]
        if run.report.is_file() and not rerun:
            print(f"[{i}/{len(runs)}] {run.recipe} / {run.train_set}: report exists, skipped", flush=True)
            continue
        resume = run.last.is_file() and not rerun
        print(f"[{i}/{len(runs)}] {run.recipe} / {run.train_set}: {'resuming' if resume else 'training'}", flush=True)
        _call(train_mod, _train_argv(run, resume), launcher)
        _call(eval_mod, run.eval_args, None)


def collect(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Result rows of every run that has a report (missing reports are reported and skipped)."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        if not run.report.is_file():
            print(f"warning: no report for {run.recipe} / {run.train_set} ({run.report})", file=sys.stderr)
            continue
        rows += EvaluationReport.from_json(run.report.read_text()).to_rows()
    return rows


def run_or_plan(runs: Sequence[Run], args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """``--dry-run``: print the plan and return ``None``; else execute the runs and return their result rows."""
    if args.dry_run:
        print_plan(runs, args.launcher)
        return None
    execute(runs, launcher=args.launcher, rerun=args.rerun)
    return collect(runs)


def write_results(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Write result rows as CSV (the format :func:`nucfuse_datasets.benchmark.analysis.load_results` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(RESULT_COLUMNS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def render(rows: Sequence[dict[str, Any]], out: Path, *, plots: bool, ranking: Sequence[str] | None = None) -> Path:
    """:func:`nucfuse_datasets.benchmark.analysis.render_report` into ``out``.

    Figures only when matplotlib is installed.
    """
    from nucfuse_datasets.benchmark.analysis import render_report

    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed: analysis without figures", file=sys.stderr)
            plots = False
    return render_report(rows, out, plots=plots, ranking=ranking)
