"""Unit tests of sandboxctl.host (engine, platform, service): where the engine is, and the
local service lifecycle.

Machine hosts (WSL, macOS, Windows) are decided against a fake `podman` on PATH whose
`machine inspect` answers like Podman 4 (no VM can be created here).
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fakes.harness import FakeTools

from sandboxctl.config import settings_from_mapping
from sandboxctl.host.engine import ROOTFUL_SOCKET, EngineError, ping, resolve_engine
from sandboxctl.host.platform import (
    HostInfo,
    Platform,
    cgroup_layout,
    classify_platform,
    detect_host,
)
from sandboxctl.host.service import (
    ServiceState,
    _spawn_detached,
    ensure_service,
    state_file,
    stop_service,
)

LINUX_USER = HostInfo(
    platform=Platform.LINUX, is_root=False, uid=1000, xdg_runtime_dir="/run/user/1000"
)
LINUX_ROOT = HostInfo(platform=Platform.LINUX, is_root=True, uid=0)
WSL = HostInfo(platform=Platform.WSL, is_root=False, uid=1000, wsl_version=2)
MACOS = HostInfo(platform=Platform.MACOS, is_root=False, uid=501)
WINDOWS = HostInfo(platform=Platform.WINDOWS, is_root=False, uid=1000)
MACHINE = {
    "Name": "podman-machine-default",
    "State": "running",
    "Rootful": True,
    "ConnectionInfo": {
        "PodmanSocket": {"Path": "/Users/me/.local/share/containers/podman/machine/podman.sock"},
        "PodmanPipe": {"Path": "\\\\.\\pipe\\podman-machine-default"},
    },
}


@pytest.fixture
def fakes(tmp_path: Path) -> FakeTools:
    return FakeTools.create(tmp_path, state={"machines": {"podman-machine-default": MACHINE}})


def test_classify_platform_recognises_macos() -> None:
    assert classify_platform("Darwin", "23.1.0") is Platform.MACOS


def test_classify_platform_recognises_windows() -> None:
    assert classify_platform("Windows", "10") is Platform.WINDOWS


def test_classify_platform_recognises_wsl_from_the_kernel_release() -> None:
    assert classify_platform("Linux", "5.15.133.1-microsoft-standard-WSL2") is Platform.WSL


def test_classify_platform_plain_linux() -> None:
    assert classify_platform("Linux", "6.1.0-18-amd64", "Linux version 6.1.0 (debian)") is (
        Platform.LINUX
    )


def test_explicit_docker_host_in_environment_wins_without_asking_podman(
    fakes: FakeTools,
) -> None:
    """On macOS an exported DOCKER_HOST is used as is; no `podman machine inspect` runs."""
    engine = resolve_engine(
        MACOS, environ={"DOCKER_HOST": "tcp://10.0.0.5:2375"}, runner=fakes.runner()
    )
    assert (engine.kind, engine.docker_host) == ("explicit", "tcp://10.0.0.5:2375")
    assert "environment" in engine.reason
    assert fakes.calls("podman") == []


def test_docker_host_in_env_file_is_used_when_the_environment_has_none() -> None:
    """A configured socket in `.env` wins over the platform default."""
    settings = settings_from_mapping({"DOCKER_HOST": "unix:///srv/podman.sock"})
    engine = resolve_engine(LINUX_USER, settings, environ={})
    assert engine.kind == "explicit"
    assert engine.socket_path == Path("/srv/podman.sock")
    assert ".env" in engine.reason


def test_wsl_uses_the_machine_socket_from_podman_machine_inspect_fake_vm(
    fakes: FakeTools,
) -> None:
    """WSL: the socket path comes from `podman machine inspect` (fake podman, no VM)."""
    engine = resolve_engine(WSL, environ={}, runner=fakes.runner())
    assert engine.kind == "machine"
    assert engine.docker_host == (
        "unix:///Users/me/.local/share/containers/podman/machine/podman.sock"
    )
    assert fakes.calls("podman") == [["machine", "inspect", "podman-machine-default"]]


def test_macos_machine_reports_rootful_and_systemd_quirks_fake_vm(fakes: FakeTools) -> None:
    """macOS: rootful comes from inspect; the VM has systemd so healthchecks run."""
    engine = resolve_engine(MACOS, environ={}, runner=fakes.runner())
    assert engine.rootful is True
    assert engine.quirks.healthchecks_run is True


def test_windows_uses_the_named_pipe_fake_vm(fakes: FakeTools) -> None:
    """Windows: DOCKER_HOST is the machine's npipe."""
    engine = resolve_engine(WINDOWS, environ={}, runner=fakes.runner())
    assert engine.docker_host == "npipe:////./pipe/podman-machine-default"


