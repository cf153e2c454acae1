"""Abuse of the tools service: unauthenticated floods, deep JSON, connection floods, hang-ups.

Each case talks raw HTTP over a socket, so it can do what no polite client does:
promise a 6 MiB body and never send it, nest JSON 200,000 deep, open more
connections than the cap, hang up before the answer. Every one must be refused, and
the service must keep serving ``/health`` and real calls afterwards, without a
traceback in its log.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sv_fakes import FakeModelServer
from sv_waits import wait_until

from sandbox_supervisor.tools import ExecutorUnavailable, InProcessExecutor, Limits, ToolRequest
from sandbox_supervisor.tools.remote import RemoteExecutor
from sandbox_supervisor.tools.service import ToolService, make_server
from sandbox_supervisor.tools.workspace import Workspace

TOKEN = "s" * 24
CAP = 6


class Service:
    """The tools service on 127.0.0.1 with a small connection cap, and its log lines."""

    def __init__(self, workspace: Workspace) -> None:
        self.logged: list[str] = []
        limits = Limits(command_timeout_s=5.0, command_grace_s=0.2, secrets=(TOKEN,))
        service = ToolService(InProcessExecutor(workspace, limits), TOKEN, log=self.logged.append)
        self.server = make_server(service, "127.0.0.1", 0, max_connections=CAP)
        self.port = self.server.server_address[1]
        # A short poll: shutdown() waits up to one poll_interval (0.5 s by default).
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def executes(self) -> bool:
        body = {
            "key": f"k{time.monotonic_ns()}",
            "request": {"call_id": "1", "name": "list_dir", "arguments": {}},
        }
        response = httpx.post(
            f"http://127.0.0.1:{self.port}/v1/execute",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        return response.status_code == 200 and response.json()["result"]["status"] == "ok"


@pytest.fixture
def service(workspace: Workspace) -> Iterator[Service]:
    running = Service(workspace)
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def _raw(port: int, head: str, body: bytes = b"", wait: float = 5.0) -> tuple[int, float]:
    """Send a raw request; return (status, seconds to the answer), status 0 if none."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        try:
            data = sock.recv(4096)
        except (TimeoutError, ConnectionResetError):
            return 0, time.monotonic() - started
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, time.monotonic() - started


def _head(path: str, *, token: str | None, length: int | None, method: str = "POST") -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: tools"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return "\r\n".join(lines) + "\r\n"


def _json_body(data: Any) -> bytes:
    return json.dumps(data).encode()


def _post(body: bytes, token: str | None = TOKEN) -> tuple[str, bytes]:
    """A POST to /v1/execute carrying ``body`` with its true length."""
    return _head("/v1/execute", token=token, length=len(body)), body


_CALL = {"call_id": "1", "name": "list_dir", "arguments": {}}


