"""Unit tests of sandboxctl.config: reading and validating the root `.env` answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sandboxctl.config import (
    ConfigError,
    find_root,
    load_settings,
    parse_dotenv,
    settings_from_mapping,
)

GOOD_ENV = """\
# answers
COMPOSE_PROJECT_NAME=ai-sandbox
SANDBOX_MODEL=tiny
GPU_BACKEND=cuda
MODEL_PORT=8081
PUBLISH_MODEL_PORT=true
VOLUME_LABEL=Z
LLAMA_CPP_VERSION=b6000
MACHINE_CPUS=6
MACHINE_MEMORY_MIB=16384
MACHINE_DISK_GIB=80
MACHINE_ROOTFUL=false
"""


def write_env(folder: Path, text: str) -> Path:
    (folder / ".env").write_text(text)
    return folder


def test_parse_dotenv_reads_quotes_exports_and_inline_comments() -> None:
    """Quoted values keep their spaces; `export` and trailing ` # comments` are dropped."""
    values = parse_dotenv(
        "export A=1\nB=\"two words\"  # note\nC='x # y'\nD=plain # comment\nE=\n\n# c\n"
    )
    assert values == {"A": "1", "B": "two words", "C": "x # y", "D": "plain", "E": ""}


def test_parse_dotenv_names_the_line_that_is_not_an_assignment() -> None:
    """A stray line is an error that says where it is."""
    with pytest.raises(ConfigError, match=r"\.env:2: not a KEY=value line"):
        parse_dotenv("A=1\njust words\n")


def test_parse_dotenv_refuses_a_key_without_a_value() -> None:
    """A bare name is not an assignment (python-dotenv would read it as unset)."""
    with pytest.raises(ConfigError, match=r"\.env:1: not a KEY=value line: 'MODEL_PORT'"):
        parse_dotenv("MODEL_PORT\nA=1\n")


def test_parse_dotenv_reads_values_literally() -> None:
    """No `${VAR}` interpolation: the values are the file's text, as before."""
    assert parse_dotenv("A=${HOME}/x\nB='${HOME}'\n") == {"A": "${HOME}/x", "B": "${HOME}"}


def test_parse_dotenv_ignores_crlf_line_endings() -> None:
    """A `.env` saved with Windows line endings reads the same."""
    assert parse_dotenv("A=1\r\nB=2\r\n") == {"A": "1", "B": "2"}


def test_load_settings_types_every_answer(tmp_path: Path) -> None:
    """Numbers become ints, true/false become bools, choices are kept."""
    settings = load_settings(write_env(tmp_path, GOOD_ENV), environ={})
    assert settings.gpu_backend == "cuda"
    assert settings.model_port == 8081
    assert settings.publish_model_port is True
    assert settings.volume_label == "Z"
    assert (settings.machine_cpus, settings.machine_memory_mib, settings.machine_disk_gib) == (
        6,
        16384,
        80,
    )
    assert settings.machine_rootful is False
    assert settings.source == tmp_path / ".env"


def test_load_settings_fills_absent_keys_with_the_template_defaults(tmp_path: Path) -> None:
    """Keys the file leaves out take the template's defaults."""
    settings = load_settings(write_env(tmp_path, "SANDBOX_MODEL=tiny\n"), environ={})
    assert settings.compose_project_name == "ai-sandbox"
    assert settings.machine_memory_mib == 8192
    assert settings.machine_name == "podman-machine-default"
    assert settings.engine_mode == "auto"


def test_environment_overrides_the_file_like_compose(tmp_path: Path) -> None:
    """A variable set in the environment wins over `.env`, as with Compose."""
    settings = load_settings(write_env(tmp_path, GOOD_ENV), environ={"MODEL_PORT": "9000"})
    assert settings.model_port == 9000


def test_replaced_settings_keep_their_typed_values(tmp_path: Path) -> None:
    """`dataclasses.replace` (tasks change one answer for a run) keeps the other answers."""
    settings = load_settings(write_env(tmp_path, GOOD_ENV), environ={})
    changed = dataclasses.replace(settings, sandbox_model="smollm2-135m-instruct")
    assert changed.sandbox_model == "smollm2-135m-instruct"
    assert (changed.model_port, changed.publish_model_port) == (8081, True)


