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
:class:`nucfuse_datasets.transforms.targets.HoVerNetTargets`.

The augmented image is stored back as ``uint8`` (rounding error ≤ 1/510).

**Libraries, as the original used them.** The photometric steps are kornia's ``RandomGaussianBlur``,
``RandomMedianBlur``, ``RandomGaussianNoise``, ``RandomBrightness``, ``RandomContrast``, ``RandomHue`` and
``RandomSaturation`` (each p = 1, per-sample parameters, outputs clipped to [0, 1]); the geometric steps are
torchvision v2 ``RandomAffine`` (one draw per call: on a stacked batch it is one draw per batch, as run) and
``RandomHorizontalFlip`` / ``RandomVerticalFlip``, applied to the image and the label maps together through
:class:`nucfuse_datasets.transforms.adapters.TorchVision`.

:class:`HoVerNeXtAugment` draws everything per sample (a ``Dataset`` transform).
:class:`HoVerNeXtBatchAugment` reproduces the original's batch granularity: one coin flip and
one set of affine parameters per batch, photometric parameters and flips per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import kornia.augmentation as K
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from nucfuse_datasets.schema import Sample
from nucfuse_datasets.transforms.adapters import TorchVision, finish_sample

__all__ = ["HoVerNeXtAugment", "HoVerNeXtBatchAugment"]

_FILL = {tv_tensors.Image: 255, tv_tensors.Mask: 0}


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
        brightness: brightness factor range (kornia: additive, ``factor − 1`` is added).
        contrast: contrast factor range (multiplicative).
        hue: hue shift range in turns (kornia's ``RandomHue``).
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
        self.image_interpolation = image_interpolation
        #: one of these per sample, chosen uniformly (kornia, p = 1)
        self.blur_or_noise = [
            K.RandomGaussianBlur((3, 3), blur_sigma, p=1.0),
            K.RandomMedianBlur((3, 3), p=1.0),
            K.RandomGaussianNoise(std=noise_std, p=1.0),
        ]
        #: then these, in order (kornia, p = 1, clipped to [0, 1])
        self.colour = torch.nn.Sequential(
            K.RandomBrightness(brightness, p=1.0),
            K.RandomContrast(contrast, p=1.0),
            K.RandomHue(hue, p=1.0),
            K.RandomSaturation(saturation, p=1.0),
        )
        interp = v2.InterpolationMode.NEAREST if image_interpolation == "nearest" else v2.InterpolationMode.BILINEAR
        self.affine = v2.RandomAffine(
            degrees, translate=translate, scale=scale, shear=shear, interpolation=interp, fill=_FILL
        )
        self.flips = v2.Compose([v2.RandomHorizontalFlip(flip_p), v2.RandomVerticalFlip(flip_p)])
        self._geometric = TorchVision(v2.Compose([self.affine, self.flips]), relabel=False)
        self._flip = TorchVision(self.flips, relabel=False)

    # ------------------------------------------------------------------ steps
    def photometric(self, image: torch.Tensor) -> torch.Tensor:
        """Float image(s) in [0, 1], ``3×H×W`` or ``B×3×H×W`` → augmented, in [0, 1] (per-sample draws)."""
        batch = image[None] if image.ndim == 3 else image
        choice = torch.randint(len(self.blur_or_noise), (batch.shape[0],))
        parts = [self.blur_or_noise[int(c)](x[None]) for c, x in zip(choice, batch, strict=True)]
        out = self.colour(torch.cat(parts)).clamp(0.0, 1.0)
        return out[0] if image.ndim == 3 else out

    def geometric(self, sample: Sample) -> Sample:
        """Affine warp, then random flips, on the image and the label maps together (per sample)."""
        return self._geometric(sample)

    def _photometric_u8(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(s.image)) for s in samples]).permute(0, 3, 1, 2)
        y = self.photometric(x.float() / 255.0)
        return list((y * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())

    def __call__(self, sample: Sample) -> Sample:
        if float(torch.rand(())) >= self.p:
            return sample
        (image,) = self._photometric_u8([sample])
        return self.geometric(sample.replace(image=np.ascontiguousarray(image)))

    def __repr__(self) -> str:
        return f"HoVerNeXtAugment(p={self.p}, image_interpolation={self.image_interpolation!r})"


class HoVerNeXtBatchAugment:
    """Batch-level variant (as run): one coin flip (p = 0.7) and one affine draw per batch.

    Call it on a list of Samples of equal size (e.g. in a ``collate_fn`` before the targets); the photometric
    parameters and the flips are still drawn per sample, as kornia did. The affine is torchvision v2's
    ``RandomAffine`` on the stacked batch, which draws one set of parameters for all of it.
    """

    def __init__(self, augment: HoVerNeXtAugment | None = None) -> None:
        self.augment = augment or HoVerNeXtAugment()

    def _affine(self, samples: list[Sample]) -> list[Sample]:
        item: dict[str, Any] = {
            "image": tv_tensors.Image(torch.stack([torch.from_numpy(s.image).permute(2, 0, 1) for s in samples])),
            "instances": tv_tensors.Mask(torch.stack([torch.from_numpy(s.instances) for s in samples])),
        }
        has_ignore = [s.ignore is not None for s in samples]
        if any(has_ignore):
            masks = [s.ignore if s.ignore is not None else np.zeros(s.shape, bool) for s in samples]
            item["ignore"] = tv_tensors.Mask(torch.from_numpy(np.stack(masks)))
        out = self.augment.affine(item)
        return [
            finish_sample(
                s,
                out["image"][i].permute(1, 2, 0).numpy(),
                out["instances"][i].numpy(),
                out["ignore"][i].numpy() if has_ignore[i] else None,
                relabel=False,
                what="HoVerNeXtBatchAugment",
            )
            for i, s in enumerate(samples)
        ]

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        if not samples or float(torch.rand(())) >= self.augment.p:
            return list(samples)
        images = self.augment._photometric_u8(samples)
        warped = self._affine(
            [s.replace(image=np.ascontiguousarray(im)) for s, im in zip(samples, images, strict=True)]
        )
        return [self.augment._flip(s) for s in warped]

    def __repr__(self) -> str:
        return f"HoVerNeXtBatchAugment({self.augment!r})"
