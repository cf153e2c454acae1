"""A model server that stalls or answers garbage, and replies that try to break the loop.

Every case must end the run on a status the loop chose (an invalid-reply
observation, a budget, the server unavailable), never ``error`` with a traceback,
and within its deadline.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sv_fakes import FakeModelServer, make_settings

from sandbox_supervisor.agent import Agent, AgentLimits
from sandbox_supervisor.client import ModelClient, ModelError
from sandbox_supervisor.scripted import ScriptedModel
from sandbox_supervisor.tools import InProcessExecutor
from sandbox_supervisor.trajectory import TrajectoryWriter, read_records

CHAT = "/v1/chat/completions"


class Trickler:
    """A server that answers every request one line (or byte) at a time, for ever."""

    def __init__(self, *, body: bool) -> None:
        self.body = body
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            try:
                if self.body:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{")
                    while not self.stop.wait(0.1):
                        conn.sendall(b" ")
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    while not self.stop.wait(0.2):
                        conn.sendall(b"X-Slow: 1\r\n")
            except OSError:
                return

    def __enter__(self) -> Trickler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(params=["headers", "body"])
def trickler(request: pytest.FixtureRequest) -> Iterator[Trickler]:
    with Trickler(body=request.param == "body") as server:
        yield server


def test_a_trickling_server_cannot_stretch_one_attempt(
    trickler: Trickler, figures: dict[str, str]
) -> None:
    client = ModelClient(
        make_settings(model_url=trickler.url, request_timeout_s=1.0, max_retries=0)
    )
    started = time.monotonic()
    with pytest.raises(ModelError):
        client.complete([{"role": "user", "content": "hi"}], deadline=time.monotonic() + 30)
    elapsed = time.monotonic() - started
    client.close()
    kind = "body" if trickler.body else "headers"
    figures[f"model_stall_attempt_{kind}"] = f"ended after {elapsed:.2f} s (timeout 1 s)"
    assert elapsed < 1.0 + 1.5  # unbounded before: each trickled byte restarted the timeout


@pytest.mark.long  # a run held to its 2.5 s wall budget
def test_a_trickling_server_cannot_stretch_the_runs_wall_budget(
    trickler: Trickler, executor: InProcessExecutor, tmp_path: Path, figures: dict[str, str]
) -> None:
    settings = make_settings(model_url=trickler.url, request_timeout_s=1.0, max_retries=5)
    client = ModelClient(settings, sleep=lambda _s: None)
    client.wait_ready = lambda deadline: None  # type: ignore[method-assign]
    with TrajectoryWriter(tmp_path / "t.jsonl", "r") as log:
        agent = Agent(client, executor, log, mode="json", limits=AgentLimits(max_wall_s=2.5))
        started = time.monotonic()
        result = agent.run("task")
    elapsed = time.monotonic() - started
    client.close()
    kind = "body" if trickler.body else "headers"
    figures[f"model_stall_run_{kind}"] = f"{result.status} after {elapsed:.2f} s (budget 2.5 s)"
    assert elapsed < 2.5 + 2.0
    assert result.status in ("time_budget", "model_unavailable")


def _body(message: dict[str, Any] | None = None, **top: Any) -> bytes:
    data: dict[str, Any] = {
        "choices": [{"message": message or {"content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    data.update(top)
    return json.dumps(data).encode()


def _call(arguments: str) -> dict[str, Any]:
    return {"tool_calls": [{"id": "a", "function": {"name": "list_dir", "arguments": arguments}}]}


DEEP = "[" * 100_000 + "]" * 100_000
BODIES: list[tuple[str, bytes]] = [
    ("NaN in arguments", _body(_call('{"path": NaN}'))),
    ("Infinity in arguments", _body(_call('{"path": -Infinity}'))),
    ("1e999 in arguments", _body(_call('{"path": 1e999}'))),
    ("arguments nested 100000 deep", _body(_call(DEEP))),
    ("arguments are a list", _body(_call("[1, 2]"))),
    ("lone surrogate in content", _body({"content": "\\udada"}).replace(b"\\\\udada", b"\\udada")),
    ("lone surrogate in arguments", _body(_call('{"path": "\\udc00"}'))),
    ("total_tokens 1e999", _body(usage={"total_tokens": "HUGE"}).replace(b'"HUGE"', b"1e999")),
    ("total_tokens 10**30", _body(usage={"total_tokens": 10**30})),
    ("total_tokens negative", _body(usage={"total_tokens": -5, "prompt_tokens": -1})),
    ("total_tokens a string", _body(usage={"total_tokens": "two"})),
    ("total_tokens fractional", _body(usage={"total_tokens": 2.5})),
    ("choices a string", json.dumps({"choices": "x"}).encode()),
    ("choices empty", json.dumps({"choices": []}).encode()),
    ("message a number", json.dumps({"choices": [{"message": 5}]}).encode()),
    ("content an object", _body({"content": {"a": 1}})),
    ("tool_calls an object", _body({"tool_calls": {"a": 1}})),
    ("tool call a number", _body({"tool_calls": [5]})),
    ("function arguments an object", _body({"tool_calls": [{"function": {"name": "x"}}]})),
    ("body nested 100000 deep", DEEP.encode()),
    ("body NaN", b'{"choices": NaN}'),
    ("body not UTF-8", b"\xff\xfe\xfa"),
    ("body empty", b""),
    ("body null", b"null"),
    ("6 MB reply", _body({"content": "A" * 6_000_000})),
    ("1000 tool calls", _body({"tool_calls": [_call("{}")["tool_calls"][0]] * 1000})),
]


@pytest.mark.long  # one run per malformed reply, a 6 MB one among them
@pytest.mark.parametrize("mode", ["native", "json"])
def test_malformed_replies_become_observations_never_crashes(
    mode: str, executor: InProcessExecutor, tmp_path: Path, figures: dict[str, str]
) -> None:
    handled = []
    with FakeModelServer() as server:
        settings = make_settings(model_url=server.url, max_retries=0, max_reply_bytes=1_048_576)
        client = ModelClient(settings)
        for number, (name, body) in enumerate(BODIES):
            server.routes[CHAT] = [(200, {}, body)]
            with TrajectoryWriter(tmp_path / f"{mode}-{number}.jsonl", "r") as log:
                limits = AgentLimits(max_steps=2, max_invalid_replies=2, max_wall_s=20)
                started = time.monotonic()
                result = Agent(client, executor, log, mode=mode, limits=limits).run("task")
                elapsed = time.monotonic() - started
            records = read_records(log.path).records
            crashed = result.status == "error" or any(
                r["type"] == "error" and r.get("where") == "supervisor" for r in records
            )
            if not crashed and elapsed < 15:
                handled.append(name)
            else:
                print(f"NOT HANDLED {mode} {name}: {result.status} {result.reason[:200]}")
        client.close()
    figures[f"model_replies_{mode}"] = f"{len(handled)}/{len(BODIES)} malformed replies handled"
    assert len(handled) == len(BODIES)


def test_one_reply_of_30_sleeps_cannot_pass_the_wall_budget(
    executor: InProcessExecutor, tmp_path: Path
) -> None:
    sleep = {"name": "run_command", "arguments": {"command": "sleep 0.3"}}
    step = {"tool_calls": [{"id": f"s{n}", **sleep} for n in range(30)]}
    model = ScriptedModel([step, {"action": {"tool": "finish", "args": {"answer": "x"}}}])
    with TrajectoryWriter(tmp_path / "t.jsonl", "r") as log:
        limits = AgentLimits(max_wall_s=1.5, max_calls_per_reply=30)
        started = time.monotonic()
        result = Agent(model, executor, log, mode="native", limits=limits).run("task")
    assert time.monotonic() - started < 1.5 + 1.5  # 9 s of sleeps were asked for
    assert result.status == "time_budget"


def test_calls_over_the_per_reply_cap_are_answered_not_run(
    executor: InProcessExecutor, tmp_path: Path
) -> None:
    step = {
        "tool_calls": [
            {"id": f"w{n}", "name": "write_file", "arguments": {"path": f"f{n}", "content": ""}}
            for n in range(12)
        ]
    }
    model = ScriptedModel([step, {"action": {"tool": "finish", "args": {"answer": "x"}}}])
    with TrajectoryWriter(tmp_path / "t.jsonl", "r") as log:
        limits = AgentLimits(max_calls_per_reply=4)
        result = Agent(model, executor, log, mode="native", limits=limits).run("task")
    assert result.status == "finished"
    assert sorted(p.name for p in executor.workspace.root.iterdir()) == ["f0", "f1", "f2", "f3"]
    answered = [m for m in model.requests[1]["messages"] if m["role"] == "tool"]
    assert len(answered) == 12  # every call id gets an answer
    assert sum("at most 4 tool calls" in m["content"] for m in answered) == 8


def test_a_sleep_20_is_cut_to_the_time_left(executor: InProcessExecutor, tmp_path: Path) -> None:
    model = ScriptedModel([{"action": {"tool": "run_command", "args": {"command": "sleep 20"}}}])
    with TrajectoryWriter(tmp_path / "t.jsonl", "r") as log:
        started = time.monotonic()
        result = Agent(model, executor, log, mode="json", limits=AgentLimits(max_wall_s=1.0)).run(
            "task"
        )
    assert time.monotonic() - started < 1.0 + 2.5  # 20 s were asked for
    assert result.status == "time_budget"
