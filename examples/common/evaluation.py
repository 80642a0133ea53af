"""Scoring a trained recipe on NucFuse-test: checkpoint → whole-tile predictions → ``EvaluationReport`` files.

Inference is what the authors ran (``recipes.md`` §2.5): each test tile whole, normalised like the training
inputs, reflect-padded at the bottom/right to a multiple of 32, cropped back, then the HoVerNet post-processing
(§2.4, 40× preset); no test-time augmentation. ``eval.tile > 0`` switches to an overlapping sliding window
(``eval.overlap``) for large tiles or small GPUs, which is not what the paper did.

**What is scored** (:func:`evaluation_scope`): by default the NucFuse-test tiles of the datasets the checkpoint was
trained on (``data.datasets``, or the top-k names), selected with the training's ``data.test_ids`` so that they are
exactly the tiles the training left out. ``eval.datasets`` scores other datasets (``"nucfuse-test"``: the paper's
full NucFuse-test of 10 datasets) and ``eval.test_ids`` another selection; both are reported loudly
(:class:`EvaluationScopeWarning`, and on stderr by the command line). Synthetic sources are generated in a
temporary folder that is deleted afterwards, never in the data root (they are deterministic, so the tiles equal the
ones a synthetic training saw excluded).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from examples.common.checkpoint import load_checkpoint
from examples.common.distributed import resolve_device
from examples.common.spec import RecipeSpec, train_set_label
from examples.common.stain_option import stain_predict
from nucfuse_datasets import NucFuseTest
from nucfuse_datasets._registry import get_dataset_class
from nucfuse_datasets.benchmark.evaluation import EvaluationReport
from nucfuse_datasets.benchmark.protocol import DEFAULT_K, PAPER_RANKING, top_k
from nucfuse_datasets.errors import ArgumentError, NucFuseWarning
from nucfuse_datasets.transforms.postprocess import hv_watershed_params, predict_instances

__all__ = [
    "NUCFUSE_TEST",
    "EvaluationScope",
    "EvaluationScopeWarning",
    "evaluate_checkpoint",
    "evaluation_scope",
    "load_trained_model",
    "make_predict_fn",
]

#: ``eval.datasets`` value for the paper's full NucFuse-test (the 10 ranked datasets).
NUCFUSE_TEST = "nucfuse-test"


class EvaluationScopeWarning(NucFuseWarning):
    """The evaluation scores datasets (or a test-tile selection) other than the checkpoint's training ones."""


@dataclass(frozen=True)
class EvaluationScope:
    """What an evaluation scores, compared with what the checkpoint was trained on.

    Attributes:
        datasets: subset tag → dataset name to score.
        test_ids: the NucFuse-test selection used (``"pinned"`` or ``"rule"``).
        trained: subset tag → dataset name of the training.
        train_test_ids: the selection the training excluded.
        untrained: tags scored that the checkpoint was not trained on.
        message: a loud note when the scope differs from the training's (else ``""``).
    """

    datasets: dict[str, str]
    test_ids: str
    trained: dict[str, str]
    train_test_ids: str
    untrained: tuple[str, ...]
    message: str


def _entries(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(t): str(n) for t, n in value.items()}
    return {str(n): str(n) for n in value}


def evaluation_scope(cfg: Mapping[str, Any]) -> EvaluationScope:
    """Resolve ``eval.datasets``/``eval.test_ids`` against the training's ``data`` section.

    Example:
        >>> cfg = {"data": {"datasets": ["monuseg", "dsb2018"], "test_ids": "rule"}, "eval": {"datasets": []}}
        >>> scope = evaluation_scope(cfg)
        >>> scope.datasets, scope.test_ids, scope.message
        ({'monuseg': 'monuseg', 'dsb2018': 'dsb2018'}, 'rule', '')
        >>> cfg["eval"]["datasets"] = ["monuseg", "tnbc"]
        >>> evaluation_scope(cfg).untrained
        ('tnbc',)
    """
    data, ecfg = cfg.get("data", {}), cfg.get("eval", {})
    trained = _entries(data.get("datasets") or top_k(int(data.get("k", DEFAULT_K))))
    train_ids = str(data.get("test_ids") or "pinned")
    asked = ecfg.get("datasets") or []
    if isinstance(asked, str):
        asked = [asked]
    if list(asked) == [NUCFUSE_TEST]:
        datasets = _entries(PAPER_RANKING)
    elif asked:
        datasets = _entries(asked)
    else:
        datasets = dict(trained)
    test_ids = str(ecfg.get("test_ids") or train_ids)
    untrained = tuple(t for t, n in datasets.items() if trained.get(t) != n)
    notes = []
    if untrained:
        notes.append(
            f"scoring {len(untrained)} dataset(s) the checkpoint was NOT trained on: {', '.join(untrained)} "
            f"(trained on {', '.join(trained)}); omit eval.datasets / --datasets to score the training datasets' "
            "test tiles"
        )
    if test_ids != train_ids:
        notes.append(
            f"test tiles selected with test_ids={test_ids!r} while the training excluded the {train_ids!r} "
            "selection: some scored tiles may have been training tiles"
        )
    return EvaluationScope(datasets, test_ids, trained, train_ids, untrained, "; ".join(notes))


