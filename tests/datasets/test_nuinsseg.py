"""NuInsSeg parser quirks: organ folders and typos, label variants, vague areas, the authors' 5-fold CV."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from sklearn.model_selection import KFold  # the test extra: unconditional

from nucfuse_datasets.datasets.nuinsseg import (
    NuInsSeg,
    kfold_test_folds,
    nuinsseg_folds,
    organ_of,
)
from nucfuse_datasets.errors import ArgumentError, CountMismatchWarning, InvalidSourceError
from tests.conftest import copy_native, realdata
from tests.fakedata import nuinsseg as fake
from tests.fakedata._common import dense_ids, tile, write_png, write_tiff_pil

ORDER = [
    "human_bladder_01",
    "human_bladder_02",
    "human_salivory_gland_01",
    "human_tonsile_01",
    "mouse_heart_01",
    "mouse_heart_02",
]


@pytest.fixture
def prepared(tmp_path, fake_factory):
    copy_native(fake_factory("nuinsseg"), tmp_path, "nuinsseg")
    return NuInsSeg(root=tmp_path, progress=False)


def test_ids_in_folder_order_with_organ_and_species(prepared):
    assert prepared.sample_ids == ORDER
    metas = {sid: prepared.meta(i) for i, sid in enumerate(prepared.sample_ids)}
    assert metas["human_salivory_gland_01"].organ == "salivary gland"  # folder typo corrected
    assert metas["human_tonsile_01"].organ == "tonsil"
    assert metas["human_tonsile_01"].extra["folder"] == "human tonsile"  # the folder as it is
    assert metas["mouse_heart_02"].organ == "heart" and metas["mouse_heart_02"].extra["species"] == "mouse"
    assert metas["human_bladder_01"].extra["species"] == "human"
    assert metas["human_bladder_01"].original_file == "human bladder/tissue images/human_bladder_01.png"
    assert {m.split for m in metas.values()} == {"all"}


def test_label_masks_modify_is_used(prepared):
    # the fake's synthetic maps: seeds 901.. in folder order; 'label masks' has one label more per tile
    for i, sid in enumerate(prepared.sample_ids):
        image, inst, _ = tile(fake.SIZE, fake.SIZE, 901 + i)
        s = prepared[i]
        assert np.array_equal(s.instances, dense_ids(inst)), sid
        assert np.array_equal(s.image, image), sid  # RGBA and RGB tiles both end as RGB


def test_vague_areas_become_ignore(prepared):
    want = fake.expected()
    for i, sid in enumerate(prepared.sample_ids):
        s = prepared[i]
        if want[sid]["vague"] is None:
            assert s.ignore is None and s.meta.extra["has_vague_mask"] is False, sid
        else:
            assert s.ignore is not None and s.ignore.dtype == bool, sid
            assert int(s.ignore.sum()) == want[sid]["vague"], sid
            assert s.meta.extra["has_vague_mask"] is True
    # 'vague areas/mask binary_vague' (salivary gland) is read too
    assert want["human_salivory_gland_01"]["vague"] == 70


def test_cv_folds_match_sklearn(prepared):
    keys = sorted(f"{prepared.meta(i).extra['folder']}/{sid}" for i, sid in enumerate(prepared.sample_ids))
    kf = KFold(n_splits=5, shuffle=True, random_state=19)
    want = {}
    for k, (_, test) in enumerate(kf.split(np.arange(len(keys)))):
        for pos in test:
            want[keys[pos].split("/")[1]] = k
    got = {sid: prepared.meta(i).extra["cv_fold"] for i, sid in enumerate(prepared.sample_ids)}
    assert got == want
    folds = nuinsseg_folds(prepared)
    assert len(folds) == 5
    for k, (train, test) in enumerate(folds):
        assert {prepared.sample_ids[j] for j in test} == {s for s, f in want.items() if f == k}
        assert sorted([*train, *test]) == list(range(len(prepared)))
    assert [t.tolist() for t in (f[1] for f in prepared.folds())] == [t.tolist() for _, t in folds]


@pytest.mark.parametrize("n", [5, 6, 7, 13, 101, 665])
@pytest.mark.parametrize("seed", [19, 0, 42])
def test_kfold_test_folds_equal_sklearn(n, seed):
    ours = kfold_test_folds(n, 5, seed)
    theirs = [test for _, test in KFold(5, shuffle=True, random_state=seed).split(np.zeros(n))]
    assert [a.tolist() for a in ours] == [b.tolist() for b in theirs]


def test_kfold_fold_sizes_for_665():
    sizes = [len(f) for f in kfold_test_folds(665)]
    assert sizes == [133] * 5
    assert [len(f) for f in kfold_test_folds(667)] == [134, 134, 133, 133, 133]


def test_kfold_errors():
    with pytest.raises(ArgumentError, match="at least 5"):
        kfold_test_folds(4)
    with pytest.raises(ArgumentError, match="2 splits"):
        kfold_test_folds(4, n_splits=1)


def test_organ_names():
    assert organ_of("human salivory gland") == ("human", "salivary gland")
    assert organ_of("mouse  bone") == ("mouse", "bone")
    assert organ_of("Human Liver") == ("human", "liver")
    assert organ_of("stomach") == (None, "stomach")


def _organ(root, folder: str, stem: str, seed: int, size: int = 32) -> None:
    base = root / folder
    image, inst, _ = tile(size, size, seed)
    write_png(base / "tissue images" / f"{stem}.png", image)
    write_tiff_pil(base / "label masks modify" / f"{stem}.tif", inst.astype(np.uint16), compression="packbits")


def test_layout_without_human_bladder_and_without_top_folder(tmp_path):
    base = tmp_path / "nuinsseg" / "unpacked"
    for k in range(5):
        _organ(base, f"mouse organ{k}", f"mouse_organ{k}_01", 40 + k)
    ds = NuInsSeg(root=tmp_path, progress=False)
    assert len(ds) == 5 and all("cv_fold" in ds.meta(i).extra for i in range(5))


def test_shared_stem_gets_folder_prefix_and_few_tiles_have_no_fold(tmp_path):
    base = tmp_path / "nuinsseg"
    _organ(base, "human liver", "tile_01", 1)
    _organ(base, "mouse liver", "tile_01", 2)
    _organ(base, "mouse liver", "tile_02", 3)
    ds = NuInsSeg(root=tmp_path, progress=False)
    assert ds.sample_ids == ["human_liver__tile_01", "mouse_liver__tile_01", "tile_02"]
    assert "cv_fold" not in ds.meta(0).extra
    with pytest.raises(ArgumentError, match="no cross-validation fold"):
        nuinsseg_folds(ds)


def test_unpaired_files_raise(tmp_path):
    base = tmp_path / "nuinsseg"
    _organ(base, "human liver", "human_liver_01", 1)
    (base / "human liver" / "label masks modify" / "human_liver_01.tif").rename(
        base / "human liver" / "label masks modify" / "human_liver_02.tif"
    )
    with pytest.raises(InvalidSourceError, match="do not pair up"):
        NuInsSeg(root=tmp_path, progress=False)


def test_vague_mask_shape_mismatch_raises(tmp_path):
    base = tmp_path / "nuinsseg"
    _organ(base, "human liver", "human_liver_01", 1)
    write_png(base / "human liver" / "vague areas" / "mask binary" / "human_liver_01.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(InvalidSourceError, match="vague-area shape"):
        NuInsSeg(root=tmp_path, progress=False)


def test_published_counts_and_resource():
    assert [(e.tiles, e.nuclei) for e in NuInsSeg.expected_counts] == [(665, 30698)]
    (res,) = NuInsSeg.resources
    assert res.size == 1_627_427_342 and res.sha256 is None and res.md5 is None
    assert NuInsSeg.test_split is None


# ---------------------------------------------------------------- real label maps (../shared/realdata/)

REAL = {"human_bladder_01": (24, 21987), "human_bladder_02": (3, 28)}


def test_real_label_maps_and_vague_areas(tmp_path):
    src = realdata("nuinsseg") / "human bladder"
    organ = tmp_path / "nuinsseg" / "human bladder"
    organ.mkdir(parents=True)
    # the real files are linked in place, never copied; only the H&E tiles are synthetic
    (organ / "label masks modify").symlink_to(src / "label masks modify", target_is_directory=True)
    (organ / "vague areas").symlink_to(src / "vague areas", target_is_directory=True)
    for k, stem in enumerate(REAL):
        write_png(organ / "tissue images" / f"{stem}.png", tile(512, 512, k, density=0.0)[0])
    with pytest.warns(CountMismatchWarning):
        ds = NuInsSeg(root=tmp_path, progress=False)
    assert ds.sample_ids == list(REAL)
    for i, (stem, (n_inst, n_vague)) in enumerate(REAL.items()):
        raw = tifffile.imread(src / "label masks modify" / f"{stem}.tif")  # read without the library
        assert raw.dtype == np.uint16  # native uint16 TIFF (PackBits)
        s = ds[i]
        assert s.n_instances == n_inst == ds.n_instances(i)
        assert s.instances.dtype == np.int32 and np.array_equal(s.instances, raw.astype(np.int32))  # ids 1..N kept
        assert s.ignore is not None and int(s.ignore.sum()) == n_vague
    assert not any(p.is_symlink() for p in ds.store_path.rglob("*"))


def test_fold_order_is_folder_then_stem(tmp_path):
    base = tmp_path / "nuinsseg"
    # folder order and stem order disagree: the documented order is "<folder>/<stem>"
    folders = [f"human organ{k}" for k in range(6)]
    stems = [f"s{5 - k}" for k in range(6)]
    for k, (folder, stem) in enumerate(zip(folders, stems, strict=True)):
        _organ(base, folder, stem, 60 + k, size=16)
    ds = NuInsSeg(root=tmp_path, progress=False)
    want = {}
    for fold, (_, test) in enumerate(KFold(5, shuffle=True, random_state=19).split(np.zeros(6))):
        for pos in test:
            want[stems[pos]] = fold
    assert {sid: ds.meta(i).extra["cv_fold"] for i, sid in enumerate(ds.sample_ids)} == want
    assert ds.sample_ids == stems  # store order follows the same key


@pytest.mark.parametrize("name", ["pcns", "tnbc", "nuinsseg", "cryonuseg"])
def test_manifest_counts_each_tile_once(name, tmp_path, fake_factory):
    import nucfuse_datasets as nf
    from nucfuse_datasets.io.store import PreparedStore

    fake = fake_factory(name)
    copy_native(fake, tmp_path, name)
    ds = nf.get_dataset(name, root=tmp_path, progress=False)
    assert PreparedStore(ds.store_path).counts["all"] == {"tiles": fake.tiles["all"], "nuclei": fake.nuclei["all"]}
