"""Milestones are measured now by real checks, here run against fake `podman` and `docker`
executables on a private PATH (no Podman machine or engine is needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from plan_copy import consistent_copy, replace

from sandboxctl._proc import Runner
from sandboxctl.checks import milestones
from sandboxctl.checks.base import Check, Probes
from sandboxctl.config import load_settings
from sandboxctl.host.platform import HostInfo, Platform

FAKE_PODMAN = """
import json, os, sys
args = sys.argv[1:]
state = json.load(open(os.environ["FAKE_STATE"]))
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["podman", *args]) + "\\n")
if args == ["--version"]:
    print("podman version 4.3.1")
elif args[:2] == ["machine", "inspect"]:
    machine = state.get("machine")
    if machine is None:
        sys.stderr.write("Error: VM does not exist\\n")
        sys.exit(125)
    print(json.dumps([machine]))
elif args[:1] == ["--remote"]:
    if not state.get("socket_answers"):
        sys.stderr.write("Cannot connect to Podman\\n")
        sys.exit(125)
    if "version" in args:
        print("4.9.3")
    elif "ps" in args:
        print(json.dumps(state.get("containers", [])))
else:
    sys.exit(2)
"""
FAKE_DOCKER = """
import json, os, sys
args = sys.argv[1:]
state = json.load(open(os.environ["FAKE_STATE"]))
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["docker", *args]) + "\\n")
if args == ["compose", "version"]:
    print("Docker Compose version v2.40.3")
elif args[:1] == ["compose"] and args[-2:] == ["config", "-q"]:
    sys.stderr.write(state.get("config_error", ""))
    sys.exit(1 if state.get("config_error") else 0)
else:
    sys.exit(2)
"""
WSL = HostInfo(platform=Platform.WSL, is_root=False, uid=1000, xdg_runtime_dir="/run/user/1000")
LINUX_ROOT = HostInfo(platform=Platform.LINUX, is_root=True, uid=0)
MACHINE_SOCKET = "/run/user/1000/podman/podman-machine-default-api.sock"
PROJECT = load_settings(Path(__file__).resolve().parents[3], require_file=True).compose_project_name
"""The Compose project of this repository's .env (copied into ``repo``): a rendered
sandbox's slug is its folder's name, so never a literal here."""


class Fakes:
    """A PATH holding fake podman/docker scripts, their state and the calls they got."""

    def __init__(self, tmp_path: Path, tools: tuple[str, ...] = ("podman", "docker")) -> None:
        self.bin = tmp_path / "fakebin"
        self.bin.mkdir()
        sources = {"podman": FAKE_PODMAN, "docker": FAKE_DOCKER}
        for tool in tools:
            script = self.bin / tool
            script.write_text(f"#!{sys.executable}\n{sources[tool]}")
            script.chmod(0o755)
        self.state_path = tmp_path / "state.json"
        self.log_path = tmp_path / "calls.jsonl"
        self.log_path.write_text("")
        self.set()

    def set(self, **state: Any) -> None:
        """Replace the fakes' state."""
        self.state_path.write_text(json.dumps(state))

    def runner(self) -> Runner:
        """A runner that sees only the fakes."""
        return Runner(
            env={
                "PATH": str(self.bin),
                "FAKE_STATE": str(self.state_path),
                "FAKE_LOG": str(self.log_path),
            }
        )

    def calls(self) -> list[list[str]]:
        """Every argv the fakes received."""
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A consistent copy of the sandbox's plan-relevant files, with a dev container config."""
    root = consistent_copy(tmp_path / "repo")
    (root / ".devcontainer").mkdir()
    (root / ".devcontainer/devcontainer.json").write_text('{"name": "x"}\n')
    return root


def probes(root: Path, fakes: Fakes, host: HostInfo = WSL) -> Probes:
    """Probes that run the fakes and never the real tools or the real environment."""
    return Probes(root=root, host=host, runner=fakes.runner(), environ={}, packaged_compose=None)


def running_machine() -> dict[str, Any]:
    """What `podman machine inspect` says about a running default machine."""
    return {
        "Name": "podman-machine-default",
        "State": "running",
        "Rootful": True,
        "ConnectionInfo": {"PodmanSocket": {"Path": MACHINE_SOCKET}},
    }


def container(service: str, state: str = "running") -> dict[str, Any]:
    """One entry of `podman ps --format json` for a compose service."""
    labels = {"com.docker.compose.project": PROJECT, "com.docker.compose.service": service}
    return {"Names": [f"{PROJECT}-{service}-1"], "State": state, "Labels": labels}


