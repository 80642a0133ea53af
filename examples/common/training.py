"""The shared training loop of the reference recipes: epochs, validation PQ, checkpoints, resume, DDP.

:func:`train` runs one recipe (a :class:`~examples.common.spec.RecipeSpec`) on ``NucFuseTrain``:

* data: ``NucFuseTrain(split="train")`` and ``split="val"`` (the 80/20 split) from the ``data`` section;
* each epoch: set the encoder freezing for the epoch, train (optionally at most ``train.max_steps_per_epoch``
  steps), compute the validation PQ (mean per-patch PQ after the HoVerNet post-processing, as both recipes did),
  step the scheduler, update early stopping, save ``best.pt`` when the recipe's rule says so, append a row to
  ``metrics.csv`` and write ``last.pt``;
* ``train.max_seconds`` > 0: no epoch starts that would end past this budget (the previous epoch's duration is
  the estimate), for benchmarks with a fixed time budget;
* ``resume``: restores model, optimiser, scheduler, GradScaler, early-stopping counters and RNG states and goes on
  with the next epoch, so a resumed run repeats an uninterrupted one (bit for bit on CPU);
* under ``torchrun`` the model is wrapped in DDP, the data are sharded, validation is sharded and gathered, and
  only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from examples.common.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from examples.common.classes import attach_classes, class_info, class_setting, grouping_of
from examples.common.csvlog import CSVLogger
from examples.common.distributed import (
    DistEnv,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    init_distributed,
    sync_buffers,
    wrap_ddp,
)
from examples.common.seed import seed_everything
from examples.common.spec import RecipeSpec, train_set_label
from examples.common.stain_option import test_normalizer, train_augment, with_stain
from nucfuse_datasets import NucFuseTrain
from nucfuse_datasets._version import __version__
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.metrics import MetricPolicy
from nucfuse_datasets.transforms.postprocess import hv_watershed, hv_watershed_params

__all__ = ["METRIC_COLUMNS", "build_datasets", "train", "validate"]

#: Columns of ``metrics.csv``.
METRIC_COLUMNS = (
    "epoch",
    "steps",
    "train_loss",
    "val_pq",
    "val_dq",
    "val_sq",
    "val_aji",
    "val_dice_2",
    "val_patches",
    "lr",
    "encoder_frozen",
    "best_pq",
    "best_epoch",
    "bad_epochs",
    "saved_best",
    "seconds",
)


def _say(env: DistEnv, msg: str) -> None:
    if env.is_main:
        print(msg, flush=True)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=not enabled)


def _dataset_kwargs(cfg: Mapping[str, Any], progress: bool) -> dict[str, Any]:
    data = cfg["data"]
    kwargs: dict[str, Any] = {
        "root": data.get("root") or None,
        "download": bool(data.get("download", False)),
        "group_by_tile": bool(data.get("group_by_tile", False)),
        "test_ids": data.get("test_ids", "pinned"),
        "dataset_options": data.get("dataset_options") or None,
        "patch_size": int(data.get("patch_size", 256)),
        "exclude_cases": data.get("exclude_cases") or None,
        "progress": None if progress else False,
    }
    if data.get("datasets"):
        kwargs["datasets"] = data["datasets"]
    else:
        kwargs["k"] = int(data.get("k", 9))
    return kwargs


def build_datasets(
    spec: RecipeSpec, cfg: Mapping[str, Any], recipe: Any, env: DistEnv | None = None
) -> tuple[NucFuseTrain, NucFuseTrain]:
    """``(train, val)`` splits of NucFuse-train with the recipe's transforms.

    Under torchrun rank 0 builds (and, with ``data.download``, downloads/prepares) first; the other ranks wait.
    With ``data.classes`` the training split keeps its classes, mapped to the grouping's (:mod:`.classes`).
    """
    env = env or DistEnv()
    kwargs = _dataset_kwargs(cfg, bool(cfg["train"].get("progress", True)) and env.is_main)
    if not env.is_main:
        barrier(env)
    train_tf = with_stain(train_augment(cfg, int(recipe.seed)), spec.train_transform(recipe, cfg))  # data.stain
    val_tf = with_stain(test_normalizer(cfg), spec.val_transform(recipe))
    train_ds = NucFuseTrain(split="train", transforms=train_tf, keep_classes=class_setting(cfg) is not None, **kwargs)
    val_ds = NucFuseTrain(split="val", transforms=val_tf, **kwargs)
    if env.is_main:
        barrier(env)
    if len(train_ds) == 0:
        raise ArgumentError("the training split is empty")
    attach_classes(train_ds, cfg)  # data.classes: one grouping for all datasets, mapped before the augmentation
    return train_ds, val_ds


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    nb = device.type == "cuda"
    return {k: v.to(device, non_blocking=nb) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def validate(
    spec: RecipeSpec,
    model: nn.Module,
    loader: DataLoader[Any],
    recipe: Any,
    env: DistEnv,
    *,
    amp: bool = False,
    progress: bool = False,
) -> dict[str, float]:
    """Validation metrics: every patch post-processed with §2.4 and scored; per-patch means (the paper's metric).

    Under torchrun each rank scores its shard and the per-patch results are gathered, so the mean is exact.
    """
    model.eval()
    fn = spec.infer_fn(model)
    params = hv_watershed_params(int(recipe.magnification))
    policy = MetricPolicy()
    results = []
    with torch.inference_mode(), _progress(len(loader), "val", progress) as bar:
        for batch in loader:
            with _autocast(env.device, amp):
                maps = fn(batch["image"].to(env.device))
            maps_np = maps.float().cpu().numpy()
            gts = batch["instances"].numpy()
            for m, gt in zip(maps_np, gts, strict=True):
                pred = hv_watershed(m[0], m[1:3], **params)
                results.append(policy.evaluate(gt, pred))
            bar.update(1)
    flat = [r for part in all_gather_objects(results, env) for r in part]
    if not flat:
        return {"pq": math.nan, "dq": math.nan, "sq": math.nan, "aji": math.nan, "dice_2": math.nan, "n": 0}
    agg = policy.aggregate(flat)
    return {k: float(agg[k]) for k in ("pq", "dq", "sq", "aji", "dice_2")} | {"n": len(flat)}


def _val_loader(val_ds: Dataset[Any], recipe: Any, cfg: Mapping[str, Any], env: DistEnv) -> DataLoader[Any]:
    n = len(val_ds)  # type: ignore[arg-type]
    limit = int(cfg["train"].get("max_val_patches") or 0)
    indices = list(range(min(n, limit) if limit > 0 else n))
    shard = Subset(val_ds, indices[env.rank :: env.world_size])
    return DataLoader(
        shard,
        batch_size=int(recipe.val_batch_size),
        shuffle=False,
        num_workers=int(recipe.num_workers),
        pin_memory=env.device.type == "cuda",
    )


def _batches(loader: DataLoader[Any], limit: int) -> Iterator[tuple[int, Any]]:
    for i, batch in enumerate(loader):
        if limit and i >= limit:
            return
        yield i, batch


def _set_frozen(model: nn.Module, frozen: bool) -> None:
    if frozen:
        model.freeze_encoder()  # type: ignore[operator]
    else:
        model.unfreeze_encoder()  # type: ignore[operator]


def train(
    spec: RecipeSpec,
    cfg: Mapping[str, Any],
    *,
    resume: str | Path | None = None,
    env: DistEnv | None = None,
) -> dict[str, Any]:
    """Train one recipe; returns a summary (``epochs``, ``best_pq``, ``best_epoch``, ``stopped_early``, paths).

    Args:
        spec: the recipe.
        cfg: resolved configuration (:meth:`RecipeSpec.default_config` merged with the file and the overrides).
        resume: a ``last.pt`` to continue from.
        env: process placement (default: from the torchrun environment and ``train.device``).
    """
    own_env = env is None
    env = env or init_distributed(str(cfg["train"].get("device", "auto")))
    try:
        return _train(spec, dict(cfg), resume, env)
    finally:
        if own_env:
            from examples.common.distributed import cleanup_distributed

            cleanup_distributed()


def _train(spec: RecipeSpec, cfg: dict[str, Any], resume: str | Path | None, env: DistEnv) -> dict[str, Any]:
    recipe = spec.recipe(cfg)
    tcfg = cfg["train"]
    out = Path(tcfg["out"])
    progress = bool(tcfg.get("progress", True)) and env.is_main
    seed_everything(int(recipe.seed), deterministic=bool(tcfg.get("deterministic", True)))

    train_ds, val_ds = build_datasets(spec, cfg, recipe, env)  # first: missing data fail fast
    grouping = grouping_of(train_ds)
    if grouping is not None:  # class-aware: a type head of K + 1 channels, kept in the checkpoints' config
        cfg["model"] = {**cfg["model"], **spec.class_model_config(grouping.n_classes)}
    # on resume the weights come from the checkpoint: do not read the pretrained file again
    if resume:
        model = spec.build_model_quietly(cfg["model"])
    else:  # under torchrun rank 0 fetches missing weights first
        if not env.is_main:
            barrier(env)
        model = spec.build_model(cfg["model"], root=cfg["data"].get("root") or None)
        if env.is_main:
            barrier(env)
    model = model.to(env.device)
    if env.distributed:  # same initial weights everywhere (DDP also broadcasts), different augmentation streams
        seed_everything(int(recipe.seed) + env.rank, deterministic=bool(tcfg.get("deterministic", True)))
    loss_fn = spec.loss_fn(recipe).to(env.device)
    optimizer = spec.make_optimizer(model, recipe)
    scheduler = spec.make_scheduler(optimizer, recipe)
    amp = spec.amp(recipe, env.device)
    scaler = torch.amp.GradScaler(env.device.type, enabled=amp)
    clip = float(getattr(recipe, "grad_clip_norm", None) or 0.0)

    n_sources = len(train_ds.subsets)
    stopper = spec.early_stopping(recipe, cfg, n_sources)
    sampler = spec.train_sampler(train_ds, recipe, env)
    loader = DataLoader(
        train_ds,
        batch_size=int(recipe.batch_size),
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=int(recipe.num_workers),
        collate_fn=spec.train_collate(recipe, cfg),
        pin_memory=env.device.type == "cuda",
    )
    val_loader = _val_loader(val_ds, recipe, cfg, env)
    max_steps = int(tcfg.get("max_steps_per_epoch") or 0)
    max_seconds = float(tcfg.get("max_seconds") or 0.0)
    epochs = int(recipe.epochs)
    run_start, last_epoch_seconds, out_of_time = time.perf_counter(), 0.0, False

    start_epoch = 0
    finished = False
    if resume is not None:
        ckpt = load_checkpoint(resume, map_location="cpu")  # load_state_dict moves tensors to the device
        if ckpt.get("recipe") != spec.name:
            raise ArgumentError(f"{resume} is a {ckpt.get('recipe')!r} checkpoint, not {spec.name!r}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        stopper.load_state_dict(ckpt["early_stopping"])
        start_epoch = int(ckpt["epoch"])
        finished = bool(ckpt.get("finished", False))
        rng = ckpt.get("rng") or []
        if len(rng) == env.world_size:
            set_rng_state(rng[env.rank])
        else:
            _say(env, f"resume: the checkpoint has RNG states of {len(rng)} ranks, not {env.world_size}; reseeding")
            seed_everything(int(recipe.seed) + env.rank + 1000 * start_epoch)
        _say(env, f"resumed from {resume} after epoch {start_epoch} (best PQ {stopper.best:.4f})")

    logger = None
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
        logger = CSVLogger(out / "metrics.csv", METRIC_COLUMNS, resume_epoch=start_epoch if resume else None)
        _say(
            env,
            f"{spec.model_label}: train {len(train_ds)} / val {len(val_ds)} patches from {train_ds.subsets}; "
            f"device {env.device}, world size {env.world_size}, AMP {amp}, epochs {start_epoch + 1}..{epochs}",
        )

    label = train_set_label(cfg)
    frozen_state: bool | None = None
    ddp_model: nn.Module = model
    epoch = start_epoch
    if finished:
        _say(env, "the checkpoint's run had already stopped early; nothing to do")
    for e in range(start_epoch, epochs):
        if finished:
            break
        t0 = time.perf_counter()
        if max_seconds > 0 and e > start_epoch and (t0 - run_start) + last_epoch_seconds > max_seconds:
            out_of_time = True  # the next epoch would end past train.max_seconds
            _say(env, f"time budget: {t0 - run_start:.0f} s used of train.max_seconds = {max_seconds:.0f}; stopping")
            break
        frozen = spec.encoder_frozen(e, recipe)
        if frozen != frozen_state:
            _set_frozen(model, frozen)
            ddp_model = wrap_ddp(model, env)
            frozen_state = frozen
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(e)  # type: ignore[union-attr]
        lr = float(optimizer.param_groups[0]["lr"])

        ddp_model.train()
        total, count = 0.0, 0
        n_steps = min(len(loader), max_steps) if max_steps else len(loader)
        with _progress(n_steps, f"epoch {e + 1}/{epochs}", progress) as bar:
            for _, batch in _batches(loader, max_steps):
                batch = _to_device(batch, env.device)
                with _autocast(env.device, amp):
                    output = ddp_model(batch["image"])
                    loss = loss_fn(output, batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach()) * int(batch["image"].shape[0])
                count += int(batch["image"].shape[0])
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        train_loss = all_reduce_mean(total, count, env)

        sync_buffers(model, env)
        val = validate(spec, model, val_loader, recipe, env, amp=amp, progress=progress)
        spec.scheduler_step(scheduler, val["pq"])
        save_best = stopper.step(val["pq"], e + 1)
        if save_best and env.is_main:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "epoch": e + 1,
                    "val": val,
                    "config": cfg,
                    "classes": class_info(grouping),
                    "recipe": spec.name,
                    "train_set": label,
                    "library_version": __version__,
                },
                out / "best.pt",
            )
        finished = stopper.should_stop
        rng = all_gather_objects(get_rng_state(), env)
        epoch = e + 1
        if env.is_main:
            assert logger is not None
            row = {
                "epoch": epoch,
                "steps": n_steps,
                "train_loss": train_loss,
                **{f"val_{k}": val[k] for k in ("pq", "dq", "sq", "aji", "dice_2")},
                "val_patches": val["n"],
                "lr": lr,
                "encoder_frozen": int(frozen),
                "best_pq": stopper.best,
                "best_epoch": stopper.best_epoch,
                "bad_epochs": stopper.bad_epochs,
                "saved_best": int(save_best),
                "seconds": time.perf_counter() - t0,
            }
            logger.log(row)
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if amp else {},
                    "epoch": epoch,
                    "best_metric": stopper.best,
                    "best_epoch": stopper.best_epoch,
                    "early_stopping": stopper.state_dict(),
                    "rng": rng,
                    "config": cfg,
                    "classes": class_info(grouping),
                    "recipe": spec.name,
                    "train_set": label,
                    "world_size": env.world_size,
                    "finished": finished,
                    "library_version": __version__,
                },
                out / "last.pt",
            )
            _say(
                env,
                f"epoch {epoch}/{epochs}: loss {train_loss:.4f}, val PQ {val['pq']:.4f} "
                f"(best {stopper.best:.4f} @ {stopper.best_epoch}), lr {lr:.3g}"
                + (", encoder frozen" if frozen else "")
                + (", saved best.pt" if save_best else ""),
            )
        last_epoch_seconds = time.perf_counter() - t0
        if finished:
            _say(env, f"early stopping after epoch {epoch}: {stopper.bad_epochs} epochs without improvement")
    barrier(env)
    summary = {
        "recipe": spec.name,
        "model": spec.model_label,
        "train_set": label,
        "classes": grouping.name if grouping is not None else None,
        "epochs": epoch,
        "best_pq": stopper.best,
        "best_epoch": stopper.best_epoch,
        "stopped_early": finished,
        "stopped_by_time_budget": out_of_time,
        "seconds": round(time.perf_counter() - run_start, 1),
        "out": str(out),
        "best": str(out / "best.pt"),
        "last": str(out / "last.pt"),
    }
    if env.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
