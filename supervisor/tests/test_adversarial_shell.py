"""Commands that try to outlive their call, or to reach the model key: all contained.

Each case tags its processes with a sleep duration no other run uses; after the call
(and, for the shutdown case, after ``terminate_all``) no live process may carry it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from sandbox_supervisor.tools import InProcessExecutor, Limits, ToolRequest, ToolResult, Workspace
from sandbox_supervisor.tools.commands import run_shell, terminate_all

KEY = "sk-model-key-0123456789abcdef"


def _alive(marker: str, *, program: str = "sleep ") -> list[str]:
    """Live (non-zombie) processes whose command line starts with ``program`` (a
    ``sleep`` unless told) and contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\x00", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmdline.startswith(program) and marker in cmdline and state not in ("Z", "X"):
            found.append(f"{entry}: {cmdline}")
    return found


def _marker() -> str:
    return f"3104.{random.randrange(10**9)}"


# (command with {m} for the marker sleep, timeout_s): each tries to leave something behind.
ESCAPES = [
    ("setsid sleep {m} & echo detached", 5.0),
    ("(sleep {m} &) ; echo double-forked", 5.0),
    ("nohup sleep {m} >/dev/null 2>&1 & echo nohup", 5.0),
    ("setsid sh -c 'sleep {m} & sleep {m}' >/dev/null 2>&1 </dev/null & echo daemon", 5.0),
    ("setsid sh -c 'trap \"\" TERM; sleep {m}' & echo ignores-term", 5.0),
    ("for i in 1 2 3 4 5 6 7 8; do setsid sleep {m} & done; echo eight", 5.0),
    ("sleep {m} & sleep {m}", 0.3),
    ("trap '' TERM; setsid sleep {m} & sleep {m}", 0.3),
    ("sh -c 'sh -c \"setsid sleep {m} &\"'; echo nested", 5.0),
    ("setsid sleep {m} & exec sleep {m}", 0.3),
]


@pytest.fixture
def shell(workspace: Workspace) -> InProcessExecutor:
    return InProcessExecutor(
        workspace, Limits(command_timeout_s=5.0, command_grace_s=0.2, output_cap_bytes=4096)
    )


def _run(executor: InProcessExecutor, command: str, **extra: object) -> ToolResult:
    return executor.execute(ToolRequest("c", "run_command", {"command": command, **extra}))


def test_no_descendant_outlives_its_command(
    shell: InProcessExecutor, figures: dict[str, str]
) -> None:
    contained = 0
    left: list[str] = []
    for template, timeout in ESCAPES:
        marker = _marker()
        started = time.monotonic()
        result = _run(shell, template.format(m=marker), timeout_s=timeout)
        elapsed = time.monotonic() - started
        survivors = _alive(marker)
        if not survivors and elapsed < timeout + 3.0:
            contained += 1
        else:
            left.append(f"{template}: {result.status} {elapsed:.1f}s {survivors[:2]}")
    figures["shell_escapes"] = f"{contained}/{len(ESCAPES)} commands left nothing behind"
    assert left == []


# Detach the way a daemon does, as fast as Python can: fork, the parent exits, setsid,
# fork again, the middle process exits, output closed. The grandchild appears while
# the reaper scans /proc; before issue 24 a scan missed it in about 1 call in 4.
_DAEMONIZE = (
    "import os, time\n"
    "if os.fork(): os._exit(0)\n"
    "os.setsid()\n"
    "if os.fork(): os._exit(0)\n"
    "for fd in (0, 1, 2): os.close(fd)\n"
    "time.sleep({m})\n"
)
DETACHERS = [
    ("python double fork, setsid, output closed", f"{sys.executable} -c '{_DAEMONIZE}'"),
    ("shell double fork, setsid, output closed", "(setsid sleep {m} </dev/null >/dev/null 2>&1 &)"),
    ("setsid in a subshell that exits at once", "(setsid sh -c 'sleep {m} &' &) ; exit 0"),
]
TRIES = 40


@pytest.mark.long  # 40 tries of each shape, each waiting out its detached process
@pytest.mark.parametrize(("shape", "template"), DETACHERS, ids=[d[0] for d in DETACHERS])
def test_a_detached_process_never_outlives_its_call_over_many_tries(
    shell: InProcessExecutor, figures: dict[str, str], shape: str, template: str
) -> None:
    """The whole class, repeated: a race lost 1 time in 5 shows in 40 tries with
    probability 1 - 0.8**40 (> 99.98 %)."""
    survived = 0
    for _ in range(TRIES):
        marker = _marker()
        _run(shell, template.format(m=marker), timeout_s=5.0)
        survivors = _alive(marker, program="")
        if survivors:
            survived += 1
            for line in survivors:  # do not let one failure leak into the next tries
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
    figures[f"shell_detach {shape}"] = f"{TRIES - survived}/{TRIES} calls left nothing behind"
    assert survived == 0, f"{survived}/{TRIES} calls left a {shape} process alive"


