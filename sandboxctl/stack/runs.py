"""Past agent runs, read from the host: list them, show one, export its trajectory.

The supervisor writes each run's trajectory (one JSON record per line) into the stack's
``logs`` volume. ``podman volume export`` hands the volume over as a tar stream, so the
host reads runs without entering a container, and even when the stack is down.

Everything printed goes through the supervisor's :func:`sandbox_supervisor.view.safe`:
model-written text may carry terminal control sequences. Text is printed as text (no
``\\u0434`` escapes) and numbers one way: seconds with one decimal, tokens as integers.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox_supervisor.jsonsafe import loads
from sandbox_supervisor.trajectory import check_record, iter_runs
from sandbox_supervisor.view import safe, short

from sandboxctl.egress import EgressLine, lines_between
from sandboxctl.stack.project import Stack


class RunsError(RuntimeError):
    """No such run, or the logs could not be read; the message says which."""


@dataclass(frozen=True)
class Run:
    """One run: its records, the file they came from, and what its ends say."""

    file: str
    records: tuple[dict[str, Any], ...]

    @property
    def run_id(self) -> str:
        return str(self.records[0].get("run_id", "?"))

    @property
    def start(self) -> dict[str, Any]:
        return self.records[0] if self.records[0].get("type") == "run_start" else {}

    @property
    def end(self) -> dict[str, Any]:
        ends = [record for record in self.records if record.get("type") == "run_end"]
        return ends[-1] if ends else {}

    @property
    def check(self) -> dict[str, Any]:
        """The check record (command, exit code, output tail, verdict), or {} when the run
        had no check."""
        checks = [record for record in self.records if record.get("type") == "check"]
        return checks[-1] if checks else {}

    @property
    def started(self) -> str:
        return str(self.records[0].get("ts", "?"))

    @property
    def task(self) -> str:
        return str(self.start.get("task", "?"))

    @property
    def reason(self) -> str:
        """How it ended: the run_end status, or ``running?`` when there is none yet."""
        return str(self.end.get("status", "running?"))

    @property
    def steps(self) -> int:
        steps = self.end.get("steps")
        if isinstance(steps, int):
            return steps
        return sum(1 for record in self.records if record.get("type") == "model_response")

    @property
    def tokens(self) -> int:
        tokens = self.end.get("tokens")
        total = tokens.get("total") if isinstance(tokens, dict) else None
        return total if isinstance(total, int) else 0

    @property
    def seconds(self) -> float:
        elapsed = self.end.get("elapsed_s")
        return float(elapsed) if isinstance(elapsed, int | float) else 0.0


def parse_files(files: dict[str, bytes]) -> list[Run]:
    """Split every trajectory file into its runs, oldest first; lines that are not
    records (a torn last line, damage) are left out."""
    runs: list[Run] = []
    for name, data in files.items():
        records = []
        for line in data.splitlines():
            try:
                records.append(check_record(loads(line)))
            except ValueError:
                continue
        runs += [Run(name, tuple(run)) for run in iter_runs(records) if run]
    return sorted(runs, key=lambda run: (run.started, run.file))


def files_in(tar_bytes: bytes, keep: Callable[[str], bool]) -> dict[str, bytes]:
    """The regular files of an exported volume (a tar stream) whose path in it ``keep``
    accepts, by that path."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            if member.isfile() and keep(name):
                handle = tar.extractfile(member)
                if handle is not None:
                    files[name] = handle.read()
    return files


def trajectory_files(tar_bytes: bytes) -> dict[str, bytes]:
    """The ``.jsonl`` files of an exported volume (a tar stream), by their path in it."""
    return files_in(tar_bytes, lambda name: name.endswith(".jsonl"))


