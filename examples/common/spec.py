"""What a recipe plugs into the shared training and evaluation machinery (:class:`RecipeSpec`).

Each recipe (``examples/hovernext/spec.py``, ``examples/cellvit/spec.py``) subclasses :class:`RecipeSpec` and
fills in the model, loss, transforms, sampler, freezing rule, scheduler step and early-stopping rule; the loop
itself lives in :mod:`examples.common.training` and the command lines in :mod:`examples.common.cli`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, RandomSampler, Sampler
from torch.utils.data.distributed import DistributedSampler

from examples.common.config import merge, recipe_from_config, recipe_to_config
from examples.common.distributed import DistEnv, DistributedReplacementSampler
from examples.common.early_stopping import EarlyStopping
from nucfuse_datasets.protocol import DEFAULT_K, PATCH_SIZE

__all__ = ["RecipeSpec", "base_config", "replacement_sampler", "train_set_label"]


def base_config(name: str) -> dict[str, Any]:
    """The recipe-independent part of the default configuration (see ``examples/*/config.toml``)."""
    return {
        "model": {"pretrained": "auto"},
        "data": {
            "root": "",
            "k": DEFAULT_K,
            "datasets": [],
            "patch_size": PATCH_SIZE,
            "group_by_tile": False,
            "test_ids": "pinned",
            "download": False,
            "exclude_cases": [],
            "dataset_options": {},
        },
        "train": {
            "out": f"runs/{name}",
            "device": "auto",
            "max_steps_per_epoch": 0,
            "max_val_patches": 0,
            "max_seconds": 0,
            "early_stop_patience": 0,
            "train_set": "",
            "progress": True,
            "deterministic": True,
        },
        "eval": {
            "datasets": [],
            "test_ids": "",
            "tile": 0,
            "overlap": 64,
            "out": "",
        },
    }


def train_set_label(cfg: Mapping[str, Any]) -> str:
    """The training-set label stored in reports: ``train.train_set``, else the single dataset, else ``top<k>``."""
    label = str(cfg.get("train", {}).get("train_set") or "")
    if label:
        return label
    data = cfg["data"]
    datasets = data.get("datasets") or []
    if datasets:
        tags = list(datasets)
        return str(tags[0]) if len(tags) == 1 else "+".join(str(t) for t in tags)
    return f"top{int(data.get('k', DEFAULT_K))}"


class RecipeSpec:
    """Base class of a recipe's hooks. Subclasses set the class attributes and implement the abstract hooks.

    Attributes:
        name: short name (``"hovernext"``), the default output folder ``runs/<name>``.
        model_label: model name in evaluation reports and result tables (``"HoVerNeXt"``).
        default_recipe: the recipe dataclass instance holding the authors' constants.
        first_epoch: how the recipe counts epochs for :meth:`encoder_frozen` (1 for HoVerNeXt, 0 for CellViT).
    """

    name: str = ""
    model_label: str = ""
    default_recipe: Any = None
    first_epoch: int = 0

    # ------------------------------------------------------------------ configuration
    def default_model_config(self) -> dict[str, Any]:
        """Architecture keyword arguments of the model (the paper's by default)."""
        return {}

    def default_train_config(self) -> dict[str, Any]:
        """Recipe-specific ``train`` keys."""
        return {}

    def default_config(self) -> dict[str, Any]:
        """The full default configuration: the authors' constants."""
        recipe = {k: v for k, v in recipe_to_config(self.default_recipe).items() if v is not None}
        cfg = merge(base_config(self.name), {"model": self.default_model_config()})
        cfg = merge(cfg, {"train": self.default_train_config()})
        return {"recipe": recipe, **cfg}

    def recipe(self, cfg: Mapping[str, Any]) -> Any:
        """The recipe dataclass with the ``recipe`` section applied."""
        return recipe_from_config(self.default_recipe, cfg.get("recipe"))

    # ------------------------------------------------------------------ model and loss
    def build_model(
        self, model_cfg: Mapping[str, Any], *, load_pretrained: bool = True, root: str | None = None
    ) -> nn.Module:
        """Build the model from the ``model`` section (``pretrained`` read only when ``load_pretrained``).

        ``model.pretrained`` is resolved by :func:`examples.common.pretrained.resolve_pretrained` (``"auto"``: the
        paper's weights from ``<root>/weights`` or downloaded; a path; ``""``: random initialisation).
        """
        raise NotImplementedError

    def fetch_pretrained(self, folder: Path) -> Path:
        """The local file of the paper's pretrained encoder weights (from ``folder`` or downloaded)."""
        raise NotImplementedError

    def build_model_quietly(self, model_cfg: Mapping[str, Any]) -> nn.Module:
        """The architecture without pretrained weights and without the random-initialisation warning.

        For models whose weights come from a checkpoint.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*randomly initialised.*")
            return self.build_model(model_cfg, load_pretrained=False)

    def loss_fn(self, recipe: Any) -> nn.Module:
        """The training loss, ``loss(model(x), batch) -> scalar``."""
        raise NotImplementedError

    def infer_fn(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """Adapter ``B×3×H×W → B×3×H×W [p(nucleus), h, v]`` for validation and test inference."""
        raise NotImplementedError

    # ------------------------------------------------------------------ data
    def train_transform(self, recipe: Any, cfg: Mapping[str, Any]) -> Callable[[Any], Any] | None:
        """Dataset transform of the training split (``None`` when the collate function does the work)."""
        raise NotImplementedError

    def train_collate(self, recipe: Any, cfg: Mapping[str, Any]) -> Callable[[list[Any]], Any] | None:
        """``collate_fn`` of the training loader (``None``: PyTorch's default)."""
        return None

    def val_transform(self, recipe: Any) -> Callable[[Any], Any]:
        """Dataset transform of the validation split (targets and tensors, no augmentation)."""
        raise NotImplementedError

    def train_sampler(self, dataset: Dataset[Any], recipe: Any, env: DistEnv) -> Sampler[int] | None:
        """Training sampler; ``None`` means ``shuffle=True``. Default: shuffled, sharded under torchrun."""
        if env.distributed:
            return DistributedSampler(
                dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=int(recipe.seed)
            )
        return None

    # ------------------------------------------------------------------ optimisation
    def make_optimizer(self, model: nn.Module, recipe: Any) -> torch.optim.Optimizer:
        """The recipe's optimiser over the model's parameters."""
        raise NotImplementedError

    def make_scheduler(self, optimizer: torch.optim.Optimizer, recipe: Any) -> Any:
        """The recipe's learning-rate scheduler."""
        raise NotImplementedError

    def encoder_frozen(self, epoch_index: int, recipe: Any) -> bool:
        """Whether the encoder is frozen in the 0-based training epoch ``epoch_index``."""
        raise NotImplementedError

    def scheduler_step(self, scheduler: Any, val_pq: float) -> None:
        """Step the LR scheduler once at the end of an epoch."""
        raise NotImplementedError

    def early_stopping(self, recipe: Any, cfg: Mapping[str, Any], n_sources: int) -> EarlyStopping:
        """The early-stopping rule (``train.early_stop_patience`` > 0 overrides the recipe's patience)."""
        raise NotImplementedError

    def amp(self, recipe: Any, device: torch.device) -> bool:
        """Whether to train with fp16 autocast + GradScaler on this device."""
        return bool(recipe.amp) and device.type == "cuda"


def replacement_sampler(dataset: Dataset[Any], recipe: Any, env: DistEnv) -> Sampler[int]:
    """Uniform sampling with replacement, ``num_samples = len(train)`` (CellViT), sharded under torchrun."""
    n = len(dataset)  # type: ignore[arg-type]
    if env.distributed:
        return DistributedReplacementSampler(n, n, rank=env.rank, world_size=env.world_size, seed=int(recipe.seed))
    return RandomSampler(dataset, replacement=True, num_samples=n)  # type: ignore[arg-type]
