"""The plan's milestones, each measured now by a real check (never a stored flag).

1. host prepared: ``podman`` answers and Compose v2 is found;
2. machine initialised: the container host's API socket answers (``podman --remote``), and
   on WSL/macOS the Podman machine is running;
3. compose adapted: ``compose config -q`` passes and ``plan.check`` finds no drift in the
   compose files;
4. dev container validated: ``.devcontainer/devcontainer.json`` exists and the Dev
   Containers check left a passing ``results/devcontainer.json``;
5. containers running: every service PLAN.md requires has a running container of this
   Compose project;
6. end to end passed: ``nox -s e2e`` left a passing ``results/e2e.json``.

Result files are written with :func:`write_result` by the test suites that run those checks
(tests/e2e, tests/devcontainer: the tests depend on this module, never the reverse):
``{"passed": true, "finished": "2026-11-26T18:41:23Z", "detail": "..."}``.
Every check takes the shared :class:`~sandboxctl.checks.base.Probes` (root, runner, host
facts, settings) and returns a :class:`~sandboxctl.checks.base.Check` (``done`` when its
status is ``ok``), so tests run them against fake executables on ``PATH``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandboxctl import plan
from sandboxctl._proc import CommandNotFound
from sandboxctl.checks.base import Check, CheckFn, Probes, run_all
from sandboxctl.host.engine import Engine, EngineError, inspect_machine
from sandboxctl.journal.notes import utc_stamp
from sandboxctl.stack.compose import ComposeError, find_compose, run_compose

RESULTS_DIR = "results"
DEFAULT_SERVICES = ("model-server", "supervisor")


def write_result(root: Path, name: str, *, passed: bool, detail: str = "") -> Path:
    """Write ``ROOT/results/NAME.json`` atomically (for the e2e and dev container sessions)."""
    folder = root / RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"passed": passed, "finished": utc_stamp(), "detail": detail}
    with tempfile.NamedTemporaryFile(
        "w", dir=folder, prefix=f".{name}.", suffix=".tmp", delete=False, encoding="utf-8"
    ) as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    target = folder / f"{name}.json"
    os.replace(handle.name, target)
    return target


def read_result(root: Path, name: str) -> dict[str, Any] | None:
    """Return the result file ``results/NAME.json``, or None when absent or unreadable."""
    try:
        data = json.loads((root / RESULTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _run(probes: Probes, argv: Sequence[str]) -> tuple[bool, str]:
    """Run a probe for at most 30 s: whether it passed, and its output or last error line
    (a probe past its time says so: the runner reports it as a failed command)."""
    try:
        result = probes.runner.run(argv, timeout=30)
    except CommandNotFound as error:
        return False, str(error)
    if result.ok:
        return True, result.stdout.strip()
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    return False, lines[-1] if lines else f"exit {result.returncode}"


def host_prepared(probes: Probes) -> Check:
    """Podman answers and Compose v2 is found."""
    name = "host prepared"
    fix = "./bootstrap.sh invoke host.prepare"
    ok, output = _run(probes, ["podman", "--version"])
    if not ok:
        return Check(name, "fail", f"podman does not answer: {output}", fix)
    try:
        compose = find_compose(probes.runner, packaged=probes.packaged_compose)
    except ComposeError as error:
        return Check(name, "fail", str(error), fix)
    return Check(
        name,
        "ok",
        f"{(output.splitlines() or ['podman'])[0]}; Compose {compose.version} ({compose.kind})",
    )


def _engine_answers(probes: Probes, engine: Engine) -> tuple[bool, str]:
    return _run(
        probes,
        [
            "podman",
            "--remote",
            "--url",
            engine.docker_host,
            "version",
            "--format",
            "{{.Server.Version}}",
        ],
    )


def machine_initialised(probes: Probes) -> Check:
    """The container host exists, runs, and its API socket answers."""
    name = "machine initialised"
    try:
        engine = probes.engine()
    except EngineError as error:
        return Check(name, "fail", str(error), "invoke machine.init")
    if engine.kind == "machine" and engine.machine_name:
        info = inspect_machine(probes.runner, engine.machine_name) or {}
        state = str(info.get("State", "unknown")).lower()
        if state != "running":
            return Check(
                name,
                "fail",
                f"Podman machine {engine.machine_name} is {state}",
                "invoke machine.start",
            )
    ok, output = _engine_answers(probes, engine)
    if not ok:
        fix = "invoke machine.start" if engine.kind != "explicit" else "check DOCKER_HOST"
        return Check(name, "fail", f"{engine.docker_host} does not answer: {output}", fix)
    return Check(name, "ok", f"{engine.reason}: {engine.docker_host} answers (Podman {output})")


def compose_adapted(probes: Probes) -> Check:
    """``compose config -q`` passes and the compose files do not drift from PLAN.md."""
    name = "compose adapted"
    try:
        compose = find_compose(probes.runner, packaged=probes.packaged_compose)
        result = run_compose(
            compose,
            ["config", "-q"],
            engine=None,
            project_dir=probes.root,
            runner=probes.runner,
            capture=True,
        )
    except ComposeError as error:
        return Check(name, "fail", str(error), "./bootstrap.sh invoke host.prepare")
    if not result.ok:
        return Check(
            name, "fail", f"compose config fails: {result.stderr.strip()}", "fix compose.yaml"
        )
    try:
        report = plan.check(probes.root)
    except plan.PlanError as error:
        return Check(name, "fail", str(error), "fix PLAN.md")
    settings = probes.answers()
    compose_files = set(plan.compose_files(settings.raw if settings else {}))
    drifts = [d for d in report.drifts if d.file in compose_files]
    if drifts:
        return Check(
            name,
            "fail",
            f"{len(drifts)} drift(s) from PLAN.md, first: {drifts[0]}",
            "invoke plan.check",
        )
    return Check(name, "ok", "compose config passes; no compose drift from PLAN.md")


def _result_status(probes: Probes, name: str, result_name: str, fix: str) -> Check:
    result = read_result(probes.root, result_name)
    where = f"{RESULTS_DIR}/{result_name}.json"
    if result is None:
        return Check(name, "fail", f"no {where}: the check has not run here", fix)
    finished = result.get("finished", "?")
    if result.get("passed") is not True:
        return Check(
            name, "fail", f"{where} says it failed at {finished}: {result.get('detail', '')}", fix
        )
    return Check(name, "ok", f"passed at {finished} ({where})")


def devcontainer_validated(probes: Probes) -> Check:
    """The dev container is configured and its check left a passing result."""
    name = "dev container validated"
    if not (probes.root / ".devcontainer" / "devcontainer.json").is_file():
        return Check(name, "fail", ".devcontainer/devcontainer.json is missing", "copier update")
    return _result_status(probes, name, "devcontainer", "invoke devcontainer.check")


def _required_services(root: Path) -> list[str]:
    try:
        spec = plan.load_plan(root).spec
    except plan.PlanError:
        return list(DEFAULT_SERVICES)
    services: dict[str, Any] = spec["services"]
    return [name for name, want in services.items() if not (want or {}).get("planned")]


def containers_running(probes: Probes) -> Check:
    """Every service PLAN.md requires has a running container of this Compose project."""
    name = "containers running"
    settings = probes.answers()
    project = settings.compose_project_name if settings else "ai-sandbox"
    argv = ["podman"]
    try:
        argv += ["--remote", "--url", probes.engine().docker_host]
    except EngineError as error:
        return Check(name, "fail", str(error), "invoke machine.init")
    argv += [
        "ps",
        "--all",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--format",
        "json",
    ]
    ok, output = _run(probes, argv)
    if not ok:
        return Check(name, "fail", f"podman ps fails: {output}", "invoke doctor")
    try:
        containers = json.loads(output or "[]")
    except json.JSONDecodeError:
        return Check(name, "fail", f"podman ps printed no JSON: {output[:200]}", "invoke doctor")
    running = {
        str((c.get("Labels") or {}).get("com.docker.compose.service"))
        for c in containers
        if isinstance(c, dict) and str(c.get("State", "")).lower() == "running"
    }
    missing = [service for service in _required_services(probes.root) if service not in running]
    if missing:
        return Check(
            name, "fail", f"not running: {', '.join(missing)} (project {project})", "invoke up"
        )
    return Check(name, "ok", f"running: {', '.join(sorted(running))} (project {project})")


def e2e_passed(probes: Probes) -> Check:
    """``nox -s e2e`` left a passing result."""
    return _result_status(probes, "end-to-end passed", "e2e", "nox -s e2e")


MILESTONES: tuple[CheckFn, ...] = (
    host_prepared,
    machine_initialised,
    compose_adapted,
    devcontainer_validated,
    containers_running,
    e2e_passed,
)


def measure(probes: Probes, checks: Sequence[CheckFn] = MILESTONES) -> list[Check]:
    """Run every milestone check now; a check that crashes reports its error, not done."""
    return run_all(checks, probes)


def format_statuses(statuses: Sequence[Check]) -> list[str]:
    """Return one line per milestone: ``[x]``/``[ ]``, name, what was measured, the fix."""
    lines = []
    for number, status in enumerate(statuses, start=1):
        mark = "x" if status.done else " "
        fix = f"  -> {status.fix}" if status.fix and not status.done else ""
        lines.append(f"[{mark}] {number}. {status.name}: {status.detail}{fix}")
    done = sum(status.done for status in statuses)
    lines.append(f"{done}/{len(statuses)} milestones reached")
    return lines
