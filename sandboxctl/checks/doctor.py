"""Check every assumption the sandbox makes about its host, with a fix for each failure.

:func:`run_checks` returns one :class:`~sandboxctl.checks.base.Check` per topic;
:func:`render` prints them as one rich table; :func:`exit_code` is non-zero when a check
that blocks the stack failed; :func:`preflight` runs the few that ``up``, ``run`` and
``demo`` need first. Everything the checks look at (host facts, commands, the engine socket,
the files) comes through :class:`~sandboxctl.checks.base.Probes`, so each check is testable
on its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import MutableMapping
from pathlib import Path

from rich.console import Console
from rich.text import Text

from sandboxctl import _text
from sandboxctl._proc import CommandNotFound
from sandboxctl.checks.base import Check, CheckFn, Probes, run_all
from sandboxctl.checks.files import (
    check_chat_template,
    check_context,
    check_line_endings,
    check_model,
)
from sandboxctl.host import network
from sandboxctl.host import prepare as hostprep
from sandboxctl.host.engine import EngineError, image_exists
from sandboxctl.host.platform import Platform, detect_host
from sandboxctl.stack.compose import ComposeError, find_compose
from sandboxctl.stack.project import Stack

"""The doctor's inputs are the shared probe set (the name callers of :func:`preflight` use)."""


def check_config(probes: Probes) -> Check:
    """The answers in .env are present and valid."""
    settings = probes.answers()
    if settings is None:
        error = probes.facts.config_error or "cannot read the answers"
        return Check(
            "answers (.env)", "fail", error.splitlines()[0], "edit .env (see docs/HOST.md)"
        )
    return Check("answers (.env)", "ok", f"{settings.source}")


def check_platform(probes: Probes) -> Check:
    """WSL version (WSL 1 cannot run containers) and the platform."""
    host = probes.host
    if host.platform is Platform.WSL:
        if host.wsl_version == 1:
            return Check(
                "WSL",
                "fail",
                "WSL 1 cannot run Linux containers",
                "in PowerShell: wsl --set-version <distro> 2",
            )
        return Check(
            "WSL", "ok", "WSL 2: the engine is a Podman machine (or SANDBOX_ENGINE=native)"
        )
    return Check("WSL", "ok", f"not WSL ({host.platform.value})")


def check_engine(probes: Probes) -> Check:
    """The engine's API socket answers, and its version."""
    try:
        engine = probes.engine()
    except EngineError as error:
        return Check("engine", "fail", str(error), "invoke machine.init")
    sock = engine.socket_path
    if sock is None:
        return Check("engine", "warn", f"{engine.docker_host}: not a unix socket, not checked", "")
    if not probes.ping_fn(sock):
        fix = "invoke machine.start" if engine.kind != "explicit" else "check DOCKER_HOST"
        return Check(
            "engine", "fail", f"{engine.docker_host} does not answer ({engine.reason})", fix
        )
    version = probes.version_fn(sock) or {}
    name = "Podman" if "podman" in json.dumps(version).lower() else "engine"
    return Check(
        "engine",
        "ok",
        f"{name} {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) at "
        f"{engine.docker_host} ({engine.reason})",
    )


def check_compose(probes: Probes) -> Check:
    """Compose v2 is present, and its version."""
    try:
        compose = find_compose(probes.runner, packaged=probes.packaged_compose)
    except ComposeError as error:
        return Check("compose v2", "fail", str(error).split(":")[0], "invoke host.prepare")
    return Check(
        "compose v2", "ok", f"{compose.version} ({compose.kind}: {' '.join(compose.argv)})"
    )


def check_rootless(probes: Probes) -> Check:
    """Whether the engine runs rootful or rootless."""
    info = probes.podman_info()
    if info is None:
        return Check("rootful/rootless", "skip", "podman info unavailable", "invoke host.prepare")
    rootless = bool(info.get("host", {}).get("security", {}).get("rootless"))
    return Check("rootful/rootless", "ok", "rootless" if rootless else "rootful")


