"""Scoring a trained recipe on NucFuse-test: checkpoint → whole-tile predictions → ``EvaluationReport`` files.

Inference is what the authors ran (``recipes.md`` §2.5): each test tile whole, normalised like the training
inputs, reflect-padded at the bottom/right to a multiple of 32, cropped back, then the HoVerNet post-processing
(§2.4, 40× preset); no test-time augmentation. ``eval.tile > 0`` switches to an overlapping sliding window
(``eval.overlap``) for large tiles or small GPUs, which is not what the paper did.

**What is scored** (:func:`evaluation_scope`): by default the NucFuse-test tiles of the datasets the checkpoint was
trained on (``data.datasets``, or the top-k names), selected with the training's ``data.test_ids`` so that they are
exactly the tiles the training left out. ``eval.datasets`` scores other datasets (``"nucfuse-test"``: the paper's
full NucFuse-test of 10 datasets) and ``eval.test_ids`` another selection; both are reported loudly
(:class:`EvaluationScopeWarning`, and on stderr by the command line). Synthetic sources are generated in a
temporary folder that is deleted afterwards, never in the data root (they are deterministic, so the tiles equal the
ones a synthetic training saw excluded). ``eval.split`` scores one dataset's whole split instead of NucFuse-test
(e.g. PanNuke's ``"fold3"``, the field's usual class-aware test), through :func:`nucfuse_datasets.evaluate`.

**Class-aware checkpoints** (trained with ``data.classes``, :mod:`examples.common.classes`): each predicted instance
gets the majority class of the type head's per-pixel argmax (:func:`~nucfuse_datasets.transforms.postprocess.
instance_classes`, HoVer-Net's rule), and the evaluation scores the classes with ``eval.protocol`` in the
checkpoint's grouping, so the report carries ``class_scores``. Binary checkpoints are scored as before.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from examples.common.checkpoint import load_checkpoint
from examples.common.classes import eval_protocol
from examples.common.distributed import resolve_device
from examples.common.spec import RecipeSpec, train_set_label
from examples.common.stain_option import stain_predict
from nucfuse_datasets import NucFuseTest
from nucfuse_datasets.benchmark.class_groupings import get_grouping
from nucfuse_datasets.benchmark.evaluation import EvaluationReport, evaluate
from nucfuse_datasets.benchmark.protocol import DEFAULT_K, PAPER_RANKING, top_k
from nucfuse_datasets.benchmark.selection import TRAIN_ONLY, nucfuse_test_split, select_test_tiles
from nucfuse_datasets.datasets._base import NucleiDataset
from nucfuse_datasets.datasets._registry import get_dataset_class
from nucfuse_datasets.errors import ArgumentError, NucFuseWarning
from nucfuse_datasets.transforms.postprocess import hv_watershed_params, instance_classes, predict_instances

__all__ = [
    "NUCFUSE_TEST",
    "EvaluationScope",
    "EvaluationScopeWarning",
    "evaluate_checkpoint",
    "evaluation_scope",
    "load_trained_model",
    "make_predict_fn",
]

#: ``eval.datasets`` value for the paper's full NucFuse-test (the 10 ranked datasets).
NUCFUSE_TEST = "nucfuse-test"


class EvaluationScopeWarning(NucFuseWarning):
    """The evaluation scores datasets (or a test-tile selection) other than the checkpoint's training ones."""


@dataclass(frozen=True)
class EvaluationScope:
    """What an evaluation scores, compared with what the checkpoint was trained on.

    Attributes:
        datasets: subset tag → dataset name to score.
        test_ids: the NucFuse-test selection used (``"pinned"`` or ``"rule"``).
        trained: subset tag → dataset name of the training.
        train_test_ids: the selection the training excluded.
        untrained: tags scored that the checkpoint was not trained on.
        message: a loud note when the scope differs from the training's (else ``""``).
        split: ``eval.split``: score this whole split of the one dataset instead of NucFuse-test (``""``: NucFuse-test).
    """

    datasets: dict[str, str]
    test_ids: str
    trained: dict[str, str]
    train_test_ids: str
    untrained: tuple[str, ...]
    message: str
    split: str = ""


