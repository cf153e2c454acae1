"""The model client: chat completions through the OpenAI SDK, with bounded waiting.

* Each attempt has a timeout (``request_timeout_s``, cut down to what is left of the
  caller's deadline); the response body is read in chunks and the attempt is
  abandoned once its time is up, so a server that answers slowly cannot stretch it.
* Connection errors, timeouts, 408, 429 and 5xx are retried with exponential
  backoff and jitter (``Retry-After`` wins when the server sends it); any other 4xx
  is not retried and ends with an error that says what to check.
* Before a retry the client waits for ``/health`` to answer 200 (503 means the
  model is still loading), up to ``ready_timeout_s``; a server that never gets ready
  ends the run with :class:`ModelUnavailable`, never an endless loop.

The SDK's own retries are off (``max_retries=0``): this module owns the policy. The SDK
is imported on the first request, not with this module: it takes about half a second, and
the commands that never ask a model (``show``, ``replay``, a scripted run) skip it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import importlib
import json
import random
import threading
import time
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from sandbox_supervisor.config import Settings
from sandbox_supervisor.replies import ModelReply, ToolCallOut, Usage, parse_completion

if TYPE_CHECKING:
    import openai

__all__ = ["ChatModel", "ModelClient", "ModelReply", "ToolCallOut", "Usage", "parse_completion"]

RETRY_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))
UNPARSED_OUTPUT = "The model produced output that does not match the expected"
"""How llama-server's 500 begins when the model's own output does not parse in the chat
format (``common/chat.cpp``): the reply is at fault, not the server."""
UNPARSED_RETRIES = 2
"""Tries again (each samples anew) before such a reply counts as unusable: a model that
keeps producing it is told so by the loop, which ends the run by its invalid-reply rule,
instead of the run ending ``model_unavailable`` after every retry was spent on it."""


def _sdk_http_module() -> Any:
    """The HTTP library under the SDK (httpx for openai 1.x, httpx2 for later releases).

    Its transport errors can escape while a streamed body is read, so they are caught too.
    """
    requires = metadata.requires("openai") or []
    name = "httpx2" if any(r.split()[0].startswith("httpx2") for r in requires) else "httpx"
    return importlib.import_module(name)


_SDK_HTTP = _sdk_http_module()


class ModelError(RuntimeError):
    """The model could not give a reply; ``kind`` says why (used for the run's status)."""

    kind = "model_error"


class ModelUnavailable(ModelError):
    """The server cannot be reached or did not get ready in time."""

    kind = "model_unavailable"


class ModelRejected(ModelError):
    """The server refused the request with a status that retrying cannot fix."""

    kind = "model_rejected"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ContextExhausted(ModelRejected):
    """The conversation no longer fits the model's context."""

    kind = "context_exhausted"


class DeadlineExceeded(ModelError):
    """The caller's deadline passed before a reply came."""

    kind = "deadline"


class ChatModel(Protocol):
    """Anything that turns messages into a :class:`ModelReply` (client or scripted model)."""

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        deadline: float,
    ) -> ModelReply:
        """Return the model's reply; ``deadline`` is a ``time.monotonic()`` value."""
        ...


