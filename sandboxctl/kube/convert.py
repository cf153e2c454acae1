"""Turn the merged Compose project into Kubernetes objects (plain dicts, ready for YAML).

The input is what ``compose config --format json`` prints: interpolated, merged, with
absolute paths. Every object is derived from it, so the manifests cannot drift from
``compose.yaml`` by hand:

- each service becomes a Deployment (one replica, ``Recreate``: its volumes are
  ReadWriteOnce) whose pod carries the service's hardening as ``securityContext``:
  ``user`` -> ``runAsUser``/``runAsGroup``/``fsGroup`` and ``runAsNonRoot``, ``cap_drop``
  -> ``capabilities.drop``, ``no-new-privileges`` -> ``allowPrivilegeEscalation: false``,
  ``read_only`` -> ``readOnlyRootFilesystem``, seccomp ``RuntimeDefault``, no service
  account token; ``mem_limit`` -> ``resources.limits.memory``; ``tmpfs`` -> a memory
  ``emptyDir`` with its size; ``secrets`` -> one projected Secret volume at
  ``/run/secrets``; ``healthcheck`` -> ``readinessProbe``;
- a service that another one calls by URL in its environment (``http://tools:8700``)
  gets a Service on that port, and the caller -> callee edge becomes the NetworkPolicies:
  everything denied by default, each edge allowed on its port only when Compose puts both
  on one network, DNS allowed;
- named volumes become PersistentVolumeClaims, compose secrets become Secrets generated
  from the sandbox's secret files (``secretGenerator``, never values in YAML).

What has no Kubernetes field (``pids_limit``, ``init``, ``restart: "no"``) is listed in
:data:`NOT_EXPRESSIBLE` and documented in docs/KUBERNETES.md. Anything this module does not
understand raises :class:`ConvertError` instead of being dropped silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

Obj = dict[str, Any]

MODEL_SERVICE = "model-server"
SUPERVISOR_SERVICE = "supervisor"
TOOLS_SERVICE = "tools"
JOB_NAME = "agent-tasks"
"""The agent Job, its pods' ``app.kubernetes.io/name`` and its task ConfigMap."""
TASKS_FILE = "tasks.json"
TASKS_DIR = "/etc/agent-tasks"
SECRETS_DIR = "/run/secrets"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
DEFAULT_VOLUME_SIZE = "1Gi"
VOLUME_SIZES = {"model-data": "20Gi", "workspace": "5Gi", "logs": "1Gi"}
"""Storage requested by each PersistentVolumeClaim (Compose volumes have no size):
patch them in an overlay for bigger models or longer runs."""

NOT_EXPRESSIBLE = {
    "pids_limit": "no per-container field; set the kubelet's podPidsLimit on the nodes",
    "init": "no per-container field; the runtime's pause process and the images' own "
    "signal handling stand in",
    "restart": 'Deployments always restart their pods; Compose\'s "no" has no equivalent',
}
"""Compose settings of the stack that no Kubernetes object field expresses, and why."""

# Compose keys a service may carry and where each one goes; any other key is an error.
_HANDLED = {
    "image", "build", "user", "command", "entrypoint", "environment", "secrets",
    "volumes", "tmpfs", "networks", "mem_limit", "pids_limit", "healthcheck", "cap_drop",
    "security_opt", "read_only", "init", "pull_policy", "restart", "devices", "ports",
    "expose", "dns", "extra_hosts",
}  # fmt: skip
_URL = re.compile(r"\bhttps?://([a-z0-9][a-z0-9-]*):(\d+)")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


class ConvertError(ValueError):
    """The Compose model holds something this converter cannot express faithfully."""


@dataclass(frozen=True, order=True)
class Edge:
    """``client`` calls ``server`` on ``port`` (found in the client's environment)."""

    client: str
    server: str
    port: int


@dataclass
class Stack:
    """The Kubernetes objects of one Compose project, by kind."""

    project: str
    deployments: dict[str, Obj] = field(default_factory=dict)
    services: dict[str, Obj] = field(default_factory=dict)
    claims: dict[str, Obj] = field(default_factory=dict)
    policies: list[Obj] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    """Kubernetes Secret name -> the compose secret (its file's name under secrets/)."""
    edges: list[Edge] = field(default_factory=list)