def test_host_prepared_with_fake_podman_and_fake_compose_plugin(repo: Path, tmp_path: Path) -> None:
    """Fake podman answers and the fake docker has Compose v2: the host is prepared."""
    status = milestones.host_prepared(probes(repo, Fakes(tmp_path)))
    assert status.done
    assert "podman version 4.3.1" in status.detail
    assert "2.40.3" in status.detail


def test_host_not_prepared_when_podman_is_absent_from_fake_path(repo: Path, tmp_path: Path) -> None:
    """No podman on PATH: not done, and the fix is host.prepare."""
    status = milestones.host_prepared(probes(repo, Fakes(tmp_path, tools=("docker",))))
    assert not status.done
    assert status.fix == "./bootstrap.sh invoke host.prepare"


def test_host_not_prepared_without_compose_v2_on_fake_path(repo: Path, tmp_path: Path) -> None:
    """Podman alone is not enough: Compose v2 must be found too."""
    status = milestones.host_prepared(probes(repo, Fakes(tmp_path, tools=("podman",))))
    assert not status.done
    assert "Compose v2 not found" in status.detail


def test_machine_not_initialised_when_fake_podman_has_no_machine(
    repo: Path, tmp_path: Path
) -> None:
    """On WSL without a Podman machine: not done, fix machine.init."""
    status = milestones.machine_initialised(probes(repo, Fakes(tmp_path)))
    assert not status.done
    assert status.fix == "invoke machine.init"


def test_machine_not_initialised_when_fake_machine_is_stopped(repo: Path, tmp_path: Path) -> None:
    """A stopped machine is not a running container host."""
    fakes = Fakes(tmp_path)
    fakes.set(machine={**running_machine(), "State": "stopped"}, socket_answers=True)
    status = milestones.machine_initialised(probes(repo, fakes))
    assert (status.done, status.fix) == (False, "invoke machine.start")
    assert "stopped" in status.detail


def test_machine_initialised_when_fake_machine_runs_and_its_socket_answers(
    repo: Path, tmp_path: Path
) -> None:
    """Running machine and its API socket answers: done; the socket asked is the machine's."""
    fakes = Fakes(tmp_path)
    fakes.set(machine=running_machine(), socket_answers=True)
    status = milestones.machine_initialised(probes(repo, fakes))
    assert status.done, status.detail
    assert ["podman", "--remote", "--url", f"unix://{MACHINE_SOCKET}"] in [
        call[:4] for call in fakes.calls()
    ]


def test_machine_not_initialised_when_fake_socket_does_not_answer(
    repo: Path, tmp_path: Path
) -> None:
    """The machine runs but its socket does not answer: not done."""
    fakes = Fakes(tmp_path)
    fakes.set(machine=running_machine(), socket_answers=False)
    status = milestones.machine_initialised(probes(repo, fakes))
    assert not status.done
    assert "does not answer" in status.detail


def test_native_linux_asks_the_rootful_socket_through_fake_podman(
    repo: Path, tmp_path: Path
) -> None:
    """On native Linux as root, the socket measured is /run/podman/podman.sock."""
    fakes = Fakes(tmp_path)
    fakes.set(socket_answers=True)
    status = milestones.machine_initialised(probes(repo, fakes, host=LINUX_ROOT))
    assert status.done
    assert fakes.calls()[-1][:4] == [
        "podman",
        "--remote",
        "--url",
        "unix:///run/podman/podman.sock",
    ]


def test_compose_adapted_when_fake_compose_config_passes_and_no_drift(
    repo: Path, tmp_path: Path
) -> None:
    """`compose config -q` passes (fake) and plan.check finds no compose drift: done."""
    status = milestones.compose_adapted(probes(repo, Fakes(tmp_path)))
    assert status.done, status.detail


def test_compose_not_adapted_when_fake_compose_config_fails(repo: Path, tmp_path: Path) -> None:
    """Compose's own error is shown."""
    fakes = Fakes(tmp_path)
    fakes.set(config_error="services.x: additional property y not allowed")
    status = milestones.compose_adapted(probes(repo, fakes))
    assert not status.done
    assert "additional property y" in status.detail


def test_compose_not_adapted_when_compose_drifts_from_the_plan(repo: Path, tmp_path: Path) -> None:
    """A compose file that passes `config` but drops cap_drop is still not adapted."""
    replace(repo / "compose.yaml", "  cap_drop: [ALL]\n", "")
    status = milestones.compose_adapted(probes(repo, Fakes(tmp_path)))
    assert not status.done
    assert "cap_drop lacks ALL" in status.detail


