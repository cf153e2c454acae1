"""The contracts other parts rely on: exit codes, settings from options, the dialects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox_supervisor import exit_codes
from sandbox_supervisor.cli import main
from sandbox_supervisor.client import ModelReply, ToolCallOut
from sandbox_supervisor.config import ConfigError, load_settings
from sandbox_supervisor.dialects import JsonDialect, NativeDialect, dialect
from sandbox_supervisor.limits import AgentLimits, Limits

CONTRACT = Path(exit_codes.__file__).with_name("exit_codes.json")


def test_exit_codes_json_prints_the_shipped_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exit-codes", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(CONTRACT.read_text(encoding="utf-8"))
    finished = {entry["code"] for entry in printed["codes"].values() if entry["finished"]}
    assert finished == {0, 3, 4, 7} == exit_codes.FINISHED


def test_every_run_status_maps_to_a_code_of_the_contract() -> None:
    data = json.loads(CONTRACT.read_text(encoding="utf-8"))
    assert set(data["statuses"].values()) <= set(data["codes"])
    assert exit_codes.for_status("step_budget") == 3
    assert exit_codes.for_status("no such status") == exit_codes.ERROR == 1
    assert exit_codes.USAGE == 2
    assert exit_codes.INTERRUPTED == 130


def test_exit_codes_table_names_every_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exit-codes"]) == 0
    out = capsys.readouterr().out
    for name in json.loads(CONTRACT.read_text(encoding="utf-8"))["codes"]:
        assert name in out


def test_options_win_over_environment_and_errors_name_the_option() -> None:
    env = {"SUPERVISOR_MAX_STEPS": "5", "SUPERVISOR_WORKSPACE": "/env"}
    settings = load_settings(
        env, None, {"max_steps": 7, "workspace": Path("/opt"), "model_url": None}
    )
    assert settings.run.max_steps == 7
    assert settings.workspace == Path("/opt")
    with pytest.raises(ConfigError, match="--max-steps=0"):
        load_settings(env, None, {"max_steps": 0})
    with pytest.raises(ConfigError, match="SUPERVISOR_MAX_STEPS='0'"):
        load_settings({"SUPERVISOR_MAX_STEPS": "0"}, None, {})


def test_settings_build_their_own_limits() -> None:
    settings = load_settings(
        {"SUPERVISOR_MAX_STEPS": "4", "SUPERVISOR_READ_CAP_BYTES": "2048"}, None
    )
    assert settings.agent_limits() == AgentLimits(
        max_steps=4,
        max_wall_s=settings.run.max_wall_s,
        max_total_tokens=settings.run.max_total_tokens,
        max_invalid_replies=settings.run.max_invalid_replies,
        max_tool_timeouts=settings.run.max_tool_timeouts,
        max_observation_chars=settings.run.max_observation_chars,
    )
    assert settings.agent_limits(min_steps=9).max_steps == 9
    limits = settings.tool_limits()
    assert isinstance(limits, Limits)
    assert limits.read_cap_bytes == 2048
    assert limits.secrets == ()


def test_the_dialects_read_the_same_action_from_their_own_shapes() -> None:
    native = NativeDialect().parse(
        ModelReply(None, [ToolCallOut("c1", "read_file", '{"path": "a"}')]), 3, {"read_file"}
    )
    constrained = JsonDialect().parse(
        ModelReply('{"thought": "", "action": {"tool": "read_file", "args": {"path": "a"}}}'),
        3,
        {"read_file"},
    )
    assert [(a.name, a.arguments) for a in native.actions] == [("read_file", {"path": "a"})]
    assert [(a.name, a.arguments) for a in constrained.actions] == [("read_file", {"path": "a"})]
    assert native.actions[0].call_id == constrained.actions[0].call_id == "3.0"
    assert NativeDialect().observation("c1", "x")["role"] == "tool"
    assert JsonDialect().observation(None, "x")["role"] == "user"
    with pytest.raises(ValueError, match="native or json"):
        dialect("yaml")
