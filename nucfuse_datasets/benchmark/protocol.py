"""The NucFuse protocol of the paper, as data and small pure functions.

* NucFuse-test: :data:`TEST_TILES_PER_DATASET` = 14 whole tiles per ranked dataset, from the official test split
  where there is one (else the whole dataset), only tiles of at least :data:`MIN_TEST_SIZE` = 256 px on both
  sides, MoNuSAC tiles with macrophages excluded. Where more tiles are eligible than needed, the 14 are drawn by
  :func:`select_ids` (seeded, documented below) — the authors' own ids are not public, so these lists are this
  library's reproducible choice, shipped as package data (``splits/nucfuse_test.json``) with the public candidate
  lists they are drawn from (``splits/candidates/``, :func:`pinned_candidates`). Datasets whose eligibility needs
  per-image facts that are not public stay unpinned (:func:`unpinned_reason`) and are drawn from the local copy.
* NucFuse-train: every other tile, cut into non-overlapping :data:`PATCH_SIZE` = 256 patches from the top-left
  corner, white-padded at the right and bottom (:func:`patch_grid`), split 80/20 per source dataset with
  ``KFold(5, shuffle=True, random_state=42)`` fold 0 over the sorted patch names (:func:`kfold_split`, a numpy
  re-implementation of scikit-learn's algorithm), and the top ``k`` datasets of :data:`PAPER_RANKING`.

Example:
    >>> patch_grid(1000, 1000)[:2], len(patch_grid(256, 320))
    ([(0, 0), (0, 256)], 2)
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from nucfuse_datasets.benchmark import paper
from nucfuse_datasets.datasets._registry import PAPER_RANKING
from nucfuse_datasets.errors import ArgumentError

__all__ = [
    "DEFAULT_K",
    "MIN_TEST_SIZE",
    "PAPER_RANKING",
    "PAPER_TABLE2_PQ",
    "PATCH_SIZE",
    "SELECTION_SEED",
    "TEST_TILES_PER_DATASET",
    "ids_hash",
    "kfold_split",
    "patch_grid",
    "pinned_candidates",
    "pinned_test_ids",
    "select_ids",
    "top_k",
    "unpinned_reason",
]

TEST_TILES_PER_DATASET = 14
MIN_TEST_SIZE = 256
PATCH_SIZE = 256
DEFAULT_K = 9
KFOLD_SPLITS = 5
KFOLD_SEED = 42
#: Base seed of the NucFuse-test draws (the paper's arXiv number); each dataset adds crc32(name).
SELECTION_SEED = (2601, 20104)

#: Table 2 of the paper: PQ (×100) on NucFuse-test of HoVerNeXt / CellViT trained on one dataset. A view of
#: :func:`nucfuse_datasets.benchmark.paper.table2`, kept for existing code.
PAPER_TABLE2_PQ: dict[str, tuple[float, float]] = {
    d: (pq[d, "HoVerNeXt"], pq[d, "CellViT"])
    for pq in [{(r.dataset, r.model): r.pq for r in paper.table2()}]
    for d in PAPER_RANKING
}


def top_k(k: int = DEFAULT_K) -> list[str]:
    """The first ``k`` datasets of the paper's ranking (k = 9 is NucFuse-train).

    Example:
        >>> top_k(3)
        ['pcns', 'puma', 'monuseg']
    """
    if not 1 <= k <= len(PAPER_RANKING):
        raise ArgumentError(f"k must be between 1 and {len(PAPER_RANKING)}, got {k}")
    return list(PAPER_RANKING[:k])


def patch_grid(height: int, width: int, size: int = PATCH_SIZE) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping ``size`` patches covering a tile (row-major).

    A tile gives ``ceil(H/size) · ceil(W/size)`` patches; the last row/column is padded.

    Example:
        >>> len(patch_grid(500, 600)), len(patch_grid(33, 86))
        (6, 1)
    """
    if height < 1 or width < 1:
        raise ArgumentError(f"empty tile {height}×{width}")
    return [(r * size, c * size) for r in range(math.ceil(height / size)) for c in range(math.ceil(width / size))]


