"""Running a shell command for the model: bounded in time, output and reach.

The command runs under ``/bin/sh -c`` in its own session and process group, with
stdin from ``/dev/null`` and a scrubbed environment. Output (stdout and stderr
merged, in order) is read while it streams and capped: the first and last halves of
the cap are kept with ``[truncated N bytes]`` between them, so a command that
prints forever costs bounded memory. On timeout the whole group gets ``SIGTERM``,
then ``SIGKILL`` after a grace period. When the shell exits, whatever is left of
its group (``sleep 1000 &``) is ended the same way, so the call never waits on a
background child holding the pipe. Output is decoded as UTF-8 with replacement and
ANSI escape sequences and other control characters are removed. A failing
command is a result (output, exit code), never an exception.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

_SECRET_NAME = re.compile(
    r"(KEY|SECRET|TOKEN|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT)", re.IGNORECASE
)
_PASSTHROUGH = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME")
# CSI sequences, OSC sequences (ended by BEL or ST), other two-byte ESC sequences.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def scrubbed_env(
    base: Mapping[str, str] | None = None, *, home: str | None = None, secrets: tuple[str, ...] = ()
) -> dict[str, str]:
    """Return the environment a command gets: a short allowlist, minus anything secret.

    Only ``_PASSTHROUGH`` variables are copied from ``base``; any of them whose name
    looks like a secret, or whose value contains one of ``secrets``, is dropped.
    """
    base = os.environ if base is None else base
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "PAGER": "cat",
        "GIT_PAGER": "cat",
        "GIT_TERMINAL_PROMPT": "0",
    }
    for name in _PASSTHROUGH:
        if name in base and not _SECRET_NAME.search(name):
            env[name] = base[name]
    if home is not None:
        env["HOME"] = home
    for name in list(env):
        if any(secret and secret in env[name] for secret in secrets):
            del env[name]
    return env


def clean_text(data: bytes) -> str:
    """Decode bytes for a log or a model: UTF-8 with replacement, no ANSI or control codes."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    text = _ANSI.sub("", text)
    return _CONTROL.sub("", text.replace("\r", "\n"))


class CappedBuffer:
    """Keep the first and last ``cap // 2`` bytes of a stream, counting what is dropped."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        """Add a chunk; memory stays below ``cap`` plus one chunk."""
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        excess = len(self.tail) - self.tail_cap
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def render(self) -> bytes:
        """Return the kept bytes, with ``[truncated N bytes]`` where bytes were dropped."""
        if not self.dropped:
            return bytes(self.head + self.tail)
        marker = f"\n[truncated {self.dropped} bytes]\n".encode()
        return bytes(self.head) + marker + bytes(self.tail)


@dataclass(frozen=True)
class CommandOutcome:
    """What a command did: cleaned output, exit code (None if killed), flags and time."""

    output: str
    exit_code: int | None
    timed_out: bool
    truncated: bool
    killed_leftovers: bool
    duration_s: float


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is still in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def kill_group(pgid: int, grace_s: float) -> None:
    """``SIGTERM`` the group, wait up to ``grace_s`` for it to go, then ``SIGKILL`` it."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 1.0  # SIGKILL cannot be refused, but takes a moment
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.01)


def run_shell(
    command: str,
    *,
    cwd: str,
    timeout_s: float,
    grace_s: float,
    cap_bytes: int,
    env: Mapping[str, str],
    linger_s: float = 0.2,
) -> CommandOutcome:
    """Run ``command`` with ``/bin/sh -c`` under the rules of this module."""
    started = time.monotonic()
    buffer = CappedBuffer(cap_bytes)
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        return CommandOutcome(
            f"cannot start command: {exc.strerror}", None, False, False, False, 0.0
        )
    assert proc.stdout is not None
    pgid = proc.pid
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    deadline = started + timeout_s
    timed_out = False
    leftovers = False
    exited_at: float | None = None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            eof = False
            while not eof:
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    break
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at >= linger_s:
                    leftovers = True  # the shell is gone but something still holds the pipe
                    break
                wait = min(deadline - now, 0.05 if exited_at is None else linger_s)
                for _ in selector.select(timeout=wait):
                    try:
                        chunk = os.read(fd, 65_536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        eof = True
                        break
                    buffer.feed(chunk)
        if eof and not timed_out:  # output closed early; the command may still be running
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    except BaseException:  # interrupted (SIGINT/SIGTERM): leave nothing running
        kill_group(pgid, 0.0)
        raise
    if timed_out:
        kill_group(pgid, grace_s)
    elif leftovers or _group_alive(pgid):
        leftovers = True
        kill_group(pgid, grace_s)
    # Drain what is already in the pipe without waiting on it.
    try:
        while chunk := os.read(fd, 65_536):
            buffer.feed(chunk)
    except (BlockingIOError, OSError):
        pass
    proc.stdout.close()
    try:
        exit_code: int | None = proc.wait(timeout=max(grace_s, 1.0))
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        exit_code = proc.wait()
    if timed_out:
        exit_code = None
    return CommandOutcome(
        output=clean_text(buffer.render()),
        exit_code=exit_code,
        timed_out=timed_out,
        truncated=buffer.dropped > 0,
        killed_leftovers=leftovers,
        duration_s=round(time.monotonic() - started, 4),
    )
