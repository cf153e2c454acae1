"""The reaper: runs one command and leaves no process of it behind.

Run as ``python -I reaper.py GRACE_S STATUS_FD -- /bin/sh -c COMMAND`` by
:func:`.commands.run_shell`; stdlib-only, so it runs without the package. It makes
itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): every process the
command starts, even one that leaves its session with ``setsid`` and its parent
dying, is re-parented to the reaper instead of to init, so it stays a descendant
the reaper can find. When the command's shell exits, or when the reaper gets
``SIGTERM`` (the command's timeout, the service shutting down, or, through
``PR_SET_PDEATHSIG``, the death of the process that started it), it ends every
descendant: ``SIGTERM``, ``GRACE_S`` to leave, then rounds of ``SIGSTOP`` (so none
can fork while the round runs) and ``SIGKILL``.

A scan of ``/proc`` is a snapshot taken one file at a time: a process that forks
and exits while it is read (a double fork) can hide its child from that scan. The
sweep therefore does not stop when a scan comes back empty; it stops when
``waitpid`` says this subreaper has *no child at all*. That test has no race:
every live descendant is either the reaper's child or the child of a live
descendant (an exiting parent hands its children to the subreaper before it
becomes a zombie), so no child means no descendant.
It writes JSON lines to ``STATUS_FD``: ``{"shell": PID}`` once started, and
``{"exit_code": N|null, "leftovers": N, "terminated": bool}`` at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Last resort only: the sweep ends when no child is left, long before this.
_LIMIT_S = 30.0


class Terminate(Exception):
    """SIGTERM arrived: end the command now."""


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def set_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False if not."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of ``root``, from the parent links in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) < 2 or fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def reap() -> bool:
    """Collect every exited child (orphans come to us as a subreaper); True if any is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def end_all(grace_s: float, *, limit_s: float = _LIMIT_S) -> int:
    """End every descendant (TERM, grace, then STOP+KILL rounds) until no child is left.

    Returns how many distinct descendants were seen. Stops only when ``waitpid``
    reports no child (see the module's docstring), or after ``limit_s`` as a last
    resort against a process the kernel will not let die (uninterruptible sleep).
    """
    me = os.getpid()
    seen: set[int] = set()
    if not reap():
        return 0
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        # Every round: TERM whoever has appeared since (a double fork's grandchild).
        fresh = [pid for pid in descendants(me) if pid not in seen]
        seen.update(fresh)
        _signal_all(fresh, signal.SIGTERM)
        if not reap():
            return len(seen)
        time.sleep(0.02)
    give_up = time.monotonic() + limit_s
    while reap() and time.monotonic() < give_up:
        left = descendants(me)
        seen.update(left)
        _signal_all(left, signal.SIGSTOP)
        left = descendants(me)
        seen.update(left)
        _signal_all(left, signal.SIGKILL)
        time.sleep(0.01)
    return len(seen)


def main(argv: list[str]) -> int:
    """Run the command after ``--`` and report on the status descriptor."""
    grace_s = float(argv[1])
    status = os.fdopen(int(argv[2]), "w", buffering=1)
    command = argv[argv.index("--") + 1 :]
    parent = os.getppid()
    set_subreaper()

    def on_term(signum: int, frame: object) -> None:
        raise Terminate

    signal.signal(signal.SIGTERM, on_term)
    # If the caller dies (even by SIGKILL), end the command rather than orphan it.
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above took effect
        os.kill(os.getpid(), signal.SIGTERM)
    exit_code: int | None = None
    terminated = False
    try:
        shell = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        status.write(json.dumps({"shell": shell.pid}) + "\n")
        exit_code = shell.wait()
    except Terminate:
        terminated = True
    except OSError as exc:
        print(f"cannot start command: {exc.strerror}", flush=True)
        exit_code = 127
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    leftovers = end_all(grace_s)
    if terminated:
        exit_code = None
    status.write(
        json.dumps({"exit_code": exit_code, "leftovers": leftovers, "terminated": terminated})
        + "\n"
    )
    status.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
