"""Unit tests of sandboxctl.stack.build and .images, the one build path, against a fake
`podman`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fakes.harness import FakeTools

from sandboxctl.config import load_settings
from sandboxctl.llama import source as llama_source
from sandboxctl.stack import StackError, model_image, prepare_images
from sandboxctl.stack.build import (
    BuildResult,
    ImageBuildError,
    build_argv,
    build_image,
    log_path,
    progress_text,
)


def test_build_argv_never_pulls_keeps_healthchecks_and_passes_target_and_args() -> None:
    context = Path("model-server")
    argv = build_argv(context, context / "Containerfile", "sbx/model:dev", "server",
                      {"LLAMA_CPP_VERSION": "b6000"}, {Path("/cache"): "/ccache"})  # fmt: skip
    assert argv == [
        "podman", "build", "--pull=never", "--format", "docker", "-f", "model-server/Containerfile",
        "-t", "sbx/model:dev", "--target", "server", "-v", "/cache:/ccache",
        "--build-arg", "LLAMA_CPP_VERSION=b6000", "model-server",
    ]  # fmt: skip


def build(
    tmp_path: Path, state: dict[str, object], *, verbose: bool = False
) -> tuple[BuildResult, list[str]]:
    fakes = FakeTools.create(tmp_path, state=state)
    argv = build_argv(tmp_path, tmp_path / "Containerfile", "sbx/x:1")
    messages: list[str] = []
    result = build_image(
        argv, "sbx/x:1", runner=fakes.runner(), log_file=tmp_path / "logs/x.log",
        log=messages.append, verbose=verbose,
    )  # fmt: skip
    return result, messages


def test_build_ends_with_a_summary_line_of_image_size_and_time(tmp_path: Path) -> None:
    result, messages = build(tmp_path, {"image_size": 42_000_000})
    assert result.size_bytes == 42_000_000
    assert messages[-1].startswith("built sbx/x:1: 42 MB in ")


def test_build_output_goes_to_the_log_file_not_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build(tmp_path, {})
    assert "STEP 1/2" in (tmp_path / "logs/x.log").read_text()
    assert "STEP 1/2" not in capsys.readouterr().out


def test_verbose_build_streams_its_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build(tmp_path, {}, verbose=True)
    assert "STEP 1/2" in capsys.readouterr().out


def test_failed_build_shows_the_last_lines_and_the_log_path(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError) as raised:
        build(tmp_path, {"build_rc": 2})
    message = str(raised.value)
    assert "exit 2" in message
    assert "STEP 1/2" in message
    assert str(tmp_path / "logs/x.log") in message


def test_live_line_shows_the_step_then_the_compile_counter() -> None:
    text = progress_text("STEP 4/9: RUN cmake --build build", "starting")
    assert text == "step 4/9: RUN cmake --build build"
    text = progress_text("[90/200] Building CXX object ggml.o", text)
    assert text.endswith("compile 45%")
    assert progress_text("[92/200] Building CXX object x.o", text).endswith("compile 46%")
    assert progress_text("warning: something", text) == text


def test_live_line_reads_the_steps_of_a_multi_stage_build() -> None:
    """Podman prefixes each step with its stage; that counter is not the compile's."""
    text = progress_text("[4/10] STEP 11/12: RUN build-llama cpu", "starting")
    assert text == "step 11/12: RUN build-llama cpu"
    assert "compile" not in text
    assert progress_text("[10/10] COMMIT localhost/sbx-model-server:b1-cpu", text) == text


def test_log_path_is_in_the_sandbox_cache(tmp_path: Path) -> None:
    path = log_path(tmp_path, "localhost/sbx-model-server:b1-cpu")
    assert path == tmp_path / ".cache/build-logs/sbx-model-server_b1-cpu.log"


def test_unknown_service_to_build_names_the_choices() -> None:
    with pytest.raises(StackError, match="model-server, supervisor or egress"):
        prepare_images(object(), only="nosuch")  # type: ignore[arg-type]


def placed_root(tmp_path: Path) -> Path:
    """A sandbox folder whose model-server/context holds the pinned source's manifest."""
    root = tmp_path / "sandbox"
    (root / "model-server" / "context").mkdir(parents=True)
    shutil.copy(llama_source.sources_file(), root / "model-server" / "llama-cpp-sources.yaml")
    manifest = {"version": "b11312", "origin": "pypi", "archive_sha256": "a" * 64}
    (root / "model-server" / "context" / "source.json").write_text(json.dumps(manifest))
    return root


def test_the_model_build_never_pulls_mounts_ccache_and_passes_the_answers(
    tmp_path: Path,
) -> None:
    """The one model-server build command: the pin's and the answers' build arguments."""
    answers = {"BASE_IMAGE": "localhost/base:x", "LLAMA_CPU_VARIANTS": "x64"}
    settings = load_settings(tmp_path, environ=answers, require_file=False)
    tag = llama_source.image_tag("b11312", "cpu", "sbx")
    command = model_image.model_build_argv(
        placed_root(tmp_path), tag, "b11312", "cpu", tmp_path / "cc",
        **model_image.model_build_args(settings),
    )  # fmt: skip
    assert command[:3] == ["podman", "build", "--pull=never"]
    assert command[command.index("--target") + 1] == "server"
    assert command[command.index("-v") + 1] == f"{tmp_path / 'cc'}:/ccache"
    assert command[command.index("-t") + 1] == "localhost/sbx-model-server:b11312-cpu"
    for arg in ("DEBIAN_IMAGE=localhost/base:x", "CPU_VARIANTS=x64", "LLAMA_BUILD_NUMBER=11312"):
        assert arg in command
    assert f"LLAMA_SOURCE_SHA256={'a' * 64}" in command


def test_the_model_build_picks_the_backend_by_build_argument(tmp_path: Path) -> None:
    """One Containerfile for every backend: GPU_BACKEND names its stages."""
    root = placed_root(tmp_path)
    command = model_image.model_build_argv(root, "t", "b11312", "vulkan", None)
    assert command[command.index("-f") + 1] == str(root / "model-server" / "Containerfile")
    assert "GPU_BACKEND=vulkan" in command
    with pytest.raises(llama_source.SourceError, match="unknown GPU backend"):
        model_image.model_build_argv(root, "t", "b11312", "rocm", None)
