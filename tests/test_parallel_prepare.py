"""prepare(workers=N) / ``nucfuse prepare --workers N``: byte-identical stores, same errors, flat in-flight."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.datasets._parallel import Job, prepare_workers, write_samples
from nucfuse_datasets.datasets.synthetic import synthetic_tile
from nucfuse_datasets.errors import ArgumentError, InvalidSourceError
from nucfuse_datasets.io.store import RawSample, StoreWriter


def _tree(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def test_store_is_byte_identical_for_any_number_of_workers(tmp_path: Path) -> None:
    trees = {}
    for workers in (1, 2, 3):
        root = tmp_path / f"w{workers}"
        ds = nf.get_dataset("synthetic", root=root, n_tiles=9, tile_size=[64, 48], progress=False, download=False)
        assert len(ds) == 9  # prepared by the constructor with one process
        store = ds.prepare(force=True, workers=workers)
        trees[workers] = _tree(store.path)
    assert "manifest.json" in trees[1] and len(trees[1]) > 9 * 2
    assert trees[1] == trees[2] == trees[3]


def test_cli_workers_flag(tmp_path: Path) -> None:
    from nucfuse_datasets.cli import main

    args = ["prepare", "synthetic", "--root", str(tmp_path), "--quiet", "--option", "n_tiles=5"]
    assert main([*args, "--workers", "2"]) == 0
    one = tmp_path / "one"
    assert main(["prepare", "synthetic", "--root", str(one), "--quiet", "--option", "n_tiles=5"]) == 0
    stores = [p for p in (tmp_path / "synthetic").glob("prepared*") if (p / "manifest.json").is_file()]
    ref = [p for p in (one / "synthetic").glob("prepared*") if (p / "manifest.json").is_file()]
    assert len(stores) == len(ref) == 1
    assert _tree(stores[0]) == _tree(ref[0])


def test_workers_argument_is_checked() -> None:
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ArgumentError, match="workers"), prepare_workers(bad):  # type: ignore[arg-type]
            pass


def broken_tile(i: int) -> RawSample:
    """A tile whose instance map does not match its image (module level: runs in a worker)."""
    return RawSample(
        sample_id=f"bad_{i}",
        split="all",
        image=np.zeros((8, 8, 3), np.uint8),
        instances=np.zeros((4, 4), np.int32),
        meta={"original_file": f"bad_{i}.png"},
    )


def _writer(tmp_path: Path) -> StoreWriter:
    return StoreWriter(tmp_path / "ds", dataset="synthetic", converter_version=1, class_names=("bg", "a", "b"))


@pytest.mark.parametrize("workers", [1, 2])
def test_errors_are_the_same_with_workers(tmp_path: Path, workers: int) -> None:
    good = [Job(synthetic_tile, (0, i, (32, 32), 1.0)) for i in range(3)]
    writer = _writer(tmp_path)
    with pytest.raises(InvalidSourceError, match=r"synthetic/bad_7 \(bad_7.png\): instance map shape"):
        write_samples(writer, [*good, Job(broken_tile, (7,)), *good], ("all",), workers)
    writer.abort()
    writer = _writer(tmp_path)
    with pytest.raises(InvalidSourceError, match="duplicate sample id 'synthetic_0_0001'"):
        write_samples(writer, [*good, good[1]], ("all",), workers)
    assert [e["id"] for e in writer.samples] == ["synthetic_0_0000", "synthetic_0_0001", "synthetic_0_0002"]
    writer.abort()


def test_other_splits_are_skipped_in_workers(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    items = [Job(synthetic_tile, (0, i, (32, 32), 1.0)) for i in range(4)]
    write_samples(writer, items, ("train",), 2)  # synthetic tiles are split "all": none belongs to "train"
    assert writer.samples == []
    writer.abort()
