"""The checks of a task's arguments: whole numbers in a range, one word of a list, and no
``--help`` taken for a value. Each failure is an :class:`ArgumentError`: one line, exit 1.

Invoke casts an ``int`` argument with ``int(value)`` while it parses, so ``--max-steps=abc``
ended in a ``ValueError`` traceback, and ``-1`` or an unknown word reached the task. A
sandbox task declares its whole-number ranges and its choices to
:func:`sandboxctl.tasks._task.task`, which declares those arguments to Invoke as text (its
own ``help`` says which numbers) and checks them with these functions before the body
runs; a body may call them too. Nothing here reaches into Invoke's parser.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandboxctl.errors import SandboxError

Range = tuple[int, int | None]
"""Lowest and highest accepted whole number (``None``: no upper bound)."""

HELP_FLAGS = frozenset({"-h", "--help"})
"""Words that ask for help: never taken as the value of a required argument."""


class ArgumentError(SandboxError):
    """A task argument that is malformed, out of its range or not one of its choices."""


def flag(name: str) -> str:
    """The long flag a user types for the parameter ``name`` (``max_steps``: ``--max-steps``;
    ``in_``: ``--in``), as Invoke spells it."""
    return "--" + name.strip("_").replace("_", "-")


def describe_range(value_range: Range) -> str:
    """``value_range`` in words: ``from 0 to 5``, or ``1 or more``."""
    low, high = value_range
    return f"from {low} to {high}" if high is not None else f"{low} or more"


def check_range(name: str, value: int | str, value_range: Range) -> int:
    """``value`` (the word typed, or a number) as a whole number within ``value_range``."""
    try:
        number = value if isinstance(value, int) else int(value)
    except ValueError:
        raise ArgumentError(f"{flag(name)}: expected a whole number, got {value!r}") from None
    low, high = value_range
    if number < low or (high is not None and number > high):
        span = describe_range(value_range)
        raise ArgumentError(f"{flag(name)}: expected a whole number {span}, got {number}")
    return number


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """``value`` when it is one of ``choices`` (``""`` among them: the default)."""
    if value not in choices:
        known = ", ".join(repr(choice) for choice in choices if choice) or "none"
        raise ArgumentError(f"{flag(name)}: expected one of {known}, got {value!r}")
    return value


def check_not_help(name: str, value: object, task_name: str) -> None:
    """Refuse ``-h``/``--help`` as the value of the required argument ``name``: Invoke
    hands a required argument the next word (``invoke scaffold.new --help`` rendered a
    sandbox into a folder named '--help'). The sandbox's ``invoke`` shows the task's help
    instead (:mod:`sandboxctl.invoke_entry`)."""
    if value in HELP_FLAGS:
        raise ArgumentError(
            f"{flag(name)}: {value!r} is not a value; for help, put it before the task: "
            f"invoke --help {task_name}"
        )
