"""The README's first command on a brand-new Debian 12 as a user with sudo (see conftest.py
for how the machine is made): ``bootstrap.sh`` installs through sudo, ``host.prepare`` makes
what no login session made, and the stack runs in the user's rootless Podman.

Real Podman, rootless, in a privileged container with no systemd and no udev; nothing is
faked. They fail when rootless Podman needs a step the project does not take.
"""

from __future__ import annotations

import json

from fresh_machine import ReadmeRun, demo_image_names, run_records, tail

from sandboxctl.tasks.stack import DEMO_DEST


def test_readme_first_command_exits_zero_for_a_sudo_user_on_fresh_debian12(
    user_readme_run: ReadmeRun,
) -> None:
    assert user_readme_run.returncode == 0, (
        f"`{user_readme_run.command}` exited {user_readme_run.returncode} after "
        f"{user_readme_run.seconds:.0f} s; last lines:\n{tail(user_readme_run.output)}"
    )


def test_bootstrap_installed_the_missing_packages_through_sudo(
    user_readme_run: ReadmeRun,
) -> None:
    installing = [line for line in user_readme_run.output.splitlines() if "installing" in line]
    assert installing, tail(user_readme_run.output)
    assert "podman" in installing[0].split()


def test_stack_runs_in_the_sudo_users_rootless_podman(user_readme_run: ReadmeRun) -> None:
    assert f"stack {DEMO_DEST} ready in" in user_readme_run.output, tail(user_readme_run.output)
    machine = user_readme_run.machine
    rootless = machine.exec("podman info --format '{{.Host.Security.Rootless}}'")
    assert rootless.stdout.strip() == "true", rootless.stdout + rootless.stderr
    names = machine.exec("podman ps --format '{{.Names}}'").stdout.split()
    assert f"{DEMO_DEST}-model-server-1" in names, names


def test_sudo_users_demo_run_ended_with_a_run_end_record(user_readme_run: ReadmeRun) -> None:
    supervisor = next(name for name in demo_image_names().values() if "supervisor" in name)
    records = run_records(user_readme_run.machine, f"{DEMO_DEST}_logs", supervisor)
    types = [record.get("type") for record in records]
    output = tail(user_readme_run.output)
    assert "run_start" in types, f"no trajectory in {DEMO_DEST}_logs:\n{output}"
    assert types[-1] == "run_end", f"the demo's run did not end recorded: {types[-5:]}"


def test_sudo_user_is_warned_exactly_when_the_engine_ignores_the_stacks_limits(
    user_readme_run: ReadmeRun,
) -> None:
    """Rootless Podman on cgroup v1 (a hybrid VM like CI's) runs the stack without its
    memory and pids limits; the user must read that on the terminal, and only then."""
    answer = user_readme_run.machine.exec("podman info --format '{{json .Host.CgroupControllers}}'")
    controllers = json.loads(answer.stdout or "null") or []
    warned = "ignores the stack's memory and pids limits" in user_readme_run.output
    assert warned == ("memory" not in controllers), (controllers, tail(user_readme_run.output))
