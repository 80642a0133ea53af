"""CellViT's hooks for the shared training/evaluation machinery (``recipes.md`` §2.3, §7.3).

* data: NucFuse-train patches; per-sample augmentation (:class:`~examples.cellvit.augment.CellViTAugment`), then
  the targets (NP, HV) from the augmented instance map, normalised with mean = std = 0.5; uniform sampling with
  replacement, ``num_samples = len(train)``; train ``num_workers = 1``, validation batch 10;
* AdamW 3e-4, betas (0.85, 0.95), weight decay 1e-4; ExponentialLR γ = 0.95 stepped once per epoch; fp16 autocast
  + GradScaler on CUDA (fp32 on CPU); no gradient clipping;
* encoder frozen in the 0-based epochs 0–24;
* early stopping after 130 epochs without a strict improvement of the validation bPQ (binary PQ = PQ here);
  ``best.pt`` is written whenever the bPQ is ≥ the best so far, as CellViT keeps ``model_best``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from examples.cellvit import recipe as crecipe
from examples.cellvit.augment import CellViTAugment
from examples.cellvit.losses import CellViTLoss
from examples.cellvit.model import CellViT256, cellvit_infer_fn
from examples.common.distributed import DistEnv
from examples.common.early_stopping import EarlyStopping
from examples.common.pretrained import resolve_pretrained
from examples.common.spec import RecipeSpec, replacement_sampler
from examples.common.transforms import Compose, ToTensors
from nucfuse_datasets.targets import NucleusTargets
from nucfuse_datasets.weights import hipt_vit256_weights

__all__ = ["SPEC", "CellViTSpec"]


class CellViTSpec(RecipeSpec):
    """CellViT-256 as run in NucFuseRank."""

    name = "cellvit"
    model_label = "CellViT"
    default_recipe = crecipe.RECIPE
    first_epoch = 0

    def default_model_config(self) -> dict[str, Any]:
        return {
            "encoder_name": "vit_small_patch16_224",
            "decoder_widths": [312, 256, 128, 64],
            "num_nuclei_classes": 2,
            "drop_path_rate": 0.1,
            "attn_drop_rate": 0.1,
            "drop_rate": 0.0,
        }

    def build_model(
        self, model_cfg: Mapping[str, Any], *, load_pretrained: bool = True, root: str | None = None
    ) -> nn.Module:
        pretrained = resolve_pretrained(self, model_cfg, root) if load_pretrained else None
        cfg = {k: v for k, v in model_cfg.items() if k != "pretrained"}
        if "decoder_widths" in cfg:
            cfg["decoder_widths"] = tuple(cfg["decoder_widths"])
        return CellViT256(pretrained_path=pretrained, **cfg)

    def fetch_pretrained(self, folder: Path) -> Path:
        return hipt_vit256_weights(folder)

    def loss_fn(self, recipe: Any) -> nn.Module:
        return CellViTLoss(double_softmax=True)

    def infer_fn(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        return cellvit_infer_fn(model)

    def train_transform(self, recipe: Any, cfg: Mapping[str, Any]) -> Callable[[Any], Any] | None:
        return Compose([CellViTAugment(), NucleusTargets(), ToTensors(recipe.mean, recipe.std)])

    def val_transform(self, recipe: Any) -> Callable[[Any], Any]:
        return Compose([NucleusTargets(), ToTensors(recipe.mean, recipe.std)])

    def train_sampler(self, dataset: Dataset[Any], recipe: Any, env: DistEnv) -> Sampler[int] | None:
        if recipe.sample_with_replacement:
            return replacement_sampler(dataset, recipe, env)
        return super().train_sampler(dataset, recipe, env)

    def make_optimizer(self, model: nn.Module, recipe: Any) -> torch.optim.Optimizer:
        return crecipe.make_optimizer(model, recipe)

    def make_scheduler(self, optimizer: torch.optim.Optimizer, recipe: Any) -> Any:
        return crecipe.make_scheduler(optimizer, recipe)

    def encoder_frozen(self, epoch_index: int, recipe: Any) -> bool:
        return crecipe.encoder_frozen(epoch_index, recipe)

    def scheduler_step(self, scheduler: Any, val_pq: float) -> None:
        scheduler.step()

    def early_stopping(self, recipe: Any, cfg: Mapping[str, Any], n_sources: int) -> EarlyStopping:
        patience = int(cfg["train"].get("early_stop_patience") or 0) or recipe.early_stop_patience
        return EarlyStopping(patience, stop_when_exceeds=False, save_on_tie=True)


SPEC = CellViTSpec()