def test_devcontainer_not_validated_without_a_result_file(repo: Path, tmp_path: Path) -> None:
    """A config file alone does not validate the dev container."""
    status = milestones.devcontainer_validated(probes(repo, Fakes(tmp_path)))
    assert not status.done
    assert "results/devcontainer.json" in status.detail


def test_devcontainer_validated_by_a_passing_result(repo: Path, tmp_path: Path) -> None:
    """The dev container check's passing result makes the milestone done."""
    milestones.write_result(repo, "devcontainer", passed=True, detail="tests passed inside")
    assert milestones.devcontainer_validated(probes(repo, Fakes(tmp_path))).done


def test_devcontainer_not_validated_without_its_config(repo: Path, tmp_path: Path) -> None:
    """A passing result without .devcontainer/devcontainer.json does not count."""
    milestones.write_result(repo, "devcontainer", passed=True)
    (repo / ".devcontainer/devcontainer.json").unlink()
    assert not milestones.devcontainer_validated(probes(repo, Fakes(tmp_path))).done


def test_containers_running_when_fake_podman_lists_both_services(
    repo: Path, tmp_path: Path
) -> None:
    """Every service the plan requires runs: done; the project label filtered on."""
    fakes = Fakes(tmp_path)
    fakes.set(
        machine=running_machine(),
        socket_answers=True,
        containers=[container("model-server"), container("supervisor"), container("tools")],
    )
    status = milestones.containers_running(probes(repo, fakes))
    assert status.done, status.detail
    assert f"label=com.docker.compose.project={PROJECT}" in fakes.calls()[-1]


def test_containers_not_running_when_fake_podman_lists_one_exited(
    repo: Path, tmp_path: Path
) -> None:
    """An exited supervisor is named in the detail."""
    fakes = Fakes(tmp_path)
    fakes.set(
        machine=running_machine(),
        socket_answers=True,
        containers=[container("model-server"), container("supervisor", "exited")],
    )
    status = milestones.containers_running(probes(repo, fakes))
    assert not status.done
    assert "not running: supervisor" in status.detail


def test_e2e_failed_result_is_not_done(repo: Path, tmp_path: Path) -> None:
    """A failing e2e result is reported with its detail."""
    milestones.write_result(repo, "e2e", passed=False, detail="agent task timed out")
    status = milestones.e2e_passed(probes(repo, Fakes(tmp_path)))
    assert not status.done
    assert "agent task timed out" in status.detail


def test_status_is_measured_each_time_not_stored(repo: Path, tmp_path: Path) -> None:
    """Remove the e2e result and the milestone is no longer reached."""
    check = probes(repo, Fakes(tmp_path))
    milestones.write_result(repo, "e2e", passed=True)
    assert milestones.e2e_passed(check).done
    (repo / "results/e2e.json").unlink()
    assert not milestones.e2e_passed(check).done


def test_result_file_carries_a_zulu_timestamp(repo: Path) -> None:
    """Result files say when they were written, in UTC."""
    path = milestones.write_result(repo, "e2e", passed=True)
    data = json.loads(path.read_text())
    assert data["passed"] is True
    assert data["finished"].endswith("Z")


def test_measure_reports_a_crashing_check_and_runs_the_rest(repo: Path, tmp_path: Path) -> None:
    """One broken probe does not hide the other milestones."""

    def broken(_: Probes) -> Check:
        """Explode."""
        raise RuntimeError("boom")

    statuses = milestones.measure(
        probes(repo, Fakes(tmp_path)), [broken, milestones.devcontainer_validated]
    )
    assert [s.done for s in statuses] == [False, False]
    assert "boom" in statuses[0].detail
    assert statuses[1].name == "dev container validated"


def test_all_six_milestones_are_measured_in_plan_order(repo: Path, tmp_path: Path) -> None:
    """The printed list has the plan's six milestones and a summary line."""
    lines = milestones.format_statuses(milestones.measure(probes(repo, Fakes(tmp_path))))
    names = [line.split(":")[0].split(". ", 1)[1] for line in lines[:-1]]
    assert names == [
        "host prepared",
        "machine initialised",
        "compose adapted",
        "dev container validated",
        "containers running",
        "end-to-end passed",
    ]
    assert lines[-1].endswith("milestones reached")
