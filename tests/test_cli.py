from __future__ import annotations

import json

from nucfuse_datasets.cli import main
from nucfuse_datasets.io.store import PreparedStore
from tests.conftest import copy_native


def test_list(capsys, tmp_path):
    assert main(["--root", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "monuseg" in out and "CC BY-NC-SA 4.0" in out and "30827" in out


def test_info_text_and_json(capsys, tmp_path):
    assert main(["--root", str(tmp_path), "info", "monuseg"]) == 0
    out = capsys.readouterr().out
    assert "25d3d3185bb2970b397cafa72eb664c9b4d24294aee382e7e3df9885affce742" in out and "Licence" in out
    assert main(["--root", str(tmp_path), "info", "dsb2018", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "dsb2018" and data["local"]["sources"] == {
        "fixed": "missing",
        "original": "missing",
    }


def test_unknown_dataset_is_a_clean_error(capsys):
    assert main(["info", "nope"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_prepare_and_verify_and_repair(capsys, tmp_path, fake_factory):
    copy_native(fake_factory("monuseg"), tmp_path, "monuseg")
    assert main(["--root", str(tmp_path), "prepare", "monuseg", "--quiet"]) == 0
    assert "train: 3 tiles" in capsys.readouterr().out
    assert main(["--root", str(tmp_path), "verify", "monuseg"]) == 0
    store = PreparedStore(tmp_path / "monuseg" / "prepared")
    victim = store.path / store.samples[0]["files"]["image"]
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    assert main(["--root", str(tmp_path), "verify", "monuseg"]) == 1
    out = capsys.readouterr().out
    assert "hash mismatch" in out and "--repair" in out
    assert main(["--root", str(tmp_path), "verify", "monuseg", "--repair"]) == 0
    assert PreparedStore(tmp_path / "monuseg" / "prepared").verify() == []


def test_prepare_with_options_and_repair_keeps_variant(tmp_path, capsys):
    assert (
        main(
            [
                "--root",
                str(tmp_path),
                "prepare",
                "synthetic",
                "--option",
                "n_tiles=3",
                "--option",
                "tile_size=40",
                "--quiet",
            ]
        )
        == 0
    )
    store_dir = next((tmp_path / "synthetic").glob("prepared*"))
    store = PreparedStore(store_dir)
    assert len(store.samples) == 3 and store.samples[0]["height"] == 40
    (store_dir / store.samples[1]["files"]["instances"]).unlink()
    assert main(["--root", str(tmp_path), "verify", "synthetic", "--repair"]) == 0
    assert PreparedStore(store_dir).verify() == []


def test_prepare_missing_reports_error(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "prepare", "monuseg"]) == 1
    assert "MoNuSeg 2018 Training Data.zip" in capsys.readouterr().err


def test_download_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NUCFUSE_OFFLINE", "1")
    assert main(["--root", str(tmp_path), "download", "monuseg", "--quiet"]) == 1
    assert "NUCFUSE_OFFLINE" in capsys.readouterr().err


def test_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "out")]) == 0
    assert "synthetic" in capsys.readouterr().out
