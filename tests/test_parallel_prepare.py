"""prepare(workers=N) / ``nucfuse prepare --workers N``: byte-identical stores for every dataset, same errors."""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.datasets import _prepare as _prepare_module
from nucfuse_datasets.datasets._parallel import SETTLE, Job, Skipped, prepare_workers, report_skip, write_samples
from nucfuse_datasets.datasets.synthetic import synthetic_tile
from nucfuse_datasets.errors import ArgumentError, InvalidSourceError
from nucfuse_datasets.io.prepared import TMP_PREFIX
from nucfuse_datasets.io.store import RawSample, StoreWriter
from tests.conftest import copy_archives, copy_native, link_real, realdata
from tests.fakedata import FakeData, generators


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


# --------------------------------------------------------------------------- every dataset, from its fake native files

#: Per dataset: a file of a tile converted late in tile order (earlier tiles are in flight or written when it fails).
MALFORMED = {
    "consep": "CoNSeP/Test/Labels/test_1.mat",
    "cpm17": "cpm17/test/Labels/image_00.mat",
    "cryonuseg": "Annotator 1 (biologist)/label masks modify/Human_LymphNodes_03.tif",
    "dsb2018": "stage1_train/df3d*/images/df3d*.png",
    "monusac": "MoNuSAC Testing Data and Annotations/TCGA-2Z-A9JG-01Z-00-DX1/TCGA-2Z-A9JG-01Z-00-DX1_1.xml",
    "monuseg": "MoNuSegTestData/TCGA-2Z-A9J9-01A-01-TS1.xml",
    "nuinsseg": "NuInsSeg/mouse heart/label masks modify/mouse_heart_01.tif",
    "pannuke": "Fold 3/masks/fold3/masks.npy",  # tile 1 gets an instance id in two class channels
    "pcns": "manual_segmentation_data/luad/12_labeled_mask_corrected.png",
    "puma": "01_training_dataset_geojson_nuclei/training_set_primary_roi_001_nuclei.geojson",
    "tnbc": "TNBC_NucleiSegmentation/GT_03/03_1.png",
}
NAMES = sorted(generators())


def _prepare(name: str, root: Path, options: dict[str, Any], workers: int) -> Path:
    cls = nf.get_dataset_class(name)
    return cls.deferred(root, **options).prepare(splits=cls.splits, workers=workers).path


def test_malformed_table_covers_every_dataset() -> None:
    assert sorted(MALFORMED) == NAMES and len(NAMES) == 11  # every registered loader but synthetic


