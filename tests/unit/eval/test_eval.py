"""`invoke eval`: the suite's data, the runner, the figures and the files it writes.

The proof of the suite runs here too, offline: the supervisor's scripted model doing each
task's script passes every check, and a model that does nothing (finishes at once)
passes none, so every check can pass and none passes without the work.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandboxctl import _chart
from sandboxctl._proc import Result, Runner
from sandboxctl.eval import report, runner, taskfile

REQUIRED_KINDS = {
    "create and edit files",
    "follow instructions exactly",
    "search a tree",
    "fix a failing unit test",
    "a multi-step change",
    "a task that must be refused",
    "a task that cannot be done",
}
LAZY = [{"action": {"tool": "finish", "args": {"answer": "done"}}}]


def test_the_bundled_suite_has_at_least_12_tasks_of_every_required_kind() -> None:
    tasks = taskfile.load_suite()
    assert len(tasks) >= 12
    assert {t.category for t in tasks} >= REQUIRED_KINDS
    assert len({t.id for t in tasks}) == len(tasks)


def test_only_keeps_the_named_tasks_and_names_unknown_ones() -> None:
    assert [t.id for t in taskfile.load_suite(only="rename, create-file")] == [
        "create-file",
        "rename",
    ]
    with pytest.raises(taskfile.SuiteError, match="no such task: nope"):
        taskfile.load_suite(only="nope")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('id = "x"\ncategory = "c"\nprompt = "p"\n', "check must be"),
        ('id = "Bad Id"\ncategory = "c"\nprompt = "p"\ncheck = "true"\n', "id 'Bad Id'"),
        ('id = "x"\ncategory = "c"\nprompt = "p"\ncheck = "true"\nextra = 1\n', "unknown keys"),
        ('id = "x"\ncategory = "c"\nprompt = "p"\ncheck = "true"\n', "script must be"),
        (
            'id = "x"\ncategory = "c"\nprompt = "p"\ncheck = "true"\n'
            '[[script]]\naction = { tool = "list_dir", args = {} }\n',
            "must end with the finish",
        ),
        (
            'id = "x"\ncategory = "c"\nprompt = "p"\ncheck = "true"\n'
            "[setup]\nfiles = { a = 1 }\n"
            '[[script]]\naction = { tool = "finish", args = { answer = "" } }\n',
            "setup.files",
        ),
        ('id = "x"\nprompt = ', "01-task.toml"),
    ],
)
def test_a_bad_task_file_is_named_with_what_is_wrong(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "01-task.toml").write_text(text)
    with pytest.raises(taskfile.SuiteError, match=message):
        taskfile.load_suite(tmp_path)


def test_the_spec_carries_the_script_only_for_the_scripted_model() -> None:
    task = taskfile.load_suite(only="edit-config")[0]
    scripted = task.spec(scripted=True, subdir="eval/s/r")
    assert scripted["script"] == list(task.script)
    assert scripted["setup"]["files"]["config.ini"].startswith("[server]")
    assert (scripted["check"], scripted["subdir"]) == (task.check, "eval/s/r")
    assert "script" not in task.spec(scripted=False, subdir="eval/s/r")


# -- the proof: every check can pass, and none passes without the work ------------------
class LazyBackend(runner.LocalBackend):
    """A model that says it finished without doing anything."""

    def run(self, planned: runner.Planned, spec: dict[str, Any], log: str) -> runner.Outcome:
        return super().run(planned, {**spec, "script": LAZY}, log)


@pytest.mark.long  # the supervisor runs every task of the suite
def test_the_scripted_model_passes_every_task(tmp_path: Path) -> None:
    tasks = taskfile.load_suite()
    backend = runner.LocalBackend(tmp_path, slots=2)
    outcomes = runner.run_all(
        backend, runner.plan([runner.SCRIPTED], tasks, 1), prefix="p", progress=lambda _: None
    )
    failed = [(o.task, o.status, o.reason) for o in outcomes if not o.passed]
    assert failed == []
    assert all(o.agent_status == "finished" and o.steps >= 2 for o in outcomes)
    first = outcomes[0]
    assert Path(first.log).is_file()
    assert (tmp_path / "workspace/eval/p/scripted-create-file-1/hello.txt").is_file()


@pytest.mark.long  # the supervisor runs every task of the suite
def test_a_model_that_does_nothing_passes_no_task(tmp_path: Path) -> None:
    tasks = taskfile.load_suite()
    outcomes = runner.run_all(
        LazyBackend(tmp_path, slots=2),
        runner.plan([runner.SCRIPTED], tasks, 1),
        prefix="lazy",
        progress=lambda _: None,
    )
    passed = [o.task for o in outcomes if o.passed]
    assert passed == []
    assert {o.status for o in outcomes} == {"failed"}
    assert {o.agent_status for o in outcomes} == {"finished"}


FAKE_SUPERVISOR = """#!{python}
import json, os, sys
argv = sys.argv[1:]
log = argv[argv.index("--log") + 1]
spec = json.load(sys.stdin)
head = {{"v": 1, "ts": "2026-01-01T00:00:00.0Z", "run_id": "r1"}}
lines = [
    json.dumps({{**head, "seq": 0, "type": "run_start", "task": argv[-1]}}),
    "damaged line",
    json.dumps({{**head, "seq": 2, "type": "run_end", "status": "passed",
                "agent_status": "finished", "steps": 2, "tokens": {{"total": 40}},
                "reason": " ".join([spec["subdir"], os.environ.get("SUPERVISOR_TOOLS_URL", "-"),
                                    os.environ["SUPERVISOR_LOG_DIR"]])}}),
]
open(log, "w").write("\\n".join(lines) + "\\n")
sys.exit(3)
"""


def test_local_backend_runs_the_supervisor_through_the_runner_and_reads_its_trajectory(
    tmp_path: Path,
) -> None:
    """The spec goes on stdin, the tools URL is dropped (tools run in process), and the
    trajectory is read by the supervisor's own reader: a damaged line hides only itself."""
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(FAKE_SUPERVISOR.format(python=sys.executable))
    python.chmod(0o755)
    env = {"PATH": str(python.parent), "SUPERVISOR_TOOLS_URL": "http://tools:9000"}
    backend = runner.LocalBackend(tmp_path, python="python", runner=Runner(env=env))
    task = taskfile.load_suite(only="rename")[0]
    planned = runner.Planned(runner.SCRIPTED, task, 1)
    outcome = backend.run(planned, task.spec(scripted=True, subdir="eval/s/x"), "s/x.jsonl")
    assert (outcome.status, outcome.passed, outcome.steps, outcome.tokens) == (
        "passed", True, 2, 40
    )  # fmt: skip
    assert outcome.exit_code == 3
    assert outcome.reason == f"eval/s/x - {tmp_path / 'logs'}"
    assert outcome.log == str(tmp_path / "logs" / "s" / "x.jsonl")


