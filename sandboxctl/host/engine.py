"""The container host: where the engine is, and the one answer every caller gets.

Decision (see docs/HOST.md):

- an explicit ``DOCKER_HOST`` (process environment first, then ``.env``) always wins;
- Windows, WSL and macOS use a Podman machine; its API socket comes from
  ``podman machine inspect`` (``SANDBOX_ENGINE=native`` makes WSL use the distro's Podman);
- Linux uses native Podman: rootful at ``/run/podman/podman.sock``, rootless at
  ``$XDG_RUNTIME_DIR/podman/podman.sock``. When nothing serves that socket,
  :mod:`sandboxctl.host.service` starts ``podman system service --time=0``, records its
  pid in a state file, and stops only a service recorded there.

Platform facts come in as a :class:`~sandboxctl.host.platform.HostInfo`; commands run
through a :class:`~sandboxctl._proc.Runner`; the API socket is read with ``httpx``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.config import Settings
from sandboxctl.errors import SandboxError
from sandboxctl.host.platform import HostInfo, Platform
from sandboxctl.host.rootless import runtime_dir

ROOTFUL_SOCKET = Path("/run/podman/podman.sock")
COMPOSE_ENV: dict[str, str] = {"COMPOSE_BAKE": "false", "DOCKER_BUILDKIT": "0"}
"""Compose v2 against Podman: the classic builder through the engine API, no Bake/BuildKit."""

EngineKind = Literal["explicit", "machine", "native"]


class EngineError(SandboxError, RuntimeError):
    """The engine cannot be located or started; the message says how to fix it."""


@dataclass(frozen=True)
class Quirks:
    """What callers must adapt to on this engine (see docs/HOST.md, the quirks table)."""

    healthchecks_run: bool
    """Podman runs healthchecks from systemd timers: false where the engine has no systemd."""
    selinux_enforcing: bool
    """Bind mounts need a ``z``/``Z`` label (VOLUME_LABEL)."""
    cgroup_layout: str
    classic_builder: bool = True
    """Compose must build with the classic builder (``COMPOSE_BAKE=false DOCKER_BUILDKIT=0``)."""


@dataclass(frozen=True)
class Engine:
    """Where the engine is, as every caller must see it."""

    kind: EngineKind
    docker_host: str
    platform: Platform
    rootful: bool | None
    quirks: Quirks
    reason: str
    machine_name: str | None = None
    socket_path: Path | None = None

    def env(self) -> dict[str, str]:
        """Return the variables that point Docker/Compose clients, and the podman CLI, at
        this engine: a machine by its connection name, an explicit host by its URL, so
        images are built in the same store that Compose then runs them from."""
        env = {"DOCKER_HOST": self.docker_host, **COMPOSE_ENV}
        if self.kind == "machine" and self.machine_name:
            env["CONTAINER_CONNECTION"] = self.machine_name
        elif self.kind == "explicit":
            env["CONTAINER_HOST"] = self.docker_host
        return env

    @property
    def needs_local_service(self) -> bool:
        """True when sandboxctl must serve the socket itself (native Linux Podman)."""
        return self.kind == "native"


def native_socket(host: HostInfo) -> Path:
    """Return the socket native Podman serves: rootful ``/run/podman``, else the user's."""
    if host.is_root:
        return ROOTFUL_SOCKET
    return runtime_dir(host) / "podman" / "podman.sock"


def socket_path_of(docker_host: str) -> Path | None:
    """Return the file path of a ``unix://`` URL, None for other schemes."""
    if docker_host.startswith("unix://"):
        return Path(docker_host.removeprefix("unix://"))
    return None


def uses_machine(host: HostInfo, settings: Settings | None) -> bool:
    """Tell whether this host's engine is a Podman machine (VM) rather than native Podman."""
    mode = settings.engine_mode if settings else "auto"
    if mode == "machine":
        return True
    if mode == "native":
        return False
    return host.platform in (Platform.WSL, Platform.MACOS, Platform.WINDOWS)


def inspect_machine(runner: Runner, name: str) -> dict[str, Any] | None:
    """Return ``podman machine inspect NAME`` as a dict, or None when there is no such machine."""
    try:
        result = runner.run(["podman", "machine", "inspect", name])
    except CommandNotFound as error:
        raise EngineError(
            "podman is not installed: run `invoke host.prepare` (Debian/WSL) or install "
            "Podman (https://podman.io/docs/installation)"
        ) from error
    if not result.ok:
        return None
    try:
        data = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as error:
        raise EngineError(f"`podman machine inspect {name}` printed no JSON: {error}") from error
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0]
    return None


def machine_docker_host(info: Mapping[str, Any], platform_: Platform) -> str:
    """Return the ``DOCKER_HOST`` URL of an inspected machine (a pipe on Windows)."""
    connection = info.get("ConnectionInfo") or {}
    if platform_ is Platform.WINDOWS:
        pipe = connection.get("PodmanPipe") or {}
        if isinstance(pipe, dict) and pipe.get("Path"):
            path = str(pipe["Path"]).replace("\\", "/")
            return f"npipe://{path}"
    sock = connection.get("PodmanSocket") or {}
    if isinstance(sock, dict) and sock.get("Path"):
        return f"unix://{sock['Path']}"
    raise EngineError(
        f"podman machine {info.get('Name', '?')} reports no API socket; "
        "start it with `invoke machine.start`"
    )


