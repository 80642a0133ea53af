"""NucFuse-test, NucFuse-train, evaluation, leakage audit, analyses and the demo."""

from __future__ import annotations

import json
import math
import re
import zlib

import numpy as np
import pytest
from sklearn.model_selection import KFold  # the test extra: unconditional
from torch.utils.data import DataLoader, DistributedSampler

import nucfuse_datasets as nf
from nucfuse_datasets import NucFuseTest, NucFuseTrain, collate
from nucfuse_datasets.benchmark.evaluation import EvaluationReport
from nucfuse_datasets.benchmark.protocol import (
    PAPER_RANKING,
    kfold_split,
    patch_grid,
    pinned_test_ids,
    select_ids,
    top_k,
)
from nucfuse_datasets.benchmark.selection import SmallTestSetWarning, select_test_tiles
from nucfuse_datasets.errors import ArgumentError, InvalidPredictionError, TestSetMismatchError
from tests.conftest import REALDATA, copy_native, realdata
from tests.tilesets import TileSet

REFERENCE = REALDATA.parent / "reference" / "datasets.md"


def synth(root, n=20, **kw):
    return nf.get_dataset("synthetic", root=root, n_tiles=n, progress=False, **kw)


# ---------------------------------------------------------------- protocol facts


def test_table1_patch_counts_follow_the_grid_rule():
    # (training tiles, tile size) -> "256² training tiles" of the paper's Table 1
    table1 = {
        "pcns": ([(256, 256)] * 1342, 1342),
        "puma": ([(1024, 1024)] * 191, 3056),
        "monuseg": ([(1000, 1000)] * 37, 592),
        "tnbc": ([(512, 512)] * 36, 144),
        "nuinsseg": ([(512, 512)] * 651, 2604),
        "consep": ([(1000, 1000)] * 27, 432),
        "dsb2018": ([(256, 320)] * 93, 186),
        "cryonuseg": ([(512, 512)] * 16, 64),
        "cpm17": ([(500, 500)] * 33 + [(600, 600)] * 17, 285),
    }
    for name, (tiles, expected) in table1.items():
        assert sum(len(patch_grid(h, w)) for h, w in tiles) == expected, name
    nine = sum(v for k, (_, v) in table1.items() if k != "cryonuseg") + 2692  # MoNuSAC's published patches
    assert nine == 11333  # NucFuse-train, k = 9


def test_top_k_is_the_paper_ranking():
    assert top_k(9) == [n for n in PAPER_RANKING if n != "cryonuseg"]
    with pytest.raises(ArgumentError):
        top_k(11)


def test_shipped_monuseg_ids_are_the_official_test_set():
    text = REFERENCE.read_text() if REFERENCE.is_file() else None
    ids = pinned_test_ids("monuseg")
    assert len(ids) == 14 and len(set(ids)) == 14
    if text is None:
        pytest.skip(f"reference not found at {REFERENCE}")
    line = re.search(r"official test set has 14 images: (.*?)\.", text.replace("\n", " ")).group(1)
    parts = re.split(r",\s*|\s+and\s+", line)
    prefixes = {"TCGA-" + p.strip().removeprefix("TCGA-") for p in parts if p.strip()}
    assert {"-".join(i.split("-")[:3]) for i in ids} == prefixes


def documented_rule(name: str, candidates: list[str], n: int = 14) -> list[str]:
    """docs/protocol.md's selection rule, written from the text: sort the eligible ids, draw ``n`` positions with
    ``numpy.random.default_rng([2601, 20104, crc32(name)]).choice(len, n, replace=False)``, sort the chosen ids."""
    ordered = sorted(candidates)
    if len(ordered) <= n:
        return ordered
    positions = np.random.default_rng([2601, 20104, zlib.crc32(name.encode())]).choice(len(ordered), n, replace=False)
    return sorted(ordered[p] for p in positions)


def test_select_ids_rule():
    cands = [f"id{i:03d}" for i in range(50)]
    a = select_ids("x", cands)
    for name, pool in (("x", cands), ("monusac", cands[:31]), ("dsb2018", cands[5:]), ("y", cands[:15])):
        assert select_ids(name, pool) == documented_rule(name, pool), name
    assert a == select_ids("x", list(reversed(cands))) == sorted(a) and len(a) == 14
    assert select_ids("y", cands) != a  # per-dataset seed
    assert select_ids("x", cands[:10]) == cands[:10]
    with pytest.raises(ArgumentError):
        select_ids("x", ["a", "a"])


