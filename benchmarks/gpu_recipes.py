"""One prepared GPU check of the full-size recipes: throughput, memory, data-loader wait, inference, a short training.

Run (from the repository root, one command; fits one 8-minute device call with the default budget):

    python benchmarks/gpu_recipes.py --budget-s 420
    python benchmarks/gpu_recipes.py --device cpu --budget-s 60      # the CPU rehearsal (tested)

For each **full-size** recipe (HoVerNeXt with ``convnextv2_tiny``, CellViT-256 with ViT-S/16; random encoders,
since the device machine is offline) it measures, on the recipe's own training pipeline (``NucFuseTrain`` →
augmentation → targets → ``DataLoader`` → loss → optimiser step, AMP as the recipe says):

1. training images/s and peak GPU memory at batch 5 (as run), and the fraction of step time spent waiting for
   the ``DataLoader`` — with the recipe's ``num_workers`` and with ``--workers`` (default 4, pinned memory);
2. the largest batch that fits (doubling from 5 until CUDA runs out of memory, or the phase's time is up);
3. whole-tile inference images/s on 1000×1000 tiles (reflect-padded to 1024, as evaluated): forward only and
   end to end with the HoVerNet post-processing;
4. a short real-data training through the recipe's training entry point (MoNuSeg + DSB 2018 from ``--realdata``,
   ``train.max_seconds`` of the budget) and its PQ on the MoNuSeg test tiles through the evaluation entry point.

The budget (``--budget-s``) is split between the recipes and phases; every phase stops when its share is spent.
Writes ``gpu_recipes.json`` and ``gpu_recipes.md`` under ``--out`` (default ``runs/benchmarks/gpu``).
``--realdata`` defaults to ``../shared/realdata``; on a machine without it, pass a folder with the same layout
(``monuseg/…``, ``dsb2018/stage1_train/…``); without real data the pipeline phases use a synthetic source and the
training phase is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RECIPES = ("hovernext", "cellvit")
#: share of a recipe's budget per phase
SHARES = {"throughput": 0.2, "max_batch": 0.1, "inference": 0.1, "training": 0.45, "evaluation": 0.15}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--budget-s", type=float, default=420.0, help="total seconds for everything (default 420)")
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--realdata", default=str(REPO.parent / "shared" / "realdata"))
    p.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "gpu"))
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers for the tuned measurement")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per measurement (at most)")
    return p.parse_args(argv)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _data_root(realdata: Path, folder: Path) -> tuple[Path, list[str], bool]:
    """A root linking the real MoNuSeg/DSB files, or a synthetic source when they are absent."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from learning import data_root

    try:
        return data_root(realdata, folder), ["monuseg", "dsb2018"], True
    except FileNotFoundError:
        return folder, ["synthetic"], False


def _loader(spec: Any, cfg: dict[str, Any], root: Path, datasets: list[str], batch: int, workers: int, device: Any):
    from torch.utils.data import DataLoader

    from nucfuse_datasets import NucFuseTrain

    recipe = spec.recipe(cfg)
    options = {"synthetic": {"n_tiles": 40, "tile_size": 512}} if datasets == ["synthetic"] else None
    ds = NucFuseTrain(
        root,
        datasets=datasets,
        test_ids="rule",
        split="train",
        dataset_options=options,
        transforms=spec.train_transform(recipe, cfg),
        progress=False,
    )
    return DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        collate_fn=spec.train_collate(recipe, cfg),
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )


