"""Joint torchvision v2 / albumentations transforms on Samples (nucfuse_datasets.transforms), on real MoNuSeg tiles.

The alignment check is independent of the adapters: with nearest-neighbour resampling every output pixel is a copy
of an input pixel, so each output (instance id, RGB) pair must occur in the input (or be the fill pair); ids that
survive keep their class and ignore state.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI query when albumentations loads
pytest.importorskip("torchvision")
A = pytest.importorskip("albumentations")
import cv2  # noqa: E402  (albumentations dependency)
from torchvision import transforms as v1  # noqa: E402
from torchvision import tv_tensors  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

import nucfuse_datasets as nf  # noqa: E402
from nucfuse_datasets.errors import ArgumentError, InvalidSampleError  # noqa: E402
from nucfuse_datasets.schema import Sample, SampleMeta, collate  # noqa: E402
from nucfuse_datasets.transforms.adapters import Albumentations, TorchVision, as_sample_transform  # noqa: E402
from tests.conftest import real_monuseg_root  # noqa: E402

NEAREST = v2.InterpolationMode.NEAREST
FILL = {tv_tensors.Image: 255, tv_tensors.Mask: 0}


@pytest.fixture(scope="module")
def monuseg(tmp_path_factory):
    root = real_monuseg_root(tmp_path_factory.mktemp("real"))
    return nf.get_dataset("monuseg", root=root, progress=False)


@pytest.fixture(scope="module")
def tiles(monuseg) -> list[Sample]:
    """Two real 256² regions with a class lookup (id % 3 + 1) and an ignore mask (odd ids) added."""
    out = []
    for idx in (0, 3):
        s = monuseg.load_region(idx, 300, 556, 400, 656)
        ids = np.unique(s.instances)
        inst = np.searchsorted(ids, s.instances).astype(np.int32)  # 1..N without gaps
        dense = (np.arange(len(ids)) % 3 + 1).astype(np.int32)
        dense[0] = 0
        out.append(
            s.replace(instances=inst, classes=dense, class_names=("background", "a", "b", "c"), ignore=inst % 2 == 1)
        )
        assert len(ids) > 20  # a real, crowded region
    return out


def _pairs(inst: np.ndarray, img: np.ndarray) -> np.ndarray:
    rgb = img.astype(np.int64)
    return inst.astype(np.int64) * (1 << 24) + rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]


def _assert_joint(before: Sample, after: Sample, fill: tuple[int, int, int] | None) -> None:
    """Every (id, colour) pair of ``after`` occurs in ``before`` (or is the fill); classes/ignore follow ids."""
    assert after.instances.dtype == np.int32 and after.image.dtype == np.uint8
    allowed = np.unique(_pairs(before.instances, before.image))
    if fill is not None:
        allowed = np.union1d(allowed, _pairs(np.zeros((1, 1), np.int32), np.array([[fill]], np.uint8)).ravel())
    got = _pairs(after.instances, after.image)
    assert np.isin(got, allowed).all()
    assert set(np.unique(after.instances)) <= set(np.unique(before.instances))
    if before.classes is not None:
        np.testing.assert_array_equal(after.type_map(), before.classes[after.instances])
    if before.ignore is not None:
        np.testing.assert_array_equal(after.ignore, after.instances % 2 == 1)


TV_GEOMETRIC = {
    "hflip": v2.RandomHorizontalFlip(p=1.0),
    "rotation": v2.RandomRotation(45, interpolation=NEAREST, fill=FILL),
    "resized_crop": v2.RandomResizedCrop(128, scale=(0.1, 0.3), interpolation=NEAREST),
    "elastic": v2.ElasticTransform(alpha=60.0, sigma=6.0, interpolation=NEAREST, fill=FILL),
    "compose": v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(30, translate=(0.1, 0.1), scale=(0.8, 1.2), interpolation=NEAREST, fill=FILL),
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(TV_GEOMETRIC))
def test_torchvision_geometric_moves_all_maps_together(tiles, name):
    torch.manual_seed(0)
    t = TorchVision(TV_GEOMETRIC[name], relabel=False)
    for s in tiles:
        for _ in range(3):
            out = t(s)
            _assert_joint(s, out, fill=(255, 255, 255) if name in ("rotation", "elastic", "compose") else None)
            if name != "resized_crop":
                assert out.shape == s.shape
    flipped = TorchVision(v2.RandomHorizontalFlip(p=1.0))(tiles[0])
    np.testing.assert_array_equal(flipped.image, tiles[0].image[:, ::-1])
    np.testing.assert_array_equal(flipped.instances, tiles[0].instances[:, ::-1])


ALBU_GEOMETRIC = {
    "hflip": A.HorizontalFlip(p=1.0),
    "rotate": A.Rotate(limit=45, interpolation=cv2.INTER_NEAREST, fill=255, fill_mask=0, p=1.0),
    "resized_crop": A.RandomResizedCrop(size=(128, 128), scale=(0.1, 0.3), interpolation=cv2.INTER_NEAREST, p=1.0),
    "elastic": A.ElasticTransform(alpha=60.0, sigma=6.0, interpolation=cv2.INTER_NEAREST, fill=(255, 255, 255), p=1.0),
    "compose": A.Compose([A.RandomRotate90(p=1.0), A.Affine(rotate=(-30, 30), interpolation=0, fill=255, p=1.0)]),
}


@pytest.mark.parametrize("name", sorted(ALBU_GEOMETRIC))
def test_albumentations_geometric_moves_all_maps_together(tiles, name):
    t = Albumentations(ALBU_GEOMETRIC[name], relabel=False)
    for s in tiles:
        for _ in range(3):
            _assert_joint(s, t(s), fill=(255, 255, 255))
    flipped = Albumentations(A.HorizontalFlip(p=1.0))(tiles[1])
    np.testing.assert_array_equal(flipped.instances, tiles[1].instances[:, ::-1])
    np.testing.assert_array_equal(flipped.ignore, tiles[1].ignore[:, ::-1])


@pytest.mark.parametrize(
    "make",
    [
        lambda: TorchVision(v2.ColorJitter(0.3, 0.3, 0.3, 0.1)),
        lambda: Albumentations(A.ColorJitter(0.3, 0.3, 0.3, 0.1, p=1.0)),
    ],
)
def test_colour_jitter_changes_the_image_only(tiles, make):
    torch.manual_seed(1)
    t = make()
    s = tiles[0]
    out = t(s)
    assert not np.array_equal(out.image, s.image)
    np.testing.assert_array_equal(out.instances, s.instances)
    np.testing.assert_array_equal(out.classes, s.classes)
    np.testing.assert_array_equal(out.ignore, s.ignore)


@pytest.mark.parametrize("library", ["torchvision", "albumentations"])
def test_crop_relabels_and_drops_vanished_instances_from_classes(tiles, library):
    s = tiles[0]
    if library == "torchvision":
        op = v2.RandomResizedCrop(96, scale=(0.05, 0.1))
        raw, relabelled = TorchVision(op, relabel=False), TorchVision(op)
    else:
        op = A.RandomResizedCrop(size=(96, 96), scale=(0.05, 0.1), p=1.0)
        raw, relabelled = Albumentations(op, relabel=False), Albumentations(op)
    for seed in range(3):

        def draw(t, seed=seed):
            torch.manual_seed(seed)
            if hasattr(op, "set_random_seed"):
                op.set_random_seed(seed)
            return t(s)

        a, b = draw(raw), draw(relabelled)
        np.testing.assert_array_equal(a.image, b.image)  # same draw
        kept, inverse = np.unique(a.instances, return_inverse=True)
        assert len(kept) - 1 < s.n_instances  # the crop cut nuclei away
        expected = (inverse.reshape(a.shape) + (0 if kept[0] == 0 else 1)).astype(np.int32)
        np.testing.assert_array_equal(b.instances, expected)
        assert b.classes.size == b.instances.max() + 1 == b.n_instances + 1
        np.testing.assert_array_equal(b.type_map(), a.type_map())  # each nucleus keeps its class
        b.validate_values()


def test_default_bilinear_image_still_gives_integral_input_ids(tiles):
    torch.manual_seed(2)
    s = tiles[1]
    out = TorchVision(v2.Compose([v2.RandomResizedCrop(200), v2.ElasticTransform()]), relabel=False)(s)
    assert out.instances.dtype == np.int32
    assert set(np.unique(out.instances)) <= set(np.unique(s.instances))


def test_get_dataset_wraps_v2_and_albumentations(monuseg, tiles):
    raw = monuseg.load_sample(0)
    root = monuseg.root
    ds = nf.get_dataset("monuseg", root=root, transforms=v2.RandomHorizontalFlip(p=1.0), progress=False)
    out = ds[0]
    np.testing.assert_array_equal(out.image, raw.image[:, ::-1])
    np.testing.assert_array_equal(out.instances, raw.instances[:, ::-1])
    ds = nf.get_dataset("monuseg", root=root, transforms=A.VerticalFlip(p=1.0), progress=False)
    np.testing.assert_array_equal(ds[0].instances, raw.instances[::-1])


def test_unhandled_transforms_fail_loudly(tmp_path):
    from examples.common.transforms import Compose

    with pytest.raises(ArgumentError, match="v1"):
        nf.get_dataset("synthetic", root=tmp_path, n_tiles=2, tile_size=32, transforms=v1.RandomHorizontalFlip())
    with pytest.raises(ArgumentError, match="RandomHorizontalFlip"):
        as_sample_transform(Compose([v2.RandomHorizontalFlip(p=1.0)]))
    with pytest.raises(ArgumentError, match="callable"):
        as_sample_transform(42)
    ok = Compose([TorchVision(v2.RandomHorizontalFlip(p=1.0))])
    assert as_sample_transform(ok) is ok
    ds = nf.get_dataset("synthetic", root=tmp_path, n_tiles=2, tile_size=32)
    with pytest.raises(InvalidSampleError, match="ToDtype"):
        TorchVision(v2.ToDtype(torch.float32, scale=True))(ds[0])
    out = TorchVision(v2.ToDtype(torch.float32, scale=True), to_sample=False)(ds[0])
    assert out["image"].dtype == torch.float32 and out["instances"].dtype == torch.int32


def test_wrapped_dataset_pickles_and_loads_in_workers(tmp_path):
    ds = nf.get_dataset(
        "synthetic",
        root=tmp_path,
        n_tiles=4,
        tile_size=48,
        transforms=v2.Compose([v2.RandomHorizontalFlip(), v2.RandomResizedCrop(32)]),
    )
    pickle.loads(pickle.dumps(ds))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert [b["image"].shape for b in batches] == [(2, 3, 32, 32)] * 2


def test_sample_meta_survives(tiles):
    out = TorchVision(v2.RandomVerticalFlip(p=1.0))(tiles[0])
    assert out.meta == tiles[0].meta and isinstance(out.meta, SampleMeta)
