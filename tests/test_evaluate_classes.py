"""Issue 22, items 3 and 4 (the scoring side): ``nf.evaluate`` on any dataset split, class-aware, batched, from files.

Expected values: perfect predictions (the ground truth itself) give the protocols' known values computed here by
hand from their definitions (PanNuke's DQ without epsilon and SQ = n / (n + 1e-6); CoNIC's +1e-6 in both; HoVer-Net
F1 = 1); wrong classes give values derived by hand from the fake tiles' class counts; and the report's numbers
equal :func:`nucfuse_datasets.metrics.class_scores` run directly on the same arrays (whose own exactness against the
official codes is tested in ``tests/test_class_metrics.py``). Files are written as HoVer-Net writes them
(``scipy.io.savemat`` of ``inst_map``, ``inst_uid``, ``inst_type``, ``inst_centroid``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import nucfuse_datasets as nf
from nucfuse_datasets.benchmark.class_groupings import GROUPINGS, get_grouping
from nucfuse_datasets.benchmark.evaluation import EvaluationReport
from nucfuse_datasets.cli import main
from nucfuse_datasets.errors import ArgumentError, InvalidPredictionError
from nucfuse_datasets.metrics import class_scores

EPS = 1e-6


@pytest.fixture(scope="module")
def pannuke(tmp_path_factory, fake_factory):
    root = tmp_path_factory.mktemp("pannuke-root")
    fake = fake_factory("pannuke")
    shutil.copytree(fake.native_dir / "Fold 1", root / "pannuke" / "Fold 1")
    return nf.get_dataset("pannuke", root=root, split="fold1", progress=False)


@pytest.fixture(scope="module")
def consep(tmp_path_factory, fake_factory):
    root = tmp_path_factory.mktemp("consep-root")
    fake = fake_factory("consep")
    shutil.copytree(fake.native_dir, root / "consep", dirs_exist_ok=True)
    return nf.get_dataset("consep", root=root, split="test", progress=False)


def _perfect_pq(n: int) -> float:
    """PanNuke's PQ of a perfect image with n nuclei of a class: DQ = 1 (no epsilon), SQ = n / (n + 1e-6)."""
    return n / (n + EPS)


def test_perfect_predictions_score_the_protocols_known_values(pannuke):
    def predict(image):
        i = next(i for i in range(len(pannuke)) if np.array_equal(pannuke[i].image, image))
        return pannuke[i].instances, pannuke[i].classes

    report = nf.evaluate(pannuke, predict, protocol="pannuke", progress=False)
    scores = report.class_scores["pannuke"]
    # by hand: per image, per class present, PQ = n/(n+1e-6); mean over classes, images, tissues
    per_tissue = []
    for i in range(len(pannuke)):
        s = pannuke[i]
        counts = np.bincount(s.classes[np.unique(s.instances[s.instances > 0])], minlength=6)[1:]
        per_tissue.append(np.mean([_perfect_pq(int(n)) for n in counts if n]))
    assert scores["mpq"] == pytest.approx(np.mean(per_tissue), abs=1e-12)  # one image per tissue in fold 1
    n_all = [len(np.unique(pannuke[i].instances)) - 1 for i in range(len(pannuke))]
    assert scores["bpq"] == pytest.approx(np.mean([_perfect_pq(n) for n in n_all]), abs=1e-12)
    assert set(scores["per_tissue"]) == {"Breast", "Adrenal_gland", "Colon"}  # PanNuke's raw tissue names
    assert scores["per_class"][1]["name"] == "Neoplastic"
    hv = report.rescore("hovernet")["pannuke"]
    assert hv["f1_d"] == 1.0 and hv["acc_type"] == 1.0
    conic = report.rescore("conic")["pannuke"]
    total = sum(n_all)
    assert conic["pq"] == pytest.approx(np.mean([(n / (n + EPS)) ** 2 for n in n_all]), abs=1e-12)
    assert 0.99999 < conic["mpq+"] < 1 and total > 0
    assert report.overall["mean"]["n_images"] == len(pannuke)  # instance metrics as before


