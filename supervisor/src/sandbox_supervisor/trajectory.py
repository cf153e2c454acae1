"""Durable trajectory: one JSON object per line per event, fsynced before it counts.

Format (version 1), one record per line, ASCII-only JSON (non-ASCII and undecodable
text are escaped, so any tool output stays inside one JSON string)::

    {"v": 1, "seq": 0, "ts": "2025-01-01T00:00:00.000000Z", "run_id": "...",
     "type": "run_start", ...fields of the event...}

Event types: ``run_start``, ``setup``, ``model_request``, ``context``,
``model_response``, ``tool_call``, ``tool_result``, ``error``, ``repair``, ``check``
and ``run_end``. ``seq`` grows by one per
record across the whole file (a reopened file continues the count).

Writer rules: a single writer (an exclusive ``flock`` on the file), one ``write``
call per record with ``O_APPEND``, then ``fsync``; :meth:`TrajectoryWriter.write`
returns only after that, so a record it acknowledged survives a crash of the
process. A crash can at worst leave a torn last line, which the next writer cuts
off (and records as a ``repair`` event) before appending. :func:`read_records`
accepts such a torn last line only when asked and fails loudly on anything
damaged before it.

A write that fails (a full disk: ``ENOSPC``) cuts the file back to where the record
began, marks the writer broken and raises :class:`TrajectoryError`; the file keeps
only complete records. A run whose writer died before ``run_end`` (the process was
killed) is found by :func:`recover_interrupted` once no process holds the file's
lock, and gets a ``run_end`` with status ``interrupted`` and ``recovered: true``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox_supervisor import jsonsafe

FORMAT_VERSION = 1
EVENT_TYPES = frozenset(
    {
        "run_start",
        "setup",
        "model_request",
        "context",
        "model_response",
        "tool_call",
        "tool_result",
        "error",
        "repair",
        "check",
        "snapshot",
        "run_end",
    }
)


class TrajectoryError(RuntimeError):
    """The trajectory file cannot be written or is damaged."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_record(record: dict[str, Any]) -> bytes:
    """Serialise one record as a single ASCII JSON line ending in a newline."""
    text = json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.encode("ascii") + b"\n"


@dataclass(frozen=True)
class Repair:
    """What reopening a file had to cut off: a torn last line."""

    dropped_bytes: int
    last_seq: int


def _scan_tail(fd: int) -> Repair:
    """Find the end of the last complete line and the ``seq`` it holds."""
    size = os.fstat(fd).st_size
    if size == 0:
        return Repair(0, -1)
    block = 65_536
    pos = size
    tail = b""
    # Read backwards until two newlines (end of the last complete line and its start).
    while pos > 0:
        start = max(0, pos - block)
        tail = os.pread(fd, pos - start, start) + tail
        pos = start
        if tail.count(b"\n") >= 2 or pos == 0:
            break
    cut = tail.rfind(b"\n") + 1  # 0 when no newline at all
    dropped = len(tail) - cut
    complete = tail[:cut]
    last_seq = -1
    if complete:
        last_line = complete[:-1].rsplit(b"\n", 1)[-1]
        try:
            last_seq = check_record(jsonsafe.loads(last_line))["seq"]
        except ValueError as exc:
            raise TrajectoryError(
                f"last complete line of the trajectory is damaged ({exc}); refusing to append"
            ) from exc
    return Repair(dropped, last_seq)


