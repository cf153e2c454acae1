"""No tool call can pin an execution slot: FIFOs are refused or skipped, regexes are bounded.

Each call runs in a daemon thread joined with a timeout, so a regression fails
the test instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

from sandbox_supervisor.tools import InProcessExecutor, Limits, ToolRequest, ToolResult, Workspace

GUARD_S = 5.0


def _call_guarded(
    executor: InProcessExecutor, name: str, guard_s: float = GUARD_S, **arguments: object
) -> tuple[ToolResult, float]:
    box: list[ToolResult] = []
    started = time.monotonic()
    thread = threading.Thread(
        target=lambda: box.append(executor.execute(ToolRequest("c1", name, dict(arguments)))),
        daemon=True,
    )
    thread.start()
    thread.join(guard_s)
    elapsed = time.monotonic() - started
    if thread.is_alive():
        _unblock_fifos(executor.workspace.root)
        raise AssertionError(f"{name} still running after {guard_s} s")
    assert box, f"{name} raised instead of returning a result"
    return box[0], elapsed


def _unblock_fifos(root: Path) -> None:
    """Open every FIFO's other end once, so that a hung call can finish and exit."""
    for path in root.rglob("*"):
        if path.is_fifo():
            for flags in (os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY | os.O_NONBLOCK):
                with contextlib.suppress(OSError):
                    os.close(os.open(path, flags))


def test_read_file_on_a_fifo_is_refused_promptly(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    os.mkfifo(workspace.root / "pipe")
    result, elapsed = _call_guarded(executor, "read_file", path="pipe")
    assert result.status == "refused"
    assert "FIFO" in result.output
    assert "not a regular file" in result.output
    assert elapsed < 1.0


def test_search_text_skips_a_fifo_in_the_tree(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    (workspace.root / "sub").mkdir()
    os.mkfifo(workspace.root / "sub" / "a_pipe")
    (workspace.root / "sub" / "b.txt").write_text("needle here\n")
    result, _ = _call_guarded(executor, "search_text", pattern="needle")
    assert result.status == "ok"
    assert result.output == "sub/b.txt:1: needle here"


def test_regex_search_text_skips_a_fifo_in_the_tree(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    os.mkfifo(workspace.root / "a_pipe")
    (workspace.root / "b.txt").write_text("x = 1\nneedle = 2\n")
    result, _ = _call_guarded(executor, "search_text", pattern=r"^ne+dle\b", regex=True)
    assert result.status == "ok"
    assert result.output == "b.txt:2: needle = 2"


def test_search_text_on_a_fifo_path_finds_nothing_promptly(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    os.mkfifo(workspace.root / "pipe")
    result, _ = _call_guarded(executor, "search_text", pattern="x", path="pipe")
    assert (result.status, result.output) == ("ok", "no matches")


def test_write_file_onto_an_existing_fifo_is_refused_promptly(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    os.mkfifo(workspace.root / "pipe")
    result, _ = _call_guarded(executor, "write_file", path="pipe", content="data")
    assert result.status == "refused"
    assert "FIFO" in result.output
    assert (workspace.root / "pipe").is_fifo()


def test_list_dir_names_a_fifo_without_opening_it(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    os.mkfifo(workspace.root / "pipe")
    (workspace.root / "f.txt").write_text("abc")
    result, _ = _call_guarded(executor, "list_dir", path=".")
    assert result.status == "ok"
    assert result.output == "f.txt\t3\npipe\t[a named pipe (FIFO)]"


def test_read_file_on_a_directory_points_to_list_dir(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    (workspace.root / "d").mkdir()
    result, _ = _call_guarded(executor, "read_file", path="d")
    assert result.status == "failed"
    assert "list_dir" in result.output


def test_backtracking_regex_search_is_killed_at_its_deadline(workspace: Workspace) -> None:
    (workspace.root / "a.txt").write_text("found\n")
    (workspace.root / "b.txt").write_text("a" * 64 + "b\n")  # (a+)+$ is 2**64 steps here
    executor = InProcessExecutor(workspace, Limits(search_timeout_s=1.0))
    result, elapsed = _call_guarded(executor, "search_text", pattern=r"(a+)+$|found", regex=True)
    assert result.status == "timeout"
    assert result.truncated
    assert "results are partial" in result.output
    assert result.output.startswith("a.txt:1: found")  # matches before the kill are kept
    assert elapsed < 3.0


def test_literal_search_stops_at_its_deadline_with_a_marker(workspace: Workspace) -> None:
    for index in range(3):
        (workspace.root / f"f{index}.txt").write_text("needle\n")
    executor = InProcessExecutor(workspace, Limits(search_timeout_s=0.0))
    result, _ = _call_guarded(executor, "search_text", pattern="needle")
    assert result.status == "timeout"
    assert result.truncated
    assert "deadline; results are partial" in result.output


def test_regex_over_a_long_line_is_matched_against_its_head_only(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    (workspace.root / "long.txt").write_text("start " + "x" * 10_000 + " end\n")
    result, _ = _call_guarded(executor, "search_text", pattern="end$", regex=True)
    assert result.status == "ok"
    assert result.output.startswith("no matches")
    assert "longer than 4096 characters" in result.output
    assert result.truncated


def test_invalid_regex_is_reported_without_starting_a_search(
    executor: InProcessExecutor,
) -> None:
    result, _ = _call_guarded(executor, "search_text", pattern="(", regex=True)
    assert result.status == "invalid"


def test_text_that_utf8_cannot_encode_is_an_invalid_call_not_an_exception(
    tmp_path: Path,
) -> None:
    """A lone surrogate reaching a tool directly (not through the agent) is reported as an
    invalid call: tools never raise."""
    executor = InProcessExecutor(Workspace(tmp_path))
    result = executor.execute(
        ToolRequest(call_id="1", name="write_file", arguments={"path": "a", "content": "\udada"})
    )
    assert result.status == "invalid"
    assert not (tmp_path / "a").exists()
