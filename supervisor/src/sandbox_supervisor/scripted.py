"""A deterministic scripted model, for tests, offline demos and replays.

A script is a list of steps, each answered in order by :meth:`ScriptedModel.complete`:

* ``{"action": {"tool": NAME, "args": {...}}, "thought": "..."}`` — one action,
  rendered the way the request asks for it: JSON content when it carries a
  ``response_format``, a native tool call when it carries ``tools``;
* ``{"content": "raw text"}`` — exactly that text (for malformed replies);
* ``{"tool_calls": [{"id": ..., "name": ..., "arguments": "{...}" or {...}}]}`` —
  native calls as given;
* ``{"error": "timeout" | "unavailable" | "rejected"}`` — raise the client's error;
* ``{"reply": {...}}`` — a recorded :class:`ModelReply` (``replay --model``).

Any step may add ``"sleep_s"`` (a delay before answering) and ``"usage"``. Token usage
is otherwise estimated deterministically from the text lengths.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from sandbox_supervisor.client import (
    DeadlineExceeded,
    ModelError,
    ModelRejected,
    ModelReply,
    ModelUnavailable,
    ToolCallOut,
    Usage,
)


class ScriptExhausted(ModelError):
    """The script has no step left for the request."""

    kind = "script_exhausted"


def load_script(name_or_path: str) -> list[dict[str, Any]]:
    """Load a script: ``demo`` (shipped with the package) or a JSON file of steps."""
    if name_or_path == "demo":
        text = resources.files("sandbox_supervisor").joinpath("demo_script.json").read_text()
    else:
        text = Path(name_or_path).read_text(encoding="utf-8")
    steps = json.loads(text)
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise ValueError(f"{name_or_path}: a script is a JSON list of objects")
    return steps


class ScriptedModel:
    """Answer requests from a fixed list of steps (see the module docstring)."""

    def __init__(self, steps: list[dict[str, Any]], *, model: str = "scripted") -> None:
        self.steps = list(steps)
        self.model = model
        self.requests: list[dict[str, Any]] = []

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        deadline: float,
    ) -> ModelReply:
        """Return the next scripted reply (or raise the scripted error)."""
        index = len(self.requests)
        self.requests.append(
            {
                "messages": [dict(m) for m in messages],
                "tools": tools,
                "response_format": response_format,
            }
        )
        if index >= len(self.steps):
            raise ScriptExhausted(f"the script has only {len(self.steps)} steps")
        step = self.steps[index]
        delay = float(step.get("sleep_s", 0))
        if delay:
            remaining = deadline - time.monotonic()
            if remaining <= delay:
                time.sleep(max(0.0, remaining))
                raise DeadlineExceeded("scripted model: deadline passed while answering")
            time.sleep(delay)
        error = step.get("error")
        if error == "timeout":
            raise DeadlineExceeded("scripted model: timed out")
        if error == "unavailable":
            raise ModelUnavailable("scripted model: server unavailable")
        if error == "rejected":
            raise ModelRejected("scripted model: HTTP 400", 400)
        if "reply" in step:
            return ModelReply.from_dict(step["reply"])
        content: str | None = None
        calls: list[ToolCallOut] = []
        if "content" in step:
            content = str(step["content"])
        elif "tool_calls" in step:
            for n, call in enumerate(step["tool_calls"]):
                args = call.get("arguments", {})
                calls.append(
                    ToolCallOut(
                        id=str(call.get("id", f"call_{index}_{n}")),
                        name=str(call["name"]),
                        arguments=args if isinstance(args, str) else json.dumps(args),
                    )
                )
        elif "action" in step:
            action = step["action"]
            if tools and not response_format:
                calls.append(
                    ToolCallOut(
                        f"call_{index}_0", action["tool"], json.dumps(action.get("args", {}))
                    )
                )
            else:
                content = json.dumps({"thought": step.get("thought", ""), "action": action})
        else:
            raise ValueError(f"script step {index} has no action, content, tool_calls or reply")
        prompt = sum(len(json.dumps(m)) for m in messages) // 4
        completion = (len(content or "") + sum(len(c.arguments) for c in calls)) // 4 + 1
        usage = (
            Usage(**step["usage"])
            if "usage" in step
            else Usage(prompt, completion, prompt + completion, estimated=True)
        )
        return ModelReply(
            content=content,
            tool_calls=calls,
            finish_reason="tool_calls" if calls else "stop",
            usage=usage,
            model=self.model,
            latency_s=delay,
        )
