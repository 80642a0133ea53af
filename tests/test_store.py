from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.errors import CountMismatchWarning, InvalidSourceError, PreparedStoreError
from nucfuse_datasets.io.store import FileLock, PreparedStore, RawSample, StoreWriter, relabel_sequential
from tests.conftest import copy_native

REPO = Path(__file__).resolve().parents[1]


def raw(sid="a", h=6, w=7, **kw):
    inst = np.zeros((h, w), np.int64)
    inst[1:3, 1:3] = 40
    inst[4:6, 4:6] = 9
    return RawSample(sid, "train", np.zeros((h, w, 3), np.uint8), inst, **kw)


def test_relabel_sequential_ascending():
    new, old = relabel_sequential(np.array([[5, 0], [2, 5]], np.uint16))
    assert new.dtype == np.int32 and new.tolist() == [[2, 0], [1, 2]] and old.tolist() == [2, 5]
    new, old = relabel_sequential(np.array([[3, 3]]))  # no background pixel at all
    assert new.tolist() == [[1, 1]] and old.tolist() == [3]
    with pytest.raises(InvalidSourceError):
        relabel_sequential(np.array([[-1]]))
    with pytest.raises(InvalidSourceError):
        relabel_sequential(np.array([[0.5]]))


def test_writer_relabels_and_maps_classes(tmp_path):
    w = StoreWriter(tmp_path, dataset="t", converter_version=1, class_names=("background", "a", "b"))
    w.add(raw(classes={40: 2, 9: 1}, ignore=np.ones((6, 7), bool)))
    store = w.commit()
    inst = store.load_array("instances/a.npy")
    assert inst[1, 1] == 2 and inst[4, 4] == 1  # ascending original id: 9 -> 1, 40 -> 2
    assert store.load_array("classes/a.npy").tolist() == [0, 1, 2]
    assert store.load_array("ignore/a.npy").dtype == bool
    assert store.counts == {"train": {"tiles": 1, "nuclei": 2}, "all": {"tiles": 1, "nuclei": 2}}
    assert store.verify() == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    ("sample", "text"),
    [
        (RawSample("a", "s", np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.int32)), "H×W×3 uint8"),
        (RawSample("a", "s", np.zeros((4, 4, 3), np.uint16), np.zeros((4, 4), np.int32)), "H×W×3 uint8"),
        (RawSample("a", "s", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.int32)), "does not match"),
        (RawSample("a", "s", np.zeros((4, 4, 3), np.uint8), np.full((4, 4), -2)), "negative"),
        (
            RawSample("a", "s", np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.int32), classes={7: 1}),
            "no class",
        ),
        (
            RawSample("a", "s", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.int32), ignore=np.ones((3, 3))),
            "ignore",
        ),
    ],
)
def test_writer_rejects_bad_samples(tmp_path, sample, text):
    w = StoreWriter(tmp_path, dataset="t", converter_version=1, class_names=("background", "a"))
    with pytest.raises(InvalidSourceError, match=text):
        w.add(sample)
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_duplicate_ids_and_empty_commit(tmp_path):
    w = StoreWriter(tmp_path, dataset="t", converter_version=1)
    w.add(raw("x"))
    with pytest.raises(InvalidSourceError, match="duplicate"):
        w.add(raw("x"))
    w.abort()
    w2 = StoreWriter(tmp_path, dataset="t", converter_version=1)
    with pytest.raises(InvalidSourceError, match="no samples"):
        w2.commit()


def test_store_without_manifest_is_not_a_store(tmp_path):
    (tmp_path / "prepared").mkdir()
    assert not PreparedStore.exists(tmp_path / "prepared")
    with pytest.raises(PreparedStoreError, match="incomplete"):
        PreparedStore(tmp_path / "prepared")
    (tmp_path / "prepared" / "manifest.json").write_text("{not json")
    with pytest.raises(PreparedStoreError, match="unreadable"):
        PreparedStore(tmp_path / "prepared")


