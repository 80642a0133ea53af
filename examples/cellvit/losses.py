"""CellViT loss as run in NucFuseRank (``recipes.md`` §2.3).

| branch | term | weight |
|---|---|---|
| ``nuclei_binary_map`` | FocalTversky (α 0.7 on FN, β 0.3 on FP, γ 4/3, smooth 1e-6) | 1 |
| ``nuclei_binary_map`` | Dice (smooth 1e-3) | 1 |
| ``hv_map`` | MSE | 2.5 |
| ``hv_map`` | MSGE (5×5 gradient kernel, GT nucleus mask) | 8 |
| ``nuclei_type_map`` | cross-entropy on probabilities (clamped at 1e-7) | 0.5 |
| ``nuclei_type_map`` | Dice | 0.2 |
| ``nuclei_type_map`` | multi-class FocalTversky (per class, averaged) | 0.5 |

The two segmentation branches are softmaxed before the losses. **Double softmax:** the
original's FocalTversky losses apply a softmax *again* to those probabilities, i.e. they see
``softmax(softmax(logits))``. This re-implementation **keeps** that quirk by default
(``double_softmax=True``) because the paper's numbers were obtained with it; pass
``double_softmax=False`` for the corrected single softmax. The Dice and cross-entropy terms see
the single softmax either way.

Reductions (our reading of the description): FocalTversky and Dice are batch-global, with the
sums taken over the batch, the pixels *and* the channels of the one-hot target; the
multi-class FocalTversky computes one batch-global Tversky index per class and averages
``(1 − T_c)^γ`` over the classes. MSE and cross-entropy are pixel means. MSGE is HoVerNet's:
the horizontal gradient of the H map and the vertical gradient of the V map, each with the
5×5 kernel ``k(x, y) = x / (x² + y²)`` (resp. ``y / (x² + y²)``, 0 at the centre, zero
padding), squared difference averaged over the GT nucleus pixels of both channels.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CellViTLoss",
    "dice_loss",
    "focal_tversky_loss",
    "gradient_kernels",
    "mc_focal_tversky_loss",
    "msge_loss",
    "xentropy_loss",
]

WEIGHTS = {
    "np_focal_tversky": 1.0,
    "np_dice": 1.0,
    "hv_mse": 2.5,
    "hv_msge": 8.0,
    "type_ce": 0.5,
    "type_dice": 0.2,
    "type_mc_focal_tversky": 0.5,
}


def _tversky_index(prob: torch.Tensor, target: torch.Tensor, alpha: float, beta: float, smooth: float) -> torch.Tensor:
    tp = (prob * target).sum()
    fn = (target * (1.0 - prob)).sum()
    fp = ((1.0 - target) * prob).sum()
    return (tp + smooth) / (tp + alpha * fn + beta * fp + smooth)


def focal_tversky_loss(
    prob: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.7,
    beta: float = 0.3,
    gamma: float = 4.0 / 3.0,
    smooth: float = 1e-6,
) -> torch.Tensor:
    """Batch-global focal Tversky loss ``(1 − T)^γ`` over every element.

    Args:
        prob: ``B×C×H×W`` probabilities.
        target: ``B×C×H×W`` one-hot target.
        alpha: weight of false negatives.
        beta: weight of false positives.
        gamma: focal exponent.
        smooth: smoothing.
    """
    t = _tversky_index(prob, target.to(prob.dtype), alpha, beta, smooth)
    return (1.0 - t).clamp_min(0.0) ** gamma


def mc_focal_tversky_loss(
    prob: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.7,
    beta: float = 0.3,
    gamma: float = 4.0 / 3.0,
    smooth: float = 1e-6,
) -> torch.Tensor:
    """Multi-class focal Tversky: one batch-global Tversky index per class, focal terms averaged."""
    tgt = target.to(prob.dtype)
    losses = [
        (1.0 - _tversky_index(prob[:, c], tgt[:, c], alpha, beta, smooth)).clamp_min(0.0) ** gamma
        for c in range(prob.shape[1])
    ]
    return torch.stack(losses).mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, *, smooth: float = 1e-3) -> torch.Tensor:
    """Batch-global soft Dice loss with sums over batch, channels and pixels."""
    t = target.to(prob.dtype)
    inter = (prob * t).sum()
    return 1.0 - (2.0 * inter + smooth) / (prob.sum() + t.sum() + smooth)


def xentropy_loss(prob: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-7) -> torch.Tensor:
    """Cross-entropy on probabilities: ``−mean_pixels Σ_c t_c log(clamp(p_c, eps, 1 − eps))``."""
    p = prob.clamp(eps, 1.0 - eps)
    return -(target.to(p.dtype) * torch.log(p)).sum(1).mean()


def gradient_kernels(size: int = 5, *, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """HoVerNet's ``size×size`` gradient kernels ``x / (x² + y²)`` and ``y / (x² + y²)``.

    ``x`` is the column offset and ``y`` the row offset from the centre; the centre is 0.
    """
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    y, x = torch.meshgrid(r, r, indexing="ij")
    denom = x * x + y * y
    denom[denom == 0] = 1.0
    return (x / denom).to(dtype), (y / denom).to(dtype)


def _grad(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    k = kernel.to(maps.dtype).to(maps.device)[None, None]
    return F.conv2d(maps[:, None], k, padding=kernel.shape[-1] // 2)[:, 0]


def msge_loss(pred_hv: torch.Tensor, true_hv: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """Mean squared error of HV gradients inside the GT nuclei (HoVerNet's MSGE).

    Args:
        pred_hv: ``B×2×H×W`` predicted (h, v).
        true_hv: ``B×2×H×W`` target (h, v).
        focus: ``B×H×W`` GT nucleus mask.
    """
    kh, kv = gradient_kernels(5)
    pred_grad = torch.stack([_grad(pred_hv[:, 0], kh), _grad(pred_hv[:, 1], kv)], dim=1)
    true_grad = torch.stack([_grad(true_hv[:, 0], kh), _grad(true_hv[:, 1], kv)], dim=1)
    f = focus.to(pred_hv.dtype)[:, None].expand_as(pred_grad)
    return (f * (pred_grad - true_grad) ** 2).sum() / (f.sum() + 1e-8)


class CellViTLoss(nn.Module):
    """The NucFuseRank CellViT loss on the model's dict of logits.

    Args:
        weights: per-term weight overrides (defaults: ``WEIGHTS``; a weight of 0 disables a term).
        double_softmax: feed FocalTversky ``softmax(softmax(logits))`` as the original did
            (default ``True``); ``False`` uses the single softmax.

    ``forward(output, targets)`` takes ``output`` from :class:`~examples.cellvit.model.CellViT256`
    and ``targets`` with ``np`` (``B×H×W`` {0, 1}), ``hv`` (``B×2×H×W``) and optionally
    ``type_map`` (``B×H×W`` integer class ids; defaults to ``np``, as in the binary setting).
    It returns the total, or ``(total, components)`` with ``return_components=True``.
    """

    def __init__(self, weights: Mapping[str, float] | None = None, *, double_softmax: bool = True) -> None:
        super().__init__()
        unknown = set(weights or {}) - set(WEIGHTS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}; valid: {sorted(WEIGHTS)}")
        self.weights = {**WEIGHTS, **(weights or {})}
        self.double_softmax = double_softmax

    def forward(
        self,
        output: Mapping[str, torch.Tensor],
        targets: Mapping[str, torch.Tensor],
        *,
        return_components: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # Losses in float32 (the recipe trains under fp16 autocast).
        np_logits = output["nuclei_binary_map"].float()
        type_logits = output["nuclei_type_map"].float()
        hv = output["hv_map"].float()
        fg = targets["np"].long()
        type_map = targets.get("type_map", fg).long()
        np_onehot = F.one_hot(fg, np_logits.shape[1]).permute(0, 3, 1, 2).to(np_logits.dtype)
        type_onehot = F.one_hot(type_map, type_logits.shape[1]).permute(0, 3, 1, 2).to(type_logits.dtype)
        np_prob = torch.softmax(np_logits, dim=1)
        type_prob = torch.softmax(type_logits, dim=1)
        np_ft_in = torch.softmax(np_prob, dim=1) if self.double_softmax else np_prob
        type_ft_in = torch.softmax(type_prob, dim=1) if self.double_softmax else type_prob
        true_hv = targets["hv"].to(hv.dtype)
        parts = {
            "np_focal_tversky": focal_tversky_loss(np_ft_in, np_onehot),
            "np_dice": dice_loss(np_prob, np_onehot),
            "hv_mse": F.mse_loss(hv, true_hv),
            "hv_msge": msge_loss(hv, true_hv, fg),
            "type_ce": xentropy_loss(type_prob, type_onehot),
            "type_dice": dice_loss(type_prob, type_onehot),
            "type_mc_focal_tversky": mc_focal_tversky_loss(type_ft_in, type_onehot),
        }
        total = sum((self.weights[k] * v for k, v in parts.items()), torch.zeros((), device=hv.device))
        return (total, parts) if return_components else total