def test_kfold_matches_scikit_learn():
    for n in (5, 23, 186, 592):
        tr, va = next(iter(KFold(5, shuffle=True, random_state=42).split(np.arange(n))))
        mtr, mva = kfold_split(n)
        assert np.array_equal(tr, mtr) and np.array_equal(va, mva)


# ---------------------------------------------------------------- NucFuse-test


def test_test_selection_eligibility(tmp_path):
    spec = (
        [{"id": f"t{i:02d}", "h": 256, "w": 300, "split": "test"} for i in range(16)]
        + [{"id": "small", "h": 255, "w": 400, "split": "test"}]
        + [{"id": "macro", "h": 300, "w": 300, "split": "test", "extra": {"has_macrophage": True}}]
        + [{"id": f"train{i}", "h": 256, "w": 256, "split": "train"} for i in range(3)]
    )
    ds = TileSet(tmp_path, spec)
    sel = select_test_tiles("tileset", ds, "rule")
    assert sel.n_eligible == 16 and sel.pool == "test split" and len(sel.ids) == 14
    assert not {"small", "macro", "train0"} & set(sel.ids)
    assert list(sel.ids) == select_ids("tileset", [f"t{i:02d}" for i in range(16)])


def test_small_test_pool_warns(tmp_path):
    ds = TileSet(tmp_path, [{"id": f"t{i}", "h": 256, "w": 256, "split": "test"} for i in range(3)])
    with pytest.warns(SmallTestSetWarning, match="only 3"):
        test = NucFuseTest(tmp_path, datasets=[ds])
    assert len(test) == 3


def test_nucfuse_test_whole_tiles_and_subsets(tmp_path):
    a, b = synth(tmp_path, 16, seed=1), synth(tmp_path, 15, seed=2, tile_size=(300, 400))
    test = NucFuseTest(tmp_path, datasets={"a": a, "b": b})
    assert len(test) == 28 and test.subsets == ["a", "b"]
    s = test[20]
    assert s.meta.extra["subset"] == "b" and s.shape == (300, 400)
    again = NucFuseTest(tmp_path, datasets={"a": a, "b": b})
    assert again.ids == test.ids and again.ids_sha256 == test.ids_sha256
    with pytest.raises(ArgumentError, match="duplicate"):
        NucFuseTest(tmp_path, datasets=[a, a])
    with pytest.raises(IndexError):
        test[28]


def test_pinned_ids_missing_locally(tmp_path, fake_factory):
    copy_native(fake_factory("monuseg"), tmp_path, "monuseg")
    with pytest.raises(TestSetMismatchError, match="12 of the 14"):
        NucFuseTest(tmp_path, datasets=["monuseg"])
    with pytest.warns(SmallTestSetWarning, match="only 0"):  # the fake tiles are 96 px: below the 256 px minimum
        test = NucFuseTest(tmp_path, datasets=["monuseg"], test_ids="rule")
    assert len(test) == 0


def test_shipped_dsb_ids_follow_the_documented_rule():
    # the candidates come from the team's reference (datasets.md Appendix A: the 107 H&E stage1_train ids),
    # the rule from docs/protocol.md re-implemented above; neither is the code that wrote the shipped list
    if not REFERENCE.is_file():
        pytest.skip(f"reference not found at {REFERENCE}")
    appendix = REFERENCE.read_text().split("## Appendix A", 1)[1].split("```")[1]
    candidates = re.findall(r"^[0-9a-f]{64}$", appendix, flags=re.M)
    assert len(candidates) == 107
    assert pinned_test_ids("dsb2018") == documented_rule("dsb2018", candidates)


def test_dsb_rebuild_reproduces_the_shipped_ids(tmp_path):
    src = realdata("dsb2018") / "stage1_train"
    (tmp_path / "dsb2018").mkdir()
    (tmp_path / "dsb2018" / "stage1_train").symlink_to(src, target_is_directory=True)
    rule = NucFuseTest(tmp_path, datasets=["dsb2018"], test_ids="rule")
    pinned = NucFuseTest(tmp_path, datasets=["dsb2018"])
    assert rule.ids == pinned.ids and pinned.selections["dsb2018"].source == "pinned"


# ---------------------------------------------------------------- NucFuse-train


