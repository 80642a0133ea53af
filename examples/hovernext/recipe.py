"""HoVerNeXt training hyperparameters as run in NucFuseRank (``recipes.md`` §2.2, §7.2).

The constants phase 2's training loop reads, with the optimiser and scheduler factories.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from examples.common.transforms import IMAGENET_MEAN, IMAGENET_STD
from nucfuse_datasets.errors import ArgumentError

__all__ = ["RECIPE", "HoVerNeXtRecipe", "encoder_frozen", "make_optimizer", "make_scheduler"]


@dataclass(frozen=True)
class HoVerNeXtRecipe:
    """Every constant of the HoVerNeXt recipe (see ``examples/README.md``)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0  # the original's `weight_decay=0.7` argument is the plateau factor
    plateau_factor: float = 0.7
    plateau_patience: int = 15
    plateau_cooldown: int = 5
    min_lr: float = 5e-8
    grad_clip_norm: float = 1.0
    amp: bool = False
    batch_size: int = 5
    val_batch_size: int = 1
    num_workers: int = 0
    epochs: int = 300
    frozen_until_epoch: int = 25  # 1-based epochs 1..24 frozen
    early_stop_single: int = 100  # stop once epochs without improvement exceed this
    early_stop_fused: int = 50
    augment_p: float = 0.7
    seed: int = 42
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    magnification: int = 40  # post-processing preset for every dataset
    hv_weight: float = 1.0  # multiplies the HV MSE term (1 = as run); CPU configuration only
    schedule: str = "plateau"  # "plateau" as run; "cosine" (per epoch to min_lr) for short CPU runs, not the paper's
    type_weight: float = 0.33  # class-aware training only (data.classes): weight of the type head's focal CE
    focal_gamma: float = 2.0  # ... and its focal exponent (upstream HoVerNeXt's fl_gamma)


RECIPE = HoVerNeXtRecipe()


def encoder_frozen(epoch_1based: int, recipe: HoVerNeXtRecipe = RECIPE) -> bool:
    """Whether the encoder is frozen in this 1-based epoch (1–24 with the defaults)."""
    return epoch_1based < recipe.frozen_until_epoch


def make_optimizer(model: nn.Module, recipe: HoVerNeXtRecipe = RECIPE) -> torch.optim.Optimizer:
    """Adam over all parameters (frozen ones simply get no gradient), no weight decay."""
    return torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, recipe: HoVerNeXtRecipe = RECIPE
) -> torch.optim.lr_scheduler.ReduceLROnPlateau | torch.optim.lr_scheduler.CosineAnnealingLR:
    """ReduceLROnPlateau on validation PQ (mode max); call ``step(val_pq)`` once per epoch.

    ``recipe.schedule == "cosine"`` (not the paper's; for short CPU runs): cosine decay from ``lr`` to ``min_lr``
    over ``epochs``, stepped once per epoch with ``step()``.
    """
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, recipe.epochs), eta_min=recipe.min_lr)
    if recipe.schedule != "plateau":
        raise ArgumentError(f"recipe.schedule must be 'plateau' or 'cosine', got {recipe.schedule!r}")
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="max",
        factor=recipe.plateau_factor,
        patience=recipe.plateau_patience,
        cooldown=recipe.plateau_cooldown,
        min_lr=recipe.min_lr,
    )
