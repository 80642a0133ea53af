"""Public entry points of the class-aware scores: :func:`reduce_class_stats` and :func:`class_scores`."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError, MetricInputError
from nucfuse_datasets.metrics._validate import check_choice
from nucfuse_datasets.metrics.class_aware.image import as_class_lookup, check_n_classes, image_class_stats
from nucfuse_datasets.metrics.class_aware.protocols import conic_scores, hovernet_scores, pannuke_scores
from nucfuse_datasets.metrics.class_aware.stats import ClassStats

__all__ = ["CLASS_PROTOCOLS", "HOVERNET_WEIGHTS", "class_scores", "reduce_class_stats"]

#: The class-aware protocols: PanNuke ``run.py``, CoNIC ``compute_stats.py``, HoVer-Net ``run_nuclei_type_stat``.
CLASS_PROTOCOLS: tuple[str, ...] = ("pannuke", "conic", "hovernet")
#: HoVer-Net's per-type F1 weights of (type FP among pairs, type FN among pairs, unpaired FP, unpaired FN).
HOVERNET_WEIGHTS: tuple[int, int, int, int] = (2, 2, 1, 1)


def _check_weights(weights: Any) -> tuple[float, ...]:
    try:
        values = tuple(weights)
    except TypeError:
        raise ArgumentError(f"weights must be 4 numbers; got {weights!r}.") from None
    ok = len(values) == 4 and all(
        not isinstance(v, (bool, np.bool_))
        and isinstance(v, (int, float, np.integer, np.floating))
        and math.isfinite(float(v))
        and v >= 0
        for v in values
    )
    if not ok:
        raise ArgumentError(f"weights must be 4 finite numbers >= 0 (HoVer-Net: (2, 2, 1, 1)); got {weights!r}.")
    return tuple(int(v) if isinstance(v, (int, np.integer)) else float(v) for v in values)


def _check_type_ids(type_ids: Any, n_classes: int) -> list[int]:
    if type_ids is None:
        return list(range(1, n_classes + 1))
    message = f"type_ids must be a sequence of integer type ids; got {type_ids!r}."
    if isinstance(type_ids, (str, bytes)):
        raise ArgumentError(message)
    out: list[int] = []
    try:
        for v in type_ids:
            if isinstance(v, (bool, np.bool_)):
                raise TypeError
            out.append(int(operator.index(v)))
    except TypeError:
        raise ArgumentError(message) from None
    if len(set(out)) != len(out):
        raise ArgumentError(f"type_ids has repeated ids: {type_ids!r}.")
    return out


def _names(class_names: Any, n_classes: int) -> dict[int, str]:
    if class_names is None:
        return {}
    if isinstance(class_names, Mapping):
        try:
            return {operator.index(k): str(v) for k, v in class_names.items()}
        except TypeError:
            raise ArgumentError(f"class_names keys must be integer class ids; got {list(class_names)!r}.") from None
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise ArgumentError(f"class_names must be a sequence indexed by class id or a dict; got {class_names!r}.")
    if len(class_names) < n_classes + 1:
        raise ArgumentError(
            f"class_names is indexed by class id, entry 0 = background (as Sample.class_names): {n_classes} "
            f"classes need {n_classes + 1} names; got {len(class_names)}."
        )
    return {k: str(v) for k, v in enumerate(class_names)}


def reduce_class_stats(
    stats: Sequence[ClassStats],
    protocol: str = "pannuke",
    *,
    tissues: Sequence[str] | None = None,
    type_ids: Sequence[int] | None = None,
    weights: Sequence[float] = HOVERNET_WEIGHTS,
    exhaustive: bool = True,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Dataset-level class-aware scores of per-image :class:`ClassStats`, by one official protocol.

    * ``"pannuke"`` (PanNuke-metrics ``run.py``): per image and class ``PQ = DQ·SQ`` with
      ``DQ = TP/(TP + FP/2 + FN/2)`` (no epsilon) and ``SQ = ΣIoU/(TP + 1e-6)``, NaN when the
      GT has no nucleus of the class; per image ``mPQ`` = nanmean over classes and ``bPQ`` =
      binary PQ (NaN without GT nuclei); nanmean over the images of each tissue, then over the
      tissues. Keys ``mpq``, ``bpq``, ``per_class[k]["pq"]`` (nanmean over **all** images, as
      ``run.py`` prints it), ``per_tissue[name]`` (``mpq``, ``bpq``, ``n_images``).
    * ``"conic"`` (CoNIC ``compute_stats.py``): per class TP/FP/FN/ΣIoU summed over all images,
      ``PQ+ = DQ·SQ`` with ``+1e-6`` in both; ``mpq+`` = plain mean over classes 1..n (a class
      absent everywhere counts 0); ``pq`` = mean over images of the binary PQ (``+1e-6``).
    * ``"hovernet"`` (HoVer-Net ``run_nuclei_type_stat``): centroid pairs of all images pooled;
      ``f1_d`` = detection F1, ``acc_type`` = type accuracy over the pairs,
      ``per_class[k]["f1"]`` = ``2(TP+TN) / (2(TP+TN) + w0·FP + w1·FN + w2·FP_d + w3·FN_d)``;
      NaN where a denominator is 0 (a type with no sample).

    Every result has ``protocol``, ``n_images``, ``n_classes`` and ``per_class`` (keyed by int
    class id; with ``"name"`` when ``class_names`` is given). See ``docs/class-aware-scoring.md``
    for the quirks of each official code and where this differs.

    Args:
        stats: per-image stats from :func:`image_class_stats` (same ``n_classes``; for
            ``"hovernet"`` the same ``radius``).
        protocol: one of :data:`CLASS_PROTOCOLS`.
        tissues: ``"pannuke"`` only: one tissue name per image. Images are averaged per name,
            then over the names given (``run.py`` only knows PanNuke's 19 names and silently
            drops others). ``None``: all images form one group and ``per_tissue`` is empty.
        type_ids: ``"hovernet"`` only: the types to score; default ``1..n_classes`` (HoVer-Net's
            default is the GT types present, phantom type 0 included; pass them to get that).
        weights: ``"hovernet"`` only: the four per-type F1 weights, default ``(2, 2, 1, 1)``.
        exhaustive: ``"hovernet"`` only: ``False`` when GT types are not exhaustively annotated;
            then GT nuclei of class 0 are HoVer-Net's untyped ``-1`` and do not count as type
            errors.
        class_names: names by class id (a sequence with entry 0 = background, as
            ``Sample.class_names``, or a dict).

    Returns:
        The scores dict described above (values are floats; NaN where undefined).

    Raises:
        ArgumentError: unknown protocol, an option that the protocol does not use, bad option
            values, no stats, mixed ``n_classes``/``radius``, or ``tissues`` of the wrong length.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import image_class_stats, reduce_class_stats
        >>> gt = np.array([[1, 1, 0, 2, 2]])
        >>> s = [image_class_stats(gt, [0, 1, 2], gt, [0, 1, 1], n_classes=2)]
        >>> r = reduce_class_stats(s, "pannuke")
        >>> round(r["per_class"][1]["pq"], 4), round(r["per_class"][2]["pq"], 4), round(r["bpq"], 4)
        (0.6667, 0.0, 1.0)
        >>> reduce_class_stats(s, "hovernet")["acc_type"]
        0.5
    """
    check_choice(protocol, "protocol", CLASS_PROTOCOLS)
    if isinstance(stats, ClassStats) or not isinstance(stats, Sequence):
        raise ArgumentError(f"stats must be a sequence of ClassStats; got {type(stats).__name__}.")
    if not stats:
        raise ArgumentError("stats is empty: class-aware scores need at least one image.")
    for i, s in enumerate(stats):
        if not isinstance(s, ClassStats):
            raise ArgumentError(f"stats[{i}] is a {type(s).__name__}, not a ClassStats (use ClassStats.from_dict).")
    n = stats[0].n_classes
    if any(s.n_classes != n for s in stats):
        raise ArgumentError(f"stats mix n_classes values {sorted({s.n_classes for s in stats})}.")
    opts = _Options.check(protocol, len(stats), n, tissues, type_ids, weights, exhaustive, class_names)
    out: dict[str, Any] = {"protocol": protocol, "n_images": len(stats), "n_classes": n}
    if protocol == "pannuke":
        out.update(pannuke_scores(stats, opts.tissues))
    elif protocol == "conic":
        out.update(conic_scores(stats))
    else:
        radii = {s.radius for s in stats}
        if len(radii) != 1:
            raise ArgumentError(f"stats mix centroid pairing radii {sorted(radii)}; recompute them with one radius.")
        out.update(hovernet_scores(stats, opts.type_ids, opts.weights, opts.exhaustive))
        out.update(radius=radii.pop(), type_ids=opts.type_ids, weights=list(opts.weights), exhaustive=opts.exhaustive)
    for k, entry in out["per_class"].items():
        if k in opts.names:
            entry["name"] = opts.names[k]
    return out