def check_rootless_setup(probes: Probes) -> Check:
    """What rootless Podman needs from a login session: runtime folder, tun, subids."""
    if probes.host.is_root:
        return Check("rootless setup", "ok", "root: rootful Podman needs none")
    found = probes.rootless_fn(probes.host)
    if not found:
        return Check(
            "rootless setup", "ok", "runtime folder, /dev/net/tun and subordinate ids in place"
        )
    fixable = all(problem.fix is not None for problem in found)
    fix = (
        "invoke host.prepare --yes"
        if fixable
        else "; ".join(problem.hint for problem in found if problem.fix is None)
    )
    return Check("rootless setup", "fail", "; ".join(problem.what for problem in found), fix)


def check_cgroups(probes: Probes) -> Check:
    """The memory and pids controllers the stack's limits need."""
    info = probes.podman_info()
    if info is None:
        return Check("cgroup limits", "skip", "podman info unavailable")
    host = info.get("host", {})
    controllers = set(host.get("cgroupControllers") or [])
    missing = {"memory", "pids"} - controllers
    detail = (
        f"cgroup {host.get('cgroupVersion', '?')}, controllers: "
        f"{', '.join(sorted(controllers)) or 'none'}"
    )
    rootless = bool(host.get("security", {}).get("rootless"))
    if missing and rootless and host.get("cgroupVersion") == "v1":
        # Podman runs the containers anyway ("Resource limits are not supported and ignored
        # on cgroups V1 rootless systems"): the stack works, without its limits.
        return Check(
            "cgroup limits",
            "warn",
            f"{detail}: rootless Podman on cgroup v1 ignores the stack's memory and pids limits",
            "run as root (sudo ./bootstrap.sh ...), or boot with cgroup v2 "
            "(systemd.unified_cgroup_hierarchy=1)",
        )
    if missing:
        return Check(
            "cgroup limits",
            "fail",
            f"{detail}; missing {', '.join(sorted(missing))}",
            "rootless on cgroup v2: delegate memory and pids to your user "
            "(systemd `Delegate=memory pids` for user@.service) or run rootful",
        )
    return Check("cgroup limits", "ok", detail)


def check_runtime(probes: Probes) -> Check:
    """A tiny container runs without extra flags (ulimit and hybrid-cgroup quirks)."""
    if probes.quick:
        return Check("runtime quirks", "skip", "--quick: no container run")
    try:
        probes.facts.image_present = image_exists(probes.runner, probes.probe_image)
        outcome = hostprep.find_fixes(
            probes.runner,
            probes.probe_image if probes.facts.image_present else None,
            rootless=not probes.host.is_root,
        )
    except CommandNotFound:
        return Check("runtime quirks", "fail", "podman not installed", "invoke host.prepare")
    if outcome.ok and not outcome.fixes:
        info = probes.facts.podman_info or {}
        runtime = (info.get("host", {}).get("ociRuntime") or {}).get("name", "?")
        return Check("runtime quirks", "ok", f"containers run (runtime {runtime})")
    if outcome.ok:
        return Check(
            "runtime quirks",
            "fail",
            f"containers need {', '.join(sorted(outcome.fixes))}",
            "invoke host.prepare --yes (writes the containers.conf drop-in)",
        )
    last = outcome.last.output.splitlines()[-1] if outcome.last and outcome.last.output else "?"
    return Check("runtime quirks", "fail", f"a tiny container fails: {last}", "see docs/HOST.md")


def check_network(probes: Probes) -> Check:
    """The network backend gives DNS between containers, and no stale CNI bridge is left."""
    info = probes.podman_info()
    if info is None:
        return Check("network backend", "fail", "podman info unavailable", "invoke host.prepare")
    backend = str(info.get("host", {}).get("networkBackend") or "?")
    fix = "invoke host.prepare --yes (switches to netavark and cleans up)"
    if backend != network.NETWORK_BACKEND:
        return Check(
            "network backend",
            "fail",
            f"{backend}: containers cannot resolve each other's names (model-server)",
            fix,
        )
    helpers = [Path(folder) for folder in probes.helper_dirs]
    if not any((folder / "aardvark-dns").is_file() for folder in helpers):
        return Check(
            "network backend",
            "fail",
            "netavark without aardvark-dns: no DNS between containers",
            "install aardvark-dns (listed in requirements/debian-packages.txt): "
            "invoke host.prepare --yes",
        )
    stale = network.cni_bridges(probes.sys_net)
    if stale:
        return Check(
            "network backend",
            "fail",
            f"netavark, but CNI's bridges {', '.join(stale)} still hold their subnets",
            fix,
        )
    served = _served_backend(probes)
    if served not in (None, network.NETWORK_BACKEND):
        return Check(
            "network backend",
            "fail",
            f"the Podman service still runs with {served} (started before the switch)",
            "invoke host.prepare --yes (restarts the service sandboxctl started), or "
            "systemctl restart podman.socket podman.service",
        )
    return Check("network backend", "ok", "netavark with aardvark-dns")