def test_lock_times_out(tmp_path):
    from nucfuse_datasets.errors import LockTimeoutError

    code = (
        "import sys, time, pathlib; from nucfuse_datasets.io.store import FileLock; "
        "lock = FileLock(pathlib.Path(sys.argv[1])); lock.acquire(); print('held', flush=True); time.sleep(5)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / ".lock")], stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(LockTimeoutError, match="another process"):
            FileLock(tmp_path / ".lock", timeout=0.5).acquire()
    finally:
        proc.kill()
        proc.wait()
    with FileLock(tmp_path / ".lock", timeout=2):
        pass


def test_count_mismatch_warning_and_manifest(tmp_path, fake_factory):
    fake = fake_factory("monuseg")
    copy_native(fake, tmp_path, "monuseg")
    with pytest.warns(CountMismatchWarning, match="train tiles: 3 vs 37"):
        ds = nf.get_dataset("monuseg", root=tmp_path)
    manifest = json.loads((ds.store_path / "manifest.json").read_text())
    assert {"split": "test", "what": "tiles", "expected": 14, "got": 2} | {"source": "official test set"} in manifest[
        "count_check"
    ]


def test_converter_version_bump_reprepares(tmp_path, monkeypatch):
    ds = nf.get_dataset("synthetic", root=tmp_path, n_tiles=2, tile_size=32)
    first = json.loads((ds.store_path / "manifest.json").read_text())
    monkeypatch.setattr(type(ds), "converter_version", 2)
    ds2 = nf.get_dataset("synthetic", root=tmp_path, n_tiles=2, tile_size=32)
    second = json.loads((ds2.store_path / "manifest.json").read_text())
    assert first["converter_version"] == 1 and second["converter_version"] == 2
    assert first["files"] == second["files"]  # same deterministic output


def test_corrupted_prepared_file_is_reported(tmp_path):
    ds = nf.get_dataset("synthetic", root=tmp_path, n_tiles=2, tile_size=32)
    (ds.store_path / "instances" / f"{ds.sample_ids[0]}.npy").write_bytes(b"garbage")
    with pytest.raises(PreparedStoreError, match="verify synthetic --repair"):
        ds[0]
    assert PreparedStore(ds.store_path).verify() == [f"hash mismatch: instances/{ds.sample_ids[0]}.npy"]


PREPARE = (
    "import sys, nucfuse_datasets as nf; "
    "nf.get_dataset('synthetic', root=sys.argv[1], n_tiles=int(sys.argv[2]), tile_size=96, progress=False)"
)


def _run(root, n, **kw):
    return subprocess.Popen([sys.executable, "-c", PREPARE, str(root), str(n)], cwd=REPO, **kw)


def test_two_processes_prepare_one_store(tmp_path):
    procs = [_run(tmp_path, 30) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    stores = [p for p in (tmp_path / "synthetic").iterdir() if p.name.startswith("prepared")]
    assert len(stores) == 1 and PreparedStore(stores[0]).verify() == []
    assert not [p for p in (tmp_path / "synthetic").iterdir() if p.name.startswith(".tmp-")]


def test_sigkill_then_rerun_gives_identical_store(tmp_path):
    reference = tmp_path / "ref"
    assert _run(reference, 40).wait(timeout=120) == 0
    ref_files = PreparedStore(next((reference / "synthetic").glob("prepared*"))).manifest["files"]
    rng = np.random.default_rng(0)
    for attempt in range(3):
        root = tmp_path / f"killed{attempt}"
        proc = _run(root, 40)
        time.sleep(float(rng.uniform(0.6, 2.0)))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _run(root, 40).wait(timeout=120) == 0
        store = PreparedStore(next((root / "synthetic").glob("prepared*")))
        assert store.manifest["files"] == ref_files
        assert store.verify() == []
        assert not [p for p in (root / "synthetic").iterdir() if p.name.startswith(".tmp-")]