@dataclass(frozen=True)
class _Options:
    """The validated options of one protocol."""

    tissues: list[str] | None
    type_ids: list[int]
    weights: tuple[float, ...]
    exhaustive: bool
    names: dict[int, str]

    @classmethod
    def check(
        cls,
        protocol: str,
        n_images: int,
        n_classes: int,
        tissues: Any,
        type_ids: Any,
        weights: Any,
        exhaustive: Any,
        class_names: Any,
    ) -> _Options:
        w = _check_weights(weights)
        if not isinstance(exhaustive, (bool, np.bool_)):
            raise ArgumentError(f"exhaustive must be True or False; got {exhaustive!r}.")
        unused = [
            name
            for name, used in (
                ("tissues", tissues is not None and protocol != "pannuke"),
                ("type_ids", type_ids is not None and protocol != "hovernet"),
                ("weights", w != HOVERNET_WEIGHTS and protocol != "hovernet"),
                ("exhaustive", not exhaustive and protocol != "hovernet"),
            )
            if used
        ]
        if unused:
            raise ArgumentError(f"protocol {protocol!r} does not use {', '.join(unused)}.")
        return cls(
            _check_tissues(tissues, n_images),
            _check_type_ids(type_ids, n_classes),
            w,
            bool(exhaustive),
            _names(class_names, n_classes),
        )


