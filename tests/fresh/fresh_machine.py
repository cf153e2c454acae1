"""A brand-new Debian 12 machine for the README's first command, built on this host
(the helpers; conftest.py holds the fixtures).

The machine is a ``debootstrap --variant=minbase bookworm`` root filesystem (the same
debootstrap that ``invoke images.base`` runs, cached as a tarball between runs), unpacked
afresh for every run onto the host's disk and started as a privileged container with
``--rootfs``, so its own Podman gets real overlay storage and its own network namespace.
Nothing is preinstalled in it: a clean clone of this repository is copied in and the
README's first command runs exactly as printed: as root in one machine and, in another, as
a user with sudo (rootless Podman) from a login shell, that machine getting first what a
user's own Debian has and minbase lacks, ``sudo`` and the user. Only two things come from
the host, as a user's own setup would: the CA bundle that HTTPS to the package index needs
here (mounted read-only, named by ``PIP_CERT``/``SSL_CERT_FILE`` as a user behind a
TLS-inspecting proxy sets them), and, to fit CI's time, the images the ``container``
session already built, loaded into the nested store (the user's rootless one) under the
demo's names.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandboxctl._proc import Runner
from sandboxctl.bench import coldstart
from sandboxctl.stack.compose import compose_config, find_compose
from sandboxctl.stack.images import service_images
from sandboxctl.tasks.stack import DEMO_DEST

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ai-sandbox" / "fresh"
SUITE = "bookworm"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
GUEST_CA = "/run/host-ca/ca-certificates.crt"
GUEST_CLONE = "/root/ai-sandbox-template"
GUEST_USER = "alice"
GUEST_USER_CLONE = f"/home/{GUEST_USER}/ai-sandbox-template"
PASSED_ENV = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PYTHONUNBUFFERED")
"""What the user's login shell keeps from the machine's environment (``su -w``): the CA
bundle settings a user behind a TLS-inspecting proxy sets in their profile, and unbuffered
output so the log reads in order."""
NETWORK = "ai-sandbox-fresh"
SUBNET = "10.213.0.0/24"
"""The fresh machine's own network: outside the nested engine's defaults (10.88.0.0/16 and
10.89.x.0/24), so the nested bridges do not shadow the route to the Debian mirror."""
RUN_TIMEOUT_S = 40 * 60
WALK_SANDBOX = "my-sandbox"
"""The folder (and so the Compose project) the walk renders with ``copier copy``, beside
the template's clone in the machine."""
WALK_ANSWERS = ("model_port=8181",)
"""The answers the walk changes from the defaults (one, as a user would)."""
REF = os.environ.get("FRESH_REF", "")
"""Commit to clone instead of HEAD: how to show that an older commit, or one with an
install step removed, fails here (``FRESH_REF=abc123 nox -s fresh``)."""


def _root_prefix() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "--non-interactive"]


