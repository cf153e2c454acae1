"""What the workspace holds, for the run's record: a manifest of the tree, and the bytes of
the files the record lacks.

This is the tools side (it runs where the workspace is: in the ``tools`` container, or in
process). The record itself is kept by the supervisor in the logs volume
(:mod:`sandbox_supervisor.recording`), which the tools container cannot reach, so a
command cannot rewrite an earlier step's record.

A manifest maps each path (below the run's root, names sorted, no link followed, see
:func:`~sandbox_supervisor.treewalk.walk`) to ``["d", mode]`` (a folder), ``["f", mode,
size, sha256]`` (a regular file; ``sha256`` is None when it is over the cap and not
recorded), ``["l", target]`` (a symbolic link) or ``["o", kind]`` (anything else, not
recorded). Hashes are kept per (device, inode) with size, mtime and ctime, as git keeps
its index: a file whose ctime did not change is not read again (a command can set mtime
back, not ctime).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from typing import Any

from sandbox_supervisor.treewalk import Copied, TreeLimits, kind_of, walk

MAX_RECORDED_BYTES = 64 << 20
MAX_CACHED = 500_000
MAX_BLOB_BATCH_BYTES = 8 << 20
_FILE_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

Manifest = dict[str, list[Any]]

_cache: dict[tuple[int, int], tuple[int, int, int, str]] = {}
_lock = threading.Lock()


def _sha256(dir_fd: int, name: str, info: os.stat_result) -> str | None:
    """The file's SHA-256 (from the cache when size, mtime and ctime are unchanged)."""
    key = (info.st_dev, info.st_ino)
    stamp = (info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    with _lock:
        cached = _cache.get(key)
    if cached is not None and cached[:3] == stamp:
        return cached[3]
    try:
        fd = os.open(name, _FILE_OPEN, dir_fd=dir_fd)
    except OSError:
        return None
    digest = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    value = digest.hexdigest()
    with _lock:
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
        _cache[key] = (*stamp, value)
    return value


def manifest(root_fd: int) -> tuple[Manifest, list[str]]:
    """The manifest of the tree below ``root_fd``, and the lines of what was not entered."""
    copied = Copied()
    found: Manifest = {}
    for entry in walk(root_fd, copied, TreeLimits()):
        info = entry.info
        path = "/".join(entry.parts)
        mode = stat.S_IMODE(info.st_mode) & 0o777
        if stat.S_ISDIR(info.st_mode):
            found[path] = ["d", mode]
        elif stat.S_ISLNK(info.st_mode):
            found[path] = ["l", os.readlink(entry.name, dir_fd=entry.dir_fd)]
        elif stat.S_ISREG(info.st_mode):
            digest = (
                _sha256(entry.dir_fd, entry.name, info)
                if info.st_size <= MAX_RECORDED_BYTES
                else None
            )
            found[path] = ["f", mode, info.st_size, digest]
        else:
            found[path] = ["o", kind_of(info.st_mode)]
    return found, copied.refused


def read_file_at(root_fd: int, path: str) -> bytes | None:
    """The bytes of the regular file at ``path`` below ``root_fd``, every component opened
    with ``O_NOFOLLOW`` (None when it is gone, not regular, or over the cap)."""
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    fds: list[int] = []
    try:
        here = root_fd
        for part in parts[:-1]:
            here = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=here)
            fds.append(here)
        fd = os.open(parts[-1], _FILE_OPEN, dir_fd=here)
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORDED_BYTES:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)


def read_blobs(root_fd: int, paths: list[str]) -> dict[str, bytes | None]:
    """The bytes of each path, until about ``MAX_BLOB_BATCH_BYTES`` (the caller asks again
    for the rest: a path missing from the answer was not read yet)."""
    out: dict[str, bytes | None] = {}
    total = 0
    for path in paths:
        if total >= MAX_BLOB_BATCH_BYTES and out:
            break
        data = read_file_at(root_fd, path)
        out[path] = data
        total += len(data or b"")
    return out
