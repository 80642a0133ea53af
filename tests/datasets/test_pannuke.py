"""PanNuke parser quirks: memory-mapped folds, float arrays, channel layout, unicode/object types.npy."""

from __future__ import annotations

import numpy as np
import pytest

import nucfuse_datasets as nf
from nucfuse_datasets.datasets import pannuke as pannuke_module
from nucfuse_datasets.datasets.pannuke import CLASS_NAMES, PanNuke, instances_from_channels, tile_image
from nucfuse_datasets.errors import InvalidSourceError
from tests.conftest import copy_native
from tests.fakedata import pannuke as fake_pannuke


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from tests.fakedata import generators

    fake = generators()["pannuke"](tmp_path_factory.mktemp("fake-pannuke"))
    root = tmp_path_factory.mktemp("root")
    copy_native(fake, root, "pannuke")
    nf.get_dataset("pannuke", root=root, progress=False)
    return root, fake


def test_every_fold_is_converted(root):
    path, fake = root
    for n, (types, _, _) in fake_pannuke.FOLDS.items():
        ds = nf.get_dataset("pannuke", root=path, split=f"fold{n}", progress=False)
        assert ds.sample_ids == [f"fold{n}_{i:04d}" for i in range(len(types))]
        assert sum(ds.n_instances(i) for i in range(len(ds))) == fake.nuclei[f"fold{n}"]
    assert PanNuke.splits == ("fold1", "fold2", "fold3") and PanNuke.test_split is None


@pytest.mark.parametrize(("fold", "i"), [(n, i) for n, f in fake_pannuke.FOLDS.items() for i in range(len(f[0]))])
def test_tiles_match_the_arrays(root, fold, i):
    path, _ = root
    ds = nf.get_dataset("pannuke", root=path, progress=False)
    s = ds[ds.index_of(f"fold{fold}_{i:04d}")]
    image, inst, _ = fake_pannuke.tile_arrays(fold, i)
    assert np.array_equal(s.image, image)  # float64 and uint8 images
    ids = np.unique(inst)
    ids = ids[ids > 0]
    # renumbered 1..N in ascending order of the original id; class = channel (k % 5) + 1
    assert s.n_instances == ids.size
    assert s.classes.tolist() == [0, *[int(k) % 5 + 1 for k in ids]]
    remap = np.zeros(int(inst.max()) + 1, np.int32)
    remap[ids] = np.arange(1, ids.size + 1)
    assert np.array_equal(s.instances, remap[inst])
    assert s.class_names == CLASS_NAMES
    assert s.meta.extra["tissue"] == fake_pannuke.FOLDS[fold][0][i] and s.meta.extra["fold"] == fold


def test_tissue_names_become_organs(root):
    path, _ = root
    ds = nf.get_dataset("pannuke", root=path, progress=False)
    organs = {ds.meta(i).extra["tissue"]: ds.meta(i).organ for i in range(len(ds))}
    assert organs["Adrenal_gland"] == "adrenal gland" and organs["HeadNeck"] == "head and neck"
    assert organs["Bile-duct"] == "bile duct" and organs["Breast"] == "breast"


def test_empty_tile(root):
    path, _ = root
    ds = nf.get_dataset("pannuke", root=path, split="fold3", progress=False)
    assert ds.n_instances(len(ds) - 1) == 0


def test_folds_are_memory_mapped(tmp_path, fake_factory, monkeypatch):
    copy_native(fake_factory("pannuke"), tmp_path, "pannuke")
    calls: list[tuple[str, str | None]] = []
    real = pannuke_module.load_npy

    def spy(path, mmap_mode=None):
        calls.append((str(path).rsplit("/", 1)[-1], mmap_mode))
        return real(path, mmap_mode=mmap_mode)

    monkeypatch.setattr(pannuke_module, "load_npy", spy)
    nf.get_dataset("pannuke", root=tmp_path, progress=False)
    assert sorted(calls) == sorted([("images.npy", "r"), ("masks.npy", "r"), ("types.npy", None)] * 3)


def test_shared_id_across_channels_is_refused():
    mask = np.zeros((4, 4, 6))
    mask[0, 0, 1] = 5
    mask[3, 3, 2] = 5
    with pytest.raises(InvalidSourceError, match=r"id 5 occurs in channel 1 \(Inflammatory\) and channel 2"):
        instances_from_channels(mask, "m")


