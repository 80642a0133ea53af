"""The HV marker-controlled watershed (HoVer-Net family post-processing), used by :mod:`.postprocess`.

The algorithm and its OpenCV conventions (Sobel aperture, 3×3 binomial blur, 5×5 elliptic opening, 4-connected
components, scikit-image watershed) are documented, with an example, in :mod:`.postprocess`, the public module.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nucfuse_datasets.errors import ArgumentError

__all__ = ["MAGNIFICATION_PRESETS", "hv_watershed", "hv_watershed_params"]

#: Post-processing sizes by objective magnification (CellViT's ``DetectionCellPostProcessor``).
#: The NucFuseRank runs used the 40× preset for every dataset.
MAGNIFICATION_PRESETS: dict[int, dict[str, int]] = {
    40: {"min_object_size": 10, "min_marker_size": 10, "sobel_ksize": 21},
    20: {"min_object_size": 3, "min_marker_size": 3, "sobel_ksize": 11},
}

# OpenCV's 5×5 MORPH_ELLIPSE structuring element.
_ELLIPSE_5 = np.array(
    [
        [0, 0, 1, 0, 0],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [0, 0, 1, 0, 0],
    ],
    dtype=bool,
)
# OpenCV's fixed 3-tap Gaussian for sigma <= 0.
_GAUSS_3 = np.array([0.25, 0.5, 0.25])


def hv_watershed_params(magnification: int = 40) -> dict[str, int]:
    """Size parameters of :func:`hv_watershed` for an objective magnification.

    Args:
        magnification: 40 (``min_object_size`` 10, ``min_marker_size`` 10, ``sobel_ksize``
            21; what NucFuseRank used for every dataset) or 20 (3, 3, 11).

    Returns:
        A dict to splat into :func:`hv_watershed` or :func:`predict_instances`.

    Raises:
        ArgumentError: another magnification.

    Example:
        >>> hv_watershed_params(20)
        {'min_object_size': 3, 'min_marker_size': 3, 'sobel_ksize': 11}
    """
    if magnification not in MAGNIFICATION_PRESETS:
        raise ArgumentError(f"magnification must be one of {sorted(MAGNIFICATION_PRESETS)}, got {magnification!r}")
    return dict(MAGNIFICATION_PRESETS[magnification])


def _binomial(order: int) -> np.ndarray:
    row = np.ones(1)
    for _ in range(order):
        row = np.convolve(row, [1.0, 1.0])
    return row


def _sobel_kernels(ksize: int) -> tuple[np.ndarray, np.ndarray]:
    """(derivative, smoothing) 1-D kernels of OpenCV's first-order Sobel of aperture ``ksize``."""
    # np.convolve(b, [-1, 1])[k] = b[k - 1] - b[k]: negative taps first, as in [-1, 0, 1].
    derivative = np.convolve(_binomial(ksize - 2), [-1.0, 1.0])
    return derivative, _binomial(ksize - 1)


