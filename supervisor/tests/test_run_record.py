"""Every change a run makes is recorded per step outside the workspace; the record gives
a diff (whole run or one step) that ``git apply`` accepts, and rewinds the folder to any
step. (That the agent's commands cannot reach the record is the tools container's
doing: tests/e2e/test_own_project.py tries it on the real stack.)"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sv_fakes import make_settings

from sandbox_supervisor.cli import main
from sandbox_supervisor.recording import RecordError, RunRecord, diff, open_record, restore
from sandbox_supervisor.session import run_task
from sandbox_supervisor.tools import InProcessExecutor, Workspace
from sandbox_supervisor.trajectory import read_records

CALC = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def _step(tool: str, **args: Any) -> dict[str, Any]:
    return {"action": {"tool": tool, "args": args}}


SCRIPT = [
    _step("view_file", path="calc.py"),
    _step("edit_file", path="calc.py", old_text="return a - b", new_text="return a + b"),
    _step("run_command", command="printf 'scratch\\n' > notes.txt && chmod +x run.sh"),
    _step("run_command", command="rm notes.txt"),
    {"action": {"tool": "finish", "args": {"answer": "fixed"}}},
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "ws" / "proj"
    root.mkdir(parents=True)
    (root / "calc.py").write_text(CALC)
    (root / "test_calc.py").write_text(TEST)
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "data.bin").write_bytes(b"\x00\x01binary")
    return root


def _run(tmp_path: Path, script: list[dict[str, Any]]) -> tuple[str, Path]:
    settings = make_settings(workspace=tmp_path / "ws", log_dir=tmp_path / "logs")
    (tmp_path / "script.json").write_text(json.dumps(script))
    code = run_task(
        settings,
        "fix the test",
        scripted=str(tmp_path / "script.json"),
        log=None,
        quiet=True,
        subdir="proj",
        run_id="run-1",
    )
    assert code == 0
    return "run-1", tmp_path / "logs"


def test_each_changing_step_is_recorded_and_referenced_from_the_trajectory(
    project: Path, tmp_path: Path
) -> None:
    run_id, logs = _run(tmp_path, SCRIPT)
    records = read_records(logs / f"{run_id}.jsonl").records
    snapshots = [r for r in records if r["type"] == "snapshot"]
    assert [r["step"] for r in snapshots] == [0, 2, 3, 4]  # view_file (step 1) changes nothing
    for snap in snapshots:
        assert (logs / snap["record"]).is_file()
        assert not str((logs / snap["record"]).resolve()).startswith(str(project))
    assert snapshots[1]["changed"] == 1
    assert snapshots[1]["stored_bytes"] == len(CALC)  # only the changed content is added
    assert snapshots[3]["removed"] == 1
    assert open_record(logs, run_id).steps() == [0, 2, 3, 4]


def test_the_whole_run_diff_is_exactly_the_fix_and_applies_with_git(
    project: Path, tmp_path: Path
) -> None:
    pristine = tmp_path / "pristine"
    shutil.copytree(project, pristine)
    run_id, logs = _run(tmp_path, SCRIPT)
    text, left_out = diff(open_record(logs, run_id), 0, None)
    assert text == (
        "diff --git a/calc.py b/calc.py\n"
        "--- a/calc.py\n"
        "+++ b/calc.py\n"
        "@@ -1,2 +1,2 @@\n"
        " def add(a, b):\n"
        "-    return a - b\n"
        "+    return a + b\n"
        "diff --git a/run.sh b/run.sh\n"
        "old mode 100644\n"
        "new mode 100755\n"
    )
    assert left_out == []
    (tmp_path / "fix.patch").write_text(text)
    subprocess.run(["git", "init", "-q", str(pristine)], check=True)
    applied = subprocess.run(
        ["git", "-C", str(pristine), "apply", str(tmp_path / "fix.patch")],
        capture_output=True,
        text=True,
    )
    assert applied.returncode == 0, applied.stderr
    assert (pristine / "calc.py").read_text() == (project / "calc.py").read_text()
    assert os.access(pristine / "run.sh", os.X_OK)


def test_one_step_diff_shows_that_step_only(project: Path, tmp_path: Path) -> None:
    run_id, logs = _run(tmp_path, SCRIPT)
    record = open_record(logs, run_id)
    text, _ = diff(record, 2, 3)
    assert text.startswith("diff --git a/notes.txt b/notes.txt\nnew file mode 100644\n")
    assert "+scratch\n" in text
    assert "calc.py" not in text


def test_rewind_to_step_0_restores_the_original_bytes_and_modes(
    project: Path, tmp_path: Path
) -> None:
    before = {p.name: (p.read_bytes(), p.stat().st_mode) for p in project.iterdir()}
    run_id, logs = _run(tmp_path, SCRIPT)
    (project / "added-later.txt").write_text("after the run\n")
    code = main(
        [
            "record",
            "rewind",
            run_id,
            "--step",
            "0",
            "--log-dir",
            str(logs),
            "--workspace",
            str(tmp_path / "ws"),
        ]
    )
    assert code == 0
    after = {p.name: (p.read_bytes(), p.stat().st_mode) for p in project.iterdir()}
    assert after == before


def test_rewind_to_a_middle_step(project: Path, tmp_path: Path) -> None:
    run_id, logs = _run(tmp_path, SCRIPT)
    record = open_record(logs, run_id)
    fd = os.open(project, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert restore(record, 3, fd) == []
    finally:
        os.close(fd)
    assert (project / "notes.txt").read_text() == "scratch\n"
    assert "a + b" in (project / "calc.py").read_text()


def test_a_binary_change_is_left_out_of_the_patch_with_a_line(
    project: Path, tmp_path: Path
) -> None:
    script = [_step("run_command", command="printf '\\000\\002' > data.bin"), SCRIPT[-1]]
    run_id, logs = _run(tmp_path, script)
    text, left_out = diff(open_record(logs, run_id), 0, None)
    assert text == ""
    assert left_out == ["'data.bin': binary or not recorded"]


def test_the_record_refuses_a_second_snapshot_of_the_same_step(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    executor = InProcessExecutor(Workspace.open(tmp_path / "ws"))
    record = RunRecord(tmp_path / "logs", "r")
    record.start(None)
    record.take(executor, 0)
    with pytest.raises(RecordError):
        record.take(executor, 0)


def test_the_cli_prints_the_diff_of_a_step(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, logs = _run(tmp_path, SCRIPT)
    capsys.readouterr()
    assert main(["record", "diff", run_id, "--step", "2", "--log-dir", str(logs)]) == 0
    assert capsys.readouterr().out.startswith("diff --git a/calc.py b/calc.py\n")
    assert main(["record", "diff", run_id, "--step", "1", "--log-dir", str(logs)]) == 0
    assert "changed nothing" in capsys.readouterr().err


def test_the_cli_prints_each_step_s_own_diff_as_json_for_the_viewer(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``record diffs``: one diff per recorded step, each from the step recorded before it
    (the run page shows them under their steps)."""
    run_id, logs = _run(tmp_path, SCRIPT)
    capsys.readouterr()
    assert main(["record", "diffs", run_id, "--log-dir", str(logs)]) == 0
    found = json.loads(capsys.readouterr().out)
    record = open_record(logs, run_id)
    steps = record.steps()
    assert sorted(found["diffs"], key=int) == [str(step) for step in steps[1:]]
    for old_step, new_step in itertools.pairwise(steps):
        assert found["diffs"][str(new_step)] == diff(record, old_step, new_step)[0]
    assert any(text.startswith("diff --git a/calc.py") for text in found["diffs"].values())