class TrajectoryWriter:
    """The single writer of one trajectory file (see the module docstring)."""

    def __init__(self, path: Path, run_id: str, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._fd)
            raise TrajectoryError(f"{self.path} is being written by another process") from exc
        try:
            repair = _scan_tail(self._fd)
            if repair.dropped_bytes:
                size = os.fstat(self._fd).st_size
                os.ftruncate(self._fd, size - repair.dropped_bytes)
                os.fsync(self._fd)
        except BaseException:
            os.close(self._fd)
            raise
        self._seq = repair.last_seq + 1
        self.repair = repair
        self.broken: str | None = None
        if repair.dropped_bytes:
            self.write("repair", dropped_bytes=repair.dropped_bytes, after_seq=repair.last_seq)

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next record will get."""
        return self._seq

    def write(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Append one event; return the record once it is on disk (fsynced when enabled)."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")
        if self._fd < 0:
            raise TrajectoryError(f"{self.path} is closed")
        if self.broken is not None:
            raise TrajectoryError(f"{self.path} can no longer be written: {self.broken}")
        record: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "seq": self._seq,
            "ts": _now(),
            "run_id": self.run_id,
            "type": event_type,
        }
        record.update(fields)
        data = encode_record(record)
        view = memoryview(data)
        start = os.fstat(self._fd).st_size
        written = 0
        try:
            while written < len(data):  # one write; the loop only covers a short write
                written += os.write(self._fd, view[written:])
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            self._fail(start, exc)
        self._seq += 1
        return record

    def _fail(self, start: int, exc: OSError) -> None:
        """Cut a partly written record off, mark the writer broken and raise."""
        reason = exc.strerror or str(exc)
        try:
            os.ftruncate(self._fd, start)  # frees blocks, so it works on a full disk too
        except OSError:
            reason += "; the partial record could not be cut off (the next writer repairs it)"
        self.broken = reason
        raise TrajectoryError(f"cannot write the trajectory {self.path}: {reason}") from exc

    def close(self) -> None:
        """Release the lock and close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ReadResult:
    """Records of a file, whether its last line was torn (left unread), and the lines
    skipped for their shape (only when the reader was asked to skip them)."""

    records: list[dict[str, Any]]
    torn_bytes: int = 0
    skipped: list[str] = field(default_factory=list)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_record(record: Any) -> dict[str, Any]:
    """Return ``record`` when it has the shape of a record, else raise ``ValueError``.

    A record is a JSON object with ``v`` (the format version), an integer ``seq``, a
    string ``ts`` and ``run_id``, a known ``type`` and, when present, an integer
    ``step`` and a string ``call_id``: what the readers of this module rely on.
    """
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if record.get("v") != FORMAT_VERSION:
        raise ValueError(f"unknown format version {str(record.get('v'))[:20]}")
    if not _is_int(record.get("seq")) or record["seq"] < 0:
        raise ValueError("seq is not a non-negative integer")
    if record.get("type") not in EVENT_TYPES:
        raise ValueError(f"unknown type {str(record.get('type'))[:40]}")
    for key in ("ts", "run_id"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"{key} is not a string")
    if "step" in record and not _is_int(record["step"]):
        raise ValueError("step is not an integer")
    if "call_id" in record and not isinstance(record["call_id"], str):
        raise ValueError("call_id is not a string")
    return record


def read_records(path: Path, *, allow_torn_tail: bool = True, skip_bad: bool = False) -> ReadResult:
    """Read and check every record of the file ``path`` (see :func:`parse_records`);
    only :class:`TrajectoryError` and ``OSError`` are raised."""
    return parse_records(
        Path(path).read_bytes(), str(path), allow_torn_tail=allow_torn_tail, skip_bad=skip_bad
    )


def read_for_showing(path: Path) -> ReadResult:
    """Read ``path`` for a person or a caller (lines of the wrong shape skipped), warning
    on stderr of each line skipped and of a torn last line."""
    result = read_records(path, skip_bad=True)
    for skipped in result.skipped:
        print(f"warning: skipped a line of the wrong shape: {skipped}", file=sys.stderr)
    if result.torn_bytes:
        print(f"warning: torn last line ({result.torn_bytes} bytes) ignored", file=sys.stderr)
    return result


def print_json_lines(path: Path) -> ReadResult:
    """Print the checked records of ``path`` on stdout, one JSON object a line (what
    ``show --json`` and ``run --json`` print; see :func:`read_for_showing`); return what
    was read."""
    result = read_for_showing(path)
    for record in result.records:
        print(json.dumps(record))
    sys.stdout.flush()
    return result


