"""Check every assumption the sandbox makes about its host, with a fix for each failure.

:func:`run_checks` returns one :class:`Check` per topic; :func:`render` prints them as one
rich table; :func:`exit_code` is non-zero when a check that blocks the stack failed.
Everything the checks look at (host facts, commands, the engine socket, the files) is
injected through :class:`DoctorInputs`, so each check is testable on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from rich.console import Console
from rich.table import Table

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.config import ConfigError, Settings, load_settings
from sandboxctl.host import prepare as hostprep
from sandboxctl.host.engine import (
    Engine,
    EngineError,
    engine_version,
    image_exists,
    ping,
    resolve_engine,
)
from sandboxctl.host.platform import HostInfo, Platform
from sandboxctl.stack.compose import ComposeError, find_compose

Status = Literal["ok", "warn", "fail", "skip"]
MIN_CONTEXT_PER_SLOT = 2048
DEFAULT_CTX_SIZE = 4096
"""compose.yaml's default for MODEL_CTX_SIZE."""
SCRIPT_DIRS = ("model", "supervisor", ".devcontainer", "scripts", "docker", ".ci")
AARDVARK_DIRS = (
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
)
"""Where Podman looks for its helper binaries (containers.conf ``helper_binaries_dir``)."""
SKIP_DIRS = {".git", ".venv", ".nox", "node_modules", "__pycache__", ".mypy_cache", "build"}


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def blocks(self) -> bool:
        """True when this failure stops the stack from working."""
        return self.status == "fail"


@dataclass
class DoctorInputs:
    """What the checks look at; tests replace any part."""

    root: Path
    host: HostInfo
    runner: Runner = field(default_factory=Runner)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    quick: bool = False
    probe_image: str = hostprep.PROBE_IMAGE
    ping_fn: Callable[[Path], bool] = ping
    version_fn: Callable[[Path], dict[str, Any] | None] = engine_version
    packaged_compose: Path | bool | None = True
    sys_net: Path = hostprep.SYS_NET
    helper_dirs: tuple[str, ...] = AARDVARK_DIRS


@dataclass
class _State:
    settings: Settings | None = None
    engine: Engine | None = None
    reachable: bool = False
    info: dict[str, Any] | None = None
    image_present: bool = False


# --- individual checks ---------------------------------------------------------------------


def check_config(inputs: DoctorInputs, state: _State) -> Check:
    """The answers in .env are present and valid."""
    try:
        state.settings = load_settings(inputs.root, environ=inputs.environ)
    except ConfigError as error:
        state.settings = None
        return Check(
            "answers (.env)", "fail", str(error).splitlines()[0], "edit .env (see docs/HOST.md)"
        )
    return Check("answers (.env)", "ok", f"{state.settings.source}")


def check_platform(inputs: DoctorInputs, _state: _State) -> Check:
    """WSL version (WSL 1 cannot run containers) and the platform."""
    host = inputs.host
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


def check_engine(inputs: DoctorInputs, state: _State) -> Check:
    """The engine's API socket answers, and its version."""
    try:
        state.engine = resolve_engine(
            inputs.host, state.settings, environ=inputs.environ, runner=inputs.runner
        )
    except EngineError as error:
        return Check("engine", "fail", str(error), "invoke machine.init")
    engine = state.engine
    sock = engine.socket_path
    if sock is None:
        return Check("engine", "warn", f"{engine.docker_host}: not a unix socket, not checked", "")
    if not inputs.ping_fn(sock):
        fix = "invoke machine.start" if engine.kind != "explicit" else "check DOCKER_HOST"
        return Check(
            "engine", "fail", f"{engine.docker_host} does not answer ({engine.reason})", fix
        )
    state.reachable = True
    version = inputs.version_fn(sock) or {}
    name = "Podman" if "podman" in json.dumps(version).lower() else "engine"
    return Check(
        "engine",
        "ok",
        f"{name} {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) at "
        f"{engine.docker_host} ({engine.reason})",
    )


def check_compose(inputs: DoctorInputs, _state: _State) -> Check:
    """Compose v2 is present, and its version."""
    try:
        compose = find_compose(inputs.runner, packaged=inputs.packaged_compose)
    except ComposeError as error:
        return Check("compose v2", "fail", str(error).split(":")[0], "invoke host.prepare")
    return Check(
        "compose v2", "ok", f"{compose.version} ({compose.kind}: {' '.join(compose.argv)})"
    )