def _test_parts(
    scope: EvaluationScope, data: Mapping[str, Any], scratch: Path, progress: bool | None
) -> dict[str, Any]:
    """Tag → dataset name, or a synthetic dataset instance generated under ``scratch`` (never the data root)."""
    options = dict(data.get("dataset_options") or {})
    parts: dict[str, Any] = {}
    for tag, name in scope.datasets.items():
        cls = get_dataset_class(name)
        if cls.name == "synthetic":
            kwargs = dict(options.get(tag, options.get(cls.name, {})))
            parts[tag] = cls(root=scratch, split="all", progress=progress, **kwargs)
        else:
            parts[tag] = name
    return parts


def load_trained_model(
    spec: RecipeSpec, checkpoint: str | Path, device: torch.device
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the checkpoint's architecture (from its stored config), load its weights, ``eval()`` it.

    Accepts ``best.pt`` and ``last.pt``. Returns ``(model, checkpoint dict)``.

    Raises:
        ArgumentError: missing file or a checkpoint of the other recipe.
    """
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    if ckpt.get("recipe") != spec.name:
        raise ArgumentError(f"{checkpoint} is a {ckpt.get('recipe')!r} checkpoint, not {spec.name!r}")
    model = spec.build_model_quietly(ckpt["config"]["model"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def make_predict_fn(
    spec: RecipeSpec,
    model: nn.Module,
    recipe: Any,
    device: torch.device,
    *,
    tile: int = 0,
    overlap: int = 64,
) -> Callable[[np.ndarray], np.ndarray]:
    """``predict_fn(uint8 H×W×3) -> int32 H×W`` for :meth:`NucFuseTest.evaluate` (whole tile unless ``tile > 0``)."""
    fn = spec.infer_fn(model.eval())
    params = hv_watershed_params(int(recipe.magnification))

    def predict(image: np.ndarray) -> np.ndarray:
        return predict_instances(  # type: ignore[return-value]
            fn,
            image,
            mean=recipe.mean,
            std=recipe.std,
            tile=int(tile) if tile else None,
            overlap=int(overlap),
            device=device,
            **params,
        )

    return predict


def evaluate_checkpoint(
    spec: RecipeSpec,
    checkpoint: str | Path,
    cfg: Mapping[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[EvaluationReport, dict[str, Path]]:
    """Evaluate a checkpoint on NucFuse-test and write ``report.{json,csv,md}``.

    Args:
        spec: the recipe.
        checkpoint: ``best.pt`` (or ``last.pt``).
        cfg: configuration whose ``data`` (root, dataset options, training datasets), ``eval`` and
            ``train.device``/``train.train_set`` sections are used; default: the checkpoint's own. What is scored
            follows :func:`evaluation_scope`.
        out: report folder (default ``eval.out``, else ``<checkpoint folder>/eval``).
        progress: progress bar.

    Returns:
        ``(report, paths of the written files)``.
    """
    ckpt_path = Path(checkpoint)
    device = resolve_device(str((cfg or {}).get("train", {}).get("device", "auto")))
    model, ckpt = load_trained_model(spec, ckpt_path, device)
    cfg = dict(cfg or ckpt["config"])
    recipe = spec.recipe(cfg)
    data, ecfg = cfg["data"], cfg["eval"]
    scope = evaluation_scope(cfg)
    if scope.message:
        warnings.warn(EvaluationScopeWarning(scope.message), stacklevel=2)
    predict = make_predict_fn(
        spec, model, recipe, device, tile=int(ecfg.get("tile") or 0), overlap=int(ecfg.get("overlap", 64))
    )
    predict = stain_predict(cfg, predict)  # data.stain: Avg-post normalisation of the test tiles
    label = str(cfg.get("train", {}).get("train_set") or ckpt.get("train_set") or train_set_label(cfg))
    with tempfile.TemporaryDirectory(prefix="nucfuse-eval-") as scratch:
        test = NucFuseTest(
            data.get("root") or None,
            download=bool(data.get("download", False)),
            datasets=_test_parts(scope, data, Path(scratch), progress),
            test_ids=scope.test_ids,
            dataset_options=data.get("dataset_options") or None,
            progress=progress,
        )
        report = test.evaluate(predict, model=spec.model_label, train_set=label, progress=progress)
    report.meta.update(
        {
            "checkpoint": str(ckpt_path),
            "checkpoint_epoch": int(ckpt.get("epoch", 0)),
            "recipe": spec.name,
            "inference": "whole tile, reflect-pad to 32" if not ecfg.get("tile") else "sliding window",
            "device": str(device),
            "trained_on": scope.trained,
            "test_ids": scope.test_ids,
            "scope_note": scope.message,
        }
    )
    folder = Path(out or ecfg.get("out") or ckpt_path.parent / "eval")
    paths = report.save(folder)
    return report, paths
