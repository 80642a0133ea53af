"""The shared recipe runner: ``python -m examples.train|evaluate --recipe NAME`` and the per-recipe shims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from examples.common.cli import RECIPES, get_spec, recipe_main, runner_main
from nucfuse_datasets.errors import ArgumentError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["hovernext", "cellvit"])
def test_runner_and_shim_resolve_the_same_config(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--print-config", "--epochs", "7"]
    assert runner_main("train", ["--recipe", name, *argv]) == 0
    via_runner = json.loads(capsys.readouterr().out)
    shim = __import__(f"examples.{name}.train", fromlist=["main"])
    assert shim.main(argv) == 0
    via_shim = json.loads(capsys.readouterr().out)
    assert via_runner == via_shim
    assert via_runner["recipe"]["epochs"] == 7 and via_runner["train"]["out"] == f"runs/{name}"
    # the recipes' published constants (recipes.md §2.2 / §2.3), not taken from the code under test
    assert via_runner["recipe"]["lr"] == {"hovernext": 1e-4, "cellvit": 3e-4}[name]


def test_unknown_recipe_is_one_clear_error() -> None:
    assert RECIPES == ("hovernext", "cellvit")
    with pytest.raises(ArgumentError, match="unknown recipe 'nope'"):
        get_spec("nope")
    with pytest.raises(SystemExit) as exc:
        runner_main("evaluate", ["--recipe", "nope"])
    assert exc.value.code == 2


def test_shim_main_is_a_plain_function() -> None:
    main = recipe_main("cellvit", "evaluate")
    assert main.__module__ == "examples.cellvit.evaluate" and main.__name__ == "main"


def test_python_dash_m_runner_exits_with_the_entry_points_code() -> None:
    cmd = [sys.executable, "-m", "examples.train", "--recipe", "hovernext", "--print-config", "--set", "recipe.nope=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "error:" in proc.stderr
    cmd = [sys.executable, "-m", "examples.cellvit.train", "--print-config", "--batch-size", "3"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and json.loads(proc.stdout)["recipe"]["batch_size"] == 3
