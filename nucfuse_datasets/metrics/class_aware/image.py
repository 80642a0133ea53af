"""Per-image class-aware statistics: :func:`image_class_stats` (one contingency table per image).

The per-class matches need no per-class maps: IoU > 0.5 pairs are unique, so the matches that the
official codes find between the class-``k`` GT map and the class-``k`` predicted map are exactly the
binary matches whose two nuclei both have class ``k``, with the same IoU (zeroing the other
classes changes neither areas nor intersections). One sparse contingency table of the two
instance maps (:mod:`nucfuse_datasets.metrics._table`) gives every class at once. The HoVer-Net
centroid pairing runs the same full dense assignment as its ``pair_coordinates``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from nucfuse_datasets._labelmap import LUT_MAX_ID
from nucfuse_datasets.errors import ArgumentError, MetricInputError, NucFuseError
from nucfuse_datasets.metrics._relabel import relabel
from nucfuse_datasets.metrics._table import Overlap, overlap, overlap_raw
from nucfuse_datasets.metrics._validate import as_label_map, check_pair
from nucfuse_datasets.metrics.class_aware.stats import ClassStats

__all__ = ["as_class_lookup", "check_n_classes", "check_radius", "image_class_stats"]


def check_n_classes(value: Any) -> int:
    """Validate ``n_classes`` (an integer >= 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"n_classes must be an integer >= 1 (classes are numbered 1..n_classes); got {value!r}.")
    return int(value)


def check_radius(value: Any) -> float:
    """Validate the centroid pairing radius (a finite number >= 0, in pixels)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentError(f"radius must be a number of pixels; got {value!r}.")
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise ArgumentError(f"radius must be finite and >= 0; got {value!r}.")
    return out


def as_class_lookup(
    x: Any, name: str, *, max_id: int | None = None, error: type[NucFuseError] = MetricInputError
) -> NDArray[np.int64]:
    """Return a class lookup (``classes[id]`` = class of instance ``id``) as a 1-D ``int64`` array.

    The one check of a class lookup: its type and shape, that no class is negative and, given the instance map's
    largest id ``max_id``, that it has an entry per id. ``error`` is the error class of the caller's context
    (``InvalidPredictionError`` for predictions). The range against ``n_classes`` is the caller's.
    """
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise error(f"{name} cannot be read as an array ({exc}).") from None
    if arr.ndim != 1:
        raise error(
            f"{name} must be a 1-D lookup array (classes[id] = class of instance id, classes[0] = 0); "
            f"got shape {arr.shape}."
        )
    if arr.dtype.kind not in "iu":
        raise error(f"{name} must hold integer class ids; got dtype {arr.dtype}.")
    if arr.size and arr.dtype.kind == "u" and int(arr.max()) >= 2**62:
        raise error(f"{name} holds class ids up to {int(arr.max())}; that is not a class id.")
    out = arr.astype(np.int64)
    if out.size and int(out.min()) < 0:
        bad = int(np.flatnonzero(out < 0)[0])
        raise error(f"{name} has a negative class ({int(out[bad])} at id {bad}); classes must be >= 0.")
    if max_id is not None and max_id > 0 and out.size < max_id + 1:
        raise error(
            f"{name} has {out.size} entries but the instance map has id {max_id}; "
            f"it needs one class per id 0..{max_id} (classes[id] = class of instance id)."
        )
    return out


def _check_range(classes: NDArray[np.int64], name: str, n_classes: int) -> None:
    if classes.size > 1:
        top = int(classes[1:].max())
        if top > n_classes:
            where = int(np.flatnonzero(classes[1:] > n_classes)[0]) + 1
            raise MetricInputError(
                f"{name} has class {top} (e.g. at id {where}) but n_classes is {n_classes}; "
                "classes must be 0 (unclassified) .. n_classes. Pass a larger n_classes."
            )


def _centroids(arr: NDArray[Any], ids: NDArray[Any], areas: NDArray[np.int64]) -> NDArray[np.float32]:
    """Centres of mass ``(x, y)`` of the instances ``ids`` (ascending), cast to float32 as HoVer-Net does.

    The coordinate sums are integers, exact in float64, so each mean is the correctly rounded
    quotient (what ``cv2.moments`` or ``scipy.ndimage.center_of_mass`` give).
    """
    n = int(ids.shape[0])
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    width = arr.shape[1]
    flat = arr.reshape(-1)
    fg = np.flatnonzero(flat)
    values = flat[fg]
    top = int(ids[-1])
    if top < LUT_MAX_ID:
        lut = np.zeros(top + 1, dtype=np.intp)
        lut[ids.astype(np.intp)] = np.arange(n, dtype=np.intp)
        pos = lut[values]
    else:
        pos = np.searchsorted(ids, values)
    rows, cols = np.divmod(fg, width)
    sum_y = np.bincount(pos, weights=rows, minlength=n)
    sum_x = np.bincount(pos, weights=cols, minlength=n)
    return np.stack((sum_x / areas, sum_y / areas), axis=1).astype(np.float32)


def _pair_centroids(
    true_xy: NDArray[Any],
    true_types: NDArray[np.int64],
    pred_xy: NDArray[Any],
    pred_types: NDArray[np.int64],
    radius: float,
) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...], tuple[int, ...]]:
    """HoVer-Net's pairing: a minimum-total-distance assignment over all points, then pairs within ``radius``."""
    dist = cdist(true_xy, pred_xy, metric="euclidean")
    rows, cols = linear_sum_assignment(dist)
    keep = dist[rows, cols] <= radius
    rows, cols = rows[keep], cols[keep]
    paired = tuple(zip(true_types[rows].tolist(), pred_types[cols].tolist(), strict=True))
    free_true = np.ones(true_types.shape[0], dtype=bool)
    free_true[rows] = False
    free_pred = np.ones(pred_types.shape[0], dtype=bool)
    free_pred[cols] = False
    return paired, tuple(true_types[free_true].tolist()), tuple(pred_types[free_pred].tolist())