class _Retryable(Exception):
    def __init__(
        self, reason: str, retry_after: float | None = None, *, unparsed: bool = False
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.unparsed = unparsed
        """The server could not parse the model's output (see :data:`UNPARSED_OUTPUT`)."""


def server_reason(body: object, fallback: str = "", limit: int = 200) -> str:
    """The server's own words for a refused request, on one line: llama-server's
    ``{"error": {"message": ...}}`` (or a plain body), else ``fallback``."""
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else error
    text = " ".join(str(message or fallback or "no reason given").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - (time.time() if now is None else now))


class ModelClient:
    """Chat completions against an OpenAI-compatible server (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        on_retry: Callable[[int, float, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._jitter = jitter
        self.on_retry = on_retry
        key = settings.api_key.get_secret_value() if settings.api_key else "no-key"
        self._http = httpx.Client(timeout=httpx.Timeout(settings.request_timeout_s))
        self._headers = {"Authorization": f"Bearer {key}"}
        self._key = key

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    # -- readiness ---------------------------------------------------------------------
    def health(self, timeout: float) -> tuple[bool, str]:
        """One ``/health`` probe: (ready, what was seen)."""
        url = f"{self.settings.server_root}/health"
        try:
            response = self._http.get(url, timeout=timeout, headers=self._headers)
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__} from {url}"
        if response.status_code == 200:
            return True, "200"
        if response.status_code == 503:
            return False, "503 (model loading)"
        if response.status_code == 404:
            return True, "404 (no /health; assuming ready)"
        return False, f"HTTP {response.status_code}"

    def wait_ready(self, deadline: float) -> None:
        """Poll ``/health`` until 200 or ``deadline``; raise :class:`ModelUnavailable`."""
        started = time.monotonic()
        interval = 0.1
        seen = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, seen = self.health(min(self.settings.connect_timeout_s, remaining))
            if ready:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._sleep(min(interval, remaining))
            interval = min(interval * 2, 2.0)
        waited = time.monotonic() - started
        raise ModelUnavailable(
            f"model server {self.settings.server_root} not ready after {waited:.1f} s "
            f"(last /health: {seen}); check that the model server is running and its logs "
            "(`docker compose logs model-server`), that SUPERVISOR_MODEL_URL points at it, "
            "or allow a longer load with SUPERVISOR_READY_TIMEOUT_S"
        )

    # -- completions -------------------------------------------------------------------
    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): exponential, half jittered."""
        ceiling = min(
            self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1)
        )
        return float(ceiling / 2 + self._jitter() * ceiling / 2)

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        deadline: float,
    ) -> ModelReply:
        """Return one reply, retrying what can be retried, within ``deadline``."""
        started = time.monotonic()
        attempt = unparsed = 0
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"no model reply before the run's deadline ({attempt} tries)"
                )
            attempt_deadline = now + min(self.settings.request_timeout_s, remaining)
            try:
                reply = self._attempt(messages, tools, response_format, attempt_deadline)
            except _Retryable as exc:
                attempt += 1
                unparsed += exc.unparsed
                if unparsed > UNPARSED_RETRIES:
                    reply = self._unusable(
                        f"the server could not read the model's output {unparsed} times "
                        f"(last: {exc})",
                        messages,
                    )
                    return dataclasses.replace(
                        reply, latency_s=round(time.monotonic() - started, 4), attempts=attempt
                    )
                if attempt > self.settings.max_retries:
                    raise ModelUnavailable(
                        f"model request failed {attempt} times, last: {exc}; "
                        "check the model server's logs or raise SUPERVISOR_MAX_RETRIES"
                    ) from None
                delay = exc.retry_after if exc.retry_after is not None else self.backoff(attempt)
                if time.monotonic() + delay >= deadline:
                    raise DeadlineExceeded(
                        f"model request failed ({exc}) and the retry delay {delay:.1f} s "
                        "passes the run's deadline"
                    ) from None
                if self.on_retry is not None:
                    self.on_retry(attempt, delay, str(exc))
                self._sleep(delay)
                self.wait_ready(min(deadline, time.monotonic() + self.settings.ready_timeout_s))
                continue
            return dataclasses.replace(
                reply, latency_s=round(time.monotonic() - started, 4), attempts=attempt + 1
            )

    def _attempt(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        response_format: dict[str, Any] | None,
        attempt_deadline: float,
    ) -> ModelReply:
        """One request, abandoned at ``attempt_deadline`` whatever the server does.

        The request runs in a worker thread with its own connection; this thread waits
        for it until the deadline and then closes that connection and gives up, so a
        server that trickles its headers or body a byte at a time (each byte restarting
        a read timeout) cannot stretch the attempt.
        """
        timeout = max(0.001, attempt_deadline - time.monotonic())
        http = _SDK_HTTP.Client()
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["reply"] = self._request(
                    http, messages, tools, response_format, attempt_deadline
                )
            except BaseException as exc:  # handed over to the waiting thread
                box["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=work, name="model-request", daemon=True)
        worker.start()
        finished = done.wait(timeout + 0.05)
        if not finished:
            with contextlib.suppress(Exception):
                http.close()  # the worker's next read fails and it ends
            raise _Retryable(f"no complete reply within {timeout:.1f} s")
        http.close()
        if "error" in box:
            raise box["error"]
        reply: ModelReply = box["reply"]
        return reply

    def _request(
        self,
        http: Any,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        response_format: dict[str, Any] | None,
        attempt_deadline: float,
    ) -> ModelReply:
        import openai  # here, not at the top: see the module docstring

        timeout = max(0.001, attempt_deadline - time.monotonic())
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = [{"type": "function", "function": spec} for spec in tools]
        if response_format:
            extra["response_format"] = response_format
        client = openai.OpenAI(
            base_url=self.settings.model_url, api_key=self._key, max_retries=0, http_client=http
        )
        create: Any = client.chat.completions.with_streaming_response.create
        cap = self.settings.max_reply_bytes
        try:
            with create(
                model=self.settings.model,
                messages=messages,
                max_tokens=self.settings.run.reply_tokens,
                temperature=self.settings.temperature,
                timeout=httpx.Timeout(
                    timeout, connect=min(timeout, self.settings.connect_timeout_s)
                ),
                **extra,
            ) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > cap:
                        return self._unusable(
                            f"the reply is larger than {cap} bytes (SUPERVISOR_MAX_REPLY_BYTES); "
                            "it was not read further",
                            messages,
                        )
                    if time.monotonic() > attempt_deadline:
                        raise _Retryable(f"reply not complete after {timeout:.1f} s")
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status in RETRY_STATUS:
                retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
                reason = server_reason(exc.body, exc.message)
                unparsed = status == 500 and reason.lower().startswith(UNPARSED_OUTPUT.lower())
                why = f"HTTP {status}: {reason}"
                raise _Retryable(why, retry_after, unparsed=unparsed) from None
            raise self._rejected(status, exc) from None
        except openai.APITimeoutError:
            raise _Retryable(f"no reply within {timeout:.1f} s") from None
        except openai.APIConnectionError as exc:
            raise _Retryable(f"cannot connect to {self.settings.model_url}: {exc}") from None
        except _SDK_HTTP.TimeoutException:
            raise _Retryable(f"no reply within {timeout:.1f} s") from None
        except _SDK_HTTP.TransportError as exc:
            raise _Retryable(f"connection broke: {type(exc).__name__}") from None
        try:
            return parse_completion(bytes(body), messages)
        except ValueError as exc:
            return self._unusable(f"the response body cannot be read: {str(exc)[:300]}", messages)

    def _unusable(self, problem: str, messages: list[dict[str, Any]]) -> ModelReply:
        """A reply that arrived but cannot be used: the loop tells the model so."""
        prompt = sum(len(json.dumps(m)) for m in messages) // 4
        completion = self.settings.run.reply_tokens
        usage = Usage(prompt, completion, prompt + completion, estimated=True)
        return ModelReply(content=None, finish_reason=None, usage=usage, problem=problem)

    def _rejected(self, status: int, exc: openai.APIStatusError) -> ModelRejected:
        detail = str(exc.message)[:300]
        hints = {
            401: "check SUPERVISOR_API_KEY_FILE against the server's API key",
            403: "check SUPERVISOR_API_KEY_FILE against the server's API key",
            404: "check SUPERVISOR_MODEL_URL (it ends in /v1) and SUPERVISOR_MODEL",
        }
        lowered = detail.lower()
        if status == 400 and ("context" in lowered or "exceed" in lowered):
            return ContextExhausted(
                f"HTTP 400: the conversation exceeds the context: {detail}", status
            )
        hint = hints.get(status, "the request was refused; retrying will not help")
        return ModelRejected(f"HTTP {status}: {detail}; {hint}", status)

    # -- server facts ------------------------------------------------------------------
    def props(self) -> dict[str, Any]:
        """Return llama-server's ``/props`` (empty when the server has none)."""
        try:
            response = self._http.get(
                f"{self.settings.server_root}/props",
                timeout=self.settings.connect_timeout_s,
                headers=self._headers,
            )
        except httpx.HTTPError:
            return {}
        if response.status_code != 200:
            return {}
        try:
            data = response.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def models(self) -> list[str]:
        """Return the model ids the server lists under ``/v1/models``."""
        response = self._http.get(
            f"{self.settings.model_url.rstrip('/')}/models",
            timeout=self.settings.connect_timeout_s,
            headers=self._headers,
        )
        response.raise_for_status()
        return [str(m.get("id")) for m in response.json().get("data", [])]


def context_size(props: dict[str, Any]) -> int | None:
    """The context size (``n_ctx``) from llama-server's ``/props``, if it says."""
    settings = props.get("default_generation_settings") or {}
    for value in (settings.get("n_ctx"), props.get("n_ctx")):
        if isinstance(value, int):
            return value
    return None


def detect_tool_mode(props: dict[str, Any]) -> tuple[str, str]:
    """Choose ``native`` or ``json`` from ``/props``; return (mode, reason)."""
    caps = props.get("chat_template_caps") or {}
    keys = [k for k in ("supports_tools", "supports_tool_calls") if k in caps]
    if keys:
        if all(caps[k] for k in keys):
            return "native", f"chat_template_caps: {', '.join(keys)} true"
        return "json", f"chat_template_caps: {', '.join(k for k in keys if not caps[k])} false"
    template = props.get("chat_template")
    if isinstance(template, str) and template:
        if "tool_calls" in template or "tools" in template:
            return "native", "the chat template mentions tools"
        return "json", "the chat template has no tool syntax"
    return "json", "the server does not describe its chat template"
