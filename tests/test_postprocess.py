from __future__ import annotations

from math import comb

import numpy as np
import pytest
import torch
from skimage.draw import disk

from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.transforms._watershed import _opening, _sobel, _sobel_kernels
from nucfuse_datasets.transforms.postprocess import (
    MAGNIFICATION_PRESETS,
    crop_to_shape,
    hv_watershed,
    hv_watershed_params,
    instance_classes,
    pad_to_multiple,
    predict_instances,
    sliding_window_predict,
)
from nucfuse_datasets.transforms.targets import hv_maps


def _pq(gt: np.ndarray, pred: np.ndarray) -> tuple[float, int, int, int]:
    """Tiny PQ: unique matching at IoU > 0.5 (enough for near-perfect predictions)."""
    gt_ids = np.unique(gt[gt > 0])
    pred_ids = np.unique(pred[pred > 0])
    tp, iou_sum = 0, 0.0
    pred_sizes = dict(zip(*np.unique(pred, return_counts=True), strict=True))
    for g in gt_ids:
        m = gt == g
        cand, inter = np.unique(pred[m], return_counts=True)
        for p, i in zip(cand, inter, strict=True):
            if p == 0:
                continue
            iou = i / (m.sum() + pred_sizes[p] - i)
            if iou > 0.5:
                tp += 1
                iou_sum += iou
    fp, fn = len(pred_ids) - tp, len(gt_ids) - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn + 1e-6)
    sq = iou_sum / (tp + 1e-6)
    return dq * sq, tp, fp, fn


def _touching_nuclei(seed: int, shape=(128, 128)) -> np.ndarray:
    """Grid of jittered disks, many of which touch or overlap their neighbours."""
    rng = np.random.default_rng(seed)
    inst = np.zeros(shape, np.int32)
    k = 0
    for r in range(10, shape[0] - 5, 15):
        for c in range(10, shape[1] - 5, 15):
            k += 1
            centre = (r + rng.integers(-2, 3), c + rng.integers(-2, 3))
            rr, cc = disk(centre, int(rng.integers(6, 10)), shape=shape)
            inst[rr, cc] = k
    return inst


# --------------------------------------------------------------------------- building blocks
def test_sobel_kernels_match_opencv():
    d3, s3 = _sobel_kernels(3)
    assert d3.tolist() == [-1, 0, 1] and s3.tolist() == [1, 2, 1]
    d5, s5 = _sobel_kernels(5)
    assert d5.tolist() == [-1, -2, 0, 2, 1] and s5.tolist() == [1, 4, 6, 4, 1]
    d21, s21 = _sobel_kernels(21)
    assert s21.tolist() == [comb(20, k) for k in range(21)]
    assert d21.size == 21 and d21.sum() == 0
    np.testing.assert_array_equal(d21, -d21[::-1])
    assert d21[:10].max() < 0 < d21[11:].min()
    # a horizontal ramp has a positive, constant x-derivative away from the borders
    ramp = np.tile(np.arange(40.0), (30, 1))
    gx = _sobel(ramp, axis=1, ksize=3)
    assert np.allclose(gx[:, 1:-1], 8.0) and np.allclose(_sobel(ramp, axis=0, ksize=3), 0.0)


def test_opening_keeps_border_touching_shapes():
    m = np.zeros((10, 10), bool)
    m[:6, :6] = True
    opened = _opening(m, np.ones((5, 5), bool))
    assert opened[0, 0] and opened.sum() == 36


def test_presets():
    assert hv_watershed_params(40) == {"min_object_size": 10, "min_marker_size": 10, "sobel_ksize": 21}
    assert hv_watershed_params() == MAGNIFICATION_PRESETS[40]
    assert hv_watershed_params(20)["sobel_ksize"] == 11
    with pytest.raises(ArgumentError):
        hv_watershed_params(10)


# --------------------------------------------------------------------------- hv_watershed
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("one_based", [True, False])
def test_perfect_maps_recover_instances(seed, one_based):
    inst = _touching_nuclei(seed)
    pred = hv_watershed((inst > 0).astype(np.float32), hv_maps(inst, one_based=one_based))
    assert pred.dtype == np.int32 and pred.shape == inst.shape
    pq, _, fp, fn = _pq(inst, pred)
    assert fp == 0 and fn == 0
    assert pq > 0.97


def test_perfect_maps_at_20x_preset():
    inst = _touching_nuclei(2)
    pred = hv_watershed((inst > 0).astype(np.float32), hv_maps(inst), **hv_watershed_params(20))
    assert _pq(inst, pred)[0] > 0.95


def test_soft_probabilities_and_strict_threshold():
    inst = _touching_nuclei(3, shape=(64, 64))
    prob = np.where(inst > 0, 0.9, 0.1)
    pred = hv_watershed(prob, hv_maps(inst))
    assert _pq(inst, pred)[0] > 0.95
    # exactly 0.5 is background (sigmoid > 0.5 / argmax semantics)
    assert not hv_watershed(np.full((32, 32), 0.5), np.zeros((2, 32, 32))).any()


