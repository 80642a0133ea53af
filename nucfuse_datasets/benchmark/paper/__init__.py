"""The NucFuseRank paper's published numbers as data: Tables 1, 2 and 3 and the figures stated in its text.

Torbati et al. 2026 (arXiv 2601.20104). The tables ship as CSV files next to this module (``table1.csv``,
``table2.csv``, ``table3.csv``, transcribed from the paper and checked against its text by
``tests/test_paper_data.py``) and the numbers quoted in the text as ``reported.json``. Dataset keys are this
library's registry names (``dsb2018`` for the paper's "DSB"); metric keys are the result-row keys of
:mod:`nucfuse_datasets.benchmark.analysis` (the paper's "Dice" is ``dice_2``, the ensemble Dice its code computes).
Values
are percentages (×100), as printed.

* :func:`table1` — dataset statistics (No. 1–13), :class:`Table1Row` per key.
* :func:`table2` — Experiment 1: five metrics × 10 datasets × 2 models, the per-model PQ rank and the paper's
  "Mean Rank" (rank by the mean PQ of both models); :func:`table2_means` is its "Mean (across datasets)" row.
* :func:`table3` — PQ per NucFuse-test subset for HoVerNeXt/CellViT trained on NucFuse-train (``top9``) or PanNuke,
  and CellSAM.
* :func:`ranking` — the paper's ranking (Table 2's "Mean Rank" column).
* :func:`result_rows` — Tables 2 and 3 as result rows, ready for :mod:`nucfuse_datasets.benchmark.analysis` and the
  figure
  overlays.
* :func:`reported` — the numbers stated in the text (cross-correlation extremes, fusion, stain experiment).

Example:
    >>> from nucfuse_datasets.benchmark import paper
    >>> paper.ranking()[:3]
    ('pcns', 'puma', 'monuseg')
    >>> paper.table1()["pannuke"].train_patches, paper.table2_means()["HoVerNeXt"]["pq"]
    (6320, 48.1)
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from nucfuse_datasets.errors import ArgumentError

__all__ = [
    "MODELS",
    "TABLE2_METRICS",
    "TABLE3_RUNS",
    "Table1Row",
    "Table2Row",
    "Table3Row",
    "ranking",
    "reported",
    "result_rows",
    "table1",
    "table2",
    "table2_means",
    "table3",
    "train_patches",
]

#: The two models of the paper, in its order.
MODELS: tuple[str, ...] = ("HoVerNeXt", "CellViT")
#: Table 2's metric columns as result-row keys (PQ, AJI, Dice = ``dice_2``, precision, recall).
TABLE2_METRICS: tuple[str, ...] = ("pq", "aji", "dice_2", "precision", "recall")
#: Table 3's columns as ``(model, train_set)``; NucFuse-train is ``top9``, CellSAM is used as released.
TABLE3_RUNS: tuple[tuple[str, str], ...] = (
    ("HoVerNeXt", "top9"),
    ("CellViT", "top9"),
    ("HoVerNeXt", "pannuke"),
    ("CellViT", "pannuke"),
    ("CellSAM", "pretrained"),
)
_TABLE3_COLUMNS = {
    "HoVerNeXt/nucfuse-train": ("HoVerNeXt", "top9"),
    "CellViT/nucfuse-train": ("CellViT", "top9"),
    "HoVerNeXt/pannuke": ("HoVerNeXt", "pannuke"),
    "CellViT/pannuke": ("CellViT", "pannuke"),
    "CellSAM/pretrained": ("CellSAM", "pretrained"),
}


@dataclass(frozen=True)
class Table1Row:
    """One row of Table 1.

    Attributes:
        no: the row number (1–10 the ranked datasets, 11 PanNuke, 12 NucFuse-train, 13 NucFuse-test).
        key: registry name (``"nucfuse-train"``/``"nucfuse-test"`` for the two merged sets).
        name: the name as printed.
        tiles: image tiles.
        nuclei: annotated nuclei.
        organs: number of organs, ``None`` where the paper prints "na".
        tile_size: tile size or range, as printed.
        classification: the dataset carries nucleus classes.
        density: mean nuclei per 256×256 patch.
        train_patches: 256×256 training patches (train + validation; NucFuse-test: its number of tiles).
    """

    no: int
    key: str
    name: str
    tiles: int
    nuclei: int
    organs: int | None
    tile_size: str
    classification: bool
    density: float
    train_patches: int


@dataclass(frozen=True)
class Table2Row:
    """One (dataset, model) row of Table 2 (``dataset == "mean"`` for the "Mean (across datasets)" row).

    Attributes:
        dataset: registry name, or ``"mean"``.
        model: ``"HoVerNeXt"`` or ``"CellViT"``.
        pq: panoptic quality (%).
        aji: aggregated Jaccard index (%).
        dice_2: the paper's "Dice" (%), the ensemble Dice.
        precision: precision (%).
        recall: recall (%).
        pq_rank: the rank of the dataset among the 10 for this model ("PQ Rank"); ``None`` for the mean row.
        mean_rank: the paper's "Mean Rank", the rank by the mean PQ of both models; ``None`` for the mean row.
    """

    dataset: str
    model: str
    pq: float
    aji: float
    dice_2: float
    precision: float
    recall: float
    pq_rank: int | None
    mean_rank: int | None

    def metrics(self) -> dict[str, float]:
        """The five metrics as ``{key: value}``."""
        return {m: float(getattr(self, m)) for m in TABLE2_METRICS}


@dataclass(frozen=True)
class Table3Row:
    """One cell of Table 3: PQ (%) of ``model`` trained on ``train_set`` on one NucFuse-test subset.

    Attributes:
        test_subset: registry name of the subset, or ``"overall"`` for the NucFuse-test row.
        model: ``"HoVerNeXt"``, ``"CellViT"`` or ``"CellSAM"``.
        train_set: ``"top9"`` (NucFuse-train), ``"pannuke"`` or ``"pretrained"`` (CellSAM as released).
        pq: the value.
    """

    test_subset: str
    model: str
    train_set: str
    pq: float


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _opt_int(text: str) -> int | None:
    return None if text.strip() in ("", "na") else int(text)


@cache
def _table1() -> tuple[Table1Row, ...]:
    return tuple(
        Table1Row(
            no=int(r["no"]),
            key=r["key"],
            name=r["name"],
            tiles=int(r["tiles"]),
            nuclei=int(r["nuclei"]),
            organs=_opt_int(r["organs"]),
            tile_size=r["tile_size"],
            classification=r["classification"] == "true",
            density=float(r["density"]),
            train_patches=int(r["train_patches"]),
        )
        for r in _read_csv("table1.csv")
    )


@cache
def _table2() -> tuple[Table2Row, ...]:
    return tuple(
        Table2Row(
            dataset=r["dataset"],
            model=r["model"],
            **{m: float(r[m]) for m in TABLE2_METRICS},
            pq_rank=_opt_int(r["pq_rank"]),
            mean_rank=_opt_int(r["mean_rank"]),
        )
        for r in _read_csv("table2.csv")
    )


@cache
def _table3() -> tuple[Table3Row, ...]:
    out = []
    for r in _read_csv("table3.csv"):
        subset = "overall" if r["test_subset"] == "nucfuse-test" else r["test_subset"]
        for column, (model, train_set) in _TABLE3_COLUMNS.items():
            out.append(Table3Row(subset, model, train_set, float(r[column])))
    return tuple(out)


def table1() -> dict[str, Table1Row]:
    """Table 1, keyed by registry name (``"nucfuse-train"``, ``"nucfuse-test"`` for rows 12–13).

    Example:
        >>> from nucfuse_datasets.benchmark.paper import table1
        >>> t = table1()
        >>> t["monuseg"].tiles, t["dsb2018"].organs, t["nucfuse-train"].train_patches
        (51, None, 11333)
    """
    return {r.key: r for r in _table1()}


def train_patches() -> dict[str, int]:
    """Table 1's "256² training tiles" per dataset (rows 1–11: the ten ranked datasets and PanNuke).

    Example:
        >>> from nucfuse_datasets.benchmark.paper import train_patches
        >>> train_patches()["pcns"], len(train_patches())
        (1342, 11)
    """
    return {r.key: r.train_patches for r in _table1() if r.no <= 11}


def table2(include_mean: bool = False) -> list[Table2Row]:
    """Table 2 in the paper's row order (by "Mean Rank", HoVerNeXt before CellViT).

    Args:
        include_mean: append the two "Mean (across datasets)" rows (``dataset == "mean"``).

    Example:
        >>> from nucfuse_datasets.benchmark.paper import table2
        >>> r = table2()[0]
        >>> r.dataset, r.model, r.pq, r.pq_rank, r.mean_rank
        ('pcns', 'HoVerNeXt', 55.66, 2, 1)
    """
    return [r for r in _table2() if include_mean or r.dataset != "mean"]


def table2_means() -> dict[str, dict[str, float]]:
    """Table 2's "Mean (across datasets)" row per model, as printed.

    Example:
        >>> from nucfuse_datasets.benchmark.paper import table2_means
        >>> table2_means()["CellViT"]["aji"]
        51.0
    """
    return {r.model: r.metrics() for r in _table2() if r.dataset == "mean"}


def table3() -> list[Table3Row]:
    """Table 3 cell by cell (the NucFuse-test row as ``test_subset == "overall"``).

    Example:
        >>> from nucfuse_datasets.benchmark.paper import table3
        >>> [r.pq for r in table3() if r.test_subset == "overall"]
        [63.94, 62.34, 60.14, 59.17, 48.79]
    """
    return list(_table3())


def ranking() -> tuple[str, ...]:
    """The paper's ranking of the ten datasets: Table 2's "Mean Rank" column, best first.

    Example:
        >>> from nucfuse_datasets.benchmark.paper import ranking
        >>> ranking()[-2:]
        ('dsb2018', 'cryonuseg')
    """
    ranks = {r.dataset: r.mean_rank for r in _table2() if r.mean_rank is not None}
    return tuple(sorted(ranks, key=lambda d: ranks[d]))


def result_rows(table: int = 2) -> list[dict[str, Any]]:
    """A table as result rows (``model``, ``train_set``, ``test_subset`` and metric columns, in %).

    Table 2 gives one row per dataset and model with ``test_subset == "overall"`` and the five metrics; Table 3 one
    row per cell with ``pq``.

    Raises:
        ArgumentError: ``table`` is not 2 or 3.

    Example:
        >>> from nucfuse_datasets.benchmark.paper import result_rows
        >>> result_rows(2)[0]  # doctest: +NORMALIZE_WHITESPACE
        {'model': 'HoVerNeXt', 'train_set': 'pcns', 'test_subset': 'overall',
         'pq': 55.66, 'aji': 58.31, 'dice_2': 68.81, 'precision': 72.64, 'recall': 76.82}
        >>> len(result_rows(3))
        55
    """
    if table == 2:
        return [{"model": r.model, "train_set": r.dataset, "test_subset": "overall", **r.metrics()} for r in table2()]
    if table == 3:
        return [
            {"model": r.model, "train_set": r.train_set, "test_subset": r.test_subset, "pq": r.pq} for r in table3()
        ]
    raise ArgumentError(f"the paper's result tables are 2 and 3, got {table!r}")


@cache
def _reported() -> str:
    return resources.files(__name__).joinpath("reported.json").read_text(encoding="utf-8")


def reported() -> dict[str, Any]:
    """The numbers the paper states in its text (a fresh dict; see ``reported.json`` for the sections).

    Example:
        >>> from nucfuse_datasets.benchmark.paper import reported
        >>> r = reported()
        >>> r["cross_correlation"]["max"]["value"], r["stain"]["rank_change"]["nuinsseg"]
        (1.08, {'without': 8, 'with': 5})
    """
    data: dict[str, Any] = json.loads(_reported())
    data.pop("_about", None)
    return data
