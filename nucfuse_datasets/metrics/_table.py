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

__all__ = [
    "RUN_MAX_FRACTION",
    "RUN_MAX_TABLE_FRACTION",
    "TABLE_MIN_CELLS",
    "TABLE_PIXEL_FACTOR",
    "Overlap",
    "overlap",
    "overlap_raw",
]

#: The dense ``(T+1) x (P+1)`` bincount table is used while it has at most
#: ``max(TABLE_PIXEL_FACTOR * pixels, TABLE_MIN_CELLS)`` cells (memory O(H*W)); beyond that
#: (maps with very many instances) the overlapping pairs are found with ``np.unique``.
TABLE_PIXEL_FACTOR = 2
TABLE_MIN_CELLS = 1 << 20
#: :func:`overlap_raw` counts the joint keys with one ``np.bincount`` while the table has at
#: most this many cells per pixel, and run-length encodes them above it.
RUN_MAX_TABLE_FRACTION = 0.25
#: Run-length encoding is abandoned for the table (when it fits) once the runs exceed this
#: fraction of the pixels (noise-like maps, where sorting the runs would cost more).
RUN_MAX_FRACTION = 0.25


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


def _key_dtype(n_cells: int) -> type[np.integer[Any]]:
    return np.int32 if n_cells < 2**31 else np.int64


def _from_pairs(
    gt: NDArray[Any], pred: NDArray[Any], keys: NDArray[np.integer[Any]], counts: NDArray[np.int64], width: int
) -> Overlap:
    """Build the table from the distinct joint keys ``g * width + p`` (ascending) and their pixel counts."""
    g_raw, p_raw = np.divmod(keys, width)
    in_g, in_p = g_raw > 0, p_raw > 0
    # keys ascend, so g_raw does: the GT areas are sums over runs of equal g_raw.
    g_fg, n_fg = g_raw[in_g], counts[in_g]
    if g_fg.size:
        starts = np.flatnonzero(np.concatenate(([True], g_fg[1:] != g_fg[:-1])))
        true_ids, true_area = g_fg[starts], np.add.reduceat(n_fg, starts)
    else:
        true_ids, true_area = g_fg, n_fg
    # Pred areas: the distinct pairs are few, so sort their prediction ids (any size of id).
    pred_ids, p_pos = np.unique(p_raw[in_p], return_inverse=True)
    pred_area = np.bincount(p_pos, weights=counts[in_p], minlength=pred_ids.size)  # exact below 2**53
    both = in_g & in_p
    rows = np.searchsorted(true_ids, g_raw[both])
    cols = np.searchsorted(pred_ids, p_raw[both])
    return Overlap(
        true_ids.astype(gt.dtype),
        pred_ids.astype(pred.dtype),
        true_area.astype(np.int64),
        pred_area.astype(np.int64),
        rows.astype(np.intp),
        cols.astype(np.intp),
        counts[both].astype(np.int64),
    )


def overlap_raw(gt: NDArray[Any], pred: NDArray[Any]) -> Overlap | None:
    """Build the table straight from the original ids, without relabelling the pixels.

    One pass forms the joint key ``g * (max_p + 1) + p`` of every pixel. When the
    ``(max_g+1) x (max_p+1)`` table is small, one ``np.bincount`` of the keys is the table.
    Otherwise the keys are run-length encoded along the raster (a nucleus is a few dozen runs,
    not a few hundred pixels) and only the runs are sorted, so no per-pixel sort and no table
    larger than the image. Maps whose runs are nearly as many as the pixels (noise) fall back
    to the table while it fits. Returns ``None`` when the ids are too large for a 63-bit key
    (then the caller relabels first).
    """
    g = gt.reshape(-1)
    p = pred.reshape(-1)
    if g.size == 0:
        return None
    max_g, max_p = int(g.max()), int(p.max())
    width = max_p + 1
    n_cells = (max_g + 1) * width
    if n_cells >= 2**62:
        return None
    kdt = _key_dtype(n_cells)
    key = np.multiply(g, width, dtype=kdt, casting="unsafe")  # exact: g * width < n_cells
    np.add(key, p, out=key, casting="unsafe")  # p <= max_p < width: exact
    runs = None
    fits = _table_fits(n_cells, g.size)
    if n_cells > RUN_MAX_TABLE_FRACTION * g.size or not fits:
        starts = np.flatnonzero(key[1:] != key[:-1]) + 1
        if starts.size < RUN_MAX_FRACTION * g.size or not fits:
            runs = starts
    if runs is None:
        table = np.bincount(key, minlength=n_cells)
        nz = np.flatnonzero(table)
        return _from_pairs(gt, pred, nz, table[nz].astype(np.int64), width)
    bounds = np.concatenate(([0], runs, [g.size]))
    run_key = key[bounds[:-1]]
    run_len = np.diff(bounds)
    order = np.argsort(run_key, kind="stable")
    run_key, run_len = run_key[order], run_len[order]
    first = np.flatnonzero(np.concatenate(([True], run_key[1:] != run_key[:-1])))
    return _from_pairs(gt, pred, run_key[first], np.add.reduceat(run_len, first).astype(np.int64), width)


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
