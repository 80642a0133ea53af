"""Training targets derived from an instance map: HoVerNet HV maps, nucleus map, 3-class map, type map.

All functions take an ``H×W`` integer instance map (0 = background, ids > 0 = nuclei) and
are vectorised over instances (one pass of ``np.bincount`` per quantity, no per-instance
full-image masks), so a 256×256 patch with a few hundred nuclei takes a few milliseconds.

The targets must be computed **after** geometric augmentation: the HV values encode
directions, so warping a precomputed HV map (as HoVerNeXt-as-run did, quirk (b) of
``recipes.md`` §2.2) makes them contradict the image. The Sample-level transforms
:class:`HoVerNetTargets` and :class:`NucleusTargets` are meant to be the last step of a
``transforms`` pipeline, after the augmentation.

HV definition (HoVerNet, as used by both reference recipes), per instance:

1. centre of mass ``(cy, cx)`` of its pixels, rounded half up to the nearest pixel;
2. coordinates relative to it. HoVerNet counts the pixel grid from 1 while the centre is
   0-based, so the faithful relative coordinate is ``col + 1 - round(cx)`` (one pixel
   shift, ``one_based=True``, the default); ``one_based=False`` gives the centred
   ``col - round(cx)``;
3. negative values divided by ``|min|`` and positive values by ``max``, separately per axis
   and per instance, so each instance spans ``[-1, 1]``; 0 outside nuclei.

HoVerNet crops each instance's bounding box grown by 2 px before these steps; the crop only
changes the origin of the coordinates, which cancels out, so the global computation here is
identical (including for the fork's row/column bound bug, which only affects the crop).

Example:
    >>> import numpy as np
    >>> from nucfuse_datasets.transforms.targets import hv_maps
    >>> inst = np.zeros((5, 7), np.int32)
    >>> inst[1:4, 1:6] = 1
    >>> [round(float(v), 3) for v in hv_maps(inst)[0, 2, 1:6]]
    [-1.0, 0.0, 0.333, 0.667, 1.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from nucfuse_datasets._labelmap import check_label_map, relabel
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.schema import Sample

__all__ = [
    "HoVerNetTargets",
    "NucleusTargets",
    "border_map",
    "hv_maps",
    "nucleus_map",
    "three_class_map",
    "type_map",
]


def _check_instances(instances: Any) -> np.ndarray:
    return check_label_map(instances, "instances", ArgumentError)


def _dense_labels(flat: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels usable as ``np.bincount`` indices (0 stays 0) and the number of bins."""
    dense = relabel(flat)
    return dense.labels.astype(np.intp, copy=False), dense.n + 1


def _normalise_signed(rel: np.ndarray, labels: np.ndarray, n_bins: int) -> np.ndarray:
    """Divide negative values by the per-label |min| and positive ones by the per-label max."""
    rel = rel.astype(np.float64)
    neg_extent = np.zeros(n_bins)
    pos_extent = np.zeros(n_bins)
    np.maximum.at(neg_extent, labels, np.maximum(-rel, 0.0))
    np.maximum.at(pos_extent, labels, np.maximum(rel, 0.0))
    out = np.zeros_like(rel)
    neg = rel < 0
    pos = rel > 0
    out[neg] = rel[neg] / neg_extent[labels[neg]]
    out[pos] = rel[pos] / pos_extent[labels[pos]]
    return out


def hv_maps(instances: np.ndarray, *, one_based: bool = True) -> np.ndarray:
    """HoVerNet horizontal and vertical distance maps of an instance map.

    Args:
        instances: ``H×W`` integer instance map, 0 = background.
        one_based: reproduce HoVerNet's 1-based pixel grid against a 0-based centre of mass
            (a one-pixel shift of the zero crossing towards the top-left; what both
            reference recipes trained on). ``False`` centres the maps on the rounded centre
            of mass.

    Returns:
        ``2×H×W`` ``float32`` array: channel 0 the horizontal (x, along columns) map,
        channel 1 the vertical (y, along rows) map, each in ``[-1, 1]`` inside nuclei and 0
        on the background.

    Raises:
        ArgumentError: ``instances`` is not a 2-D map of non-negative integers.

    Example:
        >>> import numpy as np
        >>> inst = np.zeros((6, 6), np.int32)
        >>> inst[1:4, 1:4] = 3
        >>> hv = hv_maps(inst, one_based=False)
        >>> hv[0, 2, 1:4].tolist(), hv[1, 1:4, 2].tolist()
        ([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0])
    """
    inst = _check_instances(instances)
    h, w = inst.shape
    out = np.zeros((2, h, w), np.float32)
    flat = inst.ravel()
    fg_idx = np.flatnonzero(flat)
    if fg_idx.size == 0:
        return out
    labels_all, n_bins = _dense_labels(flat[fg_idx])
    rows = fg_idx // w
    cols = fg_idx % w
    counts = np.bincount(labels_all, minlength=n_bins).astype(np.float64)
    safe = np.maximum(counts, 1.0)
    com_r = np.bincount(labels_all, weights=rows, minlength=n_bins) / safe
    com_c = np.bincount(labels_all, weights=cols, minlength=n_bins) / safe
    # Round half up (HoVerNet's ``int(x + 0.5)`` on non-negative coordinates).
    cen_r = np.floor(com_r + 0.5).astype(np.int64)
    cen_c = np.floor(com_c + 0.5).astype(np.int64)
    shift = 1 if one_based else 0
    rel_x = cols + shift - cen_c[labels_all]
    rel_y = rows + shift - cen_r[labels_all]
    flat_out = out.reshape(2, -1)
    flat_out[0, fg_idx] = _normalise_signed(rel_x, labels_all, n_bins)
    flat_out[1, fg_idx] = _normalise_signed(rel_y, labels_all, n_bins)
    return out


