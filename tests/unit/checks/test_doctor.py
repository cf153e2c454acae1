"""Unit tests of sandboxctl.checks.doctor: each check on its own, against a fake `podman` on PATH,
an injected socket ping, and small repository trees in tmp_path."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.harness import FakeTools
from rich.console import Console

from sandboxctl.checks import doctor, files
from sandboxctl.checks.base import Check, Probes
from sandboxctl.host import rootless
from sandboxctl.host.platform import HostInfo, Platform

ROOT_HOST = HostInfo(platform=Platform.LINUX, is_root=True, uid=0, has_systemd=False)
USER_HOST = HostInfo(platform=Platform.LINUX, is_root=False, uid=1000, has_systemd=False)
NO_RUNTIME_DIR = rootless.Problem(
    "/run/user/1000 does not exist", ["sudo", "install", "-d", "/run/user/1000"]
)
INFO = {
    "host": {
        "cgroupVersion": "v1",
        "cgroupControllers": ["cpu", "memory", "pids"],
        "ociRuntime": {"name": "runc"},
        "security": {"rootless": False},
    }
}
CATALOG = """\
schema: 1
default: tiny
models:
  tiny:
    description: test
    generated: true
    url: null
    sha256: null
    sha256_source: null
    size_bytes: null
    size: 17 MB
    license: MIT
    chat_template: llama-2
    tool_calling: false
    context: 1024
  real:
    description: test
    generated: false
    url: https://example.org/real.gguf
    sha256: "{sha}"
    sha256_source: https://example.org/page
    size_bytes: 5
    size: 5 B
    license: MIT
    chat_template: chatml
    tool_calling: true
    context: 8192
  base:
    description: a base model, no chat template
    generated: false
    url: https://example.org/base.gguf
    sha256: "{sha}"
    sha256_source: https://example.org/page
    size_bytes: 5
    size: 5 B
    license: MIT
    chat_template: null
    tool_calling: false
    context: 2048