def test_small_objects_are_dropped():
    inst = np.zeros((40, 40), np.int32)
    inst[5:20, 5:20] = 1
    inst[30:33, 30:33] = 2  # 9 px < 10
    pred = hv_watershed((inst > 0).astype(float), hv_maps(inst))
    assert pred[31, 31] == 0 and pred[10, 10] > 0
    assert np.unique(pred).tolist() == [0, 1]


def test_empty_and_invalid_inputs():
    assert not hv_watershed(np.zeros((16, 16)), np.zeros((2, 16, 16))).any()
    with pytest.raises(ArgumentError):
        hv_watershed(np.zeros((16, 16)), np.zeros((16, 16, 2)))
    with pytest.raises(ArgumentError):
        hv_watershed(np.zeros((16, 16)), np.zeros((2, 16, 16)), sobel_ksize=4)
    with pytest.raises(ArgumentError):
        hv_watershed(np.zeros((2, 16, 16)), np.zeros((2, 16, 16)))


# --------------------------------------------------------------------------- padding and tiling
def test_pad_to_multiple_numpy_and_crop():
    img = np.arange(30 * 50 * 3, dtype=np.float32).reshape(30, 50, 3)
    padded, shape = pad_to_multiple(img, 32)
    assert padded.shape == (32, 64, 3) and shape == (30, 50)
    np.testing.assert_array_equal(padded, np.pad(img, [(0, 2), (0, 14), (0, 0)], mode="reflect"))
    np.testing.assert_array_equal(crop_to_shape(padded, shape), img)
    same, _ = pad_to_multiple(np.zeros((64, 32)), 32)
    assert same.shape == (64, 32)
    const, _ = pad_to_multiple(np.zeros((3, 3), np.uint8), 4, "constant", value=255)
    assert const[3, 3] == 255
    tiny, _ = pad_to_multiple(np.ones((1, 1)), 8)  # cannot reflect a 1-pixel side
    assert tiny.shape == (8, 8) and tiny.min() == 1
    with pytest.raises(ArgumentError):
        pad_to_multiple(img, 32, "wrap")


def test_pad_to_multiple_torch_matches_numpy_reflect():
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4)
    padded, shape = pad_to_multiple(x, 16)  # pad larger than the side: repeated reflection
    assert tuple(padded.shape) == (2, 3, 16, 16) and shape == (5, 4)
    ref = np.pad(x.numpy(), [(0, 0), (0, 0), (0, 11), (0, 12)], mode="reflect")
    np.testing.assert_array_equal(padded.numpy(), ref)
    assert torch.equal(crop_to_shape(padded, shape), x)
    p2, _ = pad_to_multiple(torch.zeros(7, 9), 8)
    assert tuple(p2.shape) == (8, 16)


@pytest.mark.parametrize("blend", ["mean", "gaussian"])
def test_sliding_window_equals_direct_for_pointwise_fn(blend):
    def fn(x):
        return torch.cat([x * 2 + 1, x.sum(1, keepdim=True)], dim=1)

    img = torch.randn(3, 100, 75)
    out = sliding_window_predict(fn, img, tile=32, overlap=8, batch_size=3, blend=blend)
    assert tuple(out.shape) == (4, 100, 75)
    torch.testing.assert_close(out, fn(img[None])[0], rtol=1e-5, atol=1e-5)
    small = sliding_window_predict(fn, torch.randn(1, 3, 20, 20), tile=32, overlap=8)
    assert tuple(small.shape) == (4, 20, 20)
    with pytest.raises(ArgumentError):
        sliding_window_predict(fn, img, tile=32, overlap=32)


# --------------------------------------------------------------------------- predict_instances
def _encode(inst: np.ndarray) -> np.ndarray:
    """An image whose pixels carry the perfect maps: R = nucleus, G/B = (h, v) on 0..255."""
    hv = hv_maps(inst)
    return np.stack([np.where(inst > 0, 255, 0), *np.round((hv + 1.0) * 127.5)], axis=-1).astype(np.uint8)


def _decode(x: torch.Tensor) -> torch.Tensor:
    """Pointwise "model": with mean = std = 0.5 the input is u / 127.5 − 1 per channel."""
    return torch.cat([(x[:, :1] + 1.0) / 2.0, x[:, 1:3]], dim=1)


def test_predict_instances_whole_tile():
    inst = _touching_nuclei(4, shape=(100, 90))
    seen = []

    def spy(x):
        seen.append(tuple(x.shape))
        return _decode(x)

    pred, maps = predict_instances(spy, _encode(inst), mean=(0.5,) * 3, std=(0.5,) * 3, return_maps=True)
    assert seen == [(1, 3, 128, 96)]  # reflect-padded to a multiple of 32, then cropped back
    assert maps.shape == (3, 100, 90) and maps.dtype == np.float32
    assert pred.shape == (100, 90) and pred.dtype == np.int32
    assert _pq(inst, pred)[0] > 0.95


