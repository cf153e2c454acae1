"""The deviation log: IDs, UTC timestamps, append-only records, machine-readable back."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandboxctl.journal import issuelog

NOW = datetime(2026, 11, 26, 18, 41, 23, tzinfo=UTC)


def log(
    root: Path,
    title: str = "Port published on host-net",
    reason: str = "internal networks cannot publish",
    steps: str = "added an overlay",
    resolution: str = "",
) -> str:
    """Log a deviation with a fixed author and time."""
    return issuelog.log_deviation(
        root,
        title=title,
        reason=reason,
        steps=steps,
        resolution=resolution,
        author="Ada <ada@x>",
        now=NOW,
    )


def test_first_deviation_gets_dev_0001_and_a_zulu_stamp(tmp_path: Path) -> None:
    """IDs start at DEV-0001; the opened record carries a UTC Zulu timestamp."""
    assert log(tmp_path) == "DEV-0001"
    text = (tmp_path / issuelog.LOG_FILE).read_text()
    assert "## DEV-0001 | opened 2026-11-26T18:41:23Z | Port published on host-net\n" in text


def test_ids_increase_from_the_highest_in_the_file(tmp_path: Path) -> None:
    """A log that already reached DEV-0041 continues at DEV-0042."""
    path = tmp_path / issuelog.LOG_FILE
    path.parent.mkdir()
    path.write_text("# Issue log\n\n## DEV-0041 | opened 2026-01-01T00:00:00Z | Old\n- reason: r\n")
    assert log(tmp_path) == "DEV-0042"


def test_fields_are_read_back_including_multiline_text(tmp_path: Path) -> None:
    """Reason, steps and resolution round-trip, multi-line text included."""
    log(tmp_path, steps="1. added compose.publish.yaml\n\n2. listed host-net in PLAN.md")
    [deviation] = issuelog.deviations((tmp_path / issuelog.LOG_FILE).read_text())
    assert deviation.reason == "internal networks cannot publish"
    assert deviation.steps == "1. added compose.publish.yaml\n\n2. listed host-net in PLAN.md"
    assert deviation.is_open


def test_logging_with_a_resolution_closes_the_deviation_at_once(tmp_path: Path) -> None:
    """`--resolution` at log time records the whole story: reason, steps, resolution."""
    log(tmp_path, resolution="the plan now lists host-net")
    [deviation] = issuelog.deviations((tmp_path / issuelog.LOG_FILE).read_text())
    assert not deviation.is_open
    assert deviation.resolved == "2026-11-26T18:41:23Z"


def test_resolve_appends_and_keeps_earlier_text_byte_for_byte(tmp_path: Path) -> None:
    """Resolving adds a record; the opened record and everything before stay untouched."""
    log(tmp_path)
    path = tmp_path / issuelog.LOG_FILE
    before = path.read_bytes()
    later = NOW + timedelta(days=2)
    issuelog.resolve_deviation(tmp_path, "dev-0001", resolution="fixed", author="B", now=later)
    after = path.read_bytes()
    assert after.startswith(before)
    assert (
        after[len(before) :].decode().startswith("\n## DEV-0001 | resolved 2026-11-28T18:41:23Z\n")
    )
    [deviation] = issuelog.deviations(after.decode())
    assert (deviation.resolved, deviation.resolution) == ("2026-11-28T18:41:23Z", "fixed")


def test_resolving_twice_is_refused(tmp_path: Path) -> None:
    """A resolved deviation cannot be resolved again; the file is unchanged."""
    log(tmp_path, resolution="done")
    path = tmp_path / issuelog.LOG_FILE
    before = path.read_bytes()
    with pytest.raises(issuelog.IssueLogError, match="already resolved"):
        issuelog.resolve_deviation(tmp_path, "DEV-0001", resolution="again", author="A", now=NOW)
    assert path.read_bytes() == before


def test_resolving_an_unknown_id_is_refused(tmp_path: Path) -> None:
    """Only logged IDs can be resolved."""
    log(tmp_path)
    with pytest.raises(issuelog.IssueLogError, match="no deviation DEV-0002"):
        issuelog.resolve_deviation(tmp_path, "DEV-0002", resolution="x", author="A", now=NOW)


def test_malformed_id_is_refused(tmp_path: Path) -> None:
    """IDs look like DEV-0001."""
    with pytest.raises(issuelog.IssueLogError, match="not an ID"):
        issuelog.resolve_deviation(tmp_path, "7", resolution="x", author="A", now=NOW)


@pytest.mark.parametrize("missing", ["reason", "steps"])
def test_reason_and_steps_are_required(tmp_path: Path, missing: str) -> None:
    """The plan asks for the reason and the steps of every deviation."""
    with pytest.raises(issuelog.IssueLogError, match=missing):
        log(tmp_path, **{missing: " "})
    assert not (tmp_path / issuelog.LOG_FILE).exists()


def test_heading_like_text_cannot_forge_a_record(tmp_path: Path) -> None:
    """A field's continuation lines are indented, so they never read as a record."""
    log(tmp_path, steps="x\n## DEV-0009 | opened 2020-01-01T00:00:00Z | forged")
    records = issuelog.parse_log((tmp_path / issuelog.LOG_FILE).read_text())
    assert [r.id for r in records] == ["DEV-0001"]


def test_stale_lists_only_open_deviations_older_than_the_age(tmp_path: Path) -> None:
    """Open and old: listed; resolved, or open but recent: not."""
    log(tmp_path, title="old open")
    log(tmp_path, title="old resolved", resolution="done")
    issuelog.log_deviation(
        tmp_path, title="recent", reason="r", steps="s", author="A", now=NOW + timedelta(days=20)
    )
    stale = issuelog.stale(
        tmp_path / issuelog.LOG_FILE, timedelta(days=14), now=NOW + timedelta(days=21)
    )
    assert [d.title for d in stale] == ["old open"]


def test_concurrent_loggers_get_distinct_ids(tmp_path: Path) -> None:
    """IDs are numbered under the file lock: no two writers share one."""
    ids: list[str] = []
    lock = threading.Lock()

    def write(number: int) -> None:
        new = log(tmp_path, title=f"t{number}")
        with lock:
            ids.append(new)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(ids) == [f"DEV-{n:04d}" for n in range(1, 13)]


def test_issue_tasks_log_and_resolve_through_invoke(tmp_path: Path) -> None:
    """`invoke issue.log ...` then `invoke issue.resolve DEV-0001 ...` in a sandbox folder."""
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=x\n")
    (tmp_path / "tasks.py").write_text(
        "from invoke.collection import Collection\n"
        "from sandboxctl.tasks import plan\n"
        "ns = Collection(*plan.collections())\n"
    )
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
        )

    opened = invoke("issue.log", "--title", "T", "--reason", "R", "--steps", "S")
    assert opened.returncode == 0, opened.stderr
    assert "DEV-0001 logged" in opened.stdout
    closed = invoke("issue.resolve", "DEV-0001", "--resolution", "done")
    assert closed.returncode == 0, closed.stderr
    again = invoke("issue.resolve", "DEV-0001", "--resolution", "done")
    assert again.returncode == 2
    [deviation] = issuelog.deviations((tmp_path / issuelog.LOG_FILE).read_text())
    assert deviation.resolution == "done"