def test_machine_host_without_machine_says_to_run_machine_init_fake_vm(
    tmp_path: Path,
) -> None:
    """No machine yet: a clear error naming the task that creates it."""
    empty = FakeTools.create(tmp_path, state={})
    with pytest.raises(EngineError, match=r"invoke machine\.init"):
        resolve_engine(MACOS, environ={}, runner=empty.runner())


def test_machine_name_comes_from_the_answers_fake_vm(fakes: FakeTools) -> None:
    """MACHINE_NAME picks which machine is inspected."""
    fakes.update(machines={"dev": {**MACHINE, "Name": "dev"}})
    settings = settings_from_mapping({"MACHINE_NAME": "dev"})
    engine = resolve_engine(WSL, settings, environ={}, runner=fakes.runner())
    assert engine.machine_name == "dev"


def test_linux_rootless_uses_the_user_runtime_dir_socket() -> None:
    engine = resolve_engine(LINUX_USER, environ={})
    assert engine.kind == "native"
    assert engine.docker_host == "unix:///run/user/1000/podman/podman.sock"
    assert engine.rootful is False


def test_linux_rootless_without_xdg_runtime_dir_falls_back_to_run_user_uid() -> None:
    host = replace(LINUX_USER, xdg_runtime_dir=None, uid=1234)
    assert resolve_engine(host, environ={}).socket_path == Path("/run/user/1234/podman/podman.sock")


def test_linux_rootful_uses_run_podman_socket() -> None:
    engine = resolve_engine(LINUX_ROOT, environ={})
    assert engine.socket_path == ROOTFUL_SOCKET
    assert engine.rootful is True


def test_sandbox_engine_native_makes_wsl_use_the_distro_podman(fakes: FakeTools) -> None:
    """SANDBOX_ENGINE=native: WSL runs Podman in the distro, no machine inspect."""
    settings = settings_from_mapping({"SANDBOX_ENGINE": "native"})
    engine = resolve_engine(WSL, settings, environ={}, runner=fakes.runner())
    assert engine.kind == "native"
    assert fakes.calls("podman") == []


def test_engine_env_selects_the_classic_builder() -> None:
    """Every compose call gets DOCKER_HOST and no Bake/BuildKit."""
    env = resolve_engine(LINUX_ROOT, environ={}).env()
    assert env == {
        "DOCKER_HOST": "unix:///run/podman/podman.sock",
        "COMPOSE_BAKE": "false",
        "DOCKER_BUILDKIT": "0",
    }


def test_machine_engine_points_podman_at_its_connection_fake_vm(fakes: FakeTools) -> None:
    """A machine named in the answers is podman's connection for every call (builds land
    in the store Compose runs from, even when it is not the default connection)."""
    fakes.update(machines={"dev": {**MACHINE, "Name": "dev"}})
    settings = settings_from_mapping({"MACHINE_NAME": "dev"})
    env = resolve_engine(WSL, settings, environ={}, runner=fakes.runner()).env()
    assert env["CONTAINER_CONNECTION"] == "dev"
    assert "CONTAINER_HOST" not in env


def test_explicit_engine_points_podman_at_its_url() -> None:
    """An explicit DOCKER_HOST is podman's remote URL too."""
    env = resolve_engine(LINUX_ROOT, environ={"DOCKER_HOST": "unix:///tmp/other.sock"}).env()
    assert env["CONTAINER_HOST"] == "unix:///tmp/other.sock"
    assert "CONTAINER_CONNECTION" not in env


