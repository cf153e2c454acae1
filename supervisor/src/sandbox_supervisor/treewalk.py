"""Walking and removing a hostile tree by directory handles, never by path.

Whatever an agent left in the workspace can be in a tree: links to ``/etc``, FIFOs and
devices, a tree 1,500 levels deep whose paths are longer than ``PATH_MAX``. So:

* :func:`walk` goes from directory handle to directory handle (``openat`` with
  ``O_NOFOLLOW``) on an explicit stack, never by path and never recursively; it
  follows no link, and stops at ``max_depth`` with a line.
* :func:`remove_tree` deletes a tree of any depth on an explicit stack (Python's
  ``shutil.rmtree`` recurses, and dies on a deep tree with ``RecursionError``).

:class:`Copied` counts what a walk (or a copy, :mod:`.treecopy`) did and holds one line
per entry it left out; every name in a line is shown with :func:`shown` (``repr``: control
characters come out as escapes, never raw to a terminal). :func:`listing` is the capped
directory read that the tools' ``list_dir`` uses too.
"""

from __future__ import annotations

import contextlib
import os
import resource
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""How every directory of a hostile tree is opened: never through a link."""


@dataclass(frozen=True)
class TreeLimits:
    """Caps of one copy: per file, in all, entries, depth."""

    max_file_bytes: int = 1 << 30
    max_total_bytes: int = 16 << 30
    max_entries: int = 1_000_000
    max_depth: int = 2048


@dataclass
class Copied:
    """What a copy did: counts, and one line per entry it left out."""

    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    refused: list[str] = field(default_factory=list)

    def refuse(self, parts: tuple[str, ...] | str, why: str) -> None:
        """Record one left-out entry."""
        self.refused.append(f"{shown(parts)}: {why}")


def shown(parts: tuple[str, ...] | str) -> str:
    """A path as it may be printed: ``repr`` of it (escapes, no raw control), cut at 200."""
    text = parts if isinstance(parts, str) else "/".join(parts)
    quoted = repr(text)
    return quoted if len(quoted) <= 200 else quoted[:180] + f"...' ({len(text)} chars)"


def enough_descriptors(wanted: int = 65_536) -> None:
    """Raise the soft limit of open files towards ``wanted`` (a deep tree holds one
    handle per level)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def listing(fd: int, cap: int) -> list[str]:
    """The first ``cap`` names read from an open directory, sorted (nothing is opened)."""
    names: list[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            names.append(entry.name)
            if len(names) >= cap:
                break
    names.sort()
    return names


def _to_pop(fd: int, cap: int) -> list[str]:
    """:func:`listing` reversed, so that ``pop`` gives the names in order."""
    return listing(fd, cap)[::-1]


@dataclass
class Entry:
    """One name met by :func:`walk`; ``dir_fd`` is valid only until the walk goes on."""

    parts: tuple[str, ...]
    dir_fd: int
    name: str
    info: os.stat_result


Keep = Callable[[tuple[str, ...], os.stat_result], bool]


def walk(
    root_fd: int, copied: Copied, limits: TreeLimits, keep: Keep | None = None
) -> Iterator[Entry]:
    """Every name below ``root_fd``, a directory before what it holds, names sorted.

    Links are reported, never followed. ``keep(parts, info)`` leaves a name (and what is
    below it) out when it returns False. Directories deeper than ``limits.max_depth``
    are reported and not entered.
    """
    enough_descriptors()
    first = os.open(".", DIR_OPEN, dir_fd=root_fd)
    stack: list[tuple[int, tuple[str, ...], list[str]]] = [
        (first, (), _to_pop(first, limits.max_entries))
    ]
    try:
        while stack:
            fd, prefix, names = stack[-1]
            if not names:
                os.close(fd)
                stack.pop()
                continue
            name = names.pop()
            parts = (*prefix, name)
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if keep is not None and not keep(parts, info):
                continue
            yield Entry(parts, fd, name, info)
            if not stat.S_ISDIR(info.st_mode):
                continue
            if len(parts) >= limits.max_depth:
                copied.refuse(parts, f"more than {limits.max_depth} levels deep; not entered")
                continue
            try:
                child = os.open(name, DIR_OPEN, dir_fd=fd)
            except OSError as exc:
                copied.refuse(parts, f"not entered: {exc.strerror}")
                continue
            try:
                children = _to_pop(child, limits.max_entries)
            except OSError as exc:
                os.close(child)
                copied.refuse(parts, f"not listed: {exc.strerror}")
                continue
            stack.append((child, parts, children))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def kind_of(mode: int) -> str:
    """What a file mode names, in words."""
    for test, word in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return word
    return "an unknown kind of file"


def remove_tree(parent_fd: int, name: str) -> int:
    """Delete ``name`` below ``parent_fd`` and all it holds, at any depth, on an explicit
    stack of handles; links are removed, never followed. Returns the names removed."""
    enough_descriptors()
    removed = 0
    info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return 1
    stack: list[tuple[int, int, str]] = [
        (os.open(name, DIR_OPEN, dir_fd=parent_fd), parent_fd, name)
    ]
    try:
        while stack:
            fd, up, here = stack[-1]
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o700)
            with os.scandir(fd) as entries:
                names = [entry.name for entry in entries]
            subdir = None
            for child in names:
                mode = os.stat(child, dir_fd=fd, follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    subdir = subdir or child
                    continue
                os.unlink(child, dir_fd=fd)
                removed += 1
            if subdir is not None:
                stack.append((os.open(subdir, DIR_OPEN, dir_fd=fd), fd, subdir))
                continue
            os.close(fd)
            stack.pop()
            os.rmdir(here, dir_fd=up)
            removed += 1
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return removed