def _podman_info(inputs: DoctorInputs, state: _State) -> dict[str, Any] | None:
    if state.info is None:
        try:
            result = inputs.runner.run(["podman", "info", "--format", "json"])
        except CommandNotFound:
            return None
        if result.ok:
            try:
                state.info = json.loads(result.stdout)
            except json.JSONDecodeError:
                return None
    return state.info


def check_rootless(inputs: DoctorInputs, state: _State) -> Check:
    """Whether the engine runs rootful or rootless."""
    info = _podman_info(inputs, state)
    if info is None:
        return Check("rootful/rootless", "skip", "podman info unavailable", "invoke host.prepare")
    rootless = bool(info.get("host", {}).get("security", {}).get("rootless"))
    return Check("rootful/rootless", "ok", "rootless" if rootless else "rootful")


def check_cgroups(inputs: DoctorInputs, state: _State) -> Check:
    """The memory and pids controllers the stack's limits need."""
    info = _podman_info(inputs, state)
    if info is None:
        return Check("cgroup limits", "skip", "podman info unavailable")
    host = info.get("host", {})
    controllers = set(host.get("cgroupControllers") or [])
    missing = {"memory", "pids"} - controllers
    detail = (
        f"cgroup {host.get('cgroupVersion', '?')}, controllers: {', '.join(sorted(controllers))}"
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


def check_runtime(inputs: DoctorInputs, state: _State) -> Check:
    """A tiny container runs without extra flags (ulimit and hybrid-cgroup quirks)."""
    if inputs.quick:
        return Check("runtime quirks", "skip", "--quick: no container run")
    try:
        state.image_present = image_exists(inputs.runner, inputs.probe_image)
        outcome = hostprep.find_fixes(
            inputs.runner, inputs.probe_image if state.image_present else None
        )
    except CommandNotFound:
        return Check("runtime quirks", "fail", "podman not installed", "invoke host.prepare")
    if outcome.ok and not outcome.fixes:
        runtime = ((state.info or {}).get("host", {}).get("ociRuntime") or {}).get("name", "?")
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


def check_network(inputs: DoctorInputs, state: _State) -> Check:
    """The network backend gives DNS between containers, and no stale CNI bridge is left."""
    info = _podman_info(inputs, state)
    if info is None:
        return Check("network backend", "fail", "podman info unavailable", "invoke host.prepare")
    backend = str(info.get("host", {}).get("networkBackend") or "?")
    fix = "invoke host.prepare --yes (switches to netavark and cleans up)"
    if backend != hostprep.NETWORK_BACKEND:
        return Check(
            "network backend",
            "fail",
            f"{backend}: containers cannot resolve each other's names (model-server)",
            fix,
        )
    helpers = [Path(folder) for folder in inputs.helper_dirs]
    if not any((folder / "aardvark-dns").is_file() for folder in helpers):
        return Check(
            "network backend",
            "fail",
            "netavark without aardvark-dns: no DNS between containers",
            "install aardvark-dns (listed in requirements/debian-packages.txt): "
            "invoke host.prepare --yes",
        )
    stale = hostprep.cni_bridges(inputs.sys_net)
    if stale:
        return Check(
            "network backend",
            "fail",
            f"netavark, but CNI's bridges {', '.join(stale)} still hold their subnets",
            fix,
        )
    return Check("network backend", "ok", "netavark with aardvark-dns")


def check_init(inputs: DoctorInputs, state: _State) -> Check:
    """Containers start with ``--init`` (Compose's ``init: true`` needs Podman's init)."""
    if inputs.quick:
        return Check("container init", "skip", "--quick: no container run")
    image = inputs.probe_image if state.image_present else None
    try:
        result = inputs.runner.run(hostprep.probe_argv(image, set(), init=True))
    except CommandNotFound:
        return Check("container init", "fail", "podman not installed", "invoke host.prepare")
    if result.ok:
        return Check("container init", "ok", "containers start with --init")
    last = result.output.splitlines()[-1] if result.output else "?"
    return Check("container init", "fail", last, "invoke host.prepare --yes (installs catatonit)")


def check_dns(inputs: DoctorInputs, state: _State) -> Check:
    """Service names resolve between containers on a user network."""
    if inputs.quick:
        return Check("DNS between containers", "skip", "--quick: no container run")
    # With no local image yet, the host's root (read-only overlay) is the containers' root.
    root = [inputs.probe_image] if state.image_present else ["--rootfs", "/:O"]
    suffix = uuid.uuid4().hex[:8]
    network, server = f"sandboxctl-doctor-{suffix}", f"doctor-dns-{suffix}"
    run = inputs.runner.run
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


def check_healthchecks(_inputs: DoctorInputs, state: _State) -> Check:
    """Whether Podman runs healthchecks by itself (it needs systemd timers)."""
    if state.engine is None:
        return Check("healthchecks", "skip", "engine unknown")
    if state.engine.quirks.healthchecks_run:
        return Check("healthchecks", "ok", "systemd present: Podman runs healthchecks")
    return Check(
        "healthchecks",
        "warn",
        "no systemd: healthchecks stay 'starting' (the stack does not depend on them)",
        "`podman healthcheck run NAME` runs one by hand",
    )


def check_selinux(inputs: DoctorInputs, state: _State) -> Check:
    """SELinux enforcing needs a volume label on bind mounts."""
    enforcing = (
        state.engine.quirks.selinux_enforcing if state.engine else inputs.host.selinux_enforcing
    )
    label = state.settings.volume_label if state.settings else ""
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


def iter_scripts(root: Path, dirs: Iterable[str] = SCRIPT_DIRS) -> Iterable[Path]:
    """Yield the repository's shell scripts: ``*.sh`` anywhere, and files with a shebang in
    the folders containers run scripts from."""
    for path in root.rglob("*.sh"):
        if not SKIP_DIRS.intersection(path.relative_to(root).parts) and path.is_file():
            yield path
    for name in dirs:
        folder = root / name
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if (
                path.is_file()
                and path.suffix != ".sh"
                and not SKIP_DIRS.intersection(path.relative_to(root).parts)
            ):
                with path.open("rb") as handle:
                    if handle.read(2) == b"#!":
                        yield path


def crlf_scripts(root: Path) -> list[Path]:
    """Return the scripts under ``root`` with CRLF line endings."""
    return sorted({path for path in iter_scripts(root) if b"\r\n" in path.read_bytes()})


def check_line_endings(inputs: DoctorInputs, _state: _State) -> Check:
    """Shell scripts use LF (CRLF breaks their shebang inside Linux containers)."""
    bad = crlf_scripts(inputs.root)
    if not bad:
        return Check("script line endings", "ok", "LF everywhere")
    shown = ", ".join(str(path.relative_to(inputs.root)) for path in bad[:5])
    return Check(
        "script line endings",
        "fail",
        f"CRLF in {shown}",
        "git config core.autocrlf input; sed -i 's/\\r$//' FILE; "
        "`*.sh text eol=lf` in .gitattributes",
    )


def model_entry(root: Path, key: str) -> dict[str, Any] | None:
    """Return the catalog entry ``key`` as a dict (through sandboxctl.models.catalog when it can
    load the catalog, else read straight from model/catalog.yaml); None when absent."""
    path = root / "model" / "catalog.yaml"
    if not path.is_file():
        return None
    try:
        from sandboxctl.models import catalog

        model = catalog.load_catalog(path).models.get(key)
        if model is None:
            return None
        fields = ("file", "sha256", "generated", "context")
        return {name: getattr(model, name, None) for name in fields}
    except Exception:  # noqa: S110 - a missing or different catalog module: read the YAML
        pass
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    models = data.get("models", {}) if isinstance(data, dict) else {}
    entry = models.get(key) if isinstance(models, dict) else None
    return dict(entry) if isinstance(entry, dict) else None


def model_directory(inputs: DoctorInputs) -> Path:
    """Return the model-data directory: ``$SANDBOX_MODEL_DIR``, else ``models/``."""
    configured = inputs.environ.get("SANDBOX_MODEL_DIR")
    return Path(configured).expanduser() if configured else inputs.root / "models"


def check_model(inputs: DoctorInputs, state: _State) -> Check:
    """The model file is in the model-data directory and matches its catalog checksum."""
    key = state.settings.sandbox_model if state.settings else "tiny"
    entry = model_entry(inputs.root, key)
    if entry is None:
        return Check("model file", "skip", f"no catalog entry {key!r} (model/catalog.yaml)")
    filename = str(entry.get("file") or f"{key}.gguf")
    path = model_directory(inputs) / Path(filename).name
    if not path.is_file():
        fix = "invoke model.tiny" if entry.get("generated") else f"invoke model.fetch {key}"
        return Check("model file", "fail", f"{path} missing", fix)
    expected = str(entry.get("sha256") or "").lower()
    if not expected:
        return Check("model file", "ok", f"{path.name} present (no checksum in the catalog)")
    if inputs.quick:
        return Check("model file", "ok", f"{path.name} present (--quick: checksum not verified)")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        return Check(
            "model file", "fail", f"{path.name}: SHA-256 mismatch", f"invoke model.fetch {key}"
        )
    return Check("model file", "ok", f"{path.name} present, SHA-256 verified")


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def check_context(inputs: DoctorInputs, state: _State) -> Check:
    """Context per parallel slot (MODEL_CTX_SIZE / MODEL_PARALLEL, as compose.yaml passes them
    to llama-server) against the catalog's recommended per-slot context."""
    raw = state.settings.raw if state.settings else {}
    ctx = _int(raw.get("MODEL_CTX_SIZE"), DEFAULT_CTX_SIZE)
    slots = max(_int(raw.get("MODEL_PARALLEL"), 1), 1)
    per_slot = ctx // slots
    key = state.settings.sandbox_model if state.settings else "tiny"
    entry = model_entry(inputs.root, key) or {}
    wanted = _int(entry.get("context"), MIN_CONTEXT_PER_SLOT)
    detail = f"{ctx} tokens / {slots} slot(s) = {per_slot} per slot"
    if per_slot < wanted:
        return Check(
            "context per slot",
            "warn",
            f"{detail}; {key} recommends {wanted}",
            f"set MODEL_CTX_SIZE={wanted * slots} or lower MODEL_PARALLEL in .env",
        )
    return Check("context per slot", "ok", f"{detail} (recommended {wanted})")


CHECKS: tuple[Callable[[DoctorInputs, _State], Check], ...] = (
    check_config,
    check_platform,
    check_engine,
    check_compose,
    check_rootless,
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
)


def run_checks(inputs: DoctorInputs) -> list[Check]:
    """Run every check in order; a check that crashes becomes a failed row, not a traceback."""
    state = _State()
    results = []
    for check in CHECKS:
        try:
            results.append(check(inputs, state))
        except Exception as error:  # the doctor reports, it never crashes
            name = (check.__doc__ or check.__name__).splitlines()[0]
            results.append(Check(check.__name__.removeprefix("check_"), "fail", f"{name}: {error}"))
    return results


_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def render(checks: list[Check], console: Console | None = None) -> None:
    """Print the checks as one table."""
    table = Table(title="sandbox doctor", show_lines=False)
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(
            check.name, f"[{_STYLE[check.status]}]{check.status}[/]", check.detail, check.fix
        )
    (console or Console()).print(table)


PREFLIGHT: tuple[Callable[[DoctorInputs, _State], Check], ...] = (
    check_runtime,
    check_init,
    check_network,
)
"""The checks ``up``, ``run`` and ``demo`` run before they start anything: each takes a
second or two and catches what would otherwise fail minutes later."""


def preflight(inputs: DoctorInputs) -> list[Check]:
    """Run the :data:`PREFLIGHT` checks; return the ones that block the stack."""
    state = _State()
    failed = []
    for check in PREFLIGHT:
        try:
            result = check(inputs, state)
        except Exception as error:  # reported like run_checks does, never a traceback
            result = Check(check.__name__.removeprefix("check_"), "fail", str(error))
        if result.blocks:
            failed.append(result)
    return failed


def exit_code(checks: list[Check]) -> int:
    """Return 1 when a check blocks the stack, else 0."""
    return 1 if any(check.blocks for check in checks) else 0
