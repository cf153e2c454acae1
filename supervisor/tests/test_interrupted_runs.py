"""Faults around the trajectory: a full disk stops the run cleanly; a killed run is closed
as interrupted on recovery."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from sandbox_supervisor.agent import EXIT_CODES, Agent
from sandbox_supervisor.cli import main
from sandbox_supervisor.scripted import ScriptedModel, load_script
from sandbox_supervisor.tools import InProcessExecutor
from sandbox_supervisor.trajectory import (
    TrajectoryError,
    TrajectoryWriter,
    read_records,
    recover_dir,
    recover_interrupted,
)

REAL_WRITE = os.write


class DiskFillsAfter:
    """A stand-in for ``os.write`` on one file descriptor: after ``budget`` bytes it writes
    what fits and then fails with ENOSPC, as a full filesystem does."""

    def __init__(self, log: TrajectoryWriter, budget: int) -> None:
        self.fd = log._fd
        self.budget = budget

    def __call__(self, fd: int, data: Any) -> int:
        if fd != self.fd:
            return REAL_WRITE(fd, data)
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        take = min(len(data), self.budget)
        self.budget -= take
        return REAL_WRITE(fd, bytes(data[:take]))


def test_a_write_on_a_full_disk_leaves_only_complete_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.jsonl"
    with TrajectoryWriter(path, "r") as log:
        log.write("run_start", task="t")
        size = path.stat().st_size
        monkeypatch.setattr(os, "write", DiskFillsAfter(log, 10))
        with pytest.raises(TrajectoryError, match="No space left on device"):
            log.write("model_request", step=1)
        with pytest.raises(TrajectoryError, match="can no longer be written"):
            log.write("model_request", step=1)
    assert path.stat().st_size == size
    assert read_records(path, allow_torn_tail=False).records[-1]["type"] == "run_start"


def test_a_full_disk_mid_run_stops_it_as_log_failed_before_the_next_tool_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: InProcessExecutor
) -> None:
    path = tmp_path / "run.jsonl"
    with TrajectoryWriter(path, "r") as log:
        agent = Agent(ScriptedModel(load_script("demo")), executor, log, mode="json")
        real_write = log.write

        def write(event_type: str, **fields: Any) -> dict[str, Any]:
            if event_type == "tool_call" and fields.get("name") == "write_file":
                monkeypatch.setattr(os, "write", DiskFillsAfter(log, 0))
            return real_write(event_type, **fields)

        monkeypatch.setattr(log, "write", write)
        result = agent.run("say hello")
    assert result.status == "log_failed"
    assert result.exit_code == EXIT_CODES["log_failed"]
    assert "No space left" in result.reason
    assert not (executor.workspace.root / "hello.txt").exists()
    records = read_records(path, allow_torn_tail=False).records
    assert records[-1]["type"] == "model_response"  # the write_file call was never logged
    assert [r["name"] for r in records if r["type"] == "tool_call"] == ["list_dir"]


def killed_run(path: Path, *, torn: bool = False) -> list[bytes]:
    """A trajectory as a killed process leaves it: no run_end (optionally a torn line)."""
    log = TrajectoryWriter(path, "run-1")
    log.write("run_start", task="t")
    log.write("model_request", step=1)
    log.write("tool_call", step=1, call_id="1.0", name="list_dir", arguments={})
    log.write("tool_result", step=1, call_id="1.0", name="list_dir", status="ok", output="")
    log.close()
    lines = path.read_bytes().splitlines(keepends=True)
    if torn:
        with path.open("ab") as handle:
            handle.write(b'{"v":1,"seq":4,"ty')
    return lines


def test_recovery_marks_a_killed_run_interrupted_and_keeps_every_line(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    acknowledged = killed_run(path, torn=True)
    record = recover_interrupted(path)
    assert record is not None
    assert (record["status"], record["recovered"], record["run_id"]) == (
        "interrupted",
        True,
        "run-1",
    )
    assert record["tool_calls"] == 1
    after = path.read_bytes().splitlines(keepends=True)
    assert after[: len(acknowledged)] == acknowledged
    kinds = [r["type"] for r in read_records(path, allow_torn_tail=False).records]
    assert kinds[-2:] == ["repair", "run_end"]


def test_recovery_leaves_a_finished_run_alone(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with TrajectoryWriter(path, "r") as log:
        log.write("run_start", task="t")
        log.write("run_end", status="success")
    before = path.read_bytes()
    assert recover_interrupted(path) is None
    assert recover_dir(tmp_path) == {}
    assert path.read_bytes() == before


def test_recovery_leaves_a_run_that_a_live_process_writes_alone(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with TrajectoryWriter(path, "live") as log:
        log.write("run_start", task="t")
        assert recover_interrupted(path) is None
        log.write("run_end", status="success")
    assert read_records(path).records[-1]["status"] == "success"


def test_show_says_a_killed_run_is_interrupted_and_recover_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logs" / "run.jsonl"
    path.parent.mkdir()
    killed_run(path)
    assert main(["show", str(path)]) == 0
    assert "== unfinished: interrupted" in capsys.readouterr().out
    assert main(["recover", "--log-dir", str(path.parent), "-q"]) == 0
    assert f"{path}: interrupted" in capsys.readouterr().out
    assert main(["show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "== end: interrupted" in shown
    assert "unfinished" not in shown
