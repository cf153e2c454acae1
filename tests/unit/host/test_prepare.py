"""Unit tests of sandboxctl.host.prepare against fake `apt-get`, `dpkg-query`, `sudo` and
`podman` on PATH (the fake podman fails container runs the way the measured quirks do)."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.harness import FakeTools

from sandboxctl.host import network, packages, rootless
from sandboxctl.host import prepare as hostprep

ROOT = Path(__file__).resolve().parents[3]

ALL_INSTALLED = list(hostprep.read_package_list())
IMAGE = hostprep.PROBE_IMAGE


def make(
    tmp_path: Path,
    *,
    installed: list[str] | None = None,
    quirks: list[str] | None = None,
    is_root: bool = True,
    images: list[str] | None = None,
    backend: str = "netavark",
    containers: list[str] | None = None,
    cni_bridge: bool = False,
    links: tuple[str, ...] = (),
    rootless_engine: bool = False,
    rootless_problems: list[rootless.Problem] | None = None,
) -> tuple[FakeTools, hostprep.PrepareContext]:
    dropin = tmp_path / "etc/containers/containers.conf.d/50-ai-sandbox.conf"
    sys_net = tmp_path / "sys-class-net"
    sys_net.mkdir()
    for link in (network.CNI_BRIDGE,) * cni_bridge + links:
        (sys_net / link).mkdir()
    fakes = FakeTools.create(
        tmp_path,
        state={
            "installed": ALL_INSTALLED if installed is None else installed,
            "quirks": quirks or [],
            "images": [IMAGE] if images is None else images,
            "dropin": str(dropin),
            "network_backend": backend,
            "containers": containers or [],
            "sys_net": str(sys_net),
            "rootless": rootless_engine,
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
        sys_net=sys_net,
        service_socket=tmp_path / "no-service.sock",
        rootless_problems=lambda: list(rootless_problems or []),
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
    install.append("--no-install-recommends")
    wanted = [package for package in ALL_INSTALLED if package != "podman"]
    assert [*install, *wanted] in fakes.calls("sudo")
    assert set(fakes.state["installed"]) == set(hostprep.read_package_list())


@pytest.mark.parametrize(
    "status",
    ["unknown ok not-installed", "install ok half-installed", "deinstall ok config-files"],
)
def test_a_package_dpkg_knows_but_has_not_installed_is_missing(tmp_path: Path, status: str) -> None:
    """dpkg-query lists removed and half-installed packages too: only a status whose
    last word is "installed" counts ("not-installed" ends in it as well)."""
    others = [package for package in ALL_INSTALLED if package != "podman"]
    fakes, ctx = make(tmp_path, installed=others)
    fakes.update(known_statuses={"podman": status})
    assert packages.missing_packages(ctx.runner) == ["podman"]


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


def stable_copies(ctx: hostprep.PrepareContext) -> list[Path]:
    return sorted((ctx.home / ".local/lib/ai-sandbox").glob("docker-compose-*"))


def test_compose_plugin_is_a_per_user_copy_linked_into_docker_cli_plugins(
    tmp_path: Path,
) -> None:
    """The link points at a copy under ~/.local/lib, never into the clone's .venv."""
    _fakes, ctx = make(tmp_path)
    hostprep.prepare(ctx, confirm=yes)
    link = ctx.home / ".docker/cli-plugins/docker-compose"
    assert link.is_symlink()
    [copy] = stable_copies(ctx)
    assert link.resolve() == copy
    assert ctx.compose_binary is not None
    assert copy.read_bytes() == ctx.compose_binary.read_bytes()
    assert copy.stat().st_mode & 0o111


def test_deleting_the_clone_leaves_the_plugin_working(tmp_path: Path) -> None:
    """The clone's binary gone (the clone deleted), the link still reaches a binary."""
    _fakes, ctx = make(tmp_path)
    hostprep.prepare(ctx, confirm=yes)
    assert ctx.compose_binary is not None
    ctx.compose_binary.unlink()
    assert (ctx.home / ".docker/cli-plugins/docker-compose").resolve().is_file()