def measure_training(spec: Any, cfg: dict[str, Any], loader: Any, device: Any, steps: int, seconds: float) -> dict:
    """Images/s, peak memory and the DataLoader-wait fraction over 1..``steps`` steps (after 1 warm-up step)."""
    import torch

    recipe = spec.recipe(cfg)
    model = spec.build_model_quietly(cfg["model"]).to(device).train()
    model.unfreeze_encoder()
    loss_fn = spec.loss_fn(recipe).to(device)
    opt = spec.make_optimizer(model, recipe)
    amp = spec.amp(recipe, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wait = compute = 0.0
    images = done = 0
    start = time.perf_counter()
    it = iter(loader)
    while done < steps + 1 and (done < 2 or time.perf_counter() - start < seconds):  # >= 1 timed step
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = loss_fn(model(batch["image"]), batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        _sync(device)
        t2 = time.perf_counter()
        done += 1
        if done > 1:  # the first (warm-up) step is excluded
            wait += t1 - t0
            compute += t2 - t1
            images += int(batch["image"].shape[0])
    total = wait + compute
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "steps": max(0, done - 1),
        "images_per_s": images / total if total else None,
        "loader_wait_fraction": wait / total if total else None,
        "peak_gib": peak,
    }


def max_batch(spec: Any, cfg: dict[str, Any], device: Any, seconds: float) -> dict:
    """Largest batch (doubling from 5) whose training step fits; CPU: not measured."""
    import torch

    if device.type != "cuda":
        return {"max_batch": None, "note": "only measured on CUDA"}
    recipe = spec.recipe(cfg)
    model = spec.build_model_quietly(cfg["model"]).to(device).train()
    loss_fn = spec.loss_fn(recipe).to(device)
    opt = spec.make_optimizer(model, recipe)
    amp = spec.amp(recipe, device)
    best, batch, start, peak = None, 5, time.perf_counter(), None
    while time.perf_counter() - start < seconds and batch <= 1024:
        try:
            x = torch.randn(batch, 3, 256, 256, device=device)
            tgt = {
                "hv": torch.zeros(batch, 2, 256, 256, device=device),
                "np": torch.zeros(batch, 256, 256, device=device),
                "three_class": torch.zeros(batch, 256, 256, dtype=torch.long, device=device),
            }
            torch.cuda.reset_peak_memory_stats(device)
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                loss = loss_fn(model(x), tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.cuda.synchronize(device)
            best, peak = batch, torch.cuda.max_memory_allocated(device) / 2**30
            batch *= 2
        except torch.OutOfMemoryError:
            break
        finally:
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
    return {"max_batch": best, "peak_gib_at_max": peak, "tried_up_to": batch}


def measure_inference(spec: Any, cfg: dict[str, Any], device: Any, seconds: float) -> dict:
    """Whole-tile 1000×1000 inference: forward (padded to 1024) and end to end with the post-processing."""
    import numpy as np
    import torch

    from nucfuse_datasets.datasets.synthetic import generate_tile
    from nucfuse_datasets.transforms.postprocess import hv_watershed_params, predict_instances

    recipe = spec.recipe(cfg)
    model = spec.build_model_quietly(cfg["model"]).to(device).eval()
    fn = spec.infer_fn(model)
    image = generate_tile(1000, 1000, np.random.default_rng(0))[0]
    x = torch.randn(1, 3, 1024, 1024, device=device)
    n_fwd = n_e2e = 0
    t_fwd = t_e2e = 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        fn(x)  # warm-up
        _sync(device)
        while time.perf_counter() - start < seconds / 2 or n_fwd < 1:
            t0 = time.perf_counter()
            fn(x)
            _sync(device)
            t_fwd += time.perf_counter() - t0
            n_fwd += 1
        while time.perf_counter() - start < seconds or n_e2e < 1:
            t0 = time.perf_counter()
            predict_instances(
                fn,
                image,
                mean=recipe.mean,
                std=recipe.std,
                device=device,
                **hv_watershed_params(int(recipe.magnification)),
            )
            t_e2e += time.perf_counter() - t0
            n_e2e += 1
    return {"forward_images_per_s": n_fwd / t_fwd, "end_to_end_images_per_s": n_e2e / t_e2e}


def short_training(recipe_name: str, root: Path, out: Path, device: str, train_s: float) -> dict:
    """The recipe's entry points, full-size model, for ``train_s`` seconds; PQ on the MoNuSeg test tiles."""
    import importlib

    from nucfuse_datasets.benchmark.evaluation import EvaluationReport

    run = out / recipe_name
    argv = ["--root", str(root), "--datasets", "monuseg,dsb2018", "--set", "data.test_ids=rule", "--out", str(run)]
    argv += ["--no-pretrained", "--device", device, "--no-progress", "--epochs", "100", "--max-val-patches", "16"]
    argv += ["--set", f"train.max_seconds={train_s}", "--set", "recipe.frozen_until_epoch=0"]
    if device == "cpu":  # the rehearsal: a full-size epoch takes minutes on a CPU
        argv += ["--epochs", "1", "--max-steps-per-epoch", "2", "--max-val-patches", "2"]
    t0 = time.perf_counter()
    rc = importlib.import_module(f"examples.{recipe_name}.train").main(argv)
    train_s_used = time.perf_counter() - t0
    if rc != 0:
        return {"error": f"training exited with {rc}"}
    eval_argv = ["--checkpoint", str(run / "best.pt"), "--datasets", "monuseg", "--out", str(run / "eval")]
    if importlib.import_module(f"examples.{recipe_name}.evaluate").main([*eval_argv, "--no-progress"]) != 0:
        return {"error": "evaluation failed"}
    report = EvaluationReport.from_json((run / "eval" / "report.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    return {"seconds": round(train_s_used, 1), "epochs": summary["epochs"], "pq": 100 * report.overall["mean"]["pq"]}


def main(argv: list[str] | None = None) -> int:
    """Run every phase for every recipe within ``--budget-s``; write the JSON and Markdown summaries."""
    args = _parse(argv)
    import torch

    from examples.common.distributed import resolve_device

    warnings.filterwarnings("ignore")
    device = resolve_device(args.device)
    recipes = [r for r in args.recipes.split(",") if r]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_recipe = args.budget_s / max(1, len(recipes))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results: dict[str, Any] = {"device": name, "budget_s": args.budget_s, "torch": torch.__version__, "recipes": {}}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nucfuse-gpu-") as tmp:
        root, datasets, real = _data_root(Path(args.realdata), Path(tmp))
        for r in recipes:
            spec = __import__(f"examples.{r}.spec", fromlist=["SPEC"]).SPEC
            cfg = spec.default_config()  # the full-size recipe
            cfg["model"]["pretrained"] = ""
            recipe = spec.recipe(cfg)
            res: dict[str, Any] = {"model": spec.model_label}
            share = {k: v * per_recipe for k, v in SHARES.items()}
            for label, workers in (("as_run", int(recipe.num_workers)), ("tuned", args.workers)):
                loader = _loader(spec, cfg, root, datasets, 5, workers, device)
                res[f"train_batch5_{label}"] = {
                    "num_workers": workers,
                    **measure_training(spec, cfg, loader, device, args.steps, share["throughput"] / 2),
                }
            res["max_batch"] = max_batch(spec, cfg, device, share["max_batch"])
            res["inference_1000"] = measure_inference(spec, cfg, device, share["inference"])
            if real:
                res["short_training"] = short_training(r, root, out, device.type, share["training"])
            else:
                res["short_training"] = {"skipped": f"no real MoNuSeg/DSB files under {args.realdata}"}
            results["recipes"][r] = res
            print(json.dumps({r: res}, indent=1, default=str), flush=True)
    results["seconds"] = round(time.perf_counter() - t_all, 1)
    (out / "gpu_recipes.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "gpu_recipes.md").write_text(_markdown(results))
    print(_markdown(results))
    return 0


def _fmt(v: Any, digits: int = 1) -> str:
    return "n/a" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Device: {results['device']}; torch {results['torch']}; budget {results['budget_s']:.0f} s",
        "",
        "| model | train img/s b5 (workers as run) | loader wait | train img/s b5 (tuned workers) | loader wait | "
        "peak GiB b5 | max batch | infer 1000² img/s (fwd / end-to-end) | short training PQ (s, epochs) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["recipes"].values():
        a, t = r["train_batch5_as_run"], r["train_batch5_tuned"]
        inf, st = r["inference_1000"], r["short_training"]
        pq = (
            f"{st['pq']:.1f} ({st['seconds']:.0f} s, {st['epochs']})"
            if "pq" in st
            else st.get("skipped", st.get("error"))
        )
        lines.append(
            f"| {r['model']} | {_fmt(a['images_per_s'])} ({a['num_workers']}) | {_fmt(a['loader_wait_fraction'], 2)} | "
            f"{_fmt(t['images_per_s'])} ({t['num_workers']}) | {_fmt(t['loader_wait_fraction'], 2)} | "
            f"{_fmt(a['peak_gib'], 2)} | {_fmt(r['max_batch']['max_batch'])} | "
            f"{_fmt(inf['forward_images_per_s'], 2)} / {_fmt(inf['end_to_end_images_per_s'], 2)} | {pq} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