def test_patch_counts_padding_and_renumbering(tmp_path):
    spec = [{"id": f"t{i}", "h": 256, "w": 256, "split": "test"} for i in range(14)]
    spec += [{"id": "odd", "h": 300, "w": 520}, {"id": "big", "h": 512, "w": 512}, {"id": "tiny", "h": 40, "w": 90}]
    ds = TileSet(tmp_path, spec)
    train = NucFuseTrain(tmp_path, datasets=[ds], split="all")
    assert len(train) == 2 * 3 + 4 + 1  # ceil(300/256)·ceil(520/256) + 2·2 + 1
    by_id = {train[i].meta.sample_id: train[i] for i in range(len(train))}
    tile = ds.load_sample(ds.index_of("odd"))
    corner = by_id["odd_001_002"]  # rows 256:300, cols 512:520 of the tile, the rest padding
    assert corner.image.shape == (256, 256, 3)
    assert np.all(corner.image[44:] == 255) and np.all(corner.image[:, 8:] == 255)
    assert np.array_equal(corner.image[:44, :8], tile.image[256:300, 512:520])
    assert np.all(corner.instances[44:] == 0) and np.all(corner.instances[:, 8:] == 0)
    for s in by_id.values():
        ids = np.unique(s.instances)
        assert np.array_equal(ids, np.arange(ids.size))  # 1..n per patch, no gaps
        assert s.meta.extra["source_tile"] in {"odd", "big", "tiny"}
    # patches partition the tile's pixels into the same instances
    for name, (y, x) in {"odd_000_001": (0, 256), "odd_001_000": (256, 0)}.items():
        p = by_id[name]
        crop = tile.instances[y : y + 256, x : x + 256]
        h, w = crop.shape
        pairs = set(zip(crop.ravel().tolist(), p.instances[:h, :w].ravel().tolist(), strict=True))
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def test_train_val_split(tmp_path):
    ds = synth(tmp_path, 40, tile_size=(256, 512))
    all_ = NucFuseTrain(tmp_path, datasets=[ds], split="all")
    tr = NucFuseTrain(tmp_path, datasets=[ds], split="train")
    va = NucFuseTrain(tmp_path, datasets=[ds], split="val")
    names = sorted(all_[i].meta.sample_id for i in range(len(all_)))
    assert len(names) == 26 * 2
    got_val = sorted(va[i].meta.sample_id for i in range(len(va)))
    assert got_val == [names[i] for i in kfold_split(len(names))[1]]
    _, val_idx = next(iter(KFold(5, shuffle=True, random_state=42).split(names)))
    assert got_val == [names[i] for i in val_idx]
    assert len(tr) + len(va) == len(all_) and not {tr[i].meta.sample_id for i in range(len(tr))} & set(got_val)
    assert all(va[i].meta.split == "val" for i in range(len(va)))
    grouped_val = NucFuseTrain(tmp_path, datasets=[ds], split="val", group_by_tile=True)
    grouped_tr = NucFuseTrain(tmp_path, datasets=[ds], split="train", group_by_tile=True)
    tiles_val = {grouped_val[i].meta.extra["source_tile"] for i in range(len(grouped_val))}
    tiles_tr = {grouped_tr[i].meta.extra["source_tile"] for i in range(len(grouped_tr))}
    assert tiles_val and not tiles_val & tiles_tr


def test_train_excludes_test_tiles_and_merges_classes(tmp_path):
    ds = synth(tmp_path, 20)
    test = NucFuseTest(tmp_path, datasets=[ds])
    train = NucFuseTrain(tmp_path, datasets=[ds], split="all")
    assert len(train) == 6
    assert not {train[i].meta.extra["source_tile"] for i in range(len(train))} & set(test.ids["synthetic"])
    assert train[0].classes is None
    kept = NucFuseTrain(tmp_path, datasets=[ds], split="all", keep_classes=True)
    s = kept[0]
    assert s.classes is not None and s.classes.size == s.n_instances + 1 and s.class_names[0] == "background"
    s.validate_values()


def test_arguments(tmp_path):
    with pytest.raises(ArgumentError, match="either k or datasets"):
        NucFuseTrain(tmp_path, k=3, datasets=["synthetic"])
    with pytest.raises(ArgumentError, match="split"):
        NucFuseTrain(tmp_path, datasets=["synthetic"], split="test")
    only_train = TileSet(tmp_path, [{"id": "a", "h": 10, "w": 10}], split="train")
    with pytest.raises(ArgumentError, match="split='all'"):
        NucFuseTrain(tmp_path, datasets=[only_train])


