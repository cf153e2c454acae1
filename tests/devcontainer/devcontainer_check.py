"""The dev container validated for real: the scenario behind tests/devcontainer.

:func:`run_check` renders a fresh sandbox, brings its model server up with real Compose v2,
runs ``devcontainer up``, then ``devcontainer exec`` runs the supervisor's tests, reaches
``http://model-server:PORT/health`` by service name and creates a file in the mounted
repository whose host owner it checks; everything is torn down and
``results/devcontainer.json`` records the outcome (the "dev container validated"
milestone's evidence, which ``invoke milestones`` reads).

It uses only what the product offers (``sandboxctl.devcontainer``, ``sandboxctl.stack``);
nothing in ``sandboxctl`` imports this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandboxctl import scaffold
from sandboxctl import stack as stack_
from sandboxctl._proc import CommandNotFound, Result, Runner
from sandboxctl.checks.milestones import write_result
from sandboxctl.devcontainer import (
    DEV_UID,
    REMOTE_WORKSPACE,
    DevcontainerCli,
    DevcontainerError,
    choose_docker_path,
    compose_binary,
    compose_files,
    ensure_cli,
    ensure_dev_wheels,
    installed_version,
)
from sandboxctl.stack.compose import run_compose

CHECK_PROJECT = "devc-sandbox"
"""Compose project of the check's fresh sandbox: apart from the user's own stack."""
PROBE_FILE = ".devcontainer-owner-probe"
RESULT_NAME = "devcontainer"
KEEP_ENV = "DEVCONTAINER_CHECK_KEEP"
"""Set to 1 to leave the check's sandbox and containers up (``invoke devcontainer.check
--keep``), for debugging; tear down by hand."""

_PASSED = re.compile(r"(\d+) passed")


def parse_up_output(stdout: str) -> dict[str, Any]:
    """Return the JSON outcome ``devcontainer up`` prints last; raise when it is not success."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "outcome" in data:
            if data["outcome"] != "success":
                raise DevcontainerError(
                    f"devcontainer up: {data.get('message', '?')} {data.get('description', '')}"
                )
            return data
    raise DevcontainerError("devcontainer up printed no outcome (see its log)")


def passed_count(output: str) -> int:
    """Return N from pytest's ``N passed`` summary (0 when absent)."""
    match = _PASSED.search(output)
    return int(match.group(1)) if match else 0


def expected_owner(host_uid: int) -> int:
    """Return the host uid that must own a file the dev user creates in the repository.

    A non-root host user: that user (the CLI's ``updateRemoteUserUID`` gives ``dev`` their
    uid). Root: ``dev`` stays :data:`DEV_UID` (a non-root user cannot become uid 0), so
    files come out owned by 10001 (docs/DEVCONTAINER.md says what to do).
    """
    return host_uid if host_uid != 0 else DEV_UID


def is_uid_image(name: str) -> bool:
    """Tell whether ``name`` is the CLI's ``vsc-...-uid`` image (``updateRemoteUserUID``)."""
    repository = name.rsplit("/", 1)[-1].split(":", 1)[0]
    return repository.startswith("vsc-") and repository.endswith("-uid")


def _tail(result: Result, lines: int = 5) -> str:
    return " ".join((result.stderr or result.stdout).strip().splitlines()[-lines:])


@dataclass
class CheckReport:
    """What :func:`run_check` measured; ``failures`` empty means it passed."""

    host_uid: int
    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def passed(self) -> bool:
        """True when every step passed."""
        return not self.failures and bool(self.figures.get("tests_passed"))

    def detail(self) -> str:
        """One line for ``results/devcontainer.json``."""
        shown = {k: v for k, v in self.figures.items() if k != "sandbox"}
        text = ", ".join(f"{k}={v}" for k, v in shown.items())
        return f"{'; '.join(self.failures) + '; ' if self.failures else ''}{text}"


