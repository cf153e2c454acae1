"""run_command: timeouts kill the whole group, output is capped and clean, env has no secret."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from sandbox_supervisor.tools import InProcessExecutor, Limits, ToolRequest, ToolResult, Workspace
from sandbox_supervisor.trajectory import encode_record


def _run(executor: InProcessExecutor, command: str, timeout_s: float | None = None) -> ToolResult:
    args: dict[str, object] = {"command": command}
    if timeout_s is not None:
        args["timeout_s"] = timeout_s
    return executor.execute(ToolRequest("c1", "run_command", args))


def _group_members(marker: str) -> list[str]:
    """Live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\x00", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state not in ("Z", "X"):
            found.append(f"{entry}: {cmdline}")
    return found


def test_yes_is_cut_at_the_timeout_with_capped_output(executor: InProcessExecutor) -> None:
    started = time.monotonic()
    result = _run(executor, "yes", timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert result.status == "timeout"
    assert result.exit_code is None
    assert result.truncated
    assert len(result.output.encode()) < 4096 + 200
    assert "[truncated " in result.output
    assert "timeout]" in result.output
    assert elapsed < 0.5 + 0.3 + 1.0


def _marker() -> str:
    """A sleep duration no other test run uses, to find this test's processes."""
    return f"1000.{random.randrange(10**9)}"


def test_background_sleep_does_not_hang_and_leaves_no_process(executor: InProcessExecutor) -> None:
    marker = _marker()
    started = time.monotonic()
    result = _run(executor, f"sleep {marker} & echo started")
    assert time.monotonic() - started < 3
    assert result.exit_code == 0
    assert "started" in result.output
    assert result.details["killed_leftovers"] is True
    assert _group_members(f"sleep {marker}") == []


def test_command_that_ignores_term_is_killed(executor: InProcessExecutor) -> None:
    marker = _marker()
    started = time.monotonic()
    result = _run(executor, f"trap '' TERM; sleep {marker}; echo survived", timeout_s=0.3)
    assert result.status == "timeout"
    assert "survived" not in result.output
    assert time.monotonic() - started < 3
    assert _group_members(f"sleep {marker}") == []


def test_binary_and_ansi_output_log_as_valid_json(executor: InProcessExecutor) -> None:
    result = _run(
        executor,
        r"printf '\033[1;31mred\033[0m \033]0;title\007plain\n'; head -c 512 /dev/urandom; "
        r"printf '\377\376\000end\n'",
    )
    line = encode_record({"type": "tool_result", **result.to_dict()})
    assert line.count(b"\n") == 1
    decoded = json.loads(line)
    assert "\x1b" not in decoded["output"]
    assert "red plain" in decoded["output"]
    assert "\ufffd" in decoded["output"]
    assert decoded["output"].rstrip().endswith("end")


def test_environment_shows_no_secret(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-leak-1")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-leak-2")
    monkeypatch.setenv("SUPERVISOR_API_KEY_FILE", "/run/secrets/model_api_key")
    monkeypatch.setenv("DB_PASSWORD", "pw-leak-3")
    monkeypatch.setenv("LC_ALL", "C.UTF-8 the-model-key-4")
    executor = InProcessExecutor(workspace, Limits(secrets=("the-model-key-4",)))
    result = _run(executor, "env")
    assert result.status == "ok"
    for leak in ("sk-leak-1", "ghp-leak-2", "model_api_key", "pw-leak-3", "the-model-key-4"):
        assert leak not in result.output
    assert "PATH=" in result.output


def test_commands_get_the_egress_proxy_and_ca_bundle_but_no_proxy_credentials(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With EGRESS_ALLOW on, the tools service's environment names the proxy: commands
    (pip, git, Python) need it, since they resolve no name themselves."""
    monkeypatch.setenv("HTTPS_PROXY", "http://egress:3128")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw-leak-5@egress:3128")
    result = _run(InProcessExecutor(workspace, Limits()), "env")
    assert "HTTPS_PROXY=http://egress:3128" in result.output
    assert "no_proxy=localhost,127.0.0.1" in result.output
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in result.output
    assert "pw-leak-5" not in result.output


def test_failed_command_returns_output_and_exit_code(executor: InProcessExecutor) -> None:
    result = _run(executor, "echo oops >&2; exit 3")
    assert result.status == "failed"
    assert result.exit_code == 3
    assert "oops" in result.output


def test_stdin_is_dev_null(executor: InProcessExecutor) -> None:
    started = time.monotonic()
    result = _run(executor, "cat; echo eof")
    assert result.output.strip() == "eof"
    assert time.monotonic() - started < 2


def test_command_runs_in_the_workspace_root(
    workspace: Workspace, executor: InProcessExecutor
) -> None:
    assert _run(executor, "pwd").output.strip() == str(workspace.root)


def test_command_that_closes_its_output_still_runs_to_completion(
    executor: InProcessExecutor,
) -> None:
    result = _run(executor, "exec >/dev/null 2>&1; sleep 0.4; touch done")
    assert result.status == "ok"
    assert (executor.workspace.root / "done").exists()


def test_the_model_api_key_is_redacted_from_output(workspace: Workspace) -> None:
    (workspace.root / "k").write_text("key=the-model-key-5\n")
    executor = InProcessExecutor(workspace, Limits(secrets=("the-model-key-5",)))
    for name, args in (("run_command", {"command": "cat k"}), ("read_file", {"path": "k"})):
        result = executor.execute(ToolRequest("c", name, args))
        assert "the-model-key-5" not in result.output
        assert "[redacted]" in result.output
