"""Facts about this host that decide where the engine is: the platform (Linux, WSL,
macOS, Windows), WSL's version, root or not, systemd, SELinux and the cgroup layout."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal


class Platform(StrEnum):
    """Where sandboxctl runs."""

    LINUX = "linux"
    WSL = "wsl"
    MACOS = "macos"
    WINDOWS = "windows"


@dataclass(frozen=True)
class HostInfo:
    """The facts about this host that the engine decision depends on (injectable)."""

    platform: Platform
    is_root: bool
    uid: int
    xdg_runtime_dir: str | None = None
    has_systemd: bool = False
    selinux_enforcing: bool = False
    cgroup_layout: Literal["v1", "v2", "hybrid", "unknown"] = "unknown"
    wsl_version: int | None = None


def classify_platform(system: str, kernel_release: str, proc_version: str = "") -> Platform:
    """Map ``platform.system()``, ``platform.release()`` and ``/proc/version`` to a Platform."""
    lowered = system.lower()
    if lowered == "darwin":
        return Platform.MACOS
    if lowered.startswith(("windows", "cygwin", "msys")):
        return Platform.WINDOWS
    marker = f"{kernel_release} {proc_version}".lower()
    if "microsoft" in marker or "wsl" in marker:
        return Platform.WSL
    return Platform.LINUX


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cgroup_layout(fs_root: Path = Path("/")) -> Literal["v1", "v2", "hybrid", "unknown"]:
    """Tell the cgroup layout from the files under ``fs_root/sys/fs/cgroup``."""
    base = fs_root / "sys/fs/cgroup"
    if (base / "cgroup.controllers").is_file():
        return "v2"
    if (base / "unified").is_dir():
        return "hybrid"
    if (base / "memory").is_dir() or (base / "pids").is_dir():
        return "v1"
    return "unknown"


def detect_host(fs_root: Path = Path("/"), environ: Mapping[str, str] | None = None) -> HostInfo:
    """Return the :class:`HostInfo` of the machine this runs on (files read under ``fs_root``)."""
    env = os.environ if environ is None else environ
    proc_version = _read(fs_root / "proc/version")
    kind = classify_platform(platform.system(), platform.release(), proc_version)
    uid = os.geteuid() if hasattr(os, "geteuid") else 1000
    wsl_version: int | None = None
    if kind is Platform.WSL:
        wsl_version = 2 if "wsl2" in proc_version.lower() or (fs_root / "run/WSL").exists() else 1
    return HostInfo(
        platform=kind,
        is_root=uid == 0,
        uid=uid,
        xdg_runtime_dir=env.get("XDG_RUNTIME_DIR") or None,
        has_systemd=(fs_root / "run/systemd/system").is_dir(),
        selinux_enforcing=_read(fs_root / "sys/fs/selinux/enforce").strip() == "1",
        cgroup_layout=cgroup_layout(fs_root),
        wsl_version=wsl_version,
    )