def test_every_invalid_answer_is_reported_at_once(tmp_path: Path) -> None:
    """One error lists each bad key with what is accepted."""
    bad = "GPU_BACKEND=rocm\nMODEL_PORT=99999\nPUBLISH_MODEL_PORT=maybe\nVOLUME_LABEL=x\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write_env(tmp_path, bad), environ={})
    message = str(caught.value)
    for fragment in (
        "GPU_BACKEND='rocm'",
        "MODEL_PORT=99999: out of range",
        "PUBLISH_MODEL_PORT='maybe'",
        "VOLUME_LABEL='x'",
    ):
        assert fragment in message


def test_machine_memory_below_minimum_is_rejected(tmp_path: Path) -> None:
    """A machine too small to run the stack is refused with the accepted range."""
    with pytest.raises(ConfigError, match="MACHINE_MEMORY_MIB=256: out of range"):
        load_settings(write_env(tmp_path, "MACHINE_MEMORY_MIB=256\n"), environ={})


def test_non_numeric_cpus_are_rejected(tmp_path: Path) -> None:
    """`MACHINE_CPUS=four` is not a number."""
    with pytest.raises(ConfigError, match="MACHINE_CPUS='four': expected a whole number"):
        load_settings(write_env(tmp_path, "MACHINE_CPUS=four\n"), environ={})


def test_docker_host_must_be_a_url(tmp_path: Path) -> None:
    """A bare path in DOCKER_HOST is refused (clients need a scheme)."""
    with pytest.raises(ConfigError, match=r"DOCKER_HOST='/run/podman/podman\.sock'"):
        load_settings(write_env(tmp_path, "DOCKER_HOST=/run/podman/podman.sock\n"), environ={})


def test_missing_env_file_is_an_error_that_says_how_to_get_one(tmp_path: Path) -> None:
    """Without `.env` the loader says to render the sandbox."""
    with pytest.raises(ConfigError, match=r"no \.env in .*copier copy"):
        load_settings(tmp_path, environ={})


def test_missing_env_file_allowed_gives_defaults(tmp_path: Path) -> None:
    """`require_file=False` (used by doctor and images.base) falls back to defaults."""
    settings = load_settings(tmp_path, environ={}, require_file=False)
    assert settings.sandbox_model == "tiny"


def test_find_root_walks_up_to_the_folder_with_env(tmp_path: Path) -> None:
    """Tasks run from a subfolder still find the sandbox root."""
    write_env(tmp_path, GOOD_ENV)
    nested = tmp_path / "supervisor" / "src"
    nested.mkdir(parents=True)
    assert find_root(nested) == tmp_path.resolve()


def test_publish_flag_without_its_compose_file_is_an_error() -> None:
    """PUBLISH_MODEL_PORT=true while COMPOSE_FILE lacks compose.publish.yaml would publish
    nothing: the settings say so instead of silently ignoring the flag."""
    with pytest.raises(ConfigError, match=r"compose\.publish\.yaml"):
        settings_from_mapping({"PUBLISH_MODEL_PORT": "true", "COMPOSE_FILE": "compose.yaml"})


def test_gpu_backend_without_its_compose_file_is_an_error() -> None:
    """GPU_BACKEND=cuda needs compose.cuda.yaml in COMPOSE_FILE for the device passthrough."""
    with pytest.raises(ConfigError, match=r"compose\.cuda\.yaml"):
        settings_from_mapping({"GPU_BACKEND": "cuda", "COMPOSE_FILE": "compose.yaml"})


def test_consistent_compose_file_is_accepted() -> None:
    """Flags and COMPOSE_FILE that agree load fine."""
    settings = settings_from_mapping(
        {
            "PUBLISH_MODEL_PORT": "true",
            "GPU_BACKEND": "vulkan",
            "COMPOSE_FILE": "compose.yaml:compose.vulkan.yaml:compose.publish.yaml",
        }
    )
    assert settings.publish_model_port is True
