"""Projects in the workspace: one folder per project below the workspace root, listed,
packed (out) and unpacked (in) as tar streams through :mod:`.treecopy`.

This is the container side of ``invoke workspace.import`` / ``workspace.export`` /
``workspace.list``: the host runs ``sandbox-supervisor workspace ...`` in a one-shot
container that mounts the workspace volume and nothing else, and pipes the stream.
A project's folder is opened with ``O_NOFOLLOW``: if the agent replaced it with a link,
nothing is read through it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from sandbox_supervisor.treecopy import pack, unpack
from sandbox_supervisor.treewalk import Copied, TreeLimits, remove_tree, walk

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ProjectError(ValueError):
    """A project name or folder cannot be used; the message says why."""


def checked_name(name: str) -> str:
    """Return ``name`` when it may name a project (one plain folder name), else raise."""
    if not NAME.fullmatch(name):
        raise ProjectError(
            f"project name {name[:80]!r}: up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _open_root(root: Path) -> int:
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_project(root: Path, name: str) -> int:
    """A handle on the project's folder (never through a link); the caller closes it."""
    root_fd = _open_root(root)
    try:
        return os.open(checked_name(name), _DIR_OPEN, dir_fd=root_fd)
    except FileNotFoundError:
        raise ProjectError(f"no project {name!r} in the workspace") from None
    except (NotADirectoryError, OSError) as exc:
        raise ProjectError(f"{name!r} in the workspace is not a plain folder ({exc})") from None
    finally:
        os.close(root_fd)


def list_projects(root: Path, limits: TreeLimits | None = None) -> list[tuple[str, int, int]]:
    """Every folder at the workspace root: (name, files, bytes); links and files are
    not projects and are left out."""
    limits = limits or TreeLimits()
    found: list[tuple[str, int, int]] = []
    root_fd = _open_root(root)
    try:
        for name in sorted(os.listdir(root_fd)):
            info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                continue
            fd = os.open(name, _DIR_OPEN, dir_fd=root_fd)
            files = size = 0
            try:
                for entry in walk(fd, Copied(), limits):
                    if stat.S_ISREG(entry.info.st_mode):
                        files += 1
                        size += entry.info.st_size
            finally:
                os.close(fd)
            found.append((name, files, size))
    finally:
        os.close(root_fd)
    return found


def pack_project(root: Path, name: str, out: BinaryIO, limits: TreeLimits | None = None) -> Copied:
    """Write project ``name`` to ``out`` as a tar stream."""
    fd = open_project(root, name)
    try:
        return pack(fd, out, limits)
    finally:
        os.close(fd)


def unpack_project(
    root: Path,
    name: str,
    stream: BinaryIO,
    limits: TreeLimits | None = None,
    *,
    replace: bool = False,
) -> Copied:
    """Write a tar stream into project ``name``: a new folder, or (with ``replace``) one
    whose old content is deleted first. A non-empty folder without ``replace`` is refused."""
    checked_name(name)
    root_fd = _open_root(root)
    try:
        try:
            info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None:
            empty = stat.S_ISDIR(info.st_mode) and not _has_entries(root_fd, name)
            if not empty and not replace:
                raise ProjectError(
                    f"the workspace already holds {name!r}; pass --replace to overwrite it "
                    "(its content is deleted first)"
                )
            remove_tree(root_fd, name)
        os.mkdir(name, 0o755, dir_fd=root_fd)
        fd = os.open(name, _DIR_OPEN, dir_fd=root_fd)
    finally:
        os.close(root_fd)
    try:
        return unpack(stream, fd, limits)
    finally:
        os.close(fd)


def _has_entries(dir_fd: int, name: str) -> bool:
    fd = os.open(name, _DIR_OPEN, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            return any(True for _ in entries)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def summary(copied: Copied, verb: str) -> str:
    """One line on what a copy did."""
    return (
        f"{verb} {copied.files} files, {copied.dirs} folders, {copied.links} links, "
        f"{copied.bytes} bytes; {len(copied.refused)} left out"
    )