def host_run(
    argv: Sequence[str], *, check: bool = True, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run a host command as root (through sudo when needed); fail the test on error."""
    result = subprocess.run(
        [*_root_prefix(), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"`{' '.join(argv)}` failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def first_readme_command(readme: Path = ROOT / "README.md") -> str:
    """Return the README's first command, as printed (the first line of its first sh block,
    without the trailing comment)."""
    match = re.search(r"```sh\n(.+?)\n", readme.read_text(encoding="utf-8"))
    assert match, "README.md has no ```sh block"
    return match.group(1).split("#", 1)[0].strip()


def base_rootfs_tarball() -> Path:
    """Return a cached tarball of a minbase Debian 12 root filesystem, making it once."""
    tarball = CACHE / f"{SUITE}-minbase.tar"
    if tarball.is_file():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = CACHE / f"debootstrap-{uuid.uuid4().hex[:8]}"
    try:
        host_run(["debootstrap", "--variant=minbase", SUITE, str(scratch), MIRROR])
        partial = tarball.with_suffix(".tar.part")
        host_run(["tar", "-C", str(scratch), "--numeric-owner", "-cf", str(partial), "."])
        host_run(["mv", str(partial), str(tarball)])
    finally:
        host_run(["rm", "-rf", str(scratch)], check=False)
    return tarball


def sandbox_image_names(project: str) -> dict[str, str]:
    """Map the images the template root's stack runs to the names a sandbox whose Compose
    project is ``project`` uses (a sandbox's project is named after its folder)."""
    compose = find_compose()
    root_images = service_images(compose_config(compose, project_dir=ROOT))
    renamed = Runner(extra_env={"COMPOSE_PROJECT_NAME": project})
    images = service_images(compose_config(compose, project_dir=ROOT, runner=renamed))
    return {root_images[name]: images[name] for name in root_images}


def demo_image_names() -> dict[str, str]:
    """The images of the demo sandbox (``invoke demo`` renders it into DEMO_DEST)."""
    return sandbox_image_names(DEMO_DEST)


def preloaded_images() -> list[tuple[str, str]]:
    """(host image, name in the machine) pairs: the demo's images, and the same images
    under the names of the sandbox the walk renders with ``copier copy``."""
    return [
        *demo_image_names().items(),
        *sandbox_image_names(WALK_SANDBOX).items(),
    ]


@dataclass
class FreshMachine:
    """One fresh Debian 12 container: its root folder and what ran in it."""

    name: str
    rootfs: Path
    log: Path
    timings: dict[str, float] = field(default_factory=dict)
    user: str | None = None
    """Who runs the README's command and owns the stack (None: root)."""

    def exec(
        self,
        command: str,
        *,
        timeout: float = 600,
        log_to: Path | None = None,
        as_root: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the machine as its user (a login shell), or as root with bash
        (when there is no user, or ``as_root``); output to ``log_to`` if given."""
        if self.user and not as_root:
            shell = ["su", "-", self.user, "-w", ",".join(PASSED_ENV), "-c", command]
        else:
            shell = ["bash", "-c", command]
        argv = [*_root_prefix(), "podman", "exec", self.name, *shell]
        if log_to is None:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return _run_logged(argv, log_to, timeout)


def _run_logged(argv: list[str], log_to: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with its output in ``log_to``, and each line with the seconds since the
    start in ``log_to``'s ``.timeline`` (where a cold run's time goes)."""
    start = time.monotonic()
    deadline = start + timeout
    timeline = log_to.with_suffix(".timeline")
    with (
        log_to.open("w", encoding="utf-8") as log,
        timeline.open("w", encoding="utf-8") as stamps,
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        ) as process,
    ):
        assert process.stdout is not None
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            for line in process.stdout:
                log.write(line)
                stamps.write(coldstart.timeline_line(time.monotonic() - start, line))
            code = process.wait()
        finally:
            timer.cancel()
    if time.monotonic() >= deadline:
        raise subprocess.TimeoutExpired(argv, timeout)
    return subprocess.CompletedProcess(argv, code, log_to.read_text(errors="replace"), "")


def preload_images(storage: Path, names: list[tuple[str, str]], scratch: Path) -> None:
    """Load the host's images into the machine's (still unused) Podman store, renamed.

    The outer Podman writes the nested store directly (``--root``); its libpod database is
    removed afterwards so that the machine's own Podman starts one with its own paths.
    """
    sources = sorted({source for source, _target in names})
    missing = [
        src
        for src in sources
        if host_run(["podman", "image", "exists", src], check=False).returncode
    ]
    if missing:
        pytest.fail(f"images to preload are missing on the host: {missing} (nox -s container)")
    archive = scratch / "images.tar"
    host_run(["podman", "save", "--multi-image-archive", "-o", str(archive), *sources])
    store = ["podman", "--root", str(storage), "--runroot", str(scratch / "runroot"),
             "--storage-driver", "overlay"]  # fmt: skip
    host_run([*store, "load", "-i", str(archive)])
    for source, target in names:
        host_run([*store, "tag", source, target])
    archive.unlink()
    host_run(["rm", "-rf", str(storage / "libpod"), str(scratch / "runroot")])


def host_image_exists(name: str) -> bool:
    """Whether the host's Podman has the image ``name``."""
    return host_run(["podman", "image", "exists", name], check=False).returncode == 0


def check_exec(machine: FreshMachine, command: str, *, as_root: bool = False) -> str:
    """Run ``command`` in the machine; fail the test when it fails. Returns its output."""
    result = machine.exec(command, as_root=as_root)
    if result.returncode != 0:
        who = "root" if as_root or not machine.user else machine.user
        pytest.fail(
            f"`{command}` as {who} failed ({result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-3000:]}"
        )
    return result.stdout


def add_sudo_user(machine: FreshMachine, user: str) -> None:
    """Give the machine what a user's own Debian 12 has and minbase lacks: ``sudo``, and a
    user in group ``sudo`` (without a password, so the unattended run never waits on one).
    ``useradd`` gives the user a subuid/subgid range, as the installer's user gets."""
    check_exec(
        machine,
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--no-install-recommends sudo >/dev/null && "
        f"useradd --create-home --shell /bin/bash --groups sudo {user} && "
        f"echo '{user} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{user} && "
        f"chmod 0440 /etc/sudoers.d/{user}",
        as_root=True,
    )


def clone_into(machine: FreshMachine, guest_path: str, owner: str) -> None:
    """Copy a clean clone of this repository to ``guest_path``, owned by ``owner``."""
    clone = machine.rootfs / guest_path.lstrip("/")
    host_run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)])
    if REF:  # an experiment: another commit of this repository (see REF)
        host_run(["git", "-C", str(clone), "checkout", "--quiet", REF])
    check_exec(machine, f"chown -R {owner}: {guest_path}", as_root=True)


