from __future__ import annotations

import pytest

import nucfuse_datasets as nf
from nucfuse_datasets._config import resolve_root
from nucfuse_datasets._registry import PAPER_RANKING
from nucfuse_datasets.errors import ArgumentError


def test_list_order_follows_the_paper_ranking():
    names = nf.list_datasets()
    ranked = [n for n in names if n in PAPER_RANKING]
    assert ranked == [n for n in PAPER_RANKING if n in names]
    assert names[-1] == "synthetic"


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ArgumentError) as info:
        nf.get_dataset("monuseeg")
    assert "monuseg" in str(info.value) and isinstance(info.value, ValueError)


def test_classes_reachable_by_name():
    assert nf.MoNuSeg.name == "monuseg" and nf.DSB2018.name == "dsb2018"
    assert nf.get_dataset_class("MONUSEG") is nf.MoNuSeg
    with pytest.raises(AttributeError):
        nf.NoSuchThing  # noqa: B018


def test_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("NUCFUSE_DATA_DIR", str(tmp_path / "env"))
    assert resolve_root(None) == tmp_path / "env"
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("NUCFUSE_DATA_DIR")
    assert resolve_root(None).name == "nucfuse"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_root("~/x") == tmp_path / "x"


def test_default_root_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("NUCFUSE_DATA_DIR", str(tmp_path))
    ds = nf.get_dataset("synthetic", n_tiles=1, tile_size=32)
    assert ds.root == tmp_path and ds.store_path.parent == tmp_path / "synthetic"


def test_info_has_licence_citation_and_local_state(tmp_path):
    for name in nf.list_datasets():
        info = nf.get_dataset_class(name).info(tmp_path)
        assert info["license"] and info["citation"] and info["homepage"]
        assert info["local"]["prepared"] == []
        for r in info["resources"]:
            assert r["sha256"] or r["md5"] or r["hash_source"], f"{name}/{r['key']}: say where the hash comes from"
