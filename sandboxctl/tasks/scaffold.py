"""Tasks that render new sandboxes from this template."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context

from sandboxctl import scaffold
from sandboxctl.errors import SandboxError
from sandboxctl.tasks._task import task


def render_sandbox(dest: Path, data: str = "", *, replace_rendered: bool = False) -> Path:
    """Render a sandbox into ``dest``; raise :class:`SandboxError` with the reason when it
    cannot.

    ``replace_rendered`` allows re-rendering over an earlier rendered sandbox (one with a
    ``.copier-answers.yml``); any other non-empty folder is refused, so nothing is lost.
    """
    if not scaffold.is_template_repository():
        raise SandboxError("this is a rendered sandbox, not the template: run `copier copy` there")
    if dest.exists() and any(dest.iterdir()):
        rendered_before = (dest / ".copier-answers.yml").is_file()
        if not (replace_rendered and rendered_before):
            raise SandboxError(
                f"{dest} exists and is not empty; choose another folder or remove it"
            )
    try:
        answers = scaffold.parse_answers(data)
        scaffold.render(dest, answers)
    except Exception as error:  # copier's errors carry the validator's message
        raise SandboxError(f"could not render the sandbox: {error}") from error
    print(f"rendered sandbox in {dest}")
    return dest


@task(
    help={
        "dest": "Folder to render the new sandbox into (must not exist or be empty)",
        "data": "Answers as NAME=VALUE, comma-separated (e.g. 'model_port=8081,gpu_backend=cpu')",
    }
)
def new(c: Context, dest: str, data: str = "") -> None:
    """Render a new sandbox from this template (defaults for unanswered questions)."""
    render_sandbox(Path(dest), data)
