"""Implementation notes: what was actually done, appended with a UTC timestamp and author.

``docs/IMPLEMENTATION_NOTES.md`` is append-only. Each entry is one Markdown section::

    ## 2026-11-26T18:41:23Z | phase 2 | Ada Lovelace <ada@example.org>

    Created the Podman machine with 4 CPUs.

The heading is machine-readable (:func:`parse_notes`). An entry is written with a single
``write`` on a descriptor opened ``O_APPEND`` under an exclusive lock and then fsynced, so
concurrent writers never interleave and earlier text is never rewritten. The helpers here
(:func:`utc_stamp`, :func:`git_author`, :func:`append_entry`) are shared with
:mod:`sandboxctl.journal.issuelog`.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.errors import SandboxError

NOTES_FILE = Path("docs") / "IMPLEMENTATION_NOTES.md"
PHASES = {
    1: "prepare the control plane",
    2: "initialise the container host",
    3: "adapt the repository",
    4: "validate",
    5: "document",
}
NOTES_HEADER = """# Implementation notes

What was actually done, newest last. Append with `invoke notes.add "text" [--phase N]`;
never edit or remove an entry (the plan's drift rules). Phases are those of PLAN.md.
"""
ZULU = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_HEADING = re.compile(
    r"^## (?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)"
    r"(?: \| phase (?P<phase>\d+))? \| (?P<author>.+)$"
)


class NotesError(SandboxError, ValueError):
    """A note cannot be written (empty text, unknown phase, unreadable file)."""

    exit_code = 2


def utc_stamp(now: datetime | None = None) -> str:
    """Return ``now`` (default: the current time) as UTC Zulu, e.g. ``2026-11-26T18:41:23Z``."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        raise NotesError("a naive datetime has no time zone; pass an aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> datetime:
    """Parse a Zulu timestamp written by :func:`utc_stamp` into an aware datetime."""
    if not ZULU.match(text):
        raise ValueError(f"{text!r} is not a UTC timestamp like 2026-11-26T18:41:23Z")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def git_author(runner: Runner | None = None, cwd: Path | None = None) -> str:
    """Return ``Name <email>`` from ``git config`` (``unknown`` for what is not set)."""
    run = runner or Runner()

    def value(key: str) -> str:
        try:
            result = run.run(["git", "config", "--get", key], cwd=cwd)
        except CommandNotFound:
            return ""
        return result.stdout.strip() if result.ok else ""

    name, email = value("user.name"), value("user.email")
    if not name and not email:
        return "unknown"
    return f"{name or 'unknown'} <{email}>" if email else name


@contextmanager
def _locked_append(path: Path) -> Iterator[int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def append_entry(path: Path, header: str, render: Callable[[str], str]) -> str:
    """Append ``render(current_text)`` to ``path`` in one locked write, then fsync.

    ``render`` sees the file as it is under the lock (to number entries, for example); a new
    file starts with ``header``. Returns the text appended. Earlier bytes are never touched.
    """
    with _locked_append(path) as fd:
        current = path.read_text(encoding="utf-8")
        prefix = ""
        if not current:
            prefix = header
        elif not current.endswith("\n"):
            prefix = "\n"
        text = prefix + render(current)
        data = text.encode("utf-8")
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    return text


def escape_body(text: str) -> str:
    """Return ``text`` with lines that would read as an entry heading escaped (``\\#``)."""
    lines = text.strip("\n").splitlines()
    return "\n".join("\\" + line if line.startswith("#") else line for line in lines)


@dataclass(frozen=True)
class Note:
    """One parsed entry of the notes file."""

    stamp: str
    phase: int | None
    author: str
    text: str
    line: int


def format_note(text: str, *, stamp: str, author: str, phase: int | None = None) -> str:
    """Return the Markdown of one entry (a blank line before and after)."""
    phase_part = f" | phase {phase}" if phase is not None else ""
    return f"\n## {stamp}{phase_part} | {author}\n\n{escape_body(text)}\n"


def add_note(
    root: Path,
    text: str,
    *,
    phase: int | None = None,
    author: str | None = None,
    now: datetime | None = None,
    runner: Runner | None = None,
) -> str:
    """Append a note to ``ROOT/docs/IMPLEMENTATION_NOTES.md`` and return the entry written."""
    if not text.strip():
        raise NotesError("the note is empty: say what was done")
    if phase is not None and phase not in PHASES:
        known = ", ".join(f"{number} ({name})" for number, name in PHASES.items())
        raise NotesError(f"phase {phase} is not one of the plan's phases: {known}")
    who = author or git_author(runner, cwd=root)
    entry = format_note(text, stamp=utc_stamp(now), author=who, phase=phase)
    append_entry(root / NOTES_FILE, NOTES_HEADER, lambda _current: entry)
    return entry


def parse_notes(text: str) -> list[Note]:
    """Return the entries of a notes file, in file order."""
    notes: list[Note] = []
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _HEADING.match(line)]
    for index, start in enumerate(starts):
        match = _HEADING.match(lines[start])
        assert match is not None
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        body = "\n".join(lines[start + 1 : end]).strip("\n")
        phase = int(match.group("phase")) if match.group("phase") else None
        notes.append(Note(match.group("stamp"), phase, match.group("author"), body, start + 1))
    return notes
