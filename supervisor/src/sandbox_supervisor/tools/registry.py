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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox_supervisor.tools.commands import CappedBuffer, clean_text, run_shell, scrubbed_env
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
    """Return a file's text; a file over the cap comes back as head and tail with a marker."""
    started = time.monotonic()
    real = ws.resolve(args.path)
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return _result("read_file", "failed", f"{args.path} is not a regular file", started)
        buffer = CappedBuffer(limits.read_cap_bytes)
        while chunk := handle.read(65_536):
            buffer.feed(chunk)
    return _result(
        "read_file", "ok", clean_text(buffer.render()), started, truncated=buffer.dropped > 0
    )


def write_file(args: WriteFileArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """Replace a file atomically (temporary file, fsync, rename); create parent directories."""
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
    if real.is_dir():
        return _result("write_file", "failed", f"{args.path} is a directory", started)
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
    """List a directory: one entry per line, ``/`` after directories, ``@`` after links."""
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
            size = entry.stat(follow_symlinks=False).st_size
            lines.append(f"{entry.name}\t{size}")
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


def _walk_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not path.is_symlink():
                yield path


def search_text(args: SearchTextArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """Find lines containing a text (or matching a regex); ``path:line: text`` per match."""
    started = time.monotonic()
    try:
        pattern = re.compile(args.pattern if args.regex else re.escape(args.pattern))
    except re.error as exc:
        return _result("search_text", "invalid", f"bad regular expression: {exc}", started)
    real = ws.resolve(args.path)
    matches: list[str] = []
    for path in _walk_files(real):
        try:
            with path.open("rb") as handle:
                data = handle.read(limits.read_cap_bytes * 16)
        except OSError:
            continue
        if b"\x00" in data[:8192]:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if pattern.search(line):
                matches.append(f"{ws.relative(path)}:{number}: {line[:300]}")
                if len(matches) >= limits.max_matches:
                    break
        if len(matches) >= limits.max_matches:
            matches.append(f"[stopped at {limits.max_matches} matches]")
            break
    output = "\n".join(matches) if matches else "no matches"
    return _result(
        "search_text",
        "ok",
        clean_text(output.encode("utf-8", "replace")),
        started,
        truncated=len(matches) > limits.max_matches,
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
        output = result.output
        for secret in limits.secrets:
            if secret:
                output = output.replace(secret, "[redacted]")
        return ToolResult(**{**result.to_dict(), "call_id": request.call_id, "output": output})
