"""HoVerNeXt's hooks for the shared training/evaluation machinery (``recipes.md`` §2.2, §7.2).

* data: NucFuse-train patches, ImageNet normalisation; augmentation p = 0.7 **per batch** as run (one coin flip
  and one affine per batch in the ``collate_fn``, :class:`~examples.hovernext.augment.HoVerNeXtBatchAugment`;
  ``train.batch_augment = false`` draws them per sample instead), then the targets (NP, HV, 3-class) from the
  augmented instance map; shuffled, ``num_workers = 0``;
* Adam 1e-4, no weight decay; ReduceLROnPlateau (max, 0.7, patience 15, cooldown 5, min 5e-8) stepped with the
  validation PQ; gradient clipping at norm 1.0; fp32;
* encoder frozen in the 1-based epochs 1–24;
* early stopping once the epochs without a strict improvement of the validation PQ exceed 100 (one source
  dataset) or 50 (fused sets); ``best.pt`` holds the best-PQ weights.

Class-aware training (``data.classes``, not the paper's; :mod:`examples.common.classes`): the "cls" head gets
``K + 2`` channels (the NP logit, then ``K + 1`` type logits as upstream HoVerNeXt's class head), the targets a
``type_map`` and the loss upstream's focal cross-entropy on the type logits (:mod:`examples.hovernext.losses`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn
from torch.utils.data import default_collate

from examples.common.classes import class_setting
from examples.common.spec import RecipeSpec
from examples.common.transforms import Compose, ToTensors
from examples.hovernext import recipe as hrecipe
from examples.hovernext.augment import HoVerNeXtAugment, HoVerNeXtBatchAugment
from examples.hovernext.losses import HoVerNeXtLoss
from examples.hovernext.model import HoVerNeXt, hovernext_infer_fn
from nucfuse_datasets.schema import Sample
from nucfuse_datasets.transforms.targets import HoVerNetTargets
from nucfuse_datasets.weights import convnextv2_weights

__all__ = ["SPEC", "BatchAugmentCollate", "HoVerNeXtSpec"]


class BatchAugmentCollate:
    """``collate_fn``: per-batch augmentation of the Samples, then targets and tensors, then default collation."""

    def __init__(self, augment: HoVerNeXtBatchAugment, to_tensors: Callable[[Sample], dict[str, Any]]) -> None:
        self.augment = augment
        self.to_tensors = to_tensors

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any]:
        return default_collate([self.to_tensors(s) for s in self.augment(samples)])

    def __repr__(self) -> str:
        return f"BatchAugmentCollate({self.augment!r}, {self.to_tensors!r})"


class HoVerNeXtSpec(RecipeSpec):
    """HoVerNeXt as run in NucFuseRank: what differs from the shared runner's defaults."""

    name = "hovernext"
    model_label = "HoVerNeXt"
    default_recipe = hrecipe.RECIPE
    first_epoch = 1  # encoder frozen in the 1-based epochs 1..24
    model_class = HoVerNeXt
    sequence_keys = ("decoder_channels",)
    weights = staticmethod(convnextv2_weights)
    targets = HoVerNetTargets
    optimizer = staticmethod(hrecipe.make_optimizer)
    scheduler = staticmethod(hrecipe.make_scheduler)
    infer = staticmethod(hovernext_infer_fn)
    stop_when_exceeds = True
    save_on_tie = False

    def default_model_config(self) -> dict[str, Any]:
        return {
            "encoder_name": "convnextv2_tiny",
            "decoder_channels": [256, 128, 64, 32],
            "final_channels": 16,
            "drop_path_rate": 0.25,
        }

    def default_train_config(self) -> dict[str, Any]:
        return {"batch_augment": True}

    def class_model_config(self, n_classes: int) -> dict[str, Any]:
        return {"cls_channels": n_classes + 2}  # the NP logit, then background + K type logits

    def loss_fn(self, recipe: Any) -> nn.Module:
        return HoVerNeXtLoss(
            hv_weight=float(getattr(recipe, "hv_weight", 1.0)),
            type_weight=float(recipe.type_weight),
            focal_gamma=float(recipe.focal_gamma),
        )

    def train_transform(self, recipe: Any, cfg: Mapping[str, Any]) -> Callable[[Any], Any] | None:
        if cfg["train"].get("batch_augment", True):
            return None  # the collate function augments whole batches
        targets = HoVerNetTargets(type_map=class_setting(cfg) is not None)
        return Compose([HoVerNeXtAugment(recipe.augment_p), targets, ToTensors(recipe.mean, recipe.std)])

    def train_collate(self, recipe: Any, cfg: Mapping[str, Any]) -> Callable[[list[Any]], Any] | None:
        if cfg["train"].get("batch_augment", True):
            augment = HoVerNeXtBatchAugment(HoVerNeXtAugment(recipe.augment_p))
            return BatchAugmentCollate(augment, self.target_transform(recipe, type_map=class_setting(cfg) is not None))
        return None

    def patience(self, recipe: Any, n_sources: int) -> int:
        return int(recipe.early_stop_fused if n_sources > 1 else recipe.early_stop_single)


SPEC = HoVerNeXtSpec()
