"""Sample-level helpers shared by the recipes' augmentations.

Every augmentation works on a :class:`~nucfuse_datasets.schema.Sample` (``uint8`` image,
``int32`` instances, optional ``bool`` ignore mask) and returns a new validated Sample, so the
targets (:mod:`nucfuse_datasets.targets`) can be computed from the *augmented* instance map.
Randomness comes from torch's global generator (seeded per DataLoader worker by PyTorch), from
which a numpy Generator is derived per call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from skimage.measure import label as cc_label

from nucfuse_datasets.schema import Sample

__all__ = ["numpy_rng", "relabel_split_instances", "spatial", "uniform"]

LabelFn = Callable[[np.ndarray], np.ndarray]


def numpy_rng(generator: torch.Generator | None = None) -> np.random.Generator:
    """A numpy Generator seeded from torch's (global or given) generator."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return np.random.default_rng(seed)


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """One draw from ``U(bounds[0], bounds[1])``."""
    return float(rng.uniform(bounds[0], bounds[1]))


def spatial(sample: Sample, image_fn: Callable[[np.ndarray], np.ndarray], label_fn: LabelFn) -> Sample:
    """Apply a geometric op to the image (``image_fn``) and to every label map (``label_fn``).

    ``label_fn`` must use nearest-neighbour sampling; it gets ``instances`` (int32) and the
    ``ignore`` mask (as uint8).
    """
    image = np.ascontiguousarray(image_fn(sample.image)).astype(np.uint8, copy=False)
    instances = np.ascontiguousarray(label_fn(sample.instances)).astype(np.int32, copy=False)
    ignore = None
    if sample.ignore is not None:
        ignore = np.ascontiguousarray(label_fn(sample.ignore.astype(np.uint8))).astype(bool)
    return sample.replace(image=image, instances=instances, ignore=ignore)


def relabel_split_instances(
    instances: np.ndarray, classes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Give every 8-connected piece of an instance its own id (after mirror-border warps).

    Returns the relabelled ``int32`` map and the matching ``classes`` lookup (or ``None``).
    """
    new = cc_label(instances, background=0, connectivity=2).astype(np.int32)
    if classes is None:
        return new, None
    old_of_new = np.zeros(int(new.max()) + 1, dtype=np.int64)
    old_of_new[new.ravel()] = instances.ravel()
    return new, classes[old_of_new].astype(np.int32)
