"""The recipes' augmentations on kornia / torchvision v2 / albumentations: parameters and distributions as run.

Expected values come from ``recipes.md`` §2.2 (HoVerNeXt, kornia + torchvision as run) and §2.3/§4.5 (CellViT,
albumentations 1.3 semantics), and are checked on known inputs with independent references (colorsys, scipy,
scikit-image, closed-form distributions).
"""

from __future__ import annotations

import colorsys
import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI query when albumentations loads
pytest.importorskip("kornia")
A = pytest.importorskip("albumentations")
import cv2  # noqa: E402
from scipy import ndimage, stats  # noqa: E402

from examples.cellvit.augment import AffineJitter, CellViTAugment, SkimageSuperpixels, VarianceGaussNoise  # noqa: E402
from examples.hovernext.augment import HoVerNeXtAugment, HoVerNeXtBatchAugment  # noqa: E402
from nucfuse_datasets.schema import Sample, SampleMeta  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sample(size: int = 32, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    inst = np.zeros((size, size), np.int32)
    for k in range(1, 8):
        y, x = rng.integers(0, size - 6, 2)
        inst[y : y + 6, x : x + 6] = k
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Sample(image=img, instances=inst, meta=SampleMeta(dataset="d", sample_id="x", split="all"))


# ------------------------------------------------------------------------------------------------ HoVerNeXt
def test_hovernext_affine_and_flip_parameters():
    aug = HoVerNeXtAugment()
    draws = [aug.affine.make_params([torch.zeros(3, 256, 256)]) for _ in range(2000)]
    angle = np.array([d["angle"] for d in draws])
    tx, ty = np.array([d["translate"] for d in draws]).T
    scale = np.array([d["scale"] for d in draws])
    shear = np.array([d["shear"] for d in draws])
    assert -179 <= angle.min() < -170 and 170 < angle.max() <= 179
    # torchvision rounds U(-25.6, 25.6) px (10 % of 256) to whole pixels
    assert np.abs(tx).max() == 26 and np.abs(ty).max() == 26
    assert 0.9 <= scale.min() < 0.91 and 1.09 < scale.max() <= 1.1
    assert -5 <= shear[:, 0].min() < -4.8 and 4.8 < shear[:, 0].max() <= 5 and (shear[:, 1] == 0).all()
    assert str(aug.affine.interpolation) == "InterpolationMode.NEAREST"
    assert [t.p for t in aug.flips.transforms] == [0.5, 0.5]


def test_hovernext_colour_steps_have_the_recipe_ranges():
    aug = HoVerNeXtAugment()
    bright, contrast, hue, sat = aug.colour
    grey = torch.full((3000, 3, 2, 2), 0.5)
    shift = (bright(grey) - 0.5)[:, 0, 0, 0].numpy()  # kornia brightness adds factor - 1, factor ~ U(0.9, 1.1)
    assert -0.1 <= shift.min() < -0.095 and 0.095 < shift.max() <= 0.1 and abs(shift.mean()) < 0.01
    factor = (contrast(torch.full((3000, 3, 2, 2), 0.4)) / 0.4)[:, 0, 0, 0].numpy()
    assert 0.75 <= factor.min() < 0.76 and 1.24 < factor.max() <= 1.25 + 1e-6
    rgb = (0.8, 0.4, 0.2)
    h0, s0, _ = colorsys.rgb_to_hsv(*rgb)
    pix = torch.tensor(rgb).view(1, 3, 1, 1).repeat(2000, 1, 2, 2)
    hues = np.array([colorsys.rgb_to_hsv(*p[:, 0, 0].tolist())[0] for p in hue(pix)])
    d = (hues - h0 + 0.5) % 1.0 - 0.5  # turns
    assert -0.05 - 1e-4 <= d.min() < -0.045 and 0.045 < d.max() <= 0.05 + 1e-4
    sats = np.array([colorsys.rgb_to_hsv(*p[:, 0, 0].tolist())[1] for p in sat(pix)]) / s0
    assert 0.8 - 1e-4 <= sats.min() < 0.81 and 1.19 < sats.max() <= 1.2 + 1e-4


def test_hovernext_blur_and_noise_steps():
    gauss, median, noise = HoVerNeXtAugment().blur_or_noise
    x = torch.rand(1, 3, 64, 64)
    ref = ndimage.median_filter(x[0].numpy(), size=(1, 3, 3))
    np.testing.assert_allclose(median(x)[0, :, 1:-1, 1:-1].numpy(), ref[:, 1:-1, 1:-1], atol=1e-6)
    residual = (noise(torch.full((1, 3, 256, 256), 0.5)) - 0.5).numpy()
    assert residual.std() == pytest.approx(0.05, rel=0.03)
    impulse = torch.zeros(400, 1, 5, 5)
    impulse[:, :, 2, 2] = 1.0
    centre = gauss(impulse.repeat(1, 3, 1, 1))[:, 0, 2, 2].numpy()  # = 1 / sum of the normalised 3x3 kernel
    sigmas = []
    for c in centre:
        # centre weight of a normalised separable 3-tap Gaussian: (1 / (1 + 2 e^{-1/(2σ²)}))²; invert for σ
        a = (1.0 / math.sqrt(c) - 1.0) / 2.0
        sigmas.append(0.0 if a <= 0 else math.sqrt(-1.0 / (2.0 * math.log(a))))  # a <= 0: sigma too small to see
    sigmas = np.array(sigmas)
    assert 1.9 < sigmas.max() <= 2.0 + 1e-3  # sigma ~ U(0.1, 2)
    assert 0.05 < (sigmas < 0.3).mean() < 0.17  # P(sigma < 0.3) = 0.2 / 1.9 = 0.105


def test_hovernext_probability_and_batch_granularity():
    aug = HoVerNeXtAugment(p=0.7)
    s = _sample(16)
    changed = sum(aug(s) is not s for _ in range(600))
    assert 0.64 < changed / 600 < 0.76  # p = 0.7
    batch = HoVerNeXtBatchAugment(HoVerNeXtAugment(p=1.0, flip_p=0.0))
    for _ in range(3):
        out = batch([s, s, s])  # one affine draw per batch, as run
        assert all(np.array_equal(o.instances, out[0].instances) for o in out)
        assert not all(np.array_equal(o.image, out[0].image) for o in out)  # photometric per sample
    per_sample = HoVerNeXtAugment(p=1.0, flip_p=0.0)
    outs = [per_sample(s).instances for _ in range(3)]
    assert not all(np.array_equal(o, outs[0]) for o in outs)


# ------------------------------------------------------------------------------------------------ CellViT
def test_cellvit_pipeline_has_the_recipe_steps_and_parameters():
    aug = CellViTAugment()
    steps = aug.pipeline(256, 256).transforms
    names = [type(t).__name__ for t in steps]
    assert names == [
        "RandomRotate90",
        "HorizontalFlip",
        "VerticalFlip",
        "Downscale",
        "Blur",
        "VarianceGaussNoise",
        "ColorJitter",
        "SkimageSuperpixels",
        "ZoomBlur",
        "RandomSizedCrop",
        "Sequential",
    ]
    assert [t.p for t in steps] == [0.5, 0.5, 0.5, 0.15, 0.2, 0.25, 0.2, 0.1, 0.1, 0.1, 0.2]
    down, blur, noise, jitter, sp, zoom, crop, elastic = steps[3:]
    assert down.scale_range == (0.5, 0.5) and set(down.interpolation_pair.values()) == {cv2.INTER_NEAREST}
    assert blur.blur_limit == (3, 9) and noise.var_limit == 50.0
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (
        (0.75, 1.25),
        (0.75, 1.25),
        (0.9, 1.1),
        (-0.05, 0.05),
    )
    assert (sp.p_replace, sp.n_segments, sp.max_size) == ((0.1, 0.1), (200, 200), 128)
    assert zoom.max_factor == (1.0, 1.05) and zoom.step_factor == (0.01, 0.03)
    assert crop.min_max_height == (128, 256) and crop.size == (256, 256)
    jit, el = elastic.transforms
    assert isinstance(jit, AffineJitter) and jit.alpha_affine == 15.0
    assert (el.alpha, el.sigma, el.noise_distribution, el.border_mode) == (0.5, 25.0, "uniform", cv2.BORDER_REFLECT_101)


def test_variance_gauss_noise_draws_the_variance_uniformly():
    t = VarianceGaussNoise(var_limit=50.0, p=1.0)
    t.set_random_seed(0)
    grey = np.full((64, 64, 3), 128, np.uint8)
    drawn, measured = [], []
    for _ in range(300):
        measured.append((t(image=grey)["image"].astype(float) - 128).std())
        drawn.append(t.std_range[0] * 255)  # the sigma of this call
    drawn, measured = np.array(drawn), np.array(measured)
    # sigma = sqrt(U(0, 50)) has CDF s² / 50 on [0, √50] (mean 2/3·√50 = 4.71; a uniform sigma would average 3.54)
    assert drawn.mean() == pytest.approx(2 / 3 * math.sqrt(50), abs=0.25)
    assert stats.kstest(drawn, lambda v: np.clip(v**2 / 50, 0, 1)).pvalue > 0.01
    # the library makes noise of that sigma (casting back to uint8 truncates, as albumentations 1.3 did too)
    assert np.corrcoef(drawn, measured)[0, 1] > 0.99
    assert 0.85 < measured.sum() / drawn.sum() < 1.05


def test_affine_jitter_moves_the_control_points_by_up_to_15_px():
    t = AffineJitter(alpha_affine=15.0, p=1.0)
    t.set_random_seed(0)
    h = w = 256
    half = 256 // 3
    src = np.array([[128 + half, 128 + half], [128 + half, 128 - half], [128 - half, 128 - half]], float)
    moves = []
    for _ in range(300):
        m = t.get_params_dependent_on_data({"shape": (h, w, 3)}, {})["matrix"]
        moves.append(src @ m[:, :2].T + m[:, 2] - src)
    moves = np.array(moves)
    assert np.abs(moves).max() <= 15 + 1e-4 and np.abs(moves).max() > 14.5
    # the warp itself: a single bright pixel at a control point lands where the matrix sends it
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0 = int(src[0, 0]), int(src[0, 1])
    img[y0, x0] = 255
    t.set_random_seed(1)
    m = t.get_params_dependent_on_data({"shape": (h, w, 3)}, {})["matrix"]
    out = t.apply(img, matrix=m)
    ty, tx = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
    exp = m @ np.array([x0, y0, 1.0])
    assert abs(tx - exp[0]) <= 1 and abs(ty - exp[1]) <= 1


def test_skimage_superpixels_replaces_chosen_segments_by_their_mean():
    from skimage.segmentation import slic

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    t = SkimageSuperpixels(p_replace=(1.0, 1.0), n_segments=(50, 50), max_size=None, p=1.0)
    out = t.apply(img, replace_samples=np.ones(50, bool), n_segments=50)
    segments = slic(img, n_segments=50, compactness=10, start_label=1)
    for label in np.unique(segments):  # independent loop over segments
        mean = img[segments == label].mean(axis=0)
        np.testing.assert_array_equal(
            out[segments == label], np.broadcast_to(np.round(mean), (int((segments == label).sum()), 3))
        )
    none = t.apply(img, replace_samples=np.zeros(50, bool), n_segments=50)
    assert none is img


def test_cellvit_augment_is_reproducible_from_torch_seed_and_keeps_size():
    s = _sample(256)
    aug = CellViTAugment(probabilities=dict.fromkeys(CellViTAugment.P, 1.0))
    torch.manual_seed(5)
    a = aug(s)
    torch.manual_seed(5)
    b = aug(s)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.instances, b.instances)
    assert a.shape == (256, 256) and a.instances.dtype == np.int32


def _step(name: str) -> A.BasicTransform:
    aug = CellViTAugment()
    names = list(CellViTAugment.P)
    step = aug.pipeline(64, 64).transforms[names.index(name)]
    step.p = 1.0
    return step


def test_cellvit_downscale_is_nearest_by_half():
    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = A.Compose([_step("downscale")])(image=img)["image"]
    expected = img[::2, ::2].repeat(2, axis=0).repeat(2, axis=1)  # 1.3: nearest down by 0.5, nearest back up
    np.testing.assert_array_equal(out, expected)


def test_cellvit_blur_is_a_box_filter_of_odd_size_up_to_9():
    img = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    blur = A.Compose([_step("blur")])
    refs = {k: ndimage.uniform_filter(img.astype(float), size=(k, k, 1)) for k in (3, 5, 7, 9)}
    seen = set()
    for seed in range(40):
        blur.set_random_seed(seed)
        out = blur(image=img)["image"].astype(float)
        inner = (slice(5, -5), slice(5, -5))
        matches = [k for k, ref in refs.items() if np.abs(out[inner] - ref[inner]).max() <= 1.0]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {3, 5, 7, 9}
