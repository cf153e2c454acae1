"""Each request stays within the server's context; a long run ends by its budgets.

The fake OpenAI server plays llama-server: it counts a request's tokens (three characters
of its messages' JSON a token) and refuses one over its context with llama-server's own
message, so a request that does not fit fails as it would against the real server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sv_fakes import FakeModelServer, action, completion, make_settings

from sandbox_supervisor.agent import Agent, AgentLimits
from sandbox_supervisor.client import ModelClient
from sandbox_supervisor.context import ContextTooSmall, ContextWindow, refused_sizes
from sandbox_supervisor.session import run_task
from sandbox_supervisor.tools import InProcessExecutor, Workspace
from sandbox_supervisor.trajectory import TrajectoryWriter, read_records

CHAT = "/v1/chat/completions"
N_CTX = 2048
WIDE_CTX = 3072
"""For the native dialect and for replies of half the context: seven tools' schemas are
about 5,700 characters of prompt in native mode, more than 2,048 tokens leave room for."""


class Counting:
    """Answers every request with a read of ``big.txt``; refuses requests over the context."""

    def __init__(self, n_ctx: int = N_CTX, reply: Any = None) -> None:
        self.n_ctx = n_ctx
        self.sizes: list[int] = []
        self.refused = 0
        self.reply = reply or action("read_file", path="big.txt")

    def tokens(self, body: dict[str, Any]) -> int:
        return len(json.dumps(body["messages"])) // 3 + 40

    def __call__(self, body: dict[str, Any]) -> Any:
        size = self.tokens(body)
        if size > self.n_ctx:
            self.refused += 1
            message = (
                f"the request exceeds the available context size, try increasing it: "
                f"request ({size} tokens) exceeds the available context size ({self.n_ctx} tokens)"
            )
            return 400, {}, {"error": {"code": 400, "message": message, "type": "exceed_context"}}
        self.sizes.append(size)
        status, headers, payload = self.reply
        payload = json.loads(json.dumps(payload))
        payload["usage"] = {
            "prompt_tokens": size,
            "completion_tokens": 20,
            "total_tokens": size + 20,
        }
        return status, headers, payload


@pytest.fixture
def big(workspace: Workspace) -> Workspace:
    (workspace.root / "big.txt").write_text("lorem ipsum dolor sit amet\n" * 120)  # 3240 chars
    return workspace


def _agent_run(
    server: FakeModelServer, executor: InProcessExecutor, path: Path, **limits: Any
) -> Any:
    client = ModelClient(make_settings(model_url=server.url))
    with TrajectoryWriter(path, "r") as log:
        agent = Agent(client, executor, log, mode="json", limits=AgentLimits(**limits))
        return agent.run("read big.txt again and again")


def test_a_long_run_stays_within_the_context_and_ends_by_its_step_budget(
    big: Workspace, executor: InProcessExecutor, tmp_path: Path
) -> None:
    counting = Counting()
    with FakeModelServer({CHAT: [counting]}) as server:
        result = _agent_run(
            server,
            executor,
            tmp_path / "t.jsonl",
            max_steps=12,
            context_tokens=N_CTX,
            reply_tokens=256,
        )
    assert result.status == "step_budget", result.reason
    assert counting.refused == 0
    assert len(counting.sizes) == 12
    assert max(counting.sizes) <= N_CTX
    records = read_records(tmp_path / "t.jsonl").records
    trims = [r for r in records if r["type"] == "context"]
    assert trims, "nothing was dropped, so the test proves nothing"
    assert trims[0]["shortened"][0]["index"] == 3  # the oldest observation goes first
    assert all(r["estimated_after"] <= r["budget_tokens"] for r in trims)
    requests = [r for r in records if r["type"] == "model_request"]
    assert all(r["context"]["estimated"] <= r["context"]["budget"] for r in requests)


def test_without_a_known_context_the_servers_refusal_teaches_it(
    big: Workspace, executor: InProcessExecutor, tmp_path: Path
) -> None:
    counting = Counting()
    with FakeModelServer({CHAT: [counting]}) as server:
        # 256 reply tokens: the JSON dialect's prompt lists seven tools (about 1,250 of
        # this fake's tokens with the task), more than the 1,024 left beside 1,024
        result = _agent_run(server, executor, tmp_path / "t.jsonl", max_steps=10, reply_tokens=256)
    assert result.status == "step_budget", result.reason
    assert counting.refused == 1  # once refused, every later request fits
    kinds = [r.get("kind") for r in read_records(tmp_path / "t.jsonl").records]
    assert "context_exceeded" in kinds


def test_a_task_that_alone_does_not_fit_ends_context_exhausted(
    executor: InProcessExecutor, tmp_path: Path
) -> None:
    counting = Counting(n_ctx=512)
    with FakeModelServer({CHAT: [counting]}) as server:
        client = ModelClient(make_settings(model_url=server.url))
        with TrajectoryWriter(tmp_path / "t.jsonl", "r") as log:
            agent = Agent(
                client, executor, log, mode="json", limits=AgentLimits(context_tokens=512)
            )
            result = agent.run("x" * 4000)
    assert result.status == "context_exhausted"
    assert "the task and the latest step" in result.reason
    assert counting.sizes == []  # nothing was sent that could not fit


def test_run_task_reads_the_context_from_the_servers_props(big: Workspace, tmp_path: Path) -> None:
    counting = Counting(n_ctx=1500)
    props = {"default_generation_settings": {"n_ctx": 1500}, "model_path": "/models/m.gguf"}
    routes = {CHAT: [counting], "/props": [(200, {}, props)]}
    with FakeModelServer(routes) as server:
        settings = make_settings(
            model_url=server.url,
            workspace=big.root,
            log_dir=tmp_path / "logs",
            tool_mode="json",
            max_steps=8,
            max_reply_tokens=200,
        )
        code = run_task(settings, "read", scripted=None, log=tmp_path / "r.jsonl", quiet=True)
    assert code == 3  # the step budget, not the context
    assert counting.refused == 0
    assert max(counting.sizes) <= 1500
    records = read_records(tmp_path / "r.jsonl").records
    assert records[0]["server"]["n_ctx"] == 1500
    assert records[-1]["status"] == "step_budget"
    assert any(r["type"] == "context" for r in records)


def test_native_mode_keeps_tool_calls_and_answers_paired(
    big: Workspace, executor: InProcessExecutor, tmp_path: Path
) -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "big.txt"}'},
    }
    counting = Counting(WIDE_CTX, reply=completion(None, [call]))
    with FakeModelServer({CHAT: [counting]}) as server:
        client = ModelClient(make_settings(model_url=server.url))
        with TrajectoryWriter(tmp_path / "t.jsonl", "r") as log:
            agent = Agent(
                client,
                executor,
                log,
                mode="native",
                limits=AgentLimits(max_steps=10, context_tokens=WIDE_CTX, reply_tokens=256),
            )
            result = agent.run("read")
        last = server.requests[-1]["body"]["messages"]
    assert result.status == "step_budget"
    assert counting.refused == 0
    for index, message in enumerate(last):  # every tool answer follows its call
        if message["role"] == "tool":
            assert last[index - 1]["role"] in ("assistant", "tool")
    assert not any(k.startswith("_") for m in last for k in m)


def test_window_learns_the_ratio_and_refusal_sizes() -> None:
    window = ContextWindow(1000, 100)
    window.learn(4000, 1000)
    assert window.chars_per_token == pytest.approx(3.6)
    window.learn(4000, 0)  # ignored
    assert window.chars_per_token == pytest.approx(3.6)
    assert refused_sizes(
        "request (2118 tokens) exceeds the available context size (2048 tokens)"
    ) == (2118, 2048)
    assert refused_sizes("something else") is None
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "t" * 9000}]
    with pytest.raises(ContextTooSmall):
        window.fit(messages)


@pytest.mark.long  # 300 turns fitted one by one
def test_a_long_conversation_fits_and_keeps_the_latest_observation_whole() -> None:
    """300 turns of 2,000-character observations into a 4,096-token window (how long this
    takes is a benchmark's business, not an assertion's)."""
    window = ContextWindow(4096, 512)
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    for n in range(300):
        messages += [
            {"role": "assistant", "content": f"reply {n}"},
            {"role": "user", "content": "o" * 2000},
        ]
    trim = window.fit(messages)
    assert trim
    assert window.estimate(messages) <= window.budget
    assert messages[-1]["content"] == "o" * 2000  # the latest observation is kept whole


def test_replies_as_long_as_the_reply_budget_still_end_by_the_step_budget(
    executor: InProcessExecutor, tmp_path: Path
) -> None:
    """The tiny random model's case: every reply fills max_tokens (half the context), so
    the task and the latest reply alone pass the budget; the latest reply is cut too."""
    counting = Counting(WIDE_CTX, reply=action("list_dir", path="x" * 4500))
    with FakeModelServer({CHAT: [counting]}) as server:
        result = _agent_run(
            server,
            executor,
            tmp_path / "t.jsonl",
            max_steps=6,
            context_tokens=WIDE_CTX,
            reply_tokens=1536,
            max_repeated_failures=100,  # the same failing call on purpose: the context is tested
        )
    assert result.status == "step_budget", result.reason
    assert counting.refused == 0
    assert max(counting.sizes) <= WIDE_CTX - 1536
