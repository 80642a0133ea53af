"""The same contract for every registered dataset (torchvision's DatasetTestCase idea)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from torch.utils.data import DataLoader

import nucfuse_datasets as nf
from nucfuse_datasets import Sample, collate
from nucfuse_datasets.errors import DatasetNotFoundError
from tests.conftest import copy_native
from tests.fakedata import generators

NAMES = nf.list_datasets()


class CountingTransform:
    """A picklable transform that flips the image and counts calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, sample: Sample) -> Sample:
        self.calls += 1
        return sample.replace(image=np.ascontiguousarray(sample.image[:, ::-1]))


def build(name, root, fake_factory, **kw):
    if name == "synthetic":
        return nf.get_dataset(name, root=root, n_tiles=4, tile_size=48, progress=False, **kw)
    fake = fake_factory(name)
    copy_native(fake, root, name)
    return nf.get_dataset(name, root=root, progress=False, **fake.options, **kw)


def test_every_dataset_has_a_fake_source():
    assert set(NAMES) - {"synthetic"} == set(generators())


@pytest.mark.parametrize("name", NAMES)
def test_samples_validate(name, tmp_path, fake_factory):
    ds = build(name, tmp_path, fake_factory)
    assert len(ds) > 0
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        assert isinstance(s, Sample)
        s.validate_values()
        assert s.meta.dataset == name and s.meta.sample_id == ds.sample_ids[i]
        assert s.meta.split in ds.splits
        assert s.shape == ds.tile_shape(i) and s.n_instances == ds.n_instances(i)
        ids = np.unique(s.instances)
        assert ids[-1] == ids.size - 1 - (0 if ids[0] == 0 else -1) or ids.size == 1  # 1..N without gaps
        if s.classes is not None:
            assert s.class_names == ds.class_names and s.class_names[0] == "background"
        seen.add(s.meta.sample_id)
    assert len(seen) == len(ds)
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("name", NAMES)
def test_splits_partition_all(name, tmp_path, fake_factory):
    ds = build(name, tmp_path, fake_factory)
    kwargs = {} if name == "synthetic" else fake_factory(name).options
    extra = {"n_tiles": 4, "tile_size": 48} if name == "synthetic" else {}
    total = 0
    for split in ds.splits:
        if split == "all":
            continue
        part = nf.get_dataset(name, root=tmp_path, split=split, progress=False, **kwargs, **extra)
        assert all(part.meta(i).split == split for i in range(len(part)))
        total += len(part)
    assert total == len(ds) or ds.splits == ("all",)
    with pytest.raises(ValueError, match="valid splits"):
        nf.get_dataset(name, root=tmp_path, split="nope", **kwargs, **extra)


@pytest.mark.parametrize("name", NAMES)
def test_pickle_transforms_and_workers(name, tmp_path, fake_factory):
    t = CountingTransform()
    ds = build(name, tmp_path, fake_factory, transforms=t)
    plain = pickle.loads(pickle.dumps(ds))
    assert len(plain) == len(ds)
    first = ds[0]
    assert t.calls == 1
    raw = ds.load_sample(0)
    assert np.array_equal(first.image, raw.image[:, ::-1])
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert sum(len(b["meta"]) for b in batches) == len(ds)
    assert {m["sample_id"] for b in batches for m in b["meta"]} == set(ds.sample_ids)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "synthetic"])
def test_missing_data_raises(name, tmp_path, fake_factory):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        nf.get_dataset(name, root=tmp_path, **fake_factory(name).options)


def test_plot_runs_on_agg(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    ds = nf.get_dataset("synthetic", root=tmp_path, n_tiles=4, tile_size=48)
    fig = ds.plot(3, prediction=ds[3].instances)
    assert len(fig.axes) == 2
