"""Transports: how bytes at a URL reach a file, and the check of what arrived.

Pooch's HTTP downloader and Google Drive's confirm page; then the check
that what arrived is plausibly the file asked for (not an HTML page, the declared size, an archive).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pooch

from nucfuse_datasets._version import __version__
from nucfuse_datasets.errors import (
    DownloadError,
    UnexpectedContentError,
)

__all__ = ["Downloader", "GoogleDriveTransport", "drive_confirm_request"]

# --------------------------------------------------------------------------- transports


if TYPE_CHECKING:  # pragma: no cover
    from nucfuse_datasets.io.download import Resource

#: A transport writes the bytes found at ``url`` into ``output`` (a path).
Downloader = Callable[[str, Path], None]
_USER_AGENT = f"nucfuse-datasets/{__version__} (+https://arxiv.org/abs/2601.20104)"


def _http_transport(progress: bool) -> Downloader:
    http = pooch.HTTPDownloader(progressbar=progress, headers={"User-Agent": _USER_AGENT}, timeout=60)

    def download(url: str, output: Path) -> None:
        http(url, str(output), None)

    return download


_DRIVE_ID = re.compile(r"(?:[?&]id=|/d/)([A-Za-z0-9_-]{10,})")


def drive_confirm_request(page: str, url: str) -> tuple[str, dict[str, str]] | None:
    """From a Google Drive warning page, the URL and query parameters that confirm the download.

    Handles the form page (``<form id="download-form" action=...>`` with hidden inputs) and the
    older ``confirm=`` link. Returns ``None`` when the page offers no confirmation (quota exceeded,
    sign-in required, file not shared).
    """
    form = re.search(r'<form[^>]*id="download-form"[^>]*action="([^"]+)"', page)
    if form:
        params = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
        return html.unescape(form.group(1)), {k: html.unescape(v) for k, v in params.items()}
    link = re.search(r'href="(/uc\?export=download[^"]*confirm=[^"]+)"', page)
    if link:
        return "https://drive.google.com" + html.unescape(link.group(1)), {}
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    file_id = _DRIVE_ID.search(url)
    if token and file_id:
        return "https://drive.google.com/uc", {
            "export": "download",
            "confirm": token.group(1),
            "id": file_id.group(1),
        }
    return None


class GoogleDriveTransport:
    """Downloads a shared Google Drive file, passing the "can't scan for viruses" confirmation.

    Drive answers large files with an HTML warning page; this transport submits its confirmation
    form once. Any other HTML answer (quota exceeded, sign-in) is left in the output file and
    reported by the content check as an HTML page.
    """

    def __init__(self, session: object | None = None, progress: bool = True) -> None:
        self.session = session
        self.progress = progress

    def __call__(self, url: str, output: Path) -> None:
        """Fetch ``url`` into ``output``, answering Drive's virus-scan confirmation page when it comes."""
        import requests

        session = self.session or requests.Session()
        headers = {"User-Agent": _USER_AGENT}
        try:
            resp = session.get(url, stream=True, timeout=60, headers=headers)  # type: ignore[attr-defined]
            resp.raise_for_status()
            if "text/html" in resp.headers.get("Content-Type", ""):
                page = resp.text
                confirm = drive_confirm_request(page, url)
                if confirm is None:
                    output.write_text(page)
                    return
                action, params = confirm
                resp = session.get(action, params=params, stream=True, timeout=60, headers=headers)  # type: ignore[attr-defined]
                resp.raise_for_status()
            total = int(resp.headers.get("Content-Length") or 0) or None
            _stream_response(resp, output, total, self.progress)
        except requests.RequestException as exc:
            raise DownloadError(f"{url}: {exc}") from None


def _stream_response(resp: object, output: Path, total: int | None, progress: bool) -> None:
    from tqdm.auto import tqdm

    with (
        open(output, "wb") as fh,
        tqdm(total=total, unit="B", unit_scale=True, disable=not progress, desc=output.name[:30], leave=False) as bar,
    ):
        for chunk in resp.iter_content(chunk_size=1 << 20):  # type: ignore[attr-defined]
            if chunk:
                fh.write(chunk)
                bar.update(len(chunk))


# --------------------------------------------------------------------------- content sniffing

_HTML_RE = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body|<\?xml[^>]*>\s*<html)", re.IGNORECASE)


def _looks_like_html(head: bytes) -> bool:
    head = head.lstrip(b"\xef\xbb\xbf")
    return bool(_HTML_RE.match(head)) or (b"<html" in head.lower()[:512] and head.lstrip()[:1] == b"<")


def _sniff_hint(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return ""
    if _looks_like_html(head):
        return " The file is an HTML page (an error, sign-in or quota page), not the data."
    return ""


def _check_content(path: Path, resource: Resource, url: str) -> None:
    """Refuse an HTML page or an implausibly small file before any hashing."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if _looks_like_html(head):
        title = re.search(rb"<title>(.*?)</title>", head + b"", re.IGNORECASE | re.DOTALL)
        what = html.unescape(title.group(1).decode("utf-8", "replace").strip()) if title else "an HTML page"
        raise UnexpectedContentError(
            f"{url} returned an HTML page ({what!r}, {size} bytes) instead of {resource.filename!r}: "
            "usually a sign-in, quota or virus-scan page. Download it by hand"
            + (f" from {resource.page}" if resource.page else "")
            + f" and place it as {path.parent / resource.filename}."
        )
    if resource.size is not None and size != resource.size:
        raise UnexpectedContentError(
            f"{url} delivered {size} bytes for {resource.filename!r}, expected {resource.size} bytes "
            "(an interrupted transfer or a different file)."
        )
    if resource.kind == "archive" and size < 100:
        raise UnexpectedContentError(
            f"{url} delivered only {size} bytes for {resource.filename!r}: too small to be the archive."
        )
    if resource.kind == "archive" and not (resource.sha256 or resource.md5):
        from nucfuse_datasets.io.archive import archive_format

        if archive_format(path) is None:  # never record a first-use hash for something that is not an archive
            raise UnexpectedContentError(
                f"{url} delivered {size} bytes for {resource.filename!r} that are neither a zip nor a tar archive "
                "(an error page or a broken transfer); nothing was kept."
            )