def kfold_split(
    n: int, n_splits: int = KFOLD_SPLITS, seed: int = KFOLD_SEED, fold: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` indices of ``KFold(n_splits, shuffle=True, random_state=seed)`` fold ``fold``.

    Same result as scikit-learn's ``KFold``: indices are shuffled with ``RandomState(seed).shuffle``, the first
    ``n % n_splits`` folds get one extra element, fold ``i`` is the i-th consecutive block of the shuffled
    indices. Both index arrays are returned in ascending order, as scikit-learn does.

    Example:
        >>> tr, va = kfold_split(10)
        >>> len(tr), len(va)
        (8, 2)
    """
    if n < n_splits:
        raise ArgumentError(f"KFold with {n_splits} splits needs at least {n_splits} items, got {n}")
    if not 0 <= fold < n_splits:
        raise ArgumentError(f"fold must be in 0..{n_splits - 1}, got {fold}")
    indices = np.arange(n)
    np.random.RandomState(seed).shuffle(indices)
    sizes = np.full(n_splits, n // n_splits, dtype=int)
    sizes[: n % n_splits] += 1
    start = int(sizes[:fold].sum())
    val = indices[start : start + sizes[fold]]
    mask = np.ones(n, bool)
    mask[val] = False
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def select_ids(name: str, candidates: Sequence[str], n: int = TEST_TILES_PER_DATASET) -> list[str]:
    """Choose ``n`` ids from ``candidates`` reproducibly (all of them when there are at most ``n``).

    Rule: sort the candidates; draw ``n`` positions without replacement with
    ``numpy.random.default_rng([2601, 20104, crc32(name)]).choice(len, n, replace=False)``; return the chosen
    ids sorted.

    Example:
        >>> select_ids("demo", ["c", "a", "b"], n=5)
        ['a', 'b', 'c']
    """
    ordered = sorted(set(candidates))
    if len(ordered) != len(candidates):
        raise ArgumentError(f"{name}: duplicate candidate ids")
    if len(ordered) <= n:
        return ordered
    rng = np.random.default_rng([*SELECTION_SEED, zlib.crc32(name.encode())])
    picks = rng.choice(len(ordered), size=n, replace=False)
    return sorted(ordered[int(i)] for i in picks)


def ids_hash(ids: Sequence[str]) -> str:
    """sha256 of the sorted ids joined by newlines (identifies a test list).

    Example:
        >>> ids_hash(["b", "a"]) == ids_hash(["a", "b"])
        True
    """
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


@cache
def _shipped() -> dict[str, Any]:
    text = resources.files("nucfuse_datasets.benchmark").joinpath("splits/nucfuse_test.json").read_text()
    return json.loads(text)


def pinned_test_ids(name: str) -> list[str] | None:
    """The NucFuse-test ids shipped for dataset ``name``, or ``None`` when none are pinned yet.

    Example:
        >>> len(pinned_test_ids("monuseg"))
        14
    """
    entry = _shipped()["datasets"].get(name)
    if not entry or entry.get("ids") is None:
        return None
    ids = list(entry["ids"])
    if ids_hash(ids) != entry["sha256"]:  # pragma: no cover - guards a hand-edited package file
        raise ArgumentError(f"shipped NucFuse-test ids of {name} do not match their recorded hash")
    return ids


def pinned_candidates(name: str) -> list[str] | None:
    """The sorted candidate ids a shipped NucFuse-test list of ``name`` was drawn from; ``None`` when not pinned.

    ``select_ids(name, pinned_candidates(name))`` re-derives the shipped list. Where the candidates are more than the
    14 ids they are shipped as ``splits/candidates/<name>.txt`` (checked against ``candidates_sha256``); where the
    whole official test split is taken (MoNuSeg, CoNSeP) they are the ids. ``splits/nucfuse_test.json`` records
    where each candidate list comes from (``source``).

    Raises:
        ArgumentError: a shipped candidate file does not match its recorded hash (a damaged installation).

    Example:
        >>> c = pinned_candidates("cpm17")
        >>> len(c), c[0], select_ids("cpm17", c) == pinned_test_ids("cpm17")
        (32, 'test_image_00', True)
    """
    ids = pinned_test_ids(name)
    if ids is None:
        return None
    entry = _shipped()["datasets"][name]
    if entry.get("candidates"):
        text = resources.files("nucfuse_datasets.benchmark").joinpath(f"splits/{entry['candidates']}").read_text()
        candidates = sorted(text.split())
        if ids_hash(candidates) != entry.get("candidates_sha256"):
            raise ArgumentError(
                f"shipped NucFuse-test candidates of {name} (splits/{entry['candidates']}) do not match their recorded "
                "hash; reinstall nucfuse_datasets"
            )
        return candidates
    return sorted(ids)


def unpinned_reason(name: str) -> str | None:
    """Why the NucFuse-test list of ``name`` is not pinned (it is then drawn from the local copy); ``None`` if pinned.

    Reports print it next to the test-set fingerprint: an unpinned list is comparable only between identical local
    copies. Datasets outside the shipped file (``synthetic``, your own) give ``None``.

    Example:
        >>> unpinned_reason("monusac").startswith("eligibility needs per-image facts"), unpinned_reason("monuseg")
        (True, None)
    """
    entry = _shipped()["datasets"].get(name)
    if not entry or entry.get("ids") is not None:
        return None
    return str(entry.get("reason") or entry.get("note") or "not pinned in this release")


def shipped_test_lists() -> dict[str, Any]:
    """The whole shipped ``splits/nucfuse_test.json`` (rule, seed, per-dataset ids or ``None``)."""
    return json.loads(json.dumps(_shipped()))
