"""The two limits objects: what one run may spend, and what one tool call may do.

Each limit's default is declared here and nowhere else. A limit that is also a setting
(``SUPERVISOR_<NAME>``, a file key, an option) carries its allowed range and meaning as a
pydantic ``Field`` in its annotation; the others are filled in by code (the request
context, the secrets) or fixed. :class:`~.config.Settings` nests both objects
(``settings.run``, ``settings.tools``) and checks those ranges when it is built; code and
tests may also build them directly. Plain frozen dataclasses that import nothing of the
package, so every layer can use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field


@dataclass(frozen=True)
class AgentLimits:
    """Budgets and stop conditions of one run."""

    max_steps: Annotated[int, Field(ge=1, le=10_000, description="model calls per run")] = 30
    max_wall_s: Annotated[float, Field(ge=1, le=86_400, description="wall clock per run")] = 1800.0
    max_total_tokens: Annotated[
        int, Field(ge=100, le=100_000_000, description="prompt+completion tokens per run")
    ] = 200_000
    max_invalid_replies: Annotated[
        int, Field(ge=1, le=100, description="consecutive malformed replies before giving up")
    ] = 3
    max_tool_timeouts: Annotated[
        int, Field(ge=1, le=100, description="consecutive tool timeouts before giving up")
    ] = 3
    max_repeated_failures: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="the same failing tool call (same arguments, same result) in a row "
            "before giving up",
        ),
    ] = 3
    max_observation_chars: Annotated[
        int, Field(ge=200, le=10_000_000, description="tool output shown to the model per call")
    ] = 16_000
    max_calls_per_reply: Annotated[
        int, Field(ge=1, le=64, description="tool calls run from one reply (more are refused)")
    ] = 8
    context_tokens: int | None = None  # one request's context (a slot's n_ctx); None: unmanaged
    reply_tokens: Annotated[
        int,
        Field(
            ge=16,
            le=131_072,
            alias="max_reply_tokens",
            description="max_tokens of each reply: room kept after the prompt",
        ),
    ] = 1024


@dataclass(frozen=True)
class Limits:
    """Caps and timeouts the tools apply."""

    read_cap_bytes: Annotated[
        int, Field(ge=1024, le=16_777_216, description="file bytes returned by read_file")
    ] = 65_536
    write_cap_bytes: Annotated[
        int, Field(ge=1, le=268_435_456, description="largest file write_file accepts")
    ] = 1_048_576
    output_cap_bytes: Annotated[
        int, Field(ge=1024, le=16_777_216, description="command output kept (head+tail)")
    ] = 65_536
    command_timeout_s: Annotated[float, Field(ge=0.1, le=3600, description="one command")] = 60.0
    command_grace_s: Annotated[float, Field(ge=0.05, le=60, description="TERM to KILL delay")] = 2.0
    max_entries: int = 1000
    max_matches: int = 200
    search_timeout_s: float = 10.0  # search_text stops (a regex search is killed) after this
    secrets: tuple[str, ...] = ()  # kept out of commands' environment and of every output
