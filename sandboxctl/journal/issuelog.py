"""The deviation log the plan demands: every departure from PLAN.md, with reason, steps and
resolution, under an ID (``DEV-0001``...) and UTC timestamps.

``docs/ISSUE_LOG.md`` is append-only: logging a deviation appends an ``opened`` record,
resolving it appends a ``resolved`` record; nothing earlier is rewritten. Records are
Markdown that a program can read back (:func:`parse_log`)::

    ## DEV-0001 | opened 2026-11-26T18:41:23Z | Compose file keeps host-net
    - author: Ada Lovelace <ada@example.org>
    - reason: an internal network cannot publish ports
    - steps: added compose.publish.yaml
      (continuation lines are indented by two spaces)
    - resolution: the plan lists host-net when the port is published

    ## DEV-0001 | resolved 2026-11-27T09:00:00Z
    - author: Ada Lovelace <ada@example.org>
    - resolution: ...

A deviation logged with a resolution is resolved at once; one logged without stays open
until ``invoke issue.resolve``. IDs are numbered under the file lock, so two writers never
get the same one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sandboxctl._proc import Runner
from sandboxctl.errors import SandboxError
from sandboxctl.journal.notes import append_entry, git_author, parse_stamp, utc_stamp

LOG_FILE = Path("docs") / "ISSUE_LOG.md"
LOG_HEADER = """# Issue log

Deviations from PLAN.md: why, what was done, how it ended. Append with
`invoke issue.log --title ... --reason ... --steps ... [--resolution ...]` and close with
`invoke issue.resolve DEV-NNNN --resolution ...`; never edit or remove a record.
`invoke plan.check` warns about deviations left open too long.
"""
ID_RE = re.compile(r"^DEV-\d{4,}$")
_HEADING = re.compile(
    r"^## (?P<id>DEV-\d{4,}) \| (?P<kind>opened|resolved) "
    r"(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)(?: \| (?P<title>.+))?$"
)
_FIELD = re.compile(r"^- (?P<key>[a-z]+): ?(?P<value>.*)$")
FIELDS = ("author", "reason", "steps", "resolution")


class IssueLogError(SandboxError, ValueError):
    """A record cannot be written: missing text, unknown or already resolved ID."""

    exit_code = 2


@dataclass(frozen=True)
class Record:
    """One record of the log as written: an ``opened`` or a ``resolved`` one."""

    id: str
    kind: str
    stamp: str
    title: str
    fields: dict[str, str]
    line: int


@dataclass
class Deviation:
    """A deviation's current state, folded from its records."""

    id: str
    title: str
    opened: str
    line: int
    reason: str = ""
    steps: str = ""
    resolution: str = ""
    resolved: str | None = None
    records: list[Record] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        """True until a resolution is recorded."""
        return self.resolved is None


def _field(key: str, value: str) -> str:
    lines = value.strip().splitlines() or [""]
    rest = "".join(f"\n  {line}" if line.strip() else "\n  ." for line in lines[1:])
    return f"- {key}: {lines[0]}{rest}\n"


def parse_log(text: str) -> list[Record]:
    """Return every record of the log, in file order."""
    records: list[Record] = []
    current: dict[str, str] | None = None
    key = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if match := _HEADING.match(line):
            current = {}
            records.append(
                Record(
                    id=match.group("id"),
                    kind=match.group("kind"),
                    stamp=match.group("stamp"),
                    title=match.group("title") or "",
                    fields=current,
                    line=number,
                )
            )
            key = ""
        elif current is None:
            continue
        elif match := _FIELD.match(line):
            key = match.group("key")
            current[key] = match.group("value")
        elif line.startswith("  ") and key:
            extra = line[2:]
            current[key] += "\n" + ("" if extra == "." else extra)
        elif line.strip():
            key = ""
    return records


