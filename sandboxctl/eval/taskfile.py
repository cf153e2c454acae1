"""The evaluation suite's task files (``suite/*.toml``): their schema, read and checked.

Each task file holds::

    id = "create-file"                  # unique, short
    category = "create and edit files"
    prompt = "..."                      # what the agent is asked
    check = "test -f hello.txt"         # a shell command in the workspace: exit 0 = passed
    max_steps = 15                      # optional
    [setup]                             # optional: the workspace before the task
    files = { "path" = "text" }
    commands = ["..."]
    [[script]]                          # the scripted model's steps that do the work
    action = { tool = "write_file", args = { ... } }

The script proves the check can pass (``invoke eval --model scripted`` must pass 100%);
a model that does nothing must fail it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandboxctl.errors import SandboxError

SUITE_DIR = Path(__file__).with_name("suite")
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")
_KEYS = {"id", "category", "prompt", "check", "setup", "script", "max_steps"}


class SuiteError(SandboxError, ValueError):
    """A task file is missing a field or has a wrong one; the message names the file."""


@dataclass(frozen=True)
class EvalTask:
    """One task of the suite."""

    id: str
    category: str
    prompt: str
    check: str
    setup: dict[str, Any] = field(default_factory=dict)
    script: tuple[dict[str, Any], ...] = ()
    max_steps: int | None = None

    def spec(self, *, scripted: bool, subdir: str) -> dict[str, Any]:
        """The ``sandbox-supervisor run --spec`` document of one run of this task."""
        spec: dict[str, Any] = {"check": self.check, "subdir": subdir}
        if self.setup:
            spec["setup"] = self.setup
        if scripted:
            spec["script"] = list(self.script)
        return spec


def load_task(path: Path) -> EvalTask:
    """Read and check one task file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SuiteError(f"{path.name}: {error}") from error
    unknown = set(data) - _KEYS
    if unknown:
        raise SuiteError(f"{path.name}: unknown keys {sorted(unknown)}")
    for key in ("id", "category", "prompt", "check"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise SuiteError(f"{path.name}: {key} must be a non-empty string")
    if not _ID.fullmatch(data["id"]):
        raise SuiteError(f"{path.name}: id {data['id']!r} must be lowercase letters, digits, -")
    setup = data.get("setup", {})
    files = setup.get("files", {}) if isinstance(setup, dict) else None
    commands = setup.get("commands", []) if isinstance(setup, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise SuiteError(f"{path.name}: setup.files must map paths to text")
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise SuiteError(f"{path.name}: setup.commands must be a list of commands")
    script = data.get("script", [])
    if not isinstance(script, list) or not script or not all(isinstance(s, dict) for s in script):
        raise SuiteError(f"{path.name}: script must be a non-empty list of steps")
    last = script[-1].get("action", {})
    if not isinstance(last, dict) or last.get("tool") != "finish":
        raise SuiteError(f"{path.name}: the script must end with the finish action")
    steps = data.get("max_steps")
    if steps is not None and (not isinstance(steps, int) or not 1 <= steps <= 200):
        raise SuiteError(f"{path.name}: max_steps must be an integer from 1 to 200")
    return EvalTask(
        id=data["id"],
        category=data["category"],
        prompt=data["prompt"],
        check=data["check"],
        setup={k: v for k, v in (("files", files), ("commands", commands)) if v},
        script=tuple(script),
        max_steps=steps,
    )


def load_suite(directory: Path = SUITE_DIR, only: str = "") -> list[EvalTask]:
    """Every task of ``directory`` (``*.toml``, in file-name order); ``only`` keeps the
    tasks whose ids are in this comma-separated list."""
    tasks = [load_task(path) for path in sorted(directory.glob("*.toml"))]
    ids = [task.id for task in tasks]
    doubled = sorted({i for i in ids if ids.count(i) > 1})
    if doubled:
        raise SuiteError(f"{directory}: task ids used twice: {', '.join(doubled)}")
    if only:
        wanted = [name.strip() for name in only.split(",") if name.strip()]
        missing = sorted(set(wanted) - set(ids))
        if missing:
            raise SuiteError(f"no such task: {', '.join(missing)} (the tasks: {', '.join(ids)})")
        tasks = [task for task in tasks if task.id in wanted]
    if not tasks:
        raise SuiteError(f"{directory}: no task")
    return tasks