def export_volume(stack: Stack, volume: str, what: str, hint: str = "") -> bytes:
    """The ``what`` volume as a tar stream (``podman volume export``); :class:`RunsError`
    with Podman's last line, and ``hint``, when it cannot be read."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "volume.tar"
        exported = stack.podman("volume", "export", "--output", str(out), volume)
        if not exported.ok:
            detail = (exported.stderr or exported.stdout).strip().splitlines()[-1:]
            raise RunsError(
                f"cannot read the {what} volume {volume} ({' '.join(detail) or 'no output'}){hint}"
            )
        return out.read_bytes()


def read_runs(stack: Stack) -> list[Run]:
    """Every run in the stack's logs volume (``podman volume export``), oldest first."""
    hint = ": has the stack run a task yet (`invoke up`, `invoke run`)?"
    return parse_files(trajectory_files(export_volume(stack, stack.volume("logs"), "logs", hint)))


EGRESS_VOLUME = "egress-log"
EGRESS_LOG = "egress/access.log"
"""The egress proxy's access log, in its own volume (compose.egress.yaml)."""


def egress_lines(stack: Stack, run: Run) -> list[EgressLine]:
    """The egress proxy's lines written while ``run`` ran; [] when the stack never had a
    proxy (no ``egress-log`` volume). Lines are matched by time: runs that overlap (an
    evaluation's parallel runs) share theirs."""
    volume = stack.volume(EGRESS_VOLUME)
    if not stack.podman("volume", "exists", volume).ok:
        return []
    found = files_in(export_volume(stack, volume, "egress log"), lambda name: name == EGRESS_LOG)
    text = found.get(EGRESS_LOG, b"").decode("utf-8", "replace")
    return lines_between(text, run.started, str(run.end.get("ts", "")))


def written_to(stack: Stack, log_path: str) -> Run | None:
    """The last run written to ``log_path`` (the path inside the supervisor, under
    ``/logs``), or None when the run wrote no record there."""
    name = log_path.removeprefix("/logs/")
    found = [run for run in read_runs(stack) if run.file == name]
    return found[-1] if found else None


def find(runs: Sequence[Run], run_id: str = "") -> Run:
    """The run whose id starts with ``run_id``, or the last one when it is empty."""
    if not runs:
        raise RunsError('no runs yet: start one with `invoke run "TASK"`')
    if not run_id:
        return runs[-1]
    found = [run for run in runs if run.run_id.startswith(run_id)]
    if not found:
        raise RunsError(f"no run {run_id!r}; `invoke runs.list` lists them")
    if len({run.run_id for run in found}) > 1:
        ids = ", ".join(sorted({run.run_id for run in found}))
        raise RunsError(f"{run_id!r} names several runs ({ids}): give more of the id")
    return found[-1]


def seconds(value: float) -> str:
    """Seconds, the one way this module prints them."""
    return f"{value:.1f} s"


def table(runs: Iterable[Run]) -> list[str]:
    """One line per run: id, start, end reason, steps, tokens, seconds, task."""
    rows = [
        (
            safe(run.run_id),
            run.started[:19].replace("T", " "),
            safe(run.reason),
            str(run.steps),
            str(run.tokens),
            seconds(run.seconds),
            short(safe(run.task), 60),
        )
        for run in runs
    ]
    header = ("id", "start (UTC)", "end", "steps", "tokens", "time", "task")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(6)]
    lines = []
    for row in [header, *rows]:
        left = [cell.ljust(width) for cell, width in zip(row[:3], widths[:3], strict=True)]
        right = [cell.rjust(width) for cell, width in zip(row[3:6], widths[3:6], strict=True)]
        lines.append("  ".join([*left, *right, row[6]]))
    return lines


CHECK_TAIL_LINES = 10
"""Lines of a check's output shown by `invoke run` and `runs.show` (the last ones)."""


def summary(run: Run) -> str:
    """One line saying how a run ended, and whether anything verified it."""
    line = (
        f"run {safe(run.run_id)}: {safe(run.reason)} after {run.steps} steps, "
        f"{run.tokens} tokens, {seconds(run.seconds)}"
    )
    if run.end and not run.check:
        line += "; unverified: no check ran (add --check 'COMMAND')"
    return line


