from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk

from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.schema import Sample, SampleMeta
from nucfuse_datasets.transforms.targets import (
    HoVerNetTargets,
    NucleusTargets,
    border_map,
    hv_maps,
    nucleus_map,
    three_class_map,
    type_map,
)


def _random_instances(shape=(256, 256), n=200, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    inst = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        rr, cc = disk((r, c), int(rng.integers(2, 9)), shape=shape)
        inst[rr, cc] = i
    return inst


def _reference_hv(inst: np.ndarray, one_based: bool = True) -> np.ndarray:
    """Straightforward per-instance version of the definition (bounding box grown by 2 px)."""
    h, w = inst.shape
    out = np.zeros((2, h, w), np.float64)
    for idx, sl in enumerate(ndimage.find_objects(inst), start=1):
        if sl is None:
            continue
        r0, r1 = max(sl[0].start - 2, 0), min(sl[0].stop + 2, h)
        c0, c1 = max(sl[1].start - 2, 0), min(sl[1].stop + 2, w)
        mask = inst[r0:r1, c0:c1] == idx
        rows, cols = np.nonzero(mask)
        cy, cx = int(rows.mean() + 0.5), int(cols.mean() + 0.5)
        base = 1 if one_based else 0
        for axis, coords, centre in ((0, cols, cx), (1, rows, cy)):
            rel = (coords + base - centre).astype(np.float64)
            if (rel < 0).any():
                rel[rel < 0] /= -rel[rel < 0].min()
            if (rel > 0).any():
                rel[rel > 0] /= rel[rel > 0].max()
            out[axis, rows + r0, cols + c0] = rel
    return out


# --------------------------------------------------------------------------- HV maps
def test_hv_rectangle_known_values_one_based():
    inst = np.zeros((5, 7), np.int32)
    inst[1:4, 1:6] = 1  # 3 rows × 5 columns, centre of mass (2, 3)
    hv = hv_maps(inst)
    assert hv.dtype == np.float32 and hv.shape == (2, 5, 7)
    # x = col + 1 − 3 over columns 1..5 → −1, 0, 1, 2, 3 → scaled by 1/1 and 1/3
    np.testing.assert_allclose(hv[0, 1:4, 1:6], np.tile([-1, 0, 1 / 3, 2 / 3, 1], (3, 1)), atol=1e-6)
    # y = row + 1 − 2 over rows 1..3 → 0, 1, 2 → scaled by 1/2
    np.testing.assert_allclose(hv[1, 1:4, 1:6], np.tile([[0], [0.5], [1]], (1, 5)), atol=1e-6)
    assert not hv[:, inst == 0].any()


def test_hv_rectangle_known_values_centred():
    inst = np.zeros((5, 7), np.int32)
    inst[1:4, 1:6] = 4
    hv = hv_maps(inst, one_based=False)
    np.testing.assert_allclose(hv[0, 2, 1:6], [-1, -0.5, 0, 0.5, 1], atol=1e-6)
    np.testing.assert_allclose(hv[1, 1:4, 3], [-1, 0, 1], atol=1e-6)


def test_hv_disk_antisymmetry():
    inst = np.zeros((41, 41), np.int32)
    rr, cc = disk((20, 20), 9, shape=inst.shape)
    inst[rr, cc] = 7
    hv = hv_maps(inst, one_based=False)
    np.testing.assert_allclose(hv[0], -hv[0][:, ::-1], atol=1e-6)
    np.testing.assert_allclose(hv[1], -hv[1][::-1, :], atol=1e-6)
    np.testing.assert_allclose(hv[0], hv[1].T, atol=1e-6)
    # the faithful map has its zero crossing one pixel to the top-left of the centre
    faithful = hv_maps(inst)
    assert faithful[0, 20, 19] == 0 and faithful[1, 19, 20] == 0
    assert faithful[0, 20, 20] > 0 and faithful[1, 20, 20] > 0


def test_hv_range_zero_outside_and_reference():
    inst = _random_instances((128, 160), n=80, seed=3)
    for one_based in (True, False):
        hv = hv_maps(inst, one_based=one_based)
        assert hv.min() >= -1 and hv.max() <= 1
        assert not hv[:, inst == 0].any()
        np.testing.assert_allclose(hv, _reference_hv(inst, one_based), atol=1e-6)


def test_hv_independent_of_id_values():
    inst = _random_instances((64, 64), n=20, seed=5)
    sparse = np.where(inst > 0, inst * 1_000_003 % 2_000_000_000 + 1, 0).astype(np.int64)
    np.testing.assert_allclose(hv_maps(sparse), hv_maps(inst))


def test_hv_empty_and_bad_input():
    assert not hv_maps(np.zeros((4, 4), np.int32)).any()
    with pytest.raises(ArgumentError):
        hv_maps(np.zeros((4, 4, 1), np.int32))
    with pytest.raises(ArgumentError):
        hv_maps(np.zeros((4, 4), np.float32))
    with pytest.raises(ArgumentError):
        hv_maps(-np.ones((4, 4), np.int32))


def test_targets_are_fast():
    inst = _random_instances()
    hv_maps(inst)
    start = time.perf_counter()
    for _ in range(5):
        hv_maps(inst)
        three_class_map(inst)
    per_patch = (time.perf_counter() - start) / 5
    assert per_patch < 0.05, f"{per_patch * 1e3:.1f} ms per 256² patch"


# --------------------------------------------------------------------------- NP and 3-class maps
def test_nucleus_and_three_class_square():
    inst = np.zeros((7, 7), np.int32)
    inst[1:6, 1:6] = 2
    assert nucleus_map(inst).dtype == np.uint8
    assert nucleus_map(inst).sum() == 25
    three = three_class_map(inst)
    assert three.dtype == np.uint8
    assert (three[2:5, 2:5] == 1).all()
    assert three[1, 1:6].tolist() == [2] * 5 and three[1:6, 5].tolist() == [2] * 5
    assert (three[inst == 0] == 0).all()


def test_three_class_touching_instances_and_image_edge():
    inst = np.zeros((6, 8), np.int32)
    inst[:, :4] = 1
    inst[:, 4:] = 2
    three = three_class_map(inst)
    # the shared boundary is border on both sides; the image edge counts as background
    assert (three[:, 3] == 2).all() and (three[:, 4] == 2).all()
    assert (three[0] == 2).all() and (three[:, 0] == 2).all()
    assert three[2, 1] == 1 and three[2, 6] == 1
    # diagonal neighbours count (8-connectivity)
    diag = np.zeros((5, 5), np.int32)
    diag[2, 2] = 1
    assert border_map(diag)[1, 1] and border_map(diag)[3, 3]


# --------------------------------------------------------------------------- transforms
def _sample(inst: np.ndarray) -> Sample:
    return Sample(
        image=np.full((*inst.shape, 3), 200, np.uint8),
        instances=inst.astype(np.int32),
        meta=SampleMeta(dataset="demo", sample_id="a", split="train"),
    )


def test_hovernet_targets_transform():
    inst = _random_instances((64, 64), n=15, seed=1)
    t = HoVerNetTargets(keep_meta=True)
    out = pickle.loads(pickle.dumps(t))(_sample(inst))
    assert set(out) == {"image", "instances", "np", "hv", "three_class", "meta"}
    assert out["image"].dtype == np.uint8 and out["instances"].dtype == np.int32
    assert out["np"].dtype == np.uint8 and out["hv"].dtype == np.float32
    np.testing.assert_array_equal(out["hv"], hv_maps(inst))
    np.testing.assert_array_equal(out["three_class"], three_class_map(inst))
    assert out["meta"]["dataset"] == "demo"


def test_nucleus_targets_accepts_mapping():
    inst = _random_instances((32, 32), n=5, seed=2)
    out = NucleusTargets(one_based=False)({"image": np.zeros((32, 32, 3), np.uint8), "instances": inst})
    assert set(out) == {"image", "instances", "np", "hv"}
    np.testing.assert_array_equal(out["hv"], hv_maps(inst, one_based=False))
    with pytest.raises(ArgumentError):
        NucleusTargets()({"image": np.zeros((2, 2, 3), np.uint8)})


def test_type_map_is_the_class_of_each_pixels_nucleus():
    inst = np.array([[0, 1, 1], [2, 2, 0], [0, 0, 4]], np.int32)
    classes = np.array([0, 2, 1, 0, 3], np.int32)  # id 3 absent; id 4 -> class 3
    assert type_map(inst, classes).tolist() == [[0, 2, 2], [1, 1, 0], [0, 0, 3]]  # written out by hand
    meta = SampleMeta(dataset="demo", sample_id="a", split="train")
    sample = Sample(
        image=np.zeros((3, 3, 3), np.uint8),
        instances=inst,
        classes=classes,
        class_names=("background", "a", "b", "c"),
        meta=meta,
    )
    for targets in (NucleusTargets(type_map=True), HoVerNetTargets(type_map=True)):
        out = pickle.loads(pickle.dumps(targets))(sample)
        assert out["type_map"].dtype == np.int32 and out["type_map"].tolist() == [[0, 2, 2], [1, 1, 0], [0, 0, 3]]
    assert "type_map" not in HoVerNetTargets()(sample)  # off by default: the binary recipes' targets
    assert "type_map=True" in repr(NucleusTargets(type_map=True)) and "type_map" not in repr(NucleusTargets())


def test_type_map_errors_name_the_fix():
    inst = np.array([[0, 1], [2, 2]], np.int32)
    with pytest.raises(ArgumentError, match="keep_classes=True"):
        NucleusTargets(type_map=True)({"image": np.zeros((2, 2, 3), np.uint8), "instances": inst})
    with pytest.raises(ArgumentError, match="2 entries but the largest instance id is 2"):
        type_map(inst, np.array([0, 1]))
    with pytest.raises(ArgumentError, match="1-D lookup of non-negative integers"):
        type_map(inst, np.array([0.0, 1.0, 1.0]))
