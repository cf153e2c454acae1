"""Unit tests of sandboxctl.download against a real HTTP server on 127.0.0.1.

The server serves one payload and can be told to ignore Range headers, to
cut a response short, or to answer 404; it records every request's Range
header so resume behaviour is observable.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandboxctl import download

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not all one byte value
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the test server does, and what it saw."""

    payload: bytes = PAYLOAD
    honour_range: bool = True
    truncate_at: int | None = None
    status: int = 200
    ranges: list[str | None] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        header = self.headers.get("Range")
        state.ranges.append(header)
        if state.status != 200:
            self.send_error(state.status)
            return
        data = state.payload
        start = 0
        if header and state.honour_range:
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.truncate_at is not None:
            self.wfile.write(body[: state.truncate_at])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = state  # type: ignore[attr-defined]
    # A short poll: shutdown() waits up to one poll_interval (0.5 s by default).
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/model.gguf", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_downloads_and_verifies_pinned_checksum(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, _state = server
    dest = tmp_path / "m.gguf"
    result = download.fetch(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert (result.downloaded, result.verified, result.sha256) == (True, True, PAYLOAD_SHA)
    assert not download.partial_path(dest).exists()


def test_fetch_without_pin_is_refused_before_any_request(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, state = server
    dest = tmp_path / "m.gguf"
    with pytest.raises(download.UnverifiedChecksum, match="--trust-unverified"):
        download.fetch(url, dest, sha256=None)
    assert state.ranges == []
    assert list(tmp_path.iterdir()) == []


def test_fetch_trust_unverified_returns_computed_checksum(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, _state = server
    result = download.fetch(url, tmp_path / "m.gguf", sha256=None, trust_unverified=True)
    assert (result.sha256, result.verified) == (PAYLOAD_SHA, False)


def test_fetch_wrong_checksum_deletes_partial_and_installs_nothing(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, _state = server
    dest = tmp_path / "m.gguf"
    with pytest.raises(download.ChecksumMismatch, match="partial file was deleted"):
        download.fetch(url, dest, sha256="0" * 64)
    assert not dest.exists()
    assert not download.partial_path(dest).exists()


def test_fetch_wrong_size_deletes_partial(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, _state = server
    dest = tmp_path / "m.gguf"
    with pytest.raises(download.ChecksumMismatch, match="bytes"):
        download.fetch(url, dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD) + 1)
    assert not dest.exists()
    assert not download.partial_path(dest).exists()


def test_truncated_response_keeps_partial_and_installs_nothing(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, state = server
    state.truncate_at = 1000
    dest = tmp_path / "m.gguf"
    with pytest.raises(download.DownloadInterrupted, match="resume"):
        download.fetch(url, dest, sha256=PAYLOAD_SHA)
    assert not dest.exists()
    assert download.partial_path(dest).read_bytes() == PAYLOAD[:1000]


def test_rerun_after_truncation_resumes_with_range_request(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, state = server
    dest = tmp_path / "m.gguf"
    state.truncate_at = 4096
    with pytest.raises(download.DownloadInterrupted):
        download.fetch(url, dest, sha256=PAYLOAD_SHA)
    state.truncate_at = None
    result = download.fetch(url, dest, sha256=PAYLOAD_SHA)
    assert state.ranges == [None, "bytes=4096-"]
    assert dest.read_bytes() == PAYLOAD
    assert result.verified


def test_resume_restarts_when_server_ignores_range(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, state = server
    state.honour_range = False
    dest = tmp_path / "m.gguf"
    download.partial_path(dest).write_bytes(b"stale bytes that are not the payload")
    result = download.fetch(url, dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert result.sha256 == PAYLOAD_SHA


def test_complete_partial_is_verified_after_416(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, state = server
    dest = tmp_path / "m.gguf"
    download.partial_path(dest).write_bytes(PAYLOAD)
    result = download.fetch(url, dest, sha256=PAYLOAD_SHA)
    assert state.ranges == [f"bytes={len(PAYLOAD)}-"]
    assert result.verified
    assert dest.read_bytes() == PAYLOAD


def test_verified_file_already_present_is_not_downloaded_again(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, state = server
    dest = tmp_path / "m.gguf"
    dest.write_bytes(PAYLOAD)
    result = download.fetch(url, dest, sha256=PAYLOAD_SHA)
    assert state.ranges == []
    assert (result.downloaded, result.verified) == (False, True)


def test_corrupt_file_present_is_replaced_by_verified_download(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    url, _state = server
    dest = tmp_path / "m.gguf"
    dest.write_bytes(b"corrupt")
    result = download.fetch(url, dest, sha256=PAYLOAD_SHA)
    assert result.downloaded
    assert dest.read_bytes() == PAYLOAD


def test_http_error_names_the_status(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, state = server
    state.status = 404
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.fetch(url, tmp_path / "m.gguf", sha256=PAYLOAD_SHA)
    assert not (tmp_path / "m.gguf").exists()


def test_malformed_pin_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(download.DownloadError, match="64 hex"):
        download.fetch("http://127.0.0.1:9/x", tmp_path / "m", sha256="abc")


def test_progress_callback_reaches_total(server: tuple[str, ServerState], tmp_path: Path) -> None:
    url, _state = server
    seen: list[tuple[int, int | None]] = []
    download.fetch(
        url, tmp_path / "m.gguf", sha256=PAYLOAD_SHA, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
