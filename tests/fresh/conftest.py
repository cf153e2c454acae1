"""Fixtures of the fresh-machine session: fresh Debian 12 machines, one where the README's
first command runs as root and one where it runs as a user with sudo (rootless Podman);
see fresh_machine.py for how a machine is made."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import pytest
from fresh_machine import (
    CACHE,
    GUEST_CA,
    GUEST_CLONE,
    GUEST_USER,
    GUEST_USER_CLONE,
    HOST_CA,
    NETWORK,
    REF,
    ROOT,
    RUN_TIMEOUT_S,
    FreshMachine,
    ReadmeRun,
    SandboxWalk,
    add_sudo_user,
    base_rootfs_tarball,
    clone_into,
    ensure_network,
    first_readme_command,
    host_run,
    preload_images,
    preload_user_images,
    preloaded_images,
    walk_rendered_readme,
)

from sandboxctl import stack
from sandboxctl.bench import coldstart
from sandboxctl.tasks.stack import DEMO_DEST

PRELOAD = os.environ.get("FRESH_PRELOAD", "1") == "1"
REMOVALS: list[Future[object]] = []
"""Machines' files being deleted (their root filesystems: 6-8 s each); the session waits
for all of them at its end (:func:`removals_finish`), so two deletions overlap."""
_REMOVER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fresh-rm")


@contextmanager
def started_machine(label: str, *, user: str | None = None) -> Iterator[FreshMachine]:
    """Start a fresh Debian 12 machine (``label`` names its log); for root, the clean clone
    and the preloaded images go in before it starts; for ``user``, the machine gets sudo and
    the user first, then the clone in their home and the images in their rootless store."""
    if shutil.which("podman") is None:
        pytest.fail("podman is needed on the host to start the fresh machine")
    started = time.monotonic()
    tarball = base_rootfs_tarball()
    timings = {"rootfs_cache_s": time.monotonic() - started}
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = CACHE / f"run-{uuid.uuid4().hex[:8]}"  # on the host's disk: real overlay
    rootfs = scratch / "rootfs"
    name = f"ai-sandbox-fresh-{scratch.name}"
    log_dir = ROOT / "results" / "fresh"  # kept after the run, unlike pytest's tmp folders
    log_dir.mkdir(parents=True, exist_ok=True)
    machine = FreshMachine(name, rootfs, log_dir / f"readme-command{label}.log", timings)
    try:
        host_run(["mkdir", "-p", str(rootfs)])
        host_run(["tar", "-C", str(rootfs), "--numeric-owner", "-xf", str(tarball)])
        if user is None:
            clone_root = rootfs / GUEST_CLONE.lstrip("/")
            host_run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone_root)])
            if REF:  # an experiment: another commit of this repository (see REF)
                host_run(["git", "-C", str(clone_root), "checkout", "--quiet", REF])
        if user is None and PRELOAD:
            step = time.monotonic()
            # What the container session did not build yet (layer caches make it quick).
            stack.prepare_images(stack.open_stack(ROOT))
            preload_images(rootfs / "var/lib/containers/storage", preloaded_images(), scratch)
            timings["preload_s"] = time.monotonic() - step
        ensure_network()
        host_run(
            [
                "podman", "run", "-d", "--rm", "--privileged", "--name", name,
                "--network", NETWORK, "--hostname", "fresh-debian",
                "-v", f"{HOST_CA}:{GUEST_CA}:ro",
                "-e", f"PIP_CERT={GUEST_CA}", "-e", f"SSL_CERT_FILE={GUEST_CA}",
                "-e", f"REQUESTS_CA_BUNDLE={GUEST_CA}", "-e", "HOME=/root",
                # Output in the order a terminal shows it (Python buffers a file fully).
                "-e", "PYTHONUNBUFFERED=1",
                "-e", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--rootfs", str(rootfs), "sleep", "infinity",
            ]
        )  # fmt: skip
        if user is not None:
            step = time.monotonic()
            add_sudo_user(machine, user)
            clone_into(machine, GUEST_USER_CLONE, user)
            machine.user = user
            timings["user_setup_s"] = time.monotonic() - step
            if PRELOAD:
                step = time.monotonic()
                stack.prepare_images(stack.open_stack(ROOT))
                preload_user_images(machine, preloaded_images())
                timings["preload_s"] = time.monotonic() - step
        yield machine
    finally:
        host_run(["podman", "rm", "-f", "-t", "0", name], check=False)
        REMOVALS.append(_REMOVER.submit(host_run, ["rm", "-rf", str(scratch)], check=False))


@pytest.fixture(scope="session", autouse=True)
def removals_finish() -> Iterator[None]:
    """Set up first, torn down last: wait until every machine's files are deleted."""
    yield
    for removal in REMOVALS:
        removal.result()


