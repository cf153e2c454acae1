"""The one base of sandboxctl's errors.

Every error sandboxctl raises on purpose is a :class:`SandboxError`: its message says what
is wrong and how to fix it, in one line where it can. The Invoke tasks turn any of them
into that line, prefixed with the task's name, and the error's :attr:`~SandboxError.exit_code`
(``sandboxctl.tasks._task``); ``python -m sandboxctl`` does the same with its command's
name. Each error class keeps the built-in base it had (``ValueError``, ``RuntimeError``),
so code that catches those still does.
"""

from __future__ import annotations


class SandboxError(Exception):
    """A failure sandboxctl reports as its message and an exit status, not a traceback."""

    exit_code: int = 1
    """The exit status of a task or command that ends with this error."""


class UsageError(SandboxError):
    """What was asked cannot be done as asked (a malformed name or value): exit status 2."""

    exit_code = 2
