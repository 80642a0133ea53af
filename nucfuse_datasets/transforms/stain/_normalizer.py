"""The deterministic Macenko normaliser (single reference or multi-target Avg-post)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.schema import Sample
from nucfuse_datasets.transforms.stain._macenko import (
    ALPHA,
    BETA,
    IO,
    NotFittedError,
    StainEstimate,
    StainEstimationError,
    StainFallbackWarning,
    _check_params,
    analyse,
    average_estimates,
    reconstruct,
)

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.io.config import PathLike

__all__ = ["FORMAT", "MacenkoNormalizer", "as_estimates"]

FORMAT = "nucfuse-stain-macenko"
FORMAT_VERSION = 1


def as_estimates(
    references: Any, *, io: float, alpha: float, beta: float, what: str = "references"
) -> list[StainEstimate]:
    """Turn an image, a :class:`StainEstimate`, a Sample or a sequence of them into estimates.

    Raises:
        ArgumentError: nothing given, or an item is none of those.
        StainEstimationError: a reference image has too little tissue or a single stain.
    """
    if isinstance(references, (np.ndarray, StainEstimate, Sample)):
        references = [references]
    if not isinstance(references, Sequence) or isinstance(references, (str, bytes)) or len(references) == 0:
        raise ArgumentError(f"{what} must be an image, a StainEstimate, a Sample or a non-empty sequence of them")
    out: list[StainEstimate] = []
    for i, ref in enumerate(references):
        if isinstance(ref, StainEstimate):
            out.append(ref)
            continue
        label: str | None = None
        if isinstance(ref, Sample):
            label, ref = ref.meta.sample_id, ref.image
        if not isinstance(ref, np.ndarray):
            raise ArgumentError(f"{what}[{i}] is a {type(ref).__name__}; expected an image, StainEstimate or Sample")
        try:
            est = analyse(ref, io=io, alpha=alpha, beta=beta)[0]
        except StainEstimationError as exc:
            raise type(exc)(f"{what}[{i}]{f' ({label})' if label else ''}: {exc}") from None
        except ArgumentError as exc:
            raise ArgumentError(f"{what}[{i}]: {exc}") from None
        out.append(StainEstimate(est.stain_matrix, est.max_concentrations, est.n_tissue, label))
    return out


class MacenkoNormalizer:
    """Macenko stain normalisation to one reference or, Avg-post, to the mean of several.

    :meth:`fit` estimates each reference's stain matrix ``HE_i`` and maximum concentrations
    ``maxC_i`` and averages them (``HE_ref = mean HE_i``, ``maxC_ref = mean maxC_i``; with one
    reference this is plain Macenko). :meth:`normalize` estimates the tile's own ``HE_s`` and
    ``maxC_s``, unmixes ``C = HE_s⁺ · OD``, rescales ``C · maxC_ref / maxC_s`` and rebuilds
    ``Io · exp(-HE_ref · C)``. Deterministic: no randomness anywhere.

    A tile whose stains cannot be estimated (blank, near-white, tiny, one stain only) is returned
    unchanged; :attr:`n_fallbacks` counts such tiles, :attr:`fallback_reasons` counts them by
    error class, and a :class:`StainFallbackWarning` is emitted once per instance.

    Args:
        io: transmitted light intensity ``Io`` (240).
        alpha: angle percentile in % (1 → 1st and 99th).
        beta: background OD threshold (0.15).

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.transforms.stain import MacenkoNormalizer
        >>> def tile(he, seed):
        ...     c = np.random.default_rng(seed).gamma(2.0, 0.3, size=(2, 48 * 48))
        ...     return (240 * np.exp(-(np.array(he) @ c))).T.reshape(48, 48, 3).clip(0, 255).astype(np.uint8)
        >>> ref_a = tile([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]], 1)
        >>> ref_b = tile([[0.55, 0.15], [0.75, 0.90], [0.37, 0.40]], 2)
        >>> norm = MacenkoNormalizer().fit([ref_a, ref_b])      # Avg-post over two references
        >>> out = norm.normalize(tile([[0.45, 0.20], [0.80, 0.85], [0.40, 0.48]], 3))
        >>> out.shape, out.dtype, norm.n_fallbacks
        ((48, 48, 3), dtype('uint8'), 0)
        >>> blank = np.full((48, 48, 3), 250, np.uint8)
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     same = norm.normalize(blank)
        >>> bool((same == blank).all()), norm.n_fallbacks
        (True, 1)
    """

    def __init__(self, *, io: float = IO, alpha: float = ALPHA, beta: float = BETA) -> None:
        _check_params(io, alpha, beta)
        self.io = float(io)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.reference_estimates: tuple[StainEstimate, ...] = ()
        self.target: StainEstimate | None = None
        self.n_calls = 0
        self.n_fallbacks = 0
        self.fallback_reasons: Counter[str] = Counter()
        self._warned = False

    # ------------------------------------------------------------------ fitting
    def fit(self, references: Any) -> MacenkoNormalizer:
        """Fit to one reference or, Avg-post, to several.

        Args:
            references: an ``H×W×3`` ``uint8`` image, a :class:`StainEstimate`, a Sample, or a
                sequence of them (any mix).

        Returns:
            ``self``.

        Raises:
            ArgumentError: no reference, or a reference that is not RGB ``uint8``.
            StainEstimationError: a reference has too little tissue or a single stain (a reference
                must be estimable; there is no silent fallback here).

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.transforms.stain import MacenkoNormalizer, StainEstimate
            >>> ref = StainEstimate(np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]]), np.array([1.9, 1.0]))
            >>> MacenkoNormalizer().fit(ref).max_concentrations.tolist()
            [1.9, 1.0]
        """
        estimates = as_estimates(references, io=self.io, alpha=self.alpha, beta=self.beta)
        self.reference_estimates = tuple(estimates)
        self.target = estimates[0] if len(estimates) == 1 else average_estimates(estimates)
        return self

    @property
    def is_fitted(self) -> bool:
        """True after :meth:`fit` (or :meth:`from_dict`)."""
        return self.target is not None

    def _require_target(self) -> StainEstimate:
        if self.target is None:
            raise NotFittedError("MacenkoNormalizer is not fitted: call fit(references) or from_monuseg() first")
        return self.target

    @property
    def stain_matrix(self) -> np.ndarray:
        """Target stain matrix ``HE_ref`` (3×2, H first)."""
        return self._require_target().stain_matrix

    @property
    def max_concentrations(self) -> np.ndarray:
        """Target maximum concentrations ``maxC_ref`` (2,)."""
        return self._require_target().max_concentrations

    @property
    def references(self) -> tuple[str | None, ...]:
        """Labels (sample ids where known) of the fitted references."""
        return tuple(e.source for e in self.reference_estimates)

    # ------------------------------------------------------------------ applying
    def _fallback(self, exc: StainEstimationError) -> None:
        self.n_fallbacks += 1
        self.fallback_reasons[type(exc).__name__] += 1
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{type(self).__name__}: returned a tile unchanged ({exc}); further cases are only counted "
                "in .n_fallbacks",
                StainFallbackWarning,
                stacklevel=3,
            )

    def normalize(self, image: np.ndarray, *, strict: bool = False) -> np.ndarray:
        """Normalise one ``H×W×3`` ``uint8`` image to the fitted target.

        Args:
            image: the tile.
            strict: raise :class:`StainEstimationError` instead of returning the tile unchanged
                when its stains cannot be estimated.

        Returns:
            A new ``uint8`` image of the same shape, or ``image`` itself on fallback.

        Raises:
            NotFittedError: :meth:`fit` was not called.
            ArgumentError: greyscale, RGBA or non-``uint8`` input.
            StainEstimationError: only with ``strict=True``.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.transforms.stain import MacenkoNormalizer, StainEstimate
            >>> ref = StainEstimate(np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]]), np.array([1.9, 1.0]))
            >>> norm = MacenkoNormalizer().fit(ref)
            >>> norm.normalize(np.full((8, 8, 3), 255, np.uint8), strict=True)
            Traceback (most recent call last):
            ...
            nucfuse_datasets.errors.InsufficientTissueError: 0 tissue pixels ...
        """
        target = self._require_target()
        self.n_calls += 1
        try:
            source, unmix = analyse(image, io=self.io, alpha=self.alpha, beta=self.beta)
        except StainEstimationError as exc:
            if strict:
                raise
            self._fallback(exc)
            return image
        scale = target.max_concentrations / source.max_concentrations
        return reconstruct(image, unmix, target.stain_matrix, scale, io=self.io)

    def __call__(self, sample: Sample) -> Sample:
        """Sample transform: a copy with the image normalised; masks and metadata untouched.

        The same Sample is returned when the tile falls back (see :meth:`normalize`).

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.schema import Sample, SampleMeta
            >>> from nucfuse_datasets.transforms.stain import MacenkoNormalizer, StainEstimate
            >>> he = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
            >>> norm = MacenkoNormalizer().fit(StainEstimate(he, np.array([1.9, 1.0])))
            >>> c = np.random.default_rng(0).gamma(2.0, 0.3, size=(2, 32 * 32))
            >>> img = (240 * np.exp(-(np.array([[0.5, 0.2], [0.8, 0.8], [0.4, 0.5]]) @ c)))
            >>> img = img.T.reshape(32, 32, 3).clip(0, 255).astype(np.uint8)
            >>> s = Sample(image=img, instances=np.ones((32, 32), np.int32),
            ...            meta=SampleMeta(dataset="d", sample_id="a", split="train"))
            >>> out = norm(s)
            >>> out.instances is s.instances, bool((out.image != s.image).any())
            (True, True)
        """
        out = self.normalize(sample.image)
        return sample if out is sample.image else sample.replace(image=out)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: parameters, target and per-reference estimates.

        Example:
            >>> import numpy as np
            >>> from nucfuse_datasets.transforms.stain import MacenkoNormalizer, StainEstimate
            >>> he = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
            >>> ref = StainEstimate(he, np.array([1.9, 1.0]), source="a")
            >>> d = MacenkoNormalizer().fit(ref).to_dict()
            >>> MacenkoNormalizer.from_dict(d).references
            ('a',)
        """
        target = self._require_target()
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "method": "macenko-avg-post" if len(self.reference_estimates) > 1 else "macenko",
            "params": {"io": self.io, "alpha": self.alpha, "beta": self.beta},
            "target": target.to_dict(),
            "references": [e.to_dict() for e in self.reference_estimates],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MacenkoNormalizer:
        """Rebuild a fitted normaliser from :meth:`to_dict` output.

        Raises:
            ArgumentError: not a dict written by :meth:`to_dict` of this format version.
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ArgumentError(f"not a {FORMAT} dict")
        if data.get("version") != FORMAT_VERSION:
            version = data.get("version")
            raise ArgumentError(f"{FORMAT} version {version!r} is not supported (expected {FORMAT_VERSION})")
        try:
            params = data["params"]
            norm = cls(io=params["io"], alpha=params["alpha"], beta=params["beta"])
            norm.reference_estimates = tuple(StainEstimate.from_dict(r) for r in data.get("references", []))
            norm.target = StainEstimate.from_dict(data["target"])
        except (KeyError, TypeError) as exc:
            raise ArgumentError(f"malformed {FORMAT} dict: {exc!r}") from None
        return norm

    @classmethod
    def from_monuseg(
        cls,
        root: PathLike | None = None,
        *,
        io: float = IO,
        alpha: float = ALPHA,
        beta: float = BETA,
        refresh: bool = False,
    ) -> MacenkoNormalizer:
        """Avg-post normaliser over the 7 default MoNuSeg references (see :func:`default_references`).

        Args:
            root: data root holding ``monuseg/`` (``None``: ``$NUCFUSE_DATA_DIR`` or the cache).
            io: see the class.
            alpha: see the class.
            beta: see the class.
            refresh: re-fit the references instead of reading the cached JSON.

        Example:
            >>> from nucfuse_datasets.transforms.stain import MacenkoNormalizer
            >>> norm = MacenkoNormalizer.from_monuseg()  # doctest: +SKIP
            >>> len(norm.references)  # doctest: +SKIP
            7
        """
        from nucfuse_datasets.transforms.stain._references import default_references

        refs = default_references(root, io=io, alpha=alpha, beta=beta, refresh=refresh)
        return cls(io=io, alpha=alpha, beta=beta).fit(refs)

    def __repr__(self) -> str:
        n = len(self.reference_estimates)
        return (
            f"MacenkoNormalizer(io={self.io}, alpha={self.alpha}, beta={self.beta}, "
            f"references={n if self.is_fitted else 'unfitted'}, n_calls={self.n_calls}, n_fallbacks={self.n_fallbacks})"
        )
