"""Tasks that render new sandboxes from this template."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from sandboxctl import scaffold


@task(
    help={
        "dest": "Folder to render the new sandbox into (must not exist or be empty)",
        "data": "Answers as NAME=VALUE, comma-separated (e.g. 'model_port=8081,gpu_backend=cpu')",
    }
)
def new(c: Context, dest: str, data: str = "") -> None:
    """Render a new sandbox from this template with default answers."""
    if not scaffold.is_template_repository():
        raise Exit("this is a rendered sandbox, not the template: run `copier copy` from the template")
    target = Path(dest)
    if target.exists() and any(target.iterdir()):
        raise Exit(f"{target} exists and is not empty; choose another folder or remove it")
    answers = scaffold.parse_answers(data)
    try:
        scaffold.render(target, answers)
    except Exception as error:  # copier's errors carry the validator's message
        raise Exit(f"could not render the sandbox: {error}") from error
    print(f"rendered sandbox in {target}")