def test_dataloader_and_distributed_sampler(tmp_path):
    ds = synth(tmp_path, 30, tile_size=(256, 512))
    train = NucFuseTrain(tmp_path, datasets=[ds], split="all")
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(train, num_replicas=2, rank=rank, shuffle=True, seed=0)
        seen += list(sampler)
    assert sorted(set(seen)) == list(range(len(train)))
    batches = list(DataLoader(train, batch_size=5, num_workers=2, collate_fn=collate))
    assert batches[0]["image"].shape == (5, 3, 256, 256)
    assert sum(b["image"].shape[0] for b in batches) == len(train)


def test_real_dsb_gives_table1_patches(tmp_path):
    src = realdata("dsb2018") / "stage1_train"
    (tmp_path / "dsb2018").mkdir()
    (tmp_path / "dsb2018" / "stage1_train").symlink_to(src, target_is_directory=True)
    train = NucFuseTrain(tmp_path, datasets=["dsb2018"], split="all")
    assert len(train) == 186  # paper Table 1: 93 × 2
    assert len(NucFuseTrain(tmp_path, datasets=["dsb2018"], split="val")) == 38  # fold 0 of KFold(5) over 186


# ---------------------------------------------------------------- evaluation


class Oracle:
    """Predicts the ground truth (looked up by image bytes)."""

    def __init__(self, test):
        self.truth = {test[i].image.tobytes(): test[i].instances for i in range(len(test))}

    def __call__(self, image):
        return self.truth[image.tobytes()].astype(np.uint16)


def test_evaluate_perfect_predictions(tmp_path):
    test = NucFuseTest(tmp_path, datasets={"a": synth(tmp_path, 14, seed=3), "b": synth(tmp_path, 14, seed=4)})
    report = test.evaluate(Oracle(test), model="oracle", train_set="none", progress=False)
    assert len(report.per_image) == 28
    expected = []
    for i in range(len(test)):
        n = test[i].n_instances
        row = report.per_image[i]
        assert row["tp"] == n and row["fp"] == row["fn"] == 0
        expected.append((n / (n + 1e-6)) ** 2)  # the reference's epsilons: a perfect image is not exactly 1
    assert report.overall["mean"]["pq"] == pytest.approx(float(np.mean(expected)), abs=1e-12)
    assert report.overall["pooled"]["pq"] == 1.0
    assert report.per_dataset["a"]["mean"]["n_images"] == 14
    assert report.meta["test_ids_sha256"] == test.ids_sha256 and report.meta["policy"]["match"] == "strict"
    back = EvaluationReport.from_json(report.to_json(tmp_path / "r.json"))
    assert back.overall["mean"]["pq"] == report.overall["mean"]["pq"]
    assert report.to_csv().count("\n") == 29
    md = report.to_markdown()
    assert "**overall** | 28 | 100.00" in md


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        (lambda img: np.zeros(img.shape[:2], np.float32), "dtype float32"),
        (lambda img: np.zeros((5, 5), np.int32), "shape"),
        (lambda img: np.full(img.shape[:2], -1, np.int32), "negative"),
        (lambda img: np.zeros(img.shape[:2], bool), "boolean"),
        (lambda img: None, "H×W integer array"),
        (lambda img: np.zeros(img.shape, np.int32), "shape"),
    ],
)
def test_bad_predictions_name_the_tile(tmp_path, bad, text):
    test = NucFuseTest(tmp_path, datasets=[synth(tmp_path, 14)])
    with pytest.raises(InvalidPredictionError, match=text) as info:
        test.evaluate(bad, progress=False)
    assert f"synthetic/{test.key(0)[1]}" in str(info.value)


def test_evaluate_accepts_torch_tensors(tmp_path):
    import torch

    test = NucFuseTest(tmp_path, datasets=[synth(tmp_path, 14)])
    oracle = Oracle(test)
    report = test.evaluate(lambda img: torch.from_numpy(oracle(img).astype(np.int64)), progress=False)
    assert report.overall["pooled"]["pq"] == 1.0


