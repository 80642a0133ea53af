from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from nucfuse_datasets.errors import InvalidSourceError, UnsafeArchiveError
from nucfuse_datasets.io.archive import extract_archive


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_zip_roundtrip_skips_macosx(tmp_path):
    a = _zip(tmp_path / "a.zip", [("top/x.txt", "1"), ("__MACOSX/top/._x.txt", "junk"), ("top/sub/y.txt", "2")])
    extract_archive(a, tmp_path / "out")
    assert (tmp_path / "out/top/sub/y.txt").read_text() == "2"
    assert not (tmp_path / "out/__MACOSX").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "top/../../evil.txt", "/abs/evil.txt", "C:/evil.txt"])
def test_zip_traversal_refused_before_writing(tmp_path, name):
    a = _zip(tmp_path / "a.zip", [("ok.txt", "fine"), (name, "bad")])
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        extract_archive(a, tmp_path / "out" / "inner")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()
    # names are all validated first, so not even the harmless member was written
    assert not (tmp_path / "out" / "inner" / "ok.txt").exists()


def test_zip_symlink_refused(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_archive(tmp_path / "a.zip", tmp_path / "out")


def test_truncated_zip(tmp_path):
    a = _zip(tmp_path / "a.zip", [("x.bin", b"0123456789" * 1000)])
    data = a.read_bytes()
    a.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidSourceError, match=r"not a zip or tar|corrupt"):
        extract_archive(a, tmp_path / "out")


def test_html_is_not_an_archive(tmp_path):
    p = tmp_path / "a.zip"
    p.write_text("<!doctype html><html><title>Sign in</title></html>")
    with pytest.raises(InvalidSourceError, match="not a zip or tar"):
        extract_archive(p, tmp_path / "out")


def test_tar_roundtrip_and_internal_link(tmp_path):
    link = tarfile.TarInfo("top/alias.txt")
    link.type = tarfile.SYMTYPE
    link.linkname = "x.txt"
    a = _tar(tmp_path / "a.tar.gz", [_file("top/x.txt", b"data"), (link, None)])
    extract_archive(a, tmp_path / "out")
    assert (tmp_path / "out/top/alias.txt").read_bytes() == b"data"
    assert not (tmp_path / "out/top/alias.txt").is_symlink()


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd"])
def test_tar_link_outside_refused(tmp_path, target):
    link = tarfile.TarInfo("top/evil")
    link.type = tarfile.SYMTYPE
    link.linkname = target
    a = _tar(tmp_path / "a.tar.gz", [(link, None)])
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract_archive(a, tmp_path / "out")
    assert not (tmp_path / "out/top/evil").exists()


def test_tar_traversal_and_device_refused(tmp_path):
    a = _tar(tmp_path / "a.tar.gz", [_file("../evil.txt")])
    with pytest.raises(UnsafeArchiveError):
        extract_archive(a, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    b = _tar(tmp_path / "b.tar.gz", [(dev, None)])
    with pytest.raises(UnsafeArchiveError, match="special"):
        extract_archive(b, tmp_path / "out2")


def test_truncated_tar(tmp_path):
    a = _tar(tmp_path / "a.tar.gz", [_file("x.bin", bytes(range(256)) * 400)])
    data = a.read_bytes()
    a.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InvalidSourceError):
        extract_archive(a, tmp_path / "out")


def test_zip_bomb_limit(tmp_path):
    a = _zip(tmp_path / "a.zip", [("big.bin", b"\0" * 100_000)])
    with pytest.raises(InvalidSourceError, match="limit"):
        extract_archive(a, tmp_path / "out", max_bytes=10_000)