def test_one_class_always_wrong(pannuke):
    """Every Neoplastic (1) nucleus predicted as Dead (4): class 1 scores 0 where present, PQ+ of 4 by hand."""

    def predict(image):
        i = next(i for i in range(len(pannuke)) if np.array_equal(pannuke[i].image, image))
        classes = pannuke[i].classes.copy()
        classes[classes == 1] = 4
        return {"instances": pannuke[i].instances, "classes": classes}

    report = nf.evaluate(pannuke, predict, protocol="conic", progress=False)
    per_class = report.class_scores["pannuke"]["per_class"]
    counts = np.zeros(6, int)
    for i in range(len(pannuke)):
        s = pannuke[i]
        counts += np.bincount(s.classes[np.unique(s.instances[s.instances > 0])], minlength=6)
    assert counts[1] > 0 and per_class[1]["pq+"] == 0.0
    tp4, fp4 = counts[4], counts[1]  # class 4: its own nuclei right, plus every class-1 nucleus as a false positive
    want = tp4 / (tp4 + 0.5 * fp4 + EPS) * (tp4 / (tp4 + EPS))
    assert per_class[4]["pq+"] == pytest.approx(want, abs=1e-12)


def test_report_equals_class_scores_on_the_same_arrays(pannuke):
    rng = np.random.default_rng(3)
    preds = {}
    for i in range(len(pannuke)):
        s = pannuke[i]
        classes = s.classes.copy()
        flip = rng.random(classes.size) < 0.3
        classes[flip] = rng.integers(1, 6, int(flip.sum()))
        classes[0] = 0
        inst = s.instances.copy()
        inst[:, ::7] = 0  # eroded nuclei
        preds[s.image.tobytes()] = (inst, classes)
    report = nf.evaluate(pannuke, lambda im: preds[im.tobytes()], protocol="hovernet", progress=False)
    gt = [(pannuke[i].instances, pannuke[i].classes) for i in range(len(pannuke))]
    pr = [preds[pannuke[i].image.tobytes()] for i in range(len(pannuke))]
    tissues = [pannuke[i].meta.extra["tissue"] for i in range(len(pannuke))]
    for protocol in ("pannuke", "conic", "hovernet"):
        want = class_scores(gt, pr, protocol, n_classes=5, tissues=tissues if protocol == "pannuke" else None)
        got = report.rescore(protocol)["pannuke"]
        for key in ("mpq", "bpq", "mpq+", "pq", "f1_d", "acc_type"):
            if key in want:
                assert got[key] == pytest.approx(want[key], abs=1e-12, nan_ok=True), (protocol, key)


@pytest.mark.parametrize("batch_size", [2, 3])
def test_batched_predict_fn_gives_the_same_report(pannuke, batch_size):
    def one(image):
        i = next(i for i in range(len(pannuke)) if np.array_equal(pannuke[i].image, image))
        return pannuke[i].instances, pannuke[i].classes

    calls = []

    def batched(images):
        calls.append(len(images))
        return [one(im) for im in images]

    a = nf.evaluate(pannuke, one, protocol="pannuke", progress=False)
    b = nf.evaluate(pannuke, batched, protocol="pannuke", batch_size=batch_size, progress=False)
    assert calls == [min(batch_size, len(pannuke) - k) for k in range(0, len(pannuke), batch_size)]
    assert a.class_scores == b.class_scores and a.overall == b.overall
    stacked = nf.evaluate(
        pannuke, lambda ims: np.stack([one(im)[0] for im in ims]), batch_size=batch_size, progress=False
    )
    assert stacked.overall == a.overall  # a B×H×W array of instance maps
    with pytest.raises(InvalidPredictionError, match="must return a list of"):
        nf.evaluate(pannuke, lambda ims: [one(ims[0])], batch_size=batch_size, progress=False)


def test_class_errors_name_the_tile_and_the_fix(pannuke, tmp_path, fake_factory):
    s0 = pannuke[0]
    with pytest.raises(InvalidPredictionError, match=r"pannuke/fold1_0000: protocol='pannuke' scores classes"):
        nf.evaluate(pannuke, lambda im: s0.instances, protocol="pannuke", progress=False)
    bad = s0.classes.copy()
    bad[1] = 9
    with pytest.raises(InvalidPredictionError, match=r"predicted class 9 is outside the evaluation classes 0..5"):
        nf.evaluate(pannuke, lambda im: (s0.instances, bad), protocol="pannuke", progress=False)
    with pytest.raises(InvalidPredictionError, match="class lookup has 2 entries"):
        nf.evaluate(pannuke, lambda im: (s0.instances, [0, 1]), protocol="pannuke", progress=False)
    with pytest.raises(ArgumentError, match="protocol must be one of"):
        nf.evaluate(pannuke, lambda im: s0.instances, protocol="monusac", progress=False)
    with pytest.raises(ArgumentError, match="is for consep's classes"):
        nf.evaluate(pannuke, lambda im: s0.instances, protocol="pannuke", classes="consep-4", progress=False)
    shutil.copytree(fake_factory("monuseg").native_dir / "MoNuSegTestData", tmp_path / "monuseg" / "MoNuSegTestData")
    monuseg = nf.get_dataset("monuseg", root=tmp_path, split="test", progress=False)  # no classes
    with pytest.raises(ArgumentError, match="carry none"):
        nf.evaluate(monuseg, lambda im: np.zeros(im.shape[:2], np.int32), protocol="conic", progress=False)


