"""The built-in tools: their argument models and what each one does.

Every function takes its validated arguments, the :class:`~.workspace.Workspace` and
the :class:`~.types.Limits`, and returns a :class:`~.types.ToolResult`. Paths go
through the workspace's confinement; the :class:`~.registry.Registry` turns
:class:`~.workspace.PathRefused` and ``OSError`` into results, so a tool never raises
for the model's mistakes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox_supervisor.tools.commands import clean_text, run_shell, scrubbed_env
from sandbox_supervisor.tools.textsearch import NotRegular, kind_of, search, search_in_child
from sandbox_supervisor.tools.types import Limits, Status, ToolResult
from sandbox_supervisor.tools.workspace import PathRefused, Workspace
from sandbox_supervisor.treewalk import listing


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class ReadFileArgs(ToolArgs):
    """Arguments of read_file."""

    path: str = Field(description="file path relative to the workspace root")


class WriteFileArgs(ToolArgs):
    """Arguments of write_file."""

    path: str = Field(description="file path relative to the workspace root")
    content: str = Field(description="the whole new content of the file")


class ListDirArgs(ToolArgs):
    """Arguments of list_dir."""

    path: str = Field(".", description="directory relative to the workspace root")


class SearchTextArgs(ToolArgs):
    """Arguments of search_text."""

    pattern: str = Field(min_length=1, description="text (or regular expression) to find")
    path: str = Field(".", description="directory or file to search")
    regex: bool = Field(False, description="treat pattern as a Python regular expression")


class RunCommandArgs(ToolArgs):
    """Arguments of run_command."""

    command: str = Field(min_length=1, description="shell command, run in the workspace root")
    timeout_s: float | None = Field(None, gt=0, description="seconds before it is killed")


def result(name: str, status: Status, output: str, started: float, **kw: Any) -> ToolResult:
    """A result of tool ``name`` that took the time since ``started``."""
    return ToolResult(
        call_id="",
        name=name,
        status=status,
        output=output,
        duration_s=round(time.monotonic() - started, 4),
        **kw,
    )


def read_file(args: ReadFileArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """Return a file's text; a file over the cap comes back as head and tail with a marker.

    Only the head and the tail are read (``pread``), never the middle, so a huge or
    sparse file costs no more than a small one. Anything but a regular file with one
    link is refused without blocking (see :meth:`.Workspace.open_file`).
    """
    started = time.monotonic()
    try:
        fd, _ = ws.open_file(args.path)
    except NotRegular as exc:
        return _not_regular("read_file", args.path, exc.kind, started)
    try:
        size = os.fstat(fd).st_size
        cap = limits.read_cap_bytes
        if size <= cap:
            data = _read_at(fd, 0, cap + 1)
            dropped = max(0, len(data) - cap)
            data = data[:cap]
        else:
            head = _read_at(fd, 0, cap // 2)
            tail = _read_at(fd, size - (cap - cap // 2), cap - cap // 2)
            dropped = size - len(head) - len(tail)
            marker = f"\n[truncated {dropped} bytes]\n".encode()
            data = head + marker + tail
    finally:
        os.close(fd)
    return result("read_file", "ok", clean_text(data), started, truncated=dropped > 0)


def _read_at(fd: int, offset: int, count: int) -> bytes:
    """Up to ``count`` bytes from ``offset`` (short reads continued, EOF ends)."""
    chunks: list[bytes] = []
    while count > 0:
        chunk = os.pread(fd, min(count, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _not_regular(name: str, path: str, kind: str, started: float) -> ToolResult:
    if kind == "a directory":
        return result(name, "failed", f"{path} is a directory; use list_dir", started)
    return result(
        name,
        "refused",
        f"{path} is {kind}, not a regular file; {name} only handles regular files",
        started,
    )


def write_file(args: WriteFileArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """Replace a file atomically: a temporary file, fsync, rename, all relative to the
    directory's handle; parent directories are created on the way.

    An existing target that is not a regular file (a directory, FIFO, socket or
    device) is left alone and the call refused. A rename replaces the name, so a
    hard link's other names keep the old content.
    """
    started = time.monotonic()
    data = args.content.encode("utf-8", errors="surrogateescape")
    if len(data) > limits.write_cap_bytes:
        return result(
            "write_file",
            "refused",
            f"content is {len(data)} bytes; the limit is {limits.write_cap_bytes}",
            started,
        )
    try:
        rel = replace_file(ws, args.path, data)
    except NotRegular as exc:  # a FIFO, socket or device: never replaced or opened
        return _not_regular("write_file", args.path, exc.kind, started)
    return result("write_file", "ok", f"wrote {len(data)} bytes to {rel}", started)


def replace_file(ws: Workspace, path: str, data: bytes, mode: int = 0o644) -> str:
    """Write ``data`` as the file at ``path`` atomically (temporary file, fsync, rename,
    all relative to the directory's handle); return the resolved path.

    Parent directories are created; an existing target that is not a regular file
    raises :class:`NotRegular` and is left alone. ``mode`` is masked to ``0o777``.
    """
    with ws.located(path, write=True, create_dirs=True) as loc:
        if loc.name is None:
            raise PathRefused("cannot write a directory (or the workspace root itself)")
        try:
            existing = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(existing):
                raise NotRegular(kind_of(existing))
        tmp = f".tmp-{secrets.token_hex(6)}.write"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=loc.dir_fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fchmod(handle.fileno(), mode & 0o777)
                os.fsync(handle.fileno())
            os.replace(tmp, loc.name, src_dir_fd=loc.dir_fd, dst_dir_fd=loc.dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=loc.dir_fd)
            raise
        return loc.rel


MAX_LISTED = 100_000  # names read from one directory before the listing stops


def list_dir(args: ListDirArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """List a directory: one entry per line, ``/`` after directories, ``@`` after links.

    A regular file shows its size; any other kind (FIFO, socket, device) shows
    what it is. Nothing listed is opened, only ``lstat``-ed relative to the handle.
    """
    started = time.monotonic()
    try:
        fd, _ = ws.open_dir(args.path)
    except NotADirectoryError:
        return result("list_dir", "failed", f"{args.path} is not a directory", started)
    try:
        names = listing(fd, MAX_LISTED)
        lines = []
        for name in names[: limits.max_entries]:
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode):
                lines.append(f"{name}@")
            elif stat.S_ISDIR(info.st_mode):
                lines.append(f"{name}/")
            elif stat.S_ISREG(info.st_mode):
                lines.append(f"{name}\t{info.st_size}")
            else:
                lines.append(f"{name}\t[{kind_of(info.st_mode)}]")
    finally:
        os.close(fd)
    more = len(names) - limits.max_entries
    if more > 0:
        lines.append(f"[{more}{'+' if len(names) >= MAX_LISTED else ''} more entries]")
    return result(
        "list_dir",
        "ok",
        clean_text("\n".join(lines).encode("utf-8", "replace")),
        started,
        truncated=more > 0,
    )


def search_text(args: SearchTextArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """Find lines containing a text (or matching a regex); ``path:line: text`` per match.

    The start is resolved and opened through the workspace's handles; the walk below
    it goes from handle to handle (see :func:`.textsearch.walk_regular_files`). The
    search stops at ``limits.search_timeout_s`` with a marker; a regex search runs in
    a child process (given the start's handle) killed at that deadline, since one
    backtracking match cannot be interrupted in-process (see :mod:`.textsearch`).
    """
    started = time.monotonic()
    try:
        re.compile(args.pattern if args.regex else re.escape(args.pattern))
    except re.error as exc:
        return result("search_text", "invalid", f"bad regular expression: {exc}", started)
    with ws.located(args.path) as loc:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            start_fd = os.open(loc.name or ".", flags, dir_fd=loc.dir_fd)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise PathRefused(f"{args.path!r} changed while it was opened") from None
        rel = loc.rel
    options: dict[str, Any] = {
        "start_fd": start_fd,
        "start_rel": rel,
        "max_matches": limits.max_matches,
        "read_bytes": limits.read_cap_bytes * 16,
        "timeout_s": limits.search_timeout_s,
    }
    try:
        if args.regex:
            outcome = search_in_child(args.pattern, **options)
        else:
            outcome = search(args.pattern, regex=False, **options)
    finally:
        os.close(start_fd)
    lines = outcome.matches + outcome.notes
    output = "\n".join(lines) if outcome.matches else "\n".join(["no matches", *outcome.notes])
    return result(
        "search_text",
        "timeout" if outcome.hit_deadline else "ok",
        clean_text(output.encode("utf-8", "replace")),
        started,
        truncated=bool(outcome.notes),
    )


def run_command(args: RunCommandArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """Run a shell command in the workspace root (see :mod:`.commands`)."""
    timeout = min(args.timeout_s or limits.command_timeout_s, limits.command_timeout_s)
    outcome = run_shell(
        args.command,
        cwd=str(ws.root),
        timeout_s=timeout,
        grace_s=limits.command_grace_s,
        cap_bytes=limits.output_cap_bytes,
        env=scrubbed_env(home=str(ws.root), secrets=limits.secrets),
    )
    if outcome.timed_out:
        status: Status = "timeout"
        output = f"{outcome.output}\n[killed after {timeout:g} s timeout]"
    else:
        status = "ok" if outcome.exit_code == 0 else "failed"
        output = outcome.output
    return ToolResult(
        call_id="",
        name="run_command",
        status=status,
        output=output,
        exit_code=outcome.exit_code,
        truncated=outcome.truncated,
        duration_s=outcome.duration_s,
        details={"killed_leftovers": outcome.killed_leftovers, "timeout_s": timeout},
    )
