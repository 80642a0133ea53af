"""The loop behind :func:`~nucfuse_datasets.benchmark.evaluation.evaluate`: tiles in, per-image scores out.

A :class:`DataView` gives one interface over NucFuse-test and any dataset split (tile keys, samples, the dataset of
each subset, the report's provenance). :class:`Scorer` turns one prediction into a
:class:`~nucfuse_datasets.metrics.PairResult` and, with a class-aware protocol, a
:class:`~nucfuse_datasets.metrics.ClassStats` (the evaluation classes of each subset come from
:mod:`~nucfuse_datasets.benchmark.class_groupings`). Nothing but those small records is kept, so a PanNuke fold of
thousands of tiles scores in constant memory.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nucfuse_datasets._version import __version__
from nucfuse_datasets.benchmark._prediction_checks import as_instances, check_classes, split_output
from nucfuse_datasets.benchmark.class_groupings import ClassGrouping, grouping_for
from nucfuse_datasets.benchmark.protocol import ids_hash, pinned_test_ids, unpinned_reason
from nucfuse_datasets.datasets._base import NucleiDataset
from nucfuse_datasets.errors import ArgumentError, InvalidPredictionError
from nucfuse_datasets.metrics import CLASS_PROTOCOLS, ClassStats, MetricPolicy, PairResult, image_class_stats
from nucfuse_datasets.schema import Sample

__all__ = ["DataView", "Scorer", "report_meta"]

GroupingArg = str | ClassGrouping | Mapping[str, str | ClassGrouping] | None


class DataView:
    """NucFuse-test (anything with ``selections``, ``key`` and ``load_sample``) or one dataset split, alike."""

    def __init__(self, data: Any) -> None:
        if isinstance(data, NucleiDataset):
            self.test = None
            self.parts = {data.name: data}
        elif hasattr(data, "selections") and hasattr(data, "key") and hasattr(data, "load_sample"):
            self.test = data
            self.parts = dict(data.parts)
        else:
            raise ArgumentError(
                "evaluate() takes NucFuseTest or a dataset (nf.get_dataset(name, split=...)), "
                f"not {type(data).__name__}"
            )
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def key(self, i: int) -> tuple[str, str]:
        """``(subset, sample_id)`` of tile ``i`` without reading pixels."""
        if self.test is not None:
            return self.test.key(i)
        ds = self.data
        return ds.name, ds.sample_ids[i]

    def sample(self, i: int) -> Sample:
        """The untransformed Sample of tile ``i``."""
        return self.data.load_sample(i)

    def image_name(self, i: int) -> str | None:
        """The stem of the file the tile came from (what a tool run on the native files named its output)."""
        original = self.data.meta(i).original_file
        return Path(original.split("[")[0]).stem if original else None


@dataclass
class Scorer:
    """Scores one prediction of one tile: instance metrics, and class stats under a class-aware protocol."""

    view: DataView
    policy: MetricPolicy
    protocol: str | None = None
    classes: GroupingArg = None
    map_predictions: bool = False
    radius: float = 12.0
    use_ignore: bool = False
    label_components: bool = False

    def __post_init__(self) -> None:
        if self.protocol is not None and self.protocol not in CLASS_PROTOCOLS:
            raise ArgumentError(f"protocol must be one of {', '.join(CLASS_PROTOCOLS)} or None, got {self.protocol!r}")
        self.groupings: dict[str, ClassGrouping] = {}
        if self.protocol is None:
            if self.classes is not None or self.map_predictions:
                raise ArgumentError("classes= and map_predictions= need a class-aware protocol (protocol=...)")
            return
        chosen = self.classes
        fitted = False
        for tag, ds in self.view.parts.items():
            if isinstance(chosen, Mapping):  # per subset; an explicit None: no classes scored there
                grouping = (
                    None
                    if tag in chosen and chosen[tag] is None
                    else grouping_for(ds.name, ds.class_names, chosen.get(tag))
                )
            elif chosen is not None:  # one class space (the model's): scored where it fits, instances elsewhere
                try:
                    grouping = grouping_for(ds.name, ds.class_names, chosen)
                    fitted = True
                except ArgumentError:
                    if len(self.view.parts) == 1:
                        raise
                    grouping = None
            else:
                grouping = grouping_for(ds.name, ds.class_names)
            if grouping is not None:
                self.groupings[tag] = grouping
        if chosen is not None and not isinstance(chosen, Mapping) and not fitted:
            raise ArgumentError(f"classes={chosen!r} fits none of the subsets {list(self.view.parts)}")
        if not self.groupings:
            names = ", ".join(ds.name for ds in self.view.parts.values())
            raise ArgumentError(
                f"protocol={self.protocol!r} scores classes, but {names} carry none; the class-aware datasets are "
                "pannuke, consep, monusac and puma"
            )
        if isinstance(chosen, Mapping) and set(chosen) - set(self.view.parts):
            raise ArgumentError(f"classes= names unknown subsets {sorted(set(chosen) - set(self.view.parts))}")

    def score(self, sample: Sample, subset: str, raw: Any, where: str) -> tuple[PairResult, ClassStats | None]:
        """Check ``raw`` (what the model returned, or a file held) and score it against ``sample``."""
        inst_raw, cls_raw = split_output(raw, where)
        grouping = self.groupings.get(subset)
        if grouping is not None and self.label_components:
            raise ArgumentError("label_components=True renumbers the instances, so predicted classes cannot follow")
        pred = as_instances(inst_raw, sample.shape, where, self.label_components)
        ignore = sample.ignore if self.use_ignore else None
        result = self.policy.evaluate(sample.instances, pred, ignore=ignore)
        if grouping is None:
            return result, None
        if cls_raw is None:
            raise InvalidPredictionError(
                f"{where}: protocol={self.protocol!r} scores classes, but the prediction has none; return "
                "(instances, classes) or {'instances': ..., 'classes': ...} with classes[id] = class of instance id"
            )
        if sample.classes is None:
            raise InvalidPredictionError(f"{where}: this tile has no ground-truth classes to score against")
        ds = self.view.parts[subset]
        gt_classes = grouping.map(sample.classes, ds.class_names)
        if self.map_predictions:
            n_source = len(ds.class_names or ()) - 1
            pred_classes = check_classes(cls_raw, pred, n_source, where)
            pred_classes = grouping.map(pred_classes, ds.class_names)
        else:
            pred_classes = check_classes(cls_raw, pred, grouping.n_classes, where)
        stats = image_class_stats(
            sample.instances, gt_classes, pred, pred_classes, n_classes=grouping.n_classes, radius=self.radius
        )
        return result, stats

    def tissue(self, sample: Sample) -> str:
        """The image's tissue for PanNuke's per-tissue averaging: PanNuke's raw tissue name, else the organ."""
        return str(sample.meta.extra.get("tissue") or sample.meta.organ or "all")

    def meta(self) -> dict[str, Any]:
        """The class-aware part of the report's meta."""
        if self.protocol is None:
            return {}
        return {
            "protocol": {"name": self.protocol},
            "radius": self.radius,
            "map_predictions": self.map_predictions,
            "class_groupings": {tag: g.to_dict() for tag, g in self.groupings.items()},
        }


