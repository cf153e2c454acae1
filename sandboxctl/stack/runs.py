"""Past agent runs, read from the host: list them, show one, export its trajectory.

The supervisor writes each run's trajectory (one JSON record per line) into the stack's
``logs`` volume. ``podman volume export`` hands the volume over as a tar stream, so the
host reads runs without entering a container, and even when the stack is down.

Runs are read and rendered by the supervisor's own code (:mod:`sandbox_supervisor.trajectory`,
:mod:`sandbox_supervisor.view`), so ``invoke runs.show`` prints what ``sandbox-supervisor
show`` prints. Everything printed goes through :func:`sandbox_supervisor.view.safe`:
model-written text may carry terminal control sequences.
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

from sandbox_supervisor.trajectory import iter_runs, parse_records
from sandbox_supervisor.view import Ending, check_lines, safe, seconds, short
from sandbox_supervisor.view import render as render_records

from sandboxctl.egress import EgressLine, lines_between
from sandboxctl.errors import SandboxError
from sandboxctl.stack.project import Stack


class RunsError(SandboxError, RuntimeError):
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
    def ending(self) -> Ending:
        """How it ended (status, steps, tokens, seconds), as the rendering says it."""
        return Ending.of(self.records)

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
        return self.ending.status

    @property
    def steps(self) -> int:
        return self.ending.steps

    @property
    def tokens(self) -> int:
        return self.ending.tokens

    @property
    def seconds(self) -> float:
        return self.ending.seconds


def parse_files(files: dict[str, bytes]) -> list[Run]:
    """Split every trajectory file into its runs, oldest first; lines that are not
    records (a torn last line, damage) are left out."""
    runs: list[Run] = []
    for name, data in files.items():
        records = parse_records(data, name, skip_bad=True).records
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


def summary(run: Run) -> str:
    """One line saying how a run ended, and whether anything verified it."""
    return f"run {safe(run.run_id)}: {run.ending.line()}"


def check_report(run: Run) -> list[str]:
    """The run's check as a person reads it (see :func:`sandbox_supervisor.view.check_lines`),
    or [] when the run had no check."""
    return check_lines(run.check) if run.check else []


def egress_report(lines: Sequence[EgressLine]) -> list[str]:
    """The run's requests through the egress proxy, one line each."""
    if not lines:
        return []
    denied = sum(1 for line in lines if not line.allowed)
    head = f"== egress: {len(lines)} request(s) through the proxy, {denied} denied"
    return [head, *(f"   {line.time} {line.describe()}" for line in lines)]


def render(run: Run, egress: Sequence[EgressLine] = ()) -> str:
    """A readable rendering of one run (:func:`sandbox_supervisor.view.render`), then its
    requests through the egress proxy (host names in the proxy's log come from the agent
    too, so they pass through :func:`safe`) and, when it has no end yet, how far it got."""
    out = [render_records(run.records, source=run.file), *egress_report(egress)]
    if not run.end:
        out.append(f"== unfinished: {run.ending.line()}")
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
