"""The CPU model-server image, built and run for real with Podman.

Builds the image from the pinned, verified llama.cpp source (the same
`invoke model.source` + `podman build` path users take; the layer cache and
the ccache directory make a second run take seconds), runs it hardened like
the compose file does (read-only root, no capabilities, no new privileges)
with the offline tiny model mounted read-only at /models and an API key
mounted as a secret file, and talks to it over HTTP.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxctl.catalog import tiny as tiny_model
from sandboxctl.config import find_root, load_settings
from sandboxctl.llama import source as llama_source
from sandboxctl.stack import model_image

pytestmark = [pytest.mark.container, pytest.mark.slow]

API_KEY = "test-key-" + uuid.uuid4().hex
MAX_IMAGE_BYTES = 60_000_000
"""The CPU runtime image's budget (issue 18): llama-server, its libraries, busybox."""
READY_TIMEOUT_S = 90
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "count": {"type": "integer", "minimum": 0, "maximum": 99},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "count", "ok"],
    "additionalProperties": False,
}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


def validate(value: Any, schema: dict[str, Any]) -> None:
    """Check ``value`` against the small JSON-schema subset SCHEMA uses."""
    kind = schema["type"]
    if kind == "boolean":
        assert isinstance(value, bool), f"{value!r} is not boolean"
    elif kind == "integer":
        assert isinstance(value, int), f"{value!r} is not integer"
        assert not isinstance(value, bool)
        assert schema["minimum"] <= value <= schema["maximum"]
    elif kind == "string":
        assert isinstance(value, str), f"{value!r} is not string"
        assert len(value) <= schema["maxLength"]
    else:
        assert isinstance(value, dict), f"{value!r} is not object"
        assert set(schema["required"]) <= set(value)
        assert set(value) <= set(schema["properties"])
        for key, item in value.items():
            validate(item, schema["properties"][key])