ABUSES: list[tuple[str, str, bytes, int]] = [
    ("no token, 6 MiB promised", _head("/v1/execute", token=None, length=6 << 20), b"", 401),
    ("bad token, 6 MiB promised", _head("/v1/execute", token="x" * 24, length=6 << 20), b"", 401),
    ("no token on specs", _head("/v1/specs", token=None, length=None, method="GET"), b"", 401),
    (
        "token with wrong scheme",
        _head("/v1/specs", token=None, length=None, method="GET").replace(
            "Host: tools", f"Host: tools\r\nAuthorization: Basic {TOKEN}"
        ),
        b"",
        401,
    ),
    ("no Content-Length", _head("/v1/execute", token=TOKEN, length=None), b"", 411),
    ("body over the cap", _head("/v1/execute", token=TOKEN, length=1 << 30), b"", 413),
    ("deep JSON 200000", *_post(b"[" * 200_000 + b"]" * 200_000), 400),
    (
        "deep request 100000",
        *_post(b'{"key": "k", "request": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        400,
    ),
    ("NaN in the body", *_post(b'{"key": NaN}'), 400),
    ("not JSON", *_post(b"\xff\xfe{{{"), 400),
    ("request not an object", *_post(b'{"key": "k", "request": 5}'), 400),
    ("key too long", *_post(_json_body({"key": "k" * 500, "request": _CALL})), 400),
    (
        "arguments a list",
        *_post(_json_body({"key": "a", "request": {**_CALL, "arguments": [1]}})),
        400,
    ),
    (
        "time_left_s NaN",
        *_post(
            _json_body({"key": "t", "request": {**_CALL, "time_left_s": 0}}).replace(
                b" 0}", b" NaN}"
            )
        ),
        400,
    ),
    (
        "time_left_s negative",
        *_post(_json_body({"key": "n", "request": {**_CALL, "time_left_s": -1}})),
        400,
    ),
    ("unknown path", _head("/v1/admin", token=TOKEN, length=None, method="GET"), b"", 404),
    ("wrong method", _head("/v1/execute", token=TOKEN, length=None, method="GET"), b"", 405),
    ("DELETE", _head("/v1/execute", token=TOKEN, length=None, method="DELETE"), b"", 405),
]


def test_abusive_requests_are_refused_and_the_service_keeps_serving(
    service: Service, figures: dict[str, str]
) -> None:
    refused = []
    for name, head, body, expected in ABUSES:
        status, took = _raw(service.port, head, body)
        if status == expected and took < 3.0:
            refused.append(name)
        else:
            print(f"NOT REFUSED {name}: {status} after {took:.1f}s (expected {expected})")
    # 40 unauthenticated peers promising 6 MiB each, all open at once: each is answered
    # 401 without its body being read, or closed by the connection cap.
    flood = _head("/v1/execute", token=None, length=6 << 20).encode() + b"\r\n"
    peers = []
    for _ in range(40):
        peer = socket.create_connection(("127.0.0.1", service.port))
        with contextlib.suppress(OSError):
            peer.sendall(flood)
        peers.append(peer)
    flood_refused = 0
    for peer in peers:
        peer.settimeout(3)
        try:
            answer = peer.recv(64)
            flood_refused += answer.startswith(b"HTTP/1.1 401") or answer == b""
        except ConnectionResetError:
            flood_refused += 1  # closed by the connection cap: refused too
        except TimeoutError:
            pass
        finally:
            peer.close()
    total = len(ABUSES) + len(peers)
    figures["service_requests"] = f"{len(refused) + flood_refused}/{total} abusive requests refused"
    assert service.healthy()
    assert service.executes()
    assert len(refused) == len(ABUSES)
    assert flood_refused == len(peers)
    assert not [line for line in service.logged if "Traceback" in line]


def test_connections_over_the_cap_are_closed_and_the_service_recovers(
    service: Service, figures: dict[str, str]
) -> None:
    threads = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(CAP)]
    # each accepted connection has its thread: all CAP places are taken
    assert wait_until(lambda: threading.active_count() >= threads + CAP)
    extra = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(10)]
    closed = 0
    for sock in extra:
        sock.settimeout(3)
        try:
            closed += sock.recv(1) == b""
        except ConnectionResetError:
            closed += 1
        except TimeoutError:
            pass
        sock.close()
    for sock in idle:
        sock.close()
    assert wait_until(lambda: threading.active_count() <= threads), "places were not freed"
    figures["service_connections"] = f"{closed}/{len(extra)} connections over the cap closed"
    assert closed == len(extra)
    assert service.healthy()
    assert service.executes()


def test_clients_that_hang_up_cost_a_line_not_a_traceback(
    service: Service, capfd: pytest.CaptureFixture[str]
) -> None:
    body = _json_body(
        {
            "key": "hang",
            "request": {
                "call_id": "1",
                "name": "run_command",
                "arguments": {"command": "head -c 300000 /dev/zero | tr '\\0' x"},
            },
        }
    )
    hang_ups = 8
    for number in range(hang_ups):
        sock = socket.create_connection(("127.0.0.1", service.port))
        unique = body.replace(b"hang", str(number).encode())
        sock.sendall(_head("/v1/execute", token=TOKEN, length=len(unique)).encode() + b"\r\n")
        sock.sendall(unique)
        sock.close()  # before the answer
        time.sleep(0.05)
    deadline = time.monotonic() + 15
    seen = -1
    while time.monotonic() < deadline and seen != len(service.logged):  # until it goes quiet
        seen = len(service.logged)
        time.sleep(0.5)
    # Calls that found a free slot ran (the others got 503 busy); none broke the service.
    assert sum("status=" in x for x in service.logged) >= 1
    assert service.healthy()
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err
    assert not [line for line in service.logged if "Traceback" in line]


@pytest.mark.parametrize(
    "answer",
    [b"[" * 100_000 + b"]" * 100_000, b'{"result": NaN}', b"\xff\xfe", b"[]"],
    ids=["deep", "nan", "not-utf8", "not-an-object"],
)
def test_a_hostile_tools_service_cannot_crash_the_supervisor(answer: bytes) -> None:
    routes = {
        "/v1/specs": [(200, {}, {"tools": [], "limits": {}})],
        "/v1/execute": [(200, {}, answer)],
    }
    with FakeModelServer(routes) as fake:
        remote = RemoteExecutor(fake.url.removesuffix("/v1"), TOKEN, ready_timeout_s=1.0)
        with pytest.raises(ExecutorUnavailable):
            remote.execute(ToolRequest("1", "list_dir", {}))
        remote.close()
