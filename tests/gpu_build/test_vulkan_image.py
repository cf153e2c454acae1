"""The Vulkan model-server image, compiled for real (`nox -s vulkan`; no GPU needed).

Proves model-server/Containerfile's Vulkan stages (GPU_BACKEND=vulkan): their packages come
from Debian's mirror, llama.cpp's Vulkan backend and shaders compile, and the FROM scratch
runtime root holds what the server, the Vulkan loader and Mesa's drivers load. With no
GPU, Mesa's lavapipe (a CPU Vulkan driver) is the device the server lists. Long on 2
cores: not a default session.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from sandboxctl._proc import Runner
from sandboxctl.config import find_root, load_settings
from sandboxctl.llama import source as llama_source
from sandboxctl.stack import model_image
from sandboxctl.stack.base_image import BaseImageSpec, build_base_image

pytestmark = [pytest.mark.container, pytest.mark.slow]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `invoke host.prepare`")
    pin, _origin, _result, _tree = llama_source.place_source()
    settings = load_settings(find_root(), require_file=False)
    # The Vulkan build stage's own base (Debian trixie's Vulkan headers; see the file).
    build_base_image(
        BaseImageSpec(
            tag=model_image.VULKAN_BUILD_BASE, suite="trixie", mirror=settings.debian_mirror
        ),
        Runner(),
        is_root=os.geteuid() == 0,
        log=lambda _: None,
    )
    ccache = llama_source.ccache_dir()
    ccache.mkdir(parents=True, exist_ok=True)
    tag = llama_source.image_tag(pin.version, "vulkan")
    command = model_image.model_build_argv(
        find_root(), tag, pin.version, "vulkan", ccache, **model_image.model_build_args(settings)
    )
    build = subprocess.run(command, capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stdout[-6000:] + build.stderr[-3000:]
    return tag


def test_vulkan_image_builds_and_reports_its_size(image: str) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    print(f"\n{image}: {size / 1e6:.0f} MB")
    assert size > 0


def test_server_starts_and_lists_a_vulkan_device_in_the_runtime_root(image: str) -> None:
    """Every library resolves (the server runs) and the Vulkan backend finds a device:
    lavapipe where there is no GPU (ggml skips CPU-type Vulkan devices unless
    GGML_VK_VISIBLE_DEVICES names them)."""
    listed = podman(
        "run", "--rm", "--network=none", "-e", "GGML_VK_VISIBLE_DEVICES=0",
        "--entrypoint", "/app/llama-server", image,
        "--list-devices", check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "Vulkan0" in listed.stdout + listed.stderr, listed.stdout + listed.stderr


def test_runs_non_root_with_the_shared_entrypoint_and_healthcheck(image: str) -> None:
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user == "10001:10001"
    files = podman(
        "run", "--rm", "--network=none", "--entrypoint", "/bin/sh", image, "-c",
        "test -x /app/entrypoint && test -x /app/healthcheck.sh && command -v nc",
        check=False,
    )  # fmt: skip
    assert files.returncode == 0, files.stderr