def render_fresh(source: Path, dest: Path) -> Path:
    """A fresh sandbox in ``dest`` with project :data:`CHECK_PROJECT` (see
    :func:`sandboxctl.scaffold.fresh_sandbox`)."""
    return scaffold.fresh_sandbox(source, dest, CHECK_PROJECT)


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything under it to ``uid:gid`` (links themselves, not targets)."""
    os.lchown(root, uid, gid)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.lchown(Path(folder) / name, uid, gid)


def run_check(
    source: Path,
    scratch: Path,
    *,
    log: Callable[[str], None] = print,
    runner: Runner | None = None,
    keep: bool = False,
    record: bool = True,
) -> CheckReport:
    """Validate the dev container for real on a fresh sandbox; tear everything down.

    Steps: render ``source`` into ``scratch/sandbox``; fill the dev wheels; as root, hand
    the sandbox to :data:`DEV_UID` (see :func:`expected_owner`); bring the model server up
    (``sandboxctl.stack``); ``devcontainer up``; ``devcontainer exec``: the supervisor's
    tests, ``/health`` of ``model-server`` by name, a probe file whose host owner is
    compared; then ``compose down --volumes`` of both files and the sandbox is removed
    (unless ``keep``). With ``record`` the outcome goes to ``source/results/devcontainer.json``.
    """
    run = runner or Runner()
    started = time.monotonic()
    report = CheckReport(host_uid=os.getuid())
    figures = report.figures
    results = source / "results"
    results.mkdir(exist_ok=True)
    report.log_path = results / "devcontainer.log"
    log_file = report.log_path.open("w", encoding="utf-8")
    sandbox = scratch / "sandbox"
    opened: stack_.Stack | None = None
    uid_image = ""

    def note(step: str, result: Result) -> None:
        log_file.write(f"$ {step} (exit {result.returncode})\n{result.stdout}\n{result.stderr}\n")
        log_file.flush()

    try:
        binary = ensure_cli(source, run, log)
        figures["cli_version"] = installed_version(source)
        render_fresh(source, sandbox)
        ensure_dev_wheels(sandbox, run, log)
        if report.host_uid == 0:
            chown_tree(sandbox, DEV_UID, DEV_UID)
        opened = stack_.open_stack(sandbox, log)
        t0 = time.monotonic()
        stack_.bring_up(opened)
        figures["stack_up_s"] = round(time.monotonic() - t0, 1)
        cli = DevcontainerCli(
            binary, choose_docker_path(run), compose_binary(opened.compose), opened.engine.env()
        )
        figures["docker_path"] = cli.docker_path
        log("devcontainer up (builds the dev image on the first run)")
        t0 = time.monotonic()
        up = run.run(cli.up_argv(sandbox), env=cli.env, cwd=sandbox, timeout=1200)
        figures["up_s"] = round(time.monotonic() - t0, 1)
        note("devcontainer up", up)
        outcome = parse_up_output(up.stdout)
        figures["remote_user"] = outcome.get("remoteUser")
        image = opened.podman("inspect", "--format", "{{.ImageName}}", outcome["containerId"])
        # updateRemoteUserUID's per-workspace image (`vsc-...-uid`): removed at teardown.
        uid_image = image.stdout.strip() if image.ok else ""
        figures["uid_image"] = uid_image

        def inside(*command: str) -> Result:
            t = time.monotonic()
            result = run.run(cli.exec_argv(sandbox, command), env=cli.env, cwd=sandbox, timeout=900)
            note(f"devcontainer exec {' '.join(command)}", result)
            figures.setdefault("exec_s", []).append(round(time.monotonic() - t, 1))
            return result

        who = inside("id", "-u")
        figures["container_uid"] = int(who.stdout.strip() or -1) if who.ok else None
        if figures["container_uid"] in (None, 0):
            report.failures.append(f"dev container user is not non-root: {who.stdout.strip()}")
        t0 = time.monotonic()
        # One pytest-xdist worker per core, as a developer runs them (the dev lock has it).
        tests = inside(
            "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "auto",
            "supervisor/tests",
        )  # fmt: skip
        figures["tests_s"] = round(time.monotonic() - t0, 1)
        figures["tests_passed"] = passed_count(tests.stdout)
        if not tests.ok:
            report.failures.append(f"supervisor tests failed inside: {_tail(tests, 3)}")
        editable = inside("python", "-c", "import sandbox_supervisor as m; print(m.__file__)")
        if not editable.stdout.strip().startswith(f"{REMOTE_WORKSPACE}/supervisor/src/"):
            report.failures.append(f"supervisor not installed editable: {editable.stdout.strip()}")
        url = f"http://model-server:{opened.settings.model_port}/health"
        probe = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"  # noqa: E501
        health = inside("python", "-c", probe, url)
        figures["health"] = health.stdout.strip()
        if not (health.ok and '"ok"' in health.stdout):
            report.failures.append(f"{url} not reached from the dev container: {_tail(health)}")
        touched = inside("touch", PROBE_FILE)
        owner = (sandbox / PROBE_FILE).stat().st_uid if touched.ok else None
        figures["file_owner_uid"] = owner
        figures["expected_owner_uid"] = expected_owner(report.host_uid)
        if owner != expected_owner(report.host_uid):
            report.failures.append(
                f"file created inside is owned by uid {owner} on the host, "
                f"expected {expected_owner(report.host_uid)} (host user {report.host_uid})"
            )
    except (DevcontainerError, stack_.StackError, CommandNotFound, OSError) as error:
        report.failures.append(str(error))
    except subprocess.SubprocessError as error:
        report.failures.append(f"{type(error).__name__}: {error}")
    finally:
        if opened is not None and not keep:
            down = run_compose(
                opened.compose,
                ["down", "--volumes", "--remove-orphans"],
                engine=opened.engine,
                project_dir=sandbox,
                files=compose_files(sandbox),
                runner=run,
                capture=True,
            )
            note("compose down --volumes", down)
            if not down.ok:
                report.failures.append(f"teardown failed: {_tail(down)}")
            if is_uid_image(uid_image):
                opened.podman("rmi", uid_image)
        if not keep:
            shutil.rmtree(sandbox, ignore_errors=True)
        figures["total_s"] = round(time.monotonic() - started, 1)
        figures["sandbox"] = str(sandbox)
        log_file.close()
        if record:
            write_result(source, RESULT_NAME, passed=report.passed, detail=report.detail())
    return report
