"""Verified, resumable downloads shared by `model.source` and `model.fetch`.

One function, :func:`fetch`, takes a URL, a destination and the SHA-256 the
file must have. The bytes go to ``DEST.part`` (resumed with an HTTP ``Range``
request when a previous try was interrupted), are hashed while they arrive,
and only a file whose size and SHA-256 match is renamed atomically onto
``DEST``. So the final name never holds a truncated or unverified file:

- a truncated response keeps ``DEST.part`` for the next try to resume and
  raises :class:`DownloadInterrupted`;
- a wrong checksum or size deletes ``DEST.part`` and raises
  :class:`ChecksumMismatch`;
- a file with no pinned checksum is refused (:class:`UnverifiedChecksum`)
  unless the caller trusts it explicitly, and then the computed SHA-256 is
  returned for the user to pin;
- a destination already present with the pinned checksum is not downloaded
  again.

TLS uses the system's CA store (``ssl.create_default_context``) so that a
proxy whose CA the host trusts works; ``HTTPS_PROXY`` and ``SSL_CERT_FILE``
are honoured.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

from sandboxctl.errors import SandboxError

if TYPE_CHECKING:
    from _typeshed import SupportsRead

CHUNK_SIZE = 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) as data arrives."""


def cache_dir() -> Path:
    """Return the download cache of ai-sandbox (XDG_CACHE_HOME honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ai-sandbox"


class DownloadError(SandboxError):
    """A download failed; the message says what happened and what to do."""


class DownloadInterrupted(DownloadError):
    """The transfer stopped early; the partial file is kept for resuming."""


class ChecksumMismatch(DownloadError):
    """The downloaded bytes are not the pinned ones; the partial file is gone."""


class UnverifiedChecksum(DownloadError):
    """No SHA-256 is pinned and the caller did not accept an unverified file."""


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`fetch` left at ``path``."""

    path: Path
    sha256: str
    size: int
    downloaded: bool
    """False when a verified file was already in place."""
    verified: bool
    """True when the SHA-256 matched a pinned value (False only when trusted)."""


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of the file at ``path`` (the one SHA-256 helper)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_blocks(handle: SupportsRead[bytes]) -> Iterator[bytes]:
    """Yield the rest of an open binary file in :data:`CHUNK_SIZE` blocks."""
    return iter(lambda: handle.read(CHUNK_SIZE), b"")


def write_hashed(handle: IO[bytes], blocks: Iterable[bytes], digest: hashlib._Hash) -> int:
    """Write ``blocks`` to ``handle``, hashing them as they pass, then flush it to disk.

    The one hash-while-writing loop: the bytes are read once, and a block is hashed only
    once it is written. Returns the number of bytes written.
    """
    written = 0
    for block in blocks:
        handle.write(block)
        digest.update(block)
        written += len(block)
    handle.flush()
    os.fsync(handle.fileno())
    return written


def write_temporary(dest: Path, blocks: Iterable[bytes]) -> tuple[Path, str, int]:
    """Write ``blocks`` to a new temporary file next to ``dest``; return it, hashed.

    Returns (temporary path, hex SHA-256, size). The file is on disk and readable by the
    model server's non-root user, ready for the caller to verify and rename onto ``dest``;
    if anything fails (``blocks`` raising included) it is deleted and the error propagates.
    """
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            written = write_hashed(out, blocks, digest)
        os.chmod(tmp, 0o644)  # the server reads it as a non-root user
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest(), written


def partial_path(dest: Path) -> Path:
    """Return where the bytes of ``dest`` are kept until they are verified."""
    return dest.with_name(dest.name + ".part")


