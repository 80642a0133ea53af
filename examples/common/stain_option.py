"""The stain-normalisation option of the recipes (the paper's §4.3.1 experiment): the ``data.stain`` config table.

NucFuseRank's additional experiment trained each model on one dataset with **non-deterministic stain augmentation**
(Macenko normalisation to one of 7 MoNuSeg reference images from 7 organs, applied with probability 0.5) and
**multi-target Avg-post Macenko normalisation**, and scored the models on NucFuse-test. The paper reports, for
HoVerNeXt, a mean PQ of 47.49 % with it against 48.10 % without, and NuInsSeg moving from 8th to 5th place
(:func:`nucfuse_datasets.benchmark.paper.reported`, ``"stain"``). With the option on:

* training patches: :class:`~nucfuse_datasets.transforms.stain.StainAugment` with probability ``p`` (0.5) — a random
  one of the
  references per patch (``train = "random"``, the paper's non-deterministic augmentation) or the Avg-post mean of
  them (``train = "average"``, what the NucFuseRank code's disabled ``stain_norm`` hook does); seeded with
  ``recipe.seed``;
* validation patches and NucFuse-test tiles (``test = true``): deterministic Avg-post normalisation to the mean of
  the references (:class:`~nucfuse_datasets.transforms.stain.MacenkoNormalizer`), applied before the model's own input
  normalisation. The setting travels in the checkpoint's config, so ``evaluate`` applies it too.

Keys (``--set data.stain.enabled=true`` etc., or a ``[data.stain]`` table in the config file)::

    enabled = false          # the option is off by default, as in every run of the paper's ranking
    references = "monuseg"   # the 7 MoNuSeg training images of stain.default_references(root) (on a copy
                             # lacking an organ: those of the organs present, with a warning naming the others),
                             # or the path of a JSON file: a list of StainEstimate dicts (or {"references": [...]})
    train = "random"         # "random" | "average"
    p = 0.5                  # probability of normalising a training patch
    test = true              # normalise validation patches and test tiles (Avg-post)

Tiles whose stains cannot be estimated (blank, white) pass unchanged (counted by the transforms).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from examples.common.transforms import Compose
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.transforms.stain import MacenkoNormalizer, StainAugment, StainEstimate, default_references

__all__ = ["STAIN_DEFAULTS", "stain_predict", "stain_settings", "test_normalizer", "train_augment", "with_stain"]

#: Defaults of the ``data.stain`` table.
STAIN_DEFAULTS: dict[str, Any] = {"enabled": False, "references": "monuseg", "train": "random", "p": 0.5, "test": True}


def stain_settings(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The validated ``data.stain`` settings, or ``None`` when the option is off.

    Raises:
        ArgumentError: an unknown key or an invalid value.

    Example:
        >>> stain_settings({"data": {}}) is None
        True
        >>> stain_settings({"data": {"stain": {"enabled": True}}})["p"]
        0.5
    """
    section = dict(cfg.get("data", {}).get("stain") or {})
    unknown = set(section) - set(STAIN_DEFAULTS)
    if unknown:
        raise ArgumentError(f"data.stain: unknown keys {sorted(unknown)}; valid: {sorted(STAIN_DEFAULTS)}")
    s = {**STAIN_DEFAULTS, **section}
    if not s["enabled"]:
        return None
    if s["train"] not in ("random", "average"):
        raise ArgumentError(f"data.stain.train must be 'random' or 'average', got {s['train']!r}")
    if not 0.0 <= float(s["p"]) <= 1.0:
        raise ArgumentError(f"data.stain.p must be a probability in [0, 1], got {s['p']!r}")
    return s


def _references(settings: Mapping[str, Any], root: str | None) -> list[StainEstimate]:
    ref = str(settings["references"])
    if ref == "monuseg":
        return default_references(root)
    path = Path(ref)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArgumentError(
            f"data.stain.references: cannot read {path} ({exc}); give 'monuseg' or a JSON list of StainEstimate "
            "dicts (StainEstimate.to_dict())"
        ) from None
    items = data.get("references") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ArgumentError(f"data.stain.references: {path} holds no list of references")
    return [StainEstimate.from_dict(d) for d in items]


def _root(cfg: Mapping[str, Any]) -> str | None:
    return cfg.get("data", {}).get("root") or None


def train_augment(cfg: Mapping[str, Any], seed: int) -> StainAugment | None:
    """The training-patch stain augmentation of ``cfg`` (``None`` when the option is off)."""
    s = stain_settings(cfg)
    if s is None:
        return None
    refs = _references(s, _root(cfg))
    targets: Any = refs if s["train"] == "random" else MacenkoNormalizer().fit(refs)
    return StainAugment(targets, p=float(s["p"]), rng=int(seed))


def test_normalizer(cfg: Mapping[str, Any]) -> MacenkoNormalizer | None:
    """The deterministic Avg-post normaliser for validation and test (``None`` when off or ``test = false``)."""
    s = stain_settings(cfg)
    if s is None or not s["test"]:
        return None
    return MacenkoNormalizer().fit(_references(s, _root(cfg)))


test_normalizer.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def with_stain(stain: Callable[[Any], Any] | None, transform: Callable[[Any], Any] | None) -> Any:
    """``transform`` preceded by the Sample-level ``stain`` transform (either may be ``None``)."""
    if stain is None:
        return transform
    return stain if transform is None else Compose([stain, transform])


class _NormalizedPredict:
    def __init__(self, normalizer: MacenkoNormalizer, predict: Callable[[np.ndarray], np.ndarray]) -> None:
        self.normalizer = normalizer
        self.predict = predict

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.predict(self.normalizer.normalize(image))


def stain_predict(
    cfg: Mapping[str, Any], predict: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` with the test-time normalisation of ``cfg`` in front (``predict`` itself when off)."""
    normalizer = test_normalizer(cfg)
    return predict if normalizer is None else _NormalizedPredict(normalizer, predict)
