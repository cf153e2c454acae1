"""Runs are listed, shown and exported from the host, without entering a container."""

from __future__ import annotations

import json
import re
from pathlib import Path

from e2e_sandbox import TASK, E2EStack


def test_run_prints_the_trajectory_once_and_names_the_run(e2e_stack: E2EStack) -> None:
    """`invoke run` streams the steps, then one line on how it ended (no second copy)."""
    assert "== run " not in e2e_stack.run_output  # the old full `show` after the run
    assert "read it with `invoke runs.show --id " in e2e_stack.run_output
    # three steps: a few lines each, and the end; not the run printed twice
    assert len(e2e_stack.run_output.splitlines()) <= 30, e2e_stack.run_output


def test_run_id_printed_is_the_name_of_its_trajectory_file(e2e_stack: E2EStack) -> None:
    """One id for one run: the one `invoke run` prints names its file in the logs volume."""
    printed = re.search(r"runs\.show --id (\S+)`", e2e_stack.run_output)
    assert printed, e2e_stack.run_output
    assert f"trajectory: /logs/{printed.group(1)}.jsonl" in e2e_stack.run_output


def test_runs_list_show_and_export(e2e_stack: E2EStack, tmp_path: Path) -> None:
    listed = e2e_stack.invoke("runs.list").stdout
    assert TASK in listed
    shown = e2e_stack.invoke("runs.show").stdout
    assert shown.startswith("== run ")
    assert "\\u" not in shown
    assert "\x1b" not in shown
    exported = e2e_stack.invoke("runs.export", "--output", str(tmp_path)).stdout
    files = list(tmp_path.glob("run-*.jsonl"))
    assert len(files) == 1, exported
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert records[0]["type"] == "run_start"
