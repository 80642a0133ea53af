"""DataLoader robustness: no file handles held by datasets, fork and spawn workers, DistributedSampler sharding."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader, DistributedSampler

import nucfuse_datasets as nf
from nucfuse_datasets import NucFuseTest, NucFuseTrain, Sample, collate
from tests.conftest import copy_native

SYNTH = {"synthetic": {"n_tiles": 20, "tile_size": 300}}


class FlipTransform:
    """Module-level (importable) so that spawned workers can unpickle it."""

    def __call__(self, sample: Sample) -> Sample:
        return sample.replace(image=np.ascontiguousarray(sample.image[::-1]))


def _open_fds() -> set[str]:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        pytest.skip("/proc/self/fd is not available on this platform; cannot count open file handles")
    out = set()
    for fd in os.listdir(fd_dir):
        try:
            out.add(os.readlink(fd_dir / fd))
        except OSError:  # the listing's own descriptor is gone by now
            continue
    return out


@pytest.fixture(scope="module")
def monuseg_root(tmp_path_factory, fake_factory):
    root = tmp_path_factory.mktemp("monuseg-root")
    fake = fake_factory("monuseg")
    copy_native(fake, root, "monuseg")
    nf.get_dataset("monuseg", root=root, progress=False)  # prepared once for the module
    return root


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth-root")
    NucFuseTrain(root, datasets=["synthetic"], dataset_options=SYNTH, split="all", progress=False)
    return root


def _files_under(fds: set[str], root: Path) -> set[str]:
    return {f for f in fds if f.startswith(str(root))}


def test_constructors_and_getitem_hold_no_file_handles(monuseg_root, synth_root):
    before = _open_fds()
    ds = nf.get_dataset("monuseg", root=monuseg_root, progress=False)
    train = NucFuseTrain(synth_root, datasets=["synthetic"], dataset_options=SYNTH, split="train", progress=False)
    test = NucFuseTest(synth_root, datasets=["synthetic"], dataset_options=SYNTH, test_ids="rule", progress=False)
    assert _files_under(_open_fds() - before, monuseg_root) == set()
    assert _files_under(_open_fds() - before, synth_root) == set()
    for d in (ds, train, test):
        for i in range(min(len(d), 5)):
            d[i]
    assert _files_under(_open_fds() - before, monuseg_root) == set()
    assert _files_under(_open_fds() - before, synth_root) == set()


def _check_loader(dataset, context: str) -> None:
    expected = [dataset[i] for i in range(len(dataset))]
    loader = DataLoader(
        dataset,
        batch_size=1,
        num_workers=2,
        multiprocessing_context=context,
        collate_fn=collate,
        shuffle=False,
    )
    got = list(loader)
    assert len(got) == len(expected)
    for batch, want in zip(got, expected, strict=True):
        assert batch["meta"][0]["sample_id"] == want.meta.sample_id
        # collate gives channels-first tensors; the pixels must be the ones the main process reads
        assert np.array_equal(batch["image"][0].permute(1, 2, 0).numpy(), want.image)
        assert np.array_equal(batch["instances"][0].numpy(), want.instances)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataset_in_worker_processes(monuseg_root, context):
    ds = nf.get_dataset("monuseg", root=monuseg_root, transforms=FlipTransform(), progress=False)
    _check_loader(ds, context)


@pytest.mark.slow
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_nucfuse_train_in_worker_processes(synth_root, context):
    train = NucFuseTrain(synth_root, datasets=["synthetic"], dataset_options=SYNTH, split="val", progress=False)
    assert len(train) > 4
    _check_loader(train, context)


def test_pickled_dataset_reads_the_same(monuseg_root):
    ds = nf.get_dataset("monuseg", root=monuseg_root, progress=False)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.sample_ids == ds.sample_ids
    assert np.array_equal(copy[1].instances, ds[1].instances)


@pytest.mark.parametrize("shuffle", [False, True])
def test_distributed_sampler_shards_every_dataset_kind(monuseg_root, synth_root, shuffle):
    datasets = [
        nf.get_dataset("monuseg", root=monuseg_root, progress=False),
        NucFuseTrain(synth_root, datasets=["synthetic"], dataset_options=SYNTH, split="train", progress=False),
        NucFuseTest(synth_root, datasets=["synthetic"], dataset_options=SYNTH, test_ids="rule", progress=False),
    ]
    for ds in datasets:
        for world in (2, 3):
            shards = [
                list(DistributedSampler(ds, num_replicas=world, rank=r, shuffle=shuffle, seed=7)) for r in range(world)
            ]
            sizes = {len(s) for s in shards}
            assert len(sizes) == 1  # every rank gets the same number of steps (padding by repetition)
            flat = [i for s in shards for i in s]
            assert set(flat) == set(range(len(ds)))
            assert len(flat) - len(ds) < world  # at most world - 1 repeated indices


def test_worker_batches_are_built_in_shared_memory_and_equal_a_plain_stack(synth_root):
    # Expected values: a plain numpy stack of the samples (no collate involved).
    train = NucFuseTrain(synth_root, datasets=["synthetic"], dataset_options=SYNTH, split="val", progress=False)
    n = min(8, len(train))
    samples = [train[i] for i in range(n)]
    want_image = np.stack([s.image.transpose(2, 0, 1) for s in samples])
    want_inst = np.stack([s.instances for s in samples])
    loader = DataLoader(train, batch_size=n, collate_fn=collate, num_workers=2, multiprocessing_context="fork")
    batch = next(iter(loader))
    assert batch["image"].is_shared() and batch["instances"].is_shared()  # allocated in shared memory by the worker
    np.testing.assert_array_equal(batch["image"].numpy(), want_image)
    np.testing.assert_array_equal(batch["instances"].numpy(), want_inst)
    assert not collate(samples)["image"].is_shared()  # the main process allocates ordinary memory
