"""Keeping each request within the model server's context.

llama-server refuses a prompt longer than its context (per slot: ``n_ctx`` of ``/props``'
``default_generation_settings``), and a reply needs room after the prompt. The loop's
conversation grows by a reply and an observation per step, so without care a long run
ends ``context_exhausted`` long before its budgets. :class:`ContextWindow` estimates a
request's tokens from its characters (the ratio learnt from what the server reports:
``usage.prompt_tokens`` of each reply, or the count in a "request (N tokens) exceeds the
available context size (M tokens)" refusal) and, when the estimate passes the budget,
makes room oldest first:

1. shortens old observations (tool results, complaints) to a one-line placeholder;
2. then shortens old replies (their text and tool-call arguments);
3. then removes whole old turns;
4. then cuts the middle out of the latest observations (head and tail stay), and last
   the latest reply.

The system message and the task are never touched; when those alone (with what is left
of one step) do not fit, :class:`ContextTooSmall` says so and the run ends ``context_exhausted``.
Changes are made in place and kept (a message once shortened stays so), so the
conversation's prefix stays stable between requests (the server's prompt cache keeps
working). The loop records each change in the trajectory (a ``context`` record): what
was shortened or removed, and the estimate against the budget.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER = "[{what} of {chars} characters dropped to fit the model's context]"
_EXCEEDS = re.compile(r"\((\d+) tokens\) exceeds the available context size \((\d+) tokens\)")
HEAD = 2  # the system message and the task
CUT_FLOOR = 200  # characters a cut message keeps at least (shorter: a placeholder)


class ContextTooSmall(Exception):
    """The system message, the task and the latest step alone do not fit the context."""


def refused_sizes(message: str) -> tuple[int, int] | None:
    """(request tokens, context tokens) from llama-server's refusal, when it says them."""
    found = _EXCEEDS.search(message)
    return (int(found.group(1)), int(found.group(2))) if found else None


def message_chars(message: dict[str, Any]) -> int:
    """Characters a message costs in a request (its JSON form, a fair proxy)."""
    return len(json.dumps(message, ensure_ascii=False))


@dataclass
class Trim:
    """What one :meth:`ContextWindow.fit` changed."""

    shortened: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.shortened or self.removed)


