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
from invoke.exceptions import Exit
from invoke.program import Program

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
        from sandboxctl.tasks._args import HelpAsked

        try:
            super().parse_tasks()
        except HelpAsked:
            words = list(self.core.unparsed)
            names = [word for word in words if word in self.parser.contexts]
            if not names:
                raise
            self.print_task_help(names[-1])
            raise Exit(code=0) from None

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
