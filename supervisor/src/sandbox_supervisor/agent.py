"""The agent loop: check limits, query the model, parse its reply, execute, observe.

How the model is asked and how its reply is read is the job of a dialect
(:mod:`.dialects`: native tool calls, or a JSON-schema-constrained fallback); the
loop is the same for both. A malformed reply, an unknown tool or bad arguments go
back to the model as an observation; ``max_invalid_replies`` of them in a row end the
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
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sandbox_supervisor.client import ChatModel, DeadlineExceeded, ModelError, ModelReply
from sandbox_supervisor.dialects import FINISH, Action, Parsed, dialect, system_prompt
from sandbox_supervisor.exit_codes import EXIT_CODES, for_status
from sandbox_supervisor.limits import AgentLimits
from sandbox_supervisor.tools import Executor, ExecutorUnavailable, ToolRequest, ToolResult
from sandbox_supervisor.trajectory import TrajectoryError, TrajectoryWriter

__all__ = ["EXIT_CODES", "Agent", "AgentLimits", "RunResult", "Stop"]


class Stop(Exception):
    """The run is over; ``status`` is one of :data:`EXIT_CODES`."""

    def __init__(self, status: str, reason: str, answer: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.answer = answer


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
        return for_status(self.status)


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
        self.dialect = dialect(mode)
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
                limits=asdict(self.limits),
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
        self.check_time()
        if self.tokens["total"] >= self.limits.max_total_tokens:
            raise Stop(
                "token_budget",
                f"token budget of {self.limits.max_total_tokens} used up ({self.tokens['total']})",
            )

    def check_time(self) -> None:
        """Stop once the wall-clock budget is spent (model and tool time both count)."""
        if self.clock() - self.started >= self.limits.max_wall_s:
            raise Stop("time_budget", f"wall-clock budget of {self.limits.max_wall_s:g} s used up")

    def query(self) -> ModelReply:
        """Send the conversation to the model; log the request and the response."""
        self.steps += 1
        step = self.steps
        kwargs = self.dialect.request(self.specs)
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
        if reply.problem is not None:  # arrived, but too large or unreadable
            self.messages.append(self.dialect.assistant_message(reply))
            self.invalid(reply, reply.problem, Parsed())
            return
        parsed = self.dialect.parse(reply, self.steps, self.tool_names)
        self.messages.append(self.dialect.assistant_message(reply))
        cap = self.limits.max_calls_per_reply
        if len(parsed.actions) > cap:
            for extra in parsed.actions[cap:]:
                parsed.problems.append(
                    (extra.model_call_id or "", f"not run: at most {cap} tool calls per reply")
                )
            parsed.actions = parsed.actions[:cap]
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
            self.check_time()  # tool time counts: no call starts after the budget is spent
            result = self.execute(action)
            any_valid = any_valid or result.status != "invalid"
            self.observe(action, result)
        if any_valid and not parsed.problems:
            self.invalid_in_a_row = 0
        elif not any_valid:
            self.count_invalid("every tool call in the reply was invalid")

    def execute(self, action: Action) -> ToolResult:
        """Run one action through the executor, at most once per call id."""
        if action.call_id in self.executed:
            return self.executed[action.call_id]
        left = self.started + self.limits.max_wall_s - self.clock()
        request = ToolRequest(action.call_id, action.name, action.arguments, round(left, 3))
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

    # -- messages ----------------------------------------------------------------------
    def observe(self, action: Action, result: ToolResult) -> None:
        """Feed a tool result back to the model."""
        head = f"[{action.name}: {result.status}"
        if result.exit_code is not None:
            head += f", exit code {result.exit_code}"
        if result.truncated:
            head += ", output truncated"
        text = f"{head}]\n{self._cap(result.output)}"
        self.messages.append(self.dialect.observation(action.model_call_id, text))

    def observe_problem(self, model_call_id: str, message: str) -> None:
        """Answer one bad native tool call (every call id needs an answer)."""
        self.log.write(
            "error", where="reply", kind="invalid_call", message=message, step=self.steps
        )
        self.messages.append(self.dialect.observation(model_call_id, f"[error] {message}"))

    def invalid(self, reply: ModelReply, why: str, parsed: Parsed) -> None:
        """Tell the model what was wrong with its reply; stop after too many in a row."""
        self.log.write("error", where="reply", kind="invalid_reply", message=why, step=self.steps)
        self.progress(f"step {self.steps}: invalid reply: {why[:120]}")
        self.messages.extend(self.dialect.complaint(reply, parsed, why))
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