def test_a_second_prepare_copies_and_links_nothing(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path)
    hostprep.prepare(ctx, confirm=yes)
    report = hostprep.prepare(ctx, confirm=yes)
    assert not any("copied" in line or line.startswith("done: link") for line in report.lines)


def test_a_link_into_a_clones_venv_is_moved_to_the_copy(tmp_path: Path) -> None:
    """Earlier versions linked into .venv/.../site-packages/compose/docker-compose."""
    _fakes, ctx = make(tmp_path)
    old = tmp_path / "clone/.venv/lib/python3.11/site-packages/compose/docker-compose"
    old.parent.mkdir(parents=True)
    old.write_text("old")
    link = ctx.home / ".docker/cli-plugins/docker-compose"
    link.parent.mkdir(parents=True)
    link.symlink_to(old)
    hostprep.prepare(ctx, confirm=yes)
    assert link.resolve() == stable_copies(ctx)[0]


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
    assert link.resolve() == stable_copies(ctx)[0]


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
    assert any(line.startswith("done:") for line in report.lines)


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


# --- the package list ----------------------------------------------------------------------


def test_package_list_names_what_a_fresh_debian_lacks_for_the_stack() -> None:
    for package in ("podman", "runc", "catatonit", "netavark", "aardvark-dns", "iptables"):
        assert package in hostprep.read_package_list()


def test_package_list_ignores_comments_and_blank_lines(tmp_path: Path) -> None:
    listing = tmp_path / "packages.txt"
    listing.write_text("# header\n\npodman   # the engine\n  runc\n")
    assert hostprep.read_package_list(listing) == ("podman", "runc")


def test_bootstrap_installs_from_the_same_package_list() -> None:
    bootstrap = (ROOT / "bootstrap.sh").read_text()
    assert str(hostprep.PACKAGE_LIST_RELPATH) in bootstrap
    assert "apt_packages=()" in bootstrap  # filled from the list, not written out here


# --- network backend and init ---------------------------------------------------------------


def test_cni_backend_is_switched_to_netavark_in_the_dropin(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path, backend="cni")
    report = hostprep.prepare(ctx, confirm=yes)
    settings = tomllib.loads(ctx.dropin.read_text())
    assert settings["network"]["network_backend"] == "netavark"
    assert not report.blocking


def test_cni_switch_names_the_containers_that_must_be_recreated(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path, backend="cni", containers=["old-web-1", "old-db-1"])
    report = hostprep.prepare(ctx, confirm=yes)
    assert any("old-web-1" in line and "recreated" in line for line in report.lines)


def test_netavark_host_gets_no_network_setting(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path)
    hostprep.prepare(ctx, confirm=yes)
    assert not ctx.dropin.exists()


def test_stale_cni_bridge_is_deleted_after_the_switch(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path, backend="cni", cni_bridge=True)
    hostprep.prepare(ctx, confirm=yes)
    assert ["link", "delete", network.CNI_BRIDGE] in fakes.calls("ip")
    assert not (ctx.sys_net / network.CNI_BRIDGE).exists()


def test_stale_cni_bridge_on_a_netavark_host_is_deleted(tmp_path: Path) -> None:
    _fakes, ctx = make(tmp_path, cni_bridge=True)
    hostprep.prepare(ctx, confirm=yes)
    assert not (ctx.sys_net / network.CNI_BRIDGE).exists()


def test_dry_run_keeps_the_bridge_and_says_how_it_would_go(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path, backend="cni", cni_bridge=True)
    report = hostprep.prepare(ctx, dry_run=True)
    assert (ctx.sys_net / network.CNI_BRIDGE).exists()
    assert fakes.calls("ip") == []
    assert any("would run" in line and "ip link delete" in line for line in report.lines)


