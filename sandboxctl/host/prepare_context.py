"""What host preparation (:mod:`sandboxctl.host.prepare`) acts on, what it reports, and
its one error: the types its steps share (packages, engine quirks, network backend)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandboxctl._proc import Runner
from sandboxctl.errors import SandboxError
from sandboxctl.host import rootless
from sandboxctl.host.network import SYS_NET

DROPIN = Path("/etc/containers/containers.conf.d/50-ai-sandbox.conf")
"""The containers.conf drop-in that host preparation writes the engine's fixes to."""
PROBE_IMAGE = "localhost/ai-sandbox-base:bookworm"
"""The image a probe container runs when it exists (else the host's own files)."""


class PrepareError(SandboxError, RuntimeError):
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
