"""Experiment drivers of the reference recipes: printed plans and a tiny end-to-end run on synthetic sources."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")

from examples.experiments import fusion, ranking
from examples.experiments._driver import parse_entries, parse_models
from nucfuse_datasets.benchmark.protocol import PAPER_RANKING
from nucfuse_datasets.errors import ArgumentError

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*randomly initialised.*:UserWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

SOURCES = "a=synthetic,b=synthetic"
OPTIONS = [
    f"--dataset-option={tag}.{key}={value}"
    for tag, seed in (("a", 1), ("b", 2))
    for key, value in (("n_tiles", 20), ("tile_size", 256), ("seed", seed))
]


def _commands(out: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if line and not line.startswith("#")]


def test_ranking_dry_run_prints_every_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert ranking.main(["--out", "runs/exp1", "--root", "/data", "--dry-run"]) == 0
    cmds = _commands(capsys.readouterr().out)
    assert len(cmds) == 2 * 2 * len(PAPER_RANKING)  # (train + evaluate) × 2 models × 10 datasets
    trains = [c for c in cmds if c[2].endswith(".train")]
    assert [c[c.index("--datasets") + 1] for c in trains] == list(PAPER_RANKING) * 2
    assert trains[0][:3] == ["python", "-m", "examples.hovernext.train"]
    assert trains[-1][2] == "examples.cellvit.train" and "--train-set" in trains[-1]
    evals = [c for c in cmds if c[2].endswith(".evaluate")]
    # the paper's datasets = the whole NucFuse-test, asked for explicitly (evaluate defaults to the training datasets)
    assert all(c[c.index("--datasets") + 1] == "nucfuse-test" for c in evals)
    assert evals[0][evals[0].index("--checkpoint") + 1] == "runs/exp1/hovernext/pcns/best.pt"


def test_fusion_dry_run_with_launcher(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", "o", "--models", "cellvit", "--launcher", "torchrun --nproc_per_node=4", "--dry-run"]
    assert fusion.main(argv) == 0
    cmds = _commands(capsys.readouterr().out)
    trains = [c for c in cmds if "examples.cellvit.train" in c]
    assert len(trains) == 10 and trains[0][:4] == ["torchrun", "--nproc_per_node=4", "-m", "examples.cellvit.train"]
    assert [c[c.index("--k") + 1] for c in trains] == [str(k) for k in range(1, 11)]
    assert [c[c.index("--train-set") + 1] for c in trains][8] == "top9"
    evals = [c for c in cmds if "examples.cellvit.evaluate" in c]
    assert evals[0][0] == "python"  # evaluation runs in one process
    assert fusion.main(["--out", "o", "--sources", "x=synthetic,y=synthetic", "--ks", "2", "--dry-run"]) == 0
    cmds = _commands(capsys.readouterr().out)
    train = next(c for c in cmds if c[2].endswith(".train"))
    assert train[train.index("--datasets") + 1] == "x=synthetic,y=synthetic" and "--k" not in train


def test_driver_argument_parsing() -> None:
    assert fusion.parse_ks("1-3,9", 10) == [1, 2, 3, 9]
    with pytest.raises(ArgumentError):
        fusion.parse_ks("0-2", 10)
    with pytest.raises(ArgumentError):
        fusion.parse_ks("3", 2)
    assert parse_entries("pcns, a=synthetic") == [("pcns", "pcns"), ("a", "synthetic")]
    with pytest.raises(ArgumentError, match="duplicate"):
        parse_entries("a,a")
    with pytest.raises(ArgumentError):
        parse_models("hovernext,unet")


@pytest.fixture(scope="module")
def ranking_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Experiment 1 on two synthetic sources with the tiny CellViT (1 epoch of 2 steps per run)."""
    base = tmp_path_factory.mktemp("exp")
    out = base / "exp1"
    argv = ["--out", str(out), "--models", "cellvit", "--datasets", SOURCES, "--root", str(base / "data")]
    argv += ["--config-cellvit", str(REPO / "examples/cellvit/smoke.toml"), *OPTIONS, "--no-plots"]
    argv += ["--train-arg=--epochs=1", "--train-arg=--no-progress", "--eval-arg=--no-progress"]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert ranking.main(argv) == 0
        assert ranking.main(argv) == 0  # second time: every report exists, nothing is retrained
    finally:
        torch.set_num_threads(n)
    return out


@pytest.mark.slow
def test_ranking_end_to_end(ranking_run: Path) -> None:
    out = ranking_run
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["model"], r["train_set"], r["test_subset"]) for r in rows} == {
        ("CellViT", t, s) for t in ("a", "b") for s in ("a", "b", "overall")
    }
    assert all(0.0 <= float(r["pq"]) <= 100.0 for r in rows)
    with open(out / "cross_correlation.csv", newline="") as fh:
        matrix = list(csv.reader(fh))
    assert matrix[0][1:] == ["a", "b"] and [r[0] for r in matrix[1:]] == ["a", "b"]
    assert (out / "ranking.csv").is_file() and (out / "performance_matrix.csv").is_file()
    assert "## Ranking" in (out / "analysis" / "analysis.md").read_text()
    assert sorted(p.name for p in (out / "cellvit" / "a").iterdir()) == [
        "best.pt",
        "config.json",
        "eval",
        "last.pt",
        "metrics.csv",
        "summary.json",
    ]
    with open(out / "cellvit" / "a" / "metrics.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 1  # not retrained by the second driver call


@pytest.mark.slow
def test_fusion_end_to_end(ranking_run: Path) -> None:
    out = ranking_run.parent / "exp2"
    argv = ["--out", str(out), "--models", "cellvit", "--sources", SOURCES, "--ks", "2"]
    argv += ["--root", str(ranking_run.parent / "data"), "--config-cellvit", str(REPO / "examples/cellvit/smoke.toml")]
    argv += [*OPTIONS, "--no-plots", "--singles", str(ranking_run / "results.csv")]
    argv += ["--train-arg=--epochs=1", "--train-arg=--no-progress", "--eval-arg=--no-progress"]
    assert fusion.main(argv) == 0
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["train_set"], r["test_subset"]) for r in rows} == {("top2", s) for s in ("a", "b", "overall")}
    summary = (out / "cellvit" / "top2" / "summary.json").read_text()
    assert '"train_set": "top2"' in summary
    assert (out / "analysis" / "analysis.md").is_file()
