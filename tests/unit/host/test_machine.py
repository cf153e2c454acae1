"""Unit tests of sandboxctl.host.machine against a fake `podman` on PATH.

The Podman machine VM cannot be created here (no Fedora CoreOS image is reachable): every
lifecycle test drives the fake, which keeps machine state like Podman 4 does, and says so
in its name (`..._fake_vm`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from fakes.harness import FakeTools
from invoke.context import MockContext
from invoke.exceptions import Exit

from sandboxctl.config import settings_from_mapping
from sandboxctl.host import machine
from sandboxctl.host.engine import Engine, resolve_engine
from sandboxctl.host.platform import HostInfo, Platform
from sandboxctl.tasks import machine as machine_tasks

SPEC = machine.MachineSpec(name="sbx", cpus=4, memory_mib=8192, disk_gib=60, rootful=True)


@pytest.fixture
def fakes(tmp_path: Path) -> FakeTools:
    return FakeTools.create(tmp_path, state={"podman_version": "4.3.1"})


def test_init_argv_uses_image_path_on_podman_4() -> None:
    argv = machine.init_argv(replace(SPEC, image="/img/fcos.qcow2"), major=4)
    assert argv == [
        "podman", "machine", "init", "--cpus", "4", "--memory", "8192", "--disk-size", "60",
        "--rootful", "--image-path", "/img/fcos.qcow2", "sbx",
    ]  # fmt: skip


def test_init_argv_uses_image_on_podman_5() -> None:
    assert "--image" in machine.init_argv(replace(SPEC, image="x.raw"), major=5)


def test_init_argv_leaves_out_rootful_when_not_asked() -> None:
    assert "--rootful" not in machine.init_argv(replace(SPEC, rootful=False))


def test_spec_from_settings_takes_answers_and_flags_override_them() -> None:
    settings = settings_from_mapping({"MACHINE_CPUS": "2", "MACHINE_DISK_GIB": "30"})
    spec = machine.spec_from_settings(settings, cpus=8)
    assert (spec.cpus, spec.disk_gib, spec.rootful) == (8, 30, True)


def test_machine_init_passes_answers_to_podman_fake_vm(fakes: FakeTools) -> None:
    """init runs `podman machine init` with the answers, then starts the machine."""
    machine.init(SPEC, fakes.runner())
    podman = fakes.calls("podman")
    assert machine.init_argv(SPEC)[1:] in podman
    assert ["machine", "start", "sbx"] in podman
    assert fakes.state["machines"]["sbx"]["State"] == "running"
    assert fakes.state["machines"]["sbx"]["Resources"] == {
        "CPUs": 4,
        "Memory": 8192,
        "DiskSize": 60,
    }


def test_machine_init_twice_does_not_recreate_fake_vm(fakes: FakeTools) -> None:
    """init is idempotent: an existing machine is kept and only started."""
    machine.init(SPEC, fakes.runner())
    lines = machine.init(SPEC, fakes.runner())
    inits = [argv for argv in fakes.calls("podman") if argv[:2] == ["machine", "init"]]
    assert len(inits) == 1
    assert "exists" in lines[0]
    assert lines[-1] == "machine sbx is already running"


def test_machine_init_notes_size_differences_of_an_existing_machine_fake_vm(
    fakes: FakeTools,
) -> None:
    machine.init(SPEC, fakes.runner(), start_after=False)
    lines = machine.init(replace(SPEC, cpus=8), fakes.runner(), start_after=False)
    assert any("CPUs is 4 (answers say 8)" in line for line in lines)


def test_machine_init_failure_explains_the_image_download_fake_vm(fakes: FakeTools) -> None:
    fakes.update(machine_init_error="Error: failed to download image: dial tcp: no route")
    with pytest.raises(machine.MachineError, match="--image"):
        machine.init(SPEC, fakes.runner())


def test_machine_start_of_missing_machine_says_init_fake_vm(fakes: FakeTools) -> None:
    with pytest.raises(machine.MachineError, match=r"machine\.init"):
        machine.start("nope", fakes.runner())


def test_machine_stop_stops_a_running_machine_fake_vm(fakes: FakeTools) -> None:
    machine.init(SPEC, fakes.runner())
    assert machine.stop("sbx", fakes.runner()) == "machine sbx stopped"
    assert fakes.state["machines"]["sbx"]["State"] == "stopped"


def test_machine_stop_of_a_stopped_machine_does_nothing_fake_vm(fakes: FakeTools) -> None:
    machine.init(SPEC, fakes.runner(), start_after=False)
    assert machine.stop("sbx", fakes.runner()) == "machine sbx is not running"
    assert ["machine", "stop", "sbx"] not in fakes.calls("podman")


def test_machine_status_shows_size_and_socket_fake_vm(fakes: FakeTools) -> None:
    machine.init(SPEC, fakes.runner())
    lines = machine.status("sbx", fakes.runner(), "macos")
    assert lines[0] == "machine sbx: running"
    assert "memory 8192 MiB" in lines[1]
    assert lines[2] == "  DOCKER_HOST=unix:///run/user/1000/podman/sbx-api.sock"


def test_machine_rm_removes_the_machine_fake_vm(fakes: FakeTools) -> None:
    machine.init(SPEC, fakes.runner())
    machine.remove("sbx", fakes.runner())
    assert ["machine", "rm", "--force", "sbx"] in fakes.calls("podman")
    assert "sbx" not in fakes.state["machines"]


def test_machine_without_podman_installed_says_host_prepare(tmp_path: Path) -> None:
    bare = FakeTools.create(tmp_path, tools=())
    with pytest.raises(machine.MachineError, match=r"host\.prepare"):
        machine.start("sbx", bare.runner())


def test_ssh_argv_passes_the_command_as_one_argument() -> None:
    assert machine.ssh_argv("sbx", "uname -a") == ["podman", "machine", "ssh", "sbx", "uname -a"]


def test_socket_lines_print_the_export_and_vscode_settings() -> None:
    lines = machine.socket_lines("unix:///run/podman/podman.sock", "/opt/compose")
    assert lines[0] == "export DOCKER_HOST=unix:///run/podman/podman.sock"
    settings = json.loads(lines[-1])
    assert settings["docker.environment"] == {"DOCKER_HOST": "unix:///run/podman/podman.sock"}
    assert settings["dev.containers.dockerPath"] == "podman"
    assert settings["dev.containers.dockerComposePath"] == "/opt/compose"


def test_socket_lines_use_powershell_on_windows() -> None:
    lines = machine.socket_lines("npipe:////./pipe/podman", None, windows=True)
    assert lines[0] == '$env:DOCKER_HOST = "npipe:////./pipe/podman"'


def test_native_start_reports_no_vm_and_serves_the_socket(tmp_path: Path) -> None:
    """On native Linux, machine.start says no VM is needed and starts the service."""
    host = HostInfo(platform=Platform.LINUX, is_root=True, uid=0)
    engine = replace(resolve_engine(host, environ={}), socket_path=tmp_path / "p.sock")
    answers = iter([False, True])
    lines = machine.native_start(
        engine, tmp_path, ping_fn=lambda _p: next(answers), spawn=lambda _a, _l: 99
    )
    assert lines[0].startswith("native Linux: no VM needed")
    assert "pid 99" in lines[1]


def running(project: str | None) -> dict[str, object]:
    labels = {machine.COMPOSE_PROJECT_LABEL: project} if project else {}
    return {"Names": ["c"], "Labels": labels}


def test_engine_users_lists_other_projects_and_loose_containers(tmp_path: Path) -> None:
    fakes = FakeTools.create(
        tmp_path, state={"running": [running("mine"), running("other"), running(None)]}
    )
    users = machine.engine_users(fakes.runner(), "mine")
    assert users == ["1 container(s) of no Compose project", "1 container(s) of project other"]


def test_engine_users_is_empty_when_only_this_sandbox_runs(tmp_path: Path) -> None:
    fakes = FakeTools.create(tmp_path, state={"running": [running("mine"), running("mine")]})
    assert machine.engine_users(fakes.runner(), "mine") == []


def native_engine(tmp_path: Path) -> Engine:
    host = HostInfo(platform=Platform.LINUX, is_root=True, uid=0)
    return replace(resolve_engine(host, environ={}), socket_path=tmp_path / "p.sock")


def test_native_stop_keeps_a_service_other_sandboxes_use_unless_confirmed(
    tmp_path: Path,
) -> None:
    asked: list[str] = []

    def decline(question: str) -> bool:
        asked.append(question)
        return False

    lines = machine.native_stop(
        native_engine(tmp_path),
        tmp_path,
        others=["2 container(s) of project other"],
        confirm=decline,
    )
    assert "project other" in asked[0]
    assert lines[-1].startswith("kept the service")


def test_native_stop_without_other_users_asks_nothing(tmp_path: Path) -> None:
    def never(_question: str) -> bool:
        raise AssertionError("asked")

    lines = machine.native_stop(native_engine(tmp_path), tmp_path, confirm=never)
    assert "nothing to stop" in lines[-1]


# --- the machine tasks' one branch: a Podman machine or the native service ---------------


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch) -> Callable[[Platform], None]:
    """Make the machine tasks see the answers' defaults on a host of ``platform``."""

    def place(platform: Platform) -> None:
        info = HostInfo(platform=platform, is_root=False, uid=1000)
        monkeypatch.setattr(machine_tasks, "load_answers", lambda: settings_from_mapping({}))
        monkeypatch.setattr(machine_tasks, "host", lambda: info)

    return place


@pytest.mark.parametrize(
    ("platform", "printed"),
    [(Platform.MACOS, "machine podman-machine-default started"), (Platform.LINUX, "native")],
)
def test_machine_start_starts_the_machine_or_the_native_service(
    platform: Platform,
    printed: str,
    on: Callable[[Platform], None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    on(platform)
    monkeypatch.setattr(machine, "start", lambda name, _runner: f"machine {name} started")
    monkeypatch.setattr(machine_tasks, "_native_start", lambda _settings, _info: ["native"])
    machine_tasks.start(MockContext())
    assert capsys.readouterr().out == f"{printed}\n"


def test_machine_ssh_on_native_linux_says_there_is_no_vm(
    on: Callable[[Platform], None],
) -> None:
    on(Platform.LINUX)
    with pytest.raises(Exit, match="native Linux has no VM") as ended:
        machine_tasks.ssh(MockContext())
    assert ended.value.code == 1