def _served_backend(probes: Probes) -> str | None:
    """The backend of the engine serving the API socket (None when it cannot be asked)."""
    try:
        socket = probes.engine().socket_path
    except EngineError:
        return None
    return probes.backend_fn(socket) if socket is not None else None


def check_init(probes: Probes) -> Check:
    """Containers start with ``--init`` (Compose's ``init: true`` needs Podman's init)."""
    if probes.quick:
        return Check("container init", "skip", "--quick: no container run")
    image = probes.probe_image if probes.facts.image_present else None
    try:
        result = probes.runner.run(
            hostprep.probe_argv(image, set(), init=True, rootless=not probes.host.is_root)
        )
    except CommandNotFound:
        return Check("container init", "fail", "podman not installed", "invoke host.prepare")
    if result.ok:
        return Check("container init", "ok", "containers start with --init")
    last = result.output.splitlines()[-1] if result.output else "?"
    return Check("container init", "fail", last, "invoke host.prepare --yes (installs catatonit)")


def check_dns(probes: Probes) -> Check:
    """Service names resolve between containers on a user network."""
    if probes.quick:
        return Check("DNS between containers", "skip", "--quick: no container run")
    # With no local image yet, the host's own files (read-only overlay) are the containers' root.
    root = (
        [probes.probe_image]
        if probes.facts.image_present
        else hostprep.probe_root(rootless=not probes.host.is_root)
    )
    suffix = uuid.uuid4().hex[:8]
    network, server = f"sandboxctl-doctor-{suffix}", f"doctor-dns-{suffix}"
    run = probes.runner.run
    try:
        made = run(["podman", "network", "create", network])
        if not made.ok:
            return Check(
                "DNS between containers", "fail", made.output, "check netavark/aardvark-dns"
            )
        started = run(
            [
                "podman",
                "run",
                "-d",
                "--rm",
                "--pull=never",
                "--network",
                network,
                "--name",
                server,
                *root,
                "sleep",
                "30",
            ]
        )
        if not started.ok:
            return Check("DNS between containers", "fail", started.output, "see docs/HOST.md")
        lookup = run(
            [
                "podman",
                "run",
                "--rm",
                "--pull=never",
                "--network",
                network,
                *root,
                "getent",
                "hosts",
                server,
            ]
        )
    finally:
        run(["podman", "rm", "-f", "-t", "0", server])
        run(["podman", "network", "rm", "-f", network])
    if lookup.ok and lookup.stdout.strip():
        return Check("DNS between containers", "ok", lookup.stdout.strip().splitlines()[0])
    return Check(
        "DNS between containers",
        "fail",
        f"{server} did not resolve: {lookup.output}",
        "install aardvark-dns (netavark backend) and check `podman info` networkBackend",
    )


def check_healthchecks(probes: Probes) -> Check:
    """Whether Podman runs healthchecks by itself (it needs systemd timers)."""
    engine = probes.known_engine()
    if engine is None:
        return Check("healthchecks", "skip", "engine unknown")
    if engine.quirks.healthchecks_run:
        return Check("healthchecks", "ok", "systemd present: Podman runs healthchecks")
    return Check(
        "healthchecks",
        "warn",
        "no systemd: healthchecks stay 'starting' (the stack does not depend on them)",
        "`podman healthcheck run NAME` runs one by hand",
    )


