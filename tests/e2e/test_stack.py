"""End to end: a freshly rendered sandbox, its images built with real Podman, the stack
started with real Compose v2, one agent task run against the real llama-server (tiny model).

The tests read what the fixtures measured (the run's output and trajectory, the figures)
or the running stack, in any order; the one that takes the stack down asks for
``stack_taken_down``, which runs it after all the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from e2e_sandbox import FIGURES, PROJECT, E2EStack


def test_agent_task_ran_to_an_outcome(e2e_stack: E2EStack) -> None:
    """`invoke run` finished the task (the tiny model's gibberish ends it by a budget)."""
    assert e2e_stack.run_code == 0, e2e_stack.run_output[-3000:]
    assert "run ended: " in e2e_stack.run_output  # the supervisor's own line
    assert "read it with `invoke runs.show --id " in e2e_stack.run_output


def test_trajectory_in_logs_volume_is_complete_and_valid(e2e_stack: E2EStack) -> None:
    """The logs volume holds one run from run_start to run_end, every line valid JSON."""
    kinds = [record["type"] for record in e2e_stack.records]
    assert kinds[0] == "run_start"
    assert kinds[-1] == "run_end"
    assert "model_response" in kinds


def test_supervisor_reached_the_model_by_service_name(e2e_stack: E2EStack) -> None:
    """The model answered the supervisor at http://model-server:PORT over ai-net."""
    records = e2e_stack.records
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


def test_figures_for_the_result_file_were_measured(e2e_stack: E2EStack) -> None:
    """results/e2e.json's detail holds real figures: both wall times, and one image size for
    each of the three services (each image exists and is not empty)."""
    assert e2e_stack.up_seconds > 0
    assert e2e_stack.run_seconds > 0
    assert set(e2e_stack.image_sizes) == {"model-server", "supervisor", "tools"}
    assert all(size > 0 for size in e2e_stack.image_sizes.values()), e2e_stack.image_sizes
    detail = FIGURES["detail"]
    assert f"up {e2e_stack.up_seconds:.1f} s" in detail
    assert all(service in detail for service in e2e_stack.image_sizes)


def test_down_volumes_leaves_no_container_volume_or_network(stack_taken_down: E2EStack) -> None:
    """`invoke down --volumes --yes` removes every container, volume and network of it."""
    stack = stack_taken_down
    label = f"label=com.docker.compose.project={PROJECT}"
    assert stack.podman("ps", "-aq", "--filter", label).split() == []
    assert stack.podman("volume", "ls", "-q", "--filter", label).split() == []
    assert [
        n
        for n in stack.podman("network", "ls", "--format", "{{.Name}}").split()
        if n.startswith(f"{PROJECT}_")
    ] == []


def test_up_without_an_engine_fails_fast_with_a_clear_message(rendered_sandbox: Path) -> None:
    """An unreachable engine is a message and a non-zero exit, not a hang or a traceback
    (the sandbox's stack need not be up: the engine is asked first)."""
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "up"],
        cwd=rendered_sandbox,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/podman.sock"},
        check=False,
    )
    assert result.returncode != 0
    assert "does not answer" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
