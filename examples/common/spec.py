"""What a recipe plugs into the shared runner (:class:`RecipeSpec`).

A recipe folder (``examples/hovernext``, ``examples/cellvit``) holds only what differs between recipes: the model,
loss, augmentation and constants, and one :class:`RecipeSpec` subclass in its ``spec.py`` that *declares* them
(class attributes: model class, pretrained-weights fetcher, training targets, optimiser and scheduler factories,
early-stopping style) and overrides the few hooks that really differ. The defaults of every other hook live here;
the loop lives in :mod:`examples.common.training`, evaluation in :mod:`examples.common.evaluation` and the command
lines in :mod:`examples.common.cli` (``python -m examples.train --recipe NAME``; the per-recipe ``train.py`` /
``evaluate.py`` modules are two-line shims onto it).
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
from examples.common.pretrained import resolve_pretrained
from examples.common.transforms import Compose, ToTensors
from nucfuse_datasets.benchmark.protocol import DEFAULT_K, PATCH_SIZE

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
            "classes": "none",
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
            "protocol": "",
            "split": "",
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
        model_class: the architecture, called with the ``model`` section (minus ``pretrained``) and
            ``pretrained_path``.
        sequence_keys: ``model`` keys given as lists in TOML and passed to ``model_class`` as tuples.
        weights: ``weights(folder) -> Path`` of the paper's pretrained encoder weights (``staticmethod``).
        targets: the training-target transform class (``HoVerNetTargets``, ``NucleusTargets``), called with
            ``type_map=True`` for class-aware training.
        optimizer: ``optimizer(model, recipe)`` (``staticmethod``).
        scheduler: ``scheduler(optimizer, recipe)`` (``staticmethod``).
        infer: ``infer(model)`` → the ``B×3×H×W [p(nucleus), h, v]`` adapter; ``infer(model, types=True)`` appends
            the type probabilities of a class-aware model (``staticmethod``).
        stop_when_exceeds, save_on_tie: the :class:`~examples.common.early_stopping.EarlyStopping` style.
    """

    name: str = ""
    model_label: str = ""
    default_recipe: Any = None
    first_epoch: int = 0
    model_class: Callable[..., nn.Module] | None = None
    sequence_keys: tuple[str, ...] = ()
    weights: Callable[[Path], Path] | None = None
    targets: Callable[..., Callable[[Any], Any]] | None = None
    optimizer: Callable[[nn.Module, Any], torch.optim.Optimizer] | None = None
    scheduler: Callable[[torch.optim.Optimizer, Any], Any] | None = None
    infer: Callable[..., Callable[[torch.Tensor], torch.Tensor]] | None = None
    stop_when_exceeds: bool = True
    save_on_tie: bool = False

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
        if self.model_class is None:
            raise NotImplementedError(f"{type(self).__name__} sets no model_class")
        pretrained = resolve_pretrained(self, model_cfg, root) if load_pretrained else None
        cfg = {k: v for k, v in model_cfg.items() if k != "pretrained"}
        for key in self.sequence_keys:
            if key in cfg:
                cfg[key] = tuple(cfg[key])
        return self.model_class(pretrained_path=pretrained, **cfg)

    def fetch_pretrained(self, folder: Path) -> Path:
        """The local file of the paper's pretrained encoder weights (from ``folder`` or downloaded)."""
        if self.weights is None:
            raise NotImplementedError(f"{type(self).__name__} sets no weights fetcher")
        return self.weights(folder)

    def build_model_quietly(self, model_cfg: Mapping[str, Any]) -> nn.Module:
        """The architecture without pretrained weights and without the random-initialisation warning.

        For models whose weights come from a checkpoint.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*randomly initialised.*")
            return self.build_model(model_cfg, load_pretrained=False)

    def class_model_config(self, n_classes: int) -> dict[str, Any]:
        """The ``model`` keys that give the type head ``n_classes + 1`` channels (class-aware training)."""
        raise NotImplementedError(f"{type(self).__name__} has no class-aware variant")

    def loss_fn(self, recipe: Any) -> nn.Module:
        """The training loss, ``loss(model(x), batch) -> scalar``."""
        raise NotImplementedError

    def infer_fn(self, model: nn.Module, *, types: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """Adapter ``B×3×H×W → B×3×H×W [p(nucleus), h, v]`` for validation and test inference.

        ``types=True`` (a class-aware model): ``B×(3 + K + 1)×H×W``, the type probabilities appended.
        """
        if self.infer is None:
            raise NotImplementedError(f"{type(self).__name__} sets no infer adapter")
        return self.infer(model, types=True) if types else self.infer(model)

    # ------------------------------------------------------------------ data
    def train_transform(self, recipe: Any, cfg: Mapping[str, Any]) -> Callable[[Any], Any] | None:
        """Dataset transform of the training split (``None`` when the collate function does the work)."""
        raise NotImplementedError

    def train_collate(self, recipe: Any, cfg: Mapping[str, Any]) -> Callable[[list[Any]], Any] | None:
        """``collate_fn`` of the training loader (``None``: PyTorch's default)."""
        return None

    def val_transform(self, recipe: Any) -> Callable[[Any], Any]:
        """Dataset transform of the validation split (targets and tensors, no augmentation)."""
        return self.target_transform(recipe)

    def target_transform(self, recipe: Any, *, type_map: bool = False) -> Compose:
        """The recipe's targets (with ``type_map`` when class-aware), then tensors normalised like the recipe."""
        if self.targets is None:
            raise NotImplementedError(f"{type(self).__name__} sets no targets")
        targets = self.targets(type_map=True) if type_map else self.targets()
        return Compose([targets, ToTensors(recipe.mean, recipe.std)])

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
        if self.optimizer is None:
            raise NotImplementedError(f"{type(self).__name__} sets no optimizer")
        return self.optimizer(model, recipe)

    def make_scheduler(self, optimizer: torch.optim.Optimizer, recipe: Any) -> Any:
        """The recipe's learning-rate scheduler."""
        if self.scheduler is None:
            raise NotImplementedError(f"{type(self).__name__} sets no scheduler")
        return self.scheduler(optimizer, recipe)

    def encoder_frozen(self, epoch_index: int, recipe: Any) -> bool:
        """Whether the encoder is frozen in the 0-based training epoch ``epoch_index``.

        The recipe counts epochs from :attr:`first_epoch`; frozen while that count is below
        ``recipe.frozen_until_epoch``.
        """
        return epoch_index + self.first_epoch < recipe.frozen_until_epoch

    def scheduler_step(self, scheduler: Any, val_pq: float) -> None:
        """Step the LR scheduler once at the end of an epoch (``ReduceLROnPlateau`` with the validation PQ)."""
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_pq)
        else:
            scheduler.step()

    def early_stopping(self, recipe: Any, cfg: Mapping[str, Any], n_sources: int) -> EarlyStopping:
        """The early-stopping rule (``train.early_stop_patience`` > 0 overrides :meth:`patience`)."""
        patience = int(cfg["train"].get("early_stop_patience") or 0)
        if patience <= 0:
            patience = self.patience(recipe, n_sources)
        return EarlyStopping(patience, stop_when_exceeds=self.stop_when_exceeds, save_on_tie=self.save_on_tie)

    def patience(self, recipe: Any, n_sources: int) -> int:
        """The recipe's early-stopping patience (default: ``recipe.early_stop_patience``)."""
        return int(recipe.early_stop_patience)

    def amp(self, recipe: Any, device: torch.device) -> bool:
        """Whether to train with fp16 autocast + GradScaler on this device."""
        return bool(recipe.amp) and device.type == "cuda"


def replacement_sampler(dataset: Dataset[Any], recipe: Any, env: DistEnv) -> Sampler[int]:
    """Uniform sampling with replacement, ``num_samples = len(train)`` (CellViT), sharded under torchrun."""
    n = len(dataset)  # type: ignore[arg-type]
    if env.distributed:
        return DistributedReplacementSampler(n, n, rank=env.rank, world_size=env.world_size, seed=int(recipe.seed))
    return RandomSampler(dataset, replacement=True, num_samples=n)  # type: ignore[arg-type]