@pytest.mark.parametrize("name", NAMES)
def test_every_dataset_converts_in_workers_byte_identically(
    name: str, tmp_path: Path, fake_factory: Callable[[str], FakeData], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_factory(name)
    kinds: list[str] = []
    real = _prepare_module.write_samples

    def spy(writer: StoreWriter, items: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        def seen() -> Iterator[Any]:
            for item in items:
                kinds.append(type(item).__name__)
                yield item

        real(writer, seen(), *args, **kwargs)

    monkeypatch.setattr(_prepare_module, "write_samples", spy)
    trees = {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        copy_native(fake, root, name)
        trees[workers] = _tree(_prepare(name, root, fake.options, workers))
    # every tile is a job (whole conversion in a worker), never a RawSample converted in the parent
    assert "RawSample" not in kinds and kinds.count("Job") >= fake.tiles["all"]
    manifest = json.loads(next((tmp_path / "w1" / name).glob("prepared*/manifest.json")).read_text())
    assert len(manifest["samples"]) == fake.tiles["all"]
    assert trees[1] == trees[2]  # files, manifest (order, hashes, skipped counts) and every tile's bytes
    assert len(trees[1]) > 2 * fake.tiles["all"]


def _break(name: str, native: Path) -> Path:
    """Make one late tile of the copied native files malformed; return the file."""
    path = sorted(native.glob(MALFORMED[name]))[0]
    if name == "pannuke":
        masks = np.load(path)
        masks[1, 0, 0, 0] = masks[1, 0, 0, 1] = 9  # id 9 in the Neoplastic and the Inflammatory channel
        np.save(path, masks)
    else:
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _nothing_prepared(ddir: Path) -> bool:
    return not [p for p in ddir.iterdir() if p.name.startswith(("prepared", TMP_PREFIX))]


@pytest.mark.parametrize("name", NAMES)
def test_a_malformed_tile_fails_the_same_in_a_worker(
    name: str, tmp_path: Path, fake_factory: Callable[[str], FakeData]
) -> None:
    fake = fake_factory(name)
    copy_native(fake, tmp_path, name)
    bad = _break(name, tmp_path / name)
    messages = []
    for workers in (1, 2):  # the same root: the messages name the same paths
        with pytest.raises(InvalidSourceError) as info:
            _prepare(name, tmp_path, fake.options, workers)
        messages.append(str(info.value))
        assert _nothing_prepared(tmp_path / name), f"{name}: a store or temporary left after the error"
    assert bad.name in messages[0], messages[0]
    assert messages[0] == messages[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_first_bad_tile_wins_over_a_later_listing_error(
    workers: int, tmp_path: Path, fake_factory: Callable[[str], FakeData]
) -> None:
    fake = fake_factory("monuseg")
    ddir = copy_native(fake, tmp_path, "monuseg")
    bad = ddir / "MoNuSeg 2018 Training Data" / "Annotations" / "TCGA-NH-A8F7-01A-01-TS1.xml"  # the last train tile
    bad.write_text("<Annotations><Annotation>")  # malformed XML: fails in its job
    (ddir / "MoNuSegTestData" / "TCGA-HT-8564-01Z-00-DX1.xml").unlink()  # the test split no longer pairs up
    with pytest.raises(InvalidSourceError, match=re.escape(str(bad))):  # not the listing's "do not pair up"
        _prepare("monuseg", tmp_path, {}, workers)
    assert _nothing_prepared(ddir)


@pytest.mark.parametrize("workers", [1, 2])
def test_skips_are_counted_in_order(workers: int, tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    reasons: list[str] = []
    items = [
        Skipped("listed"),
        Job(skipping_tile, (0,)),
        Job(synthetic_tile, (0, 1, (32, 32), 1.0)),
        Skipped("listed"),
        SETTLE,
        Job(skipping_tile, (2,)),
    ]
    write_samples(writer, items, ("all",), workers, on_skip=reasons.append)
    assert reasons == ["listed", "in job 0", "in job 0", "listed", "in job 2", "in job 2"]
    assert [e["id"] for e in writer.samples] == ["synthetic_0_0001"]
    writer.abort()


def skipping_tile(i: int) -> None:
    """A job that skips its tile after reporting two skipped items (module level: runs in a worker)."""
    report_skip(f"in job {i}")
    report_skip(f"in job {i}")


def test_pannuke_folds_from_archives_settle_before_release(
    tmp_path: Path, serve_fake: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each fold's extraction is deleted once converted: its jobs must all have read their tiles by then."""
    from nucfuse_datasets.datasets._sources import Sources

    served = serve_fake("pannuke")  # pins the fake archives' hashes
    released: list[str] = []
    real_release = Sources.release

    def release(self: Sources, key: str) -> None:
        released.append(key)
        real_release(self, key)

    monkeypatch.setattr(Sources, "release", release)
    trees = {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        copy_archives(served.fake, root, "pannuke")
        trees[workers] = _tree(_prepare("pannuke", root, {}, workers))
    assert released == ["fold1", "fold2", "fold3"] * 2
    assert trees[1] == trees[2]


@pytest.mark.parametrize(
    ("name", "folders"),
    [("monuseg", ["MoNuSeg 2018 Training Data", "MoNuSegTestData"]), ("dsb2018", ["stage1_train"])],
)
def test_real_files_give_the_same_store_with_workers(name: str, folders: list[str], tmp_path: Path) -> None:
    """Real native files (read in place from ../shared/realdata): MoNuSeg XML tiles, DSB's mask PNGs and skips."""
    src = realdata(name)
    trees = {}
    for workers in (1, 2):
        root = link_real(tmp_path / f"w{workers}", name, [src / f for f in folders])
        store = _prepare(name, root, {}, workers)
        trees[workers] = _tree(store)
        manifest = json.loads((store / "manifest.json").read_text())
        if name == "dsb2018":  # 115 image folders: 107 H&E tiles, 8 greyscale ones skipped (the realdata README)
            assert len(manifest["samples"]) == 107 and manifest["skipped"] == {"greyscale (fluorescence) image": 8}
        else:
            assert len(manifest["samples"]) == 10
    assert trees[1] == trees[2]


def churning_tile(i: int) -> RawSample:
    """Allocate and free 1000² buffers as a converter does; record the page faults of the repeats in the meta."""
    import resource

    def once() -> None:
        a = np.ones((1000, 1000))
        b = (a * 2 + a).astype(np.int64)
        c = np.zeros((1000, 1000, 3), np.uint8) + 1
        del a, b, c

    once()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        once()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    tile = synthetic_tile(0, i, (16, 16), 1.0)
    return RawSample(tile.sample_id, tile.split, tile.image, tile.instances, meta={"extra": {"faults": faults}})


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the worker tunes glibc's allocator only")
def test_workers_keep_freed_tile_buffers(tmp_path: Path) -> None:
    """Without the worker's mallopt thresholds each repeat hands ~30 MB back and faults it in again (~10,000)."""
    writer = _writer(tmp_path)
    write_samples(writer, [Job(churning_tile, (i,)) for i in range(4)], ("all",), 2)
    faults = [e["meta"]["extra"]["faults"] for e in writer.samples]
    assert len(faults) == 4 and max(faults) < 1000, faults
    writer.abort()
