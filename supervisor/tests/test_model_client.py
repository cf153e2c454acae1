"""The model client against a fake OpenAI-compatible server on a real socket."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sv_fakes import HANG, FakeModelServer, action, completion, make_settings

from sandbox_supervisor.agent import Agent, AgentLimits
from sandbox_supervisor.client import (
    ModelClient,
    ModelRejected,
    ModelUnavailable,
    server_reason,
)
from sandbox_supervisor.tools import InProcessExecutor, ToolRequest, ToolResult
from sandbox_supervisor.trajectory import TrajectoryWriter, read_records

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def _client(
    server: FakeModelServer, delays: list[float] | None = None, **kw: object
) -> ModelClient:
    sleep = delays.append if delays is not None else time.sleep
    return ModelClient(make_settings(model_url=server.url, **kw), sleep=sleep)


def test_loading_server_503_is_waited_for_then_answers() -> None:
    routes = {
        CHAT: [(503, {}, {"error": "Loading model"}), completion("hello")],
        "/health": [(503, {}, {"status": "loading"}), (503, {}, {}), (200, {}, {})],
    }
    with FakeModelServer(routes) as server:
        reply = _client(server).complete(MESSAGES, deadline=time.monotonic() + 10)
    assert reply.content == "hello"
    assert reply.attempts == 2
    assert server.count("/health") == 3


def test_429_retry_after_is_honoured() -> None:
    routes = {CHAT: [(429, {"Retry-After": "2"}, {"error": "busy"}), completion("ok")]}
    delays: list[float] = []
    with FakeModelServer(routes) as server:
        reply = _client(server, delays).complete(MESSAGES, deadline=time.monotonic() + 10)
    assert reply.content == "ok"
    assert delays == [2.0]


def test_500_then_success_retries_with_backoff() -> None:
    routes = {CHAT: [(500, {}, {"error": "boom"}), completion("ok")]}
    delays: list[float] = []
    with FakeModelServer(routes) as server:
        reply = _client(server, delays, backoff_base_s=0.4, backoff_max_s=5).complete(
            MESSAGES, deadline=time.monotonic() + 10
        )
    assert reply.attempts == 2
    assert len(delays) == 1
    assert 0.2 <= delays[0] <= 0.4  # half the first step plus up to half of jitter
    assert server.count(CHAT) == 2


def test_each_retry_says_the_servers_own_reason() -> None:
    """A retried 500 is reported with llama-server's message, not a bare status."""
    reason = "the model produced output that does not match the expected format"
    body = {"error": {"code": 500, "message": reason, "type": "server_error"}}
    routes = {CHAT: [(500, {}, body), completion("ok")]}
    retries: list[str] = []
    with FakeModelServer(routes) as server:
        client = ModelClient(
            make_settings(model_url=server.url),
            sleep=lambda _: None,
            on_retry=lambda attempt, delay, why: retries.append(why),
        )
        client.complete(MESSAGES, deadline=time.monotonic() + 10)
    assert retries == [f"HTTP 500: {reason}"]


UNPARSED = {
    "error": {
        "code": 500,
        "message": "The model produced output that does not match the expected peg-native format",
        "type": "server_error",
    }
}
"""llama-server's 500 when the model's own output does not parse in the chat format."""


def test_output_the_server_cannot_parse_becomes_an_unusable_reply_after_two_retries() -> None:
    """Each try samples anew; the third such 500 is the model's fault, not the server's:
    a reply the loop can tell the model about, never `model_unavailable`."""
    routes: dict[str, Any] = {CHAT: [(500, {}, UNPARSED)]}
    with FakeModelServer(routes) as server:
        reply = _client(server, [], max_retries=5).complete(
            MESSAGES, deadline=time.monotonic() + 10
        )
        tries = server.count(CHAT)
    assert tries == 3
    assert reply.problem is not None
    assert "could not read the model's output 3 times" in reply.problem
    assert "peg-native format" in reply.problem


