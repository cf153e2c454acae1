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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from sandboxctl.egress import EgressError, parse_allow

Obj = dict[str, Any]

MODEL_SERVICE = "model-server"
SUPERVISOR_SERVICE = "supervisor"
TOOLS_SERVICE = "tools"
EGRESS_SERVICE = "egress"
"""The opt-in egress proxy (compose.egress.yaml): the one pod with a way out, to the
ports of its ``EGRESS_ALLOW``."""
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
_URL_HOST = re.compile(r"\b(https?://)([a-z0-9][a-z0-9-]*)(:\d+)")
_LINK = re.compile(r"\$\(([A-Z0-9_]+)_SERVICE_HOST\)")
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


def service_link(name: str) -> str:
    """The reference to Service ``name``'s address that a pod with service links has
    expanded by the kubelet (``model-server`` -> ``$(MODEL_SERVER_SERVICE_HOST)``)."""
    return f"$({k8s_name(name).upper().replace('-', '_')}_SERVICE_HOST)"


def linked(value: str, services: Iterable[str]) -> str:
    """``value`` with each URL to a service of ``services`` pointing at the Service's
    address by its link variable instead of its name (no resolver needed)."""
    names = set(services)

    def swap(match: re.Match[str]) -> str:
        scheme, host, port = match.groups()
        return f"{scheme}{service_link(host)}{port}" if host in names else match.group(0)

    return _URL_HOST.sub(swap, value)


def uses_service_links(containers: Iterable[Obj]) -> bool:
    """Tell whether a container's environment refers to a Service's link variable."""
    return any(
        _LINK.search(str(entry.get("value", "")))
        for box in containers
        for entry in box.get("env", [])
    )


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


def network_policies(
    project: str,
    links: Sequence[Edge],
    *,
    resolvers: Sequence[str] = (),
    outside: Mapping[str, Sequence[int]] | None = None,
) -> list[Obj]:
    """Deny all traffic, then allow DNS to the ``resolvers`` (the pods that keep the
    cluster's resolver, which forwards other names upstream, so no other pod may ask it),
    each caller -> callee edge on its port, and each pod of ``outside`` out to any address
    on its ports (the egress proxy, to its allowed names' ports)."""
    part = {PART_OF_LABEL: k8s_name(project)}

    def policy(name: str, selector: Obj, kinds: list[str], **rules: Any) -> Obj:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "labels": dict(part)},
            "spec": {"podSelector": selector, "policyTypes": kinds, **rules},
        }

    result = [policy("default-deny", {}, ["Ingress", "Egress"])]
    if resolvers:
        by_name = {"key": NAME_LABEL, "operator": "In", "values": sorted(resolvers)}
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
    for name, ports in sorted((outside or {}).items()):
        rule = {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
            "ports": [{"protocol": "TCP", "port": port} for port in sorted(set(ports))],
        }
        selector = {"matchLabels": labels(project, name)}
        result.append(policy(f"{name}-outside", selector, ["Egress"], egress=[rule]))
    return result


def outside_ports(project: Mapping[str, Any]) -> dict[str, list[int]]:
    """The services on a network that is not internal, with the ports they may reach out
    to: only the egress proxy, on the ports of its ``EGRESS_ALLOW``. Raises
    :class:`ConvertError` for any other service with a route out."""
    internal = {
        key for key, network in (project.get("networks") or {}).items()
        if (network or {}).get("internal")
    }  # fmt: skip
    found: dict[str, list[int]] = {}
    for name, spec in sorted((project.get("services") or {}).items()):
        routes_out = sorted(set(spec.get("networks") or {}) - internal)
        if not routes_out:
            continue
        if name != EGRESS_SERVICE:
            raise ConvertError(
                f"service {name} joins {', '.join(routes_out)}, a network with a route out: "
                "only the egress proxy has one on a cluster"
            )
        try:
            allowed = parse_allow(str((spec.get("environment") or {}).get("EGRESS_ALLOW", "")))
        except EgressError as error:
            raise ConvertError(str(error)) from error
        found[name] = sorted({port for entry in allowed for port in entry.ports})
    return found


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
    outside = outside_ports(project)
    callers = {e.client for e in links} | set(outside)
    resolvers = sorted(c for c in callers if c in services and not services[c].get("dns"))
    stack.policies = network_policies(
        name, [*links, *job_edges(links)], resolvers=resolvers, outside=outside
    )
    return stack
