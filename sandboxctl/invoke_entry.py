"""The ``invoke`` (and ``inv``) command of a sandbox's virtual environment.

Invoke itself, with one difference: run outside a sandbox (no ``tasks.py`` in the folder
or above it), it says so and where this environment's sandbox is, instead of Invoke's
``Can't find any collection named 'tasks'!``. ``pyproject.toml`` installs it under
Invoke's own script names; pip installs it after Invoke (which it depends on), so the
environment's ``invoke`` is this one. ``python -m invoke`` stays plain Invoke.
"""

from __future__ import annotations

from pathlib import Path

from invoke import __version__
from invoke.exceptions import Exit, ParseError
from invoke.program import Program

from sandboxctl.tasks._args import HELP_FLAGS

SANDBOX_ROOT = Path(__file__).resolve().parent.parent
"""The sandbox (or template repository) this environment was installed from."""


def not_a_sandbox(cwd: Path, sandbox: Path = SANDBOX_ROOT) -> str:
    """The one line that replaces Invoke's collection-not-found message."""
    return (
        f"invoke: no sandbox in {cwd} (no tasks.py here or above); "
        f"cd {sandbox}, the sandbox this environment belongs to"
    )


class SandboxProgram(Program):
    """Invoke's program, with a clear line when there is no sandbox here, and a task's
    help when ``--help`` comes after a task with a required argument."""

    def parse_tasks(self) -> None:
        # Invoke hands a required argument the next word, --help included: `invoke
        # scaffold.new --help` gives the folder '--help' (which the task refuses), and
        # `invoke issue.log --help` leaves the other required arguments missing.
        try:
            super().parse_tasks()
        except ParseError:
            if self._help_asked_of() is None:
                raise
        else:
            if not any(
                argument.positional and argument.value in HELP_FLAGS
                for context in self.tasks
                for argument in context.args.values()
            ):
                return
        asked = self._help_asked_of()
        if asked is None:
            return
        self.print_task_help(asked)
        raise Exit(code=0)

    def _help_asked_of(self) -> str | None:
        """The task after whose name ``-h``/``--help`` was typed, if any."""
        current = None
        for word in self.core.unparsed:
            if word in self.parser.contexts:
                current = word
            elif word in HELP_FLAGS and current is not None:
                return current
        return None

    def load_collection(self) -> None:
        try:
            super().load_collection()
        except Exit as error:
            if not str(error.message or "").startswith("Can't find any collection"):
                raise
            raise Exit(not_a_sandbox(Path.cwd()), code=1) from None


program = SandboxProgram(
    name="Invoke", binary="inv[oke]", binary_names=["invoke", "inv"], version=__version__
)
