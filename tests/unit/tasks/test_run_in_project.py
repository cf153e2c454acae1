"""`invoke run --in NAME`: the name must be a project's plain folder name, checked before
anything starts; the flag is spelled `--in` on the command line."""

from __future__ import annotations

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit

from sandboxctl.tasks import stack as stack_tasks


@pytest.mark.parametrize("name", ["..", "../etc", "a/b", ".git", "\x1b[2J"])
def test_run_in_refuses_a_name_that_is_not_a_plain_folder_name(name: str) -> None:
    with pytest.raises(Exit) as refused:
        stack_tasks.run(MockContext(), "fix it", in_=name)
    assert refused.value.code == 2
    assert "project name" in str(refused.value.message)


def test_the_flag_is_spelled_in() -> None:
    flags = {arg.names[0] for arg in stack_tasks.run.get_arguments()}
    assert "in" in flags
