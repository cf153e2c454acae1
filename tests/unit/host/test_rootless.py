"""Unit tests of sandboxctl.host.rootless: what rootless Podman needs that a login session
would have made, each problem with its fix, on files in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

from sandboxctl.host import rootless
from sandboxctl.host.platform import HostInfo, Platform

UID, GID = os.getuid(), os.getgid()


def user(uid: int = UID, xdg: str | None = None) -> HostInfo:
    return HostInfo(platform=Platform.LINUX, is_root=False, uid=uid, xdg_runtime_dir=xdg)


def subids(tmp_path: Path, text: str = "alice:100000:65536\n") -> tuple[Path, Path]:
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text(text)
    subgid.write_text(text)
    return subuid, subgid


def test_runtime_dir_is_xdg_runtime_dir_when_set() -> None:
    assert rootless.runtime_dir(user(xdg="/mnt/wslg/runtime-dir")) == Path("/mnt/wslg/runtime-dir")


def test_runtime_dir_is_run_user_uid_when_xdg_runtime_dir_is_unset() -> None:
    assert rootless.runtime_dir(user(uid=1234)) == Path("/run/user/1234")


def test_missing_run_user_folder_is_made_with_sudo_install_owned_by_the_user(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run/user/1000"
    problem = rootless.runtime_dir_problem(folder, 1000, 1001, default=folder)
    assert problem is not None
    assert problem.fix == [
        "sudo", "install", "-d", "-m", "0700", "-o", "1000", "-g", "1001", str(folder)
    ]  # fmt: skip


def test_own_runtime_folder_with_mode_0700_is_no_problem(tmp_path: Path) -> None:
    folder = tmp_path / "1000"
    folder.mkdir(mode=0o700)
    assert rootless.runtime_dir_problem(folder, UID, GID, default=folder) is None


def test_runtime_folder_of_another_owner_is_a_problem(tmp_path: Path) -> None:
    folder = tmp_path / "1000"
    folder.mkdir(mode=0o700)
    problem = rootless.runtime_dir_problem(folder, UID + 1, GID, default=folder)
    assert problem is not None
    assert "is not yours" in problem.what


def test_missing_xdg_runtime_dir_elsewhere_gets_a_hint_not_a_command(tmp_path: Path) -> None:
    elsewhere = tmp_path / "custom-runtime"
    problem = rootless.runtime_dir_problem(elsewhere, UID, GID, default=tmp_path / "run/1000")
    assert problem is not None
    assert problem.fix is None
    assert "XDG_RUNTIME_DIR" in problem.hint


def test_tun_closed_to_users_is_opened_with_chmod_0666(tmp_path: Path) -> None:
    tun = tmp_path / "tun"
    tun.write_text("")
    problem = rootless.tun_problem(tun, access=lambda _path, _mode: False)
    assert problem is not None
    assert problem.fix == ["sudo", "chmod", "0666", str(tun)]


def test_tun_open_to_users_is_no_problem(tmp_path: Path) -> None:
    tun = tmp_path / "tun"
    tun.write_text("")
    assert rootless.tun_problem(tun, access=lambda _path, _mode: True) is None


def test_missing_tun_device_asks_for_the_module(tmp_path: Path) -> None:
    problem = rootless.tun_problem(tmp_path / "no-tun")
    assert problem is not None
    assert problem.fix is None
    assert "modprobe tun" in problem.hint


def test_user_without_subid_ranges_gets_the_usermod_hint(tmp_path: Path) -> None:
    subuid, subgid = subids(tmp_path, "bob:100000:65536\n")
    problem = rootless.subid_problem("alice", subuid, subgid)
    assert problem is not None
    assert "usermod --add-subuids" in problem.hint


def test_user_with_subuid_and_subgid_ranges_is_no_problem(tmp_path: Path) -> None:
    subuid, subgid = subids(tmp_path)
    assert rootless.subid_problem("alice", subuid, subgid) is None


def test_a_prefix_of_another_users_name_is_not_a_range(tmp_path: Path) -> None:
    subuid, subgid = subids(tmp_path, "alice2:100000:65536\n")
    assert rootless.subid_problem("alice", subuid, subgid) is not None


def test_root_has_no_rootless_problems(tmp_path: Path) -> None:
    root = HostInfo(platform=Platform.LINUX, is_root=True, uid=0)
    found = rootless.problems(
        root, user="root", gid=0, run_user=tmp_path, tun=tmp_path / "no-tun",
        subuid=tmp_path / "none", subgid=tmp_path / "none",
    )  # fmt: skip
    assert found == []


def test_a_user_on_a_host_without_login_session_or_udev_has_two_fixable_problems(
    tmp_path: Path,
) -> None:
    tun = tmp_path / "tun"
    tun.write_text("")
    subuid, subgid = subids(tmp_path)
    found = rootless.problems(
        user(), user="alice", gid=GID, run_user=tmp_path / "run-user", tun=tun,
        subuid=subuid, subgid=subgid, access=lambda _path, _mode: False,
    )  # fmt: skip
    assert [problem.fix[:2] if problem.fix else None for problem in found] == [
        ["sudo", "install"],
        ["sudo", "chmod"],
    ]
