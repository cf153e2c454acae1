"""Run host commands through one small, injectable interface.

Every module that calls a real tool (``podman``, ``apt-get``, ``debootstrap``, Compose)
takes a :class:`Runner`, so the logic can be tested against fake executables on ``PATH``
(pass ``env`` with that ``PATH``) without patching globals.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class CommandNotFound(RuntimeError):
    """A command's executable is not on ``PATH``."""


@dataclass(frozen=True)
class Result:
    """What a finished command left: its argv, exit code and (when captured) its output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        """Tell whether the command exited with status 0."""
        return self.returncode == 0

    @property
    def output(self) -> str:
        """Return stdout and stderr joined, for matching error messages."""
        return f"{self.stdout}\n{self.stderr}".strip()


@dataclass
class Runner:
    """Run commands with subprocess, keeping their exit code.

    ``env`` replaces the process environment when given (tests pass a ``PATH`` whose first
    entry holds fake tools); ``extra_env`` is merged on top of whichever environment is used.
    """

    env: Mapping[str, str] | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def environ(self, more: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return the environment a command gets: base, then ``extra_env``, then ``more``."""
        merged = dict(os.environ if self.env is None else self.env)
        merged.update(self.extra_env)
        if more:
            merged.update(more)
        return merged

    def run(
        self,
        argv: Sequence[str],
        *,
        capture: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float | None = None,
    ) -> Result:
        """Run ``argv``; capture its output unless ``capture`` is false (then it streams).

        A missing executable raises :class:`CommandNotFound`; a non-zero exit does not raise.
        """
        environ = self.environ(env)
        try:
            completed = subprocess.run(
                list(argv),
                capture_output=capture,
                text=True,
                input=input_text,
                env=environ,
                cwd=cwd,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as error:
            raise CommandNotFound(f"{argv[0]}: command not found") from error
        return Result(
            argv=tuple(argv),
            returncode=completed.returncode,
            stdout=(completed.stdout or "") if capture else "",
            stderr=(completed.stderr or "") if capture else "",
        )

    def which(self, name: str) -> str | None:
        """Return the full path of ``name`` on this runner's ``PATH``, or None."""
        from shutil import which

        return which(name, path=self.environ().get("PATH", os.defpath))


def quote(argv: Sequence[str]) -> str:
    """Return ``argv`` as one shell-quoted line, for messages and dry runs."""
    return shlex.join(argv)
