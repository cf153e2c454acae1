"""Settings from SUPERVISOR_* variables and a file: validation names the setting and range."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox_supervisor.config import ConfigError, load_settings
from sandbox_supervisor.limits import AgentLimits, Limits


def test_defaults_load_from_an_empty_environment() -> None:
    settings = load_settings({})
    assert settings.tool_mode == "auto"
    assert settings.server_root == "http://127.0.0.1:8080"


def test_out_of_range_value_names_the_variable_and_the_range() -> None:
    with pytest.raises(
        ConfigError, match=r"SUPERVISOR_MAX_STEPS='0': must be an integer from 1 to 10000"
    ):
        load_settings({"SUPERVISOR_MAX_STEPS": "0"})


def test_bad_choice_lists_the_allowed_values() -> None:
    with pytest.raises(
        ConfigError, match="SUPERVISOR_TOOL_MODE='xml': must be one of auto, native, json"
    ):
        load_settings({"SUPERVISOR_TOOL_MODE": "xml"})


def test_unknown_variable_suggests_the_close_name() -> None:
    with pytest.raises(ConfigError, match="did you mean SUPERVISOR_MAX_STEPS"):
        load_settings({"SUPERVISOR_MAX_STEP": "3"})


def test_api_key_is_read_from_its_file_and_kept_out_of_public_data(tmp_path: Path) -> None:
    key_file = tmp_path / "model_api_key"
    key_file.write_text("s3cr3t-key\n")
    settings = load_settings({"SUPERVISOR_API_KEY_FILE": str(key_file)})
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "s3cr3t-key"
    assert "s3cr3t-key" not in repr(settings)
    public = settings.public_dict()
    assert "s3cr3t-key" not in str(public)
    assert public["api_key_set"] is True


def test_missing_key_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SUPERVISOR_API_KEY_FILE: cannot read key file"):
        load_settings({"SUPERVISOR_API_KEY_FILE": str(tmp_path / "absent")})


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "supervisor.toml"
    config.write_text('[supervisor]\nmax_steps = 7\nmodel = "from-file"\n')
    settings = load_settings({"SUPERVISOR_CONFIG_FILE": str(config), "SUPERVISOR_MAX_STEPS": "9"})
    assert (settings.run.max_steps, settings.model) == (9, "from-file")


def test_bad_value_in_the_file_names_the_file_key(tmp_path: Path) -> None:
    config = tmp_path / "supervisor.json"
    config.write_text('{"temperature": 5}')
    with pytest.raises(
        ConfigError, match=r"temperature \(config file\)=5: must be a number from 0 to 2"
    ):
        load_settings({}, config)


def test_the_limits_defaults_are_declared_once_in_the_limits() -> None:
    settings = load_settings({})
    assert settings.agent_limits() == AgentLimits()
    assert settings.tool_limits() == Limits()


def test_a_nested_limit_keeps_its_flat_setting_name() -> None:
    settings = load_settings({"SUPERVISOR_MAX_REPLY_TOKENS": "256", "SUPERVISOR_MAX_STEPS": "4"})
    assert (settings.run.reply_tokens, settings.run.max_steps) == (256, 4)
    assert settings.public_dict()["max_reply_tokens"] == 256
    with pytest.raises(ConfigError, match="unknown setting SUPERVISOR_SECRETS"):
        load_settings({"SUPERVISOR_SECRETS": "not a setting"})
