"""Scoring a trained recipe on NucFuse-test: checkpoint → whole-tile predictions → ``EvaluationReport`` files.

Inference is what the authors ran (``recipes.md`` §2.5): each test tile whole, normalised like the training
inputs, reflect-padded at the bottom/right to a multiple of 32, cropped back, then the HoVerNet post-processing
(§2.4, 40× preset); no test-time augmentation. ``eval.tile > 0`` switches to an overlapping sliding window
(``eval.overlap``) for large tiles or small GPUs, which is not what the paper did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from examples.common.checkpoint import load_checkpoint
from examples.common.distributed import resolve_device
from examples.common.spec import RecipeSpec, train_set_label
from nucfuse_datasets import NucFuseTest
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.evaluation import EvaluationReport
from nucfuse_datasets.postprocess import hv_watershed_params, predict_instances

__all__ = ["evaluate_checkpoint", "load_trained_model", "make_predict_fn"]


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
        cfg: configuration whose ``data`` (root, dataset options), ``eval`` and ``train.device``/``train.train_set``
            sections are used; default: the checkpoint's own.
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
    test = NucFuseTest(
        data.get("root") or None,
        download=bool(data.get("download", False)),
        datasets=ecfg.get("datasets") or None,
        test_ids=str(ecfg.get("test_ids", "pinned")),
        dataset_options=data.get("dataset_options") or None,
        progress=progress,
    )
    predict = make_predict_fn(
        spec, model, recipe, device, tile=int(ecfg.get("tile") or 0), overlap=int(ecfg.get("overlap", 64))
    )
    label = str(cfg.get("train", {}).get("train_set") or ckpt.get("train_set") or train_set_label(cfg))
    report = test.evaluate(predict, model=spec.model_label, train_set=label, progress=progress)
    report.meta.update(
        {
            "checkpoint": str(ckpt_path),
            "checkpoint_epoch": int(ckpt.get("epoch", 0)),
            "recipe": spec.name,
            "inference": "whole tile, reflect-pad to 32" if not ecfg.get("tile") else "sliding window",
            "device": str(device),
        }
    )
    folder = Path(out or ecfg.get("out") or ckpt_path.parent / "eval")
    paths = report.save(folder)
    return report, paths
