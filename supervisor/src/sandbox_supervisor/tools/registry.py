"""Typed tools: each one a name, a description, a JSON schema of its arguments and a function.

Requests and results are plain JSON-able data (:class:`ToolRequest`,
:class:`ToolResult`), so the same tools can run in this process or behind the
``tools`` service. A tool never raises for the model's mistakes: a refused path,
bad arguments or a failing command all come back as a result with a ``status``.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox_supervisor.tools.commands import CappedBuffer, clean_text, run_shell, scrubbed_env
from sandbox_supervisor.tools.textsearch import (
    NotRegularFile,
    kind_of,
    open_regular,
    search,
    search_in_child,
)
from sandbox_supervisor.tools.workspace import PathRefused, Workspace

Status = Literal["ok", "failed", "timeout", "refused", "invalid"]


@dataclass(frozen=True)
class ToolRequest:
    """One tool call: an id unique within the run, the tool's name and its arguments."""

    call_id: str
    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolRequest:
        """Build from the JSON-able form."""
        return cls(str(data["call_id"]), str(data["name"]), dict(data["arguments"]))


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced; ``output`` is what the model sees."""

    call_id: str
    name: str
    status: Status
    output: str
    exit_code: int | None = None
    truncated: bool = False
    duration_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the call did what it was asked (a command exiting 0 for run_command)."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolResult:
        """Build from the JSON-able form."""
        return cls(**data)


@dataclass(frozen=True)
class Limits:
    """Caps and timeouts the tools apply."""

    read_cap_bytes: int = 65_536
    write_cap_bytes: int = 1_048_576
    output_cap_bytes: int = 65_536
    command_timeout_s: float = 60.0
    command_grace_s: float = 2.0
    max_entries: int = 1000
    max_matches: int = 200
    search_timeout_s: float = 10.0  # search_text stops (a regex search is killed) after this
    secrets: tuple[str, ...] = ()  # kept out of commands' environment and of every output


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadFileArgs(_Args):
    """Arguments of read_file."""

    path: str = Field(description="file path relative to the workspace root")


class WriteFileArgs(_Args):
    """Arguments of write_file."""

    path: str = Field(description="file path relative to the workspace root")
    content: str = Field(description="the whole new content of the file")


class ListDirArgs(_Args):
    """Arguments of list_dir."""

    path: str = Field(".", description="directory relative to the workspace root")


class SearchTextArgs(_Args):
    """Arguments of search_text."""

    pattern: str = Field(min_length=1, description="text (or regular expression) to find")
    path: str = Field(".", description="directory or file to search")
    regex: bool = Field(False, description="treat pattern as a Python regular expression")


class RunCommandArgs(_Args):
    """Arguments of run_command."""

    command: str = Field(min_length=1, description="shell command, run in the workspace root")
    timeout_s: float | None = Field(None, gt=0, description="seconds before it is killed")


ToolFunc = Callable[[Any, Workspace, Limits], ToolResult]


@dataclass(frozen=True)
class Tool:
    """A tool: its arguments model (for the schema and validation) and its function."""

    name: str
    description: str
    args: type[_Args]
    func: ToolFunc

    def schema(self) -> dict[str, Any]:
        """Return the JSON schema of the arguments, without pydantic's titles."""
        schema: dict[str, Any] = _strip_titles(self.args.model_json_schema())
        return schema

    def spec(self) -> dict[str, Any]:
        """Return ``{name, description, parameters}`` as sent to the model."""
        return {"name": self.name, "description": self.description, "parameters": self.schema()}


def _strip_titles(node: Any) -> Any:
    """Drop pydantic's ``title`` keys (noise for a model) from a JSON schema."""
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _result(name: str, status: Status, output: str, started: float, **kw: Any) -> ToolResult:
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
    return _result(
        "read_file", "ok", clean_text(buffer.render()), started, truncated=buffer.dropped > 0
    )


def _not_regular(name: str, path: str, kind: str, started: float) -> ToolResult:
    if kind == "a directory":
        return _result(name, "failed", f"{path} is a directory; use list_dir", started)
    return _result(
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
        return _result(
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
    return _result("write_file", "ok", f"wrote {len(data)} bytes to {ws.relative(real)}", started)


def list_dir(args: ListDirArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """List a directory: one entry per line, ``/`` after directories, ``@`` after links.

    A regular file shows its size; any other kind (FIFO, socket, device) shows
    what it is. Nothing listed is opened, only ``lstat``-ed.
    """
    started = time.monotonic()
    real = ws.resolve(args.path)
    if not real.is_dir():
        return _result("list_dir", "failed", f"{args.path} is not a directory", started)
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
    return _result(
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
        return _result("search_text", "invalid", f"bad regular expression: {exc}", started)
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
    return _result(
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


BUILTIN_TOOLS: tuple[Tool, ...] = (
    Tool("read_file", "Read a text file of the workspace.", ReadFileArgs, read_file),
    Tool(
        "write_file",
        "Create or replace a text file of the workspace with the given content.",
        WriteFileArgs,
        write_file,
    ),
    Tool("list_dir", "List a directory of the workspace.", ListDirArgs, list_dir),
    Tool("search_text", "Search the workspace's files for text.", SearchTextArgs, search_text),
    Tool(
        "run_command",
        "Run a shell command in the workspace root; returns its output and exit code.",
        RunCommandArgs,
        run_command,
    ),
)


class Registry:
    """Tools by name, with validation of arguments and no exceptions for model mistakes."""

    def __init__(self, tools: tuple[Tool, ...] = BUILTIN_TOOLS) -> None:
        self.tools = {tool.name: tool for tool in tools}

    def specs(self) -> list[dict[str, Any]]:
        """Return the specs of all tools (JSON-able)."""
        return [tool.spec() for tool in self.tools.values()]

    def call(self, request: ToolRequest, ws: Workspace, limits: Limits) -> ToolResult:
        """Validate and run one request; every outcome is a :class:`ToolResult`."""
        started = time.monotonic()
        tool = self.tools.get(request.name)
        if tool is None:
            known = ", ".join(self.tools)
            result = _result(
                request.name, "invalid", f"unknown tool {request.name!r}; known: {known}", started
            )
        else:
            try:
                args = tool.args.model_validate(request.arguments)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                    for e in exc.errors()
                )
                result = _result(request.name, "invalid", f"bad arguments: {problems}", started)
            else:
                try:
                    result = tool.func(args, ws, limits)
                except PathRefused as exc:
                    result = _result(request.name, "refused", f"path refused: {exc}", started)
                except OSError as exc:
                    reason = exc.strerror or str(exc)
                    result = _result(request.name, "failed", f"{reason}", started)
                except UnicodeError as exc:  # e.g. a lone surrogate that UTF-8 cannot encode
                    result = _result(
                        request.name, "invalid", f"text is not valid Unicode: {exc}", started
                    )
        output = result.output
        for secret in limits.secrets:
            if secret:
                output = output.replace(secret, "[redacted]")
        return ToolResult(**{**result.to_dict(), "call_id": request.call_id, "output": output})
