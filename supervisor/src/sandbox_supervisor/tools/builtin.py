"""The built-in tools: their argument models and what each one does.

Every function takes its validated arguments, the :class:`~.workspace.Workspace` and
the :class:`~.types.Limits`, and returns a :class:`~.types.ToolResult`. Paths go
through the workspace's confinement; the :class:`~.registry.Registry` turns
:class:`~.workspace.PathRefused` and ``OSError`` into results, so a tool never raises
for the model's mistakes.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandbox_supervisor.tools.commands import CappedBuffer, clean_text, run_shell, scrubbed_env
from sandbox_supervisor.tools.textsearch import (
    NotRegularFile,
    kind_of,
    open_regular,
    search,
    search_in_child,
)
from sandbox_supervisor.tools.types import Limits, Status, ToolResult
from sandbox_supervisor.tools.workspace import Workspace


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

    Anything but a regular file is refused without blocking (a FIFO would block
    a plain open until a writer came; see :func:`.textsearch.open_regular`).
    """
    started = time.monotonic()
    real = ws.resolve(args.path)
    try:
        fd = open_regular(real)
    except NotRegularFile as exc:
        return _not_regular("read_file", args.path, exc.kind, started)
    with os.fdopen(fd, "rb") as handle:
        buffer = CappedBuffer(limits.read_cap_bytes)
        while chunk := handle.read(65_536):
            buffer.feed(chunk)
    return result(
        "read_file", "ok", clean_text(buffer.render()), started, truncated=buffer.dropped > 0
    )


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
    """Replace a file atomically (temporary file, fsync, rename); create parent directories.

    An existing target that is not a regular file (a directory, FIFO, socket or
    device) is left alone and the call refused.
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
    real = ws.resolve(args.path, write=True)
    try:
        mode = os.lstat(real).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(mode):  # a FIFO, socket or device: never replaced or opened
            return _not_regular("write_file", args.path, kind_of(mode), started)
    parent = real.parent
    if not parent.exists():
        rel_parent = ws.relative(parent)
        parent.mkdir(parents=True, exist_ok=True)
        ws.resolve(rel_parent, write=True)  # re-check: nothing raced a link in
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".tmp-", suffix=".write")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result("write_file", "ok", f"wrote {len(data)} bytes to {ws.relative(real)}", started)


def list_dir(args: ListDirArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """List a directory: one entry per line, ``/`` after directories, ``@`` after links.

    A regular file shows its size; any other kind (FIFO, socket, device) shows
    what it is. Nothing listed is opened, only ``lstat``-ed.
    """
    started = time.monotonic()
    real = ws.resolve(args.path)
    if not real.is_dir():
        return result("list_dir", "failed", f"{args.path} is not a directory", started)
    lines = []
    with os.scandir(real) as entries:
        ordered = sorted(entries, key=lambda e: e.name)
    for entry in ordered[: limits.max_entries]:
        if entry.is_symlink():
            lines.append(f"{entry.name}@")
        elif entry.is_dir(follow_symlinks=False):
            lines.append(f"{entry.name}/")
        else:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                lines.append(f"{entry.name}\t{info.st_size}")
            else:
                lines.append(f"{entry.name}\t[{kind_of(info.st_mode)}]")
    more = len(ordered) - limits.max_entries
    if more > 0:
        lines.append(f"[{more} more entries]")
    return result(
        "list_dir",
        "ok",
        clean_text("\n".join(lines).encode("utf-8", "replace")),
        started,
        truncated=more > 0,
    )


def search_text(args: SearchTextArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """Find lines containing a text (or matching a regex); ``path:line: text`` per match.

    Only regular files are read (FIFOs and the like are skipped, links not
    followed). The search stops at ``limits.search_timeout_s`` with a marker; a
    regex search runs in a child process killed at that deadline, since one
    backtracking match cannot be interrupted in-process (see :mod:`.textsearch`).
    """
    started = time.monotonic()
    try:
        re.compile(args.pattern if args.regex else re.escape(args.pattern))
    except re.error as exc:
        return result("search_text", "invalid", f"bad regular expression: {exc}", started)
    real = ws.resolve(args.path)
    options: dict[str, Any] = {
        "root": str(real),
        "base": str(ws.root),
        "max_matches": limits.max_matches,
        "read_bytes": limits.read_cap_bytes * 16,
        "timeout_s": limits.search_timeout_s,
    }
    if args.regex:
        outcome = search_in_child(args.pattern, **options)
    else:
        outcome = search(args.pattern, regex=False, **options)
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