def preload_user_images(machine: FreshMachine, names: list[tuple[str, str]]) -> None:
    """Load the host's images into the machine user's rootless store, renamed.

    Rootless layers must be unpacked inside the user's namespace, so the machine's own
    Podman loads them: installed for this, then purged with what it brought, so the
    README's command still installs every package itself. What that Podman left behind
    for the user (its pause process, its database, which would pin the CNI backend and the
    ``/tmp`` runtime folder it fell back to) goes too; the store with the images stays.
    """
    user = machine.user
    assert user, "preload_user_images needs a machine with a user"
    sources = sorted({source for source, _target in names})
    missing = [
        src
        for src in sources
        if host_run(["podman", "image", "exists", src], check=False).returncode
    ]
    if missing:
        pytest.fail(f"images to preload are missing on the host: {missing} (nox -s container)")
    archive = "/tmp/preload-images.tar"
    host_run(["podman", "save", "--multi-image-archive", "-o",
              str(machine.rootfs / archive.lstrip("/")), *sources])  # fmt: skip
    check_exec(machine, f"chown {user}: {archive}", as_root=True)
    temporary = "podman uidmap"
    apt = "DEBIAN_FRONTEND=noninteractive apt-get -y -qq"
    check_exec(machine, f"{apt} install --no-install-recommends {temporary} >/dev/null",
               as_root=True)  # fmt: skip
    tags = " && ".join(f"podman tag {source} {target}" for source, target in names)
    check_exec(machine, f"podman load -q -i {archive} && {tags}")
    store = f"/home/{user}/.local/share/containers/storage"
    check_exec(
        machine,
        f"uid=$(id -u {user}); pause=/tmp/podman-run-$uid/libpod/tmp/pause.pid; "
        '[ -f "$pause" ] && kill "$(cat "$pause")"; '
        f"{apt} purge {temporary} >/dev/null && {apt} autoremove --purge >/dev/null && "
        f"rm -rf {archive} {store}/libpod {store}/defaultNetworkBackend /home/{user}/.config/cni "
        "/tmp/podman-run-$uid /tmp/containers-user-$uid",
        as_root=True,
    )


