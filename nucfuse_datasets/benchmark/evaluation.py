"""Scoring: ``evaluate(data, predict_fn)`` on NucFuse-test or any dataset split, saved predictions, the report.

Each tile is scored with :class:`~nucfuse_datasets.metrics.MetricPolicy` (NucFuseRank's definitions by default);
scores are aggregated per subset and overall both as the paper does (mean of per-image values) and pooled
(dataset-level ratios of summed counts). With ``protocol=`` (``"pannuke"``, ``"conic"``, ``"hovernet"``) the
predicted classes are scored too, exactly as the official codes do (:mod:`nucfuse_datasets.metrics.class_aware`),
in the evaluation classes of each dataset (:mod:`~nucfuse_datasets.benchmark.class_groupings`). The
:class:`EvaluationReport` keeps every per-image count, so any other aggregation or protocol can be recomputed later.

Predictions come from a callable (one image, or a list of ``batch_size`` images, at a time) or from a folder of the
files HoVer-Net, CellViT, QuPath, Cellpose, StarDist or this library wrote
(:mod:`nucfuse_datasets.io.predictions`).

Example:
    >>> from nucfuse_datasets import NucFuseTest
    >>> from nucfuse_datasets.baselines import ClassicalBaseline
    >>> test = NucFuseTest(getfixture("tmp_path"), datasets=["synthetic"],
    ...                    dataset_options={"synthetic": {"n_tiles": 14}})
    >>> report = test.evaluate(ClassicalBaseline(), progress=False)
    >>> report.overall["mean"]["n_images"], 0 < report.overall["mean"]["pq"] < 1
    (14, True)
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nucfuse_datasets._version import __version__
from nucfuse_datasets.benchmark._evaluation_report import LEADERBOARD_METRICS, EvaluationReport
from nucfuse_datasets.benchmark._prediction_checks import check_prediction, label_components
from nucfuse_datasets.benchmark._scoring import DataView, GroupingArg, Scorer, batches, report_meta
from nucfuse_datasets.errors import (
    ArgumentError,
    InvalidPredictionError,
    MissingPredictionWarning,
    PredictionFailedError,
)
from nucfuse_datasets.io.config import PathLike
from nucfuse_datasets.io.files import save_npy, write_tif
from nucfuse_datasets.metrics import ClassStats, MetricPolicy, PairResult
from nucfuse_datasets.schema import Sample

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.benchmark.composite import NucFuseTest
    from nucfuse_datasets.datasets._base import NucleiDataset
    from nucfuse_datasets.io.predictions import ClassMap

__all__ = [
    "LEADERBOARD_METRICS",
    "EvaluationReport",
    "check_prediction",
    "evaluate",
    "evaluate_folder",
    "export_test_set",
    "label_components",
]

Predictions = Iterator[tuple[int, Sample, Any]]


def _progress(n: int, desc: str, progress: bool | None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=n, desc=desc, unit="tile", disable=None if progress is None else not progress, leave=False)


def _where(view: DataView, i: int) -> str:
    subset, sid = view.key(i)
    return f"{subset}/{sid}"


def _from_callable(view: DataView, predict_fn: Callable[..., Any], batch_size: int) -> Predictions:
    """``(index, sample, output)`` per tile; with ``batch_size > 1`` ``predict_fn`` gets a list of images."""
    for chunk in batches(len(view), batch_size):
        samples = [view.sample(i) for i in chunk]
        images = [s.image for s in samples]
        try:
            outputs = predict_fn(images) if batch_size > 1 else [predict_fn(images[0])]
        except Exception as exc:
            first = samples[0]
            origin = f", from {first.meta.original_file}" if first.meta.original_file else ""
            what = (
                f"the batch of {len(samples)} images starting at tile {_where(view, chunk[0])}"
                if batch_size > 1
                else f"the {first.shape[0]}×{first.shape[1]} RGB uint8 image of tile {_where(view, chunk[0])}{origin}"
            )
            raise PredictionFailedError(
                f"{_where(view, chunk[0])}: predict_fn raised {type(exc).__name__}: {exc} (on {what}); the chained "
                "traceback shows where. Fix predict_fn, then evaluate again."
            ) from exc
        if batch_size > 1:
            outputs = _batch_outputs(outputs, len(samples), _where(view, chunk[0]))
        yield from ((i, s, out) for i, s, out in zip(chunk, samples, outputs, strict=True))


def _batch_outputs(outputs: Any, n: int, where: str) -> list[Any]:
    if hasattr(outputs, "detach"):
        outputs = outputs.detach().cpu().numpy()
    if isinstance(outputs, np.ndarray) and outputs.ndim == 3:
        outputs = list(outputs)  # a stacked B×H×W batch of instance maps
    if not isinstance(outputs, list | tuple) or len(outputs) != n:
        got = f"{type(outputs).__name__} of {len(outputs)}" if isinstance(outputs, list | tuple) else type(outputs)
        raise InvalidPredictionError(
            f"{where}: with batch_size > 1, predict_fn gets a list of {n} images and must return a list of {n} "
            f"predictions (one per image, in order), got {got}"
        )
    return list(outputs)


def _from_files(
    view: DataView,
    scorer: Scorer,
    folder: PathLike,
    *,
    missing: str,
    format: str | None,
    allow_pickle: bool,
    class_map: ClassMap | None,
) -> tuple[Predictions, list[str]]:
    """``(index, sample, (instances, classes))`` per tile from a predictions folder, and the tiles without a file."""
    from nucfuse_datasets.io.predictions import find_predictions, read_prediction

    if missing not in ("error", "empty"):
        raise ArgumentError(f"missing must be 'error' or 'empty', got {missing!r}")
    keys = [view.key(i) for i in range(len(view))]
    names = {k: n for i, k in enumerate(keys) if (n := view.image_name(i))}
    found = find_predictions(Path(folder), keys, format=format, image_names=names)
    absent = [f"{s}__{i}" for s, i in keys if (s, i) not in found]
    if absent and missing == "error":
        raise InvalidPredictionError(
            f"{folder}: no prediction for {len(absent)} of {len(keys)} tiles (e.g. {absent[:3]}); name each file "
            "<subset>__<sample_id>, <sample_id> or after the image the tool was given (nucfuse export-test names), "
            "or pass missing='empty' (CLI: --missing empty) to score missing tiles as empty"
        )
    if absent:
        warnings.warn(
            MissingPredictionWarning(
                f"{folder}: no prediction for {len(absent)} of {len(keys)} tiles (e.g. {absent[:3]}); they are "
                "scored as empty maps (missing='empty')"
            ),
            stacklevel=3,
        )

    def read() -> Predictions:
        for i, key in enumerate(keys):
            sample = view.sample(i)
            grouping = scorer.groupings.get(key[0])
            pf = found.get(key)
            if pf is None:
                inst = np.zeros(sample.shape, np.int32)
                yield i, sample, (inst, np.zeros(1, np.int64) if grouping is not None else None)
                continue
            cmap = class_map
            if cmap is None and grouping is not None and pf.format in ("geojson", "cellvit", "qupath"):
                cmap = {n: k for k, n in enumerate(grouping.names, start=1)}  # names as the evaluation classes
            pred = read_prediction(pf, sample.shape, allow_pickle=allow_pickle, class_map=cmap)
            yield i, sample, (pred.instances, pred.classes)

    return read(), absent


def _run(
    view: DataView,
    scorer: Scorer,
    predictions: Predictions,
    desc: str,
    progress: bool | None,
    meta_extra: Mapping[str, Any],
    model: str | None,
    train_set: str | None,
) -> EvaluationReport:
    keys: list[tuple[str, str, tuple[int, int]]] = []
    results: list[PairResult] = []
    stats: list[ClassStats | None] = []
    tissues: list[str | None] = []
    start = time.perf_counter()
    with _progress(len(view), desc, progress) as bar:
        for i, sample, raw in predictions:
            subset, sid = view.key(i)
            result, st = scorer.score(sample, subset, raw, f"{subset}/{sid}")
            results.append(result)
            stats.append(st)
            tissues.append(scorer.tissue(sample) if st is not None else None)
            keys.append((subset, sid, sample.shape))
            bar.update(1)
    meta = report_meta(view, scorer.policy, scorer.use_ignore, model, train_set)
    meta.update(scorer.meta())
    meta.update(meta_extra)
    meta["seconds"] = round(time.perf_counter() - start, 3)
    class_stats = stats if scorer.protocol is not None else None
    return EvaluationReport.from_results(keys, results, scorer.policy, meta, class_stats, tissues)


def evaluate(
    data: NucFuseTest | NucleiDataset,
    predict_fn: Callable[..., Any] | PathLike,
    protocol: str | None = None,
    batch_size: int = 1,
    *,
    classes: GroupingArg = None,
    map_predictions: bool = False,
    radius: float = 12.0,
    policy: MetricPolicy | None = None,
    use_ignore: bool = False,
    model: str | None = None,
    train_set: str | None = None,
    progress: bool | None = None,
    label_components: bool = False,
    missing: str = "error",
    format: str | None = None,
    allow_pickle: bool = False,
    class_map: ClassMap | None = None,
) -> EvaluationReport:
    """Score a model (or its saved predictions) on NucFuse-test or any dataset split, class-aware on request.

    Args:
        data: :class:`~nucfuse_datasets.NucFuseTest`, or a dataset (``nf.get_dataset("pannuke", split="fold3")``,
            CoNSeP's or MoNuSAC's ``split="test"``, PUMA ...).
        predict_fn: takes the RGB ``uint8`` H×W×3 image and returns an integer H×W instance map (numpy or torch), or
            ``(instances, classes)``, or ``{"instances": ..., "classes": ...}`` (``classes[id]`` = class of instance
            ``id``, ``classes[0] = 0``); with ``batch_size > 1`` it takes a list of images and returns a list (or a
            B×H×W array). Or a folder of saved predictions: see :func:`evaluate_folder` for the formats.
        protocol: ``None`` (instance metrics only), or the class-aware protocol: ``"pannuke"`` (mPQ, bPQ over
            tissues), ``"conic"`` (mPQ+) or ``"hovernet"`` (F1_d, type accuracy, per-type F1). The report holds the
            per-image stats of all three (:meth:`EvaluationReport.rescore`).
        batch_size: images per ``predict_fn`` call.
        classes: the evaluation classes: a grouping name of
            :data:`~nucfuse_datasets.benchmark.class_groupings.GROUPINGS` (``"consep-7"``, ``"puma-3"``...): the
            model's one class space, scored on the subsets whose classes it maps (the others get instance metrics
            only); or ``{subset: grouping or None}`` (``None``: no classes scored there). Default: each dataset's
            own, PanNuke's 5 types, CoNSeP's 7 merged to HoVer-Net's 4, MoNuSAC's 4, PUMA's 10. Subsets without
            classes get instance metrics only.
        map_predictions: the predicted class ids are the dataset's own (e.g. CoNSeP's 7), to be grouped like the
            ground truth; by default they are already the evaluation classes.
        radius: HoVer-Net's centroid pairing radius (pixels).
        policy: instance-metric policy (default: NucFuseRank's definitions, empty images count as 0).
        use_ignore: apply the samples' ambiguous-region masks to the instance metrics (NucEval rule).
        model: label stored in the report (and used by the analyses).
        train_set: training-set label stored in the report (``"top9"``, ``"monuseg"``...).
        progress: progress bar.
        label_components: the predictions are binary masks: each connected component becomes one instance.
        missing: folder only: ``"error"`` or ``"empty"`` for tiles without a file.
        format: folder only: force one of :data:`~nucfuse_datasets.io.predictions.PREDICTION_FORMATS`.
        allow_pickle: folder only: read Cellpose's pickled ``_seg.npy`` (trusted files only).
        class_map: folder only: ``{class name or type id: evaluation class id}`` for the files' classes.

    Raises:
        InvalidPredictionError: a prediction has the wrong shape, dtype, ids or classes; the message names the tile.
        PredictionFailedError: ``predict_fn`` raised; the message names the tile and the error is chained.
        ArgumentError: bad options (unknown protocol, a grouping for other classes, a protocol on data without
            classes).

    Example:
        >>> import numpy as np
        >>> import nucfuse_datasets as nf
        >>> ds = nf.get_dataset("synthetic", root=getfixture("tmp_path"), n_tiles=3, tile_size=64)
        >>> report = nf.evaluate(ds, lambda image: np.zeros(image.shape[:2], np.int32), progress=False)
        >>> report.overall["mean"]["pq"], report.meta["data"]
        (0.0, 'synthetic/all')
    """
    view = DataView(data)
    scorer = Scorer(
        view,
        policy or MetricPolicy(),
        protocol,
        classes,
        map_predictions,
        radius,
        use_ignore,
        label_components,
    )
    if callable(predict_fn):
        predictions = _from_callable(view, predict_fn, int(batch_size))
        return _run(view, scorer, predictions, "Evaluating", progress, {"batch_size": batch_size}, model, train_set)
    if isinstance(predict_fn, str | os.PathLike):
        predictions, absent = _from_files(
            view,
            scorer,
            predict_fn,
            missing=missing,
            format=format,
            allow_pickle=allow_pickle,
            class_map=class_map,
        )
        extra = {"predictions": str(predict_fn), "missing_predictions": absent, "format": format}
        return _run(view, scorer, predictions, "Scoring predictions", progress, extra, model, train_set)
    raise ArgumentError(f"predict_fn must be a callable or a predictions folder, not {type(predict_fn).__name__}")


def evaluate_folder(
    test: NucFuseTest | NucleiDataset,
    folder: PathLike,
    **kwargs: Any,
) -> EvaluationReport:
    """Score saved predictions: the files HoVer-Net, CellViT, QuPath, Cellpose, StarDist or this library wrote.

    Recognised by their layout and names (:func:`nucfuse_datasets.io.predictions.find_predictions`): HoVer-Net's
    ``mat/<name>.mat`` and ``json/<name>.json``; GeoJSON FeatureCollections (CellViT, QuPath, InstanSeg);
    Cellpose's ``<name>_cp_masks.png|tif`` (and ``<name>_seg.npy`` with ``allow_pickle=True``); label images
    ``.tif``/``.png``/``.npy``. ``<name>`` is ``<subset>__<sample_id>`` (what :meth:`NucFuseTest.export
    <nucfuse_datasets.NucFuseTest.export>` and ``nucfuse export-test`` write), ``<sample_id>``, or the stem of the
    tile's original file. Keyword arguments are those of :func:`evaluate` (``missing``, ``format``, ``protocol``,
    ``class_map``, ``allow_pickle``, ``policy``, ...).

    Raises:
        InvalidPredictionError: a prediction is missing (with ``missing="error"``), unreadable or invalid; a folder
            mixes formats or matches a tile twice; the message names the files.
        UnsafePredictionError: a pickle without ``allow_pickle=True``.

    Warns:
        MissingPredictionWarning: ``missing="empty"`` and some tiles have no file.
        BinaryMaskWarning: a prediction's id covers many separate regions (a 0/1 mask).

    Example:
        >>> from nucfuse_datasets import NucFuseTest
        >>> root = getfixture("tmp_path")
        >>> test = NucFuseTest(root / "data", datasets=["synthetic"],
        ...                    dataset_options={"synthetic": {"n_tiles": 14, "tile_size": 256}}, test_ids="rule")
        >>> import numpy as np
        >>> (root / "pred").mkdir()
        >>> for i in range(len(test)):  # the ground truth as a perfect "prediction"
        ...     subset, sample_id = test.key(i)
        ...     np.save(root / "pred" / f"{subset}__{sample_id}.npy", test.load_sample(i).instances)
        >>> evaluate_folder(test, root / "pred", progress=False).overall["pooled"]["pq"]
        1.0
    """
    return evaluate(test, Path(folder), **kwargs)


def export_test_set(test: NucFuseTest, folder: PathLike) -> list[str]:
    """Write NucFuse-test as ``<subset>__<sample_id>.tif`` + ``.npy`` (+ ``nucfuse_test.json``), atomically.

    Returns:
        The file stems written.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ArgumentError(f"{folder}: folder exists and is not empty")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    stems = []
    try:
        for i in range(len(test)):
            sample = test.load_sample(i)
            subset = str(sample.meta.extra.get("subset", sample.meta.dataset))
            stem = f"{subset}__{sample.meta.sample_id}"
            write_tif(tmp / f"{stem}.tif", sample.image)
            save_npy(tmp / f"{stem}.npy", sample.instances)
            stems.append(stem)
        (tmp / "nucfuse_test.json").write_text(
            json.dumps({"ids_sha256": test.ids_sha256, "ids": test.ids, "library_version": __version__}, indent=1)
        )
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stems