def test_commands_running_at_shutdown_are_ended_with_their_descendants(
    workspace: Workspace, figures: dict[str, str]
) -> None:
    marker = _marker()
    outcome: list[object] = []

    def run() -> None:
        outcome.append(
            run_shell(
                f"setsid sleep {marker} & sleep {marker}",
                cwd=str(workspace.root),
                timeout_s=60.0,
                grace_s=0.2,
                cap_bytes=4096,
                env={"PATH": "/usr/bin:/bin"},
            )
        )

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while len(_alive(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(_alive(marker)) == 2
    finally:
        ended = terminate_all(grace_s=0.2)
    assert ended == 1
    worker.join(5)
    assert not worker.is_alive()
    survivors = _alive(marker)
    figures["shell_shutdown"] = f"{2 - len(survivors)}/2 processes ended at shutdown"
    assert survivors == []


def test_a_command_gets_no_more_than_the_runs_time_left(shell: InProcessExecutor) -> None:
    marker = _marker()
    started = time.monotonic()
    result = shell.execute(
        ToolRequest("c", "run_command", {"command": f"sleep {marker}"}, time_left_s=0.4)
    )
    assert time.monotonic() - started < 2.0
    assert result.status == "timeout"
    assert result.details["timeout_s"] == pytest.approx(0.4)
    assert _alive(marker) == []


def test_in_process_commands_are_refused_while_the_model_key_is_loaded(
    workspace: Workspace,
) -> None:
    executor = InProcessExecutor(workspace, Limits(secrets=(KEY,)), holds_key=True)
    result = _run(executor, "echo should-not-run > ran.txt")
    assert result.status == "refused"
    assert "SUPERVISOR_TOOLS_URL" in result.output
    assert not (workspace.root / "ran.txt").exists()
    assert executor.execute(ToolRequest("c", "list_dir", {"path": "."})).status == "ok"


def test_the_key_in_any_common_encoding_is_redacted_from_output(
    workspace: Workspace, figures: dict[str, str]
) -> None:
    (workspace.root / "k").write_text(KEY)
    executor = InProcessExecutor(workspace, Limits(command_timeout_s=5.0, secrets=(KEY,)))
    encoded = base64.b64encode(KEY.encode()).decode()
    commands = [
        "cat k",
        "base64 k",
        "base64 -w 8 k",
        "(printf x; cat k) | base64",
        "(printf xy; cat k) | base64",
        "base64 k | tr '+/' '-_'",
        "od -An -tx1 k | tr -d ' \\n'",
        "xxd -p k 2>/dev/null || od -An -tx1 k | tr -d ' \\n'",
        "od -An -tx1 k | tr -d ' \\n' | tr a-f A-F",
        "printf '%s' \"$(cat k)\" | rev | rev",
        "env; cat /proc/$PPID/environ 2>/dev/null | tr '\\0' '\\n'",
    ]
    leaked = []
    for command in commands:
        output = _run(executor, command).output
        flat = "".join(output.split())
        if KEY in flat or encoded[4:-4] in flat or KEY.encode().hex() in flat.lower():
            leaked.append(f"{command}: {output[:80]}")
    figures["secrets"] = f"{len(commands) - len(leaked)}/{len(commands)} key encodings redacted"
    assert leaked == []


def test_a_killed_caller_takes_its_commands_with_it(workspace: Workspace) -> None:
    """SIGKILL of the process running a command (no cleanup can run) still ends the
    command: the reaper gets SIGTERM through PR_SET_PDEATHSIG."""
    marker = _marker()
    script = (
        "from sandbox_supervisor.tools.commands import run_shell\n"
        f"run_shell('setsid sleep {marker} & sleep {marker}', cwd={str(workspace.root)!r},"
        " timeout_s=60, grace_s=0.2, cap_bytes=4096, env={'PATH': '/usr/bin:/bin'})\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        while len(_alive(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_alive(marker)) == 2
    finally:
        caller.kill()
        caller.wait()
    deadline = time.monotonic() + 5
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(marker) == []


def test_sigterm_to_serve_ends_the_commands_it_runs(
    workspace: Workspace, tmp_path: Path, figures: dict[str, str]
) -> None:
    token = "z" * 24
    (tmp_path / "token").write_text(token)
    env = {
        "PATH": os.environ["PATH"],
        "SUPERVISOR_WORKSPACE": str(workspace.root),
        "SUPERVISOR_TOOLS_TOKEN_FILE": str(tmp_path / "token"),
        "SUPERVISOR_COMMAND_GRACE_S": "0.2",
    }
    serve = subprocess.Popen(
        [sys.executable, "-m", "sandbox_supervisor", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert serve.stderr is not None
    try:
        line = serve.stderr.readline()
        port = int(line.rsplit(":", 1)[1].split()[0])
        marker = _marker()
        body = {
            "key": "k1",
            "request": {
                "call_id": "1",
                "name": "run_command",
                "arguments": {"command": f"setsid sleep {marker} & sleep {marker}"},
            },
        }

        def post() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/execute",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )

        caller = threading.Thread(target=post, daemon=True)
        caller.start()
        deadline = time.monotonic() + 10
        while len(_alive(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_alive(marker)) == 2
        serve.send_signal(signal.SIGTERM)
        serve.wait(10)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        serve.stderr.close()
    survivors = _alive(marker)
    figures["shell_serve_sigterm"] = f"{2 - len(survivors)}/2 processes ended on SIGTERM to serve"
    assert survivors == []
