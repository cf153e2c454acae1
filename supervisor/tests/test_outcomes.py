"""Verified outcomes: ``finished`` is a claim; with a check, its exit status decides."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from sandbox_supervisor import exit_codes
from sandbox_supervisor.agent import Agent, AgentLimits, Setup
from sandbox_supervisor.cli import main
from sandbox_supervisor.scripted import ScriptedModel
from sandbox_supervisor.tools import InProcessExecutor, Workspace
from sandbox_supervisor.tools.workspace import PathRefused
from sandbox_supervisor.trajectory import TrajectoryWriter, read_records

WRITE_HELLO = {"action": {"tool": "write_file", "args": {"path": "hello.txt", "content": "hi\n"}}}
FINISH = {"action": {"tool": "finish", "args": {"answer": "done"}}}
LIST = {"action": {"tool": "list_dir", "args": {"path": "."}}}


def _run(
    steps: list[dict[str, Any]],
    executor: InProcessExecutor,
    log: TrajectoryWriter,
    *,
    check: str | None = None,
    setup: Setup | None = None,
    **limits: Any,
) -> Any:
    agent = Agent(
        ScriptedModel(steps),
        executor,
        log,
        mode="json",
        limits=AgentLimits(**limits),
        check=check,
        setup=setup,
    )
    return agent.run("write hello.txt")


def _records(log: TrajectoryWriter) -> list[dict[str, Any]]:
    return read_records(log.path).records


def test_finish_without_a_check_is_finished_not_success(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result = _run([FINISH], executor, log)
    assert (result.status, result.exit_code, result.check) == ("finished", 0, None)
    types = [r["type"] for r in _records(log)]
    assert "check" not in types
    assert "agent_status" not in _records(log)[-1]


def test_check_passes_when_the_work_is_done(
    workspace: Workspace, executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result = _run([WRITE_HELLO, FINISH], executor, log, check="test -f hello.txt")
    assert (result.status, result.agent_status, result.exit_code) == ("passed", "finished", 0)
    records = _records(log)
    check = next(r for r in records if r["type"] == "check")
    assert (check["command"], check["exit_code"], check["passed"]) == ("test -f hello.txt", 0, True)
    end = records[-1]
    assert (end["status"], end["agent_status"], end["check"]["passed"]) == (
        "passed",
        "finished",
        True,
    )
    assert records[0]["check"] == "test -f hello.txt"


def test_a_finish_claim_without_the_work_fails_the_check(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result = _run([FINISH], executor, log, check="test -f hello.txt")
    assert (result.status, result.agent_status) == ("failed", "finished")
    assert result.exit_code == exit_codes.CODES["check_failed"] == 7
    assert "exit code 1" in result.reason
    assert _records(log)[-1]["exit_code"] == 7


def test_the_check_decides_after_a_budget_ran_out(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result = _run([WRITE_HELLO, LIST, LIST], executor, log, check="test -f hello.txt", max_steps=2)
    assert (result.status, result.agent_status) == ("passed", "step_budget")


def test_no_check_and_no_verdict_when_the_model_is_unavailable(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result = _run([{"error": "unavailable"}], executor, log, check="true")
    assert result.status == "model_unavailable"
    assert result.agent_status is None
    assert "check" not in [r["type"] for r in _records(log)]


def test_setup_prepares_the_workspace_before_the_task(
    workspace: Workspace, executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    setup = Setup({"src/a.txt": "one\n"}, ("cp src/a.txt b.txt",))
    result = _run([FINISH], executor, log, setup=setup, check="cmp src/a.txt b.txt")
    assert result.status == "passed"
    record = next(r for r in _records(log) if r["type"] == "setup")
    assert [s["status"] for s in record["steps"]] == ["ok", "ok"]
    assert (workspace.root / "b.txt").read_text() == "one\n"


def test_a_failed_setup_ends_the_run_as_an_error_without_a_verdict(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result = _run([FINISH], executor, log, setup=Setup({}, ("exit 3",)), check="true")
    assert result.status == "error"
    assert "setup failed" in result.reason
    assert "check" not in [r["type"] for r in _records(log)]


def test_setup_from_dict_checks_its_shape() -> None:
    assert Setup.from_dict({"files": {"a": "b"}, "commands": ["x"]}) == Setup({"a": "b"}, ("x",))
    with pytest.raises(ValueError, match="files"):
        Setup.from_dict({"files": {"a": 1}})
    with pytest.raises(ValueError, match="commands"):
        Setup.from_dict({"commands": "rm -rf"})


# -- the command line ----------------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "ws").mkdir()
    monkeypatch.setenv("SUPERVISOR_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("SUPERVISOR_LOG_DIR", str(tmp_path / "logs"))
    return tmp_path


@pytest.mark.parametrize(
    ("check", "code", "status"),
    [("test -f hello.txt", 0, "passed"), ("test -f missing.txt", 7, "failed")],
)
def test_run_check_option_sets_status_and_exit_code(
    env: Path, check: str, code: int, status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log = env / "run.jsonl"
    assert main(["run", "--scripted", "demo", "--log", str(log), "--check", check, "hi"]) == code
    end = read_records(log).records[-1]
    assert (end["status"], end["agent_status"]) == (status, "finished")
    assert main(["show", str(log)]) == 0
    shown = capsys.readouterr().out
    assert f"== end: {status} (the run ended finished)" in shown
    assert "== check: " in shown


def test_run_spec_from_stdin_sets_up_a_subdirectory_and_checks_it(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {
        "setup": {"files": {"notes.txt": "alpha\n"}},
        "script": [
            {"action": {"tool": "run_command", "args": {"command": "cp notes.txt copy.txt"}}},
            FINISH,
        ],
        "check": "cmp notes.txt copy.txt",
        "subdir": "eval/run-1",
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(spec)))
    log = env / "spec.jsonl"
    assert main(["run", "--spec", "-", "--log", str(log), "-q", "copy the notes"]) == 0
    assert (env / "ws/eval/run-1/copy.txt").read_text() == "alpha\n"
    assert not (env / "ws/notes.txt").exists()
    assert read_records(log).records[-1]["status"] == "passed"


def test_run_spec_rejects_unknown_keys(env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"setup": {}, "chek": "true"}))
    assert main(["run", "--spec", str(bad), "--scripted", "demo", "x"]) == 1


def test_exit_codes_table_lists_the_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exit-codes"]) == 0
    out = capsys.readouterr().out
    assert "check_failed" in out
    assert "finished, passed" in out
    assert "failed" in out


# -- subdirectories of the workspace -------------------------------------------------------
@pytest.mark.parametrize("bad", ["../x", "/abs", ".git", "a/../b", "a//b", "", "a/.hidden"])
def test_workspace_sub_refuses_what_is_not_a_plain_relative_path(
    workspace: Workspace, bad: str
) -> None:
    with pytest.raises(PathRefused):
        workspace.sub(bad)


def test_workspace_sub_refuses_a_link_on_the_way(workspace: Workspace, outside: Path) -> None:
    (workspace.root / "eval").symlink_to(outside)
    with pytest.raises(PathRefused, match="not a directory"):
        workspace.sub("eval/run")
    assert not (outside / "run").exists()


def test_executor_within_a_subdirectory_stays_in_it(executor: InProcessExecutor) -> None:
    inner = executor.within("eval/r1")
    assert inner.workspace.root == executor.workspace.root / "eval" / "r1"
    from sandbox_supervisor.tools import ToolRequest

    result = inner.execute(ToolRequest("1", "read_file", {"path": "../r2/x"}))
    assert result.status in ("refused", "invalid", "failed")
