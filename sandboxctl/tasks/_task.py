"""The sandbox's ``@task``: where a :class:`~sandboxctl.errors.SandboxError` becomes Invoke's
``Exit``, for every task at once.

A task body lets sandboxctl's errors through; the decorator turns one into the line
``NAME: message`` on stderr and the error's exit status (1, or 2 for a
:class:`~sandboxctl.errors.UsageError` and the errors of unreadable answers or plans).
``NAME`` is the task's name as a user types it (``machine.init``): ``tasks.py`` gives each
task that name with :func:`name_tasks` when it builds the collection; a task called
without that collection uses its own name (``init``). Any other exception goes through
unchanged: a bug stays a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from invoke.collection import Collection
from invoke.exceptions import Exit
from invoke.tasks import Task

from sandboxctl.errors import SandboxError
from sandboxctl.tasks import _args

_NAMES: dict[Callable[..., Any], str] = {}
"""The name users type for each task body (set by :func:`name_tasks`)."""


def exits_on_error(body: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``body``, whose :class:`SandboxError` becomes ``Exit("NAME: message", code)``;
    ``name`` is used until :func:`name_tasks` gives the task the name users type."""

    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except SandboxError as error:
            label = _NAMES.get(run, name)
            raise Exit(f"{label}: {error}", code=error.exit_code) from error

    return run


def task(**kwargs: Any) -> Callable[[Callable[..., Any]], Task[Any]]:
    """Invoke's ``@task(...)`` (with the ``ranges=``/``choices=`` of :mod:`._args`), whose
    body ends in one line instead of a traceback on a :class:`SandboxError`."""

    def decorate(body: Callable[..., Any]) -> Task[Any]:
        made: Task[Any] = _args.task(**kwargs)(
            exits_on_error(body, kwargs.get("name") or body.__name__)
        )
        return made

    return decorate


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
