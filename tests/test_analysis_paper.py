"""The analyses as the paper computes them: cross-correlation formulas, top-3 training sets, the expected fusion
curve, the ranking table's columns, the figure command, and PanNuke as a training set.

Expected values come from independent re-implementations written here (plain loops over dicts) or from the
paper's published tables.
"""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from nucfuse_datasets.benchmark import paper
from nucfuse_datasets.benchmark.analysis import (
    cross_correlation,
    cross_correlations,
    fusion_gain,
    ranking_table,
    render_report,
    top_training_sets,
)
from nucfuse_datasets.errors import ArgumentError

NAMES = list(paper.ranking())


def experiment_rows(seed: int = 0) -> tuple[list[dict], dict]:
    """Random Experiment-1 rows for both models (per subset and overall = mean of the subsets) and top-k rows."""
    rng = random.Random(seed)
    P = {(m, a, b): rng.uniform(30, 70) for m in paper.MODELS for a in NAMES for b in NAMES}
    rows = [{"model": m, "train_set": a, "test_subset": b, "pq": v} for (m, a, b), v in P.items()]
    for m in paper.MODELS:
        for a in NAMES:
            rows.append(
                {"model": m, "train_set": a, "test_subset": "overall", "pq": statistics.mean(P[m, a, b] for b in NAMES)}
            )
        for k in range(2, 11):
            rows.append({"model": m, "train_set": f"top{k}", "test_subset": "overall", "pq": 50 + k})
    return rows, P


# ---------------------------------------------------------------- cross-correlation


def test_relative_formula_is_the_default_and_per_model():
    rows, P = experiment_rows()
    for m in paper.MODELS:
        names, mat, C = cross_correlation(rows, model=m)
        assert names == NAMES
        for i, a in enumerate(NAMES):
            for j, b in enumerate(NAMES):
                assert mat[i, j] == pytest.approx(P[m, a, b])
                assert C[i, j] == pytest.approx(P[m, a, b] / P[m, b, b])
        assert np.allclose(np.diag(C), 1.0)
    mapping = cross_correlations(rows)
    assert list(mapping) == sorted(paper.MODELS)
    assert np.array_equal(mapping["CellViT"][2], cross_correlation(rows, model="CellViT")[2])


def test_several_models_need_a_choice():
    rows, P = experiment_rows()
    with pytest.raises(ArgumentError, match=r"several models.*cross_correlations"):
        cross_correlation(rows)
    _, mat, _ = cross_correlation(rows, average_models=True)
    assert mat[0, 1] == pytest.approx((P["HoVerNeXt", NAMES[0], NAMES[1]] + P["CellViT", NAMES[0], NAMES[1]]) / 2)
    with pytest.raises(ArgumentError, match="formula"):
        cross_correlation(rows, model="CellViT", formula="symmetric")


def test_as_written_formula_and_why_it_cannot_be_the_papers():
    rows, P = experiment_rows(1)
    _, _, C = cross_correlation(rows, model="HoVerNeXt", formula="as_written")
    n = len(NAMES)
    for i in range(n):
        for j in range(n):
            a, b = NAMES[i], NAMES[j]
            assert C[i, j] == pytest.approx((P["HoVerNeXt", a, b] + P["HoVerNeXt", b, a]) / (2 * P["HoVerNeXt", a, b]))
            assert 1 / C[i, j] + 1 / C[j, i] == pytest.approx(2.0)  # so min 0.60 would force a 3.0 somewhere
    worst = C[np.isfinite(C)].min()
    partner = 1 / (2 - 1 / 0.60)
    assert partner == pytest.approx(3.0) and worst < 1.0
    rep = paper.reported()["cross_correlation"]
    assert rep["max"]["value"] < partner  # the paper's max 1.08 contradicts the printed formula with min 0.60


