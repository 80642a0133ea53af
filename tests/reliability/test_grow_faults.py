"""Fault injection while a prepared store grows by a split (issue 15).

MoNuSeg's test split is prepared first; then the training split is added in a fresh interpreter that is SIGKILLed at
a chosen write event (every image/array write, every hash, every ``os.replace``: the moves of the new files into
the store and the manifest's replacement). Whatever the kill left, the store's manifest is readable, every file it
lists verifies (what was prepared is never touched), and a rerun gives the same store as an uninterrupted growth.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.io.store import PreparedStore
from tests.conftest import copy_native
from tests.reliability.test_faults import KILL_HOOKS

REPO = Path(__file__).resolve().parents[2]

GROW = (
    KILL_HOOKS
    + r"""
root = sys.argv[1]
nf.get_dataset("monuseg", root=root, split="train", progress=False)
print(seen[0], flush=True)
"""
)


def _grow(root: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", GROW, str(root), str(kill_at)], cwd=REPO, capture_output=True, text=True, timeout=180
    )


def _test_split_prepared(root: Path, fake) -> dict[str, str]:
    copy_native(fake, root, "monuseg")
    ds = nf.get_dataset("monuseg", root=root, split="test", progress=False)
    return dict(PreparedStore(ds.store_path).manifest["files"])


@pytest.mark.slow
def test_sigkill_while_growing_keeps_the_store_and_a_rerun_completes_it(tmp_path, fake_factory):
    fake = fake_factory("monuseg")
    ref_root = tmp_path / "reference"
    before = _test_split_prepared(ref_root, fake)
    proc = _grow(ref_root, 0)
    assert proc.returncode == 0, proc.stderr
    n_events = int(proc.stdout.split()[-1])
    reference = PreparedStore(ref_root / "monuseg" / "prepared").manifest["files"]
    assert set(before) < set(reference)

    rng = np.random.default_rng(15)
    points = sorted({1, n_events - 1, n_events, *rng.choice(np.arange(2, n_events - 1), 4, replace=False).tolist()})
    for k in points:
        root = tmp_path / f"kill-{k}"
        old = _test_split_prepared(root, fake)
        killed = _grow(root, k)
        assert killed.returncode == -9, f"event {k} of {n_events} did not kill: {killed.stderr[-500:]}"
        store = PreparedStore(root / "monuseg" / "prepared")  # the manifest is always readable
        assert set(old) <= set(store.manifest["files"])
        assert store.verify(full=True) == [], f"kill at event {k} damaged the store"
        assert store.splits in (("test",), ("test", "train"))
        rerun = _grow(root, 0)
        assert rerun.returncode == 0, rerun.stderr
        grown = PreparedStore(root / "monuseg" / "prepared")
        assert grown.manifest["files"] == reference, f"kill at event {k}: the rerun's store differs"
        assert grown.splits == ("test", "train") and grown.verify(full=True) == []
        assert not [p.name for p in (root / "monuseg").iterdir() if p.name.startswith(".tmp-")]
