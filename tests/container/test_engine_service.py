"""Real Podman: the engine module starts `podman system service` on a private socket,
finds it answering, and stops exactly what it started."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from sandboxctl.host.engine import engine_version, ping, resolve_engine
from sandboxctl.host.platform import HostInfo, Platform
from sandboxctl.host.service import ensure_service, read_state, state_file, stop_service

pytestmark = [pytest.mark.container]


@pytest.fixture(autouse=True)
def _podman_installed() -> None:
    """These tests need the real podman: its absence is a failure, not a skip."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `invoke host.prepare`")


def test_service_started_answers_and_is_stopped_by_its_recorded_pid(tmp_path: Path) -> None:
    """A socket nobody serves gets a real service; stop_service ends that pid only."""
    sock = tmp_path / "run" / "podman.sock"
    host = HostInfo(platform=Platform.LINUX, is_root=os.geteuid() == 0, uid=os.geteuid())
    engine = replace(resolve_engine(host, environ={}), socket_path=sock)
    state_dir = tmp_path / "state"

    status = ensure_service(engine, state_dir=state_dir, deadline_s=30)
    try:
        assert status.started
        assert ping(sock)
        assert (engine_version(sock) or {}).get("Version")
        again = ensure_service(engine, state_dir=state_dir)
        assert (again.serving, again.started) == (True, False)
    finally:
        message = stop_service(sock, state_dir=state_dir)
    assert message.startswith("stopped podman system service")
    assert not ping(sock)
    assert read_state(state_file(state_dir, sock)) is None
