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
  on one network (:mod:`sandboxctl.kube.policies`); a pod with no resolver calls by the
  Service's link variable (:mod:`sandboxctl.kube.names`);
- named volumes become PersistentVolumeClaims, compose secrets become Secrets generated
  from the sandbox's secret files (``secretGenerator``, never values in YAML).

What has no Kubernetes field or use (``pids_limit``, ``init``, ``restart: "no"``,
``sysctls``) is listed in
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

from sandboxctl.kube.names import (
    EGRESS_SERVICE,
    JOB_NAME,
    MODEL_SERVICE,
    NAME_LABEL,
    PART_OF_LABEL,
    SUPERVISOR_SERVICE,
    TOOLS_SERVICE,
    ConvertError,
    Edge,
    Obj,
    check_extra_hosts,
    edges,
    job_edges,
    k8s_name,
    labels,
    linked,
    service_link,
    uses_service_links,
)
from sandboxctl.kube.policies import network_policies, outside_ports

__all__ = [
    "EGRESS_SERVICE", "JOB_NAME", "MODEL_SERVICE", "NAME_LABEL", "PART_OF_LABEL",
    "SUPERVISOR_SERVICE", "TOOLS_SERVICE", "ConvertError", "Edge", "Obj", "Stack",
    "check_extra_hosts", "container", "convert", "edges", "job_edges", "k8s_name", "labels",
    "linked", "network_policies", "outside_ports", "pod_spec", "service_link",
    "uses_service_links",
]  # fmt: skip

TASKS_FILE = "tasks.json"
TASKS_DIR = "/etc/agent-tasks"
SECRETS_DIR = "/run/secrets"
DEFAULT_VOLUME_SIZE = "1Gi"
VOLUME_SIZES = {"model-data": "20Gi", "workspace": "5Gi", "logs": "1Gi"}
"""Storage requested by each PersistentVolumeClaim (Compose volumes have no size):
patch them in an overlay for bigger models or longer runs."""

NOT_EXPRESSIBLE = {
    "pids_limit": "no per-container field; set the kubelet's podPidsLimit on the nodes",
    "init": "no per-container field; the runtime's pause process and the images' own "
    "signal handling stand in",
    "restart": 'Deployments always restart their pods; Compose\'s "no" has no equivalent',
    "sysctls": "the supervisor's ARP timing, for peers that come back at a fixed address with "
    "a new MAC address; a cluster's callers reach Services, and net.ipv4.neigh is an unsafe "
    "sysctl there",
}
"""Compose settings of the stack that no Kubernetes object field expresses, and why."""

# Compose keys a service may carry and where each one goes; any other key is an error.
_HANDLED = {
    "image", "build", "user", "command", "entrypoint", "environment", "secrets",
    "volumes", "tmpfs", "networks", "mem_limit", "pids_limit", "healthcheck", "cap_drop",
    "security_opt", "read_only", "init", "pull_policy", "restart", "devices", "ports",
    "expose", "dns", "extra_hosts", "sysctls",
}  # fmt: skip
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


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
    # A service with no resolver (Compose's `dns: 127.0.0.1`) finds the others as Compose
    # gives them (extra_hosts, at fixed addresses): on a cluster, by the Services' link
    # variables, which the kubelet expands; the names stay for the pods that resolve.
    services = (project.get("services") or {}) if spec.get("dns") else {}
    body["env"] = [
        {"name": key, "value": linked("" if value is None else str(value), services)}
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
    """The hardened pod around ``containers``: no service account token, the pod-level
    securityContext of the service ``spec``, and its resolvers: a service with ``dns``
    (Compose's "no resolver", ``127.0.0.1``) gets exactly those (``dnsPolicy: None``),
    never the cluster's, which forwards outside names upstream. Service links (the
    ``*_SERVICE_HOST`` variables) only where a container's environment refers to them."""
    pod: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": uses_service_links(containers),
        "securityContext": _pod_security(spec),
        "containers": containers,
        "volumes": volumes,
    }
    if spec.get("dns"):
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
    outside = outside_ports(project)
    callers = {e.client for e in links} | set(outside)
    resolvers = sorted(c for c in callers if c in services and not services[c].get("dns"))
    stack.policies = network_policies(
        name, [*links, *job_edges(links)], resolvers=resolvers, outside=outside
    )
    return stack
