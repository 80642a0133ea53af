"""Safe extraction of zip and tar archives.

Members are streamed one by one into the target folder after checking their names: absolute
paths, ``..`` components, links that resolve outside the target, device files and FIFOs are
refused with :class:`~nucfuse_datasets.errors.UnsafeArchiveError` before anything is written
outside the target. Truncated or corrupt archives raise
:class:`~nucfuse_datasets.errors.InvalidSourceError`. Extract into a temporary folder and
rename it when done, so a failure leaves nothing half-written.

Example:
    >>> import io, zipfile, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with zipfile.ZipFile(d / "a.zip", "w") as z:
    ...     z.writestr("top/x.txt", "hi")
    >>> extract_archive(d / "a.zip", d / "out")
    1
    >>> (d / "out" / "top" / "x.txt").read_text()
    'hi'
"""

from __future__ import annotations

import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from nucfuse_datasets.errors import InvalidSourceError, StorageError, UnsafeArchiveError

__all__ = ["archive_format", "extract_archive"]

#: Folder names that archives made on macOS carry and that hold no data.
JUNK_PREFIXES = ("__MACOSX/",)
_COPY_CHUNK = 1 << 20


def archive_format(path: Path) -> str | None:
    """``"zip"``, ``"tar"`` or ``None`` (not an archive we can read), decided from the content."""
    try:
        if zipfile.is_zipfile(path):
            return "zip"
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        return None
    return None


def _safe_relpath(name: str, archive: Path) -> PurePosixPath | None:
    """Validate a member name and return it as a relative POSIX path (``None`` = skip)."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    norm = posixpath.normpath(raw)
    parts = PurePosixPath(raw).parts
    if ".." in parts or norm.startswith("../") or norm == "..":
        raise UnsafeArchiveError(f"{archive}: member {name!r} escapes the target folder ('..'); refusing to extract")
    if norm in (".", ""):
        return None
    if any(norm.startswith(p.rstrip("/")) and (norm + "/").startswith(p) for p in JUNK_PREFIXES):
        return None
    if "\x00" in norm:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains a NUL byte")
    return PurePosixPath(norm)


def _stream(src: object, dest: Path) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(dest, "wb") as out:
        while True:
            chunk = src.read(_COPY_CHUNK)  # type: ignore[attr-defined]
            if not chunk:
                break
            out.write(chunk)
            n += len(chunk)
    return n


def _extract_zip(archive: Path, target: Path, max_bytes: int | None) -> int:
    count = 0
    total = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # validate every name before writing anything
                _safe_relpath(info.filename, archive)
                mode = (info.external_attr >> 16) & 0xFFFF
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError(
                        f"{archive}: member {info.filename!r} is a symbolic link; refusing to extract"
                    )
            declared = sum(i.file_size for i in infos)
            if max_bytes is not None and declared > max_bytes:
                raise InvalidSourceError(
                    f"{archive}: archive expands to {declared} bytes, over the limit of {max_bytes}"
                )
            for info in infos:
                rel = _safe_relpath(info.filename, archive)
                if rel is None:
                    continue
                dest = target.joinpath(*rel.parts)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                else:
                    with zf.open(info) as src:
                        total += _stream(src, dest)
                    if max_bytes is not None and total > max_bytes:
                        raise InvalidSourceError(f"{archive}: archive expands beyond {max_bytes} bytes")
                count += 1
    except zipfile.BadZipFile as exc:
        raise InvalidSourceError(f"{archive}: corrupt or truncated zip archive ({exc})") from None
    except (EOFError, zipfile.LargeZipFile) as exc:
        raise InvalidSourceError(f"{archive}: corrupt or truncated zip archive ({exc})") from None
    return count


def _extract_tar(archive: Path, target: Path, max_bytes: int | None) -> int:
    count = 0
    total = 0
    links: list[tuple[Path, PurePosixPath]] = []
    try:
        with tarfile.open(archive, mode="r:*") as tf:
            for member in tf:
                rel = _safe_relpath(member.name, archive)
                if rel is None:
                    continue
                dest = target.joinpath(*rel.parts)
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    src = tf.extractfile(member)
                    if src is None:  # pragma: no cover - isfile() members always have data
                        raise InvalidSourceError(f"{archive}: cannot read member {member.name!r}")
                    with src:
                        total += _stream(src, dest)
                    if max_bytes is not None and total > max_bytes:
                        raise InvalidSourceError(f"{archive}: archive expands beyond {max_bytes} bytes")
                elif member.issym() or member.islnk():
                    link = member.linkname.replace("\\", "/")
                    if member.issym():
                        resolved = posixpath.normpath(posixpath.join(str(rel.parent), link))
                    else:
                        resolved = posixpath.normpath(link)
                    if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
                        raise UnsafeArchiveError(
                            f"{archive}: member {member.name!r} links to {member.linkname!r}, outside the "
                            "target folder; refusing to extract"
                        )
                    links.append((dest, PurePosixPath(resolved)))
                else:
                    raise UnsafeArchiveError(
                        f"{archive}: member {member.name!r} is a device, FIFO or other special file"
                    )
                count += 1
    except tarfile.TarError as exc:
        raise InvalidSourceError(f"{archive}: corrupt or truncated tar archive ({exc})") from None
    except (EOFError, OSError) as exc:
        if isinstance(exc, UnsafeArchiveError | InvalidSourceError) or StorageError.matches(exc):
            raise  # a full disk is not a corrupt archive: the dataset base reports it as StorageError
        raise InvalidSourceError(f"{archive}: corrupt or truncated tar archive ({exc})") from None
    # internal links become plain copies of their (already extracted) targets
    for link_path, link_target in links:
        copy_from = target.joinpath(*link_target.parts)
        if copy_from.is_file():
            link_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(copy_from, link_path)
    return count


def extract_archive(archive: Path, target: Path, *, max_bytes: int | None = None) -> int:
    """Extract ``archive`` (zip or any tar) into ``target`` safely; return the number of members written.

    ``__MACOSX/`` entries are skipped. ``max_bytes`` bounds the uncompressed size (zip bombs).

    Raises:
        UnsafeArchiveError: a member would land outside ``target`` or is a special file.
        InvalidSourceError: the file is not an archive, or it is corrupt or truncated.
    """
    archive = Path(archive)
    target = Path(target)
    fmt = archive_format(archive)
    if fmt is None:
        raise InvalidSourceError(f"{archive}: not a zip or tar archive (or it is truncated)")
    target.mkdir(parents=True, exist_ok=True)
    if fmt == "zip":
        return _extract_zip(archive, target, max_bytes)
    return _extract_tar(archive, target, max_bytes)
