"""The reference recipes in examples/: models, losses, augmentations (CPU, random init, offline)."""

from __future__ import annotations

import argparse
import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.draw import disk

pytest.importorskip("timm")

from examples.cellvit.augment import CellViTAugment
from examples.cellvit.losses import (
    CellViTLoss,
    dice_loss,
    focal_tversky_loss,
    gradient_kernels,
    msge_loss,
)
from examples.cellvit.model import CellViT256, cellvit_infer_fn, load_hipt_state_dict
from examples.common.sample_ops import relabel_split_instances
from examples.common.transforms import IMAGENET_MEAN, IMAGENET_STD, Compose, ToTensors
from examples.hovernext.augment import HoVerNeXtAugment, HoVerNeXtBatchAugment
from examples.hovernext.losses import HoVerNeXtLoss, soft_dice_loss
from examples.hovernext.model import HoVerNeXt, hovernext_infer_fn
from nucfuse_datasets.errors import ArgumentError
from nucfuse_datasets.schema import Sample, SampleMeta
from nucfuse_datasets.transforms.targets import HoVerNetTargets, NucleusTargets, hv_maps, three_class_map

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _quiet(factory, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return factory(**kwargs)


@pytest.fixture(scope="module")
def hovernext() -> HoVerNeXt:
    return _quiet(HoVerNeXt)


@pytest.fixture(scope="module")
def cellvit() -> CellViT256:
    return _quiet(CellViT256)


def _instances(shape=(64, 64), n=12, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    inst = np.zeros(shape, np.int32)
    for i in range(1, n + 1):
        centre = (int(rng.integers(4, shape[0] - 4)), int(rng.integers(4, shape[1] - 4)))
        rr, cc = disk(centre, int(rng.integers(3, 7)), shape=shape)
        inst[rr, cc] = i
    return inst


def _batch(inst: np.ndarray, b: int = 2) -> dict[str, torch.Tensor]:
    return {
        "hv": torch.from_numpy(hv_maps(inst))[None].repeat(b, 1, 1, 1),
        "three_class": torch.from_numpy(three_class_map(inst)).long()[None].repeat(b, 1, 1),
        "np": torch.from_numpy((inst > 0).astype(np.float32))[None].repeat(b, 1, 1),
    }


# --------------------------------------------------------------------------- models
def test_hovernext_parameter_count(hovernext):
    assert _n_params(hovernext) == 36_083_110
    assert _n_params(hovernext.encoder) == 27_864_960
    assert _n_params(hovernext.decoder_inst) == _n_params(hovernext.decoder_cls) == 4_109_024
    assert _n_params(hovernext.head_inst) + _n_params(hovernext.head_cls) == 102


def test_cellvit_parameter_count(cellvit):
    assert _n_params(cellvit) == 46_742_774
    assert _n_params(cellvit.encoder) == 21_665_664
    shared = sum(_n_params(getattr(cellvit, f"decoder{i}")) for i in range(4))
    assert shared == 4_689_824
    assert [_n_params(b) for b in cellvit.branches.values()] == [6_795_762] * 3


def test_hovernext_forward_and_adapter(hovernext):
    hovernext.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = hovernext(x)
        maps = hovernext_infer_fn(hovernext)(x)
    assert out.shape == (2, 6, 64, 64)
    assert maps.shape == (2, 3, 64, 64) and 0 <= float(maps[:, 0].min()) <= float(maps[:, 0].max()) <= 1
    torch.testing.assert_close(maps[:, 1:], out[:, :2])
    with pytest.raises(ArgumentError):
        hovernext(torch.randn(1, 3, 48, 64))


def test_cellvit_forward_and_adapter(cellvit):
    cellvit.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = cellvit(x)
        maps = cellvit_infer_fn(cellvit)(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "nuclei_binary_map": (1, 2, 64, 96),
        "hv_map": (1, 2, 64, 96),
        "nuclei_type_map": (1, 2, 64, 96),
    }
    assert maps.shape == (1, 3, 64, 96)
    with pytest.raises(ArgumentError):
        cellvit(torch.randn(1, 3, 40, 64))


def test_freeze_helpers(hovernext, cellvit):
    for model in (hovernext, cellvit):
        total = _n_params(model)
        model.freeze_encoder()
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert trainable == total - _n_params(model.encoder)
        model.unfreeze_encoder()
        assert all(p.requires_grad for p in model.parameters())


def test_random_init_warns():
    with pytest.warns(UserWarning, match="randomly initialised"):
        CellViT256()


def test_hovernext_loads_local_timm_weights(tmp_path, monkeypatch):
    import timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    full = timm.create_model("convnextv2_tiny", pretrained=False)
    path = tmp_path / "convnextv2_tiny.pth"
    torch.save(full.state_dict(), path)
    model = HoVerNeXt(pretrained_path=path)
    enc = dict(model.encoder.named_parameters())
    key = next(k for k in enc if k.endswith("stem_0.weight") or k.endswith("stem.0.weight"))
    torch.testing.assert_close(enc[key], full.stem[0].weight)
    with pytest.raises(ArgumentError):
        HoVerNeXt(pretrained_path=tmp_path / "missing.pth")


def test_cellvit_loads_hipt_checkpoint(tmp_path, cellvit):
    ref = cellvit.encoder.state_dict()
    teacher = {f"module.backbone.{k}": v.clone() + 1.0 for k, v in ref.items()}
    teacher["module.head.mlp.0.weight"] = torch.zeros(3, 3)
    ckpt = {"teacher": teacher, "student": {}, "epoch": 3, "args": argparse.Namespace(arch="vit_small")}
    path = tmp_path / "vit256_small_dino.pth"
    torch.save(ckpt, path)
    state = load_hipt_state_dict(path)
    assert set(state) == set(ref)
    model = CellViT256(pretrained_path=path)
    torch.testing.assert_close(
        model.encoder.state_dict()["blocks.0.attn.qkv.weight"], ref["blocks.0.attn.qkv.weight"] + 1
    )


# --------------------------------------------------------------------------- losses
def test_hovernext_loss_terms_and_weights():
    inst = _instances()
    tgt = _batch(inst)
    out = torch.zeros(2, 6, 64, 64)
    total, parts = HoVerNeXtLoss()(out, tgt, return_components=True)
    expected = 0.33 * (parts["hv_mse"] + parts["three_class_ce"]) + 0.33 * parts["np_bce"] + 0.33 * parts["np_dice"]
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(parts["np_bce"], torch.tensor(np.log(2.0), dtype=torch.float32))
    torch.testing.assert_close(parts["hv_mse"], (tgt["hv"] ** 2).mean())
    # weighted CE with uniform logits is log(3) whatever the weights
    torch.testing.assert_close(parts["three_class_ce"], torch.tensor(np.log(3.0), dtype=torch.float32))
    # per-sample soft dice: perfect → 0; empty prediction on a non-empty target → ~1
    assert float(soft_dice_loss(tgt["np"], tgt["np"])) < 1e-6
    assert float(soft_dice_loss(torch.zeros_like(tgt["np"]), tgt["np"])) > 0.99


def test_cellvit_loss_terms():
    kh, kv = gradient_kernels(5)
    assert float(kh[2, 3]) == 1.0 and float(kh[2, 4]) == 0.5 and float(kh[0, 0]) == -0.25
    torch.testing.assert_close(kv, kh.T)
    inst = _instances()
    tgt = _batch(inst)
    assert float(msge_loss(tgt["hv"], tgt["hv"], tgt["np"])) == 0.0
    onehot = torch.stack([1 - tgt["np"], tgt["np"]], dim=1)
    assert float(focal_tversky_loss(onehot, onehot)) < 1e-6
    assert float(dice_loss(onehot, onehot)) < 1e-6
    logits = {k: torch.randn(2, 2, 64, 64) for k in ("nuclei_binary_map", "hv_map", "nuclei_type_map")}
    total, parts = CellViTLoss()(logits, tgt, return_components=True)
    weights = {
        "np_focal_tversky": 1,
        "np_dice": 1,
        "hv_mse": 2.5,
        "hv_msge": 8,
        "type_ce": 0.5,
        "type_dice": 0.2,
        "type_mc_focal_tversky": 0.5,
    }
    torch.testing.assert_close(total, sum(w * parts[k] for k, w in weights.items()))
    single = CellViTLoss(double_softmax=False)(logits, tgt, return_components=True)[1]
    assert not torch.isclose(single["np_focal_tversky"], parts["np_focal_tversky"])
    torch.testing.assert_close(single["np_dice"], parts["np_dice"])
    with pytest.raises(ValueError):
        CellViTLoss(weights={"nope": 1.0})


def _overfit(model, loss_fn, x, tgt, steps=6, lr=3e-4) -> list[float]:
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


def test_hovernext_tiny_overfit():
    torch.manual_seed(0)
    model = _quiet(HoVerNeXt, drop_path_rate=0.0)
    inst = _instances((32, 32), n=4)
    losses = _overfit(model, HoVerNeXtLoss(), torch.randn(2, 3, 32, 32), _batch(inst))
    assert all(np.isfinite(losses))
    assert min(losses[-2:]) < losses[0]


def test_cellvit_tiny_overfit():
    torch.manual_seed(0)
    model = _quiet(CellViT256, drop_path_rate=0.0, attn_drop_rate=0.0)
    inst = _instances((32, 32), n=4)
    losses = _overfit(model, CellViTLoss(), torch.randn(2, 3, 32, 32), _batch(inst), lr=1e-3)
    assert all(np.isfinite(losses))
    assert min(losses[-2:]) < losses[0]


# --------------------------------------------------------------------------- augmentations
def _coded_sample(inst: np.ndarray, with_extras: bool = False) -> Sample:
    """White background, each nucleus a dark colour derived from its id (alignment check)."""
    img = np.full((*inst.shape, 3), 255, np.uint8)
    ids = inst[inst > 0]
    img[inst > 0] = np.stack([ids * 7 % 100, ids * 13 % 100, ids * 29 % 100], -1).astype(np.uint8)
    extras = {}
    if with_extras:
        extras = {
            "classes": (np.arange(inst.max() + 1) % 3).astype(np.int32),
            "class_names": ("background", "a", "b"),
            "ignore": inst % 2 == 1,
        }
    return Sample(image=img, instances=inst, meta=SampleMeta(dataset="d", sample_id="x", split="all"), **extras)


def _assert_aligned(sample: Sample, exact: bool = True) -> None:
    inst, img = sample.instances, sample.image.astype(np.int64)
    assert inst.dtype == np.int32 and img.dtype == np.int64 and sample.image.dtype == np.uint8
    fg = inst > 0
    dark = img.max(-1) < 100
    if exact:
        assert (dark == fg).all()
    else:  # interpolated image: check away from nucleus outlines, splitting at the colour midpoint (99 + 255) / 2
        dark = img.max(-1) < 177
        inside = ndimage.binary_erosion(fg, np.ones((3, 3)))
        outside = ndimage.binary_erosion(~fg, np.ones((3, 3)), border_value=1)
        assert dark[inside].mean() > 0.99 and (~dark[outside]).mean() > 0.99


def test_hovernext_geometric_keeps_alignment():
    torch.manual_seed(1)
    aug = HoVerNeXtAugment()
    inst = _instances((64, 64), n=15, seed=3)
    sample = _coded_sample(inst, with_extras=True)
    for _ in range(5):
        out = aug.geometric(sample)
        _assert_aligned(out)
        assert set(np.unique(out.instances)) <= set(np.unique(inst))
        assert ((out.ignore) == (out.instances % 2 == 1)).all()


def test_hovernext_pipeline_recomputes_targets_after_warping():
    torch.manual_seed(2)
    inst = _instances((64, 64), n=15, seed=4)
    pipe = Compose([HoVerNeXtAugment(p=1.0), HoVerNetTargets(), ToTensors(IMAGENET_MEAN, IMAGENET_STD)])
    pickle.loads(pickle.dumps(pipe))
    out = pipe(_coded_sample(inst))
    warped = out["instances"].numpy().astype(np.int32)
    assert not np.array_equal(warped, inst)
    np.testing.assert_array_equal(out["hv"].numpy(), hv_maps(warped))
    np.testing.assert_array_equal(out["three_class"].numpy(), three_class_map(warped))
    assert out["image"].dtype == torch.float32 and out["image"].shape == (3, 64, 64)
    batch = HoVerNeXtBatchAugment(HoVerNeXtAugment(p=1.0))([_coded_sample(inst)] * 3)
    assert len(batch) == 3 and all(s.instances.dtype == np.int32 for s in batch)


def test_hovernext_photometric_stays_in_unit_range():
    aug = HoVerNeXtAugment()
    x = torch.rand(3, 32, 32)
    for _ in range(6):
        y = aug.photometric(x)
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1


def test_cellvit_geometric_steps_keep_alignment():
    torch.manual_seed(3)
    inst = _instances((160, 160), n=40, seed=5)  # > 128 so that RandomSizedCrop really crops
    sample = _coded_sample(inst, with_extras=True)
    exact = CellViTAugment(
        probabilities={k: (1.0 if k in ("rotate90", "hflip", "vflip") else 0.0) for k in CellViTAugment.P}
    )
    for _ in range(3):
        _assert_aligned(exact(sample))
    warps = CellViTAugment(
        probabilities={k: (1.0 if k in ("sized_crop", "elastic") else 0.0) for k in CellViTAugment.P}
    )
    for _ in range(3):
        out = warps(sample)
        assert out.shape == (160, 160) and not np.array_equal(out.instances > 0, inst > 0)
        _assert_aligned(out, exact=False)
        # classes follow relabelled instances
        assert out.classes is not None and out.classes.size == out.instances.max() + 1


def test_cellvit_full_pipeline():
    torch.manual_seed(4)
    inst = _instances((64, 64), n=15, seed=6)
    everything = CellViTAugment(probabilities=dict.fromkeys(CellViTAugment.P, 1.0))
    pipe = Compose([everything, NucleusTargets(), ToTensors((0.5,) * 3, (0.5,) * 3)])
    out = pickle.loads(pickle.dumps(pipe))(_coded_sample(inst))
    assert set(out) == {"image", "instances", "np", "hv"}
    assert out["instances"].dtype == torch.int64
    assert float(out["image"].min()) >= -1 and float(out["image"].max()) <= 1
    np.testing.assert_array_equal(out["hv"].numpy(), hv_maps(out["instances"].numpy()))


def test_relabel_split_instances():
    inst = np.zeros((5, 9), np.int32)
    inst[1:3, 0:2] = 4
    inst[1:3, 6:8] = 4  # the same id twice, as after a mirrored border
    classes = np.array([0, 1, 1, 1, 2], np.int32)
    new, new_classes = relabel_split_instances(inst, classes)
    assert new.max() == 2 and new_classes.tolist() == [0, 2, 2]


def test_recipe_constants_and_factories():
    from examples.cellvit import recipe as cv
    from examples.hovernext import recipe as hn

    model = torch.nn.Linear(2, 2)
    opt = hn.make_optimizer(model)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["weight_decay"] == 0.0
    sched = hn.make_scheduler(opt)
    assert sched.mode == "max" and sched.factor == 0.7 and sched.patience == 15
    assert hn.encoder_frozen(24) and not hn.encoder_frozen(25)
    opt = cv.make_optimizer(model)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.85, 0.95)
    assert cv.make_scheduler(opt).gamma == 0.95
    assert cv.encoder_frozen(24) and not cv.encoder_frozen(25)
    assert hn.RECIPE.batch_size == cv.RECIPE.batch_size == 5
    assert hn.RECIPE.epochs == cv.RECIPE.epochs == 300
