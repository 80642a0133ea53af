"""Issue 15: work with what you have (one split, one fold, some datasets), and every failure names file and fix.

Each test here failed before the change it covers (see the docstrings); expected values come from the fake sources'
own tile counts (``tests/fakedata``), from file names built in the test, or from the issue's wording.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

import nucfuse_datasets as nf
from nucfuse_datasets import NucFuseTest, NucFuseTrain
from nucfuse_datasets.benchmark.evaluation import label_components
from nucfuse_datasets.cli import main
from nucfuse_datasets.errors import (
    BinaryMaskWarning,
    CountMismatchWarning,
    DatasetNotFoundError,
    InvalidPredictionError,
    InvalidSourceError,
    MissingPredictionWarning,
    NucFuseError,
    PredictionFailedError,
    PreparedStoreError,
)
from nucfuse_datasets.io.download import recorded_hash
from nucfuse_datasets.io.files import atomic_write_json, default_file_mode, sha256_file
from nucfuse_datasets.io.store import PreparedStore
from tests.conftest import copy_archives, copy_native

# --------------------------------------------------------------------------- 1. preparation per split


def _native_only(fake, root: Path, name: str, keep: list[str]) -> Path:
    """Copy only the named top-level folders of a fake's native layout into ``<root>/<name>/``."""
    target = root / name
    target.mkdir(parents=True, exist_ok=True)
    for sub in keep:
        shutil.copytree(fake.native_dir / sub, target / sub)
    return target


def _files(store: Path) -> dict[str, tuple[int, str]]:
    return {
        p.relative_to(store).as_posix(): (p.stat().st_ino, sha256_file(p))
        for p in store.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }


