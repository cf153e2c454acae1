"""The local proof's step budget: ``kube.play --max-steps N`` reaches the Job's supervisor."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxctl.kube import convert, local, proof


def job(*containers: str, env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A Job object with the named containers (the supervisor's with ``env``)."""
    boxes = [{"name": name, "env": list(env or [])} for name in containers]
    return {"kind": "Job", "spec": {"template": {"spec": {"containers": boxes}}}}


def env_of(obj: dict[str, Any], name: str) -> dict[str, str]:
    boxes = obj["spec"]["template"]["spec"]["containers"]
    box = next(b for b in boxes if b["name"] == name)
    return {e["name"]: e["value"] for e in box["env"]}


def test_a_step_budget_is_set_in_the_jobs_supervisor_only() -> None:
    objects = [{"kind": "Service"}, job(convert.SUPERVISOR_SERVICE, convert.TOOLS_SERVICE)]
    proof.with_step_budget(objects, 3)
    assert env_of(objects[1], convert.SUPERVISOR_SERVICE) == {"SUPERVISOR_MAX_STEPS": "3"}
    assert env_of(objects[1], convert.TOOLS_SERVICE) == {}


def test_a_step_budget_replaces_one_already_there() -> None:
    old = [{"name": "SUPERVISOR_MAX_STEPS", "value": "30"}, {"name": "X", "value": "1"}]
    objects = [job(convert.SUPERVISOR_SERVICE, env=old)]
    proof.with_step_budget(objects, 5)
    assert env_of(objects[0], convert.SUPERVISOR_SERVICE) == {
        "X": "1",
        "SUPERVISOR_MAX_STEPS": "5",
    }


def test_no_step_budget_leaves_the_job_as_rendered() -> None:
    objects = [job(convert.SUPERVISOR_SERVICE)]
    proof.with_step_budget(objects, 0)
    assert objects == [job(convert.SUPERVISOR_SERVICE)]


def test_a_step_budget_without_a_job_is_an_error() -> None:
    with pytest.raises(local.LocalError, match="no Job"):
        proof.with_step_budget([{"kind": "Deployment"}], 3)
