"""PCNS parser quirks: recursive pairing, skipped patches, label bit depths, the optional crosswalk."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.datasets._labels import read_instance_map
from nucfuse_datasets.datasets.pcns import CROSSWALK_PATCHES, PCNS, parse_crosswalk
from nucfuse_datasets.errors import CountMismatchWarning, InvalidSourceError, ManualDownloadRequired
from nucfuse_datasets.io.store import PreparedStore
from tests.conftest import copy_archives, copy_native
from tests.fakedata import pcns as fake_pcns
from tests.fakedata._common import dense_ids, rgba, tile, write_png


@pytest.fixture
def prepared(tmp_path, fake_factory):
    copy_native(fake_factory("pcns"), tmp_path, "pcns")
    return PCNS(root=tmp_path, progress=False)


def test_patches_paired_recursively_and_missing_masks_skipped(prepared):
    # patch 3 has no corrected mask; the others sit in folders of different depths
    assert prepared.sample_ids == ["1", "2", "7", "12"]  # numeric order of the patch ids
    manifest = PreparedStore(prepared.store_path).manifest
    assert manifest["skipped"] == {"patch without _labeled_mask_corrected.png": 1}
    assert prepared.meta(2).original_file == "manual_segmentation_data/brca/more/7_crop.png"


def test_tile_size_read_at_run_time(prepared):
    shapes = {sid: prepared.tile_shape(i) for i, sid in enumerate(prepared.sample_ids)}
    assert shapes == {"1": (64, 64), "2": (64, 64), "7": (80, 80), "12": (72, 72)}


@pytest.mark.parametrize("pid", ["1", "2", "7", "12"])
def test_8_and_16_bit_labels_keep_every_instance(prepared, pid):
    # the fake writes the synthetic instance map of seed 500 + position (ids ×1000 as 16-bit for 2 and 12)
    position = list(fake_pcns.PATCHES).index(pid)
    side = fake_pcns.PATCHES[pid][1]
    image, inst, _ = tile(side, side, 500 + position)
    sample = prepared[prepared.index_of(pid)]
    assert np.array_equal(sample.instances, dense_ids(inst))
    assert np.array_equal(sample.image, image)  # alpha dropped (RGBA for all but patch 7)


def test_cancer_type_from_crosswalk(prepared):
    metas = {sid: prepared.meta(i) for i, sid in enumerate(prepared.sample_ids)}
    assert {sid: m.extra.get("cancer_type") for sid, m in metas.items()} == {
        "1": "blca",
        "2": "blca",  # written " blca": stripped
        "7": "brca",  # written "brca" vs "BRCA": lower-cased
        "12": None,  # not listed
    }
    assert metas["1"].organ == "bladder" and metas["7"].organ == "breast" and metas["12"].organ is None
    assert metas["1"].extra["tcga_id"] == "TCGA-BT-0001"
    assert metas["12"].extra["in_crosswalk"] is False and metas["2"].extra["in_crosswalk"] is True


def test_without_crosswalk_cancer_type_unset(tmp_path, fake_factory):
    target = copy_native(fake_factory("pcns"), tmp_path, "pcns")
    (target / fake_pcns.CROSSWALK).unlink()
    ds = PCNS(root=tmp_path, progress=False)
    assert len(ds) == 4
    for i in range(len(ds)):
        m = ds.meta(i)
        assert m.organ is None and "cancer_type" not in m.extra and "in_crosswalk" not in m.extra


def test_crosswalk_fetched_when_archive_placed_by_hand(tmp_path, serve_fake):
    served = serve_fake("pcns")
    (tmp_path / "pcns").mkdir()
    shutil.copyfile(served.fake.archives["main"], tmp_path / "pcns" / "manual_segmentation_data.tar.gz")
    ds = PCNS(root=tmp_path, download=True, progress=False)
    assert len(served.calls) == 1 and served.calls[0].endswith(fake_pcns.CROSSWALK)
    assert ds.meta(0).extra["cancer_type"] == "blca"


def test_archive_without_crosswalk_and_no_download(tmp_path, serve_fake):
    served = serve_fake("pcns")
    (tmp_path / "pcns").mkdir()
    shutil.copyfile(served.fake.archives["main"], tmp_path / "pcns" / "manual_segmentation_data.tar.gz")
    ds = PCNS(root=tmp_path, download=False, progress=False)
    assert served.calls == []
    assert ds.meta(0).organ is None


def test_manual_message_names_box_and_crosswalk(tmp_path):
    with pytest.raises(ManualDownloadRequired) as info:
        PCNS(root=tmp_path, download=True)
    msg = str(info.value)
    assert "manual_segmentation_data.tar.gz" in msg and "app.box.com" in msg and fake_pcns.CROSSWALK in msg


def test_crosswalk_parser_variants(tmp_path):
    base = "Some readme text, with commas.\n\nPatch-ID,TCGA-ID,Cancer Type\n007,TCGA-X,LUAD\n8,,\n,TCGA-Y,SKCM\n"
    plain = tmp_path / "a.txt"
    plain.write_bytes(("\ufeff" + base).encode())  # byte-order mark
    expected = {"7": {"cancer_type": "luad", "tcga_id": "TCGA-X"}, "8": {}}
    assert parse_crosswalk(plain) == expected  # leading zeros dropped, empty ids ignored, header spacing ignored
    packed = tmp_path / "b.txt"
    packed.write_bytes(gzip.compress(base.encode()))
    assert parse_crosswalk(packed) == expected
    bad = tmp_path / "c.txt"
    bad.write_text("no table here\n")
    with pytest.raises(InvalidSourceError, match="Patch-ID"):
        parse_crosswalk(bad)
    nocol = tmp_path / "d.txt"
    nocol.write_text("Patch-ID,TCGA-ID\n1,TCGA-Z\n")
    with pytest.raises(InvalidSourceError, match="CancerType"):
        parse_crosswalk(nocol)


def _one_patch(root, label: np.ndarray, image: np.ndarray | None = None, name: str = "5") -> None:
    folder = root / "pcns" / "x"
    if image is None:
        image = rgba(tile(label.shape[0], label.shape[1], 1)[0])
    write_png(folder / f"{name}_crop.png", image)
    write_png(folder / f"{name}_labeled_mask_corrected.png", label)


def test_rgb_encoded_label_is_decoded(tmp_path):
    label = np.zeros((16, 16, 3), np.uint8)
    label[2:5, 2:5] = (10, 1, 0)  # id 266
    label[8:12, 8:12] = (0, 0, 2)  # id 131072
    label[13:15, 1:3] = (10, 1, 0)  # the same id again
    decoded, encoding = _read_png_label(tmp_path, label)
    assert encoding == "rgb24" and sorted(np.unique(decoded).tolist()) == [0, 266, 131072]
    _one_patch(tmp_path, label)
    ds = PCNS(root=tmp_path, progress=False)
    assert ds.n_instances(0) == 2 and ds.meta(0).extra["label_encoding"] == "rgb24"


def _read_png_label(tmp_path, label):
    path = tmp_path / "probe.png"
    write_png(path, label)
    return read_instance_map(path)


def test_colour_rendering_without_background_is_refused(tmp_path):
    label = np.full((16, 16, 3), 255, np.uint8)  # white background: a rendering, not an id map
    label[4:8, 4:8] = (255, 0, 0)
    _one_patch(tmp_path, label)
    with pytest.raises(InvalidSourceError, match=r"5_labeled_mask_corrected\.png"):
        PCNS(root=tmp_path, progress=False)


def test_mask_without_patch_raises(tmp_path):
    _one_patch(tmp_path, np.zeros((16, 16), np.uint8))
    write_png(tmp_path / "pcns" / "y" / "9_labeled_mask_corrected.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(InvalidSourceError, match=r"without their '_crop\.png'"):
        PCNS(root=tmp_path, progress=False)


def test_duplicate_patch_id_raises(tmp_path):
    _one_patch(tmp_path, np.zeros((16, 16), np.uint8))
    write_png(tmp_path / "pcns" / "other" / "5_crop.png", rgba(tile(16, 16, 2)[0]))
    with pytest.raises(InvalidSourceError, match="occurs twice"):
        PCNS(root=tmp_path, progress=False)


def test_shape_mismatch_raises(tmp_path):
    _one_patch(tmp_path, np.zeros((16, 20), np.uint8), image=rgba(tile(16, 16, 3)[0]))
    with pytest.raises(InvalidSourceError, match="differs from the patch"):
        PCNS(root=tmp_path, progress=False)


def test_published_counts_held_as_data():
    cls = nf.get_dataset_class("pcns")
    assert [(e.split, e.tiles, e.nuclei) for e in cls.expected_counts] == [("all", 1356, 37313)]
    assert CROSSWALK_PATCHES - 1356 == 9
    assert cls.paper.train_patches == 1342 and cls.test_split is None


def test_count_mismatch_warns_on_fake(tmp_path, fake_factory):
    copy_archives(fake_factory("pcns"), tmp_path, "pcns")
    with pytest.warns(CountMismatchWarning, match="1356"):
        PCNS(root=tmp_path, progress=False)