def check_report(run: Run, lines: int = CHECK_TAIL_LINES) -> list[str]:
    """The run's check as a person reads it: its command, verdict and exit code, then the
    last ``lines`` lines of its output (a failed check says why in its own words)."""
    check = run.check
    if not check:
        return []
    verdict = "passed" if check.get("passed") else "failed"
    code = check.get("exit_code")
    how = f"exit {code}" if code is not None else safe(str(check.get("status", "?")))
    out = [f"check: {_text(check.get('command', ''), 200)}: {verdict} ({how})"]
    output = safe(str(check.get("output") or "")).rstrip("\n").splitlines()
    if len(output) > lines:
        out.append(f"   | ... {len(output) - lines} earlier line(s)")
    out += [f"   | {line}" for line in output[-lines:]]
    if not output and verdict == "failed":
        out.append("   | (the check printed nothing)")
    return out


def _text(value: Any, limit: int) -> str:
    """A value on one line as text: strings as they are, anything else as JSON with its
    letters unescaped."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return short(text, limit)


def egress_report(lines: Sequence[EgressLine]) -> list[str]:
    """The run's requests through the egress proxy, one line each."""
    if not lines:
        return []
    denied = sum(1 for line in lines if not line.allowed)
    head = f"== egress: {len(lines)} request(s) through the proxy, {denied} denied"
    return [head, *(f"   {line.time} {line.describe()}" for line in lines)]


def render(run: Run, egress: Sequence[EgressLine] = ()) -> str:
    """A readable rendering of one run, with its requests through the egress proxy (safe
    to print to a terminal: host names in the proxy's log come from the agent too)."""
    out = [
        f"== run {run.run_id} at {run.started} ({run.file})",
        f"   task: {run.task}",
    ]
    for record in run.records:
        kind = record.get("type")
        if kind == "model_response" and isinstance(record.get("reply"), dict):
            reply = record["reply"]
            usage = reply.get("usage") or {}
            calls = [
                c.get("name", "?") for c in reply.get("tool_calls") or [] if isinstance(c, dict)
            ]
            what = ", ".join(calls) or _text(reply.get("content") or "", 100)
            out.append(
                f"-- step {record.get('step')}: {seconds(float(reply.get('latency_s') or 0))}, "
                f"{int(usage.get('prompt_tokens') or 0)}+"
                f"{int(usage.get('completion_tokens') or 0)} tokens: {what}"
            )
        elif kind == "tool_call":
            out.append(f"   -> {record.get('name')} {_text(record.get('arguments'), 120)}")
        elif kind == "tool_result":
            code = record.get("exit_code")
            extra = f" exit {code}" if code is not None else ""
            out.append(
                f"   <- {record.get('status')}{extra}, "
                f"{seconds(float(record.get('duration_s') or 0))}: "
                f"{_text(record.get('output', ''), 100)}"
            )
        elif kind == "error":
            out.append(f"   !! {record.get('kind')}: {_text(record.get('message', ''), 160)}")
        elif kind == "check":
            out += [f"== {line}" if n == 0 else line for n, line in enumerate(check_report(run))]
    end = run.end
    if isinstance(end.get("answer"), str) and end["answer"].strip():
        answer = safe(end["answer"]).strip().splitlines()
        out.append("== answer: " + answer[0])
        out += [f"           {line}" for line in answer[1:]]
    out += egress_report(egress)
    reason = f"; {_text(end['reason'], 200)}" if end.get("reason") else ""
    out.append(f"== end: {summary(run)}{reason}")
    return safe("\n".join(out))


def export(run: Run, dest: Path) -> Path:
    """Write the run's records to ``dest`` as a trajectory file (one JSON object a line,
    as the supervisor wrote them: ``sandbox-supervisor show`` reads it)."""
    if dest.is_dir():
        dest = dest / f"run-{run.run_id}.jsonl"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("w", encoding="utf-8") as handle:
            for record in run.records:
                handle.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")
    except OSError as error:
        raise RunsError(f"cannot write {dest}: {error.strerror}") from error
    return dest


__all__ = [
    "Run",
    "RunsError",
    "egress_lines",
    "export",
    "find",
    "parse_files",
    "read_runs",
    "render",
    "summary",
    "table",
    "trajectory_files",
]
