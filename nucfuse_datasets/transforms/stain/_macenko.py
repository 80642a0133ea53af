"""Macenko stain estimation and reconstruction in plain numpy (written from the equations).

Everything here works on ``H×W×3`` ``uint8`` RGB arrays. Optical densities of ``uint8`` values
are taken from a 256-entry lookup table, and the reconstruction is a per-pixel 3×3 linear map in
optical-density space, so it is evaluated with nine 256-entry lookup tables instead of a
per-pixel ``exp`` (see :func:`reconstruct`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nucfuse_datasets.errors import (
    ArgumentError,
    DegenerateStainsError,
    InsufficientTissueError,
    NotFittedError,
    StainEstimationError,
    StainFallbackWarning,
)

__all__ = [
    "ALPHA",
    "BETA",
    "IO",
    "DegenerateStainsError",
    "InsufficientTissueError",
    "NotFittedError",
    "StainEstimate",
    "StainEstimationError",
    "StainFallbackWarning",
    "estimate_stains",
    "reconstruct",
]

#: Transmitted (background) light intensity ``Io``.
IO = 240.0
#: Percentile (in %) of the angle distribution taken as the extreme stain directions (1 and 99).
ALPHA = 1.0
#: Optical-density threshold: pixels with OD below it in any channel are background.
BETA = 0.15
#: Percentile of each stain's concentrations taken as its "maximum" concentration.
MAX_C_PERCENTILE = 99.0
#: Fewest tissue pixels an estimate is made from.
MIN_TISSUE_PIXELS = 100
#: Smallest tissue fraction: below 1 % the 99th concentration percentile falls on background.
MIN_TISSUE_FRACTION = 1.0 - MAX_C_PERCENTILE / 100.0
#: Smallest angle (degrees) between the two stain vectors; below it the tissue shows one stain only.
MIN_ANGLE_DEG = 3.0
#: Smallest maximum concentration of either stain; below it that stain is absent from the tile.
MIN_MAX_CONCENTRATION = 0.1


@dataclass(frozen=True, eq=False)
class StainEstimate:
    """Macenko stain estimate of one image (or the Avg-post average of several).

    Attributes:
        stain_matrix: ``3×2`` float64, optical-density vectors of haematoxylin (column 0) and
            eosin (column 1), each of unit length for a single image.
        max_concentrations: ``(2,)`` float64, the 99th percentile of each stain's concentration.
        n_tissue: tissue pixels the estimate was made from (0 when unknown or averaged).
        source: a label, e.g. the sample id of a reference image.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.transforms.stain import StainEstimate
        >>> e = StainEstimate(np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]]), np.array([1.9, 1.0]))
        >>> StainEstimate.from_dict(e.to_dict()).max_concentrations.tolist()
        [1.9, 1.0]
    """

    stain_matrix: np.ndarray
    max_concentrations: np.ndarray
    n_tissue: int = 0
    source: str | None = field(default=None)

    def __post_init__(self) -> None:
        he = np.array(self.stain_matrix, dtype=np.float64)
        mc = np.array(self.max_concentrations, dtype=np.float64).reshape(-1)
        if he.shape != (3, 2) or mc.shape != (2,):
            raise ArgumentError(
                f"stain_matrix must be 3×2 and max_concentrations of length 2, got {he.shape} and {mc.shape}"
            )
        if not (np.all(np.isfinite(he)) and np.all(np.isfinite(mc))) or np.any(mc <= 0):
            raise ArgumentError("stain_matrix and max_concentrations must be finite, max_concentrations > 0")
        he.flags.writeable = False
        mc.flags.writeable = False
        object.__setattr__(self, "stain_matrix", he)
        object.__setattr__(self, "max_concentrations", mc)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (plain lists of floats)."""
        return {
            "source": self.source,
            "stain_matrix": self.stain_matrix.tolist(),
            "max_concentrations": self.max_concentrations.tolist(),
            "n_tissue": int(self.n_tissue),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StainEstimate:
        """Inverse of :meth:`to_dict`.

        Raises:
            ArgumentError: a key is missing or a value has the wrong shape.
        """
        try:
            return cls(
                stain_matrix=np.asarray(data["stain_matrix"], dtype=np.float64),
                max_concentrations=np.asarray(data["max_concentrations"], dtype=np.float64),
                n_tissue=int(data.get("n_tissue", 0)),
                source=data.get("source"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ArgumentError):
                raise
            raise ArgumentError(f"not a stain estimate dict: {exc!r}") from None

    def __repr__(self) -> str:
        he = np.array2string(self.stain_matrix.T, precision=3, separator=", ")
        return (
            f"StainEstimate(H, E = {he}, max_concentrations={np.round(self.max_concentrations, 3).tolist()}, "
            f"n_tissue={self.n_tissue}, source={self.source!r})"
        )


def check_rgb(image: Any, name: str = "image") -> np.ndarray:
    """Return ``image`` as an ``H×W×3`` ``uint8`` array or raise a clear error.

    Raises:
        ArgumentError: not a numpy array, greyscale, RGBA or another channel count, or not ``uint8``.
    """
    if not isinstance(image, np.ndarray):
        raise ArgumentError(f"{name} must be an H×W×3 uint8 numpy array, got {type(image).__name__}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise ArgumentError(
            f"{name} is greyscale (shape {image.shape}); stain normalisation needs H×W×3 RGB H&E images"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        hint = " (RGBA? drop the alpha channel with image[..., :3])" if image.ndim == 3 and image.shape[2] == 4 else ""
        raise ArgumentError(f"{name} must be H×W×3 RGB, got shape {image.shape}{hint}")
    if image.dtype != np.uint8:
        raise ArgumentError(f"{name} must be uint8 (0..255), got {image.dtype}")
    return image


@functools.lru_cache(maxsize=16)
def _od_lut(io: float) -> np.ndarray:
    """``OD(v) = -ln((v + 1) / Io)`` for every ``uint8`` value ``v``."""
    lut = -np.log((np.arange(256, dtype=np.float64) + 1.0) / io)
    lut.flags.writeable = False
    return lut


def _check_params(io: float, alpha: float, beta: float) -> None:
    if not (np.isfinite(io) and io > 0):
        raise ArgumentError(f"io must be > 0, got {io}")
    if not (0.0 <= alpha < 50.0):
        raise ArgumentError(f"alpha must be a percentile in [0, 50), got {alpha}")
    if not (np.isfinite(beta) and beta >= 0):
        raise ArgumentError(f"beta must be >= 0, got {beta}")


def _percentiles(x: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Percentiles of a 1-D array with linear interpolation between order statistics.

    The definition of ``numpy.percentile``'s default method, computed with one ``partition``.
    """
    n = x.size
    pos = [q / 100.0 * (n - 1) for q in qs]
    lows = [int(np.floor(p)) for p in pos]
    kth = sorted({k for lo in lows for k in (lo, min(lo + 1, n - 1))})
    part = np.partition(x, kth)
    return [float(part[lo] + (p - lo) * (part[min(lo + 1, n - 1)] - part[lo])) for p, lo in zip(pos, lows, strict=True)]


def _rows(mat: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``mat @ rows`` for a tiny ``mat`` and a wide ``rows``, without BLAS.

    A multi-threaded BLAS call on a 3×N operand is slower than three vector operations and
    stalls badly when the cores are busy (DataLoader workers).
    """
    out = np.empty((mat.shape[0], rows.shape[1]))
    for k in range(mat.shape[0]):
        np.multiply(rows[0], mat[k, 0], out=out[k])
        for j in range(1, mat.shape[1]):
            out[k] += mat[k, j] * rows[j]
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def analyse(
    image: np.ndarray,
    *,
    io: float = IO,
    alpha: float = ALPHA,
    beta: float = BETA,
) -> tuple[StainEstimate, np.ndarray]:
    """Estimate the stains of ``image`` and return them with the pseudo-inverse used for unmixing.

    The shared body of :func:`estimate_stains` and the normalisers. Returns the estimate and the
    ``2×3`` matrix ``P`` with ``C = P · OD`` (least-squares concentrations).
    """
    image = check_rgb(image)
    _check_params(io, alpha, beta)
    n_total = image.shape[0] * image.shape[1]
    lut = _od_lut(float(io))
    od = lut[image.reshape(-1, 3).T]  # 3×N float64, one contiguous row per channel
    tissue = (od[0] >= beta) & (od[1] >= beta) & (od[2] >= beta)
    n_tissue = int(np.count_nonzero(tissue))
    if n_tissue < MIN_TISSUE_PIXELS or n_tissue < MIN_TISSUE_FRACTION * n_total:
        raise InsufficientTissueError(
            f"{n_tissue} tissue pixels (OD >= {beta} in every channel) of {n_total}; need at least "
            f"{MIN_TISSUE_PIXELS} and {MIN_TISSUE_FRACTION:.0%} of the tile"
        )
    odt = np.compress(tissue, od, axis=1)  # 3×n
    # Plane of the two largest principal directions of the tissue optical densities.
    centred = odt - odt.mean(axis=1, keepdims=True)
    cov = np.empty((3, 3))
    for i in range(3):
        for j in range(i, 3):
            cov[i, j] = cov[j, i] = float(np.add.reduce(centred[i] * centred[j]))
    cov /= max(n_tissue - 1, 1)
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    basis = vecs[:, [1, 2]]
    basis = basis * np.where(basis.sum(axis=0) < 0, -1.0, 1.0)  # deterministic orientation
    # Angle of each tissue pixel in that plane; the largest direction is the y axis, so positive
    # optical densities give angles in (0, pi) and the percentiles do not wrap around at ±pi.
    proj = _rows(basis.T, odt)  # 2×n
    phi = np.arctan2(proj[1], proj[0])
    lo, hi = _percentiles(phi, (alpha, 100.0 - alpha))
    v_lo = _unit(basis @ np.array([np.cos(lo), np.sin(lo)]))
    v_hi = _unit(basis @ np.array([np.cos(hi), np.sin(hi)]))
    # Haematoxylin absorbs more red light than eosin: the vector with the larger red OD is H.
    he = np.stack([v_lo, v_hi], axis=1) if v_lo[0] > v_hi[0] else np.stack([v_hi, v_lo], axis=1)
    angle = float(np.degrees(np.arccos(np.clip(he[:, 0] @ he[:, 1], -1.0, 1.0))))
    if not np.all(np.isfinite(he)) or angle < MIN_ANGLE_DEG:
        raise DegenerateStainsError(
            f"the two stain vectors are {angle:.2f}° apart (< {MIN_ANGLE_DEG}°): the tissue shows a single stain"
        )
    pinv = np.linalg.pinv(he)  # 2×3, least-squares unmixing
    conc = _rows(pinv, od)  # 2×N concentrations of every pixel
    max_c = np.array([_percentiles(conc[k], (MAX_C_PERCENTILE,))[0] for k in range(2)])
    if not np.all(np.isfinite(max_c)) or np.any(max_c < MIN_MAX_CONCENTRATION):
        which = "haematoxylin" if not max_c[0] >= MIN_MAX_CONCENTRATION else "eosin"
        raise DegenerateStainsError(
            f"{which} is (almost) absent: 99th-percentile concentrations {np.round(max_c, 4).tolist()} "
            f"(each must be >= {MIN_MAX_CONCENTRATION})"
        )
    return StainEstimate(he, max_c, n_tissue=n_tissue), pinv


def estimate_stains(
    image: np.ndarray,
    *,
    io: float = IO,
    alpha: float = ALPHA,
    beta: float = BETA,
) -> StainEstimate:
    """Macenko estimate of an H&E image: stain matrix (H first) and maximum concentrations.

    Optical density ``OD = -ln((I + 1) / Io)``; pixels with ``OD < beta`` in any channel are
    background. The tissue ODs are projected onto the plane of their two leading principal
    directions; the ``alpha`` and ``100 - alpha`` percentiles of the angle in that plane give the
    two stain vectors, the one with the larger red OD being haematoxylin. Concentrations are the
    least-squares solution ``OD = HE · C`` over all pixels; their 99th percentiles are the maximum
    concentrations.

    Args:
        image: ``H×W×3`` ``uint8`` RGB.
        io: transmitted light intensity (240).
        alpha: angle percentile in % (1 → the 1st and 99th percentiles).
        beta: OD threshold separating tissue from background (0.15).

    Returns:
        The :class:`StainEstimate`.

    Raises:
        ArgumentError: not ``H×W×3`` ``uint8`` (greyscale, RGBA...) or a parameter out of range.
        InsufficientTissueError: fewer than 100 tissue pixels, or less than 1 % of the tile.
        DegenerateStainsError: the tissue shows one stain only (stain vectors < 3° apart, or a
            maximum concentration below 0.1).

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.transforms.stain import estimate_stains
        >>> rng = np.random.default_rng(0)
        >>> he = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])  # H and E optical densities
        >>> conc = rng.gamma(2.0, 0.3, size=(2, 64 * 64))
        >>> img = (240 * np.exp(-(he @ conc))).T.reshape(64, 64, 3).clip(0, 255).astype(np.uint8)
        >>> est = estimate_stains(img)
        >>> est.stain_matrix.shape, bool(est.stain_matrix[0, 0] > est.stain_matrix[0, 1])
        ((3, 2), True)
    """
    return analyse(image, io=io, alpha=alpha, beta=beta)[0]


def reconstruct(
    image: np.ndarray,
    unmix: np.ndarray,
    target_matrix: np.ndarray,
    scale: np.ndarray,
    *,
    io: float = IO,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """Re-stain ``image``: ``I' = Io · exp(-HE_t · (diag(scale) · unmix · OD + shift))``, clipped to 0..255.

    ``unmix`` (``2×3``) maps a pixel's OD to its concentrations; ``scale`` (``(2,)``) rescales
    them (``maxC_target / maxC_source``, times any jitter); ``shift`` adds a constant per stain.
    The whole chain is one 3×3 matrix ``M`` applied to the OD, and ``exp(-M · OD)`` factorises
    into a product over input channels, so each output channel is a product of three 256-entry
    lookup tables indexed by the input R, G and B values. The result is rounded to ``uint8``.
    """
    h, w = image.shape[:2]
    m = np.asarray(target_matrix, np.float64) @ (np.asarray(scale, np.float64)[:, None] * unmix)  # 3×3
    lut = _od_lut(float(io))
    offset = np.full(3, float(io))
    if shift is not None:
        offset = offset * np.exp(-(np.asarray(target_matrix, np.float64) @ np.asarray(shift, np.float64)))
    # tables[i, j, v] = exp(-M_ij · OD(v)), with Io (and the shift) folded into the j = 0 table
    tables = np.exp(-m[:, :, None] * lut[None, None, :])
    tables[:, 0, :] *= offset[:, None]
    flat = image.reshape(-1, 3)
    r, g, b = flat[:, 0], flat[:, 1], flat[:, 2]
    out = np.empty((h * w, 3), np.uint8)
    for i in range(3):
        val = np.take(tables[i, 0], r)
        val *= np.take(tables[i, 1], g)
        val *= np.take(tables[i, 2], b)
        np.clip(val, 0.0, 255.0, out=val)
        np.rint(val, out=val)
        out[:, i] = val
    return out.reshape(h, w, 3)


def average_estimates(estimates: Sequence[StainEstimate]) -> StainEstimate:
    """Avg-post: the mean stain matrix and the mean maximum concentrations of several estimates.

    The mean columns are not re-normalised (they are slightly shorter than 1 when the references
    differ), exactly as in the Avg-post definition.
    """
    if not estimates:
        raise ArgumentError("need at least one stain estimate to average")
    he = np.mean([e.stain_matrix for e in estimates], axis=0)
    mc = np.mean([e.max_concentrations for e in estimates], axis=0)
    sources = [e.source for e in estimates]
    label = None if all(s is None for s in sources) else "avg(" + ", ".join(str(s) for s in sources) + ")"
    return StainEstimate(he, mc, n_tissue=sum(e.n_tissue for e in estimates), source=label)