def nucleus_map(instances: np.ndarray) -> np.ndarray:
    """Nucleus-vs-background map (``instances > 0``).

    Args:
        instances: ``H×W`` integer instance map.

    Returns:
        ``H×W`` ``uint8`` map, 1 on nuclei and 0 on the background.

    Example:
        >>> import numpy as np
        >>> nucleus_map(np.array([[0, 2], [5, 0]], np.int32)).tolist()
        [[0, 1], [1, 0]]
    """
    return (_check_instances(instances) > 0).astype(np.uint8)


def border_map(instances: np.ndarray) -> np.ndarray:
    """Pixels whose 8-neighbourhood (3×3) holds a different label, background included.

    Outside the image counts as background (value 0), so a nucleus touching the image edge
    has a border along the edge. This is the label boundary of ``mahotas.labeled.borders``
    with a 3×3 structuring element; intersect it with the foreground for the 3-class map.

    Args:
        instances: ``H×W`` integer instance map.

    Returns:
        ``H×W`` ``bool`` map (background pixels next to a nucleus are ``True`` too).

    Example:
        >>> import numpy as np
        >>> inst = np.zeros((5, 5), np.int32)
        >>> inst[1:4, 1:4] = 1
        >>> border_map(inst).sum()
        np.int64(24)
    """
    inst = _check_instances(instances)
    if inst.size == 0:
        return np.zeros(inst.shape, bool)
    footprint = np.ones((3, 3), bool)
    hi = ndimage.maximum_filter(inst, footprint=footprint, mode="constant", cval=0)
    lo = ndimage.minimum_filter(inst, footprint=footprint, mode="constant", cval=0)
    return (hi != inst) | (lo != inst)


def three_class_map(instances: np.ndarray) -> np.ndarray:
    """3-class map: 0 background, 1 nucleus interior, 2 nucleus border.

    Border = :func:`border_map` (8-connected label boundary) ∩ foreground, as HoVerNeXt's
    3-class target.

    Args:
        instances: ``H×W`` integer instance map.

    Returns:
        ``H×W`` ``uint8`` map with values in ``{0, 1, 2}``.

    Example:
        >>> import numpy as np
        >>> inst = np.zeros((5, 5), np.int32)
        >>> inst[1:4, 1:4] = 1
        >>> three_class_map(inst)[1:4, 1:4].tolist()
        [[2, 2, 2], [2, 1, 2], [2, 2, 2]]
    """
    inst = _check_instances(instances)
    out = (inst > 0).astype(np.uint8)
    out[border_map(inst) & (inst > 0)] = 2
    return out


def type_map(instances: np.ndarray, classes: Any) -> np.ndarray:
    """Per-pixel class map ``classes[instances]``: the class of each pixel's nucleus, 0 on the background.

    The training target of a type (class) head, from a Sample's instance map and class lookup
    (``classes[id]`` = class of instance ``id``, ``classes[0] = 0``).

    Args:
        instances: ``H×W`` integer instance map.
        classes: 1-D integer lookup with an entry for every id of ``instances``.

    Returns:
        ``H×W`` ``int32`` map of class ids.

    Raises:
        ArgumentError: no classes (``None``), a lookup that is not 1-D non-negative integers, or one too short for
            the largest id.

    Example:
        >>> import numpy as np
        >>> type_map(np.array([[0, 1], [2, 2]], np.int32), np.array([0, 3, 1], np.int32)).tolist()
        [[0, 3], [1, 1]]
    """
    inst = _check_instances(instances)
    if classes is None:
        raise ArgumentError(
            "type_map needs the nuclei's classes (classes[id] = class of instance id), and this sample has none: "
            "load a dataset with classes (NucFuseTrain(..., keep_classes=True)), or leave type_map off"
        )
    lut = np.asarray(classes)
    if lut.ndim != 1 or lut.dtype.kind not in "iu" or (lut.size and int(lut.min()) < 0):
        raise ArgumentError(f"classes must be a 1-D lookup of non-negative integers, got {lut.dtype} {lut.shape}")
    top = int(inst.max()) if inst.size else 0
    if lut.size <= top:
        raise ArgumentError(f"classes has {lut.size} entries but the largest instance id is {top}")
    return lut.astype(np.int32, copy=False)[inst]


