"""The two limits objects: what one run may spend, and what one tool call may do.

Plain frozen dataclasses with defaults, built from :class:`~.config.Settings` by
:meth:`~.config.Settings.agent_limits` and :meth:`~.config.Settings.tool_limits`, or
directly in tests. They import nothing of the package, so every layer can use them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AgentLimits:
    """Budgets and stop conditions of one run."""

    max_steps: int = 30
    max_wall_s: float = 1800.0
    max_total_tokens: int = 200_000
    max_invalid_replies: int = 3
    max_tool_timeouts: int = 3
    max_repeated_failures: int = 3
    max_observation_chars: int = 16_000
    max_calls_per_reply: int = 8
    context_tokens: int | None = None  # one request's context (a slot's n_ctx); None: unmanaged
    reply_tokens: int = 1024  # max_tokens of a reply: room kept after the prompt


@dataclass(frozen=True)
class Limits:
    """Caps and timeouts the tools apply."""

    read_cap_bytes: int = 65_536
    write_cap_bytes: int = 1_048_576
    output_cap_bytes: int = 65_536
    command_timeout_s: float = 60.0
    command_grace_s: float = 2.0
    max_entries: int = 1000
    max_matches: int = 200
    search_timeout_s: float = 10.0  # search_text stops (a regex search is killed) after this
    secrets: tuple[str, ...] = ()  # kept out of commands' environment and of every output
