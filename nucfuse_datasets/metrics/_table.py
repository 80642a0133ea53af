"""The contingency table of two dense label maps (private).

One pass over the pixels (``np.bincount`` of ``g * (P + 1) + p``) gives every intersection
``|G_i ∩ P_j|``; together with the instance areas this is all any metric here needs. Only the
non-zero instance-instance entries are kept, in row-major order (GT index, then prediction
index), which is the order ``np.nonzero`` gives on the reference's dense ``T x P`` matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nucfuse_datasets.metrics._relabel import Dense

__all__ = ["TABLE_MIN_CELLS", "TABLE_PIXEL_FACTOR", "Overlap", "overlap", "overlap_raw"]

#: The dense ``(T+1) x (P+1)`` bincount table is used while it has at most
#: ``max(TABLE_PIXEL_FACTOR * pixels, TABLE_MIN_CELLS)`` cells (memory O(H*W)); beyond that
#: (maps with very many instances) the overlapping pairs are found with ``np.unique``.
TABLE_PIXEL_FACTOR = 2
TABLE_MIN_CELLS = 1 << 20


@dataclass(frozen=True)
class Overlap:
    """Sparse contingency table of a GT map (rows) and a prediction map (columns).

    Attributes:
        true_ids: original GT ids, ascending (row ``i`` is ``true_ids[i]``).
        pred_ids: original prediction ids, ascending.
        true_area: ``int64`` areas of the GT instances.
        pred_area: ``int64`` areas of the predicted instances.
        rows: 0-based GT index of each overlapping pair (row-major order).
        cols: 0-based prediction index of each overlapping pair.
        inter: ``int64`` intersection of each overlapping pair (all > 0).
    """

    true_ids: NDArray[Any]
    pred_ids: NDArray[Any]
    true_area: NDArray[np.int64]
    pred_area: NDArray[np.int64]
    rows: NDArray[np.intp]
    cols: NDArray[np.intp]
    inter: NDArray[np.int64]

    @property
    def n_true(self) -> int:
        """Number of GT instances."""
        return int(self.true_area.shape[0])

    @property
    def n_pred(self) -> int:
        """Number of predicted instances."""
        return int(self.pred_area.shape[0])


def _table_fits(n_cells: int, n_pixels: int) -> bool:
    return n_cells <= max(TABLE_PIXEL_FACTOR * n_pixels, TABLE_MIN_CELLS)


def overlap_raw(gt: NDArray[Any], pred: NDArray[Any]) -> Overlap | None:
    """Build the table straight from the original ids, without relabelling the pixels.

    Applies when the largest ids are small enough for a ``(max_g+1) x (max_p+1)`` table of
    O(H*W) cells (the common case: ids up to a few thousand); returns ``None`` otherwise.
    Rows and columns of absent ids are dropped from the table afterwards, which gives the
    same ascending-id order as relabelling first.
    """
    g = gt.reshape(-1)
    p = pred.reshape(-1)
    if g.size == 0:
        return None
    max_g, max_p = int(g.max()), int(p.max())
    width = max_p + 1
    n_cells = (max_g + 1) * width
    if not _table_fits(n_cells, g.size):
        return None
    key = g.astype(np.int32 if n_cells < 2**31 else np.int64)
    key *= width
    np.add(key, p, out=key, casting="unsafe")  # p <= max_p < width: exact
    table = np.bincount(key, minlength=n_cells).reshape(max_g + 1, width)
    area_g = table[1:].sum(axis=1)
    area_p = table[:, 1:].sum(axis=0)
    has_g, has_p = area_g > 0, area_p > 0
    # np.flatnonzero on the contiguous table is faster than np.nonzero on the [1:, 1:] view.
    flat_idx = np.flatnonzero(table)
    r_raw, c_raw = np.divmod(flat_idx, width)
    inner = (r_raw > 0) & (c_raw > 0)
    flat_idx, r_raw, c_raw = flat_idx[inner], r_raw[inner], c_raw[inner]
    rank_g = np.cumsum(has_g) - 1
    rank_p = np.cumsum(has_p) - 1
    return Overlap(
        (np.flatnonzero(has_g) + 1).astype(gt.dtype),
        (np.flatnonzero(has_p) + 1).astype(pred.dtype),
        area_g[has_g].astype(np.int64),
        area_p[has_p].astype(np.int64),
        rank_g[r_raw - 1].astype(np.intp),
        rank_p[c_raw - 1].astype(np.intp),
        table.reshape(-1)[flat_idx].astype(np.int64),
    )


def overlap(gt: Dense, pred: Dense) -> Overlap:
    """Build the sparse contingency table of two dense maps of the same shape."""
    n_t, n_p = gt.n, pred.n
    g = gt.labels.reshape(-1)
    p = pred.labels.reshape(-1)
    empty_i = np.zeros(0, dtype=np.intp)
    if n_t == 0 or n_p == 0:
        rows, cols, inter = empty_i, empty_i, np.zeros(0, dtype=np.int64)
    else:
        width = n_p + 1
        n_cells = (n_t + 1) * width
        if _table_fits(n_cells, g.size):
            # int32 arithmetic is exact while every key is below 2**31.
            key = g * width if n_cells < 2**31 and g.dtype == np.int32 else g.astype(np.int64) * width
            key += p
            table = np.bincount(key, minlength=n_cells).reshape(n_t + 1, width)[1:, 1:]
            rows, cols = np.nonzero(table)
            inter = table[rows, cols].astype(np.int64)
        else:
            both = (g > 0) & (p > 0)
            key = g[both].astype(np.int64) * width + p[both]
            uniq, counts = np.unique(key, return_counts=True)
            rows, cols = np.divmod(uniq, width)
            rows -= 1
            cols -= 1
            inter = counts.astype(np.int64)
        rows = rows.astype(np.intp, copy=False)
        cols = cols.astype(np.intp, copy=False)
    return Overlap(gt.ids, pred.ids, gt.areas, pred.areas, rows, cols, inter)
