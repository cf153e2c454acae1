"""The container host: where the engine is, and the one answer every caller gets.

Decision (see docs/HOST.md):

- an explicit ``DOCKER_HOST`` (process environment first, then ``.env``) always wins;
- Windows, WSL and macOS use a Podman machine; its API socket comes from
  ``podman machine inspect`` (``SANDBOX_ENGINE=native`` makes WSL use the distro's Podman);
- Linux uses native Podman: rootful at ``/run/podman/podman.sock``, rootless at
  ``$XDG_RUNTIME_DIR/podman/podman.sock``. When nothing serves that socket,
  :func:`ensure_service` starts ``podman system service --time=0`` and records its pid in a
  state file; :func:`stop_service` stops only a service recorded there.

Platform facts come in as a :class:`HostInfo` (built by :func:`detect_host`, or by tests),
commands run through a :class:`~sandboxctl._proc.Runner`.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.config import Settings

ROOTFUL_SOCKET = Path("/run/podman/podman.sock")
COMPOSE_ENV: dict[str, str] = {"COMPOSE_BAKE": "false", "DOCKER_BUILDKIT": "0"}
"""Compose v2 against Podman: the classic builder through the engine API, no Bake/BuildKit."""

EngineKind = Literal["explicit", "machine", "native"]


class EngineError(RuntimeError):
    """The engine cannot be located or started; the message says how to fix it."""


class Platform(StrEnum):
    """Where sandboxctl runs."""

    LINUX = "linux"
    WSL = "wsl"
    MACOS = "macos"
    WINDOWS = "windows"


@dataclass(frozen=True)
class HostInfo:
    """The facts about this host that the engine decision depends on (injectable)."""

    platform: Platform
    is_root: bool
    uid: int
    xdg_runtime_dir: str | None = None
    has_systemd: bool = False
    selinux_enforcing: bool = False
    cgroup_layout: Literal["v1", "v2", "hybrid", "unknown"] = "unknown"
    wsl_version: int | None = None


def classify_platform(system: str, kernel_release: str, proc_version: str = "") -> Platform:
    """Map ``platform.system()``, ``platform.release()`` and ``/proc/version`` to a Platform."""
    lowered = system.lower()
    if lowered == "darwin":
        return Platform.MACOS
    if lowered.startswith(("windows", "cygwin", "msys")):
        return Platform.WINDOWS
    marker = f"{kernel_release} {proc_version}".lower()
    if "microsoft" in marker or "wsl" in marker:
        return Platform.WSL
    return Platform.LINUX


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cgroup_layout(fs_root: Path = Path("/")) -> Literal["v1", "v2", "hybrid", "unknown"]:
    """Tell the cgroup layout from the files under ``fs_root/sys/fs/cgroup``."""
    base = fs_root / "sys/fs/cgroup"
    if (base / "cgroup.controllers").is_file():
        return "v2"
    if (base / "unified").is_dir():
        return "hybrid"
    if (base / "memory").is_dir() or (base / "pids").is_dir():
        return "v1"
    return "unknown"


def detect_host(fs_root: Path = Path("/"), environ: Mapping[str, str] | None = None) -> HostInfo:
    """Return the :class:`HostInfo` of the machine this runs on (files read under ``fs_root``)."""
    env = os.environ if environ is None else environ
    proc_version = _read(fs_root / "proc/version")
    kind = classify_platform(platform.system(), platform.release(), proc_version)
    uid = os.geteuid() if hasattr(os, "geteuid") else 1000
    wsl_version: int | None = None
    if kind is Platform.WSL:
        wsl_version = 2 if "wsl2" in proc_version.lower() or (fs_root / "run/WSL").exists() else 1
    return HostInfo(
        platform=kind,
        is_root=uid == 0,
        uid=uid,
        xdg_runtime_dir=env.get("XDG_RUNTIME_DIR") or None,
        has_systemd=(fs_root / "run/systemd/system").is_dir(),
        selinux_enforcing=_read(fs_root / "sys/fs/selinux/enforce").strip() == "1",
        cgroup_layout=cgroup_layout(fs_root),
        wsl_version=wsl_version,
    )


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
    runtime = host.xdg_runtime_dir or f"/run/user/{host.uid}"
    return Path(runtime) / "podman" / "podman.sock"


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


# --- talking to the socket ----------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def api_get(path: Path, endpoint: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """GET ``endpoint`` from the engine API on the unix socket ``path``; (status, body).

    Raises OSError when nothing answers.
    """
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", endpoint)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def ping(path: Path, timeout: float = 2.0) -> bool:
    """Tell whether an engine answers ``/_ping`` with OK on the unix socket ``path``."""
    try:
        status, body = api_get(path, "/_ping", timeout)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200 and body.strip() == b"OK"


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
    except (OSError, http.client.HTTPException, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


# --- the local service (native Linux) -----------------------------------------------------


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return where sandboxctl records what it started: ``$XDG_STATE_HOME/sandboxctl``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(
        Path(env.get("HOME", "~")).expanduser() / ".local/state"
    )
    return Path(base) / "sandboxctl"


@dataclass(frozen=True)
class ServiceState:
    """The record of a ``podman system service`` that sandboxctl started."""

    pid: int
    socket: str
    started_at: float
    argv: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """Serialise for the state file."""
        return json.dumps(
            {
                "pid": self.pid,
                "socket": self.socket,
                "started_at": self.started_at,
                "argv": self.argv,
            },
            indent=2,
        )


def state_file(state_dir: Path, socket_path: Path) -> Path:
    """Return the state file recording the service for ``socket_path``."""
    slug = str(socket_path).strip("/").replace("/", "_") or "socket"
    return state_dir / f"service-{slug}.json"


def read_state(path: Path) -> ServiceState | None:
    """Read a state file; None when absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ServiceState(
            pid=int(data["pid"]),
            socket=str(data["socket"]),
            started_at=float(data.get("started_at", 0.0)),
            argv=[str(part) for part in data.get("argv", [])],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cmdline(pid: int) -> list[str]:
    raw = _read_bytes(Path(f"/proc/{pid}/cmdline"))
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def is_our_service(state: ServiceState, cmdline: Callable[[int], list[str]] = _cmdline) -> bool:
    """Tell whether ``state.pid`` still runs the service we started (not a recycled pid)."""
    argv = cmdline(state.pid)
    return (
        bool(argv)
        and os.path.basename(argv[0]) == "podman"
        and "service" in argv
        and any(state.socket in part for part in argv)
    )


@dataclass(frozen=True)
class ServiceStatus:
    """What :func:`ensure_service` found or did."""

    socket: Path
    serving: bool
    started: bool
    pid: int | None
    message: str


def service_argv(socket_path: Path) -> list[str]:
    """Return the command that serves the Docker-compatible API on ``socket_path``."""
    return ["podman", "system", "service", "--time=0", f"unix://{socket_path}"]


def ensure_service(
    engine: Engine,
    *,
    state_dir: Path | None = None,
    ping_fn: Callable[[Path], bool] = ping,
    is_dead: Callable[[Path], bool] = socket_is_dead,
    spawn: Callable[[list[str], Path], int] | None = None,
    deadline_s: float = 15.0,
    env: Mapping[str, str] | None = None,
) -> ServiceStatus:
    """Make sure the native engine's socket answers; start the service when nothing serves it.

    Only ``native`` engines are served here; for a machine or an explicit ``DOCKER_HOST`` this
    only reports whether the socket answers. Raises :class:`EngineError` when the service
    started but never answered within ``deadline_s``.
    """
    sock = engine.socket_path
    if sock is None:
        return ServiceStatus(Path(engine.docker_host), False, False, None, "not a unix socket")
    if ping_fn(sock):
        return ServiceStatus(sock, True, False, None, f"{engine.docker_host} answers")
    if not engine.needs_local_service:
        return ServiceStatus(sock, False, False, None, f"{engine.docker_host} does not answer")
    directory = state_dir or default_state_dir(env)
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists() or sock.is_symlink():
        if not is_dead(sock):
            raise EngineError(
                f"{sock} exists and accepts connections but did not answer /_ping in time: "
                "the engine may be busy or socket-activated; retry, or check `podman info`"
            )
        sock.unlink()  # a stale socket left by a service that died: connections are refused
    argv = service_argv(sock)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "podman-service.log"
    pid = (spawn or _spawn_detached(env))(argv, log_path)
    state = ServiceState(pid=pid, socket=str(sock), started_at=time.time(), argv=argv)
    state_file(directory, sock).write_text(state.to_json(), encoding="utf-8")
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if ping_fn(sock):
            return ServiceStatus(
                sock, True, True, pid, f"started podman system service (pid {pid})"
            )
        time.sleep(0.2)
    raise EngineError(
        f"started `podman system service` (pid {pid}) but {sock} did not answer within "
        f"{deadline_s:.0f} s; see {log_path}"
    )


def _spawn_detached(env: Mapping[str, str] | None) -> Callable[[list[str], Path], int]:
    def spawn(argv: list[str], log_path: Path) -> int:
        with log_path.open("ab") as log:
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,  # survives the task; stopped by stop_service
                    env=None if env is None else dict(env),
                    # A daemon must not keep the caller's folder: when that is deleted (a
                    # temporary sandbox), conmon fails every later container start.
                    cwd="/",
                )
            except FileNotFoundError as error:
                raise EngineError("podman is not installed: run `invoke host.prepare`") from error
        return process.pid

    return spawn


