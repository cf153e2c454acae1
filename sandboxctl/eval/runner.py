"""Run the suite: every task, ``repeat`` times, for each model; independent runs in parallel.

A run is one ``sandbox-supervisor run --spec -`` with the task's setup, check and (for the
``scripted`` model) script, confined to its own subdirectory of the workspace
(``eval/STAMP/RUN``), so parallel runs never share files. Its outcome is read from its
trajectory's ``run_end``. Where runs execute is a :class:`Backend`:

* :class:`StackBackend`: ``compose exec`` in the running stack's supervisor container;
  the tools run in the ``tools`` container, as for ``invoke run``;
* :class:`LocalBackend`: the supervisor in a subprocess on a local workspace (tests, and
  a supervisor pointed at any OpenAI-compatible server).

``scripted`` is the supervisor's scripted model replaying each task's script; any other
model name is the model the stack serves (the runner asks the backend to serve it).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sandbox_supervisor.trajectory import parse_records, read_records

from sandboxctl._proc import Runner
from sandboxctl.errors import SandboxError
from sandboxctl.eval.taskfile import EvalTask

SCRIPTED = "scripted"
MAX_PARALLEL = 16


class EvalError(SandboxError, RuntimeError):
    """The evaluation cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Planned:
    """One run to make: a model, a task and which repeat."""

    model: str
    task: EvalTask
    repeat: int

    @property
    def name(self) -> str:
        """A name unique within an evaluation (file and directory names)."""
        return f"{_slug(self.model)}-{self.task.id}-{self.repeat}"


@dataclass
class Outcome:
    """How one run ended, from its trajectory (``status`` ``passed`` when its check passed)."""

    model: str
    task: str
    repeat: int
    status: str
    agent_status: str | None
    passed: bool
    steps: int
    tokens: int
    wall_s: float
    exit_code: int | None
    reason: str = ""
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form."""
        return asdict(self)


class Backend(Protocol):
    """Where runs execute."""

    def slots(self) -> int:
        """How many runs may go at once (the model server's parallel slots)."""
        ...

    def serving(self, model: str) -> AbstractContextManager[None]:
        """Make ``model`` the one runs use, for the ``with`` block (``scripted`` needs none)."""
        ...

    def run(self, planned: Planned, spec: dict[str, Any], log: str) -> Outcome:
        """Make one run with the given ``--spec`` document; its trajectory goes to ``log``."""
        ...


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:60] or "model"


def stamp() -> str:
    """A UTC time stamp naming one evaluation."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def plan(models: Sequence[str], tasks: Sequence[EvalTask], repeat: int) -> list[Planned]:
    """Every (model, task, repeat), model by model, repeats of a task interleaved."""
    if repeat < 1:
        raise EvalError("--repeat must be at least 1")
    if not models:
        raise EvalError("no model to evaluate")
    return [Planned(m, t, r) for m in models for r in range(1, repeat + 1) for t in tasks]


def outcome_from_records(
    planned: Planned, records: Sequence[Mapping[str, Any]], wall_s: float, exit_code: int | None
) -> Outcome:
    """The outcome of a run from its trajectory's records (the last run in them)."""
    end = next((r for r in reversed(records) if r.get("type") == "run_end"), None)
    base: dict[str, Any] = {
        "model": planned.model,
        "task": planned.task.id,
        "repeat": planned.repeat,
        "wall_s": round(wall_s, 3),
        "exit_code": exit_code,
    }
    if end is None:
        return Outcome(
            **base,
            status="no_trajectory",
            agent_status=None,
            passed=False,
            steps=0,
            tokens=0,
            reason=f"the run left no run_end (exit {exit_code})",
        )
    tokens = end.get("tokens") or {}
    return Outcome(
        **base,
        status=str(end.get("status")),
        agent_status=end.get("agent_status"),
        passed=end.get("status") == "passed",
        steps=int(end.get("steps") or 0),
        tokens=int(tokens.get("total", 0) if isinstance(tokens, dict) else 0),
        reason=str(end.get("reason") or "")[:300],
    )