def http_client(timeout: float = 60.0) -> httpx.Client:
    """Return an httpx client that trusts the system CA store and follows redirects."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    context = ssl.create_default_context(cafile=cafile)
    return httpx.Client(
        verify=context,
        follow_redirects=True,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
        headers={"User-Agent": "ai-sandbox-sandboxctl"},
    )


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (after a rename) to disk where the OS allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_pin(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    pin = sha256.lower()
    if not SHA256_RE.match(pin):
        raise DownloadError(f"pinned SHA-256 {sha256!r} is not 64 hex digits; fix the pin")
    return pin


def _content_range_start(header: str | None) -> int | None:
    """Return the first byte of a ``Content-Range: bytes A-B/T`` header, if any."""
    if not header:
        return None
    match = re.match(r"bytes (\d+)-\d+/(?:\d+|\*)", header.strip())
    return int(match.group(1)) if match else None


def _total_from_headers(response: httpx.Response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"bytes \d+-\d+/(\d+)", content_range.strip())
    if match:
        return int(match.group(1))
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return offset + int(length)
    return None


@contextmanager
def _client_or(client: httpx.Client | None) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
        return
    with http_client() as owned:
        yield owned


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    size: int | None = None,
    trust_unverified: bool = False,
    progress: ProgressCallback | None = None,
    client: httpx.Client | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest``, resuming, verifying and renaming atomically.

    ``sha256`` is the pinned checksum (None when no citable one exists: then
    ``trust_unverified`` must be True, and the result carries the computed
    checksum). ``size``, when known, is checked too. Raises a
    :class:`DownloadError` subclass with a message fit for the user.
    """
    pin = _check_pin(sha256)
    if pin is None and not trust_unverified:
        raise UnverifiedChecksum(
            f"no SHA-256 is pinned for {url}; refusing to download an unverifiable file. "
            "Pin one you can cite, or pass --trust-unverified to accept it and print "
            "the computed SHA-256 to pin."
        )

    if dest.is_file():
        present = sha256_file(dest)
        if pin is None:
            # Trusted before: nothing to compare with, so keep what is there.
            return DownloadResult(dest, present, dest.stat().st_size, False, False)
        if present == pin:
            return DownloadResult(dest, present, dest.stat().st_size, False, True)
        # A stale or corrupt file stays in place until a verified one replaces it.

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    digest = hashlib.sha256()
    offset = 0
    if part.is_file():
        offset = part.stat().st_size
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        else:
            with part.open("rb") as handle:
                for block in file_blocks(handle):
                    digest.update(block)

    with _client_or(client) as http:
        # identity: the checksum is over the file's bytes, never a re-encoding.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with http.stream("GET", url, headers=headers) as response:
                if response.status_code == 416 and offset:
                    # Nothing left to send: the partial file may already be whole.
                    total: int | None = offset
                elif response.status_code == 206 and offset:
                    if _content_range_start(response.headers.get("Content-Range")) != offset:
                        raise DownloadError(
                            f"{url} answered a range request with the wrong range "
                            f"({response.headers.get('Content-Range')!r}); delete {part} and retry"
                        )
                    total = _total_from_headers(response, offset)
                    _append(response, part, digest, offset, total, progress, "ab")
                elif response.status_code == 200:
                    # The server ignored the Range header (or there was none): restart.
                    digest = hashlib.sha256()
                    offset = 0
                    total = _total_from_headers(response, 0)
                    _append(response, part, digest, 0, total, progress, "wb")
                else:
                    raise DownloadError(
                        f"{url} answered HTTP {response.status_code}; check the URL, the "
                        "version or name asked for, and the network/proxy settings"
                    )
        except httpx.TransportError as error:
            have = part.stat().st_size if part.exists() else 0
            raise DownloadInterrupted(
                f"download of {url} stopped after {have} bytes ({error.__class__.__name__}: "
                f"{error}); the partial file {part} is kept: run the command again to resume"
            ) from error

    got = part.stat().st_size
    if total is not None and got < total:
        raise DownloadInterrupted(
            f"download of {url} ended after {got} of {total} bytes; the partial file "
            f"{part} is kept: run the command again to resume"
        )
    actual = digest.hexdigest()
    if size is not None and got != size:
        part.unlink()
        raise ChecksumMismatch(
            f"{url} gave {got} bytes, the catalog/pin says {size}; the partial file was "
            "deleted. The file changed upstream or the pin is wrong: check before retrying."
        )
    if pin is not None and actual != pin:
        part.unlink()
        raise ChecksumMismatch(
            f"SHA-256 mismatch for {url}: expected {pin}, got {actual}; the partial file "
            "was deleted and nothing was installed. The file changed upstream, a proxy "
            "altered it, or the pin is wrong: check before retrying."
        )
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return DownloadResult(dest, actual, got, True, pin is not None)


def _append(
    response: httpx.Response,
    part: Path,
    digest: hashlib._Hash,
    offset: int,
    total: int | None,
    progress: ProgressCallback | None,
    mode: str,
) -> None:
    def arriving() -> Iterator[bytes]:
        # No chunk size: write what arrives as it arrives, so an interrupted
        # transfer keeps every byte it received for the resume.
        done = offset
        if progress is not None:
            progress(done, total)
        for chunk in response.iter_bytes():
            yield chunk  # resumed once the chunk is written and hashed
            done += len(chunk)
            if progress is not None:
                progress(done, total)

    with part.open(mode) as handle:
        write_hashed(handle, arriving(), digest)


@contextmanager
def rich_progress(description: str) -> Iterator[ProgressCallback]:
    """Yield a progress callback drawing a rich progress bar on stderr.

    The bar appears with the first bytes, so nothing is drawn when no
    download happens (a verified file already in place, an early error).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task_ids: list[TaskID] = []

    def update(done: int, total: int | None) -> None:
        if not task_ids:
            bar.start()
            task_ids.append(bar.add_task(description, total=total))
        bar.update(task_ids[0], completed=done, total=total)

    try:
        yield update
    finally:
        if task_ids:
            bar.stop()
