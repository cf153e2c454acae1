"""The two reply dialects: native tool calls, and the JSON-schema-constrained fallback.

* ``native``: tools are sent as OpenAI ``tools``; the reply's ``tool_calls`` are the
  actions, and each result goes back as a ``tool`` message.
* ``json``: the request carries ``response_format`` with a JSON schema whose
  ``action`` is one of the tools with its arguments, or ``finish`` with an answer.
  Servers such as llama-server turn that schema into a grammar, so even a model
  with no tool template produces well-formed actions.

A dialect knows how to ask (:meth:`Dialect.request`), how to read a reply into
:class:`Action` objects and problems (:meth:`Dialect.parse`: the reply is validated
here, since a server may ignore the schema and answer any text with a 200), and how
to put replies, observations and complaints into the conversation. The loop in
:mod:`.agent` is the same for both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox_supervisor import jsonsafe
from sandbox_supervisor.replies import ModelReply

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


@dataclass(frozen=True)
class Action:
    """One validated action from a reply: a tool call or ``finish``."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    model_call_id: str | None = None


@dataclass
class Parsed:
    """Actions read from a reply, and problems (model call id, message) to report."""

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


class Dialect(Protocol):
    """How one kind of model is asked for actions and told about their results."""

    name: str

    def request(self, specs: list[dict[str, Any]]) -> dict[str, Any]:
        """Keyword arguments of ``ChatModel.complete`` that ask for one action."""
        ...

    def parse(self, reply: ModelReply, step: int, tool_names: set[str]) -> Parsed:
        """Validate the reply into actions (and problems to report to the model)."""
        ...

    def assistant_message(self, reply: ModelReply) -> dict[str, Any]:
        """The reply as a message of the conversation."""
        ...

    def observation(self, model_call_id: str | None, text: str) -> dict[str, Any]:
        """A tool's result as a message of the conversation."""
        ...

    def complaint(self, reply: ModelReply, parsed: Parsed, why: str) -> list[dict[str, Any]]:
        """Messages that tell the model why its reply could not be used."""
        ...


def check_name(name: str, tool_names: set[str]) -> str | None:
    """None when ``name`` is a tool or ``finish``, else a message naming the tools."""
    if name == FINISH or name in tool_names:
        return None
    known = ", ".join(sorted([*tool_names, FINISH]))
    return f"unknown tool {name!r}; the tools are: {known}"


class NativeDialect:
    """OpenAI ``tools`` in the request, ``tool_calls`` in the reply, ``tool`` messages back."""

    name = "native"

    def request(self, specs: list[dict[str, Any]]) -> dict[str, Any]:
        """Send the tools (and ``finish``) as OpenAI tools."""
        return {"tools": [*specs, FINISH_SPEC]}

    def parse(self, reply: ModelReply, step: int, tool_names: set[str]) -> Parsed:
        """Every tool call with a known name and a JSON object of arguments is an action."""
        parsed = Parsed()
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
            problem = check_name(call.name, tool_names)
            arguments: Any = None
            if problem is None:
                try:
                    arguments = jsonsafe.loads(call.arguments or "{}")
                except ValueError as exc:
                    problem = f"arguments of {call.name} are not valid JSON: {exc}"
                else:
                    if not isinstance(arguments, dict):
                        problem = f"arguments of {call.name} must be a JSON object"
            if problem is not None:
                parsed.problems.append((call.id, problem))
                continue
            parsed.actions.append(Action(f"{step}.{index}", call.name, arguments, call.id))
        return parsed

    def assistant_message(self, reply: ModelReply) -> dict[str, Any]:
        """The reply's content and its tool calls, as sent back on the next request."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.content or ""}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in reply.tool_calls
            ]
        return message

    def observation(self, model_call_id: str | None, text: str) -> dict[str, Any]:
        """A ``tool`` message answering the call id."""
        return {"role": "tool", "tool_call_id": model_call_id, "content": text}

    def complaint(self, reply: ModelReply, parsed: Parsed, why: str) -> list[dict[str, Any]]:
        """An ``[error]`` answer to each bad call, or a user message when there was none."""
        if reply.tool_calls:
            return [
                self.observation(model_id, f"[error] {message}")
                for model_id, message in parsed.problems
            ]
        return [
            {"role": "user", "content": f"Your last reply was not usable: {why}. Use a tool call."}
        ]


class JsonDialect:
    """A JSON schema in ``response_format``; the reply's content is one JSON action."""

    name = "json"

    def request(self, specs: list[dict[str, Any]]) -> dict[str, Any]:
        """Ask for one action that follows :func:`action_schema`."""
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "action", "schema": action_schema(specs)},
            }
        }

    def parse(self, reply: ModelReply, step: int, tool_names: set[str]) -> Parsed:
        """The content must be ``{"thought": ..., "action": {"tool": ..., "args": {...}}}``."""
        parsed = Parsed()
        text = (reply.content or "").strip()
        if text.startswith("```"):  # tolerate a fenced block from unconstrained servers
            text = text.strip("`").removeprefix("json").strip()
        try:
            data = jsonsafe.loads(text)
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
        problem = check_name(name, tool_names)
        if problem is None and not isinstance(args, dict):
            problem = "action.args must be a JSON object"
        if problem is not None:
            parsed.problems.append(("", problem))
            return parsed
        parsed.actions.append(Action(f"{step}.0", name, args))
        return parsed

    def assistant_message(self, reply: ModelReply) -> dict[str, Any]:
        """The reply's text."""
        return {"role": "assistant", "content": reply.content or ""}

    def observation(self, model_call_id: str | None, text: str) -> dict[str, Any]:
        """A user message holding the observation."""
        return {"role": "user", "content": f"Observation:\n{text}"}

    def complaint(self, reply: ModelReply, parsed: Parsed, why: str) -> list[dict[str, Any]]:
        """A user message with the shape the reply must have."""
        hint = (
            'Reply with one JSON object: {"thought": "...", "action": {"tool": "...", '
            '"args": {...}}}.'
        )
        return [{"role": "user", "content": f"Your last reply was not usable: {why}. {hint}"}]


DIALECTS: dict[str, type[NativeDialect] | type[JsonDialect]] = {
    "native": NativeDialect,
    "json": JsonDialect,
}


def dialect(mode: str) -> Dialect:
    """The dialect of a tool mode (``native`` or ``json``)."""
    if mode not in DIALECTS:
        raise ValueError(f"tool mode must be native or json, not {mode!r}")
    return DIALECTS[mode]()