# -- the runner -------------------------------------------------------------------------
@dataclass
class FakeBackend:
    """Counts runs at once and the models served."""

    width: int = 2
    delay: float = 0.05
    served: list[str] = field(default_factory=list)
    running: int = 0
    most: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def slots(self) -> int:
        return self.width

    def serving(self, model: str) -> AbstractContextManager[None]:
        self.served.append(model)
        return nullcontext()

    def run(self, planned: runner.Planned, spec: dict[str, Any], log: str) -> runner.Outcome:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        passed = planned.repeat == 1
        return runner.Outcome(
            planned.model,
            planned.task.id,
            planned.repeat,
            "passed" if passed else "failed",
            "finished",
            passed,
            3,
            100,
            self.delay,
            0 if passed else 7,
            log=log,
        )


def test_runs_go_in_parallel_up_to_the_slots_in_plan_order() -> None:
    tasks = taskfile.load_suite(only="create-file,rename,json-edit")
    backend = FakeBackend(width=2)
    lines: list[str] = []
    outcomes = runner.run_all(
        backend, runner.plan(["m1", "m2"], tasks, 2), prefix="x", progress=lines.append
    )
    assert backend.most == 2
    assert backend.served == ["m1", "m2"]
    assert [(o.model, o.task, o.repeat) for o in outcomes][:3] == [
        ("m1", "create-file", 1),
        ("m1", "rename", 1),
        ("m1", "json-edit", 1),
    ]
    assert len(outcomes) == 12
    assert any("[12/12]" in line for line in lines)
    assert outcomes[0].log == "eval/x/m1-create-file-1.jsonl"


def test_parallel_option_overrides_the_slots() -> None:
    backend = FakeBackend(width=4)
    runner.run_all(
        backend,
        runner.plan(["m"], taskfile.load_suite(), 1),
        prefix="x",
        parallel=1,
        progress=lambda _: None,
    )
    assert backend.most == 1


