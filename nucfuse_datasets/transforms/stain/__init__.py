"""Stain normalisation and stain augmentation for H&E tiles (Macenko; multi-target Avg-post).

Own numpy implementation written from the equations of Macenko et al. (2009) and the Avg-post
multi-target variant of Ivanov et al. (2024); torchstain is used only to cross-check it in the
tests and the benchmark (its multi-target mode is torch-only, two of its modes crash and a blank
tile raises ``IndexError``). See ``docs/stain.md``.

* :func:`estimate_stains` — stain matrix (H first) and maximum concentrations of one image.
* :class:`MacenkoNormalizer` — deterministic normalisation to one reference or to the Avg-post
  mean of several; a Sample transform.
* :class:`StainAugment` — with probability ``p``, normalisation to a randomly chosen reference
  (plus optional concentration jitter); a Sample transform.
* :func:`default_references` — 7 MoNuSeg training images, one per organ, fitted once and cached.

Both transforms leave ``instances``, ``classes``, ``ignore`` and ``meta`` untouched, pickle (they
are plain classes) and return a tile unchanged, counting it in ``n_fallbacks``, when its stains
cannot be estimated (blank, near-white, tiny or single-stain tiles).

Example:
    >>> import numpy as np
    >>> from nucfuse_datasets.transforms.stain import MacenkoNormalizer, StainEstimate
    >>> target = StainEstimate(np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]]), np.array([1.9, 1.0]))
    >>> norm = MacenkoNormalizer().fit(target)
    >>> c = np.random.default_rng(0).gamma(2.0, 0.3, size=(2, 32 * 32))
    >>> he = np.array([[0.45, 0.20], [0.80, 0.85], [0.40, 0.48]])
    >>> img = (240 * np.exp(-(he @ c))).T.reshape(32, 32, 3).clip(0, 255).astype(np.uint8)
    >>> norm.normalize(img).shape
    (32, 32, 3)
"""

from __future__ import annotations

from nucfuse_datasets.transforms.stain._augment import StainAugment
from nucfuse_datasets.transforms.stain._macenko import (
    ALPHA,
    BETA,
    IO,
    DegenerateStainsError,
    InsufficientTissueError,
    NotFittedError,
    StainEstimate,
    StainEstimationError,
    StainFallbackWarning,
    estimate_stains,
)
from nucfuse_datasets.transforms.stain._normalizer import MacenkoNormalizer
from nucfuse_datasets.transforms.stain._references import DEFAULT_ORGANS, cache_path, default_references, fit_references

__all__ = [
    "ALPHA",
    "BETA",
    "DEFAULT_ORGANS",
    "IO",
    "DegenerateStainsError",
    "InsufficientTissueError",
    "MacenkoNormalizer",
    "NotFittedError",
    "StainAugment",
    "StainEstimate",
    "StainEstimationError",
    "StainFallbackWarning",
    "cache_path",
    "default_references",
    "estimate_stains",
    "fit_references",
]