@dataclass
class ContextWindow:
    """The token budget of one request and the estimate of a conversation's tokens.

    ``n_ctx`` is the context of one request (a slot's), ``reply_tokens`` the room kept for
    the reply (at most half the context), ``overhead_chars`` what every request
    adds besides the messages (the tools, in native mode).
    """

    n_ctx: int
    reply_tokens: int
    chars_per_token: float = 3.0
    overhead_chars: int = 0
    margin_tokens: int = 16

    @property
    def budget(self) -> int:
        """Prompt tokens a request may use."""
        return max(1, self.n_ctx - self.reserve - self.margin_tokens)

    def chars(self, messages: list[dict[str, Any]]) -> int:
        """Characters of a request with these messages."""
        return self.overhead_chars + sum(message_chars(m) for m in messages)

    def estimate(self, messages: list[dict[str, Any]]) -> int:
        """Estimated prompt tokens of a request with these messages (template included)."""
        return math.ceil(self.chars(messages) / self.chars_per_token) + 8 * len(messages)

    def learn(self, chars: int, prompt_tokens: int) -> None:
        """Take the ratio from a request of ``chars`` that the server counted as
        ``prompt_tokens`` (with a 10% safety margin); a wild count is ignored."""
        if prompt_tokens > 0 and chars > 0:
            ratio = chars / prompt_tokens * 0.9
            if 0.2 <= ratio <= 12:
                self.chars_per_token = ratio

    def fit(self, messages: list[dict[str, Any]], *, force: bool = False) -> Trim:
        """Shorten or remove old messages in place until the estimate fits the budget.

        ``force`` makes room even when the estimate already fits (after the server
        refused a request the estimate had let through). Raises :class:`ContextTooSmall`
        when only the head and the latest turn are left and they do not fit.
        """
        trim = Trim()
        if not force and self.estimate(messages) <= self.budget:
            return trim
        tail = _latest_turn(messages)
        for stage in ("observation", "reply"):
            for index in range(HEAD, tail):
                if self.estimate(messages) <= self.budget and not (force and not trim):
                    return trim
                message = messages[index]
                if _kind(message) == stage and not message.get("_shortened"):
                    trim.shortened.append(_shorten(message, index))
        while self.estimate(messages) > self.budget or (force and not trim):
            tail = _latest_turn(messages)
            if tail <= HEAD:
                if self._cut_latest(messages, trim):
                    continue
                raise ContextTooSmall(
                    f"the task and the latest step need about {self.estimate(messages)} tokens; "
                    f"the context allows {self.budget} for a request ({self.n_ctx} in all, "
                    f"{self.reserve} kept for the reply)"
                )
            end = _next_reply(messages, HEAD + 1, tail)
            for index in range(HEAD, end):
                trim.removed.append(_describe(messages[index], index))
            del messages[HEAD:end]
        return trim

    @property
    def reserve(self) -> int:
        """Tokens kept for the reply: its ``max_tokens``, at most half the context."""
        return min(self.reply_tokens, self.n_ctx // 2)

    def _cut_latest(self, messages: list[dict[str, Any]], trim: Trim) -> bool:
        """Cut the middle of the largest message after the task, by what the estimate is
        over (at least a quarter of it): the latest observations first, then the latest
        reply (its text, then its tool-call arguments). False when nothing is left."""
        over = max(self.estimate(messages) - self.budget, 0)
        for wanted in ("observation", "reply"):
            candidates = [
                i
                for i in range(HEAD, len(messages))
                if _kind(messages[i]) == wanted and _cuttable(messages[i])
            ]
            if candidates:
                break
        else:
            return False
        index = max(candidates, key=lambda i: message_chars(messages[i]))
        message = messages[index]
        record = _describe(message, index)
        content = str(message.get("content") or "")
        if len(content) <= CUT_FLOOR:  # a reply whose bulk is its tool-call arguments
            record["cut_chars"] = message_chars(message)
            _shorten(message, index)
            trim.shortened.append(record)
            return True
        drop = max(math.ceil(over * self.chars_per_token) + 100, len(content) // 4)
        keep = len(content) - drop
        if keep < CUT_FLOOR:
            _shorten(message, index)
        else:
            half = keep // 2
            message["content"] = (
                f"{content[:half]}\n[{drop} characters dropped to fit the model's context]\n"
                f"{content[-half:]}"
            )
        record["cut_chars"] = min(drop, len(content))
        trim.shortened.append(record)
        return True


def _cuttable(message: dict[str, Any]) -> bool:
    """Whether cutting ``message`` would still gain room."""
    if message.get("_shortened"):
        return False
    if len(str(message.get("content") or "")) > CUT_FLOOR:
        return True
    calls = message.get("tool_calls") or []
    return sum(len(str((c.get("function") or {}).get("arguments", ""))) for c in calls) > CUT_FLOOR


def _kind(message: dict[str, Any]) -> str:
    return "reply" if message.get("role") == "assistant" else "observation"


def _latest_turn(messages: list[dict[str, Any]]) -> int:
    """Index of the last assistant message after the head (the head's end when none)."""
    for index in range(len(messages) - 1, HEAD - 1, -1):
        if messages[index].get("role") == "assistant":
            return index
    return HEAD


def _next_reply(messages: list[dict[str, Any]], start: int, stop: int) -> int:
    """Index of the first assistant message in ``[start, stop]`` (``stop`` when none)."""
    for index in range(start, stop):
        if messages[index].get("role") == "assistant":
            return index
    return stop


def _describe(message: dict[str, Any], index: int) -> dict[str, Any]:
    return {"index": index, "role": message.get("role"), "chars": message_chars(message)}


def _shorten(message: dict[str, Any], index: int) -> dict[str, Any]:
    """Replace a message's text (and a reply's call arguments) by a placeholder."""
    record = _describe(message, index)
    what = "a reply" if message.get("role") == "assistant" else "an observation"
    content = str(message.get("content") or "")
    message["content"] = PLACEHOLDER.format(what=what, chars=len(content))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        if len(str(function.get("arguments", ""))) > 2:
            function["arguments"] = "{}"
    message["_shortened"] = True
    return record


def sendable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as sent: without this module's private marks."""
    return [{k: v for k, v in m.items() if not k.startswith("_")} for m in messages]
