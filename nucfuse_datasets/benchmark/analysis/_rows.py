"""Result rows: reading them from files, looking values up, ranking values."""

from __future__ import annotations

import contextlib
import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nucfuse_datasets.errors import ArgumentError, InvalidSourceError
from nucfuse_datasets.io.config import PathLike

__all__ = ["Row", "load_results", "models_of", "rank", "value"]

Row = Mapping[str, Any]
_KEYS = ("model", "train_set", "test_subset")


def load_results(path: PathLike) -> list[dict[str, Any]]:
    r"""Read result rows from a CSV file, a JSON list, or a folder of evaluation-report JSON files.

    Numeric columns are converted to floats. Report JSONs must carry ``model`` and ``train_set`` in their ``meta``.

    Raises:
        InvalidSourceError: the file has no ``model``/``train_set``/``test_subset`` columns or cannot be parsed.

    Example:
        >>> p = getfixture("tmp_path") / "rows.csv"
        >>> _ = p.write_text("model,train_set,test_subset,pq\nm,monuseg,overall,53.4\n")
        >>> load_results(p)
        [{'model': 'm', 'train_set': 'monuseg', 'test_subset': 'overall', 'pq': 53.4}]
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    if path.is_dir():
        from nucfuse_datasets.benchmark.evaluation import EvaluationReport

        for f in sorted(path.glob("*.json")):
            rows += EvaluationReport.from_json(f.read_text()).to_rows()
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidSourceError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and "per_image" in data:
            from nucfuse_datasets.benchmark.evaluation import EvaluationReport

            rows = EvaluationReport.from_json(path.read_text()).to_rows()
        elif isinstance(data, list):
            rows = [dict(r) for r in data]
        else:
            raise InvalidSourceError(f"{path}: expected a list of result rows or an evaluation report")
    else:
        with open(path, newline="") as fh:
            rows = [dict(r) for r in csv.DictReader(fh)]
    for r in rows:
        for key in _KEYS:
            if key not in r:
                raise InvalidSourceError(f"{path}: result rows need a {key!r} column (got {sorted(r)})")
        for k, v in list(r.items()):
            if k not in _KEYS and isinstance(v, str):
                with contextlib.suppress(ValueError):
                    r[k] = float(v)
    return rows


def value(rows: Iterable[Row], model: str, train_set: str, test_subset: str, metric: str) -> float:
    """The ``metric`` of one (model, train set, test subset) cell; NaN when absent.

    Raises:
        ArgumentError: several rows hold that cell.
    """
    hits = [
        r[metric]
        for r in rows
        if r["model"] == model and r["train_set"] == train_set and r["test_subset"] == test_subset and metric in r
    ]
    if len(hits) > 1:
        raise ArgumentError(f"several rows for model={model} train_set={train_set} test_subset={test_subset}")
    return float(hits[0]) if hits else math.nan


def models_of(rows: Sequence[Row]) -> list[str]:
    """The model names in ``rows``, sorted."""
    return sorted({str(r["model"]) for r in rows})


def rank(values: Sequence[float]) -> list[float]:
    """Rank 1 = highest; ties share the mean rank; NaN ranks last."""
    arr = np.array([(-v if not math.isnan(v) else math.inf) for v in values])
    order = np.argsort(arr, kind="stable")
    ranks = np.empty(len(arr))
    ranks[order] = np.arange(1, len(arr) + 1)
    for v in np.unique(arr):
        ranks[arr == v] = ranks[arr == v].mean()
    return ranks.tolist()
