"""Runs made for real to show and test the viewer: the supervisor's agent loop with its
scripted model, its tools in this process on a scratch workspace, its trajectory writer.

:func:`demo_run` is an ordinary run with a setup and a check (the README's screenshot).
:func:`hostile_run` puts markup and terminal escapes in every field a model or its tools
write: the task, the replies, tool arguments, file names, command output, an unusable
reply, the answer, the check's output. Each payload, were it ever parsed as HTML and run,
sets ``data-pwned`` on the page's root element to the name of its field: the canary the
browser tests look for.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from sandbox_supervisor.agent import Agent, AgentLimits, Setup
from sandbox_supervisor.config import Settings
from sandbox_supervisor.scripted import ScriptedModel
from sandbox_supervisor.tools import InProcessExecutor, Limits, Workspace
from sandbox_supervisor.trajectory import TrajectoryWriter

CANARY = "data-pwned"
"""The attribute an injected script would set on ``<html>``."""


def payload(field: str) -> dict[str, str]:
    """Hostile strings for one field, by kind; each would set the canary to ``field``."""
    js = f"document.documentElement.dataset.pwned=`{field}`"  # no quote: shell-safe
    return {
        "script": f"<script>{js}</script>",
        "img": f'<img src=x onerror="{js}">',
        "link": f'<a href="javascript:{js}">click {field}</a>',
        "svg": f'<svg onload="{js}"></svg>',
        "terminal": "\x1b]0;retitled\x07\x1b[2J\x1b[31mred\x1b[0m\u202eevil",
    }


def hostile_text(field: str) -> str:
    """Every hostile string of ``field`` on its own line."""
    return "\n".join(payload(field).values())


HOSTILE_FILE = "<img src=x onerror=document.documentElement.dataset.pwned=`file`>.txt"
"""A file name a model may choose (no ``/``, so the file system takes it)."""


def _run(
    directory: Path,
    run_id: str,
    task: str,
    script: list[dict[str, Any]],
    *,
    setup: Setup | None = None,
    check: str | None = None,
) -> Path:
    """Run ``script`` through the agent loop; return the trajectory's path."""
    workspace = directory / "workspace" / run_id
    workspace.mkdir(parents=True, exist_ok=True)
    log = directory / "logs" / f"{run_id}.jsonl"
    settings = Settings.model_validate(
        {"model": "scripted", "workspace": workspace, "log_dir": log.parent, "fsync": False}
    )
    executor = InProcessExecutor(
        Workspace.open(workspace), Limits(command_timeout_s=10.0, command_grace_s=0.3)
    )
    limits = AgentLimits(max_steps=20)
    with TrajectoryWriter(log, run_id, fsync=False) as writer:
        agent = Agent(
            ScriptedModel(script), executor, writer, mode="json", limits=limits,
            setup=setup, check=check,
        )  # fmt: skip
        agent.run(
            task,
            {"config": settings.public_dict(), "model_source": "scripted:sample",
             "limits_asked": asdict(limits)},
        )  # fmt: skip
    return log


def demo_run(directory: Path, run_id: str = "sample-demo") -> Path:
    """An ordinary run: look, write a file, check it, finish; a check decides."""
    script = [
        {"thought": "Look at the workspace first.", "sleep_s": 0.05,
         "action": {"tool": "list_dir", "args": {"path": "."}},
         "usage": {"prompt_tokens": 412, "completion_tokens": 31, "total_tokens": 443}},
        {"thought": "Write the greeting.", "sleep_s": 0.12,
         "action": {"tool": "write_file",
                    "args": {"path": "hello.txt", "content": "Hello from the sandbox\n"}},
         "usage": {"prompt_tokens": 498, "completion_tokens": 45, "total_tokens": 543}},
        {"thought": "Check it with a command.", "sleep_s": 0.08,
         "action": {"tool": "run_command", "args": {"command": "cat hello.txt && wc -c hello.txt"}},
         "usage": {"prompt_tokens": 571, "completion_tokens": 38, "total_tokens": 609}},
        {"thought": "Done.", "sleep_s": 0.03,
         "action": {"tool": "finish", "args": {"answer": "hello.txt written and checked"}},
         "usage": {"prompt_tokens": 640, "completion_tokens": 22, "total_tokens": 662}},
    ]  # fmt: skip
    return _run(
        directory,
        run_id,
        "Create hello.txt containing a greeting.",
        script,
        setup=Setup(files={"README.md": "A workspace for the demo.\n"}),
        check="grep -q Hello hello.txt",
    )


def hostile_run(directory: Path, run_id: str = "sample-hostile") -> Path:
    """A run whose every model- and tool-written field carries :func:`payload` strings."""
    command = (
        "printf '\\033]0;retitled\\007\\033[2J\\033[31mred\\033[0m\\n'; "
        f"printf '%s\\n' '{payload('output')['script']}'; ls"
    )
    script: list[dict[str, Any]] = [
        {"thought": hostile_text("thought"),
         "action": {"tool": "write_file",
                    "args": {"path": HOSTILE_FILE, "content": hostile_text("content")}}},
        {"thought": "list", "action": {"tool": "run_command", "args": {"command": command}}},
        {"content": hostile_text("reply")},
        {"thought": "done",
         "action": {"tool": "finish", "args": {"answer": hostile_text("answer")}}},
    ]  # fmt: skip
    check = f"printf '%s\\n' '{payload('check')['script']}' '{payload('check')['img']}'; ls"
    return _run(directory, run_id, hostile_text("task"), script, check=check)