def test_native_engine_without_systemd_says_healthchecks_do_not_run() -> None:
    host = replace(LINUX_ROOT, has_systemd=False)
    assert resolve_engine(host, environ={}).quirks.healthchecks_run is False


def test_cgroup_layout_hybrid_has_a_unified_mount(tmp_path: Path) -> None:
    (tmp_path / "sys/fs/cgroup/unified").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/memory").mkdir()
    assert cgroup_layout(tmp_path) == "hybrid"


def test_cgroup_layout_v2_has_cgroup_controllers(tmp_path: Path) -> None:
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/cgroup.controllers").write_text("memory pids\n")
    assert cgroup_layout(tmp_path) == "v2"


def test_detect_host_reads_systemd_and_selinux_from_the_filesystem(tmp_path: Path) -> None:
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    (tmp_path / "sys/fs/selinux").mkdir(parents=True)
    (tmp_path / "sys/fs/selinux/enforce").write_text("1")
    host = detect_host(tmp_path, environ={})
    assert host.has_systemd is True
    assert host.selinux_enforcing is True


# --- the local service -----------------------------------------------------------------


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"OK" if self.path == "/_ping" else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def served_socket(tmp_path: Path) -> Iterator[Path]:
    """A real unix socket answering `/_ping` like an engine."""
    path = tmp_path / "api.sock"
    server = socketserver.UnixStreamServer(str(path), _Ping)
    # A short poll: shutdown() waits up to one poll_interval (0.5 s by default).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


def test_ping_is_true_when_a_server_answers_ok(served_socket: Path) -> None:
    assert ping(served_socket) is True


def test_ping_is_false_when_nothing_listens(tmp_path: Path) -> None:
    assert ping(tmp_path / "absent.sock") is False


def test_ensure_service_leaves_an_answering_socket_alone(tmp_path: Path) -> None:
    """Something already serves the socket: nothing is started, nothing recorded."""
    engine = replace(resolve_engine(LINUX_ROOT, environ={}), socket_path=tmp_path / "s.sock")
    spawned: list[list[str]] = []

    def spawn(argv: list[str], _log: Path) -> int:
        spawned.append(argv)
        return 1

    status = ensure_service(
        engine, state_dir=tmp_path / "state", ping_fn=lambda _p: True, spawn=spawn
    )
    assert (status.serving, status.started, spawned) == (True, False, [])


def test_ensure_service_starts_podman_system_service_and_records_its_pid(
    tmp_path: Path,
) -> None:
    """Nothing answers: the service is spawned on that socket, its pid written down."""
    sock = tmp_path / "run" / "podman" / "podman.sock"
    engine = replace(resolve_engine(LINUX_ROOT, environ={}), socket_path=sock)
    answers = iter([False, True])
    spawned: list[list[str]] = []

    def spawn(argv: list[str], _log: Path) -> int:
        spawned.append(argv)
        return 4242

    status = ensure_service(
        engine, state_dir=tmp_path / "state", ping_fn=lambda _p: next(answers), spawn=spawn
    )
    assert spawned == [["podman", "system", "service", "--time=0", f"unix://{sock}"]]
    assert sock.parent.is_dir()
    assert (status.started, status.pid) == (True, 4242)
    recorded = json.loads(state_file(tmp_path / "state", sock).read_text())
    assert recorded["pid"] == 4242


def test_ensure_service_removes_a_stale_socket_file_first(tmp_path: Path) -> None:
    """A socket file nobody answers on (a dead service's) is removed before starting."""
    sock = tmp_path / "podman.sock"
    sock.write_text("")
    engine = replace(resolve_engine(LINUX_ROOT, environ={}), socket_path=sock)
    seen: list[bool] = []

    def spawn(_argv: list[str], _log: Path) -> int:
        seen.append(sock.exists())
        return 1

    answers = iter([False, True])
    ensure_service(engine, state_dir=tmp_path, ping_fn=lambda _p: next(answers), spawn=spawn)
    assert seen == [False]