def test_pannuke_fold_by_fold_grows_the_store(tmp_path, fake_factory):
    """Before: split="fold1" with only ``Fold 1/`` raised DatasetNotFoundError demanding fold_2.zip and fold_3.zip."""
    fake = fake_factory("pannuke")
    _native_only(fake, tmp_path, "pannuke", ["Fold 1"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CountMismatchWarning)
        fold1 = nf.get_dataset("pannuke", root=tmp_path, split="fold1")
    counted = " ".join(str(w.message) for w in caught if issubclass(w.category, CountMismatchWarning))
    assert "fold1 tiles" in counted  # the fake fold is small: its own count is compared ...
    assert "all tiles" not in counted  # ... but not the whole dataset's, while folds are missing
    assert len(fold1) == fake.tiles["fold1"]
    store = PreparedStore(fold1.store_path)
    assert store.splits == ("fold1",)
    before = _files(store.path)

    with pytest.raises(DatasetNotFoundError) as info:  # fold 2 is not there yet: only its file is asked for
        nf.get_dataset("pannuke", root=tmp_path, split="fold2")
    assert "fold_2.zip" in str(info.value) and "fold_1.zip" not in str(info.value)
    assert "fold_3.zip" not in str(info.value)

    _native_only(fake, tmp_path, "pannuke", ["Fold 2"])
    fold2 = nf.get_dataset("pannuke", root=tmp_path, split="fold2")
    assert len(fold2) == fake.tiles["fold2"]
    grown = PreparedStore(fold2.store_path)
    assert grown.path == store.path and grown.splits == ("fold1", "fold2")
    after = _files(grown.path)
    assert {k: after[k] for k in before} == before  # fold 1's files untouched (same inode, same bytes)
    assert grown.verify(full=True) == []
    assert grown.counts["fold1"]["tiles"] == fake.tiles["fold1"]
    assert grown.counts["all"]["tiles"] == fake.tiles["fold1"] + fake.tiles["fold2"]
    assert len(nf.get_dataset("pannuke", root=tmp_path, split="fold1")) == fake.tiles["fold1"]  # still there

    with pytest.raises(DatasetNotFoundError) as info:  # "all" still needs fold 3, and only fold 3
        nf.get_dataset("pannuke", root=tmp_path)
    assert "fold_3.zip" in str(info.value) and "fold_2.zip" not in str(info.value)
    _native_only(fake, tmp_path, "pannuke", ["Fold 3"])
    full = nf.get_dataset("pannuke", root=tmp_path)
    assert len(full) == fake.tiles["all"]
    assert PreparedStore(full.store_path).splits == ("fold1", "fold2", "fold3")
    assert PreparedStore(full.store_path).verify(full=True) == []


def test_pannuke_downloads_only_the_asked_fold(tmp_path, serve_fake):
    """Before: asking for one fold downloaded (and demanded) all three archives."""
    served = serve_fake("pannuke")
    ds = nf.get_dataset("pannuke", root=tmp_path, split="fold3", download=True)
    assert len(ds) == served.fake.tiles["fold3"]
    assert served.calls == [u for u in served.calls if "fold3" in u] and len(served.calls) == 1
    assert sorted(p.name for p in (tmp_path / "pannuke").glob("*.zip")) == ["fold_3.zip"]


@pytest.mark.parametrize(
    ("name", "keep", "split"),
    [
        ("monuseg", ["MoNuSegTestData"], "test"),
        ("monusac", ["MoNuSAC Testing Data and Annotations"], "test"),
        ("monusac", ["MoNuSAC_images_and_annotations"], "train"),
    ],
)
def test_one_split_without_the_other(name, keep, split, tmp_path, fake_factory):
    """Before: MoNuSeg/MoNuSAC test without the training archive raised DatasetNotFoundError for the training zip."""
    fake = fake_factory(name)
    _native_only(fake, tmp_path, name, keep)
    ds = nf.get_dataset(name, root=tmp_path, split=split, **fake.options)
    assert len(ds) == fake.tiles[split]
    assert {ds.meta(i).split for i in range(len(ds))} == {split}
    assert PreparedStore(ds.store_path).splits == (split,)


@pytest.mark.parametrize("name", ["consep", "cpm17"])
def test_one_archive_two_splits_converts_only_the_asked_split(name, tmp_path, fake_factory):
    """Before: asking for the test split converted (and stored) both splits of CoNSeP / CPM-17."""
    fake = fake_factory(name)
    copy_native(fake, tmp_path, name)
    test = nf.get_dataset(name, root=tmp_path, split="test", **fake.options)
    store = PreparedStore(test.store_path)
    assert store.splits == ("test",)
    assert len(store.samples) == fake.tiles["test"]
    train = nf.get_dataset(name, root=tmp_path, split="train", **fake.options)  # grows the same store
    assert len(train) == fake.tiles["train"]
    grown = PreparedStore(train.store_path)
    assert grown.splits == ("test", "train") and len(grown.samples) == fake.tiles["all"]
    assert grown.verify(full=True) == []


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("consep", {"train": "CoNSeP/Train", "test": "CoNSeP/Test"}),
        ("cpm17", {"train": "cpm17/train", "test": "cpm17/test"}),
    ],
)
def test_one_split_folder_of_a_two_split_archive(name, parts, tmp_path, fake_factory):
    """Issue 24: an extracted CoNSeP (or CPM-17) folder holding only ``Train/`` did not serve ``split="train"``
    (DatasetNotFoundError for the whole archive), although MoNuSeg's test folder alone serves ``split="test"``."""
    fake = fake_factory(name)
    _native_only(fake, tmp_path, name, [parts["train"]])
    train = nf.get_dataset(name, root=tmp_path, split="train", **fake.options)
    assert len(train) == fake.tiles["train"]
    assert {train.meta(i).split for i in range(len(train))} == {"train"}
    assert PreparedStore(train.store_path).splits == ("train",)
    filename = nf.get_dataset_class(name).resources[0].filename
    test_marker = parts["test"].split("/")[1] + "/Labels"  # the part the test split needs
    for split in ("test", "all"):  # the test part is not there: the archive (or its extracted folder) is asked for
        with pytest.raises(DatasetNotFoundError, match=re.escape(filename)) as info:
            nf.get_dataset(name, root=tmp_path, split=split, **fake.options)
        assert f"extracted folder containing {test_marker!r}" in str(info.value) or split == "all"
    sources = nf.get_dataset_class(name).info(tmp_path)["local"]["sources"]
    assert sources == {name: "extracted folder present (split train only)"}
    _native_only(fake, tmp_path, name, [parts["test"]])  # the other part arrives: the same store grows
    full = nf.get_dataset(name, root=tmp_path, **fake.options)
    assert len(full) == fake.tiles["all"]
    assert set(PreparedStore(full.store_path).splits) == {"train", "test"}
    assert nf.get_dataset_class(name).info(tmp_path)["local"]["sources"] == {name: "extracted folder present"}


