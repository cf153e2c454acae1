"""Adversarial requests against the pinned llama-server build, run for real with Podman.

Each request is malformed or oversized in a way a confused or hostile client (or a model
feeding the supervisor) could produce: a broken grammar, a JSON schema the grammar
converter does not support, a grammar and a schema nested thousands deep, a prompt
longer than the context, more concurrent requests than slots. Each must get an HTTP
answer (an error status where it is an error) and the server must stay healthy: the
container keeps running and /health answers 200 after every request. A crash is a
finding for docs/ISSUE_LOG.md (`invoke issue.log`), with the request that caused it.

The server is the image the root sandbox runs (`invoke images.build --only model-server`
builds it from the pinned, verified source), started hardened like compose.yaml does,
publishing on 127.0.0.1 only, with the offline tiny model and a 512-token context.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxctl.config import load_settings
from sandboxctl.llama import source as llama_source

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "adversarial-" + uuid.uuid4().hex
CTX = 512
SLOTS = 1
READY_TIMEOUT_S = 60


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


@dataclass(frozen=True)
class Server:
    """A running llama-server container and its loopback URL."""

    name: str
    url: str

    def post(self, path: str, body: dict[str, Any], timeout: float = 60) -> httpx.Response:
        return httpx.post(
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=timeout,
        )

    def healthy(self) -> bool:
        """The container runs and /health answers 200."""
        state = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        if state.stdout.strip() != "true":
            return False
        try:
            return httpx.get(f"{self.url}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def logs(self) -> str:
        result = podman("logs", "--tail", "30", self.name, check=False)
        return result.stdout + result.stderr


@contextmanager
def started(tmp_path: Path) -> Iterator[Server]:
    """Start a hardened llama-server with the tiny model; remove it afterwards."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `invoke host.prepare`")
    settings = load_settings(ROOT)
    image = llama_source.image_tag(settings.llama_cpp_version, "cpu", settings.compose_project_name)
    if podman("image", "exists", image, check=False).returncode != 0:
        pytest.fail(f"{image} is not built: run `invoke images.build --only model-server`")
    model = ROOT / "models" / "tiny.gguf"
    if not model.is_file():
        pytest.fail(f"{model} is missing: run `invoke model.tiny`")
    key_file = tmp_path / "model_api_key"
    key_file.write_text(API_KEY + "\n")
    key_file.chmod(0o644)
    name = f"ai-sandbox-adversarial-{uuid.uuid4().hex[:10]}"
    try:
        podman(
            "run", "-d", "--name", name, "--pull=never",
            "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
            "--user=10001:10001", "--memory=1g", "--pids-limit=256",
            "-p", "127.0.0.1::8080",
            "-v", f"{model}:/models/tiny.gguf:ro",
            "-v", f"{key_file}:/run/secrets/model_api_key:ro",
            "-e", "LLAMA_ARG_MODEL=/models/tiny.gguf",
            "-e", f"LLAMA_ARG_CTX_SIZE={CTX}",
            "-e", f"LLAMA_ARG_N_PARALLEL={SLOTS}",
            "-e", "LLAMA_ARG_THREADS=2",
            image,
        )  # fmt: skip
        port = podman("port", name, "8080/tcp").stdout.strip().rsplit(":", 1)[-1]
        running = Server(name, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not running.healthy():
            if time.monotonic() > deadline:
                pytest.fail(f"llama-server never became ready:\n{running.logs()}")
            time.sleep(0.3)
        yield running
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the requests that must not take it down."""
    with started(tmp_path_factory.mktemp("secrets")) as running:
        yield running


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of its own, for a request known to crash the pinned build."""
    with started(tmp_path) as running:
        yield running


def assert_error_and_healthy(server: Server, response: httpx.Response, what: str) -> None:
    """An error status came back, and the server still answers /health."""
    print(f"\n{what}: HTTP {response.status_code} {response.text[:160]!r}")
    assert 400 <= response.status_code < 600, f"{what}: {response.status_code}"
    assert server.healthy(), f"{what} took the server down:\n{server.logs()}"


def test_a_broken_grammar_is_refused(server: Server) -> None:
    body = {"prompt": "x", "n_predict": 4, "grammar": 'root ::= ( [a-z] "unclosed'}
    assert_error_and_healthy(server, server.post("/completion", body), "broken grammar")


def test_a_schema_pattern_the_converter_does_not_support_is_refused(server: Server) -> None:
    """Known finding DEV-0006: the pinned build answers 200 and drops the pattern."""
    schema = {"type": "string", "pattern": "^(?=lookahead)[a-z]+(?<!behind)$"}
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 8,
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }
    response = server.post("/v1/chat/completions", body)
    print(f"\nunsupported schema pattern: HTTP {response.status_code} {response.text[:120]!r}")
    assert server.healthy()
    if response.status_code == 200:
        pytest.xfail("DEV-0006: the pattern is silently not enforced (200, unconstrained)")
    assert 400 <= response.status_code < 500


