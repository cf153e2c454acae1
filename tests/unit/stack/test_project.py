"""Unit tests of sandboxctl.stack: API key, model tarball, model loading and task runs.

Podman and Compose are replaced by a recording fake executable on PATH (the real stack
runs in tests/e2e); each test says what the fake answers.
"""

from __future__ import annotations

import inspect
import json
import stat
import tarfile
from pathlib import Path

import pytest
from fakes.stack import ROOT, calls, make_stack

from sandboxctl import stack
from sandboxctl._proc import Result
from sandboxctl.config import load_settings
from sandboxctl.download import sha256_file
from sandboxctl.stack import project


def test_api_key_is_created_once_and_kept(tmp_path: Path) -> None:
    """A second `up` keeps the key the containers already use."""
    first = stack.ensure_api_key(tmp_path).read_text()
    second = stack.ensure_api_key(tmp_path).read_text()
    assert first == second
    assert len(first) >= 32


def test_api_key_folder_is_private_and_file_readable_in_containers(tmp_path: Path) -> None:
    """secrets/ is 0700 for the host; the bind-mounted file is 0644 for container users."""
    key = stack.ensure_api_key(tmp_path)
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o644


def test_model_tarball_holds_model_and_checksum_owned_by_root(tmp_path: Path) -> None:
    """The volume gets the model and its SHA-256 stamp, root-owned and world-readable."""
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    digest = sha256_file(model)
    tarball = stack.model_tarball(model, "tiny.gguf", digest, tmp_path / "m.tar")
    with tarfile.open(tarball) as tar:
        members = {member.name: member for member in tar.getmembers()}
        assert set(members) == {"tiny.gguf", "tiny.gguf.sha256"}
        assert all(m.uid == 0 and m.mode == 0o644 for m in members.values())
        stamp = tar.extractfile("tiny.gguf.sha256")
        assert stamp is not None
        assert stamp.read().decode().split()[0] == digest


def test_load_model_skips_when_volume_has_the_same_bytes_fake_podman(tmp_path: Path) -> None:
    """A fake podman reports the same checksum in the volume: nothing is imported."""
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(10))
    digest = sha256_file(model)
    built, log = make_stack(tmp_path, {"run": (0, f"{digest}  tiny.gguf\n")})
    assert built.load_model(model, "img", tmp_path) is False
    assert not [c for c in calls(log) if c[1:3] == ["volume", "import"]]


def test_load_model_imports_when_volume_differs_fake_podman(tmp_path: Path) -> None:
    """A fake podman finds no checksum in the volume: the model is imported and the
    temporary tarball removed."""
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(10))
    built, log = make_stack(tmp_path, {"run": (1, "")})
    assert built.load_model(model, "img", tmp_path) is True
    imports = [c for c in calls(log) if c[1:3] == ["volume", "import"]]
    assert imports
    project = load_settings(ROOT, require_file=True).compose_project_name
    assert imports[0][3] == f"{project}_model-data"
    assert not (tmp_path / ".tiny.gguf.tar").exists()


def test_failed_volume_import_raises_with_the_reason_fake_podman(tmp_path: Path) -> None:
    """A fake podman fails the import: the error names the command."""
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    built, _ = make_stack(tmp_path, {"run": (1, ""), "volume import": (125, "no such volume")})
    with pytest.raises(stack.StackError, match="podman volume import"):
        built.load_model(model, "img", tmp_path)


def test_wait_ready_returns_once_health_answers_fake_compose(tmp_path: Path) -> None:
    """A fake compose whose health probe succeeds: readiness is immediate."""
    built, log = make_stack(tmp_path, {})
    assert built.wait_ready(deadline_s=5, every_s=0.01) < 5
    assert calls(log)[0][-4:] == ["exec", "-T", "model-server", "/app/healthcheck.sh"]


def test_wait_ready_fails_at_the_deadline_with_server_logs_fake_compose(tmp_path: Path) -> None:
    """A fake compose whose probe always fails: a clear error after the deadline, no hang."""
    built, _ = make_stack(tmp_path, {"--project-directory": (1, "loading model\n")})
    with pytest.raises(stack.StackError, match="not ready after"):
        built.wait_ready(deadline_s=0.05, every_s=0.01)


