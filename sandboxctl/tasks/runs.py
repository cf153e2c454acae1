"""Past agent runs, from the host: runs.list, runs.show, runs.export (no container)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit

from sandboxctl.stack import runs as runs_
from sandboxctl.tasks._args import task
from sandboxctl.tasks.stack import opened


def _runs() -> list[runs_.Run]:
    with opened() as stack:
        try:
            return runs_.read_runs(stack)
        except runs_.RunsError as error:
            raise Exit(str(error), code=1) from error


def _one(run_id: str) -> runs_.Run:
    try:
        return runs_.find(_runs(), run_id)
    except runs_.RunsError as error:
        raise Exit(str(error), code=1) from error


@task(name="list")
def list_(c: Context) -> None:
    """List past runs: id, start, how it ended, steps, tokens, seconds, task."""
    found = _runs()
    if not found:
        raise Exit('no runs yet: start one with `invoke run "TASK"`', code=1)
    print("\n".join(runs_.table(found)))


@task(help={"id": "The run's id or its first characters (default: the last run)"})
def show(c: Context, id: str = "") -> None:
    """Show one run (the last by default): steps, tool calls, results, how it ended."""
    print(runs_.render(_one(id)))


@task(
    help={
        "id": "The run's id or its first characters (default: the last run)",
        "output": "File (or folder) to write the trajectory to (default: run-ID.jsonl here)",
    }
)
def export(c: Context, id: str = "", output: str = ".") -> None:
    """Write one run's trajectory (JSON lines) to a file on the host."""
    run = _one(id)
    try:
        written = runs_.export(run, Path(output))
    except runs_.RunsError as error:
        raise Exit(str(error), code=1) from error
    print(f"run {run.run_id}: {len(run.records)} records written to {written}")
