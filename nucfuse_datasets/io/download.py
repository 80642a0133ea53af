"""The only network code of the library: resources, mirrors, verified downloads.

* A :class:`Resource` describes one upstream file: its name on disk, ordered mirror URLs, the
  pinned hash with its provenance (``None`` where no hash is known: then the sha256 of the
  first download is recorded and enforced afterwards), the expected size, and whether a manual
  download is needed.
* :func:`fetch` downloads through pooch (temporary file, then an atomic move) from each mirror
  in turn, detects HTML error pages and implausibly small files *before* hashing, and verifies
  the hash. ``NUCFUSE_OFFLINE=1`` turns any download into :class:`~nucfuse_datasets.errors.OfflineError`.
* :func:`use_downloader` injects a transport (``(url, output_path) -> None``) in place of HTTP;
  tests use it to serve fake archives.

Example:
    >>> import pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "data.bin"; _ = src.write_bytes(b"x" * 2048)
    >>> res = Resource(key="demo", filename="data.bin", urls=("https://example.org/data.bin",),
    ...                kind="file", sha256=sha256_file(src))
    >>> def copy(url, out):
    ...     pathlib.Path(out).write_bytes(src.read_bytes())
    >>> with use_downloader(copy):
    ...     path = fetch(res, pathlib.Path(tempfile.mkdtemp()), progress=False)
    >>> path.name
    'data.bin'
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import http.client
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pooch

from nucfuse_datasets.errors import (
    ChecksumError,
    DownloadError,
    OfflineError,
    UnexpectedContentError,
)
from nucfuse_datasets.io.config import OFFLINE_ENV, is_offline
from nucfuse_datasets.io.files import atomic_write_json, default_file_mode, md5_file, sha256_file
from nucfuse_datasets.io.transports import (  # noqa: F401 - re-exported
    _DRIVE_ID,
    _USER_AGENT,
    Downloader,
    GoogleDriveTransport,
    _check_content,
    _http_transport,
    _sniff_hint,
    _stream_response,
    drive_confirm_request,
)

__all__ = [
    "Downloader",
    "Resource",
    "fetch",
    "get_downloader",
    "recorded_hash",
    "set_downloader",
    "use_downloader",
    "verify_file",
]

log = logging.getLogger("nucfuse_datasets")


_injected: Downloader | None = None
_HASH_RECORD = ".nucfuse-hashes.json"


@dataclass(frozen=True)
class Resource:
    """One upstream file (archive or plain file) or a folder that can only be placed by hand.

    Attributes:
        key: short identifier within the dataset (``"train"``).
        filename: the file name on disk, as the host serves it (for folders: the folder name).
        urls: ordered mirrors; all must serve byte-identical content (same hash).
        sha256: pinned sha256, or ``None`` when no hash is known.
        md5: publisher md5, used only when no sha256 is known.
        size: expected size in bytes, when known.
        marker: path, relative to the extracted content's root, that proves the content is present
            (``"MoNuSeg 2018 Training Data/Annotations"``).
        kind: ``"archive"`` (zip/tar, extracted before conversion), ``"file"`` (used as is) or
            ``"folder"`` (only a hand-placed folder is possible).
        manual: no automatic download is possible (sign-in, Kaggle, a Drive folder, Box).
        page: web page a person visits to get the file.
        hash_source: where the pinned hash comes from.
        required: conversion cannot run without it.
        note: anything a person must know (licence acceptance, which button to press...).
        splits: the dataset splits this resource feeds (empty: every split). Asking for one split needs
            (and downloads) only the resources that feed it.
        split_markers: ``(split, marker)`` pairs for a resource whose content has one part per split
            (CoNSeP's ``Train/`` and ``Test/``): the whole content holds every marker, and an extracted folder
            holding only some parts serves the splits of those parts.
    """

    key: str
    filename: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    marker: str | None = None
    kind: Literal["archive", "file", "folder"] = "archive"
    manual: bool = False
    page: str | None = None
    hash_source: str = ""
    required: bool = True
    note: str = ""
    splits: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    split_markers: tuple[tuple[str, str], ...] = ()

    def feeds(self, splits: tuple[str, ...] | list[str] | set[str]) -> bool:
        """True when this resource feeds any of ``splits`` (a resource without ``splits`` feeds them all)."""
        return not self.splits or bool(set(self.splits) & set(splits))

    def markers(self, splits: tuple[str, ...] | list[str] | None = None) -> tuple[str, ...]:
        """The paths an extracted folder must hold: for ``splits`` (default: the whole content).

        Example:
            >>> r = Resource("a", "a.zip", marker="Train/Labels",
            ...              split_markers=(("train", "Train/Labels"), ("test", "Test/Labels")))
            >>> r.markers(), r.markers(["test"]), Resource("b", "b.zip", marker="B").markers(["test"])
            (('Train/Labels', 'Test/Labels'), ('Test/Labels',), ('B',))
        """
        if self.split_markers and splits is not None:
            return tuple(dict.fromkeys(m for s, m in self.split_markers if s in splits))
        whole = [self.marker] if self.marker else []
        return tuple(dict.fromkeys([*whole, *(m for _, m in self.split_markers)]))

    def placement_hint(self, folder: Path) -> str:
        """Where to put a hand-downloaded copy: the file as downloaded, or the folder it unpacks to."""
        where = self.page or (self.urls[0] if self.urls else None)
        alt = f" (or its extracted folder containing {self.marker!r})" if self.marker and self.kind == "archive" else ""
        return (
            "Download it by hand"
            + (f" from {where}" if where else "")
            + f" and place it as {folder / self.filename}{alt}; then run again."
        )

    @property
    def downloadable(self) -> bool:
        """True when the library can fetch it by itself."""
        return bool(self.urls) and not self.manual and self.kind != "folder"

    def describe(self) -> str:
        """One line for error messages and ``nucfuse info``."""
        bits = [repr(self.filename)]
        if self.size:
            bits.append(f"{self.size:,} bytes")
        if self.sha256:
            bits.append(f"sha256 {self.sha256}")
        elif self.md5:
            bits.append(f"md5 {self.md5}")
        else:
            bits.append("no published hash (recorded on first use)")
        where = self.page or (self.urls[0] if self.urls else None)
        if where:
            bits.append(f"from {where}")
        return ", ".join(bits)


def get_downloader() -> Downloader | None:
    """The injected transport, or ``None`` when real HTTP is used."""
    return _injected


def set_downloader(fn: Downloader | None) -> Downloader | None:
    """Inject a transport (``None`` restores HTTP); returns the previous one."""
    global _injected
    previous, _injected = _injected, fn
    return previous


@contextlib.contextmanager
def use_downloader(fn: Downloader) -> Iterator[None]:
    """Context manager form of :func:`set_downloader`."""
    previous = set_downloader(fn)
    try:
        yield
    finally:
        set_downloader(previous)


# --------------------------------------------------------------------------- hashes


def _record_path(folder: Path) -> Path:
    return folder / _HASH_RECORD


def recorded_hash(folder: Path, filename: str) -> str | None:
    """sha256 recorded on first download of a resource that has no published hash."""
    path = _record_path(folder)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    entry = data.get(filename)
    return entry.get("sha256") if isinstance(entry, dict) else None


def _record_hash(folder: Path, filename: str, digest: str, origin: str) -> None:
    path = _record_path(folder)
    data: dict[str, object] = {}
    if path.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            data = json.loads(path.read_text())
    data[filename] = {
        "sha256": digest,
        "origin": origin,
        "recorded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(path, data)
    log.warning(
        "%s has no published hash; recorded sha256 %s on first use (%s). Later runs verify against it.",
        filename,
        digest,
        origin,
    )


def verify_file(
    resource: Resource,
    path: Path,
    *,
    origin: str = "local file",
    download_to: Path | None = None,
    record: bool = True,
) -> str:
    """Check a local copy of ``resource``; return its sha256.

    Pinned sha256 first, then the publisher's md5, else the sha256 recorded on first use
    (recording it now if this is the first use, unless ``record=False``: preparation records it with
    :func:`record_first_use` only once the file has converted, so a truncated first copy never locks out the
    good one). ``download_to``: ``path`` is a temporary download from ``origin`` meant for that file; a mismatch
    message then names the URL and that file.

    Raises:
        ChecksumError: the hash differs; the message names the file, expected and actual hash.
        UnexpectedContentError: no hash is known yet and the file is an HTML page (nothing is recorded).
    """
    actual = sha256_file(path)
    if resource.sha256:
        if actual != resource.sha256.lower():
            raise ChecksumError(
                _checksum_message(path, "sha256", resource.sha256, actual, resource, origin, download_to)
            )
        return actual
    if resource.md5:
        actual_md5 = md5_file(path)
        if actual_md5 != resource.md5.lower():
            raise ChecksumError(_checksum_message(path, "md5", resource.md5, actual_md5, resource, origin, download_to))
        return actual
    known = recorded_hash(path.parent, resource.filename)
    if known is None:
        if _sniff_hint(path):  # never trust an error page on first use: its hash would lock out the real file
            raise UnexpectedContentError(
                f"{path}: this is an HTML page (an error, sign-in or quota page), not {resource.filename!r}. "
                "Delete it and download the file again"
                + (f" from {resource.page or resource.urls[0]}." if (resource.page or resource.urls) else ".")
            )
        if record:
            _record_hash(path.parent, resource.filename, actual, origin)
    elif known != actual:
        raise ChecksumError(
            _checksum_message(path, "sha256 (recorded on first use)", known, actual, resource)
            + f" If the upstream file really changed, delete {path.parent / _HASH_RECORD} to accept it."
        )
    return actual


def record_first_use(resource: Resource, path: Path, digest: str, origin: str) -> None:
    """Record ``digest`` for a resource without a published hash, unless one is recorded already."""
    if not (resource.sha256 or resource.md5) and recorded_hash(path.parent, resource.filename) is None:
        _record_hash(path.parent, resource.filename, digest, origin)


def _checksum_message(
    path: Path,
    algo: str,
    expected: str,
    actual: str,
    resource: Resource,
    origin: str = "local file",
    download_to: Path | None = None,
) -> str:
    hint = _sniff_hint(path)
    if download_to is not None:  # ``path`` is pooch's temporary file, already gone when the message is read
        return (
            f"{algo} mismatch for {resource.filename!r} downloaded from {origin}: expected {expected}, got {actual}."
            f"{hint} The download was discarded; try again later, or download it by hand"
            + (f" from {resource.page}" if resource.page else "")
            + f" and place it as {download_to}."
        )
    return (
        f"{path}: {algo} mismatch for {resource.filename!r}: expected {expected}, got {actual}."
        f"{hint} Delete the file and download it again"
        + (f" (from {resource.page or resource.urls[0]})." if (resource.page or resource.urls) else ".")
    )


def _transport_for(url: str, progress: bool) -> Downloader:
    if _injected is not None:
        return _injected
    if "drive.google.com" in url or "drive.usercontent.google.com" in url:
        return GoogleDriveTransport(progress=progress)
    return _http_transport(progress)


# --------------------------------------------------------------------------- fetch


def fetch(resource: Resource, folder: Path, *, progress: bool = True, record: bool = True) -> Path:
    """Download ``resource`` into ``folder / resource.filename`` and verify it.

    Mirrors are tried in order; the first that delivers the right bytes wins. Nothing is left in
    ``folder`` when every mirror fails. ``record``: passed to :func:`verify_file` for a resource without
    a published hash.

    Raises:
        OfflineError: ``NUCFUSE_OFFLINE`` is set.
        ChecksumError: a mirror delivered a file with the wrong hash (and no mirror had the right one).
        UnexpectedContentError: a mirror delivered an HTML page or a file of the wrong size.
        DownloadError: every mirror failed for another reason (network, HTTP status).
    """
    dest = folder / resource.filename
    if is_offline():
        raise OfflineError(
            f"{OFFLINE_ENV}=1 is set, so {resource.filename!r} was not downloaded. Place it by hand at "
            f"{dest} ({resource.describe()}), or unset {OFFLINE_ENV}."
        )
    if not resource.downloadable:
        raise DownloadError(f"{resource.filename!r} cannot be downloaded automatically")
    folder.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    checksum_failure: ChecksumError | None = None
    content_failure: UnexpectedContentError | None = None
    for url in resource.urls:
        transport = _transport_for(url, progress)

        def download(
            url_: str, output_file: str, _pooch: object, check_only: bool = False, transport: Downloader = transport
        ) -> None:
            out = Path(output_file)
            transport(url_, out)
            _check_content(out, resource, url_)
            if resource.sha256 or resource.md5:
                verify_file(resource, out, origin=url_, download_to=dest)

        try:
            pooch.retrieve(
                url,
                known_hash=None,
                fname=resource.filename,
                path=folder,
                downloader=download,
                progressbar=False,
            )
        except ChecksumError as exc:
            checksum_failure = exc
            failures.append(f"{url}: {exc}")
            continue
        except UnexpectedContentError as exc:
            content_failure = exc
            failures.append(f"{url}: {exc}")
            continue
        except DownloadError as exc:
            failures.append(f"{url}: {exc}")
            continue
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # a mirror's failure (requests' errors are OSErrors; pooch raises ValueError; a cut-off response
            # HTTPException): try the next one. Anything else is a bug and propagates.
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
            continue
        os.chmod(dest, default_file_mode())  # pooch's temporary file is private (0600); give it open()'s mode
        if not (resource.sha256 or resource.md5):
            verify_file(resource, dest, origin=url, record=record)  # records the sha256 on first download
        return dest
    if checksum_failure is not None and len(failures) == 1:
        raise checksum_failure  # its message already says where to place a hand-downloaded copy
    if content_failure is not None and len(failures) == 1 and "place it as" in str(content_failure):
        raise content_failure
    message = (
        f"could not download {resource.filename!r} from any mirror:\n  "
        + "\n  ".join(failures)
        + "\n"
        + resource.placement_hint(folder)
    )
    if checksum_failure is not None:
        raise ChecksumError(message)
    if content_failure is not None:
        raise UnexpectedContentError(message)
    raise DownloadError(message)