def test_relative_formula_reproduces_the_papers_statements_on_a_consistent_matrix():
    # build P so that the relative reading gives the paper's reported values exactly
    rows = []
    diag = {d: 50.0 for d in NAMES}
    rel = {(a, b): 0.9 for a in NAMES for b in NAMES}
    rel.update({(d, d): 1.0 for d in NAMES})
    rel[("puma", "cryonuseg")] = 1.08
    rel[("nuinsseg", "consep")] = 0.60
    for (a, b), r in rel.items():
        rows.append({"model": "HoVerNeXt", "train_set": a, "test_subset": b, "pq": r * diag[b]})
    names, _, C = cross_correlation(rows)
    i, j = np.unravel_index(np.nanargmax(C), C.shape)
    assert (names[i], names[j], round(float(C[i, j]), 2)) == ("puma", "cryonuseg", 1.08)
    i, j = np.unravel_index(np.nanargmin(C), C.shape)
    assert (names[i], names[j], round(float(C[i, j]), 2)) == ("nuinsseg", "consep", 0.60)
    assert (C[names.index("pcns")] > 0.87).all()


def test_top_training_sets_per_test_subset():
    rows, P = experiment_rows(2)
    top = top_training_sets(rows)
    assert len(top) == 2 * 10 * 3
    for m in paper.MODELS:
        for b in NAMES:
            expected = sorted(NAMES, key=lambda a: -P[m, a, b])[:3]
            got = [t for t in top if t["model"] == m and t["test_subset"] == b]
            assert [t["train_set"] for t in got] == expected and [t["position"] for t in got] == [1, 2, 3]
            assert got[0]["relative"] == pytest.approx(P[m, expected[0], b] / P[m, b, b])
    with pytest.raises(ArgumentError):
        top_training_sets(rows, n=0)


# ---------------------------------------------------------------- fusion


def test_expected_curve_is_the_best_member_per_subset():
    rows, P = experiment_rows(3)
    gains = fusion_gain(rows)
    assert {(g["model"], g["k"]) for g in gains} == {(m, k) for m in paper.MODELS for k in range(1, 11)}
    for g in gains:
        members = NAMES[: g["k"]]
        best = [max(P[g["model"], a, b] for a in members) for b in NAMES]
        assert g["expected"] == pytest.approx(statistics.mean(best))
        assert g["added"] == NAMES[g["k"] - 1]
        assert g["gain"] == pytest.approx(g["observed"] - g["expected"])
    by = {(g["model"], g["k"]): g for g in gains}
    assert by["CellViT", 1]["observed"] == pytest.approx(statistics.mean(P["CellViT", "pcns", b] for b in NAMES))
    for m in paper.MODELS:
        assert math.isnan(by[m, 1]["observed_increment"]) and math.isnan(by[m, 1]["expected_increment"])
        for k in range(2, 11):
            assert by[m, k]["observed_increment"] == pytest.approx(by[m, k]["observed"] - by[m, k - 1]["observed"])
            assert by[m, k]["expected_increment"] == pytest.approx(by[m, k]["expected"] - by[m, k - 1]["expected"])
            assert by[m, k]["expected_increment"] >= -1e-12  # adding a source never lowers the best per subset


def test_subset_weights_and_missing_cells():
    rows, P = experiment_rows(4)
    w = {b: float(i + 1) for i, b in enumerate(NAMES)}
    g = fusion_gain(rows, subset_weights=w)[4]
    best = [max(P[g["model"], a, b] for a in NAMES[: g["k"]]) for b in NAMES]
    assert g["expected"] == pytest.approx(np.dot([w[b] for b in NAMES], best) / sum(w.values()))
    with pytest.raises(ArgumentError, match="no weight"):
        fusion_gain(rows, subset_weights={"pcns": 1.0})
    with pytest.raises(ArgumentError, match="expected"):
        fusion_gain(rows, expected="mean")
    partial = [r for r in rows if not (r["train_set"] == "puma" and r["test_subset"] == "tnbc")]
    assert all(math.isnan(x["expected"]) for x in fusion_gain(partial) if x["k"] >= 2)


def test_overall_max_reading_is_flat_on_table2():
    rows = paper.result_rows(2) + [
        {"model": m, "train_set": f"top{k}", "test_subset": "overall", "pq": 55.0 + k}
        for m in paper.MODELS
        for k in range(2, 11)
    ]
    gains = {(g["model"], g["k"]): g for g in fusion_gain(rows, expected="overall_max")}
    assert [gains["CellViT", k]["expected_increment"] for k in range(2, 11)] == [0.0] * 9
    hov = [gains["HoVerNeXt", k]["expected_increment"] for k in range(2, 11)]
    assert hov[0] == pytest.approx(55.75 - 55.66) and hov[1:] == [0.0] * 8
    # the paper's default reading needs per-subset rows, which Table 2 does not have
    assert all(math.isnan(g["expected"]) for g in fusion_gain(rows))


