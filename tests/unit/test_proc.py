"""Unit tests of sandboxctl._proc.Runner, the one door to subprocesses: each way of running
a command, with real small programs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandboxctl._proc import TIMED_OUT, CommandNotFound, Runner


def test_run_keeps_the_exit_code_and_output() -> None:
    result = Runner().run([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"])
    assert (result.returncode, result.stdout.strip()) == (3, "out")


def test_extra_env_reaches_the_command() -> None:
    code = "import os; print(os.environ['SANDBOX_X'])"
    result = Runner(extra_env={"SANDBOX_X": "y"}).run([sys.executable, "-c", code])
    assert result.stdout.strip() == "y"


def test_missing_executable_raises_command_not_found() -> None:
    with pytest.raises(CommandNotFound):
        Runner().run(["no-such-command-here"])


def test_run_bytes_returns_binary_output_untouched() -> None:
    code = "import sys; sys.stdout.buffer.write(bytes(range(256)))"
    returncode, data, _errors = Runner().run_bytes([sys.executable, "-c", code])
    assert (returncode, data) == (0, bytes(range(256)))


def test_stream_hands_every_line_as_it_comes_stderr_included() -> None:
    lines: list[str] = []
    code = "import sys; print('a'); print('b', file=sys.stderr); sys.exit(2)"
    assert Runner().stream([sys.executable, "-c", code], lines.append) == 2
    assert sorted(line.strip() for line in lines) == ["a", "b"]


def test_pipe_feeds_the_producers_output_to_the_consumer() -> None:
    producer = [sys.executable, "-c", "print('hello')"]
    consumer = [sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"]
    code, result = Runner().pipe(producer, consumer)
    assert (code, result.returncode, result.stdout.strip()) == (0, 0, "HELLO")


def test_pipe_reports_a_failed_producer() -> None:
    code, _result = Runner().pipe([sys.executable, "-c", "raise SystemExit(4)"], ["cat"])
    assert code == 4


def test_spawn_detached_starts_in_its_own_session_in_root(tmp_path: Path) -> None:
    """A daemon outlives the task (own session) and never holds the caller's folder."""
    out = tmp_path / "out"
    code = f"import os; open({str(out)!r}, 'w').write(f'{{os.getcwd()}} {{os.getsid(0)}}')"
    pid = Runner().spawn_detached([sys.executable, "-c", code], tmp_path / "log")
    for _ in range(100):
        if out.exists() and out.read_text():
            break
        time.sleep(0.05)
    cwd, sid = out.read_text().split()
    assert cwd == "/"
    assert int(sid) == pid != os.getsid(0)


def test_run_past_its_timeout_is_killed_and_reported_not_raised() -> None:
    """A hung command (a health probe, say) must not hold its caller for ever."""
    result = Runner().run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert result.returncode == TIMED_OUT
    assert "timed out" in result.stderr


def wait_until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Return once ``condition()`` holds; fail the test when it still does not after
    ``deadline_s`` seconds."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_background_runs_for_the_block_with_its_env_and_stops_after_it(tmp_path: Path) -> None:
    log_path = tmp_path / "log"
    code = "import os, time; print(os.environ['SANDBOX_X'], flush=True); time.sleep(60)"
    with (
        log_path.open("wb") as log,
        Runner().background([sys.executable, "-c", code], log, env={"SANDBOX_X": "y"}) as alive,
    ):
        wait_until(lambda: log_path.read_bytes() == b"y\n")
        assert alive()
    assert not alive()


def test_background_kills_a_command_that_ignores_sigterm(tmp_path: Path) -> None:
    log_path = tmp_path / "log"
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    started = time.monotonic()
    with (
        log_path.open("wb") as log,
        Runner().background([sys.executable, "-c", code], log, stop_s=0.2) as alive,
    ):
        wait_until(lambda: log_path.read_bytes() == b"ready\n")
    assert not alive()
    assert time.monotonic() - started < 30


def test_background_of_a_missing_executable_raises_command_not_found(tmp_path: Path) -> None:
    with (
        (tmp_path / "log").open("wb") as log,
        pytest.raises(CommandNotFound),
        Runner().background(["no-such-command-here"], log),
    ):
        pass
