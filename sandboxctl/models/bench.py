"""Benchmark of the model server (`invoke bench.model`); prints figures, asserts nothing.

Measures, in one run:

- tokens per second of llama-server in the container and of the same source
  built on the host with the same CMake flags, same model, same threads, as a
  ratio (container / host);
- the runtime image's size;
- the image build time: warm (unchanged source: layer cache) always, after a
  cache-busting build argument with ccache warm (``--rebuild``), and cold
  (``--cold``: no layer cache, empty ccache) when asked, since it takes
  minutes.

The host build shares the image's flags (:data:`CMAKE_FLAGS`, kept equal to
the Containerfile's by a unit test) and, through ccache with the same base
directory layout, most of its compiled objects.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sandboxctl.models import source as llama_source

CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON",
    "-DBUILD_SHARED_LIBS=ON",
    "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON",
    "-DGGML_CPU_ALL_VARIANTS=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_SUBPROCESS=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
"""CMake flags of the CPU image's build stage (model/Containerfile)."""

PROMPT = "Once upon a time"
READY_TIMEOUT_S = 120.0


class BenchError(Exception):
    """The benchmark could not run; the message says what failed."""


@dataclass
class BenchResult:
    """Figures of one benchmark run (None: not measured this run)."""

    llama_cpp_version: str
    image: str
    model: str
    threads: int
    n_predict: int
    rounds: int = 1
    image_size_bytes: int | None = None
    build_warm_s: float | None = None
    build_rebuild_ccache_s: float | None = None
    build_cold_s: float | None = None
    host_build_s: float | None = None
    container_tokens_per_s: float | None = None
    """Median over ``rounds`` timed requests (each round's figures in *_rounds)."""
    host_tokens_per_s: float | None = None
    container_tokens_per_s_rounds: list[float] = field(default_factory=list)
    host_tokens_per_s_rounds: list[float] = field(default_factory=list)
    ratio_container_to_host: float | None = None
    notes: list[str] = field(default_factory=list)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` capturing its output; raise BenchError when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise BenchError(f"{' '.join(command[:4])} ... failed ({result.returncode}):\n{tail}")
    return result


def timed(command: list[str], **kwargs: Any) -> float:
    """Run ``command`` and return its wall time in seconds."""
    start = time.monotonic()
    run(command, **kwargs)
    return time.monotonic() - start


def image_size(tag: str, engine: str = "podman") -> int:
    """Return the image's size in bytes as the engine reports it."""
    out = run([engine, "image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip()
    return int(out)


def build_stage_image(output: str) -> str | None:
    """Return the image ID ``podman build`` printed for the end of its first stage."""
    last: str | None = None
    for line in output.splitlines():
        if line.startswith("[2/"):
            return last
        if line.startswith("--> ") and "Using cache" not in line:
            last = line.removeprefix("--> ").strip()
    return None


def with_build_arg(command: list[str], key: str, value: str) -> list[str]:
    """Return the build ``command`` with one more ``--build-arg`` before the context."""
    return [*command[:-1], "--build-arg", f"{key}={value}", command[-1]]


def host_build(context: Path, ccache: Path | None, jobs: int) -> tuple[Path, float]:
    """Build llama-server on the host from ``context/llama.cpp`` with the image's flags.

    The build directory is ``context/host-build`` so paths relative to the
    ccache base directory match the image's (/src/llama.cpp, /src/build).
    Returns the binary and the seconds it took.
    """
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        raise BenchError("the host build needs cmake and a C++ compiler (build-essential)")
    source = context / llama_source.TREE
    build = context / "host-build"
    # ccache hashes the locale variables: drop them, as the build container has none.
    env = {k: v for k, v in os.environ.items() if k != "LANG" and not k.startswith("LC_")}
    launcher: list[str] = []
    if ccache is not None and shutil.which("ccache"):
        env.update(
            CCACHE_DIR=str(ccache), CCACHE_BASEDIR=str(context), CCACHE_COMPILERCHECK="content"
        )
        launcher = ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    manifest = llama_source.read_manifest(context) or {}
    numbers = [
        f"-DLLAMA_BUILD_NUMBER={manifest.get('build_number', 0)}",
        f"-DLLAMA_BUILD_COMMIT={str(manifest.get('commit', 'unknown'))[:9]}",
    ]
    start = time.monotonic()
    run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS, *numbers, *launcher], env=env)
    run(["cmake", "--build", str(build), "--target", "llama-server", f"-j{jobs}"], env=env)
    return build / "bin" / "llama-server", time.monotonic() - start


def wait_ready(url: str, alive: Callable[[], bool], timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until ``url``/health answers 200, the server dies, or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not alive():
            raise BenchError(f"the server behind {url} exited before it was ready")
        time.sleep(0.3)
    raise BenchError(f"{url} was not ready after {timeout:.0f} s")


def tokens_per_second(
    url: str, n_predict: int, rounds: int = 1, headers: dict[str, str] | None = None
) -> list[float]:
    """Return llama-server's own generation speed for ``rounds`` fixed completions."""
    body = {
        "prompt": PROMPT,
        "n_predict": n_predict,
        "temperature": 0,
        "ignore_eos": True,
        "cache_prompt": False,
        "seed": 1,
    }
    # One warm-up request, then the measured ones.
    httpx.post(f"{url}/completion", json={**body, "n_predict": 8}, headers=headers, timeout=300)
    speeds = []
    for _ in range(rounds):
        response = httpx.post(f"{url}/completion", json=body, headers=headers, timeout=600)
        if response.status_code != 200:
            raise BenchError(f"/completion answered {response.status_code}: {response.text[:300]}")
        speeds.append(float(response.json()["timings"]["predicted_per_second"]))
    return speeds


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def container_server(image: str, model: Path, threads: int, ctx: int) -> Iterator[str]:
    """Run the image with ``model`` mounted read-only; yield its URL; always remove it."""
    name = f"ai-sandbox-bench-{uuid.uuid4().hex[:10]}"
    port = free_port()
    try:
        run(
            ["podman", "run", "-d", "--name", name, "--read-only", "--cap-drop=ALL",
             "-p", f"127.0.0.1:{port}:8080",
             "-v", f"{model.parent}:/models:ro",
             "-e", f"LLAMA_ARG_MODEL=/models/{model.name}",
             "-e", f"LLAMA_ARG_THREADS={threads}",
             "-e", f"LLAMA_ARG_CTX_SIZE={ctx}",
             image]
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def alive() -> bool:
            state = subprocess.run(
                ["podman", "inspect", "--format", "{{.State.Running}}", name],
                capture_output=True,
                text=True,
                check=False,
            )
            return state.stdout.strip() == "true"

        wait_ready(url, alive)
        yield url
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "2", name], capture_output=True, check=False)


@contextmanager
def host_server(binary: Path, model: Path, threads: int, ctx: int) -> Iterator[str]:
    """Run the host-built llama-server on ``model``; yield its URL; always stop it."""
    port = free_port()
    env = {
        **os.environ,
        "LLAMA_ARG_UI": "false",
        "LLAMA_ARG_JINJA": "true",
        "LLAMA_ARG_ENDPOINT_METRICS": "true",
    }
    command = [
        str(binary), "--host", "127.0.0.1", "--port", str(port), "-m", str(model),
        "-t", str(threads), "-c", str(ctx), "-np", "1",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(f"http://127.0.0.1:{port}", lambda: process.poll() is None)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def write_results(result: BenchResult, path: Path) -> Path:
    """Write ``result`` as JSON to ``path`` atomically and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def format_results(result: BenchResult) -> str:
    """Return the figures as aligned text lines for the terminal."""

    def show(value: float | int | None, unit: str, scale: float = 1.0) -> str:
        return "not measured" if value is None else f"{value / scale:.2f} {unit}"

    lines = [
        f"llama.cpp {result.llama_cpp_version}, image {result.image}",
        f"model {result.model}, {result.threads} threads, {result.n_predict} tokens, "
        f"median of {result.rounds} requests",
        f"image size              {show(result.image_size_bytes, 'MB', 1e6)}",
        f"build, warm (no change) {show(result.build_warm_s, 's')}",
        f"build, ccache rebuild   {show(result.build_rebuild_ccache_s, 's')}",
        f"build, cold             {show(result.build_cold_s, 's')}",
        f"host build (ccache)     {show(result.host_build_s, 's')}",
        f"container tokens/s      {show(result.container_tokens_per_s, 'tok/s')}",
        f"host tokens/s           {show(result.host_tokens_per_s, 'tok/s')}",
        f"container / host        {show(result.ratio_container_to_host, '')}".rstrip(),
    ]
    return "\n".join(lines + [f"note: {note}" for note in result.notes])


def _ensure_model(key: str) -> Path:
    """Return the benchmark model's path, generating the tiny model if it is missing."""
    from sandboxctl.models import catalog
    from sandboxctl.models import tiny as tiny_model

    model = catalog.load_catalog().get(key)
    path = catalog.model_path(model)
    if not path.is_file():
        if not model.generated:
            raise BenchError(f"{path} is missing: run `invoke model.fetch {key}` first")
        tiny_model.generate(llama_source.vocab_path(), path)
    return path


def _image_exists(tag: str) -> bool:
    result = subprocess.run(["podman", "image", "exists", tag], capture_output=True, check=False)
    return result.returncode == 0


def run_benchmark(
    *,
    model_key: str = "tiny",
    threads: int = 2,
    n_predict: int = 128,
    rounds: int = 3,
    cold: bool = False,
    rebuild: bool = True,
    host: bool = True,
    jobs: int | None = None,
    log: Callable[[str], None] = print,
) -> BenchResult:
    """Run the whole benchmark and return its figures (see the module docstring)."""
    pin, _origin, _download, _tree = llama_source.place_source()
    manifest = llama_source.read_manifest()
    model = _ensure_model(model_key)
    ccache = llama_source.cache_dir() / "ccache"
    ccache.mkdir(parents=True, exist_ok=True)
    command = llama_source.build_command(pin, manifest, ccache_dir=ccache)
    tag = command[command.index("-t") + 1]
    result = BenchResult(pin.version, tag, model_key, threads, n_predict, rounds)
    ctx = 1024

    if cold:
        log("cold build: no layer cache, empty ccache (minutes)...")
        with tempfile.TemporaryDirectory(prefix="ccache-cold-") as empty:
            cold_command = [*command]
            cold_command[cold_command.index("-v") + 1] = f"{empty}:/ccache"
            cold_command.insert(3, "--no-cache")
            result.build_cold_s = timed(cold_command)
    elif not _image_exists(tag):
        log("no image yet: this first build is cold (minutes)...")
        result.build_cold_s = timed(command)
        result.notes.append("cold build measured with the persistent ccache directory as found")
    log("warm build (unchanged source)...")
    result.build_warm_s = timed(command)
    if rebuild:
        log("rebuild with a cache-busting build argument (ccache warm)...")
        bust = with_build_arg(
            command, "CMAKE_EXTRA_ARGS", f"-DSANDBOX_BENCH_BUST={uuid.uuid4().hex}"
        )
        bust_tag = f"{tag}-bench-rebuild"
        bust[bust.index("-t") + 1] = bust_tag
        start = time.monotonic()
        output = run(bust).stdout
        result.build_rebuild_ccache_s = time.monotonic() - start
        # The cache-busted build stage is of no further use: drop it with its tag.
        leftovers = [bust_tag, *filter(None, [build_stage_image(output)])]
        subprocess.run(["podman", "rmi", *leftovers], capture_output=True, check=False)
    result.image_size_bytes = image_size(tag)

    log("tokens/s in the container...")
    with container_server(tag, model, threads, ctx) as url:
        result.container_tokens_per_s_rounds = tokens_per_second(url, n_predict, rounds)
    result.container_tokens_per_s = statistics.median(result.container_tokens_per_s_rounds)
    if host:
        log("host build with the same flags (ccache shared)...")
        if (llama_source.CONTEXT_DIR / "host-build" / "CMakeCache.txt").is_file():
            result.notes.append("host build reused its build directory (incremental)")
        binary, result.host_build_s = host_build(
            llama_source.CONTEXT_DIR, ccache, jobs or os.cpu_count() or 2
        )
        log("tokens/s on the host...")
        with host_server(binary, model, threads, ctx) as url:
            result.host_tokens_per_s_rounds = tokens_per_second(url, n_predict, rounds)
        result.host_tokens_per_s = statistics.median(result.host_tokens_per_s_rounds)
        result.ratio_container_to_host = result.container_tokens_per_s / result.host_tokens_per_s
    else:
        result.notes.append("host build skipped (--no-host): no ratio")
    return result
