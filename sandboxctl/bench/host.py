"""The host side of the model-server benchmark (:mod:`sandboxctl.bench.model`): the same
llama.cpp source built on the host with the image's CMake flags, ggml edits and CPU
variants, and run as a plain process, so the container's cost can be measured against it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx

from sandboxctl._proc import CommandNotFound, Result, Runner
from sandboxctl.errors import SandboxError
from sandboxctl.llama import source as llama_source

READY_TIMEOUT_S = 120.0


class BenchError(SandboxError):
    """The benchmark could not run; the message says what failed."""


def run(runner: Runner, command: Sequence[str]) -> Result:
    """Run ``command`` capturing its output; raise BenchError when it fails or its program
    is missing."""
    try:
        result = runner.run(command)
    except CommandNotFound as error:
        raise BenchError(str(error)) from error
    if not result.ok:
        tail = (result.stdout + result.stderr)[-3000:]
        raise BenchError(f"{' '.join(command[:4])} ... failed ({result.returncode}):\n{tail}")
    return result


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
        time.sleep(0.1)
    raise BenchError(f"{url} was not ready after {timeout:.0f} s")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON",
    "-DBUILD_SHARED_LIBS=ON",
    "-DGGML_BACKEND_DL=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_SUBPROCESS=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
"""CMake flags of the CPU image's build stage (model-server/Containerfile), less the CPU ones."""

GGML_EDITS: tuple[tuple[str, str, str], ...] = (
    (
        "ggml/src/CMakeLists.txt",
        "function(ggml_add_cpu_backend_variant tag_name)",
        "    if (DEFINED SANDBOX_CPU_VARIANTS AND NOT tag_name IN_LIST SANDBOX_CPU_VARIANTS)\n"
        "        return()\n"
        "    endif()",
    ),
    (
        "ggml/src/ggml-cpu/CMakeLists.txt",
        "    ggml_add_backend_library(${GGML_CPU_NAME})",
        '    if (CMAKE_C_COMPILER_ID STREQUAL "GNU")\n'
        "        target_compile_options(${GGML_CPU_NAME} PRIVATE -Wno-uninitialized"
        " -Wno-maybe-uninitialized)\n"
        "    endif()",
    ),
)
"""The Containerfile's two edits of ggml's CMake files (file, the line after which, the
lines inserted), applied to the host build's copy of the source; a unit test holds them
to the Containerfile's ``sed`` commands."""


def cpu_flags(variants: str) -> list[str]:
    """The CMake flags for ``variants`` (``all``, ``native`` or names), as the
    Containerfile's ``case`` chooses them."""
    if variants == "native":
        return ["-DGGML_NATIVE=ON"]
    flags = ["-DGGML_NATIVE=OFF", "-DGGML_CPU_ALL_VARIANTS=ON"]
    if variants != "all":
        flags.append("-DSANDBOX_CPU_VARIANTS=" + variants.replace(",", ";"))
    return flags


def host_tree(context: Path, base: Path, runner: Runner | None = None) -> Path:
    """Return ``base/llama.cpp``: a hard-linked copy of the placed source with
    :data:`GGML_EDITS` applied (each edited file replaced, never written through a link,
    so the placed source and the image's layer cache are untouched). Kept while the
    placed source's manifest and the edits stay the same."""
    source = context / llama_source.TREE
    tree = base / "llama.cpp"
    stamp = base / "tree.stamp"
    want = json.dumps([llama_source.read_manifest(context), GGML_EDITS], sort_keys=True)
    if tree.is_dir() and stamp.is_file() and stamp.read_text(encoding="utf-8") == want:
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    run(runner or Runner(), ["cp", "-al", str(source), str(tree)])
    for relative, anchor, insert in GGML_EDITS:
        path = tree / relative
        text = path.read_text(encoding="utf-8")
        if f"\n{anchor}\n" not in text:
            raise BenchError(f"{relative}: no line {anchor!r} to edit after (new llama.cpp?)")
        edited = text.replace(f"\n{anchor}\n", f"\n{anchor}\n{insert}\n", 1)
        path.unlink()
        path.write_text(edited, encoding="utf-8")
    stamp.write_text(want, encoding="utf-8")
    return tree


def host_build(
    context: Path,
    base: Path,
    variants: str,
    ccache: Path | None,
    jobs: int,
    runner: Runner | None = None,
) -> tuple[Path, float]:
    """Build llama-server on the host from the placed source with the image's flags, in
    ``base`` (``base/llama.cpp``, ``base/build``: the image's /src layout, so ccache
    shares objects). Returns the binary and the seconds it took."""
    runner = runner or Runner()
    if runner.which("cmake") is None or runner.which("c++") is None:
        raise BenchError("the host build needs cmake and a C++ compiler (build-essential)")
    tree = host_tree(context, base, runner)
    build = base / "build"
    # ccache hashes the locale variables: drop them, as the build container has none.
    env = {k: v for k, v in runner.environ().items() if k != "LANG" and not k.startswith("LC_")}
    launcher: list[str] = []
    if ccache is not None and runner.which("ccache"):
        env.update(CCACHE_DIR=str(ccache), CCACHE_BASEDIR=str(base), CCACHE_COMPILERCHECK="content")
        launcher = ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    manifest = llama_source.read_manifest(context) or {}
    numbers = [
        f"-DLLAMA_BUILD_NUMBER={manifest.get('build_number', 0)}",
        f"-DLLAMA_BUILD_COMMIT={str(manifest.get('commit', 'unknown'))[:9]}",
    ]
    flags = [*CMAKE_FLAGS, *cpu_flags(variants), *numbers, *launcher]
    build_runner = replace(runner, env=env, extra_env={})
    start = time.monotonic()
    run(build_runner, ["cmake", "-S", str(tree), "-B", str(build), *flags])
    run(build_runner, ["cmake", "--build", str(build), "--target", "llama-server", f"-j{jobs}"])
    return build / "bin" / "llama-server", time.monotonic() - start


@contextmanager
def host_server(
    binary: Path, model: Path, threads: int, ctx: int, runner: Runner | None = None
) -> Iterator[str]:
    """Run the host-built llama-server on ``model``; yield its URL; always stop it."""
    port = free_port()
    env = {"LLAMA_ARG_UI": "false", "LLAMA_ARG_JINJA": "true"}
    command = [
        str(binary), "--host", "127.0.0.1", "--port", str(port), "-m", str(model),
        "-t", str(threads), "-c", str(ctx), "-np", "1",
    ]  # fmt: skip
    with (
        tempfile.TemporaryFile() as log,
        (runner or Runner()).background(command, log, env=env) as alive,
    ):
        wait_ready(f"http://127.0.0.1:{port}", alive)
        yield f"http://127.0.0.1:{port}"