@dataclass(frozen=True)
class Server:
    """A running model-server container."""

    name: str
    url: str
    image: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def build() -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """The CPU image's build: its command and what Podman printed."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `invoke host.prepare`")
    try:
        pin, _origin, _result, _tree = llama_source.place_source()
    except llama_source.SourceError as error:
        pytest.fail(f"cannot place the pinned llama.cpp source: {error}")
    settings = load_settings(find_root(), require_file=False)
    ccache = llama_source.ccache_dir()
    ccache.mkdir(parents=True, exist_ok=True)
    # The one build path (sandboxctl.stack.images), with the .env's base image and CPU
    # variants: the same build arguments as `invoke model.build`, so the layer cache holds.
    command = model_image.model_build_argv(
        find_root(),
        llama_source.image_tag(pin.version),
        pin.version,
        "cpu",
        ccache,
        **model_image.model_build_args(settings),
    )
    build = subprocess.run(command, capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return command, build


@pytest.fixture(scope="module")
def image(build: tuple[list[str], subprocess.CompletedProcess[str]]) -> str:
    command, _result = build
    return command[command.index("-t") + 1]


def stages_run(output: str) -> set[str]:
    """The stages a `podman build` printed it was building (cached or not)."""
    return set(re.findall(r"STEP 1/\d+: FROM \S+ AS (\S+)", output))


def test_the_cpu_build_runs_only_the_cpu_stages_of_the_one_containerfile(
    build: tuple[list[str], subprocess.CompletedProcess[str]],
) -> None:
    """GPU_BACKEND=cpu: Podman builds the CPU toolchain, root and base and the shared
    stages, and never reads the Vulkan or CUDA images."""
    _command, result = build
    assert stages_run(result.stdout + result.stderr) == {
        "toolchain-cpu", "build", "rootfs-cpu", "base-cpu", "server",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("backend", "image_arg"),
    [("cuda", "CUDA_BUILD_IMAGE"), ("vulkan", "VULKAN_BUILD_IMAGE")],
)
def test_podman_starts_a_gpu_build_at_its_own_toolchain_image_cannot_build_here(
    backend: str, image_arg: str, build: tuple[list[str], subprocess.CompletedProcess[str]]
) -> None:  # the CPU build first: the context holds the placed source
    """No NVIDIA image and no GPU here: the build of ``backend`` is given a toolchain
    image that does not exist, and must stop at it, before any other backend's stage.
    Proves the stage Podman's builder picks for GPU_BACKEND, not that the build passes."""
    missing = f"localhost/ai-sandbox-test-no-{backend}-toolchain:0"
    settings = load_settings(find_root(), require_file=False)
    gpu = model_image.model_build_argv(
        find_root(), f"localhost/ai-sandbox-test-{backend}:never", settings.llama_cpp_version,
        backend, None,
        **model_image.model_build_args(settings),
    )  # fmt: skip
    gpu[-1:-1] = ["--build-arg", f"{image_arg}={missing}"]
    result = subprocess.run(gpu, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert missing in output
    assert stages_run(output) <= {f"toolchain-{backend}"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    tiny_model.generate(llama_source.vocab_path(), directory / "tiny.gguf")
    directory.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def server(image: str, models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    secrets = tmp_path_factory.mktemp("secrets")
    key_file = secrets / "model_api_key"
    key_file.write_text(API_KEY + "\n")
    key_file.chmod(0o644)
    name = f"ai-sandbox-test-model-{uuid.uuid4().hex[:10]}"
    try:
        podman(
            "run", "-d", "--name", name,
            "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
            "-p", "127.0.0.1::8080",
            "-v", f"{models}:/models:ro",
            "-v", f"{key_file}:/run/secrets/model_api_key:ro",
            "-e", "LLAMA_ARG_MODEL=/models/tiny.gguf",
            "-e", "LLAMA_ARG_CTX_SIZE=1024",
            "-e", "LLAMA_ARG_THREADS=2",
            image,
        )  # fmt: skip
        port = podman("port", name, "8080/tcp").stdout.strip().rsplit(":", 1)[-1]
        running = Server(name=name, url=f"http://127.0.0.1:{port}", image=image)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{running.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = podman("inspect", "--format", "{{.State.Running}}", name, check=False)
            if state.stdout.strip() != "true" or time.monotonic() > deadline:
                pytest.fail(f"model-server never became ready:\n{running.logs()[-4000:]}")
            time.sleep(0.5)
        yield running
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


def chat(server: Server, **extra: Any) -> httpx.Response:
    body = {
        "messages": [{"role": "user", "content": "Describe a widget as JSON."}],
        "max_tokens": 48,
        "temperature": 0,
        **extra,
    }
    return httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers=server.headers(), timeout=60
    )


def test_health_is_200_when_ready(server: Server) -> None:
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def test_chat_completion_answers(server: Server) -> None:
    response = chat(server)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)


def test_json_schema_response_validates_against_schema(server: Server) -> None:
    response = chat(
        server,
        max_tokens=96,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "widget", "schema": SCHEMA, "strict": True},
        },
    )
    assert response.status_code == 200, response.text
    content = response.json()["choices"][0]["message"]["content"]
    validate(json.loads(content), SCHEMA)


def test_request_without_api_key_is_rejected(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=30,
    )
    assert response.status_code == 401


def test_bad_grammar_gets_4xx_and_server_stays_healthy(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/completion",
        json={"prompt": "x", "n_predict": 4, "grammar": "root ::= ( [a-z"},
        headers=server.headers(),
        timeout=30,
    )
    assert 400 <= response.status_code < 500, response.text
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    assert chat(server, max_tokens=4).status_code == 200


def test_server_process_runs_as_non_root(server: Server) -> None:
    status = podman("exec", server.name, "cat", "/proc/1/status").stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == ["10001"] * 4
    assert "llama-server" in podman("exec", server.name, "cat", "/proc/1/cmdline").stdout


