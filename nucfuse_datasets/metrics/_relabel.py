"""Relabelling instance maps to dense ids ``0..N`` in ascending-id order.

The dense order is the order of NucFuseRank's / HoVerNet's ``remap_label``: the smallest
non-zero id becomes 1, the next 2, and so on; 0 always stays background (whether or not any
pixel is 0). A lookup table is used when the largest id is small, ``np.unique`` otherwise, so
huge and ``uint64`` ids need no float round-trip and no giant table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nucfuse_datasets.metrics._validate import as_label_map

__all__ = ["LUT_MAX_ID", "Dense", "compact", "relabel", "remap_label"]

#: Largest id for which a lookup table (one ``intp`` per possible id) is used; above it, or
#: when the table would be much larger than the image, ``np.unique(return_inverse=True)``.
LUT_MAX_ID = 1 << 22


@dataclass(frozen=True)
class Dense:
    """A label map relabelled to ``0..n`` (private).

    Attributes:
        labels: array of the map's shape with values ``0..n`` (``int32`` unless the map has
            ``2**31`` pixels or more, then ``intp``).
        ids: the original id of dense label ``k`` at position ``k - 1`` (ascending).
        areas: pixel count of dense label ``k`` at position ``k - 1`` (``int64``).
    """

    labels: NDArray[np.integer[Any]]
    ids: NDArray[Any]
    areas: NDArray[np.int64]

    @property
    def n(self) -> int:
        """Number of instances."""
        return int(self.ids.shape[0])


def _use_lut(max_id: int, size: int) -> bool:
    return max_id < LUT_MAX_ID and max_id <= 4 * size + 65536


def relabel(arr: NDArray[Any]) -> Dense:
    """Relabel a validated (non-negative, integer, 2-D) map to dense ids."""
    flat = arr.reshape(-1)
    if flat.size == 0:
        return Dense(np.zeros(arr.shape, np.int32), np.zeros(0, arr.dtype), np.zeros(0, np.int64))
    # Dense labels never exceed the pixel count; int32 halves the memory traffic.
    ltype = np.int32 if flat.size < 2**31 else np.intp
    max_id = int(flat.max())
    if _use_lut(max_id, flat.size):
        idx = flat if np.can_cast(flat.dtype, np.intp) else flat.astype(np.intp)
        counts = np.bincount(idx, minlength=1)
        present = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(max_id + 1, dtype=ltype)
        lut[present] = np.arange(1, present.size + 1, dtype=ltype)
        labels = np.take(lut, idx)
        ids = present.astype(arr.dtype)
        areas = counts[present].astype(np.int64)
    else:
        # Only the foreground pixels are sorted; np.unique + searchsorted is several times
        # faster than np.unique(return_inverse=True) here.
        fg = np.flatnonzero(flat)
        values = flat[fg]
        ids = np.unique(values)
        pos = np.searchsorted(ids, values)
        areas = np.bincount(pos, minlength=ids.size).astype(np.int64)
        labels = np.zeros(flat.size, dtype=ltype)
        labels[fg] = pos + 1
    return Dense(labels.reshape(arr.shape), ids, areas)


def compact(dense: Dense, labels: NDArray[np.integer[Any]]) -> Dense:
    """Relabel ``labels`` (values in ``0..dense.n``, some possibly gone) back to ``0..m``.

    The ascending order, and so the original ids, are kept: dense label ``k`` of the result
    is the ``k``-th surviving label of ``dense``.
    """
    flat = labels.reshape(-1)
    counts = np.bincount(flat, minlength=dense.n + 1)
    present = np.flatnonzero(counts[1:]) + 1
    lut = np.zeros(dense.n + 1, dtype=labels.dtype)
    lut[present] = np.arange(1, present.size + 1, dtype=labels.dtype)
    return Dense(np.take(lut, labels), dense.ids[present - 1], counts[present].astype(np.int64))


def remap_label(label_map: Any) -> NDArray[np.integer[Any]]:
    """Renumber the instances of a label map to ``1..N`` in ascending order of the original id.

    This is the order of NucFuseRank's/HoVerNet's ``remap_label`` (not by size). Id 0 is always
    background and stays 0, whether or not the map contains any 0. Ids may be any non-negative
    integers of any integer dtype, including ``uint64`` ids above ``2**63`` and ids above
    ``2**24`` (no float round-trip). The result is ``int32`` (``int64`` if ``N >= 2**31``).

    Args:
        label_map: 2-D integer instance map, 0 = background.

    Returns:
        The relabelled map, same shape.

    Raises:
        MetricInputError: the map is not 2-D, not integer, or contains negative ids.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import remap_label
        >>> remap_label(np.array([[0, 70, 70], [5, 0, 2**40]], dtype=np.int64))
        array([[0, 2, 2],
               [1, 0, 3]], dtype=int32)
    """
    arr = as_label_map(label_map, "label_map")
    dense = relabel(arr)
    dtype = np.int32 if dense.n < 2**31 else np.int64
    return dense.labels.astype(dtype)
