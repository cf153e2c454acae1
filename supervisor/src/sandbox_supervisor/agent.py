"""The agent loop: check limits, query the model, parse its reply, execute, observe.

Two ways for the model to act, one loop:

* ``native``: tools are sent as OpenAI ``tools``; the reply's ``tool_calls`` are the
  actions, and each result goes back as a ``tool`` message.
* ``json``: the request carries ``response_format`` with a JSON schema whose
  ``action`` is one of the tools with its arguments, or ``finish`` with an answer.
  Servers such as llama-server turn that schema into a grammar, so even a model
  with no tool template produces well-formed actions.

Either way the reply is validated here (a server may ignore the schema and return
any text with a 200). A malformed reply, an unknown tool or bad arguments go back
to the model as an observation; ``max_invalid_replies`` of them in a row end the
run. Steps, wall clock and tokens are checked before every model call; a run also
stops after ``max_tool_timeouts`` consecutive tool timeouts. Tool calls run only
after a complete reply was received and each call id runs at most once, so
retrying a model request can never execute a tool call twice. Every event goes to
the trajectory before the loop moves on; ``run_end`` is written in ``finally``. When
the trajectory itself cannot be written (a full disk) the run stops at once with
status ``log_failed``: nothing runs that could not be recorded first.
"""

from __future__ import annotations

import json
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox_supervisor.client import ChatModel, DeadlineExceeded, ModelError, ModelReply
from sandbox_supervisor.tools import Executor, ExecutorUnavailable, ToolRequest, ToolResult
from sandbox_supervisor.trajectory import TrajectoryError, TrajectoryWriter

FINISH = "finish"
FINISH_SPEC: dict[str, Any] = {
    "name": FINISH,
    "description": "End the task and give the final answer.",
    "parameters": {
        "type": "object",
        "properties": {"answer": {"type": "string", "description": "the final answer"}},
        "required": ["answer"],
        "additionalProperties": False,
    },
}

#: Exit code of ``sandbox-supervisor run`` for each run status.
EXIT_CODES: dict[str, int] = {
    "success": 0,
    "error": 1,
    "step_budget": 3,
    "time_budget": 3,
    "token_budget": 3,
    "context_exhausted": 3,
    "invalid_replies": 4,
    "tool_timeouts": 4,
    "model_unavailable": 5,
    "model_rejected": 5,
    "model_error": 5,
    "script_exhausted": 5,
    "tools_unavailable": 5,
    "log_failed": 6,
    "interrupted": 130,
}

# JSON-schema keys that llama.cpp's schema-to-grammar converter understands; others go.
_GRAMMAR_KEYS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "description",
    }
)


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(value: Any) -> Any:
    """Replace lone UTF-16 surrogates (JSON allows ``"\\udada"``; UTF-8 cannot encode it) with
    U+FFFD in every string of a parsed reply, so no tool, log or request chokes on them."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)  # json.loads already joined valid pairs
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {
            without_lone_surrogates(key): without_lone_surrogates(item)
            for key, item in value.items()
        }
    return value


class Stop(Exception):
    """The run is over; ``status`` is one of :data:`EXIT_CODES`."""

    def __init__(self, status: str, reason: str, answer: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.answer = answer


class FormatError(Exception):
    """The reply could not be read as actions; the message is fed back to the model."""


@dataclass(frozen=True)
class AgentLimits:
    """Budgets and stop conditions of one run."""

    max_steps: int = 30
    max_wall_s: float = 1800.0
    max_total_tokens: int = 200_000
    max_invalid_replies: int = 3
    max_tool_timeouts: int = 3
    max_observation_chars: int = 16_000


@dataclass
class RunResult:
    """How a run ended."""

    status: str
    reason: str
    answer: str | None
    steps: int
    tokens: dict[str, int]
    elapsed_s: float
    tool_calls: int

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this outcome."""
        return EXIT_CODES.get(self.status, 1)


