"""A run's setup and its check, both run through the run's executor as its tool calls are.

The *setup* is what the workspace holds before the task: files written, then commands run
(:class:`Setup`). :func:`prepare` does it and writes one ``setup`` record; a failing step
ends the run ``error``. The *check* is a command run after the loop ended on its own terms
(finished, a budget, gave up): :func:`judge` runs it, and its exit status alone makes the
run ``passed`` or ``failed``; a ``check`` record keeps the command, the outcome and the
tail of the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox_supervisor.outcome import Stop
from sandbox_supervisor.tools import Executor, ExecutorUnavailable, ToolRequest, ToolResult
from sandbox_supervisor.trajectory import TrajectoryWriter

CHECK_OUTPUT_CHARS = 4000  # of the check's output kept in the trajectory


@dataclass(frozen=True)
class Setup:
    """What a run's workspace holds before the task: files (path -> text), then commands."""

    files: dict[str, str] = field(default_factory=dict)
    commands: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Setup:
        """Build from ``{"files": {path: text}, "commands": [command, ...]}``."""
        files = data.get("files") or {}
        commands = data.get("commands") or []
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise ValueError("setup.files must map paths to text")
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise ValueError("setup.commands must be a list of commands")
        return cls(dict(files), tuple(commands))


def prepare(executor: Executor, log: TrajectoryWriter, setup: Setup) -> None:
    """Write the setup's files and run its commands; a failure ends the run ``error``."""
    done: list[dict[str, Any]] = []
    steps: list[tuple[str, dict[str, Any]]] = [
        ("write_file", {"path": path, "content": text}) for path, text in setup.files.items()
    ]
    steps += [("run_command", {"command": command}) for command in setup.commands]
    failed: ToolResult | None = None
    for index, (name, arguments) in enumerate(steps):
        result = executor.execute(ToolRequest(f"setup.{index}", name, arguments))
        shown = arguments.get("path") or arguments.get("command")
        done.append(
            {
                "tool": name,
                "target": shown,
                "status": result.status,
                "exit_code": result.exit_code,
            }
        )
        if not result.ok:
            failed = result
            done[-1]["output"] = result.output[-CHECK_OUTPUT_CHARS:]
            break
    log.write("setup", steps=done)
    if failed is not None:
        raise Stop("error", f"the setup failed at {done[-1]['target']!r}: {failed.output[:300]}")


def judge(
    executor: Executor,
    command: str,
    status: str,
    reason: str,
    *,
    record: Callable[..., None],
    progress: Callable[[str], None],
) -> tuple[str, str, dict[str, Any]]:
    """Run the check; return the verdict (``passed``/``failed``), its reason and record.

    A check that cannot run (the tools service is gone) ends the run without a verdict;
    ``record`` writes the ``check`` (or ``error``) record, never raising for the trajectory.
    """
    progress(f"check: {command}")
    try:
        result = executor.execute(ToolRequest("check", "run_command", {"command": command}))
    except ExecutorUnavailable as exc:
        record("error", where="check", kind="tools_unavailable", message=str(exc))
        return "tools_unavailable", f"the check could not run: {exc}", {"command": command}
    except Exception as exc:  # the verdict must not hide an internal error
        record("error", where="check", kind=type(exc).__name__, message=str(exc))
        return "error", f"the check could not run: {exc}", {"command": command}
    passed = result.ok and result.exit_code == 0
    check = {
        "command": command,
        "status": result.status,
        "exit_code": result.exit_code,
        "passed": passed,
        "duration_s": result.duration_s,
    }
    record("check", **check, agent_status=status, output=result.output[-CHECK_OUTPUT_CHARS:])
    how = f"exit code {result.exit_code}" if result.exit_code is not None else result.status
    verdict = "passed" if passed else "failed"
    why = f"the check {command!r} {verdict} ({how}); the run ended {status}"
    return verdict, why + (f": {reason}" if reason else ""), check
