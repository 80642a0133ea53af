"""Input validation shared by the metric functions (private).

Every check raises :class:`~nucfuse_datasets.errors.MetricInputError` for a bad map and
:class:`~nucfuse_datasets.errors.ArgumentError` for a bad option, with a message that names
the argument and the problem.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nucfuse_datasets._labelmap import check_label_map
from nucfuse_datasets.errors import ArgumentError, MetricInputError

__all__ = [
    "as_ignore_mask",
    "as_label_map",
    "check_choice",
    "check_fraction",
    "check_pair",
    "check_threshold",
    "check_width",
]


def as_label_map(x: Any, name: str) -> NDArray[Any]:
    """Return ``x`` as a 2-D integer array, or raise :class:`MetricInputError`.

    Accepted: any integer dtype (signed or unsigned, any width, either byte order) holding
    non-negative ids. Rejected: booleans (a semantic mask, not an instance map), floats
    (ids above 2**24 / 2**53 are not representable), anything else, negative ids, and arrays
    that are not 2-D.
    """
    return check_label_map(
        x,
        name,
        MetricInputError,
        bool_hint=". Label its connected components first, e.g. scipy.ndimage.label(mask)[0].",
    )


def check_pair(gt: NDArray[Any], pred: NDArray[Any]) -> None:
    """Raise :class:`MetricInputError` when the two maps differ in shape."""
    if gt.shape != pred.shape:
        raise MetricInputError(f"gt and pred must have the same shape; got gt {gt.shape} and pred {pred.shape}.")


def as_ignore_mask(x: Any, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """Return the ignore mask as a boolean array (non-zero = ignore), checking its shape."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise MetricInputError(f"ignore cannot be read as an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise MetricInputError(
            f"ignore has dtype {arr.dtype}; it must be a boolean or numeric mask (non-zero = ambiguous region)."
        )
    if arr.shape != shape:
        raise MetricInputError(f"ignore must have the maps' shape {shape}; got {arr.shape}.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise MetricInputError("ignore contains NaN or infinite values.")
    return arr != 0


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ArgumentError`."""
    options = tuple(choices)
    if not isinstance(value, str) or value not in options:
        raise ArgumentError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}.")
    return value


def _as_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentError(f"{name} must be a real number; got {value!r}.")
    out = float(value)
    if not np.isfinite(out):
        raise ArgumentError(f"{name} must be finite; got {value!r}.")
    return out


def check_threshold(value: Any, match: str) -> float:
    """Validate the IoU threshold: ``[0, 1)`` for ``"strict"``, ``(0, 1]`` for ``"inclusive"``."""
    thr = _as_real(value, "iou_threshold")
    if match == "strict" and not 0.0 <= thr < 1.0:
        raise ArgumentError(f"iou_threshold must be in [0, 1) with match='strict'; got {value!r}.")
    if match == "inclusive" and not 0.0 < thr <= 1.0:
        raise ArgumentError(f"iou_threshold must be in (0, 1] with match='inclusive'; got {value!r}.")
    return thr


def check_fraction(value: Any) -> float:
    """Validate ``ignore_fraction`` (a fraction in ``[0, 1]``)."""
    frac = _as_real(value, "ignore_fraction")
    if not 0.0 <= frac <= 1.0:
        raise ArgumentError(f"ignore_fraction must be in [0, 1]; got {value!r}.")
    return frac


def check_width(value: Any) -> int:
    """Validate ``boundary_width`` (a non-negative integer number of pixels)."""
    if isinstance(value, bool):
        raise ArgumentError(f"boundary_width must be a non-negative integer; got {value!r}.")
    try:
        width = operator.index(value)
    except TypeError:
        raise ArgumentError(f"boundary_width must be a non-negative integer; got {value!r}.") from None
    if width < 0:
        raise ArgumentError(f"boundary_width must be a non-negative integer; got {value!r}.")
    return int(width)
