"""Tasks whose arguments fail with one clear line: ``@task`` with ranges and choices.

Invoke casts an ``int`` argument with ``int(value)`` while parsing, so ``--max-steps=abc``
ends in a ``ValueError`` traceback, and ``-1`` or an unknown word reaches the task. Its
automatic short flags also hand ``-h`` to the first argument starting with ``h``, so
``invoke bench.model -h`` ran the benchmark instead of showing help. The :func:`task` here
is Invoke's with :class:`CheckedTask`: every ``int`` argument needs a declared range, any
argument may declare its choices, and a bad value is a ``ParseError``, which Invoke prints
as one line and exits 1. ``-h`` is never given away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from invoke.exceptions import ParseError
from invoke.parser.argument import Argument
from invoke.tasks import Task
from invoke.tasks import task as invoke_task

Range = tuple[int, int | None]
"""Lowest and highest accepted whole number (``None``: no upper bound)."""

HELP_FLAGS = frozenset({"-h", "--help"})
"""Words that ask for help: never taken as the value of a required argument."""
RESERVED_SHORT_FLAGS = frozenset({"h"})
"""Short flags Invoke's own options need after a task name (``-h`` is ``--help``)."""


class HelpAsked(ParseError):
    """``-h``/``--help`` given where a required argument's value was expected; the sandbox's
    ``invoke`` shows the task's help instead (plain Invoke prints this one line)."""


class CheckedArgument(Argument):
    """An Invoke argument that rejects a malformed, out-of-range or unknown value."""

    def __init__(
        self,
        *,
        value_range: Range | None = None,
        choices: Sequence[str] = (),
        task_name: str = "TASK",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.value_range = value_range
        self.choices = tuple(choices)
        self.task_name = task_name

    @property
    def flag(self) -> str:
        """The long flag as a user types it (``--max-steps``)."""
        return f"--{self.names[0]}"

    def set_value(self, value: Any, cast: bool = True) -> None:
        if self.positional and value in HELP_FLAGS:
            # Invoke hands a required argument the next word, --help included: `invoke
            # scaffold.new --help` rendered a sandbox into a folder named '--help'.
            raise HelpAsked(
                f"{self.flag}: {value!r} is not a value; for help, put it before the task: "
                f"invoke --help {self.task_name}"
            )
        try:
            super().set_value(value, cast=cast)
        except ValueError:
            raise ParseError(f"{self.flag}: expected a whole number, got {value!r}") from None
        given = self.value
        if self.kind is int and self.value_range is not None and isinstance(given, int):
            low, high = self.value_range
            if given < low or (high is not None and given > high):
                span = f"from {low} to {high}" if high is not None else f"{low} or more"
                raise ParseError(f"{self.flag}: expected a whole number {span}, got {given}")
        if self.choices and isinstance(given, str) and given not in self.choices:
            known = ", ".join(repr(choice) for choice in self.choices if choice) or "none"
            raise ParseError(f"{self.flag}: expected one of {known}, got {given!r}")


class CheckedTask(Task[Any]):
    """A task whose ``int`` arguments have ranges, whose choices are checked, no ``-h``."""

    def __init__(
        self,
        body: Callable[..., Any],
        *,
        ranges: Mapping[str, Range] | None = None,
        choices: Mapping[str, Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(body, **kwargs)
        self.ranges = dict(ranges or {})
        self.choices = {name: tuple(values) for name, values in (choices or {}).items()}
        unknown = (set(self.ranges) | set(self.choices)) - set(self.argspec(body).parameters)
        if unknown:
            raise ValueError(f"{self.name}: ranges/choices for unknown parameters {unknown}")

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        # an argument whose short flag would be -h gets none (the others keep theirs)
        opts = super().arg_opts(name, default, taken_names)
        opts["names"] = [n for n in opts["names"] if n not in RESERVED_SHORT_FLAGS]
        return opts

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        checked: list[Argument] = []
        for arg in super().get_arguments(ignore_unknown_help):
            attr = arg.attr_name or arg.name or ""
            if arg.kind is int and attr not in self.ranges:
                raise ValueError(f"{self.name}: int argument {attr!r} needs a declared range")
            checked.append(
                CheckedArgument(
                    names=arg.names,
                    kind=arg.kind,
                    default=arg.default,
                    help=arg.help,
                    positional=arg.positional,
                    optional=arg.optional,
                    incrementable=arg.incrementable,
                    attr_name=arg.attr_name,
                    value_range=self.ranges.get(attr),
                    choices=self.choices.get(attr, ()),
                    task_name=self.name,
                )
            )
        return checked


def task(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Invoke's ``@task`` with :class:`CheckedTask`: takes ``ranges=`` and ``choices=`` too."""
    kwargs.setdefault("klass", CheckedTask)
    return invoke_task(*args, **kwargs)