def test_a_model_whose_output_never_parses_ends_by_the_invalid_reply_rule(
    tmp_path: Path, executor: InProcessExecutor
) -> None:
    routes: dict[str, Any] = {CHAT: [(500, {}, UNPARSED)]}
    log_path = tmp_path / "t.jsonl"
    with FakeModelServer(routes) as server, TrajectoryWriter(log_path, "r") as log:
        agent = Agent(_client(server, []), executor, log, mode="json")
        result = agent.run("list the files")
    assert result.status == "invalid_replies"
    kinds = [r.get("kind") for r in read_records(log_path).records]
    assert "invalid_reply" in kinds
    assert "model_unavailable" not in [r.get("status") for r in read_records(log_path).records]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"message": "slot unavailable"}}, "slot unavailable"),
        ({"error": "boom"}, "boom"),
        ("plain\ntext  body", "plain text body"),
        (None, "Error code: 500"),
        ({"error": {"message": "x" * 500}}, "x" * 197 + "..."),
    ],
)
def test_server_reason_reads_every_shape_on_one_line(body: object, expected: str) -> None:
    assert server_reason(body, "Error code: 500") == expected


def test_401_is_not_retried_and_names_the_key_setting() -> None:
    routes: dict[str, Any] = {CHAT: [(401, {}, {"error": {"message": "Invalid API Key"}})]}
    with FakeModelServer(routes) as server:
        with pytest.raises(ModelRejected, match="SUPERVISOR_API_KEY_FILE") as caught:
            _client(server, []).complete(MESSAGES, deadline=time.monotonic() + 10)
        assert server.count(CHAT) == 1
    assert caught.value.status == 401


def test_silent_server_times_out_within_a_second_of_the_setting() -> None:
    with FakeModelServer({CHAT: [(200, {}, HANG)]}) as server:
        client = _client(server, request_timeout_s=1.0, max_retries=0)
        started = time.monotonic()
        with pytest.raises(ModelUnavailable, match="no reply within"):
            client.complete(MESSAGES, deadline=time.monotonic() + 30)
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.0


def test_run_deadline_cuts_the_request_timeout() -> None:
    with FakeModelServer({CHAT: [(200, {}, HANG)]}) as server:
        client = _client(server, request_timeout_s=60.0, max_retries=5)
        started = time.monotonic()
        with pytest.raises(Exception, match=r"deadline|no reply"):
            client.complete(MESSAGES, deadline=time.monotonic() + 0.8)
        elapsed = time.monotonic() - started
    assert elapsed < 1.8


def test_server_that_never_gets_ready_ends_with_an_actionable_error() -> None:
    routes = {CHAT: [(503, {}, {"error": "Loading model"})], "/health": [(503, {}, {})]}
    with FakeModelServer(routes) as server:
        client = _client(server, ready_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(ModelUnavailable, match=r"not ready after .*SUPERVISOR_READY_TIMEOUT_S"):
            client.complete(MESSAGES, deadline=time.monotonic() + 30)
    assert time.monotonic() - started < 3


def test_unconstrained_text_under_a_schema_goes_back_to_the_model(
    tmp_path: Path, executor: InProcessExecutor
) -> None:
    routes = {CHAT: [completion("Sure! I will list the files."), action("finish", answer="done")]}
    with FakeModelServer(routes) as server, TrajectoryWriter(tmp_path / "t.jsonl", "r") as log:
        agent = Agent(_client(server), executor, log, mode="json")
        result = agent.run("list the files")
        second = server.requests[-1]["body"]
    assert result.status == "finished"
    assert result.answer == "done"
    assert second["response_format"]["type"] == "json_schema"
    assert "not usable" in second["messages"][-1]["content"]
    kinds = [r.get("kind") for r in read_records(tmp_path / "t.jsonl").records]
    assert "invalid_reply" in kinds


class CountingExecutor(InProcessExecutor):
    """Counts executions per tool call id."""

    calls: list[str]

    def execute(self, request: ToolRequest) -> ToolResult:
        self.calls.append(request.call_id)
        return super().execute(request)


def test_retried_model_request_does_not_repeat_a_tool_call(
    tmp_path: Path, executor: InProcessExecutor
) -> None:
    counting = CountingExecutor(executor.workspace, executor.limits)
    counting.calls = []
    routes = {
        CHAT: [
            action("write_file", path="n.txt", content="1"),
            (500, {}, {"error": "boom"}),
            (502, {}, {"error": "bad gateway"}),
            action("finish", answer="ok"),
        ]
    }
    with FakeModelServer(routes) as server, TrajectoryWriter(tmp_path / "t.jsonl", "r") as log:
        result = Agent(
            _client(server), counting, log, mode="json", limits=AgentLimits(max_steps=5)
        ).run("write n")
    assert result.status == "finished"
    assert counting.calls == ["1.0"]
    assert server.count(CHAT) == 4
