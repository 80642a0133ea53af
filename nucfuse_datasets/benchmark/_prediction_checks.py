"""One prediction, checked: what ``predict_fn`` returned (or a file held), as an instance map and a class lookup.

``predict_fn`` may return an instance map, ``(instances, classes)`` or ``{"instances": ..., "classes": ...}``;
:func:`split_output` tells them apart, :func:`check_prediction` checks the map (the one label-map rule of
:mod:`nucfuse_datasets._labelmap`), :func:`check_classes` the lookup, and :func:`as_instances` warns when an "instance
map" is really a binary mask (or labels its components on request, :func:`label_components`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from nucfuse_datasets._labelmap import check_label_map
from nucfuse_datasets.errors import BinaryMaskWarning, InvalidPredictionError
from nucfuse_datasets.metrics.class_aware.image import as_class_lookup

__all__ = [
    "BINARY_MASK_PIECES",
    "FEW_IDS",
    "as_instances",
    "check_classes",
    "check_prediction",
    "label_components",
    "split_output",
]

#: An id in this many separate (8-connected) pieces or more marks a binary mask passed as an instance map.
BINARY_MASK_PIECES = 5
#: Maps with more distinct ids than this are taken as instance maps and not inspected for that tell.
FEW_IDS = 16
_EIGHT = np.ones((3, 3), bool)
_OUTPUT_HINT = (
    "return an instance map (H×W, 0 = background), a pair (instances, classes) with classes[id] = class of "
    "instance id, or a dict {'instances': ..., 'classes': ...}"
)


def _numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def split_output(raw: Any, where: str) -> tuple[Any, Any]:
    """``(instances, classes or None)`` from what ``predict_fn`` returned for one image.

    Example:
        >>> import numpy as np
        >>> inst = np.zeros((2, 2), np.int32)
        >>> split_output({"instances": inst, "classes": [0]}, "x")[1]
        [0]
        >>> split_output((inst, None), "x")[1] is None, split_output(inst, "x")[0] is inst
        (True, True)
    """
    if isinstance(raw, Mapping):
        if "instances" not in raw:
            raise InvalidPredictionError(
                f"{where}: the prediction dict has no 'instances' key (keys: {sorted(map(str, raw))}); {_OUTPUT_HINT}"
            )
        return raw["instances"], raw.get("classes")
    if isinstance(raw, tuple | list):
        if len(raw) != 2:
            raise InvalidPredictionError(f"{where}: got a {type(raw).__name__} of {len(raw)} items; {_OUTPUT_HINT}")
        return raw[0], raw[1]
    return raw, None


def check_prediction(pred: Any, shape: tuple[int, int], where: str) -> np.ndarray:
    """Validate one prediction: an integer ``H×W`` instance map with non-negative ids.

    Accepts numpy arrays and anything with ``.numpy()``/``__array__`` (torch tensors, on any device after
    ``.cpu()``).

    Raises:
        InvalidPredictionError: wrong type, shape or dtype, or negative ids; the message names ``where``.

    Example:
        >>> import numpy as np
        >>> check_prediction(np.zeros((2, 3), np.uint16), (2, 3), "demo/x").dtype
        dtype('uint16')

    See also :func:`label_components` for binary masks.
    """
    return check_label_map(
        pred,
        f"{where}: prediction",
        InvalidPredictionError,
        shape=tuple(shape),
        bool_hint="; return an instance map (0 = background, 1..N = nuclei), or pass label_components=True "
        "(CLI: --label-components) to make each connected component a nucleus",
    )


def check_classes(classes: Any, instances: np.ndarray, n_classes: int, where: str) -> np.ndarray:
    """Validate a predicted class lookup against its instance map: 1-D, integer, long enough, ids in ``0..K``.

    The lookup's shape, type and length are :func:`~nucfuse_datasets.metrics.class_aware.image.as_class_lookup`'s
    check (the metrics' own), raised as :class:`InvalidPredictionError`; the range is stated in evaluation terms.

    Raises:
        InvalidPredictionError: the message names ``where`` and what is wrong.

    Example:
        >>> import numpy as np
        >>> check_classes([0, 2, 1], np.array([[1, 2]]), 3, "demo/x").tolist()
        [0, 2, 1]
    """
    top = int(instances.max()) if instances.size else 0
    arr = as_class_lookup(classes, f"{where}: class lookup", max_id=top, error=InvalidPredictionError)
    if arr.size and int(arr.max()) > n_classes:
        raise InvalidPredictionError(
            f"{where}: predicted class {int(arr.max())} is outside the evaluation classes 0..{n_classes} "
            "(0 = unclassified); map the model's classes to the evaluation classes, or pass map_predictions=True "
            "when they are the dataset's own class ids"
        )
    return arr


def _pieces(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground mask and, per foreground pixel, the index of its (connected component, id) piece."""
    from scipy import ndimage

    fg = arr > 0
    comp, _ = ndimage.label(fg, structure=_EIGHT)
    key = comp[fg].astype(np.int64) * (int(arr.max()) + 1 if arr.size else 1) + arr[fg].astype(np.int64)
    return fg, key


def label_components(pred: Any) -> np.ndarray:
    """An instance map in which every 8-connected piece of every id is its own instance (ids 1..N).

    For users who only have binary (0/1 or boolean) masks: each connected blob becomes one nucleus. Ids of a proper
    instance map survive as they are, except that an id in several separate pieces is split.

    Example:
        >>> import numpy as np
        >>> mask = np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 0, 0, 0]], np.uint8)
        >>> label_components(mask).tolist()
        [[1, 1, 0, 2], [0, 0, 0, 2], [3, 0, 0, 0]]
    """
    arr = np.asarray(pred)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    out = np.zeros(arr.shape, np.int32)
    if not arr.size or not arr.any():
        return out
    fg, key = _pieces(arr)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # number pieces in raster order of their first pixel
    out[fg] = order[inverse.ravel()] + 1
    return out


def _most_pieces(arr: np.ndarray) -> tuple[int, int]:
    """``(id, number of separate pieces)`` of the id split into the most pieces.

    Only maps with at most :data:`FEW_IDS` distinct ids are inspected (a binary or class map has one or a few;
    a real instance map has many, and skipping it keeps scoring fast); others, and empty maps, give ``(0, 0)``.
    """
    if not arr.size:
        return 0, 0
    top = int(arr.max())
    if top == 0:
        return 0, 0
    n_ids = np.count_nonzero(np.bincount(arr.ravel())[1:]) if top < 1 << 24 else np.unique(arr).size - 1
    if n_ids > FEW_IDS:
        return 0, 0
    _, key = _pieces(arr)
    span = int(key.max()) + 1
    pairs = np.flatnonzero(np.bincount(key, minlength=span)) if span <= 1 << 24 else np.unique(key)  # bincount: fast
    ids = pairs % (int(arr.max()) + 1)
    counts = np.bincount(ids)
    worst = int(np.argmax(counts))
    return worst, int(counts[worst])


def as_instances(raw: Any, shape: tuple[int, int], where: str, components: bool) -> np.ndarray:
    """Check one prediction; label its components (``components=True``) or warn when it looks binary."""
    if components:
        arr = np.asarray(_numpy(raw))
        arr = check_prediction(arr.astype(np.uint8) if arr.dtype == np.bool_ else arr, shape, where)
        return label_components(arr)
    arr = check_prediction(raw, shape, where)
    worst, pieces = _most_pieces(arr)
    if pieces >= BINARY_MASK_PIECES:
        warnings.warn(
            BinaryMaskWarning(
                f"{where}: id {worst} of the prediction covers {pieces} separate regions, so it is scored as one "
                "giant nucleus; this looks like a binary 0/1 mask passed as an instance map. Return one id per "
                "nucleus, or pass label_components=True (CLI: --label-components) to label connected components."
            ),
            stacklevel=4,
        )
    return arr