def test_scripted_runs_go_one_per_core_and_a_served_model_stays_at_its_slots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scripted model calls no server: its runs are not held to the slots."""
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    tasks = taskfile.load_suite(only="create-file,rename,json-edit")
    widths = []
    for model in (runner.SCRIPTED, "m"):
        backend = FakeBackend(width=1, delay=0.2)
        runner.run_all(backend, runner.plan([model], tasks, 2), prefix="x", progress=lambda _: None)
        widths.append(backend.most)
    assert widths == [3, 1]


def test_plan_needs_a_model_and_a_repeat() -> None:
    tasks = taskfile.load_suite(only="rename")
    with pytest.raises(runner.EvalError, match="repeat"):
        runner.plan(["m"], tasks, 0)
    with pytest.raises(runner.EvalError, match="no model"):
        runner.plan([], tasks, 1)


def test_a_run_without_run_end_is_reported_not_passed() -> None:
    planned = runner.Planned("m", taskfile.load_suite(only="rename")[0], 1)
    outcome = runner.outcome_from_records(planned, [{"type": "run_start"}], 1.5, 5)
    assert (outcome.status, outcome.passed, outcome.exit_code) == ("no_trajectory", False, 5)


@dataclass
class FakeStack:
    """Answers compose exec calls: check --json, and run --json (the run, then its
    trajectory's checked records, one JSON object a line)."""

    calls: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)
    settings: Any = None

    def compose_run(
        self, *args: str, capture: bool = False, input_text: str | None = None
    ) -> Result:
        self.calls.append((args, input_text))
        if "check" in args:
            return Result(args, 0, json.dumps({"slots": 3, "n_ctx": 1024}))
        if "run" in args:
            head = {"v": 1, "ts": "2026-01-01T00:00:00.0Z", "run_id": "r1"}
            records = [
                {**head, "seq": 0, "type": "run_start"},
                {
                    **head,
                    "seq": 1,
                    "type": "run_end",
                    "status": "failed",
                    "agent_status": "step_budget",
                    "steps": 30,
                    "tokens": {"total": 9000},
                    "reason": "the check failed",
                },
            ]
            return Result(args, 7, "".join(json.dumps(r) + "\n" for r in records))
        return Result(args, 7, "", "")


def test_stack_backend_runs_with_the_spec_on_stdin_and_reads_the_trajectory() -> None:
    stack = FakeStack()
    backend = runner.StackBackend(stack, lambda model: nullcontext())
    assert backend.slots() == 3
    task = taskfile.load_suite(only="fix-test")[0]
    planned = runner.Planned("tiny", task, 2)
    spec = task.spec(scripted=False, subdir="eval/s/tiny-fix-test-2")
    outcome = backend.run(planned, spec, "eval/s/tiny-fix-test-2.jsonl")
    assert len(stack.calls) == 2  # the slots probe, then one exec a run
    args, given = stack.calls[1]
    assert args[:9] == (
        "exec",
        "-T",
        "supervisor",
        "sandbox-supervisor",
        "run",
        "--spec",
        "-",
        "-q",
        "--json",
    )
    assert args[-2:] == ("--", task.prompt)
    assert "/logs/eval/s/tiny-fix-test-2.jsonl" in args
    assert json.loads(given or "") == spec
    assert (outcome.status, outcome.agent_status, outcome.steps, outcome.tokens) == (
        "failed",
        "step_budget",
        30,
        9000,
    )
    assert outcome.exit_code == 7


def test_stack_serving_brings_another_model_up_and_the_answered_one_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sandboxctl import stack as stack_

    @dataclass
    class Settings:
        sandbox_model: str

    @dataclass
    class Runner:
        extra_env: dict[str, str]

    @dataclass
    class Stack:
        settings: Settings
        runner: Runner

    brought: list[tuple[str, str | None]] = []
    monkeypatch.setattr(
        stack_,
        "bring_up",
        lambda s: brought.append(
            (s.settings.sandbox_model, s.runner.extra_env.get("SANDBOX_MODEL"))
        ),
    )
    serve = runner.stack_serving(Stack(Settings("tiny"), Runner({})), log=lambda _: None)
    with serve("tiny"):
        assert brought == []
    with serve("smollm2"):
        assert brought == [("smollm2", "smollm2")]
    assert brought[-1] == ("tiny", None)


# -- the report ---------------------------------------------------------------------------
def _outcomes() -> list[runner.Outcome]:
    def one(model: str, task: str, repeat: int, passed: bool, wall: float) -> runner.Outcome:
        status = "passed" if passed else "failed"
        return runner.Outcome(model, task, repeat, status, "finished", passed, 4, 500, wall, 0)

    return [
        one("scripted", "a", 1, True, 1.0),
        one("scripted", "b", 1, True, 3.0),
        one("tiny", "a", 1, False, 10.0),
        one("tiny", "a", 2, True, 20.0),
        runner.Outcome("tiny", "b", 1, "step_budget", None, False, 30, 9000, 60.0, 3),
        runner.Outcome("tiny", "b", 2, "model_unavailable", None, False, 0, 0, 1.0, 5),
    ]


