"""Shared fixtures: fake native sources served through the injectable downloader."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nucfuse_datasets.datasets._registry import get_dataset_class
from nucfuse_datasets.io.download import use_downloader
from nucfuse_datasets.io.files import sha256_file
from tests.fakedata import FakeData, generators

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
ORACLE = Path(__file__).resolve().parents[1].parent / "shared" / "metric_oracle"


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a test module: on a shared 2-core runner two threads make the CPU forward and
    backward passes of the recipe tests 10-20x slower, and the results do not depend on it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def realdata(sub: str) -> Path:
    """Path of a real-data folder, or skip the test with a reason naming it."""
    path = REALDATA / sub
    if not path.exists():
        pytest.skip(f"real {sub} samples not found at {path}; skipping")
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test may touch the user's cache or the network by accident."""
    monkeypatch.setenv("NUCFUSE_DATA_DIR", str(tmp_path_factory.mktemp("default-root")))
    monkeypatch.delenv("NUCFUSE_OFFLINE", raising=False)

    def no_network(url: str, output: Path) -> None:
        raise AssertionError(f"a test tried to download {url}")

    with use_downloader(no_network):
        yield


_FAKE_CACHE: dict[str, FakeData] = {}


@pytest.fixture(scope="session")
def fake_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], FakeData]:
    """Build (once per session) the fake native source of a dataset."""

    def build(name: str) -> FakeData:
        if name not in _FAKE_CACHE:
            workdir = tmp_path_factory.mktemp(f"fake-{name}")
            _FAKE_CACHE[name] = generators()[name](workdir)
        return _FAKE_CACHE[name]

    return build


@dataclasses.dataclass
class Served:
    """What :func:`serve_fake` set up: the fake, the URL→file map and a log of downloads."""

    fake: FakeData
    calls: list[str]


@pytest.fixture
def serve_fake(
    monkeypatch: pytest.MonkeyPatch, fake_factory: Callable[[str], FakeData]
) -> Iterator[Callable[[str], Served]]:
    """Point a dataset's resources at its fake archives: URLs served by a copying downloader,
    pinned hashes replaced by the fake archives' sha256 (torchgeo's monkeypatch of url/md5)."""
    active: list[Served] = []
    url_map: dict[str, Path] = {}

    def serve(name: str) -> Served:
        fake = fake_factory(name)
        cls = get_dataset_class(name)
        patched = []
        for res in cls.resources:
            archive = fake.archives.get(res.key)
            if archive is None:
                patched.append(res)
                continue
            url = f"https://fake.invalid/{name}/{res.key}/{res.filename}"
            url_map[url] = archive
            patched.append(
                dataclasses.replace(res, urls=(url,), sha256=sha256_file(archive), md5=None, size=None, manual=False)
            )
        monkeypatch.setattr(cls, "resources", tuple(patched))
        served = Served(fake, [])
        active.append(served)
        return served

    def copy(url: str, output: Path) -> None:
        if url not in url_map:
            raise AssertionError(f"unexpected download of {url}")
        for s in active:
            s.calls.append(url)
        shutil.copyfile(url_map[url], output)

    with use_downloader(copy):
        yield serve


def copy_native(fake: FakeData, root: Path, name: str) -> Path:
    """Put the extracted native layout into ``<root>/<name>/`` (the "downloaded by hand" path)."""
    target = root / name
    shutil.copytree(fake.native_dir, target, dirs_exist_ok=True)
    return target


def copy_archives(fake: FakeData, root: Path, name: str) -> Path:
    target = root / name
    target.mkdir(parents=True, exist_ok=True)
    for archive in fake.archives.values():
        shutil.copyfile(archive, target / archive.name)
    return target


def link_real(root: Path, name: str, targets: list[Path]) -> Path:
    """Symlink real native folders (read in place, never copied) into ``<root>/<name>/``."""
    (root / name).mkdir(parents=True)
    for t in targets:
        (root / name / t.name).symlink_to(t, target_is_directory=True)
    return root


def real_monuseg_root(root: Path) -> Path:
    """A data root whose ``monuseg/`` links the real training and test folders of ``../shared/realdata/monuseg``."""
    src = realdata("monuseg")
    return link_real(root, "monuseg", [src / "MoNuSeg 2018 Training Data", src / "MoNuSegTestData"])


def tree_files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


os.environ.setdefault("TQDM_DISABLE", "1")
