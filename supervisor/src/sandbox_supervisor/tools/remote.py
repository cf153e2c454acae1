"""The supervisor's side of the ``tools`` service: an :class:`Executor` over HTTP.

Used when ``SUPERVISOR_TOOLS_URL`` is set (see :mod:`.service` for the API). Each
tool call carries an idempotency key (a random per-executor nonce and the call id),
so retrying after a broken connection or a read timeout is safe: the service runs a
key once and answers repeats with the first result. Connection errors and ``503``
are retried with backoff until ``ready_timeout_s`` passes; then, or on a refused
token or any other error status, :class:`ExecutorUnavailable` ends the run.

The tools container is where untrusted commands run, so its answers are untrusted
too: the body is read with a size cap, parsed strictly (:mod:`..jsonsafe`: deep
nesting or NaN is an unusable answer, not a crash) and must have the shape of a
:class:`ToolResult`, else the call comes back as ``failed``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, cast, get_args

import httpx

from sandbox_supervisor import jsonsafe
from sandbox_supervisor.redact import Redactor
from sandbox_supervisor.tools.executor import ExecutorUnavailable
from sandbox_supervisor.tools.types import Status, ToolRequest, ToolResult

RETRY_STATUS = frozenset({502, 503, 504})
_STATUSES = frozenset(get_args(Status))


class RemoteExecutor:
    """Run tool calls in the ``tools`` service."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        ready_timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        redact: tuple[str, ...] = (),
        max_response_bytes: int = 64 * 1024 * 1024,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        root: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.ready_timeout_s = ready_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.redact = tuple(s for s in redact if s)
        self.max_response_bytes = max_response_bytes
        self._http = http or httpx.Client()
        self._headers = {"Authorization": f"Bearer {token}"}
        self._nonce = secrets.token_hex(8)
        self._sleep = sleep
        self._specs: list[dict[str, Any]] | None = None
        self.limits: dict[str, Any] = {}
        self.root = root  # a subdirectory of the service's workspace, for every call

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def specs(self) -> list[dict[str, Any]]:
        """The service's tool specs (fetched once; waits for the service to come up)."""
        if self._specs is None:
            data = self._call("GET", "/v1/specs", None, read_timeout_s=30.0)
            tools = data.get("tools")
            if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
                raise ExecutorUnavailable(f"{self.url}/v1/specs sent no list of tools")
            limits = data.get("limits")
            self.limits = limits if isinstance(limits, dict) else {}
            self._specs = tools
        return self._specs

    def execute(self, request: ToolRequest) -> ToolResult:
        """Run one call in the service; retried under the same key, so it runs once."""
        self.specs()
        timeout = _number(self.limits.get("command_timeout_s"), 60.0)
        grace = _number(self.limits.get("command_grace_s"), 2.0)
        data = self._call(
            "POST",
            "/v1/execute",
            {
                "key": f"{self._nonce}:{request.call_id}",
                "request": request.to_dict(),
                **({"root": self.root} if self.root else {}),
            },
            read_timeout_s=timeout + grace + 30.0,
        )
        result = _result_from(data.get("result"), request)
        output = Redactor(self.redact)(result.output)
        return ToolResult(**{**result.to_dict(), "output": output, "call_id": request.call_id})

    def snapshot(self, paths: list[str] | None = None) -> dict[str, Any]:
        """The service's ``/v1/snapshot`` (see :meth:`.InProcessExecutor.snapshot`)."""
        return self._call(
            "POST",
            "/v1/snapshot",
            {"paths": paths, **({"root": self.root} if self.root else {})},
            read_timeout_s=300.0,
        )

    def _call(
        self, method: str, path: str, payload: dict[str, Any] | None, *, read_timeout_s: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self.ready_timeout_s
        delay = 0.2
        while True:
            why = self._attempt(method, path, payload, read_timeout_s)
            if isinstance(why, dict):
                return why
            if time.monotonic() + delay > deadline:
                raise ExecutorUnavailable(
                    f"the tools service at {self.url} did not answer for "
                    f"{self.ready_timeout_s:g} s (last: {why}); is the tools container "
                    "running (`invoke ps`), and is SUPERVISOR_TOOLS_URL right?"
                )
            self._sleep(delay)
            delay = min(delay * 2, 2.0)

    def _attempt(
        self, method: str, path: str, payload: dict[str, Any] | None, read_timeout_s: float
    ) -> dict[str, Any] | str:
        """One request: the JSON body, or why it should be retried (raises otherwise)."""
        timeout = httpx.Timeout(read_timeout_s, connect=self.connect_timeout_s)
        try:
            with self._http.stream(
                method, self.url + path, json=payload, headers=self._headers, timeout=timeout
            ) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_response_bytes:
                        raise ExecutorUnavailable(
                            f"the tools service sent more than {self.max_response_bytes} bytes"
                        )
                status = response.status_code
        except httpx.TransportError as exc:
            return f"{type(exc).__name__}: {exc}"
        if status in RETRY_STATUS:
            return f"HTTP {status}"
        if status == 401:
            raise ExecutorUnavailable(
                "the tools service refused the token: SUPERVISOR_TOOLS_TOKEN_FILE must hold "
                "the token the service reads (secrets/tools_token)"
            )
        text = bytes(body[:300]).decode("utf-8", "replace")
        if status != 200:
            raise ExecutorUnavailable(f"the tools service answered HTTP {status}: {text}")
        try:
            data = jsonsafe.loads(bytes(body))
        except ValueError:
            raise ExecutorUnavailable(f"the tools service sent no JSON: {text}") from None
        if not isinstance(data, dict):
            raise ExecutorUnavailable(f"the tools service sent no JSON object: {text}")
        return data


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and value >= 0 else default


def _result_from(data: Any, request: ToolRequest) -> ToolResult:
    """Check the shape of a result from the service; a bad one becomes ``failed``."""

    def bad(why: str) -> ToolResult:
        return ToolResult(
            request.call_id, request.name, "failed", f"the tools service sent a bad result: {why}"
        )

    if not isinstance(data, dict):
        return bad("not an object")
    status, output = data.get("status"), data.get("output")
    if status not in _STATUSES or not isinstance(output, str):
        return bad("status or output missing")
    checked = cast(Status, status)
    exit_code = data.get("exit_code")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        return bad("exit_code is not an integer")
    details = data.get("details")
    return ToolResult(
        call_id=request.call_id,
        name=request.name,
        status=checked,
        output=output,
        exit_code=exit_code,
        truncated=bool(data.get("truncated", False)),
        duration_s=_number(data.get("duration_s"), 0.0),
        details=details if isinstance(details, dict) else {},
    )
