"""The benchmark commands of the nucfuse command line: evaluate, export, report, figures, leakage, splits, demo."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nucfuse_datasets.datasets._registry import get_dataset_class
from nucfuse_datasets.errors import ArgumentError


def _parse_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ArgumentError(f"--option expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        parsed: Any = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        out[key.strip()] = parsed
    return out


def _dataset_list(args: argparse.Namespace) -> list[str] | str | None:
    if not getattr(args, "datasets", None):
        return None
    if args.datasets.strip() == "available":
        return "available"
    return [get_dataset_class(n.strip()).name for n in args.datasets.split(",") if n.strip()]


def _class_map(text: str | None) -> dict[Any, int | None] | None:
    """``--class-map``: ``NAME=ID[,NAME=ID...]`` or a JSON file of ``{name: id}`` (``null`` leaves objects out)."""
    if not text:
        return None
    path = Path(text)
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArgumentError(f"--class-map {text}: cannot read the JSON map ({exc})") from None
        if not isinstance(data, dict):
            raise ArgumentError(f"--class-map {text}: expected a JSON object {{name: class id}}")
        return {k: (None if v is None else int(v)) for k, v in data.items()}
    out: dict[Any, int | None] = {}
    for pair in text.split(","):
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ArgumentError(f"--class-map expects NAME=ID[,NAME=ID...], got {pair!r}")
        key: Any = int(name) if name.strip().lstrip("-").isdigit() else name.strip()
        out[key] = None if value.strip().lower() in ("", "none", "null") else int(value)
    return out


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nucfuse_datasets.benchmark.evaluation import evaluate

    data: Any
    if args.dataset:
        if args.datasets:
            raise ArgumentError("pass --dataset (one dataset split) or --datasets (NucFuse-test subsets), not both")
        cls = get_dataset_class(args.dataset)
        data = cls(root=args.root, split=args.split or "all", progress=not args.quiet, **_parse_options(args.option))
    else:
        if args.split or args.option:
            raise ArgumentError("--split and --option go with --dataset")
        from nucfuse_datasets.benchmark.composite import NucFuseTest

        data = NucFuseTest(args.root, datasets=_dataset_list(args), test_ids=args.test_ids)
    report = evaluate(
        data,
        Path(args.predictions),
        protocol=args.protocol,
        classes=args.classes,
        map_predictions=args.map_predictions,
        radius=args.radius,
        missing=args.missing,
        format=args.format,
        allow_pickle=args.allow_pickle,
        class_map=_class_map(args.class_map),
        use_ignore=args.use_ignore,
        model=args.model,
        train_set=args.train_set,
        progress=not args.quiet,
        label_components=args.label_components,
    )
    absent = report.meta.get("missing_predictions") or []
    if absent:
        print(
            f"warning: {len(absent)} of {len(data)} tiles have no prediction in {args.predictions} and were scored "
            f"as empty (e.g. {', '.join(absent[:3])})",
            file=sys.stderr,
        )
    print(report.to_markdown())
    if args.out:
        paths = report.save(args.out)
        print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_export_test(args: argparse.Namespace) -> int:
    from nucfuse_datasets.benchmark.composite import NucFuseTest

    test = NucFuseTest(args.root, datasets=_dataset_list(args), test_ids=args.test_ids)
    stems = test.export(args.folder)
    print(f"{len(stems)} tiles written to {args.folder} (ids sha256 {test.ids_sha256})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nucfuse_datasets import export

    target = args.target.lower().replace("_", "-")
    if target == "nucfuse-train":
        from nucfuse_datasets.benchmark.composite import NucFuseTrain

        ds: Any = NucFuseTrain(args.root, datasets=_dataset_list(args), split=args.split or "train")
    elif target == "nucfuse-test":
        from nucfuse_datasets.benchmark.composite import NucFuseTest

        ds = NucFuseTest(args.root, datasets=_dataset_list(args))
    else:
        cls = get_dataset_class(args.target)
        ds = cls(root=args.root, split=args.split or "all", progress=False, **_parse_options(args.option))
    if args.format == "hf":
        out = export.export_hf(ds, args.out, overwrite=args.overwrite)
    else:
        out = export.export_webdataset(ds, args.out, shard_size=args.shard_size, overwrite=args.overwrite)
    print(f"{len(ds)} samples of {args.target} written to {out} ({args.format})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from nucfuse_datasets.benchmark.analysis import load_results, render_report

    rows = load_results(args.results)
    path = render_report(rows, args.out, metric=args.metric, plots=not args.no_plots)
    print(path.read_text())
    print(f"written to {args.out}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from nucfuse_datasets.benchmark.analysis import load_results
    from nucfuse_datasets.benchmark.analysis.figures import write_figures

    rows = load_results(args.results) if args.results else None
    for name, path in write_figures(args.out, rows, metric=args.metric).items():
        print(f"{name}: {path}")
    return 0


def cmd_leakage(args: argparse.Namespace) -> int:
    from nucfuse_datasets.benchmark.composite import NucFuseTest, NucFuseTrain
    from nucfuse_datasets.benchmark.leakage import audit

    names = _dataset_list(args)
    test = NucFuseTest(args.root, datasets=names, test_ids=args.test_ids)
    train = NucFuseTrain(args.root, datasets=names, split="all", test_ids=args.test_ids)
    report = audit(test=test, train=train)
    text = report.to_markdown()
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def cmd_splits(args: argparse.Namespace) -> int:
    from nucfuse_datasets.benchmark.protocol import PAPER_RANKING, ids_hash, pinned_test_ids, shipped_test_lists
    from nucfuse_datasets.benchmark.selection import _eligible, _resolve_parts, select_test_tiles

    names = _dataset_list(args) or list(PAPER_RANKING)
    default = list(PAPER_RANKING) if names == "available" else names
    doc = shipped_test_lists()
    differ = 0
    for tag, ds in _resolve_parts(names, default, args.root, False, None, None, for_test=True):
        sel = select_test_tiles(tag, ds, "rule")
        pinned = pinned_test_ids(ds.name)
        if pinned is None:
            state = "not pinned in this release"
        elif sorted(pinned) == sorted(sel.ids):
            state = "reproduces the shipped list"
        else:
            state = "DIFFERS from the shipped list"
            differ += 1
        print(
            f"{tag}: {len(sel.ids)} tiles from {sel.n_eligible} eligible ({sel.pool}), "
            f"sha256 {sel.sha256[:12]}: {state}"
        )
        if pinned is not None and sorted(pinned) != sorted(sel.ids):
            present = set(ds.sample_ids)
            only_pinned = sorted(set(pinned) - set(sel.ids))
            absent = [i for i in only_pinned if i not in present]
            print(
                f"  only in the shipped list: {', '.join(only_pinned) or '-'}"
                + (f" ({len(absent)} of them not in the local data)" if absent else "")
            )
            print(f"  only in the rebuilt list: {', '.join(sorted(set(sel.ids) - set(pinned))) or '-'}")
        entry = doc["datasets"].setdefault(tag, {})
        candidates = sorted(ds.sample_ids[i] for i in _eligible(ds)[0])
        entry.update(
            {
                "pinned": True,
                "ids": list(sel.ids),
                "sha256": sel.sha256,
                "rule": f"select_ids over the {sel.pool}",
                "candidates_count": len(candidates),
                "candidates_sha256": ids_hash(candidates),
                "source": f"the local copy under {args.root or '$NUCFUSE_DATA_DIR'} (nucfuse splits --write)",
            }
        )
        entry.pop("reason", None)
        entry.pop("candidates", None)  # the shipped candidate file no longer matches: ship one with the new list
    if args.write:
        Path(args.write).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"written to {args.write}")
    return 1 if differ else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from nucfuse_datasets.cli.demo import run_demo

    return run_demo(out=args.out, root=args.root)
