"""How people see a run: progress lines on stderr and a readable rendering of a trajectory.

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


def render(records: list[dict[str, Any]]) -> str:
    """A readable rendering of a trajectory: steps, tool calls, timings, tokens.

    A record whose fields have unexpected types is shown as such, not fatal.
    """
    out: list[str] = []
    for record in records:
        try:
            _render_one(record, out)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError):
            out.append(f"   ?? record {record.get('seq')} ({record.get('type')}) has an odd shape")
    return safe("\n".join(out))


def _render_one(record: dict[str, Any], out: list[str]) -> None:
    """Append the lines of one record to ``out``."""
    kind = record["type"]
    if kind == "run_start":
        model = record.get("config", {}).get("model", record.get("model_source", "?"))
        out.append(
            f"== run {record['run_id']} at {record['ts']} model={model} "
            f"mode={record.get('tool_mode')}"
        )
        out.append(f"   task: {record.get('task')}")
    elif kind == "model_response":
        reply = record["reply"]
        usage = reply.get("usage", {})
        what = ", ".join(c["name"] for c in reply.get("tool_calls", [])) or short(
            reply.get("content") or "", 100
        )
        out.append(
            f"-- step {record['step']}: model {reply.get('latency_s', 0):.2f}s "
            f"tokens {usage.get('prompt_tokens', 0)}+"
            f"{usage.get('completion_tokens', 0)} try {reply.get('attempts', 1)}: "
            f"{what}"
        )
    elif kind == "tool_call":
        out.append(f"   -> {record['name']} {short(json.dumps(record.get('arguments')), 120)}")
    elif kind == "tool_result":
        extra = f" exit={record['exit_code']}" if record.get("exit_code") is not None else ""
        first = short(record.get("output", ""), 100)
        out.append(f"   <- {record['status']}{extra} {record.get('duration_s', 0):.3f}s {first}")
    elif kind == "error":
        out.append(f"   !! {record.get('kind')}: {short(record.get('message', ''), 160)}")
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
        out.append(
            f"== check: {short(record.get('command', ''), 100)} -> exit "
            f"{record.get('exit_code')} ({'passed' if record.get('passed') else 'failed'})"
        )
    elif kind == "snapshot":
        out.append(
            f"   (recorded step {record.get('step')}: {record.get('changed')} changed, "
            f"{record.get('removed')} removed, {record.get('stored_bytes')} bytes stored, "
            f"{record.get('ms')} ms)"
        )
    elif kind == "repair":
        out.append(f"   (log repaired: {record.get('dropped_bytes')} torn bytes cut)")
    elif kind == "run_end":
        tokens = record.get("tokens") or {}
        out.append(
            f"== end: {record['status']}"
            + (f" (the run ended {record['agent_status']})" if record.get("agent_status") else "")
            + f" after {record.get('steps')} steps, "
            f"{tokens.get('total', 0)} tokens, {record.get('elapsed_s', 0)} s"
            + (f"; answer: {record['answer']}" if record.get("answer") else "")
            + (f"; {record['reason']}" if record.get("reason") else "")
        )


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
