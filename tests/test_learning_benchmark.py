"""The learning benchmark and the GPU check run end to end (plumbing only; their figures are the scripts' job).

``benchmarks/learning.py --quick`` trains each CPU configuration for one epoch of a few steps on the real MoNuSeg +
DSB 2018 files and scores it against the classical baseline; ``benchmarks/gpu_recipes.py --device cpu`` is the
CPU rehearsal of the GPU check. Both skip without their inputs.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")

from tests.conftest import realdata

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_cpu_configs_are_scaled_down_recipes() -> None:
    """``cpu.toml`` keeps each recipe's family, targets, losses and post-processing; only sizes and schedule move."""
    from examples.cellvit.spec import SPEC as CELLVIT
    from examples.common.config import load_config, merge
    from examples.hovernext.spec import SPEC as HOVERNEXT

    for spec in (HOVERNEXT, CELLVIT):
        cpu = load_config(REPO / "examples" / spec.name / "cpu.toml")
        assert cpu["model"]["pretrained"] == "" and cpu["train"]["device"] == "cpu"
        assert set(cpu) <= {"recipe", "model", "data", "train"}  # eval: the training datasets (the default)
        cfg = merge(spec.default_config(), cpu)
        recipe = spec.recipe(cfg)
        assert recipe.magnification == 40 and recipe.mean == spec.default_recipe.mean  # post-processing, input
        assert type(spec.loss_fn(recipe)) is type(spec.loss_fn(spec.default_recipe))
        model = spec.build_model_quietly(cfg["model"])
        assert 1e6 < sum(p.numel() for p in model.parameters()) < 8e6  # scaled down from 36 M / 47 M


def test_learning_benchmark_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    realdata("monuseg")
    realdata("dsb2018")
    bench = _load("learning")
    out = tmp_path / "out"
    assert bench.main(["--quick", "--recipes", "hovernext", "--out", str(out), "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] and len(summary["baseline"]["tiles"]) == 2
    (res,) = summary["recipes"]
    assert res["recipe"] == "hovernext" and res["epochs"] == 1 and res["steps"] == 4
    assert 0.0 <= res["pq"] <= 100.0 and set(res["per_image_pq"]) == set(summary["baseline"]["tiles"])
    # the baseline score is what the library's baseline gives on those tiles, computed independently here
    from nucfuse_datasets import NucFuseTest
    from nucfuse_datasets.baselines import ClassicalBaseline
    from nucfuse_datasets.metrics import MetricPolicy

    root = bench.data_root(Path(bench.REALDATA), tmp_path / "root")
    test = NucFuseTest(root, datasets=["monuseg"], test_ids="rule", progress=False)
    pqs = [
        MetricPolicy().evaluate(s.instances, ClassicalBaseline()(s.image)).pq for s in map(test.load_sample, range(2))
    ]
    assert summary["baseline"]["pq"] == pytest.approx(100 * sum(pqs) / 2)
    assert (out / "curves.png").stat().st_size > 0 and (out / "test_tiles.png").stat().st_size > 0
    assert "| HoVerNeXt (cpu.toml) |" in capsys.readouterr().out


def test_learning_benchmark_parallel_quick(tmp_path: Path) -> None:
    """``--parallel`` trains in a subprocess, measures its CPU time and applies the configured stain option."""
    realdata("monuseg")
    realdata("dsb2018")
    bench = _load("learning")
    out = tmp_path / "out"
    argv = ["--quick", "--parallel", "--recipes", "hovernext", "--out", str(out), "--threads", "1", "--no-plots"]
    assert bench.main(argv) == 0
    (res,) = json.loads((out / "summary.json").read_text())["recipes"]
    assert res["steps"] == 4 and res["train_cpu_seconds"] > 0 and res["train_seconds"] > 0
    ckpt = torch.load(out / "hovernext" / "best.pt", map_location="cpu", weights_only=False)
    assert ckpt["config"]["data"]["stain"]["enabled"] is True
    # the option's own default: the library fits the organs present (5 of 7 locally), no benchmark workaround
    assert ckpt["config"]["data"]["stain"].get("references", "monuseg") == "monuseg"
    assert not (out / "stain_references.json").exists()


@pytest.mark.slow
def test_gpu_check_cpu_rehearsal(tmp_path: Path) -> None:
    bench = _load("gpu_recipes")
    out = tmp_path / "gpu"
    argv = ["--device", "cpu", "--budget-s", "8", "--recipes", "hovernext", "--steps", "1", "--workers", "0"]
    assert bench.main([*argv, "--realdata", str(tmp_path / "none"), "--out", str(out)]) == 0
    result = json.loads((out / "gpu_recipes.json").read_text())
    res = result["recipes"]["hovernext"]
    assert result["device"] == "CPU" and res["model"] == "HoVerNeXt"
    assert res["inference_1000"]["forward_images_per_s"] > 0 and res["max_batch"]["max_batch"] is None
    for key in ("train_batch5_as_run", "train_batch5_tuned"):
        assert res[key]["steps"] >= 1 and res[key]["images_per_s"] > 0
        assert 0.0 <= res[key]["loader_wait_fraction"] < 1.0
    assert "skipped" in res["short_training"]
    assert "| HoVerNeXt |" in (out / "gpu_recipes.md").read_text()