def test_export_and_evaluate_folder(tmp_path):
    test = NucFuseTest(tmp_path / "data", datasets=[synth(tmp_path / "data", 14)])
    stems = test.export(tmp_path / "export")
    assert len(stems) == 14 and (tmp_path / "export" / f"{stems[0]}.tif").is_file()
    preds = tmp_path / "preds"
    preds.mkdir()
    for stem in stems[:-1]:
        (preds / f"{stem}.npy").write_bytes((tmp_path / "export" / f"{stem}.npy").read_bytes())
    with pytest.raises(InvalidPredictionError, match="no prediction for 1 of 14"):
        test.evaluate_predictions(preds, progress=False)
    report = test.evaluate_predictions(preds, missing="empty", progress=False)
    assert [r["tp"] == r["n_true"] for r in report.per_image].count(True) >= 13
    assert report.per_image[-1]["n_pred"] == 0 and report.meta["missing_predictions"] == [stems[-1]]
    np.save(preds / f"{stems[-1]}.npy", np.zeros((3, 3), np.int32))
    with pytest.raises(InvalidPredictionError, match=stems[-1].split("__")[1]):
        test.evaluate_predictions(preds, progress=False)
    with pytest.raises(ArgumentError, match="not empty"):
        test.export(tmp_path / "export")


def test_reaggregate_and_leaderboard(tmp_path):
    from nucfuse_datasets.metrics import MetricPolicy

    test = NucFuseTest(tmp_path, datasets=[synth(tmp_path, 14)])
    report = test.evaluate(lambda img: np.zeros(img.shape[:2], np.int32), progress=False)
    assert report.overall["mean"]["pq"] == 0.0
    agg = report.reaggregate(MetricPolicy(aggregation="pooled"))["aggregated"]
    assert agg["overall"]["tp"] == 0 and agg["overall"]["fn"] == sum(test[i].n_instances for i in range(14))
    rows = report.leaderboard()
    assert rows[-1]["subset"] == "overall" and rows[-1]["n_images"] == 14


# ---------------------------------------------------------------- leakage


def test_leakage_audit_and_exclusion(tmp_path):
    from nucfuse_datasets.benchmark.leakage import audit, leaking_cases

    a = TileSet(
        tmp_path,
        [{"id": f"TCGA-AA-{i:04d}-01Z-00-DX1", "h": 256, "w": 256, "split": "test"} for i in range(14)]
        + [{"id": "TCGA-F9-A8NY-01Z-00-DX1", "h": 256, "w": 256, "split": "train"}]
        + [{"id": f"other{i}", "h": 256, "w": 256, "split": "train"} for i in range(5)],
        name="mono",
    )
    b = TileSet(
        tmp_path,
        [{"id": "TCGA-F9-A8NY-01Z-00-DX1_3", "h": 300, "w": 300, "split": "test"}]
        + [{"id": f"x{i}", "h": 256, "w": 256, "split": "train"} for i in range(6)],
        name="multi",
    )
    with pytest.warns(SmallTestSetWarning):
        test = NucFuseTest(tmp_path, datasets=[a, b])
        train = NucFuseTrain(tmp_path, datasets=[a, b], split="all")
    report = audit(test=test, train=train)
    assert set(report.train_test) == {"TCGA-F9-A8NY"}
    roles = {(t.subset, t.role) for t in report.train_test["TCGA-F9-A8NY"]}
    assert roles == {("mono", "train"), ("multi", "test")}
    assert "TCGA-F9-A8NY" in report.to_markdown()
    with pytest.warns(SmallTestSetWarning):
        clean = NucFuseTrain(tmp_path, datasets=[a, b], split="all", exclude_cases=leaking_cases(test, train))
    assert len(clean) == len(train) - 1 and clean.excluded_tiles == {"mono": ["TCGA-F9-A8NY-01Z-00-DX1"]}


# ---------------------------------------------------------------- analyses


def paper_rows():
    from nucfuse_datasets.benchmark.protocol import PAPER_TABLE2_PQ

    return [
        {"model": m, "train_set": d, "test_subset": "overall", "pq": v[i]}
        for d, v in PAPER_TABLE2_PQ.items()
        for i, m in enumerate(["HoVerNeXt", "CellViT"])
    ]


def test_ranking_reproduces_the_paper_order_and_means():
    from nucfuse_datasets.benchmark.analysis import ranking_table

    table = ranking_table(paper_rows())
    assert [r["train_set"] for r in table] == list(PAPER_RANKING)
    published = [55.40, 55.25, 54.25, 51.72, 47.53, 46.73, 45.69, 43.84, 41.14, 38.20]  # datasets.md §2.5
    assert [r["mean"] for r in table] == pytest.approx(published, abs=0.006)
    assert np.mean([r["HoVerNeXt"] for r in table]) == pytest.approx(48.10, abs=0.006)
    assert np.mean([r["CellViT"] for r in table]) == pytest.approx(47.84, abs=0.006)


