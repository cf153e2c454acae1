"""Stack tasks: up, down, ps, logs, run one agent task, images.build, the end-to-end check."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit

from sandboxctl import stack as stack_
from sandboxctl.errors import SandboxError
from sandboxctl.tasks._support import ask, checked_project, opened
from sandboxctl.tasks._task import task

DEMO_TASK = "Create hello.txt containing a greeting."
SERVICES = ("model-server", "supervisor", "tools")
"""The services of compose.yaml (a unit test holds the two together)."""
DEMO_DEST = "demo-sandbox"
"""Folder of `invoke demo`'s sandbox; its name is also the demo's Compose project."""


def _require_ready(stack: stack_.Stack, *, containers: bool = True) -> None:
    """Stop in seconds with the fix when the doctor's preflight finds a blocking problem."""
    from sandboxctl.checks import doctor

    found = doctor.stack_preflight(stack, containers=containers)
    failed = [check for check in found if check.blocks]
    if failed:
        raise Exit(doctor.describe_failures(failed), code=1)
    for check in doctor.unseen_warnings(found, os.environ):
        print(f"warning: {check.name}: {check.detail}; {check.fix}", file=sys.stderr)


@task(
    help={
        "build": "Rebuild the images even when they exist",
        "timeout": "Seconds to wait for the model server's /health",
    },
    ranges={"timeout": (1, None)},
)
def up(c: Context, build: bool = False, timeout: int = 300) -> None:
    """Build what is missing (images, model, API key) and start the stack; wait until ready."""
    stack = opened()
    _require_ready(stack)
    stack_.bring_up(stack, rebuild=build, deadline_s=float(timeout))


@task(
    help={
        "volumes": "Also delete the volumes (model-data, workspace, logs): their data is lost",
        "yes": "Do not ask before deleting volumes",
    }
)
def down(c: Context, volumes: bool = False, yes: bool = False) -> None:
    """Stop and remove the stack's containers and network (volumes only when asked)."""
    if volumes and not yes and not ask("Delete the workspace, logs and model-data volumes?"):
        raise SandboxError("kept everything (pass --yes to delete the volumes)")
    stack = opened()
    stack.require(stack.compose_run("down", *(["--volumes"] if volumes else [])), "down")


@task()
def ps(c: Context) -> None:
    """Show the stack's containers and their state."""
    stack = opened()
    stack.require(stack.compose_run("ps", "--all"), "ps")


@task(
    help={
        "service": f"Only this service ({', '.join(SERVICES)})",
        "follow": "Keep following new lines",
        "tail": "Lines to show from the end of each log",
    },
    ranges={"tail": (0, None)},
    choices={"service": ("", *SERVICES)},
)
def logs(c: Context, service: str = "", follow: bool = False, tail: int = 100) -> None:
    """Show the containers' logs."""
    args = ["logs", "--tail", str(tail), *(["--follow"] if follow else [])]
    stack = opened()
    stack.require(stack.compose_run(*args, *([service] if service else [])), "logs")


@task(
    help={
        "task": "What the agent should do, in words",
        "max_steps": "Step budget of this run (0: the served model's catalog entry's, else "
        "the supervisor's setting)",
        "check": "A command run in the tools container after the run: its exit status "
        "alone makes the run passed or failed (e.g. 'test -f hello.txt')",
        "in": "Confine the run to this project of the workspace (see workspace.import)",
    },
    ranges={"max_steps": (0, 10_000)},
)
def run(c: Context, task: str, max_steps: int = 0, check: str = "", in_: str = "") -> None:
    """Run one agent task in the running stack; its steps show as they happen."""
    from sandbox_supervisor.session import checked_check, checked_task

    from sandboxctl.catalog import catalog

    try:  # before any work: nothing starts for a task or check that cannot be right
        checked_task(task)
        if check:
            checked_check(check)
    except ValueError as error:
        raise SandboxError(str(error)) from None
    subdir = ["--subdir", checked_project(in_)] if in_ else []
    stack = opened()
    _require_ready(stack, containers=False)
    stack_.require_running(stack)
    model = stack.settings.sandbox_model
    if not max_steps and (budget := catalog.step_budget(stack.root, model)):
        max_steps = budget
        print(f"run: {model} gets {budget} steps (its catalog entry; --max-steps N for more)")
    extra = ["--max-steps", str(max_steps)] if max_steps else []
    result, log_path = stack.run_task(task, [*extra, *subdir], check=check or None)
    _print_outcome(stack, log_path)  # the steps streamed above: not a second time
    if result.returncode == stack_.CHECK_FAILED_EXIT_CODE:
        raise SandboxError("the check failed (its output is above): the task was not done")
    if result.returncode not in stack_.FINISHED_EXIT_CODES:
        raise SandboxError(f"the supervisor failed (exit {result.returncode})")


def _print_outcome(stack: stack_.Stack, log_path: str) -> None:
    """How the run ended, from its trajectory: the check with its output (when one ran),
    then one line on the end, whether anything verified it and where to read it."""
    from sandboxctl.stack import runs

    try:
        run = runs.written_to(stack, log_path)
    except runs.RunsError as error:
        print(f"run: {error}")
        return
    if run is None:
        print(f"run: the supervisor wrote no trajectory to {log_path}")
    else:
        for line in runs.check_report(run):
            print(line)
        print(f"{runs.summary(run)}; read it with `invoke runs.show --id {run.run_id}`")


@task(
    help={
        "only": "Build only this service's image (model-server, supervisor or egress)",
        "rebuild": "Build even when the image is up to date (layer caches still apply)",
    }
)
def build(c: Context, only: str = "", rebuild: bool = False) -> None:
    """Build the model-server, supervisor (and, with EGRESS_ALLOW, egress) images that are
    missing or out of date (what they are built from changed); --rebuild builds them
    anyway."""
    stack_.prepare_images(opened(), rebuild=rebuild, only=only)


@task(help={"dest": "Folder of the demo sandbox (re-rendered if it is an earlier demo)"})
def demo(c: Context, dest: str = DEMO_DEST) -> None:
    """Scaffold a sandbox with default answers, bring it up and run one agent task."""
    from sandboxctl.tasks.scaffold import render_sandbox

    _require_ready(opened())  # the template root is a sandbox too: check this host first
    target = render_sandbox(Path(dest), replace_rendered=True).resolve()
    with c.cd(str(target)):  # the sandbox's own tasks, answers and secrets
        c.run("invoke up", pty=False, in_stream=False)
        c.run(shlex.join(["invoke", "run", DEMO_TASK]), pty=False, in_stream=False)
    # The sandbox's own environment: the command works as printed, no venv to activate.
    print(f"demo: sandbox in {target}; stop it with `cd {dest} && ./bootstrap.sh invoke down`")


@task()
def e2e(c: Context) -> None:
    """Run the end-to-end check (`nox -s e2e`): render, build, up, one task, down."""
    c.run("nox -s e2e", pty=False)
