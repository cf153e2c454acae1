"""The rendered sandbox's own README on a brand-new Debian 12: `copier copy` a sandbox
(defaults plus one changed answer) beside the template's clone, `cd` into it and run its
README's first commands exactly as printed, as root and as a user with sudo (see
conftest.py for the machines).

Real Podman, Compose v2 and llama-server in a privileged container; nothing is faked.
They fail when a rendered sandbox cannot do what its README says (a script without its
execute bit, an environment that is not the sandbox's own, a command that errs).
"""

from __future__ import annotations

import pytest
from fresh_machine import WALK_SANDBOX, SandboxWalk, WalkStep, tail

WALKS = ["sandbox_walk", "user_sandbox_walk"]


@pytest.fixture(params=WALKS)
def walk(request: pytest.FixtureRequest) -> SandboxWalk:
    walked: SandboxWalk = request.getfixturevalue(request.param)
    return walked


def expected_exit(step: WalkStep, model: str) -> int:
    """What the README says the command exits with: `invoke run --check` fails its check
    (exit 1) on the tiny model, whose random weights do no task; everything else exits 0."""
    return (
        1 if " run " in f" {step.command} " and "--check" in step.command and model == "tiny" else 0
    )


def rendered_model(walk: SandboxWalk) -> str:
    answers = walk.machine.exec(f"cat {walk.folder}/.copier-answers.yml").stdout
    return next(
        line.split(":", 1)[1].strip() for line in answers.splitlines() if line.startswith("model:")
    )


def test_copier_renders_a_sandbox_with_one_changed_answer(walk: SandboxWalk) -> None:
    assert walk.render.returncode == 0, tail(walk.render.output)
    env = walk.machine.exec(f"cat {walk.folder}/.env").stdout
    assert "MODEL_PORT=8181" in env.splitlines()
    assert f"COMPOSE_PROJECT_NAME={WALK_SANDBOX}" in env.splitlines()


def test_rendered_bootstrap_is_executable(walk: SandboxWalk) -> None:
    mode = walk.machine.exec(f"stat -c %A {walk.folder}/bootstrap.sh").stdout.strip()
    assert mode.startswith("-rwx"), mode


def test_rendered_readme_walks_up_run_show_and_down(walk: SandboxWalk) -> None:
    """The README's first block is the user's path: up, a checked run, runs.show, down."""
    words = [" ".join(step.command.split()[:3]) for step in walk.steps]
    assert words == [
        "./bootstrap.sh invoke up",
        "./bootstrap.sh invoke run",
        "./bootstrap.sh invoke runs.show",
        "./bootstrap.sh invoke down",
    ], walk.commands


def test_each_readme_command_exits_as_the_readme_says(walk: SandboxWalk) -> None:
    model = rendered_model(walk)
    wrong = [
        f"`{step.command}` exited {step.returncode}, the README says "
        f"{expected_exit(step, model)}:\n{tail(step.output, 30)}"
        for step in walk.steps
        if step.returncode != expected_exit(step, model)
    ]
    assert wrong == []


def test_run_prints_the_checks_verdict_and_how_the_run_ended(walk: SandboxWalk) -> None:
    output = walk.step("invoke run").output
    lines = output.splitlines()
    verdict = "failed (exit 1)" if rendered_model(walk) == "tiny" else "passed (exit 0)"
    assert f"check: test -f hello.txt: {verdict}" in lines, tail(output)
    ended = [
        line for line in lines if line.startswith(("run ", "invoke")) and "runs.show --id" in line
    ]
    assert ended, tail(output)


def test_runs_show_reads_the_run_with_its_check(walk: SandboxWalk) -> None:
    output = walk.step("runs.show").output
    assert "== run " in output, tail(output)
    assert "== check: test -f hello.txt:" in output, tail(output)
    ends = [line for line in output.splitlines() if line.startswith("== end: ")]
    assert len(ends) == 1, tail(output)
    verdict = "failed" if rendered_model(walk) == "tiny" else "passed"
    assert ends[0].startswith(f"== end: {verdict} "), tail(output)


def test_down_leaves_no_container_of_the_sandbox(walk: SandboxWalk) -> None:
    names = walk.machine.exec("podman ps -a --format '{{.Names}}'").stdout.split()
    assert [name for name in names if name.startswith(f"{WALK_SANDBOX}-")] == []