def test_overlap_rules():
    mask = np.zeros((4, 4, 6))
    mask[0:2, 0:2, 0] = 3
    mask[1:3, 1:3, 4] = 8  # overlaps one pixel; 3 keeps three
    inst, classes, overlap = instances_from_channels(mask, "m")
    assert overlap == 1 and inst[1, 1] == 8 and classes == {3: 1, 8: 5}
    mask[0:2, 0:2, 4] = 8  # now 3 is hidden completely
    with pytest.raises(InvalidSourceError, match=r"instance\(s\) \[3\] are completely covered"):
        instances_from_channels(mask, "m")


@pytest.mark.parametrize("bad", [0.5, -1.0, np.nan])
def test_non_integer_or_negative_ids_are_refused(bad):
    mask = np.zeros((4, 4, 6))
    mask[0, 0, 0] = bad
    with pytest.raises(InvalidSourceError):
        instances_from_channels(mask, "m")


def test_image_values():
    assert tile_image(np.full((2, 2, 3), 12.4), "i").tolist() == [[[12] * 3] * 2] * 2
    with pytest.raises(InvalidSourceError, match=r"outside 0\.\.255"):
        tile_image(np.full((2, 2, 3), 300.0), "i")
    with pytest.raises(InvalidSourceError, match="H×W×3"):
        tile_image(np.zeros((2, 2)), "i")


def test_object_types_array_is_refused(tmp_path, fake_factory):
    target = copy_native(fake_factory("pannuke"), tmp_path, "pannuke")
    types = target / "Fold 2" / "images" / "fold2" / "types.npy"
    np.save(types, np.array(["HeadNeck", None], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidSourceError, match=r"fold2/types\.npy: .*pickle.*unicode string array"):
        nf.get_dataset("pannuke", root=tmp_path, progress=False)


def test_length_mismatch_is_refused(tmp_path, fake_factory):
    target = copy_native(fake_factory("pannuke"), tmp_path, "pannuke")
    np.save(target / "Fold 3" / "images" / "fold3" / "types.npy", np.array(["Skin"]))
    with pytest.raises(InvalidSourceError, match=r"types\.npy 1"):
        nf.get_dataset("pannuke", root=tmp_path, progress=False)


def test_shared_id_through_the_api_names_the_tile(tmp_path, fake_factory):
    target = copy_native(fake_factory("pannuke"), tmp_path, "pannuke")
    path = target / "Fold 1" / "masks" / "fold1" / "masks.npy"
    masks = np.load(path)
    k = int(masks[1][..., :5].max())
    assert k > 0
    masks[1, 0, 0, (k + 1) % 5] = k  # instance k (channel k % 5) also in another channel
    np.save(path, masks)
    with pytest.raises(InvalidSourceError, match=r"fold1/masks\.npy\[1\]"):
        nf.get_dataset("pannuke", root=tmp_path, progress=False)


def test_resources_and_counts():
    assert [r.filename for r in PanNuke.resources] == ["fold_1.zip", "fold_2.zip", "fold_3.zip"]
    assert [r.sha256[:8] for r in PanNuke.resources] == ["6e19ad38", "5bc540cc", "c14d3729"]
    assert [r.md5[:8] for r in PanNuke.resources] == ["e1b16ef8", "f1839d33", "441950a9"]
    assert all(r.downloadable for r in PanNuke.resources)
    counts = {f"fold{n}": {"tiles": s, "nuclei": 0} for n, s in {1: 2656, 2: 2523, 3: 2722}.items()}
    assert PanNuke.__new__(PanNuke).check_counts({**counts, "all": {"tiles": 7901, "nuclei": 189744}}) == []
    assert PanNuke.paper.tiles == 7904


def test_folds_are_extracted_one_at_a_time(tmp_path, serve_fake, monkeypatch):
    from nucfuse_datasets.datasets import _sources

    served = serve_fake("pannuke")
    target = tmp_path / "pannuke"
    target.mkdir()
    for archive in served.fake.archives.values():
        (target / archive.name).write_bytes(archive.read_bytes())
    seen = []
    real = _sources.extract_archive

    def spy(archive, dest, **kw):
        # extraction folders that exist when a new archive is extracted
        seen.append(sorted(p.name for p in dest.parent.iterdir()) if dest.parent.exists() else [])
        return real(archive, dest, **kw)

    monkeypatch.setattr(_sources, "extract_archive", spy)
    ds = nf.get_dataset("pannuke", root=tmp_path, progress=False)
    assert len(seen) == 3 and all(s == [] for s in seen)  # fold n-1's extraction is gone before fold n is extracted
    assert {ds.meta(i).split for i in range(len(ds))} == {"fold1", "fold2", "fold3"}