def k8s_name(name: str) -> str:
    """Return a DNS-1123 name for a Compose name (``model_api_key`` -> ``model-api-key``)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not cleaned:
        raise ConvertError(f"{name!r} has no character a Kubernetes name can keep")
    return cleaned[:63]


def quantity(value: Any) -> str:
    """Return a byte count (``4294967296``, ``"512m"``) as a Kubernetes quantity (``4Gi``)."""
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)([bkmg]?)b?", text)
    if not match:
        raise ConvertError(f"cannot read the size {value!r}")
    number = int(match.group(1)) * 1024 ** " kmg".index(match.group(2) or " ")
    for suffix, power in (("Gi", 3), ("Mi", 2), ("Ki", 1)):
        if number and number % 1024**power == 0:
            return f"{number // 1024**power}{suffix}"
    return str(number)


def seconds(duration: Any) -> int:
    """Return a Compose duration (``1m0s``, ``10s``) in whole seconds, at least 1."""
    text = str(duration)
    parts = _DURATION.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
        raise ConvertError(f"cannot read the duration {duration!r}")
    return max(1, math.ceil(sum(float(n) * _UNITS[u] for n, u in parts)))


def user_ids(user: Any) -> tuple[int, int]:
    """Return (uid, gid) of a numeric Compose ``user`` (``"10001:10001"``)."""
    uid, _, gid = str(user or "").partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        raise ConvertError(
            f"user {user!r} is not numeric uid[:gid]: Kubernetes needs numbers to prove "
            "the container is not root (runAsNonRoot)"
        )
    return int(uid), int(gid or uid)


def labels(project: str, name: str) -> dict[str, str]:
    """The labels of a workload: its name and the sandbox it belongs to."""
    return {NAME_LABEL: name, PART_OF_LABEL: k8s_name(project)}


def edges(project: Mapping[str, Any]) -> list[Edge]:
    """Return every caller -> callee edge: a service whose environment holds
    ``http://OTHER:PORT`` with OTHER another service of the project.

    Raises :class:`ConvertError` when the two share no Compose network: the URL could not
    work under Compose either.
    """
    services: Mapping[str, Any] = project.get("services", {})
    found: set[Edge] = set()
    for client, spec in services.items():
        for value in (spec.get("environment") or {}).values():
            for host, port in _URL.findall(str(value or "")):
                if host in services and host != client:
                    found.add(Edge(client, host, int(port)))
    for edge in found:
        mine = set(services[edge.client].get("networks") or {})
        theirs = set(services[edge.server].get("networks") or {})
        if not mine & theirs:
            raise ConvertError(
                f"{edge.client} calls {edge.server}:{edge.port} but they share no network"
            )
    return sorted(found)


def check_extra_hosts(project: Mapping[str, Any]) -> None:
    """Raise :class:`ConvertError` when a service's ``extra_hosts`` names anything but
    another service of the project: only those names have a cluster equivalent (a
    Service)."""
    services: Mapping[str, Any] = project.get("services", {})
    for client, spec in sorted(services.items()):
        for entry in spec.get("extra_hosts") or []:
            host = re.split(r"[=:]", str(entry), maxsplit=1)[0]
            if host not in services or host == client:
                raise ConvertError(
                    f"{client}: extra_hosts names {host!r}, not another service of the "
                    "stack: a cluster has no equivalent"
                )


def _container_security(spec: Mapping[str, Any]) -> Obj:
    uid, gid = user_ids(spec.get("user"))
    options = [str(o).replace("=", ":") for o in spec.get("security_opt") or []]
    no_new_privileges = "no-new-privileges:true" in options or "no-new-privileges" in options
    context: Obj = {
        "allowPrivilegeEscalation": not no_new_privileges,
        "readOnlyRootFilesystem": bool(spec.get("read_only")),
        "runAsNonRoot": uid != 0,
        "runAsUser": uid,
        "runAsGroup": gid,
        "capabilities": {"drop": sorted(spec.get("cap_drop") or [])},
    }
    if spec.get("cap_add"):
        context["capabilities"]["add"] = sorted(spec["cap_add"])
    return context


def _pod_security(spec: Mapping[str, Any]) -> Obj:
    uid, gid = user_ids(spec.get("user"))
    return {
        "runAsNonRoot": uid != 0,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(healthcheck: Mapping[str, Any] | None) -> Obj | None:
    if not healthcheck or healthcheck.get("disable"):
        return None
    test = list(healthcheck.get("test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        command = test[1:]
    elif test[0] == "CMD-SHELL":
        command = ["/bin/sh", "-c", " ".join(test[1:])]
    else:
        raise ConvertError(f"healthcheck test {test!r} is neither CMD nor CMD-SHELL")
    return {
        "exec": {"command": command},
        "periodSeconds": seconds(healthcheck.get("interval", "30s")),
        "timeoutSeconds": seconds(healthcheck.get("timeout", "30s")),
        "failureThreshold": int(healthcheck.get("retries", 3)),
        "initialDelaySeconds": 0,
    }


def _tmpfs(entries: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """Return (volume name, mount path, size) of each ``tmpfs`` entry (``/tmp:size=64m``)."""
    mounts = []
    for index, entry in enumerate(entries):
        path, _, options = str(entry).partition(":")
        size = next((o[5:] for o in options.split(",") if o.startswith("size=")), None)
        name = "tmp" if index == 0 else f"tmp-{index}"
        mounts.append((name, path, quantity(size) if size else None))
    return mounts


def _secret_items(project: Mapping[str, Any], spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return (compose secret, file name under /run/secrets) of each secret a service uses."""
    items = []
    for entry in spec.get("secrets") or []:
        source = entry["source"] if isinstance(entry, Mapping) else str(entry)
        target = PurePosixPath(
            entry.get("target") or source if isinstance(entry, Mapping) else source
        )
        if not target.is_absolute():
            target = PurePosixPath(SECRETS_DIR) / target
        if str(target.parent) != SECRETS_DIR:
            raise ConvertError(f"secret {source} is mounted at {target}, outside {SECRETS_DIR}")
        if source not in (project.get("secrets") or {}):
            raise ConvertError(f"secret {source} is not declared at the top level")
        items.append((source, target.name))
    return items