def _table(gt: NDArray[Any], pred: NDArray[Any]) -> Overlap:
    fast = overlap_raw(gt, pred)
    return fast if fast is not None else overlap(relabel(gt), relabel(pred))


def image_class_stats(
    gt_instances: Any,
    gt_classes: Any,
    pred_instances: Any,
    pred_classes: Any,
    *,
    n_classes: int,
    radius: float = 12.0,
) -> ClassStats:
    """Everything the class-aware protocols need from one image, from one contingency table.

    Inputs follow the :class:`~nucfuse_datasets.schema.Sample` convention: an instance map
    (0 = background, any non-negative ids) and a lookup ``classes[id]`` = class of instance
    ``id`` (``0`` = unclassified, else ``1..n_classes``; ``classes[0]`` is not read). Per class
    ``k``: TP (pairs with IoU > 0.5 whose nuclei both have class ``k``), FP, FN and the summed
    IoU; the same for all nuclei (binary); and the HoVer-Net centroid pairing (centres of mass,
    a minimum-total-distance assignment over all centroids, pairs within ``radius`` kept; an
    image without nuclei gets HoVer-Net's phantom centroid ``(0, 0)`` of type 0).

    Args:
        gt_instances: ground-truth instance map (H, W), any integer dtype.
        gt_classes: 1-D integer lookup of the GT classes, at least ``max id + 1`` long.
        pred_instances: predicted instance map (H, W).
        pred_classes: 1-D integer lookup of the predicted classes.
        n_classes: number of classes; every lookup entry must be in ``0..n_classes``.
        radius: centroid pairing radius in pixels (HoVer-Net: 12).

    Returns:
        The image's :class:`ClassStats`.

    Raises:
        MetricInputError: a map is not a 2-D integer map, the shapes differ, a lookup is not
            1-D integer, is shorter than the map's largest id + 1, or holds a negative class or
            one above ``n_classes``.
        ArgumentError: ``n_classes`` or ``radius`` is invalid.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import image_class_stats
        >>> gt = np.array([[1, 1, 1, 0, 2, 2, 2, 2]])
        >>> pred = np.array([[5, 5, 5, 0, 0, 9, 9, 9]])   # IoU 1 and 0.75
        >>> s = image_class_stats(gt, [0, 1, 2], pred, [0, 0, 0, 0, 0, 1, 0, 0, 0, 2], n_classes=2)
        >>> s.tp, s.fp, s.fn, s.sum_iou, s.binary_tp
        ((1, 1), (0, 0), (0, 0), (1.0, 0.75), 2)
    """
    n = check_n_classes(n_classes)
    rad = check_radius(radius)
    g = as_label_map(gt_instances, "gt_instances")
    p = as_label_map(pred_instances, "pred_instances")
    check_pair(g, p)
    g_cls = as_class_lookup(gt_classes, "gt_classes", max_id=int(g.max()) if g.size else 0)
    p_cls = as_class_lookup(pred_classes, "pred_classes", max_id=int(p.max()) if p.size else 0)
    _check_range(g_cls, "gt_classes", n)
    _check_range(p_cls, "pred_classes", n)

    ov = _table(g, p)
    true_cls = g_cls[ov.true_ids.astype(np.intp)]
    pred_cls = p_cls[ov.pred_ids.astype(np.intp)]
    total = ov.true_area[ov.rows] + ov.pred_area[ov.cols]
    iou = ov.inter / (total - ov.inter)  # the official float expression
    hit = np.flatnonzero(iou > 0.5)  # row-major order, as np.nonzero on the dense matrix
    hit_iou = iou[hit]
    hit_t = true_cls[ov.rows[hit]]
    same = hit_t == pred_cls[ov.cols[hit]]
    n_true = np.bincount(true_cls, minlength=n + 1)
    n_pred = np.bincount(pred_cls, minlength=n + 1)
    tp = np.bincount(hit_t[same], minlength=n + 1)
    sum_iou = [0.0] * (n + 1)
    for k in np.unique(hit_t[same]).tolist():
        # summed per class in row order, as the official code sums its class-k pairs
        sum_iou[k] = float(hit_iou[same & (hit_t == k)].sum())

    true_xy: NDArray[Any] = _centroids(g, ov.true_ids, ov.true_area)
    pred_xy: NDArray[Any] = _centroids(p, ov.pred_ids, ov.pred_area)
    true_phantom, pred_phantom = ov.n_true == 0, ov.n_pred == 0
    if true_phantom:
        true_xy, true_cls = np.zeros((1, 2), dtype=np.int64), np.zeros(1, dtype=np.int64)
    if pred_phantom:
        pred_xy, pred_cls = np.zeros((1, 2), dtype=np.int64), np.zeros(1, dtype=np.int64)
    paired, free_true, free_pred = _pair_centroids(true_xy, true_cls, pred_xy, pred_cls, rad)

    n_hit = int(hit.size)
    return ClassStats(
        n_classes=n,
        radius=rad,
        tp=tuple(tp[1:].tolist()),
        fp=tuple((n_pred[1:] - tp[1:]).tolist()),
        fn=tuple((n_true[1:] - tp[1:]).tolist()),
        sum_iou=tuple(sum_iou[1:]),
        binary_tp=n_hit,
        binary_fp=ov.n_pred - n_hit,
        binary_fn=ov.n_true - n_hit,
        binary_sum_iou=float(hit_iou.sum()),
        paired_types=paired,
        unpaired_true_types=free_true,
        unpaired_pred_types=free_pred,
        true_phantom=bool(true_phantom),
        pred_phantom=bool(pred_phantom),
    )
