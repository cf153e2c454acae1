"""How people see a run: progress lines on stderr and a readable rendering of a trajectory.

The rendering is the one both ``sandbox-supervisor show`` and the host's ``invoke
runs.show`` print (the host imports this module; it needs nothing beyond the standard
library).

Everything shown comes through :func:`safe`: model text and tool output may carry
terminal control sequences (``ESC ]0;title BEL``, ``ESC [2J``), which would retitle,
clear or rewrite the reader's terminal; they are removed, with every other control
character but newline and tab, and the bidirectional overrides that can make text
read differently from what it is.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# CSI and OSC sequences (OSC ended by BEL or ST), other ESC sequences, 8-bit CSI/OSC.
_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?|\x9b[0-?]*[ -/]*[@-~]?"
    r"|[\x90\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def safe(text: str) -> str:
    """``text`` without terminal control sequences or control characters (``\\n``, ``\\t`` stay)."""
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


class Progress:
    """Progress lines on stderr with the time since start."""

    def __init__(self, quiet: bool = False) -> None:
        self.started = time.monotonic()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.monotonic() - self.started
            # One write per line (see tools.service._stderr): no partial lines in logs.
            sys.stderr.write(f"[{elapsed:7.2f}s] {safe(message)}\n")
            sys.stderr.flush()


CHECK_TAIL_LINES = 10
"""Lines of a check's output shown (the last ones)."""


def seconds(value: float) -> str:
    """Seconds, the one way a rendering prints them: one decimal and a unit."""
    return f"{value:.1f} s"