def test_ensure_service_keeps_a_socket_that_accepts_but_answers_slowly(tmp_path: Path) -> None:
    """A listening socket that misses the ping (busy, or socket-activated by systemd) is
    never deleted and no second service is started: a clear error instead."""
    sock = tmp_path / "podman.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(1)
    engine = replace(resolve_engine(LINUX_ROOT, environ={}), socket_path=sock)
    spawned: list[list[str]] = []

    def spawn(argv: list[str], _log: Path) -> int:
        spawned.append(argv)
        return 1

    try:
        with pytest.raises(EngineError, match="did not answer /_ping in time"):
            ensure_service(engine, state_dir=tmp_path, ping_fn=lambda _p: False, spawn=spawn)
    finally:
        listener.close()
    assert sock.exists()
    assert spawned == []


def test_ensure_service_fails_clearly_when_the_service_never_answers(tmp_path: Path) -> None:
    engine = replace(resolve_engine(LINUX_ROOT, environ={}), socket_path=tmp_path / "s.sock")
    with pytest.raises(EngineError, match="did not answer within 0 s"):
        ensure_service(
            engine,
            state_dir=tmp_path,
            ping_fn=lambda _p: False,
            spawn=lambda _a, _l: 7,
            deadline_s=0.0,
        )


def test_ensure_service_never_starts_anything_for_a_machine_fake_vm(
    fakes: FakeTools, tmp_path: Path
) -> None:
    """A machine's socket is the VM's business: a silent one is reported, not served."""
    engine = resolve_engine(MACOS, environ={}, runner=fakes.runner())

    def spawn(_argv: list[str], _log: Path) -> int:
        raise AssertionError("nothing may be started for a machine")

    status = ensure_service(engine, state_dir=tmp_path, ping_fn=lambda _p: False, spawn=spawn)
    assert (status.serving, status.started) == (False, False)


def _record(tmp_path: Path, sock: Path, pid: int) -> Path:
    path = state_file(tmp_path, sock)
    path.write_text(ServiceState(pid=pid, socket=str(sock), started_at=0.0).to_json())
    return path


def test_stop_service_without_a_record_stops_nothing(tmp_path: Path) -> None:
    killed: list[tuple[int, int]] = []
    message = stop_service(
        tmp_path / "s.sock", state_dir=tmp_path, kill=lambda p, s: killed.append((p, s))
    )
    assert killed == []
    assert "nothing to stop" in message


def test_stop_service_terminates_the_recorded_service_and_forgets_it(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    record = _record(tmp_path, sock, 4242)
    alive = {"yes": True}
    killed: list[tuple[int, int]] = []

    def kill(pid: int, sig: int) -> None:
        killed.append((pid, sig))
        alive["yes"] = False

    def cmdline(_pid: int) -> list[str]:
        return ["/usr/bin/podman", "system", "service", f"unix://{sock}"] if alive["yes"] else []

    stop_service(sock, state_dir=tmp_path, cmdline=cmdline, kill=kill)
    assert killed == [(4242, signal.SIGTERM)]
    assert not record.exists()


def test_stop_service_never_kills_a_recycled_pid(tmp_path: Path) -> None:
    """The recorded pid now runs something else: it is left alone, the record dropped."""
    sock = tmp_path / "s.sock"
    record = _record(tmp_path, sock, 4242)
    killed: list[int] = []
    message = stop_service(
        sock,
        state_dir=tmp_path,
        cmdline=lambda _p: ["/usr/bin/vim"],
        kill=lambda p, _s: killed.append(p),
    )
    assert killed == []
    assert not record.exists()
    assert "gone" in message


def test_spawned_service_runs_in_the_root_folder_not_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service outlives the task that started it, often in a temporary sandbox that is
    deleted later; conmon then fails every container start. It must not keep that folder."""
    caller = tmp_path / "sandbox"
    caller.mkdir()
    monkeypatch.chdir(caller)
    out = tmp_path / "cwd.txt"
    _spawn_detached(None)(["sh", "-c", f"pwd > {out}.tmp && mv {out}.tmp {out}"], tmp_path / "log")
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # the child is detached: wait for its answer, not for the process
    assert out.read_text().strip() == "/"