"""


def make(
    tmp_path: Path, *, env: str = "SANDBOX_MODEL=tiny\n", **state: Any
) -> tuple[FakeTools, Probes]:
    root = tmp_path / "repo"
    (root / "model-server").mkdir(parents=True)
    (root / "models").mkdir()
    (root / ".env").write_text(env)
    sha = hashlib.sha256(b"hello").hexdigest()
    (root / "model-server/catalog.yaml").write_text(CATALOG.format(sha=sha))
    fakes = FakeTools.create(
        tmp_path,
        state={"info": INFO, "images": ["localhost/ai-sandbox-base:bookworm"], **state},
    )
    helpers = tmp_path / "usr-lib-podman"
    helpers.mkdir()
    (helpers / "aardvark-dns").write_text("#!/bin/sh\n")
    (tmp_path / "sys-class-net").mkdir()
    inputs = Probes(
        root=root,
        host=ROOT_HOST,
        runner=fakes.runner(),
        environ={},
        ping_fn=lambda _p: True,
        version_fn=lambda _p: {
            "Version": "4.3.1",
            "ApiVersion": "1.41",
            "Components": [{"Name": "Podman Engine"}],
        },
        packaged_compose=None,
        sys_net=tmp_path / "sys-class-net",
        helper_dirs=(str(helpers),),
        backend_fn=lambda _socket: "netavark",
        rootless_fn=lambda _host: [],
    )
    return fakes, inputs


def run_one(name: str, inputs: Probes) -> Check:
    return next(check for check in doctor.run_checks(inputs) if check.name == name)


def test_engine_check_reports_podman_version_and_socket(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    check = run_one("engine", inputs)
    assert check.status == "ok"
    assert "Podman 4.3.1" in check.detail
    assert "/run/podman/podman.sock" in check.detail


def test_engine_check_fails_with_machine_start_fix_when_socket_is_silent(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    inputs.ping_fn = lambda _p: False
    check = run_one("engine", inputs)
    assert (check.status, check.fix) == ("fail", "invoke machine.start")


def test_engine_check_on_a_machine_host_without_machine_says_init_fake_vm(
    tmp_path: Path,
) -> None:
    _fakes, inputs = make(tmp_path)
    inputs.host = replace(ROOT_HOST, platform=Platform.MACOS)
    check = run_one("engine", inputs)
    assert (check.status, check.fix) == ("fail", "invoke machine.init")


def test_compose_check_fails_with_host_prepare_fix_when_absent(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    check = run_one("compose v2", inputs)
    assert (check.status, check.fix) == ("fail", "invoke host.prepare")


def test_compose_check_shows_the_plugin_version(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, docker_compose_plugin=True)
    check = run_one("compose v2", inputs)
    assert check.status == "ok"
    assert check.detail.startswith("2.40.3 (plugin")


def test_rootful_is_reported_from_podman_info(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    assert run_one("rootful/rootless", inputs).detail == "rootful"


def test_missing_pids_controller_fails_the_limits_check(tmp_path: Path) -> None:
    info = {"host": {**INFO["host"], "cgroupControllers": ["memory"]}}
    _fakes, inputs = make(tmp_path, info=info)
    check = run_one("cgroup limits", inputs)
    assert check.status == "fail"
    assert "missing pids" in check.detail


ROOTLESS_V1 = {"host": {**INFO["host"], "cgroupControllers": [], "security": {"rootless": True}}}


def test_rootless_on_cgroup_v1_warns_that_the_limits_are_ignored(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, info=ROOTLESS_V1)
    check = run_one("cgroup limits", inputs)
    assert check.status == "warn"
    assert "ignores the stack's memory and pids limits" in check.detail


def test_no_cgroup_controllers_read_as_none(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, info=ROOTLESS_V1)
    assert "controllers: none" in run_one("cgroup limits", inputs).detail


def test_rootless_on_cgroup_v2_without_delegation_fails_the_limits_check(tmp_path: Path) -> None:
    info = {"host": {**ROOTLESS_V1["host"], "cgroupVersion": "v2"}}
    _fakes, inputs = make(tmp_path, info=info)
    check = run_one("cgroup limits", inputs)
    assert check.status == "fail"
    assert "Delegate=memory pids" in check.fix


def test_preflight_passes_on_the_ignored_limits_warning(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, info=ROOTLESS_V1)
    found = doctor.preflight(as_user(inputs))
    assert [(check.name, check.status) for check in found] == [("cgroup limits", "warn")]


def test_a_preflight_warning_is_shown_once_across_child_processes() -> None:
    warning = Check("cgroup limits", "warn", "limits ignored", "run as root")
    environ: dict[str, str] = {}
    assert doctor.unseen_warnings([warning], environ) == [warning]
    child = dict(environ)  # what `invoke up`, started by demo, inherits
    assert doctor.unseen_warnings([warning], child) == []


def test_failures_are_not_recorded_as_shown_warnings() -> None:
    environ: dict[str, str] = {}
    assert doctor.unseen_warnings([Check("engine", "fail", "down", "start it")], environ) == []
    assert environ == {}


def test_runtime_quirk_fails_with_host_prepare_fix(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, quirks=["ulimits"])
    check = run_one("runtime quirks", inputs)
    assert check.status == "fail"
    assert "default_ulimits" in check.detail
    assert "host.prepare" in check.fix


def test_dns_check_resolves_a_sibling_and_cleans_up(tmp_path: Path) -> None:
    fakes, inputs = make(tmp_path)
    check = run_one("DNS between containers", inputs)
    assert check.status == "ok"
    assert ".dns.podman" in check.detail
    podman = fakes.calls("podman")
    assert any(argv[:3] == ["network", "rm", "-f"] for argv in podman)
    assert any(argv[:2] == ["rm", "-f"] for argv in podman)


def test_dns_check_fails_when_the_name_does_not_resolve(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, dns_broken=True)
    assert run_one("DNS between containers", inputs).status == "fail"


def test_quick_mode_runs_no_container(tmp_path: Path) -> None:
    fakes, inputs = make(tmp_path)
    inputs.quick = True
    doctor.run_checks(inputs)
    assert not [argv for argv in fakes.calls("podman") if argv[0] == "run"]


def test_no_systemd_warns_that_healthchecks_do_not_run(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    check = run_one("healthchecks", inputs)
    assert check.status == "warn"
    assert "podman healthcheck run" in check.fix


def test_selinux_enforcing_without_volume_label_warns(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    inputs.host = replace(ROOT_HOST, selinux_enforcing=True)
    check = run_one("SELinux", inputs)
    assert check.status == "warn"
    assert "VOLUME_LABEL=Z" in check.fix


def test_wsl1_fails_with_the_conversion_command() -> None:
    inputs = Probes(root=Path("."), host=replace(ROOT_HOST, platform=Platform.WSL,
                                                              wsl_version=1))  # fmt: skip
    check = doctor.check_platform(inputs)
    assert check.status == "fail"
    assert "wsl --set-version" in check.fix


def test_crlf_script_fails_the_line_endings_check(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    (inputs.root / "model-server/entrypoint.sh").write_bytes(b"#!/bin/sh\r\necho hi\r\n")
    check = run_one("script line endings", inputs)
    assert check.status == "fail"
    assert "model-server/entrypoint.sh" in check.detail


def test_crlf_in_a_shebang_file_without_extension_is_found(tmp_path: Path) -> None:
    (tmp_path / "model-server").mkdir()
    (tmp_path / "model-server/healthcheck").write_bytes(b"#!/bin/sh\r\ntrue\r\n")
    assert files.crlf_scripts(tmp_path) == [tmp_path / "model-server/healthcheck"]


def test_missing_generated_model_says_model_tiny(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    check = run_one("model file", inputs)
    assert (check.status, check.fix) == ("fail", "invoke model.tiny")


def test_model_with_matching_checksum_is_verified(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, env="SANDBOX_MODEL=real\n")
    (inputs.root / "models/real.gguf").write_bytes(b"hello")
    check = run_one("model file", inputs)
    assert check.status == "ok"
    assert "SHA-256 verified" in check.detail


def test_model_with_wrong_checksum_fails(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, env="SANDBOX_MODEL=real\n")
    (inputs.root / "models/real.gguf").write_bytes(b"tampered")
    check = run_one("model file", inputs)
    assert check.status == "fail"
    assert "mismatch" in check.detail


def test_context_per_slot_below_the_catalog_recommendation_warns(tmp_path: Path) -> None:
    _fakes, inputs = make(
        tmp_path, env="SANDBOX_MODEL=real\nMODEL_CTX_SIZE=8192\nMODEL_PARALLEL=4\n"
    )
    check = run_one("context per slot", inputs)
    assert check.status == "warn"
    assert "2048 per slot" in check.detail
    assert "MODEL_CTX_SIZE=32768" in check.fix


def test_context_per_slot_meeting_the_recommendation_is_ok(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    assert run_one("context per slot", inputs).status == "ok"


def test_invalid_env_fails_the_answers_check(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, env="GPU_BACKEND=rocm\n")
    check = run_one("answers (.env)", inputs)
    assert check.status == "fail"


def test_exit_code_is_nonzero_only_when_something_blocks() -> None:
    warn = Check("a", "warn", "x")
    fail = Check("b", "fail", "y")
    assert (doctor.exit_code([warn]), doctor.exit_code([warn, fail])) == (0, 1)


def test_a_crashing_check_becomes_a_failed_row_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fakes, inputs = make(tmp_path)

    def boom(_probes: Probes) -> Check:
        raise RuntimeError("kaput")

    monkeypatch.setattr(doctor, "CHECKS", (boom,))
    [row] = doctor.run_checks(inputs)
    assert (row.status, "kaput" in row.detail) == ("fail", True)


def test_render_prints_one_item_per_check_with_its_fix(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    doctor.render([Check("engine", "fail", "silent", "invoke machine.start")], console)
    text = console.export_text()
    assert text.splitlines() == [
        "sandbox doctor",
        "fail  engine: silent",
        "      fix: invoke machine.start",
    ]


def test_render_fits_80_columns_and_wraps_at_words(tmp_path: Path) -> None:
    """Long details wrap under their check at word boundaries, never past 80 columns."""
    console = Console(record=True, width=80)
    detail = "Podman 4.3.1 (API 1.41) at unix:///run/podman/podman.sock (native Podman) " * 3
    doctor.render([Check("engine", "warn", detail, "run `invoke doctor` " * 6)], console)
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    assert all(line.startswith("      ") for line in lines[2:])
    assert " ".join(" ".join(lines).split()).count("unix:///run/podman/podman.sock") == 3


def test_settings_feed_the_engine_decision(tmp_path: Path) -> None:
    """DOCKER_HOST in .env reaches the engine check (one answer for every caller)."""
    _fakes, inputs = make(tmp_path, env="DOCKER_HOST=unix:///srv/engine.sock\n")
    check = run_one("engine", inputs)
    assert "unix:///srv/engine.sock" in check.detail


def test_dns_check_runs_on_the_host_root_before_any_image_exists(tmp_path: Path) -> None:
    fakes, inputs = make(tmp_path, images=[])
    assert run_one("DNS between containers", inputs).status == "ok"
    runs = [argv for argv in fakes.calls("podman") if argv[0] == "run"]
    assert any("--rootfs" in argv and "getent" in argv for argv in runs)


def test_cni_backend_fails_the_network_check_with_host_prepare_fix(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, network_backend="cni")
    check = run_one("network backend", inputs)
    assert check.status == "fail"
    assert "cni" in check.detail
    assert "host.prepare" in check.fix


def test_netavark_without_aardvark_dns_fails_the_network_check(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    inputs.helper_dirs = (str(tmp_path / "nowhere"),)
    check = run_one("network backend", inputs)
    assert check.status == "fail"
    assert "aardvark-dns" in check.detail


@pytest.mark.parametrize("bridge", ["cni-podman0", "cni-podman4"])
def test_stale_cni_bridge_fails_the_network_check(tmp_path: Path, bridge: str) -> None:
    _fakes, inputs = make(tmp_path)
    (inputs.sys_net / bridge).mkdir()
    check = run_one("network backend", inputs)
    assert check.status == "fail"
    assert bridge in check.detail


def test_netavark_with_aardvark_dns_passes_the_network_check(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    assert run_one("network backend", inputs).status == "ok"


def test_missing_init_binary_fails_the_init_check(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, installed=["podman"])
    check = run_one("container init", inputs)
    assert check.status == "fail"
    assert "catatonit" in check.detail
    assert "host.prepare" in check.fix


def test_init_check_passes_when_init_containers_run(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    assert run_one("container init", inputs).status == "ok"


def test_preflight_returns_only_the_blocking_failures(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, network_backend="cni", installed=["podman"])
    names = sorted(check.name for check in doctor.preflight(inputs))
    assert names == ["container init", "network backend"]


def test_preflight_on_a_prepared_host_finds_nothing(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    assert doctor.preflight(inputs) == []


# --- the shared probe set (sandboxctl.checks.base) ------------------------------------------


def test_one_run_asks_podman_info_once_for_every_check_that_reads_it(tmp_path: Path) -> None:
    """rootless, cgroups and network all read `podman info`: measured once per run."""
    fakes, inputs = make(tmp_path)
    inputs.quick = True
    doctor.run_checks(inputs)
    assert [argv[:1] for argv in fakes.calls("podman")].count(["info"]) == 1


def test_each_run_measures_again(tmp_path: Path) -> None:
    """What one run found is not carried into the next: a socket that stopped answering
    fails the second run (the memo is per run, not per Probes)."""
    _fakes, inputs = make(tmp_path)
    inputs.quick = True
    assert run_one("engine", inputs).status == "ok"
    inputs.ping_fn = lambda _p: False
    assert run_one("engine", inputs).status == "fail"


def test_invalid_answers_fail_the_config_row_and_the_others_still_run(tmp_path: Path) -> None:
    """A bad .env is one failed row (validation's first line); the engine is still resolved
    (with no answers) and reported."""
    _fakes, inputs = make(tmp_path, env="MODEL_PORT=not-a-port\n")
    inputs.quick = True
    rows = {check.name: check for check in doctor.run_checks(inputs)}
    assert rows["answers (.env)"].status == "fail"
    assert "invalid answers" in rows["answers (.env)"].detail
    assert rows["engine"].status == "ok"


def test_model_without_a_chat_template_warns_with_an_instruct_model_fix(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, env="SANDBOX_MODEL=base\n")
    check = run_one("chat template", inputs)
    assert check.status == "warn"
    assert "model.use" in check.fix


def test_model_with_a_chat_template_passes_that_check(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, env="SANDBOX_MODEL=real\n")
    assert run_one("chat template", inputs).status == "ok"


def test_the_gguf_in_place_decides_over_the_catalog(tmp_path: Path) -> None:
    """The catalog says `real` has a template; the file on disk has none: the file wins."""
    import gguf_sample

    _fakes, inputs = make(tmp_path, env="SANDBOX_MODEL=real\n")
    gguf_sample.write_gguf(inputs.root / "models" / "real.gguf", template=None)
    assert run_one("chat template", inputs).status == "warn"


def test_missing_user_model_says_model_add_with_its_path(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path, env="SANDBOX_MODEL=mine\n")
    entry = {
        "description": "mine", "generated": False, "url": None, "added_from": "/data/m.gguf",
        "sha256": "a" * 64, "sha256_source": None, "size_bytes": 5, "size": "5 B",
        "license": "MIT", "chat_template": "chatml", "tool_calling": False, "context": 2048,
    }  # fmt: skip
    (inputs.root / "model-server/catalog.local.yaml").write_text(
        yaml.safe_dump({"schema": 1, "models": {"mine": entry}})
    )
    check = run_one("model file", inputs)
    assert (check.status, check.fix) == ("fail", "invoke model.add /data/m.gguf --key mine")


def test_a_service_still_running_on_cni_fails_the_network_check(tmp_path: Path) -> None:
    """The configuration says netavark, but the API service started before the switch."""
    _fakes, inputs = make(tmp_path)
    inputs.backend_fn = lambda _socket: "cni"
    check = run_one("network backend", inputs)
    assert check.status == "fail"
    assert "still runs with cni" in check.detail


# --- rootless Podman (a user with sudo) -----------------------------------------------------


def as_user(inputs: Probes, *problems: rootless.Problem) -> Probes:
    inputs.host = USER_HOST
    inputs.rootless_fn = lambda _host: list(problems)
    return inputs


def test_rootless_setup_check_fails_with_host_prepare_fix_when_a_command_fixes_it(
    tmp_path: Path,
) -> None:
    _fakes, inputs = make(tmp_path)
    check = run_one("rootless setup", as_user(inputs, NO_RUNTIME_DIR))
    assert check.status == "fail"
    assert "/run/user/1000" in check.detail
    assert check.fix == "invoke host.prepare --yes"


def test_rootless_setup_check_gives_the_hint_when_no_command_fixes_it(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    problem = rootless.Problem("no subuid range", None, "sudo usermod --add-subuids ...")
    check = run_one("rootless setup", as_user(inputs, problem))
    assert check.fix == "sudo usermod --add-subuids ..."


def test_rootless_setup_check_passes_for_root(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    inputs.rootless_fn = lambda _host: [NO_RUNTIME_DIR]
    assert run_one("rootless setup", inputs).status == "ok"


def test_preflight_blocks_a_user_without_runtime_folder(tmp_path: Path) -> None:
    _fakes, inputs = make(tmp_path)
    names = [check.name for check in doctor.preflight(as_user(inputs, NO_RUNTIME_DIR))]
    assert names == ["rootless setup"]


def test_rootless_probes_run_on_usr_before_any_image_exists(tmp_path: Path) -> None:
    fakes, inputs = make(tmp_path, images=[], rootless=True)
    checks = {check.name: check.status for check in doctor.run_checks(as_user(inputs))}
    assert [checks[name] for name in ("runtime quirks", "container init")] == ["ok", "ok"]
    assert checks["DNS between containers"] == "ok"
    runs = [argv for argv in fakes.calls("podman") if argv[0] == "run"]
    assert runs
    assert all("/usr:O" in argv for argv in runs)
