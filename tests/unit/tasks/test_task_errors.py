"""A sandboxctl error in a task ends it with one line, ``NAME: message``, and the error's
exit status; anything else is left alone (a bug stays a traceback)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from invoke.collection import Collection
from invoke.context import MockContext
from invoke.exceptions import Exit

import tasks as wiring
from sandboxctl.config import ConfigError
from sandboxctl.errors import SandboxError, UsageError
from sandboxctl.tasks._task import name_tasks, task, task_name


@task()
def fails(c: object, error: str = "sandbox") -> None:
    """Raise the error named."""
    raised: dict[str, Exception] = {
        "sandbox": SandboxError("the stack is not running; start it with `invoke up`"),
        "usage": UsageError("'a/b' is not a project name"),
        "config": ConfigError(".env: MODEL_PORT='x': expected a port"),
        "bug": KeyError("model"),
    }
    raise raised[error]


def test_a_sandbox_error_becomes_exit_with_the_task_name_and_its_code() -> None:
    with pytest.raises(Exit) as ended:
        fails(MockContext())
    assert ended.value.message == "fails: the stack is not running; start it with `invoke up`"
    assert ended.value.code == 1
    assert isinstance(ended.value.__cause__, SandboxError)


@pytest.mark.parametrize("error", ["usage", "config"])
def test_usage_and_answer_errors_exit_2(error: str) -> None:
    with pytest.raises(Exit) as ended:
        fails(MockContext(), error=error)
    assert ended.value.code == 2
    assert str(ended.value.message).startswith("fails: ")


def test_another_exception_is_not_swallowed() -> None:
    with pytest.raises(KeyError, match="model"):
        fails(MockContext(), error="bug")


def test_the_collection_gives_the_name_a_user_types() -> None:
    @task()
    def init(c: object) -> None:
        """Fail."""
        raise SandboxError("no machine")

    name_tasks(Collection(Collection("machine", init)))
    with pytest.raises(Exit, match=r"^machine\.init: no machine$"):
        init(MockContext())


def test_every_task_of_tasks_py_is_named_as_it_is_wired() -> None:
    """A task wired twice (doctor, host.doctor) takes the shorter name."""
    wired: dict[str, set[str]] = defaultdict(set)
    for name in wiring.ns.task_names:
        wired[task_name(wiring.ns[name])].add(name)
    assert all(name in names for name, names in wired.items()), wired
    assert task_name(wiring.ns["host.doctor"]) == "doctor"
    assert task_name(wiring.ns["machine.init"]) == "machine.init"
    assert task_name(wiring.ns["runs.view"]) == "runs.view"
