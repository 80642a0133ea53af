"""CellViT training hyperparameters as run in NucFuseRank (``recipes.md`` §2.3, §7.3).

The constants phase 2's training loop reads, with the optimiser and scheduler factories.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from examples.common.transforms import HALF_MEAN, HALF_STD

__all__ = ["RECIPE", "CellViTRecipe", "encoder_frozen", "make_optimizer", "make_scheduler"]


@dataclass(frozen=True)
class CellViTRecipe:
    """Every constant of the CellViT recipe (see ``examples/README.md``)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.85, 0.95)
    weight_decay: float = 1e-4
    gamma: float = 0.95  # effective ExponentialLR gamma (the YAML's 0.85 is never read)
    amp: bool = True
    grad_clip_norm: float | None = None
    batch_size: int = 5
    val_batch_size: int = 10
    num_workers: int = 1
    epochs: int = 300
    frozen_until_epoch: int = 25  # 0-based epochs 0..24 frozen
    early_stop_patience: int = 130  # on validation bPQ, maximised
    sample_with_replacement: bool = True  # uniform weights, num_samples = len(train)
    seed: int = 42
    mean: tuple[float, float, float] = HALF_MEAN
    std: tuple[float, float, float] = HALF_STD
    magnification: int = 40


RECIPE = CellViTRecipe()


def encoder_frozen(epoch_0based: int, recipe: CellViTRecipe = RECIPE) -> bool:
    """Whether the encoder is frozen in this 0-based epoch (0–24 with the defaults)."""
    return epoch_0based < recipe.frozen_until_epoch


def make_optimizer(model: nn.Module, recipe: CellViTRecipe = RECIPE) -> torch.optim.Optimizer:
    """AdamW over all parameters (frozen ones get no gradient and no decay step)."""
    return torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, recipe: CellViTRecipe = RECIPE
) -> torch.optim.lr_scheduler.ExponentialLR:
    """ExponentialLR, stepped once per epoch: lr(e) = 3e-4 · 0.95^e."""
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=recipe.gamma)
