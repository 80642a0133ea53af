"""Fault injection: kills at chosen write events, a full disk, corruption after preparing.

Every scenario ends with the same check: the prepared store that a rerun leaves is identical (same manifest file
hashes) to the one an uninterrupted run writes, it verifies, and no temporary folder is left behind.
"""

from __future__ import annotations

import errno
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.cli import main as cli_main
from nucfuse_datasets.errors import StorageError
from nucfuse_datasets.io import archive, store
from nucfuse_datasets.io.store import PreparedStore
from tests.conftest import copy_archives, tree_files

REPO = Path(__file__).resolve().parents[2]
SYNTH = {"n_tiles": 8, "tile_size": 64}

# The kill switch, shared with test_grow_faults.py: argv[2] = the event to die at; ``seen[0]`` counts the events.
KILL_HOOKS = r"""
import os, signal, sys
import nucfuse_datasets as nf
from nucfuse_datasets.io import store

kill_at = int(sys.argv[2])
seen = [0]

def hook(fn):
    def wrapped(*args, **kwargs):
        seen[0] += 1
        if seen[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapped

store.write_tif = hook(store.write_tif)
store.save_npy = hook(store.save_npy)
store.sha256_file = hook(store.sha256_file)
os.replace = hook(os.replace)
"""

# Runs one preparation in a fresh interpreter and SIGKILLs it at the N-th write event (0 = never), where the
# events are every image/array write, every hash of a written file and every os.replace (atomic renames of the
# manifest and of the store folder). Prints the number of events seen.
KILLER = (
    KILL_HOOKS
    + r"""
root, force = sys.argv[1], sys.argv[3] == "1"
cls = nf.get_dataset_class("synthetic")
if force:
    ds = cls(root, n_tiles=8, tile_size=64, progress=False)
    seen[0] = 0
    ds.prepare(force=True)
else:
    cls(root, n_tiles=8, tile_size=64, progress=False)
print(seen[0], flush=True)
"""
)


def _prepare_in_subprocess(root: Path, kill_at: int, force: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", KILLER, str(root), str(kill_at), "1" if force else "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _store_of(root: Path) -> PreparedStore:
    stores = [p for p in (root / "synthetic").iterdir() if p.name.startswith("prepared")]
    assert len(stores) == 1, stores
    return PreparedStore(stores[0])


def _leftovers(dataset_dir: Path) -> list[str]:
    return [p.name for p in dataset_dir.iterdir() if p.name.startswith(".tmp-")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], int]:
    """An uninterrupted run: its manifest file hashes and the number of write events it went through."""
    root = tmp_path_factory.mktemp("reference")
    proc = _prepare_in_subprocess(root, 0)
    assert proc.returncode == 0, proc.stderr
    return _store_of(root).manifest["files"], int(proc.stdout.split()[-1])


@pytest.mark.slow
def test_sigkill_at_write_events_then_rerun_gives_identical_store(tmp_path, reference):
    files, n_events = reference
    # 8 tiles x (tif + npy x2 + classes + ignore writes and hashes) + manifest + renames: dozens of events
    assert n_events > 8 * 4
    rng = np.random.default_rng(2026)
    points = sorted({1, 2, n_events - 1, n_events, *rng.choice(np.arange(3, n_events - 1), 4, replace=False).tolist()})
    for k in points:
        root = tmp_path / f"kill-{k}"
        killed = _prepare_in_subprocess(root, k)
        assert killed.returncode == -9, f"event {k} of {n_events} did not kill: {killed.stderr[-500:]}"
        ddir = root / "synthetic"
        # whatever the kill left, there is never a folder named prepared* without its manifest
        for p in ddir.iterdir():
            if p.name.startswith("prepared"):
                assert PreparedStore.exists(p), f"kill at event {k} left {p.name} without a manifest"
        rerun = _prepare_in_subprocess(root, 0)
        assert rerun.returncode == 0, rerun.stderr
        store_ = _store_of(root)
        assert store_.manifest["files"] == files, f"kill at event {k}: the rerun's store differs"
        assert store_.verify() == []
        assert _leftovers(ddir) == []


