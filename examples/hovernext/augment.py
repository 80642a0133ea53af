"""HoVerNeXt augmentation as run in NucFuseRank (``recipes.md`` §2.2), with two documented fixes.

When a sample is augmented (probability 0.7):

1. **Photometric**, on the image in [0, 1], each step clipped to [0, 1] (kornia's defaults):
   one of {Gaussian blur 3×3 with σ ~ U(0.1, 2), median blur 3×3, Gaussian noise σ = 0.05},
   chosen uniformly; then brightness, contrast, hue, saturation, in that order, with kornia's
   semantics: brightness *adds* ``U(0.9, 1.1) − 1``; contrast *multiplies* by ``U(0.75, 1.25)``;
   hue shifts the HSV hue by ``U(−0.05, 0.05)`` of a turn; saturation multiplies the HSV
   saturation by ``U(0.8, 1.2)``.
2. **Geometric**, jointly on the image and the label maps: affine with rotation
   ``U(−179°, 179°)``, translation up to 10 % of each side, scale ``U(0.9, 1.1)``, x-shear
   ``U(−5°, 5°)`` (torchvision ``RandomAffine`` parameters), then horizontal and vertical flips
   with p = 0.5 each. Label maps use nearest-neighbour sampling; so does the image by
   default (quirk (c) kept: ``image_interpolation="nearest"``). Pixels pulled in from outside
   are white (255) in the image and 0 in the labels.

**Fix of quirk (a).** The original ran the photometric step on ImageNet-normalised tensors,
which kornia clamps to [0, 1], so 70 % of the training batches were clipped. Here it runs on
the [0, 1] image *before* normalisation (normalisation happens last, in
:class:`examples.common.transforms.ToTensors`).

**Fix of quirk (b).** The original warped precomputed HV maps without re-orienting them.
Here the augmentation only moves the instance map; the HV maps (and the 3-class map) are
computed afterwards from the warped instances by
:class:`nucfuse_datasets.targets.HoVerNetTargets`.

The augmented image is stored back as ``uint8`` (rounding error ≤ 1/510).

:class:`HoVerNeXtAugment` draws everything per sample (a ``Dataset`` transform).
:class:`HoVerNeXtBatchAugment` reproduces the original's batch granularity: one coin flip and
one set of affine parameters per batch, photometric parameters and flips per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from examples.common.sample_ops import numpy_rng, spatial, uniform
from nucfuse_datasets.schema import Sample

__all__ = [
    "AffineParams",
    "HoVerNeXtAugment",
    "HoVerNeXtBatchAugment",
    "adjust_hue_saturation",
    "median_blur3",
]


@dataclass(frozen=True)
class AffineParams:
    """One draw of the affine warp (torchvision ``F.affine`` arguments)."""

    angle: float
    translate: tuple[int, int]
    scale: float
    shear: tuple[float, float]


def median_blur3(image: torch.Tensor) -> torch.Tensor:
    """3×3 median filter of a ``C×H×W`` float tensor (reflect border)."""
    arr = ndimage.median_filter(image.numpy(), size=(1, 3, 3), mode="mirror")
    return torch.from_numpy(arr)


def _rgb_to_hsv(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = image.unbind(0)
    v, argmax = image.max(dim=0)
    c = v - image.min(dim=0).values
    safe_c = torch.where(c > 0, c, torch.ones_like(c))
    hue = torch.where(argmax == 0, ((g - b) / safe_c) % 6.0, torch.zeros_like(c))
    hue = torch.where(argmax == 1, (b - r) / safe_c + 2.0, hue)
    hue = torch.where(argmax == 2, (r - g) / safe_c + 4.0, hue)
    hue = torch.where(c > 0, hue / 6.0, torch.zeros_like(c))
    sat = torch.where(v > 0, c / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return hue, sat, v


def _hsv_to_rgb(hue: torch.Tensor, sat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + hue * 6.0) % 6.0
        channels.append(v - v * sat * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels)


def adjust_hue_saturation(image: torch.Tensor, hue_shift: float, saturation: float) -> torch.Tensor:
    """Shift the HSV hue by ``hue_shift`` turns, then scale the HSV saturation (clipped to 1).

    Same as kornia's ``adjust_hue`` followed by ``adjust_saturation`` (hue rotation does not
    change S or V, so one HSV round trip suffices).
    """
    hue, sat, v = _rgb_to_hsv(image)
    return _hsv_to_rgb((hue + hue_shift) % 1.0, (sat * saturation).clamp(0.0, 1.0), v)


class HoVerNeXtAugment:
    """Per-sample HoVerNeXt augmentation (Sample → Sample); see the module docstring.

    Args:
        p: probability that a sample is augmented at all (0.7).
        degrees: rotation range ``±degrees``.
        translate: maximal translation as fractions of width and height.
        scale: scale range.
        shear: x-shear range in degrees.
        flip_p: probability of each flip.
        blur_sigma: Gaussian-blur σ range.
        noise_std: Gaussian-noise σ on the [0, 1] scale.
        brightness: brightness factor range (additive: ``factor − 1`` is added).
        contrast: contrast factor range (multiplicative).
        hue: hue shift range in turns.
        saturation: saturation factor range.
        image_interpolation: ``"nearest"`` (as run) or ``"bilinear"`` for the image.
    """

    def __init__(
        self,
        p: float = 0.7,
        *,
        degrees: float = 179.0,
        translate: tuple[float, float] = (0.1, 0.1),
        scale: tuple[float, float] = (0.9, 1.1),
        shear: tuple[float, float] = (-5.0, 5.0),
        flip_p: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        noise_std: float = 0.05,
        brightness: tuple[float, float] = (0.9, 1.1),
        contrast: tuple[float, float] = (0.75, 1.25),
        hue: tuple[float, float] = (-0.05, 0.05),
        saturation: tuple[float, float] = (0.8, 1.2),
        image_interpolation: str = "nearest",
    ) -> None:
        if image_interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"image_interpolation must be 'nearest' or 'bilinear', got {image_interpolation!r}")
        self.p = p
        self.degrees = degrees
        self.translate = translate
        self.scale = scale
        self.shear = shear
        self.flip_p = flip_p
        self.blur_sigma = blur_sigma
        self.noise_std = noise_std
        self.brightness = brightness
        self.contrast = contrast
        self.hue = hue
        self.saturation = saturation
        self.image_interpolation = image_interpolation

    # ------------------------------------------------------------------ parameters
    def sample_affine(self, height: int, width: int, rng: np.random.Generator) -> AffineParams:
        """Draw affine parameters like torchvision's ``RandomAffine``."""
        max_dx = self.translate[0] * width
        max_dy = self.translate[1] * height
        return AffineParams(
            angle=uniform(rng, (-self.degrees, self.degrees)),
            translate=(round(uniform(rng, (-max_dx, max_dx))), round(uniform(rng, (-max_dy, max_dy)))),
            scale=uniform(rng, self.scale),
            shear=(uniform(rng, self.shear), 0.0),
        )

    # ------------------------------------------------------------------ steps
    def photometric(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``3×H×W`` float image in [0, 1] → augmented, in [0, 1]."""
        choice = int(rng.integers(3))
        if choice == 0:
            sigma = uniform(rng, self.blur_sigma)
            image = TF.gaussian_blur(image, [3, 3], [sigma, sigma])
        elif choice == 1:
            image = median_blur3(image)
        else:
            noise = torch.from_numpy(rng.standard_normal(image.shape).astype(np.float32))
            image = image + self.noise_std * noise
        image = (image + (uniform(rng, self.brightness) - 1.0)).clamp(0.0, 1.0)
        image = (image * uniform(rng, self.contrast)).clamp(0.0, 1.0)
        hue_shift = uniform(rng, self.hue)
        return adjust_hue_saturation(image, hue_shift, uniform(rng, self.saturation)).clamp(0.0, 1.0)

    def geometric(self, sample: Sample, params: AffineParams, rng: np.random.Generator) -> Sample:
        """Affine warp with the given parameters, then random flips (per sample)."""
        interp = (
            TF.InterpolationMode.NEAREST if self.image_interpolation == "nearest" else (TF.InterpolationMode.BILINEAR)
        )
        kwargs = {
            "angle": params.angle,
            "translate": list(params.translate),
            "scale": params.scale,
            "shear": list(params.shear),
        }

        def warp_image(img: np.ndarray) -> np.ndarray:
            t = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
            out = TF.affine(t, interpolation=interp, fill=[255.0, 255.0, 255.0], **kwargs)
            return out.permute(1, 2, 0).numpy()

        def warp_labels(lab: np.ndarray) -> np.ndarray:
            t = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(lab))[None])
            return TF.affine(t, fill=0, **kwargs)[0].numpy()

        sample = spatial(sample, warp_image, warp_labels)
        if rng.random() < self.flip_p:
            sample = spatial(sample, lambda a: a[:, ::-1], lambda a: a[:, ::-1])
        if rng.random() < self.flip_p:
            sample = spatial(sample, lambda a: a[::-1], lambda a: a[::-1])
        return sample

    def apply(self, sample: Sample, params: AffineParams, rng: np.random.Generator) -> Sample:
        """Photometric then geometric augmentation with fixed affine parameters."""
        img = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1).float() / 255.0
        img = self.photometric(img, rng)
        img_u8 = (img * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        return self.geometric(sample.replace(image=np.ascontiguousarray(img_u8)), params, rng)

    def __call__(self, sample: Sample) -> Sample:
        rng = numpy_rng()
        if rng.random() >= self.p:
            return sample
        h, w = sample.shape
        return self.apply(sample, self.sample_affine(h, w, rng), rng)

    def __repr__(self) -> str:
        return f"HoVerNeXtAugment(p={self.p}, image_interpolation={self.image_interpolation!r})"


class HoVerNeXtBatchAugment:
    """Batch-level variant (as run): one coin flip (p = 0.7) and one affine draw per batch.

    Call it on a list of Samples of equal size (e.g. in a ``collate_fn`` before the targets);
    photometric parameters and flips are still drawn per sample, as kornia did.
    """

    def __init__(self, augment: HoVerNeXtAugment | None = None) -> None:
        self.augment = augment or HoVerNeXtAugment()

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        rng = numpy_rng()
        if not samples or rng.random() >= self.augment.p:
            return list(samples)
        h, w = samples[0].shape
        params = self.augment.sample_affine(h, w, rng)
        return [self.augment.apply(s, params, rng) for s in samples]

    def __repr__(self) -> str:
        return f"HoVerNeXtBatchAugment({self.augment!r})"
