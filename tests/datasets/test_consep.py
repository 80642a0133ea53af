"""CoNSeP parser quirks: double-stored maps, inst_type order, class merging option, v7.3 files, manual download."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

import nucfuse_datasets as nf
from nucfuse_datasets.datasets._mat import load_mat
from nucfuse_datasets.datasets.consep import MERGE, MERGED_CLASS_NAMES, ORIGINAL_CLASS_NAMES, CoNSeP, instance_classes
from nucfuse_datasets.errors import ArgumentError, InvalidSourceError, ManualDownloadRequired
from tests.conftest import copy_native
from tests.fakedata import consep as fake_consep


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from tests.fakedata import generators

    fake = generators()["consep"](tmp_path_factory.mktemp("fake-consep"))
    root = tmp_path_factory.mktemp("root")
    copy_native(fake, root, "consep")
    return root


def test_splits_and_natural_order(root):
    ds = CoNSeP(root, progress=False)
    assert ds.sample_ids == [*fake_consep.TRAIN, *fake_consep.TEST]  # train_1, train_2, train_10
    assert [ds.meta(i).split for i in range(len(ds))] == ["train"] * 3 + ["test"] * 2
    assert CoNSeP.test_split == "test"
    assert ds.meta(0).organ == "colon" and ds.meta(0).original_file == "CoNSeP/Train/Images/train_1.png"


@pytest.mark.parametrize("stem", [*fake_consep.TRAIN, *fake_consep.TEST])
def test_double_maps_are_cast_and_classes_follow_inst_type(root, stem):
    ds = CoNSeP(root, progress=False)
    s = ds[ds.index_of(stem)]
    want = fake_consep.label_of(fake_consep.seed_of(stem))
    assert np.array_equal(s.instances, want)  # contiguous ids survive unchanged
    n = int(want.max())
    assert s.classes.tolist() == [0, *[fake_consep.type_of(k) for k in range(1, n + 1)]]
    assert s.class_names == ORIGINAL_CLASS_NAMES and s.image.shape == (64, 64, 3)  # train_2 is RGBA


def test_merged_classes_get_their_own_store(root):
    original = CoNSeP(root, progress=False)
    merged = CoNSeP(root, classes="merged", progress=False)
    assert merged.store_path != original.store_path and merged.store_path.name == "prepared-classes=merged"
    assert merged.options == {"classes": "merged"} and original.options == {}
    assert merged.class_names == MERGED_CLASS_NAMES
    for i in range(len(merged)):
        a, b = original[i], merged[i]
        assert b.class_names == MERGED_CLASS_NAMES
        assert b.classes.tolist() == [MERGE[c] for c in a.classes.tolist()]
    assert set(np.concatenate([merged[i].classes for i in range(len(merged))]).tolist()) == {0, 1, 2, 3, 4}
    # the class-level description keeps the source's 7 classes
    assert CoNSeP.class_names == ORIGINAL_CLASS_NAMES and len(CoNSeP.info()["class_names"]) == 8


def test_unknown_classes_option(root):
    with pytest.raises(ArgumentError, match="merged"):
        CoNSeP(root, classes="binary")


def test_instance_classes_rules():
    inst = np.array([[0, 2, 2], [5, 5, 0]])
    # one entry per id up to the largest (ids with gaps): indexed by id
    assert instance_classes(inst, np.array([[1], [3], [9], [9], [6]], float), None, "x") == {2: 3, 5: 6}
    # one entry per present id: matched to the sorted ids
    assert instance_classes(inst, np.array([[4], [7]]), None, "x") == {2: 4, 5: 7}
    with pytest.raises(InvalidSourceError, match="3 entries"):
        instance_classes(inst, np.array([1, 2, 3]), None, "x")
    # no inst_type: majority of type_map inside each instance
    tmap = np.array([[0, 2, 2], [7, 5, 0]], float)
    assert instance_classes(inst, None, tmap, "x") == {2: 2, 5: 5}  # tie 5 vs 7: the smaller id
    with pytest.raises(InvalidSourceError, match="neither"):
        instance_classes(inst, None, None, "x")
    with pytest.raises(InvalidSourceError, match="non-integer"):
        instance_classes(inst, np.array([1.5, 2.0]), None, "x")


def _replace_mat(tmp_path, fake_factory, **arrays):
    target = copy_native(fake_factory("consep"), tmp_path, "consep")
    path = target / "CoNSeP" / "Test" / "Labels" / "test_2.mat"
    if arrays:
        scipy.io.savemat(path, arrays)
    return path


def test_v73_mat_is_refused_with_a_clear_message(tmp_path, fake_factory):
    path = _replace_mat(tmp_path, fake_factory)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    path.write_bytes(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM" + b"\x89HDF\r\n\x1a\n" + b"\x00" * 600)
    with pytest.raises(InvalidSourceError, match=r"test_2\.mat: MATLAB v7\.3 \(HDF5\)"):
        nf.get_dataset("consep", root=tmp_path, progress=False)
    assert not [p for p in (tmp_path / "consep").iterdir() if p.name.startswith(("prepared", ".tmp-"))]


def test_fractional_inst_map_is_refused(tmp_path, fake_factory):
    inst = fake_consep.label_of(fake_consep.seed_of("test_2")).astype(float)
    inst[0, 0] = 0.5
    _replace_mat(tmp_path, fake_factory, inst_map=inst, inst_type=np.ones((int(inst.max()), 1)))
    with pytest.raises(InvalidSourceError, match=r"test_2\.mat: inst_map: non-integer"):
        nf.get_dataset("consep", root=tmp_path, progress=False)


def test_missing_inst_map_names_the_variables(tmp_path, fake_factory):
    _replace_mat(tmp_path, fake_factory, instance_map=np.zeros((64, 64)))
    with pytest.raises(InvalidSourceError, match=r"\['inst_map'\] missing .*found: \['instance_map'\]"):
        nf.get_dataset("consep", root=tmp_path, progress=False)


def test_class_outside_the_seven_is_refused(tmp_path, fake_factory):
    inst = fake_consep.label_of(fake_consep.seed_of("test_2"))
    _replace_mat(tmp_path, fake_factory, inst_map=inst.astype(float), inst_type=np.full((int(inst.max()), 1), 8.0))
    with pytest.raises(InvalidSourceError, match=r"outside CoNSeP's 0\.\.7"):
        nf.get_dataset("consep", root=tmp_path, progress=False)


def test_not_a_mat_file(tmp_path):
    p = tmp_path / "x.mat"
    p.write_bytes(b"\x00\x01garbage" * 20)
    with pytest.raises(InvalidSourceError, match=r"x\.mat"):
        load_mat(p, ["inst_map"])


def test_layout_without_the_top_folder(tmp_path, fake_factory):
    fake = fake_factory("consep")
    import shutil

    shutil.copytree(fake.native_dir / "CoNSeP", tmp_path / "consep" / "opendatalab-copy")
    ds = nf.get_dataset("consep", root=tmp_path, progress=False)
    assert len(ds) == fake.tiles["all"]


def test_manual_download_message(tmp_path):
    with pytest.raises(ManualDownloadRequired) as info:
        CoNSeP(tmp_path)
    text = str(info.value)
    for needle in (
        "consep.zip",
        "https://warwick.ac.uk/fac/cross_fac/tia/data/hovernet/",
        "https://opendatalab.com/OpenDataLab/CoNSeP",
        "sign",
        "CoNSeP/Train/",
        str(tmp_path / "consep"),
        "54dc1511bdad92186490e667b1156445",
    ):
        assert needle in text


def test_resource_and_counts():
    (res,) = CoNSeP.resources
    assert res.md5 == "54dc1511bdad92186490e667b1156445" and res.sha256 is None and not res.downloadable
    assert "third-party" in res.hash_source
    counts = {"train": {"tiles": 27, "nuclei": 0}, "test": {"tiles": 14, "nuclei": 0}}
    assert (
        CoNSeP.__new__(CoNSeP).check_counts({**counts, "all": {"tiles": 41, "nuclei": 24332}}) == []
    )  # Table 1 within 0.1 %
    diffs = CoNSeP.__new__(CoNSeP).check_counts({**counts, "all": {"tiles": 41, "nuclei": 24400}})
    assert [(d["split"], d["what"]) for d in diffs] == [("all", "nuclei")]
    assert CoNSeP.paper.nuclei == 24332
