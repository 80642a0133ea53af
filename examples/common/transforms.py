"""Composition and conversion to training tensors, shared by the recipes.

A training transform is ``Compose([<augment>, <targets>, ToTensors(mean, std)])``:
augmentation on the Sample, then the targets from the augmented instance map
(:class:`nucfuse_datasets.transforms.targets.HoVerNetTargets` or ``NucleusTargets``), then tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["HALF_MEAN", "HALF_STD", "IMAGENET_MEAN", "IMAGENET_STD", "Compose", "ToTensors", "normalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)

# target key -> torch dtype
_DTYPES = {
    "instances": torch.int64,
    "np": torch.float32,
    "hv": torch.float32,
    "three_class": torch.int64,
    "type_map": torch.int64,
    "ignore": torch.bool,
}


class Compose:
    """Apply callables in order (picklable, unlike a lambda chain)."""

    def __init__(self, transforms: Iterable[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``H×W×3`` uint8 → ``3×H×W`` float32 ``(x / 255 − mean) / std``."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    m = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


class ToTensors:
    """Target dict of numpy arrays → dict of tensors, with the image normalised.

    ``image`` becomes ``3×H×W`` float32 ``(x/255 − mean)/std``; ``instances``,
    ``three_class`` and ``type_map`` int64; ``np`` and ``hv`` float32; ``ignore`` bool.
    Other keys (e.g. ``meta``) are passed through.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def __call__(self, item: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in item.items():
            if key == "image":
                out[key] = normalize(value, self.mean, self.std)
            elif key in _DTYPES and value is not None:
                out[key] = torch.from_numpy(np.ascontiguousarray(value)).to(_DTYPES[key])
            else:
                out[key] = value
        return out

    def __repr__(self) -> str:
        return f"ToTensors(mean={self.mean}, std={self.std})"
