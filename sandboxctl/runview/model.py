"""What a run page shows, read from a run's records: the task, the model and its settings,
each step (reply, tool calls with their arguments and results, retries, context events,
errors, the step's diff where the run recorded one), the setup, the check and its verdict,
and the totals.

A trajectory is hostile input: a field of the wrong type is shown as what it is, never
fatal, and nothing here escapes anything (the templates do). A step's diff is optional:
any record of the step that carries a ``diff`` string (a unified diff) or a ``changes``
list shows it, so runs that record per-step changes get them on the page and older runs
simply have none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sandboxctl.stack.runs import Run

SETTINGS = (
    "model_url",
    "tool_mode",
    "temperature",
    "max_steps",
    "max_total_tokens",
    "max_wall_s",
    "max_reply_tokens",
    "context_tokens",
    "command_timeout_s",
)
"""The supervisor settings a run page lists (from ``run_start``'s ``config``)."""


def text(value: Any) -> str:
    """A value as text: strings as they are, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def number(value: Any) -> float:
    """A number from a field that should hold one; 0 for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass
class Call:
    """One tool call and its result (``status`` empty while none was recorded)."""

    name: str
    arguments: list[tuple[str, str]]
    call_id: str = ""
    status: str = ""
    exit_code: str = ""
    seconds: float = 0.0
    output: str = ""
    truncated: bool = False
    diff: str = ""


@dataclass
class Note:
    """A retry, a context change, an error or any record the page has no place for."""

    kind: str
    title: str
    detail: str = ""


@dataclass
class Step:
    """One model call and everything that followed it until the next."""

    number: int
    content: str = ""
    thought: str = ""
    finish_reason: str = ""
    problem: str = ""
    attempts: int = 1
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    context: str = ""
    calls: list[Call] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens of the step's model call."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def seconds(self) -> float:
        """The model's latency and the step's tool time."""
        return self.latency_s + sum(call.seconds for call in self.calls)


@dataclass
class Check:
    """The check run after the run: its command, output and verdict."""

    command: str
    passed: bool
    exit_code: str
    status: str
    output: str
    seconds: float


@dataclass
class RunView:
    """Everything a run page shows."""

    run_id: str
    file: str
    started: str
    task: str
    model_name: str
    status: str
    agent_status: str
    reason: str
    answer: str
    settings: list[tuple[str, str]]
    setup: list[Note]
    steps: list[Step]
    before: list[Note]
    check: Check | None
    check_command: str
    tokens: dict[str, int]
    seconds: float
    tool_calls: int

    @property
    def verdict(self) -> str:
        """``passed`` or ``failed`` when a check decided; otherwise how the run ended."""
        return self.status

    @property
    def step_seconds(self) -> float:
        """The steps' time together (model and tools)."""
        return sum(step.seconds for step in self.steps)


def model_of(run: Run) -> str:
    """The model a run used: the configured model name, or the scripted model's script."""
    return _model(run.start)


def _model(start: dict[str, Any]) -> str:
    config = _dict(start.get("config"))
    source = start.get("model_source")
    if isinstance(source, str) and source.startswith("scripted"):
        return source
    return text(config.get("model") or source or "?")


def _settings(start: dict[str, Any]) -> list[tuple[str, str]]:
    config = _dict(start.get("config"))
    rows = [(key, text(config[key])) for key in SETTINGS if key in config]
    if "tool_mode" in start:
        rows.append(("tool mode used", text(start["tool_mode"])))
    if start.get("tool_mode_reason"):
        rows.append(("tool mode because", text(start["tool_mode_reason"])))
    server = _dict(start.get("server"))
    if server.get("n_ctx"):
        rows.append(("server context", text(server["n_ctx"])))
    if server.get("model_path"):
        rows.append(("model file", text(server["model_path"])))
    versions = _dict(start.get("versions"))
    rows += [(f"version of {name}", text(value)) for name, value in sorted(versions.items())]
    return rows


def _reply(step: Step, reply: dict[str, Any]) -> None:
    usage = _dict(reply.get("usage"))
    step.content = text(reply.get("content"))
    step.finish_reason = text(reply.get("finish_reason"))
    step.problem = text(reply.get("problem"))
    step.attempts = int(number(reply.get("attempts")) or 1)
    step.latency_s = number(reply.get("latency_s"))
    step.prompt_tokens = int(number(usage.get("prompt_tokens")))
    step.completion_tokens = int(number(usage.get("completion_tokens")))
    step.estimated = usage.get("estimated") is True


def _note(record: dict[str, Any]) -> Note:
    """A record other than a reply, call or result, as a line and its detail."""
    kind = text(record.get("type"))
    if kind == "context":
        shortened, removed = _list(record.get("shortened")), _list(record.get("removed"))
        return Note(
            "context",
            f"context: {len(shortened)} message(s) shortened, {len(removed)} removed to fit "
            f"{text(record.get('budget_tokens'))} of {text(record.get('n_ctx'))} tokens",
            text({k: record.get(k) for k in ("estimated_before", "estimated_after")}),
        )
    if kind == "error" and record.get("kind") == "retry":
        return Note(
            "retry",
            f"retry {text(record.get('attempt'))} after {number(record.get('delay_s')):.1f} s",
            text(record.get("message")),
        )
    if kind == "error":
        return Note(
            "error",
            f"{text(record.get('where')) or 'error'}: {text(record.get('kind'))}",
            text(record.get("message")) + ("\n" + text(record["traceback"]))
            if record.get("traceback")
            else text(record.get("message")),
        )
    if kind == "repair":
        return Note("repair", f"log repaired: {text(record.get('dropped_bytes'))} torn bytes cut")
    if kind == "snapshot":  # the step's changes recorded (its diff, when read, shows apart)
        left_out = _list(record.get("not_recorded"))
        return Note(
            "snapshot",
            f"changes recorded: {text(record.get('changed'))} changed, "
            f"{text(record.get('removed'))} removed, {text(record.get('stored_bytes'))} bytes "
            f"stored in {number(record.get('ms')):.0f} ms",
            text(left_out) if left_out else "",
        )
    shown = {k: v for k, v in record.items() if k not in ("v", "seq", "ts", "run_id", "type")}
    return Note("other", kind or "record", text(shown))


def _arguments(value: Any) -> list[tuple[str, str]]:
    """A call's arguments, one by one: text as it is (a file's content reads as a file),
    anything else as JSON; arguments that are not an object as one unnamed value."""
    if isinstance(value, dict):
        return [(str(key), text(item)) for key, item in value.items()]
    return [("", text(value))] if value is not None else []


def _diff(record: dict[str, Any]) -> str:
    """The step's diff a record carries (``diff`` text or a ``changes`` list), if any."""
    if isinstance(record.get("diff"), str):
        return str(record["diff"])
    if isinstance(record.get("changes"), list):
        return text(record["changes"])
    return ""


def build(run: Run) -> RunView:
    """The page's view of ``run``."""
    start = run.start
    end = run.end
    steps: dict[int, Step] = {}
    before: list[Note] = []
    setup: list[Note] = []
    calls: dict[str, Call] = {}
    check: Check | None = None

    current: Step | None = None

    def step_of(record: dict[str, Any]) -> Step | None:
        """The record's step; a record without one (a retry) belongs to the step under way."""
        nonlocal current
        number_ = record.get("step")
        if isinstance(number_, int) and not isinstance(number_, bool) and number_ > 0:
            current = steps.setdefault(number_, Step(number_))
        return current

    for record in run.records:
        kind = record.get("type")
        step = step_of(record) if kind not in ("run_start", "setup", "check", "run_end") else None
        diff = _diff(record)
        if kind in ("run_start", "run_end"):
            pass
        elif kind == "model_request" and step is not None:
            context = _dict(record.get("context"))
            if context:
                step.context = (
                    f"context about {text(context.get('estimated'))} of "
                    f"{text(context.get('budget'))} tokens"
                )
        elif kind == "model_response" and step is not None:
            _reply(step, _dict(record.get("reply")))
        elif kind == "tool_call" and step is not None:
            call = Call(text(record.get("name")), _arguments(record.get("arguments")))
            call.call_id = text(record.get("call_id"))
            calls[call.call_id] = call
            step.calls.append(call)
        elif kind == "tool_result":
            call = calls.get(text(record.get("call_id"))) or Call("?", [])
            if call.name == "?" and step is not None:
                step.calls.append(call)
            call.status = text(record.get("status"))
            call.exit_code = text(record.get("exit_code"))
            call.seconds = number(record.get("duration_s"))
            call.output = text(record.get("output"))
            call.truncated = record.get("truncated") is True
            call.diff, diff = diff, ""
        elif kind == "setup":
            for item in _list(record.get("steps")):
                item = _dict(item)
                setup.append(
                    Note(
                        text(item.get("status")),
                        f"{text(item.get('tool'))} {text(item.get('target'))}",
                        text(item.get("output")),
                    )
                )
        elif kind == "check":
            check = Check(
                command=text(record.get("command")),
                passed=record.get("passed") is True,
                exit_code=text(record.get("exit_code")),
                status=text(record.get("status")),
                output=text(record.get("output")),
                seconds=number(record.get("duration_s")),
            )
        elif step is not None:
            step.notes.append(_note(record))
        else:
            before.append(_note(record))
        if diff and step is not None:
            step.diffs.append(diff)
    tokens = _dict(end.get("tokens"))
    ordered = [steps[n] for n in sorted(steps)]
    return RunView(
        run_id=run.run_id,
        file=run.file,
        started=run.started,
        task=run.task,
        model_name=_model(start),
        status=run.reason,
        agent_status=text(end.get("agent_status")),
        reason=text(end.get("reason")),
        answer=text(end.get("answer")),
        settings=_settings(start),
        setup=setup,
        steps=ordered,
        before=before,
        check=check,
        check_command=text(start.get("check")),
        tokens={
            "prompt": int(number(tokens.get("prompt"))),
            "completion": int(number(tokens.get("completion"))),
            "total": run.tokens,
        },
        seconds=run.seconds,
        tool_calls=int(number(end.get("tool_calls"))) or sum(len(s.calls) for s in ordered),
    )
