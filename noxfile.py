"""Nox sessions of the sandbox: lint, unit tests, template tests, containers, end to end.

`nox -l` lists them; `nox` runs the default ones (the whole suite). Dependencies come from
`requirements/dev.lock` (compiled from pyproject.toml), never pinned here. Sessions run
pytest and the project's module entry points (`python -m sandboxctl ...`), never Invoke:
Invoke's `e2e` and `devcontainer.check` tasks call Nox, so the arrow goes one way only.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.needs_version = ">=2026.10"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
IS_TEMPLATE = (ROOT / "copier.yml").is_file()
LOCK = "requirements/dev.lock"
# uv verifies TLS against the system trust store, as pip does on Debian.
os.environ.setdefault("UV_NATIVE_TLS", "1")

nox.options.sessions = [
    "lint",
    "tests",
    "supervisor",
    "browser",
    *(["template"] if IS_TEMPLATE else []),
    "container",
    "e2e",
    "devcontainer",
    # a brand-new Debian 12 runs the template README's first command (tests/fresh is not
    # rendered into sandboxes)
    *(["fresh"] if IS_TEMPLATE else []),
]


def install(session: nox.Session) -> None:
    """Install the locked tooling and this project (editable) into the session."""
    session.install("-r", LOCK, "-e", ".", "-e", "supervisor")


def sandboxctl(session: nox.Session, command: str) -> None:
    """Run ``python -m sandboxctl COMMAND`` (the library call its Invoke task makes)."""
    session.run("python", "-m", "sandboxctl", command)


WORKERS = ["-n", "auto", "--maxschedchunk", "2"]
"""One pytest-xdist worker per core, handed tests two at a time so that the long ones
(marked ``long``, run first) spread over the workers."""


def pytest(
    session: nox.Session, *paths: str, marks: str | None = None, workers: bool = False
) -> None:
    """Run pytest on ``paths``, printing its 10 slowest tests (where the session's time
    goes); ``workers``: one pytest-xdist worker per core, for sessions whose tests share
    nothing (no containers, no fixed ports), handed two tests at a time, so that the tests
    marked ``long`` (their conftest puts them first) spread over the workers instead of
    queueing on one. pytest's "no tests ran" (exit 5) fails the session."""
    args = ["pytest", *paths, "--durations=10"]
    if workers:
        args += WORKERS
    if marks:
        args += ["-m", marks]
    session.run(*args, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style, formatting, types, Containerfiles and shell scripts."""
    install(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "sandboxctl", "tasks.py", "noxfile.py")
    # Each test folder has its own top-level modules (conftest.py and helpers): one at a time.
    for folder in sorted(p for p in (ROOT / "tests").iterdir() if p.is_dir()):
        session.run("mypy", str(folder.relative_to(ROOT)))
    session.run("mypy", "supervisor/src", "supervisor/tests", "supervisor/bench")
    sandboxctl(session, "plan-check")
    containerfiles = sorted(str(p) for p in ROOT.glob("*/Containerfile*"))
    if containerfiles:
        session.run("hadolint", *containerfiles)
    scripts = [
        "bootstrap.sh",
        *(str(p) for p in sorted(ROOT.glob("*/*.sh")) if not p.is_symlink()),
        *(str(p) for p in sorted(ROOT.glob(".ci/*"))),
    ]
    session.run("shellcheck", *scripts, external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the unit tests, and the dev container check's own parts (no containers needed)."""
    install(session)
    pytest(session, "tests/unit", "tests/devcontainer", marks="not container", workers=True)


@nox.session
def supervisor(session: nox.Session) -> None:
    """Run the supervisor package's tests (scripted model, fake server, real processes)."""
    install(session)
    pytest(session, "supervisor/tests", workers=True)


@nox.session
def browser(session: nox.Session) -> None:
    """Open the run viewer's pages in headless Chromium (Debian's package); screenshots."""
    install(session)
    pytest(session, "tests/browser")


@nox.session
def template(session: nox.Session) -> None:
    """Render the Copier template across its answers and check the results."""
    if not IS_TEMPLATE:
        session.error("this is a rendered sandbox: the template tests live in the template")
    install(session)
    pytest(session, "tests/template", workers=True)


@nox.session
def container(session: nox.Session) -> None:
    """Build and probe real images with Podman (model server, engine service); minutes cold."""
    install(session)
    sandboxctl(session, "base-image")
    # What the container tests run: the pinned source, the offline tiny model, the image.
    sandboxctl(session, "model-source")
    sandboxctl(session, "model-tiny")
    sandboxctl(session, "model-build")
    pytest(session, "tests/container", marks="container")


@nox.session
def vulkan(session: nox.Session) -> None:
    """Compile the Vulkan model-server image for real (no GPU needed); long, not a default."""
    install(session)
    sandboxctl(session, "base-image")
    sandboxctl(session, "model-source")
    pytest(session, "tests/gpu_build", "-s", marks="container")


@nox.session
def e2e(session: nox.Session) -> None:
    """Render a sandbox, bring the stack up on Podman with Compose v2, run an agent task."""
    install(session)
    sandboxctl(session, "base-image")
    pytest(session, "tests/e2e", "-s")


@nox.session
def devcontainer(session: nox.Session) -> None:
    """Bring the dev container up with the pinned Dev Containers CLI on Podman; tests inside."""
    install(session)
    sandboxctl(session, "base-image")
    pytest(session, "tests/devcontainer", "-s", marks="container")


@nox.session
def fresh(session: nox.Session) -> None:
    """Run the README's first command on a brand-new Debian 12 (a privileged container with
    its own Podman; the container session's images preloaded), as root and then as a user
    with sudo (rootless Podman, in a second machine); needs root or sudo."""
    install(session)
    pytest(session, "tests/fresh", "-s")


QUICK_TESTS = {
    "tests": ["tests/unit", "tests/devcontainer", "-m", "not container"],
    "supervisor": ["supervisor/tests"],
}
"""The pytest arguments of the quick sessions whose time `speed` measures."""


@nox.session
def speed(session: nox.Session) -> None:
    """Measure where people wait, and write docs/performance/ (not in the default run):
    the quick sessions' tests in one process and with one worker per core, in the same run
    (sessions.md), and the README's first command on a fresh Debian 12 with nothing cached
    (cold-start.md: its time, the longest waits, the compile by target; needs root or sudo,
    about 8 minutes on 2 cores). ``nox -s speed -- quick`` or ``-- cold`` runs one part."""
    install(session)
    parts = set(session.posargs) or {"quick", *(["cold"] if IS_TEMPLATE else [])}
    if unknown := parts - {"quick", "cold"}:
        session.error(f"unknown part(s) {sorted(unknown)}: choose quick, cold or both")
    if "cold" in parts and not IS_TEMPLATE:
        session.error("the cold run is the template's (tests/fresh is not rendered)")
    if "quick" in parts:
        _speed_of_quick_sessions(session)
    if "cold" in parts:
        report = ROOT / "results" / "fresh" / "cold-start.md"
        report.unlink(missing_ok=True)
        report.with_name("cold-start-row.md").unlink(missing_ok=True)
        session.run(
            "pytest", "-s", "-p", "no:cacheprovider", "tests/fresh/test_fresh_machine.py",
            env={"FRESH_PRELOAD": "0"},
        )  # fmt: skip
        target = ROOT / "docs" / "performance" / "cold-start.md"
        target.write_text(report.read_text(encoding="utf-8"), encoding="utf-8")
        history = target.with_name("cold-start-history.md")
        row = report.with_name("cold-start-row.md").read_text(encoding="utf-8")
        with history.open("a", encoding="utf-8") as table:
            if table.tell() == 0:
                from sandboxctl.bench.coldstart import HISTORY_HEADER

                table.write(HISTORY_HEADER)
            table.write(row)
        session.log(f"wrote {target.relative_to(ROOT)}, appended to {history.name}")


def _speed_of_quick_sessions(session: nox.Session) -> None:
    """The quick sessions' pytest runs, serial against a worker per core: sessions.md."""
    import time

    rows = []
    for name, args in QUICK_TESTS.items():
        seconds = {}
        for workers in ("0", "auto"):
            start = time.monotonic()
            how = WORKERS if workers == "auto" else ["-n", "0"]
            session.run("pytest", "-q", "-p", "no:cacheprovider", *how, *args)
            seconds[workers] = time.monotonic() - start
        rows.append(
            f"| `{name}` | {seconds['0']:.0f} s | {seconds['auto']:.0f} s "
            f"| {seconds['0'] / seconds['auto']:.2f} |"
        )
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    report = ROOT / "docs" / "performance" / "sessions.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        f"Measured {stamp} by `nox -s speed` on {cores} cores (load average {load:.1f} at "
        "the end): the quick sessions' pytest runs, one process against one pytest-xdist "
        "worker per core, in the same run. `nox -s tests supervisor` run with the workers "
        "and print their 10 slowest tests.\n\n"
        "| session | one process | a worker per core | speed-up |\n| --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + "\n"
    )
