"""The run viewer's tasks, in the `runs` collection: runs.view writes a run's page,
runs.serve serves every run and evaluation on 127.0.0.1 (logic: :mod:`sandboxctl.runview`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from invoke.context import Context

from sandboxctl.errors import SandboxError
from sandboxctl.runview import model, pages, server, source
from sandboxctl.stack import runs as runs_
from sandboxctl.stack import workspace as workspace_
from sandboxctl.tasks._support import opened, root
from sandboxctl.tasks._task import task

LOGS_HELP = "Read runs from this trajectory file or folder instead of the stack's logs volume"


def _source(logs: str) -> server.RunSource:
    """The runs: from ``logs`` when given, else from the stack's logs volume."""
    if logs:
        return lambda: source.read_folder(Path(logs))
    stack = opened()
    return lambda: runs_.read_runs(stack)


def _with_diffs(run: runs_.Run) -> runs_.Run:
    """The run with each recorded step's diff, read from the stack's logs volume; the run
    as it is (and a line saying why) when its record cannot be read."""
    access = workspace_.VolumeAccess.of(opened())
    try:
        access.require()
        return source.with_step_diffs(run, workspace_.step_diffs(access, run.run_id))
    except workspace_.WorkspaceError as error:
        print(f"runs.view: the page has no diffs: {error}", file=sys.stderr)
        return run


@task(
    name="view",
    help={
        "id": "The run's id or its first characters (default: the last run)",
        "output": "File or folder of the page (default: results/runs/run-ID.html)",
        "logs": LOGS_HELP,
    },
)
def view(c: Context, id: str = "", output: str = "", logs: str = "") -> None:
    """Write one run's page (self-contained HTML: open it from disk) and print its path."""
    found: Sequence[runs_.Run] = _source(logs)()
    run = runs_.find(found, id)
    if not logs and source.recorded_steps(run):
        run = _with_diffs(run)
    html = pages.run_page(model.build(run))
    print(source.write_page(html, run.run_id, Path(output or root() / "results" / "runs")))


@task(
    name="serve",
    help={
        "port": "Port on 127.0.0.1 (0: any free one)",
        "logs": LOGS_HELP,
        "results": "Folder of the evaluations (default: results/eval)",
    },
    ranges={"port": (0, 65535)},
)
def serve(c: Context, port: int = 8765, logs: str = "", results: str = "") -> None:
    """Serve the runs and evaluations on 127.0.0.1, read-only, until Ctrl-C."""
    runs = server.Cached(_source(logs))
    site = server.Site(runs, Path(results) if results else root() / "results" / "eval")
    try:
        server.serve(site, port)
    except OSError as error:
        raise SandboxError(f"cannot listen on 127.0.0.1:{port}: {error.strerror}") from error
