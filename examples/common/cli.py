"""The shared runner: command lines of the recipes' training and evaluation entry points.

``python -m examples.train --recipe NAME [--config FILE] [overrides]`` and
``python -m examples.evaluate --recipe NAME --checkpoint FILE [overrides]``; the per-recipe modules
``python -m examples.<recipe>.train`` / ``.evaluate`` are shims onto the same functions (:func:`recipe_main`).
Run ``--help`` for the options. Values of
``--set section.key=value`` and ``--dataset-option tag.key=value`` are parsed as JSON when they parse (numbers,
booleans, lists), else taken as strings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from examples.common.checkpoint import load_checkpoint
from examples.common.config import apply_overrides, load_config, merge, parse_value, set_dotted
from examples.common.spec import RecipeSpec
from nucfuse_datasets.errors import ArgumentError, NucFuseError

__all__ = [
    "RECIPES",
    "evaluate_main",
    "get_spec",
    "parse_datasets",
    "recipe_main",
    "resolve_eval_config",
    "resolve_train_config",
    "runner_main",
    "train_main",
]

#: The recipe folders under ``examples/``; each has a ``spec.py`` exporting ``SPEC``.
RECIPES = ("hovernext", "cellvit")


def get_spec(name: str) -> RecipeSpec:
    """The :class:`RecipeSpec` of the recipe folder ``examples/<name>``.

    Example:
        >>> get_spec("hovernext").model_label
        'HoVerNeXt'
    """
    if name not in RECIPES:
        raise ArgumentError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    spec: RecipeSpec = importlib.import_module(f"examples.{name}.spec").SPEC
    return spec


def recipe_main(name: str, command: str, module: str = "") -> Callable[[Sequence[str] | None], int]:
    """The ``main(argv)`` of ``python -m examples.<name>.<command>`` (``command``: ``"train"`` or ``"evaluate"``).

    A shim passes its ``__name__`` as ``module``: run as ``__main__`` (``python -m``), the entry point runs at once
    with ``sys.argv[1:]`` and exits with its code.

    Example:
        >>> main = recipe_main("cellvit", "train")  # what examples/cellvit/train.py exports
    """
    entry = {"train": train_main, "evaluate": evaluate_main}[command]

    def main(argv: Sequence[str] | None = None) -> int:
        """Run the entry point with ``argv`` (default: ``sys.argv[1:]``)."""
        return entry(get_spec(name), argv)

    main.__qualname__ = main.__name__ = "main"
    main.__module__ = f"examples.{name}.{command}"
    if module == "__main__":
        raise SystemExit(main(sys.argv[1:]))
    return main


def runner_main(command: str, argv: Sequence[str] | None = None) -> int:
    """``python -m examples.<command> --recipe NAME ...``: pick the recipe, then run its ``command`` entry point."""
    pre = argparse.ArgumentParser(prog=f"python -m examples.{command}", add_help=False)
    pre.add_argument("--recipe", choices=RECIPES, required=True, help="recipe folder under examples/")
    args, rest = pre.parse_known_args(argv)
    return recipe_main(args.recipe, command)(rest)


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


def _parser(spec: RecipeSpec, command: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m examples.{spec.name}.{command}", description=description)
    _common_arguments(p)
    return p


def _train_parser(spec: RecipeSpec) -> argparse.ArgumentParser:
    p = _parser(
        spec, "train", f"Train {spec.model_label} on NucFuse-train as run in NucFuseRank (see examples/README.md)."
    )
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
    p = _parser(spec, "evaluate", f"Evaluate a {spec.model_label} checkpoint on NucFuse-test (whole-tile inference).")
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
    p.add_argument(
        "--protocol",
        choices=("pannuke", "conic", "hovernet", "none"),
        help="class-aware checkpoints: the class scoring protocol (default: pannuke for PanNuke, else hovernet; "
        "none = instance metrics only)",
    )
    p.add_argument(
        "--split",
        help="score this whole split of the one dataset in --datasets (e.g. fold3 of pannuke) instead of NucFuse-test",
    )
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
        "eval.protocol": args.protocol,
        "eval.split": args.split,
    }.items():
        if value is not None:
            set_dotted(cfg, key, value)
    return cfg


def _guarded(run: Callable[[], int]) -> int:
    """``run()``, with a library error printed as one ``error:`` line and exit code 2."""
    try:
        return run()
    except NucFuseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def train_main(spec: RecipeSpec, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m examples.<recipe>.train``; returns the exit code."""
    from examples.common.training import train

    args = _train_parser(spec).parse_args(argv)

    def run() -> int:
        cfg, resume = resolve_train_config(spec, args)
        if args.print_config:
            print(json.dumps(cfg, indent=1))
            return 0
        summary = train(spec, cfg, resume=resume)
        if _env_rank() == 0:
            print(json.dumps(summary, indent=1), flush=True)
        return 0

    return _guarded(run)


def evaluate_main(spec: RecipeSpec, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m examples.<recipe>.evaluate``; returns the exit code."""
    from examples.common.evaluation import EvaluationScopeWarning, evaluate_checkpoint, evaluation_scope

    args = _eval_parser(spec).parse_args(argv)

    def run() -> int:
        cfg = resolve_eval_config(spec, args)
        if args.print_config:
            print(json.dumps(cfg, indent=1))
            return 0
        progress = None if cfg["train"].get("progress", True) else False
        scope = evaluation_scope(cfg)
        names = ", ".join(scope.datasets)
        what = f"split {scope.split!r} of {names}" if scope.split else f"NucFuse-test tiles of {names}"
        print(f"scoring the {what}" + ("" if scope.split else f" (test_ids={scope.test_ids!r})"), flush=True)
        if scope.message:
            print(f"WARNING: {scope.message}", file=sys.stderr, flush=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=EvaluationScopeWarning)  # printed above
            report, paths = evaluate_checkpoint(spec, args.checkpoint, cfg, progress=progress)
        print(report.to_markdown())
        print("report files: " + ", ".join(str(p) for p in paths.values()), flush=True)
        return 0

    return _guarded(run)


def _env_rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))