def parse_records(
    data: bytes, source: str = "<records>", *, allow_torn_tail: bool = True, skip_bad: bool = False
) -> ReadResult:
    """Check every record of ``data`` (a trajectory: one JSON record a line, from the file
    or the stream ``source`` names in messages); raise :class:`TrajectoryError` on damage.

    Damage is a line that is not a record (see :func:`check_record`), or a ``seq``
    that does not grow by one. With ``skip_bad`` such lines are skipped and listed in
    ``skipped`` instead (for showing a file to a person), and the next record's ``seq``
    starts the count again, so one damaged line hides only itself. A last line with no
    newline is a torn write: returned as ``torn_bytes`` when ``allow_torn_tail`` is true,
    an error otherwise. Only :class:`TrajectoryError` is raised.
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the data ends with a newline
    result = ReadResult(records=[], torn_bytes=len(tail))
    if tail and not allow_torn_tail:
        raise TrajectoryError(f"{source}: torn last line ({len(tail)} bytes, no newline)")
    expected: int | None = None
    for number, line in enumerate(lines, start=1):
        try:
            record = check_record(jsonsafe.loads(line))
            seq = record["seq"]
            if expected is not None and seq != expected:
                raise ValueError(f"seq {seq} where {expected} was expected")
        except ValueError as exc:
            if not skip_bad:
                raise TrajectoryError(f"{source}:{number}: damaged record: {exc}") from None
            result.skipped.append(f"{source}:{number}: {exc}")
            expected = None
            continue
        expected = seq + 1
        result.records.append(record)
    return result


def iter_runs(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Split records into runs (a file may hold several runs appended one after another)."""
    current: list[dict[str, Any]] = []
    for record in records:
        if record["type"] == "run_start" and current:
            yield current
            current = []
        current.append(record)
    if current:
        yield current


INTERRUPTED_REASON = "the run's process ended without recording run_end (killed or crashed)"


def is_locked(path: Path) -> bool:
    """Whether a live :class:`TrajectoryWriter` holds ``path`` (its exclusive lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def unfinished_run(records: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The last run of ``records`` when it has no ``run_end``; None otherwise."""
    runs = list(iter_runs(records))
    if not runs or any(r["type"] == "run_end" for r in runs[-1]):
        return None
    return runs[-1] if runs[-1][0]["type"] == "run_start" else None


def recover_interrupted(path: Path, *, fsync: bool = True) -> dict[str, Any] | None:
    """Close an interrupted run: append ``run_end`` (status ``interrupted``) when needed.

    Returns the record written, or None when the last run is finished, the file holds no
    run, or a live writer holds it (a run in progress is not interrupted). A torn last
    line is cut off first (recorded as ``repair``). Raises :class:`TrajectoryError` when
    the file is damaged or cannot be written.
    """
    run = unfinished_run(read_records(path).records)
    if run is None:
        return None
    try:
        writer = TrajectoryWriter(path, str(run[0]["run_id"]), fsync=fsync)
    except TrajectoryError:
        if is_locked(path):
            return None
        raise
    with writer:
        run = unfinished_run(read_records(path).records)  # again, now that it is ours
        if run is None:
            return None
        steps = max((int(r.get("step", 0)) for r in run), default=0)
        return writer.write(
            "run_end",
            status="interrupted",
            reason=INTERRUPTED_REASON,
            answer=None,
            steps=steps,
            tool_calls=len({r.get("call_id") for r in run if r["type"] == "tool_result"}),
            exit_code=130,
            recovered=True,
        )


def recover_dir(directory: Path, *, fsync: bool = True) -> dict[Path, str]:
    """Run :func:`recover_interrupted` on every ``*.jsonl`` under ``directory``.

    Returns path -> what happened (``interrupted``, or the error) for the files it touched.
    """
    outcome: dict[Path, str] = {}
    for path in sorted(Path(directory).rglob("*.jsonl")):
        try:
            if _last_type(path) == "run_end":
                continue
            if recover_interrupted(path, fsync=fsync) is not None:
                outcome[path] = "interrupted"
        except (TrajectoryError, OSError, ValueError) as exc:  # one bad file stops no other
            outcome[path] = f"not recovered: {exc}"
    return outcome


def _last_type(path: Path, window: int = 65_536) -> str | None:
    """The ``type`` of the last complete record, from the file's tail (None if unsure)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - window))
        tail = handle.read()
    lines = tail.split(b"\n")
    if len(lines) < 2 or (size > window and len(lines) < 3):
        return None
    try:
        record = jsonsafe.loads(lines[-2])
    except ValueError:
        return None
    return str(record.get("type")) if isinstance(record, dict) else None
