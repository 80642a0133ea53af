from __future__ import annotations

import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.datasets._registry import PAPER_RANKING
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.io.config import resolve_root


def test_list_order_follows_the_paper_ranking():
    names = nf.list_datasets()
    ranked = [n for n in names if n in PAPER_RANKING]
    assert ranked == [n for n in PAPER_RANKING if n in names]
    rest = names[len(ranked) :]  # the paper's Table 1 has PanNuke unranked; then the others by name
    assert rest[0] == "pannuke" and rest[1:] == sorted(rest[1:]) and "synthetic" in rest


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


def test_declared_options_are_validated_by_the_base(tmp_path):
    with pytest.raises(ArgumentError, match=r"unknown option\(s\) annotator; valid options: none"):
        nf.get_dataset("monuseg", root=tmp_path, annotator="a1")
    with pytest.raises(ArgumentError, match=r"unknown annotator 'zz'; valid: 'a1', 'a1-round2', 'a2'"):
        nf.get_dataset("cryonuseg", root=tmp_path, annotator="zz")
    with pytest.raises(ArgumentError, match="valid options: source"):
        nf.get_dataset("tnbc", root=tmp_path, annotator="a1")
    # a declared option is an attribute, and part of `options` (the store's name) only when not the default
    merged = nf.get_dataset_class("consep").deferred(tmp_path, classes="merged")
    assert merged.classes == "merged" and merged.options == {"classes": "merged"}
    assert merged.class_names is not None and len(merged.class_names) == 5  # background + HoVer-Net's 4 classes
    default = nf.get_dataset_class("consep").deferred(tmp_path)
    assert default.options == {} and default.store_name == "prepared" and len(default.class_names) == 8


def test_no_dataset_writes_a_constructor():
    # options are declared (Option) and validated by the base; a dataset module never copies the constructor
    for name in nf.list_datasets():
        cls = nf.get_dataset_class(name)
        assert "__init__" not in vars(cls), f"{name} defines __init__; declare its options instead"
    with pytest.raises(ArgumentError, match="n_tiles must be >= 1"):
        nf.get_dataset("synthetic", n_tiles=0)
