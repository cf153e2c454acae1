"""How a run ends: :class:`Stop`, raised inside the loop with the status that ends it,
and :class:`RunResult`, what the loop returns; each status maps to one exit code
(:mod:`.exit_codes`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox_supervisor.exit_codes import for_status


class Stop(Exception):
    """The run is over; ``status`` is one of :data:`EXIT_CODES`."""

    def __init__(self, status: str, reason: str, answer: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.answer = answer


@dataclass
class RunResult:
    """How a run ended."""

    status: str
    reason: str
    answer: str | None
    steps: int
    tokens: dict[str, int]
    elapsed_s: float
    tool_calls: int
    agent_status: str | None = None  # what the loop ended with, when a check decided
    check: dict[str, Any] | None = None  # the check's command, exit code and outcome

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this outcome."""
        return for_status(self.status)

    def end_fields(self) -> dict[str, Any]:
        """The fields of the run's ``run_end`` record (the check's, when one decided)."""
        fields: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "answer": self.answer,
            "steps": self.steps,
            "tokens": self.tokens,
            "elapsed_s": self.elapsed_s,
            "tool_calls": self.tool_calls,
            "exit_code": self.exit_code,
        }
        if self.agent_status is not None:
            fields.update(agent_status=self.agent_status, check=self.check)
        return fields
