"""What a model answers: :class:`ModelReply` and the reading of a chat-completions body.

The body comes from a server that may be broken or hostile, so reading it never
trusts its shape: :func:`parse_completion` raises ``ValueError`` for anything it
cannot use, and never another exception.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


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
        )


def _estimate_tokens(messages: list[dict[str, Any]], content: str | None) -> Usage:
    prompt = sum(len(json.dumps(m)) for m in messages) // 4
    completion = len(content or "") // 4
    return Usage(prompt, completion, prompt + completion, estimated=True)


def parse_completion(body: bytes, messages: list[dict[str, Any]]) -> ModelReply:
    """Turn a chat-completions response body into a :class:`ModelReply` (or raise ValueError)."""
    data = json.loads(body)
    if not isinstance(data, dict) or not data.get("choices"):
        raise ValueError("response has no choices")
    choice = data["choices"][0]
    message = choice.get("message") or {}
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ValueError("message content is not a string")
    calls = []
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(
            ToolCallOut(
                id=str(call.get("id") or f"call_{index}"),
                name=str(function.get("name", "")),
                arguments=arguments,
            )
        )
    raw_usage = data.get("usage") or {}
    if raw_usage.get("total_tokens") is not None:
        prompt = int(raw_usage.get("prompt_tokens") or 0)
        completion = int(raw_usage.get("completion_tokens") or 0)
        usage = Usage(prompt, completion, int(raw_usage["total_tokens"]))
    else:
        usage = _estimate_tokens(messages, content)
    return ModelReply(
        content=content,
        tool_calls=calls,
        finish_reason=choice.get("finish_reason"),
        usage=usage,
        model=str(data.get("model", "")),
    )