def default_width(backend: Backend, model: str) -> int:
    """Runs at once when ``--parallel`` is 0: the model server's slots, so that no run
    queues for one and its time is its own; the scripted model calls no server, so one
    run per core (what a run costs is its processes')."""
    return (os.cpu_count() or 1) if model == SCRIPTED else backend.slots()


def run_all(
    backend: Backend,
    runs: Sequence[Planned],
    *,
    prefix: str,
    parallel: int = 0,
    progress: Callable[[str], None] = print,
) -> list[Outcome]:
    """Make every run, model by model, up to ``parallel`` at once (0: :func:`default_width`);
    return the outcomes in plan order. ``prefix`` names this evaluation's directories."""
    outcomes: dict[int, Outcome] = {}
    lock = threading.Lock()
    total = len(runs)

    def one(index: int) -> None:
        planned = runs[index]
        scripted = planned.model == SCRIPTED
        subdir = f"eval/{prefix}/{planned.name}"
        spec = planned.task.spec(scripted=scripted, subdir=subdir)
        outcome = backend.run(planned, spec, f"eval/{prefix}/{planned.name}.jsonl")
        with lock:
            outcomes[index] = outcome
            done = len(outcomes)
        mark = "PASS" if outcome.passed else "fail"
        progress(
            f"[{done}/{total}] {mark} {planned.model} {planned.task.id} #{planned.repeat}: "
            f"{outcome.status}"
            + (f" (ended {outcome.agent_status})" if outcome.agent_status else "")
            + f", {outcome.steps} steps, {outcome.wall_s:.1f} s"
        )

    for model in dict.fromkeys(p.model for p in runs):
        batch = [i for i, p in enumerate(runs) if p.model == model]
        with backend.serving(model):
            width = max(1, min(parallel or default_width(backend, model), MAX_PARALLEL, len(batch)))
            progress(f"eval: {model}: {len(batch)} runs, {width} at a time")
            with ThreadPoolExecutor(max_workers=width) as pool:
                for future in [pool.submit(one, i) for i in batch]:
                    future.result()
    return [outcomes[i] for i in range(len(runs))]


# -- backends ----------------------------------------------------------------------------
def step_budget(planned: Planned, override: int = 0) -> list[str]:
    """``--max-steps`` of a run: ``override`` or the task's own; none for the scripted
    model, which follows the task's script to its end."""
    if planned.model == SCRIPTED:
        return []
    steps = override or planned.task.max_steps
    return ["--max-steps", str(steps)] if steps else []


class LocalBackend:
    """The supervisor in a subprocess, on a local workspace (``root/workspace``).

    ``env`` holds its ``SUPERVISOR_*`` settings (``SUPERVISOR_MODEL_URL`` for a model
    server), on top of ``runner``'s environment; tool commands run in process, as the
    supervisor's tests do. ``max_steps`` overrides the tasks' step budgets (see
    :func:`step_budget`).
    """

    def __init__(
        self,
        root: Path,
        env: Mapping[str, str] | None = None,
        *,
        slots: int = 2,
        python: str = sys.executable,
        max_steps: int = 0,
        runner: Runner | None = None,
    ) -> None:
        self.root = root
        self.workspace = root / "workspace"
        self.logs = root / "logs"
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self._slots = slots
        self.python = python
        self.max_steps = max_steps
        self.runner = runner or Runner()

    def slots(self) -> int:
        """The configured number of parallel runs."""
        return self._slots

    def serving(self, model: str) -> AbstractContextManager[None]:
        """Nothing to switch: the settings name the server."""
        return nullcontext()

    def run(self, planned: Planned, spec: dict[str, Any], log: str) -> Outcome:
        """Run ``python -m sandbox_supervisor run --spec -`` and read its trajectory."""
        path = self.logs / log
        path.parent.mkdir(parents=True, exist_ok=True)
        argv = [self.python, "-m", "sandbox_supervisor", "run", "--spec", "-", "-q"]
        argv += ["--log", str(path), "--workspace", str(self.workspace)]
        argv += step_budget(planned, self.max_steps)
        env = {**self.runner.environ(), "SUPERVISOR_LOG_DIR": str(self.logs), **self.env}
        env = {k: v for k, v in env.items() if k != "SUPERVISOR_TOOLS_URL"}
        started = time.monotonic()
        done = replace(self.runner, env=env, extra_env={}).run(
            [*argv, "--", planned.task.prompt], input_text=json.dumps(spec)
        )
        wall = time.monotonic() - started
        records = read_records(path, skip_bad=True).records if path.exists() else []
        outcome = outcome_from_records(planned, records, wall, done.returncode)
        outcome.log = str(path)
        if not records:
            outcome.reason = done.stderr.strip()[-300:]
        return outcome


