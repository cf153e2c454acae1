"""Every task's bad input is one clear line and a non-zero exit (issue 12's misuse table).

The walking tests go through every task ``tasks.py`` wires, so a new task or argument is
checked without anyone remembering to add it here. They parse the words as Invoke does,
then call the task with what Invoke hands it: the checks run before the task's body.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke.context import MockContext
from invoke.exceptions import Exit
from invoke.parser import Parser
from invoke.tasks import Task

import tasks as wiring
from sandboxctl import scaffold
from sandboxctl.tasks import stack as stack_tasks
from sandboxctl.tasks._args import ArgumentError, flag
from sandboxctl.tasks._task import declared, task, task_name

ROOT = Path(__file__).resolve().parents[3]


def all_tasks() -> Iterator[tuple[str, Task[Any]]]:
    """Every task of the root collection, by the name a user types."""
    for name in sorted(wiring.ns.task_names):
        yield name, wiring.ns[name]


def call(*argv: str) -> None:
    """``invoke ARGV`` against the real collection: Invoke's parse, then each task called
    with what the parse gave it (as Invoke's executor does)."""
    for context in Parser(contexts=wiring.ns.to_contexts()).parse_argv(list(argv)):
        wiring.ns[context.name](MockContext(), **context.as_kwargs)


def flag_value(name: str, positional: bool, value: str) -> list[str]:
    """The argv giving the parameter ``name`` the value ``value``."""
    return [value] if positional else [f"{flag(name)}={value}"]


def required(task_name: str) -> list[str]:
    """Values for the task's positional arguments, so only the one tested fails."""
    return ["x" for _name in declared(wiring.ns[task_name]).positional]


def test_every_task_is_a_sandbox_task() -> None:
    """Each wired task uses sandboxctl's @task, which checks ranges and choices."""
    unchecked = []
    for name, found in all_tasks():
        try:
            declared(found)
        except KeyError:
            unchecked.append(name)
    assert unchecked == []


def test_no_task_takes_dash_h_so_it_always_shows_help() -> None:
    """`-h` stays Invoke's --help after any task (bench.model's --host took it)."""
    taken = {
        name: argument.names
        for name, found in all_tasks()
        for argument in found.get_arguments()
        if "h" in argument.names
    }
    assert taken == {}


def test_no_argument_is_cast_by_invoke() -> None:
    """Invoke's own cast of an int argument ends in a traceback on 'abc': every whole
    number reaches the task as the word typed, and the task's range checks it."""
    cast = [
        f"{name} --{argument.names[0]}"
        for name, found in all_tasks()
        for argument in found.get_arguments()
        if argument.kind is int
    ]
    assert cast == []


@pytest.mark.parametrize("name", sorted(wiring.ns.task_names))
def test_every_int_argument_rejects_words_and_out_of_range_values(name: str) -> None:
    """Every whole-number argument: 'abc' and a value below its range are one-line errors."""
    found = declared(wiring.ns[name])
    for parameter, (low, _high) in found.ranges.items():
        positional = parameter in found.positional
        others = required(name)[1:] if positional else required(name)
        with pytest.raises(Exit, match=f"{flag(parameter)}: expected a whole") as ended:
            call(name, *flag_value(parameter, positional, "abc"), *others)
        assert ended.value.code == 1
        with pytest.raises(Exit, match=rf"got {low - 1}$"):
            call(name, *flag_value(parameter, positional, str(low - 1)), *others)


@pytest.mark.parametrize("name", sorted(wiring.ns.task_names))
def test_every_choice_argument_rejects_an_unknown_word(name: str) -> None:
    """Every argument with choices names them when given another word."""
    found = declared(wiring.ns[name])
    for parameter, choices in found.choices.items():
        with pytest.raises(Exit, match=f"{flag(parameter)}: expected one of") as ended:
            call(name, *flag_value(parameter, False, "nosuch"), *required(name))
        assert ended.value.code == 1
        for choice in choices:  # and every choice it lists is accepted
            found.checked({parameter: choice}, name)


@pytest.mark.parametrize("name", sorted(wiring.ns.task_names))
def test_help_is_never_the_value_of_a_required_argument(name: str) -> None:
    """`invoke TASK --help` on a task with a required argument asks for help; it used to
    become the argument (a sandbox rendered into './--help', a task run named '--help')."""
    if not declared(wiring.ns[name]).positional:
        return
    for word in ("--help", "-h"):
        with pytest.raises(
            Exit,
            match=f"for help, put it before the task: invoke --help {task_name(wiring.ns[name])}$",
        ):
            call(name, word, *required(name)[1:])


def test_a_range_on_a_parameter_the_task_lacks_is_refused() -> None:
    """A typo in ranges= is caught where the task is defined."""
    with pytest.raises(ValueError, match="unknown parameters"):

        @task(ranges={"nope": (0, 1)})
        def body(c: object, count: int = 1) -> None: ...


def test_an_int_argument_without_a_range_is_refused() -> None:
    """A new int argument must say its range, so no value is accepted silently."""
    with pytest.raises(ValueError, match="needs a declared range"):

        @task()
        def body(c: object, count: int = 1) -> None: ...


def test_a_checked_number_reaches_the_body_as_a_number() -> None:
    """The body gets an int, from the word typed or from a caller in Python."""
    seen: list[int] = []

    @task(ranges={"count": (1, 9)})
    def body(c: object, count: int = 1) -> None:
        seen.append(count)

    body(MockContext(), count="7")
    body(MockContext(), count=3)
    body(MockContext())
    assert seen == [7, 3, 1]
    with pytest.raises(Exit, match=r"^body: --count: expected a whole number from 1 to 9, got 0$"):
        body(MockContext(), count="0")


def test_a_bad_choice_is_an_argument_error() -> None:
    found = declared(wiring.ns["logs"])
    with pytest.raises(ArgumentError, match="--service: expected one of 'model-server'"):
        found.checked({"service": "nosuch"}, "logs")


def test_logs_services_are_those_of_compose_yaml() -> None:
    """`invoke logs --service` accepts exactly the services compose.yaml defines."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert sorted(stack_tasks.SERVICES) == sorted(compose["services"])


def test_unknown_answer_names_are_refused_naming_the_known_ones() -> None:
    """`scaffold.new --data modle=tiny` used to render the defaults silently."""
    known = ["model", "model_port"]
    with pytest.raises(ValueError, match=r"unknown answer 'modle'; known: model, model_port"):
        scaffold.parse_answers("modle=tiny", known)
    assert scaffold.parse_answers("model=tiny", known) == {"model": "tiny"}


def invoke(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--max-steps=abc", "x"], "--max-steps: expected a whole number, got 'abc'"),
        (["logs", "--service", "nosuch"], "--service: expected one of 'model-server'"),
        (["plan.check", "--max-open-days=-1"], "--max-open-days: expected a whole number"),
        (["up", "--timeout=0"], "--timeout: expected a whole number 1 or more, got 0"),
        (["machine.init", "--rootful=maybe"], "--rootful: expected one of 'true', 'false'"),
        (["run", ""], "run: the task is empty"),
        (["run", " \t "], "run: the task is empty"),
        (["run", "--check", 'test -f "a.txt', "x"], "is not valid shell"),
        (["run", "--check", "if true; then", "x"], "is not valid shell"),
        (["eval", "--model", "nosuch"], "eval: unknown model 'nosuch'; known: scripted, "),
        (["eval", "--model", "scripted,tiny,nosuch"], "unknown model 'nosuch'"),
    ],
)
def test_misuse_is_one_line_and_exit_1(argv: list[str], message: str) -> None:
    """The issue's rows, as a user types them: one line on stderr, exit 1, no traceback."""
    result = invoke(*argv)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_bench_model_dash_h_shows_help_and_runs_nothing() -> None:
    """`invoke bench.model -h` is help (it used to start the benchmark)."""
    result = invoke("bench.model", "-h")
    assert result.returncode == 0
    assert "Usage:" in result.stdout
    assert "  --[no-]host " in result.stdout  # no short flag: -h is help
    # Invoke's public API gives short flags to all of a task's arguments or to none
    assert "  --output=STRING " in result.stdout
    assert "-o STRING" not in result.stdout