def run_readme_command(machine: FreshMachine, clone: str, who: str) -> ReadmeRun:
    """Run the README's first command, exactly as printed, in ``clone`` in the machine."""
    command = first_readme_command()
    start = time.monotonic()
    result = machine.exec(f"cd {clone} && {command}", timeout=RUN_TIMEOUT_S, log_to=machine.log)
    seconds = time.monotonic() - start
    preloaded = "preloaded images" if "preload_s" in machine.timings else "cold"
    print(
        f"\nfresh: `{command}` in a fresh Debian 12 as {who} ({preloaded}) exited "
        f"{result.returncode} after {seconds:.0f} s; {len(result.stdout.splitlines())} lines "
        f"of output (full log: {machine.log}; setup: "
        + ", ".join(f"{key} {value:.0f}" for key, value in machine.timings.items())
        + ")",
        file=sys.stderr,
    )
    if preloaded == "cold":
        write_cold_report(machine, clone, command, seconds)
    return ReadmeRun(command, result.returncode, result.stdout, seconds, machine)


def write_cold_report(machine: FreshMachine, clone: str, command: str, seconds: float) -> None:
    """Write where the cold run's time went (results/fresh/cold-start.md, which `nox -s
    speed` copies into docs/performance/): its output's timeline and the compile by target
    from the model image's build log, read from the machine's disk before it goes."""
    logs = machine.rootfs / clone.lstrip("/") / DEMO_DEST / ".cache" / "build-logs"
    build_log = "".join(
        path.read_text(errors="replace") for path in sorted(logs.glob("*model-server*.log"))
    )
    date = time.strftime("%Y-%m-%d", time.gmtime())
    report = coldstart.render(
        command=command,
        total_s=seconds,
        timeline=coldstart.parse_timeline(machine.log.with_suffix(".timeline").read_text()),
        build_log=build_log,
        machine=f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        date=date,
    )
    path = machine.log.parent / "cold-start.md"
    path.write_text(report, encoding="utf-8")
    commit = host_run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).stdout.strip()
    row = coldstart.history_row(
        date=date,
        commit=REF or commit,
        total_s=seconds,
        build_log=build_log,
    )
    (machine.log.parent / "cold-start-row.md").write_text(row, encoding="utf-8")
    print(f"fresh: the cold run's breakdown is in {path}", file=sys.stderr)


@pytest.fixture(scope="session")
def fresh_machine() -> Iterator[FreshMachine]:
    """Start a fresh Debian 12 machine with a clean clone of this repository in it."""
    with started_machine("") as machine:
        yield machine


class MachineStarter:
    """Starts the sudo user's machine in a thread, so that its setup (a root filesystem,
    the user, the clone, the preloaded images: about 15 s) overlaps the root machine's
    README command; :meth:`machine` waits for it (and raises what its setup raised)."""

    def __init__(self) -> None:
        self._exits = ExitStack()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fresh-user")
        self._future: Future[FreshMachine] | None = None

    def start(self) -> None:
        """Begin the setup (once)."""
        if self._future is None:
            machine = started_machine("-sudo-user", user=GUEST_USER)
            self._future = self._pool.submit(self._exits.enter_context, machine)

    def machine(self) -> FreshMachine:
        """The started machine, once its setup is done."""
        self.start()
        assert self._future is not None
        return self._future.result()

    def close(self) -> None:
        """Wait for a setup still running, then remove the machine."""
        self._pool.shutdown(wait=True)
        self._exits.close()


@pytest.fixture(scope="session")
def user_machine_starter() -> Iterator[MachineStarter]:
    """The sudo user's machine, started at most once, removed at the session's end."""
    starter = MachineStarter()
    try:
        yield starter
    finally:
        starter.close()


def session_uses(request: pytest.FixtureRequest, fixture: str) -> bool:
    """Whether a test of this session needs ``fixture`` (directly or through another)."""
    return any(fixture in getattr(item, "fixturenames", ()) for item in request.session.items)


@pytest.fixture(scope="session")
def readme_run(fresh_machine: FreshMachine, request: pytest.FixtureRequest) -> ReadmeRun:
    """Run the README's first command in the fresh machine, as root, exactly as printed;
    the sudo user's machine, when this session uses it, is set up meanwhile (set up only,
    never run: two machines' model servers on 2 cores slow each other down)."""
    if PRELOAD and session_uses(request, "fresh_user_machine"):
        request.getfixturevalue("user_machine_starter").start()
    return run_readme_command(fresh_machine, GUEST_CLONE, "root")


@pytest.fixture(scope="session")
def fresh_user_machine(user_machine_starter: MachineStarter) -> FreshMachine:
    """Start a fresh Debian 12 machine with a user who has sudo and the clone in their home."""
    return user_machine_starter.machine()


@pytest.fixture(scope="session")
def user_readme_run(fresh_user_machine: FreshMachine) -> ReadmeRun:
    """Run the README's first command as the user with sudo, from a login shell (no systemd,
    so no login session made their runtime folder), exactly as printed."""
    return run_readme_command(fresh_user_machine, GUEST_USER_CLONE, f"{GUEST_USER} (sudo)")


@pytest.fixture(scope="session")
def sandbox_walk(readme_run: ReadmeRun) -> SandboxWalk:
    """After the template's first command (same machine, as root): `copier copy` a new
    sandbox beside the clone and walk its README's first commands exactly as printed."""
    return walk_rendered_readme(readme_run.machine, GUEST_CLONE, "")


@pytest.fixture(scope="session")
def user_sandbox_walk(user_readme_run: ReadmeRun) -> SandboxWalk:
    """The same walk as the user with sudo, in their rootless Podman."""
    return walk_rendered_readme(user_readme_run.machine, GUEST_USER_CLONE, "-sudo-user")