def test_predict_instances_sliding_window_matches_whole_tile():
    inst = _touching_nuclei(5, shape=(100, 90))
    image = _encode(inst)
    kw = {"mean": (0.5,) * 3, "std": (0.5,) * 3}
    whole = predict_instances(_decode, image, **kw)
    tiled = predict_instances(_decode, image, tile=64, overlap=16, **kw, **hv_watershed_params(40))
    np.testing.assert_array_equal(tiled, whole)


def test_predict_instances_bad_inputs():
    image = np.zeros((40, 40, 3), np.uint8)
    kw = {"mean": (0.5,) * 3, "std": (0.5,) * 3}
    with pytest.raises(ArgumentError):
        predict_instances(lambda x: x[:, :2], image, **kw)
    with pytest.raises(ArgumentError):
        predict_instances(_decode, image[..., 0], **kw)


def test_predict_instances_passes_extra_channels_through():
    """A class-aware adapter appends type probabilities: the instances are the same, the extra maps come back."""
    inst = _touching_nuclei(4, shape=(100, 90))
    image = _encode(inst)
    kw = {"mean": (0.5,) * 3, "std": (0.5,) * 3}

    def typed(x):  # pointwise, like _decode: p(class 1) = 0.9 on nuclei, 0.1 elsewhere
        p = 0.1 + 0.8 * (x[:, :1] + 1.0) / 2.0
        return torch.cat([_decode(x), 1.0 - p, p], dim=1)

    plain = predict_instances(_decode, image, **kw)
    pred, maps = predict_instances(typed, image, return_maps=True, **kw)
    np.testing.assert_array_equal(pred, plain)
    assert maps.shape == (5, 100, 90)
    np.testing.assert_allclose(maps[4], np.where(inst > 0, 0.9, 0.1), atol=1e-6)
    _, tiled = predict_instances(typed, image, tile=64, overlap=16, return_maps=True, **kw)
    np.testing.assert_allclose(tiled[3:], maps[3:], atol=1e-6)


# --------------------------------------------------------------------------- instance_classes (HoVer-Net's vote)
def _hovernet_vote(inst: np.ndarray, types: np.ndarray) -> np.ndarray:
    """HoVer-Net's loop as its post_proc.process describes it: per instance, np.unique of the types, a stable sort
    by pixel count (descending); the first, unless it is 0 and there is a second."""
    out = np.zeros(int(inst.max()) + 1, np.int64)
    for i in np.unique(inst[inst > 0]):
        values, counts = np.unique(types[inst == i], return_counts=True)
        order = sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda t: t[1], reverse=True)
        pick = order[0][0]
        if pick == 0 and len(order) > 1:
            pick = order[1][0]
        out[i] = pick
    return out


def test_instance_classes_hand_computed_cases():
    inst = np.array(
        [
            [1, 1, 1, 1, 0, 5, 5, 5],
            [2, 2, 2, 2, 0, 5, 5, 5],
            [3, 3, 3, 0, 0, 9, 9, 0],
            [4, 4, 4, 4, 4, 4, 0, 0],
        ]
    )
    types = np.array(
        [
            [2, 2, 1, 0, 0, 0, 0, 0],  # 1: two 2s beat one 1 and one 0 -> 2;    5: 0 0 0 | 3 0 0 -> 3 (0 is skipped)
            [0, 0, 0, 3, 0, 3, 0, 0],  # 2: three 0s, one 3 -> 3 (background only when alone)
            [0, 0, 0, 0, 0, 0, 0, 0],  # 3: only background -> 0;               9: only background -> 0
            [1, 1, 2, 2, 0, 0, 0, 0],  # 4: 1 1 2 2 0 0 -> tie of 1 and 2 behind 0 -> 1 (the smaller id)
        ]
    )
    got = instance_classes(inst, types)
    assert got.dtype == np.int64
    assert got.tolist() == [0, 2, 3, 0, 1, 3, 0, 0, 0, 0]  # ids 6, 7, 8 are absent -> 0
    assert got.tolist() == _hovernet_vote(inst, types).tolist()
    assert instance_classes(np.zeros((3, 3), int), np.ones((3, 3), int)).tolist() == [0]
    assert instance_classes(np.array([[7, 7]]), np.array([[2, 1]])).tolist() == [0] * 7 + [1]  # tie: smaller id


def test_instance_classes_equals_hovernets_loop_on_random_maps():
    rng = np.random.default_rng(7)
    inst = _touching_nuclei(6, shape=(80, 80)) * 3  # sparse ids
    for _ in range(5):
        types = rng.integers(0, 4, inst.shape)
        types[rng.random(inst.shape) < 0.4] = 0
        np.testing.assert_array_equal(instance_classes(inst, types), _hovernet_vote(inst, types))


def test_instance_classes_bad_inputs():
    with pytest.raises(ArgumentError, match="type_map"):
        instance_classes(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ArgumentError):
        instance_classes(np.zeros((4, 4), int), -np.ones((4, 4), int))