def test_a_schema_with_a_remote_ref_is_refused(server: Server) -> None:
    schema = {"$ref": "https://schemas.invalid/never-fetched.json"}
    body = {"prompt": "x", "n_predict": 4, "json_schema": schema}
    assert_error_and_healthy(server, server.post("/completion", body), "remote $ref schema")


def test_a_grammar_nested_15000_deep_is_served(server: Server) -> None:
    """The parser recurses once per level: 15000 levels still fit its stack."""
    grammar = "root ::= " + "(" * 15000 + '"a"' + ")" * 15000
    response = server.post("/completion", {"prompt": "x", "n_predict": 2, "grammar": grammar})
    assert response.status_code < 600
    assert server.healthy(), "a grammar nested 15000 deep took the server down"


@pytest.mark.xfail(strict=True, reason="DEV-0005: the pinned build crashes (SIGSEGV)")
def test_a_grammar_nested_20000_deep_does_not_crash_the_server(own_server: Server) -> None:
    """Known finding DEV-0005: one ~40 KB request kills the pinned build (exit 139)."""
    grammar = "root ::= " + "(" * 20000 + '"a"' + ")" * 20000
    try:
        response = own_server.post(
            "/completion", {"prompt": "x", "n_predict": 2, "grammar": grammar}
        )
        print(f"\nnested grammar 20000: HTTP {response.status_code}")
    except httpx.TransportError as exc:
        print(f"\nnested grammar 20000: no answer ({type(exc).__name__})")
    assert own_server.healthy(), f"crashed:\n{own_server.logs()[-600:]}"


@pytest.mark.parametrize("depth", [300, 5000])
def test_a_deeply_nested_json_schema_is_refused_or_served(server: Server, depth: int) -> None:
    """An object schema nested ``depth`` deep (the JSON text is built directly: Python's own
    encoder would hit its recursion limit first)."""
    schema = '{"type":"object","required":["a"],"properties":{"a":' * depth
    schema += '{"type":"string"}' + "}}" * depth
    body = f'{{"prompt":"x","n_predict":2,"json_schema":{schema}}}'
    response = httpx.post(
        f"{server.url}/completion",
        content=body.encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=60,
    )
    print(f"\nnested schema depth {depth}: HTTP {response.status_code} {response.text[:120]!r}")
    assert response.status_code < 600
    assert server.healthy(), f"a schema nested {depth} deep took the server down"


def test_a_prompt_longer_than_the_context_is_refused(server: Server) -> None:
    prompt = "hello world " * (CTX * 4)
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 4}
    response = server.post("/v1/chat/completions", body)
    assert_error_and_healthy(server, response, "prompt longer than the context")
    assert "context" in response.text.lower() or "exceed" in response.text.lower()


def test_more_concurrent_requests_than_slots_all_get_an_answer(server: Server) -> None:
    """8 requests at once on 1 slot: each is queued and answered (or refused with a status),
    none is dropped without an answer, and the server stays healthy."""
    body = {"messages": [{"role": "user", "content": "count"}], "max_tokens": 32}

    def one(_index: int) -> int:
        return server.post("/v1/chat/completions", body, timeout=120).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, range(8)))
    print(f"\n8 concurrent on {SLOTS} slot: {statuses} in {time.monotonic() - started:.1f} s")
    assert all(status == 200 or 400 <= status < 600 for status in statuses), statuses
    assert server.healthy()


def test_garbage_bodies_are_refused(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=b"\xff\xfe{not json" * 100,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert_error_and_healthy(server, response, "garbage body")
    wrong = server.post("/v1/chat/completions", {"messages": json.loads('"not a list"')})
    assert_error_and_healthy(server, wrong, "messages not a list")