def container(
    project: Mapping[str, Any], name: str, spec: Mapping[str, Any], ports: Sequence[int] = ()
) -> tuple[Obj, list[Obj]]:
    """Return one service's container and the pod volumes it needs."""
    unknown = set(spec) - _HANDLED
    if unknown:
        raise ConvertError(f"service {name}: no Kubernetes mapping for {sorted(unknown)}")
    if spec.get("ports"):
        raise ConvertError(
            f"service {name} publishes ports: use `kubectl port-forward` on a cluster "
            "(docs/KUBERNETES.md), not the publish overlay"
        )
    body: Obj = {"name": name, "image": spec["image"]}
    if spec.get("entrypoint"):
        body["command"] = list(spec["entrypoint"])
    if spec.get("command"):
        body["args"] = list(spec["command"])
    environment = spec.get("environment") or {}
    body["env"] = [
        {"name": key, "value": "" if value is None else str(value)}
        for key, value in sorted(environment.items())
    ]
    if ports:
        body["ports"] = [{"name": f"tcp-{p}", "containerPort": p} for p in sorted(set(ports))]
    body["securityContext"] = _container_security(spec)
    if spec.get("mem_limit"):
        body["resources"] = {"limits": {"memory": quantity(spec["mem_limit"])}}
    probe = _probe(spec.get("healthcheck"))
    if probe:
        body["readinessProbe"] = probe
    mounts: list[Obj] = []
    volumes: list[Obj] = []
    for mount in spec.get("volumes") or []:
        if mount.get("type") != "volume":
            raise ConvertError(
                f"service {name} mounts {mount.get('source')} as {mount.get('type')}: only "
                "named volumes become PersistentVolumeClaims"
            )
        claim = k8s_name(mount["source"])
        entry: Obj = {"name": claim, "mountPath": mount["target"]}
        if mount.get("read_only"):
            entry["readOnly"] = True
        mounts.append(entry)
        volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
    for volume, path, size in _tmpfs(spec.get("tmpfs") or []):
        mounts.append({"name": volume, "mountPath": path})
        empty: Obj = {"medium": "Memory"}
        if size:
            empty["sizeLimit"] = size
        volumes.append({"name": volume, "emptyDir": empty})
    items = _secret_items(project, spec)
    if items:
        mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
        sources = [
            {"secret": {"name": k8s_name(source), "items": [{"key": source, "path": path}]}}
            for source, path in items
        ]
        volumes.append({"name": "secrets", "projected": {"sources": sources, "defaultMode": 0o440}})
    body["volumeMounts"] = mounts
    return body, volumes


def pod_spec(containers: list[Obj], volumes: list[Obj], spec: Mapping[str, Any]) -> Obj:
    """The hardened pod around ``containers``: no service account token, no service
    links, the pod-level securityContext of the service ``spec``, and its resolvers:
    a service with ``dns`` (Compose's "no resolver", ``127.0.0.1``) gets exactly those
    (``dnsPolicy: None``), never the cluster's, which forwards outside names upstream;
    unless Compose gives it the stack's services at fixed addresses (``extra_hosts``):
    on a cluster those names are Services, so it keeps the cluster's resolver (and the
    NetworkPolicies let only it ask)."""
    pod: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(spec),
        "containers": containers,
        "volumes": volumes,
    }
    if spec.get("dns") and not spec.get("extra_hosts"):
        pod["dnsPolicy"] = "None"
        pod["dnsConfig"] = {"nameservers": [str(server) for server in spec["dns"]]}
    return pod


