"""Leakage audit: TCGA cases shared across datasets and between NucFuse-train and NucFuse-test.

Several sources crop tiles from the same TCGA slides or patients: MoNuSeg's added training image
TCGA-F9-A8NY-01Z-00-DX1 is a MoNuSAC test patient, for instance. A tile's case is the ``TCGA-XX-YYYY`` prefix of its
slide barcode, read from ``meta.extra["tcga_case"]`` or parsed from the sample id / original file name.

Example:
    >>> from nucfuse_datasets.schema import SampleMeta
    >>> tcga_case(SampleMeta(dataset="monusac", sample_id="TCGA-F9-A8NY-01Z-00-DX1_2", split="test"))
    'TCGA-F9-A8NY'
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nucfuse_datasets.datasets._tcga import TCGA_CASE
from nucfuse_datasets.datasets._tcga import tcga_case as case_in
from nucfuse_datasets.schema import SampleMeta

if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.benchmark.composite import NucFuseTest, NucFuseTrain
    from nucfuse_datasets.datasets._base import NucleiDataset

__all__ = ["LeakageReport", "audit", "leaking_cases", "tcga_case"]


def tcga_case(meta: SampleMeta) -> str | None:
    """The TCGA case id (``TCGA-XX-YYYY``) of a tile, or ``None`` for non-TCGA sources."""
    value = meta.extra.get("tcga_case")
    if isinstance(value, str) and TCGA_CASE.fullmatch(value):
        return value.upper()
    for text in (meta.sample_id, meta.original_file or "", str(meta.extra.get("patient", ""))):
        if (case := case_in(text)) is not None:
            return case
    return None


@dataclass(frozen=True)
class TileRef:
    """One tile in the audit: where it is and which role it plays."""

    subset: str
    sample_id: str
    role: str  # "train" (NucFuse-train tile), "test" (NucFuse-test tile) or "source" (a plain dataset)
    source_split: str


@dataclass
class LeakageReport:
    """Cases that occur in more than one place.

    Attributes:
        by_case: case -> every tile of that case.
        cross_dataset: cases found in more than one dataset.
        train_test: cases with tiles in NucFuse-train *and* NucFuse-test (the leakage that matters for scores).
    """

    by_case: dict[str, list[TileRef]] = field(default_factory=dict)
    cross_dataset: dict[str, list[TileRef]] = field(default_factory=dict)
    train_test: dict[str, list[TileRef]] = field(default_factory=dict)

    @property
    def leaking_cases(self) -> set[str]:
        """Cases to exclude from training (``NucFuseTrain(exclude_cases=...)``)."""
        return set(self.train_test)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""

        def rows(d: dict[str, list[TileRef]]) -> dict[str, list[dict[str, str]]]:
            return {case: [vars(t) for t in refs] for case, refs in sorted(d.items())}

        return {"cross_dataset": rows(self.cross_dataset), "train_test": rows(self.train_test)}

    def to_markdown(self) -> str:
        """A human-readable report."""
        lines = ["# Leakage audit", ""]
        lines.append(f"TCGA cases in more than one dataset: {len(self.cross_dataset)}")
        lines.append(f"TCGA cases in both NucFuse-train and NucFuse-test: {len(self.train_test)}")
        for title, d in (("Train/test", self.train_test), ("Cross-dataset", self.cross_dataset)):
            if not d:
                continue
            lines += ["", f"## {title}", "", "| case | tiles |", "|---|---|"]
            for case, refs in sorted(d.items()):
                tiles = "; ".join(f"{t.subset}/{t.sample_id} ({t.role}, {t.source_split})" for t in refs)
                lines.append(f"| {case} | {tiles} |")
        return "\n".join(lines) + "\n"


def _collect(refs: Iterable[tuple[str, NucleiDataset, int, str]]) -> dict[str, list[TileRef]]:
    by_case: dict[str, list[TileRef]] = defaultdict(list)
    for subset, ds, idx, role in refs:
        meta = ds.meta(idx)
        case = tcga_case(meta)
        if case:
            by_case[case].append(TileRef(subset, meta.sample_id, role, meta.split))
    return dict(by_case)


def audit(
    test: NucFuseTest | None = None,
    train: NucFuseTrain | None = None,
    datasets: Iterable[NucleiDataset] = (),
) -> LeakageReport:
    """Find TCGA cases shared across datasets and between a NucFuse-train and a NucFuse-test.

    Args:
        test: the test set (its tiles play the role ``"test"``).
        train: the training set (its source tiles play the role ``"train"``).
        datasets: further plain datasets to include (role ``"source"``).

    Example:
        >>> report = audit(datasets=[])
        >>> report.leaking_cases
        set()
    """
    refs: list[tuple[str, NucleiDataset, int, str]] = []
    if test is not None:
        for tag, ds in test._parts:
            refs += [(tag, ds, i, "test") for i in test.selections[tag].indices]
    if train is not None:
        for p, (tag, ds) in enumerate(train._parts):
            tiles = sorted(set(train._tile[train._part == p].tolist()))
            refs += [(tag, ds, i, "train") for i in tiles]
    for ds in datasets:
        refs += [(ds.name, ds, i, "source") for i in range(len(ds))]
    by_case = _collect(refs)
    report = LeakageReport(by_case=by_case)
    for case, tiles in by_case.items():
        if len({t.subset for t in tiles}) > 1:
            report.cross_dataset[case] = tiles
        roles = {t.role for t in tiles}
        if "train" in roles and "test" in roles:
            report.train_test[case] = tiles
    return report


def leaking_cases(test: NucFuseTest, train: NucFuseTrain) -> set[str]:
    """Cases with tiles in both sets: pass them to ``NucFuseTrain(exclude_cases=...)``.

    Example:
        >>> from nucfuse_datasets import NucFuseTest, NucFuseTrain
        >>> opts = {"synthetic": {"n_tiles": 20}}
        >>> root = getfixture("tmp_path")
        >>> test = NucFuseTest(root, datasets=["synthetic"], dataset_options=opts)
        >>> train = NucFuseTrain(root, datasets=["synthetic"], dataset_options=opts, split="all")
        >>> leaking_cases(test, train)  # synthetic tiles come from no TCGA case
        set()
    """
    return audit(test=test, train=train).leaking_cases
