"""The ``tools`` service: an executor behind a small authenticated HTTP API.

``sandbox-supervisor serve`` runs it in the ``tools`` container, which mounts the
workspace and nothing else; the supervisor reaches it with a
:class:`~sandbox_supervisor.tools.remote.RemoteExecutor`. The API (JSON in, JSON out)::

    GET  /health       200 {"status": "ok"}  (no token: says nothing but "alive")
    GET  /v1/specs     200 {"tools": [...], "limits": {...}}
    POST /v1/execute   {"key": "...", "request": ToolRequest, "root": "eval/run-1"}
                       200 {"result": ToolResult, "replayed": false}
    POST /v1/snapshot  {"root": "...", "paths": null | [...]}
                       200 {"manifest": {...}, "refused": [...]} | {"blobs": {...}}

``/v1/snapshot`` describes the workspace for the run's record, which the supervisor
keeps where this container cannot write (:mod:`..recording`); it is not a tool.

``root`` (optional) confines the call to a subdirectory of the workspace, created when
missing (:meth:`~.workspace.Workspace.sub`): parallel runs of ``invoke eval`` each get
their own. It separates files, not processes: a command may still ``cd ..``; the tools
container is the boundary (docs/SECURITY.md).

Every ``/v1`` call needs ``Authorization: Bearer TOKEN``; the token comes from a file
secret and is compared in constant time (:func:`hmac.compare_digest`), before any
body is read. Bodies have a size cap and must declare their length, are parsed
strictly (:mod:`..jsonsafe`: deep nesting is a 400, not a ``RecursionError``); the
socket has a read timeout and the server a connection cap (:class:`CappedServer`). Tool calls run
under the same workspace rules as in process (:class:`~.registry.Registry`): real
paths, no escape, protected directories, size caps, command timeouts. The token is
redacted from every output and kept out of commands' environment.

``key`` makes ``execute`` idempotent: a request whose key was seen returns the first
result (``replayed: true``), and one that arrives while the first is still running
waits for it, so a client that retries after a broken connection never runs a tool
call twice. Keys are remembered for the last ``cache_size`` calls, in memory (a
restarted service forgets them).
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sandbox_supervisor import jsonsafe
from sandbox_supervisor.tools.executor import InProcessExecutor
from sandbox_supervisor.tools.types import ToolRequest, ToolResult

DEFAULT_PORT = 8700
MIN_TOKEN_CHARS = 16
MAX_KEY_CHARS = 200
SOCKET_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 32

Reply = tuple[int, dict[str, Any]]


def _stderr(message: str) -> None:
    # One write per line: the image runs unbuffered, where print() writes the text and its
    # newline apart and the engine's log keeps a partial line that `compose logs` glues
    # to the next one.
    sys.stderr.write(f"tools: {message}\n")
    sys.stderr.flush()


class ToolService:
    """The API's logic, independent of the HTTP server (see the module docstring)."""

    def __init__(
        self,
        executor: InProcessExecutor,
        token: str,
        *,
        cache_size: int = 512,
        max_running: int = 4,
        max_body_bytes: int | None = None,
        log: Callable[[str], None] = _stderr,
    ) -> None:
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"the tools token must have at least {MIN_TOKEN_CHARS} characters")
        self.executor = executor
        self._token = token.encode("utf-8")
        self.cache_size = cache_size
        # JSON may escape every byte of written content as \\uXXXX (6 bytes).
        self.max_body_bytes = max_body_bytes or executor.limits.write_cap_bytes * 6 + 65_536
        self.log = log
        self._lock = threading.Lock()
        self._done: OrderedDict[str, ToolResult] = OrderedDict()
        self._running: dict[str, threading.Event] = {}
        self._slots = threading.BoundedSemaphore(max_running)

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the token (constant-time compare)."""
        scheme, _, value = (header or "").partition(" ")
        given = value.strip().encode("utf-8") if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self._token)

    def limits(self) -> dict[str, Any]:
        """The limits the service applies, without the secrets."""
        data = asdict(self.executor.limits)
        data.pop("secrets", None)
        return data

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one request: (HTTP status, JSON body)."""
        path = path.split("?", 1)[0]
        if path == "/health":
            return (200, {"status": "ok"}) if method == "GET" else _error(405, "use GET")
        if path not in ("/v1/specs", "/v1/execute", "/v1/snapshot"):
            return _error(404, f"no such endpoint {path}")
        if not self.authorized(headers.get("authorization")):
            return _error(401, "missing or wrong token")
        if path == "/v1/specs":
            if method != "GET":
                return _error(405, "use GET")
            return 200, {"tools": self.executor.specs(), "limits": self.limits()}
        if method != "POST":
            return _error(405, "use POST")
        if path == "/v1/snapshot":
            return self.snapshot(body)
        try:
            data = jsonsafe.loads(body)
            key = data["key"]
            request = ToolRequest.from_dict(data["request"])
            if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
                raise ValueError(f"key must be a string of 1 to {MAX_KEY_CHARS} characters")
            root = data.get("root")
            if root is not None and not isinstance(root, str):
                raise ValueError("root must be a string")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _error(400, f"bad request body: {exc}")
        executor = self.executor
        if root:
            try:
                executor = self.executor.within(root)
            except (ValueError, OSError) as exc:
                return _error(400, f"bad root: {exc}")
        if not self._slots.acquire(blocking=False):
            return _error(503, "busy: too many tool calls at once")
        try:
            result, replayed = self.execute(key, request, executor)
        finally:
            self._slots.release()
        return 200, {"result": result.to_dict(), "replayed": replayed}

    def snapshot(self, body: bytes) -> Reply:
        """Answer ``/v1/snapshot``: the manifest, or the bytes of the paths asked for."""
        try:
            data = jsonsafe.loads(body)
            root = data.get("root")
            paths = data.get("paths")
            if root is not None and not isinstance(root, str):
                raise ValueError("root must be a string")
            if paths is not None and (
                not isinstance(paths, list) or not all(isinstance(p, str) for p in paths)
            ):
                raise ValueError("paths must be a list of strings")
            executor = self.executor.within(root) if root else self.executor
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            return _error(400, f"bad request body: {exc}")
        if not self._slots.acquire(blocking=False):
            return _error(503, "busy: too many tool calls at once")
        try:
            return 200, executor.snapshot(paths)
        finally:
            self._slots.release()

    def execute(
        self, key: str, request: ToolRequest, executor: InProcessExecutor | None = None
    ) -> tuple[ToolResult, bool]:
        """Run ``request`` once per ``key`` (with ``executor``, by default the service's);
        return (result, whether it was replayed)."""
        with self._lock:
            done = self._done.get(key)
            if done is not None:
                self.log(f"key={key} call={request.call_id} replayed")
                return done, True
            event = self._running.get(key)
            owner = event is None
            if event is None:
                event = self._running[key] = threading.Event()
        if not owner:
            event.wait()
            with self._lock:
                done = self._done.get(key)
            if done is None:  # evicted already: cannot happen with a sane cache size
                return _failed(request, "the first run of this call was forgotten"), True
            self.log(f"key={key} call={request.call_id} replayed after waiting")
            return done, True
        started = time.monotonic()
        result = _failed(request, "the tools service stopped while running the call")
        try:
            result = (executor or self.executor).execute(request)
        except Exception as exc:  # the service must answer; the executor should not raise
            result = _failed(request, f"tools service error: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._done[key] = result
                while len(self._done) > self.cache_size:
                    self._done.popitem(last=False)
                del self._running[key]
            event.set()
        exit_code = "" if result.exit_code is None else f" exit={result.exit_code}"
        self.log(
            f"key={key} call={request.call_id} tool={request.name} status={result.status}"
            f"{exit_code} {time.monotonic() - started:.3f}s"
        )
        return result, False


def _error(status: int, message: str) -> Reply:
    return status, {"error": message}


def _failed(request: ToolRequest, message: str) -> ToolResult:
    return ToolResult(request.call_id, request.name, "failed", message)


def make_handler(service: ToolService) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``service``."""

    class Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_TIMEOUT_S
        protocol_version = "HTTP/1.1"
        server_version = "tools"
        sys_version = ""

        def _answer(self, status: int, payload: dict[str, Any], close: bool = False) -> None:
            data = json.dumps(payload).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="tools"')
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client went away
                self.close_connection = True

        def _dispatch(self, method: str) -> None:
            body = b""
            path = self.path.split("?", 1)[0]
            if path.startswith("/v1/") and not service.authorized(
                self.headers.get("Authorization")
            ):  # before reading any body: an unauthenticated peer costs no memory
                self._answer(401, {"error": "missing or wrong token"}, close=True)
                return
            if method == "POST":
                length_header = self.headers.get("Content-Length")
                if length_header is None or not length_header.isdigit():
                    self._answer(411, {"error": "Content-Length required"}, close=True)
                    return
                length = int(length_header)
                if length > service.max_body_bytes:
                    message = f"body of {length} bytes; the limit is {service.max_body_bytes}"
                    self._answer(413, {"error": message}, close=True)
                    return
                body = self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, payload = service.handle(method, self.path, headers, body)
            self._answer(status, payload)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._answer(405, {"error": "method not allowed"}, close=True)

        do_DELETE = do_PATCH = do_PUT

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if str(getattr(code, "value", code)) != "200":  # executions are logged already
                super().log_request(code, size)

        def log_message(self, format: str, *args: Any) -> None:
            service.log(f"{self.address_string()} {format % args}")

    return Handler


class CappedServer(ThreadingHTTPServer):
    """A threaded HTTP server that serves at most ``max_connections`` at once.

    A connection over the cap is closed at once (its peer sees a reset), so idle or
    slow peers cannot hold an unbounded number of threads and buffers. A client that
    disconnects mid-answer costs one log line, not a traceback.
    """

    daemon_threads = True
    request_queue_size = 128  # a burst of connects is accepted and refused, not SYN-dropped

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(address, handler)
        self._connections = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections
        self.refused = 0
        self._log = log

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread, or close it when the cap is reached."""
        if not self._connections.acquire(blocking=False):
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                self._log(f"connection cap {self.max_connections} reached ({self.refused} refused)")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then free its place."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line per failed connection instead of a traceback on stderr."""
        kind, error, _ = sys.exc_info()
        name = kind.__name__ if kind else "error"
        self._log(
            f"{client_address[0] if client_address else '?'}: connection ended: {name}: {error}"
        )


def make_server(
    service: ToolService, host: str, port: int, *, max_connections: int = MAX_CONNECTIONS
) -> CappedServer:
    """A threaded HTTP server for ``service`` (daemon threads; call ``serve_forever``)."""
    return CappedServer(
        (host, port), make_handler(service), max_connections=max_connections, log=service.log
    )
