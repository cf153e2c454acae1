"""Benchmark of the model server (`invoke bench.model`); prints figures, asserts nothing.

Measures, in one run:

- prompt processing and generation tokens per second of llama-server in the container
  and of the same source built on the host (same CMake flags, same two ggml edits, same
  CPU variants, same model, same threads; only the image compiles its request handling
  at ``GLUE_CFLAGS``' -O1, the host build all at upstream's -O3, so a cost of that shows
  here too), the two servers up together and their
  requests interleaved (container, host, container, host, ...) so a change in the
  machine's load falls on both; median and spread (lowest to highest) of each;
- the container's start to ready (``/health`` 200) and its first chat answer;
- the runtime image's size; the image build time with unchanged source (layer cache),
  and cold (``--cold``: no layer cache, empty ccache) when asked, since it takes minutes.

The model is a real one when it is on disk (``smollm2-135m-instruct``, `invoke
model.fetch smollm2-135m-instruct`), else the random tiny model, whose figures say little
about a real model's (the result notes it). The host build shares the image's flags and,
through ccache with the same base directory layout, most of its compiled objects.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.bench.host import (
    CMAKE_FLAGS,
    GGML_EDITS,
    BenchError,
    cpu_flags,
    free_port,
    host_build,
    host_server,
    host_tree,
    run,
    wait_ready,
)
from sandboxctl.download import cache_dir
from sandboxctl.host.engine import image_exists
from sandboxctl.llama import source as llama_source

__all__ = [
    "CMAKE_FLAGS",
    "GGML_EDITS",
    "BenchError",
    "BenchResult",
    "cpu_flags",
    "host_tree",
    "run_benchmark",
]

REAL_MODEL = "smollm2-135m-instruct"
PROMPT = " ".join(["The quick brown fox jumps over the lazy dog."] * 24)
"""About 240 tokens: long enough that prompt processing is measured, not its overhead."""


@dataclass
class Samples:
    """One server's figures: prompt processing and generation tokens/s, one per request."""

    prompt_per_s: list[float] = field(default_factory=list)
    generation_per_s: list[float] = field(default_factory=list)


@dataclass
class BenchResult:
    """Figures of one benchmark run (None: not measured this run)."""

    llama_cpp_version: str
    image: str
    model: str
    threads: int
    n_predict: int
    rounds: int = 1
    cpu_variants: str = ""
    prompt_tokens: int | None = None
    image_size_bytes: int | None = None
    build_warm_s: float | None = None
    build_cold_s: float | None = None
    host_build_s: float | None = None
    ready_s: float | None = None
    """Container start (`podman run`) to /health 200, model loaded."""
    first_answer_s: float | None = None
    """The first chat completion after ready (16 tokens at most)."""
    container: Samples = field(default_factory=Samples)
    host: Samples = field(default_factory=Samples)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Spread:
    """Median and range of a list of figures."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self) -> str:
        return f"{self.median:.1f} ({self.low:.1f}-{self.high:.1f}, n={self.n})"


def summary(result: BenchResult) -> dict[str, Any]:
    """Medians and spreads of the result's samples, and the container/host ratios."""
    out: dict[str, Any] = {}
    for side in ("container", "host"):
        samples: Samples = getattr(result, side)
        for kind in ("prompt_per_s", "generation_per_s"):
            spread = Spread.of(getattr(samples, kind))
            out[f"{side}_{kind}"] = asdict(spread) if spread else None
    for kind in ("prompt_per_s", "generation_per_s"):
        c, h = out[f"container_{kind}"], out[f"host_{kind}"]
        out[f"ratio_{kind}"] = c["median"] / h["median"] if c and h and h["median"] else None
    return out


def timed(runner: Runner, command: list[str]) -> float:
    """Run ``command`` and return its wall time in seconds."""
    start = time.monotonic()
    run(runner, command)
    return time.monotonic() - start


def image_size(tag: str, runner: Runner | None = None) -> int:
    """Return the image's size in bytes as the engine reports it."""
    argv = ["podman", "image", "inspect", "--format", "{{.Size}}", tag]
    return int(run(runner or Runner(), argv).stdout.strip())


