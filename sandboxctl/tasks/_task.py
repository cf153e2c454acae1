"""The sandbox's ``@task``: Invoke's own, through its public API, with the argument checks
of :mod:`._args` and one place where a :class:`~sandboxctl.errors.SandboxError` becomes
Invoke's ``Exit``.

- **Errors.** A task body lets sandboxctl's errors through; the decorator turns one into
  the line ``NAME: message`` on stderr and the error's exit status (1, or 2 for a
  :class:`~sandboxctl.errors.UsageError` and the errors of unreadable answers or plans).
  ``NAME`` is the task's name as a user types it (``machine.init``): ``tasks.py`` gives
  each task that name with :func:`name_tasks` when it builds the collection; a task called
  without that collection uses its own name (``init``). Any other exception goes through
  unchanged: a bug stays a traceback.
- **Ranges and choices.** ``@task(ranges={"tail": (0, None)}, choices={"service": (...)})``:
  every ``int`` parameter needs a range. Invoke sees those parameters as text (their
  defaults as strings, so it casts nothing); before the body runs, :func:`._args.check_range`
  turns the word into the whole number the body receives, and :func:`._args.check_choice`
  checks the choices. Their ``--help`` line says the range.
- **Help.** A required argument never takes ``-h``/``--help`` as its value, and no argument
  takes the short flag ``-h`` (Invoke's help after a task): a task whose arguments would
  give it away gets no short flags at all (Invoke's ``auto_shortflags=False``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from invoke.collection import Collection
from invoke.exceptions import Exit
from invoke.tasks import Task
from invoke.tasks import task as invoke_task

from sandboxctl.errors import SandboxError
from sandboxctl.tasks._args import Range, check_choice, check_not_help, check_range, describe_range

_NAMES: dict[Callable[..., Any], str] = {}
"""The name users type for each task body (set by :func:`name_tasks`)."""


@dataclass(frozen=True)
class Declared:
    """What a task declared about its arguments, and how the arguments are checked."""

    name: str
    ranges: Mapping[str, Range]
    choices: Mapping[str, tuple[str, ...]]
    positional: tuple[str, ...]

    def checked(self, arguments: Mapping[str, Any], task_name: str) -> dict[str, Any]:
        """``arguments`` with each whole number as an ``int``; an ``ArgumentError`` for the
        first that is not acceptable."""
        checked = dict(arguments)
        for name in self.positional:
            if name in checked:
                check_not_help(name, checked[name], task_name)
        for name, value_range in self.ranges.items():
            if name in checked:
                checked[name] = check_range(name, checked[name], value_range)
        for name, choices in self.choices.items():
            if name in checked:
                check_choice(name, checked[name], choices)
        return checked


_DECLARED: dict[Callable[..., Any], Declared] = {}


def _declare(
    body: Callable[..., Any],
    name: str,
    ranges: Mapping[str, Range],
    choices: Mapping[str, Sequence[str]],
    positional: Sequence[str] | None,
) -> Declared:
    """Check the declaration against the body's parameters (a typo fails at import)."""
    parameters = list(inspect.signature(body).parameters.values())[1:]  # after the Context
    names = {parameter.name for parameter in parameters}
    unknown = (set(ranges) | set(choices)) - names
    if unknown:
        raise ValueError(f"{name}: ranges/choices for unknown parameters {sorted(unknown)}")
    for parameter in parameters:
        whole = isinstance(parameter.default, int) and not isinstance(parameter.default, bool)
        if whole and parameter.name not in ranges:
            raise ValueError(f"{name}: int argument {parameter.name!r} needs a declared range")
    required = [p.name for p in parameters if p.default is inspect.Parameter.empty]
    return Declared(
        name=name,
        ranges=dict(ranges),
        choices={key: tuple(values) for key, values in choices.items()},
        positional=tuple(required if positional is None else positional),
    )


def _as_text(body: Callable[..., Any], ranges: Mapping[str, Range]) -> inspect.Signature:
    """The body's signature with each ranged default as a string: Invoke takes an
    argument's type from its default, and a string is one it does not cast."""
    signature = inspect.signature(body)
    return signature.replace(
        parameters=[
            p.replace(default=str(p.default))
            if p.name in ranges and p.default is not inspect.Parameter.empty
            else p
            for p in signature.parameters.values()
        ]
    )


def _with_ranges(help_: Mapping[str, str], ranges: Mapping[str, Range]) -> dict[str, str]:
    """Per-argument help, each ranged argument's saying which whole numbers it takes."""
    described = dict(help_)
    for name, value_range in ranges.items():
        key = next((k for k in (name, name.strip("_").replace("_", "-")) if k in help_), name)
        words = f"a whole number {describe_range(value_range)}"
        described[key] = f"{help_[key]} ({words})" if key in help_ else words.capitalize()
    return described


def task(
    *,
    ranges: Mapping[str, Range] | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
    **kwargs: Any,
) -> Callable[[Callable[..., Any]], Task[Any]]:
    """Invoke's ``@task(...)`` (same keywords), plus ``ranges=`` and ``choices=``; the
    task's errors and argument checks are those the module's docstring describes."""

    def decorate(body: Callable[..., Any]) -> Task[Any]:
        name = kwargs.get("name") or body.__name__
        declared = _declare(body, name, ranges or {}, choices or {}, kwargs.get("positional"))
        signature = inspect.signature(body)

        @functools.wraps(body)
        def run(*args: Any, **given: Any) -> Any:
            label = _NAMES.get(run, name)
            try:
                bound = signature.bind(*args, **given)
                bound.arguments.update(declared.checked(bound.arguments, label))
                return body(*bound.args, **bound.kwargs)
            except SandboxError as error:
                raise Exit(f"{label}: {error}", code=error.exit_code) from error

        run.__signature__ = _as_text(body, declared.ranges)  # type: ignore[attr-defined]
        options = {**kwargs, "help": _with_ranges(kwargs.get("help", {}), declared.ranges)}
        probe: Task[Any] = Task(run, **options)  # a throwaway: get_arguments() uses up its help
        if any("h" in argument.names for argument in probe.get_arguments()):
            options["auto_shortflags"] = False  # -h stays Invoke's help after the task
        made: Task[Any] = invoke_task(**options)(run)
        _DECLARED[run] = declared
        return made

    return decorate


def declared(found: Task[Any]) -> Declared:
    """What ``found`` declared; ``KeyError`` for a task not made by :func:`task`."""
    return _DECLARED[found.body]


def name_tasks(collection: Collection) -> Collection:
    """Give each task of ``collection`` the name a user types for it (``machine.init``),
    the shortest when it has two (``doctor`` is also ``host.doctor``); return the
    collection."""
    for name in sorted(collection.task_names, key=lambda name: (name.count("."), name)):
        _NAMES.setdefault(collection[name].body, name)
    return collection


def task_name(found: Task[Any]) -> str:
    """The name ``found``'s error lines start with."""
    return _NAMES.get(found.body, found.name)
