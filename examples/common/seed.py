"""Seeding as in both recipes (seed 42 for ``random``, numpy and torch; cuDNN deterministic)."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int = 42, *, deterministic: bool = True) -> None:
    """Seed ``random``, numpy and torch (CPU and CUDA); optionally make cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
