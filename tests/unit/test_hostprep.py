"""Unit tests of sandboxctl.hostprep against fake `apt-get`, `dpkg-query`, `sudo` and
`podman` on PATH (the fake podman fails container runs the way the measured quirks do)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from fakes.harness import FakeTools

from sandboxctl import hostprep

ALL_INSTALLED = list(hostprep.PACKAGES)
IMAGE = hostprep.PROBE_IMAGE


def make(
    tmp_path: Path,
    *,
    installed: list[str] | None = None,
    quirks: list[str] | None = None,
    is_root: bool = True,
    images: list[str] | None = None,
) -> tuple[FakeTools, hostprep.PrepareContext]:
    dropin = tmp_path / "etc/containers/containers.conf.d/50-ai-sandbox.conf"
    fakes = FakeTools.create(
        tmp_path,
        state={
            "installed": ALL_INSTALLED if installed is None else installed,
            "quirks": quirks or [],
            "images": [IMAGE] if images is None else images,
            "dropin": str(dropin),
        },
    )
    binary = tmp_path / "compose-bin"
    binary.write_text("#!/bin/sh\n")
    home = tmp_path / "home"
    home.mkdir()
    ctx = hostprep.PrepareContext(
        runner=fakes.runner(),
        is_root=is_root,
        home=home,
        debian=True,
        dropin=dropin,
        compose_binary=binary,
    )
    return fakes, ctx


def yes(_question: str) -> bool:
    return True


def no(_question: str) -> bool:
    return False


def test_missing_packages_are_installed_through_sudo_when_not_root(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path, installed=["podman"], is_root=False)
    hostprep.prepare(ctx, confirm=yes)
    install = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y"]
    assert [*install, "runc", "debootstrap", "python3-venv"] in fakes.calls("sudo")
    assert set(fakes.state["installed"]) == set(hostprep.PACKAGES)


def test_root_installs_without_sudo(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path, installed=[])
    hostprep.prepare(ctx, confirm=yes)
    assert fakes.calls("sudo") == []
    assert ["update"] in fakes.calls("apt-get")


def test_installed_packages_are_left_alone(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path)
    report = hostprep.prepare(ctx, confirm=yes)
    assert fakes.calls("apt-get") == []
    assert report.lines[0].startswith("ok: packages installed")


def test_dry_run_prints_apt_commands_and_runs_none(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path, installed=[], is_root=False)
    report = hostprep.prepare(ctx, dry_run=True)
    assert fakes.calls("apt-get") == []
    assert fakes.calls("sudo") == []
    assert any(line.startswith("would run: sudo env") for line in report.lines)


def test_declining_the_install_stops_with_a_message(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path, installed=[])
    with pytest.raises(hostprep.PrepareError, match="declined"):
        hostprep.prepare(ctx, confirm=no)


def test_compose_plugin_is_linked_into_docker_cli_plugins(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path)
    hostprep.prepare(ctx, confirm=yes)
    link = ctx.home / ".docker/cli-plugins/docker-compose"
    assert link.is_symlink()
    assert link.resolve() == ctx.compose_binary


def test_a_users_own_compose_plugin_is_kept(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path)
    link = ctx.home / ".docker/cli-plugins/docker-compose"
    link.parent.mkdir(parents=True)
    link.write_text("the user's own binary")
    report = hostprep.prepare(ctx, confirm=yes)
    assert link.read_text() == "the user's own binary"
    assert any("kept: it is yours" in line for line in report.lines)


def test_a_broken_plugin_link_is_replaced(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path)
    link = ctx.home / ".docker/cli-plugins/docker-compose"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path / "gone")
    hostprep.prepare(ctx, confirm=yes)
    assert link.resolve() == ctx.compose_binary


def test_diagnose_reads_the_crun_setrlimit_error() -> None:
    message = "crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted"
    assert hostprep.diagnose(message) == {hostprep.FIX_ULIMITS}


def test_diagnose_reads_the_runc_rlimit_error() -> None:
    """runc words it differently (measured on this machine)."""
    message = "error setting rlimits for ready process: error setting rlimit type 7"
    assert hostprep.diagnose(message) == {hostprep.FIX_ULIMITS}


def test_diagnose_reads_the_hybrid_cgroup_error() -> None:
    message = "crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
    assert hostprep.diagnose(message) == {hostprep.FIX_RUNC}


def test_find_fixes_uncovers_both_quirks_one_after_the_other(tmp_path: Path) -> None:
    """The hybrid error hides the ulimit one; retrying with flags reveals it."""
    fakes, ctx = make(tmp_path, quirks=["hybrid", "ulimits"])
    outcome = hostprep.find_fixes(ctx.runner, IMAGE)
    assert outcome.ok
    assert outcome.fixes == {hostprep.FIX_RUNC, hostprep.FIX_ULIMITS}
    assert len(fakes.calls("podman")) == 3


def test_prepare_writes_the_dropin_with_both_fixes_and_verifies(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path, quirks=["hybrid", "ulimits"])
    report = hostprep.prepare(ctx, confirm=yes)
    written = tomllib.loads(ctx.dropin.read_text())
    assert written == {
        "containers": {"default_ulimits": ["nofile=8192:8192", "nproc=8192:8192"]},
        "engine": {"runtime": "runc"},
    }
    assert report.blocking == []
    assert report.lines[-1].startswith("done:")


def test_prepare_is_idempotent_once_the_dropin_exists(tmp_path: Path) -> None:
    """A second run finds everything in place and changes nothing."""
    _fakes, ctx = make(tmp_path, quirks=["hybrid", "ulimits"])
    hostprep.prepare(ctx, confirm=yes)
    before = ctx.dropin.read_text()
    again = hostprep.prepare(ctx, confirm=no)
    assert again.changed is False
    assert ctx.dropin.read_text() == before


def test_dry_run_shows_the_dropin_but_writes_nothing(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path, quirks=["ulimits"])
    report = hostprep.prepare(ctx, dry_run=True)
    assert not ctx.dropin.exists()
    assert any("default_ulimits" in line for line in report.lines)


def test_declining_the_dropin_says_what_fails_without_it(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path, quirks=["ulimits"])
    with pytest.raises(hostprep.PrepareError, match="default_ulimits"):
        hostprep.prepare(ctx, confirm=no)


def test_existing_dropin_settings_are_kept_when_adding_a_fix(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path, quirks=["ulimits"])
    ctx.dropin.parent.mkdir(parents=True)
    ctx.dropin.write_text('[engine]\nevents_logger = "file"\n')
    hostprep.prepare(ctx, confirm=yes)
    written = tomllib.loads(ctx.dropin.read_text())
    assert written["engine"] == {"events_logger": "file"}
    assert "default_ulimits" in written["containers"]


def test_non_root_writes_the_dropin_with_sudo_install(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path, quirks=["ulimits"], is_root=False)
    hostprep.prepare(ctx, confirm=yes)
    installs = [argv for argv in fakes.calls("sudo") if argv[0] == "install"]
    assert [argv[-1] for argv in installs] == [str(ctx.dropin)]
    assert "default_ulimits" in ctx.dropin.read_text()


def test_probe_uses_the_host_root_when_no_image_exists_yet(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path, images=[])
    hostprep.prepare(ctx, confirm=yes)
    runs = [argv for argv in fakes.calls("podman") if argv[0] == "run"]
    assert runs[0][-3:] == ["--rootfs", "/:O", "/bin/true"]


def test_render_dropin_round_trips_through_tomllib() -> None:
    settings = hostprep.wanted_dropin({}, {hostprep.FIX_ULIMITS, hostprep.FIX_RUNC})
    assert tomllib.loads(hostprep.render_dropin(settings)) == settings
