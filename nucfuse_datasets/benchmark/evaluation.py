"""Leaderboard scoring on NucFuse-test: ``evaluate(predict_fn)``, saved predictions, the report.

Each tile is scored with :class:`~nucfuse_datasets.metrics.MetricPolicy` (NucFuseRank's definitions by default);
scores are aggregated per subset and overall both as the paper does (mean of per-image values) and pooled
(dataset-level ratios of summed counts). The :class:`EvaluationReport` keeps every per-image count, so any other
aggregation can be recomputed later.

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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nucfuse_datasets._labelmap import check_label_map
from nucfuse_datasets._version import __version__
from nucfuse_datasets.benchmark._evaluation_report import LEADERBOARD_METRICS, EvaluationReport, _meta
from nucfuse_datasets.errors import (
    ArgumentError,
    BinaryMaskWarning,
    InvalidPredictionError,
    InvalidSourceError,
    MissingPredictionWarning,
    PredictionFailedError,
)
from nucfuse_datasets.io.config import PathLike
from nucfuse_datasets.io.files import load_npy, read_label_image, save_npy, write_tif
from nucfuse_datasets.metrics import MetricPolicy, PairResult

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.benchmark.composite import NucFuseTest

__all__ = [
    "LEADERBOARD_METRICS",
    "EvaluationReport",
    "check_prediction",
    "evaluate",
    "evaluate_folder",
    "label_components",
]

PREDICTION_SUFFIXES = (".npy", ".tif", ".tiff", ".png")
#: An id in this many separate (8-connected) pieces or more marks a binary mask passed as an instance map.
BINARY_MASK_PIECES = 5
#: Maps with more distinct ids than this are taken as instance maps and not inspected for that tell.
FEW_IDS = 16
_EIGHT = np.ones((3, 3), bool)


def _pieces(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground mask and, per foreground pixel, the index of its (connected component, id) piece."""
    from scipy import ndimage

    fg = arr > 0
    comp, _ = ndimage.label(fg, structure=_EIGHT)
    key = comp[fg].astype(np.int64) * (int(arr.max()) + 1 if arr.size else 1) + arr[fg].astype(np.int64)
    return fg, key


def label_components(pred: Any) -> np.ndarray:
    """An instance map in which every 8-connected piece of every id is its own instance (ids 1..N).

    For users who only have binary (0/1 or boolean) masks: each connected blob becomes one nucleus. Ids of a proper
    instance map survive as they are, except that an id in several separate pieces is split.

    Example:
        >>> import numpy as np
        >>> mask = np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 0, 0, 0]], np.uint8)
        >>> label_components(mask).tolist()
        [[1, 1, 0, 2], [0, 0, 0, 2], [3, 0, 0, 0]]
    """
    arr = np.asarray(pred)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    out = np.zeros(arr.shape, np.int32)
    if not arr.size or not arr.any():
        return out
    fg, key = _pieces(arr)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # number pieces in raster order of their first pixel
    out[fg] = order[inverse.ravel()] + 1
    return out


def _most_pieces(arr: np.ndarray) -> tuple[int, int]:
    """``(id, number of separate pieces)`` of the id split into the most pieces.

    Only maps with at most :data:`FEW_IDS` distinct ids are inspected (a binary or class map has one or a few;
    a real instance map has many, and skipping it keeps scoring fast); others, and empty maps, give ``(0, 0)``.
    """
    if not arr.size:
        return 0, 0
    top = int(arr.max())
    if top == 0:
        return 0, 0
    n_ids = np.count_nonzero(np.bincount(arr.ravel())[1:]) if top < 1 << 24 else np.unique(arr).size - 1
    if n_ids > FEW_IDS:
        return 0, 0
    _, key = _pieces(arr)
    span = int(key.max()) + 1
    pairs = np.flatnonzero(np.bincount(key, minlength=span)) if span <= 1 << 24 else np.unique(key)  # bincount: fast
    ids = pairs % (int(arr.max()) + 1)
    counts = np.bincount(ids)
    worst = int(np.argmax(counts))
    return worst, int(counts[worst])


