"""Stochastic stain augmentation: Macenko normalisation to a randomly chosen reference."""

from __future__ import annotations

import copy
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.transforms.stain._macenko import (
    ALPHA,
    BETA,
    IO,
    StainEstimate,
    StainEstimationError,
    StainFallbackWarning,
    _check_params,
    analyse,
    average_estimates,
    check_rgb,
    reconstruct,
)
from nucfuse_datasets.transforms.stain._normalizer import MacenkoNormalizer, as_estimates

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.io.config import PathLike
    from nucfuse_datasets.schema import Sample

__all__ = ["StainAugment"]

RngLike = int | np.random.Generator | None


def _worker_info() -> Any:
    """``torch.utils.data.get_worker_info()`` without importing torch when it is not loaded."""
    mod = sys.modules.get("torch.utils.data")
    return None if mod is None else mod.get_worker_info()


class StainAugment:
    """Non-deterministic stain normalisation as augmentation (Mahbod et al. 2024 style).

    With probability ``p`` a call picks one target uniformly at random and Macenko-normalises the
    tile to it; otherwise the tile passes unchanged. Optional concentration jitter (as in
    torchstain's Macenko augmentor) then perturbs the normalised concentrations,
    ``C ← C · U(1 - sigma1, 1 + sigma1) + U(-sigma2, sigma2)`` per stain.

    Targets:

    * a sequence of images / Samples / :class:`StainEstimate` s: one target per reference
      (random reference per call — the paper's "non-deterministic" augmentation);
    * a fitted :class:`MacenkoNormalizer` (e.g. Avg-post over 7 references): a single target,
      applied with probability ``p`` (what the NucFuseRank code's ``stain_norm`` hook does);
    * a sequence of fitted normalisers: one target each;
    * ``None``: no normalisation, the tile's own stains are jittered (needs ``sigma1`` or ``sigma2``).

    Randomness comes from one ``numpy.random.Generator``. In DataLoader worker processes every
    worker derives its own generator from the torch worker seed and this transform's seed, so
    workers do not repeat each other and an integer ``rng`` plus ``torch.manual_seed`` gives
    reproducible epochs. Counters (:attr:`n_calls`, :attr:`n_applied`, :attr:`n_fallbacks`,
    :attr:`choice_counts`) are per process.

    Args:
        references: see above.
        p: probability of transforming a tile (0.5 in the paper).
        rng: ``None`` (fresh entropy), an ``int`` seed or a ``numpy.random.Generator`` (used as is
            in the main process).
        sigma1: multiplicative concentration jitter (0 = none).
        sigma2: additive concentration jitter (0 = none).
        io: transmitted light intensity (240).
        alpha: angle percentile in % (1).
        beta: background OD threshold (0.15).

    Raises:
        ArgumentError: ``p`` outside [0, 1], negative sigmas, no targets and no jitter, an
            unfitted normaliser or one with other ``io``/``alpha``/``beta``.
        StainEstimationError: a reference image cannot be estimated.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.transforms.stain import StainAugment
        >>> def tile(he, seed):
        ...     c = np.random.default_rng(seed).gamma(2.0, 0.3, size=(2, 48 * 48))
        ...     return (240 * np.exp(-(np.array(he) @ c))).T.reshape(48, 48, 3).clip(0, 255).astype(np.uint8)
        >>> refs = [tile([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]], 1),
        ...         tile([[0.55, 0.15], [0.75, 0.90], [0.37, 0.40]], 2)]
        >>> aug = StainAugment(refs, p=1.0, rng=0)
        >>> img = tile([[0.45, 0.20], [0.80, 0.85], [0.40, 0.48]], 3)
        >>> outs = [aug.augment(img) for _ in range(8)]
        >>> aug.n_applied, int(aug.choice_counts.sum()), bool((outs[0] != img).any())
        (8, 8, True)
    """

    def __init__(
        self,
        references: Any = None,
        p: float = 0.5,
        rng: RngLike = None,
        *,
        sigma1: float = 0.0,
        sigma2: float = 0.0,
        io: float = IO,
        alpha: float = ALPHA,
        beta: float = BETA,
    ) -> None:
        _check_params(io, alpha, beta)
        if not (0.0 <= float(p) <= 1.0):
            raise ArgumentError(f"p must be a probability in [0, 1], got {p}")
        if sigma1 < 0 or sigma2 < 0 or sigma1 >= 1:
            raise ArgumentError(f"sigma1 must be in [0, 1) and sigma2 >= 0, got {sigma1}, {sigma2}")
        self.io, self.alpha, self.beta = float(io), float(alpha), float(beta)
        self.p = float(p)
        self.sigma1, self.sigma2 = float(sigma1), float(sigma2)
        self.targets: tuple[StainEstimate, ...] = tuple(self._targets(references))
        if not self.targets and not (self.sigma1 > 0 or self.sigma2 > 0):
            raise ArgumentError("StainAugment needs references, or sigma1/sigma2 > 0 for jitter-only augmentation")
        self._rng, self._entropy = self._make_rng(rng)
        self._worker_key: tuple[int, int] | None = None
        self._worker_rng: np.random.Generator | None = None
        self.n_calls = 0
        self.n_applied = 0
        self.n_fallbacks = 0
        self.fallback_reasons: Counter[str] = Counter()
        self.choice_counts = np.zeros(max(len(self.targets), 1), dtype=np.int64)
        self.last_choice: int | None = None
        self._warned = False

    def _targets(self, references: Any) -> list[StainEstimate]:
        if references is None:
            return []
        items = [references] if isinstance(references, MacenkoNormalizer) else references
        if isinstance(items, Sequence) and not isinstance(items, (str, bytes)) and len(items) > 0:
            out: list[StainEstimate] = []
            for i, item in enumerate(items):
                if isinstance(item, MacenkoNormalizer):
                    if item.target is None:
                        raise ArgumentError(f"references[{i}] is an unfitted MacenkoNormalizer")
                    if (item.io, item.alpha, item.beta) != (self.io, self.alpha, self.beta):
                        raise ArgumentError(
                            f"references[{i}] uses io/alpha/beta {(item.io, item.alpha, item.beta)}, "
                            f"this transform {(self.io, self.alpha, self.beta)}"
                        )
                    out.append(item.target)
                else:
                    out.extend(as_estimates(item, io=self.io, alpha=self.alpha, beta=self.beta))
            return out
        return as_estimates(references, io=self.io, alpha=self.alpha, beta=self.beta)

    @staticmethod
    def _make_rng(rng: RngLike) -> tuple[np.random.Generator, int]:
        if rng is None:
            seq = np.random.SeedSequence()
            return np.random.default_rng(seq), int(seq.entropy)  # type: ignore[arg-type]
        if isinstance(rng, np.random.Generator):
            return rng, int(copy.deepcopy(rng).integers(2**63))
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
            return np.random.default_rng(int(rng)), int(rng)
        raise ArgumentError(f"rng must be None, a non-negative int or a numpy.random.Generator, got {rng!r}")

    def _generator(self) -> np.random.Generator:
        info = _worker_info()
        if info is None:
            return self._rng
        key = (int(info.id), int(info.seed))
        if self._worker_key != key or self._worker_rng is None:
            self._worker_key = key
            self._worker_rng = np.random.default_rng([int(info.seed), self._entropy])
        return self._worker_rng

    # ------------------------------------------------------------------ applying
    def augment(self, image: np.ndarray) -> np.ndarray:
        """Augment one ``H×W×3`` ``uint8`` image (see the class); returns ``image`` itself when skipped.

        :attr:`last_choice` is the index of the target used, or ``None`` when the tile was not
        transformed (the ``1 - p`` branch). With jitter only it is ``-1``.

        Raises:
            ArgumentError: greyscale, RGBA or non-``uint8`` input (also in the skipped branch).

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.transforms.stain import StainAugment, StainEstimate
            >>> target = StainEstimate(np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]]), np.array([1.9, 1.0]))
            >>> aug = StainAugment([target], p=0.0, rng=0)
            >>> img = np.full((16, 16, 3), 200, np.uint8)
            >>> aug.augment(img) is img, aug.last_choice
            (True, None)
        """
        check_rgb(image)
        rng = self._generator()
        self.n_calls += 1
        self.last_choice = None
        if not rng.random() < self.p:
            return image
        k = int(rng.integers(len(self.targets))) if self.targets else -1
        factor = rng.uniform(1.0 - self.sigma1, 1.0 + self.sigma1, 2) if self.sigma1 > 0 else np.ones(2)
        shift = rng.uniform(-self.sigma2, self.sigma2, 2) if self.sigma2 > 0 else None
        self.last_choice = k
        self.n_applied += 1
        self.choice_counts[max(k, 0)] += 1
        try:
            source, unmix = analyse(image, io=self.io, alpha=self.alpha, beta=self.beta)
        except StainEstimationError as exc:
            self._fallback(exc)
            return image
        target = self.targets[k] if k >= 0 else source
        scale = target.max_concentrations / source.max_concentrations * factor
        return reconstruct(image, unmix, target.stain_matrix, scale, io=self.io, shift=shift)

    def _fallback(self, exc: StainEstimationError) -> None:
        self.n_fallbacks += 1
        self.fallback_reasons[type(exc).__name__] += 1
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"StainAugment: returned a tile unchanged ({exc}); further cases are only counted in .n_fallbacks",
                StainFallbackWarning,
                stacklevel=3,
            )

    def __call__(self, sample: Sample) -> Sample:
        """Sample transform: the image augmented; instances, classes, ignore and meta untouched.

        The same Sample is returned when the tile is skipped (probability ``1 - p``) or falls back.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.schema import Sample, SampleMeta
            >>> from nucfuse_datasets.transforms.stain import StainAugment, StainEstimate
            >>> target = StainEstimate(np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]]), np.array([1.9, 1.0]))
            >>> s = Sample(image=np.full((8, 8, 3), 200, np.uint8), instances=np.zeros((8, 8), np.int32),
            ...            meta=SampleMeta(dataset="d", sample_id="a", split="train"))
            >>> StainAugment([target], p=0.0, rng=0)(s) is s
            True
        """
        out = self.augment(sample.image)
        return sample if out is sample.image else sample.replace(image=out)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_monuseg(
        cls,
        root: PathLike | None = None,
        p: float = 0.5,
        rng: RngLike = None,
        *,
        mode: str = "random",
        sigma1: float = 0.0,
        sigma2: float = 0.0,
        io: float = IO,
        alpha: float = ALPHA,
        beta: float = BETA,
        refresh: bool = False,
    ) -> StainAugment:
        """The paper's set-up: the 7 default MoNuSeg references, ``p = 0.5``.

        Args:
            root: data root holding ``monuseg/``.
            p: probability of transforming a tile.
            rng: see the class.
            mode: ``"random"`` — a random reference per call (non-deterministic normalisation);
                ``"average"`` — the Avg-post mean of the 7 (the NucFuseRank code's hook).
            sigma1: see the class.
            sigma2: see the class.
            io: see the class.
            alpha: see the class.
            beta: see the class.
            refresh: re-fit the references instead of reading the cached JSON.

        Example:
            >>> from nucfuse_datasets.transforms.stain import StainAugment
            >>> aug = StainAugment.from_monuseg(p=0.5, rng=0)  # doctest: +SKIP
            >>> len(aug.targets)  # doctest: +SKIP
            7
        """
        from nucfuse_datasets.transforms.stain._references import default_references

        if mode not in ("random", "average"):
            raise ArgumentError(f"mode must be 'random' or 'average', got {mode!r}")
        refs = default_references(root, io=io, alpha=alpha, beta=beta, refresh=refresh)
        targets: Any = refs if mode == "random" else [average_estimates(refs)]
        return cls(targets, p=p, rng=rng, sigma1=sigma1, sigma2=sigma2, io=io, alpha=alpha, beta=beta)

    def __repr__(self) -> str:
        return (
            f"StainAugment(targets={len(self.targets)}, p={self.p}, sigma1={self.sigma1}, sigma2={self.sigma2}, "
            f"n_calls={self.n_calls}, n_applied={self.n_applied}, n_fallbacks={self.n_fallbacks})"
        )