def _fields(sample: Sample | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(sample, Sample):
        return sample.to_dict()
    if isinstance(sample, Mapping) and "image" in sample and "instances" in sample:
        return dict(sample)
    raise ArgumentError(f"expected a Sample or a mapping with 'image' and 'instances', got {type(sample).__name__}")


class NucleusTargets:
    """Sample transform that attaches the nucleus map and the HV maps (CellViT's targets).

    Use it as the last step of a transform pipeline, after the geometric augmentation.

    Args:
        one_based: passed to :func:`hv_maps`.
        keep_meta: copy ``meta`` (a dict), ``classes`` and ``ignore`` into the output.
        type_map: also attach ``type_map`` (:func:`type_map`: the class of each pixel's nucleus, 0 on the
            background) for class-aware training; the input must carry ``classes``.

    Calling it on a :class:`~nucfuse_datasets.schema.Sample` (or a dict with ``image`` and
    ``instances``) returns a dict of numpy arrays: ``image`` (``H×W×3`` uint8), ``instances``
    (``H×W`` int32), ``np`` (``H×W`` uint8) and ``hv`` (``2×H×W`` float32); with ``type_map=True``
    also ``type_map`` (``H×W`` int32).

    Example:
        >>> import numpy as np
        >>> t = NucleusTargets()
        >>> out = t({"image": np.zeros((8, 8, 3), np.uint8), "instances": np.ones((8, 8), np.int32)})
        >>> sorted(out), out["hv"].shape
        (['hv', 'image', 'instances', 'np'], (2, 8, 8))
    """

    def __init__(self, *, one_based: bool = True, keep_meta: bool = False, type_map: bool = False) -> None:
        self.one_based = one_based
        self.keep_meta = keep_meta
        self.type_map = type_map

    def _base(self, sample: Sample | Mapping[str, Any]) -> dict[str, Any]:
        fields = _fields(sample)
        inst = _check_instances(fields["instances"]).astype(np.int32, copy=False)
        out: dict[str, Any] = {
            "image": np.asarray(fields["image"]),
            "instances": inst,
            "np": (inst > 0).astype(np.uint8),
            "hv": hv_maps(inst, one_based=self.one_based),
        }
        if self.type_map:
            out["type_map"] = type_map(inst, fields.get("classes"))
        if self.keep_meta:
            for key in ("meta", "classes", "ignore"):
                if fields.get(key) is not None:
                    out[key] = fields[key]
        return out

    def __call__(self, sample: Sample | Mapping[str, Any]) -> dict[str, Any]:
        """Compute the targets of one (already augmented) sample.

        Returns:
            The dict of numpy arrays described in the class docstring.
        """
        return self._base(sample)

    def __repr__(self) -> str:
        types = ", type_map=True" if self.type_map else ""
        return f"{type(self).__name__}(one_based={self.one_based}, keep_meta={self.keep_meta}{types})"


class HoVerNetTargets(NucleusTargets):
    """Sample transform that attaches ``np``, ``hv`` and ``three_class`` (HoVerNeXt's targets).

    Use it as the last step of a transform pipeline, after the geometric augmentation.

    Args:
        one_based: passed to :func:`hv_maps`.
        keep_meta: copy ``meta`` (a dict), ``classes`` and ``ignore`` into the output.
        type_map: also attach ``type_map`` (``H×W`` int32, :func:`type_map`) for class-aware training.

    Calling it returns a dict of numpy arrays: ``image`` (``H×W×3`` uint8), ``instances``
    (``H×W`` int32), ``np`` (``H×W`` uint8), ``hv`` (``2×H×W`` float32) and ``three_class``
    (``H×W`` uint8 in ``{0, 1, 2}``).

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.schema import Sample, SampleMeta
        >>> inst = np.zeros((8, 8), np.int32)
        >>> inst[2:6, 2:6] = 1
        >>> s = Sample(image=np.zeros((8, 8, 3), np.uint8), instances=inst,
        ...            meta=SampleMeta(dataset="d", sample_id="x", split="all"))
        >>> out = HoVerNetTargets()(s)
        >>> sorted(out), int(out["three_class"].max())
        (['hv', 'image', 'instances', 'np', 'three_class'], 2)
    """

    def __call__(self, sample: Sample | Mapping[str, Any]) -> dict[str, Any]:
        """Compute the targets of one (already augmented) sample."""
        out = self._base(sample)
        out["three_class"] = three_class_map(out["instances"])
        return out
