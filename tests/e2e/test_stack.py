"""End to end: a freshly rendered sandbox, its images built with real Podman, the stack
started with real Compose v2, one agent task run against the real llama-server (tiny model).

Tests run in file order: the last one tears the stack down and checks nothing is left.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

from conftest import FIGURES, PROJECT, E2EStack


def trajectory_records(stack: E2EStack) -> list[dict[str, object]]:
    """Every record of every trajectory in the logs volume, read from a volume export."""
    exported = subprocess.run(
        ["podman", "volume", "export", f"{PROJECT}_logs"], capture_output=True, check=True
    ).stdout
    records = []
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".jsonl"):
                handle = tar.extractfile(member)
                assert handle is not None
                records += [json.loads(line) for line in handle.read().decode().splitlines()]
    return records


def test_agent_task_ran_to_an_outcome(e2e_stack: E2EStack) -> None:
    """`invoke run` finished the task (the tiny model's gibberish ends it by a budget)."""
    assert e2e_stack.run_code == 0, e2e_stack.run_output[-3000:]
    assert "== end:" in e2e_stack.run_output


def test_trajectory_in_logs_volume_is_complete_and_valid(e2e_stack: E2EStack) -> None:
    """The logs volume holds one run from run_start to run_end, every line valid JSON."""
    records = trajectory_records(e2e_stack)
    kinds = [record["type"] for record in records]
    assert kinds[0] == "run_start"
    assert kinds[-1] == "run_end"
    assert "model_response" in kinds


def test_supervisor_reached_the_model_by_service_name(e2e_stack: E2EStack) -> None:
    """The model answered the supervisor at http://model-server:PORT over ai-net."""
    records = trajectory_records(e2e_stack)
    start = next(r for r in records if r["type"] == "run_start")
    assert "model-server" in json.dumps(start)
    assert any(r["type"] == "model_response" for r in records)


def test_containers_run_non_root_without_capabilities(e2e_stack: E2EStack) -> None:
    """Every service runs as uid 10001 with an empty effective capability set."""
    containers = e2e_stack.containers()
    assert set(containers) == {"model-server", "supervisor", "tools"}
    for name, info in containers.items():
        status = e2e_stack.podman("exec", info["Id"], "cat", "/proc/1/status")
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Uid"].split()[0] == "10001", name
        assert int(fields["CapEff"].strip(), 16) == 0, name
        assert info["HostConfig"]["ReadonlyRootfs"] is True, name


def test_nothing_answers_from_outside_by_default(e2e_stack: E2EStack) -> None:
    """No service publishes a port (the model API is published only when asked), and the
    stack's network is internal."""
    for name, info in e2e_stack.containers().items():
        ports = info["NetworkSettings"].get("Ports") or {}
        assert all(not bindings for bindings in ports.values()), name
    for name in ("ai-net", "tools-net"):
        network = json.loads(e2e_stack.podman("network", "inspect", f"{PROJECT}_{name}"))[0]
        assert network["internal"] is True, name


def test_figures_are_recorded(e2e_stack: E2EStack) -> None:
    """Print the e2e's wall times and image sizes (recorded with the session's outcome)."""
    images = {}
    for name, info in e2e_stack.containers().items():
        size = e2e_stack.podman("image", "inspect", "--format", "{{.Size}}", info["Image"])
        images[name] = f"{int(size) / 1e6:.0f} MB"
    detail = (
        f"up {e2e_stack.up_seconds:.1f} s (images, model, readiness), "
        f"run {e2e_stack.run_seconds:.1f} s, images {images}"
    )
    print(f"\ne2e figures: {detail}")
    FIGURES["detail"] = detail


def test_down_volumes_leaves_no_container_volume_or_network(e2e_stack: E2EStack) -> None:
    """`invoke down --volumes --yes` removes every container, volume and network of it."""
    e2e_stack.invoke("down", "--volumes", "--yes")
    label = f"label=com.docker.compose.project={PROJECT}"
    assert e2e_stack.podman("ps", "-aq", "--filter", label).split() == []
    assert e2e_stack.podman("volume", "ls", "-q", "--filter", label).split() == []
    assert [
        n
        for n in e2e_stack.podman("network", "ls", "--format", "{{.Name}}").split()
        if n.startswith(f"{PROJECT}_")
    ] == []


def test_up_without_an_engine_fails_fast_with_a_clear_message(e2e_stack: E2EStack) -> None:
    """An unreachable engine is a message and a non-zero exit, not a hang or a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "up"],
        cwd=e2e_stack.path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/podman.sock"},
        check=False,
    )
    assert result.returncode != 0
    assert "does not answer" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
