"""Outcomes are verified, not claimed: `invoke run --check` and `invoke eval` on the stack.

`invoke run "..." --check "test -f hello.txt"` runs the check in the tools container after
the run: the run ends `failed` while the file is missing and `passed` once it is there,
whatever the model said. `invoke eval` runs the bundled suite with the scripted model,
which must pass every task (every check can pass), and with the tiny random model, whose
runs must fail almost all (no check passes without the work); it writes the JSON, the
Markdown table and the PNG chart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from e2e_sandbox import FIGURES, E2EStack, trajectory_records

CHECK = "test -f hello.txt"


def _run_end(project: str, task: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run_end (and all records) of the last run of ``task`` in the logs volume."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for record in trajectory_records(project):
        runs.setdefault(record["run_id"], []).append(record)
    mine = [r for r in runs.values() if r[0].get("type") == "run_start" and r[0]["task"] == task]
    assert mine, f"no run of {task!r} in the logs volume"
    records = sorted(mine, key=lambda r: r[0]["ts"])[-1]
    return records[-1], records


def test_run_check_fails_without_the_file_and_passes_with_it(e2e_stack: E2EStack) -> None:
    removed = e2e_stack.exec("tools", "rm", "-f", "/workspace/hello.txt")
    assert removed.returncode == 0, removed.stderr
    task = "Checked run: say hello (the file is missing)"
    missing = e2e_stack.invoke("run", task, "--max-steps", "1", "--check", CHECK, check=False)
    end, records = _run_end(e2e_stack.project, task)
    there = e2e_stack.exec("tools", "test", "-f", "/workspace/hello.txt").returncode == 0
    assert not there, "the tiny model wrote hello.txt in one step: the test proves nothing"
    assert end["type"] == "run_end", missing.stdout[-2000:]
    assert end["status"] == "failed", end
    assert end["exit_code"] == 7
    assert end["check"]["command"] == CHECK
    assert end["agent_status"] in ("step_budget", "finished", "invalid_replies")
    check = next(r for r in records if r["type"] == "check")
    assert check["exit_code"] == 1
    assert records[0]["check"] == CHECK
    assert missing.returncode == 1  # `invoke run` itself fails when the check does
    # the check's verdict, exit code and output are printed, then why invoke run failed
    assert f"check: {CHECK}: failed (exit 1)" in missing.stdout.splitlines()
    assert "run: the check failed (its output is above): the task was not done" in missing.stderr

    written = e2e_stack.exec("tools", "sh", "-c", "echo hello > /workspace/hello.txt")
    assert written.returncode == 0, written.stderr
    task = "Checked run: say hello (the file is there)"
    present = e2e_stack.invoke("run", task, "--max-steps", "1", "--check", CHECK, check=False)
    end, _ = _run_end(e2e_stack.project, task)
    assert (end["status"], end["exit_code"], end["check"]["passed"]) == ("passed", 0, True)
    assert present.returncode == 0, present.stderr[-2000:]


def test_eval_scripted_passes_all_tiny_almost_none_and_the_report_is_written(
    e2e_stack: E2EStack, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    result = e2e_stack.invoke(
        "eval", "--model", "scripted,tiny", "--repeat", "2", "--max-steps", "1",
        "--out", str(out), timeout=3000,
    )  # fmt: skip
    paths = [out / name for name in ("eval.json", "eval.md", "eval.png")]
    assert all(p.is_file() for p in paths), result.stdout[-3000:]
    data = json.loads(paths[0].read_text())
    scripted, tiny = data["models"]["scripted"]["all"], data["models"]["tiny"]["all"]
    assert scripted["runs"] == tiny["runs"] == 2 * data["meta"]["tasks"]
    assert data["meta"]["tasks"] >= 12
    failed = [
        (r["task"], r["status"], r["reason"])
        for r in data["runs"]
        if r["model"] == "scripted" and not r["passed"]
    ]
    assert failed == []
    assert scripted["pass_rate"] == 1.0
    assert tiny["pass_rate"] <= 0.1, tiny
    broken = [
        (r["model"], r["task"], r["repeat"], r["status"], r["reason"][:200])
        for r in data["runs"]
        if r["status"] not in ("passed", "failed")  # no verdict: the stack failed the run
    ]
    assert broken == []
    table = paths[1].read_text()
    assert f"| scripted | 100% | {scripted['runs']}/{scripted['runs']} |" in table
    assert table in result.stdout
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftover = e2e_stack.exec("tools", "sh", "-c", "ls /workspace/eval 2>/dev/null")
    assert leftover.stdout.strip() == "", "the runs' workspace folders were not removed"
    FIGURES["eval"] = (
        f"eval: scripted {100 * scripted['pass_rate']:.0f}% of {scripted['runs']} runs "
        f"({scripted['wall_s_mean']:.1f} s a run), tiny {100 * tiny['pass_rate']:.0f}% of "
        f"{tiny['runs']} ({tiny['wall_s_mean']:.1f} s a run, {tiny['end_reasons']})"
    )
    print(f"\n{FIGURES['eval']}")
