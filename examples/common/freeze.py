"""Encoder freezing for the recipes' warm-up epochs.

Both recipes freeze the pretrained encoder at the start: HoVerNeXt while the 1-based epoch is
< 25 (epochs 1–24), CellViT while the 0-based epoch is < 25 (epochs 0–24). Freezing only sets
``requires_grad``; neither encoder has BatchNorm, so no running statistics need pinning.
"""

from __future__ import annotations

from torch import nn

__all__ = ["set_requires_grad", "trainable_parameters"]


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Set ``requires_grad`` of every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(flag)


def trainable_parameters(module: nn.Module) -> int:
    """Number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
