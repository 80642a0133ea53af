"""Polygon rasterisation shared by the polygon sources (MoNuSeg, MoNuSAC, PUMA).

Rule, documented once for all of them: polygons are filled in document order with
``skimage.draw.polygon`` (pixel centres inside the outline; vertices are float pixel coordinates,
x = column, y = row; coordinates outside the tile are clipped), each with a new id, and **a later
polygon overwrites an earlier one where they overlap** — what the MoNuSeg/MoNuSAC organisers'
code, CellViT's converter and NucFuseRank's own PUMA code do. A polygon whose fill covers no pixel
(e.g. a 2-vertex region) produces no instance; so does one completely covered by later polygons.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from skimage.draw import polygon as _fill

__all__ = ["fill_polygon", "rasterize"]


def fill_polygon(
    xy: np.ndarray, shape: tuple[int, int], holes: Sequence[np.ndarray] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pixels inside a polygon (minus its holes), clipped to ``shape``.

    Example:
        >>> import numpy as np
        >>> rr, cc = fill_polygon(np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float), (10, 10))
        >>> len(rr)  # boundary pixels included: 5 × 5
        25
    """
    xy = np.asarray(xy, dtype=np.float64)
    none = np.empty(0, np.intp), np.empty(0, np.intp)
    if xy.ndim != 2 or xy.shape[1] < 2 or xy.shape[0] < 3:
        return none
    x, y = xy[:, 0], xy[:, 1]
    # no pixel centre (0..W-1, 0..H-1) inside the bounding box: nothing to fill (and nothing for skimage to
    # overflow on, however far away the polygon lies)
    if not (x.max() >= 0 and x.min() <= shape[1] - 1 and y.max() >= 0 and y.min() <= shape[0] - 1):
        return none
    rr, cc = _fill(y, x, shape=shape)
    if len(holes) and rr.size:
        keep = np.ones(rr.size, bool)
        r0, c0 = rr.min(), cc.min()
        box = np.zeros((rr.max() - r0 + 1, cc.max() - c0 + 1), bool)
        for hole in holes:
            hole = np.asarray(hole, np.float64)
            if hole.ndim != 2 or hole.shape[0] < 3 or hole.shape[1] < 2:
                continue
            hr, hc = _fill(hole[:, 1] - r0, hole[:, 0] - c0, shape=box.shape)
            box[hr, hc] = True
        keep &= ~box[rr - r0, cc - c0]
        rr, cc = rr[keep], cc[keep]
    return rr, cc


def rasterize(
    polygons: Iterable[np.ndarray | tuple[np.ndarray, Sequence[np.ndarray]]],
    shape: tuple[int, int],
) -> tuple[np.ndarray, int]:
    """Fill polygons in order into an ``int32`` map with ids 1, 2, ... (later overwrite earlier).

    Each item is an ``N×2`` array of (x, y) vertices, or ``(exterior, holes)``.

    Returns:
        ``(label map, number of polygons seen)``; ids of polygons that cover no pixel are absent.

    Example:
        >>> import numpy as np
        >>> sq = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
        >>> lab, n = rasterize([sq, sq + 2], (8, 8))
        >>> n, sorted(np.unique(lab).tolist())
        (2, [0, 1, 2])
    """
    out = np.zeros(shape, np.int32)
    n = 0
    for item in polygons:
        n += 1
        if isinstance(item, tuple):
            rr, cc = fill_polygon(item[0], shape, item[1])
        else:
            rr, cc = fill_polygon(item, shape)
        out[rr, cc] = n
    return out, n
