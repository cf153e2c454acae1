"""Your own project in and out of the workspace: workspace.import, workspace.list,
workspace.export (see sandboxctl.stack.workspace)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from sandbox_supervisor.projects import ProjectError, summary
from sandbox_supervisor.view import safe

from sandboxctl.errors import SandboxError
from sandboxctl.stack import workspace as workspace_
from sandboxctl.tasks._support import print_safe, workspace_access
from sandboxctl.tasks._task import task


def _left_out(lines: list[str]) -> None:
    for line in lines:
        print(f"left out: {safe(line)}")


@task(
    name="import",
    help={
        "path": "The folder or git checkout to copy in",
        "name": "Its name in the workspace (default: the folder's name)",
        "replace": "Replace a project of that name (its content is deleted first)",
    },
)
def import_(c: Context, path: str, name: str = "", replace: bool = False) -> None:
    """Copy a folder or git checkout into the workspace (.git included, ignored files not)."""
    source = Path(path).resolve()
    name = name or source.name
    try:
        packed, result = workspace_.import_project(
            workspace_access(), source, name, replace=replace
        )
    except (ProjectError, OSError) as error:
        raise SandboxError(str(error)) from error
    _left_out(packed.refused)
    print_safe(result.stderr)
    print(f"{summary(packed, 'imported')} into the workspace as {name!r}")
    print(f'work on it with `invoke run --in {name} "TASK"`')


@task(name="list")
def list_(c: Context) -> None:
    """List the projects in the workspace: name, files, bytes."""
    lines = workspace_.list_projects(workspace_access())
    print("\n".join(lines) if lines else "the workspace holds no project yet")


@task(
    help={
        "name": "The project's name in the workspace",
        "dest": "A new (or empty) folder on this machine to copy it into",
    }
)
def export(c: Context, name: str, dest: str) -> None:
    """Copy a project out of the workspace into DEST; links out, devices and the like stay."""
    try:
        copied, notes = workspace_.export_project(workspace_access(), name, Path(dest))
    except (ProjectError, OSError) as error:
        raise SandboxError(str(error)) from error
    for line in notes.splitlines():  # what the container left out of the stream
        if line.startswith("left out: "):
            print(safe(line))
    _left_out(copied.refused)
    print(f"{summary(copied, 'exported')} to {dest}")