def deviations(text: str) -> list[Deviation]:
    """Fold the records of a log into deviations, in the order they were opened."""
    found: dict[str, Deviation] = {}
    for record in parse_log(text):
        if record.kind == "opened" and record.id not in found:
            deviation = Deviation(
                id=record.id,
                title=record.title,
                opened=record.stamp,
                line=record.line,
                reason=record.fields.get("reason", ""),
                steps=record.fields.get("steps", ""),
                resolution=record.fields.get("resolution", ""),
            )
            if deviation.resolution.strip():
                deviation.resolved = record.stamp
            found[record.id] = deviation
        elif record.id in found:
            deviation = found[record.id]
            if record.kind == "resolved":
                deviation.resolved = record.stamp
                deviation.resolution = record.fields.get("resolution", deviation.resolution)
        else:
            continue
        found[record.id].records.append(record)
    return list(found.values())


def next_id(text: str) -> str:
    """Return the ID after the highest one in the log (``DEV-0001`` for an empty log)."""
    numbers = [int(record.id.split("-")[1]) for record in parse_log(text)]
    return f"DEV-{max(numbers, default=0) + 1:04d}"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def log_deviation(
    root: Path,
    *,
    title: str,
    reason: str,
    steps: str,
    resolution: str = "",
    author: str | None = None,
    now: datetime | None = None,
    runner: Runner | None = None,
) -> str:
    """Append an ``opened`` record to ``ROOT/docs/ISSUE_LOG.md`` and return its ID."""
    if not title.strip() or "\n" in title.strip():
        raise IssueLogError("--title is required and must be one line")
    for name, value in (("reason", reason), ("steps", steps)):
        if not value.strip():
            raise IssueLogError(f"--{name} is required: the plan asks why and what was done")
    who = author or git_author(runner, cwd=root)
    stamp = utc_stamp(now)
    assigned: list[str] = []

    def render(current: str) -> str:
        new_id = next_id(current)
        assigned.append(new_id)
        text = f"\n## {new_id} | opened {stamp} | {title.strip()}\n"
        text += _field("author", who) + _field("reason", reason) + _field("steps", steps)
        if resolution.strip():
            text += _field("resolution", resolution)
        return text

    append_entry(root / LOG_FILE, LOG_HEADER, render)
    return assigned[0]


def resolve_deviation(
    root: Path,
    deviation_id: str,
    *,
    resolution: str,
    author: str | None = None,
    now: datetime | None = None,
    runner: Runner | None = None,
) -> None:
    """Append a ``resolved`` record for an open deviation."""
    wanted = deviation_id.strip().upper()
    if not ID_RE.match(wanted):
        raise IssueLogError(f"{deviation_id!r} is not an ID like DEV-0001")
    if not resolution.strip():
        raise IssueLogError("--resolution is required: say how the deviation ended")
    who = author or git_author(runner, cwd=root)
    stamp = utc_stamp(now)

    def render(current: str) -> str:
        known = {deviation.id: deviation for deviation in deviations(current)}
        if wanted not in known:
            raise IssueLogError(f"no deviation {wanted} in {LOG_FILE}")
        if not known[wanted].is_open:
            raise IssueLogError(f"{wanted} was already resolved at {known[wanted].resolved}")
        return (
            f"\n## {wanted} | resolved {stamp}\n"
            + _field("author", who)
            + _field("resolution", resolution)
        )

    if not (root / LOG_FILE).is_file():
        raise IssueLogError(f"no deviation {wanted}: {LOG_FILE} does not exist yet")
    append_entry(root / LOG_FILE, LOG_HEADER, render)


def stale(path: Path, max_age: timedelta, *, now: datetime | None = None) -> list[Deviation]:
    """Return the open deviations of the log at ``path`` opened more than ``max_age`` ago."""
    moment = now or datetime.now(UTC)
    return [
        deviation
        for deviation in deviations(_read(path))
        if deviation.is_open and moment - parse_stamp(deviation.opened) > max_age
    ]
