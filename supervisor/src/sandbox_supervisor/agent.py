"""The agent loop: check limits, query the model, parse its reply, execute, observe.

How the model is asked and how its reply is read is the job of a dialect
(:mod:`.dialects`: native tool calls, or a JSON-schema-constrained fallback); the
loop is the same for both. A malformed reply, an unknown tool or bad arguments go
back to the model as an observation; ``max_invalid_replies`` of them in a row end the
run. Steps, wall clock and tokens are checked before every model call; a run also
stops after ``max_tool_timeouts`` consecutive tool timeouts, and after
``max_repeated_failures`` times the same failing call (same tool and arguments, same
result) in a row: a model stuck in a loop is told so from the second time, then stopped
rather than left to spend the step budget. Tool calls run only
after a complete reply was received and each call id runs at most once, so
retrying a model request can never execute a tool call twice. Every event goes to
the trajectory before the loop moves on; ``run_end`` is written in ``finally``. When
the trajectory itself cannot be written (a full disk) the run stops at once with
status ``log_failed``: nothing runs that could not be recorded first.

Statuses say what is known. The model calling ``finish`` ends the run ``finished``: a
claim, not a verdict. A run may carry a *setup* and a *check* (:mod:`.setup_check`):
when the loop ended on its own terms the check's exit status alone makes the run
``passed`` or ``failed``, and ``run_end`` keeps what the loop ended with as
``agent_status``. How a run ends is :mod:`.outcome`'s. With a context size
(``AgentLimits.context_tokens``) each request is kept within it (:mod:`.context`): old
observations are shortened first, and each change is a ``context`` record.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sandbox_supervisor.client import (
    ChatModel,
    ContextExhausted,
    DeadlineExceeded,
    ModelError,
    ModelReply,
)
from sandbox_supervisor.context import (
    ContextTooSmall,
    ContextWindow,
    refused_sizes,
    sendable,
)
from sandbox_supervisor.dialects import FINISH, Action, Parsed, dialect, system_prompt
from sandbox_supervisor.exit_codes import EXIT_CODES, FINISHED, for_status
from sandbox_supervisor.limits import AgentLimits
from sandbox_supervisor.outcome import RunResult, Stop
from sandbox_supervisor.recording import CHANGING_TOOLS, RunRecord
from sandbox_supervisor.setup_check import Setup, judge, prepare
from sandbox_supervisor.tools import Executor, ExecutorUnavailable, ToolRequest, ToolResult
from sandbox_supervisor.tools.executor import Snapshots
from sandbox_supervisor.trajectory import TrajectoryError, TrajectoryWriter

__all__ = ["EXIT_CODES", "Agent", "AgentLimits", "RunResult", "Setup", "Stop"]

CONTEXT_RETRIES = 3  # requests refused for their size, made smaller and sent again


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
        setup: Setup | None = None,
        check: str | None = None,
        record: RunRecord | None = None,
    ) -> None:
        self.dialect = dialect(mode)
        self.record = record
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
        self.last_failure: tuple[Any, ...] | None = None
        self.failures_in_a_row = 0
        self.executed: dict[str, ToolResult] = {}
        self.started = 0.0
        self.setup = setup
        self.check = check
        self.window: ContextWindow | None = None
        if self.limits.context_tokens:
            self.window = self._window(self.limits.context_tokens)

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
                **({"check": self.check} if self.check is not None else {}),
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
        agent_status: str | None = None
        check: dict[str, Any] | None = None
        try:
            if self.setup is not None:
                prepare(self.executor, self.log, self.setup)
            self.snapshot(0)
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
            if self.check is not None and for_status(status) in FINISHED:
                agent_status = status
                status, reason, check = judge(
                    self.executor,
                    self.check,
                    status,
                    reason,
                    record=self._record,
                    progress=self.progress,
                )
            elapsed = round(self.clock() - self.started, 4)
            if self.log.broken is not None and status != "log_failed":
                status, reason = "log_failed", f"{reason}; the trajectory failed: {self.log.broken}"
            result = RunResult(
                status,
                reason,
                answer,
                self.steps,
                dict(self.tokens),
                elapsed,
                len(self.executed),
                agent_status,
                check,
            )
            self._record("run_end", **result.end_fields())
            if self.log.broken is not None and result.status != "log_failed":
                result.status = "log_failed"
                result.reason = f"{result.reason}; the trajectory failed: {self.log.broken}"
        self.progress(f"run ended: {status} ({reason})" if reason else f"run ended: {status}")
        return result

    # -- ending a run ------------------------------------------------------------------
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

    # -- the context -------------------------------------------------------------------
    def _window(self, n_ctx: int) -> ContextWindow:
        overhead = 0
        if self.mode == "native":  # the tools are rendered into the prompt
            overhead = len(json.dumps(self.dialect.request(self.specs)))
        return ContextWindow(n_ctx, self.limits.reply_tokens, overhead_chars=overhead)

    def fit_context(self, *, force: bool = False) -> None:
        """Make the conversation fit the context; record what was dropped."""
        if self.window is None:
            return
        before = self.window.estimate(self.messages)
        try:
            trim = self.window.fit(self.messages, force=force)
        except ContextTooSmall as exc:
            raise Stop("context_exhausted", str(exc)) from None
        if trim:
            self.log.write(
                "context",
                step=self.steps,
                n_ctx=self.window.n_ctx,
                budget_tokens=self.window.budget,
                estimated_before=before,
                estimated_after=self.window.estimate(self.messages),
                chars_per_token=round(self.window.chars_per_token, 3),
                shortened=trim.shortened,
                removed=trim.removed,
            )
            dropped = len(trim.shortened) + len(trim.removed)
            self.progress(f"step {self.steps}: {dropped} old message(s) dropped to fit the context")

    def refused_for_size(self, exc: ContextExhausted, chars: int) -> None:
        """Learn the real sizes from the server's refusal; the next request is smaller."""
        sizes = refused_sizes(str(exc))
        if sizes is None and self.window is None:
            raise exc  # nothing says how large the context is
        if self.window is None:
            assert sizes is not None
            self.window = self._window(sizes[1])
        if sizes is not None:
            self.window.n_ctx = min(self.window.n_ctx, sizes[1])
            self.window.learn(chars, sizes[0])
        self._record(
            "error", where="model", kind="context_exceeded", message=str(exc), step=self.steps
        )
        self.fit_context(force=True)

    def query(self) -> ModelReply:
        """Send the conversation to the model; log the request and the response."""
        self.steps += 1
        step = self.steps
        kwargs = self.dialect.request(self.specs)
        self.fit_context()
        self.log.write(
            "model_request",
            step=step,
            messages=len(self.messages),
            last_message=sendable(self.messages[-1:])[0],
            mode=self.mode,
            **(
                {
                    "context": {
                        "estimated": self.window.estimate(self.messages),
                        "budget": self.window.budget,
                    }
                }
                if self.window is not None
                else {}
            ),
        )
        self.progress(f"step {step}: asking the model")
        deadline = self.started + self.limits.max_wall_s
        for attempt in range(CONTEXT_RETRIES + 1):
            sent = sendable(self.messages)
            chars = sum(len(json.dumps(m, ensure_ascii=False)) for m in sent)
            try:
                reply = self.model.complete(sent, deadline=deadline, **kwargs)
            except ContextExhausted as exc:
                if attempt == CONTEXT_RETRIES:
                    raise Stop("context_exhausted", str(exc)) from None
                self.refused_for_size(
                    exc, chars + (self.window.overhead_chars if self.window else 0)
                )
                continue
            break
        if self.window is not None and reply.problem is None:
            self.window.learn(chars + self.window.overhead_chars, reply.usage.prompt_tokens)
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
        changing = any(action.name in CHANGING_TOOLS for action in parsed.actions)
        try:
            self.act(parsed)
        finally:
            if changing:
                self.snapshot(self.steps)

    def act(self, parsed: Parsed) -> None:
        """Run the reply's actions in order; ``finish`` ends the run."""
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
                raise Stop("finished", "", answer)
            self.check_time()  # tool time counts: no call starts after the budget is spent
            result = self.execute(action)
            any_valid = any_valid or result.status != "invalid"
            self.observe(action, result)
        if any_valid and not parsed.problems:
            self.invalid_in_a_row = 0
        elif not any_valid:
            self.count_invalid("every tool call in the reply was invalid")

    def snapshot(self, step: int) -> None:
        """Record the run's folder after ``step`` (see :mod:`.recording`); a failure to
        record is logged, never fatal."""
        if self.record is None or not isinstance(self.executor, Snapshots):
            return
        try:
            done = self.record.take(self.executor, step)
        except ExecutorUnavailable:
            raise
        except Exception as exc:  # the record must not end the run
            self._record("error", where="record", kind=type(exc).__name__, message=str(exc))
            return
        self.log.write("snapshot", **done.fields())

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
        self.count_repeats(action, result)
        return result

    def count_repeats(self, action: Action, result: ToolResult) -> None:
        """Count the same failing call with the same result in a row (timeouts and invalid
        calls have their own counts); stop at ``max_repeated_failures``."""
        if result.ok or result.status in ("timeout", "invalid"):
            self.last_failure, self.failures_in_a_row = None, 0
            return
        arguments = json.dumps(action.arguments, sort_keys=True, default=str)
        key = (action.name, arguments, result.status, result.exit_code, result.output)
        self.failures_in_a_row = self.failures_in_a_row + 1 if key == self.last_failure else 1
        self.last_failure = key
        if self.failures_in_a_row >= self.limits.max_repeated_failures:
            raise Stop(
                "repeated_failures",
                f"the same failing call {self.failures_in_a_row} times in a row: "
                f"{action.name} {_brief(action.arguments)}",
            )

    # -- messages ----------------------------------------------------------------------
    def observe(self, action: Action, result: ToolResult) -> None:
        """Feed a tool result back to the model."""
        head = f"[{action.name}: {result.status}"
        if result.exit_code is not None:
            head += f", exit code {result.exit_code}"
        if result.truncated:
            head += ", output truncated"
        text = f"{head}]\n{self._cap(result.output)}"
        if self.failures_in_a_row >= 2:
            text += (
                f"\n[note] this exact call failed the same way {self.failures_in_a_row} times "
                f"in a row; the run stops at {self.limits.max_repeated_failures}. "
                "Do something else."
            )
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