def _as_instances(raw: Any, shape: tuple[int, int], where: str, components: bool) -> np.ndarray:
    """Check one prediction; label its components (``components=True``) or warn when it looks binary."""
    if components:
        if hasattr(raw, "detach"):
            raw = raw.detach().cpu().numpy()
        arr = np.asarray(raw)
        arr = check_prediction(arr.astype(np.uint8) if arr.dtype == np.bool_ else arr, shape, where)
        return label_components(arr)
    arr = check_prediction(raw, shape, where)
    worst, pieces = _most_pieces(arr)
    if pieces >= BINARY_MASK_PIECES:
        warnings.warn(
            BinaryMaskWarning(
                f"{where}: id {worst} of the prediction covers {pieces} separate regions, so it is scored as one "
                "giant nucleus; this looks like a binary 0/1 mask passed as an instance map. Return one id per "
                "nucleus, or pass label_components=True (CLI: --label-components) to label connected components."
            ),
            stacklevel=3,
        )
    return arr


def check_prediction(pred: Any, shape: tuple[int, int], where: str) -> np.ndarray:
    """Validate one prediction: an integer ``H×W`` instance map with non-negative ids.

    Accepts numpy arrays and anything with ``.numpy()``/``__array__`` (torch tensors, on any device after
    ``.cpu()``).

    Raises:
        InvalidPredictionError: wrong type, shape or dtype, or negative ids; the message names ``where``.

    Example:
        >>> import numpy as np
        >>> check_prediction(np.zeros((2, 3), np.uint16), (2, 3), "demo/x").dtype
        dtype('uint16')

    See also :func:`label_components` for binary masks.
    """
    return check_label_map(
        pred,
        f"{where}: prediction",
        InvalidPredictionError,
        shape=tuple(shape),
        bool_hint="; return an instance map (0 = background, 1..N = nuclei), or pass label_components=True "
        "(CLI: --label-components) to make each connected component a nucleus",
    )


def _progress(n: int, desc: str, progress: bool | None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=n, desc=desc, unit="tile", disable=None if progress is None else not progress, leave=False)


def evaluate(
    test: NucFuseTest,
    predict_fn: Callable[[np.ndarray], Any],
    *,
    policy: MetricPolicy | None = None,
    use_ignore: bool = False,
    model: str | None = None,
    train_set: str | None = None,
    progress: bool | None = None,
    label_components: bool = False,
) -> EvaluationReport:
    """Run ``predict_fn`` on every NucFuse-test tile and score it.

    Args:
        test: the test set.
        predict_fn: takes the RGB ``uint8`` H×W×3 image, returns an integer H×W instance map (numpy or torch).
        policy: scoring policy (default: NucFuseRank's definitions, empty images count as 0).
        use_ignore: apply the samples' ambiguous-region masks (NucEval rule); the paper did not.
        model: label stored in the report (and used by the analyses).
        train_set: training-set label stored in the report (``"top9"``, ``"monuseg"``...).
        progress: progress bar.
        label_components: ``predict_fn`` returns binary masks: each connected component becomes one instance.
            Without it, an id spread over many separate regions (a 0/1 mask) gets a :class:`BinaryMaskWarning`.

    Raises:
        InvalidPredictionError: a prediction has the wrong shape or dtype, or negative ids; the message names the tile.
        PredictionFailedError: ``predict_fn`` raised; the message names the tile and the error is chained.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets import NucFuseTest
        >>> test = NucFuseTest(getfixture("tmp_path"), datasets=["synthetic"],
        ...                    dataset_options={"synthetic": {"n_tiles": 14, "tile_size": 256}}, test_ids="rule")
        >>> report = evaluate(test, lambda image: np.zeros(image.shape[:2], np.int32), progress=False)
        >>> report.overall["mean"]["pq"], report.overall["mean"]["n_images"]
        (0.0, 14)
    """
    policy = policy or MetricPolicy()
    keys: list[tuple[str, str, tuple[int, int]]] = []
    results: list[PairResult] = []
    start = time.perf_counter()
    with _progress(len(test), "Evaluating", progress) as bar:
        for i in range(len(test)):
            sample = test.load_sample(i)
            subset = str(sample.meta.extra.get("subset", sample.meta.dataset))
            where = f"{subset}/{sample.meta.sample_id}"
            try:
                raw = predict_fn(sample.image)
            except Exception as exc:
                origin = f", from {sample.meta.original_file}" if sample.meta.original_file else ""
                raise PredictionFailedError(
                    f"{where}: predict_fn raised {type(exc).__name__}: {exc} (on the {sample.shape[0]}×"
                    f"{sample.shape[1]} RGB uint8 image of tile {where}{origin}); the chained traceback shows where. "
                    "Fix predict_fn, then evaluate again."
                ) from exc
            pred = _as_instances(raw, sample.shape, where, label_components)
            results.append(policy.evaluate(sample.instances, pred, ignore=sample.ignore if use_ignore else None))
            keys.append((subset, sample.meta.sample_id, sample.shape))
            bar.update(1)
    meta = _meta(test, policy, use_ignore, model, train_set)
    meta["seconds"] = round(time.perf_counter() - start, 3)
    return EvaluationReport.from_results(keys, results, policy, meta)


