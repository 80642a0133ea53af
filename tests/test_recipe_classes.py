"""Class-aware recipes (issue 22, item 4): ``data.classes`` trains a type head, the evaluation scores classes.

Expected values come from outside the code under test: the focal cross-entropy of hand-chosen logits worked out with
``math``; the classes written per instance into the test samples, followed through the augmentations by warping a
second copy whose instance ids *are* the classes; CoNSeP's 7 → 4 merge written out from its README and the HoVer-Net
paper; the synthetic generator's two classes. The binary configuration is checked to be the one it was: an old-style
configuration without the new keys trains to bit-identical weights and the same report, without class scores.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.draw import disk

pytest.importorskip("timm")

from examples.cellvit.augment import CellViTAugment
from examples.cellvit.model import CellViT256, cellvit_infer_fn
from examples.cellvit.spec import SPEC as CELLVIT
from examples.common.checkpoint import load_checkpoint
from examples.common.classes import class_setting, default_protocol, eval_protocol
from examples.common.cli import evaluate_main, train_main
from examples.common.config import load_config, merge
from examples.common.training import build_datasets, train
from examples.hovernext.augment import HoVerNeXtAugment, HoVerNeXtBatchAugment
from examples.hovernext.losses import HoVerNeXtLoss, focal_ce_loss
from examples.hovernext.model import HoVerNeXt, hovernext_infer_fn
from examples.hovernext.spec import SPEC as HOVERNEXT
from nucfuse_datasets.benchmark.evaluation import EvaluationReport
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.schema import Sample, SampleMeta
from nucfuse_datasets.transforms.targets import hv_maps, three_class_map

REPO = Path(__file__).resolve().parents[1]
SPECS = {"hovernext": HOVERNEXT, "cellvit": CELLVIT}
SYNTHETIC_CLASSES = ["epithelial", "lymphocyte"]  # nucfuse_datasets.datasets.synthetic's generator

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*randomly initialised.*:UserWarning"),
    pytest.mark.filterwarnings("ignore::nucfuse_datasets.benchmark.selection.SmallTestSetWarning"),  # tiny fakes
    pytest.mark.usefixtures("one_torch_thread"),
]


def _quiet(factory, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return factory(**kwargs)


def _sample(instances: np.ndarray, classes: np.ndarray, names=("background", "a", "b")) -> Sample:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*instances.shape, 3), dtype=np.uint8)
    meta = SampleMeta(dataset="demo", sample_id="x", split="train")
    return Sample(image=image, instances=instances, classes=classes, class_names=names, meta=meta)


def _nuclei(shape=(64, 64), n=14, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    inst = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        centre = (int(rng.integers(6, shape[0] - 6)), int(rng.integers(6, shape[1] - 6)))
        rr, cc = disk(centre, int(rng.integers(3, 6)), shape=shape)
        inst[rr, cc] = i
    return inst


# --------------------------------------------------------------------------- losses and heads
def test_focal_ce_loss_by_hand():
    # uniform logits over 2 classes: p = 1/2, every element -(1/2)^2 log(1/2) (t + 1e-6); mean over classes too
    target = torch.tensor([[[0, 1], [1, 1]]])
    want = 0.25 * math.log(2.0) * (1 + 2e-6) / 2
    assert float(focal_ce_loss(torch.zeros(1, 2, 2, 2), target)) == pytest.approx(want, rel=1e-6)
    # one pixel, logits (ln 3, 0): p = (3/4, 1/4), target class 0
    logits = torch.tensor([math.log(3.0), 0.0]).view(1, 2, 1, 1)
    want = (-(0.25**2) * math.log(0.75) * (1 + 1e-6) - 0.75**2 * math.log(0.25) * 1e-6) / 2
    assert float(focal_ce_loss(logits, torch.zeros(1, 1, 1, dtype=torch.long))) == pytest.approx(want, rel=1e-5)


def test_hovernext_class_aware_loss_adds_the_type_term():
    inst = _nuclei()
    classes = np.array([0] + [1 + i % 2 for i in range(1, 15)], np.int32)
    tgt = {
        "hv": torch.from_numpy(hv_maps(inst))[None],
        "three_class": torch.from_numpy(three_class_map(inst)).long()[None],
        "np": torch.from_numpy((inst > 0).astype(np.float32))[None],
        "type_map": torch.from_numpy(classes[inst]).long()[None],
    }
    torch.manual_seed(0)
    out = torch.randn(1, 6 + 3, 64, 64)
    loss = HoVerNeXtLoss()
    total, parts = loss(out, tgt, return_components=True)
    binary = loss(out[:, :6], {k: v for k, v in tgt.items() if k != "type_map"})
    torch.testing.assert_close(total, binary + 0.33 * focal_ce_loss(out[:, 6:], tgt["type_map"]))
    assert set(parts) == {"hv_mse", "three_class_ce", "np_bce", "np_dice", "type_focal_ce"}
    with pytest.raises(ArgumentError, match="type_map"):
        loss(out, {k: v for k, v in tgt.items() if k != "type_map"})


def test_type_heads_and_adapters():
    x = torch.randn(1, 3, 64, 64)
    hov = _quiet(HoVerNeXt, encoder_name="convnextv2_atto", decoder_channels=(32, 16, 16, 8), final_channels=8)
    typed = _quiet(HoVerNeXt, encoder_name="convnextv2_atto", decoder_channels=(32, 16, 16, 8), cls_channels=4)
    with torch.inference_mode():
        assert hov.eval()(x).shape[1] == 6 and typed.eval()(x).shape[1] == 9  # NP logit + background + K = 2
        maps = hovernext_infer_fn(typed, types=True)(x)
        torch.testing.assert_close(maps[:, :3], hovernext_infer_fn(typed)(x))  # the binary channels are unchanged
        torch.testing.assert_close(maps[:, 3:].sum(1), torch.ones(1, 64, 64))
        with pytest.raises(ArgumentError, match="class-aware"):
            hovernext_infer_fn(hov, types=True)(x)
        cvt = _quiet(
            CellViT256, encoder_name="vit_tiny_patch16_224", decoder_widths=(32, 16, 16, 8), num_nuclei_classes=3
        )
        maps = cellvit_infer_fn(cvt.eval(), types=True)(x)
        assert maps.shape == (1, 6, 64, 64)
        torch.testing.assert_close(maps[:, :3], cellvit_infer_fn(cvt)(x))
    assert HOVERNEXT.class_model_config(5) == {"cls_channels": 7}  # PanNuke: NP + 6 = upstream's 6 class channels
    assert CELLVIT.class_model_config(5) == {"num_nuclei_classes": 6}  # upstream CellViT's PanNuke setting


def test_config_values_and_protocol_defaults():
    assert class_setting({"data": {"classes": "none"}}) is None and class_setting({"data": {}}) is None
    assert class_setting({"data": {"classes": "auto"}}) == "auto"
    with pytest.raises(ArgumentError, match="consep-4"):
        class_setting({"data": {"classes": "pannuke-5"}})
    assert default_protocol("pannuke") == "pannuke"
    assert [default_protocol(g) for g in ("consep-4", "monusac", "puma-10", "synthetic")] == ["hovernet"] * 4
    info = {"grouping": "pannuke"}
    assert eval_protocol({"eval": {"protocol": ""}}, info) == "pannuke"
    assert eval_protocol({"eval": {"protocol": "conic"}}, info) == "conic"
    assert eval_protocol({"eval": {"protocol": "none"}}, info) is None
    assert eval_protocol({"eval": {"protocol": ""}}, None) is None  # a binary checkpoint: as before
    with pytest.raises(ArgumentError, match="trained without classes"):
        eval_protocol({"eval": {"protocol": "hovernet"}}, None)
    with pytest.raises(ArgumentError, match=r"eval\.protocol = .monusac."):
        eval_protocol({"eval": {"protocol": "monusac"}}, info)


# --------------------------------------------------------------------------- augmentations carry the classes
def _follow(augment, samples: list[Sample], seed: int) -> tuple[list[Sample], list[Sample]]:
    """Augment the samples, then (same random draws) copies whose instance ids are their classes."""
    as_types = [
        s.replace(instances=s.type_map().astype(np.int32), classes=np.arange(3, dtype=np.int32)) for s in samples
    ]
    torch.manual_seed(seed)
    out = augment(samples)
    torch.manual_seed(seed)
    ref = augment(as_types)
    return out, ref


@pytest.mark.parametrize("which", ["hovernext", "hovernext-batch", "cellvit"])
def test_augmentations_move_the_classes_with_their_nuclei(which: str):
    samples = []
    for seed in (1, 2):
        inst = _nuclei(seed=seed)
        samples.append(_sample(inst, np.array([0] + [1 + (i * 7 + seed) % 2 for i in range(1, 15)], np.int32)))
    if which == "hovernext":
        one = HoVerNeXtAugment(p=1.0)
        augment = lambda ss: [one(s) for s in ss]  # noqa: E731
    elif which == "hovernext-batch":
        augment = HoVerNeXtBatchAugment(HoVerNeXtAugment(p=1.0))
    else:  # every geometric step on, the relabelling ones included
        one = CellViTAugment(probabilities={"rotate90": 1, "hflip": 1, "sized_crop": 1, "elastic": 1})
        augment = lambda ss: [one(s) for s in ss]  # noqa: E731
    out, ref = _follow(augment, samples, seed=11)
    for before, after, types in zip(samples, out, ref, strict=True):
        assert not np.array_equal(after.instances, before.instances)  # the geometry changed
        present = set(np.unique(after.type_map()).tolist())
        assert present == {0, 1, 2}  # both classes survive
        np.testing.assert_array_equal(after.type_map(), types.type_map())  # each pixel keeps its nucleus's class


# --------------------------------------------------------------------------- data: the grouping and its errors
@pytest.fixture(scope="module")
def fake_root(tmp_path_factory, fake_factory) -> Path:
    root = tmp_path_factory.mktemp("class-root")
    for name in ("pannuke", "consep", "monuseg"):
        shutil.copytree(fake_factory(name).native_dir, root / name, dirs_exist_ok=True)
    return root


def _cfg(root: Path, datasets, classes: str, recipe: str = "hovernext") -> dict:
    cfg = merge(SPECS[recipe].default_config(), load_config(REPO / "examples" / recipe / "smoke.toml"))
    return merge(cfg, {"data": {"root": str(root), "datasets": datasets, "classes": classes, "test_ids": "rule"}})


def test_consep_classes_are_mapped_to_hovernets_four(fake_root: Path):
    cfg = _cfg(fake_root, ["consep"], "auto")
    train, val = build_datasets(HOVERNEXT, cfg, HOVERNEXT.recipe(cfg))
    merged = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 4, 7: 4}  # CoNSeP README + HoVer-Net §4.2, written out here
    raw = [train.load_sample(i) for i in range(len(train))]  # untransformed: the release's 7 classes
    assert max(int(s.classes.max()) for s in raw) > 4
    mapped = [train[i] for i in range(len(train))]  # HoVerNeXt augments in the collate: the dataset only maps
    for s, m in zip(raw, mapped, strict=True):
        assert m.classes.tolist() == [merged[int(c)] for c in s.classes]
        assert m.class_names == ("background", "other", "inflammatory", "epithelial", "spindle-shaped")
    assert val.load_sample(0).classes is None  # validation stays binary


@pytest.mark.parametrize(
    ("datasets", "classes", "message"),
    [
        (["synthetic", "pannuke"], "auto", r"different class groupings \(synthetic: synthetic, pannuke: pannuke\)"),
        (["consep"], "pannuke", r"grouping 'pannuke' maps pannuke's classes, not those of training dataset 'consep'"),
        (["monuseg"], "auto", r"'monuseg' \(monuseg\) has no nucleus classes"),
        (["synthetic"], "everything", r"data.classes = 'everything': use"),
    ],
)
def test_class_errors_are_clear(fake_root: Path, datasets, classes, message):
    cfg = _cfg(fake_root, datasets, classes)
    cfg["data"]["dataset_options"] = {"synthetic": {"n_tiles": 20, "tile_size": 256}}
    with pytest.raises(ArgumentError, match=message):
        build_datasets(HOVERNEXT, cfg, HOVERNEXT.recipe(cfg))


def test_training_batches_carry_the_type_map(fake_root: Path):
    cfg = _cfg(fake_root, ["synthetic"], "synthetic")
    recipe = HOVERNEXT.recipe(cfg)
    train, _ = build_datasets(HOVERNEXT, cfg, recipe)
    collate = HOVERNEXT.train_collate(recipe, cfg)  # the per-batch augmentation, then the targets
    batch = collate([train[i] for i in range(len(train))])
    assert batch["type_map"].dtype == torch.int64 and set(batch["type_map"].unique().tolist()) == {0, 1, 2}
    assert torch.equal(batch["type_map"] > 0, batch["np"] > 0)
    ccfg = _cfg(fake_root, ["synthetic"], "auto", "cellvit")
    ctrain, _ = build_datasets(CELLVIT, ccfg, CELLVIT.recipe(ccfg))
    item = ctrain[0]
    assert set(item["type_map"].unique().tolist()) <= {0, 1, 2} and torch.equal(item["type_map"] > 0, item["np"] > 0)


# --------------------------------------------------------------------------- smoke: train, evaluate
def _smoke(recipe: str, root: Path, out: Path, *extra: str) -> list[str]:
    config = REPO / "examples" / recipe / "smoke.toml"
    return ["--config", str(config), "--root", str(root), "--out", str(out), "--no-progress", "--epochs", "1", *extra]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nucfuse-data")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["hovernext", "cellvit"])
def test_class_aware_smoke_run_reports_class_scores(recipe: str, data_root: Path, tmp_path: Path):
    spec, out = SPECS[recipe], tmp_path / "run"
    assert train_main(spec, _smoke(recipe, data_root, out, "--set", "data.classes=auto")) == 0
    best = load_checkpoint(out / "best.pt")
    assert best["classes"] == {
        "grouping": "synthetic",
        "dataset": "synthetic",
        "names": SYNTHETIC_CLASSES,
        "n_classes": 2,
    }
    key, channels = ("cls_channels", 4) if recipe == "hovernext" else ("num_nuclei_classes", 3)
    assert best["config"]["model"][key] == channels and load_checkpoint(out / "last.pt")["classes"] == best["classes"]
    assert json.loads((out / "summary.json").read_text())["classes"] == "synthetic"

    assert evaluate_main(spec, ["--checkpoint", str(out / "best.pt"), "--no-progress"]) == 0
    report = EvaluationReport.from_json((out / "eval" / "report.json").read_text())
    scores = report.class_scores["synthetic"]
    assert report.meta["protocol"]["name"] == "hovernet" and scores["protocol"] == "hovernet"
    assert [c["name"] for c in scores["per_class"].values()] == SYNTHETIC_CLASSES
    assert report.meta["class_groupings"]["synthetic"]["name"] == "synthetic"
    assert report.meta["trained_classes"]["grouping"] == "synthetic" and report.overall["mean"]["n_images"] == 14
    assert "Class-aware scores" in (out / "eval" / "report.md").read_text()
    assert set(report.rescore("pannuke")["synthetic"]) >= {"mpq", "bpq"}  # every protocol's counts are kept

    # a whole dataset split instead of NucFuse-test, another protocol; and instances only
    argv = ["--checkpoint", str(out / "best.pt"), "--no-progress", "--split", "all", "--protocol", "conic"]
    assert evaluate_main(spec, [*argv, "--out", str(tmp_path / "split")]) == 0
    split = EvaluationReport.from_json((tmp_path / "split" / "report.json").read_text())
    assert split.meta["data"] == "synthetic/all" and split.overall["mean"]["n_images"] == 20
    assert split.meta["split_training_tiles"] == 6  # the 6 tiles outside NucFuse-test trained (4 + 2 patches)
    assert "mpq+" in split.class_scores["synthetic"]
    argv = ["--checkpoint", str(out / "best.pt"), "--no-progress", "--protocol", "none", "--out", str(tmp_path / "n")]
    assert evaluate_main(spec, argv) == 0
    plain = EvaluationReport.from_json((tmp_path / "n" / "report.json").read_text())
    assert plain.class_scores == {} and "protocol" not in plain.meta
    assert plain.overall == report.overall  # the same instances, whether or not the classes are scored


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["hovernext", "cellvit"])
def test_binary_configuration_is_unchanged(recipe: str, data_root: Path, tmp_path: Path):
    """The default (``data.classes = "none"``) trains exactly what a configuration without the option trained."""
    spec = SPECS[recipe]
    assert train_main(spec, _smoke(recipe, data_root, tmp_path / "new")) == 0
    old = load_checkpoint(tmp_path / "new" / "last.pt")["config"]  # the resolved configuration ...
    for section, keys in {
        "data": ["classes"],
        "eval": ["protocol", "split"],
        "recipe": ["type_weight", "focal_gamma"],
    }.items():
        for k in keys:
            old[section].pop(k, None)  # ... without the keys this option added, as written before it
    old["train"]["out"] = str(tmp_path / "old")
    train(spec, old)
    a, b = load_checkpoint(tmp_path / "new" / "best.pt"), load_checkpoint(tmp_path / "old" / "best.pt")
    assert a["classes"] is None and a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    head = a["model"]["head_cls.weight" if recipe == "hovernext" else "branches.nuclei_type_map.header.2.weight"]
    assert head.shape[0] == (1 if recipe == "hovernext" else 2)  # the paper's heads
    for run in ("new", "old"):
        assert evaluate_main(spec, ["--checkpoint", str(tmp_path / run / "best.pt"), "--no-progress"]) == 0
    ra, rb = (EvaluationReport.from_json((tmp_path / r / "eval" / "report.json").read_text()) for r in ("new", "old"))
    assert ra.class_scores == {} and "protocol" not in ra.meta and "trained_classes" not in ra.meta
    assert ra.overall == rb.overall and ra.per_image == rb.per_image
