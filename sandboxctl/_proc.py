"""Run host commands through one small, injectable interface.

Every module that calls a real tool (``podman``, ``apt-get``, ``debootstrap``, Compose)
takes a :class:`Runner`, so the logic can be tested against fake executables on ``PATH``
(pass ``env`` with that ``PATH``) without patching globals.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, TypeVar

from sandboxctl.errors import SandboxError

T = TypeVar("T")
CHUNK = 1 << 16
TIMED_OUT = 124
"""The exit code :meth:`Runner.run` gives a command it killed at its timeout."""


class CommandNotFound(SandboxError, RuntimeError):
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

        A missing executable raises :class:`CommandNotFound`; a non-zero exit does not raise,
        and neither does running past ``timeout``: the command is killed and the result has
        exit code 124 (as ``timeout(1)`` reports it) and says so on stderr.
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
        except subprocess.TimeoutExpired:
            return Result(tuple(argv), TIMED_OUT, "", f"{argv[0]}: timed out after {timeout} s")
        return Result(
            argv=tuple(argv),
            returncode=completed.returncode,
            stdout=(completed.stdout or "") if capture else "",
            stderr=(completed.stderr or "") if capture else "",
        )

    def run_bytes(self, argv: Sequence[str], *, cwd: Path | None = None) -> tuple[int, bytes, str]:
        """Run ``argv`` and return (exit code, stdout as bytes, stderr as text): for commands
        whose output is binary (a tar stream)."""
        try:
            completed = subprocess.run(
                list(argv), capture_output=True, env=self.environ(), cwd=cwd, check=False
            )
        except FileNotFoundError as error:
            raise CommandNotFound(f"{argv[0]}: command not found") from error
        return completed.returncode, completed.stdout, completed.stderr.decode(errors="replace")

    def run_fed(self, argv: Sequence[str], stdin: BinaryIO) -> Result:
        """Run ``argv`` with ``stdin`` (an open binary file) as its input, output captured
        as text: for commands that read a stream (a tar to unpack)."""
        try:
            completed = subprocess.run(
                list(argv), stdin=stdin, capture_output=True, env=self.environ(), check=False
            )
        except FileNotFoundError as error:
            raise CommandNotFound(f"{argv[0]}: command not found") from error
        return Result(
            tuple(argv),
            completed.returncode,
            completed.stdout.decode(errors="replace"),
            completed.stderr.decode(errors="replace"),
        )

    def consume(self, argv: Sequence[str], reader: Callable[[IO[bytes]], T]) -> tuple[int, T, str]:
        """Run ``argv``, handing its stdout to ``reader`` as a stream while it runs; return
        (exit code, what ``reader`` returned, stderr). Stderr goes to a temporary file, so
        neither pipe can fill up and stall the other."""
        with tempfile.TemporaryFile() as errors:
            try:
                process = subprocess.Popen(
                    list(argv), stdout=subprocess.PIPE, stderr=errors, env=self.environ()
                )
            except FileNotFoundError as error:
                raise CommandNotFound(f"{argv[0]}: command not found") from error
            assert process.stdout is not None
            try:
                with process.stdout:
                    value = reader(process.stdout)
                    while process.stdout.read(CHUNK):  # drain what the reader left
                        pass
            finally:
                code = process.wait()
            errors.seek(0)
            return code, value, errors.read().decode(errors="replace")

    def stream(self, argv: Sequence[str], on_line: Callable[[str], None]) -> int:
        """Run ``argv`` with stdout and stderr merged, handing each line to ``on_line`` as it
        comes (builds show progress from it); return the exit code."""
        try:
            process = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=self.environ(),
            )
        except FileNotFoundError as error:
            raise CommandNotFound(f"{argv[0]}: command not found") from error
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                on_line(line)
        return process.wait()

    def pipe(self, producer: Sequence[str], consumer: Sequence[str]) -> tuple[int, Result]:
        """Run ``producer | consumer``; return the producer's exit code and the consumer's
        result (its output captured)."""
        environ = self.environ()
        try:
            with subprocess.Popen(list(producer), stdout=subprocess.PIPE, env=environ) as first:
                assert first.stdout is not None
                second = subprocess.run(
                    list(consumer),
                    stdin=first.stdout,
                    capture_output=True,
                    text=True,
                    env=environ,
                    check=False,
                )
                first.stdout.close()
                first.wait()
        except FileNotFoundError as error:
            raise CommandNotFound(f"{error.filename}: command not found") from error
        result = Result(tuple(consumer), second.returncode, second.stdout, second.stderr)
        return first.returncode, result

    def spawn_detached(self, argv: Sequence[str], log_path: Path, *, cwd: str = "/") -> int:
        """Start ``argv`` in a session of its own (it outlives this process), its output
        appended to ``log_path``; return its pid. ``cwd`` defaults to ``/`` so a daemon
        never holds a folder that may be deleted."""
        with log_path.open("ab") as log:
            try:
                process = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    env=self.environ(),
                    cwd=cwd,
                )
            except FileNotFoundError as error:
                raise CommandNotFound(f"{argv[0]}: command not found") from error
        return process.pid

    @contextmanager
    def background(
        self,
        argv: Sequence[str],
        log: IO[bytes],
        *,
        env: Mapping[str, str] | None = None,
        stop_s: float = 10.0,
    ) -> Iterator[Callable[[], bool]]:
        """Run ``argv`` while the ``with`` block runs, its stdout and stderr written to
        ``log`` (an open binary file), ``env`` merged as in :meth:`run`; yield a function
        telling whether it still runs. Leaving the block stops it: SIGTERM, then SIGKILL
        when it has not ended after ``stop_s`` seconds (a server the caller talks to)."""
        try:
            process = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, env=self.environ(env)
            )
        except FileNotFoundError as error:
            raise CommandNotFound(f"{argv[0]}: command not found") from error
        try:
            yield lambda: process.poll() is None
        finally:
            process.terminate()
            try:
                process.wait(timeout=stop_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def which(self, name: str) -> str | None:
        """Return the full path of ``name`` on this runner's ``PATH``, or None."""
        from shutil import which

        return which(name, path=self.environ().get("PATH", os.defpath))


def quote(argv: Sequence[str]) -> str:
    """Return ``argv`` as one shell-quoted line, for messages and dry runs."""
    return shlex.join(argv)
