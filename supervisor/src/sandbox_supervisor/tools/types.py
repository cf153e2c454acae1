"""The wire types of tool calls: what crosses between the loop, an executor and the service.

:class:`ToolRequest` and :class:`ToolResult` are plain JSON-able data (``to_dict`` /
``from_dict`` give the wire form), so the same request can run in this process or
behind the ``tools`` service. ``time_left_s`` carries what is left of the run's wall
budget: a tool never runs longer than that, whatever its own timeout says.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sandbox_supervisor.limits import Limits

Status = Literal["ok", "failed", "timeout", "refused", "invalid"]

__all__ = ["Limits", "Status", "ToolRequest", "ToolResult"]


@dataclass(frozen=True)
class ToolRequest:
    """One tool call: an id unique within the run, the tool's name and its arguments."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    time_left_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolRequest:
        """Build from the JSON-able form (``time_left_s`` must be a positive number)."""
        left = data.get("time_left_s")
        if left is not None and (
            isinstance(left, bool) or not isinstance(left, int | float) or not 0 < left < 1e9
        ):
            raise ValueError("time_left_s must be a positive number of seconds")
        return cls(
            str(data["call_id"]),
            str(data["name"]),
            dict(data["arguments"]),
            None if left is None else float(left),
        )


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
