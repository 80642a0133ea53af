"""Training and evaluation entry points of the reference recipes: CPU smoke tests on synthetic data.

Each recipe trains a scaled-down model (``examples/<recipe>/smoke.toml``) for a few steps, writes checkpoints,
resumes, and evaluates on NucFuse-test restricted to the synthetic source. A resumed run must repeat an
uninterrupted one bit for bit. The 2-process DDP run goes through ``torchrun`` with the gloo backend.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")

from examples.cellvit.spec import SPEC as CELLVIT
from examples.common.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from examples.common.cli import parse_datasets, resolve_train_config
from examples.common.config import apply_overrides, load_config, merge, recipe_from_config
from examples.common.csvlog import CSVLogger
from examples.common.distributed import DistributedReplacementSampler, resolve_device
from examples.common.early_stopping import EarlyStopping
from examples.common.spec import train_set_label
from examples.hovernext.spec import SPEC as HOVERNEXT
from nucfuse_datasets.benchmark.evaluation import EvaluationReport
from nucfuse_datasets.errors import ArgumentError

REPO = Path(__file__).resolve().parents[1]
SPECS = {"hovernext": HOVERNEXT, "cellvit": CELLVIT}

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*randomly initialised.*:UserWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nucfuse-data")


def _smoke_argv(recipe: str, root: Path, out: Path, *extra: str) -> list[str]:
    config = REPO / "examples" / recipe / "smoke.toml"
    return ["--config", str(config), "--root", str(root), "--out", str(out), "--no-progress", *extra]


def _train(recipe: str, argv: list[str]) -> None:
    from examples.common.cli import train_main

    assert train_main(SPECS[recipe], argv) == 0


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _assert_same_state(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# --------------------------------------------------------------------------- smoke: train, resume, evaluate
@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["hovernext", "cellvit"])
def test_train_resume_evaluate(recipe: str, data_root: Path, tmp_path: Path) -> None:
    spec = SPECS[recipe]
    full, split = tmp_path / "full", tmp_path / "split"
    _train(recipe, _smoke_argv(recipe, data_root, full))  # 2 epochs in one go
    _train(recipe, _smoke_argv(recipe, data_root, split, "--epochs", "1"))
    first = load_checkpoint(split / "last.pt")
    assert first["epoch"] == 1 and not first["finished"]
    _train(recipe, ["--resume", str(split / "last.pt"), "--epochs", "2", "--no-progress"])

    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(split / "last.pt")
    expected = {"model", "optimizer", "scheduler", "scaler", "epoch", "best_metric", "best_epoch", "early_stopping"}
    assert expected | {"rng", "config", "recipe", "world_size", "finished"} <= set(a)
    assert a["epoch"] == b["epoch"] == 2 and a["recipe"] == recipe and len(a["rng"]) == 1
    # resuming repeats the uninterrupted run bit for bit (weights, optimiser, scheduler, counters, RNG)
    for key in ("model", "optimizer", "scheduler", "early_stopping", "best_metric", "best_epoch", "rng"):
        _assert_same_state(a[key], b[key], key)
    drop = ("seconds",)
    log_a, log_b = _rows(full / "metrics.csv"), _rows(split / "metrics.csv")
    assert [{k: v for k, v in r.items() if k not in drop} for r in log_a] == [
        {k: v for k, v in r.items() if k not in drop} for r in log_b
    ]
    assert [r["epoch"] for r in log_a] == ["1", "2"]
    assert [r["encoder_frozen"] for r in log_a] == ["1", "0"]  # the smoke configs unfreeze in the second epoch
    assert all(r["val_patches"] == "2" and 0.0 <= float(r["val_pq"]) <= 1.0 for r in log_a)
    assert math.isfinite(float(log_a[0]["train_loss"]))
    # the encoder trained only after unfreezing: the optimiser gained its state in epoch 2
    n_params = sum(1 for _ in spec.build_model_quietly(a["config"]["model"]).parameters())
    assert len(first["optimizer"]["state"]) < len(a["optimizer"]["state"]) <= n_params
    best = load_checkpoint(full / "best.pt")
    assert best["epoch"] == a["best_epoch"] and set(best) >= {"model", "config", "val"}
    summary = json.loads((full / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["train_set"] == "synthetic"

    # evaluation entry point: checkpoint -> NucFuse-test (synthetic subset) -> report files
    from examples.common.cli import evaluate_main

    assert evaluate_main(spec, ["--checkpoint", str(split / "best.pt"), "--no-progress"]) == 0
    report = EvaluationReport.from_json((split / "eval" / "report.json").read_text())
    assert (split / "eval" / "report.md").is_file() and (split / "eval" / "report.csv").is_file()
    assert report.overall["mean"]["n_images"] == 14
    assert report.meta["model"] == spec.model_label and report.meta["train_set"] == "synthetic"
    assert report.meta["inference"].startswith("whole tile")
    rows = report.to_rows()
    assert {r["test_subset"] for r in rows} == {"synthetic", "overall"}
    assert all(0.0 <= r["pq"] <= 100.0 for r in rows)


@pytest.mark.slow
def test_early_stop_resume_and_sliding_window_evaluation(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = _smoke_argv("hovernext", data_root, out, "--epochs", "5", "--set", "train.early_stop_patience=1")
    argv += ["--set", "recipe.lr=0"]  # the weights never change: no improvement after epoch 1
    _train("hovernext", argv)
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 3 and ckpt["finished"]  # HoVerNeXt stops once 2 bad epochs exceed the patience of 1
    assert json.loads((out / "summary.json").read_text())["stopped_early"]
    _train("hovernext", ["--resume", str(out / "last.pt"), "--epochs", "6", "--no-progress"])  # nothing to do
    assert load_checkpoint(out / "last.pt")["epoch"] == 3
    assert [r["bad_epochs"] for r in _rows(out / "metrics.csv")] == ["0", "1", "2"]

    from examples.common.cli import evaluate_main

    argv = ["--checkpoint", str(out / "last.pt"), "--tile", "128", "--overlap", "32", "--out", str(tmp_path / "ev")]
    assert evaluate_main(HOVERNEXT, [*argv, "--no-progress", "--train-set", "custom"]) == 0
    report = EvaluationReport.from_json((tmp_path / "ev" / "report.json").read_text())
    assert report.meta["inference"] == "sliding window" and report.meta["train_set"] == "custom"
    assert report.meta["checkpoint_epoch"] == 3


# --------------------------------------------------------------------------- torchrun, 2 processes, gloo
@pytest.mark.slow
def test_torchrun_two_process_gloo(data_root: Path, tmp_path: Path) -> None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    # prepare the synthetic source once in this process so the two ranks only read it
    from nucfuse_datasets import NucFuseTrain

    NucFuseTrain(data_root, datasets=["synthetic"], dataset_options={"synthetic": {"n_tiles": 20, "tile_size": 256}})
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "examples.cellvit.train", *_smoke_argv("cellvit", data_root, out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "Address already in use" in proc.stderr:  # pragma: no cover - port race
        pytest.skip("torchrun could not bind a local port")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["epoch"] == 2
    rows = _rows(out / "metrics.csv")  # one row per epoch: only rank 0 writes
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # 4 training patches, 2 ranks, batch 2: one step per rank; validation gathered from both ranks
    assert [r["steps"] for r in rows] == ["1", "1"] and all(r["val_patches"] == "2" for r in rows)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.csv", "summary.json"]
    assert proc.stdout.count('"recipe": "cellvit"') == 1  # rank 0 prints the summary


# --------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("recipe", ["hovernext", "cellvit"])
def test_config_files_state_the_defaults(recipe: str) -> None:
    """``config.toml`` spells out exactly the built-in defaults (the authors' constants)."""
    spec = SPECS[recipe]
    assert load_config(REPO / "examples" / recipe / "config.toml") == spec.default_config()
    recipe_obj = spec.recipe(spec.default_config())
    assert recipe_obj == spec.default_recipe
    assert recipe_obj.batch_size == 5 and recipe_obj.epochs == 300


def test_paper_constants_in_defaults() -> None:
    h, c = HOVERNEXT.default_recipe, CELLVIT.default_recipe
    assert (h.lr, h.weight_decay, h.grad_clip_norm, h.amp, h.val_batch_size) == (1e-4, 0.0, 1.0, False, 1)
    assert (c.lr, c.betas, c.weight_decay, c.gamma, c.amp) == (3e-4, (0.85, 0.95), 1e-4, 0.95, True)
    assert (c.batch_size, c.val_batch_size, c.num_workers, c.early_stop_patience) == (5, 10, 1, 130)
    # freezing: HoVerNeXt 1-based epochs 1..24 (indices 0..23), CellViT 0-based 0..24
    assert [HOVERNEXT.encoder_frozen(e, h) for e in (0, 23, 24)] == [True, True, False]
    assert [CELLVIT.encoder_frozen(e, c) for e in (0, 24, 25)] == [True, True, False]
    # AMP only for CellViT and only on CUDA
    assert CELLVIT.amp(c, torch.device("cuda")) and not CELLVIT.amp(c, torch.device("cpu"))
    assert not HOVERNEXT.amp(h, torch.device("cuda"))
    cfg = HOVERNEXT.default_config()
    assert HOVERNEXT.early_stopping(h, cfg, 1).patience == 100
    assert HOVERNEXT.early_stopping(h, cfg, 9).patience == 50
    assert CELLVIT.early_stopping(c, CELLVIT.default_config(), 9).patience == 130


def test_json_config_and_print_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from examples.common.cli import train_main

    argv = ["--print-config", "--epochs", "7", "--datasets", "a=synthetic,pcns", "--dataset-option", "a.seed=3"]
    assert train_main(HOVERNEXT, [*argv, "--set", "recipe.lr=0.5", "--set", "model.final_channels=8"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["recipe"]["epochs"] == 7 and cfg["recipe"]["lr"] == 0.5 and cfg["model"]["final_channels"] == 8
    assert cfg["data"]["datasets"] == {"a": "synthetic", "pcns": "pcns"}
    assert cfg["data"]["dataset_options"] == {"a": {"seed": 3}}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    assert load_config(path) == cfg
    assert train_set_label(cfg) == "a+pcns"
    assert train_set_label(HOVERNEXT.default_config()) == "top9"


def test_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[recipe]\nnot_a_field = 1\n")
    with pytest.raises(ArgumentError, match="unknown recipe keys"):
        recipe_from_config(HOVERNEXT.default_recipe, load_config(bad)["recipe"])
    bad.write_text("[nonsense]\n")
    with pytest.raises(ArgumentError, match="unknown config sections"):
        load_config(bad)
    with pytest.raises(ArgumentError, match=r"section\.key=value"):
        apply_overrides({}, ["recipe.lr"])
    with pytest.raises(ArgumentError, match="first part"):
        apply_overrides({}, ["foo.bar=1"])
    with pytest.raises(ArgumentError, match="not found"):
        load_config(tmp_path / "missing.toml")
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    assert parse_datasets("pcns, puma") == ["pcns", "puma"]
    assert parse_datasets("x=synthetic") == {"x": "synthetic"}

    from examples.common.cli import train_main

    assert train_main(HOVERNEXT, ["--print-config", "--set", "recipe.nope=1"]) == 2


def test_resume_auto_uses_the_checkpoint_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from examples.common.cli import train_main

    cfg = HOVERNEXT.default_config()
    cfg["recipe"]["epochs"] = 3
    cfg["model"]["final_channels"] = 8
    save_checkpoint({"model": {}, "config": cfg}, tmp_path / "last.pt")
    assert train_main(HOVERNEXT, ["--resume", "--out", str(tmp_path), "--epochs", "4", "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["recipe"]["epochs"] == 4 and resolved["model"]["final_channels"] == 8
    ns = _train_parser_namespace(["--resume", str(tmp_path / "last.pt")])
    assert resolve_train_config(HOVERNEXT, ns)[1] == tmp_path / "last.pt"


def _train_parser_namespace(argv: list[str]) -> object:
    from examples.common.cli import _train_parser

    return _train_parser(HOVERNEXT).parse_args(argv)


# --------------------------------------------------------------------------- building blocks
def test_early_stopping_rules() -> None:
    hov = EarlyStopping(2, stop_when_exceeds=True)
    assert [hov.step(s, e) for e, s in enumerate([0.5, 0.5, 0.4, 0.4], 1)] == [True, False, False, False]
    assert hov.bad_epochs == 3 and hov.should_stop and hov.best_epoch == 1  # 3 > 2
    cvt = EarlyStopping(2, stop_when_exceeds=False, save_on_tie=True)
    assert [cvt.step(s, e) for e, s in enumerate([0.5, 0.5, 0.4], 1)] == [True, True, False]
    assert cvt.best_epoch == 2 and cvt.should_stop  # 2 >= 2
    nan = EarlyStopping(0, enabled=False)
    assert not nan.step(float("nan"), 1) and not nan.should_stop
    restored = EarlyStopping(2)
    restored.load_state_dict(hov.state_dict())
    assert restored.state_dict() == hov.state_dict()


def test_csv_logger_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    log = CSVLogger(path, ["epoch", "loss"])
    for e in (1, 2, 3):
        log.log({"epoch": e, "loss": 1.0 / e, "ignored": "x"})
    resumed = CSVLogger(path, ["epoch", "loss"], resume_epoch=2)
    assert [r["epoch"] for r in resumed.rows()] == ["1", "2"]
    assert CSVLogger(path, ["epoch", "loss"]).rows() == []


def test_checkpoint_atomic_and_rng_roundtrip(tmp_path: Path) -> None:
    import random

    import numpy as np

    state = get_rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    path = save_checkpoint({"model": {"w": torch.ones(2)}, "rng": [state]}, tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    loaded = load_checkpoint(path)  # weights_only=True
    set_rng_state(loaded["rng"][0])
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    with pytest.raises(ArgumentError):
        load_checkpoint(tmp_path / "nothing.pt")


def test_distributed_replacement_sampler() -> None:
    parts = [list(DistributedReplacementSampler(10, 7, rank=r, world_size=2, seed=1)) for r in range(2)]
    assert [len(p) for p in parts] == [4, 4] and all(0 <= i < 10 for p in parts for i in p)
    again = DistributedReplacementSampler(10, 7, rank=0, world_size=2, seed=1)
    assert list(again) == parts[0]
    again.set_epoch(1)
    assert list(again) != parts[0] or len(set(parts[0])) == 1


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ArgumentError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ArgumentError, match="cuda"):
            resolve_device("cuda")


def test_scaled_down_models_keep_the_architecture() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = HOVERNEXT.build_model_quietly(load_config(REPO / "examples/hovernext/smoke.toml")["model"])
        c = CELLVIT.build_model_quietly(load_config(REPO / "examples/cellvit/smoke.toml")["model"])
    x = torch.zeros(1, 3, 64, 64)
    with torch.inference_mode():
        assert HOVERNEXT.infer_fn(h.eval())(x).shape == (1, 3, 64, 64)
        assert CELLVIT.infer_fn(c.eval())(x).shape == (1, 3, 64, 64)