def test_declining_the_bridge_removal_says_how_to_do_it(tmp_path: Path) -> None:
    answers = iter([True, False])
    _fakes, ctx = make(tmp_path, backend="cni", cni_bridge=True)
    with pytest.raises(hostprep.PrepareError, match="ip link delete cni-podman0"):
        hostprep.prepare(ctx, confirm=lambda _q: next(answers))


def test_network_setting_overridden_elsewhere_is_blocking(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path, backend="cni")
    hostprep.prepare(ctx, confirm=yes)
    fakes.update(dropin=str(tmp_path / "elsewhere.conf"))  # the engine reads another file
    report = hostprep.prepare(ctx, confirm=yes)
    assert any("overrides it" in problem for problem in report.blocking)


def test_missing_init_binary_blocks_and_names_catatonit(tmp_path: Path) -> None:
    installed = [package for package in ALL_INSTALLED if package != "catatonit"]
    fakes, ctx = make(tmp_path)
    fakes.update(installed=installed)
    ctx.debian = False  # nothing installs it
    report = hostprep.prepare(ctx, confirm=yes)
    assert any("catatonit" in problem for problem in report.blocking)


def test_installing_the_missing_init_binary_makes_init_containers_run(tmp_path: Path) -> None:
    installed = [package for package in ALL_INSTALLED if package != "catatonit"]
    _fakes, ctx = make(tmp_path, installed=installed)
    report = hostprep.prepare(ctx, confirm=yes)
    assert not report.blocking
    assert any("--init" in line and line.startswith("ok") for line in report.lines)


def test_every_cni_bridge_is_deleted_and_other_links_are_kept(tmp_path: Path) -> None:
    """CNI's user networks leave cni-podman1..N holding 10.89.N.0/24: the same class."""
    links = ("cni-podman2", "cni-podman13", "eth0", "podman0", "cni-podmanx", "veth1")
    _fakes, ctx = make(tmp_path, backend="cni", cni_bridge=True, links=links)
    hostprep.prepare(ctx, confirm=yes)
    left = sorted(path.name for path in ctx.sys_net.iterdir())
    assert left == ["cni-podmanx", "eth0", "podman0", "veth1"]


def test_cni_bridges_lists_only_cni_podman_links(tmp_path: Path) -> None:
    for name in ("cni-podman0", "cni-podman10", "cni0", "docker0"):
        (tmp_path / name).mkdir()
    assert network.cni_bridges(tmp_path) == ("cni-podman0", "cni-podman10")


# --- a Podman service started before the switch ---------------------------------------------


class _InfoHandler(http.server.BaseHTTPRequestHandler):
    backend = "cni"

    def do_GET(self) -> None:
        body = json.dumps({"host": {"networkBackend": self.backend}}).encode()
        self.send_response(200 if self.path.endswith("/libpod/info") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)


@pytest.fixture
def cni_service(tmp_path: Path) -> Iterator[Path]:
    """A unix socket answering libpod/info like a service that still runs with CNI."""
    socket_path = tmp_path / "podman.sock"
    server = _UnixHTTPServer(str(socket_path), _InfoHandler)
    # A short poll: shutdown() waits up to one poll_interval (0.5 s by default).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    yield socket_path
    server.shutdown()
    server.server_close()


def test_service_the_host_started_still_on_cni_is_blocking_with_the_restart_fix(
    tmp_path: Path, cni_service: Path
) -> None:
    """A systemd or user service is never stopped by us: the user is told how."""
    _fakes, ctx = make(tmp_path)
    ctx.service_socket = cni_service
    report = hostprep.prepare(ctx, confirm=yes)
    assert any("systemctl restart podman.socket" in problem for problem in report.blocking)