def resolve_engine(
    host: HostInfo,
    settings: Settings | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    runner: Runner | None = None,
) -> Engine:
    """Decide where the engine is. Pure apart from ``podman machine inspect`` on VM hosts.

    Raises :class:`EngineError` when a machine host has no machine yet.
    """
    env = os.environ if environ is None else environ
    native_quirks = Quirks(
        healthchecks_run=host.has_systemd,
        selinux_enforcing=host.selinux_enforcing,
        cgroup_layout=host.cgroup_layout,
    )
    explicit = env.get("DOCKER_HOST", "").strip()
    origin = "the environment"
    if not explicit and settings and settings.docker_host:
        explicit, origin = settings.docker_host, ".env"
    if explicit:
        return Engine(
            kind="explicit",
            docker_host=explicit,
            platform=host.platform,
            rootful=None,
            quirks=native_quirks,
            reason=f"DOCKER_HOST set in {origin}",
            socket_path=socket_path_of(explicit),
        )
    if uses_machine(host, settings):
        name = settings.machine_name if settings else "podman-machine-default"
        info = inspect_machine(runner or Runner(), name)
        if info is None:
            raise EngineError(
                f"no Podman machine named {name!r} on this {host.platform.value} host: "
                "create it with `invoke machine.init`"
            )
        url = machine_docker_host(info, host.platform)
        return Engine(
            kind="machine",
            docker_host=url,
            platform=host.platform,
            rootful=bool(info.get("Rootful", False)),
            # Podman machines run Fedora CoreOS: systemd timers run healthchecks, SELinux enforces.
            quirks=Quirks(healthchecks_run=True, selinux_enforcing=True, cgroup_layout="v2"),
            reason=f"Podman machine {name} ({host.platform.value})",
            machine_name=name,
            socket_path=socket_path_of(url),
        )
    path = native_socket(host)
    return Engine(
        kind="native",
        docker_host=f"unix://{path}",
        platform=host.platform,
        rootful=host.is_root,
        quirks=native_quirks,
        reason=f"native Podman, {'rootful' if host.is_root else 'rootless'}",
        socket_path=path,
    )


def image_exists(runner: Runner, tag: str) -> bool:
    """Tell whether the image ``tag`` exists in the engine's local storage."""
    try:
        return runner.run(["podman", "image", "exists", tag]).ok
    except CommandNotFound:
        return False


def image_label(runner: Runner, tag: str, key: str) -> str | None:
    """Return the label ``key`` of the local image ``tag`` ("" when it has none), or None
    when there is no such image."""
    try:
        result = runner.run(["podman", "image", "inspect", "--format", "{{json .Labels}}", tag])
    except CommandNotFound:
        return None
    if not result.ok:
        return None
    try:
        labels = json.loads(result.stdout.strip() or "null")
    except json.JSONDecodeError:
        return ""
    return str(labels.get(key, "")) if isinstance(labels, dict) else ""


def image_size(runner: Runner, tag: str) -> int | None:
    """Return the size in bytes of the local image ``tag``, or None."""
    result = runner.run(["podman", "image", "inspect", "--format", "{{.Size}}", tag])
    text = result.stdout.strip()
    return int(text) if result.ok and text.isdigit() else None


# --- talking to the socket ----------------------------------------------------------------


def api_get(path: Path, endpoint: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """GET ``endpoint`` from the engine API on the unix socket ``path``; (status, body).

    Raises ``httpx.HTTPError`` (a transport error when nothing answers).
    """
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, timeout=timeout) as client:
        response = client.get(f"http://localhost{endpoint}")
        return response.status_code, response.content


def ping(path: Path, timeout: float = 2.0) -> bool:
    """Tell whether an engine answers ``/_ping`` with OK on the unix socket ``path``."""
    try:
        status, body = api_get(path, "/_ping", timeout)
    except httpx.HTTPError:
        return False
    return status == 200 and body.strip() == b"OK"


def service_network_backend(path: Path, timeout: float = 3.0) -> str | None:
    """Return the network backend the engine serving ``path`` runs with (``libpod/info``), or
    None when nothing answers. A long-running ``podman system service`` keeps the backend
    it started with, whatever the configuration says now."""
    try:
        status, body = api_get(path, "/v4.0.0/libpod/info", timeout)  # any v4 answers
        data = json.loads(body) if status == 200 else None
    except (httpx.HTTPError, json.JSONDecodeError):
        return None
    host = data.get("host") if isinstance(data, dict) else None
    backend = host.get("networkBackend") if isinstance(host, dict) else None
    return str(backend) if backend else None


def socket_is_dead(path: Path, timeout: float = 2.0) -> bool:
    """Tell whether ``path`` is a socket nobody listens on (safe to remove).

    Only a refused connection proves it: a timeout means a slow or busy engine, and a
    socket-activated one (systemd's podman.socket) must never be deleted.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def engine_version(path: Path) -> dict[str, Any] | None:
    """Return the engine's ``/version`` document, or None when it cannot be read."""
    try:
        status, body = api_get(path, "/version")
        data = json.loads(body) if status == 200 else None
    except (httpx.HTTPError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
