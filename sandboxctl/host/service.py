"""The local Podman service on native Linux: start ``podman system service`` when nothing
serves the engine's socket, record its pid in a state file, and stop only what was
recorded (a recycled pid or a service someone else started is never signalled)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.host.engine import Engine, EngineError, ping, socket_is_dead


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
    runner = Runner(env=None if env is None else dict(env))

    def spawn(argv: list[str], log_path: Path) -> int:
        # A daemon must not keep the caller's folder (the runner starts it in /): when that
        # is deleted (a temporary sandbox), conmon fails every later container start. It
        # survives the task in its own session; stop_service stops it.
        try:
            return runner.spawn_detached(argv, log_path)
        except CommandNotFound as error:
            raise EngineError("podman is not installed: run `invoke host.prepare`") from error

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
