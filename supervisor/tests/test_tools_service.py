"""The tools service (``serve``) and the remote executor, on a real socket in this process."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_supervisor.cli import main
from sandbox_supervisor.tools import ExecutorUnavailable, InProcessExecutor, Limits, ToolRequest
from sandbox_supervisor.tools.remote import RemoteExecutor
from sandbox_supervisor.tools.service import ToolService, make_server
from sandbox_supervisor.tools.workspace import Workspace
from sandbox_supervisor.trajectory import read_records

TOKEN = "t" * 20 + "-secret-token"


class Running:
    """A tools service serving ``workspace`` on 127.0.0.1 in a background thread."""

    def __init__(self, workspace: Workspace, token: str = TOKEN, **kw: Any) -> None:
        limits = Limits(command_timeout_s=5.0, command_grace_s=0.2, secrets=(token,))
        self.logged: list[str] = []
        self.service = ToolService(
            InProcessExecutor(workspace, limits), token, log=self.logged.append, **kw
        )
        self.server = make_server(self.service, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: shutdown() waits up to one poll_interval (0.5 s by default).
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service(workspace: Workspace) -> Iterator[Running]:
    """The service on an empty workspace."""
    with Running(workspace) as running:
        yield running


def post(url: str, body: Any, token: str | None = TOKEN) -> httpx.Response:
    """POST JSON to the execute endpoint."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{url}/v1/execute", json=body, headers=headers, timeout=10)


def call(command: str, call_id: str = "1.0") -> dict[str, Any]:
    """An execute body running ``command``."""
    request = ToolRequest(call_id, "run_command", {"command": command})
    return {"key": f"k:{call_id}", "request": request.to_dict()}


