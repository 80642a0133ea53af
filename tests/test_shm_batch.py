"""Zero-copy DataLoader batches (``nucfuse_datasets._shm_batch``): same data as ``num_workers=0``, slots reused
only when nothing references them, nothing left in ``/dev/shm``, and the standard path when the pool is off.

The expected batches come from ``num_workers=0`` (where the pool is never used) and from ``collate`` called
directly in this process; "zero-copy" is checked by the received tensors' addresses lying inside a file the
main process mapped.
"""

from __future__ import annotations

import copy
import gc
import glob
import os
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from multiprocessing.reduction import ForkingPickler  # noqa: E402

from torch.utils.data import DataLoader, Dataset  # noqa: E402

import nucfuse_datasets as nf  # noqa: E402
from nucfuse_datasets import _shm_batch  # noqa: E402
from nucfuse_datasets.schema import collate  # noqa: E402

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.access("/dev/shm", os.W_OK), reason="needs Linux /dev/shm"
)
BATCH = 2
N_TILES = 24  # 12 batches an epoch, 6 per worker: two epochs kept alive exceed the 8-slot cap


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return nf.get_dataset(
        "synthetic", root=tmp_path_factory.mktemp("shm"), n_tiles=N_TILES, tile_size=48, progress=False
    )


@pytest.fixture(scope="module")
def expected(ds: Any) -> list[dict[str, Any]]:
    """Batches from ``num_workers=0``, checked against ``collate`` called directly."""
    ref = list(DataLoader(ds, batch_size=BATCH, collate_fn=collate, num_workers=0))
    for b, batch in enumerate(ref):
        _assert_same(batch, collate([ds[i] for i in range(b * BATCH, (b + 1) * BATCH)]))
    assert any(batch["ignore"] is not None for batch in ref) and all(batch["classes"][0] is not None for batch in ref)
    return ref


def _assert_same(got: Any, want: dict[str, Any]) -> None:
    assert type(got) is dict
    assert list(got) == list(want)
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert type(got[key]) is torch.Tensor and got[key].dtype == value.dtype, key
            assert torch.equal(got[key], value), key
        elif key == "classes":
            assert len(got[key]) == len(value)
            for g, w in zip(got[key], value, strict=True):
                assert (g is None and w is None) or (type(g) is torch.Tensor and torch.equal(g, w))
        else:
            assert got[key] == value, key


def _pooled(t: Any) -> bool:
    """Whether tensor ``t`` lies in a worker file mapped by this process (the zero-copy path)."""
    ptr = t.data_ptr()
    return any(buf.ctypes.data <= ptr < buf.ctypes.data + buf.size for _, buf in _shm_batch._MAPS.values())


def _our_files() -> list[str]:
    return glob.glob(f"/dev/shm/nucfuse-{os.getpid()}-*")


def _loader(ds: Any, persistent: bool, **kw: Any) -> Any:
    return DataLoader(ds, batch_size=BATCH, collate_fn=collate, num_workers=2, persistent_workers=persistent, **kw)


@pytest.mark.parametrize("persistent", [False, True])
def test_two_workers_give_the_zero_worker_batches_without_copies(
    ds: Any, expected: list[Any], persistent: bool
) -> None:
    loader = _loader(ds, persistent)
    offsets = set()
    for _ in range(2):
        for got, want in zip(loader, expected, strict=True):
            _assert_same(got, want)
            assert _pooled(got["image"]) and _pooled(got["instances"]) and _pooled(got["classes"][0])
            assert got["ignore"] is None or _pooled(got["ignore"])
            offsets.add(got["image"].data_ptr())
    # Dropped batches free their slots: two workers cycle through a few slots for 24 batches.
    assert len(offsets) <= 2 * 4 if persistent else len(offsets) <= 4 * 4
    del loader, got
    gc.collect()
    assert _our_files() == []


