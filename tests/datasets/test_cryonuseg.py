"""CryoNuSeg parser quirks: three mark-ups with doubled folder names, the annotator option, organs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from nucfuse_datasets.datasets.cryonuseg import ANNOTATORS, CryoNuSeg, label_folder, organ_from_stem
from nucfuse_datasets.errors import ArgumentError, CountMismatchWarning, InvalidSourceError, ManualDownloadRequired
from tests.conftest import copy_native
from tests.fakedata import cryonuseg as fake
from tests.fakedata._common import dense_ids, tile


@pytest.fixture
def root(tmp_path, fake_factory):
    copy_native(fake_factory("cryonuseg"), tmp_path, "cryonuseg")
    return tmp_path


def test_default_markup_ids_organs(root):
    ds = CryoNuSeg(root=root, progress=False)
    assert ds.store_name == "prepared"
    assert ds.sample_ids == fake.STEMS
    assert {ds.sample_ids[i]: ds.meta(i).organ for i in range(len(ds))} == fake.ORGANS
    m = ds.meta(0)
    assert m.extra["annotator"] == "Annotator 1 (biologist)"
    assert m.extra["label_file"] == "Annotator 1 (biologist)/label masks modify/Human_AdrenalGland_01.tif"
    for i in range(len(ds)):  # 'label masks modify', not the 'label masks' decoy with one label more
        image, inst, _ = tile(fake.SIZE, fake.SIZE, 1200 + i)
        s = ds[i]
        assert np.array_equal(s.instances, dense_ids(inst))
        assert np.array_equal(s.image, image)


@pytest.mark.parametrize("annotator", ["a1-round2", "a2"])
def test_other_markups_in_doubled_folders(root, fake_factory, annotator):
    base = fake_factory("cryonuseg").nuclei["all"]
    ds = CryoNuSeg(root=root, annotator=annotator, progress=False)
    assert ds.store_name == f"prepared-annotator={annotator}"
    total = sum(ds.n_instances(i) for i in range(len(ds)))
    assert total == base + fake.EXTRA_PER_TILE[annotator] * len(fake.STEMS)
    name = ANNOTATORS[annotator]
    assert ds.meta(0).extra["label_file"].startswith(f"{name}/{name}/label masks modify/")
    # the default store is untouched and still loads
    assert sum(CryoNuSeg(root=root).n_instances(i) for i in range(3)) == base


def test_single_or_doubled_folder_for_every_markup(tmp_path):
    for key, name in ANNOTATORS.items():
        (tmp_path / key / name / name / "label masks modify").mkdir(parents=True)
        assert label_folder(tmp_path / key, key) == tmp_path / key / name / name / "label masks modify"
        (tmp_path / key / name / "label masks modify").mkdir()
        assert label_folder(tmp_path / key, key) == tmp_path / key / name / "label masks modify"
    assert label_folder(tmp_path / "empty", "a1") is None


def test_missing_markup_names_what_was_found(root):
    shutil.rmtree(root / "cryonuseg" / "Annotator 2 (bioinformatician)")
    with pytest.raises(InvalidSourceError, match=r"annotator='a2'.*Annotator 1 \(biologist\)"):
        CryoNuSeg(root=root, annotator="a2", progress=False)


def test_unpaired_raises(root):
    (root / "cryonuseg" / "tissue images" / "Human_Larynx_02.tif").unlink()
    with pytest.raises(InvalidSourceError, match="Human_Larynx_02"):
        CryoNuSeg(root=root, progress=False)


def test_unknown_annotator(tmp_path):
    with pytest.raises(ArgumentError, match="a1-round2"):
        CryoNuSeg(root=tmp_path, annotator="3")


def test_counts_checked_against_the_chosen_markup(root):
    with pytest.warns(CountMismatchWarning, match="8242") as rec:
        CryoNuSeg(root=root, annotator="a2", progress=False)
    assert not any("7592" in str(w.message) for w in rec)
    with pytest.warns(CountMismatchWarning, match="7592"):
        CryoNuSeg(root=root, progress=False)
    assert [(e.tiles, e.nuclei) for e in CryoNuSeg.expected_counts] == [(30, 7592)]


def test_manual_instructions(tmp_path):
    with pytest.raises(ManualDownloadRequired) as info:
        CryoNuSeg(root=tmp_path, download=True)
    msg = str(info.value)
    assert "kaggle datasets download -d ipateam/segmentation-of-nuclei-in-cryosectioned-he-images" in msg
    assert "segmentation-of-nuclei-in-cryosectioned-he-images.zip" in msg and str(tmp_path / "cryonuseg") in msg


def test_organ_from_stem():
    assert organ_from_stem("Human_ThyroidGland_03") == "thyroid gland"
    assert organ_from_stem("Human_LymphNodes_01") == "lymph nodes"
    assert organ_from_stem("TCGA-DE-A4MA") is None
