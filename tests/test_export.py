"""Exports to Hugging Face datasets and WebDataset (nucfuse_datasets.export): exact round trips, sharding, ranks."""

from __future__ import annotations

import json
import tarfile
from collections import Counter

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
pytest.importorskip("webdataset")

import nucfuse_datasets as nf  # noqa: E402
from nucfuse_datasets.cli import main  # noqa: E402
from nucfuse_datasets.errors import ArgumentError  # noqa: E402
from nucfuse_datasets.export import export_hf, export_webdataset, load_hf, read_webdataset  # noqa: E402
from nucfuse_datasets.schema import Sample  # noqa: E402
from tests.conftest import real_monuseg_root  # noqa: E402


def _assert_same(a: Sample, b: Sample) -> None:
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.dtype == b.image.dtype == np.uint8
    np.testing.assert_array_equal(a.instances, b.instances)
    assert b.instances.dtype == np.int32
    for field in ("classes", "ignore"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
    assert a.class_names == b.class_names
    assert a.meta == b.meta


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Mixed tile sizes, classes on every tile, ignore masks on some (synthetic generator)."""
    root = tmp_path_factory.mktemp("syn")
    return nf.get_dataset("synthetic", root=root, n_tiles=7, tile_size=[(40, 56), (64, 64), (33, 47)], seed=3)


def test_hf_round_trip_is_exact(synthetic, tmp_path):
    assert any(synthetic[i].ignore is not None for i in range(len(synthetic)))
    assert any(synthetic[i].ignore is None for i in range(len(synthetic)))
    out = export_hf(synthetic, tmp_path / "hf")
    raw = datasets.load_from_disk(str(out))  # the library itself reads it
    assert len(raw) == len(synthetic)
    assert {"image", "instances", "classes", "class_names", "ignore", "dataset", "sample_id", "extra"} <= set(
        raw.column_names
    )
    assert raw[0]["sample_id"] == synthetic.sample_ids[0]
    assert np.array_equal(np.asarray(raw[0]["image"]), synthetic[0].image)  # decoded by datasets' Image feature
    back = load_hf(out)
    assert len(back) == len(synthetic)
    for i in range(len(synthetic)):
        _assert_same(synthetic[i], back[i])
    assert not list(tmp_path.glob(".tmp-*"))


def test_webdataset_round_trip_and_shards(synthetic, tmp_path):
    out = export_webdataset(synthetic, tmp_path / "wds", shard_size=3)
    shards = sorted(out.glob("*.tar"))
    assert [s.name for s in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    members = []
    for shard in shards:  # read with the standard library, not webdataset
        with tarfile.open(shard) as tar:
            members.append(tar.getnames())
    assert [len({m.split(".")[0] for m in names}) for names in members] == [3, 3, 1]
    assert "000000000.png" in members[0] and "000000000.instances.npy" in members[0]
    index = json.loads((out / "index.json").read_text())
    assert index["n_samples"] == 7 and [s["n_samples"] for s in index["shards"]] == [3, 3, 1]
    got = list(read_webdataset(out))
    assert len(got) == len(synthetic)
    for i, s in enumerate(got):
        _assert_same(synthetic[i], s)


def test_existing_target_and_interrupted_export_leave_nothing(synthetic, tmp_path):
    export_webdataset(synthetic, tmp_path / "wds", shard_size=4)
    with pytest.raises(ArgumentError, match="overwrite"):
        export_webdataset(synthetic, tmp_path / "wds")
    with pytest.raises(ArgumentError, match="shard_size"):
        export_webdataset(synthetic, tmp_path / "other", shard_size=0)

    class Broken:
        def __len__(self):
            return 3

        def load_sample(self, i):
            if i == 2:
                raise OSError("disk vanished")
            return synthetic[i]

    for writer in (export_webdataset, export_hf):
        with pytest.raises(OSError, match="vanished"):
            writer(Broken(), tmp_path / "broken")
        assert not (tmp_path / "broken").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wds"]  # no temporaries left
    export_webdataset(synthetic, tmp_path / "wds", shard_size=7, overwrite=True)
    assert len(list((tmp_path / "wds").glob("*.tar"))) == 1


def _sample_id(sample: Sample) -> str:
    return sample.meta.sample_id


def test_two_ranks_two_workers_visit_each_sample_once(tmp_path, monkeypatch):
    ds = nf.get_dataset("synthetic", root=tmp_path / "data", n_tiles=23, tile_size=32)
    out = export_webdataset(ds, tmp_path / "wds", shard_size=3)  # 8 shards for 4 readers
    seen: list[tuple[int, str]] = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))  # webdataset.split_by_node reads these without a process group
        monkeypatch.setenv("WORLD_SIZE", "2")
        pipe = read_webdataset(out).map(_sample_id)
        loader = torch.utils.data.DataLoader(pipe, batch_size=None, num_workers=2)
        for _epoch in range(2):
            ids = list(loader)
            seen.extend((rank, i) for i in ids)
            assert len(ids) == len(set(ids)) and ids
    per_epoch = Counter(i for _, i in seen)
    assert set(per_epoch) == set(ds.sample_ids)
    assert set(per_epoch.values()) == {2}  # once per epoch, two epochs
    by_rank = [{i for r, i in seen if r == rank} for rank in range(2)]
    assert not by_rank[0] & by_rank[1]


def test_real_monuseg_tiles_round_trip(tmp_path):
    root = real_monuseg_root(tmp_path / "real")
    ds = nf.get_dataset("monuseg", root=root, split="test", progress=False)

    class TwoTiles:
        def __len__(self):
            return 2

        def load_sample(self, i):
            return ds.load_sample(i)

    hf = load_hf(export_hf(TwoTiles(), tmp_path / "hf"))
    wds = list(read_webdataset(export_webdataset(TwoTiles(), tmp_path / "wds", shard_size=1)))
    for i in range(2):
        ref = ds.load_sample(i)
        assert ref.image.shape == (1000, 1000, 3) and ref.n_instances > 100
        _assert_same(ref, hf[i])
        _assert_same(ref, wds[i])


def test_cli_export(tmp_path, capsys):
    root = tmp_path / "data"
    nf.get_dataset("synthetic", root=root, n_tiles=24)
    rc = main(["--root", str(root), "export", "synthetic", "--format", "webdataset", "--out", str(tmp_path / "w")])
    assert rc == 0 and "24 samples" in capsys.readouterr().out
    assert len(list(read_webdataset(tmp_path / "w"))) == 24
    rc = main(["--root", str(root), "export", "synthetic", "--format", "webdataset", "--out", str(tmp_path / "w")])
    assert rc == 2 and "overwrite" in capsys.readouterr().err
    rc = main(
        [
            "--root",
            str(root),
            "export",
            "nucfuse-test",
            "--datasets",
            "synthetic",
            "--format",
            "hf",
            "--out",
            str(tmp_path / "t"),
        ]
    )
    assert rc == 0
    test = load_hf(tmp_path / "t")
    assert len(test) == 14 and test[0].meta.extra.get("subset") == "synthetic"


def test_nucfuse_train_patches_round_trip(tmp_path):
    parts = {"synthetic": {"n_tiles": 18, "tile_size": [(256, 256), (300, 520)]}}
    train = nf.NucFuseTrain(tmp_path / "data", datasets=["synthetic"], dataset_options=parts, split="all")
    assert len(train) > 4
    wds = list(read_webdataset(export_webdataset(train, tmp_path / "wds", shard_size=3)))
    hf = load_hf(export_hf(train, tmp_path / "hf"))
    for i in range(len(train)):
        ref = train.load_sample(i)
        assert ref.shape == (256, 256)
        _assert_same(ref, wds[i])
        _assert_same(ref, hf[i])