def test_readiness_probes_come_often_at_first_then_less_often() -> None:
    """A tiny model is ready within a second: the first probes come a quarter of a second
    apart, and the interval doubles up to two seconds for a model that loads for minutes."""
    intervals = project.probe_intervals(0.25, 2.0)
    assert [next(intervals) for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    defaults = inspect.signature(project.Stack.wait_ready).parameters
    assert (defaults["every_s"].default, defaults["most_s"].default) == (0.25, 2.0)


def test_run_task_execs_the_supervisor_with_a_log_path_fake_compose(tmp_path: Path) -> None:
    """The task runs in the supervisor container and its trajectory path is returned."""
    built, log = make_stack(tmp_path, {})
    result, log_path = built.run_task("write hello.txt")
    assert result.ok
    argv = calls(log)[-1]
    assert argv[argv.index("supervisor") :][:3] == ["supervisor", "sandbox-supervisor", "run"]
    assert argv[-2:] == ["--", "write hello.txt"]
    assert argv[argv.index("--log") + 1] == log_path
    assert log_path.startswith("/logs/")
    assert log_path.endswith(".jsonl")


def test_run_trajectory_file_is_named_after_the_run_id_fake_compose(tmp_path: Path) -> None:
    """`invoke run` prints the run id and `runs.show --id` takes it: the file the
    supervisor writes carries the same id, not a second time stamp."""
    built, log = make_stack(tmp_path, {})
    _, log_path = built.run_task("write hello.txt")
    argv = calls(log)[-1]
    run_id = argv[argv.index("--run-id") + 1]
    assert log_path == f"/logs/{run_id}.jsonl"


def test_runs_started_in_the_same_second_get_different_ids_fake_compose(tmp_path: Path) -> None:
    built, _ = make_stack(tmp_path, {})
    paths = {built.run_task(f"task {n}")[1] for n in range(5)}
    assert len(paths) == 5


def test_task_starting_with_a_dash_stays_the_task_fake_compose(tmp_path: Path) -> None:
    """A task like "-v the output" comes after `--`, so it is never read as an option."""
    built, log = make_stack(tmp_path, {})
    built.run_task("-v the output", ["--max-steps", "3"])
    argv = calls(log)[-1]
    assert argv[-2:] == ["--", "-v the output"]
    assert argv.index("--max-steps") < argv.index("--")


def test_run_task_passes_the_check_before_the_task_fake_compose(tmp_path: Path) -> None:
    """`invoke run --check CMD` reaches `sandbox-supervisor run --check CMD`."""
    built, log = make_stack(tmp_path, {})
    built.run_task("write hello.txt", check="test -f hello.txt")
    argv = calls(log)[-1]
    assert argv[-4:] == ["--check", "test -f hello.txt", "--", "write hello.txt"]
    built.run_task("no check")
    assert "--check" not in calls(log)[-1]


def test_empty_secret_left_by_a_crash_is_replaced(tmp_path: Path) -> None:
    """A secret file too short to be ours (empty after a crash) gets a fresh token."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "model_api_key").write_text("")
    key = stack.ensure_api_key(tmp_path)
    assert len(key.read_text()) >= stack.MIN_SECRET_CHARS
    assert [p.name for p in folder.iterdir()] == ["model_api_key"]  # no temporary left


def test_failed_compose_step_shows_its_last_lines_fake_compose(tmp_path: Path) -> None:
    """A captured failure carries Compose's own message, never an empty detail."""
    built, _log = make_stack(tmp_path, {})
    failure = Result(("compose", "create"), 1, "", "one\ntwo\nError: catatonit missing\n")
    with pytest.raises(stack.StackError, match="catatonit missing"):
        built.require(failure, "compose create")


def test_failed_streamed_step_points_at_its_output() -> None:
    """When the output went to the terminal, the error says so instead of ending blank."""
    built = object.__new__(stack.Stack)
    with pytest.raises(stack.StackError, match="its output is above"):
        built.require(Result(("compose", "up"), 1), "compose up")


def test_run_refuses_a_stack_that_is_not_running_fake_compose(tmp_path: Path) -> None:
    built, _log = make_stack(tmp_path, {"--project-directory": (0, "model-server\n")})
    with pytest.raises(stack.StackError, match="invoke up"):
        stack.require_running(built)


def test_running_stack_passes_the_running_check_fake_compose(tmp_path: Path) -> None:
    built, log = make_stack(tmp_path, {"--project-directory": (0, "model-server\nsupervisor\n")})
    stack.require_running(built)
    assert any("--status" in argv and "running" in argv for argv in calls(log))


def test_finished_exit_codes_come_from_the_supervisors_contract() -> None:
    """The host reads the supervisor's exit_codes.json: no copy of the codes to drift."""
    from sandbox_supervisor import exit_codes

    assert stack.FINISHED_EXIT_CODES == exit_codes.FINISHED
    assert 0 in stack.FINISHED_EXIT_CODES


def test_finished_exit_codes_follow_a_changed_contract(tmp_path: Path) -> None:
    contract = tmp_path / "exit_codes.json"
    contract.write_text(json.dumps({"codes": {"a": {"code": 7, "finished": True},
                                              "b": {"code": 8, "finished": False}}}))  # fmt: skip
    assert stack.project.finished_exit_codes(stack.project.read_contract(contract)) == {7}


def test_check_failed_code_comes_from_the_contract() -> None:
    from sandbox_supervisor import exit_codes

    assert exit_codes.CODES["check_failed"] == stack.CHECK_FAILED_EXIT_CODE
    assert stack.CHECK_FAILED_EXIT_CODE in stack.FINISHED_EXIT_CODES


def test_up_reuses_a_model_already_in_the_model_dir_and_fetches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`model.fetch` (or `model.use`) put the GGUF in place: `up` uses it, no second
    download, in the same directory `model.fetch` writes ($SANDBOX_MODEL_DIR here)."""
    import dataclasses

    from sandboxctl.catalog import catalog
    from sandboxctl.stack.up import prepare_model

    built, _log = make_stack(tmp_path, {})
    built.settings = dataclasses.replace(built.settings, sandbox_model="smollm2-135m-instruct")
    monkeypatch.setenv("SANDBOX_MODEL_DIR", str(tmp_path / "models"))
    model = catalog.load_catalog(ROOT / "model-server" / "catalog.yaml").get(
        "smollm2-135m-instruct"
    )
    placed = catalog.model_path(model, catalog.model_dir())
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"GGUF")

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("downloaded again")

    monkeypatch.setattr(catalog, "fetch_model", no_download)
    assert prepare_model(built) == placed
