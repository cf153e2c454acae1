"""Workspace tools: path confinement, commands, the typed registry and executors."""

from sandbox_supervisor.tools.executor import Executor, ExecutorUnavailable, InProcessExecutor
from sandbox_supervisor.tools.registry import (
    BUILTIN_TOOLS,
    Limits,
    Registry,
    Tool,
    ToolRequest,
    ToolResult,
)
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
