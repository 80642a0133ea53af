"""The paper's tables shipped as data (``nucfuse_datasets.benchmark.paper``): internal consistency and transcription.

The consistency checks recompute what the paper's own tables imply (means, ranks, sums) from the shipped cells,
with plain Python here, and compare with the values the paper prints next to them; the transcription check parses
the paper's text (``../shared/reference/nucfuserank-paper.md``; skipped when absent) and compares every cell.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from nucfuse_datasets.benchmark import paper

REPO = Path(__file__).resolve().parents[1]
PAPER_MD = REPO.parent / "shared" / "reference" / "nucfuserank-paper.md"
# Each printed value is rounded to 0.005; a mean of rounded values is off by at most 0.005 and the printed mean
# is rounded too: the two agree to 0.01.
ROUNDING = 0.01 + 1e-9


def _t2(metric: str = "pq") -> dict[tuple[str, str], float]:
    return {(r.dataset, r.model): getattr(r, metric) for r in paper.table2()}


def test_table3_nucfuse_test_row_is_the_mean_of_its_ten_subsets():
    cells = {(r.model, r.train_set, r.test_subset): r.pq for r in paper.table3()}
    subsets = [s for (m, t, s) in cells if (m, t) == ("HoVerNeXt", "top9") and s != "overall"]
    assert len(subsets) == 10 and set(subsets) == set(paper.ranking())
    printed = [cells[(*run, "overall")] for run in paper.TABLE3_RUNS]
    assert printed == [63.94, 62.34, 60.14, 59.17, 48.79]  # the paper's bold row
    for run, value in zip(paper.TABLE3_RUNS, printed, strict=True):
        assert statistics.mean(cells[(*run, s)] for s in subsets) == pytest.approx(value, abs=ROUNDING), run


def test_table2_mean_rank_is_the_ranking_by_mean_pq():
    pq = _t2()
    datasets = sorted({d for d, _ in pq})
    by_mean = sorted(datasets, key=lambda d: -(pq[d, "HoVerNeXt"] + pq[d, "CellViT"]) / 2)
    printed = {r.dataset: r.mean_rank for r in paper.table2()}
    assert [printed[d] for d in by_mean] == list(range(1, 11))
    assert paper.ranking() == tuple(by_mean)


def test_table2_pq_rank_is_each_models_ranking():
    pq = _t2()
    for model in paper.MODELS:
        order = sorted((d for d, m in pq if m == model), key=lambda d: -pq[d, model])
        printed = {r.dataset: r.pq_rank for r in paper.table2() if r.model == model}
        assert [printed[d] for d in order] == list(range(1, 11)), model


@pytest.mark.parametrize("metric", paper.TABLE2_METRICS)
def test_table2_mean_row_is_the_column_mean(metric):
    cells = _t2(metric)
    means = paper.table2_means()
    for model in paper.MODELS:
        column = [v for (_, m), v in cells.items() if m == model]
        assert len(column) == 10
        assert statistics.mean(column) == pytest.approx(means[model][metric], abs=ROUNDING), (model, metric)


def test_table1_summary_rows_follow_from_the_dataset_rows():
    t1 = paper.table1()
    ranked = [t1[d] for d in paper.ranking()]
    assert t1["nucfuse-test"].tiles == 14 * len(ranked) == 140
    # 11,333 patches: the nine datasets of NucFuse-train (without CryoNuSeg)
    assert sum(r.train_patches for r in ranked if r.key != "cryonuseg") == t1["nucfuse-train"].train_patches
    # 2,739 tiles: (tiles - 14) over all ten datasets (CryoNuSeg's 16 included; see docs/protocol.md)
    assert sum(r.tiles - 14 for r in ranked) == t1["nucfuse-train"].tiles
    # 248,815 nuclei: the ten datasets minus NucFuse-test minus all of CryoNuSeg
    total = sum(r.nuclei for r in ranked)
    assert total - t1["nucfuse-test"].nuclei - t1["cryonuseg"].nuclei == t1["nucfuse-train"].nuclei
    assert [r.no for r in t1.values()] == list(range(1, 14))


def test_text_numbers_agree_with_the_tables_except_the_documented_ones():
    rep = paper.reported()
    pq = _t2()
    fusion = rep["fusion"]
    cells = {(r.model, r.train_set, r.test_subset): r.pq for r in paper.table3()}
    for model in paper.MODELS:
        assert fusion["observed"][model]["1"] == pq["pcns", model]  # k = 1 is PCNS alone (Table 2)
        assert fusion["observed"][model]["9"] == cells[model, "top9", "overall"]  # k = 9 is NucFuse-train (Table 3)
        gain = fusion["observed"][model]["9"] - fusion["observed"][model]["1"]
        assert gain == pytest.approx(fusion["improvement_k1_to_k9"][model], abs=1e-9)
    assert rep["stain"]["mean_pq"]["without"] == paper.table2_means()["HoVerNeXt"]["pq"]
    hov_rank = {r.dataset: r.pq_rank for r in paper.table2() if r.model == "HoVerNeXt"}
    assert rep["stain"]["rank_change"]["nuinsseg"]["without"] == hov_rank["nuinsseg"] == 8
    gaps = rep["pq_gap"]["values"]
    for d in ("puma", "dsb2018", "cryonuseg"):
        assert abs(pq[d, "HoVerNeXt"] - pq[d, "CellViT"]) == pytest.approx(gaps[d], abs=1e-9), d
    # documented inconsistencies of the paper (docs/protocol.md): PCNS gap printed 0.42, the table gives 0.52;
    # MoNuSAC's PQ equals its AJI for both models
    assert abs(pq["pcns", "HoVerNeXt"] - pq["pcns", "CellViT"]) == pytest.approx(0.52) != gaps["pcns"]
    aji = _t2("aji")
    assert all(pq["monusac", m] == aji["monusac", m] for m in paper.MODELS)
    assert sum(pq[d, m] == aji[d, m] for d in paper.ranking() for m in paper.MODELS) == 2


def test_old_constants_are_views_of_the_data():
    from nucfuse_datasets.benchmark.analysis import PAPER_TRAIN_PATCHES
    from nucfuse_datasets.benchmark.protocol import PAPER_TABLE2_PQ
    from nucfuse_datasets.datasets._registry import PAPER_RANKING

    assert paper.ranking() == PAPER_RANKING
    assert PAPER_TABLE2_PQ["monusac"] == (47.28, 40.40) and list(PAPER_TABLE2_PQ) == list(PAPER_RANKING)
    assert PAPER_TRAIN_PATCHES["pannuke"] == 6320 and PAPER_TRAIN_PATCHES["dsb2018"] == 186


def test_dataset_classes_carry_table1():
    from nucfuse_datasets.datasets._registry import get_dataset_class

    for key, row in paper.table1().items():
        if key.startswith("nucfuse"):
            continue
        stats = get_dataset_class(key).paper
        assert stats is not None, key
        assert (stats.tiles, stats.nuclei, stats.train_patches) == (row.tiles, row.nuclei, row.train_patches), key
        assert stats.density == pytest.approx(row.density), key


def test_result_rows_and_errors():
    rows = paper.result_rows(2)
    assert len(rows) == 20 and {r["test_subset"] for r in rows} == {"overall"}
    t3 = paper.result_rows(3)
    assert {(r["model"], r["train_set"]) for r in t3} == set(paper.TABLE3_RUNS)
    from nucfuse_datasets.errors import ArgumentError

    with pytest.raises(ArgumentError, match="2 and 3"):
        paper.result_rows(1)


# ---------------------------------------------------------------- transcription against the paper's text


@pytest.fixture(scope="module")
def paper_lines() -> list[str]:
    if not PAPER_MD.is_file():
        pytest.skip(f"the paper's text not found at {PAPER_MD}; skipping the transcription check")
    return PAPER_MD.read_text(encoding="utf-8").splitlines()


def _block(lines: list[str], header: str, n: int) -> list[list[str]]:
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    return [[re.sub(r"</?b>", "", c).strip() for c in line.split("\t")] for line in lines[start + 1 : start + 1 + n]]


def test_table1_transcription(paper_lines):
    rows = _block(paper_lines, "No.\tName\tTiles", 13)
    for cells, row in zip(rows, paper.table1().values(), strict=True):
        no, name, tiles, nuclei, organs, ts, cl, nd, tt = cells
        assert int(no) == row.no and re.sub(r" \[\d+\]$", "", name) == row.name
        assert int(tiles.replace(",", "")) == row.tiles and int(nuclei.replace(",", "")) == row.nuclei
        assert (None if organs == "na" else int(organs)) == row.organs and ts == row.tile_size
        assert (cl == "✓") == row.classification and float(nd) == row.density
        assert int(tt.replace(",", "")) == row.train_patches


def test_table2_transcription(paper_lines):
    rows = _block(paper_lines, "Dataset\tModel\tPQ", 22)
    shipped = paper.table2(include_mean=True)
    for cells, row in zip(rows, shipped, strict=True):
        model, *values = cells[1:8]
        assert model == row.model
        assert [float(v) for v in values[:5]] == [row.pq, row.aji, row.dice_2, row.precision, row.recall]
        assert (int(values[5]) if values[5:] and values[5] else None) == row.pq_rank
        if len(cells) > 8 and cells[8]:
            assert int(cells[8]) == row.mean_rank


def test_table3_transcription(paper_lines):
    rows = _block(paper_lines, "Dataset\tHoVerNeXt (NucFuse-train)", 11)
    cells = {(r.model, r.train_set, r.test_subset): r.pq for r in paper.table3()}
    subsets = [*paper.ranking(), "overall"]
    for line, subset in zip(rows, subsets, strict=True):
        assert [float(v) for v in line[1:]] == [cells[(*run, subset)] for run in paper.TABLE3_RUNS], subset
