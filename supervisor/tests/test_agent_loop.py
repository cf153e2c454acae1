"""The agent loop driven offline by the scripted model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox_supervisor.agent import Agent, AgentLimits
from sandbox_supervisor.dialects import action_schema
from sandbox_supervisor.scripted import ScriptedModel, load_script
from sandbox_supervisor.tools import InProcessExecutor, Limits, Workspace
from sandbox_supervisor.trajectory import TrajectoryWriter, read_records


def act(tool: str, **args: Any) -> dict[str, Any]:
    """One scripted action step."""
    return {"action": {"tool": tool, "args": args}}


def _run(
    steps: list[dict[str, Any]],
    executor: InProcessExecutor,
    log: TrajectoryWriter,
    mode: str = "json",
    **limits: Any,
) -> tuple[Any, ScriptedModel]:
    model = ScriptedModel(steps)
    agent = Agent(model, executor, log, mode=mode, limits=AgentLimits(**limits))
    return agent.run("the task"), model


def _types(log: TrajectoryWriter) -> list[str]:
    return [r["type"] for r in read_records(log.path).records]


@pytest.mark.parametrize("mode", ["json", "native"])
def test_success_writes_the_file_and_finishes(
    mode: str, workspace: Workspace, executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result, model = _run(
        [act("write_file", path="a.txt", content="hi\n"), act("finish", answer="wrote a.txt")],
        executor,
        log,
        mode,
    )
    assert (result.status, result.answer, result.exit_code) == ("finished", "wrote a.txt", 0)
    assert (workspace.root / "a.txt").read_text() == "hi\n"
    assert _types(log) == [
        "run_start",
        "model_request",
        "model_response",
        "tool_call",
        "tool_result",
        "model_request",
        "model_response",
        "tool_call",
        "run_end",
    ]
    request = model.requests[0]
    if mode == "json":
        assert request["response_format"]["json_schema"]["schema"] == action_schema(
            executor.specs()
        )
        assert request["tools"] is None
    else:
        assert {t["name"] for t in request["tools"]} >= {"write_file", "finish"}
        assert model.requests[1]["messages"][-1]["role"] == "tool"


def test_malformed_output_is_fed_back_and_the_run_recovers(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result, model = _run(
        [{"content": "I think I should list files"}, act("finish", answer="ok")], executor, log
    )
    assert result.status == "finished"
    feedback = model.requests[1]["messages"][-1]
    assert feedback["role"] == "user"
    assert "not valid JSON" in feedback["content"]


def test_repeated_malformed_output_ends_the_run(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result, model = _run([{"content": "{not json"}] * 10, executor, log, max_invalid_replies=3)
    assert result.status == "invalid_replies"
    assert result.exit_code == 4
    assert len(model.requests) == 3


def test_unknown_tool_is_fed_back_as_an_observation(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result, model = _run(
        [act("delete_everything", path="."), act("finish", answer="ok")], executor, log
    )
    assert result.status == "finished"
    assert "unknown tool 'delete_everything'" in model.requests[1]["messages"][-1]["content"]
    assert "tool_call" not in _types(log)[:5]


def test_bad_arguments_are_fed_back_as_an_observation(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result, model = _run(
        [act("read_file", file="a.txt"), act("finish", answer="ok")], executor, log
    )
    assert result.status == "finished"
    observation = model.requests[1]["messages"][-1]["content"]
    assert "[read_file: invalid]" in observation
    assert "path: Field required" in observation


def test_unknown_native_tool_gets_a_tool_message(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    steps = [
        {"tool_calls": [{"id": "x1", "name": "nope", "arguments": "{}"}]},
        act("finish", answer="ok"),
    ]
    result, model = _run(steps, executor, log, mode="native")
    assert result.status == "finished"
    answer = model.requests[1]["messages"][-1]
    assert (answer["role"], answer["tool_call_id"]) == ("tool", "x1")


def test_step_budget_stops_before_the_next_model_call(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result, model = _run([act("list_dir", path=".")] * 10, executor, log, max_steps=4)
    assert result.status == "step_budget"
    assert result.exit_code == 3
    assert len(model.requests) == 4
    assert read_records(log.path).records[-1]["status"] == "step_budget"


def test_token_budget_stops_before_the_next_model_call(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    usage = {"prompt_tokens": 400, "completion_tokens": 100, "total_tokens": 500}
    result, model = _run(
        [{**act("list_dir"), "usage": usage}] * 10, executor, log, max_total_tokens=1200
    )
    assert result.status == "token_budget"
    assert len(model.requests) == 3
    assert result.tokens["total"] == 1500


def test_wall_clock_budget_stops_the_run(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 10.0
        return now[0]

    model = ScriptedModel([act("list_dir")] * 10)
    agent = Agent(model, executor, log, mode="json", limits=AgentLimits(max_wall_s=35), clock=clock)
    result = agent.run("task")
    assert result.status == "time_budget"
    assert len(model.requests) < 10


def test_model_timeout_ends_the_run_as_time_budget(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result, _ = _run([act("list_dir"), {"error": "timeout"}], executor, log)
    assert result.status == "time_budget"
    assert read_records(log.path).records[-1]["type"] == "run_end"


def test_model_unavailable_ends_the_run_with_its_status(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result, _ = _run([{"error": "unavailable"}], executor, log)
    assert (result.status, result.exit_code) == ("model_unavailable", 5)
    assert "error" in _types(log)


def test_consecutive_tool_timeouts_stop_the_run(
    workspace: Workspace, log: TrajectoryWriter
) -> None:
    quick = InProcessExecutor(workspace, Limits(command_timeout_s=0.2, command_grace_s=0.1))
    result, model = _run(
        [act("run_command", command="sleep 5")] * 10, quick, log, max_tool_timeouts=2
    )
    assert result.status == "tool_timeouts"
    assert len(model.requests) == 2


def test_a_tool_that_succeeds_resets_the_timeout_count(
    workspace: Workspace, log: TrajectoryWriter
) -> None:
    quick = InProcessExecutor(workspace, Limits(command_timeout_s=0.2, command_grace_s=0.1))
    slow = act("run_command", command="sleep 5")
    steps = [slow, act("list_dir"), slow, act("finish", answer="done")]
    result, _ = _run(steps, quick, log, max_tool_timeouts=2)
    assert result.status == "finished"


@pytest.mark.parametrize("mode", ["json", "native"])
def test_the_same_failing_call_in_a_row_stops_the_run_as_given_up(
    mode: str, executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    """A model stuck on one failing call (seen with smollm2: list_dir of a missing folder,
    30 times) is stopped at max_repeated_failures, not at the step budget."""
    stuck = act("list_dir", path="out/missing")
    result, model = _run([stuck] * 30, executor, log, mode, max_repeated_failures=3)
    assert (result.status, result.exit_code) == ("repeated_failures", 4)
    assert len(model.requests) == 3
    assert "list_dir" in result.reason


def test_a_repeated_failure_is_pointed_out_to_the_model_before_the_stop(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    stuck = act("read_file", path="nope.txt")
    _, model = _run([stuck] * 5, executor, log, max_repeated_failures=3)
    seen = json.dumps(model.requests[2])
    assert "failed the same way 2 times in a row" in seen
    assert "failed the same way" not in json.dumps(model.requests[1])


@pytest.mark.parametrize(
    "between",
    [act("list_dir"), act("read_file", path="other.txt")],
    ids=["a-success", "another-failure"],
)
def test_anything_else_between_repeats_resets_the_count(
    between: dict[str, Any], executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    stuck = act("read_file", path="nope.txt")
    steps = [stuck, stuck, between, stuck, stuck, act("finish", answer="gave it a rest")]
    result, _ = _run(steps, executor, log, max_repeated_failures=3)
    assert result.status == "finished"


def test_the_same_call_succeeding_again_is_not_a_failure_loop(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    """Polling a file that exists is allowed: only failures count."""
    steps = [act("list_dir")] * 6 + [act("finish", answer="done")]
    result, _ = _run(steps, executor, log, max_repeated_failures=2)
    assert result.status == "finished"


def test_a_command_failing_the_same_way_in_a_row_stops_the_run(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    same = act("run_command", command="echo no; exit 1")
    result, _ = _run([same] * 6, executor, log, max_repeated_failures=2)
    assert result.status == "repeated_failures"


def test_a_failing_command_whose_output_changes_is_not_a_loop(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    """Same command, different result each time (the workspace changed): not stuck."""
    grow = act("run_command", command="echo x >> n; wc -l < n; exit 1")
    result, _ = _run([grow] * 4 + [act("finish", answer="ok")], executor, log,
                     max_repeated_failures=2)  # fmt: skip
    assert result.status == "finished"


def test_duplicate_call_id_in_one_reply_runs_once(
    workspace: Workspace, executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    call = {
        "id": "same",
        "name": "run_command",
        "arguments": json.dumps({"command": "echo x >> counter"}),
    }
    result, _ = _run(
        [{"tool_calls": [call, call]}, act("finish", answer="ok")], executor, log, mode="native"
    )
    assert result.status == "finished"
    assert (workspace.root / "counter").read_text() == "x\n"


def test_tool_output_with_newlines_and_json_stays_in_one_record(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    command = 'printf \'{"type": "run_end"}\\nline two\\n\''
    _run([act("run_command", command=command), act("finish", answer="ok")], executor, log)
    results = [r for r in read_records(log.path).records if r["type"] == "tool_result"]
    assert results[0]["output"] == '{"type": "run_end"}\nline two\n'
    assert _types(log).count("run_end") == 1


def test_run_start_records_config_without_secrets(
    executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    model = ScriptedModel([act("finish", answer="ok")])
    Agent(model, executor, log, mode="json").run("t", {"config": {"model": "m"}})
    start = read_records(log.path).records[0]
    assert start["type"] == "run_start"
    assert start["config"] == {"model": "m"}
    assert start["tools"] == [
        "read_file",
        "write_file",
        "list_dir",
        "search_text",
        "run_command",
        "view_file",
        "edit_file",
    ]


def test_shipped_demo_script_succeeds(
    workspace: Workspace, executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    result, _ = _run(load_script("demo"), executor, log)
    assert result.status == "finished"
    assert (workspace.root / "hello.txt").exists()


def test_json_mode_schema_lists_every_tool_and_finish(executor: InProcessExecutor) -> None:
    schema = action_schema(executor.specs())
    names = [c["properties"]["tool"]["const"] for c in schema["properties"]["action"]["anyOf"]]
    assert names == [
        "read_file",
        "write_file",
        "list_dir",
        "search_text",
        "run_command",
        "view_file",
        "edit_file",
        "finish",
    ]
    assert "title" not in json.dumps(schema)


@pytest.mark.parametrize("mode", ["json", "native"])
def test_lone_surrogate_in_model_json_is_replaced_not_fatal(
    mode: str, workspace: Workspace, executor: InProcessExecutor, log: TrajectoryWriter
) -> None:
    """JSON lets a model emit "\\udada", which UTF-8 cannot encode (a random model did, in the
    e2e): the loop replaces it with U+FFFD, writes the file and goes on."""
    result, _model = _run(
        [act("write_file", path="a.txt", content="x\udaday"), act("finish", answer="done")],
        executor,
        log,
        mode,
    )
    assert result.status == "finished"
    assert (workspace.root / "a.txt").read_text(encoding="utf-8") == "x\ufffdy"