def completion(url: str, n_predict: int) -> dict[str, Any]:
    """One fixed completion (:data:`PROMPT`, greedy, no prompt cache); llama-server's
    ``timings`` of it."""
    body = {
        "prompt": PROMPT,
        "n_predict": n_predict,
        "temperature": 0,
        "ignore_eos": True,
        "cache_prompt": False,
        "seed": 1,
    }
    response = httpx.post(f"{url}/completion", json=body, timeout=600)
    if response.status_code != 200:
        raise BenchError(f"/completion answered {response.status_code}: {response.text[:300]}")
    timings: dict[str, Any] = response.json()["timings"]
    return timings


def first_answer(url: str) -> float:
    """Seconds for the first chat completion (16 tokens at most) of a fresh server."""
    body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
    start = time.monotonic()
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    if response.status_code != 200:
        raise BenchError(f"chat answered {response.status_code}: {response.text[:300]}")
    return time.monotonic() - start


@contextmanager
def container_server(
    runner: Runner, image: str, model: Path, threads: int, ctx: int
) -> Iterator[tuple[str, float]]:
    """Run the image with ``model`` mounted read-only; yield its URL and the seconds from
    `podman run` to ready; always remove it."""
    name = f"ai-sandbox-bench-{uuid.uuid4().hex[:10]}"
    port = free_port()
    try:
        start = time.monotonic()
        run(
            runner,
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
            state = runner.run(["podman", "inspect", "--format", "{{.State.Running}}", name])
            return state.stdout.strip() == "true"

        wait_ready(url, alive)
        yield url, time.monotonic() - start
    finally:
        with suppress(CommandNotFound):  # no podman: nothing to remove, the error is on its way
            runner.run(["podman", "rm", "-f", "-t", "2", name])


def interleave(servers: dict[str, str], rounds: int, n_predict: int, result: BenchResult) -> None:
    """``rounds`` times, one timed completion on each server in turn (A B A B ...)."""
    for url in servers.values():
        completion(url, 8)  # warm-up: first-touch of the weights, thread pool start
    for _ in range(rounds):
        for side, url in servers.items():
            timings = completion(url, n_predict)
            samples: Samples = getattr(result, side)
            samples.prompt_per_s.append(float(timings["prompt_per_second"]))
            samples.generation_per_s.append(float(timings["predicted_per_second"]))
            result.prompt_tokens = int(timings["prompt_n"])


def write_results(result: BenchResult, path: Path) -> Path:
    """Write ``result`` and its summary as JSON to ``path`` atomically; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = {**asdict(result), "summary": summary(result)}
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def format_results(result: BenchResult) -> str:
    """Return the figures as aligned text lines for the terminal."""

    def show(value: float | int | None, unit: str, scale: float = 1.0) -> str:
        return "not measured" if value is None else f"{value / scale:.2f} {unit}"

    def spread(values: list[float]) -> str:
        measured = Spread.of(values)
        return measured.text() + " tok/s" if measured else "not measured"

    lines = [
        f"llama.cpp {result.llama_cpp_version}, image {result.image} "
        f"(CPU variants {result.cpu_variants})",
        f"model {result.model}, {result.threads} threads, prompt {result.prompt_tokens} tokens,"
        f" {result.n_predict} generated, {result.rounds} interleaved rounds",
        f"image size              {show(result.image_size_bytes, 'MB', 1e6)}",
        f"build, warm (no change) {show(result.build_warm_s, 's')}",
        f"build, cold             {show(result.build_cold_s, 's')}",
        f"host build (ccache)     {show(result.host_build_s, 's')}",
        f"start to ready          {show(result.ready_s, 's')}",
        f"first answer            {show(result.first_answer_s, 's')}",
        f"container prompt        {spread(result.container.prompt_per_s)}",
        f"host prompt             {spread(result.host.prompt_per_s)}",
        f"container generation    {spread(result.container.generation_per_s)}",
        f"host generation         {spread(result.host.generation_per_s)}",
    ]
    return "\n".join(lines + [f"note: {note}" for note in result.notes])


def pick_model(key: str) -> tuple[str, Path, str | None]:
    """Return the benchmark model's key, path and a note: ``auto`` is the real model when
    it is on disk, else the tiny one (generated when missing)."""
    from sandboxctl.catalog import catalog
    from sandboxctl.catalog import tiny as tiny_model

    models = catalog.load_catalog()
    note = None
    if key == "auto":
        real = catalog.model_path(models.get(REAL_MODEL))
        if real.is_file():
            return REAL_MODEL, real, None
        key = "tiny"
        note = (
            f"random tiny model: its figures say little about a real model's "
            f"(`invoke model.fetch {REAL_MODEL}` for a real one)"
        )
    model = models.get(key)
    path = catalog.model_path(model)
    if not path.is_file():
        if not model.generated:
            raise BenchError(f"{path} is missing: run `invoke model.fetch {key}` first")
        tiny_model.generate(llama_source.vocab_path(), path)
    return key, path, note


BuildCommand = Callable[[str, str, Path], list[str]]
"""``(tag, version, ccache_dir) -> podman build argv`` of the CPU image: the stack's one
build path (``sandboxctl.stack.model_image.model_build_argv``), handed in by the task (a
test hands in its own)."""


def run_benchmark(
    build_command: BuildCommand,
    *,
    project: str = "ai-sandbox",
    cpu_variants: str = "all",
    model_key: str = "auto",
    threads: int = 2,
    n_predict: int = 64,
    rounds: int = 7,
    cold: bool = False,
    host: bool = True,
    jobs: int | None = None,
    log: Callable[[str], None] = print,
    runner: Runner | None = None,
) -> BenchResult:
    """Run the whole benchmark and return its figures (see the module docstring)."""
    runner = runner or Runner()
    pin, _origin, _download, _tree = llama_source.place_source()
    key, model, note = pick_model(model_key)
    ccache = llama_source.ccache_dir()
    ccache.mkdir(parents=True, exist_ok=True)
    tag = llama_source.image_tag(pin.version, "cpu", project)
    variants = cpu_variants

    def command(cache: Path) -> list[str]:
        return build_command(tag, pin.version, cache)

    result = BenchResult(pin.version, tag, key, threads, n_predict, rounds, variants)
    result.notes += [note] if note else []
    ctx = 1024
    if cold:
        log("cold build: no layer cache, empty ccache (minutes)...")
        with tempfile.TemporaryDirectory(prefix="ccache-cold-") as empty:
            cold_command = command(Path(empty))
            cold_command.insert(2, "--no-cache")
            result.build_cold_s = timed(runner, cold_command)
    elif not image_exists(runner, tag):
        log("no image yet: this first build is cold (minutes)...")
        result.build_cold_s = timed(runner, command(ccache))
        result.notes.append("cold build measured with the persistent ccache directory as found")
    log("warm build (unchanged source)...")
    result.build_warm_s = timed(runner, command(ccache))
    result.image_size_bytes = image_size(tag, runner)

    with container_server(runner, tag, model, threads, ctx) as (container_url, ready):
        result.ready_s = ready
        result.first_answer_s = first_answer(container_url)
        servers = {"container": container_url}
        if not host:
            result.notes.append("host build skipped (--no-host): no comparison")
            log(f"{rounds} timed requests in the container...")
            interleave(servers, rounds, n_predict, result)
            return result
        log("host build with the same flags and CPU variants, -O3 throughout (ccache shared)...")
        binary, result.host_build_s = host_build(
            llama_source.context_dir(),
            cache_dir() / "host-build",
            variants,
            ccache,
            jobs or os.cpu_count() or 2,
            runner,
        )
        with host_server(binary, model, threads, ctx, runner) as host_url:
            log(f"{rounds} interleaved rounds: container, host, container, host, ...")
            interleave({**servers, "host": host_url}, rounds, n_predict, result)
    return result
