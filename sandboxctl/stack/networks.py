"""Create the stack's networks without the engine's resolver, before Compose does.

Compose creates networks through Podman's Docker-compatible API, which gives every network
the engine's DNS (aardvark-dns), and aardvark-dns 1.4 (Podman 4.3) forwards every name
outside the stack to the host's resolvers: a DNS query written by hand from a container
leaves the sandbox (DEV-0008). ``podman network create --disable-dns`` makes a network
with none, and an internal network with none has no gateway either, so its containers
cannot reach the host at all (DEV-0004).

So each network that compose.yaml labels ``io.ai-sandbox.resolver: none`` is created here,
with Compose's own labels and the subnet compose.yaml gives it; Compose then finds and
uses it (``compose down`` removes it as its own). The services find each other at fixed
addresses written into /etc/hosts (``extra_hosts``), never by DNS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandboxctl.stack.project import Stack, StackError

RESOLVER_LABEL = "io.ai-sandbox.resolver"
"""The network label that asks for a network with no resolver (value ``none``)."""


@dataclass(frozen=True)
class NetworkSpec:
    """One network the stack creates itself, as ``compose config`` resolves it."""

    key: str
    """Its name in compose.yaml (``tools-net``)."""
    name: str
    """The engine's name (``PROJECT_tools-net``)."""
    internal: bool
    subnet: str = ""
    ip_range: str = ""
    labels: tuple[tuple[str, str], ...] = ()


def wanted_networks(config: Mapping[str, Any], project: str) -> list[NetworkSpec]:
    """Return the networks of the resolved Compose model (``compose config --format
    json``) labelled to have no resolver, with Compose's labels for ``project``."""
    specs = []
    for key, network in sorted((config.get("networks") or {}).items()):
        network = network or {}
        labels = {str(k): str(v) for k, v in (network.get("labels") or {}).items()}
        if labels.get(RESOLVER_LABEL) != "none" or network.get("external"):
            continue
        pools = (network.get("ipam") or {}).get("config") or [{}]
        labels |= {"com.docker.compose.project": project, "com.docker.compose.network": key}
        specs.append(
            NetworkSpec(
                key=key,
                name=str(network.get("name") or f"{project}_{key}"),
                internal=bool(network.get("internal")),
                subnet=str(pools[0].get("subnet") or ""),
                ip_range=str(pools[0].get("ip_range") or ""),
                labels=tuple(sorted(labels.items())),
            )
        )
    return specs


def create_argv(spec: NetworkSpec) -> list[str]:
    """The ``podman`` arguments that create ``spec``'s network with no resolver."""
    argv = ["network", "create", "--disable-dns"]
    if spec.internal:
        argv.append("--internal")
    if spec.subnet:
        argv += ["--subnet", spec.subnet]
    if spec.ip_range:
        argv += ["--ip-range", spec.ip_range]
    for key, value in spec.labels:
        argv += ["--label", f"{key}={value}"]
    return [*argv, spec.name]


def differences(spec: NetworkSpec, inspected: Mapping[str, Any]) -> list[str]:
    """What an existing network (``podman network inspect``, one entry) lacks of ``spec``."""
    found = []
    if inspected.get("dns_enabled"):
        found.append("it has the engine's resolver")
    if bool(inspected.get("internal")) != spec.internal:
        found.append("internal" if spec.internal else "not internal")
    subnets = [str(s.get("subnet")) for s in inspected.get("subnets") or []]
    if spec.subnet and spec.subnet not in subnets:
        found.append(f"its subnet is {', '.join(subnets) or 'unknown'}, not {spec.subnet}")
    return found


def ensure_networks(stack: Stack, config: Mapping[str, Any]) -> list[str]:
    """Create the stack's resolver-less networks that are missing, and make again those
    that differ and hold no container; return the names created.

    Raises :class:`StackError` when one differs and containers hold it (a plain
    ``compose up`` made it): ``invoke down`` then ``invoke up`` makes it again."""
    created = []
    for spec in wanted_networks(config, stack.project):
        found = stack.podman("network", "inspect", spec.name)
        if found.ok:
            entries = json.loads(found.stdout or "[]")
            wrong = differences(spec, entries[0] if entries else {})
            if not wrong:
                continue
            users = stack.podman("ps", "-aq", "--filter", f"network={spec.name}")
            if users.stdout.strip():
                raise StackError(
                    f"network {spec.name}: {'; '.join(wrong)} (it was made without "
                    "`invoke up`, or by an older sandbox): run `invoke down`, then "
                    "`invoke up` makes it again"
                )
            stack.require(stack.podman("network", "rm", spec.name), f"network rm {spec.name}")
        made = stack.podman(*create_argv(spec))
        if not made.ok and "already used" in made.output:
            raise StackError(
                f"network {spec.name}: subnet {spec.subnet} is taken by another network "
                f"({made.output.splitlines()[-1]}): give this sandbox another "
                "SANDBOX_NET_PREFIX in .env (three numbers, such as 10.90.25)"
            )
        stack.require(made, f"network create {spec.name}")
        created.append(spec.name)
    if created:
        stack.log(f"created {', '.join(created)} without a resolver")
    return created
