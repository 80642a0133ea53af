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

import csv
import datetime as _dt
import io
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nucfuse_datasets._config import PathLike
from nucfuse_datasets._io import atomic_write, load_npy, read_label_image, save_npy, write_tif
from nucfuse_datasets._version import __version__
from nucfuse_datasets.errors import ArgumentError, InvalidPredictionError, InvalidSourceError
from nucfuse_datasets.metrics import MetricPolicy, PairResult, aggregate

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.composite import NucFuseTest

__all__ = ["LEADERBOARD_METRICS", "EvaluationReport", "check_prediction", "evaluate", "evaluate_folder"]

#: Columns of the leaderboard table (the paper reports PQ, AJI and Dice = dice_2).
LEADERBOARD_METRICS = ("pq", "dq", "sq", "aji", "dice_2", "precision", "recall")
PREDICTION_SUFFIXES = (".npy", ".tif", ".tiff", ".png")


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
    """
    if hasattr(pred, "detach"):  # torch tensor
        pred = pred.detach().cpu().numpy()
    try:
        arr = np.asarray(pred)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise InvalidPredictionError(f"{where}: prediction is not an array ({type(pred).__name__}: {exc})") from None
    if arr.dtype == object or arr.ndim == 0:
        raise InvalidPredictionError(f"{where}: prediction must be an H×W integer array, got {type(pred).__name__}")
    if arr.shape != tuple(shape):
        raise InvalidPredictionError(
            f"{where}: prediction has shape {arr.shape}, the image is {shape[0]}×{shape[1]} "
            "(return an H×W instance map)"
        )
    if arr.dtype == np.bool_:
        raise InvalidPredictionError(
            f"{where}: prediction is a boolean mask; return an instance map (0 = background, 1..N = nuclei)"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidPredictionError(
            f"{where}: prediction has dtype {arr.dtype}; instance maps must be integer (cast with .astype(np.int32))"
        )
    if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and int(arr.min()) < 0:
        raise InvalidPredictionError(f"{where}: prediction has negative ids (min {int(arr.min())})")
    return arr


@dataclass
class EvaluationReport:
    """Scores of one model on NucFuse-test: per image, per subset and overall.

    Attributes:
        per_image: one dict per tile: ``subset``, ``sample_id``, ``height``, ``width`` and every field of
            :meth:`PairResult.to_dict <nucfuse_datasets.metrics.PairResult.to_dict>` (counts and metrics).
        per_dataset: subset -> ``{"mean": ..., "pooled": ...}`` aggregates.
        overall: ``{"mean": ..., "pooled": ...}`` over all tiles (the paper's number is ``overall["mean"]``).
        meta: library version, metric policy, id-list hashes, model and training-set labels, timing.

    Example:
        >>> import numpy as np
        >>> from nucfuse_datasets.metrics import MetricPolicy, evaluate_pair
        >>> gt = np.array([[1, 1, 0, 2, 2]])
        >>> report = EvaluationReport.from_results(
        ...     [("demo", "a", (1, 5)), ("demo", "b", (1, 5))],
        ...     [evaluate_pair(gt, gt), evaluate_pair(gt, 0 * gt)], MetricPolicy(), meta={"model": "m"})
        >>> round(report.overall["mean"]["pq"], 3), report.overall["pooled"]["tp"]
        (0.5, 2)
    """

    per_image: list[dict[str, Any]]
    per_dataset: dict[str, dict[str, dict[str, float]]]
    overall: dict[str, dict[str, float]]
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_results(
        cls,
        keys: Sequence[tuple[str, str, tuple[int, int]]],
        results: Sequence[PairResult],
        policy: MetricPolicy,
        meta: dict[str, Any],
    ) -> EvaluationReport:
        """Assemble a report from ``(subset, sample_id, shape)`` keys and their per-image results."""
        per_image = [
            {"subset": s, "sample_id": i, "height": hw[0], "width": hw[1], **r.to_dict()}
            for (s, i, hw), r in zip(keys, results, strict=True)
        ]
        subsets = list(dict.fromkeys(s for s, _, _ in keys))
        per_dataset = {
            s: _aggregates([r for (k, _, _), r in zip(keys, results, strict=True) if k == s], policy) for s in subsets
        }
        return cls(per_image, per_dataset, _aggregates(list(results), policy), meta)

    def results(self) -> list[PairResult]:
        """The per-image :class:`PairResult` objects (rebuilt from the stored counts)."""
        drop = ("subset", "sample_id", "height", "width")
        return [PairResult.from_dict({k: v for k, v in row.items() if k not in drop}) for row in self.per_image]

    def reaggregate(self, policy: MetricPolicy) -> dict[str, dict[str, dict[str, float]]]:
        """Aggregates under another empty-image/aggregation policy, from the stored per-image counts."""
        res = self.results()
        out = {}
        for subset in self.per_dataset:
            out[subset] = policy.aggregate(
                [r for r, row in zip(res, self.per_image, strict=True) if row["subset"] == subset]
            )
        out["overall"] = policy.aggregate(res)
        return {"aggregated": out}

    # ------------------------------------------------------------------ views
    def leaderboard(
        self, metrics: Sequence[str] = LEADERBOARD_METRICS, aggregation: str = "mean", scale: float = 100.0
    ) -> list[dict[str, Any]]:
        """One row per subset plus ``overall``: the chosen metrics (×100 by default, as the paper reports)."""
        if aggregation not in ("mean", "pooled"):
            raise ArgumentError(f"aggregation must be 'mean' or 'pooled', got {aggregation!r}")
        rows = []
        for name, agg in [*self.per_dataset.items(), ("overall", self.overall)]:
            values = agg[aggregation]
            rows.append(
                {"subset": name, "n_images": int(values["n_images"]), **{m: values[m] * scale for m in metrics}}
            )
        return rows

    def to_markdown(self, metrics: Sequence[str] = LEADERBOARD_METRICS, aggregation: str = "mean") -> str:
        """The leaderboard as a Markdown table (×100, two decimals)."""
        title = self.meta.get("model") or "model"
        lines = [
            f"NucFuse-test — {title} ({aggregation} over images; ×100)",
            "",
            "| subset | images | "
            + " | ".join(m.upper() if m in ("pq", "dq", "sq", "aji") else m for m in metrics)
            + " |",
            "|---|---:|" + "---:|" * len(metrics),
        ]
        for row in self.leaderboard(metrics, aggregation):
            cells = [_fmt(row[m]) for m in metrics]
            name = f"**{row['subset']}**" if row["subset"] == "overall" else row["subset"]
            lines.append(f"| {name} | {row['n_images']} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_rows(self, scale: float = 100.0) -> list[dict[str, Any]]:
        """Result rows for :mod:`nucfuse_datasets.analysis` (model, train_set, test_subset, metrics ×100)."""
        model = self.meta.get("model") or "model"
        train_set = self.meta.get("train_set") or "unknown"
        return [
            {
                "model": model,
                "train_set": train_set,
                "test_subset": r["subset"],
                **{m: r[m] for m in LEADERBOARD_METRICS},
            }
            for r in self.leaderboard(scale=scale)
        ]

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (NaN written as ``null``)."""
        return _nan_to_none(
            {"meta": self.meta, "overall": self.overall, "per_dataset": self.per_dataset, "per_image": self.per_image}
        )

    def to_json(self, path: PathLike | None = None) -> str:
        """The report as JSON text; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            with atomic_write(path, "w") as fh:
                fh.write(text)
        return text

    @classmethod
    def from_json(cls, text: str) -> EvaluationReport:
        """Rebuild a report from :meth:`to_json` output."""
        data = json.loads(text)
        try:
            return cls(
                per_image=data["per_image"],
                per_dataset=_none_to_nan(data["per_dataset"]),
                overall=_none_to_nan(data["overall"]),
                meta=data.get("meta", {}),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidSourceError(f"not an evaluation report ({exc})") from None

    def to_csv(self, path: PathLike | None = None) -> str:
        """Per-image rows as CSV (every count and metric); written atomically to ``path`` when given."""
        buf = io.StringIO()
        keys = [k for k in self.per_image[0] if k not in ("pairs", "pair_ious")] if self.per_image else []
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.per_image:
            writer.writerow(row)
        text = buf.getvalue()
        if path is not None:
            with atomic_write(path, "w") as fh:
                fh.write(text)
        return text

    def save(self, folder: PathLike, stem: str = "report") -> dict[str, Path]:
        """Write ``<stem>.json``, ``<stem>.csv`` and ``<stem>.md`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {ext: folder / f"{stem}.{ext}" for ext in ("json", "csv", "md")}
        self.to_json(paths["json"])
        self.to_csv(paths["csv"])
        with atomic_write(paths["md"], "w") as fh:
            fh.write(self.to_markdown())
        return paths


def _fmt(v: float) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _aggregates(results: Sequence[PairResult], policy: MetricPolicy) -> dict[str, dict[str, float]]:
    if not results:
        return {}
    mean = aggregate(results, mode="mean", empty=policy.empty)
    pooled = aggregate(
        results, mode="pooled", empty=policy.empty, eps=policy.pooled_eps if policy.aggregation == "pooled" else 0.0
    )
    return {"mean": mean, "pooled": pooled}


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _none_to_nan(obj: Any) -> Any:
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _none_to_nan(v) for k, v in obj.items()}
    return obj


def _meta(
    test: NucFuseTest, policy: MetricPolicy, use_ignore: bool, model: str | None, train_set: str | None
) -> dict[str, Any]:
    return {
        "library_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "policy": policy.to_dict(),
        "use_ignore": use_ignore,
        "aggregations": {"mean": "mean of per-image values (the paper's)", "pooled": "ratios of summed counts"},
        "test_ids_sha256": test.ids_sha256,
        "subsets": {
            tag: {"n": len(sel.ids), "ids_sha256": sel.sha256, "source": sel.source, "pool": sel.pool}
            for tag, sel in test.selections.items()
        },
        "model": model,
        "train_set": train_set,
    }


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

    Raises:
        InvalidPredictionError: a prediction has the wrong shape or dtype, or negative ids; the message names the tile.

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
            pred = check_prediction(predict_fn(sample.image), sample.shape, where)
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

    Raises:
        InvalidPredictionError: a prediction is missing (with ``missing="error"``), unreadable or invalid.

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
            pred = check_prediction(raw, sample.shape, f"{where} ({p})" if p else where)
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
