"""The default reference set: 7 MoNuSeg training images, one per organ, fitted once and cached.

A local MoNuSeg copy without one of the 7 organs gives the references of the organs present, with a warning naming
the missing ones (``missing="raise"``: the strict rule).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from nucfuse_datasets.datasets._registry import get_dataset
from nucfuse_datasets.errors import ArgumentError, NucFuseWarning
from nucfuse_datasets.io.config import PathLike, resolve_root
from nucfuse_datasets.io.files import atomic_write_json
from nucfuse_datasets.transforms.stain._macenko import ALPHA, BETA, IO, StainEstimate, StainEstimationError, analyse

__all__ = ["CACHE_FILE", "DEFAULT_ORGANS", "cache_path", "default_references", "fit_references"]

#: The 7 MoNuSeg training organs, in the order the references are listed and averaged.
DEFAULT_ORGANS: tuple[str, ...] = ("breast", "kidney", "liver", "prostate", "bladder", "colon", "stomach")
#: Cache file, relative to the data root.
CACHE_FILE = "stain/macenko-monuseg-train.json"
CACHE_FORMAT = "nucfuse-stain-references"
CACHE_VERSION = 1
RULE = (
    "for each organ in order, the MoNuSeg training images whose meta.organ is that organ, in sorted "
    "sample_id order; the first one whose stains can be estimated is the reference"
)


def cache_path(root: PathLike | None = None) -> Path:
    """Where :func:`default_references` caches its estimates: ``<root>/stain/macenko-monuseg-train.json``.

    Example:
        >>> from nucfuse_datasets.transforms.stain import cache_path
        >>> cache_path("/data").as_posix()
        '/data/stain/macenko-monuseg-train.json'
    """
    return resolve_root(root) / CACHE_FILE


def _metas(dataset: Any) -> list[Any]:
    meta = getattr(dataset, "meta", None)
    if callable(meta):  # a NucleiDataset: metadata without reading pixels
        return [meta(i) for i in range(len(dataset))]
    return [dataset[i].meta for i in range(len(dataset))]


def fit_references(
    dataset: Any,
    organs: Sequence[str] = DEFAULT_ORGANS,
    *,
    io: float = IO,
    alpha: float = ALPHA,
    beta: float = BETA,
) -> tuple[list[StainEstimate], dict[str, list[str]]]:
    """Apply the reference rule to any indexable collection of Samples and fit the chosen ones.

    Rule: for each organ of ``organs`` in the given order, take the samples whose
    ``meta.organ`` equals it (case-insensitive), sort them by ``meta.sample_id``, and use the
    first whose stains can be estimated (:func:`estimate_stains` succeeds).

    Args:
        dataset: a dataset of Samples (``len`` and ``[i]``; a ``meta(i)`` method is used when present
            so that only the chosen images are read), or a plain list of Samples.
        organs: organs to take one reference each from, in order.
        io: see :func:`estimate_stains`.
        alpha: see :func:`estimate_stains`.
        beta: see :func:`estimate_stains`.

    Returns:
        The estimates (``source`` = sample id) in organ order, and for each organ the ids skipped
        because their stains could not be estimated.

    Raises:
        ArgumentError: ``organs`` is empty or repeats an organ.
        StainEstimationError: no usable image for an organ (the message names it).

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.schema import Sample, SampleMeta
        >>> from nucfuse_datasets.transforms.stain import fit_references
        >>> he = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
        >>> def sample(sid, organ, seed):
        ...     c = np.random.default_rng(seed).gamma(2.0, 0.3, size=(2, 32 * 32))
        ...     img = (240 * np.exp(-(he @ c))).T.reshape(32, 32, 3).clip(0, 255).astype(np.uint8)
        ...     return Sample(image=img, instances=np.zeros((32, 32), np.int32),
        ...                   meta=SampleMeta(dataset="d", sample_id=sid, split="train", organ=organ))
        >>> data = [sample("b2", "breast", 0), sample("k1", "kidney", 1), sample("b1", "breast", 2)]
        >>> refs, skipped = fit_references(data, organs=("kidney", "breast"))
        >>> [r.source for r in refs]
        ['k1', 'b1']
    """
    wanted = [str(o).lower() for o in organs]
    if not wanted or len(set(wanted)) != len(wanted):
        raise ArgumentError(f"organs must be a non-empty list without repeats, got {list(organs)}")
    by_organ: dict[str, list[tuple[str, int]]] = {o: [] for o in wanted}
    for idx, meta in enumerate(_metas(dataset)):
        organ = (meta.organ or "").lower()
        if organ in by_organ:
            by_organ[organ].append((str(meta.sample_id), idx))
    estimates: list[StainEstimate] = []
    skipped: dict[str, list[str]] = {}
    for organ in wanted:
        chosen = None
        for sid, idx in sorted(by_organ[organ]):
            try:
                est = analyse(dataset[idx].image, io=io, alpha=alpha, beta=beta)[0]
            except StainEstimationError:
                skipped.setdefault(organ, []).append(sid)
                continue
            chosen = StainEstimate(est.stain_matrix, est.max_concentrations, est.n_tissue, source=sid)
            break
        if chosen is None:
            tried = skipped.get(organ, [])
            raise StainEstimationError(
                f"no usable reference image for organ {organ!r}: "
                + (f"the stains of {tried} cannot be estimated" if tried else "no sample has this organ")
            )
        estimates.append(chosen)
    return estimates, skipped


def _read_cache(path: Path, organs: list[str], params: dict[str, float]) -> tuple[list[StainEstimate], list[str]]:
    """The cached references fitted for ``organs`` and ``params``, and the organs that had no image then.

    ``([], [])`` when the cache is missing, unreadable or stale (fit again). A cache written before ``missing``
    existed has all its organs (``requested`` defaults to ``organs``).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        used = data["organs"]
        absent = list(data.get("missing", []))
        if (
            data.get("format") != CACHE_FORMAT
            or data.get("version") != CACHE_VERSION
            or data.get("requested", used) != organs
            or data.get("params") != params
            or [o for o in organs if o not in absent] != used
        ):
            return [], []
        refs = [StainEstimate.from_dict(r) for r in data["references"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [], []  # missing, unreadable or stale: fit again
    return (refs, absent) if refs and len(refs) == len(used) else ([], [])


def _organs_present(train: _TrainOnly) -> set[str]:
    return {(m.organ or "").lower() for m in train.metas}


def _warn_missing(absent: list[str], used: list[str], root: PathLike | None) -> None:
    warnings.warn(
        NucFuseWarning(
            f"stain references: no MoNuSeg training image of organ(s) {', '.join(map(repr, absent))} under "
            f"{resolve_root(root) / 'monuseg'}; using the {len(used)} organ(s) present ({', '.join(used)}) instead of "
            f"all {len(used) + len(absent)}. Put the complete MoNuSeg training set there for the paper's references "
            "(missing='raise' makes this an error)."
        ),
        stacklevel=3,
    )


def default_references(
    root: PathLike | None = None,
    *,
    organs: Sequence[str] = DEFAULT_ORGANS,
    io: float = IO,
    alpha: float = ALPHA,
    beta: float = BETA,
    refresh: bool = False,
    missing: Literal["warn", "raise"] = "warn",
) -> list[StainEstimate]:
    """The default references: one MoNuSeg training image per organ, fitted once and cached.

    Reads ``<root>/stain/macenko-monuseg-train.json`` when it exists and was written for the same
    organs and ``io``/``alpha``/``beta``. Otherwise opens
    ``get_dataset("monuseg", root=root, split="train")`` (prepared data or native files must be
    present; nothing is downloaded), applies the rule of :func:`fit_references`, and writes the
    cache atomically (temporary file + ``os.replace``) with the chosen sample ids and organs.

    An organ without any training image under ``root`` (a partial MoNuSeg copy) is left out with a
    :class:`~nucfuse_datasets.errors.NucFuseWarning` naming it, so the references are those of the organs
    present, in ``organs`` order (the paper's 7 when all are there). The cache records the missing organs; it is
    used (and the warning repeated) while they are still missing, and refitted once one of them arrives.

    Args:
        root: data root holding ``monuseg/`` (``None``: ``$NUCFUSE_DATA_DIR``, then the user cache).
        organs: organs in order (default: the 7 MoNuSeg training organs).
        io: see :func:`estimate_stains`.
        alpha: see :func:`estimate_stains`.
        beta: see :func:`estimate_stains`.
        refresh: ignore an existing cache and fit again.
        missing: ``"warn"`` (default): leave out the organs without a training image, with a warning;
            ``"raise"``: every organ must have one.

    Returns:
        One :class:`StainEstimate` per organ present, ``source`` = the sample id (the TCGA stem).

    Raises:
        ArgumentError: ``missing`` is neither ``"warn"`` nor ``"raise"``.
        DatasetNotFoundError: MoNuSeg is not available under ``root``.
        StainEstimationError: none of the organs has a training image; an organ's images all fail stain
            estimation; or, with ``missing="raise"``, an organ has no training image.

    Example:
        >>> from nucfuse_datasets.transforms.stain import default_references
        >>> refs = default_references()  # doctest: +SKIP
        >>> [r.source[:12] for r in refs]  # doctest: +SKIP
        ['TCGA-A7-A13E', 'TCGA-B0-5698', 'TCGA-18-5592', 'TCGA-CH-5767', 'TCGA-DK-A2I6', 'TCGA-AY-A8YK', 'TCGA-KB-A93J']
    """
    if missing not in ("warn", "raise"):
        raise ArgumentError(f"missing must be 'warn' or 'raise', got {missing!r}")
    wanted = [str(o).lower() for o in organs]
    params = {"io": float(io), "alpha": float(alpha), "beta": float(beta)}
    path = cache_path(root)
    cached, cached_absent = ([], []) if refresh else _read_cache(path, wanted, params)
    if cached and not cached_absent:
        return cached
    train = _TrainOnly(get_dataset("monuseg", root=root, split="train"))
    present = _organs_present(train)
    if cached and missing == "warn" and not present & set(cached_absent):  # still the same organs missing
        _warn_missing(cached_absent, [o for o in wanted if o not in cached_absent], root)
        return cached
    absent = [o for o in wanted if o not in present] if missing == "warn" else []
    used = [o for o in wanted if o not in absent]
    if wanted and not used:
        raise StainEstimationError(
            f"no usable reference image: none of the organs {wanted} has a MoNuSeg training image under "
            f"{resolve_root(root) / 'monuseg'}"
        )
    refs, skipped = fit_references(train, used, io=io, alpha=alpha, beta=beta)
    if absent:
        _warn_missing(absent, used, root)
    record = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "dataset": "monuseg",
        "split": "train",
        "rule": RULE,
        "organs": used,
        "requested": wanted,
        "missing": absent,
        "params": params,
        "reference_ids": [r.source for r in refs],
        "skipped": skipped,
        "references": [{"organ": o, **r.to_dict()} for o, r in zip(used, refs, strict=True)],
    }
    try:
        atomic_write_json(path, record)
    except OSError as exc:  # a read-only data root: still usable, just fitted again next time
        warnings.warn(f"could not write the stain reference cache {path}: {exc}", NucFuseWarning, stacklevel=2)
    return refs


class _TrainOnly:
    """View of a dataset restricted to samples whose ``meta.split`` is ``"train"``."""

    def __init__(self, dataset: Any) -> None:
        self._dataset = dataset
        metas = _metas(dataset)
        self._index = [i for i, m in enumerate(metas) if m.split == "train"]
        self.metas = [metas[i] for i in self._index]

    def __len__(self) -> int:
        return len(self._index)

    def meta(self, i: int) -> Any:
        return self.metas[i]

    def __getitem__(self, i: int) -> Any:
        return self._dataset[self._index[i]]
