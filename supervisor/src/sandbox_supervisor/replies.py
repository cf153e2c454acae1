"""What a model answers: :class:`ModelReply` and the reading of a chat-completions body.

The body comes from a server that may be broken or hostile, so reading it never
trusts its shape: :func:`parse_completion` raises ``ValueError`` for anything it
cannot use, and never another exception.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox_supervisor import jsonsafe


@dataclass(frozen=True)
class Usage:
    """Token counts of one reply (``estimated`` when the server sent none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False


@dataclass(frozen=True)
class ToolCallOut:
    """A native tool call as the model wrote it (arguments are raw JSON text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ModelReply:
    """One reply of the model, with what it cost."""

    content: str | None
    tool_calls: list[ToolCallOut] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    latency_s: float = 0.0
    attempts: int = 1
    problem: str | None = None  # why the reply cannot be used (too large, unreadable)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form (as recorded in the trajectory)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelReply:
        """Build from the JSON-able form."""
        return cls(
            content=data.get("content"),
            tool_calls=[ToolCallOut(**c) for c in data.get("tool_calls", [])],
            finish_reason=data.get("finish_reason"),
            usage=Usage(**data.get("usage", {})),
            model=data.get("model", ""),
            latency_s=data.get("latency_s", 0.0),
            attempts=data.get("attempts", 1),
            problem=data.get("problem"),
        )


def _estimate_tokens(messages: list[dict[str, Any]], content: str | None) -> Usage:
    prompt = sum(len(json.dumps(m)) for m in messages) // 4
    completion = len(content or "") // 4
    return Usage(prompt, completion, prompt + completion, estimated=True)


MAX_TOKENS_COUNT = 1_000_000_000  # a token count above this is not believed
MAX_TOOL_CALLS = 64  # tool calls read from one reply


def _count(value: Any) -> int | None:
    """A believable token count, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= MAX_TOKENS_COUNT or value != int(value):
        return None
    return int(value)


def _usage(raw: Any, messages: list[dict[str, Any]], content: str | None) -> Usage:
    """The server's token counts when believable, else an estimate."""
    if isinstance(raw, dict):
        total = _count(raw.get("total_tokens"))
        prompt = _count(raw.get("prompt_tokens") or 0)
        completion = _count(raw.get("completion_tokens") or 0)
        if total is not None and prompt is not None and completion is not None:
            return Usage(prompt, completion, total)
    return _estimate_tokens(messages, content)


def parse_completion(body: bytes, messages: list[dict[str, Any]]) -> ModelReply:
    """Turn a chat-completions response body into a :class:`ModelReply` (or raise ValueError).

    The body is parsed strictly (:func:`.jsonsafe.loads`: no NaN, no runaway nesting,
    no lone surrogates); every field is checked for its type; token counts that are
    not believable (``1e999``, negative, fractional) are replaced by an estimate.
    """
    data = jsonsafe.loads(body)
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("response has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    if not isinstance(message, dict):
        raise ValueError("message is not an object")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ValueError("message content is not a string")
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise ValueError("tool_calls is not a list")
    calls = []
    for index, call in enumerate(raw_calls[:MAX_TOOL_CALLS]):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise ValueError(f"tool call {index} has no function object")
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, allow_nan=False)
        calls.append(
            ToolCallOut(
                id=str(call.get("id") or f"call_{index}")[:200],
                name=str(function.get("name", ""))[:200],
                arguments=arguments,
            )
        )
    finish = choice.get("finish_reason")
    return ModelReply(
        content=content,
        tool_calls=calls,
        finish_reason=finish if isinstance(finish, str) else None,
        usage=_usage(data.get("usage"), messages, content),
        model=str(data.get("model", ""))[:200],
    )
