"""The NetworkPolicies of the stack: deny everything, then allow exactly the Compose paths.

Each caller -> callee edge on its port, DNS for the pods that keep the cluster's resolver
(only the egress proxy: the cluster's resolver forwards outside names upstream), and the
egress proxy out to any address on its allowlist's ports: NetworkPolicies filter
addresses and ports, the proxy holds the pod to the allowed names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sandboxctl.egress import EgressError, parse_allow
from sandboxctl.kube.names import (
    EGRESS_SERVICE,
    NAME_LABEL,
    PART_OF_LABEL,
    ConvertError,
    Edge,
    Obj,
    k8s_name,
    labels,
)


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
