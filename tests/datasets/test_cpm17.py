"""CPM-17 parser quirks: split-prefixed ids, int/float .mat maps, the Drive-folder zip, manual instructions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.io

import nucfuse_datasets as nf
from nucfuse_datasets.datasets.cpm17 import CPM17, DRIVE_FOLDER
from nucfuse_datasets.errors import InvalidSourceError, ManualDownloadRequired
from tests.conftest import copy_native
from tests.fakedata import cpm17 as fake_cpm17
from tests.fakedata._common import dense_ids, tile, zip_tree


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tests.fakedata import generators

    fake = generators()["cpm17"](tmp_path_factory.mktemp("fake-cpm17"))
    root = tmp_path_factory.mktemp("root")
    copy_native(fake, root, "cpm17")
    return nf.get_dataset("cpm17", root=root, progress=False)


def test_ids_are_prefixed_with_the_split(prepared):
    assert prepared.sample_ids == ["train_image_00", "train_image_01", "test_image_00", "test_image_01"]
    assert [prepared.meta(i).split for i in range(4)] == ["train", "train", "test", "test"]
    assert prepared.meta(2).original_file == "cpm17/test/Images/image_00.png"
    assert prepared.meta(0).magnification is None  # mixed 20×/40×, unknown per tile
    assert CPM17.test_split == "test" and CPM17.class_names is None


@pytest.mark.parametrize("i", range(len(fake_cpm17.TILES)))
def test_int_and_float_maps_are_read(prepared, i):
    split, stem, size, _dtype = fake_cpm17.TILES[i]
    s = prepared[prepared.index_of(f"{split}_{stem}")]
    image, inst, _ = tile(size, size, fake_cpm17.seed_of(split, stem), density=3.0)
    assert np.array_equal(s.image, image)  # RGBA test PNGs lose their alpha
    assert np.array_equal(s.instances, dense_ids(inst))  # gaps closed, order kept
    assert s.shape == (size, size)


def test_drive_folder_zip_with_any_top_folder(tmp_path, fake_factory):
    fake = fake_factory("cpm17")
    staging = tmp_path / "staging"
    shutil.copytree(fake.native_dir / "cpm17", staging / "CPM-17 data")
    ddir = tmp_path / "root" / "cpm17"
    zip_tree(staging, ddir / "cpm17.zip")
    ds = nf.get_dataset("cpm17", root=tmp_path / "root", progress=False)
    assert len(ds) == 4
    # no published hash: the zip's sha256 is recorded on first use
    record = json.loads((ddir / ".nucfuse-hashes.json").read_text())
    assert set(record) == {"cpm17.zip"}


def test_manual_download_message(tmp_path):
    with pytest.raises(ManualDownloadRequired) as info:
        CPM17(tmp_path)
    text = str(info.value)
    for needle in (DRIVE_FOLDER, "cpm17.zip", "train/", "Labels/image_NN.mat", str(tmp_path / "cpm17")):
        assert needle in text


def test_resource_is_a_manual_archive_without_hash():
    (res,) = CPM17.resources
    assert res.manual and res.kind == "archive" and res.sha256 is None and res.md5 is None
    assert res.page == DRIVE_FOLDER and "recorded on first use" in res.hash_source
    assert CPM17.paper.tiles == 64 and CPM17.paper.train_patches == 285


def test_label_shape_mismatch_is_refused(tmp_path, fake_factory):
    target = copy_native(fake_factory("cpm17"), tmp_path, "cpm17")
    scipy.io.savemat(target / "cpm17" / "train" / "Labels" / "image_01.mat", {"inst_map": np.zeros((64, 64))})
    with pytest.raises(InvalidSourceError, match=r"image_01\.mat: inst_map shape \(64, 64\) differs"):
        nf.get_dataset("cpm17", root=tmp_path, progress=False)


def test_three_dimensional_map_is_refused(tmp_path, fake_factory):
    target = copy_native(fake_factory("cpm17"), tmp_path, "cpm17")
    scipy.io.savemat(target / "cpm17" / "test" / "Labels" / "image_00.mat", {"inst_map": np.zeros((64, 64, 2))})
    with pytest.raises(InvalidSourceError, match="must be 2-D"):
        nf.get_dataset("cpm17", root=tmp_path, progress=False)


def test_unpaired_files_are_refused(tmp_path, fake_factory):
    target = copy_native(fake_factory("cpm17"), tmp_path, "cpm17")
    (target / "cpm17" / "test" / "Labels" / "image_01.mat").unlink()
    with pytest.raises(InvalidSourceError, match="image_01"):
        nf.get_dataset("cpm17", root=tmp_path, progress=False)
