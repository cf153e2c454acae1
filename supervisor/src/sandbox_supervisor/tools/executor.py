"""Where tool calls execute: the :class:`Executor` contract and its in-process implementation.

The contract is two calls over plain JSON-able data, so an implementation can live
behind a socket: ``specs()`` lists the tools (name, description, JSON schema of the
arguments) and ``execute(request)`` runs one :class:`ToolRequest` and returns a
:class:`ToolResult` (``to_dict``/``from_dict`` give the wire form). An executor
never raises for the model's mistakes; it raises only when it cannot work at all
(the ``tools`` service is unreachable, for example).
"""

from __future__ import annotations

import base64
import os
from typing import Any, Protocol, runtime_checkable

from sandbox_supervisor.tools import snapshot as snapshots
from sandbox_supervisor.tools.registry import Registry
from sandbox_supervisor.tools.types import Limits, ToolRequest, ToolResult
from sandbox_supervisor.tools.workspace import Workspace


@runtime_checkable
class Snapshots(Protocol):
    """An executor that can describe its workspace for the run's record."""

    def snapshot(self, paths: list[str] | None = None) -> dict[str, Any]:
        """The manifest (no ``paths``) or the bytes of ``paths`` (see
        :meth:`InProcessExecutor.snapshot`)."""
        ...


class ExecutorUnavailable(RuntimeError):
    """The executor cannot run tool calls at all (the tools service is unreachable)."""


@runtime_checkable
class Executor(Protocol):
    """Runs tool calls somewhere (this process, or the ``tools`` service)."""

    def specs(self) -> list[dict[str, Any]]:
        """Return ``[{name, description, parameters}]`` for every tool."""
        ...

    def execute(self, request: ToolRequest) -> ToolResult:
        """Run one tool call and return its result."""
        ...


KEY_HELD = (
    "run_command is refused here: this process holds the model API key and runs tools "
    "in process, where a command could reach it. Commands run in the tools service "
    "(SUPERVISOR_TOOLS_URL, as in the stack); file tools work as usual"
)


class InProcessExecutor:
    """Run tools in this process, confined to a workspace directory.

    With ``holds_key`` (this process holds the model API key) ``run_command`` is
    refused: a command runs as the same user as this process and could read the key
    from its memory or its key file. The ``tools`` service holds no model key.
    """

    def __init__(
        self,
        workspace: Workspace,
        limits: Limits | None = None,
        registry: Registry | None = None,
        *,
        holds_key: bool = False,
    ) -> None:
        self.workspace = workspace
        self.limits = limits or Limits()
        self.registry = registry or Registry(
            refused={"run_command": KEY_HELD} if holds_key else None
        )

    def within(self, subdir: str) -> InProcessExecutor:
        """The same executor confined to ``subdir`` of its workspace (created when missing;
        see :meth:`Workspace.sub`)."""
        return InProcessExecutor(self.workspace.sub(subdir), self.limits, self.registry)

    def specs(self) -> list[dict[str, Any]]:
        """Return the registry's specs."""
        return self.registry.specs()

    def execute(self, request: ToolRequest) -> ToolResult:
        """Validate and run ``request`` against the workspace."""
        return self.registry.call(request, self.workspace, self.limits)

    def snapshot(self, paths: list[str] | None = None) -> dict[str, Any]:
        """For the run's record (not a tool: the model cannot call it): with no ``paths``,
        ``{"manifest": ..., "refused": [...]}`` of the workspace; with ``paths``,
        ``{"blobs": {path: base64 or None}}`` (see :mod:`.snapshot`)."""
        root_fd = os.open(self.workspace.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if paths is None:
                found, refused = snapshots.manifest(root_fd)
                return {"manifest": found, "refused": refused}
            blobs = snapshots.read_blobs(root_fd, paths)
        finally:
            os.close(root_fd)
        return {
            "blobs": {
                path: None if data is None else base64.b64encode(data).decode("ascii")
                for path, data in blobs.items()
            }
        }
