"""Past agent runs, from the host: runs.list, runs.show, runs.export (no container);
runs.diff, runs.patch, runs.rewind (a one-shot container reads the run's record)."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from sandbox_supervisor.view import safe

from sandboxctl.stack import runs as runs_
from sandboxctl.stack import workspace as workspace_
from sandboxctl.tasks._support import opened, print_safe, workspace_access
from sandboxctl.tasks._task import task

RUN_ID_HELP = "The run's id or its first characters (default: the last run)"


def _one(run_id: str) -> runs_.Run:
    """The run ``run_id`` names (its first characters; empty: the last run)."""
    return runs_.find(runs_.read_runs(opened()), run_id)


@task(name="list")
def list_(c: Context) -> None:
    """List past runs: id, start, how it ended, steps, tokens, seconds, task."""
    found = runs_.read_runs(opened())
    if not found:
        raise Exit('no runs yet: start one with `invoke run "TASK"`', code=1)
    print("\n".join(runs_.table(found)))


@task(help={"id": RUN_ID_HELP})
def show(c: Context, id: str = "") -> None:
    """Show one run (the last by default): steps, tool calls, results, its requests
    through the egress proxy, how it ended."""
    stack = opened()
    run = runs_.find(runs_.read_runs(stack), id)
    print(runs_.render(run, runs_.egress_lines(stack, run)))


@task(
    help={
        "id": RUN_ID_HELP,
        "output": "File (or folder) to write the trajectory to (default: run-ID.jsonl here)",
    }
)
def export(c: Context, id: str = "", output: str = ".") -> None:
    """Write one run's trajectory (JSON lines) to a file on the host."""
    run = _one(id)
    written = runs_.export(run, Path(output))
    print(f"run {run.run_id}: {len(run.records)} records written to {written}")


@task(
    help={
        "id": RUN_ID_HELP,
        "step": "Only this step's changes (default: the whole run)",
    },
    ranges={"step": (-1, None)},
)
def diff(c: Context, id: str = "", step: int = -1) -> None:
    """Print what a run changed as a unified diff (the whole run, or one step)."""
    run = _one(id)
    text, notes = workspace_.run_diff(workspace_access(), run.run_id, None if step < 0 else step)
    sys.stdout.write(safe(text))
    print_safe(notes, file=sys.stderr)


@task(
    help={
        "id": RUN_ID_HELP,
        "output": "The patch file to write (apply it with `git apply FILE`)",
    }
)
def patch(c: Context, id: str = "", output: str = "fix.patch") -> None:
    """Write what a run changed as a patch that `git apply` accepts on your checkout."""
    run = _one(id)
    text, notes = workspace_.run_diff(workspace_access(), run.run_id, None)
    Path(output).write_text(text, encoding="utf-8")
    print_safe(notes)
    files = text.count("\ndiff --git ") + text.startswith("diff --git ")
    print(f"run {run.run_id}: {files} file(s) changed, patch written to {output}")


@task(
    help={
        "id": RUN_ID_HELP,
        "step": "The step to go back to (0: before the run)",
    },
    ranges={"step": (0, None)},
)
def rewind(c: Context, id: str = "", step: int = 0) -> None:
    """Restore the run's folder in the workspace to how it was after STEP (0: before it)."""
    run = _one(id)
    notes = workspace_.rewind(workspace_access(), run.run_id, step)
    print_safe(notes)
