"""Sample-level helpers shared by the recipes' augmentations.

Every augmentation works on a :class:`~nucfuse_datasets.schema.Sample` (``uint8`` image,
``int32`` instances, optional ``bool`` ignore mask) and returns a new validated Sample, so the
targets (:mod:`nucfuse_datasets.transforms.targets`) can be computed from the *augmented* instance map.
The geometric work itself is done by the libraries (:mod:`nucfuse_datasets.transforms.adapters`).
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as cc_label

__all__ = ["relabel_split_instances"]


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
