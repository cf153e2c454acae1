"""The local proof of the Kubernetes manifests: a freshly rendered sandbox's CPU overlay and
agent Job, built with kubectl kustomize, validated, played with real `podman kube play`
(4.3.1, adapted as sandboxctl.kube.local says), one agent task run by the Job's pod against
the real llama-server (tiny model), its trajectory read from the logs claim, and everything
taken down again.

The images are the e2e project's (`invoke up` builds them; here only what is missing is
built). The proof addresses only the pods' own internal networks on this host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_sandbox import FIGURES, PROJECT, TASK, render_sandbox

from sandboxctl import stack as stack_
from sandboxctl.kube import convert, local, proof


def podman_names(*args: str) -> list[str]:
    """Names podman lists for ``args`` (pods, volumes or networks)."""
    result = subprocess.run(["podman", *args], capture_output=True, text=True, check=True)
    return result.stdout.split()


def everything_of(prefix: str) -> list[str]:
    """Pods, containers, volumes and networks whose name starts with ``prefix``."""
    found = podman_names("pod", "ps", "--format", "{{.Name}}")
    found += podman_names("ps", "-a", "--format", "{{.Names}}")
    found += podman_names("volume", "ls", "--format", "{{.Name}}")
    found += podman_names("network", "ls", "--format", "{{.Name}}")
    return sorted(name for name in found if name.startswith(prefix))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `./bootstrap.sh` or `invoke host.prepare`")
    return render_sandbox(tmp_path_factory.mktemp("kube") / "sandbox")


@pytest.fixture(scope="module")
def played(sandbox: Path) -> proof.ProofResult:
    """Run the whole proof once (it tears down after itself, in a `finally`)."""
    prefix = proof.prefix_of(PROJECT)
    assert everything_of(prefix) == [], "a previous run left objects behind"
    stack = stack_.open_stack(sandbox)
    # The tiny model's random replies ran the default 30-step budget for 3-124 s; three
    # steps are an outcome too (as the shared stack's run).
    result = proof.run_proof(stack, TASK, ready_deadline_s=300, task_deadline_s=600, max_steps=3)
    FIGURES["kube"] = json.dumps({k: round(v, 1) for k, v in result.seconds.items()})
    print(f"kube proof: {FIGURES['kube']}")
    return result


def test_job_pod_ran_the_task_to_an_outcome(played: proof.ProofResult) -> None:
    """The Job's index 0 finished on its own terms (the Job script maps 0, 3, 4 to 0)."""
    assert played.exit_code == 0
    assert played.trajectory_file == f"{convert.JOB_NAME}/task-0.jsonl"


def test_trajectory_is_complete_and_reached_the_model_through_its_service_name(
    played: proof.ProofResult,
) -> None:
    kinds = [record["type"] for record in played.trajectory]
    assert kinds[0] == "run_start"
    assert kinds[-1] == "run_end"
    assert "model_response" in kinds
    start = played.trajectory[0]
    assert "http://model-server:" in json.dumps(start)
    assert TASK in json.dumps(start)


def test_the_step_budget_reached_the_jobs_supervisor(played: proof.ProofResult) -> None:
    """`kube.play --max-steps 3` sets SUPERVISOR_MAX_STEPS in the Job's pod."""
    assert played.trajectory[0]["limits"]["max_steps"] == 3


def test_every_role_was_played_as_a_pod(played: proof.ProofResult) -> None:
    prefix = proof.prefix_of(PROJECT)
    assert played.pods == [
        f"{prefix}-model-server",
        f"{prefix}-supervisor",
        f"{prefix}-tools",
        f"{prefix}-{convert.JOB_NAME}",
    ]


def test_nothing_is_left_after_the_proof(played: proof.ProofResult) -> None:
    """Pods, containers, claims' volumes and networks are all gone."""
    assert played.leftovers == []
    assert len(played.removed) >= 4 + 3 + 2
    assert everything_of(proof.prefix_of(PROJECT)) == []
    # kube play makes a default network of its own; other work on this engine may use it
    # too, so it may remain only while some container is attached to it.
    if local.KUBE_DEFAULT_NETWORK in podman_names("network", "ls", "--format", "{{.Name}}"):
        users = podman_names("ps", "-aq", "--filter", f"network={local.KUBE_DEFAULT_NETWORK}")
        assert users, f"{local.KUBE_DEFAULT_NETWORK} was left behind unused"


def test_kube_down_finds_nothing_to_remove(sandbox: Path, played: proof.ProofResult) -> None:
    """`invoke kube.down`, as a user would run it after a failed play, is a no-op now."""
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "kube.down"],
        cwd=sandbox,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing" in result.stdout
