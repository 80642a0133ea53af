"""Issue 23, item 1: NucFuse-test opens only what its tiles are drawn from.

For MoNuSeg, MoNuSAC, CoNSeP and CPM-17 that is the official test split: with only that split's native files on
disk, ``NucFuseTest`` works (named, or through ``datasets="available"``), while ``NucFuseTrain`` still asks for every
split. Expected values: the fake sources' own per-split tile counts (``tests/fakedata``) and the folder names each
source's organisers use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import nucfuse_datasets as nf
from nucfuse_datasets import NucFuseTest, NucFuseTrain
from nucfuse_datasets.benchmark.selection import available_datasets, nucfuse_test_split
from nucfuse_datasets.errors import ArgumentError, DatasetNotFoundError

#: The official test folder of each dataset with a test split, relative to the fake's native layout.
TEST_ONLY = {
    "monuseg": ["MoNuSegTestData"],
    "monusac": ["MoNuSAC Testing Data and Annotations"],
    "consep": ["CoNSeP/Test"],
    "cpm17": ["cpm17/test"],
}


@pytest.fixture(autouse=True)
def _small_fake_tiles_are_eligible(monkeypatch):
    # The fakes' tiles are smaller than the protocol's 256 px minimum; the size rule has its own tests.
    monkeypatch.setattr("nucfuse_datasets.benchmark.selection.MIN_TEST_SIZE", 1)


def _copy(fake, root: Path, name: str, keep: list[str]) -> None:
    for sub in keep:
        shutil.copytree(fake.native_dir / sub, root / name / sub)


def test_the_pool_split_is_the_official_test_split_where_there_is_one():
    pools = {name: nucfuse_test_split(nf.get_dataset_class(name)) for name in nf.list_datasets()}
    assert {n for n, s in pools.items() if s != "all"} == set(TEST_ONLY)
    assert all(pools[n] == "test" for n in TEST_ONLY)


@pytest.mark.parametrize("name", sorted(TEST_ONLY))
def test_nucfuse_test_needs_only_the_test_folder(name, tmp_path, fake_factory):
    """Before: NucFuseTest opened every dataset with split="all" and demanded the training files."""
    fake = fake_factory(name)
    _copy(fake, tmp_path, name, TEST_ONLY[name])
    test = NucFuseTest(tmp_path, datasets=[name], test_ids="rule", progress=False)
    assert len(test) == fake.tiles["test"]  # every fake test tile is eligible (< 14 of them)
    assert all(test.load_sample(i).meta.split == "test" for i in range(len(test)))
    assert available_datasets(tmp_path, [name], for_test=True) == [name]
    assert available_datasets(tmp_path, [name]) == []  # NucFuse-train's needs: every split
    available = NucFuseTest(tmp_path, datasets="available", test_ids="rule", progress=False)
    assert available.subsets == [name] and available.ids == test.ids
    with pytest.raises(DatasetNotFoundError):
        NucFuseTrain(tmp_path, datasets=[name], split="all", progress=False)


def test_same_tiles_from_the_test_split_as_from_the_whole_dataset(tmp_path, fake_factory):
    fake = fake_factory("monuseg")
    full, part = tmp_path / "full", tmp_path / "part"
    shutil.copytree(fake.native_dir, full / "monuseg")
    _copy(fake, part, "monuseg", TEST_ONLY["monuseg"])
    whole = nf.get_dataset("monuseg", root=full, split="all", progress=False)
    a = NucFuseTest(full, datasets={"monuseg": whole}, test_ids="rule", progress=False)  # split "all" still accepted
    b = NucFuseTest(part, datasets=["monuseg"], test_ids="rule", progress=False)
    assert a.ids == b.ids and a.ids_sha256 == b.ids_sha256
    for i in range(len(a)):
        sa, sb = a.load_sample(i), b.load_sample(i)
        assert (sa.instances == sb.instances).all() and (sa.image == sb.image).all()


def test_the_missing_dataset_error_names_the_split_it_needs(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        NucFuseTest(tmp_path, datasets=["consep"], progress=False)
    message = str(info.value)
    assert "official 'test' split only" in message and "nucfuse info consep" in message
    with pytest.raises(DatasetNotFoundError) as info:  # the whole dataset for one without a test split
        NucFuseTest(tmp_path, datasets=["tnbc"], progress=False)
    assert "official" not in str(info.value)


def test_a_training_split_instance_is_refused_with_the_allowed_splits(tmp_path, fake_factory):
    fake = fake_factory("monuseg")
    _copy(fake, tmp_path, "monuseg", ["MoNuSeg 2018 Training Data"])
    train_only = nf.get_dataset("monuseg", root=tmp_path, split="train", progress=False)
    with pytest.raises(ArgumentError, match=r"split='all' or 'test'"):
        NucFuseTest(tmp_path, datasets={"monuseg": train_only}, test_ids="rule", progress=False)
    with pytest.raises(ArgumentError, match=r"split='all'"):
        NucFuseTrain(tmp_path, datasets={"monuseg": train_only}, split="all", progress=False)


def test_the_report_says_which_lists_were_drawn_locally(tmp_path, fake_factory):
    """Issue 23, item 6: next to the fingerprint, the subsets not scored on a pinned list, with the reason."""
    import numpy as np

    from nucfuse_datasets.benchmark.protocol import unpinned_reason

    for name in ("monuseg", "monusac"):
        _copy(fake_factory(name), tmp_path, name, TEST_ONLY[name])
    test = NucFuseTest(tmp_path, datasets=["monuseg", "monusac"], test_ids="rule", progress=False)
    report = test.evaluate(lambda im: np.zeros(im.shape[:2], np.int32), progress=False)
    text = report.to_markdown()
    assert f"Test-set fingerprint (sha256 of the ids): {test.ids_sha256[:16]}" in text
    assert "- monuseg: drawn from the local copy (test_ids='rule'" in text  # MoNuSeg has a pinned list
    reason = unpinned_reason("monusac")
    assert reason and f"- monusac: drawn from the local copy ({reason})" in text  # MoNuSAC has none, and says why
    assert set(report.meta["unpinned"]) == {"monuseg", "monusac"}
