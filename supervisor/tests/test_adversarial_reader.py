"""What people read: trajectories of the wrong shape, and model text aimed at the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox_supervisor.cli import main
from sandbox_supervisor.trajectory import (
    TrajectoryError,
    TrajectoryWriter,
    parse_records,
    read_records,
    recover_dir,
)
from sandbox_supervisor.view import render, safe

INJECTION = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m \x9b2J \x1bP+q\x1b\\ \u202edesrever\x07done"


def _unfinished(path: Path, run_id: str) -> None:
    with TrajectoryWriter(path, run_id) as log:
        log.write("run_start", task="t")
        log.write("tool_call", step=1, call_id="1.0", name="list_dir", arguments={})


def _good(**fields: object) -> dict[str, object]:
    """A well-formed record that would come third in a file (seq 2), changed by ``fields``."""
    record = {"v": 1, "seq": 2, "ts": "2025-01-01T00:00:00Z", "run_id": "r", "type": "error"}
    record.update(fields)
    return record


BAD_LINES = [
    json.dumps({k: v for k, v in _good().items() if k != "run_id"}),
    json.dumps(_good()).replace('"seq": 2', '"seq": 1e400'),
    json.dumps(_good(step="two")),
    json.dumps(_good(seq=True)),
    json.dumps(_good(type="surprise")),
    json.dumps(_good(call_id=["x"])),
    json.dumps([1, 2, 3]),
    "[" * 50_000 + "]" * 50_000,
    '{"v": 1, "seq": NaN}',
    "not json at all",
]


@pytest.mark.parametrize("bad", BAD_LINES)
def test_a_line_of_the_wrong_shape_is_a_trajectory_error_not_a_crash(
    tmp_path: Path, bad: str
) -> None:
    path = tmp_path / "t.jsonl"
    _unfinished(path, "r")
    with path.open("a") as handle:
        handle.write(bad + "\n")
    with pytest.raises(TrajectoryError):
        read_records(path)
    skipped = read_records(path, skip_bad=True)
    assert len(skipped.skipped) == 1
    assert len(skipped.records) == 2


def test_a_damaged_line_in_the_middle_hides_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    _unfinished(path, "r")
    with path.open("a") as handle:
        handle.write("not json at all\n")
        handle.write(json.dumps(_good(seq=3, type="run_end", status="finished")) + "\n")
    read = read_records(path, skip_bad=True)
    assert [record["seq"] for record in read.records] == [0, 1, 3]
    assert [line.split(": ")[0] for line in read.skipped] == [f"{path}:3"]
    with pytest.raises(TrajectoryError, match=":3: damaged record"):
        read_records(path)


def test_records_in_memory_are_read_as_from_a_file() -> None:
    data = (json.dumps(_good(seq=0, type="run_start")) + "\n" + '{"v": 1').encode()
    read = parse_records(data, "stdout")
    assert [record["type"] for record in read.records] == ["run_start"]
    assert read.torn_bytes == len('{"v": 1')
    with pytest.raises(TrajectoryError, match=r"^stdout: torn last line"):
        parse_records(data, "stdout", allow_torn_tail=False)


def test_recover_goes_on_past_files_it_cannot_read(tmp_path: Path, figures: dict[str, str]) -> None:
    for name in ("a", "c"):
        _unfinished(tmp_path / f"{name}.jsonl", name)
    for number, bad in enumerate(BAD_LINES):
        path = tmp_path / f"b{number}.jsonl"
        _unfinished(path, f"b{number}")
        with path.open("a") as handle:
            handle.write(bad + "\n")
    outcome = recover_dir(tmp_path)
    assert outcome[tmp_path / "a.jsonl"] == "interrupted"
    assert outcome[tmp_path / "c.jsonl"] == "interrupted"
    reported = [p for p, what in outcome.items() if what.startswith("not recovered")]
    figures["reader"] = (
        f"{len(reported)}/{len(BAD_LINES)} malformed files reported, "
        f"{len(outcome) - len(reported)}/2 good files recovered past them"
    )
    assert len(reported) == len(BAD_LINES)


def test_show_skips_and_reports_bad_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.jsonl"
    _unfinished(path, "r")
    with path.open("a") as handle:
        handle.write(BAD_LINES[2] + "\n")
    assert main(["show", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "== run r" in out
    assert "skipped a line of the wrong shape" in err


def test_records_with_odd_field_types_render_as_odd_not_fatal() -> None:
    text = render([_good(type="model_response", reply="not an object", step=1)])
    assert "odd shape" in text


def test_safe_removes_every_control_sequence() -> None:
    cleaned = safe(INJECTION + "\nline two\ttab")
    assert not any(ch in cleaned for ch in "\x1b\x07\x9b\u202e")
    assert cleaned.endswith("done\nline two\ttab")


def test_run_and_show_never_print_terminal_controls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ws").mkdir()
    monkeypatch.setenv("SUPERVISOR_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("SUPERVISOR_LOG_DIR", str(tmp_path / "logs"))
    script = tmp_path / "script.json"
    steps = [
        {"content": INJECTION},
        {"action": {"tool": "write_file", "args": {"path": "x", "content": INJECTION}}},
        {"action": {"tool": "read_file", "args": {"path": INJECTION[:20]}}},
        {"action": {"tool": "finish", "args": {"answer": INJECTION}}, "thought": INJECTION},
    ]
    script.write_text(json.dumps(steps))
    assert main(["run", "--scripted", str(script), INJECTION]) == 0
    (log,) = (tmp_path / "logs").glob("*.jsonl")
    assert main(["show", str(log)]) == 0
    out, err = capsys.readouterr()
    assert "done" in out
    for stream in (out, err):
        assert not any(ch in stream for ch in "\x1b\x07\x9b\u202e")
