"""Relabelling instance maps to dense ids ``0..N`` in ascending-id order (the metrics' view of the one relabelling).

``Dense``, ``relabel`` and ``compact`` are :mod:`nucfuse_datasets._labelmap`'s, shared with the prepared store and
the training targets; :func:`remap_label` is the public, validating entry point.

The dense order is the order of NucFuseRank's / HoVerNet's ``remap_label``: the smallest
non-zero id becomes 1, the next 2, and so on; 0 always stays background (whether or not any
pixel is 0). A lookup table is used when the largest id is small, ``np.unique`` otherwise, so
huge and ``uint64`` ids need no float round-trip and no giant table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from nucfuse_datasets._labelmap import LUT_MAX_ID, Dense, compact, relabel
from nucfuse_datasets.metrics._validate import as_label_map

__all__ = ["LUT_MAX_ID", "Dense", "compact", "relabel", "remap_label"]


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
