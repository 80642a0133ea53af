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
from typing import Any

import numpy as np
from skimage.draw import polygon as _fill

__all__ = ["fill_polygon", "fill_polygons", "rasterize"]


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


#: Vertex tolerance of scikit-image's point-in-polygon test (a pixel centre this close to a vertex is inside).
_VERTEX_EPS = 1e-12
#: Bounding-box cells per batch of :func:`fill_polygons` (bounds the temporary arrays to some tens of MB).
_BATCH_CELLS = 1 << 23


def _spread(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups ``k`` of ``counts[k]`` items: each item's group and the values ``starts[k] + 0, 1, ...``."""
    group = np.repeat(np.arange(counts.size), counts)
    first = np.cumsum(counts) - counts
    return group, starts[group] + (np.arange(group.size) - first[group])


def _fill_batch(polys: list[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices inside the polygons ``polys`` and the position of the polygon each belongs to.

    Same per-pixel rule as ``skimage.draw.polygon``: a pixel of the polygon's bounding box (clipped to the
    image) is filled when its centre is within 1e-12 of a vertex, or when a ray from it to the right, or one
    to the left, crosses an odd number of edges (inside, or on an edge). Only the edges that straddle a row
    can be crossed from it, and along a row an edge's crossing test ``(x0*y1 - x1*y0) / (y1 - y0)`` is
    ``x_cross - x`` up to rounding far below a pixel: it is positive for every column more than two left of
    the crossing and negative for every column more than two right of it. Those runs are toggled in a
    parity array (prefix XOR); the few columns near the crossing are tested with skimage's exact expression.
    The result is identical pixel for pixel (tests compare both on random and real polygons).
    """
    h, w = shape
    n_vert = np.fromiter((p.shape[0] for p in polys), np.int64, len(polys))
    xs = np.concatenate([p[:, 0] for p in polys])
    ys = np.concatenate([p[:, 1] for p in polys])
    v_start = np.cumsum(n_vert) - n_vert
    x_min, x_max = np.minimum.reduceat(xs, v_start), np.maximum.reduceat(xs, v_start)
    y_min, y_max = np.minimum.reduceat(ys, v_start), np.maximum.reduceat(ys, v_start)
    # fill_polygon's early exit: no pixel centre in the bounding box
    usable = (x_max >= 0) & (x_min <= w - 1) & (y_max >= 0) & (y_min <= h - 1)
    # skimage's bounding box: int(max(0, min)) .. min(size - 1, int(ceil(max)))
    minr = np.where(usable, np.floor(np.maximum(y_min, 0)), 0).astype(np.int64)
    maxr = np.where(usable, np.minimum(np.ceil(y_max), h - 1), -1).astype(np.int64)
    minc = np.where(usable, np.floor(np.maximum(x_min, 0)), 0).astype(np.int64)
    maxc = np.where(usable, np.minimum(np.ceil(x_max), w - 1), -1).astype(np.int64)
    bw = np.maximum(maxc - minc + 1, 0)
    bh = np.maximum(maxr - minr + 1, 0)
    stride = bw + 1  # one spare column per row for the markers that close a run at the box's edge
    cells = stride * bh
    if len(polys) > 1 and int(cells.sum()) > _BATCH_CELLS:  # bound the temporary arrays
        half = len(polys) // 2
        flat_a, own_a = _fill_batch(polys[:half], shape)
        flat_b, own_b = _fill_batch(polys[half:], shape)
        return np.concatenate((flat_a, flat_b)), np.concatenate((own_a, own_b + half))
    box_start = np.cumsum(cells) - cells
    poly_of_v = np.repeat(np.arange(len(polys)), n_vert)
    prev = np.arange(xs.size) - 1
    prev[v_start] = v_start + n_vert - 1  # the edge into vertex i starts at vertex i-1 (the last for i = 0)

    # (edge, row) pairs: edge i (vertex prev[i] -> i) straddles row y when lo <= y <= hi (lo < hi); the
    # right ray counts it for y < hi, the left ray for y > lo (exact: a - b > 0 iff a > b in IEEE).
    lo, hi = np.minimum(ys, ys[prev]), np.maximum(ys, ys[prev])
    r0 = np.maximum(np.ceil(lo), minr[poly_of_v]).astype(np.int64)
    r1 = np.minimum(np.floor(hi), maxr[poly_of_v]).astype(np.int64)
    n_rows = np.where(lo < hi, np.maximum(r1 - r0 + 1, 0), 0)
    e, row = _spread(r0, n_rows)
    pe = poly_of_v[e]
    c_min, c_max = minc[pe], maxc[pe]
    y = row.astype(np.float64)
    ea, eb = e, prev[e]
    y0, y1 = ys[ea] - y, ys[eb] - y
    xa, xb = xs[ea], xs[eb]
    bit = (y < hi[e]).astype(np.uint8) | ((y > lo[e]).astype(np.uint8) << 1)  # 1: right ray, 2: left ray
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        x_cross = np.floor((xa * y1 - xb * y0) / (y1 - y0))
    win_lo = np.clip(x_cross - 2, c_min - 1, c_max + 1).astype(np.int64)
    win_hi = np.clip(x_cross + 3, c_min - 1, c_max + 1).astype(np.int64)
    row_key = box_start[pe] + (row - minr[pe]) * stride[pe]  # + column - minc = cell key
    toggles = []
    # columns minc .. win_lo - 1 (crossing to their right): right ray; win_hi + 1 .. maxc: left ray
    has = ((bit & 1) > 0) & (win_lo > c_min)
    toggles += [(row_key[has], 1), (row_key[has] + (win_lo - c_min)[has], 1)]
    has = ((bit & 2) > 0) & (win_hi < c_max)
    toggles += [(row_key[has] + (win_hi + 1 - c_min)[has], 2), (row_key[has] + (c_max + 1 - c_min)[has], 2)]
    # the window columns: skimage's expression, evaluated exactly
    start = np.maximum(win_lo, c_min)
    k, col = _spread(start, np.maximum(np.minimum(win_hi, c_max) - start + 1, 0))
    x = col.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        val = ((xa[k] - x) * y1[k] - (xb[k] - x) * y0[k]) / (y1[k] - y0[k])
    key = row_key[k] + (col - c_min[k])
    for flag, hit in ((1, val > 0), (2, val < 0)):
        hit &= (bit[k] & flag) > 0
        toggles += [(key[hit], flag), (key[hit] + 1, flag)]
    parity = np.zeros(int(cells.sum()) + 1, np.uint8)
    np.bitwise_xor.at(
        parity,
        np.concatenate([keys for keys, _ in toggles]),
        np.concatenate([np.full(keys.size, flag, np.uint8) for keys, flag in toggles]),
    )
    inside = np.bitwise_xor.accumulate(parity[:-1]).astype(bool)
    # vertices within eps of a pixel centre inside their polygon's box
    p = poly_of_v
    cx, cy = np.rint(xs), np.rint(ys)
    near = (np.abs(xs - cx) < _VERTEX_EPS) & (np.abs(ys - cy) < _VERTEX_EPS)
    near &= (cx >= minc[p]) & (cx <= maxc[p]) & (cy >= minr[p]) & (cy <= maxr[p])
    pv = p[near]
    inside[
        box_start[pv] + (cy[near].astype(np.int64) - minr[pv]) * stride[pv] + (cx[near].astype(np.int64) - minc[pv])
    ] = True
    # box cell -> image pixel: through the start of each box row
    n_box_rows = int(bh.sum())
    box_of_row = np.repeat(np.arange(len(polys)), bh)
    first_row = np.cumsum(bh) - bh
    r_in_box = np.arange(n_box_rows) - first_row[box_of_row]
    row_cell = box_start[box_of_row] + r_in_box * stride[box_of_row]
    row_pixel = (minr[box_of_row] + r_in_box) * w + minc[box_of_row]
    cell = np.flatnonzero(inside)  # sorted, as the box rows are: find each row's cells, not each cell's row
    in_row = np.diff(np.searchsorted(cell, row_cell), append=cell.size)
    br = np.repeat(np.arange(n_box_rows), in_row)
    return row_pixel[br] + (cell - row_cell[br]), box_of_row[br]


def _fill_many(polygons: Sequence[Any], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices of all polygons and the input position of the polygon each belongs to."""
    pos: list[int] = []
    batch: list[np.ndarray] = []
    for i, poly in enumerate(polygons):
        xy = np.asarray(poly, dtype=np.float64)
        if xy.ndim == 2 and xy.shape[1] >= 2 and xy.shape[0] >= 3:  # fill_polygon's other early exit
            pos.append(i)
            batch.append(xy[:, :2])
    if not batch or shape[0] <= 0 or shape[1] <= 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    flat, owner = _fill_batch(batch, shape)
    return flat, np.asarray(pos, np.intp)[owner]


def fill_polygons(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`fill_polygon` (without holes) for many polygons at once, vectorised across polygons.

    Returns, per polygon, the ``(rows, cols)`` of its pixels in row-major order, identical to
    :func:`fill_polygon`'s (and so to ``skimage.draw.polygon``'s).

    Example:
        >>> import numpy as np
        >>> sq = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
        >>> [len(rr) for rr, _ in fill_polygons([sq, sq[:2], sq + 8], (10, 10))]
        [25, 0, 4]
    """
    flat, owner = _fill_many(polygons, shape)
    order = np.argsort(owner, kind="stable")
    flat, owner = flat[order], owner[order]
    bounds = np.searchsorted(owner, np.arange(len(polygons) + 1))
    out = []
    for k in range(len(polygons)):
        part = flat[bounds[k] : bounds[k + 1]]
        out.append((part // shape[1], part % shape[1]))
    return out


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
    items = list(polygons)
    plain = [i for i, item in enumerate(items) if not isinstance(item, tuple)]
    flat, owner = _fill_many([items[i] for i in plain], shape)
    flats, ids = [flat], [np.asarray(plain, np.int32)[owner] + 1]
    for i, item in enumerate(items):
        if isinstance(item, tuple):
            rr, cc = fill_polygon(item[0], shape, item[1])
            flats.append(rr * shape[1] + cc)
            ids.append(np.full(rr.size, i + 1, np.int32))
    out = np.zeros(shape[0] * shape[1], np.int32)
    # a later polygon overwrites an earlier one: the largest id wins at every pixel
    np.maximum.at(out, np.concatenate(flats), np.concatenate(ids))
    return out.reshape(shape), len(items)
