"""The engine's network backend: CNI gives no DNS between containers without a plugin,
so a CNI host is switched to netavark, and the bridges CNI leaves behind (which keep the
subnets netavark hands out again) are removed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.host.engine import native_socket, service_network_backend
from sandboxctl.host.platform import detect_host
from sandboxctl.host.service import (
    default_state_dir,
    is_our_service,
    read_state,
    state_file,
    stop_service,
)

if TYPE_CHECKING:
    from sandboxctl.host.prepare_context import PrepareContext, PrepareReport

NETWORK_BACKEND = "netavark"
FIX_NETAVARK = "network_backend"
CNI_BRIDGE = "cni-podman0"
"""CNI's default network bridge (10.88.0.1/16); its user networks get ``cni-podman1``..."""
CNI_BRIDGE_PATTERN = re.compile(r"cni-podman\d+")
SYS_NET = Path("/sys/class/net")


def podman_info(runner: Runner) -> dict[str, Any] | None:
    """Return ``podman info`` as a dict, or None when it fails."""
    try:
        result = runner.run(["podman", "info", "--format", "json"])
    except CommandNotFound:
        return None
    if not result.ok:
        return None
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class NetworkFacts:
    """What the engine's networking looks like: the backend, and what a switch touches."""

    backend: str
    """``netavark``, ``cni``, or empty when ``podman info`` failed."""
    containers: tuple[str, ...] = ()
    bridges: tuple[str, ...] = ()
    """CNI's bridges that exist (``cni-podmanN``): netavark never uses them, and they keep
    the subnets (10.88.0.0/16, 10.89.N.0/24) that netavark hands out again."""


def network_facts(runner: Runner, sys_net: Path = SYS_NET) -> NetworkFacts:
    """Read the network backend, the existing containers and whether CNI's bridge is up."""
    info = podman_info(runner) or {}
    backend = str(info.get("host", {}).get("networkBackend") or "")
    listed = runner.run(["podman", "ps", "--all", "--format", "{{.Names}}"])
    containers = tuple(listed.stdout.split()) if listed.ok else ()
    return NetworkFacts(backend, containers, cni_bridges(sys_net))


def cni_bridges(sys_net: Path = SYS_NET) -> tuple[str, ...]:
    """Return the names of the CNI bridges (``cni-podmanN``) in ``sys_net``, sorted."""
    try:
        names = [path.name for path in sys_net.iterdir()]
    except OSError:
        return ()
    return tuple(sorted(name for name in names if CNI_BRIDGE_PATTERN.fullmatch(name)))


def bridge_removal_argv(bridge: str, is_root: bool) -> list[str]:
    """Return the command that deletes one of CNI's stale bridges (sudo when not root)."""
    argv = ["ip", "link", "delete", bridge]
    return argv if is_root else ["sudo", *argv]


def network_fixes(ctx: PrepareContext, report: PrepareReport, verb: str) -> set[str]:
    """Return the drop-in fix a CNI host needs (none on netavark), naming what it touches."""
    facts = network_facts(ctx.runner, ctx.sys_net)
    if facts.backend in ("", NETWORK_BACKEND):
        report.add(f"ok: network backend {facts.backend or 'unknown (podman info failed)'}")
        return set()
    report.add(
        f"network backend {facts.backend}: containers cannot resolve each other's names; "
        f"{verb} switch to {NETWORK_BACKEND}"
    )
    if facts.containers:
        shown = ", ".join(facts.containers[:8]) + (" ..." if len(facts.containers) > 8 else "")
        report.add(
            f"warn: {len(facts.containers)} container(s) created under {facts.backend} must be "
            f"recreated after the switch (in a sandbox: `invoke down`, then `invoke up`): {shown}"
        )
    return {FIX_NETAVARK}


def stale_bridge_commands(
    runner: Runner, sys_net: Path, is_root: bool, *, dry_run: bool
) -> list[list[str]]:
    """Return the commands that delete CNI's bridges once the backend is netavark (while
    CNI still owns them, none; in a dry run, the ones a real run would need)."""
    bridges = cni_bridges(sys_net)
    if not bridges:
        return []
    if not dry_run and network_facts(runner, sys_net).backend != NETWORK_BACKEND:
        return []
    return [bridge_removal_argv(bridge, is_root) for bridge in bridges]


def restart_stale_service(ctx: PrepareContext, report: PrepareReport, *, dry_run: bool) -> None:
    """A ``podman system service`` started before the switch keeps serving with CNI (and
    keeps creating CNI bridges for Compose's networks). Stop it when sandboxctl started it
    (the next task starts it again, on netavark); otherwise say how to restart it."""
    socket = ctx.service_socket or native_socket(detect_host())
    backend = service_network_backend(socket)
    if backend in (None, NETWORK_BACKEND):
        return
    state = read_state(state_file(default_state_dir(), socket))
    ours = state is not None and is_our_service(state)
    if dry_run:
        what = "stop it (it starts again at the next task)" if ours else "ask you to restart it"
        report.add(f"the Podman service on {socket} still uses {backend}: would {what}")
        return
    if ours:
        report.add(f"the Podman service on {socket} still used {backend}: {stop_service(socket)}")
        report.add("done: it starts again, on netavark, at the next `invoke up`")
        report.changed = True
        return
    problem = (
        f"the Podman service on {socket} still uses {backend} (started before the switch): "
        "restart it (systemd: systemctl restart podman.socket podman.service)"
    )
    report.blocking.append(problem)
    report.add(f"fail: {problem}")
