"""Implementation notes: appended with a UTC Zulu timestamp and the git author, never
rewriting earlier text."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sandboxctl._proc import Runner
from sandboxctl.journal import notes

NOW = datetime(2026, 11, 26, 18, 41, 23, tzinfo=UTC)


def test_timestamp_is_utc_zulu_to_the_second() -> None:
    """The plan's format: 2026-11-26T18:41:23Z."""
    assert notes.utc_stamp(NOW) == "2026-11-26T18:41:23Z"


def test_timestamp_of_another_zone_is_converted_to_utc() -> None:
    """19:41 at UTC+1 is written as 18:41Z."""
    plus_one = datetime(2026, 11, 26, 19, 41, 23, tzinfo=timezone(timedelta(hours=1)))
    assert notes.utc_stamp(plus_one) == "2026-11-26T18:41:23Z"


def test_naive_timestamp_is_refused() -> None:
    """A datetime without a zone could be anything: refused rather than guessed."""
    with pytest.raises(notes.NotesError):
        notes.utc_stamp(datetime(2026, 11, 26, 18, 41, 23))


def test_current_timestamp_is_zulu() -> None:
    """Without an explicit time, the entry still carries a Zulu stamp."""
    assert notes.ZULU.match(notes.utc_stamp())


def test_first_note_creates_the_file_with_its_header(tmp_path: Path) -> None:
    """A new notes file starts with the header, then the entry."""
    notes.add_note(tmp_path, "Created the machine.", phase=2, author="Ada <ada@x>", now=NOW)
    text = (tmp_path / notes.NOTES_FILE).read_text()
    assert text.startswith(notes.NOTES_HEADER)
    assert "## 2026-11-26T18:41:23Z | phase 2 | Ada <ada@x>\n\nCreated the machine.\n" in text


def test_second_note_keeps_earlier_text_byte_for_byte(tmp_path: Path) -> None:
    """Appending never rewrites: the file before is a prefix of the file after."""
    notes.add_note(tmp_path, "first", author="A <a@x>", now=NOW)
    path = tmp_path / notes.NOTES_FILE
    path.write_text(path.read_text() + "A hand-written paragraph.\n")
    before = path.read_bytes()
    notes.add_note(tmp_path, "second", author="B <b@x>", now=NOW + timedelta(minutes=1))
    after = path.read_bytes()
    assert after.startswith(before)
    assert [n.text for n in notes.parse_notes(after.decode())] == [
        "first\nA hand-written paragraph.",
        "second",
    ]


def test_file_without_final_newline_gets_one_before_the_entry(tmp_path: Path) -> None:
    """An entry never glues itself onto the last line of the file."""
    path = tmp_path / notes.NOTES_FILE
    path.parent.mkdir()
    path.write_text("# Notes\nlast line")
    notes.add_note(tmp_path, "next", author="A", now=NOW)
    assert path.read_text().startswith("# Notes\nlast line\n\n## 2026-11-26T18:41:23Z | A\n")


def test_phase_is_optional_and_parsed_back(tmp_path: Path) -> None:
    """Entries with and without a phase read back with their fields."""
    notes.add_note(tmp_path, "one", author="A <a@x>", now=NOW)
    notes.add_note(tmp_path, "two", phase=5, author="A <a@x>", now=NOW)
    parsed = notes.parse_notes((tmp_path / notes.NOTES_FILE).read_text())
    assert [(n.stamp, n.phase, n.author) for n in parsed] == [
        ("2026-11-26T18:41:23Z", None, "A <a@x>"),
        ("2026-11-26T18:41:23Z", 5, "A <a@x>"),
    ]


def test_unknown_phase_is_refused_and_nothing_written(tmp_path: Path) -> None:
    """Only the plan's phases 1-5 exist."""
    with pytest.raises(notes.NotesError, match="phase 9"):
        notes.add_note(tmp_path, "x", phase=9, author="A", now=NOW)
    assert not (tmp_path / notes.NOTES_FILE).exists()


def test_empty_note_is_refused(tmp_path: Path) -> None:
    """A note must say something."""
    with pytest.raises(notes.NotesError, match="empty"):
        notes.add_note(tmp_path, "  \n", author="A", now=NOW)


def test_heading_like_line_in_text_cannot_forge_an_entry(tmp_path: Path) -> None:
    """A line of the text that looks like an entry heading is escaped."""
    forged = "## 2020-01-01T00:00:00Z | Mallory"
    notes.add_note(tmp_path, f"quote:\n{forged}", author="A", now=NOW)
    parsed = notes.parse_notes((tmp_path / notes.NOTES_FILE).read_text())
    assert len(parsed) == 1
    assert parsed[0].text == f"quote:\n\\{forged}"


def test_author_comes_from_git_config(tmp_path: Path) -> None:
    """`git config user.name`/`user.email` of the repository name the author."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.name", "Grace H"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.email", "g@x.org"], check=True)
    entry = notes.add_note(tmp_path, "done", now=NOW)
    assert "| Grace H <g@x.org>" in entry


def test_author_is_unknown_without_git_on_path_fake(tmp_path: Path) -> None:
    """With no git executable on PATH (an empty fake PATH), the author is `unknown`."""
    empty = tmp_path / "emptybin"
    empty.mkdir()
    assert notes.git_author(Runner(env={"PATH": str(empty)})) == "unknown"


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    """Many threads appending at once: every entry arrives whole, none is lost."""

    def write(number: int) -> None:
        notes.add_note(tmp_path, f"entry {number}\n" + "x" * 5000, author="T", now=NOW)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parsed = notes.parse_notes((tmp_path / notes.NOTES_FILE).read_text())
    assert sorted(n.text.split("\n")[0] for n in parsed) == sorted(f"entry {n}" for n in range(20))
    assert all(n.text.endswith("x" * 5000) for n in parsed)


def test_notes_add_task_appends_through_invoke(tmp_path: Path) -> None:
    """`invoke notes.add "text" --phase 3` run in a sandbox folder appends a phase-3 entry."""
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=x\n")
    (tmp_path / "tasks.py").write_text(
        "from invoke.collection import Collection\n"
        "from sandboxctl.tasks import plan\n"
        "ns = Collection(*plan.collections())\n"
    )
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "notes.add", "adapted compose", "--phase", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    parsed = notes.parse_notes((tmp_path / notes.NOTES_FILE).read_text())
    assert [(n.phase, n.text) for n in parsed] == [(3, "adapted compose")]
    assert notes.ZULU.match(parsed[0].stamp)