def test_api_key_never_appears_in_logs_or_config(server: Server) -> None:
    assert API_KEY not in server.logs()
    assert API_KEY not in podman("inspect", server.name).stdout


def test_metrics_endpoint_is_on(server: Server) -> None:
    response = httpx.get(f"{server.url}/metrics", headers=server.headers(), timeout=10)
    assert response.status_code == 200
    assert "llamacpp:" in response.text


def test_image_is_labelled_with_the_pinned_version(server: Server) -> None:
    labels = json.loads(
        podman("image", "inspect", "--format", "{{json .Labels}}", server.image).stdout
    )
    pin, _origin = llama_source.resolve(llama_source.load_sources(), None, None)
    assert labels["org.opencontainers.image.version"] == pin.version
    assert labels["org.opencontainers.image.revision"] == pin.commit[:9]


def test_image_is_at_most_60_mb(image: str) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    print(f"\n{image}: {size / 1e6:.1f} MB")
    assert size <= MAX_IMAGE_BYTES, f"{image} is {size / 1e6:.1f} MB, over 60 MB"


def test_runtime_root_has_no_package_manager_and_no_debian_system(image: str) -> None:
    """Only llama-server, its libraries and busybox: no apt, dpkg, perl or bash."""
    probe = podman(
        "run", "--rm", "--network=none", "--entrypoint", "/bin/sh", image, "-c",
        "for p in /usr/bin/apt-get /usr/bin/dpkg /usr/bin/perl /bin/bash /var/lib/dpkg; do"
        " test -e $p && echo $p; done; ls /app/libggml-cpu-*.so",
        check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.split()
    assert all(line.startswith("/app/libggml-cpu-") for line in lines), lines
    assert lines, "no CPU backend library in /app"


def test_healthcheck_passes_when_ready(server: Server) -> None:
    """The image's own HEALTHCHECK (busybox nc on /health) answers 0 once ready."""
    check = podman("healthcheck", "run", server.name, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    script = podman("exec", server.name, "/app/healthcheck.sh", check=False)
    assert script.returncode == 0, script.stderr


def test_healthcheck_fails_when_nothing_listens(server: Server) -> None:
    """The same script against a port nothing serves: non-zero, within its timeout."""
    probe = podman(
        "exec", "-e", "LLAMA_ARG_PORT=1", server.name, "/app/healthcheck.sh", check=False
    )
    assert probe.returncode != 0


def test_every_library_of_the_server_and_its_backends_resolves_in_the_image(image: str) -> None:
    """The dynamic loader of the image lists each /app ELF file's libraries: none is
    missing, including those of the CPU variants ggml loads at run time (dlopen)."""
    probe = podman(
        "run", "--rm", "--network=none", "--entrypoint", "/bin/sh", image, "-c",
        "for f in /app/llama-server /app/*.so; do echo \"== $f\";"
        " /lib64/ld-linux-x86-64.so.2 --list $f || echo \"FAILED $f\"; done",
        check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert "libggml-cpu-" in probe.stdout
    assert "not found" not in probe.stdout, probe.stdout
    assert "FAILED" not in probe.stdout, probe.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("LLAMA_API_KEY=s3cret", "mount the key as a file"),
        ("LLAMA_ARG_AGENT=TRUE", "disabled in this image"),
        ("LLAMA_ARG_TOOLS=all", "disabled in this image"),
    ],
)
def test_entrypoint_refusals_work_with_busybox_in_the_runtime_root(
    image: str, env: str, message: str
) -> None:
    """The entrypoint's checks (key in the environment, built-in tools) run under the
    image's own busybox sh, tr and id, not only under the host's /bin/sh."""
    result = podman("run", "--rm", "--network=none", "-e", env, image, check=False)
    assert result.returncode == 64, result.stdout + result.stderr
    assert message in result.stderr
