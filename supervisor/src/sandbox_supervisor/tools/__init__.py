"""Workspace tools: path confinement, commands, the typed registry and executors.

Modules: :mod:`.types` (wire types), :mod:`.workspace` (confinement), :mod:`.builtin`
(the tools), :mod:`.commands` (running a command), :mod:`.registry`, :mod:`.executor`,
:mod:`.remote` and :mod:`.service` (the tools service and its client).
"""

from sandbox_supervisor.tools.executor import Executor, ExecutorUnavailable, InProcessExecutor
from sandbox_supervisor.tools.registry import BUILTIN_TOOLS, Registry, Tool
from sandbox_supervisor.tools.types import Limits, ToolRequest, ToolResult
from sandbox_supervisor.tools.workspace import PathRefused, Workspace

__all__ = [
    "BUILTIN_TOOLS",
    "Executor",
    "ExecutorUnavailable",
    "InProcessExecutor",
    "Limits",
    "PathRefused",
    "Registry",
    "Tool",
    "ToolRequest",
    "ToolResult",
    "Workspace",
]