class StackBackend:
    """Runs in the stack's supervisor container (``compose exec``), tools in ``tools``;
    ``max_steps`` overrides the tasks' step budgets (see :func:`step_budget`)."""

    def __init__(
        self,
        stack: Any,
        serve: Callable[[str], AbstractContextManager[None]],
        *,
        max_steps: int = 0,
    ) -> None:
        self.stack = stack
        self._serve = serve
        self._slots: int | None = None
        self.max_steps = max_steps

    def slots(self) -> int:
        """``total_slots`` of the server's ``/props`` (``sandbox-supervisor check``); 1 if
        it does not say."""
        if self._slots is None:
            probe = self.stack.compose_run(
                "exec", "-T", "supervisor", "sandbox-supervisor", "check", "--json", capture=True
            )
            try:
                slots = json.loads(probe.stdout).get("slots")
            except (json.JSONDecodeError, AttributeError):
                slots = None
            self._slots = slots if isinstance(slots, int) and slots > 0 else 1
        return self._slots

    def serving(self, model: str) -> AbstractContextManager[None]:
        """Have the stack serve ``model`` for the block (``scripted`` needs no server)."""
        if model == SCRIPTED:
            return nullcontext()
        self._slots = None
        return self._serve(model)

    def run(self, planned: Planned, spec: dict[str, Any], log: str) -> Outcome:
        """``compose exec -T supervisor sandbox-supervisor run --spec - --json``: the run,
        then its trajectory's checked records on stdout, in one exec (a second exec for
        ``show --json`` cost half a second a run). A run that printed no ``run_end`` (its
        process ended before it could: killed, interrupted) is read back from its log."""
        path = f"/logs/{log}"
        extra = step_budget(planned, self.max_steps)
        started = time.monotonic()
        result = self.stack.compose_run(
            "exec", "-T", "supervisor", "sandbox-supervisor", "run", "--spec", "-", "-q",
            "--json", "--log", path, *extra, "--", planned.task.prompt,
            capture=True, input_text=json.dumps(spec),
        )  # fmt: skip
        wall = time.monotonic() - started
        records = parse_records(result.stdout.encode(), path, skip_bad=True).records
        errors = result.stderr
        if not any(record.get("type") == "run_end" for record in records):
            shown = self.stack.compose_run(
                "exec", "-T", "supervisor", "sandbox-supervisor", "show", "--json", path,
                capture=True,
            )  # fmt: skip
            if shown.ok:
                records = parse_records(shown.stdout.encode(), path, skip_bad=True).records
            errors = errors or shown.stderr
        outcome = outcome_from_records(planned, records, wall, result.returncode)
        outcome.log = path
        if not records:
            outcome.reason = errors.strip()[-300:]
        return outcome


def stack_serving(stack: Any, log: Callable[[str], None] = print) -> Callable[[str], Any]:
    """A ``serve(model)`` context for :class:`StackBackend`: the served model is used as
    is; another catalog model is brought up for the block (``invoke up`` with that
    model), and the answered one is brought back after it."""
    from contextlib import contextmanager
    from dataclasses import replace

    from sandboxctl.stack import bring_up

    served = stack.settings.sandbox_model

    @contextmanager
    def serve(model: str) -> Iterator[None]:
        if model == served:
            yield
            return
        log(f"eval: bringing the stack up with {model} (it serves {served})")
        other = replace(stack, settings=replace(stack.settings, sandbox_model=model))
        other.runner = replace(
            stack.runner, extra_env={**stack.runner.extra_env, "SANDBOX_MODEL": model}
        )
        bring_up(other)
        try:
            yield
        finally:
            log(f"eval: bringing {served} back")
            bring_up(stack)

    return serve
