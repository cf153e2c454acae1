"""Running a shell command for the model: bounded in time, output and reach.

The command runs under ``/bin/sh -c`` in its own session, below a reaper process
(:mod:`.reaper`, a child subreaper) that ends every process the command started
when it ends, times out or is interrupted, and when the service shuts down
(:func:`terminate_all`); stdin is ``/dev/null`` and the environment scrubbed.
Output (stdout and stderr merged, in order) is read while it streams and capped:
the first and last halves of the cap are kept with ``[truncated N bytes]`` between
them, so a command that prints forever costs bounded memory. On timeout every
descendant gets ``SIGTERM``, then ``SIGKILL`` after a grace period. When the shell
exits, whatever it left running (``sleep 1000 &``, ``setsid sleep 1000 &``) is
ended the same way, so the call never waits on a background child holding the
pipe. Output is decoded as UTF-8 with replacement and ANSI escape sequences and
other control characters are removed. A failing command is a result (output, exit
code), never an exception.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

_SECRET_NAME = re.compile(
    r"(KEY|SECRET|TOKEN|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT)", re.IGNORECASE
)
_PASSTHROUGH = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME")
# The egress proxy (compose.egress.yaml sets them on the tools service when EGRESS_ALLOW is
# on) and the CA bundle HTTPS verifies against: names that are not secrets by design, so
# only their values are checked.
_WAY_OUT = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE",
)  # fmt: skip
# CSI sequences, OSC sequences (ended by BEL or ST), other two-byte ESC sequences.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


COMMAND_PATH = "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"
"""Commands' ``PATH``: in the image, ``python`` is the venv's (with the project's own
packages from supervisor/extra/requirements.lock); the model key is not in it."""


def scrubbed_env(
    base: Mapping[str, str] | None = None, *, home: str | None = None, secrets: tuple[str, ...] = ()
) -> dict[str, str]:
    """Return the environment a command gets: a short allowlist, minus anything secret.

    Only ``_PASSTHROUGH`` variables are copied from ``base`` (any of them whose name looks
    like a secret is dropped), and the egress proxy's variables and ``SSL_CERT_FILE``
    (unless a value carries credentials); then any whose value contains one of
    ``secrets`` is dropped.
    """
    base = os.environ if base is None else base
    env = {
        "PATH": COMMAND_PATH,
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
    for name in _WAY_OUT:
        if name in base and "@" not in base[name]:  # a proxy URL with credentials stays out
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


_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()
_REAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")


def terminate_all(grace_s: float = 2.0) -> int:
    """End every command still running (the service is shutting down); return how many."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for reaper in live:
        _stop(reaper, grace_s)
    return len(live)


def _stop(reaper: subprocess.Popen[bytes], grace_s: float) -> None:
    """Ask a reaper to end its command (it ends every descendant), then make sure."""
    with contextlib.suppress(ProcessLookupError):
        reaper.send_signal(signal.SIGTERM)
    try:
        reaper.wait(timeout=grace_s + 2.0)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()


def _status(raw: bytes) -> dict[str, object]:
    """Merge the reaper's JSON status lines (a cut last line is ignored)."""
    merged: dict[str, object] = {}
    for line in raw.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                merged.update(item)
    return merged


def _shell(command: str) -> list[str]:
    return ["/bin/sh", "-c", command]


def run_shell(
    command: str,
    *,
    cwd: str,
    timeout_s: float,
    grace_s: float,
    cap_bytes: int,
    env: Mapping[str, str],
) -> CommandOutcome:
    """Run ``command`` with ``/bin/sh -c`` under a reaper (:mod:`.reaper`), by this module's rules.

    The reaper is this call's child and the command's subreaper: on the command's
    end, its timeout, an interrupt or :func:`terminate_all` it ends every process the
    command started, however it detached; the call returns only after that.
    """
    started = time.monotonic()
    buffer = CappedBuffer(cap_bytes)
    status_r, status_w = os.pipe()
    try:
        reaper = subprocess.Popen(
            [sys.executable, "-I", _REAPER, str(grace_s), str(status_w), "--", *_shell(command)],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            pass_fds=(status_w,),
            start_new_session=True,
        )
    except OSError as exc:
        os.close(status_r)
        return CommandOutcome(
            f"cannot start command: {exc.strerror}", None, False, False, False, 0.0
        )
    finally:
        os.close(status_w)
    with _LIVE_LOCK:
        _LIVE.add(reaper)
    assert reaper.stdout is not None
    fd = reaper.stdout.fileno()
    os.set_blocking(fd, False)
    deadline = started + timeout_s
    timed_out = False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            eof = False
            while not eof:
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    break
                for _ in selector.select(timeout=min(deadline - now, 0.5)):
                    try:
                        chunk = os.read(fd, 65_536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        eof = True
                        break
                    buffer.feed(chunk)
        if timed_out:
            _stop(reaper, grace_s)
        else:
            try:
                reaper.wait(timeout=max(0.0, deadline - time.monotonic()) + grace_s + 2.0)
            except subprocess.TimeoutExpired:
                timed_out = True
                _stop(reaper, grace_s)
    except BaseException:  # interrupted (SIGINT/SIGTERM): leave nothing running
        _stop(reaper, 0.0)
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(reaper)
        with os.fdopen(status_r, "rb") as handle:
            status = _status(handle.read())
    # Drain what is already in the pipe without waiting on it.
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 65_536):
            buffer.feed(chunk)
    reaper.stdout.close()
    code = status.get("exit_code")
    exit_code = code if isinstance(code, int) and not timed_out else None
    leftovers = status.get("leftovers")
    return CommandOutcome(
        output=clean_text(buffer.render()),
        exit_code=exit_code,
        timed_out=timed_out,
        truncated=buffer.dropped > 0,
        killed_leftovers=isinstance(leftovers, int) and leftovers > 0,
        duration_s=round(time.monotonic() - started, 4),
    )