def _entries(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(t): str(n) for t, n in value.items()}
    return {str(n): str(n) for n in value}


def evaluation_scope(cfg: Mapping[str, Any]) -> EvaluationScope:
    """Resolve ``eval.datasets``/``eval.test_ids`` against the training's ``data`` section.

    Example:
        >>> cfg = {"data": {"datasets": ["monuseg", "dsb2018"], "test_ids": "rule"}, "eval": {"datasets": []}}
        >>> scope = evaluation_scope(cfg)
        >>> scope.datasets, scope.test_ids, scope.message
        ({'monuseg': 'monuseg', 'dsb2018': 'dsb2018'}, 'rule', '')
        >>> cfg["eval"]["datasets"] = ["monuseg", "tnbc"]
        >>> evaluation_scope(cfg).untrained
        ('tnbc',)

    Raises:
        ArgumentError: ``eval.split`` with more than one dataset in scope.
    """
    data, ecfg = cfg.get("data", {}), cfg.get("eval", {})
    trained = _entries(data.get("datasets") or top_k(int(data.get("k", DEFAULT_K))))
    train_ids = str(data.get("test_ids") or "pinned")
    asked = ecfg.get("datasets") or []
    if isinstance(asked, str):
        asked = [asked]
    if list(asked) == [NUCFUSE_TEST]:
        datasets = _entries(PAPER_RANKING)
    elif asked:
        datasets = _entries(asked)
    else:
        datasets = dict(trained)
    test_ids = str(ecfg.get("test_ids") or train_ids)
    untrained = tuple(t for t, n in datasets.items() if trained.get(t) != n)
    split = str(ecfg.get("split") or "")
    if split and len(datasets) != 1:
        raise ArgumentError(
            f"eval.split = {split!r} scores one dataset's split, but {len(datasets)} datasets are in scope "
            f"({', '.join(datasets)}): name one in eval.datasets (--datasets)"
        )
    notes = []
    if untrained:
        notes.append(
            f"scoring {len(untrained)} dataset(s) the checkpoint was NOT trained on: {', '.join(untrained)} "
            f"(trained on {', '.join(trained)}); omit eval.datasets / --datasets to score the training datasets' "
            "test tiles"
        )
    if split and not untrained:
        name = next(iter(datasets.values()))
        notes.append(
            f"eval.split = {split!r} scores every tile of {name}'s {split!r} split instead of NucFuse-test; the "
            f"checkpoint trained on {name}'s tiles outside NucFuse-test, so tiles of this split may have been "
            "training tiles (the report's meta counts them: split_training_tiles)"
        )
    elif test_ids != train_ids and not split:
        notes.append(
            f"test tiles selected with test_ids={test_ids!r} while the training excluded the {train_ids!r} "
            "selection: some scored tiles may have been training tiles"
        )
    return EvaluationScope(datasets, test_ids, trained, train_ids, untrained, "; ".join(notes), split)


def _test_parts(
    scope: EvaluationScope, data: Mapping[str, Any], scratch: Path, progress: bool | None
) -> dict[str, Any]:
    """Tag → dataset name, or a synthetic dataset instance generated under ``scratch`` (never the data root)."""
    options = dict(data.get("dataset_options") or {})
    parts: dict[str, Any] = {}
    for tag, name in scope.datasets.items():
        cls = get_dataset_class(name)
        if cls.name == "synthetic":
            kwargs = dict(options.get(tag, options.get(cls.name, {})))
            parts[tag] = cls(root=scratch, split="all", progress=progress, **kwargs)
        else:
            parts[tag] = name
    return parts


