"""MoNuSAC parser quirks: class annotations, Ambiguous → ignore, macrophage flag, missing .tif, stray names."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.datasets.monusac import MoNuSAC, read_monusac_xml
from nucfuse_datasets.errors import InvalidSourceError
from nucfuse_datasets.io.store import PreparedStore
from tests.conftest import copy_native
from tests.fakedata import monusac as fake_monusac

SUBS = {("train", s.stem): (i, s) for i, s in enumerate(fake_monusac.TRAIN)} | {
    ("test", s.stem): (i, s) for i, s in enumerate(fake_monusac.TEST)
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tests.fakedata import generators

    fake = generators()["monusac"](tmp_path_factory.mktemp("fake-monusac"))
    root = tmp_path_factory.mktemp("root")
    copy_native(fake, root, "monusac")
    return nf.get_dataset("monusac", root=root, progress=False)


def _sample(ds, split, stem):
    s = ds[ds.index_of(stem)]
    assert s.meta.split == split
    return s


def test_ids_suffix_styles_and_patient_meta(prepared):
    ds = prepared
    assert set(ds.sample_ids) == {stem for _, stem in SUBS}
    m = ds.meta(ds.index_of("TCGA-55-1594-01Z-00-DX1_001"))
    assert m.extra["sub_image"] == "001" and m.extra["patient"] == "TCGA-55-1594-01Z-00-DX1"
    assert m.extra["tcga_case"] == "TCGA-55-1594" and m.organ == "lung"
    m = ds.meta(ds.index_of("TCGA-5P-A9K0-01Z-00-DX1_1"))
    assert m.extra["sub_image"] == "1" and m.organ == "kidney"
    assert ds.meta(ds.index_of("TCGA-F9-A8NY-01Z-00-DX1_1")).organ == "kidney"
    assert MoNuSAC.test_split == "test"
    assert ds.class_names == ("background", "Epithelial", "Lymphocyte", "Neutrophil", "Macrophage")


def test_hyphen_sub_image_names(prepared):
    """Issue 24: a sub-image named with a hyphen (every prostate sub-image of the organisers' release, e.g.
    ``TCGA-G9-6342-01Z-00-DX1-1.xml``) got ``sub_image == ""``; the ``_1`` / ``_001`` styles worked."""
    m = prepared.meta(prepared.index_of("TCGA-G9-6342-01Z-00-DX1-1"))
    assert m.extra["sub_image"] == "1"
    assert m.extra["patient"] == "TCGA-G9-6342-01Z-00-DX1" and m.extra["tcga_case"] == "TCGA-G9-6342"
    assert m.organ == "prostate"  # G9-6342 is in the organisers' prostate list
    assert m.original_file == f"{fake_monusac.TRAIN_DIR}/TCGA-G9-6342-01Z-00-DX1/TCGA-G9-6342-01Z-00-DX1-1.tif"
    suffixes = {sid: prepared.meta(i).extra["sub_image"] for i, sid in enumerate(prepared.sample_ids)}
    assert suffixes == {s.stem: s.suffix for _, s in SUBS.values()}  # every style, from the fake's own names


@pytest.mark.parametrize("key", sorted(SUBS))
def test_pixels_instances_and_classes(prepared, key):
    split, stem = key
    i, sub = SUBS[key]
    s = _sample(prepared, split, stem)
    image, _ = fake_monusac.image_of(sub, fake_monusac.seed_of(split, i))
    assert np.array_equal(s.image, image)  # RGBA and RGB .tif, and the .svs fallback, give the same RGB
    assert s.n_instances == sub.n
    if sub.macrophage:
        want = [1, 1, 4, 4, 2, 2]
    else:
        half = sub.n // 2
        want = [1] * half + [2] * (sub.n - half)
    assert s.classes.tolist() == [0, *want]


def test_missing_tif_is_read_from_the_svs(prepared):
    m = prepared.meta(prepared.index_of("TCGA-2Z-A9JG-01Z-00-DX1_2"))
    assert m.extra["image_source"] == "svs" and m.original_file.endswith("_2.svs")
    assert prepared.meta(prepared.index_of("TCGA-2Z-A9JG-01Z-00-DX1_1")).extra["image_source"] == "tif"


def test_ambiguous_regions_become_the_ignore_mask(prepared):
    s = _sample(prepared, "test", "TCGA-2Z-A9JG-01Z-00-DX1_1")
    assert s.ignore is not None and int(s.ignore.sum()) == fake_monusac.ambiguous_pixels()
    x0, y0, x1, y1 = fake_monusac.AMBIGUOUS_BOX
    assert s.ignore[y0 : y1 + 1, x0 : x1 + 1].all()
    assert s.meta.extra["ambiguous_regions"] == 1
    others = [i for i in range(len(prepared)) if prepared.sample_ids[i] != "TCGA-2Z-A9JG-01Z-00-DX1_1"]
    assert all(prepared.load_sample(i).ignore is None for i in others)


def test_has_macrophage_is_recorded(prepared):
    flags = {sid: prepared.meta(i).extra["has_macrophage"] for i, sid in enumerate(prepared.sample_ids)}
    assert flags == {s.stem: s.macrophage for _, s in SUBS.values()}
    # an empty Macrophage annotation does not count
    assert flags["TCGA-F9-A8NY-01Z-00-DX1_1"] is False


def test_stray_class_names_are_skipped_and_counted(prepared):
    skipped = PreparedStore(prepared.store_path).manifest["skipped"]
    assert skipped == {
        f"region of an annotation with unrecognised class {name!r}": n
        for name, n in fake_monusac.N_STRAY_REGIONS.items()
    }
    assert _sample(prepared, "test", "TCGA-F9-A8NY-01Z-00-DX1_1").n_instances == 6


def test_read_xml_keeps_document_order_and_names(tmp_path, fake_factory):
    fake = fake_factory("monusac")
    xml = fake.native_dir / fake_monusac.TEST_DIR / "TCGA-F9-A8NY-01Z-00-DX1" / "TCGA-F9-A8NY-01Z-00-DX1_1.xml"
    names = [n for n, _ in read_monusac_xml(xml)]
    assert names == ["Epithelial"] * 3 + ["Description"] * 2 + ["1"] + ["Lymphocyte"] * 3


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's "Corrupt EXIF data" on the broken file
def test_unreadable_svs_without_tif_is_a_clear_error(tmp_path, fake_factory):
    target = copy_native(fake_factory("monusac"), tmp_path, "monusac")
    svs = target / fake_monusac.TEST_DIR / "TCGA-2Z-A9JG-01Z-00-DX1" / "TCGA-2Z-A9JG-01Z-00-DX1_2.svs"
    svs.write_bytes(b"II*\x00 definitely not a tiff")
    with pytest.raises(InvalidSourceError, match=r"_2\.tif: missing, and level 0 of .*_2\.svs cannot be read"):
        nf.get_dataset("monusac", root=tmp_path, progress=False)


def test_image_without_xml_is_refused(tmp_path, fake_factory):
    target = copy_native(fake_factory("monusac"), tmp_path, "monusac")
    (target / fake_monusac.TRAIN_DIR / "TCGA-55-1594-01Z-00-DX1" / "TCGA-55-1594-01Z-00-DX1_002.xml").unlink()
    with pytest.raises(InvalidSourceError, match="TCGA-55-1594-01Z-00-DX1_002"):
        nf.get_dataset("monusac", root=tmp_path, progress=False)


def test_same_stem_in_both_splits_gets_a_split_suffix(tmp_path, fake_factory):
    target = copy_native(fake_factory("monusac"), tmp_path, "monusac")
    patient = "TCGA-5P-A9K0-01Z-00-DX1"
    shutil.copytree(target / fake_monusac.TRAIN_DIR / patient, target / fake_monusac.TEST_DIR / patient)
    ds = nf.get_dataset("monusac", root=tmp_path, progress=False)
    assert ds.meta(ds.index_of(f"{patient}_1")).split == "train"
    assert ds.meta(ds.index_of(f"{patient}_1-test")).split == "test"


def test_other_top_folder_names_are_recognised(tmp_path, fake_factory):
    target = copy_native(fake_factory("monusac"), tmp_path, "monusac")
    (target / fake_monusac.TEST_DIR).rename(target / "MoNuSAC_Testing_Data")
    ds = nf.get_dataset("monusac", root=tmp_path, split="test", progress=False)
    assert len(ds) == len(fake_monusac.TEST)
    assert ds.meta(0).original_file.startswith("MoNuSAC_Testing_Data/")


def test_expected_counts_and_resources():
    assert {r.key: r.sha256[:8] for r in MoNuSAC.resources} == {"train": "5b7cbeb3", "test": "bcbc38f6"}
    assert MoNuSAC.paper.tiles == 310 and MoNuSAC.paper.nuclei == 46828
    ds = MoNuSAC.__new__(MoNuSAC)  # check_counts reads only class data
    train = {"tiles": 209, "nuclei": 31411}
    assert (
        ds.check_counts(
            {"train": train, "test": {"tiles": 101, "nuclei": 15417}, "all": {"tiles": 310, "nuclei": 46828}}
        )
        == []
    )
    diffs = ds.check_counts({"train": train, "all": {"tiles": 310, "nuclei": 31411}})
    assert [(d["split"], d["what"]) for d in diffs] == [("test", "tiles"), ("all", "nuclei")]