def test_repair_rebuilds_the_splits_the_store_holds(tmp_path, fake_factory, capsys):
    """A one-fold store is repaired from that fold alone (the other folds need not be present)."""
    fake = fake_factory("pannuke")
    _native_only(fake, tmp_path, "pannuke", ["Fold 1"])
    ds = nf.get_dataset("pannuke", root=tmp_path, split="fold1")
    victim = ds.store_path / PreparedStore(ds.store_path).samples[0]["files"]["instances"]
    victim.write_bytes(victim.read_bytes()[:-4])
    assert main(["verify", "pannuke", "--root", str(tmp_path), "--repair"]) == 0
    assert PreparedStore(ds.store_path).verify(full=True) == []
    assert PreparedStore(ds.store_path).splits == ("fold1",)


# --------------------------------------------------------------------------- 2. composites over what is present


def _two_datasets(tmp_path, fake_factory) -> None:
    copy_native(fake_factory("tnbc"), tmp_path, "tnbc")
    copy_native(fake_factory("monuseg"), tmp_path, "monuseg")


def test_missing_dataset_error_suggests_available_and_rule(tmp_path, fake_factory):
    """Before: the error of the first missing dataset gave only its own download instructions."""
    _two_datasets(tmp_path, fake_factory)
    with pytest.raises(DatasetNotFoundError) as info:
        NucFuseTest(tmp_path)
    message = str(info.value)
    assert "datasets='available'" in message and "--datasets available" in message
    assert "--test-ids rule" in message


def test_available_uses_what_is_present(tmp_path, fake_factory):
    """Before: datasets="available" was refused as "a single dataset"."""
    from nucfuse_datasets.benchmark.selection import available_datasets

    _two_datasets(tmp_path, fake_factory)
    assert available_datasets(tmp_path) == ["monuseg", "tnbc"]  # PAPER_RANKING order: not alphabetic
    test = NucFuseTest(tmp_path, datasets="available", test_ids="rule")
    assert test.subsets == ["monuseg", "tnbc"]  # (the fake tiles are below 256 px, so none is a test tile)
    train = NucFuseTrain(tmp_path, datasets="available", test_ids="rule", split="all")
    assert train.subsets == ["monuseg", "tnbc"]
    assert train.counts()["monuseg"]["tiles"] == fake_factory("monuseg").tiles["all"]
    with pytest.raises(NucFuseError) as info:  # the pinned MoNuSeg list is not in the fake: the error says what to do
        NucFuseTest(tmp_path, datasets="available")
    assert "--test-ids rule" in str(info.value)


def test_available_on_an_empty_root_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        NucFuseTest(tmp_path, datasets="available")