@pytest.mark.slow
def test_sigkill_during_repair_then_rerun_gives_identical_store(tmp_path, reference):
    files, _ = reference
    root = tmp_path / "repair"
    assert _prepare_in_subprocess(root, 0).returncode == 0
    repair_events = int(_prepare_in_subprocess(root, 0, force=True).stdout.split()[-1])
    # the last three events are the manifest's rename, the old store moved aside and the new one moved in
    for k in (1, repair_events - 2, repair_events - 1, repair_events):
        killed = _prepare_in_subprocess(root, k, force=True)
        assert killed.returncode == -9
        rerun = _prepare_in_subprocess(root, 0)
        assert rerun.returncode == 0, rerun.stderr
        assert _store_of(root).manifest["files"] == files
        assert _leftovers(root / "synthetic") == []


def _full_after(fn, n_ok: int):
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[0]) if args else None)
        return fn(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize("n_ok", [0, 3, 15])
def test_full_disk_while_writing_the_store(tmp_path, monkeypatch, n_ok):
    ref = nf.get_dataset("synthetic", root=tmp_path / "ref", **SYNTH)
    ref_files = PreparedStore(ref.store_path).manifest["files"]
    root = tmp_path / "full"
    with monkeypatch.context() as m:
        m.setattr(store, "save_npy", _full_after(store.save_npy, n_ok))
        with pytest.raises(StorageError, match="No space left on device") as info:
            nf.get_dataset("synthetic", root=root, **SYNTH)
    assert isinstance(info.value, OSError) and "run again" in str(info.value)
    assert tree_files(root / "synthetic") == [".lock"]  # no store, no temporary folder, nothing else
    again = nf.get_dataset("synthetic", root=root, **SYNTH)
    assert PreparedStore(again.store_path).manifest["files"] == ref_files


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["monuseg", "pcns"])  # a zip and a tar.gz source
def test_full_disk_while_extracting_an_archive(tmp_path, monkeypatch, serve_fake, name):
    fake = serve_fake(name).fake  # pins the fake archives' hashes
    ddir = copy_archives(fake, tmp_path, name)
    before = {p.name: _sha(p) for p in ddir.iterdir()}
    with monkeypatch.context() as m:
        m.setattr(archive, "_stream", _full_after(archive._stream, 1))
        with pytest.raises(StorageError, match="No space left on device"):
            nf.get_dataset(name, root=tmp_path, **fake.options)
    after = {p.name: _sha(p) for p in ddir.iterdir() if p.name != ".lock"}
    assert after == before  # the archives are untouched and nothing else is left
    ds = nf.get_dataset(name, root=tmp_path, **fake.options)
    assert len(ds) == fake.tiles["all"]


def test_read_only_data_root_is_a_storage_error(tmp_path, monkeypatch):
    import os

    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    (tmp_path / "synthetic").mkdir()
    monkeypatch.setattr(store.os, "open", read_only)
    with pytest.raises(StorageError, match="Read-only file system"):
        nf.get_dataset("synthetic", root=tmp_path, **SYNTH)


@pytest.mark.parametrize("what", ["image", "instances", "classes", "ignore", "manifest"])
def test_corruption_after_preparing_is_reported_and_repaired(tmp_path, capsys, what):
    ds = nf.get_dataset("synthetic", root=tmp_path, **SYNTH)
    good = PreparedStore(ds.store_path)
    having = [e["files"][what] for e in good.samples if what in e["files"]]
    rel = having[-1] if what != "manifest" else "manifest.json"
    target = ds.store_path / rel
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    root = ["--root", str(tmp_path)]
    opts = ["--option", "n_tiles=8", "--option", "tile_size=64"]
    assert cli_main([*root, "verify", "synthetic"]) == 1
    out = capsys.readouterr().out
    assert rel in out and "--repair" in out
    assert cli_main([*root, "verify", "synthetic", *opts, "--repair"]) == 0
    assert "re-prepared" in capsys.readouterr().out
    repaired = PreparedStore(ds.store_path)
    assert repaired.manifest["files"] == good.manifest["files"] and repaired.verify() == []
    assert cli_main([*root, "verify", "synthetic"]) == 0