def test_cross_correlation_as_written_in_the_paper():
    from nucfuse_datasets.benchmark.analysis import cross_correlation

    P = {("a", "a"): 0.5, ("a", "b"): 0.3, ("b", "a"): 0.6, ("b", "b"): 0.4}
    rows = [
        {"model": m, "train_set": i, "test_subset": j, "pq": v + d}
        for (i, j), v in P.items()
        for m, d in (("x", 0.1), ("y", -0.1))
    ]
    with pytest.raises(ArgumentError, match="several models"):
        cross_correlation(rows, ["a", "b"])  # one matrix per model, never a silent average
    _, mat, C = cross_correlation(rows, ["a", "b"], formula="as_written", average_models=True)
    assert mat[0, 1] == pytest.approx(0.3) and mat[1, 0] == pytest.approx(0.6)  # mean over the two models
    assert C[0, 1] == pytest.approx((0.3 + 0.6) / (2 * 0.3)) and C[1, 0] == pytest.approx((0.6 + 0.3) / (2 * 0.6))
    assert C[0, 0] == C[1, 1] == 1.0
    _names, mat, C = cross_correlation(rows, ["a", "b"], model="x")
    assert mat[0, 1] == pytest.approx(0.4)


def test_fusion_gain_and_report(tmp_path):
    from nucfuse_datasets.benchmark.analysis import fusion_gain, load_results, render_report

    rows = [
        *paper_rows(),
        {"model": "HoVerNeXt", "train_set": "top9", "test_subset": "overall", "pq": 63.94},
        {"model": "CellViT", "train_set": "top9", "test_subset": "overall", "pq": 62.34},
    ]
    gains = {(g["model"], g["k"]): g for g in fusion_gain(rows, expected="overall_max")}
    g = gains[("HoVerNeXt", 9)]
    assert g["expected"] == 55.75 and g["gain"] == pytest.approx(63.94 - 55.75)  # best member alone (PUMA)
    assert gains[("CellViT", 1)]["observed"] == 55.14  # top1 = PCNS alone
    csv_path = tmp_path / "rows.csv"
    keys = ["model", "train_set", "test_subset", "pq"]
    csv_path.write_text(",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows))
    loaded = load_results(csv_path)
    assert len(loaded) == len(rows) and isinstance(loaded[0]["pq"], float)
    md = render_report(loaded, tmp_path / "out")
    text = md.read_text()
    assert "| pcns |" in text and "Top-k fusion" in text
    assert (tmp_path / "out" / "ranking.png").stat().st_size > 1000


# ---------------------------------------------------------------- CLI and demo


def test_cli_export_evaluate_report_splits(tmp_path, capsys):
    from nucfuse_datasets.cli import main

    root = str(tmp_path / "data")
    assert main(["--root", root, "export-test", str(tmp_path / "gt"), "--datasets", "synthetic"]) == 0
    assert (
        main(
            [
                "--root",
                root,
                "evaluate",
                "--predictions",
                str(tmp_path / "gt"),
                "--datasets",
                "synthetic",
                "--out",
                str(tmp_path / "rep"),
                "--model",
                "gt",
                "--train-set",
                "none",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "**overall** | 14 | 100.00" in out
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["meta"]["model"] == "gt"
    assert main(["report", str(tmp_path / "rep" / "report.json"), "--out", str(tmp_path / "an"), "--no-plots"]) == 0
    assert (tmp_path / "an" / "analysis.md").is_file()
    assert main(["--root", root, "splits", "--datasets", "synthetic", "--write", str(tmp_path / "ids.json")]) == 0
    written = json.loads((tmp_path / "ids.json").read_text())
    assert len(written["datasets"]["synthetic"]["ids"]) == 14
    assert main(["--root", root, "leakage", "--datasets", "synthetic"]) == 0
    assert "Leakage audit" in capsys.readouterr().out


def test_demo_writes_reports(tmp_path):
    from nucfuse_datasets.cli.demo import run_demo

    assert run_demo(out=tmp_path / "out") == 0
    report = EvaluationReport.from_json((tmp_path / "out" / "report.json").read_text())
    assert len(report.per_image) == 42 and set(report.per_dataset) == {
        "synthetic-sparse",
        "synthetic-dense",
        "synthetic-large",
    }
    assert not math.isnan(report.overall["mean"]["pq"]) and 0.3 < report.overall["mean"]["pq"] < 1
    assert (tmp_path / "out" / "report.md").read_text().count("|") > 20