def _sobel(image: np.ndarray, axis: int, ksize: int) -> np.ndarray:
    derivative, smoothing = _sobel_kernels(ksize)
    out = ndimage.correlate1d(image, derivative, axis=axis, mode="mirror")
    return ndimage.correlate1d(out, smoothing, axis=1 - axis, mode="mirror")


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= np.finfo(np.float64).eps:
        return np.zeros_like(x, dtype=np.float64)
    return (x - lo) / (hi - lo)


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Zero the labelled components with fewer than ``min_size`` pixels."""
    if min_size <= 1 or labels.max() == 0:
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def _opening(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    eroded = ndimage.binary_erosion(mask, structure=footprint, border_value=1)
    return ndimage.binary_dilation(eroded, structure=footprint, border_value=0)


def hv_watershed(
    np_prob: np.ndarray,
    hv: np.ndarray,
    *,
    binary_threshold: float = 0.5,
    marker_threshold: float = 0.4,
    min_object_size: int = 10,
    min_marker_size: int = 10,
    sobel_ksize: int = 21,
) -> np.ndarray:
    """HoVerNet marker-controlled watershed on a nucleus map and HV maps (``recipes.md`` §2.4).

    Steps: threshold the nucleus map (``> binary_threshold``) and drop components smaller
    than ``min_object_size``; min-max normalise h and v; Sobel-differentiate h along x and
    v along y (aperture ``sobel_ksize``), min-max normalise and invert both; ``overall`` =
    max of the two minus the background, clipped at 0; energy = −blur3×3((1 − overall) ·
    binary); markers = binary ∧ (overall < ``marker_threshold``), holes filled, opened with
    a 5×5 ellipse, labelled, components under ``min_marker_size`` dropped; watershed of the
    energy from the markers inside the binary map. Binary components without a marker stay
    background; there is no final size filter.

    Args:
        np_prob: ``H×W`` nucleus probability (HoVerNeXt: ``sigmoid(out[5])``; CellViT: the
            nucleus channel of ``softmax(nuclei_binary_map)``) or an already binary map.
        hv: ``2×H×W`` horizontal and vertical maps (channel order of
            :func:`~nucfuse_datasets.transforms.targets.hv_maps`).
        binary_threshold: a pixel is nucleus when ``np_prob > binary_threshold`` (strict,
            matching ``sigmoid > 0.5`` and a two-channel argmax).
        marker_threshold: pixels with ``overall >= marker_threshold`` are excluded from the
            markers.
        min_object_size: binary components with fewer pixels are removed.
        min_marker_size: markers with fewer pixels are removed.
        sobel_ksize: odd Sobel aperture ≥ 3 (21 at 40×, 11 at 20×).

    Returns:
        ``H×W`` ``int32`` instance map, 0 = background.

    Raises:
        ArgumentError: shapes disagree or a parameter is out of range.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.transforms.targets import hv_maps
        >>> inst = np.zeros((48, 48), np.int32)
        >>> inst[5:20, 5:20] = 1
        >>> inst[25:40, 25:40] = 2
        >>> pred = hv_watershed((inst > 0).astype(np.float32), hv_maps(inst))
        >>> pred.dtype, int(pred.max())
        (dtype('int32'), 2)
    """
    prob = np.asarray(np_prob, dtype=np.float64)
    hv_arr = np.asarray(hv, dtype=np.float64)
    if prob.ndim != 2:
        raise ArgumentError(f"np_prob must be H×W, got shape {prob.shape}")
    if hv_arr.shape != (2, *prob.shape):
        raise ArgumentError(f"hv must have shape (2, H, W) = {(2, *prob.shape)}, got {hv_arr.shape}")
    if sobel_ksize < 3 or sobel_ksize % 2 == 0:
        raise ArgumentError(f"sobel_ksize must be odd and >= 3, got {sobel_ksize}")
    if min_object_size < 0 or min_marker_size < 0:
        raise ArgumentError("min_object_size and min_marker_size must be >= 0")
    from skimage.segmentation import watershed

    labels, _ = ndimage.label(prob > binary_threshold)
    blb = _drop_small(labels, min_object_size) > 0
    if not blb.any():
        return np.zeros(prob.shape, np.int32)

    h_dir = _minmax(hv_arr[0])
    v_dir = _minmax(hv_arr[1])
    sobel_h = 1.0 - _minmax(_sobel(h_dir, axis=1, ksize=sobel_ksize))
    sobel_v = 1.0 - _minmax(_sobel(v_dir, axis=0, ksize=sobel_ksize))
    blb_f = blb.astype(np.float64)
    overall = np.maximum(np.maximum(sobel_h, sobel_v) - (1.0 - blb_f), 0.0)

    dist = (1.0 - overall) * blb_f
    dist = ndimage.correlate1d(dist, _GAUSS_3, axis=0, mode="mirror")
    dist = -ndimage.correlate1d(dist, _GAUSS_3, axis=1, mode="mirror")

    marker = blb & ~(overall >= marker_threshold)
    marker = ndimage.binary_fill_holes(marker)
    marker = _opening(marker, _ELLIPSE_5)
    markers, _ = ndimage.label(marker)
    markers = _drop_small(markers, min_marker_size)

    return watershed(dist, markers=markers, mask=blb).astype(np.int32)
