"""Command lines of the recipes' training and evaluation entry points (shared by both recipes).

``python -m examples.<recipe>.train [--config FILE] [overrides]`` and
``python -m examples.<recipe>.evaluate --checkpoint FILE [overrides]``; run ``--help`` for the options. Values of
``--set section.key=value`` and ``--dataset-option tag.key=value`` are parsed as JSON when they parse (numbers,
booleans, lists), else taken as strings.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.common.checkpoint import load_checkpoint
from examples.common.config import apply_overrides, load_config, merge, parse_value, set_dotted
from examples.common.spec import RecipeSpec
from nucfuse_datasets.errors import ArgumentError, NucFuseError

__all__ = ["evaluate_main", "parse_datasets", "resolve_eval_config", "resolve_train_config", "train_main"]


def parse_datasets(text: str) -> list[str] | dict[str, str]:
    """``"a,b"`` → ``["a", "b"]``; ``"x=synthetic,pcns"`` → ``{"x": "synthetic", "pcns": "pcns"}`` (tag = name)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        return []
    if not any("=" in t for t in items):
        return items
    out: dict[str, str] = {}
    for t in items:
        tag, _, name = t.partition("=")
        out[tag.strip()] = (name or tag).strip()
    return out


def _dataset_option(cfg: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    tag, dot, opt = key.partition(".")
    if not sep or not dot or not tag or not opt:
        raise ArgumentError(f"--dataset-option {item!r} must look like TAG.KEY=VALUE (e.g. synthetic.n_tiles=20)")
    set_dotted(cfg, f"data.dataset_options.{tag.strip()}.{opt.strip()}", parse_value(raw.strip()))


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML or JSON config file (defaults: the authors' constants)")
    parser.add_argument("--root", help="data root (default: $NUCFUSE_DATA_DIR or the user cache)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="auto = CUDA when available, else CPU")
    parser.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="TAG.KEY=VALUE",
        help="constructor option of a source dataset (repeatable), e.g. synthetic.n_tiles=20",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="any config value (repeatable)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def _train_parser(spec: RecipeSpec) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m examples.{spec.name}.train",
        description=f"Train {spec.model_label} on NucFuse-train as run in NucFuseRank (see examples/README.md).",
    )
    _common_arguments(p)
    p.add_argument("--epochs", type=int, help="epochs (recipe: 300)")
    p.add_argument("--batch-size", type=int, help="batch size per process (recipe: 5)")
    p.add_argument("--k", type=int, help="train on the top-k ranked datasets (9 = NucFuse-train)")
    p.add_argument("--datasets", help="comma-separated dataset names or tag=name entries instead of --k")
    p.add_argument("--out", help="output folder (checkpoints, metrics.csv)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="continue from a last.pt (default: <out>/last.pt); the checkpoint's config is the base",
    )
    p.add_argument("--max-steps-per-epoch", type=int, help="cap training steps per epoch (0 = all)")
    p.add_argument("--max-val-patches", type=int, help="cap validation patches (0 = all)")
    p.add_argument(
        "--pretrained",
        help="encoder weights: a local file, or 'auto' (the default: the paper's weights from <root>/weights, "
        "else downloaded)",
    )
    p.add_argument(
        "--no-pretrained", action="store_true", help="random encoder initialisation (smoke tests, CPU benchmarks)"
    )
    p.add_argument("--seed", type=int, help="random seed (recipe: 42)")
    p.add_argument("--num-workers", type=int, help="DataLoader workers")
    p.add_argument("--train-set", help="training-set label for reports (default: the dataset or top<k>)")
    return p


def _eval_parser(spec: RecipeSpec) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m examples.{spec.name}.evaluate",
        description=f"Evaluate a {spec.model_label} checkpoint on NucFuse-test (whole-tile inference).",
    )
    _common_arguments(p)
    p.add_argument("--checkpoint", required=True, help="best.pt (or last.pt) written by the training entry point")
    p.add_argument(
        "--datasets",
        help="NucFuse-test subsets (names or tag=name; default: the datasets the checkpoint was trained on; "
        "'nucfuse-test': the paper's full NucFuse-test)",
    )
    p.add_argument(
        "--test-ids",
        choices=("pinned", "rule"),
        help="shipped NucFuse-test id lists or the rule (default: the training's, i.e. the tiles it left out)",
    )
    p.add_argument("--out", help="report folder (default: <checkpoint folder>/eval)")
    p.add_argument("--tile", type=int, help="sliding-window tile side (0 = whole tile, as in the paper)")
    p.add_argument("--overlap", type=int, help="sliding-window overlap")
    p.add_argument("--train-set", help="training-set label in the report (default: from the checkpoint)")
    return p


def _common_overrides(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if args.root is not None:
        set_dotted(cfg, "data.root", args.root)
    if args.device is not None:
        set_dotted(cfg, "train.device", args.device)
    for item in args.dataset_option:
        _dataset_option(cfg, item)
    if args.no_progress:
        set_dotted(cfg, "train.progress", False)
    if getattr(args, "train_set", None) is not None:
        set_dotted(cfg, "train.train_set", args.train_set)
    return apply_overrides(cfg, args.set)


def resolve_train_config(spec: RecipeSpec, args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """The run configuration and the checkpoint to resume from (``None`` for a fresh run)."""
    resume: Path | None = None
    if args.resume is not None:
        if args.resume == "auto":
            base = spec.default_config()
            if args.config:
                base = merge(base, load_config(args.config))
            out = Path(args.out or base["train"]["out"])
            resume = out / "last.pt"
        else:
            resume = Path(args.resume)
        cfg = load_checkpoint(resume)["config"]
        if args.config:
            cfg = merge(cfg, load_config(args.config))
    else:
        cfg = spec.default_config()
        if args.config:
            cfg = merge(cfg, load_config(args.config))
    cfg = _common_overrides(cfg, args)
    scalar = {
        "recipe.epochs": args.epochs,
        "recipe.batch_size": args.batch_size,
        "recipe.seed": args.seed,
        "recipe.num_workers": args.num_workers,
        "train.out": args.out,
        "train.max_steps_per_epoch": args.max_steps_per_epoch,
        "train.max_val_patches": args.max_val_patches,
        "model.pretrained": args.pretrained,
    }
    for key, value in scalar.items():
        if value is not None:
            set_dotted(cfg, key, value)
    if args.no_pretrained:
        if args.pretrained is not None:
            raise ArgumentError("pass either --pretrained or --no-pretrained, not both")
        set_dotted(cfg, "model.pretrained", "")
    if args.k is not None:
        set_dotted(cfg, "data.k", args.k)
        set_dotted(cfg, "data.datasets", [])
    if args.datasets is not None:
        set_dotted(cfg, "data.datasets", parse_datasets(args.datasets))
    spec.recipe(cfg)  # validate the recipe section early
    return cfg, resume


def resolve_eval_config(spec: RecipeSpec, args: argparse.Namespace) -> dict[str, Any]:
    """The checkpoint's configuration with the evaluation overrides applied."""
    cfg = load_checkpoint(args.checkpoint)["config"]
    if args.config:
        cfg = merge(cfg, load_config(args.config))
    cfg = _common_overrides(cfg, args)
    if args.datasets is not None:
        set_dotted(cfg, "eval.datasets", parse_datasets(args.datasets))
    for key, value in {
        "eval.test_ids": args.test_ids,
        "eval.out": args.out,
        "eval.tile": args.tile,
        "eval.overlap": args.overlap,
    }.items():
        if value is not None:
            set_dotted(cfg, key, value)
    return cfg


def train_main(spec: RecipeSpec, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m examples.<recipe>.train``; returns the exit code."""
    from examples.common.training import train

    args = _train_parser(spec).parse_args(argv)
    try:
        cfg, resume = resolve_train_config(spec, args)
    except NucFuseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg, indent=1))
        return 0
    try:
        summary = train(spec, cfg, resume=resume)
    except NucFuseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if _env_rank() == 0:
        print(json.dumps(summary, indent=1), flush=True)
    return 0


def evaluate_main(spec: RecipeSpec, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m examples.<recipe>.evaluate``; returns the exit code."""
    from examples.common.evaluation import EvaluationScopeWarning, evaluate_checkpoint

    args = _eval_parser(spec).parse_args(argv)
    try:
        cfg = resolve_eval_config(spec, args)
    except NucFuseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg, indent=1))
        return 0
    progress = None if cfg["train"].get("progress", True) else False
    from examples.common.evaluation import evaluation_scope

    scope = evaluation_scope(cfg)
    print(f"scoring the NucFuse-test tiles of {', '.join(scope.datasets)} (test_ids={scope.test_ids!r})", flush=True)
    if scope.message:
        print(f"WARNING: {scope.message}", file=sys.stderr, flush=True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=EvaluationScopeWarning)  # printed above
            report, paths = evaluate_checkpoint(spec, args.checkpoint, cfg, progress=progress)
    except NucFuseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.to_markdown())
    print("report files: " + ", ".join(str(p) for p in paths.values()), flush=True)
    return 0


def _env_rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))
