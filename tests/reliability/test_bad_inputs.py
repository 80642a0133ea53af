"""A bad-input corpus, generated at test time and run through the public API.

Every case takes a dataset's fake native layout or archive (``tests/fakedata``), breaks it in one specific way,
calls ``nucfuse_datasets.get_dataset`` (or downloads through a fake server) and checks that

1. exactly the documented :class:`~nucfuse_datasets.errors.NucFuseError` subclass is raised;
2. its message names the offending file and says what was found or what to do;
3. nothing partial is left (no ``prepared*`` or ``.tmp-*`` entries, the native files unchanged, nothing
   written outside the data root), and, where the case says so, that a rerun after restoring the good input
   prepares the dataset.
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import nucfuse_datasets as nf
from nucfuse_datasets.errors import (
    InvalidSourceError,
    NucFuseError,
)
from nucfuse_datasets.io.store import PreparedStore
from tests.conftest import copy_archives, copy_native
from tests.fakedata import generators
from tests.reliability.corpus import (
    TNBC_GT,
    Case,
    Ctx,
    _assert_nothing_outside,
    _assert_nothing_partial,
    _snapshot,
    all_cases,
    garbage,
)

CASES: list[Case] = all_cases()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on the corrupt TIFFs
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, fake_factory, serve_fake, monkeypatch):
    ctx = Ctx(case.dataset, fake_factory(case.dataset), tmp_path, monkeypatch, serve_fake)
    offenders = case.mutate(ctx)
    offenders = (offenders,) if isinstance(offenders, str) else offenders
    before = _snapshot(ctx.root)

    start = time.perf_counter()
    with pytest.raises(NucFuseError) as info:
        ctx.open()
    elapsed = time.perf_counter() - start

    exc = info.value
    assert type(exc) is case.error, f"expected {case.error.__name__}, got {type(exc).__name__}: {exc}"
    message = str(exc)
    for offender in offenders:
        assert offender in message, f"the message does not name {offender!r}: {message}"
    for fragment in case.fragments:
        assert fragment in message.lower(), f"{fragment!r} missing from: {message}"
    assert "root:x:0:0" not in message  # nothing of /etc/passwd was read into the error
    if case.max_seconds is not None:
        assert elapsed < case.max_seconds, f"took {elapsed:.2f} s"
    _assert_nothing_partial(ctx, before)

    if case.rerun:
        ctx.restore()
        ds = ctx.open()
        assert len(ds) == ctx.fake.tiles[ds.split]
        assert PreparedStore(ds.store_path).verify(full=True) == []
        assert not [p.name for p in ctx.ddir.iterdir() if p.name.startswith(".tmp-")]
        _assert_nothing_outside(ctx)


def test_failed_rebuild_keeps_the_old_store(tmp_path, fake_factory, monkeypatch):
    """A stale store whose rebuild fails on a bad file stays in place, complete and loadable."""
    fake = fake_factory("tnbc")
    copy_native(fake, tmp_path, "tnbc")
    old = nf.get_dataset("tnbc", root=tmp_path)
    old_files = _snapshot(old.store_path)
    cls = nf.get_dataset_class("tnbc")
    monkeypatch.setattr(cls, "converter_version", cls.converter_version + 1)
    bad = sorted((tmp_path / "tnbc").glob(TNBC_GT))[-1]
    bad.write_bytes(garbage(bad))
    with pytest.raises(InvalidSourceError, match=bad.name):
        nf.get_dataset("tnbc", root=tmp_path)
    assert _snapshot(old.store_path) == old_files
    assert PreparedStore(old.store_path).converter_version == cls.converter_version - 1
    assert not [p.name for p in (tmp_path / "tnbc").iterdir() if p.name.startswith(".tmp-")]
    monkeypatch.undo()
    again = nf.get_dataset("tnbc", root=tmp_path)  # the old store is still a valid current store
    assert len(again) == fake.tiles["all"]
    again[0].validate_values()


def test_corpus_ids_unique_and_every_dataset_declares_cases():
    # the corpus is what the fake generators declare: a registered dataset whose generator declares none fails here
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert {c.dataset for c in CASES} == set(nf.list_datasets()) - {"synthetic"} == set(generators())


# --------------------------------------------------------------------------- the positive case: RGBA sources


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("tnbc", "TNBC_NucleiSegmentation/Slide_*/*.png"),
        ("dsb2018", "stage1_train/*/images/*.png"),
        ("consep", "CoNSeP/*/Images/*.png"),
        ("cpm17", "cpm17/test/Images/*.png"),
    ],
)
def test_rgba_source_is_accepted(name, pattern, tmp_path, fake_factory):
    """Where the source's images are RGBA, they convert, and the stored image is their RGB channels."""
    fake = fake_factory(name)
    copy_native(fake, tmp_path, name)
    rgba = {}
    for path in sorted((tmp_path / name).glob(pattern)):
        with Image.open(path) as im:
            if im.mode == "RGBA":
                rgba[path.relative_to(tmp_path / name).as_posix()] = np.asarray(im)
    assert rgba, f"the {name} fake has no RGBA image"
    ds = nf.get_dataset(name, root=tmp_path, **fake.options)
    seen = 0
    for i in range(len(ds)):
        sample = ds[i]
        source = rgba.get(sample.meta.original_file)
        if source is None:
            continue
        seen += 1
        assert sample.image.shape == (*source.shape[:2], 3)
        np.testing.assert_array_equal(sample.image, source[..., :3])
    assert seen, "no RGBA tile was found in the prepared store"


