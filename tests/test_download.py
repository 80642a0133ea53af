from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
import requests

from nucfuse_datasets.errors import ChecksumError, DownloadError, OfflineError, UnexpectedContentError
from nucfuse_datasets.io import download as dl
from nucfuse_datasets.io.download import (
    GoogleDriveTransport,
    Resource,
    drive_confirm_request,
    fetch,
    use_downloader,
)
from nucfuse_datasets.io.files import md5_file, sha256_file

PAYLOAD = b"PK\x03\x04" + bytes(range(256)) * 40
HTML = b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>x</body></html>"


@pytest.fixture
def payload(tmp_path):
    p = tmp_path / "src.zip"
    p.write_bytes(PAYLOAD)
    return p


def serve(mapping):
    def transport(url, output):
        data = mapping[url]
        if isinstance(data, Exception):
            raise data
        Path(output).write_bytes(data)

    return transport


def res(**kw):
    base = dict(key="k", filename="data.zip", urls=("https://a.invalid/data.zip",), sha256=sha256_file_bytes(PAYLOAD))
    base.update(kw)
    return Resource(**base)


def sha256_file_bytes(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_fetch_ok(tmp_path):
    with use_downloader(serve({"https://a.invalid/data.zip": PAYLOAD})):
        path = fetch(res(), tmp_path / "d", progress=False)
    assert path.read_bytes() == PAYLOAD


def test_checksum_mismatch_names_file_and_hashes(tmp_path):
    with (
        use_downloader(serve({"https://a.invalid/data.zip": PAYLOAD + b"x"})),
        pytest.raises(ChecksumError) as info,
    ):
        fetch(res(), tmp_path, progress=False)
    msg = str(info.value)
    assert "data.zip" in msg and sha256_file_bytes(PAYLOAD) in msg and sha256_file_bytes(PAYLOAD + b"x") in msg
    assert list(tmp_path.iterdir()) == []  # pooch's temporary file is gone


def test_html_page_detected_before_hashing(tmp_path):
    with (
        use_downloader(serve({"https://a.invalid/data.zip": HTML})),
        pytest.raises(UnexpectedContentError) as info,
    ):
        fetch(res(page="https://example.org/page"), tmp_path, progress=False)
    assert "Quota exceeded" in str(info.value) and "HTML" in str(info.value)
    assert "https://example.org/page" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_and_tiny_file(tmp_path):
    with (
        use_downloader(serve({"https://a.invalid/data.zip": PAYLOAD})),
        pytest.raises(UnexpectedContentError, match="expected 5 bytes"),
    ):
        fetch(res(size=5), tmp_path, progress=False)
    with (
        use_downloader(serve({"https://a.invalid/data.zip": b"tiny"})),
        pytest.raises(UnexpectedContentError, match="too small"),
    ):
        fetch(res(sha256=None), tmp_path, progress=False)


def test_mirror_fallback(tmp_path):
    urls = ("https://a.invalid/data.zip", "https://b.invalid/data.zip")
    mapping = {urls[0]: HTML, urls[1]: PAYLOAD}
    with use_downloader(serve(mapping)):
        path = fetch(res(urls=urls), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_all_mirrors_fail(tmp_path):
    urls = ("https://a.invalid/data.zip", "https://b.invalid/data.zip")
    mapping = {urls[0]: ConnectionError("refused"), urls[1]: requests.HTTPError("404 Not Found")}
    with use_downloader(serve(mapping)), pytest.raises(DownloadError) as info:
        fetch(res(urls=urls), tmp_path, progress=False)
    assert all(u in str(info.value) for u in urls) and "404" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_offline_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("NUCFUSE_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        fetch(res(), tmp_path, progress=False)
    assert "data.zip" in str(info.value) and str(tmp_path) in str(info.value)


def test_trust_on_first_use(tmp_path):
    plain = res(sha256=None, kind="file")  # an archive without a hash must also be a readable archive (below)
    with use_downloader(serve({"https://a.invalid/data.zip": PAYLOAD})):
        path = fetch(plain, tmp_path, progress=False)
    assert dl.recorded_hash(tmp_path, "data.zip") == sha256_file(path)
    dl.verify_file(plain, path)  # same bytes: fine
    path.write_bytes(PAYLOAD + b"changed")
    with pytest.raises(ChecksumError, match="recorded on first use"):
        dl.verify_file(plain, path)


def test_unhashed_archive_that_is_no_archive_is_refused_and_not_recorded(tmp_path):
    """Issue 15: a 5 KB garbage "zip" without a published hash was kept and its hash recorded."""
    with use_downloader(serve({"https://a.invalid/data.zip": PAYLOAD})), pytest.raises(UnexpectedContentError) as info:
        fetch(res(sha256=None), tmp_path, progress=False)
    message = str(info.value)
    assert "neither a zip nor a tar" in message
    assert f"place it as {tmp_path / 'data.zip'}" in message  # where a hand-downloaded copy goes
    assert not (tmp_path / "data.zip").exists()
    assert dl.recorded_hash(tmp_path, "data.zip") is None


def test_online_failure_says_where_to_put_a_hand_download(tmp_path):
    """Issue 15: only the offline message said where to place the file; a network failure now does too."""
    failing = serve({"https://a.invalid/data.zip": requests.ConnectionError("connection refused")})
    with use_downloader(failing), pytest.raises(DownloadError) as info:
        fetch(res(page="https://example.org/dataset"), tmp_path, progress=False)
    message = str(info.value)
    assert "connection refused" in message
    assert f"from https://example.org/dataset and place it as {tmp_path / 'data.zip'}" in message


def test_md5_used_when_no_sha256(tmp_path, payload):
    good = res(sha256=None, md5=md5_file(payload))
    dl.verify_file(good, payload)
    with pytest.raises(ChecksumError, match="md5"):
        dl.verify_file(res(sha256=None, md5="0" * 32), payload)


def test_manual_resource_cannot_be_fetched(tmp_path):
    with pytest.raises(DownloadError):
        fetch(res(manual=True), tmp_path, progress=False)


# ---------------------------------------------------------------- Google Drive


FORM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="FILEID123456"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="abc-123"></form></body></html>"""


def test_drive_confirm_request_parses_form_and_legacy_link():
    action, params = drive_confirm_request(FORM_PAGE, "https://drive.google.com/uc?export=download&id=FILEID123456")
    assert action == "https://drive.usercontent.google.com/download"
    assert params == {"id": "FILEID123456", "export": "download", "confirm": "t", "uuid": "abc-123"}
    legacy = '<a href="/uc?export=download&amp;confirm=AbC1&amp;id=FILEID123456">Download anyway</a>'
    assert drive_confirm_request(legacy, "x") == (
        "https://drive.google.com/uc?export=download&confirm=AbC1&id=FILEID123456",
        {},
    )
    assert drive_confirm_request("<html><title>Quota exceeded</title></html>", "x") is None


class FakeAdapter(requests.adapters.BaseAdapter):
    def __init__(self, pages):
        super().__init__()
        self.pages = pages
        self.seen = []

    def send(self, request, **kwargs):
        self.seen.append(request.url)
        body, ctype = self.pages[len(self.seen) - 1]
        resp = requests.Response()
        resp.status_code = 200
        resp.headers["Content-Type"] = ctype
        resp.headers["Content-Length"] = str(len(body))
        resp.raw = __import__("io").BytesIO(body)
        resp.url = request.url
        resp.request = request
        return resp

    def close(self):
        pass


def test_drive_transport_passes_the_virus_scan_page(tmp_path):
    session = requests.Session()
    adapter = FakeAdapter([(FORM_PAGE.encode(), "text/html; charset=utf-8"), (PAYLOAD, "application/zip")])
    session.mount("https://", adapter)
    out = tmp_path / "f"
    GoogleDriveTransport(session=session, progress=False)(
        "https://drive.google.com/uc?export=download&id=FILEID123456", out
    )
    assert out.read_bytes() == PAYLOAD
    assert adapter.seen[1].startswith("https://drive.usercontent.google.com/download?")
    assert "confirm=t" in adapter.seen[1] and "uuid=abc-123" in adapter.seen[1]


def test_drive_quota_page_reported_as_html(tmp_path, monkeypatch):
    session = requests.Session()
    session.mount("https://", FakeAdapter([(HTML, "text/html")]))
    transport = GoogleDriveTransport(session=session, progress=False)
    with use_downloader(transport), pytest.raises(UnexpectedContentError, match="Quota exceeded"):
        fetch(
            res(urls=("https://drive.google.com/uc?export=download&id=FILEID123456",)),
            tmp_path,
            progress=False,
        )


# ---------------------------------------------------------------- real HTTP on loopback


def test_real_http_download_through_pooch(tmp_path, payload):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(payload.parent))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    previous = dl.set_downloader(None)  # the real pooch HTTP transport
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{payload.name}"
        path = fetch(res(urls=(url,)), tmp_path / "d", progress=False)
        assert path.read_bytes() == PAYLOAD
        missing = f"http://127.0.0.1:{server.server_address[1]}/missing.zip"
        with pytest.raises(DownloadError, match="404"):
            fetch(res(urls=(missing,), filename="other.zip"), tmp_path / "d", progress=False)
    finally:
        dl.set_downloader(previous)
        server.shutdown()


def test_a_programming_error_in_a_mirror_is_not_a_mirror_failure(tmp_path):
    # only transport failures move on to the next mirror; a bug (here a TypeError) propagates unchanged
    urls = ("https://a.invalid/data.zip", "https://b.invalid/data.zip")
    mapping = {urls[0]: TypeError("bug in the transport"), urls[1]: PAYLOAD}
    with use_downloader(serve(mapping)), pytest.raises(TypeError, match="bug in the transport"):
        fetch(res(urls=urls), tmp_path, progress=False)
