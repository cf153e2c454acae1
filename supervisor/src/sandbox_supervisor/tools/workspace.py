"""Confinement of every path a tool touches to the workspace root, through directory handles.

A path from the model is relative to the workspace root. It is refused when it is
absolute, contains a NUL byte, is longer than ``MAX_PATH`` or has a component longer
than ``MAX_NAME``. Otherwise it is resolved one component at a time, each directory
opened relative to the handle of its parent with ``O_NOFOLLOW`` (``openat``), never by
name from the root again. A symbolic link met on the way is read (``readlinkat``) and
its target walked the same way, from the handle of the directory that holds it (or
from the root, for an absolute target inside the workspace); ``..`` pops the stack of
handles and is refused at the root. So a link leading outside is refused however it
is reached, and a second process that swaps a directory for a link while a tool runs
changes nothing: the tool only ever uses handles it opened itself, beneath the root.
The walk is a loop over a queue of components (no recursion, however deep the path)
and follows at most ``MAX_LINKS`` links. A dangling link is refused (writing through
it would create its target).

Files are created, replaced and renamed relative to the handle of their directory.
Writes are refused at any depth inside a protected directory (``.git``,
``.devcontainer``, ``.vscode``), judged on the resolved path, unless allowed. A regular
file with more than one hard link is not read: its other name may be outside the
workspace, and nothing in the file says which (policy: refuse; a write replaces the
name, never the shared inode, so writes are safe).

The stronger boundary is the ``tools`` container, which mounts the workspace and
nothing else (see ``docs/SECURITY.md``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sandbox_supervisor.tools.textsearch import HardLinked, NotRegular, check_regular

MAX_PATH = 4096
MAX_NAME = 255
MAX_LINKS = 40
PROTECTED_DIRS = frozenset({".git", ".devcontainer", ".vscode"})
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
SUBDIR = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*")
_RETRIES = 5  # re-walks when a name changes kind between the walk and the open


class PathRefused(ValueError):
    """A path was refused; the message says why, in terms a model can act on."""


@dataclass
class Located:
    """A resolved path: an owned handle on its directory and the last name in it.

    ``name`` is None when the path names a directory itself (``.``, ``a/..``): then
    ``dir_fd`` is that directory. ``rel`` is the resolved path from the root.
    """

    dir_fd: int
    name: str | None
    rel: str

    def close(self) -> None:
        """Close the directory handle (idempotent)."""
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


@dataclass(frozen=True)
class Workspace:
    """The root directory that all tool paths are confined to."""

    root: Path
    allow_protected_writes: bool = False

    @classmethod
    def open(cls, root: Path | str, *, allow_protected_writes: bool = False) -> Workspace:
        """Return a workspace for an existing directory (resolved for real)."""
        real = Path(os.path.realpath(root))
        if not real.is_dir():
            raise FileNotFoundError(f"workspace {root} is not a directory")
        return cls(real, allow_protected_writes)

    def sub(self, subdir: str) -> Workspace:
        """A workspace rooted at ``subdir`` below this one, created when missing.

        ``subdir`` is a plain relative path (letters, digits, ``._-`` in each component,
        none starting with a dot); no component may be a link. Parallel runs (``invoke
        eval``) each get one, so their files never meet.
        """
        if not SUBDIR.fullmatch(subdir) or len(subdir) > 200:
            raise PathRefused(
                f"{subdir[:80]!r}: a workspace subdirectory is a relative path of plain names"
            )
        path = self.root
        for part in subdir.split("/"):
            path = path / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o755)
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise PathRefused(f"{subdir!r}: {part!r} is not a directory")
        real = Path(os.path.realpath(path))
        if real != path:
            raise PathRefused(f"{subdir!r} leads elsewhere through a link")
        return Workspace(real, self.allow_protected_writes)

    # -- checks ------------------------------------------------------------------------
    def check_text(self, path: object) -> list[str]:
        """The components of a model's path, or :class:`PathRefused` for its shape."""
        if not isinstance(path, str):
            raise PathRefused("path must be a string")
        if "\x00" in path:
            raise PathRefused("path contains a NUL byte")
        if len(path) > MAX_PATH:
            raise PathRefused(f"path is longer than {MAX_PATH} characters")
        if os.path.isabs(path) or path.startswith("~"):
            raise PathRefused(f"{path!r}: use a path relative to the workspace root")
        parts = _parts(path)
        if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME for p in parts):
            raise PathRefused(f"a component of the path is longer than {MAX_NAME} bytes")
        return parts

    def _protect(self, name: str, path: str) -> None:
        if not self.allow_protected_writes and name in PROTECTED_DIRS:
            raise PathRefused(f"{path!r} is in a protected directory ({name}/)")

    def _inside(self, target: str) -> str | None:
        """An absolute link target as a path from the root, or None when it is outside."""
        root = str(self.root).rstrip("/") or "/"
        if target == root:
            return ""
        prefix = root if root.endswith("/") else root + "/"
        return target[len(prefix) :] if target.startswith(prefix) else None

    # -- the walk ----------------------------------------------------------------------
    def locate(self, path: str, *, write: bool = False, create_dirs: bool = False) -> Located:
        """Resolve ``path`` beneath the root (see the module docstring); the caller closes.

        With ``write``, every resolved component is checked against the protected
        directories; with ``create_dirs``, missing directories on the way are created.
        """
        pending = deque(self.check_text(path))
        from_link = 0  # how many of the first pending parts came from a link's target
        links = 0
        stack = [os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)]
        names: list[str] = []
        try:
            while pending:
                part = pending.popleft()
                linked = from_link > 0
                from_link = max(0, from_link - 1)
                if part == "..":
                    if len(stack) == 1:
                        raise PathRefused(f"{path!r} leaves the workspace")
                    os.close(stack.pop())
                    names.pop()
                    continue
                here = stack[-1]
                try:
                    info: os.stat_result | None = os.stat(part, dir_fd=here, follow_symlinks=False)
                except FileNotFoundError:
                    info = None
                if info is not None and stat.S_ISLNK(info.st_mode):
                    links += 1
                    if links > MAX_LINKS:
                        raise PathRefused(f"{path!r}: more than {MAX_LINKS} links to follow")
                    target = os.readlink(part, dir_fd=here)
                    if target.startswith("/"):
                        inside = self._inside(target)
                        if inside is None:
                            raise PathRefused(f"{path!r} leaves the workspace")
                        while len(stack) > 1:
                            os.close(stack.pop())
                        names.clear()
                        target = inside
                    target_parts = _parts(target)
                    pending.extendleft(reversed(target_parts))
                    from_link += len(target_parts)
                    continue
                if info is None and linked:
                    raise PathRefused(f"{path!r} goes through a dangling link")
                if write:
                    self._protect(part, path)
                if not pending:  # the last name: the caller opens it
                    names.append(part)
                    return Located(stack.pop(), part, "/".join(names))
                if info is None:
                    if not create_dirs:
                        raise FileNotFoundError(2, f"no such directory: {'/'.join([*names, part])}")
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=here)
                try:
                    fd = os.open(part, _DIR_FLAGS, dir_fd=here)
                except NotADirectoryError:
                    again = os.stat(part, dir_fd=here, follow_symlinks=False)
                    if not stat.S_ISLNK(again.st_mode):
                        raise
                    pending.appendleft(part)  # it became a link: walk it as one
                    from_link += linked
                    continue
                stack.append(fd)
                names.append(part)
            return Located(stack.pop(), None, "/".join(names) or ".")
        finally:
            for fd in stack:
                os.close(fd)

    @contextlib.contextmanager
    def located(
        self, path: str, *, write: bool = False, create_dirs: bool = False
    ) -> Iterator[Located]:
        """:meth:`locate` as a context manager that closes the handle."""
        loc = self.locate(path, write=write, create_dirs=create_dirs)
        try:
            yield loc
        finally:
            loc.close()

    # -- opening -----------------------------------------------------------------------
    def open_file(self, path: str) -> tuple[int, str]:
        """Open a regular file for reading without blocking; return (fd, resolved path).

        Raises :class:`NotRegular` for anything else (a FIFO would block a plain open
        until a writer came), and :class:`PathRefused` for a file with several hard links.
        """
        for _ in range(_RETRIES):
            with self.located(path) as loc:
                if loc.name is None:
                    raise NotRegular("a directory")
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
                try:
                    fd = os.open(loc.name, flags, dir_fd=loc.dir_fd)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:  # swapped for a link since the walk
                        continue
                    raise
                try:
                    check_regular(fd)
                except HardLinked as exc:
                    os.close(fd)
                    raise PathRefused(
                        f"{loc.rel!r} has {exc.links} hard links; a hard link may lead outside "
                        "the workspace, so it is not read (copy the file to read it)"
                    ) from None
                except BaseException:
                    os.close(fd)
                    raise
                return fd, loc.rel
        raise PathRefused(f"{path!r} kept changing while it was opened")

    def open_dir(self, path: str) -> tuple[int, str]:
        """Open a directory for listing; return (fd, resolved path)."""
        for _ in range(_RETRIES):
            with self.located(path) as loc:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    fd = os.open(loc.name or ".", flags, dir_fd=loc.dir_fd)
                except NotADirectoryError:
                    if loc.name is not None and stat.S_ISLNK(
                        os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False).st_mode
                    ):
                        continue
                    raise
                return fd, loc.rel
        raise PathRefused(f"{path!r} kept changing while it was opened")

    def relative(self, real: Path) -> str:
        """Return ``real`` relative to the root, with ``/`` separators (``.`` for the root)."""
        rel = os.path.relpath(real, self.root)
        return "." if rel == "." else rel.replace(os.sep, "/")
