"""The ``nucfuse`` command line: list, info, download, prepare, verify, demo (and evaluate/report).

Example:
    $ nucfuse list
    $ nucfuse info monuseg
    $ nucfuse download --all --root /data/nucfuse
    $ nucfuse prepare monuseg
    $ nucfuse verify monuseg --repair
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence

from nucfuse_datasets._version import __version__
from nucfuse_datasets.cli._benchmark import (  # noqa: F401 - re-exported
    _dataset_list,
    _parse_options,
    cmd_demo,
    cmd_evaluate,
    cmd_export,
    cmd_export_test,
    cmd_figures,
    cmd_leakage,
    cmd_report,
    cmd_splits,
)
from nucfuse_datasets.datasets._registry import dataset_classes, get_dataset_class, list_datasets
from nucfuse_datasets.errors import ArgumentError, NucFuseError, PreparedStoreError
from nucfuse_datasets.io.config import resolve_root
from nucfuse_datasets.io.predictions import PREDICTION_FORMATS

__all__ = ["main"]


def _names(args: argparse.Namespace) -> list[str]:
    if getattr(args, "all", False):
        return [n for n in list_datasets() if get_dataset_class(n).resources]  # generated datasets have no sources
    if not args.names:
        raise ArgumentError("name one or more datasets, or pass --all")
    return [get_dataset_class(n).name for n in args.names]


def cmd_list(args: argparse.Namespace) -> int:
    rows = [("name", "title", "tiles*", "nuclei*", "licence", "download", "local")]
    for cls in dataset_classes():
        info = cls.info(args.root)
        paper = info["paper_table1"] or {}
        local = (
            "prepared"
            if info["local"]["prepared"]
            else ("sources" if any(v != "missing" for v in info["local"]["sources"].values()) else "-")
        )
        download = "auto" if info["auto_download"] else "manual"
        if not cls.resources:
            download = "generated"
        rows.append(
            (
                cls.name,
                cls.title,
                f"{paper.get('tiles', '')}",
                f"{paper.get('nuclei', '')}",
                cls.license,
                download,
                local,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"\n* NucFuseRank paper, Table 1. Data root: {resolve_root(args.root)}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    cls = get_dataset_class(args.name)
    info = cls.info(args.root)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    wrap = textwrap.TextWrapper(width=100, subsequent_indent="    ")
    print(f"{info['title']} ({info['name']})")
    print(wrap.fill(info["description"]))
    print(f"Licence:   {info['license']}")
    print(f"Homepage:  {info['homepage']}")
    print(wrap.fill(f"Citation:  {info['citation']}"))
    test_from = info["test_split"] or "whole dataset"
    print(f"Splits:    {', '.join(info['splits'])} (NucFuse-test draws from: {test_from})")
    if info["class_names"]:
        print(f"Classes:   {', '.join(info['class_names'])}")
    if info["paper_table1"]:
        p = info["paper_table1"]
        print(
            f"Paper Table 1: {p['tiles']} tiles, {p['nuclei']} nuclei, organs {p['organs']}, "
            f"tile size {p['tile_size']}, density {p['density']}, {p['train_patches']} training patches"
        )
    for exp in info["expected_counts"]:
        tiles = "unknown" if exp["tiles"] is None else exp["tiles"]
        nuclei = "unknown" if exp["nuclei"] is None else exp["nuclei"]
        print(f"Expected:  {exp['split']}: {tiles} tiles, {nuclei} nuclei ({exp['source']})")
    print("Sources:")
    for r in info["resources"]:
        how = "manual download" if r["manual"] else "automatic download"
        print(f"  - {r['key']}: {r['filename']} [{how}]")
        for u in r["urls"]:
            print(f"      url:    {u}")
        if r["page"]:
            print(f"      page:   {r['page']}")
        if r["sha256"]:
            print(f"      sha256: {r['sha256']} ({r['hash_source']})")
        elif r["md5"]:
            print(f"      md5:    {r['md5']} ({r['hash_source']})")
        else:
            print(f"      hash:   {r['hash_source'] or 'none published; recorded on first use'}")
        if r["note"]:
            print(wrap.fill(f"      note:   {r['note']}"))
    if info["manual_instructions"]:
        print("Manual download:")
        for para in info["manual_instructions"].splitlines():
            if para.startswith(" ") or not para:  # commands and paths stay as written
                print("  " + para)
            else:
                print(textwrap.fill(para, 100, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False))
    local = info["local"]
    print(f"Local ({local['dataset_dir']}):")
    stores = [f"{n} ({', '.join(local.get('prepared_splits', {}).get(n, []))})" for n in local["prepared"]]
    print(f"  prepared stores: {', '.join(stores) or 'none'}")
    for key, state in local["sources"].items():
        print(f"  {key}: {state}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch the sources through the same path as ``get_dataset(download=True)`` (``download_sources``)."""
    options = _parse_options(args.option)
    failures = 0
    states = {
        "prepared": "already prepared at {path}",
        "folder": "extracted folder present at {path}",
        "file": "archive present at {path} (hash checked)",
        "downloaded": "downloaded to {path}",
        "failed": "optional; could not be downloaded (preparing goes on without it)",
    }
    for name in _names(args):
        cls = get_dataset_class(name)
        print(f"{cls.title} — licence: {cls.license}")
        try:
            ds = cls.deferred(args.root, split=args.split, progress=not args.quiet, **options)
            result = ds.download_sources()
        except NucFuseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if not result:
            print("  nothing to download")
        files = {r.key: r.filename for r in cls.resources}
        for key, (state, path) in result.items():
            print(f"  {files.get(key, key)}: " + states[state].format(path=path))
    return 1 if failures else 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from nucfuse_datasets.datasets._parallel import prepare_workers

    options = _parse_options(args.option)
    failures = 0
    for name in _names(args):
        cls = get_dataset_class(name)
        try:
            with prepare_workers(args.workers):
                ds = cls(root=args.root, split=args.split, download=args.download, progress=not args.quiet, **options)
        except NucFuseError as exc:
            print(f"error: {exc}", file=sys.stderr)  # the message names the dataset's folder or file
            failures += 1
            continue
        from nucfuse_datasets.io.store import PreparedStore

        counts = PreparedStore(ds.store_path).counts
        summary = ", ".join(f"{k}: {v['tiles']} tiles / {v['nuclei']} nuclei" for k, v in counts.items())
        print(f"{name}: prepared at {ds.store_path} ({summary})")
    return 1 if failures else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from nucfuse_datasets.io.store import PreparedStore

    options = _parse_options(args.option)
    cls = get_dataset_class(args.name)
    root = resolve_root(args.root)
    stores = sorted(p for p in (root / cls.name).glob("prepared*") if PreparedStore.exists(p))
    if not stores:
        print(f"{cls.name}: no prepared store under {root / cls.name}; run `nucfuse prepare {cls.name}`")
        return 1
    bad = 0
    for path in stores:
        try:
            store = PreparedStore(path)
        except PreparedStoreError as exc:  # a damaged manifest: the options come from --option
            hint = "" if path.name == "prepared" else f"; repair it with this store's options ({path.name}) as --option"
            problems, variant, kept = [f"manifest.json: {exc}{hint}"], options, None
            print(f"{path}: 1 problem(s):")
        else:
            problems = store.verify(full=True)
            variant = {**store.manifest.get("variant", {}), **options}
            kept = store.splits  # repair rebuilds the splits the store holds, no more
            n_files = len(store.manifest["files"])
            if not problems:
                print(f"{path}: OK ({n_files} files, {len(store.samples)} samples)")
                continue
            print(f"{path}: {len(problems)} problem(s) in {n_files} files:")
        bad += 1
        for p in problems[:20]:
            print(f"  {p}")
        if args.repair:
            try:
                ds = cls.deferred(root, progress=False, **variant)
                ds.prepare(force=True, splits=kept)
                print(f"{path}: re-prepared from the native sources")
                bad -= 1
            except NucFuseError as exc:
                print(f"{path}: repair failed: {exc}", file=sys.stderr)
        else:
            print(f"  run `nucfuse verify {cls.name} --repair` to re-prepare it from the native sources")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nucfuse``."""
    parser = argparse.ArgumentParser(prog="nucfuse", description="NucFuseRank nuclei datasets and benchmark")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--root", default=None, help="data root (default: $NUCFUSE_DATA_DIR or the OS cache)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the registered datasets")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="licence, citation, sources, manual steps and local state of a dataset")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="download the native archives (where the host allows it)")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every dataset")
    p.add_argument("--split", default="all", help="only the sources this split needs (e.g. fold1, test)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. source=v1")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("prepare", help="convert native files into the prepared store")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every dataset")
    p.add_argument("--download", action="store_true", help="download missing sources first")
    p.add_argument("--split", default="all", help="prepare only this split (e.g. fold1, test); the store grows")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. source=original")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="convert tiles in N processes (0: one per CPU)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("verify", help="re-hash a prepared store against its manifest")
    p.add_argument("name")
    p.add_argument("--repair", action="store_true", help="re-prepare from the native sources if damaged")
    p.add_argument("--option", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_verify)

    def nucfuse_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--datasets",
            help="comma-separated dataset names, or 'available' for those prepared or present under the root "
            "(default: the 10 ranked datasets)",
        )
        p.add_argument("--test-ids", choices=("pinned", "rule"), default="pinned", help="shipped id lists or the rule")

    p = sub.add_parser(
        "evaluate",
        help="score saved predictions (HoVer-Net, CellViT, QuPath, Cellpose, StarDist, label maps) on NucFuse-test "
        "or a dataset split, class-aware with --protocol",
    )
    p.add_argument(
        "--predictions",
        required=True,
        help="the tool's output folder: HoVer-Net mat/ or json/, GeoJSON, Cellpose *_cp_masks.png, or label "
        "images/.npy named <subset>__<sample_id> (export-test names), <sample_id> or the tile's original file name",
    )
    nucfuse_options(p)
    p.add_argument("--dataset", help="score a dataset split instead of NucFuse-test (e.g. pannuke, consep)")
    p.add_argument("--split", help="the dataset's split with --dataset (e.g. fold3, test; default all)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option with --dataset")
    p.add_argument(
        "--protocol",
        choices=("pannuke", "conic", "hovernet"),
        help="also score classes: PanNuke mPQ/bPQ, CoNIC mPQ+, or HoVer-Net F1_d / type accuracy / per-type F1",
    )
    p.add_argument(
        "--classes", help="evaluation classes (a grouping: consep-4, consep-7, puma-10, puma-3; default per dataset)"
    )
    p.add_argument(
        "--map-predictions",
        action="store_true",
        help="the predicted class ids are the dataset's own, to be grouped like the ground truth",
    )
    p.add_argument(
        "--class-map",
        help="class names/type ids of the files -> evaluation class ids: NAME=ID[,NAME=ID...] or a JSON file "
        "(GeoJSON names default to the evaluation class names)",
    )
    p.add_argument("--format", choices=PREDICTION_FORMATS, help="force one prediction format (default: recognised)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read Cellpose's pickled _seg.npy files (unpickling runs code: only files you trust)",
    )
    p.add_argument("--radius", type=float, default=12.0, help="HoVer-Net centroid pairing radius in pixels")
    p.add_argument("--out", help="folder for report.json/.csv/.md")
    p.add_argument("--model", help="model label for the report")
    p.add_argument("--train-set", help="training-set label for the report (e.g. top9)")
    p.add_argument("--missing", choices=("error", "empty"), default="error")
    p.add_argument("--use-ignore", action="store_true", help="apply ambiguous-region masks (NucEval rule)")
    p.add_argument(
        "--label-components",
        action="store_true",
        help="predictions are binary masks: every connected component becomes one instance",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export-test", help="write NucFuse-test as <subset>__<id>.tif/.npy files")
    p.add_argument("folder")
    nucfuse_options(p)
    p.set_defaults(func=cmd_export_test)

    p = sub.add_parser("export", help="write a dataset, nucfuse-train or nucfuse-test as HF datasets / WebDataset")
    p.add_argument("target", help="a dataset name, nucfuse-train or nucfuse-test")
    p.add_argument("--format", choices=("hf", "webdataset"), required=True)
    p.add_argument("--out", required=True, help="target folder (must not exist unless --overwrite)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per WebDataset shard")
    p.add_argument("--split", help="source split (a dataset's split; train/val/all for nucfuse-train)")
    p.add_argument("--datasets", help="comma-separated dataset names for nucfuse-train/test")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="ranking, cross-correlation and fusion analyses from result tables")
    p.add_argument("results", help="CSV/JSON result rows, or a folder of evaluation-report JSON files")
    p.add_argument("--out", default="nucfuse-report")
    p.add_argument("--metric", default="pq")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("figures", help="the paper's figures as PNG: its Tables 2-3, and your results with its values")
    p.add_argument("results", nargs="?", help="CSV/JSON result rows or a folder of report JSONs (optional)")
    p.add_argument("--out", default="nucfuse-figures")
    p.add_argument("--metric", default="pq", help="pq, aji, dice_2, precision or recall")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("leakage", help="TCGA cases shared across datasets and between NucFuse-train and -test")
    nucfuse_options(p)
    p.add_argument("--out", help="write the Markdown report here")
    p.set_defaults(func=cmd_leakage)

    p = sub.add_parser("splits", help="rebuild the NucFuse-test id lists from local data and compare")
    p.add_argument("--datasets", help="comma-separated dataset names or 'available' (default: the 10 ranked datasets)")
    p.add_argument("--write", help="write a nucfuse_test.json with the rebuilt lists")
    p.set_defaults(func=cmd_splits)

    p = sub.add_parser("demo", help="offline end-to-end demo on synthetic data")
    p.add_argument("--out", default="demo-output", help="folder for the report files")
    p.set_defaults(func=cmd_demo)

    for command in sub.choices.values():  # --root also after the subcommand (SUPPRESS keeps the global one)
        if not any("--root" in a.option_strings for a in command._actions):
            command.add_argument("--root", default=argparse.SUPPRESS, help="data root (as before the subcommand)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nucfuse`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except NucFuseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