def batches(n: int, size: int) -> Iterator[range]:
    """``range``s of at most ``size`` consecutive indices covering ``0..n-1``."""
    if size < 1:
        raise ArgumentError(f"batch_size must be at least 1, got {size}")
    for start in range(0, n, size):
        yield range(start, min(start + size, n))


def report_meta(
    view: DataView, policy: MetricPolicy, use_ignore: bool, model: str | None, train_set: str | None
) -> dict[str, Any]:
    """Provenance of a report: library version, policy, and exactly which tiles were scored."""
    meta: dict[str, Any] = {
        "library_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "policy": policy.to_dict(),
        "use_ignore": use_ignore,
        "aggregations": {"mean": "mean of per-image values (the paper's)", "pooled": "ratios of summed counts"},
        "model": model,
        "train_set": train_set,
    }
    test = view.test
    if test is not None:
        meta["data"] = "NucFuse-test"
        meta["test_ids_sha256"] = test.ids_sha256
        meta["subsets"] = {
            tag: {"n": len(sel.ids), "ids_sha256": sel.sha256, "source": sel.source, "pool": sel.pool}
            for tag, sel in test.selections.items()
        }
        meta["unpinned"] = _unpinned(test)
        return meta
    ds = next(iter(view.parts.values()))
    fingerprint = ids_hash(ds.sample_ids)
    meta["data"] = f"{ds.name}/{ds.split}"
    meta["test_ids_sha256"] = fingerprint
    meta["subsets"] = {
        ds.name: {
            "n": len(ds),
            "ids_sha256": fingerprint,
            "source": "dataset",
            "pool": f"split {ds.split!r}",
            "options": dict(ds.options),
        }
    }
    return meta


def _unpinned(test: Any) -> dict[str, str]:
    """Subsets whose tiles were drawn from the local copy, with the reason (shown next to the fingerprint)."""
    out = {}
    for tag, sel in test.selections.items():
        ds = test.parts[tag]
        if sel.source != "rule" or not ds.resources:  # generated data are the same everywhere (same options)
            continue
        name = ds.name
        if tag != name:
            out[tag] = "a renamed subset: the selection rule ran on the tiles present here"
        elif pinned_test_ids(name) is not None:
            out[tag] = "test_ids='rule': the selection rule ran on the tiles present here instead of the pinned list"
        else:
            out[tag] = unpinned_reason(name) or "no pinned list: the selection rule ran on the tiles present here"
    return out