def test_cli_available_and_splits_shows_the_differing_ids(tmp_path, fake_factory, capsys):
    """Before: ``splits --datasets monuseg`` said "DIFFERS" without the ids; ``--datasets available`` was unknown."""
    _two_datasets(tmp_path, fake_factory)
    assert main(["splits", "--datasets", "available", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    pinned = nf.protocol.pinned_test_ids("monuseg")
    assert "monuseg:" in out and "DIFFERS" in out
    assert "only in the shipped list:" in out and pinned[0] in out
    assert "only in the rebuilt list: -" in out  # the fake tiles are below 256 px: none is eligible
    assert "tnbc:" in out
    code = main(["export-test", str(tmp_path / "gt"), "--datasets", "available", "--test-ids", "rule"])
    assert code == 2  # --root missing here: the default root is empty
    assert main(["export-test", str(tmp_path / "gt"), "--root", str(tmp_path), "--datasets", "available",
                 "--test-ids", "rule"]) == 0  # fmt: skip
    assert (tmp_path / "gt" / "nucfuse_test.json").is_file()


# --------------------------------------------------------------------------- 3. one download path


def test_cli_download_recognises_the_extracted_folder(tmp_path, fake_factory, capsys):
    """Before: ``nucfuse download`` downloaded again although the extracted folder was in place."""
    copy_native(fake_factory("tnbc"), tmp_path, "tnbc")  # the autouse fixture fails any download
    assert main(["download", "tnbc", "--root", str(tmp_path)]) == 0
    assert "extracted folder present" in capsys.readouterr().out


def test_cli_download_fetches_one_source_not_every_mirror(tmp_path, serve_fake, capsys):
    """Before: ``download tnbc`` fetched v1.1 and v1 (different hashes) into the same file name."""
    served = serve_fake("tnbc")
    assert main(["download", "tnbc", "--root", str(tmp_path), "--quiet"]) == 0
    assert len(served.calls) == 1 and "/v1.1/" in served.calls[0]
    assert sha256_file(tmp_path / "tnbc" / "TNBC_NucleiSegmentation.zip") == sha256_file(served.fake.archives["v1.1"])


def test_cli_download_refuses_garbage_and_records_nothing(tmp_path, capsys, monkeypatch):
    """Before: a 5 KB garbage "zip" for dsb2018 was kept, its first-use hash recorded, exit 0."""
    from nucfuse_datasets.io.download import use_downloader

    def garbage(url, output):
        Path(output).write_bytes(b"PK\x03\x04" + os.urandom(5000))

    with use_downloader(garbage):
        assert main(["download", "dsb2018", "--root", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    ddir = tmp_path / "dsb2018"
    filename = nf.get_dataset_class("dsb2018").resources[0].filename
    assert "neither a zip nor a tar" in err and f"place it as {ddir / filename}" in err
    assert recorded_hash(ddir, filename) is None
    assert not (ddir / filename).exists()


def test_cli_download_of_a_manual_dataset_gives_the_placement(tmp_path, capsys):
    assert main(["download", "cpm17", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "cpm17") in err and "cpm17.zip" in err and "How to get it" in err


# --------------------------------------------------------------------------- 4. the file and the fix


def test_corrupt_prepared_file_names_the_file_and_repair(tmp_path, fake_factory):
    """Before: a truncated prepared TIFF gave a bare ``ValueError: failed to read ... bytes``."""
    copy_native(fake_factory("tnbc"), tmp_path, "tnbc")
    ds = nf.get_dataset("tnbc", root=tmp_path)
    victim = ds.store_path / "images" / f"{ds.sample_ids[0]}.tif"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    with pytest.raises(PreparedStoreError) as info:
        ds[0]
    assert str(victim) in str(info.value) and "nucfuse verify tnbc --repair" in str(info.value)


def test_truncated_native_tiff_is_one_clear_error_without_noise(tmp_path, fake_factory, caplog, recwarn):
    """Before: "cannot decode TIFF (list index out of range)" plus third-party warnings and log lines."""
    copy_native(fake_factory("monuseg"), tmp_path, "monuseg")
    tif = sorted((tmp_path / "monuseg" / "MoNuSegTestData").glob("*.tif"))[0]
    tif.write_bytes(tif.read_bytes()[:300])
    with pytest.raises(InvalidSourceError) as info:
        nf.get_dataset("monuseg", root=tmp_path, split="test")
    message = str(info.value)
    assert message.startswith(str(tif)) and "truncated or damaged" in message and "again" in message
    assert not [w for w in recwarn if "tifffile" in str(w.filename) or "PIL" in str(w.filename)]
    assert not [r for r in caplog.records if r.name.startswith(("tifffile", "PIL"))]


def test_empty_extracted_folders_say_what_was_searched(tmp_path, capsys):
    """Before: "monuseg: monuseg: the native files produced no samples" (doubled prefix, no paths)."""
    ddir = tmp_path / "monuseg"
    (ddir / "MoNuSegTestData").mkdir(parents=True)
    for sub in ("Tissue Images", "Annotations"):
        (ddir / "MoNuSeg 2018 Training Data" / sub).mkdir(parents=True)
    assert main(["prepare", "monuseg", "--root", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "monuseg: monuseg:" not in err
    assert "produced no samples" in err and str(ddir) in err and "nucfuse info monuseg" in err
    assert not [p.name for p in ddir.iterdir() if p.name.startswith(("prepared", ".tmp-"))]


def test_a_root_that_does_not_exist_is_said_not_to_exist(tmp_path):
    missing = tmp_path / "no-such-root"
    with pytest.raises(DatasetNotFoundError) as info:
        nf.get_dataset("monuseg", root=missing)
    assert f"The data root {missing} does not exist" in str(info.value)
    assert not missing.exists()  # and nothing was created there


def _synthetic_test(root: Path) -> NucFuseTest:
    return NucFuseTest(root, datasets=["synthetic"], dataset_options={"synthetic": {"n_tiles": 14, "tile_size": 256}})


def test_a_raising_predict_fn_names_the_tile(tmp_path):
    """Before: the model's own exception escaped bare, without the tile."""
    test = _synthetic_test(tmp_path)

    def broken(image):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(PredictionFailedError) as info:
        test.evaluate(broken, progress=False)
    tag, sid = test.key(0)
    assert f"{tag}/{sid}" in str(info.value) and "CUDA out of memory" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)  # the traceback into predict_fn is kept


def test_binary_mask_prediction_warns_and_label_components_fixes_it(tmp_path):
    """Before: a uint8 0/1 prediction was scored silently as one giant instance."""
    test = _synthetic_test(tmp_path)
    with pytest.warns(BinaryMaskWarning, match=r"label_components=True") as record:
        binary = test.evaluate(lambda im: (_gt(test, im) > 0).astype(np.uint8), progress=False)
    assert any(f"{test.key(0)[0]}/{test.key(0)[1]}" in str(w.message) for w in record)
    fixed = test.evaluate(lambda im: _gt(test, im) > 0, progress=False, label_components=True)
    # expected: scoring the connected components of the truth, computed here independently with scipy
    from scipy import ndimage

    def components(im):
        return ndimage.label(_gt(test, im) > 0, structure=np.ones((3, 3)))[0]

    with warnings.catch_warnings():
        warnings.simplefilter("error", BinaryMaskWarning)  # a proper instance map does not warn
        reference = test.evaluate(components, progress=False)
    assert fixed.overall["mean"]["pq"] == pytest.approx(reference.overall["mean"]["pq"])
    assert binary.overall["mean"]["pq"] < fixed.overall["mean"]["pq"]


def _gt(test: NucFuseTest, image: np.ndarray) -> np.ndarray:
    for i in range(len(test)):
        sample = test.load_sample(i)
        if sample.image.shape == image.shape and np.array_equal(sample.image, image):
            return sample.instances
    raise AssertionError("image not in the test set")


def test_label_components_matches_scipy():
    rng = np.random.default_rng(0)
    mask = rng.random((64, 64)) > 0.7
    from scipy import ndimage

    ref, n = ndimage.label(mask, structure=np.ones((3, 3)))
    got = label_components(mask)
    assert got.max() == n
    pairs = set(zip(ref[mask].tolist(), got[mask].tolist(), strict=True))  # a bijection between the labelings
    assert len(pairs) == n and len({a for a, _ in pairs}) == n and len({b for _, b in pairs}) == n


def test_bool_prediction_error_mentions_the_option(tmp_path):
    test = _synthetic_test(tmp_path)
    with pytest.raises(InvalidPredictionError, match="label_components"):
        test.evaluate(lambda im: np.zeros(im.shape[:2], bool), progress=False)


def test_missing_empty_warns_in_python_and_on_the_console(tmp_path, capsys):
    """Before: ``--missing empty`` filled tiles with no warning at all."""
    test = _synthetic_test(tmp_path / "data")
    test.export(tmp_path / "gt")
    dropped = sorted((tmp_path / "gt").glob("*.npy"))[:2]
    for p in dropped:
        p.unlink()
        p.with_suffix(".tif").unlink()  # (the exported image, else it would be read as the prediction)
    with pytest.warns(MissingPredictionWarning, match="2 of 14 tiles"):
        test.evaluate_predictions(tmp_path / "gt", missing="empty", progress=False)
    argv = ["evaluate", "--root", str(tmp_path / "data"), "--datasets", "synthetic", "--predictions",
            str(tmp_path / "gt"), "--missing", "empty", "--quiet"]  # fmt: skip
    with pytest.warns(MissingPredictionWarning):
        assert main(argv) == 0
    err = capsys.readouterr().err
    # (the CLI opens synthetic with its default options: other tiles, so more of them lack a prediction)
    assert "warning: " in err and "tiles have no prediction" in err and "scored as empty" in err


# --------------------------------------------------------------------------- 5. the umask


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_files_get_the_umask_mode(tmp_path, fake_factory):
    """Before: manifests, reports and hash records were written 0600 whatever the umask."""
    old = os.umask(0o022)
    try:
        assert default_file_mode() == 0o644
        atomic_write_json(tmp_path / "x.json", {"a": 1})
        assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
        copy_native(fake_factory("tnbc"), tmp_path, "tnbc")
        ds = nf.get_dataset("tnbc", root=tmp_path)
        assert stat.S_IMODE((ds.store_path / "manifest.json").stat().st_mode) == 0o644
        test = _synthetic_test(tmp_path)
        from nucfuse_datasets.baselines import ClassicalBaseline

        paths = test.evaluate(ClassicalBaseline(), progress=False).save(tmp_path / "report")
        assert {stat.S_IMODE(p.stat().st_mode) for p in paths.values()} == {0o644}
        os.umask(0o077)
        atomic_write_json(tmp_path / "private.json", {})
        assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- 6. pictures


def test_plot_sample_crop_zoom_and_thicker_contours():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nucfuse_datasets.schema import Sample, SampleMeta
    from nucfuse_datasets.viz import plot_sample

    inst = np.zeros((1000, 1000), np.int32)
    inst[480:520, 480:520] = 1
    s = Sample(
        image=np.full((1000, 1000, 3), 200, np.uint8),
        instances=inst,
        meta=SampleMeta(dataset="d", sample_id="x", split="all"),
    )
    one_pixel = 4 * 40 - 4  # the inner contour of a 40×40 square, one pixel wide
    fig = plot_sample(s)
    green = np.all(np.asarray(fig.axes[0].images[0].get_array()) == (0, 255, 0), axis=2)
    assert green.sum() > 2 * one_pixel  # on the whole 1000×1000 tile, contours are drawn several pixels wide
    plt.close(fig)
    fig = plot_sample(s, zoom=4, figsize=(6, 6))
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (250, 250, 3) and fig.get_size_inches().tolist() == [6.0, 6.0]
    assert np.all(np.asarray(shown) == (0, 255, 0), axis=2).sum() == one_pixel  # zoomed: the exact contour
    plt.close(fig)
    fig = plot_sample(s, crop=(0, 100, 0, 200))
    assert fig.axes[0].images[0].get_array().shape == (100, 200, 3)
    plt.close(fig)
    with pytest.raises(NucFuseError, match="crop"):
        plot_sample(s, crop=(0, 2000, 0, 10))


def test_demo_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    from nucfuse_datasets.baselines import ClassicalBaseline
    from nucfuse_datasets.cli.demo import write_pictures

    test = _synthetic_test(tmp_path / "data")
    report = test.evaluate(ClassicalBaseline(), progress=False)
    paths = write_pictures(test, report, ClassicalBaseline(), tmp_path)
    assert [p.name for p in paths] == ["tile-synthetic.png", "scores.png"]
    from PIL import Image

    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and min(im.size) >= 400


# --------------------------------------------------------------------------- 7. smaller


def test_root_after_the_subcommand(tmp_path, fake_factory, capsys):
    """Before: ``nucfuse prepare monuseg --root X`` → "unrecognized arguments"."""
    copy_native(fake_factory("monuseg"), tmp_path, "monuseg")
    assert main(["prepare", "monuseg", "--root", str(tmp_path), "--quiet"]) == 0
    assert str(tmp_path / "monuseg" / "prepared") in capsys.readouterr().out
    assert main(["--root", str(tmp_path), "list"]) == 0  # the global option still works


def test_info_says_unknown_not_none(tmp_path, capsys):
    assert main(["info", "monuseg", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "None nuclei" not in out and "None tiles" not in out
    assert "train: 37 tiles, unknown nuclei" in out


def test_markdown_title_says_when_ids_came_from_the_rule(tmp_path):
    from nucfuse_datasets.baselines import ClassicalBaseline

    report = _synthetic_test(tmp_path).evaluate(ClassicalBaseline(), progress=False)
    assert "test ids from the selection rule, not the pinned lists" in report.to_markdown().splitlines()[0]


def test_per_split_download_via_cli_and_prepare_split(tmp_path, serve_fake, capsys):
    served = serve_fake("monuseg")
    assert main(["download", "monuseg", "--split", "test", "--root", str(tmp_path), "--quiet"]) == 0
    assert len(served.calls) == 1 and "/test/" in served.calls[0]
    copy_archives(served.fake, tmp_path / "unused", "monuseg")  # (the fake's archives are plain files)
    assert main(["prepare", "monuseg", "--split", "test", "--root", str(tmp_path), "--quiet"]) == 0
    assert "test: 2 tiles" in capsys.readouterr().out


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_checkpoints_and_downloads_get_the_umask_mode(tmp_path, serve_fake):
    """Before: checkpoints (mkstemp) and downloaded archives (pooch's temporary file) were left 0600."""
    torch = pytest.importorskip("torch")
    from examples.common.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        path = save_checkpoint({"w": torch.ones(1)}, tmp_path / "last.pt")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        serve_fake("monuseg")
        nf.get_dataset("monuseg", root=tmp_path, split="test", download=True)
        assert stat.S_IMODE((tmp_path / "monuseg" / "MoNuSegTestData.zip").stat().st_mode) == 0o644
    finally:
        os.umask(old)