def test_batches_kept_alive_are_not_overwritten(ds: Any, expected: list[Any]) -> None:
    loader = _loader(ds, persistent=True)
    kept = [batch for _ in range(2) for batch in loader]  # 12 per worker: more than the 8 slots
    pooled = sum(_pooled(b["image"]) for b in kept)
    assert 0 < pooled <= 2 * _shm_batch.CAP < len(kept)  # the rest took torch's standard path
    for got, want in zip(kept, expected + expected, strict=True):
        _assert_same(got, want)
    del loader


def test_views_outliving_their_batch_stay_valid(ds: Any, expected: list[Any]) -> None:
    loader = _loader(ds, persistent=True)
    it = iter(loader)
    first = [next(it) for _ in range(4)]
    views = [(b["image"][0], b["instances"][1, 2:], b["classes"][1]) for b in first]
    assert all(_pooled(v[0]) for v in views)
    del first  # only the views keep the slots now
    gc.collect()
    for _ in range(3):  # many more batches through the same slots
        for _batch in it:
            pass
        it = iter(loader)
    for (image, inst, cls), want in zip(views, expected[:4], strict=True):
        assert torch.equal(image, want["image"][0])
        assert torch.equal(inst, want["instances"][1, 2:])
        assert torch.equal(cls, want["classes"][1])
    del loader, it


def test_dead_workers_leave_no_files_and_no_mappings(ds: Any) -> None:
    _shm_batch.prune()
    loader = _loader(ds, persistent=False)
    pids = []
    for _ in range(3):
        it = iter(loader)
        pids.append({w.pid for w in it._workers})
        for _batch in it:
            pass
    mapped = {pid for pid, _ in _shm_batch._MAPS.values()}
    assert mapped and mapped <= pids[-1]  # earlier epochs' workers were pruned when the next ones mapped
    del loader, it, _batch
    gc.collect()
    _shm_batch.prune()
    assert _shm_batch._MAPS == {} and _our_files() == []


def test_prune_removes_files_of_killed_workers() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stray = f"/dev/shm/nucfuse-{os.getpid()}-{int(dead.stdout)}-1-00aa"
    live = f"/dev/shm/nucfuse-{os.getpid()}-{os.getpid()}-99-00aa"
    for path in (stray, live):
        open(path, "wb").close()
    try:
        _shm_batch.prune()
        assert not os.path.exists(stray) and os.path.exists(live)
    finally:
        for path in (stray, live):
            if os.path.exists(path):
                os.unlink(path)


