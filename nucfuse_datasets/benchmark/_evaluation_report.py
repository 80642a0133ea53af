"""The evaluation report: per-image counts, per-subset and overall scores, and their files.

Built by :func:`nucfuse_datasets.benchmark.evaluation.evaluate` and ``evaluate_folder``; re-exported there.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nucfuse_datasets.errors import (
    ArgumentError,
    InvalidSourceError,
)
from nucfuse_datasets.io.config import PathLike
from nucfuse_datasets.io.files import atomic_write
from nucfuse_datasets.metrics import MetricPolicy, PairResult, aggregate

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.metrics import ClassStats

__all__ = ["LEADERBOARD_METRICS", "EvaluationReport"]

#: Columns of the leaderboard table (the paper reports PQ, AJI and Dice = dice_2).
LEADERBOARD_METRICS = ("pq", "dq", "sq", "aji", "dice_2", "precision", "recall")


@dataclass
class EvaluationReport:
    """Scores of one model on NucFuse-test: per image, per subset and overall.

    Attributes:
        per_image: one dict per tile: ``subset``, ``sample_id``, ``height``, ``width`` and every field of
            :meth:`PairResult.to_dict <nucfuse_datasets.metrics.PairResult.to_dict>` (counts and metrics); with a
            class-aware protocol also ``tissue`` and ``class_stats`` (:meth:`ClassStats.to_dict
            <nucfuse_datasets.metrics.ClassStats.to_dict>`: per-class counts and the centroid pairing).
        per_dataset: subset -> ``{"mean": ..., "pooled": ...}`` aggregates.
        overall: ``{"mean": ..., "pooled": ...}`` over all tiles (the paper's number is ``overall["mean"]``).
        meta: library version, metric policy, id-list hashes, model and training-set labels, timing; with a
            class-aware protocol, ``protocol`` and ``class_groupings`` (subset -> the evaluation classes).
        class_scores: subset -> the class-aware scores of ``meta["protocol"]`` (see
            :func:`~nucfuse_datasets.metrics.reduce_class_stats`: ``mpq``/``bpq``/``per_tissue`` for PanNuke,
            ``mpq+``/``pq`` for CoNIC, ``f1_d``/``acc_type`` for HoVer-Net, and ``per_class``); empty without one.
            :meth:`rescore` gives any other protocol from the same per-image stats.

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
    class_scores: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_results(
        cls,
        keys: Sequence[tuple[str, str, tuple[int, int]]],
        results: Sequence[PairResult],
        policy: MetricPolicy,
        meta: dict[str, Any],
        class_stats: Sequence[ClassStats | None] | None = None,
        tissues: Sequence[str | None] | None = None,
    ) -> EvaluationReport:
        """Assemble a report from ``(subset, sample_id, shape)`` keys and their per-image results.

        ``class_stats`` (one :class:`~nucfuse_datasets.metrics.ClassStats` or ``None`` per image) and ``tissues``
        (one name per image) come with a class-aware ``meta["protocol"]``; the class-aware scores are reduced per
        subset here.
        """
        per_image = [
            {"subset": s, "sample_id": i, "height": hw[0], "width": hw[1], **r.to_dict()}
            for (s, i, hw), r in zip(keys, results, strict=True)
        ]
        if class_stats is not None:
            for row, st, tissue in zip(per_image, class_stats, tissues or [None] * len(per_image), strict=True):
                if st is not None:
                    row["tissue"] = tissue
                    row["class_stats"] = st.to_dict()
        subsets = list(dict.fromkeys(s for s, _, _ in keys))
        per_dataset = {
            s: _aggregates([r for (k, _, _), r in zip(keys, results, strict=True) if k == s], policy) for s in subsets
        }
        report = cls(per_image, per_dataset, _aggregates(list(results), policy), meta)
        protocol = meta.get("protocol")
        if protocol:
            report.class_scores = report.rescore(protocol["name"])
        return report

    def rescore(self, protocol: str, **options: Any) -> dict[str, dict[str, Any]]:
        """Class-aware scores per subset under ``protocol`` (``"pannuke"``, ``"conic"`` or ``"hovernet"``).

        Computed from the stored per-image stats, so one evaluation run gives all three.

        Raises:
            ArgumentError: the report holds no class-aware stats (evaluated without ``protocol``).
        """
        from nucfuse_datasets.metrics import ClassStats, reduce_class_stats

        groupings = self.meta.get("class_groupings") or {}
        rows_by_subset: dict[str, list[dict[str, Any]]] = {}
        for row in self.per_image:
            if row.get("class_stats") is not None:
                rows_by_subset.setdefault(row["subset"], []).append(row)
        if not rows_by_subset:
            raise ArgumentError("this report holds no class-aware stats: evaluate with protocol=... to get them")
        out = {}
        for subset, rows in rows_by_subset.items():
            stats = [ClassStats.from_dict(r["class_stats"]) for r in rows]
            names = (groupings.get(subset) or {}).get("classes")
            names = ["background", *names] if names else None
            tissues = [str(r.get("tissue") or "all") for r in rows] if protocol == "pannuke" else None
            out[subset] = reduce_class_stats(stats, protocol, tissues=tissues, class_names=names, **options)
        return out

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
        pins = self.meta.get("unpinned") or {}
        if pins:
            lines += ["", f"Test-set fingerprint (sha256 of the ids): {self.meta.get('test_ids_sha256', '?')[:16]}"]
            lines += [f"- {tag}: drawn from the local copy ({why})" for tag, why in pins.items()]
        return "\n".join(lines + self._class_markdown()) + "\n"

    def _class_markdown(self) -> list[str]:
        protocol = (self.meta.get("protocol") or {}).get("name")
        if not self.class_scores or not protocol:
            return []
        headline, per_class = _CLASS_COLUMNS[protocol]
        groupings = self.meta.get("class_groupings") or {}
        lines: list[str] = []
        for subset, scores in self.class_scores.items():
            grouping = groupings.get(subset) or {}
            ids = sorted(scores.get("per_class", {}))
            names = [str(scores["per_class"][k].get("name", k)) for k in ids]
            lines += [
                "",
                f"Class-aware scores, {subset} — {protocol} protocol, classes {grouping.get('name', '?')} (×100)",
                "",
                "| images | " + " | ".join(headline) + " | " + " | ".join(f"{per_class} {n}" for n in names) + " |",
                "|---:|" + "---:|" * (len(headline) + len(ids)),
                f"| {scores.get('n_images', '')} | "
                + " | ".join(_fmt(100 * scores[k]) for k in headline)
                + " | "
                + " | ".join(_fmt(100 * scores["per_class"][k][per_class]) for k in ids)
                + " |",
            ]
            if protocol == "pannuke" and len(scores.get("per_tissue", {})) > 1:
                lines += ["", "| tissue | images | mpq | bpq |", "|---|---:|---:|---:|"]
                for tissue, t in scores["per_tissue"].items():
                    lines.append(f"| {tissue} | {t['n_images']} | {_fmt(100 * t['mpq'])} | {_fmt(100 * t['bpq'])} |")
        return lines

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
        out = {"meta": self.meta, "overall": self.overall, "per_dataset": self.per_dataset}
        if self.class_scores:
            out["class_scores"] = self.class_scores
        return _nan_to_none({**out, "per_image": self.per_image})

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
                class_scores=_int_class_keys(_none_to_nan(data.get("class_scores", {}))),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidSourceError(f"not an evaluation report ({exc})") from None

    def to_csv(self, path: PathLike | None = None) -> str:
        """Per-image rows as CSV (every count and metric); written atomically to ``path`` when given."""
        buf = io.StringIO()
        nested = ("pairs", "pair_ious", "class_stats")
        keys = list(dict.fromkeys(k for row in self.per_image for k in row if k not in nested))
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


#: Headline keys and per-class key of each protocol's scores, as the markdown table shows them.
_CLASS_COLUMNS: dict[str, tuple[tuple[str, ...], str]] = {
    "pannuke": (("mpq", "bpq"), "pq"),
    "conic": (("mpq+", "pq"), "pq+"),
    "hovernet": (("f1_d", "acc_type"), "f1"),
}


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


def _int_class_keys(scores: dict[str, Any]) -> dict[str, Any]:
    """JSON turns the int class ids of ``per_class`` into strings; give them back."""
    for value in scores.values():
        if isinstance(value, dict) and isinstance(value.get("per_class"), dict):
            value["per_class"] = {int(k): v for k, v in value["per_class"].items()}
    return scores


def _none_to_nan(obj: Any) -> Any:
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _none_to_nan(v) for k, v in obj.items()}
    return obj
