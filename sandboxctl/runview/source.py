"""Where the viewer's runs come from: the stack's logs volume (as ``runs.list`` reads it),
or a folder of trajectory files on the host (``runs.export``'s files, a copied volume);
and each step's diff, from the run's record of its changes, when the run has one."""

from __future__ import annotations

import re
from pathlib import Path

from sandboxctl.stack.runs import Run, RunsError, parse_files

SNAPSHOT = "snapshot"
"""The trajectory record that says a step's changes were recorded (issue 23)."""


def recorded_steps(run: Run) -> list[int]:
    """The steps whose changes the run recorded (its ``snapshot`` records), step 0 left out."""
    return [
        int(record["step"])
        for record in run.records
        if record.get("type") == SNAPSHOT
        and isinstance(record.get("step"), int)
        and not isinstance(record.get("step"), bool)
        and record["step"] > 0
    ]


def with_step_diffs(run: Run, diffs: dict[int, str]) -> Run:
    """``run`` with each step's diff on its ``snapshot`` record (the page shows a record's
    ``diff`` under its step); steps without a diff are left as they are."""
    records = tuple(
        {**record, "diff": diffs[record["step"]]}
        if record.get("type") == SNAPSHOT and diffs.get(record.get("step", -1))
        else record
        for record in run.records
    )
    return Run(run.file, records)


def read_folder(path: Path) -> list[Run]:
    """Every run in ``path``: a ``.jsonl`` trajectory, or a folder searched for them."""
    if path.is_file():
        files = {path.name: path.read_bytes()}
    elif path.is_dir():
        files = {
            str(found.relative_to(path)): found.read_bytes()
            for found in sorted(path.rglob("*.jsonl"))
            if found.is_file()
        }
    else:
        raise RunsError(f"{path} is neither a trajectory file nor a folder")
    return parse_files(files)


def page_name(run_id: str) -> str:
    """A file name for a run's page: the id with anything but letters, digits, ``.``,
    ``_`` and ``-`` replaced (a run id comes from a file a run wrote)."""
    return "run-" + (re.sub(r"[^A-Za-z0-9._-]", "_", run_id)[:80] or "unnamed") + ".html"


def write_page(html: str, run_id: str, output: Path) -> Path:
    """Write a run's page to ``output`` (a file, or a folder it goes into); return its path."""
    dest = output / page_name(run_id) if output.is_dir() or not output.suffix else output
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(html, encoding="utf-8")
    except OSError as error:
        raise RunsError(f"cannot write {dest}: {error.strerror}") from error
    return dest