# ---------------------------------------------------------------- ranking table, report, figures


def test_ranking_table_columns_say_what_they_are():
    table = ranking_table(paper.result_rows(2))
    printed = {r.dataset: r for r in paper.table2() if r.model == "HoVerNeXt"}
    assert [r["rank"] for r in table] == [float(printed[r["train_set"]].mean_rank) for r in table]  # "Mean Rank"
    for r in table:
        assert r["rank_HoVerNeXt"] == printed[r["train_set"]].pq_rank
        assert r["mean_of_model_ranks"] == pytest.approx((r["rank_HoVerNeXt"] + r["rank_CellViT"]) / 2)
        assert "mean_rank" not in r
    assert [r["train_set"] for r in table] == NAMES


def test_report_and_figures(tmp_path):
    pytest.importorskip("matplotlib")
    from nucfuse_datasets.benchmark.analysis.figures import write_figures
    from nucfuse_datasets.cli import main

    rows, _ = experiment_rows(5)
    rows = [r for r in rows if r["train_set"] != "top9"] + paper.result_rows(3)  # top9 = Table 3's NucFuse-train
    md = render_report(rows, tmp_path / "report", plots=False).read_text()
    assert "Cross-correlation C = P[i, j] / P[j, j], HoVerNeXt" in md and "Top three training datasets" in md
    paths = write_figures(tmp_path / "figs", rows)
    expected = {"table2", "table3", "ranking", "breakdown", "fusion", "fusion_increments"}
    expected |= {f"{kind}_{m.lower()}" for kind in ("cross_correlation", "top3") for m in paper.MODELS}
    assert set(paths) == expected
    for p in paths.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    csv_path = tmp_path / "rows.csv"
    keys = ["model", "train_set", "test_subset", "pq"]
    small = [r for r in rows if r["model"] == "CellViT" and {r["train_set"], r["test_subset"]} <= {"pcns", "puma"}]
    csv_path.write_text(",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in small))
    assert main(["figures", str(csv_path), "--out", str(tmp_path / "cli")]) == 0
    written = {p.name for p in (tmp_path / "cli").iterdir()}
    assert written == {
        "table2.png",
        "table3.png",
        "ranking.png",
        "breakdown.png",
        "cross_correlation_cellvit.png",
        "top3_cellvit.png",
    }
    assert main(["figures", "--out", str(tmp_path / "only-paper"), "--metric", "recall"]) == 0
    assert [p.name for p in (tmp_path / "only-paper").iterdir()] == ["table2.png"]
    assert main(["figures", "--out", str(tmp_path / "bad"), "--metric", "dq"]) != 0


# ---------------------------------------------------------------- PanNuke as a training set


def test_pannuke_trains_on_every_tile(tmp_path):
    from nucfuse_datasets import NucFuseTrain
    from nucfuse_datasets.benchmark.protocol import kfold_split
    from nucfuse_datasets.datasets.pannuke import FOLD_SIZES
    from tests.tilesets import TileSet

    spec = [{"id": f"t{i:02d}", "h": 256, "w": 256, "split": "test" if i < 20 else "train"} for i in range(30)]
    pannuke = TileSet(tmp_path, spec, name="pannuke")
    other = TileSet(tmp_path / "o", spec, name="other")
    both = NucFuseTrain(tmp_path, datasets=[pannuke, other], split="all").counts()
    assert both["pannuke"]["patches"] == 30  # no NucFuse-test tiles held out
    assert both["other"]["patches"] == 30 - 14  # a NucFuse-test member loses its 14 test tiles
    train = NucFuseTrain(tmp_path, datasets=[pannuke], split="train")
    assert len(train) == len(kfold_split(30)[0]) == 24
    # the paper's count: the three Warwick folds, 7,901 tiles of 256², 80 % KFold share = Table 1's 6,320
    n = sum(FOLD_SIZES.values())
    assert n == 7901 and len(kfold_split(n)[0]) == paper.table1()["pannuke"].train_patches == 6320
    assert len(kfold_split(n - 14)[0]) == 6309  # what dropping 14 "test" tiles gave before
