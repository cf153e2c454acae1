"""Dev container tasks: prepare, up, down, and the real check behind the milestone."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from sandboxctl import devcontainer as dc
from sandboxctl import stack as stack_
from sandboxctl.stack.compose import run_compose
from sandboxctl.tasks._support import opened, root
from sandboxctl.tasks._task import task


@task()
def prepare(c: Context) -> None:
    """Install the pinned Dev Containers CLI (npm ci) and fill the dev image's wheels."""
    binary = dc.ensure_cli(root())
    dc.ensure_dev_wheels(root())
    print(f"devcontainer CLI {dc.installed_version(root())}: {binary}")


@task(help={"recreate": "Remove the existing dev container first (after config changes)"})
def up(c: Context, recreate: bool = False) -> None:
    """Start the stack if needed, then the dev container with the Dev Containers CLI."""
    binary = dc.ensure_cli(root())
    dc.ensure_dev_wheels(root())
    stack = opened()
    stack_.bring_up(stack)
    cli = dc.DevcontainerCli(
        binary, dc.choose_docker_path(), dc.compose_binary(stack.compose), stack.engine.env()
    )
    result = stack.runner.run(cli.up_argv(root(), recreate=recreate), env=cli.env, capture=False)
    if not result.ok:
        raise Exit(f"devcontainer up failed (exit {result.returncode}); see above", code=1)
    print(
        "dev container up; a shell in it: "
        f"{binary} exec --workspace-folder . --docker-path {cli.docker_path} bash"
    )


@task()
def down(c: Context) -> None:
    """Remove the dev container only; the stack keeps running (`invoke down` stops it)."""
    stack = opened()
    result = run_compose(
        stack.compose,
        ["rm", "--stop", "--force", dc.DEV_SERVICE],
        engine=stack.engine,
        project_dir=root(),
        files=dc.compose_files(root()),
        runner=stack.runner,
    )
    if not result.ok:
        raise Exit(f"removing the dev container failed (exit {result.returncode})", code=1)
    # The dev container's own network; `invoke down` knows only compose.yaml's networks.
    stack.podman("network", "rm", f"{stack.project}_{dc.DEV_NETWORK}")


@task(
    help={
        "keep": "Leave the check's sandbox and containers up (for debugging); tear down by hand",
    }
)
def check(c: Context, keep: bool = False) -> None:
    """Validate the dev container for real on a fresh sandbox (`nox -s devcontainer`)."""
    # The check is a test (tests/devcontainer): it records results/devcontainer.json, which
    # `invoke milestones` reads. Nox calls pytest, never Invoke, so this does not loop.
    env = {"DEVCONTAINER_CHECK_KEEP": "1"} if keep else {}
    c.run("nox -s devcontainer", pty=False, env=env)
