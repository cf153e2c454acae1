"""Host tasks: prepare a Debian/WSL host for the sandbox, and check it (doctor)."""

from __future__ import annotations

import os
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit

from sandboxctl._proc import Runner
from sandboxctl.checks import doctor as doctor_
from sandboxctl.checks.base import Probes
from sandboxctl.errors import SandboxError
from sandboxctl.host import prepare as hostprep
from sandboxctl.stack.compose import packaged_binary
from sandboxctl.tasks._support import ask, host, root
from sandboxctl.tasks._task import task


@task(
    help={
        "yes": "Answer yes to every change (install packages, write the containers.conf drop-in)",
        "dry_run": "Only print what would be installed, linked and written",
    }
)
def prepare(c: Context, yes: bool = False, dry_run: bool = False) -> None:
    """Install Podman, runc, debootstrap, the Compose v2 plugin; fix engine quirks."""
    info = host()
    ctx = hostprep.PrepareContext(
        runner=Runner(),
        is_root=info.is_root,
        home=Path.home(),
        debian=hostprep.is_debian(),
        compose_binary=packaged_binary(),
    )
    report = hostprep.prepare(ctx, dry_run=dry_run, confirm=(lambda _q: True) if yes else ask)
    for line in report.lines:
        print(line)
    if report.blocking:
        raise SandboxError("the engine still fails; see above and docs/HOST.md")
    if dry_run:
        print("dry run: nothing changed")
    elif not report.changed:
        print("host already prepared: nothing to do")


@task(
    help={
        "quick": "Skip the checks that run containers and hash the model file",
    }
)
def doctor(c: Context, quick: bool = False) -> None:
    """Check the engine, Compose, cgroups, quirks, DNS, model; print fixes."""
    inputs = Probes(root=root(), host=host(), environ=dict(os.environ), quick=quick)
    checks = doctor_.run_checks(inputs)
    doctor_.render(checks)
    code = doctor_.exit_code(checks)
    if code:
        raise Exit("doctor: a check failed that blocks the stack (see its fix: line)", code=code)