def test_zip_bomb_is_bounded_through_the_public_api(tmp_path, serve_fake, monkeypatch):
    """Preparation extracts with a size bound (ratio to the archive's size, with a floor): a bomb stops early."""
    from nucfuse_datasets.datasets import _sources

    fake = serve_fake("monuseg").fake
    copy_archives(fake, tmp_path, "monuseg")
    archive = tmp_path / "monuseg" / fake.archives["train"].name
    with zipfile.ZipFile(archive) as zf:
        expanded = sum(i.file_size for i in zf.infolist())
    monkeypatch.setattr(_sources, "EXTRACT_MIN_BYTES", 0)
    monkeypatch.setattr(_sources, "EXTRACT_MAX_RATIO", expanded / archive.stat().st_size / 2)  # half of what it needs
    with pytest.raises(InvalidSourceError, match="over the limit") as info:
        nf.get_dataset("monuseg", root=tmp_path)
    assert archive.name in str(info.value)
    assert not [p.name for p in (tmp_path / "monuseg").iterdir() if p.name.startswith((".tmp-", "prepared"))]
    monkeypatch.undo()
    serve_fake("monuseg")
    assert len(nf.get_dataset("monuseg", root=tmp_path)) == fake.tiles["all"]


def _bad_npy_object(path: Path) -> None:
    np.save(path, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)


def _bad_png_garbage(path: Path) -> None:
    path.with_suffix(".png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    path.unlink()


def _bad_npy_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _bad_float_png(path: Path) -> None:
    # the tile's size (a wrong size is refused first, from the header): the dtype is what is wrong
    tifffile.imwrite(path.with_suffix(".tif"), np.full((256, 256), 0.5, np.float32))
    path.unlink()


@pytest.mark.parametrize(
    ("break_it", "text"),
    [
        (_bad_npy_object, "pickle"),
        (_bad_png_garbage, "cannot decode"),
        (_bad_npy_truncated, "npy"),
        (_bad_float_png, "non-integer"),
    ],
    ids=["npy-pickle", "png-garbage", "npy-truncated", "tif-float-labels"],
)
def test_bad_prediction_files_name_the_tile(tmp_path, break_it, text):
    """A folder of saved predictions (``nucfuse evaluate --predictions``) with one broken file."""
    from nucfuse_datasets import NucFuseTest
    from nucfuse_datasets.errors import InvalidPredictionError

    opts = {"synthetic": {"n_tiles": 14, "tile_size": 256}}
    test = NucFuseTest(tmp_path / "data", datasets=["synthetic"], dataset_options=opts, test_ids="rule")
    stems = test.export(tmp_path / "preds")
    for stem in stems:  # keep only the ground-truth maps: a perfect set of predictions
        (tmp_path / "preds" / f"{stem}.tif").unlink()
    victim = tmp_path / "preds" / f"{stems[5]}.npy"
    break_it(victim)
    with pytest.raises(InvalidPredictionError, match=text) as info:
        test.evaluate_predictions(tmp_path / "preds", progress=False)
    assert stems[5] in str(info.value)