def ensure_network() -> None:
    """Create the fresh machine's own network once."""
    if host_run(["podman", "network", "exists", NETWORK], check=False).returncode != 0:
        host_run(["podman", "network", "create", "--subnet", SUBNET, NETWORK])


@dataclass
class ReadmeRun:
    """The README's first command run in the fresh machine."""

    command: str
    returncode: int
    output: str
    seconds: float
    machine: FreshMachine


def run_records(machine: FreshMachine, volume: str, image: str) -> list[dict[str, object]]:
    """Read every trajectory record in the machine's logs volume ``volume``."""
    result = machine.exec(
        f"podman run --rm --pull=never --network=none --entrypoint sh "
        f"-v {volume}:/logs:ro {image} -c 'cat /logs/*.jsonl'"
    )
    records = []
    for line in result.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def tail(text: str, lines: int = 60) -> str:
    """The last ``lines`` lines of ``text``, for failure messages."""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class WalkStep:
    """One command of the walk, run in the machine exactly as printed."""

    command: str
    returncode: int
    output: str
    seconds: float


@dataclass
class SandboxWalk:
    """A sandbox rendered with ``copier copy`` in the machine, and its README walked."""

    machine: FreshMachine
    folder: str
    render: WalkStep
    steps: list[WalkStep]

    def step(self, words: str) -> WalkStep:
        """The step whose command contains ``words`` (fails the test when none does)."""
        found = [step for step in self.steps if words in step.command]
        if not found:
            pytest.fail(f"the rendered README has no command with {words!r}: {self.commands}")
        return found[0]

    @property
    def commands(self) -> list[str]:
        return [step.command for step in self.steps]


def readme_commands(text: str) -> list[str]:
    """Every command of a README's first ```sh block, as printed, without its trailing
    comment."""
    match = re.search(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    assert match, "README.md has no ```sh block"
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in match.group(1).splitlines()]
    return [line for line in lines if line]


def walk_command(machine: FreshMachine, cwd: str, command: str, log: Path) -> WalkStep:
    """Run ``command`` in ``cwd`` in the machine (as its user), output to ``log``; timed."""
    start = time.monotonic()
    result = machine.exec(f"cd {cwd} && {command}", timeout=RUN_TIMEOUT_S, log_to=log)
    return WalkStep(command, result.returncode, result.stdout, time.monotonic() - start)


def walk_rendered_readme(machine: FreshMachine, clone: str, label: str) -> SandboxWalk:
    """Render a sandbox beside ``clone`` with the template's own copier (defaults and
    WALK_ANSWERS), then run its README's first commands in it, one by one, as printed; a
    command that fails does not stop the walk (the tests say which failed)."""
    folder = f"{posixpath.dirname(clone)}/{WALK_SANDBOX}"
    answers = " ".join(f"-d {answer}" for answer in WALK_ANSWERS)
    copy = f"./bootstrap.sh copier copy --trust --defaults {answers} . {folder}"
    logs = machine.log.parent
    render = walk_command(machine, clone, copy, logs / f"walk{label}-0-copier.log")
    steps: list[WalkStep] = []
    if render.returncode == 0:
        readme = machine.exec(f"cat {folder}/README.md").stdout
        for number, command in enumerate(readme_commands(readme), start=1):
            log = logs / f"walk{label}-{number}.log"
            steps.append(walk_command(machine, folder, command, log))
    total = render.seconds + sum(step.seconds for step in steps)
    print(
        f"\nfresh: rendered README walked as {machine.user or 'root'} in {total:.0f} s: "
        + ", ".join(
            f"`{step.command[:40]}` exit {step.returncode} {step.seconds:.0f} s"
            for step in [render, *steps]
        ),
        file=sys.stderr,
    )
    return SandboxWalk(machine, folder, render, steps)
