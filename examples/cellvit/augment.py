"""CellViT augmentation as run in NucFuseRank (``recipes.md`` §2.3, §4.5), without albumentations.

Per sample, in this order, on the ``uint8`` image and (for geometric steps) the label maps:

| # | step | p | parameters | implementation |
|---|---|---|---|---|
| 1 | RandomRotate90 | 0.5 | k ~ {0, 1, 2, 3} quarter turns | ``np.rot90`` |
| 2 | HorizontalFlip | 0.5 | | slicing |
| 3 | VerticalFlip | 0.5 | | slicing |
| 4 | Downscale | 0.15 | scale 0.5, nearest down and up | index resampling |
| 5 | Blur | 0.2 | box filter, odd size ~ {3, 5, 7, 9} | ``scipy.ndimage.uniform_filter`` |
| 6 | GaussNoise | 0.25 | variance ~ U(0, 50) on 0–255, per channel | numpy |
| 7 | ColorJitter | 0.2 | brightness 0.25, contrast 0.25, saturation 0.1, hue 0.05 | torchvision v2 |
| 8 | Superpixels | 0.1 | p_replace 0.1, n_segments 200, max_size 128 | own (SLIC, see below) |
| 9 | ZoomBlur | 0.1 | max_factor 1.05, step 0.01–0.03 | own (see below) |
| 10 | RandomSizedCrop | 0.1 | side ~ U{128…256}, resized back | bilinear image, nearest labels |
| 11 | ElasticTransform | 0.2 | alpha 0.5, sigma 25, alpha_affine 15 | own (see below) |

Normalisation (mean = std = 0.5) comes last, in :class:`examples.common.transforms.ToTensors`;
the targets (NP, HV) are computed after this augmentation by
:class:`nucfuse_datasets.targets.NucleusTargets`, as CellViT does.

Own versions of the albumentations-only steps:

* **Superpixels**: SLIC (``n_segments`` 200, compactness 10) on a copy downscaled so its long
  side is ≤ 128; the segment map is upsampled (nearest) and each segment, with probability
  0.1, is replaced by its mean colour at full resolution. (albumentations resizes the whole
  replaced image back, which also blurs the untouched segments; we do not.)
* **ZoomBlur**: the mean of the image and its centre zooms by factors
  ``1, 1 + s, 1 + 2s, … < m`` with ``m ~ U(1, 1.05)`` and ``s ~ U(0.01, 0.03)`` (bilinear).
* **ElasticTransform** (albumentations 1.3 semantics): a random affine from three control
  points jittered by ``U(−15, 15)`` px, plus a smooth displacement field
  ``alpha · gaussian_filter(U(−1, 1), sigma)``; reflect-101 border, bilinear image, nearest
  labels. With alpha 0.5 and sigma 25 the elastic part is sub-pixel, so this is effectively
  the affine jitter. Mirrored borders can duplicate an instance; split pieces are relabelled.
* **RandomSizedCrop** resizes back to the input size (256 for NucFuse patches).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torchvision.transforms import v2

from examples.common.sample_ops import numpy_rng, relabel_split_instances, spatial, uniform
from nucfuse_datasets.schema import Sample

__all__ = ["CellViTAugment", "elastic_affine", "superpixels", "zoom_blur"]


def _resize_nearest(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    h, w = a.shape[:2]
    rows = np.minimum((np.arange(out_h) * (h / out_h)).astype(np.int64), h - 1)
    cols = np.minimum((np.arange(out_w) * (w / out_w)).astype(np.int64), w - 1)
    return a[rows][:, cols]


def _resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    out = F.interpolate(t, size=(out_h, out_w), mode="bilinear", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def superpixels(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    p_replace: float = 0.1,
    n_segments: int = 200,
    max_size: int = 128,
) -> np.ndarray:
    """Replace a random subset of SLIC superpixels by their mean colour (``H×W×3`` uint8)."""
    from skimage.segmentation import slic

    h, w = image.shape[:2]
    factor = min(1.0, max_size / max(h, w))
    sh, sw = max(1, round(h * factor)), max(1, round(w * factor))
    small = _resize_bilinear(image, sh, sw) if factor < 1.0 else image
    segments = slic(small, n_segments=n_segments, compactness=10, start_label=0)
    segments = _resize_nearest(segments, h, w) if factor < 1.0 else segments
    n = int(segments.max()) + 1
    replace = rng.random(n) < p_replace
    if not replace.any():
        return image
    flat = segments.ravel()
    counts = np.maximum(np.bincount(flat, minlength=n), 1)
    out = image.reshape(-1, 3).astype(np.float64)
    means = np.stack([np.bincount(flat, weights=out[:, c], minlength=n) / counts for c in range(3)], 1)
    mask = replace[flat]
    out[mask] = means[flat[mask]]
    return out.round().clip(0, 255).astype(np.uint8).reshape(image.shape)


def zoom_blur(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    max_factor: float = 1.05,
    step_factor: tuple[float, float] = (0.01, 0.03),
) -> np.ndarray:
    """Average of the image with centre zooms of itself (``H×W×3`` uint8)."""
    h, w = image.shape[:2]
    top = uniform(rng, (1.0, max_factor))
    step = uniform(rng, step_factor)
    zooms = np.arange(1.0, top, step)[1:]  # 1.0 itself is the image
    if zooms.size == 0:
        return image
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    acc = t.clone()
    for z in zooms:
        zh, zw = int(np.ceil(h * z)), int(np.ceil(w * z))
        big = F.interpolate(t, size=(zh, zw), mode="bilinear", align_corners=False)
        y0, x0 = (zh - h) // 2, (zw - w) // 2
        acc += big[..., y0 : y0 + h, x0 : x0 + w]
    out = acc / (zooms.size + 1)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def elastic_affine(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    alpha: float = 0.5,
    sigma: float = 25.0,
    alpha_affine: float = 15.0,
) -> np.ndarray:
    """Sampling coordinates (``2×H×W``: rows, cols) of the elastic + affine-jitter warp."""
    h, w = shape
    cy, cx = h / 2.0, w / 2.0
    half = min(h, w) // 3
    src = np.array([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]])
    dst = src + rng.uniform(-alpha_affine, alpha_affine, size=src.shape)
    # Affine A (2×3) with A @ [x, y, 1] = src for the jittered points: output pixel -> input pixel.
    design = np.hstack([dst, np.ones((3, 1))])
    coef = np.linalg.solve(design, src)  # 3×2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = coef[0, 0] * xx + coef[1, 0] * yy + coef[2, 0]
    sy = coef[0, 1] * xx + coef[1, 1] * yy + coef[2, 1]
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="mirror") * alpha
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="mirror") * alpha
    return np.stack([sy + dy, sx + dx])


def _remap_image(img: np.ndarray, coords: np.ndarray) -> np.ndarray:
    chans = [
        ndimage.map_coordinates(img[..., c].astype(np.float32), coords, order=1, mode="mirror")
        for c in range(img.shape[2])
    ]
    return np.stack(chans, axis=-1).round().clip(0, 255).astype(np.uint8)


def _remap_labels(lab: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(lab, coords, order=0, mode="mirror")


class CellViTAugment:
    """Per-sample CellViT augmentation (Sample → Sample); see the module docstring.

    Args:
        blur_limit: largest box-blur size (9 in the fork, 10 upstream, rounded down to odd).
        probabilities: per-step probability overrides, keyed by the step names in ``P``.
    """

    #: Step probabilities as run.
    P: ClassVar[dict[str, float]] = {
        "rotate90": 0.5,
        "hflip": 0.5,
        "vflip": 0.5,
        "downscale": 0.15,
        "blur": 0.2,
        "gauss_noise": 0.25,
        "color_jitter": 0.2,
        "superpixels": 0.1,
        "zoom_blur": 0.1,
        "sized_crop": 0.1,
        "elastic": 0.2,
    }

    def __init__(self, *, blur_limit: int = 9, probabilities: dict[str, float] | None = None) -> None:
        unknown = set(probabilities or {}) - set(self.P)
        if unknown:
            raise ValueError(f"unknown steps {sorted(unknown)}; valid: {sorted(self.P)}")
        self.p = {**self.P, **(probabilities or {})}
        self.blur_limit = blur_limit
        self.color_jitter = v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.1, hue=0.05)

    def _image_only(self, sample: Sample, image: np.ndarray) -> Sample:
        return sample.replace(image=np.ascontiguousarray(image, dtype=np.uint8))

    def __call__(self, sample: Sample) -> Sample:
        rng = numpy_rng()
        p = self.p
        if rng.random() < p["rotate90"]:
            k = int(rng.integers(4))
            sample = spatial(sample, lambda a: np.rot90(a, k), lambda a: np.rot90(a, k))
        if rng.random() < p["hflip"]:
            sample = spatial(sample, lambda a: a[:, ::-1], lambda a: a[:, ::-1])
        if rng.random() < p["vflip"]:
            sample = spatial(sample, lambda a: a[::-1], lambda a: a[::-1])
        h, w = sample.shape
        if rng.random() < p["downscale"]:
            small = _resize_nearest(sample.image, max(1, h // 2), max(1, w // 2))
            sample = self._image_only(sample, _resize_nearest(small, h, w))
        if rng.random() < p["blur"]:
            k = int(rng.choice(np.arange(3, max(3, self.blur_limit) + 1, 2)))
            blurred = ndimage.uniform_filter(sample.image.astype(np.float32), size=(k, k, 1), mode="mirror")
            sample = self._image_only(sample, blurred.round().clip(0, 255))
        if rng.random() < p["gauss_noise"]:
            std = float(np.sqrt(rng.uniform(0.0, 50.0)))
            noisy = sample.image.astype(np.float32) + rng.normal(0.0, std, sample.image.shape)
            sample = self._image_only(sample, noisy.round().clip(0, 255))
        if rng.random() < p["color_jitter"]:
            t = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1)
            jittered = self.color_jitter(t).permute(1, 2, 0).numpy()
            sample = self._image_only(sample, jittered)
        if rng.random() < p["superpixels"]:
            sample = self._image_only(sample, superpixels(sample.image, rng))
        if rng.random() < p["zoom_blur"]:
            sample = self._image_only(sample, zoom_blur(sample.image, rng))
        if rng.random() < p["sized_crop"]:
            side = min(int(rng.integers(128, 257)), h, w)
            y0 = int((h - side) * rng.random())
            x0 = int((w - side) * rng.random())
            sample = spatial(
                sample,
                lambda a: _resize_bilinear(a[y0 : y0 + side, x0 : x0 + side], h, w),
                lambda a: _resize_nearest(a[y0 : y0 + side, x0 : x0 + side], h, w),
            )
        if rng.random() < p["elastic"]:
            coords = elastic_affine((h, w), rng)
            sample = spatial(sample, lambda a: _remap_image(a, coords), lambda a: _remap_labels(a, coords))
            inst, classes = relabel_split_instances(sample.instances, sample.classes)
            sample = sample.replace(instances=inst, classes=classes)
        return sample

    def __repr__(self) -> str:
        return f"CellViTAugment(blur_limit={self.blur_limit})"
