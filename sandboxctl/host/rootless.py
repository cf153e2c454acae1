"""Rootless Podman on a host where no login session set the user up (no systemd-logind, no
udev: a VM, a container, WSL without systemd): what a desktop login would have provided.

Measured on a fresh Debian 12 without systemd, as a user with sudo (docs/HOST.md):

- no ``/run/user/UID`` (logind makes it at login): Podman 4.3 falls back to
  ``/tmp/podman-run-UID``, and every container on a network then fails with ``failed to
  mount runtime directory for rootless netns: no such file or directory``. With the
  folder made (owned by the user, mode 0700) Podman uses it, ``XDG_RUNTIME_DIR`` or not;
- ``/dev/net/tun`` left at the kernel's mode 0600 (udev's ``50-udev-default.rules`` makes
  it 0666): slirp4netns, rootless Podman's network, fails with ``open("/dev/net/tun"):
  Permission denied``;
- no range in ``/etc/subuid``/``/etc/subgid``: images whose files belong to several users
  cannot be unpacked (``useradd`` and ``adduser`` add one; users made otherwise lack it).

Each problem comes with the command that fixes it (run with sudo by ``host.prepare``), or
none when only the user can decide.
"""

from __future__ import annotations

import getpass
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandboxctl.host.platform import HostInfo

RUN_USER = Path("/run/user")
TUN = Path("/dev/net/tun")
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")


@dataclass(frozen=True)
class Problem:
    """One thing rootless Podman lacks here, and the command that fixes it (if any)."""

    what: str
    fix: list[str] | None
    """The command to run (with sudo); None when the user must fix it by hand."""
    hint: str = ""
    """What to do by hand when there is no command."""


def runtime_dir(host: HostInfo, run_user: Path = RUN_USER) -> Path:
    """Return the user's runtime folder: ``$XDG_RUNTIME_DIR``, else ``/run/user/UID`` (where
    Podman looks when the variable is unset)."""
    return Path(host.xdg_runtime_dir or run_user / str(host.uid))


def runtime_dir_problem(
    path: Path, uid: int, gid: int, *, default: Path | None = None
) -> Problem | None:
    """Tell what is wrong with the runtime folder ``path`` for user ``uid`` (None: usable).

    Only the default ``/run/user/UID`` (``default``) is made by the fix; a missing folder that
    ``XDG_RUNTIME_DIR`` names elsewhere is the user's to fix.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        if default is not None and path != default:
            return Problem(
                f"XDG_RUNTIME_DIR={path} does not exist",
                None,
                f"unset XDG_RUNTIME_DIR, or create {path} (mode 0700, yours)",
            )
        return Problem(
            f"{path} does not exist (no login session made it): rootless networks fail",
            ["sudo", "install", "-d", "-m", "0700", "-o", str(uid), "-g", str(gid), str(path)],
        )
    if info.st_uid != uid or stat.S_IMODE(info.st_mode) & 0o700 != 0o700:
        return Problem(
            f"{path} is not yours with mode 0700 (owner uid {info.st_uid}, "
            f"mode {stat.S_IMODE(info.st_mode):04o})",
            ["sudo", "chown", f"{uid}:{gid}", str(path)] if path == default else None,
            f"make {path} yours with mode 0700",
        )
    return None


def tun_problem(
    path: Path = TUN, access: Callable[[Path, int], bool] = os.access
) -> Problem | None:
    """Tell whether this user can open ``/dev/net/tun`` (slirp4netns needs it)."""
    if not path.exists():
        return Problem(
            f"{path} is missing: rootless Podman has no network",
            None,
            "load the tun module: sudo modprobe tun",
        )
    if access(path, os.R_OK | os.W_OK):
        return None
    return Problem(
        f"{path} is not open to users (no udev set it to 0666): slirp4netns fails",
        ["sudo", "chmod", "0666", str(path)],
    )


def has_subid_range(user: str, table: Path) -> bool:
    """Tell whether ``table`` (``/etc/subuid`` or ``/etc/subgid``) gives ``user`` a range."""
    try:
        lines = table.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    return any(line.split(":", 1)[0] == user for line in lines if ":" in line)


def subid_problem(user: str, subuid: Path = SUBUID, subgid: Path = SUBGID) -> Problem | None:
    """Tell whether ``user`` lacks a subordinate uid or gid range."""
    missing = [str(table) for table in (subuid, subgid) if not has_subid_range(user, table)]
    if not missing:
        return None
    return Problem(
        f"{user} has no range in {' and '.join(missing)}: images with several owners fail",
        None,
        f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user} "
        "(pick a range no other user has)",
    )


def problems(
    host: HostInfo,
    *,
    user: str,
    gid: int,
    run_user: Path = RUN_USER,
    tun: Path = TUN,
    subuid: Path = SUBUID,
    subgid: Path = SUBGID,
    access: Callable[[Path, int], bool] = os.access,
) -> list[Problem]:
    """Return what rootless Podman lacks on this host; empty for root (rootful Podman)."""
    if host.is_root:
        return []
    found = [
        runtime_dir_problem(
            runtime_dir(host, run_user), host.uid, gid, default=run_user / str(host.uid)
        ),
        tun_problem(tun, access),
        subid_problem(user, subuid, subgid),
    ]
    return [problem for problem in found if problem is not None]


def current_user_problems(host: HostInfo) -> list[Problem]:
    """:func:`problems` for the user running this (their name and group)."""
    return problems(host, user=getpass.getuser(), gid=os.getgid())
