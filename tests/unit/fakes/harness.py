"""Put the fake tools of ``bin/`` on a ``PATH`` of their own, and read what they were asked.

``FakeTools.create(tmp_path)`` makes a ``PATH`` holding the chosen fakes plus a handful of
real system tools they need (python3, env, tar, rm, install, sh) and nothing else, so a
real ``podman`` or ``docker`` on the machine can never answer in their place.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxctl._proc import Runner

FAKES_BIN = Path(__file__).resolve().parent / "bin"
ALL_FAKES = ("podman", "docker", "apt-get", "dpkg-query", "sudo", "debootstrap", "ip")
SYSTEM_TOOLS = ("env", "tar", "rm", "install", "sh", "true")


@dataclass
class FakeTools:
    """A private ``PATH`` with fake tools, their shared state and their call log."""

    bin_dir: Path
    state_path: Path
    log_path: Path

    @classmethod
    def create(
        cls,
        tmp_path: Path,
        tools: Iterable[str] = ALL_FAKES,
        state: dict[str, Any] | None = None,
    ) -> FakeTools:
        """Make the ``PATH`` folder with ``tools`` linked in, and the initial ``state``."""
        bin_dir = tmp_path / "fakebin"
        bin_dir.mkdir()
        for tool in tools:
            (bin_dir / tool).symlink_to(FAKES_BIN / tool)
        (bin_dir / "python3").symlink_to(sys.executable)
        for tool in SYSTEM_TOOLS:
            real = shutil.which(tool)
            if real and not (bin_dir / tool).exists():
                (bin_dir / tool).symlink_to(real)
        fakes = cls(bin_dir, tmp_path / "fake-state.json", tmp_path / "fake-calls.jsonl")
        fakes.state_path.write_text(json.dumps(state or {}))
        fakes.log_path.write_text("")
        return fakes

    @property
    def env(self) -> dict[str, str]:
        """The environment a command run against the fakes gets."""
        return {
            "PATH": str(self.bin_dir),
            "FAKE_STATE": str(self.state_path),
            "FAKE_LOG": str(self.log_path),
            "HOME": str(self.state_path.parent),
            "LC_ALL": "C.UTF-8",
        }

    def runner(self) -> Runner:
        """A Runner whose commands see only this ``PATH``."""
        return Runner(env=self.env)

    @property
    def state(self) -> dict[str, Any]:
        """The fakes' current state."""
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def update(self, **values: Any) -> None:
        """Change the fakes' state."""
        self.state_path.write_text(json.dumps({**self.state, **values}))

    def calls(self, tool: str | None = None) -> list[list[str]]:
        """Return the argv of every call (of ``tool`` only, when given), in order."""
        entries = [json.loads(line) for line in self.log_path.read_text().splitlines() if line]
        return [entry["argv"] for entry in entries if tool is None or entry["tool"] == tool]
