"""The README's first command on a brand-new Debian 12 machine (see conftest.py for how the
machine is made): it must install everything it needs, bring the stack up and record a run.

These tests run real Podman inside a privileged container on this host's Podman; nothing
is faked. They fail when an install step the stack needs is missing from the project.
"""

from __future__ import annotations

from fresh_machine import ReadmeRun, demo_image_names, run_records, tail

from sandboxctl.tasks.stack import DEMO_DEST


def test_readme_first_command_exits_zero_on_fresh_debian12(readme_run: ReadmeRun) -> None:
    assert readme_run.returncode == 0, (
        f"`{readme_run.command}` exited {readme_run.returncode} after "
        f"{readme_run.seconds:.0f} s; last lines:\n{tail(readme_run.output)}"
    )


def test_stack_came_up_on_fresh_debian12(readme_run: ReadmeRun) -> None:
    assert f"stack {DEMO_DEST} ready in" in readme_run.output, tail(readme_run.output)


def test_demo_run_ended_with_a_run_end_record(readme_run: ReadmeRun) -> None:
    supervisor = next(name for name in demo_image_names().values() if "supervisor" in name)
    records = run_records(readme_run.machine, f"{DEMO_DEST}_logs", supervisor)
    types = [record.get("type") for record in records]
    assert "run_start" in types, f"no trajectory in {DEMO_DEST}_logs:\n{tail(readme_run.output)}"
    assert types[-1] == "run_end", f"the demo's run did not end recorded: {types[-5:]}"
