"""edit_file replaces one exact, unique text and says why when it cannot; view_file shows
numbered line ranges within its caps. (Escapes through links and hard links are in
test_adversarial_paths.py with every other tool.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sandbox_supervisor.dialects import action_schema
from sandbox_supervisor.scripted import ScriptedModel
from sandbox_supervisor.tools import InProcessExecutor, Limits, ToolRequest, ToolResult, Workspace

SOURCE = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"


def _call(executor: InProcessExecutor, name: str, **arguments: object) -> ToolResult:
    return executor.execute(ToolRequest("c1", name, dict(arguments)))


def _source(workspace: Workspace, text: str = SOURCE, mode: int = 0o644) -> Path:
    path = workspace.root / "calc.py"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_edit_replaces_the_unique_text_and_keeps_the_mode(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    path = _source(workspace, mode=0o755)
    result = _call(
        executor,
        "edit_file",
        path="calc.py",
        old_text="def add(a, b):\n    return a - b",
        new_text="def add(a, b):\n    return a + b",
    )
    assert result.status == "ok", result.output
    assert path.read_text() == SOURCE.replace("return a - b", "return a + b", 1)
    assert path.stat().st_mode & 0o777 == 0o755
    assert "lines 1-2" in result.output
    assert "     2\t    return a + b" in result.output


def test_an_ambiguous_text_is_refused_with_every_candidate_line(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    path = _source(workspace)
    result = _call(executor, "edit_file", path="calc.py", old_text="return a - b", new_text="x")
    assert result.status == "failed"
    assert "occurs 2 times" in result.output
    assert "     2\t    return a - b" in result.output
    assert "     6\t    return a - b" in result.output
    assert path.read_text() == SOURCE


def test_a_missing_text_is_refused_with_the_closest_lines(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    path = _source(workspace)
    result = _call(
        executor, "edit_file", path="calc.py", old_text="def add(a,b):", new_text="def add():"
    )
    assert result.status == "failed"
    assert "not found" in result.output
    assert "     1\tdef add(a, b):" in result.output
    assert path.read_text() == SOURCE


def test_edit_refuses_a_file_over_the_write_cap_without_changing_it(
    workspace: Workspace,
) -> None:
    path = _source(workspace, "x" * 5000 + "\nneedle\n")
    executor = InProcessExecutor(workspace, Limits(write_cap_bytes=1000))
    result = _call(executor, "edit_file", path="calc.py", old_text="needle", new_text="pin")
    assert result.status == "refused"
    assert "needle" in path.read_text()


def test_edit_refuses_a_fifo_without_blocking(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    os.mkfifo(workspace.root / "pipe")
    started = time.monotonic()
    result = _call(executor, "edit_file", path="pipe", old_text="a", new_text="b")
    assert result.status == "refused"
    assert time.monotonic() - started < 2.0


def test_edit_refuses_protected_directories(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    (workspace.root / ".git").mkdir()
    (workspace.root / ".git" / "config").write_text("[core]\n")
    result = _call(executor, "edit_file", path=".git/config", old_text="core", new_text="x")
    assert result.status == "refused"
    assert (workspace.root / ".git" / "config").read_text() == "[core]\n"


def test_view_shows_a_numbered_range(workspace: Workspace, executor: InProcessExecutor) -> None:
    _source(workspace, "".join(f"line {n}\n" for n in range(1, 101)))
    result = _call(executor, "view_file", path="calc.py", start_line=10, end_line=12)
    assert result.status == "ok"
    assert result.output.splitlines() == [
        "calc.py: lines 10-12",
        "    10\tline 10",
        "    11\tline 11",
        "    12\tline 12",
    ]
    whole = _call(executor, "view_file", path="calc.py")
    assert whole.output.splitlines()[0] == "calc.py: lines 1-100 of 100"


def test_view_past_the_end_says_how_many_lines_there_are(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    _source(workspace, "a\nb\n")
    result = _call(executor, "view_file", path="calc.py", start_line=5)
    assert result.status == "failed"
    assert "has 2 lines" in result.output


def test_view_stops_at_the_output_cap_and_says_where_to_continue(workspace: Workspace) -> None:
    _source(workspace, "".join(f"{n:04d} {'x' * 90}\n" for n in range(1000)))
    executor = InProcessExecutor(workspace, Limits(read_cap_bytes=1000))
    result = _call(executor, "view_file", path="calc.py")
    assert result.truncated
    assert "continue with start_line=" in result.output
    assert len(result.output) < 2000


def test_view_of_a_huge_sparse_file_stops_reading_early(workspace: Workspace) -> None:
    with (workspace.root / "sparse.bin").open("wb") as handle:
        handle.truncate(1 << 40)
    executor = InProcessExecutor(workspace, Limits(read_cap_bytes=4096))
    started = time.monotonic()
    result = _call(executor, "view_file", path="sparse.bin", start_line=10)
    assert time.monotonic() - started < 5.0
    assert "too large" in result.output


def test_view_strips_terminal_escapes(workspace: Workspace, executor: InProcessExecutor) -> None:
    _source(workspace, "ok\x1b]0;owned\x07 \x1b[31mred\n")
    result = _call(executor, "view_file", path="calc.py")
    assert "\x1b" not in result.output
    assert "\x07" not in result.output


def test_both_tools_are_in_both_dialects_and_the_scripted_model(
    executor: InProcessExecutor,
) -> None:
    specs = executor.specs()
    schema = action_schema(specs)
    names = [c["properties"]["tool"]["const"] for c in schema["properties"]["action"]["anyOf"]]
    assert {"edit_file", "view_file"} <= set(names)
    model = ScriptedModel(
        [{"action": {"tool": "edit_file", "args": {"path": "a", "old_text": "x", "new_text": "y"}}}]
    )
    native = model.complete([], tools=specs, deadline=time.monotonic() + 5)
    assert native.tool_calls[0].name == "edit_file"
    edit = next(spec for spec in specs if spec["name"] == "edit_file")
    assert edit["parameters"]["required"] == ["path", "old_text", "new_text"]
