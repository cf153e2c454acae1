"""The supervisor/tools image, built and run for real with Podman.

Built through the one build path (`sandboxctl.stack.images`, what `invoke images.build`
runs), FROM scratch: Debian's python3.11, the venv, the libraries ldd found, tini and
busybox. Checked here: its size budget, that it holds no Debian system, and that the
agent, its imports and the `tools` service's userland work in it, read-only and non-root.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from sandboxctl._proc import Runner
from sandboxctl.config import find_root, load_settings
from sandboxctl.stack import supervisor_image

pytestmark = [pytest.mark.container, pytest.mark.slow]

TAG = "localhost/ai-sandbox-supervisor:dev"
MAX_IMAGE_BYTES = 120_000_000
"""The supervisor image's budget (issue 18)."""
HARDENED = ["--rm", "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `invoke host.prepare`")
    settings = load_settings(find_root(), require_file=False)
    supervisor_image.build_supervisor_image(
        find_root(), TAG, runner=Runner(), base_image=settings.base_image, log=lambda _: None
    )
    return TAG


def inside(image: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with the image's /bin/sh, hardened as Compose runs the services."""
    return podman("run", *HARDENED, "--network=none", image, "sh", "-c", script, check=False)


def test_image_is_at_most_120_mb(image: str) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    print(f"\n{image}: {size / 1e6:.1f} MB")
    assert size <= MAX_IMAGE_BYTES, f"{image} is {size / 1e6:.1f} MB, over 120 MB"


def test_no_package_manager_and_no_pip(image: str) -> None:
    probe = inside(
        image,
        "for p in /usr/bin/apt-get /usr/bin/dpkg /usr/bin/perl /bin/bash /opt/venv/bin/pip; do"
        " test -e $p && echo $p; done; true",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == ""


def test_a_closed_sandbox_s_git_has_no_remote_helper_but_https_has_ca_certificates(
    image: str,
) -> None:
    """Built without REMOTE_TOOLS (the egress proxy off): git cannot fetch over HTTPS at
    all and a venv gets no pip; Debian's CA bundle is there, named by SSL_CERT_FILE, for
    when the proxy is on."""
    probe = inside(
        image,
        "test -e /usr/lib/git-core/git-remote-https && echo helper;"
        " test -e /usr/share/python-wheels && echo wheels;"
        ' test -s "$SSL_CERT_FILE" && echo "bundle $SSL_CERT_FILE"; true',
    )
    assert probe.stdout.split("\n")[0] == "bundle /etc/ssl/certs/ca-certificates.crt", probe.stdout


def test_agent_runs_non_root_on_a_read_only_root(image: str) -> None:
    result = podman("run", *HARDENED, "--network=none", image, "sandbox-supervisor", "--help")
    assert "usage: sandbox-supervisor" in result.stdout
    who = inside(image, "id -u; id -g; touch /probe 2>&1; true")
    lines = who.stdout.split("\n")
    assert lines[:2] == ["10001", "10001"], who.stdout
    assert "Read-only file system" in who.stdout


def test_python_has_the_stdlib_the_package_and_the_model_commands_use(image: str) -> None:
    probe = inside(
        image,
        "python3 -c 'import ssl, sqlite3, json, zlib, hashlib, ctypes, subprocess, venv,"
        " unittest, sandbox_supervisor.cli, sandbox_supervisor.tools.service, openai,"
        ' pydantic, httpx; print("ok")\'',
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "ok"


def test_tools_userland_answers(image: str) -> None:
    """What a model's shell command reaches for: a shell, coreutils-like applets, getent."""
    probe = inside(
        image,
        "cd /tmp && printf 'b\\na\\n' > f && sort f | head -1 && grep -c a f && sed s/a/x/ f"
        " | tail -1 && find /tmp -name f && wc -l < f && getent hosts localhost | cut -d' ' -f1",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["a", "1", "x", "/tmp/f", "2", "127.0.0.1"], probe.stdout


def test_tools_service_serves_health_under_tini(image: str, tmp_path: Path) -> None:
    """`sandbox-supervisor serve` (the tools service) answers /health; tini is PID 1."""
    token = tmp_path / "tools_token"
    token.write_text(uuid.uuid4().hex + "\n")
    token.chmod(0o644)
    name = f"ai-sandbox-test-tools-{uuid.uuid4().hex[:10]}"
    try:
        podman(
            "run", "-d", "--name", name, "--read-only", "--cap-drop=ALL",
            "--security-opt=no-new-privileges", "-p", "127.0.0.1::8700",
            "-v", f"{token}:/run/secrets/tools_token:ro",
            "-e", "SUPERVISOR_TOOLS_TOKEN_FILE=/run/secrets/tools_token",
            image, "sandbox-supervisor", "serve", "--port", "8700",
        )  # fmt: skip
        port = podman("port", name, "8700/tcp").stdout.strip().rsplit(":", 1)[-1]
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                logs = podman("logs", name, check=False)
                pytest.fail(f"tools service never answered:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.3)
        init = podman("exec", name, "cat", "/proc/1/cmdline").stdout
        assert init.split("\0")[0] == "/usr/bin/tini", init
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)
