"""HoVerNeXt loss as run in NucFuseRank (``recipes.md`` §2.2).

L = 0.33 · [MSE(out[0:2], hv) + CE_w(out[2:5], three_class; w = (1, 1, 2))]
  + 0.33 · BCEWithLogits(out[5], np) + 0.33 · SoftDice(σ(out[5]), np)

* the MSE covers every pixel, background included;
* CE_w is PyTorch's weighted cross-entropy (weighted mean over pixels);
* the soft Dice is per sample, then averaged: 1 − mean_b (2Σpt + 1e-5) / (Σp + Σt + 1e-5).

The FocalTversky loss the original instantiates is unused there, so it is not here either.

Class-aware variant (not the paper's; a model with ``K + 1`` type logits after the NP logit, see
:mod:`examples.hovernext.model`): upstream HoVerNeXt's class loss is added as one more term,

  + type_weight · FocalCE_γ(out[6:], type_map),  FocalCE_γ = mean_{b,c,y,x} [−(1 − p_c)^γ · log p_c · (t_c + 1e-6)]

with p = softmax over the K + 1 type logits, t the one-hot ``type_map`` (0 = background), γ = 2 and the mean taken
over batch, *classes* and pixels, as upstream's ``FocalLoss(alpha=None, gamma=2, reduction="mean")``
(``hover_next_train`` ``src/focal_loss.py``, kornia's formula with its 1e-6 one-hot offset). Upstream weighs it
against its instance loss as (1 − λ) : λ with λ = 0.1 (PanNuke); here it joins the NucFuseRank loss as one more
term at the recipe's per-term weight 0.33 (``type_weight``; an interpretation, since the other terms are the
NucFuseRank ones and not upstream's).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from examples.hovernext.model import HV_CHANNELS, NP_CHANNEL, THREE_CLASS_CHANNELS, TYPE_CHANNELS
from nucfuse_datasets.errors import ArgumentError

__all__ = ["HoVerNeXtLoss", "focal_ce_loss", "soft_dice_loss"]

TERM_WEIGHT = 0.33
CLASS_WEIGHTS = (1.0, 1.0, 2.0)


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample soft Dice loss ``1 − mean_b (2Σpt + eps) / (Σp + Σt + eps)``.

    Args:
        prob: ``B×H×W`` (or ``B×…``) probabilities.
        target: same shape, {0, 1}.
        eps: smoothing.
    """
    p = prob.reshape(prob.shape[0], -1)
    t = target.reshape(target.shape[0], -1).to(p.dtype)
    dice = (2.0 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)
    return 1.0 - dice.mean()


def focal_ce_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, eps: float = 1e-6) -> torch.Tensor:
    """Upstream HoVerNeXt's class loss: ``mean_{b,c,y,x} [−(1 − p_c)^γ · log p_c · (t_c + eps)]``.

    Args:
        logits: ``B×C×H×W`` class logits (``p = softmax`` over C).
        target: ``B×H×W`` class ids in ``0..C-1``.
        gamma: focal exponent (2).
        eps: the offset added to every entry of the one-hot target (kornia's, 1e-6).
    """
    logp = torch.log_softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype) + eps
    return (-((1.0 - logp.exp()) ** gamma) * logp * onehot).mean()


class HoVerNeXtLoss(nn.Module):
    """The NucFuseRank HoVerNeXt loss on the model's ``B×6×H×W`` output.

    Args:
        term_weight: weight of each of the three terms (0.33).
        class_weights: 3-class cross-entropy weights (1, 1, 2): borders count double.
        hv_weight: multiplies the HV MSE inside the first term (1, as run). Not the paper's when ≠ 1: the CPU
            configuration raises it because the shared instance decoder otherwise learns HV too slowly for the
            HoVerNet post-processing to find markers (see ``docs/recipes.md``).
        type_weight: weight of the class-aware model's type term (:func:`focal_ce_loss`; see the module).
        focal_gamma: its focal exponent (2, upstream's).

    ``forward(output, targets)`` takes ``targets`` with ``hv`` (``B×2×H×W`` float),
    ``three_class`` (``B×H×W`` integer) and ``np`` (``B×H×W`` {0, 1}), and for a class-aware model's output
    (more than 6 channels) ``type_map`` (``B×H×W`` class ids); it returns the total,
    or ``(total, components)`` with ``return_components=True``.
    """

    def __init__(
        self,
        term_weight: float = TERM_WEIGHT,
        class_weights: tuple[float, float, float] = CLASS_WEIGHTS,
        hv_weight: float = 1.0,
        type_weight: float = TERM_WEIGHT,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        self.term_weight = term_weight
        self.hv_weight = hv_weight
        self.type_weight = type_weight
        self.focal_gamma = focal_gamma
        self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32))

    def forward(
        self,
        output: torch.Tensor,
        targets: Mapping[str, torch.Tensor],
        *,
        return_components: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        output = output.float()  # losses in float32 even under autocast
        hv = targets["hv"].to(output.dtype)
        three = targets["three_class"].long()
        fg = targets["np"].to(output.dtype)
        np_logit = output[:, NP_CHANNEL]
        parts = {
            "hv_mse": F.mse_loss(output[:, HV_CHANNELS], hv),
            "three_class_ce": F.cross_entropy(
                output[:, THREE_CLASS_CHANNELS], three, weight=self.class_weights.to(output.dtype)
            ),
            "np_bce": F.binary_cross_entropy_with_logits(np_logit, fg),
            "np_dice": soft_dice_loss(torch.sigmoid(np_logit), fg),
        }
        w = self.term_weight
        hv = self.hv_weight * parts["hv_mse"]
        total = w * (hv + parts["three_class_ce"]) + w * parts["np_bce"] + w * parts["np_dice"]
        if output.shape[1] > NP_CHANNEL + 1:  # a class-aware model: the type logits follow the NP logit
            if "type_map" not in targets:
                raise ArgumentError(
                    "a class-aware HoVerNeXt needs the type_map target (HoVerNetTargets(type_map=True))"
                )
            parts["type_focal_ce"] = focal_ce_loss(output[:, TYPE_CHANNELS], targets["type_map"], self.focal_gamma)
            total = total + self.type_weight * parts["type_focal_ce"]
        return (total, parts) if return_components else total