def check_selinux(probes: Probes) -> Check:
    """SELinux enforcing needs a volume label on bind mounts."""
    engine, settings = probes.known_engine(), probes.answers()
    enforcing = engine.quirks.selinux_enforcing if engine else probes.host.selinux_enforcing
    label = settings.volume_label if settings else ""
    if not enforcing:
        return Check("SELinux", "ok", "not enforcing")
    if label:
        return Check("SELinux", "ok", f"enforcing; VOLUME_LABEL={label}")
    return Check(
        "SELinux",
        "warn",
        "enforcing and VOLUME_LABEL is empty: bind mounts may be denied",
        "set VOLUME_LABEL=Z (private) or z (shared) in .env",
    )


CHECKS: tuple[CheckFn, ...] = (
    check_config,
    check_platform,
    check_engine,
    check_compose,
    check_rootless,
    check_rootless_setup,
    check_cgroups,
    check_runtime,
    check_init,
    check_network,
    check_dns,
    check_healthchecks,
    check_selinux,
    check_line_endings,
    check_model,
    check_context,
    check_chat_template,
)


def run_checks(probes: Probes) -> list[Check]:
    """Run every check in order; a check that crashes becomes a failed row, not a traceback."""
    return run_all(CHECKS, probes)


_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def render(checks: list[Check], console: Console | None = None) -> None:
    """Print the checks, one item each: the status, the check and its detail wrapped at
    word boundaries to the terminal's width, then the fix on a line of its own."""
    console = console or Console(width=_text.columns())
    console.print(Text("sandbox doctor", style="bold"), soft_wrap=True)
    for check in checks:
        lines = _text.labelled(check.status, f"{check.name}: {check.detail}", console.width, 6)
        if check.fix:
            lines += _text.labelled("", f"fix: {check.fix}", console.width, 6)
        first = Text(lines[0][:6], style=_STYLE[check.status]) + Text(lines[0][6:])
        console.print(first, soft_wrap=True)
        for line in lines[1:]:
            console.print(Text(line), soft_wrap=True)


PREFLIGHT: tuple[CheckFn, ...] = (
    check_rootless_setup,
    check_cgroups,
    check_runtime,
    check_init,
    check_network,
)
"""The checks ``up``, ``run`` and ``demo`` run before they start anything: each takes a
second or two and catches what would otherwise fail minutes later, or go unnoticed (limits
that the engine ignores)."""


def preflight(probes: Probes) -> list[Check]:
    """Run the :data:`PREFLIGHT` checks; return the ones that block the stack or warn
    (``Check.blocks`` tells them apart)."""
    return [check for check in run_all(PREFLIGHT, probes) if check.status in ("fail", "warn")]


def stack_preflight(stack: Stack, *, containers: bool = True) -> list[Check]:
    """Run :func:`preflight` against an opened stack's engine (its runner and answers);
    ``containers=False`` skips the checks that start a container. Returns the failures and
    the warnings."""
    probes = Probes(
        root=stack.root,
        host=detect_host(),
        runner=stack.runner,
        environ=stack.runner.environ(),
        settings=stack.settings,
        quick=not containers,
    )
    return preflight(probes)


WARNED_VAR = "SANDBOX_PREFLIGHT_WARNED"
"""The preflight warnings already shown, by check name: ``demo`` runs ``up`` and ``run`` as
child processes, which inherit it, so each warning is printed once per command."""


def unseen_warnings(found: list[Check], environ: MutableMapping[str, str]) -> list[Check]:
    """Return the warnings in ``found`` not yet shown, and record them in ``environ``."""
    seen = set(filter(None, environ.get(WARNED_VAR, "").split(",")))
    fresh = [check for check in found if check.status == "warn" and check.name not in seen]
    if fresh:
        environ[WARNED_VAR] = ",".join(sorted(seen | {check.name for check in fresh}))
    return fresh


def describe_failures(failed: list[Check]) -> str:
    """Say what blocks the stack and how to fix each, for a task's error message."""
    lines = [f"  {check.name}: {check.detail}\n    fix: {check.fix}" for check in failed]
    return "the host is not ready for the stack:\n" + "\n".join(lines)


def exit_code(checks: list[Check]) -> int:
    """Return 1 when a check blocks the stack, else 0."""
    return 1 if any(check.blocks for check in checks) else 0