def test_service_sandboxctl_started_still_on_cni_is_stopped(
    tmp_path: Path, cni_service: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ours (recorded in the state file) is stopped; the next task starts it on netavark."""
    stopped: list[Path] = []

    def stop(sock: Path) -> str:
        stopped.append(sock)
        return "stopped"

    monkeypatch.setattr(network, "read_state", lambda _path: object())
    monkeypatch.setattr(network, "is_our_service", lambda _state: True)
    monkeypatch.setattr(network, "stop_service", stop)
    _fakes, ctx = make(tmp_path)
    ctx.service_socket = cni_service
    report = hostprep.prepare(ctx, confirm=yes)
    assert stopped == [cni_service]
    assert not report.blocking


def test_service_on_netavark_is_left_alone(tmp_path: Path, cni_service: Path) -> None:
    _InfoHandler.backend = "netavark"
    try:
        _fakes, ctx = make(tmp_path)
        ctx.service_socket = cni_service
        report = hostprep.prepare(ctx, confirm=yes)
    finally:
        _InfoHandler.backend = "cni"
    assert not report.blocking
    assert not any("Podman service" in line for line in report.lines)


# --- rootless Podman (a user with sudo) -----------------------------------------------------


def test_rootless_probe_runs_on_usr_when_no_image_exists_yet(tmp_path: Path) -> None:
    fakes, ctx = make(tmp_path, images=[], is_root=False, rootless_engine=True)
    report = hostprep.prepare(ctx, confirm=yes)
    assert report.blocking == []
    runs = [argv for argv in fakes.calls("podman") if argv[0] == "run"]
    assert runs[0][-3:] == ["--rootfs", "/usr:O", "/bin/true"]


def test_rootless_fix_runs_through_sudo_before_the_probe(tmp_path: Path) -> None:
    folder = tmp_path / "run-user/1000"
    command = ["sudo", "install", "-d", "-m", "0700", str(folder)]
    fakes, ctx = make(
        tmp_path, is_root=False, rootless_problems=[rootless.Problem("no runtime dir", command)]
    )
    report = hostprep.prepare(ctx, confirm=yes)
    assert folder.is_dir()
    assert f"run: {' '.join(command)}" in report.lines
    calls = [argv[0] for argv in fakes.calls() if argv[0] in ("install", "run")]
    assert calls[0] == "install"


def test_rootless_problem_without_a_command_blocks_with_its_hint(tmp_path: Path) -> None:
    problem = rootless.Problem("no subuid range", None, "sudo usermod --add-subuids ...")
    _fakes, ctx = make(tmp_path, is_root=False, rootless_problems=[problem])
    report = hostprep.prepare(ctx, confirm=yes)
    assert report.blocking == ["no subuid range: sudo usermod --add-subuids ..."]


def test_declining_a_rootless_fix_stops_with_the_command(tmp_path: Path) -> None:
    problem = rootless.Problem("tun closed", ["sudo", "chmod", "0666", "/dev/net/tun"])
    _fakes, ctx = make(tmp_path, is_root=False, rootless_problems=[problem])
    with pytest.raises(hostprep.PrepareError, match="sudo chmod 0666 /dev/net/tun"):
        hostprep.prepare(ctx, confirm=no)


def test_dry_run_shows_the_rootless_fix_and_runs_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "run-user/1000"
    command = ["sudo", "install", "-d", str(folder)]
    fakes, ctx = make(
        tmp_path, is_root=False, rootless_problems=[rootless.Problem("no runtime dir", command)]
    )
    report = hostprep.prepare(ctx, dry_run=True)
    assert f"would run: {' '.join(command)}" in report.lines
    assert not folder.exists()
    assert fakes.calls("sudo") == []


def test_root_is_never_asked_about_rootless_setup(tmp_path: Path) -> None:
    problem = rootless.Problem("tun closed", ["sudo", "chmod", "0666", "/dev/net/tun"])
    fakes, ctx = make(tmp_path, is_root=True, rootless_problems=[problem])
    report = hostprep.prepare(ctx, confirm=yes)
    assert not any("tun closed" in line for line in report.lines)
    assert fakes.calls("sudo") == []
