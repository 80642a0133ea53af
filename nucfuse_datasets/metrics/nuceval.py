"""Ambiguous regions and boundary uncertainty, as in NucEval (``masih4/nuc_eval``).

Both are applied to the two maps *before* scoring, in this order:

1. **Ignore mask** (NucEval's "vague"/ambiguous areas). A GT instance is removed when more
   than ``fraction`` of its area lies in the mask (strictly more: ``inside / area >
   fraction``); the same rule, independently, removes predicted instances. Then every pixel
   of the mask is set to background in both maps, so kept instances lose their pixels there.
2. **Boundary zone** of width ``w``. For each remaining GT instance the ring *dilation minus
   erosion* by an elliptical structuring element of size ``2w + 1`` (OpenCV's
   ``MORPH_ELLIPSE`` shape; the image border does not erode, as with OpenCV's default
   border) is set to background in both maps.

Instances left with no pixel disappear. Written from NucEval's documented behaviour; no code
is copied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from nucfuse_datasets.metrics._relabel import Dense, compact

__all__ = ["apply_boundary", "apply_ignore", "ellipse_footprint"]


def ellipse_footprint(width: int) -> NDArray[np.bool_]:
    """The ``(2w+1) x (2w+1)`` elliptical structuring element of OpenCV's ``MORPH_ELLIPSE``.

    Row ``dy`` (``-w..w``) is filled over ``|dx| <= round(w * sqrt((w^2 - dy^2) / w^2))``.

    Args:
        width: ``w >= 1``.

    Returns:
        Boolean footprint.

    Example:
        >>> from nucfuse_datasets.metrics.nuceval import ellipse_footprint
        >>> ellipse_footprint(1).astype(int)
        array([[0, 1, 0],
               [1, 1, 1],
               [0, 1, 0]])
        >>> ellipse_footprint(2).astype(int)
        array([[0, 0, 1, 0, 0],
               [1, 1, 1, 1, 1],
               [1, 1, 1, 1, 1],
               [1, 1, 1, 1, 1],
               [0, 0, 1, 0, 0]])
    """
    w = int(width)
    fp = np.zeros((2 * w + 1, 2 * w + 1), dtype=bool)
    for i, dy in enumerate(range(-w, w + 1)):
        half = int(np.rint(w * np.sqrt((w * w - dy * dy) / (w * w))))
        fp[i, w - half : w + half + 1] = True
    return fp


def _drop(dense: Dense, inside: NDArray[np.bool_], fraction: float) -> NDArray[np.integer[Any]]:
    """Labels of ``dense`` with the instances that lie > fraction inside ``inside`` removed."""
    n_in = np.bincount(dense.labels[inside], minlength=dense.n + 1)[1:]
    remove = n_in / dense.areas > fraction
    lut = np.arange(dense.n + 1, dtype=dense.labels.dtype)
    lut[1:][remove] = 0
    labels = np.take(lut, dense.labels)
    labels[inside] = 0
    return labels


def apply_ignore(gt: Dense, pred: Dense, ignore: NDArray[np.bool_], fraction: float) -> tuple[Dense, Dense]:
    """Remove instances more than ``fraction`` inside ``ignore``, then blank ``ignore``.

    Args:
        gt: relabelled GT map.
        pred: relabelled prediction map.
        ignore: boolean ambiguous-region mask.
        fraction: removal fraction (strictly more than).

    Returns:
        The two maps after removal, relabelled (original ids kept in ``ids``).

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics._relabel import relabel
        >>> from nucfuse_datasets.metrics.nuceval import apply_ignore
        >>> m = relabel(np.array([[1, 1, 1, 1, 2]]))
        >>> g, _ = apply_ignore(m, m, np.array([[True, False, False, False, True]]), 0.25)
        >>> g.ids.tolist(), g.areas.tolist()   # id 2 is 100 % inside; id 1 25 %: kept, 3 px
        ([1], [3])
    """
    if not ignore.any():
        return gt, pred
    return compact(gt, _drop(gt, ignore, fraction)), compact(pred, _drop(pred, ignore, fraction))


def apply_boundary(gt: Dense, pred: Dense, width: int) -> tuple[Dense, Dense]:
    """Blank the union of the GT instances' boundary rings of width ``width`` in both maps.

    Args:
        gt: relabelled GT map.
        pred: relabelled prediction map.
        width: ring width ``w`` in pixels (0 = no change).

    Returns:
        The two maps with the ring set to background, relabelled.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics._relabel import relabel
        >>> from nucfuse_datasets.metrics.nuceval import apply_boundary
        >>> m = np.zeros((7, 7), int)
        >>> m[2:5, 2:5] = 4
        >>> g, _ = apply_boundary(relabel(m), relabel(m), 1)
        >>> g.ids.tolist(), g.areas.tolist()   # only the 3x3 square's centre survives
        ([4], [1])
    """
    if width <= 0 or gt.n == 0:
        return gt, pred
    fp = ellipse_footprint(width)
    labels = gt.labels
    fg = labels > 0
    # A pixel is in the eroded core of instance j iff every in-image pixel of its footprint
    # has label j; "nearest" padding makes out-of-image pixels copy an in-image neighbour that
    # is itself in the footprint, so the border does not erode (OpenCV's default).
    hi = ndimage.grey_dilation(labels, footprint=fp, mode="nearest")
    lo = ndimage.grey_erosion(labels, footprint=fp, mode="nearest")
    core = fg & (hi == lo)
    ring = ndimage.binary_dilation(fg, structure=fp) & ~core
    if not ring.any():
        return gt, pred
    g = labels.copy()
    g[ring] = 0
    p = pred.labels.copy()
    p[ring] = 0
    return compact(gt, g), compact(pred, p)
