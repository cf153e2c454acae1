"""`invoke run` without `--max-steps` gives the served model's catalog step budget (tiny's
random replies do no task: a few steps show the loop); `--max-steps` wins; a model with no
budget in its entry leaves the supervisor's own. A fake stack records the supervisor's
arguments: nothing runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from invoke.context import MockContext

from sandboxctl import stack as stack_pkg
from sandboxctl._proc import Result
from sandboxctl.catalog import catalog
from sandboxctl.tasks import stack as stack_tasks

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class FakeStack:
    """What `invoke run` asks of the stack: its root, settings and one supervisor run."""

    model: str
    root: Path = ROOT
    extras: list[list[str]] = field(default_factory=list)

    @property
    def settings(self) -> Any:
        return SimpleNamespace(sandbox_model=self.model)

    def run_task(self, task: str, extra: list[str], check: str | None = None) -> tuple[Result, str]:
        self.extras.append(list(extra))
        return Result(("sandbox-supervisor",), 0, "", ""), "/logs/run.jsonl"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Serve a model on a fake stack that is up and ready; return a way to pick it."""

    def serve(model: str) -> FakeStack:
        fake = FakeStack(model)
        monkeypatch.setattr(stack_tasks, "opened", lambda: fake)
        monkeypatch.setattr(stack_tasks, "_require_ready", lambda *args, **kwargs: None)
        monkeypatch.setattr(stack_pkg, "require_running", lambda stack: None)
        monkeypatch.setattr(stack_tasks, "_print_outcome", lambda stack, path: None)
        return fake

    return serve


def test_a_run_on_tiny_gets_tinys_catalog_budget_and_says_so(
    served: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = served("tiny")
    stack_tasks.run(MockContext(), "say hi")
    budget = catalog.load_catalog(local=False).get("tiny").max_steps
    assert fake.extras == [["--max-steps", str(budget)]]
    assert f"run: tiny gets {budget} steps" in capsys.readouterr().out


def test_max_steps_given_wins_over_the_catalogs_budget(served: Any) -> None:
    fake = served("tiny")
    stack_tasks.run(MockContext(), "say hi", max_steps=20, in_="calc")
    assert fake.extras == [["--max-steps", "20", "--subdir", "calc"]]


def test_a_model_without_a_budget_keeps_the_supervisors(served: Any) -> None:
    fake = served("smollm2-135m-instruct")
    stack_tasks.run(MockContext(), "say hi")
    assert fake.extras == [[]]