def test_consep_is_scored_in_hovernets_four_classes(consep):
    seven = get_grouping("consep-7")
    merged = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 4, 7: 4}  # CoNSeP README + HoVer-Net paper, written out here
    truth = {consep[i].image.tobytes(): consep[i] for i in range(len(consep))}

    def four(image):
        s = truth[image.tobytes()]
        return s.instances, np.array([merged[int(c)] for c in s.classes])

    def native(image):
        s = truth[image.tobytes()]
        return s.instances, s.classes

    report = nf.evaluate(consep, four, protocol="hovernet", progress=False)
    assert report.meta["class_groupings"]["consep"]["name"] == "consep-4"
    assert report.class_scores["consep"]["acc_type"] == 1.0
    assert [c["name"] for c in report.class_scores["consep"]["per_class"].values()] == list(GROUPINGS["consep-4"].names)
    mapped = nf.evaluate(consep, native, protocol="hovernet", map_predictions=True, progress=False)
    assert mapped.class_scores == report.class_scores
    as7 = nf.evaluate(consep, native, protocol="hovernet", classes="consep-7", progress=False)
    assert len(as7.class_scores["consep"]["per_class"]) == seven.n_classes == 7
    assert max(int(s.classes.max()) for s in truth.values()) > 4  # the fake test tiles use the 7 release classes
    with pytest.raises(InvalidPredictionError, match=r"outside the evaluation classes 0..4"):
        nf.evaluate(consep, native, protocol="hovernet", progress=False)  # 7 ids given as the 4 evaluation classes


def _write_hovernet_mat(path: Path, inst: np.ndarray, classes: np.ndarray) -> None:
    """As HoVer-Net's infer/tile.py saves mat/<name>.mat: inst_map, inst_uid, inst_type (N×1), inst_centroid (N×2)."""
    ids = np.unique(inst[inst > 0])
    ys, xs = np.nonzero(inst)
    cy = np.array([ys[inst[ys, xs] == k].mean() for k in ids]).reshape(-1, 1)
    cx = np.array([xs[inst[ys, xs] == k].mean() for k in ids]).reshape(-1, 1)
    scipy.io.savemat(
        path,
        {
            "inst_map": inst.astype(np.int32),
            "inst_uid": ids.reshape(-1, 1).astype(np.int32),
            "inst_type": classes[ids].reshape(-1, 1).astype(np.int32),
            "inst_centroid": np.hstack([cx, cy]) if ids.size else np.zeros((0, 2)),
        },
    )


def test_hovernet_files_score_like_the_callable(pannuke, tmp_path):
    folder = tmp_path / "out" / "mat"
    folder.mkdir(parents=True)
    for i in range(len(pannuke)):
        s = pannuke[i]
        _write_hovernet_mat(folder / f"{s.meta.sample_id}.mat", s.instances, s.classes)
    from_files = nf.evaluate(pannuke, tmp_path / "out", protocol="pannuke", progress=False)
    from_fn = nf.evaluate(pannuke, lambda im: _by_image(pannuke, im), protocol="pannuke", progress=False)
    assert from_files.class_scores == from_fn.class_scores
    assert from_files.overall == from_fn.overall
    # the CLI: the command
    out = tmp_path / "rep"
    argv = ["--root", str(pannuke.root), "evaluate", "--dataset", "pannuke", "--split", "fold1", "--protocol"]
    assert main([*argv, "pannuke", "--predictions", str(tmp_path / "out"), "--out", str(out), "--quiet"]) == 0
    saved = EvaluationReport.from_json((out / "report.json").read_text())
    assert saved.class_scores["pannuke"]["mpq"] == pytest.approx(from_fn.class_scores["pannuke"]["mpq"], abs=1e-12)
    assert "Class-aware scores, pannuke" in (out / "report.md").read_text()