def test_summary_has_pass_rate_steps_tokens_time_and_end_reasons_per_model_and_task() -> None:
    summary = report.summarize(_outcomes(), ["a", "b"])
    assert summary["scripted"]["all"]["pass_rate"] == 1.0
    tiny = summary["tiny"]
    assert tiny["all"]["runs"] == 4
    assert tiny["all"]["pass_rate"] == 0.25
    assert tiny["tasks"]["a"]["wall_s_mean"] == 15.0
    assert tiny["tasks"]["b"]["steps_mean"] == 15.0
    assert tiny["tasks"]["b"]["end_reasons"] == {"step_budget": 1, "model_unavailable": 1}
    assert tiny["tasks"]["a"]["end_reasons"] == {"failed (finished)": 1, "passed (finished)": 1}


def test_markdown_has_a_row_per_model_and_per_model_and_task() -> None:
    summary = report.summarize(_outcomes(), ["a", "b"])
    text = report.markdown(summary, {"stamp": "S", "tasks": 2, "repeat": 2})
    assert "| tiny | 25% | 1/4 |" in text
    assert "| scripted | a | 100% | 1/1 | 4.0 | 500 | 1.0 | passed (finished) x1 |" in text
    assert "| tiny | b | 0% | 0/2 |" in text


def test_write_makes_json_markdown_and_a_png_chart(tmp_path: Path) -> None:
    summary, paths = report.write(tmp_path / "out", _outcomes(), ["a", "b"], {"stamp": "S"})
    assert [p.name for p in paths] == ["eval.json", "eval.md", "eval.png"]
    data = json.loads(paths[0].read_text())
    assert data["models"] == summary
    assert len(data["runs"]) == 6
    from PIL import Image

    with Image.open(paths[2]) as image:
        assert (image.format, image.size) == ("PNG", (960, 600))
        colours = {colour for _, colour in image.convert("RGB").getcolors(1 << 20) or []}
    assert _chart.PALETTE[0] in colours  # the first model's points
    assert _chart.PALETTE[1] in colours  # the second model's


def test_eval_is_wired_as_a_top_level_task() -> None:
    import tasks

    assert "eval" in tasks.ns.task_names


@dataclass
class InterruptedStack(FakeStack):
    """A run whose process ended before it printed its records (killed, interrupted):
    stdout empty, exit 130; its log holds the run up to its interrupted run_end."""

    def compose_run(
        self, *args: str, capture: bool = False, input_text: str | None = None
    ) -> Result:
        if "run" in args:
            self.calls.append((args, input_text))
            return Result(args, 130, "", "")
        if "show" in args:
            self.calls.append((args, input_text))
            head = {"v": 1, "ts": "2026-01-01T00:00:00.0Z", "run_id": "r1"}
            records = [
                {**head, "seq": 0, "type": "run_start"},
                {**head, "seq": 1, "type": "run_end", "status": "interrupted", "steps": 2},
            ]
            return Result(args, 0, "".join(json.dumps(r) + "\n" for r in records))
        return super().compose_run(*args, capture=capture, input_text=input_text)


def test_a_run_that_printed_no_run_end_is_read_back_from_its_log() -> None:
    stack = InterruptedStack()
    backend = runner.StackBackend(stack, lambda model: nullcontext())
    task = taskfile.load_suite(only="rename")[0]
    outcome = backend.run(runner.Planned("tiny", task, 1), {}, "eval/s/x.jsonl")
    shown = stack.calls[-1][0]
    assert shown[-3:] == ("show", "--json", "/logs/eval/s/x.jsonl")
    assert (outcome.status, outcome.steps, outcome.exit_code) == ("interrupted", 2, 130)


def test_step_budget_overrides_models_but_not_the_scripted_one() -> None:
    task = taskfile.load_suite(only="rename")[0]
    assert runner.step_budget(runner.Planned("tiny", task, 1), 3) == ["--max-steps", "3"]
    assert runner.step_budget(runner.Planned("tiny", task, 1)) == []
    assert runner.step_budget(runner.Planned(runner.SCRIPTED, task, 1), 3) == []


def test_stack_backend_passes_the_step_budget_for_a_model() -> None:
    stack = FakeStack()
    backend = runner.StackBackend(stack, lambda model: nullcontext(), max_steps=2)
    task = taskfile.load_suite(only="rename")[0]
    backend.run(runner.Planned("tiny", task, 1), {}, "eval/s/x.jsonl")
    args = stack.calls[0][0]
    assert args[args.index("--max-steps") + 1] == "2"
    assert args.index("--max-steps") < args.index("--")
