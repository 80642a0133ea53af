"""Do the reference recipes learn on real tissue? Both CPU configurations against the classical baseline.

Run (from the repository root; under 10 minutes of training per recipe on one core each, more wall time on a busy
machine, where ``--threads 1`` helps):

    python benchmarks/learning.py --threads 1 --parallel               # both at once, one core each
    python benchmarks/learning.py                                      # one after the other
    python benchmarks/learning.py --recipes cellvit --budget-s 300     # one recipe, a 5-minute training budget
    python benchmarks/learning.py --quick                              # a 1-epoch plumbing check, no verdict

For each recipe (HoVerNeXt, CellViT) it trains the CPU configuration ``examples/<recipe>/cpu.toml`` (random
encoders; *not* the paper's recipe: smaller encoders and decoders, a larger learning rate, fewer steps) through
the recipe's own training entry point on the real native MoNuSeg training tiles + the DSB 2018 H&E subset from
``../shared/realdata`` (``NucFuseTrain(datasets=["monuseg", "dsb2018"], test_ids="rule")``), scores the best
checkpoint through the recipe's own evaluation entry point on the real MoNuSeg test tiles that are present
(``--datasets monuseg``), and in the same run scores :class:`nucfuse_datasets.baselines.ClassicalBaseline` on the
same tiles. It prints the PQs side by side and writes, under ``--out`` (default ``runs/benchmarks/learning``):

* ``summary.json`` / ``summary.md``: per recipe PQ, DQ, SQ, AJI, baseline PQ, training seconds, epochs, steps;
* ``curves.png``: training loss and validation PQ per epoch of both recipes;
* ``test_tiles.png``: ground truth vs each recipe's prediction vs the baseline on the test tiles;
* ``<recipe>/``: the training run (``best.pt``, ``metrics.csv``) and ``<recipe>/eval/report.*``.

Exit status: 0 when every recipe's PQ beats the baseline's, 1 when one does not, 2 when the real data are missing
(or on a usage error). ``--quick`` never fails on the verdict. Threads: ``--threads`` (default: all cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
RECIPES = ("hovernext", "cellvit")
LABELS = {"hovernext": "HoVerNeXt", "cellvit": "CellViT"}
TRAIN_DATASETS = "monuseg,dsb2018"

if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipes (hovernext,cellvit)")
    p.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "learning"), help="output folder")
    p.add_argument("--realdata", default=str(REALDATA), help="folder with monuseg/ and dsb2018/ (native files)")
    p.add_argument("--budget-s", type=float, default=0.0, help="training time budget per recipe (train.max_seconds)")
    p.add_argument("--epochs", type=int, help="override the cpu.toml epochs")
    p.add_argument("--max-steps-per-epoch", type=int, help="override the cpu.toml steps per epoch")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = all cores)")
    p.add_argument("--quick", action="store_true", help="1 epoch of 4 steps per recipe: plumbing only, no verdict")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument(
        "--parallel",
        action="store_true",
        help="train the recipes at the same time, one process each with --threads threads (2 recipes on 2 cores)",
    )
    p.add_argument(
        "--reuse", action="store_true", help="score existing <out>/<recipe>/best.pt runs instead of training again"
    )
    return p.parse_args(argv)


def data_root(realdata: Path, folder: Path) -> Path:
    """A data root whose ``monuseg/`` and ``dsb2018/`` link to the native files (read in place, never copied)."""
    links = {
        "monuseg": ["MoNuSeg 2018 Training Data", "MoNuSegTestData"],
        "dsb2018": ["stage1_train"],
    }
    for name, parts in links.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for part in parts:
            src = realdata / name / part
            if not src.exists():
                raise FileNotFoundError(f"real {name} files not found at {src}")
            dst = folder / name / part
            if not dst.exists():
                dst.symlink_to(src.resolve(), target_is_directory=True)
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def train_argv(recipe: str, root: Path, out: Path, args: argparse.Namespace) -> list[str]:
    """The arguments of ``python -m examples.<recipe>.train`` for this benchmark."""
    run = out / recipe
    argv = ["--config", str(REPO / "examples" / recipe / "cpu.toml"), "--datasets", TRAIN_DATASETS]
    argv += ["--root", str(root), "--out", str(run), "--no-progress"]
    if args.quick:
        argv += ["--epochs", "1", "--max-steps-per-epoch", "4", "--max-val-patches", "4"]
    if args.epochs:
        argv += ["--epochs", str(args.epochs)]
    if args.max_steps_per_epoch:
        argv += ["--max-steps-per-epoch", str(args.max_steps_per_epoch)]
    if args.budget_s:
        argv += ["--set", f"train.max_seconds={args.budget_s}"]
    # data.stain (cpu.toml) fits its references on the MoNuSeg training organs present (5 of 7 locally), with a warning
    return argv


def train_parallel(
    recipes: list[str], root: Path, out: Path, args: argparse.Namespace
) -> dict[str, tuple[float, float]]:
    """Train the recipes at the same time, each in its own ``python -m examples.<recipe>.train`` process.

    Returns, per recipe, the wall-clock seconds and the CPU seconds (user + system) of its training process: on a
    machine shared with other jobs the wall clock measures the other jobs too, the CPU time measures the training.
    """
    import subprocess

    env = dict(os.environ)
    threads = str(args.threads or 1)
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONWARNINGS="ignore")
    procs, seconds, cpu_seconds = {}, {}, {}
    for recipe in recipes:
        argv = train_argv(recipe, root, out, args)
        print(f"\n== {LABELS[recipe]} (parallel): python -m examples.{recipe}.train {' '.join(argv)}", flush=True)
        (out / recipe).mkdir(parents=True, exist_ok=True)
        log = open(out / recipe / "train.log", "w")  # noqa: SIM115  # closed below
        procs[recipe] = (
            subprocess.Popen(
                [sys.executable, "-m", f"examples.{recipe}.train", *argv],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            log,
            time.perf_counter(),
        )
    for recipe, (proc, log, t0) in procs.items():
        _, status, usage = os.wait4(proc.pid, 0)  # the training process's own CPU time: the budget on a shared machine
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        seconds[recipe] = time.perf_counter() - t0
        cpu_seconds[recipe] = usage.ru_utime + usage.ru_stime
        log.close()
        if rc != 0:
            raise RuntimeError(f"{recipe}: training failed (rc {rc}); see {out / recipe / 'train.log'}")
        print(
            f"== {LABELS[recipe]}: trained in {seconds[recipe]:.0f} s wall, {cpu_seconds[recipe]:.0f} CPU-s "
            f"(log: {out / recipe / 'train.log'})",
            flush=True,
        )
    return {r: (seconds[r], cpu_seconds[r]) for r in seconds}


def train_and_score(
    recipe: str, root: Path, out: Path, args: argparse.Namespace, trained: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Train ``examples/<recipe>/cpu.toml`` and score ``best.pt`` on the MoNuSeg test tiles (entry points).

    ``trained``: the recipe was already trained (by :func:`train_parallel`) in these (wall, CPU) seconds.
    """
    import importlib

    from nucfuse_datasets.benchmark.evaluation import EvaluationReport

    train_mod = importlib.import_module(f"examples.{recipe}.train")
    eval_mod = importlib.import_module(f"examples.{recipe}.evaluate")
    run = out / recipe
    argv = train_argv(recipe, root, out, args)
    cpu_s = None
    if trained is not None:
        train_s, cpu_s = trained
    elif args.reuse and (run / "summary.json").is_file():
        print(f"\n== {LABELS[recipe]}: reusing the training in {run}", flush=True)
        train_s = float(json.loads((run / "summary.json").read_text()).get("seconds") or 0.0)
    else:
        print(f"\n== {LABELS[recipe]}: python -m examples.{recipe}.train {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        if train_mod.main(argv) != 0:
            raise RuntimeError(f"{recipe}: training failed")
        train_s = time.perf_counter() - t0
    eval_argv = ["--checkpoint", str(run / "best.pt"), "--datasets", "monuseg", "--out", str(run / "eval")]
    eval_argv += ["--no-progress"]
    print(f"== {LABELS[recipe]}: python -m examples.{recipe}.evaluate {' '.join(eval_argv)}", flush=True)
    t0 = time.perf_counter()
    if eval_mod.main(eval_argv) != 0:
        raise RuntimeError(f"{recipe}: evaluation failed")
    eval_s = time.perf_counter() - t0
    report = EvaluationReport.from_json((run / "eval" / "report.json").read_text())
    metrics = _rows(run / "metrics.csv")
    summary = json.loads((run / "summary.json").read_text())
    mean = report.overall["mean"]
    return {
        "recipe": recipe,
        "model": LABELS[recipe],
        "pq": 100 * float(mean["pq"]),
        "dq": 100 * float(mean["dq"]),
        "sq": 100 * float(mean["sq"]),
        "aji": 100 * float(mean["aji"]),
        "per_image_pq": {r["sample_id"]: 100 * float(r["pq"]) for r in report.per_image},
        "train_seconds": round(train_s, 1),
        "train_cpu_seconds": None if cpu_s is None else round(cpu_s, 1),
        "eval_seconds": round(eval_s, 1),
        "epochs": int(summary["epochs"]),
        "best_epoch": int(summary["best_epoch"]),
        "steps": sum(int(r["steps"]) for r in metrics),
        "stopped_by_time_budget": bool(summary.get("stopped_by_time_budget", False)),
        "curve": [
            {"epoch": int(r["epoch"]), "train_loss": float(r["train_loss"]), "val_pq": float(r["val_pq"])}
            for r in metrics
        ],
    }


def score_baseline(root: Path) -> dict[str, Any]:
    """The classical baseline on the same MoNuSeg test tiles (``test_ids="rule"``, as the trainings left out)."""
    from nucfuse_datasets import NucFuseTest
    from nucfuse_datasets.baselines import ClassicalBaseline

    test = NucFuseTest(root, datasets=["monuseg"], test_ids="rule", progress=False)
    t0 = time.perf_counter()
    report = test.evaluate(ClassicalBaseline(), model="ClassicalBaseline", train_set="none", progress=False)
    mean = report.overall["mean"]
    return {
        "pq": 100 * float(mean["pq"]),
        "dq": 100 * float(mean["dq"]),
        "sq": 100 * float(mean["sq"]),
        "aji": 100 * float(mean["aji"]),
        "per_image_pq": {r["sample_id"]: 100 * float(r["pq"]) for r in report.per_image},
        "seconds": round(time.perf_counter() - t0, 1),
        "tiles": [sid for ids in test.ids.values() for sid in ids],
    }


def plot_curves(results: list[dict[str, Any]], baseline: dict[str, Any], path: Path) -> None:
    """Training loss and validation PQ per epoch, one line per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_pq) = plt.subplots(1, 2, figsize=(10, 4))
    for r in results:
        epochs = [c["epoch"] for c in r["curve"]]
        ax_loss.plot(epochs, [c["train_loss"] for c in r["curve"]], marker="o", label=r["model"])
        ax_pq.plot(epochs, [100 * c["val_pq"] for c in r["curve"]], marker="o", label=f"{r['model']} (validation)")
        ax_pq.axhline(r["pq"], linestyle=":", color=ax_pq.lines[-1].get_color(), label=f"{r['model']} test tiles")
    ax_pq.axhline(baseline["pq"], color="black", linestyle="--", label="classical baseline, test tiles")
    ax_loss.set(xlabel="epoch", ylabel="training loss (recipe's own loss)", title="training loss")
    ax_pq.set(xlabel="epoch", ylabel="PQ (×100)", title="validation PQ (256² patches) and test PQ")
    ax_loss.legend()
    ax_pq.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tiles(results: list[dict[str, Any]], root: Path, out: Path, path: Path) -> None:
    """Ground truth, each recipe's prediction and the baseline's on every MoNuSeg test tile (contours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from examples.common.evaluation import load_trained_model, make_predict_fn
    from examples.common.stain_option import stain_predict
    from nucfuse_datasets import NucFuseTest
    from nucfuse_datasets.baselines import ClassicalBaseline
    from nucfuse_datasets.metrics import MetricPolicy
    from nucfuse_datasets.viz import instance_boundaries

    test = NucFuseTest(root, datasets=["monuseg"], test_ids="rule", progress=False)
    predictors: list[tuple[str, Any]] = []
    for r in results:
        spec = __import__(f"examples.{r['recipe']}.spec", fromlist=["SPEC"]).SPEC
        model, ckpt = load_trained_model(spec, out / r["recipe"] / "best.pt", torch.device("cpu"))
        predict = make_predict_fn(spec, model, spec.recipe(ckpt["config"]), torch.device("cpu"))
        predictors.append((r["model"], stain_predict(ckpt["config"], predict)))  # data.stain, as evaluate does
    predictors.append(("classical baseline", ClassicalBaseline()))
    policy = MetricPolicy()
    cols = 1 + len(predictors)
    fig, axes = plt.subplots(len(test), cols, figsize=(4 * cols, 4 * len(test)), squeeze=False)
    for i in range(len(test)):
        sample = test.load_sample(i)
        crop = (slice(0, 400), slice(0, 400))  # a 400² corner: contours stay readable
        panels = [("ground truth", sample.instances, (0, 200, 0))]
        panels += [(name, fn(sample.image), (255, 220, 0)) for name, fn in predictors]
        for j, (name, inst, colour) in enumerate(panels):
            img = sample.image[crop].copy()
            img[instance_boundaries(inst[crop])] = colour
            axes[i, j].imshow(img)
            title = f"{sample.meta.sample_id[:12]}: {name}"
            if j:
                title += f"\nPQ {100 * policy.evaluate(sample.instances, inst).pq:.1f} (whole tile)"
            axes[i, j].set_title(title, fontsize=8)
            axes[i, j].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(results: list[dict[str, Any]], baseline: dict[str, Any], machine: str) -> str:
    """The side-by-side table."""
    lines = [
        f"Real MoNuSeg test tiles ({len(baseline['tiles'])}): {', '.join(baseline['tiles'])}; machine: {machine}",
        "",
        "| model | PQ | DQ | SQ | AJI | baseline PQ | Δ PQ | training s (wall) | training CPU-s | epochs (best) "
        "| steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} (cpu.toml) | {r['pq']:.1f} | {r['dq']:.1f} | {r['sq']:.1f} | {r['aji']:.1f} | "
            f"{baseline['pq']:.1f} | {r['pq'] - baseline['pq']:+.1f} | {r['train_seconds']:.0f} | "
            f"{'' if r.get('train_cpu_seconds') is None else format(r['train_cpu_seconds'], '.0f')} | "
            f"{r['epochs']} ({r['best_epoch']}) | {r['steps']} |"
        )
    lines.append(
        f"| classical baseline | {baseline['pq']:.1f} | {baseline['dq']:.1f} | {baseline['sq']:.1f} | "
        f"{baseline['aji']:.1f} | | | | | | |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is the verdict (see the module docstring)."""
    args = _parse(argv)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown or not recipes:
        print(f"error: unknown recipes {unknown}; choose from {list(RECIPES)}", file=sys.stderr)
        return 2
    realdata = Path(args.realdata)
    if not (realdata / "monuseg").is_dir() or not (realdata / "dsb2018").is_dir():
        print(f"error: real MoNuSeg / DSB 2018 files not found under {realdata}; nothing to benchmark", file=sys.stderr)
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*randomly initialised.*")
    warnings.filterwarnings("ignore", message=".*eligible for NucFuse-test.*")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"
    machine += f", {torch.get_num_threads()} threads"
    with tempfile.TemporaryDirectory(prefix="nucfuse-learning-") as tmp:
        root = data_root(realdata, Path(tmp))
        baseline = score_baseline(root)
        print(f"classical baseline on {baseline['tiles']}: PQ {baseline['pq']:.1f}", flush=True)
        trained: dict[str, tuple[float, float]] = {}
        if args.parallel and not args.reuse:
            trained = train_parallel(recipes, root, out, args)
        results = [train_and_score(r, root, out, args, trained.get(r)) for r in recipes]
        if not args.no_plots:
            plot_curves(results, baseline, out / "curves.png")
            plot_tiles(results, root, out, out / "test_tiles.png")
    table = markdown(results, baseline, machine)
    (out / "summary.md").write_text(table)
    (out / "summary.json").write_text(
        json.dumps({"machine": machine, "baseline": baseline, "recipes": results, "quick": args.quick}, indent=1)
    )
    print("\n" + table, flush=True)
    print(
        f"written: {out / 'summary.md'}, {out / 'summary.json'}"
        + ("" if args.no_plots else ", curves.png, test_tiles.png")
    )
    losers = [r["model"] for r in results if not r["pq"] > baseline["pq"]]
    if args.quick:
        print("--quick: plumbing check only, no verdict")
        return 0
    if losers:
        print(f"FAIL: {', '.join(losers)} did not beat the classical baseline (PQ {baseline['pq']:.1f})")
        return 1
    print(f"PASS: every recipe beats the classical baseline (PQ {baseline['pq']:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