def _find_prediction(folder: Path, subset: str, sample_id: str) -> Path | None:
    for stem in (f"{subset}__{sample_id}", sample_id):
        for suffix in PREDICTION_SUFFIXES:
            p = folder / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def _load_prediction(path: Path) -> np.ndarray:
    try:
        return load_npy(path) if path.suffix == ".npy" else read_label_image(path)
    except InvalidSourceError as exc:
        raise InvalidPredictionError(str(exc)) from None


def evaluate_folder(
    test: NucFuseTest,
    folder: PathLike,
    *,
    missing: str = "error",
    policy: MetricPolicy | None = None,
    use_ignore: bool = False,
    model: str | None = None,
    train_set: str | None = None,
    progress: bool | None = None,
    label_components: bool = False,
) -> EvaluationReport:
    """Score saved predictions: ``<subset>__<sample_id>`` (or ``<sample_id>``) ``.npy``/``.tif``/``.png`` files.

    Args:
        test: the test set.
        folder: the predictions folder (the names :meth:`NucFuseTest.export` writes, as ``.npy`` or label images).
        missing: ``"error"`` (default) or ``"empty"`` (score a missing prediction as an empty map).
        policy: scoring policy.
        use_ignore: apply ambiguous-region masks.
        model: label for the report.
        train_set: training-set label for the report.
        progress: progress bar.
        label_components: the files are binary masks: each connected component becomes one instance.

    Raises:
        InvalidPredictionError: a prediction is missing (with ``missing="error"``), unreadable or invalid.

    Warns:
        MissingPredictionWarning: ``missing="empty"`` and some tiles have no file.
        BinaryMaskWarning: a prediction's id covers many separate regions (a 0/1 mask).

    Example:
        >>> from nucfuse_datasets import NucFuseTest
        >>> root = getfixture("tmp_path")
        >>> test = NucFuseTest(root / "data", datasets=["synthetic"],
        ...                    dataset_options={"synthetic": {"n_tiles": 14, "tile_size": 256}}, test_ids="rule")
        >>> _ = test.export(root / "gt")  # ground truth as <subset>__<id>.npy: a perfect "prediction"
        >>> evaluate_folder(test, root / "gt", progress=False).overall["pooled"]["pq"]
        1.0
    """
    if missing not in ("error", "empty"):
        raise ArgumentError(f"missing must be 'error' or 'empty', got {missing!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidPredictionError(f"{folder}: predictions folder not found")
    paths = {}
    absent = []
    for i in range(len(test)):
        subset, sid = test.key(i)
        p = _find_prediction(folder, subset, sid)
        if p is None:
            absent.append(f"{subset}__{sid}")
        paths[i] = p
    if absent and missing == "error":
        raise InvalidPredictionError(
            f"{folder}: no prediction for {len(absent)} of {len(test)} tiles (e.g. {absent[:3]}); expected files "
            f"named <subset>__<sample_id>.npy (or .tif/.png)"
        )
    if absent:
        warnings.warn(
            MissingPredictionWarning(
                f"{folder}: no prediction for {len(absent)} of {len(test)} tiles (e.g. {absent[:3]}); they are "
                "scored as empty maps (missing='empty')"
            ),
            stacklevel=2,
        )

    policy = policy or MetricPolicy()
    keys, results = [], []
    start = time.perf_counter()
    with _progress(len(test), "Scoring predictions", progress) as bar:
        for i in range(len(test)):
            sample = test.load_sample(i)
            subset = str(sample.meta.extra.get("subset", sample.meta.dataset))
            where = f"{subset}/{sample.meta.sample_id}"
            p = paths[i]
            raw = np.zeros(sample.shape, np.int32) if p is None else _load_prediction(p)
            pred = _as_instances(raw, sample.shape, f"{where} ({p})" if p else where, label_components)
            results.append(policy.evaluate(sample.instances, pred, ignore=sample.ignore if use_ignore else None))
            keys.append((subset, sample.meta.sample_id, sample.shape))
            bar.update(1)
    meta = _meta(test, policy, use_ignore, model, train_set)
    meta.update(seconds=round(time.perf_counter() - start, 3), predictions=str(folder), missing_predictions=absent)
    return EvaluationReport.from_results(keys, results, policy, meta)


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
