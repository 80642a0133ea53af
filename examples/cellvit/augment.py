"""CellViT augmentation as run in NucFuseRank (``recipes.md`` §2.3, §4.5), with albumentations as CellViT used it.

Per sample, in this order, on the ``uint8`` image and (for geometric steps) the label maps, through
:class:`nucfuse_datasets.transforms.adapters.Albumentations` (masks move with nearest neighbour):

| # | step | p | parameters (albumentations 2.x names) |
|---|---|---|---|
| 1 | ``RandomRotate90`` | 0.5 | |
| 2 | ``HorizontalFlip`` | 0.5 | |
| 3 | ``VerticalFlip`` | 0.5 | |
| 4 | ``Downscale`` | 0.15 | ``scale_range=(0.5, 0.5)``, nearest down and up (1.3's ``scale_min = scale_max = 0.5``) |
| 5 | ``Blur`` | 0.2 | ``blur_limit=9`` (the fork; upstream 10) |
| 6 | :class:`VarianceGaussNoise` | 0.25 | variance ~ U(0, 50) on 0–255, per channel (1.3's ``var_limit=50``) |
| 7 | ``ColorJitter`` | 0.2 | brightness 0.25, contrast 0.25, saturation 0.1, hue 0.05 |
| 8 | :class:`SkimageSuperpixels` | 0.1 | ``p_replace=0.1``, ``n_segments=200``, ``max_size=128`` |
| 9 | ``ZoomBlur`` | 0.1 | ``max_factor=1.05`` (step 0.01–0.03) |
| 10 | ``RandomSizedCrop`` | 0.1 | ``min_max_height=(128, 256)``, resized back to the input size (256) |
| 11 | :class:`AffineJitter` + ``ElasticTransform`` | 0.2 | ``alpha_affine=15``; ``alpha=0.5``, ``sigma=25`` |

Normalisation (mean = std = 0.5) comes last, in :class:`examples.common.transforms.ToTensors`; the targets (NP,
HV) are computed after this augmentation by :class:`nucfuse_datasets.transforms.targets.NucleusTargets`, as CellViT
does.

Three pieces of albumentations 1.3 that 2.x changed are kept as small albumentations subclasses, so the parameter
distributions stay those of the original run:

* :class:`VarianceGaussNoise`: 2.x draws the noise *standard deviation* uniformly (``std_range``); 1.3 drew the
  *variance* uniformly from ``(0, var_limit)``. The subclass draws the variance and lets ``GaussNoise`` make the
  noise.
* :class:`SkimageSuperpixels`: 1.3 segmented with scikit-image's SLIC; 2.x has its own NumPy SLIC (about 10×
  slower, a different segmentation). Only the segmentation call differs.
* :class:`AffineJitter`: 1.3's ``ElasticTransform(alpha_affine=15)`` first warped with the affine map that sends
  three control points (the corners of a centred square of side 2·min(H, W)//3) to themselves jittered by
  U(−15, 15) px, reflect-101 border; 2.x removed ``alpha_affine``. The elastic part (``alpha=0.5``, ``sigma=25``,
  uniform noise in 1.3, reflect-101) follows with the library's ``ElasticTransform``.

Mirrored borders can duplicate an instance; after steps 10–11, pieces of one id that are not 8-connected get their
own ids (as before).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import albumentations as A
import cv2
import numpy as np

from examples.common.sample_ops import relabel_split_instances
from nucfuse_datasets.schema import Sample
from nucfuse_datasets.transforms.adapters import finish_sample

__all__ = ["AffineJitter", "CellViTAugment", "SkimageSuperpixels", "VarianceGaussNoise"]


class VarianceGaussNoise(A.GaussNoise):
    """``GaussNoise`` with albumentations 1.3 semantics: variance ~ U(0, ``var_limit``) on the 0–255 scale."""

    class InitSchema(A.core.transforms_interface.BaseTransformInitSchema):
        """Validated arguments."""

        var_limit: float = 50.0

    def __init__(self, var_limit: float = 50.0, p: float = 0.5) -> None:
        super().__init__(std_range=(0.0, 1.0), p=p)  # replaced by every draw
        self.var_limit = float(var_limit)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        std = math.sqrt(self.py_random.uniform(0.0, self.var_limit)) / 255.0
        self.std_range = (std, std)
        return super().get_params_dependent_on_data(params, data)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("var_limit",)


class SkimageSuperpixels(A.Superpixels):
    """``Superpixels`` with albumentations 1.3's segmentation: scikit-image's SLIC (compactness 10).

    albumentations 2.x replaced scikit-image's compiled SLIC with its own NumPy version, about 10× slower on a
    128² image (220 ms per call here) and not the segmentation the original run used. Everything else is the
    library's: the parameter draws, the downscale to ``max_size``, replacing chosen segments by their mean colour,
    and the resize back to the input size.
    """

    def apply(self, img: np.ndarray, replace_samples: Any, n_segments: int, **params: Any) -> np.ndarray:
        from skimage.segmentation import slic

        replace = np.asarray(replace_samples, dtype=bool)
        if not replace.any():
            return img
        h, w = img.shape[:2]
        small = img
        if self.max_size is not None and max(h, w) > self.max_size:
            scale = self.max_size / max(h, w)
            small = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=self.interpolation)
        segments = slic(small, n_segments=n_segments, compactness=10, start_label=1)
        flat = segments.ravel()
        n = int(flat.max()) + 1
        chosen = replace[np.arange(n) % replace.size]  # 1.3 cycles through the draws when SLIC makes more
        chosen[0] = False
        counts = np.maximum(np.bincount(flat, minlength=n), 1)
        pixels = small.reshape(-1, small.shape[-1]).astype(np.float64)
        means = np.stack([np.bincount(flat, pixels[:, c], minlength=n) / counts for c in range(pixels.shape[1])], 1)
        out = pixels.copy()
        mask = chosen[flat]
        out[mask] = np.round(means[flat[mask]])
        out = out.clip(0, 255).astype(img.dtype).reshape(small.shape)
        if out.shape[:2] != (h, w):
            out = cv2.resize(out, (w, h), interpolation=self.interpolation)
        return out


class AffineJitter(A.DualTransform):
    """albumentations 1.3's ``alpha_affine``: affine map of three jittered control points, reflect-101 border."""

    class InitSchema(A.core.transforms_interface.BaseTransformInitSchema):
        """Validated arguments."""

        alpha_affine: float = 15.0

    def __init__(self, alpha_affine: float = 15.0, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.alpha_affine = float(alpha_affine)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        half = min(h, w) // 3
        cx, cy = w / 2.0, h / 2.0
        src = np.float32([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]])
        dst = src + self.random_generator.uniform(-self.alpha_affine, self.alpha_affine, size=src.shape)
        return {"matrix": cv2.getAffineTransform(src, dst.astype(np.float32))}

    def _warp(self, img: np.ndarray, matrix: np.ndarray, flags: int) -> np.ndarray:
        h, w = img.shape[:2]
        out = cv2.warpAffine(img, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT_101)
        return out.reshape(img.shape)

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return self._warp(img, matrix, cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return self._warp(mask, matrix, cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("alpha_affine",)


class CellViTAugment:
    """Per-sample CellViT augmentation (Sample → Sample); see the module docstring.

    Args:
        blur_limit: largest blur size (9 in the fork, 10 upstream).
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
        self._pipelines: dict[tuple[int, int], A.Compose] = {}

    def pipeline(self, height: int, width: int) -> A.Compose:
        """The albumentations ``Compose`` for inputs of ``height × width`` (the crop resizes back to it)."""
        key = (height, width)
        if key not in self._pipelines:
            p = self.p
            low = min(128, height, width)
            self._pipelines[key] = A.Compose(
                [
                    A.RandomRotate90(p=p["rotate90"]),
                    A.HorizontalFlip(p=p["hflip"]),
                    A.VerticalFlip(p=p["vflip"]),
                    A.Downscale(
                        scale_range=(0.5, 0.5),
                        interpolation_pair={"downscale": cv2.INTER_NEAREST, "upscale": cv2.INTER_NEAREST},
                        p=p["downscale"],
                    ),
                    A.Blur(blur_limit=self.blur_limit, p=p["blur"]),
                    VarianceGaussNoise(var_limit=50.0, p=p["gauss_noise"]),
                    A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.1, hue=0.05, p=p["color_jitter"]),
                    SkimageSuperpixels(p_replace=(0.1, 0.1), n_segments=(200, 200), max_size=128, p=p["superpixels"]),
                    A.ZoomBlur(max_factor=(1.0, 1.05), step_factor=(0.01, 0.03), p=p["zoom_blur"]),
                    A.RandomSizedCrop(
                        min_max_height=(low, min(256, height, width)), size=(height, width), p=p["sized_crop"]
                    ),
                    A.Sequential(
                        [
                            AffineJitter(alpha_affine=15.0, p=1.0),
                            A.ElasticTransform(
                                alpha=0.5,
                                sigma=25.0,
                                noise_distribution="uniform",
                                border_mode=cv2.BORDER_REFLECT_101,
                                p=1.0,
                            ),
                        ],
                        p=p["elastic"],
                    ),
                ],
                save_applied_params=True,
            )
        return self._pipelines[key]

    def __call__(self, sample: Sample) -> Sample:
        import torch

        pipe = self.pipeline(*sample.shape)
        pipe.set_random_seed(int(torch.randint(0, 2**31 - 1, ())))  # torch's stream: seeded per DataLoader worker
        ids = sample.instances.astype(np.float32)  # exact below 2**24; OpenCV's int32 path rounds differently
        masks = [ids] + ([] if sample.ignore is None else [sample.ignore.astype(np.uint8)])
        out = pipe(image=sample.image, masks=masks)
        new = list(out["masks"])
        result = finish_sample(
            sample,
            np.asarray(out["image"]),
            np.rint(new[0]),
            None if sample.ignore is None else np.asarray(new[1]) > 0,
            relabel=False,
            what="CellViTAugment",
        )
        applied = {name for name, _ in out.get("applied_transforms", [])}
        if applied & {"AffineJitter", "ElasticTransform", "RandomSizedCrop"}:
            inst, classes = relabel_split_instances(result.instances, result.classes)
            result = result.replace(instances=inst, classes=classes)
        return result

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pipelines": {}}  # rebuilt lazily in each worker

    def __repr__(self) -> str:
        return f"CellViTAugment(blur_limit={self.blur_limit})"