def deployment(project: str, name: str, pod: Obj) -> Obj:
    """A one-replica Deployment of ``pod`` (Recreate: its claims are ReadWriteOnce)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(project, name)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels(project, name)},
            "template": {"metadata": {"labels": labels(project, name)}, "spec": pod},
        },
    }


def service(project: str, name: str, ports: Sequence[int]) -> Obj:
    """A ClusterIP Service named as the Compose service, so URLs keep working."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(project, name)},
        "spec": {
            "type": "ClusterIP",
            "selector": labels(project, name),
            "ports": [
                {"name": f"tcp-{p}", "port": p, "targetPort": p, "protocol": "TCP"}
                for p in sorted(set(ports))
            ],
        },
    }


def claim(project: str, name: str) -> Obj:
    """A ReadWriteOnce PersistentVolumeClaim for a named volume."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": k8s_name(name), "labels": {PART_OF_LABEL: k8s_name(project)}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": VOLUME_SIZES.get(name, DEFAULT_VOLUME_SIZE)}},
        },
    }


def network_policies(project: str, links: Sequence[Edge]) -> list[Obj]:
    """Deny all traffic, then allow DNS to the pods that call a service by name (the
    cluster's resolver forwards other names upstream, so no other pod may ask it), and
    each caller -> callee edge on its port."""
    part = {PART_OF_LABEL: k8s_name(project)}

    def policy(name: str, selector: Obj, kinds: list[str], **rules: Any) -> Obj:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "labels": dict(part)},
            "spec": {"podSelector": selector, "policyTypes": kinds, **rules},
        }

    result = [policy("default-deny", {}, ["Ingress", "Egress"])]
    callers = sorted({e.client for e in links})
    if callers:
        by_name = {"key": NAME_LABEL, "operator": "In", "values": callers}
        dns_to = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
        result.append(
            policy(
                "allow-dns",
                {"matchLabels": dict(part), "matchExpressions": [by_name]},
                ["Egress"],
                egress=[
                    {
                        "to": [dns_to],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            )
        )
    for server in sorted({e.server for e in links}):
        rules = []
        for port in sorted({e.port for e in links if e.server == server}):
            clients = sorted({e.client for e in links if e.server == server and e.port == port})
            rules.append(
                {
                    "from": [
                        {
                            "podSelector": {
                                "matchLabels": dict(part),
                                "matchExpressions": [
                                    {"key": NAME_LABEL, "operator": "In", "values": clients}
                                ],
                            }
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            )
        selector = {"matchLabels": labels(project, server)}
        result.append(policy(f"{server}-ingress", selector, ["Ingress"], ingress=rules))
    for client in sorted({e.client for e in links}):
        rules = [
            {
                "to": [{"podSelector": {"matchLabels": labels(project, e.server)}}],
                "ports": [{"protocol": "TCP", "port": e.port}],
            }
            for e in links
            if e.client == client
        ]
        selector = {"matchLabels": labels(project, client)}
        result.append(policy(f"{client}-egress", selector, ["Egress"], egress=rules))
    return result


def job_edges(links: Sequence[Edge]) -> list[Edge]:
    """The agent Job's edges: the supervisor's, less the tools service (a sidecar in the
    Job's pod, reached on localhost)."""
    return [
        Edge(JOB_NAME, e.server, e.port)
        for e in links
        if e.client == SUPERVISOR_SERVICE and e.server != TOOLS_SERVICE
    ]


def convert(project: Mapping[str, Any]) -> Stack:
    """Return the stack's Kubernetes objects (the Job is :func:`sandboxctl.kube.job.agent_job`)."""
    name = str(project.get("name") or "")
    if not name:
        raise ConvertError("the Compose project has no name (COMPOSE_PROJECT_NAME)")
    services: Mapping[str, Any] = project.get("services") or {}
    check_extra_hosts(project)
    links = edges(project)
    stack = Stack(project=name, edges=links)
    for service_name, spec in sorted(services.items()):
        ports = sorted({e.port for e in links if e.server == service_name})
        body, volumes = container(project, service_name, spec, ports)
        stack.deployments[service_name] = deployment(
            name, service_name, pod_spec([body], volumes, spec)
        )
        if ports:
            stack.services[service_name] = service(name, service_name, ports)
    for volume in sorted(project.get("volumes") or {}):
        stack.claims[volume] = claim(name, volume)
    for secret in sorted(project.get("secrets") or {}):
        stack.secrets[k8s_name(secret)] = secret
    stack.policies = network_policies(name, [*links, *job_edges(links)])
    return stack
