"""Unit tests of sandboxctl.stack.runs: past runs read from an exported logs volume."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sandbox_supervisor.trajectory import read_records
from sandbox_supervisor.view import CHECK_TAIL_LINES, render

from sandboxctl.stack import runs

TASK = "hello.txt を作って"  # non-ASCII: shown as text, never as \u escapes


def run_records(
    run_id: str, ts: str, *, first_seq: int = 0, end: bool = True
) -> list[dict[str, Any]]:
    """The records of one run, as the supervisor writes them."""
    records: list[dict[str, Any]] = [
        {"type": "run_start", "task": TASK, "config": {"model": "tiny"}},
        {
            "type": "model_response",
            "step": 1,
            "reply": {
                "content": "\x1b]0;pwned\x07こんにちは \x1b[2Jworld",
                "usage": {"prompt_tokens": 12, "completion_tokens": 3},
                "latency_s": 0.25,
            },
        },
        {"type": "tool_call", "step": 1, "name": "write_file", "arguments": {"text": "家"}},
        {"type": "tool_result", "step": 1, "status": "ok", "exit_code": 0, "duration_s": 0.004,
         "output": "written"},
    ]  # fmt: skip
    if end:
        records.append(
            {"type": "run_end", "status": "finished", "steps": 1, "elapsed_s": 1.25,
             "tokens": {"prompt": 12, "completion": 3, "total": 15}, "answer": "完了"}
        )  # fmt: skip
    return [
        {"v": 1, "seq": first_seq + n, "ts": ts, "run_id": run_id, **record}
        for n, record in enumerate(records)
    ]


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


@pytest.fixture
def files() -> dict[str, bytes]:
    """Two files: the first holds two runs one after the other and a torn last line."""
    first = run_records("20260101T000000Z-aaaa11", "2026-01-01T00:00:00.0Z")
    second = run_records("20260101T000100Z-aaaa22", "2026-01-01T00:01:00.0Z", first_seq=5)
    third = run_records("20260102T000000Z-bbbb33", "2026-01-02T00:00:00.0Z", end=False)
    return {
        "run-a.jsonl": jsonl(first + second) + b'{"v": 1, "seq": 1',
        "run-b.jsonl": jsonl(third),
    }


def test_parse_files_splits_runs_oldest_first_and_skips_torn_lines(
    files: dict[str, bytes],
) -> None:
    found = runs.parse_files(files)
    assert [run.run_id for run in found] == [
        "20260101T000000Z-aaaa11",
        "20260101T000100Z-aaaa22",
        "20260102T000000Z-bbbb33",
    ]
    assert [run.file for run in found] == ["run-a.jsonl", "run-a.jsonl", "run-b.jsonl"]
    done, _, running = found
    assert (done.reason, done.steps, done.tokens, done.seconds) == ("finished", 1, 15, 1.25)
    assert (running.reason, running.steps, running.tokens) == ("running?", 1, 0)


def test_table_lists_id_start_end_steps_tokens_time_and_task(files: dict[str, bytes]) -> None:
    lines = runs.table(runs.parse_files(files))
    assert lines[0].split() == ["id", "start", "(UTC)", "end", "steps", "tokens", "time", "task"]
    assert lines[1].split() == [
        "20260101T000000Z-aaaa11", "2026-01-01", "00:00:00", "finished", "1", "15", "1.2", "s",
        "hello.txt", "を作って",
    ]  # fmt: skip
    assert len(lines) == 4


def test_find_by_prefix_or_the_last_run(files: dict[str, bytes]) -> None:
    found = runs.parse_files(files)
    assert runs.find(found).run_id == "20260102T000000Z-bbbb33"
    assert runs.find(found, "20260101T000100").run_id == "20260101T000100Z-aaaa22"
    with pytest.raises(runs.RunsError, match="several runs"):
        runs.find(found, "20260101")
    with pytest.raises(runs.RunsError, match="no run 'zzz'"):
        runs.find(found, "zzz")
    with pytest.raises(runs.RunsError, match="no runs yet"):
        runs.find([])


def test_render_prints_text_as_text_without_terminal_sequences(files: dict[str, bytes]) -> None:
    shown = runs.render(runs.find(runs.parse_files(files), "20260101T000000"))
    assert "hello.txt を作って" in shown
    assert '"text": "家"' in shown
    assert "こんにちは world" in shown
    assert "answer: 完了" in shown
    assert "\\u" not in shown
    assert "\x1b" not in shown
    assert "\x07" not in shown
    assert "pwned" not in shown
    # numbers one way: seconds with one decimal and a unit, tokens as integers
    assert shown.splitlines() == [
        "== run 20260101T000000Z-aaaa11 at 2026-01-01T00:00:00.0Z (run-a.jsonl)",
        f"   task: {TASK}",
        "   model: tiny",
        "-- step 1: 0.2 s, 12+3 tokens: こんにちは world",
        '   -> write_file {"text": "家"}',
        "   <- ok exit 0, 0.0 s: written",
        "== answer: 完了",
        "== end: finished after 1 steps, 15 tokens, 1.2 s; "
        "unverified: no check ran (add --check 'COMMAND')",
    ]


def test_render_is_the_supervisors_own(files: dict[str, bytes]) -> None:
    """`invoke runs.show` prints what `sandbox-supervisor show` prints, naming the file."""
    run = runs.find(runs.parse_files(files), "20260101T000100")
    assert runs.render(run) == render(list(run.records), source="run-a.jsonl")


def test_render_of_a_run_without_end_says_how_far_it_got(files: dict[str, bytes]) -> None:
    shown = runs.render(runs.find(runs.parse_files(files), "20260102"))
    assert "== end:" not in shown
    assert shown.splitlines()[-1] == "== unfinished: running? after 1 steps, 0 tokens, 0.0 s"


def test_summary_is_one_line(files: dict[str, bytes]) -> None:
    run = runs.find(runs.parse_files(files), "20260101T000000")
    assert runs.summary(run) == (
        "run 20260101T000000Z-aaaa11: finished after 1 steps, 15 tokens, 1.2 s; "
        "unverified: no check ran (add --check 'COMMAND')"
    )


def checked_run(passed: bool, output: str, exit_code: int | None = 1) -> runs.Run:
    """A finished run whose check ran with ``output``."""
    records = run_records("20260103T000000Z-cccc44", "2026-01-03T00:00:00.0Z")
    seq = records[-1]["seq"]  # the check comes just before run_end, as the supervisor writes
    run_id = "20260103T000000Z-cccc44"
    check = {"v": 1, "seq": seq, "ts": "2026-01-03T00:00:01.0Z", "run_id": run_id,
             "type": "check", "command": "test -f a.txt", "status": "ok",
             "exit_code": exit_code, "passed": passed, "output": output}  # fmt: skip
    records[-1] |= {"seq": seq + 1, "status": "passed" if passed else "failed",
                    "agent_status": "finished"}  # fmt: skip
    return runs.parse_files({"r.jsonl": jsonl([*records[:-1], check, records[-1]])})[0]


def test_failed_check_shows_command_exit_code_and_last_output_lines() -> None:
    output = "".join(f"line {n}\n" for n in range(30)) + "/bin/sh: syntax error\x1b[2J\n"
    report = runs.check_report(checked_run(False, output, exit_code=2))
    assert report[0] == "check: test -f a.txt: failed (exit 2)"
    assert report[1] == "   | ... 21 earlier line(s)"
    assert report[-1] == "   | /bin/sh: syntax error"
    assert len(report) == 2 + CHECK_TAIL_LINES


def test_failed_check_that_printed_nothing_says_so() -> None:
    assert runs.check_report(checked_run(False, "")) == [
        "check: test -f a.txt: failed (exit 1)",
        "   | (the check printed nothing)",
    ]


def test_checked_run_is_not_called_unverified() -> None:
    run = checked_run(True, "", exit_code=0)
    assert "unverified" not in runs.summary(run)
    assert runs.check_report(run) == ["check: test -f a.txt: passed (exit 0)"]


def test_render_shows_the_whole_answer_and_the_checks_output() -> None:
    run = checked_run(False, "missing a.txt\n")
    long_answer = "first line\n" + "word " * 200 + "\nlast line"
    records = [r | {"answer": long_answer} if r["type"] == "run_end" else r for r in run.records]
    shown = runs.render(runs.Run(run.file, tuple(records)))
    assert "== answer: first line" in shown
    assert "last line" in shown
    assert "word " * 200 in shown
    assert "== check: test -f a.txt: failed (exit 1)" in shown
    assert "   | missing a.txt" in shown


def test_export_writes_a_trajectory_the_supervisor_reads(
    files: dict[str, bytes], tmp_path: Path
) -> None:
    run = runs.find(runs.parse_files(files), "20260101T000100")
    written = runs.export(run, tmp_path)
    assert written == tmp_path / "run-20260101T000100Z-aaaa22.jsonl"
    read = read_records(written, allow_torn_tail=False)
    assert [r["seq"] for r in read.records] == list(range(5, 10))
    assert read.records == list(run.records)


def test_export_to_an_unwritable_place_is_an_error(files: dict[str, bytes], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(runs.RunsError, match="cannot write"):
        runs.export(runs.parse_files(files)[0], blocker / "sub" / "x.jsonl")


def test_trajectory_files_reads_jsonl_members_of_an_exported_volume() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("./run-a.jsonl", b"{}\n"), ("./notes.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert runs.trajectory_files(buffer.getvalue()) == {"run-a.jsonl": b"{}\n"}
