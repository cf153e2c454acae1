"""Unit tests of sandboxctl.images (`podman build --pull=never`) against a fake `podman`."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.harness import FakeTools

from sandboxctl.images import ImageBuildError, build_argv, build_image


def test_build_argv_never_pulls_and_passes_target_and_args() -> None:
    argv = build_argv(Path("model"), Path("model/Containerfile"), "sbx/model:dev", "server",
                      {"LLAMA_CPP_VERSION": "b6000"})  # fmt: skip
    assert argv == [
        "podman", "build", "--pull=never", "-f", "model/Containerfile", "-t", "sbx/model:dev",
        "--target", "server", "--build-arg", "LLAMA_CPP_VERSION=b6000", "model",
    ]  # fmt: skip


def test_build_image_reports_tag_and_size(tmp_path: Path) -> None:
    fakes = FakeTools.create(tmp_path, state={"image_size": 42_000_000})
    result = build_image(tmp_path, tmp_path / "Containerfile", "sbx/x:1", runner=fakes.runner(),
                         log=lambda _m: None)  # fmt: skip
    assert (result.tag, result.size_bytes) == ("sbx/x:1", 42_000_000)


def test_failed_build_raises_with_the_exit_code(tmp_path: Path) -> None:
    fakes = FakeTools.create(tmp_path, state={"build_rc": 2})
    with pytest.raises(ImageBuildError, match="exit 2"):
        build_image(tmp_path, tmp_path / "Containerfile", "sbx/x:1", runner=fakes.runner(),
                    log=lambda _m: None)  # fmt: skip
