"""CellViT's hooks for the shared training/evaluation machinery (``recipes.md`` §2.3, §7.3).

* data: NucFuse-train patches; per-sample augmentation (:class:`~examples.cellvit.augment.CellViTAugment`), then
  the targets (NP, HV) from the augmented instance map, normalised with mean = std = 0.5; uniform sampling with
  replacement, ``num_samples = len(train)``; train ``num_workers = 1``, validation batch 10;
* AdamW 3e-4, betas (0.85, 0.95), weight decay 1e-4; ExponentialLR γ = 0.95 stepped once per epoch; fp16 autocast
  + GradScaler on CUDA (fp32 on CPU); no gradient clipping;
* encoder frozen in the 0-based epochs 0–24;
* early stopping after 130 epochs without a strict improvement of the validation bPQ (binary PQ = PQ here);
  ``best.pt`` is written whenever the bPQ is ≥ the best so far, as CellViT keeps ``model_best``.

Class-aware training (``data.classes``, not the paper's; :mod:`examples.common.classes`): upstream CellViT's
setting, ``num_nuclei_classes = K + 1`` and the ``type_map`` target (background + the grouping's K classes) for
the type branch's CE + Dice + multi-class FocalTversky terms, which the binary recipe trains on ``np`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn
from torch.utils.data import Dataset, Sampler

from examples.cellvit import recipe as crecipe
from examples.cellvit.augment import CellViTAugment
from examples.cellvit.losses import CellViTLoss
from examples.cellvit.model import CellViT256, cellvit_infer_fn
from examples.common.classes import class_setting
from examples.common.distributed import DistEnv
from examples.common.spec import RecipeSpec, replacement_sampler
from examples.common.transforms import Compose, ToTensors
from nucfuse_datasets.transforms.targets import NucleusTargets
from nucfuse_datasets.weights import hipt_vit256_weights

__all__ = ["SPEC", "CellViTSpec"]


class CellViTSpec(RecipeSpec):
    """CellViT-256 as run in NucFuseRank: what differs from the shared runner's defaults."""

    name = "cellvit"
    model_label = "CellViT"
    default_recipe = crecipe.RECIPE
    first_epoch = 0  # encoder frozen in the 0-based epochs 0..24
    model_class = CellViT256
    sequence_keys = ("decoder_widths",)
    weights = staticmethod(hipt_vit256_weights)
    targets = NucleusTargets
    optimizer = staticmethod(crecipe.make_optimizer)
    scheduler = staticmethod(crecipe.make_scheduler)
    infer = staticmethod(cellvit_infer_fn)
    stop_when_exceeds = False
    save_on_tie = True

    def default_model_config(self) -> dict[str, Any]:
        return {
            "encoder_name": "vit_small_patch16_224",
            "decoder_widths": [312, 256, 128, 64],
            "num_nuclei_classes": 2,
            "drop_path_rate": 0.1,
            "attn_drop_rate": 0.1,
            "drop_rate": 0.0,
        }

    def class_model_config(self, n_classes: int) -> dict[str, Any]:
        return {"num_nuclei_classes": n_classes + 1}  # background + K, as upstream CellViT (6 for PanNuke)

    def loss_fn(self, recipe: Any) -> nn.Module:
        return CellViTLoss(double_softmax=True)

    def train_transform(self, recipe: Any, cfg: Mapping[str, Any]) -> Callable[[Any], Any] | None:
        targets = NucleusTargets(type_map=class_setting(cfg) is not None)
        return Compose([CellViTAugment(), targets, ToTensors(recipe.mean, recipe.std)])

    def train_sampler(self, dataset: Dataset[Any], recipe: Any, env: DistEnv) -> Sampler[int] | None:
        if recipe.sample_with_replacement:
            return replacement_sampler(dataset, recipe, env)
        return super().train_sampler(dataset, recipe, env)


SPEC = CellViTSpec()
