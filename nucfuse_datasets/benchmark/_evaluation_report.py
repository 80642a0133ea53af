"""The evaluation report: per-image counts, per-subset and overall scores, and their files.

Built by :func:`nucfuse_datasets.benchmark.evaluation.evaluate` and ``evaluate_folder``; re-exported there.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nucfuse_datasets._version import __version__
from nucfuse_datasets.errors import (
    ArgumentError,
    InvalidSourceError,
)
from nucfuse_datasets.io.config import PathLike
from nucfuse_datasets.io.files import atomic_write
from nucfuse_datasets.metrics import MetricPolicy, PairResult, aggregate

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.benchmark.composite import NucFuseTest

__all__ = ["LEADERBOARD_METRICS", "EvaluationReport"]

#: Columns of the leaderboard table (the paper reports PQ, AJI and Dice = dice_2).
LEADERBOARD_METRICS = ("pq", "dq", "sq", "aji", "dice_2", "precision", "recall")


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
        subsets = self.meta.get("subsets") or {}
        rule = [tag for tag, info in subsets.items() if isinstance(info, dict) and info.get("source") == "rule"]
        ids = ""
        if rule:
            which = "" if len(rule) == len(subsets) else f" for {', '.join(rule)}"
            ids = f"; test ids from the selection rule{which}, not the pinned lists"
        lines = [
            f"NucFuse-test — {title} ({aggregation} over images; ×100{ids})",
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
        """Result rows for :mod:`nucfuse_datasets.benchmark.analysis` (model, train_set, test_subset, metrics ×100)."""
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
