""":class:`ClassStats`: everything the class-aware protocols need from one image, JSON-safe.

One :class:`ClassStats` per image is enough to rebuild every score of
:func:`~nucfuse_datasets.metrics.reduce_class_stats` later, so a report can store one per image
(:meth:`ClassStats.to_dict`) while streaming over thousands of images and never keep the maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError

__all__ = ["ClassStats"]

_PER_CLASS_INT = ("tp", "fp", "fn")
_BINARY_INT = ("binary_tp", "binary_fp", "binary_fn")
_TYPE_LISTS = ("unpaired_true_types", "unpaired_pred_types")
_FLAGS = ("true_phantom", "pred_phantom")


@dataclass(frozen=True)
class ClassStats:
    """Per-image counts behind the class-aware scores (PanNuke, CoNIC, HoVer-Net type statistics).

    Per-class tuples have one entry per class ``1..n_classes`` (entry ``k - 1`` is class ``k``).
    A pair matches when its IoU is above 0.5 (strictly); such pairs are unique, so the matches of
    class ``k`` are the binary matches whose ground-truth and predicted nuclei both have class
    ``k``. Instances of class 0 (unclassified) count in the binary fields and the centroid
    pairing only.

    Attributes:
        n_classes: number of classes (class ids ``1..n_classes``).
        radius: centroid pairing radius in pixels used for the ``*_types`` fields.
        tp: per class, matched pairs whose GT and prediction both have that class.
        fp: per class, predicted nuclei of that class not matched to a GT nucleus of that class.
        fn: per class, GT nuclei of that class not matched to a prediction of that class.
        sum_iou: per class, sum of the IoU of the matched pairs (in ascending GT-id order).
        binary_tp: matched pairs, classes ignored.
        binary_fp: unmatched predicted nuclei, classes ignored.
        binary_fn: unmatched GT nuclei, classes ignored.
        binary_sum_iou: sum of the IoU of all matched pairs.
        paired_types: HoVer-Net centroid pairing: ``(true type, predicted type)`` of each pair.
        unpaired_true_types: types of the GT centroids left unpaired.
        unpaired_pred_types: types of the predicted centroids left unpaired.
        true_phantom: the GT has no nucleus, so HoVer-Net's phantom centroid ``(0, 0)`` of type 0
            stands in for it (it may be paired or count as unpaired).
        pred_phantom: the same for the prediction.

    Example:
        >>> import json
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import ClassStats, image_class_stats
        >>> gt = np.array([[1, 1, 0, 2, 2]])
        >>> s = image_class_stats(gt, [0, 1, 2], gt, [0, 1, 1], n_classes=2)
        >>> s.tp, s.fp, s.fn, s.binary_tp, s.paired_types
        ((1, 0), (1, 0), (0, 1), 2, ((1, 1), (2, 1)))
        >>> ClassStats.from_dict(json.loads(json.dumps(s.to_dict()))) == s
        True
    """

    n_classes: int
    radius: float
    tp: tuple[int, ...]
    fp: tuple[int, ...]
    fn: tuple[int, ...]
    sum_iou: tuple[float, ...]
    binary_tp: int
    binary_fp: int
    binary_fn: int
    binary_sum_iou: float
    paired_types: tuple[tuple[int, int], ...]
    unpaired_true_types: tuple[int, ...]
    unpaired_pred_types: tuple[int, ...]
    true_phantom: bool
    pred_phantom: bool

    @property
    def n_true(self) -> tuple[int, ...]:
        """Per class, the number of GT nuclei (``tp + fn``)."""
        return tuple(t + f for t, f in zip(self.tp, self.fn, strict=True))

    @property
    def n_pred(self) -> tuple[int, ...]:
        """Per class, the number of predicted nuclei (``tp + fp``)."""
        return tuple(t + f for t, f in zip(self.tp, self.fp, strict=True))

    @property
    def gt_present(self) -> tuple[bool, ...]:
        """Per class, whether the GT has a nucleus of that class (PanNuke's "class map not empty" rule).

        PanNuke's ``run.py`` skips (NaN) a class whose remapped GT class map has a single unique
        value. With background present that means no nucleus of the class; a map without
        background makes its ``remap_label`` raise first, so the rule is exactly this flag.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import image_class_stats
            >>> image_class_stats(np.array([[0, 1]]), [0, 2], np.array([[0, 1]]), [0, 1], n_classes=3).gt_present
            (False, True, False)
        """
        return tuple(n > 0 for n in self.n_true)

    @property
    def binary_n_true(self) -> int:
        """GT nuclei of any class, class 0 included."""
        return self.binary_tp + self.binary_fn

    @property
    def binary_n_pred(self) -> int:
        """Predicted nuclei of any class, class 0 included."""
        return self.binary_tp + self.binary_fp

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists of ints and floats, bools) of every field.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import image_class_stats
            >>> d = image_class_stats(np.zeros((2, 2), int), [0], np.zeros((2, 2), int), [0], n_classes=1).to_dict()
            >>> d["tp"], d["paired_types"], d["true_phantom"]
            ([0], [[0, 0]], True)
        """
        return {
            "n_classes": self.n_classes,
            "radius": self.radius,
            "tp": list(self.tp),
            "fp": list(self.fp),
            "fn": list(self.fn),
            "sum_iou": list(self.sum_iou),
            "binary_tp": self.binary_tp,
            "binary_fp": self.binary_fp,
            "binary_fn": self.binary_fn,
            "binary_sum_iou": self.binary_sum_iou,
            "paired_types": [[t, p] for t, p in self.paired_types],
            "unpaired_true_types": list(self.unpaired_true_types),
            "unpaired_pred_types": list(self.unpaired_pred_types),
            "true_phantom": self.true_phantom,
            "pred_phantom": self.pred_phantom,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassStats:
        """Rebuild the stats from :meth:`to_dict` output (e.g. after a JSON round trip).

        Args:
            data: the dict.

        Returns:
            The equal :class:`ClassStats`.

        Raises:
            ArgumentError: a key is missing or unknown, a value has the wrong type, a count is
                negative, or a per-class list does not have ``n_classes`` entries.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.metrics import ClassStats, image_class_stats
            >>> s = image_class_stats(np.array([[1, 0]]), [0, 1], np.array([[0, 4]]), [0, 0, 0, 0, 1], n_classes=1)
            >>> ClassStats.from_dict(s.to_dict()) == s
            True
        """
        if not isinstance(data, dict):
            raise ArgumentError(f"ClassStats.from_dict needs a dict; got {type(data).__name__}.")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data))
        if unknown or missing:
            raise ArgumentError(f"ClassStats.from_dict: unknown key(s) {unknown}, missing key(s) {missing}.")
        n = _count(data["n_classes"], "n_classes")
        radius = _number(data["radius"], "radius")
        kwargs: dict[str, Any] = {"n_classes": n, "radius": radius}
        for key in _PER_CLASS_INT:
            kwargs[key] = tuple(_count(v, key) for v in _list(data[key], key, n))
        kwargs["sum_iou"] = tuple(_number(v, "sum_iou") for v in _list(data["sum_iou"], "sum_iou", n))
        for key in _BINARY_INT:
            kwargs[key] = _count(data[key], key)
        kwargs["binary_sum_iou"] = _number(data["binary_sum_iou"], "binary_sum_iou")
        pairs = []
        for item in _list(data["paired_types"], "paired_types", None):
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ArgumentError(f"ClassStats.from_dict: paired_types entries must be [true, pred]; got {item!r}.")
            pairs.append((_int(item[0], "paired_types"), _int(item[1], "paired_types")))
        kwargs["paired_types"] = tuple(pairs)
        for key in _TYPE_LISTS:
            kwargs[key] = tuple(_int(v, key) for v in _list(data[key], key, None))
        for key in _FLAGS:
            if not isinstance(data[key], (bool, np.bool_)):
                raise ArgumentError(f"ClassStats.from_dict: {key} must be true or false; got {data[key]!r}.")
            kwargs[key] = bool(data[key])
        return cls(**kwargs)


def _list(value: Any, key: str, length: int | None) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ArgumentError(f"ClassStats.from_dict: {key} must be a list; got {type(value).__name__}.")
    if length is not None and len(value) != length:
        raise ArgumentError(f"ClassStats.from_dict: {key} has {len(value)} entries; n_classes is {length}.")
    return list(value)


def _int(value: Any, key: str) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise ArgumentError(f"ClassStats.from_dict: {key} must hold integers; got {value!r}.")


def _count(value: Any, key: str) -> int:
    out = _int(value, key)
    if out < 0:
        raise ArgumentError(f"ClassStats.from_dict: {key} must be >= 0; got {value!r}.")
    return out


def _number(value: Any, key: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentError(f"ClassStats.from_dict: {key} must be a number; got {value!r}.")
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise ArgumentError(f"ClassStats.from_dict: {key} must be finite and >= 0; got {value!r}.")
    return out
