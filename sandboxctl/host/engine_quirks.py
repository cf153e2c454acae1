"""The engine's quirks on a host: probe it with a tiny container, read what a failure calls
for, and the containers.conf drop-in that fixes it.

The failures ENVIRONMENT.md lists: ``setrlimit`` (→ ``default_ulimits``) and ``cgroups in
hybrid mode`` (→ ``runtime = "runc"``). :func:`find_fixes` tries candidate fixes as per-run
flags first (``--ulimit``, ``--runtime``), so the diagnosis is the same whether or not the
drop-in is then written; :func:`wanted_dropin` and :func:`render_dropin` make the drop-in
(with the network backend's fix, :mod:`sandboxctl.host.network`), :func:`write_dropin`
writes it.
"""

from __future__ import annotations

import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxctl._proc import Result, Runner, quote
from sandboxctl.host.network import FIX_NETAVARK, NETWORK_BACKEND
from sandboxctl.host.prepare_context import PrepareContext, PrepareError

DEFAULT_ULIMITS: list[str] = ["nofile=8192:8192", "nproc=8192:8192"]

FIX_ULIMITS = "default_ulimits"
FIX_RUNC = "runtime_runc"

_ULIMIT_MARKERS = ("setrlimit", "error setting rlimit")
_HYBRID_MARKER = "cgroups in hybrid mode not supported"


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