def stop_service(
    socket_path: Path,
    *,
    state_dir: Path | None = None,
    cmdline: Callable[[int], list[str]] = _cmdline,
    kill: Callable[[int, int], None] = os.kill,
    grace_s: float = 10.0,
    env: Mapping[str, str] | None = None,
) -> str:
    """Stop the service sandboxctl started for ``socket_path``; leave any other alone.

    Returns a sentence saying what happened.
    """
    directory = state_dir or default_state_dir(env)
    path = state_file(directory, socket_path)
    state = read_state(path)
    if state is None:
        return f"sandboxctl started no service for {socket_path}; nothing to stop"
    if not is_our_service(state, cmdline):
        path.unlink(missing_ok=True)
        return f"the service recorded for {socket_path} (pid {state.pid}) is gone; record removed"
    kill(state.pid, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while time.monotonic() < end and is_our_service(state, cmdline):
        time.sleep(0.1)
    if is_our_service(state, cmdline):
        kill(state.pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return f"stopped podman system service (pid {state.pid}) on {socket_path}"


def service_status(
    socket_path: Path,
    *,
    state_dir: Path | None = None,
    ping_fn: Callable[[Path], bool] = ping,
    cmdline: Callable[[int], list[str]] = _cmdline,
    env: Mapping[str, str] | None = None,
) -> str:
    """Describe who serves ``socket_path``: sandboxctl (with pid), someone else, or nobody."""
    state = read_state(state_file(state_dir or default_state_dir(env), socket_path))
    serving = ping_fn(socket_path)
    ours = state is not None and is_our_service(state, cmdline)
    if serving and ours and state is not None:
        return f"{socket_path} answers; served by sandboxctl (pid {state.pid})"
    if serving:
        return f"{socket_path} answers; served by something sandboxctl did not start"
    return f"{socket_path} does not answer; `invoke machine.start` starts the service"
