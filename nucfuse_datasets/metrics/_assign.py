"""Maximum-weight one-to-one assignment on a sparse weight table (private).

Used by AJI+ (weights ``inter / (union + 1e-6)``) and by PQ matching when the threshold no
longer makes matches unique (weights = IoU). Pairs that do not overlap have weight 0.

* A pair whose GT and prediction overlap nothing else is in every maximum-weight assignment
  (leaving it out loses its weight > 0 and frees nothing), so it is taken directly. In real
  maps this is most pairs.
* The rest, restricted to the rows and columns still involved (in their original order), is
  passed as one dense matrix to ``scipy.optimize.linear_sum_assignment``, as HoVerNet passes
  the full ``T x P`` matrix, while it has at most :data:`DENSE_MAX_CELLS` cells.
* Above that, it is split into the connected components of the overlap graph and each is
  solved densely. The optimum total weight is the same (pairs in different components weigh
  0); when two assignments tie exactly, the one chosen may differ from the full dense
  solver's. Memory stays O(K) instead of O(T * P).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["DENSE_MAX_CELLS", "max_weight_pairs"]

#: Largest ``T * P`` solved as one dense matrix (``2**22`` cells = 32 MiB of float64).
DENSE_MAX_CELLS = 1 << 22


def max_weight_pairs(
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    weights: NDArray[np.float64],
    n_rows: int,
    n_cols: int,
) -> NDArray[np.intp]:
    """Return the entries of a maximum-weight assignment that have weight > 0.

    Args:
        rows: row index of each non-zero entry, entries sorted row-major.
        cols: column index of each non-zero entry.
        weights: the entries' weights (all > 0); absent entries weigh 0.
        n_rows: number of rows.
        n_cols: number of columns.

    Returns:
        Indices into the entry arrays, sorted by row.
    """
    if rows.size == 0:
        return np.zeros(0, dtype=np.intp)
    deg_r = np.bincount(rows, minlength=n_rows)
    deg_c = np.bincount(cols, minlength=n_cols)
    alone = (deg_r[rows] == 1) & (deg_c[cols] == 1)
    if alone.all():
        return np.arange(rows.size, dtype=np.intp)
    rest = np.flatnonzero(~alone)
    r_ids, r_pos = np.unique(rows[rest], return_inverse=True)
    c_ids, c_pos = np.unique(cols[rest], return_inverse=True)
    if r_ids.size * c_ids.size <= DENSE_MAX_CELLS:
        mat = np.zeros((r_ids.size, c_ids.size), dtype=np.float64)
        mat[r_pos, c_pos] = weights[rest]
        r, c = linear_sum_assignment(-mat)
        keep = mat[r, c] > 0.0
        r, c = r_ids[r[keep]], c_ids[c[keep]]
    else:
        r, c = _by_component(rows[rest], cols[rest], weights[rest], n_rows, n_cols)
    keys = rows.astype(np.int64) * n_cols + cols
    found = np.searchsorted(keys, r.astype(np.int64) * n_cols + c)
    return np.sort(np.concatenate((np.flatnonzero(alone), found))).astype(np.intp)


def _by_component(
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    weights: NDArray[np.float64],
    n_rows: int,
    n_cols: int,
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    n = n_rows + n_cols
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols + n_rows)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    entry_comp = comp[rows]
    order = np.argsort(entry_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(entry_comp[order])) + 1
    out_r: list[NDArray[np.intp]] = []
    out_c: list[NDArray[np.intp]] = []
    for group in np.split(order, bounds):
        r_sub, c_sub, w_sub = rows[group], cols[group], weights[group]
        r_ids, r_pos = np.unique(r_sub, return_inverse=True)
        c_ids, c_pos = np.unique(c_sub, return_inverse=True)
        mat = np.zeros((r_ids.size, c_ids.size), dtype=np.float64)
        mat[r_pos, c_pos] = w_sub
        r, c = linear_sum_assignment(-mat)
        keep = mat[r, c] > 0.0
        out_r.append(r_ids[r[keep]])
        out_c.append(c_ids[c[keep]])
    r_all = np.concatenate(out_r).astype(np.intp)
    c_all = np.concatenate(out_c).astype(np.intp)
    order = np.argsort(r_all, kind="stable")
    return r_all[order], c_all[order]
