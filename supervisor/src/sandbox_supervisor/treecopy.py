"""Folders in and out of the workspace as tar streams, treating the folder and the stream
as hostile.

Whatever an agent left in the workspace can be on the way out: links to ``/etc``,
FIFOs and devices, hard links, a 1 TB sparse file, names that are terminal escapes,
a tree 1,500 levels deep whose paths are longer than ``PATH_MAX``. So:

* :func:`pack` writes what :func:`.treewalk.walk` meets (handle to handle, no link
  followed) as a PAX tar: directories, regular files (their size checked against a cap
  before a byte is read: a sparse file costs nothing), symbolic links as links (not
  followed). Anything else is left out with one line.
* :func:`unpack` writes a tar below a directory handle. Every name is checked
  (no absolute path, no ``..``, no control character, no over-long component),
  every directory on the way is opened with ``O_NOFOLLOW``, so no link, even one
  the same stream created, is ever followed. A symbolic link is kept only when it
  is relative and stays inside the tree; hard links, devices and FIFOs are left out
  with one line; modes are masked to ``0o777``; sizes and counts are capped.

The walk, the caps, the record of what was left out and :func:`remove_tree` live in
:mod:`.treewalk`; they are importable from here too, as before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from typing import IO

from sandbox_supervisor.treewalk import (
    DIR_OPEN,
    Copied,
    Entry,
    Keep,
    TreeLimits,
    enough_descriptors,
    kind_of,
    remove_tree,
    shown,
    walk,
)

__all__ = [
    "Copied",
    "Keep",
    "TreeLimits",
    "checked_parts",
    "link_stays_inside",
    "pack",
    "remove_tree",
    "unpack",
    "walk",
]

_CONTROL = frozenset(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)])
MAX_NAME_BYTES = 255
CHUNK = 1 << 20


class _Exact:
    """Read exactly ``size`` bytes of a file: zeros when it shrank, nothing past the size
    when it grew (the tar header already said the size)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def read(self, count: int = -1) -> bytes:
        count = self.left if count < 0 else min(count, self.left)
        data = os.read(self.fd, count) if count else b""
        if len(data) < count:
            data += bytes(count - len(data))
        self.left -= len(data)
        return data


def pack(
    root_fd: int, out: IO[bytes], limits: TreeLimits | None = None, keep: Keep | None = None
) -> Copied:
    """Write the tree below ``root_fd`` to ``out`` as a PAX tar stream (see the module)."""
    limits = limits or TreeLimits()
    copied = Copied()
    with tarfile.open(
        fileobj=out,
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        for entry in walk(root_fd, copied, limits, keep):
            info = entry.info
            member = tarfile.TarInfo("/".join(entry.parts))
            member.mode = stat.S_IMODE(info.st_mode) & 0o777
            member.mtime = int(info.st_mtime)
            if stat.S_ISDIR(info.st_mode):
                member.type = tarfile.DIRTYPE
                tar.addfile(member)
                copied.dirs += 1
            elif stat.S_ISLNK(info.st_mode):
                member.type = tarfile.SYMTYPE
                member.linkname = os.readlink(entry.name, dir_fd=entry.dir_fd)
                tar.addfile(member)
                copied.links += 1
            elif stat.S_ISREG(info.st_mode):
                _pack_file(tar, member, entry, copied, limits)
            else:
                copied.refuse(entry.parts, f"{kind_of(info.st_mode)}; not copied")
    return copied


def _pack_file(
    tar: tarfile.TarFile, member: tarfile.TarInfo, entry: Entry, copied: Copied, limits: TreeLimits
) -> None:
    """Add one regular file, when its size fits the caps (checked before reading)."""
    size = entry.info.st_size
    if size > limits.max_file_bytes:
        copied.refuse(entry.parts, f"{size} bytes, over the {limits.max_file_bytes}-byte cap")
        return
    if copied.bytes + size > limits.max_total_bytes:
        copied.refuse(entry.parts, f"the copy would pass {limits.max_total_bytes} bytes in all")
        return
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(entry.name, flags, dir_fd=entry.dir_fd)
    except OSError as exc:
        copied.refuse(entry.parts, f"not read: {exc.strerror}")
        return
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limits.max_file_bytes:
            copied.refuse(entry.parts, "changed while it was read; not copied")
            return
        member.size = info.st_size
        tar.addfile(member, _Exact(fd, info.st_size))
        copied.files += 1
        copied.bytes += info.st_size
    finally:
        os.close(fd)


def checked_parts(name: str, max_depth: int) -> tuple[tuple[str, ...], str | None]:
    """A tar member's name as components, and why it is refused (None when it is not)."""
    if name.startswith("/"):
        return (), "an absolute name"
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if not parts:
        return (), "an empty name"
    if ".." in parts:
        return parts, "a '..' component"
    if any(ch in _CONTROL for ch in name):
        return parts, "a control character in the name"
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts):
        return parts, f"a component longer than {MAX_NAME_BYTES} bytes"
    if len(parts) > max_depth:
        return parts, f"more than {max_depth} levels deep"
    return parts, None


