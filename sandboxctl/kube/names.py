"""The names the Kubernetes manifests share, and how their pods find each other.

The Compose services the converter knows by role, the labels of every object, Kubernetes
names for Compose names, the caller -> callee edges found in the services' environment
(``http://tools:8700``), and the Services' link variables through which a pod with no
resolver reaches them (``$(TOOLS_SERVICE_HOST)``, expanded by the kubelet).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandboxctl.errors import SandboxError

Obj = dict[str, Any]

MODEL_SERVICE = "model-server"
SUPERVISOR_SERVICE = "supervisor"
TOOLS_SERVICE = "tools"
EGRESS_SERVICE = "egress"
"""The opt-in egress proxy (compose.egress.yaml): the one pod with a way out, to the
ports of its ``EGRESS_ALLOW``."""
JOB_NAME = "agent-tasks"
"""The agent Job, its pods' ``app.kubernetes.io/name`` and its task ConfigMap."""
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
_URL = re.compile(r"\bhttps?://([a-z0-9][a-z0-9-]*):(\d+)")
_URL_HOST = re.compile(r"\b(https?://)([a-z0-9][a-z0-9-]*)(:\d+)")
_LINK = re.compile(r"\$\(([A-Z0-9_]+)_SERVICE_HOST\)")


class ConvertError(SandboxError, ValueError):
    """The Compose model holds something this converter cannot express faithfully."""


@dataclass(frozen=True, order=True)
class Edge:
    """``client`` calls ``server`` on ``port`` (found in the client's environment)."""

    client: str
    server: str
    port: int


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


def job_edges(links: Sequence[Edge]) -> list[Edge]:
    """The agent Job's edges: the supervisor's, less the tools service (a sidecar in the
    Job's pod, reached on localhost)."""
    return [
        Edge(JOB_NAME, e.server, e.port)
        for e in links
        if e.client == SUPERVISOR_SERVICE and e.server != TOOLS_SERVICE
    ]


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
