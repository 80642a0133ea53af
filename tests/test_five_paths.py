"""torchgeo's five paths for every dataset that has a fake native source (tests/fakedata/)."""

from __future__ import annotations

import pytest

from nucfuse_datasets.datasets._registry import get_dataset_class
from nucfuse_datasets.errors import ChecksumError, DatasetNotFoundError, ManualDownloadRequired
from tests.conftest import copy_archives, copy_native, tree_files
from tests.fakedata import generators

NAMES = sorted(generators())


def _check(ds, fake) -> None:
    split = ds.split
    assert len(ds) == fake.tiles[split]
    if split in fake.nuclei:
        assert sum(ds.n_instances(i) for i in range(len(ds))) == fake.nuclei[split]
    from nucfuse_datasets.io.store import PreparedStore

    counts = PreparedStore(ds.store_path).counts
    assert counts["all"]["tiles"] == fake.tiles["all"]  # every tile counted once in the manifest
    if "all" in fake.nuclei:
        assert counts["all"]["nuclei"] == fake.nuclei["all"]
    sample = ds[0]
    sample.validate_values()
    assert sample.meta.dataset == ds.name


@pytest.mark.parametrize("name", NAMES)
def test_fresh_download(name, tmp_path, serve_fake):
    served = serve_fake(name)
    cls = get_dataset_class(name)
    ds = cls(root=tmp_path, download=True, **served.fake.options)
    _check(ds, served.fake)
    assert len(served.calls) == len(served.fake.archives)
    # downloaded archives are kept; extraction folders are not
    assert all((tmp_path / name / a.name).is_file() for a in served.fake.archives.values())
    assert not [p for p in (tmp_path / name).iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("name", NAMES)
def test_already_prepared(name, tmp_path, serve_fake):
    served = serve_fake(name)
    cls = get_dataset_class(name)
    cls(root=tmp_path, download=True, **served.fake.options)
    n_calls = len(served.calls)
    # the sources may even be deleted: the prepared store suffices, with no download
    for a in served.fake.archives.values():
        (tmp_path / name / a.name).unlink()
    ds = cls(root=tmp_path, download=True, **served.fake.options)
    _check(ds, served.fake)
    assert len(served.calls) == n_calls


@pytest.mark.parametrize("name", NAMES)
def test_native_folder_present(name, tmp_path, fake_factory):
    fake = fake_factory(name)
    copy_native(fake, tmp_path, name)
    ds = get_dataset_class(name)(root=tmp_path, download=False, **fake.options)
    _check(ds, fake)


@pytest.mark.parametrize("name", NAMES)
def test_archive_present_not_extracted(name, tmp_path, serve_fake):
    served = serve_fake(name)  # pins the fake archives' hashes
    copy_archives(served.fake, tmp_path, name)
    ds = get_dataset_class(name)(root=tmp_path, download=False, **served.fake.options)
    _check(ds, served.fake)
    assert served.calls == []


@pytest.mark.parametrize("name", NAMES)
def test_corrupted_archive(name, tmp_path, serve_fake):
    served = serve_fake(name)
    folder = copy_archives(served.fake, tmp_path, name)
    victim = folder / next(iter(served.fake.archives.values())).name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=victim.name):
        get_dataset_class(name)(root=tmp_path, download=False, **served.fake.options)
    assert not [f for f in tree_files(folder) if f.startswith(("prepared", ".tmp-"))]


@pytest.mark.parametrize("name", NAMES)
def test_missing(name, tmp_path, fake_factory):
    fake = fake_factory(name)
    cls = get_dataset_class(name)
    with pytest.raises(DatasetNotFoundError) as info:
        cls(root=tmp_path, download=False, **fake.options)
    message = str(info.value)
    for archive in fake.archives.values():
        assert archive.name in message
    assert str(tmp_path / name) in message
    if isinstance(info.value, ManualDownloadRequired):
        assert cls.manual_instructions.strip()[:40] in message
    else:
        assert "download=True" in message
    assert not (tmp_path / name).exists()  # nothing written when nothing was found