def _by_image(ds, image):
    i = next(i for i in range(len(ds)) if np.array_equal(ds[i].image, image))
    return ds[i].instances, ds[i].classes


def test_report_json_round_trip_keeps_class_scores_and_stats(pannuke):
    report = nf.evaluate(pannuke, lambda im: _by_image(pannuke, im), protocol="pannuke", progress=False)
    back = EvaluationReport.from_json(report.to_json())
    assert back.class_scores.keys() == report.class_scores.keys()
    assert back.class_scores["pannuke"]["per_class"][1]["pq"] == report.class_scores["pannuke"]["per_class"][1]["pq"]
    assert back.rescore("conic") == report.rescore("conic")
    assert "class_stats" not in report.to_csv().splitlines()[0]
    text = report.to_markdown()
    assert "pannuke protocol, classes pannuke" in text and "pq Neoplastic" in text
    assert json.loads(report.to_json())["class_scores"]["pannuke"]["n_images"] == len(pannuke)


def test_instance_only_evaluation_of_a_dataset_split_and_nan_safe_markdown(pannuke):
    report = nf.evaluate(pannuke, lambda im: np.zeros(im.shape[:2], np.int32), progress=False)
    assert report.class_scores == {} and report.meta["data"] == "pannuke/fold1"
    with pytest.raises(ArgumentError, match="no class-aware stats"):
        report.rescore("pannuke")
    empty = nf.evaluate(
        pannuke, lambda im: (np.zeros(im.shape[:2], np.int32), np.zeros(1, int)), protocol="pannuke", progress=False
    )
    assert empty.class_scores["pannuke"]["mpq"] == 0.0
    assert not math.isnan(empty.class_scores["pannuke"]["bpq"])


def test_one_class_space_is_scored_only_where_it_fits(consep, tmp_path, monkeypatch):
    """A model's classes (one grouping) are scored on the subsets they map; others get instance metrics only."""
    monkeypatch.setattr("nucfuse_datasets.benchmark.selection.MIN_TEST_SIZE", 1)  # the fakes' tiles are small
    synth = nf.get_dataset("synthetic", root=tmp_path, n_tiles=3, tile_size=64, progress=False)
    test = nf.NucFuseTest(datasets={"synthetic": synth, "consep": consep}, test_ids="rule", progress=False)
    assert set(test.ids) == {"synthetic", "consep"} and all(test.ids.values())

    def predict(image):
        inst = np.zeros(image.shape[:2], np.int32)
        return inst, np.zeros(1, np.int64)

    only_synth = nf.evaluate(test, predict, protocol="pannuke", classes="synthetic", progress=False)
    assert list(only_synth.class_scores) == ["synthetic"]
    assert set(only_synth.per_dataset) == {"synthetic", "consep"}  # both scored for instances
    none_there = nf.evaluate(test, predict, protocol="hovernet", classes={"synthetic": None}, progress=False)
    assert list(none_there.class_scores) == ["consep"]  # consep in its default 4 classes
    assert none_there.meta["class_groupings"]["consep"]["name"] == "consep-4"
    with pytest.raises(ArgumentError, match="fits none of the subsets"):
        nf.evaluate(test, predict, protocol="hovernet", classes="puma-10", progress=False)


def test_cli_refuses_pickles_unless_allowed_and_then_warns(tmp_path, capsys):
    """Issue 23, item 3: Cellpose's pickled ``_seg.npy`` only with ``--allow-pickle``, which prints a warning."""
    root = tmp_path / "data"
    ds = nf.get_dataset("synthetic", root=root, n_tiles=2, tile_size=64, progress=False)
    out = tmp_path / "cellpose-out"
    out.mkdir()
    for i in range(len(ds)):  # as cellpose.io.masks_flows_to_seg writes it: np.save of a dict (a pickle)
        np.save(out / f"{ds.sample_ids[i]}_seg.npy", {"masks": ds[i].instances.astype(np.uint16), "diameter": 30.0})
    argv = ["--root", str(root), "evaluate", "--dataset", "synthetic", "--option", "n_tiles=2", "--option"]
    argv += ["tile_size=64", "--predictions", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "_seg.npy" in err and "pickle" in err and "--allow-pickle" in err
    with pytest.warns(UserWarning, match="pickle"):
        assert main([*argv, "--allow-pickle"]) == 0
    assert "| **overall** | 2 | 100.00 |" in capsys.readouterr().out  # the ground truth itself: PQ ×100 = 100.00