@dataclass(frozen=True)
class Action:
    """One validated action from a reply: a tool call or ``finish``."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    model_call_id: str | None = None


@dataclass
class _Parsed:
    actions: list[Action] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (model call id, message)


def grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Keep only the JSON-schema keys a grammar-constrained server understands."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _GRAMMAR_KEYS:
            continue
        if key == "properties":
            out[key] = {name: grammar_schema(sub) for name, sub in value.items()}
        elif key in ("anyOf", "oneOf"):
            out[key] = [grammar_schema(sub) for sub in value]
        elif key == "items" and isinstance(value, dict):
            out[key] = grammar_schema(value)
        else:
            out[key] = value
    return out


def action_schema(specs: list[dict[str, Any]], thought_max: int = 600) -> dict[str, Any]:
    """The JSON schema of one reply in json mode: a thought and one action."""
    choices = []
    for spec in [*specs, FINISH_SPEC]:
        choices.append(
            {
                "type": "object",
                "properties": {
                    "tool": {"type": "string", "const": spec["name"]},
                    "args": grammar_schema(spec["parameters"]),
                },
                "required": ["tool", "args"],
                "additionalProperties": False,
            }
        )
    return {
        "type": "object",
        "properties": {
            "thought": {"type": "string", "maxLength": thought_max},
            "action": {"anyOf": choices},
        },
        "required": ["thought", "action"],
        "additionalProperties": False,
    }


def system_prompt(mode: str, specs: list[dict[str, Any]]) -> str:
    """The system message: the job, the tools and how to answer."""
    lines = [
        "You are an agent that completes a task inside a workspace directory.",
        "All paths are relative to the workspace root. Work step by step: one action,",
        "then read its result. When the task is done, call finish with your answer.",
        "",
        "Tools:",
    ]
    for spec in [*specs, FINISH_SPEC]:
        args = json.dumps(spec["parameters"].get("properties", {}), separators=(",", ":"))
        lines.append(f"- {spec['name']}: {spec['description']} Arguments: {args}")
    if mode == "json":
        lines += [
            "",
            "Reply with exactly one JSON object and nothing else:",
            '{"thought": "<short reasoning>", "action": {"tool": "<tool name>", "args": {...}}}',
            'To finish: {"thought": "...", "action": {"tool": "finish",'
            ' "args": {"answer": "..."}}}',
        ]
    else:
        lines += ["", "Act only through tool calls; call finish to end."]
    return "\n".join(lines)


class Agent:
    """One run of the loop over a model, an executor and a trajectory."""

    def __init__(
        self,
        model: ChatModel,
        executor: Executor,
        log: TrajectoryWriter,
        *,
        mode: str,
        limits: AgentLimits | None = None,
        progress: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("native", "json"):
            raise ValueError(f"tool mode must be native or json, not {mode!r}")
        self.model = model
        self.executor = executor
        self.log = log
        self.mode = mode
        self.limits = limits or AgentLimits()
        self.progress = progress or (lambda _msg: None)
        self.clock = clock
        self.specs = executor.specs()
        self.tool_names = {spec["name"] for spec in self.specs}
        self.messages: list[dict[str, Any]] = []
        self.steps = 0
        self.tokens = {"prompt": 0, "completion": 0, "total": 0}
        self.invalid_in_a_row = 0
        self.timeouts_in_a_row = 0
        self.executed: dict[str, ToolResult] = {}
        self.started = 0.0

    # -- the loop ----------------------------------------------------------------------
    def run(self, task: str, run_info: dict[str, Any] | None = None) -> RunResult:
        """Run the task to an end; never raises for model, tool or budget trouble."""
        self.started = self.clock()
        try:
            self.log.write(
                "run_start",
                task=task,
                tool_mode=self.mode,
                limits=self.limits.__dict__,
                tools=[s["name"] for s in self.specs],
                **(run_info or {}),
            )
        except TrajectoryError as exc:
            self.progress(f"run not started: {exc}")
            return RunResult("log_failed", str(exc), None, 0, dict(self.tokens), 0.0, 0)
        self.messages = [
            {"role": "system", "content": system_prompt(self.mode, self.specs)},
            {"role": "user", "content": task},
        ]
        status, reason, answer = "error", "", None
        try:
            while True:
                self.check_limits()
                reply = self.query()
                self.step(reply)
        except Stop as stop:
            status, reason, answer = stop.status, stop.reason, stop.answer
        except DeadlineExceeded as exc:
            status, reason = "time_budget", str(exc)
        except ModelError as exc:
            status, reason = exc.kind, str(exc)
            self._record("error", where="model", kind=exc.kind, message=str(exc))
        except TrajectoryError as exc:
            status, reason = "log_failed", str(exc)
        except ExecutorUnavailable as exc:
            status, reason = "tools_unavailable", str(exc)
            self._record("error", where="tools", kind="tools_unavailable", message=str(exc))
        except KeyboardInterrupt:
            status, reason = "interrupted", "interrupted by the user"
        except Exception as exc:
            status, reason = "error", f"{type(exc).__name__}: {exc}"
            self._record(
                "error",
                where="supervisor",
                kind=type(exc).__name__,
                message=str(exc),
                traceback=traceback.format_exc(limit=20),
            )
        finally:
            elapsed = round(self.clock() - self.started, 4)
            if self.log.broken is not None and status != "log_failed":
                status, reason = "log_failed", f"{reason}; the trajectory failed: {self.log.broken}"
            result = RunResult(
                status, reason, answer, self.steps, dict(self.tokens), elapsed, len(self.executed)
            )
            self._record(
                "run_end",
                status=status,
                reason=reason,
                answer=answer,
                steps=self.steps,
                tokens=self.tokens,
                elapsed_s=elapsed,
                tool_calls=len(self.executed),
                exit_code=result.exit_code,
            )
            if self.log.broken is not None and result.status != "log_failed":
                result.status = "log_failed"
                result.reason = f"{result.reason}; the trajectory failed: {self.log.broken}"
        self.progress(f"run ended: {status} ({reason})" if reason else f"run ended: {status}")
        return result

    def _record(self, event_type: str, **fields: Any) -> None:
        """Write a record while ending a run: a trajectory that fails is not raised again."""
        if self.log.broken is not None:
            return
        try:
            self.log.write(event_type, **fields)
        except TrajectoryError as exc:
            self.progress(str(exc))

    def check_limits(self) -> None:
        """Stop before a model call that would go over a budget."""
        if self.steps >= self.limits.max_steps:
            raise Stop("step_budget", f"step budget of {self.limits.max_steps} used up")
        elapsed = self.clock() - self.started
        if elapsed >= self.limits.max_wall_s:
            raise Stop("time_budget", f"wall-clock budget of {self.limits.max_wall_s:g} s used up")
        if self.tokens["total"] >= self.limits.max_total_tokens:
            raise Stop(
                "token_budget",
                f"token budget of {self.limits.max_total_tokens} used up ({self.tokens['total']})",
            )

    def query(self) -> ModelReply:
        """Send the conversation to the model; log the request and the response."""
        self.steps += 1
        step = self.steps
        kwargs: dict[str, Any] = {}
        if self.mode == "native":
            kwargs["tools"] = [*self.specs, FINISH_SPEC]
        else:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "action",
                    "schema": action_schema(self.specs),
                },
            }
        self.log.write(
            "model_request",
            step=step,
            messages=len(self.messages),
            last_message=self.messages[-1],
            mode=self.mode,
        )
        self.progress(f"step {step}: asking the model")
        deadline = self.started + self.limits.max_wall_s
        reply = self.model.complete(self.messages, deadline=deadline, **kwargs)
        self.tokens["prompt"] += reply.usage.prompt_tokens
        self.tokens["completion"] += reply.usage.completion_tokens
        self.tokens["total"] += reply.usage.total_tokens
        self.log.write("model_response", step=step, reply=reply.to_dict())
        return reply

    def step(self, reply: ModelReply) -> None:
        """Parse the reply, run its actions, and feed the results back."""
        parsed = self.parse(reply)
        self.remember(reply)
        if not parsed.actions:
            why = "; ".join(msg for _, msg in parsed.problems) or "no action in the reply"
            self.invalid(reply, why, parsed)
            return
        for model_id, message in parsed.problems:  # bad calls next to good ones
            self.observe_problem(model_id, message)
        any_valid = False
        for action in parsed.actions:
            if action.name == FINISH:
                answer = str(action.arguments.get("answer", ""))
                self.log.write(
                    "tool_call",
                    step=self.steps,
                    call_id=action.call_id,
                    name=FINISH,
                    arguments=action.arguments,
                )
                raise Stop("success", "", answer)
            result = self.execute(action)
            any_valid = any_valid or result.status != "invalid"
            self.observe(action, result)
        if any_valid and not parsed.problems:
            self.invalid_in_a_row = 0
        elif not any_valid:
            self.count_invalid("every tool call in the reply was invalid")

    def parse(self, reply: ModelReply) -> _Parsed:
        """Validate the reply into actions (and problems to report to the model)."""
        if self.mode == "native":
            return self._parse_native(reply)
        return self._parse_json(reply)

    def execute(self, action: Action) -> ToolResult:
        """Run one action through the executor, at most once per call id."""
        if action.call_id in self.executed:
            return self.executed[action.call_id]
        request = ToolRequest(action.call_id, action.name, action.arguments)
        self.log.write(
            "tool_call", step=self.steps, model_call_id=action.model_call_id, **request.to_dict()
        )
        self.progress(f"step {self.steps}: {action.name} {_brief(action.arguments)}")
        result = self.executor.execute(request)
        self.executed[action.call_id] = result
        self.log.write("tool_result", step=self.steps, **result.to_dict())
        if result.status == "timeout":
            self.timeouts_in_a_row += 1
            if self.timeouts_in_a_row >= self.limits.max_tool_timeouts:
                raise Stop("tool_timeouts", f"{self.timeouts_in_a_row} tool timeouts in a row")
        else:
            self.timeouts_in_a_row = 0
        return result

    # -- parsing -----------------------------------------------------------------------
    def _parse_native(self, reply: ModelReply) -> _Parsed:
        parsed = _Parsed()
        if not reply.tool_calls:
            parsed.problems.append(
                ("", "the reply has no tool call; act through a tool, or call finish to end")
            )
            return parsed
        seen: set[str] = set()
        for index, call in enumerate(reply.tool_calls):
            if call.id in seen:
                continue  # the same call twice in one reply runs once
            seen.add(call.id)
            problem = self._check_name(call.name)
            arguments: Any = None
            if problem is None:
                try:
                    arguments = without_lone_surrogates(json.loads(call.arguments or "{}"))
                except ValueError as exc:
                    problem = f"arguments of {call.name} are not valid JSON: {exc}"
                else:
                    if not isinstance(arguments, dict):
                        problem = f"arguments of {call.name} must be a JSON object"
            if problem is not None:
                parsed.problems.append((call.id, problem))
                continue
            parsed.actions.append(Action(f"{self.steps}.{index}", call.name, arguments, call.id))
        return parsed

    def _parse_json(self, reply: ModelReply) -> _Parsed:
        parsed = _Parsed()
        text = (reply.content or "").strip()
        if text.startswith("```"):  # tolerate a fenced block from unconstrained servers
            text = text.strip("`").removeprefix("json").strip()
        try:
            data = without_lone_surrogates(json.loads(text))
        except ValueError as exc:
            cut = " (the reply was cut at max tokens)" if reply.finish_reason == "length" else ""
            parsed.problems.append(("", f"the reply is not valid JSON{cut}: {exc}"))
            return parsed
        action = data.get("action") if isinstance(data, dict) else None
        if not isinstance(action, dict) or not isinstance(action.get("tool"), str):
            parsed.problems.append(
                ("", 'the reply must be {"thought": ..., "action": {"tool": ..., "args": {...}}}')
            )
            return parsed
        name = action["tool"]
        args = action.get("args", {})
        problem = self._check_name(name)
        if problem is None and not isinstance(args, dict):
            problem = "action.args must be a JSON object"
        if problem is not None:
            parsed.problems.append(("", problem))
            return parsed
        parsed.actions.append(Action(f"{self.steps}.0", name, args))
        return parsed

    def _check_name(self, name: str) -> str | None:
        if name == FINISH or name in self.tool_names:
            return None
        known = ", ".join(sorted([*self.tool_names, FINISH]))
        return f"unknown tool {name!r}; the tools are: {known}"

    # -- messages ----------------------------------------------------------------------
    def remember(self, reply: ModelReply) -> None:
        """Append the model's reply to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.content or ""}
        if self.mode == "native" and reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in reply.tool_calls
            ]
        self.messages.append(message)

    def observe(self, action: Action, result: ToolResult) -> None:
        """Feed a tool result back to the model."""
        head = f"[{action.name}: {result.status}"
        if result.exit_code is not None:
            head += f", exit code {result.exit_code}"
        if result.truncated:
            head += ", output truncated"
        text = f"{head}]\n{self._cap(result.output)}"
        if self.mode == "native":
            self.messages.append(
                {"role": "tool", "tool_call_id": action.model_call_id, "content": text}
            )
        else:
            self.messages.append({"role": "user", "content": f"Observation:\n{text}"})

    def observe_problem(self, model_call_id: str, message: str) -> None:
        """Answer one bad native tool call (every call id needs an answer)."""
        self.log.write(
            "error", where="reply", kind="invalid_call", message=message, step=self.steps
        )
        self.messages.append(
            {"role": "tool", "tool_call_id": model_call_id, "content": f"[error] {message}"}
        )

    def invalid(self, reply: ModelReply, why: str, parsed: _Parsed) -> None:
        """Tell the model what was wrong with its reply; stop after too many in a row."""
        self.log.write("error", where="reply", kind="invalid_reply", message=why, step=self.steps)
        self.progress(f"step {self.steps}: invalid reply: {why[:120]}")
        if self.mode == "native" and reply.tool_calls:
            for model_id, message in parsed.problems:
                self.messages.append(
                    {"role": "tool", "tool_call_id": model_id, "content": f"[error] {message}"}
                )
        else:
            hint = (
                'Reply with one JSON object: {"thought": "...", "action": {"tool": "...", '
                '"args": {...}}}.'
                if self.mode == "json"
                else "Use a tool call."
            )
            self.messages.append(
                {"role": "user", "content": f"Your last reply was not usable: {why}. {hint}"}
            )
        self.count_invalid(why)

    def count_invalid(self, why: str) -> None:
        """Count an unusable reply; stop after ``max_invalid_replies`` in a row."""
        self.invalid_in_a_row += 1
        if self.invalid_in_a_row >= self.limits.max_invalid_replies:
            raise Stop(
                "invalid_replies",
                f"{self.invalid_in_a_row} unusable replies in a row (last: {why[:200]})",
            )

    def _cap(self, text: str) -> str:
        cap = self.limits.max_observation_chars
        if len(text) <= cap:
            return text
        half = cap // 2
        return f"{text[:half]}\n[truncated {len(text) - 2 * half} characters]\n{text[-half:]}"


def _brief(arguments: dict[str, Any]) -> str:
    text = json.dumps(arguments, ensure_ascii=False)
    return text if len(text) <= 100 else text[:97] + "..."
