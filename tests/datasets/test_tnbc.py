"""TNBC parser quirks: binary masks → connected components, hole filling, patients, macOS junk, sources."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nucfuse_datasets.datasets._labels import (
    binary_to_instances,
    fill_small_holes,
    label_components,
    read_binary_mask,
)
from nucfuse_datasets.datasets.tnbc import CONNECTIVITY, MAX_HOLE, TNBC
from nucfuse_datasets.errors import ArgumentError, ChecksumError, InvalidSourceError
from tests.conftest import copy_archives, copy_native
from tests.fakedata._common import write_png


@pytest.fixture
def prepared(tmp_path, fake_factory):
    copy_native(fake_factory("tnbc"), tmp_path, "tnbc")
    return TNBC(root=tmp_path, progress=False)


def test_ids_patients_and_meta(prepared):
    assert prepared.sample_ids == ["01_1", "01_2", "02_1", "03_1", "03_2"]
    assert [prepared.meta(i).extra["patient"] for i in range(len(prepared))] == ["01", "01", "02", "03", "03"]
    m = prepared.meta(2)
    assert m.organ == "breast" and m.magnification == 40.0
    assert m.original_file == "TNBC_NucleiSegmentation/Slide_02/02_1.png"


def test_instance_counts_follow_the_drawn_masks(prepared):
    # draw_mask: 3 separate disks + 1 merged overlapping pair + 1 corner-touching pair, + 1 disk on even tiles
    assert [prepared.n_instances(i) for i in range(len(prepared))] == [5, 6, 5, 5, 6]


def test_merges_fills_and_keeps_holes(prepared):
    inst = prepared[0].instances
    assert inst[12, 12] > 0 and inst[12, 12] == inst[12, 15]  # 1-px hole filled, part of its disk
    assert inst[11, 39] == 0 and inst[12, 40] == 0  # 4-px hole kept
    assert inst[40, 40] == inst[40, 50] > 0  # overlapping disks merge
    assert inst[53, 3] == inst[58, 8] > 0  # squares meeting at a corner merge (8-connectivity)
    assert len({int(inst[12, 12]), int(inst[12, 45]), int(inst[40, 12]), int(inst[40, 40]), int(inst[53, 3])}) == 5


def test_alpha_dropped_and_image_kept(prepared, fake_factory):
    native = fake_factory("tnbc").native_dir / "TNBC_NucleiSegmentation" / "Slide_01" / "01_1.png"
    rgba = np.asarray(Image.open(native))
    assert rgba.shape[2] == 4
    assert np.array_equal(prepared[0].image, rgba[..., :3])


def test_constants_documented():
    assert CONNECTIVITY == 8 and MAX_HOLE == 1


def test_apple_double_files_beside_images_ignored(tmp_path, fake_factory):
    target = copy_native(fake_factory("tnbc"), tmp_path, "tnbc")
    (target / "TNBC_NucleiSegmentation" / "Slide_01" / "._01_1.png").write_bytes(b"\x00\x05\x16\x07")
    ds = TNBC(root=tmp_path, progress=False)
    assert len(ds) == 5


def test_unpaired_ground_truth_raises(tmp_path, fake_factory):
    target = copy_native(fake_factory("tnbc"), tmp_path, "tnbc")
    (target / "TNBC_NucleiSegmentation" / "GT_03" / "03_2.png").unlink()
    with pytest.raises(InvalidSourceError, match="03_2"):
        TNBC(root=tmp_path, progress=False)


def test_missing_gt_folder_raises(tmp_path, fake_factory):
    target = copy_native(fake_factory("tnbc"), tmp_path, "tnbc")
    for p in (target / "TNBC_NucleiSegmentation" / "GT_02").iterdir():
        p.unlink()
    (target / "TNBC_NucleiSegmentation" / "GT_02").rmdir()
    with pytest.raises(InvalidSourceError, match="GT_02"):
        TNBC(root=tmp_path, progress=False)


def test_v1_source_has_its_own_store(tmp_path, fake_factory):
    copy_native(fake_factory("tnbc"), tmp_path, "tnbc")
    ds = TNBC(root=tmp_path, source="v1", progress=False)
    assert ds.store_name == "prepared-source=v1" and len(ds) == 5
    assert TNBC(root=tmp_path, progress=False).store_name == "prepared"


def test_v1_pins_its_own_hash(tmp_path, fake_factory):
    # the same file name as v1.1: a zip that is not Zenodo v1 fails v1's pinned sha256
    copy_archives(fake_factory("tnbc"), tmp_path, "tnbc")
    with pytest.raises(ChecksumError, match="da708c3a988f4ad4"):
        TNBC(root=tmp_path, source="v1", progress=False)


def test_unknown_source(tmp_path):
    with pytest.raises(ArgumentError, match=r"v1\.1"):
        TNBC(root=tmp_path, source="v2")


def test_published_counts():
    got = sorted((e.tiles, e.nuclei) for e in TNBC.expected_counts)
    assert got == [(50, 4022), (50, 4056)]
    res = {r.key: r for r in TNBC.resources}
    assert res["v1.1"].md5 == "1605712a752b201b57eacc8f866adb4f" and res["v1.1"].size == 25_232_361
    assert res["v1"].sha256.startswith("da708c3a")


# ---------------------------------------------------------------- the shared binary-mask helpers


def test_connectivity_choice():
    m = np.zeros((5, 5), bool)
    m[1, 1] = m[2, 2] = True  # corner contact
    assert label_components(m, 8).max() == 1
    assert label_components(m, 4).max() == 2
    with pytest.raises(ValueError, match="4 or 8"):
        label_components(m, 6)


def test_hole_filling_rules():
    m = np.zeros((7, 7), bool)
    m[1:6, 1:6] = True
    m[3, 3] = False  # enclosed 1-px hole
    assert fill_small_holes(m, 1)[3, 3]
    m2 = np.ones((4, 4), bool)
    m2[0, 1] = False  # a 1-px gap open to the border is not a hole
    assert not fill_small_holes(m2, 1)[0, 1]
    m3 = np.ones((6, 6), bool)
    m3[2:4, 2:4] = False  # 4-px hole
    assert not fill_small_holes(m3, 1)[2, 2] and fill_small_holes(m3, 4)[2, 2]
    assert not binary_to_instances(m3, max_hole=0)[2, 2]


def test_binary_mask_reader(tmp_path):
    grey = np.zeros((4, 4), np.uint8)
    grey[1, 1] = 255
    write_png(tmp_path / "l.png", grey, mode="L")
    assert read_binary_mask(tmp_path / "l.png").sum() == 1
    Image.fromarray(grey > 0).save(tmp_path / "one-bit.png")  # mode "1"
    assert read_binary_mask(tmp_path / "one-bit.png").sum() == 1
    write_png(tmp_path / "rgb.png", np.stack([grey] * 3, axis=-1))
    assert read_binary_mask(tmp_path / "rgb.png").sum() == 1
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[1, 1] = (255, 0, 0)
    write_png(tmp_path / "colour.png", colour)
    with pytest.raises(InvalidSourceError, match="colour channels differ"):
        read_binary_mask(tmp_path / "colour.png")