def link_stays_inside(parts: tuple[str, ...], target: str) -> bool:
    """Whether a symbolic link at ``parts`` with ``target`` resolves (by its text) inside
    the tree: relative, and never above the root on the way."""
    if not target or target.startswith("/") or "\x00" in target:
        return False
    depth = len(parts) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


class _Cursor:
    """The open directories from the destination down to the current one, so members in
    tar order (parents first) cost one ``openat`` each, at any depth."""

    def __init__(self, root_fd: int, modes: dict[tuple[str, ...], int]) -> None:
        self.root_fd = root_fd
        self.names: list[str] = []
        self.fds: list[int] = []
        self.modes = modes

    def here(self) -> int:
        return self.fds[-1] if self.fds else self.root_fd

    def _pop(self) -> None:
        parts = tuple(self.names)
        fd = self.fds.pop()
        self.names.pop()
        mode = self.modes.pop(parts, None)
        try:
            if mode is not None:
                os.fchmod(fd, mode | 0o700)
        finally:
            os.close(fd)

    def go(self, parts: tuple[str, ...]) -> int:
        """The handle of directory ``parts`` (created when missing, never through a link)."""
        common = 0
        while common < min(len(parts), len(self.names)) and parts[common] == self.names[common]:
            common += 1
        while len(self.names) > common:
            self._pop()
        for part in parts[common:]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=self.here())
            fd = os.open(part, DIR_OPEN, dir_fd=self.here())  # ELOOP/ENOTDIR: not a dir
            self.fds.append(fd)
            self.names.append(part)
        return self.here()

    def close(self) -> None:
        while self.fds:
            self._pop()


def _clear_name(dir_fd: int, name: str, *, keep_dir: bool) -> None:
    """Make room for ``name``: unlink what is there unless it is a directory we keep."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        if keep_dir:
            return
        raise IsADirectoryError(errno.EISDIR, "a directory is in the way")
    os.unlink(name, dir_fd=dir_fd)


def unpack(stream: IO[bytes], dest_fd: int, limits: TreeLimits | None = None) -> Copied:
    """Write the tar stream's members below ``dest_fd`` (see the module docstring)."""
    limits = limits or TreeLimits()
    enough_descriptors()
    copied = Copied()
    modes: dict[tuple[str, ...], int] = {}
    cursor = _Cursor(dest_fd, modes)
    count = 0
    try:
        with tarfile.open(
            fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape"
        ) as tar:
            for member in tar:
                count += 1
                if count > limits.max_entries:
                    copied.refuse(member.name, f"past {limits.max_entries} entries; stopped")
                    break
                parts, why = checked_parts(member.name, limits.max_depth)
                if why is not None:
                    copied.refuse(member.name, f"{why}; not written")
                    continue
                try:
                    _unpack_one(tar, member, parts, cursor, copied, limits, modes)
                except OSError as exc:
                    reason = (
                        "goes through a link or a file"
                        if exc.errno in (errno.ELOOP, errno.ENOTDIR)
                        else (exc.strerror or str(exc))
                    )
                    copied.refuse(parts, f"{reason}; not written")
    finally:
        cursor.close()
    return copied


def _unpack_one(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    parts: tuple[str, ...],
    cursor: _Cursor,
    copied: Copied,
    limits: TreeLimits,
    modes: dict[tuple[str, ...], int],
) -> None:
    """Write one checked member."""
    if member.isdir():
        cursor.go(parts)
        modes[parts] = member.mode & 0o777
        copied.dirs += 1
        return
    here = cursor.go(parts[:-1])
    name = parts[-1]
    if member.issym():
        if not link_stays_inside(parts, member.linkname):
            copied.refuse(
                parts, f"a link to {shown(member.linkname)}, outside the tree; not written"
            )
            return
        _clear_name(here, name, keep_dir=False)
        os.symlink(member.linkname, name, dir_fd=here)
        copied.links += 1
        return
    if member.islnk():
        copied.refuse(parts, f"a hard link to {shown(member.linkname)}; not written")
        return
    if not member.isreg():
        copied.refuse(parts, "a device, FIFO or other special file; not written")
        return
    if member.size > limits.max_file_bytes:
        copied.refuse(parts, f"{member.size} bytes, over the {limits.max_file_bytes}-byte cap")
        return
    if copied.bytes + member.size > limits.max_total_bytes:
        copied.refuse(parts, f"the copy would pass {limits.max_total_bytes} bytes in all")
        return
    source = tar.extractfile(member)
    if source is None:
        copied.refuse(parts, "no content in the stream; not written")
        return
    _clear_name(here, name, keep_dir=False)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=here)
    try:
        left = member.size
        while left > 0:
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                break
            os.write(fd, chunk)
            left -= len(chunk)
        os.fchmod(fd, member.mode & 0o777)
        os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)
    copied.files += 1
    copied.bytes += member.size