def load_trained_model(
    spec: RecipeSpec, checkpoint: str | Path, device: torch.device
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the checkpoint's architecture (from its stored config), load its weights, ``eval()`` it.

    Accepts ``best.pt`` and ``last.pt``. Returns ``(model, checkpoint dict)``.

    Raises:
        ArgumentError: missing file or a checkpoint of the other recipe.
    """
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    if ckpt.get("recipe") != spec.name:
        raise ArgumentError(f"{checkpoint} is a {ckpt.get('recipe')!r} checkpoint, not {spec.name!r}")
    model = spec.build_model_quietly(ckpt["config"]["model"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def make_predict_fn(
    spec: RecipeSpec,
    model: nn.Module,
    recipe: Any,
    device: torch.device,
    *,
    tile: int = 0,
    overlap: int = 64,
    types: bool = False,
) -> Callable[[np.ndarray], Any]:
    """``predict_fn(uint8 H×W×3) -> int32 H×W`` for :meth:`NucFuseTest.evaluate` (whole tile unless ``tile > 0``).

    ``types=True`` (a class-aware model): ``predict_fn`` returns ``(instances, classes)``, ``classes[id]`` the
    majority of the type head's per-pixel argmax over instance ``id``
    (:func:`~nucfuse_datasets.transforms.postprocess.instance_classes`, HoVer-Net's rule; 0 = background type only),
    in the grouping's evaluation classes ``1..K``.
    """
    fn = spec.infer_fn(model.eval(), types=types)
    params = hv_watershed_params(int(recipe.magnification))
    options: dict[str, Any] = {"tile": int(tile) if tile else None, "overlap": int(overlap), "device": device}
    options.update(params)

    def predict(image: np.ndarray) -> Any:
        if not types:
            return predict_instances(fn, image, mean=recipe.mean, std=recipe.std, **options)
        inst, maps = predict_instances(fn, image, mean=recipe.mean, std=recipe.std, return_maps=True, **options)
        return inst, instance_classes(inst, maps[3:].argmax(axis=0))  # maps[3:]: p(background), p(class 1..K)

    return predict


def _eval_data(scope: EvaluationScope, data: Mapping[str, Any], scratch: Path, progress: bool | None) -> Any:
    """NucFuse-test of the scope, or (``eval.split``) the one dataset's split (synthetic ones under ``scratch``)."""
    root = data.get("root") or None
    if not scope.split:
        return NucFuseTest(
            root,
            download=bool(data.get("download", False)),
            datasets=_test_parts(scope, data, scratch, progress),
            test_ids=scope.test_ids,
            dataset_options=data.get("dataset_options") or None,
            progress=progress,
        )
    (tag, name), options = next(iter(scope.datasets.items())), dict(data.get("dataset_options") or {})
    cls = get_dataset_class(name)
    kwargs = dict(options.get(tag, options.get(cls.name)) or {})
    where = scratch if cls.name == "synthetic" else root
    return cls(root=where, split=scope.split, download=bool(data.get("download", False)), progress=progress, **kwargs)


def _training_tiles(ds: NucleiDataset, scope: EvaluationScope) -> int:
    """How many tiles of an ``eval.split`` dataset the checkpoint could have trained on (all but NucFuse-test's)."""
    tag, name = next(iter(scope.datasets.items()))
    if scope.trained.get(tag) != name:
        return 0
    if name in TRAIN_ONLY or ds.split not in ("all", nucfuse_test_split(ds)):
        return len(ds)
    held_out = set(select_test_tiles(tag, ds, scope.train_test_ids).ids)
    return sum(1 for sid in ds.sample_ids if sid not in held_out)


def _class_options(data: Any, info: Mapping[str, Any], protocol: str, explicit: bool) -> dict[str, Any]:
    """``protocol=``/``classes=`` for :func:`evaluate`, or ``{}`` when no scored dataset has the grouping's classes.

    Raises:
        ArgumentError: a scored dataset carries other classes (its classes cannot be compared with these
            predictions), or ``eval.protocol`` was asked for data without the grouping's classes.
    """
    grouping = get_grouping(str(info["grouping"]))
    parts = data.parts if isinstance(data, NucFuseTest) else {data.name: data}
    fits = [t for t, ds in parts.items() if ds.class_names and tuple(ds.class_names) in grouping.sources]
    other = [f"{t} ({ds.name})" for t, ds in parts.items() if ds.class_names and t not in fits]
    if other:
        raise ArgumentError(
            f"this checkpoint predicts the {grouping.name!r} classes ({', '.join(grouping.names)}), which cannot be "
            f"scored against the other classes of {', '.join(other)}: drop them from eval.datasets, or set "
            'eval.protocol = "none" (--protocol none) to score instances only'
        )
    if not fits:
        if explicit:
            raise ArgumentError(
                f"eval.protocol = {protocol!r}: none of {', '.join(parts)} carries the {grouping.name!r} classes"
            )
        return {}
    return {"protocol": protocol, "classes": grouping.name}


def evaluate_checkpoint(
    spec: RecipeSpec,
    checkpoint: str | Path,
    cfg: Mapping[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[EvaluationReport, dict[str, Path]]:
    """Evaluate a checkpoint on NucFuse-test (or ``eval.split``) and write ``report.{json,csv,md}``.

    Args:
        spec: the recipe.
        checkpoint: ``best.pt`` (or ``last.pt``).
        cfg: configuration whose ``data`` (root, dataset options, training datasets), ``eval`` and
            ``train.device``/``train.train_set`` sections are used; default: the checkpoint's own. What is scored
            follows :func:`evaluation_scope`; a class-aware checkpoint is scored with ``eval.protocol``
            (:func:`examples.common.classes.eval_protocol`) in its grouping's classes.
        out: report folder (default ``eval.out``, else ``<checkpoint folder>/eval``).
        progress: progress bar.

    Returns:
        ``(report, paths of the written files)``.

    Raises:
        ArgumentError: see :func:`evaluation_scope` and :func:`examples.common.classes.eval_protocol`; a class-aware
            checkpoint scored on datasets with other classes.
    """
    ckpt_path = Path(checkpoint)
    device = resolve_device(str((cfg or {}).get("train", {}).get("device", "auto")))
    model, ckpt = load_trained_model(spec, ckpt_path, device)
    cfg = dict(cfg or ckpt["config"])
    recipe = spec.recipe(cfg)
    data, ecfg = cfg["data"], cfg["eval"]
    scope = evaluation_scope(cfg)
    info = ckpt.get("classes")
    protocol = eval_protocol(cfg, info)
    if scope.message:
        warnings.warn(EvaluationScopeWarning(scope.message), stacklevel=2)
    label = str(cfg.get("train", {}).get("train_set") or ckpt.get("train_set") or train_set_label(cfg))
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nucfuse-eval-") as scratch:
        test = _eval_data(scope, data, Path(scratch), progress)
        explicit = bool(ecfg.get("protocol"))
        classes = {} if protocol is None or info is None else _class_options(test, info, protocol, explicit)
        predict = make_predict_fn(
            spec,
            model,
            recipe,
            device,
            tile=int(ecfg.get("tile") or 0),
            overlap=int(ecfg.get("overlap", 64)),
            types=bool(classes),
        )
        predict = stain_predict(cfg, predict)  # data.stain: Avg-post normalisation of the test tiles
        report = evaluate(test, predict, model=spec.model_label, train_set=label, progress=progress, **classes)
        if scope.split:
            extra = {"split": scope.split, "split_training_tiles": _training_tiles(test, scope)}
    report.meta.update(
        {
            "checkpoint": str(ckpt_path),
            "checkpoint_epoch": int(ckpt.get("epoch", 0)),
            "recipe": spec.name,
            "inference": "whole tile, reflect-pad to 32" if not ecfg.get("tile") else "sliding window",
            "device": str(device),
            "trained_on": scope.trained,
            "test_ids": scope.test_ids,
            "scope_note": scope.message,
            **extra,
        }
    )
    if info is not None:
        report.meta["trained_classes"] = dict(info)
        report.meta["class_vote"] = "majority of the type argmax over each instance (HoVer-Net's rule)"
        if not classes:
            why = f"no scored dataset has the {info['grouping']} classes" if protocol else 'eval.protocol = "none"'
            report.meta["class_note"] = f"instance metrics only: {why}"
    folder = Path(out or ecfg.get("out") or ckpt_path.parent / "eval")
    paths = report.save(folder)
    return report, paths