def one_line(value: Any, limit: int) -> str:
    """A value on one line, cut to ``limit`` characters: strings as they are, anything
    else as JSON with its letters unescaped (``"家"``, never ``"\\u5bb6"``)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return short(text, limit)


@dataclass(frozen=True)
class Ending:
    """How one run ended, from its records: the ``run_end`` status (``running?`` while
    there is none), what the loop ended with when a check decided the status, steps,
    tokens, seconds, the reason, and whether a check verified the run."""

    status: str
    agent_status: str
    steps: int
    tokens: int
    seconds: float
    reason: str
    checked: bool
    ended: bool

    @classmethod
    def of(cls, records: Sequence[Mapping[str, Any]]) -> Ending:
        """The ending of the run ``records`` hold (its last ``run_end``, if any)."""
        ends = [record for record in records if record.get("type") == "run_end"]
        end = ends[-1] if ends else {}
        steps = end.get("steps")
        if not isinstance(steps, int):
            steps = sum(1 for record in records if record.get("type") == "model_response")
        tokens = end.get("tokens")
        total = tokens.get("total") if isinstance(tokens, dict) else None
        elapsed = end.get("elapsed_s")
        return cls(
            status=str(end.get("status", "running?")),
            agent_status=str(end.get("agent_status") or ""),
            steps=steps,
            tokens=total if isinstance(total, int) else 0,
            seconds=float(elapsed) if isinstance(elapsed, int | float) else 0.0,
            reason=str(end.get("reason") or ""),
            checked=any(record.get("type") == "check" for record in records),
            ended=bool(end),
        )

    def line(self) -> str:
        """The ending on one line: ``passed (the run ended finished) after 3 steps, 1200
        tokens, 4.2 s``, saying when nothing verified a finished run."""
        line = (
            f"{self.status}"
            + (f" (the run ended {self.agent_status})" if self.agent_status else "")
            + f" after {self.steps} steps, {self.tokens} tokens, {seconds(self.seconds)}"
        )
        if self.ended and not self.checked:
            line += "; unverified: no check ran (add --check 'COMMAND')"
        return safe(line)


def check_lines(check: Mapping[str, Any], tail: int = CHECK_TAIL_LINES) -> list[str]:
    """A ``check`` record as a person reads it: its command, verdict and exit code, then
    the last ``tail`` lines of its output (a failed check says why in its own words)."""
    verdict = "passed" if check.get("passed") else "failed"
    code = check.get("exit_code")
    how = f"exit {code}" if code is not None else str(check.get("status", "?"))
    out = [f"check: {one_line(check.get('command', ''), 200)}: {verdict} ({how})"]
    output = safe(str(check.get("output") or "")).rstrip("\n").splitlines()
    if len(output) > tail:
        out.append(f"   | ... {len(output) - tail} earlier line(s)")
    out += [f"   | {line}" for line in output[-tail:]]
    if not output and verdict == "failed":
        out.append("   | (the check printed nothing)")
    return [safe(line) for line in out]


def render(records: Sequence[Mapping[str, Any]], *, source: str = "") -> str:
    """A readable rendering of a trajectory (one run or several): each run's header, its
    steps with model time and tokens, tool calls and results, errors, setup, the check
    with the end of its output, the whole answer and how the run ended. ``source`` (the
    file the records came from) is named in each run's header. Text is shown as text
    (no ``\\u`` escapes), seconds with one decimal, tokens as integers; a record whose
    fields have unexpected types is shown as such, not fatal.
    """
    out: list[str] = []
    run: list[Mapping[str, Any]] = []
    for record in records:
        if record.get("type") == "run_start":
            run = []
        run.append(record)
        try:
            _render_one(record, run, source, out)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError):
            out.append(f"   ?? record {record.get('seq')} ({record.get('type')}) has an odd shape")
    return safe("\n".join(out))


def _render_one(
    record: Mapping[str, Any], run: Sequence[Mapping[str, Any]], source: str, out: list[str]
) -> None:
    """Append the lines of one record (the last of ``run``, its run so far) to ``out``."""
    kind = record["type"]
    if kind == "run_start":
        model = record.get("config", {}).get("model", record.get("model_source", "?"))
        where = f" ({source})" if source else ""
        out.append(f"== run {record['run_id']} at {record['ts']}{where}")
        out.append(f"   task: {record.get('task')}")
        mode = record.get("tool_mode")
        out.append(f"   model: {model}" + (f", tool mode: {mode}" if mode else ""))
    elif kind == "model_response":
        reply = record["reply"]
        usage = reply.get("usage") or {}
        calls = [str(call["name"]) for call in reply.get("tool_calls") or []]
        # The names are the model's, as it wrote them: one line, like its text.
        what = one_line(", ".join(calls) or reply.get("content") or "", 100)
        tries = int(reply.get("attempts") or 1)
        out.append(
            f"-- step {record['step']}: {seconds(float(reply.get('latency_s') or 0))}, "
            f"{int(usage.get('prompt_tokens') or 0)}+{int(usage.get('completion_tokens') or 0)}"
            f" tokens{f', {tries} tries' if tries > 1 else ''}: {what}"
        )
    elif kind == "tool_call":
        out.append(f"   -> {record['name']} {one_line(record.get('arguments'), 120)}")
    elif kind == "tool_result":
        code = record.get("exit_code")
        extra = f" exit {code}" if code is not None else ""
        output = one_line(record.get("output", ""), 100)
        out.append(
            f"   <- {record['status']}{extra}, {seconds(float(record.get('duration_s') or 0))}"
            + (f": {output}" if output else "")
        )
    elif kind == "error":
        out.append(f"   !! {record.get('kind')}: {one_line(record.get('message', ''), 160)}")
    elif kind == "setup":
        steps = record.get("steps") or []
        failed = [s for s in steps if s.get("status") != "ok"]
        out.append(
            f"   setup: {len(steps)} step(s)"
            + (f", FAILED at {failed[0].get('target')!r}" if failed else ", all ok")
        )
    elif kind == "context":
        out.append(
            f"   (context: {len(record.get('shortened') or [])} message(s) shortened, "
            f"{len(record.get('removed') or [])} removed to fit {record.get('budget_tokens')} "
            f"of {record.get('n_ctx')} tokens)"
        )
    elif kind == "check":
        out += [f"== {line}" if n == 0 else line for n, line in enumerate(check_lines(record))]
    elif kind == "snapshot":
        out.append(
            f"   (recorded step {record.get('step')}: {record.get('changed')} changed, "
            f"{record.get('removed')} removed, {record.get('stored_bytes')} bytes stored, "
            f"{record.get('ms')} ms)"
        )
    elif kind == "repair":
        out.append(f"   (log repaired: {record.get('dropped_bytes')} torn bytes cut)")
    elif kind == "run_end":
        answer = record.get("answer")
        if isinstance(answer, str) and answer.strip():
            lines = safe(answer).strip().splitlines()
            out.append("== answer: " + lines[0])
            out += [f"           {line}" for line in lines[1:]]
        ending = Ending.of(run)
        reason = f"; {one_line(ending.reason, 200)}" if ending.reason else ""
        out.append(f"== end: {ending.line()}{reason}")


ANSWER_LINES = 3
ANSWER_CHARS = 300


def answer_preview(answer: str, lines: int = ANSWER_LINES, chars: int = ANSWER_CHARS) -> str:
    """The model's final answer as a person reads it at a glance: labelled, safe for a
    terminal, cut to ``lines`` lines and ``chars`` characters, saying how much was cut
    (the whole text stays in the trajectory)."""
    text = safe(answer).strip()
    kept = text.splitlines()[:lines] or [""]
    shown = "\n".join(kept)
    if len(shown) > chars:
        shown = shown[: chars - 3] + "..."
    body = shown.replace("\n", "\n        ")
    note = (
        ""
        if shown == text
        else (f"\n        [{len(text)} characters in all; the whole answer is in the trajectory]")
    )
    return f"answer: {body}{note}"


def short(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with ``...``."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
