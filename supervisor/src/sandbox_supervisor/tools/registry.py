"""The registry of typed tools: a name, a description, a JSON schema and a function each.

:meth:`Registry.call` validates a :class:`~.types.ToolRequest`'s arguments against the
tool's model and runs it; a refused path, bad arguments or a failing command all come
back as a :class:`~.types.ToolResult` with a ``status``, never as an exception. The
tools themselves live in :mod:`.builtin`, the wire types in :mod:`.types`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from sandbox_supervisor.redact import Redactor
from sandbox_supervisor.tools.builtin import (
    ListDirArgs,
    ReadFileArgs,
    RunCommandArgs,
    SearchTextArgs,
    ToolArgs,
    WriteFileArgs,
    list_dir,
    read_file,
    run_command,
    search_text,
    write_file,
)
from sandbox_supervisor.tools.builtin import (
    result as make_result,
)
from sandbox_supervisor.tools.editing import EditFileArgs, ViewFileArgs, edit_file, view_file
from sandbox_supervisor.tools.types import Limits, ToolRequest, ToolResult
from sandbox_supervisor.tools.workspace import PathRefused, Workspace

ToolFunc = Callable[[Any, Workspace, Limits], ToolResult]


@dataclass(frozen=True)
class Tool:
    """A tool: its arguments model (for the schema and validation) and its function."""

    name: str
    description: str
    args: type[ToolArgs]
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
    Tool(
        "view_file",
        "Show numbered lines of a text file.",
        ViewFileArgs,
        view_file,
    ),
    Tool(
        "edit_file",
        "Replace the one occurrence of old_text in a file by new_text.",
        EditFileArgs,
        edit_file,
    ),
)


def within_time_left(limits: Limits, time_left_s: float | None) -> Limits:
    """``limits`` with the command and search timeouts cut to the run's time left."""
    if time_left_s is None:
        return limits
    left = max(0.05, time_left_s)
    return replace(
        limits,
        command_timeout_s=min(limits.command_timeout_s, left),
        search_timeout_s=min(limits.search_timeout_s, left),
    )


class Registry:
    """Tools by name, with validation of arguments and no exceptions for model mistakes.

    ``refused`` names tools that are listed but refused, with the reason (run_command
    in a process that holds the model key, see :mod:`.executor`).
    """

    def __init__(
        self, tools: tuple[Tool, ...] = BUILTIN_TOOLS, refused: dict[str, str] | None = None
    ) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.refused = dict(refused or {})

    def specs(self) -> list[dict[str, Any]]:
        """Return the specs of all tools (JSON-able)."""
        return [tool.spec() for tool in self.tools.values()]

    def call(self, request: ToolRequest, ws: Workspace, limits: Limits) -> ToolResult:
        """Validate and run one request; every outcome is a :class:`ToolResult`."""
        started = time.monotonic()
        tool = self.tools.get(request.name)
        limits = within_time_left(limits, request.time_left_s)
        if request.name in self.refused:
            result = make_result(request.name, "refused", self.refused[request.name], started)
        elif tool is None:
            known = ", ".join(self.tools)
            result = make_result(
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
                result = make_result(request.name, "invalid", f"bad arguments: {problems}", started)
            else:
                try:
                    result = tool.func(args, ws, limits)
                except PathRefused as exc:
                    result = make_result(request.name, "refused", f"path refused: {exc}", started)
                except OSError as exc:
                    reason = exc.strerror or str(exc)
                    result = make_result(request.name, "failed", f"{reason}", started)
                except UnicodeError as exc:  # e.g. a lone surrogate that UTF-8 cannot encode
                    result = make_result(
                        request.name, "invalid", f"text is not valid Unicode: {exc}", started
                    )
        output = Redactor(limits.secrets)(result.output)
        return ToolResult(**{**result.to_dict(), "call_id": request.call_id, "output": output})