@pytest.mark.parametrize("how", ["env", "patch"])
def test_standard_path_when_the_pool_is_off(
    ds: Any, expected: list[Any], how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "env":
        monkeypatch.setenv("NUCFUSE_SHM_BATCH", "0")
    else:
        monkeypatch.setattr(_shm_batch, "enabled", lambda: False)
    _shm_batch.prune()
    before = dict(_shm_batch._MAPS)
    loader = _loader(ds, persistent=False, multiprocessing_context="fork")
    for got, want in zip(loader, expected, strict=True):
        _assert_same(got, want)
        assert not _pooled(got["image"])
    assert _shm_batch._MAPS.keys() == before.keys()


class _Mixed(Dataset):  # type: ignore[type-arg]
    """Odd samples cropped and without class lookups: list outputs (standard path) and ``None`` lookups."""

    def __init__(self, ds: Any, crop: bool) -> None:
        self.ds, self.crop = ds, crop

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Any:
        s = self.ds[i]
        if i % 2:
            h = 40 if self.crop else s.image.shape[0]
            s = s.replace(classes=None, image=s.image[:h], instances=s.instances[:h], ignore=None)
        return s


@pytest.mark.parametrize("crop", [False, True])
def test_missing_lookups_and_mixed_sizes(ds: Any, crop: bool) -> None:
    mixed = _Mixed(ds, crop)
    want = list(DataLoader(mixed, batch_size=BATCH, collate_fn=collate, num_workers=0))
    for got, ref in zip(_loader(mixed, persistent=False), want, strict=True):
        assert got["classes"][1] is None
        if crop:
            assert isinstance(got["image"], list)
            for g, w in zip(got["image"] + got["instances"], ref["image"] + ref["instances"], strict=True):
                assert torch.equal(g, w)
            assert got["meta"] == ref["meta"] and torch.equal(got["classes"][0], ref["classes"][0])
        else:
            _assert_same(got, ref)
            assert _pooled(got["image"])


class _CollatesInside(Dataset):  # type: ignore[type-arg]
    """Calls ``collate`` inside the worker and returns only a number: the batch is never pickled."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> tuple[int, int]:
        batch = collate([self.ds[i], self.ds[i + 1]])
        total = int(batch["instances"].sum())
        del batch
        pool = _shm_batch._POOL
        return total, -1 if pool is None else pool.used


def test_unsent_batches_free_their_slot_in_the_worker(ds: Any) -> None:
    got = list(DataLoader(_CollatesInside(ds), batch_size=None, num_workers=1))
    want = [int(ds[i].instances.sum()) + int(ds[i + 1].instances.sum()) for i in range(20)]
    assert [t for t, _ in got] == want
    assert [used for _, used in got] == [1] * 20  # one slot, reused 20 times


def test_reduce_in_process(ds: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to be a worker: the first multiprocessing pickle references the slot, a second one copies."""
    import torch.utils.data

    samples = [ds[i] for i in range(3)]
    plain = collate(samples)
    monkeypatch.setattr(_shm_batch, "_POOL", None)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    batch = collate(samples)
    assert isinstance(batch, _shm_batch.PooledBatch)
    header, slot, path = batch._lease.header, batch._lease.slot, batch._lease.path  # not the lease: it holds the slot
    flag = 2 * slot + 1
    first, second = ForkingPickler.dumps(batch), ForkingPickler.dumps(batch)
    assert header[flag] == 1  # sent once
    assert type(pickle.loads(pickle.dumps(batch))) is dict and type(copy.deepcopy(batch)) is dict
    a, b = pickle.loads(first), pickle.loads(second)
    assert not os.path.exists(path)  # unlinked once mapped
    _assert_same(a, plain)
    _assert_same(b, plain)
    assert _pooled(a["image"]) and not _pooled(b["image"])
    del batch
    gc.collect()
    assert header[2 * slot] == 0  # the worker-side batch is gone
    assert header[flag] == 1  # ...but the received one is alive
    keep = a["classes"][2]
    del a
    gc.collect()
    assert header[flag] == 1 and torch.equal(keep, plain["classes"][2])
    del keep
    gc.collect()
    assert header[flag] == 0  # free again


def _plain_dict_collate(samples: list[Any]) -> dict[str, Any]:
    return dict(collate(samples))  # a user's wrapper: slot tensors in a plain dict take torch's own path


def test_a_wrapped_collate_still_gets_the_right_data(ds: Any, expected: list[Any]) -> None:
    loader = DataLoader(ds, batch_size=BATCH, collate_fn=_plain_dict_collate, num_workers=2)
    for _ in range(2):
        for got, want in zip(loader, expected, strict=True):
            _assert_same(got, want)


@pytest.mark.parametrize("opencv", [True, False])
def test_channel_first_copy(opencv: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from nucfuse_datasets import schema

    if opencv:
        pytest.importorskip("cv2")
    monkeypatch.setattr(schema, "_SPLIT", [] if opencv else [None])  # [] probes OpenCV again
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)
    for src in (image, image[::2, 3:], np.asfortranarray(image)):
        dst = np.zeros((3, *src.shape[:2]), np.uint8)
        schema._chw_into(dst, src)
        assert all(np.array_equal(dst[c], src[:, :, c]) for c in range(3))
    assert (schema._SPLIT[0] is not None) == opencv
    wide = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)  # not RGB: numpy's copy, same result
    dst = np.zeros((4, 5, 6), np.uint8)
    schema._chw_into(dst, wide)
    assert np.array_equal(dst, np.moveaxis(wide, 2, 0))


def test_spawned_workers_use_the_pool_too(ds: Any, expected: list[Any]) -> None:
    """A fresh interpreter (no inherited state) registers the reducer when ``collate`` first runs."""
    loader = _loader(ds, persistent=False, multiprocessing_context="spawn")
    for got, want in zip(loader, expected, strict=True):
        _assert_same(got, want)
        assert _pooled(got["image"])