def _check_tissues(tissues: Any, n_images: int) -> list[str] | None:
    if tissues is None:
        return None
    if isinstance(tissues, (str, bytes)) or not isinstance(tissues, Sequence):
        raise ArgumentError(f"tissues must be a sequence of tissue names, one per image; got {tissues!r}.")
    if len(tissues) != n_images:
        raise ArgumentError(f"tissues has {len(tissues)} names for {n_images} images; give one name per image.")
    bad = [t for t in tissues if not isinstance(t, str)]
    if bad:
        raise ArgumentError(f"tissue names must be strings; got {bad[0]!r}.")
    return list(tissues)


def _split(item: Any, side: str, i: int) -> tuple[Any, Any]:
    """``(instances, classes)`` of one image: a pair, or an object with those attributes (a Sample)."""
    if hasattr(item, "instances") and hasattr(item, "classes"):
        instances, classes = item.instances, item.classes
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        instances, classes = item
    else:
        raise ArgumentError(f"{side}[{i}] must be an (instances, classes) pair or a Sample; got {type(item).__name__}.")
    if classes is None:
        raise MetricInputError(f"{side}[{i}] has no classes; class-aware scores need a class lookup per image.")
    return instances, classes


def class_scores(
    gt: Sequence[Any],
    pred: Sequence[Any],
    protocol: str = "pannuke",
    *,
    n_classes: int | None = None,
    tissues: Sequence[str] | None = None,
    radius: float = 12.0,
    type_ids: Sequence[int] | None = None,
    weights: Sequence[float] = HOVERNET_WEIGHTS,
    exhaustive: bool = True,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Class-aware scores of a set of images: :func:`image_class_stats` per image, then :func:`reduce_class_stats`.

    Args:
        gt: per image an ``(instances, classes)`` pair in the Sample convention
            (``classes[id]`` = class of instance ``id``, ``classes[0] = 0``, classes from 1; 0 =
            unclassified), or a :class:`~nucfuse_datasets.schema.Sample`.
        pred: the predictions, the same way, one per GT image.
        protocol: ``"pannuke"``, ``"conic"`` or ``"hovernet"`` (:data:`CLASS_PROTOCOLS`).
        n_classes: number of classes; default the largest class id in the GT lookups.
        tissues: ``"pannuke"``: one tissue name per image.
        radius: ``"hovernet"``: centroid pairing radius in pixels (12).
        type_ids: ``"hovernet"``: the types to score (default ``1..n_classes``).
        weights: ``"hovernet"``: per-type F1 weights (default ``(2, 2, 1, 1)``).
        exhaustive: ``"hovernet"``: whether GT types are exhaustively annotated.
        class_names: names by class id, to label ``per_class`` entries.

    Returns:
        The dict of :func:`reduce_class_stats`.

    Raises:
        ArgumentError: unknown protocol, bad options, ``gt``/``pred``/``tissues`` of different
            lengths, no image, or no GT class above 0 while ``n_classes`` is not given.
        MetricInputError: an invalid map or lookup (the message names the image).

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import class_scores
        >>> gt_map = np.array([[1, 1, 0, 2, 2, 0, 3]])
        >>> gt = [(gt_map, np.array([0, 1, 2, 2]))]
        >>> pred = [(gt_map, np.array([0, 1, 2, 1]))]      # nucleus 3 mis-typed
        >>> r = class_scores(gt, pred, "conic")
        >>> round(r["mpq+"], 4), round(r["per_class"][2]["pq+"], 4), round(r["pq"], 4)
        (0.6667, 0.6667, 1.0)
        >>> round(class_scores(gt, pred, "pannuke", tissues=["Skin"])["per_tissue"]["Skin"]["mpq"], 4)
        0.6667
    """
    check_choice(protocol, "protocol", CLASS_PROTOCOLS)
    for side, seq in (("gt", gt), ("pred", pred)):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
            raise ArgumentError(f"{side} must be a sequence of (instances, classes) pairs; got {type(seq).__name__}.")
    if len(gt) != len(pred):
        raise ArgumentError(f"gt has {len(gt)} images but pred has {len(pred)}.")
    if not gt:
        raise ArgumentError("gt is empty: class-aware scores need at least one image.")
    _check_tissues(tissues, len(gt))
    if n_classes is None:
        top = 0
        for i, item in enumerate(gt):
            lookup = as_class_lookup(_split(item, "gt", i)[1], f"gt[{i}] classes")
            if lookup.size > 1:
                top = max(top, int(lookup[1:].max()))
        if top == 0:
            raise ArgumentError("the ground truth has no class id above 0; pass n_classes.")
        n_classes = top
    n = check_n_classes(n_classes)
    _Options.check(protocol, len(gt), n, tissues, type_ids, weights, exhaustive, class_names)  # fail before the work
    stats = []
    for i, (g_item, p_item) in enumerate(zip(gt, pred, strict=True)):
        g_map, g_cls = _split(g_item, "gt", i)
        p_map, p_cls = _split(p_item, "pred", i)
        try:
            stats.append(image_class_stats(g_map, g_cls, p_map, p_cls, n_classes=n, radius=radius))
        except MetricInputError as exc:
            raise MetricInputError(f"image {i}: {exc}") from None
    return reduce_class_stats(
        stats,
        protocol,
        tissues=tissues,
        type_ids=type_ids,
        weights=weights,
        exhaustive=exhaustive,
        class_names=class_names,
    )
