"""Test helpers: a fake OpenAI-compatible model server on a real socket, and settings.

The server answers from a script.

Each path has a list of answers used in order; the last one repeats. An answer is
``(status, headers, body)`` where ``body`` is bytes, a str or JSON-able data, or the
string ``"HANG"``: read the request and never answer (until the server stops). An
answer may also be a callable that gets the request's JSON body and returns one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sandbox_supervisor.config import Settings

Answer = tuple[int, dict[str, str], Any]

HANG = "HANG"


def completion(
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    usage: dict[str, int] | None = None,
) -> Answer:
    """A 200 chat-completions answer with the given message."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    return 200, {}, body


def action(tool: str, **args: Any) -> Answer:
    """A 200 answer whose content is a json-mode action."""
    return completion(json.dumps({"thought": "", "action": {"tool": tool, "args": args}}))


class FakeModelServer:
    """Start with ``with FakeModelServer({...}) as server:``; ``server.url`` ends in /v1."""

    def __init__(self, routes: Mapping[str, Any] | None = None) -> None:
        self.routes: dict[str, list[Answer | Callable[[Any], Answer]]] = {
            "/health": [(200, {}, {"status": "ok"})]
        }
        self.routes.update(routes or {})
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with server._lock:
                    body = json.loads(raw) if raw else None
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "body": body,
                            "headers": dict(self.headers),
                        }
                    )
                    script = server.routes.get(self.path)
                    if script is None:
                        given: Answer | Callable[[Any], Answer] = (404, {}, {"error": "not found"})
                    else:
                        given = script.pop(0) if len(script) > 1 else script[0]
                answer = given(body) if callable(given) else given
                status, headers, payload = answer
                if payload == HANG:
                    server._stop.wait(30)
                    return
                if isinstance(payload, bytes):
                    data = payload
                elif isinstance(payload, str):
                    data = payload.encode()
                else:
                    data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL of the OpenAI-compatible API."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def count(self, path: str) -> int:
        """How many requests reached ``path``."""
        return sum(1 for r in self.requests if r["path"] == path)

    def __enter__(self) -> FakeModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: fast retries, short waits."""
    values: dict[str, Any] = {
        "request_timeout_s": 5.0,
        "connect_timeout_s": 1.0,
        "max_retries": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "ready_timeout_s": 3.0,
    }
    values.update(overrides)
    return Settings(**values)
