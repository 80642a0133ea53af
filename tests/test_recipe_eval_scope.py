"""What a recipe's ``evaluate`` scores (issue 13, part 4): the training datasets' test tiles, loudly otherwise.

Before the fix, ``evaluate`` scored ``eval.datasets`` (the smoke configuration's synthetic set, or the 10 ranked
datasets when empty) whatever the checkpoint was trained on, with ``eval.test_ids`` independent of the tiles the
training left out, and generated a synthetic dataset into the user's data root. Checkpoints are written directly
(a scaled-down model with random weights): these tests are about what is scored, not about the scores.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")

from examples.common.checkpoint import save_checkpoint
from examples.common.config import load_config, merge
from examples.common.evaluation import EvaluationScopeWarning, evaluate_checkpoint, evaluation_scope
from examples.hovernext.spec import SPEC
from nucfuse_datasets.benchmark.evaluation import EvaluationReport
from nucfuse_datasets.benchmark.protocol import PAPER_RANKING, top_k

REPO = Path(__file__).resolve().parents[1]
SYN = {"n_tiles": 15, "tile_size": 256}

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*randomly initialised.*:UserWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]


def _checkpoint(tmp_path: Path, data: dict, eval_section: dict | None = None) -> Path:
    cfg = merge(SPEC.default_config(), load_config(REPO / "examples" / "hovernext" / "smoke.toml"))
    cfg = merge(cfg, {"data": data, "train": {"device": "cpu", "progress": False}, "eval": eval_section or {}})
    torch.manual_seed(0)
    model = SPEC.build_model_quietly(cfg["model"])
    path = tmp_path / "run" / "best.pt"
    save_checkpoint({"model": model.state_dict(), "config": cfg, "recipe": "hovernext", "epoch": 1}, path)
    return path


def test_scope_defaults_to_the_training_datasets_and_their_test_ids() -> None:
    base = {"eval": {"datasets": [], "test_ids": ""}}
    scope = evaluation_scope({**base, "data": {"datasets": {"a": "synthetic"}, "test_ids": "rule"}})
    assert scope.datasets == {"a": "synthetic"} and scope.test_ids == "rule" and scope.message == ""
    scope = evaluation_scope({**base, "data": {"k": 9, "datasets": [], "test_ids": "pinned"}})
    assert list(scope.datasets) == top_k(9) and "cryonuseg" not in scope.datasets and scope.untrained == ()
    full = evaluation_scope({"data": {"k": 9}, "eval": {"datasets": ["nucfuse-test"]}})
    assert list(full.datasets) == list(PAPER_RANKING) and full.untrained == ("cryonuseg",)
    assert "NOT trained on: cryonuseg" in full.message
    other = evaluation_scope({"data": {"datasets": ["monuseg"], "test_ids": "rule"}, "eval": {"test_ids": "pinned"}})
    assert "may have been training tiles" in other.message


def test_evaluate_scores_the_training_datasets_and_writes_nothing_into_the_root(tmp_path: Path, capsys) -> None:
    """A checkpoint trained on a tagged synthetic set: scored on that set, generated outside the data root."""
    from examples.common.cli import evaluate_main

    root = tmp_path / "user-data"
    root.mkdir()
    ckpt = _checkpoint(
        tmp_path,
        {"root": str(root), "datasets": {"mine": "synthetic"}, "test_ids": "rule", "dataset_options": {"mine": SYN}},
    )
    assert evaluate_main(SPEC, ["--checkpoint", str(ckpt), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "scoring the NucFuse-test tiles of mine (test_ids='rule')" in out.out and "WARNING" not in out.err
    report = EvaluationReport.from_json((ckpt.parent / "eval" / "report.json").read_text())
    assert {r["test_subset"] for r in report.to_rows()} == {"mine", "overall"}
    assert report.overall["mean"]["n_images"] == 14 and report.meta["trained_on"] == {"mine": "synthetic"}
    assert list(root.iterdir()) == []  # nothing generated in the user's data root


def test_evaluate_elsewhere_is_loud(tmp_path: Path, capsys) -> None:
    from examples.common.cli import evaluate_main

    root = tmp_path / "user-data"
    root.mkdir()
    ckpt = _checkpoint(
        tmp_path,
        {
            "root": str(root),
            "datasets": {"mine": "synthetic"},
            "test_ids": "rule",
            "dataset_options": {"mine": SYN, "other": {**SYN, "seed": 5}},
        },
    )
    argv = ["--checkpoint", str(ckpt), "--datasets", "other=synthetic", "--no-progress", "--out", str(tmp_path / "e")]
    assert evaluate_main(SPEC, argv) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "NOT trained on: other" in err and "trained on mine" in err
    assert list(root.iterdir()) == []
    with pytest.warns(EvaluationScopeWarning, match="NOT trained on"):
        cfg = merge(torch.load(ckpt, weights_only=True)["config"], {"eval": {"datasets": {"other": "synthetic"}}})
        evaluate_checkpoint(SPEC, ckpt, cfg, out=tmp_path / "e2", progress=False)


def test_old_smoke_eval_section_no_longer_overrides_the_training(tmp_path: Path) -> None:
    """The smoke configs no longer pin ``eval.datasets``: a smoke-config run on other data scores that data."""
    for recipe in ("hovernext", "cellvit"):
        smoke = load_config(REPO / "examples" / recipe / "smoke.toml")
        assert "datasets" not in smoke.get("eval", {}) and smoke["model"]["pretrained"] == ""
    cfg = merge(SPEC.default_config(), load_config(REPO / "examples" / "hovernext" / "smoke.toml"))
    cfg["data"]["datasets"] = ["monuseg", "dsb2018"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scope = evaluation_scope(cfg)
    assert scope.datasets == {"monuseg": "monuseg", "dsb2018": "dsb2018"} and scope.test_ids == "rule"
