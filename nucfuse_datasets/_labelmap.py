"""The one check and the one relabelling of "an integer, non-negative, 2-D label map".

Every place that takes an instance map (native label files, ``.mat`` variables, the prepared store, predictions,
training targets, the metrics) calls :func:`check_label_map` (or :func:`check_ids` for id arrays of any shape) with
the error class of its context, so the rule is written once and each caller still raises the right error of the one
tree: :class:`~nucfuse_datasets.errors.InvalidSourceError` for native files, ``InvalidPredictionError`` for
predictions, ``MetricInputError`` for metric inputs, ``ArgumentError`` for function arguments. Every renumbering
to dense ids ``1..N`` goes through :func:`relabel` (ascending order of the original id, NucFuseRank's and
HoVer-Net's ``remap_label`` order; 0 always stays background).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nucfuse_datasets.errors import NucFuseError

__all__ = ["LUT_MAX_ID", "Dense", "check_ids", "check_label_map", "compact", "relabel"]

#: Largest id for which a lookup table (one ``intp`` per possible id) is used; above it, or
#: when the table would be much larger than the image, ``np.unique`` is used.
LUT_MAX_ID = 1 << 22


def check_ids(
    arr: NDArray[Any],
    where: str,
    error: type[NucFuseError],
    *,
    integral_floats: bool = False,
    accept_bool: bool = False,
    bool_hint: str = "",
) -> NDArray[Any]:
    """Check the dtype and values of an id array of any shape; return it as an integer array.

    Args:
        arr: the array.
        where: what it is (a file, ``"gt"``, a tile), the start of every message.
        error: the error class to raise (a :class:`~nucfuse_datasets.errors.NucFuseError` subclass).
        integral_floats: accept a float array whose values are all finite integers (cast to ``int64``); native
            sources store labels as floats (``.mat`` maps, float TIFFs). Otherwise floats are refused.
        accept_bool: accept a boolean array as ids 0/1 (``uint8``); otherwise a boolean mask is refused.
        bool_hint: appended to the message that refuses a boolean mask (what to do instead).

    Raises:
        NucFuseError: of class ``error``: a boolean mask (unless accepted), a float array (unless integral and
            accepted), another non-integer dtype, negative ids, or floats too large for ``int64``.

    Example:
        >>> from nucfuse_datasets.errors import InvalidSourceError
        >>> check_ids(np.array([[0.0, 3.0]]), "x.mat", InvalidSourceError, integral_floats=True).tolist()
        [[0, 3]]
    """
    kind = arr.dtype.kind
    if kind == "b":
        if accept_bool:
            return arr.astype(np.uint8)
        raise error(
            f"{where}: a boolean mask (dtype bool) is not an instance map; ids must be integers with "
            f"0 = background{bool_hint}"
        )
    if kind == "f":
        if not integral_floats:
            raise error(
                f"{where}: label map has the floating-point dtype {arr.dtype}; instance ids must be integers "
                "(float32 cannot hold ids above 2**24, float64 none above 2**53). If the values are exact "
                "integers, cast first, e.g. label_map.astype(np.int64)."
            )
        if arr.size and not np.all(np.isfinite(arr)):
            raise error(f"{where}: non-finite values in a label map (dtype {arr.dtype})")
        if arr.size and not np.array_equal(arr, np.round(arr)):
            raise error(f"{where}: non-integer values in a label map (dtype {arr.dtype})")
        if arr.size and float(np.abs(arr).max()) >= 2.0**62:  # checked before the cast, which would wrap
            raise error(f"{where}: label values too large for int64 (dtype {arr.dtype})")
        if arr.size and float(arr.min()) < 0:
            raise error(f"{where}: negative ids in a label map; ids must be >= 0, with 0 = background")
        return arr.astype(np.int64)
    if kind not in "iu":
        raise error(
            f"{where}: label map has dtype {arr.dtype}; an instance map needs an integer dtype "
            "(uint8, uint16, uint32, uint64, int8, int16, int32 or int64)."
        )
    if kind == "i" and arr.size:
        low = int(arr.min())
        if low < 0:
            n_neg = int(np.count_nonzero(arr < 0))
            raise error(
                f"{where}: negative ids (minimum {low}, {n_neg} pixel(s)); ids must be >= 0, with 0 = background"
            )
    return arr


def check_label_map(
    x: Any,
    where: str,
    error: type[NucFuseError],
    *,
    shape: tuple[int, ...] | None = None,
    integral_floats: bool = False,
    accept_bool: bool = False,
    bool_hint: str = "",
) -> NDArray[Any]:
    """Return ``x`` as a 2-D integer label map with non-negative ids, or raise ``error`` naming ``where``.

    Accepts numpy arrays and anything ``np.asarray`` reads (torch tensors are detached and moved to the CPU).
    ``shape``, when given, is the ``(H, W)`` the map must have. The other arguments are those of
    :func:`check_ids`.

    Raises:
        NucFuseError: of class ``error``: not an array, not 2-D, the wrong shape, or what :func:`check_ids`
            refuses.

    Example:
        >>> from nucfuse_datasets.errors import InvalidPredictionError
        >>> check_label_map(np.zeros((2, 3), np.uint16), "demo/x", InvalidPredictionError, shape=(2, 3)).dtype
        dtype('uint16')
    """
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise error(f"{where}: cannot be read as an array ({exc})") from None
    if arr.dtype == object:
        raise error(f"{where}: must be an H×W integer array, got {type(x).__name__}")
    if arr.ndim != 2:
        raise error(f"{where}: a label map must be 2-D (H, W), got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise error(f"{where}: label map has shape {arr.shape}, expected {'×'.join(map(str, shape))}")
    return check_ids(arr, where, error, integral_floats=integral_floats, accept_bool=accept_bool, bool_hint=bool_hint)


@dataclass(frozen=True)
class Dense:
    """A label map relabelled to ``0..n``.

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
    """Relabel a checked (non-negative, integer) map of any shape to dense ids ``0..n``, ascending.

    The smallest non-zero id becomes 1, the next 2, and so on; 0 always stays background, whether or not any pixel
    is 0. A lookup table is used when the largest id is small, ``np.unique`` otherwise, so huge and ``uint64`` ids
    need no float round-trip and no giant table.

    Example:
        >>> d = relabel(np.array([[0, 70, 70], [5, 0, 2**40]], dtype=np.int64))
        >>> d.labels.tolist(), d.ids.tolist(), d.areas.tolist()
        ([[0, 2, 2], [1, 0, 3]], [5, 70, 1099511627776], [1, 2, 1])
    """
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

    Example:
        >>> d = relabel(np.array([[3, 5, 9]]))
        >>> compact(d, np.array([[1, 0, 3]])).ids.tolist()
        [3, 9]
    """
    flat = labels.reshape(-1)
    counts = np.bincount(flat, minlength=dense.n + 1)
    present = np.flatnonzero(counts[1:]) + 1
    lut = np.zeros(dense.n + 1, dtype=labels.dtype)
    lut[present] = np.arange(1, present.size + 1, dtype=labels.dtype)
    return Dense(np.take(lut, labels), dense.ids[present - 1], counts[present].astype(np.int64))