def test_health_answers_without_a_token_and_says_nothing_else(service: Running) -> None:
    response = httpx.get(f"{service.url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("token", [None, "wrong-token-of-some-length", TOKEN[:-1], TOKEN + "x"])
def test_execute_without_the_right_token_is_refused_and_runs_nothing(
    service: Running, workspace: Workspace, token: str | None
) -> None:
    response = post(service.url, call("touch ran"), token=token)
    assert response.status_code == 401
    assert not (workspace.root / "ran").exists()


def test_specs_need_the_token_and_list_the_tools_and_limits(service: Running) -> None:
    assert httpx.get(f"{service.url}/v1/specs", timeout=5).status_code == 401
    response = httpx.get(
        f"{service.url}/v1/specs", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    data = response.json()
    assert {t["name"] for t in data["tools"]} >= {"read_file", "write_file", "run_command"}
    assert data["limits"]["command_timeout_s"] == 5.0
    assert "secrets" not in data["limits"]


def test_the_same_key_runs_once_and_replays_the_first_result(
    service: Running, workspace: Workspace
) -> None:
    first = post(service.url, call("echo x >> count; wc -l < count")).json()
    second = post(service.url, call("echo x >> count; wc -l < count")).json()
    assert (workspace.root / "count").read_text() == "x\n"
    assert (first["replayed"], second["replayed"]) == (False, True)
    assert second["result"] == first["result"]


def test_a_repeat_that_arrives_while_the_first_runs_waits_for_it(
    service: Running, workspace: Workspace
) -> None:
    body = call("echo x >> count; sleep 0.5")
    answers: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: answers.append(post(service.url, body).json()))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert (workspace.root / "count").read_text() == "x\n"
    assert sorted(a["replayed"] for a in answers) == [False, True, True]


def test_a_path_escape_is_refused_by_the_service(service: Running) -> None:
    request = ToolRequest("1.0", "read_file", {"path": "../outside/secret.txt"})
    result = post(service.url, {"key": "k", "request": request.to_dict()}).json()["result"]
    assert result["status"] == "refused"
    assert "do not touch" not in result["output"]


def test_the_token_is_neither_in_commands_environment_nor_in_output(service: Running) -> None:
    result = post(service.url, call(f"env; echo {TOKEN}")).json()["result"]
    assert TOKEN not in result["output"]
    assert "[redacted]" in result["output"]


def test_a_body_over_the_cap_is_refused_before_it_is_read(workspace: Workspace) -> None:
    with Running(workspace, max_body_bytes=1000) as running:
        response = post(running.url, call("true" + " " * 2000))
    assert response.status_code == 413


def test_a_body_without_a_length_is_refused(service: Running) -> None:
    response = httpx.post(
        f"{service.url}/v1/execute",
        content=iter([b'{"key": "k"}']),  # streamed: chunked, no Content-Length
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert response.status_code == 411


def test_a_malformed_body_is_a_400(service: Running) -> None:
    response = httpx.post(
        f"{service.url}/v1/execute",
        content=b"not json",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert response.status_code == 400


def test_a_short_token_is_refused_at_start(workspace: Workspace) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        ToolService(InProcessExecutor(workspace), "short")


def test_remote_executor_runs_the_call_in_the_services_workspace(
    service: Running, workspace: Workspace
) -> None:
    remote = RemoteExecutor(service.url, TOKEN, ready_timeout_s=5)
    result = remote.execute(
        ToolRequest("2.0", "write_file", {"path": "a.txt", "content": "remote\n"})
    )
    assert result.ok, result.output
    assert (workspace.root / "a.txt").read_text() == "remote\n"
    assert {spec["name"] for spec in remote.specs()} >= {"write_file"}


def test_remote_executor_with_a_wrong_token_says_which_setting_to_fix(service: Running) -> None:
    remote = RemoteExecutor(service.url, "wrong-token-xxxxxxxx", ready_timeout_s=5)
    with pytest.raises(ExecutorUnavailable, match="SUPERVISOR_TOOLS_TOKEN_FILE"):
        remote.specs()


def test_remote_executor_gives_up_when_nothing_listens_within_its_deadline() -> None:
    remote = RemoteExecutor("http://127.0.0.1:9", TOKEN, ready_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(ExecutorUnavailable, match="did not answer"):
        remote.specs()
    assert 0.5 < time.monotonic() - started <= 1.5


class BreakAfterSend(httpx.BaseTransport):
    """Sends each execute request for real, then fails the first N as a broken connection."""

    def __init__(self, breaks: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.breaks = breaks

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path == "/v1/execute" and self.breaks > 0:
            response.read()
            self.breaks -= 1
            raise httpx.ReadError("connection reset while reading the reply")
        return response


def test_a_retry_after_a_broken_reply_does_not_run_the_call_twice(
    service: Running, workspace: Workspace
) -> None:
    remote = RemoteExecutor(
        service.url,
        TOKEN,
        ready_timeout_s=10,
        http=httpx.Client(transport=BreakAfterSend(2)),
        sleep=lambda _s: None,
    )
    result = remote.execute(
        ToolRequest("3.0", "run_command", {"command": "echo x >> count; cat count"})
    )
    assert result.output.strip() == "x"
    assert (workspace.root / "count").read_text() == "x\n"
    assert sum("replayed" in line for line in service.logged) == 2


def answering(body: Any) -> httpx.Client:
    """An HTTP client whose every answer is 200 with ``body`` (a fake tools service)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/specs":
            return httpx.Response(200, json={"tools": [], "limits": {}})
        return httpx.Response(200, content=json.dumps(body).encode())

    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "result",
    [
        None,
        {"status": "pwned", "output": "x"},
        {"status": "ok", "output": 5},
        {"status": "ok", "output": "x", "exit_code": "0"},
    ],
)
def test_a_malformed_result_from_the_service_becomes_a_failed_call(result: Any) -> None:
    remote = RemoteExecutor("http://tools", TOKEN, http=answering({"result": result}))
    outcome = remote.execute(ToolRequest("1.0", "run_command", {"command": "true"}))
    assert outcome.status == "failed"
    assert "bad result" in outcome.output


def test_an_oversized_answer_from_the_service_stops_the_executor() -> None:
    huge = {"result": {"status": "ok", "output": "x" * 5000}}
    remote = RemoteExecutor("http://tools", TOKEN, http=answering(huge), max_response_bytes=1000)
    with pytest.raises(ExecutorUnavailable, match="more than 1000 bytes"):
        remote.execute(ToolRequest("1.0", "run_command", {"command": "true"}))


def test_the_supervisors_secrets_are_redacted_from_remote_results() -> None:
    body = {"result": {"status": "ok", "output": "key=model-key-123456"}}
    remote = RemoteExecutor(
        "http://tools", TOKEN, http=answering(body), redact=("model-key-123456",)
    )
    outcome = remote.execute(ToolRequest("1.0", "run_command", {"command": "true"}))
    assert outcome.output == "key=[redacted]"


def test_run_with_tools_url_executes_in_the_service_not_locally(
    service: Running, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "local-ws"
    local.mkdir()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("SUPERVISOR_WORKSPACE", str(local))
    monkeypatch.setenv("SUPERVISOR_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("SUPERVISOR_TOOLS_URL", service.url)
    monkeypatch.setenv("SUPERVISOR_TOOLS_TOKEN_FILE", str(token_file))
    assert main(["run", "--scripted", "demo", "-q", "say hello"]) == 0
    assert (workspace.root / "hello.txt").is_file()
    assert not (local / "hello.txt").exists()
    (log,) = (tmp_path / "logs").glob("*.jsonl")
    start = read_records(log).records[0]
    assert start["config"]["tools_token_set"] is True
    assert TOKEN not in log.read_text()


def test_run_when_the_tools_service_is_down_ends_recorded_as_tools_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    monkeypatch.setenv("SUPERVISOR_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("SUPERVISOR_TOOLS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SUPERVISOR_TOOLS_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("SUPERVISOR_TOOLS_READY_TIMEOUT_S", "0.5")
    assert main(["run", "--scripted", "demo", "-q", "say hello"]) == 5
    (log,) = (tmp_path / "logs").glob("*.jsonl")
    assert read_records(log).records[-1]["status"] == "tools_unavailable"


def test_serve_without_a_token_file_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUPERVISOR_WORKSPACE", str(tmp_path))
    assert main(["serve", "--port", "0"]) == 2
    assert "SUPERVISOR_TOOLS_TOKEN_FILE" in capsys.readouterr().err


def test_a_root_confines_calls_to_a_subdirectory_of_the_workspace(
    service: Running, workspace: Workspace
) -> None:
    remote = RemoteExecutor(service.url, TOKEN, root="eval/run-1")
    try:
        wrote = remote.execute(ToolRequest("1", "write_file", {"path": "a.txt", "content": "x"}))
        pwd = remote.execute(ToolRequest("2", "run_command", {"command": "pwd"}))
    finally:
        remote.close()
    assert wrote.status == "ok"
    assert (workspace.root / "eval/run-1/a.txt").read_text() == "x"
    assert pwd.output.strip().endswith("eval/run-1")
    body = {**call("true", "3"), "root": "../outside"}
    answer = post(service.url, body)
    assert answer.status_code == 400
    assert "bad root" in answer.json()["error"]
