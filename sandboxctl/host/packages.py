"""The host's Debian packages: the one list (``requirements/debian-packages.txt``, which
``bootstrap.sh`` reads too), which of them are missing, and the apt commands that install
them (through ``sudo`` when not root)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.config import find_root
from sandboxctl.host.prepare_context import PrepareError

PACKAGE_LIST_RELPATH = Path("requirements") / "debian-packages.txt"
"""The host's packages, one list (bootstrap.sh reads the same file)."""


def read_package_list(path: Path | None = None) -> tuple[str, ...]:
    """Return the packages named in ``path`` (default: the list of the sandbox the command
    stands in; one a line; ``#`` starts a comment)."""
    path = path or find_root() / PACKAGE_LIST_RELPATH
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        names += words[:1]
    return tuple(names)


def is_debian(fs_root: Path = Path("/")) -> bool:
    """Tell whether the host is Debian-family (has ``/etc/debian_version``)."""
    return (fs_root / "etc/debian_version").is_file()


def missing_packages(runner: Runner, packages: Sequence[str] | None = None) -> list[str]:
    """Return the packages ``dpkg-query`` does not report as installed (default: those of
    the package list), in the list's order.

    One ``dpkg-query`` for all of them: it prints a line for each package it knows and
    exits 1 when it knows some of them not (``no packages found matching``), so its exit
    status says nothing about a single package; each line does."""
    packages = read_package_list() if packages is None else packages
    if not packages:
        return []
    try:
        result = runner.run(["dpkg-query", "-W", "-f=${Package}\\t${Status}\\n", *packages])
    except CommandNotFound as error:
        raise PrepareError("dpkg-query not found: this is not a Debian-family host") from error
    installed = set()
    for line in result.stdout.splitlines():
        name, _, status = line.partition("\t")
        # "install ok installed" (or "hold ok installed"); not "unknown ok not-installed",
        # "install ok half-installed" or "deinstall ok config-files"
        if status.split()[-1:] == ["installed"]:
            installed.add(name.strip())
    return [package for package in packages if package not in installed]


def privileged(argv: Sequence[str], is_root: bool) -> list[str]:
    """Prefix ``argv`` with ``sudo`` unless running as root."""
    return list(argv) if is_root else ["sudo", *argv]


def apt_commands(missing: Sequence[str], is_root: bool) -> list[list[str]]:
    """Return the apt commands that install ``missing`` non-interactively."""
    if not missing:
        return []
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    return [
        privileged([*env, "apt-get", "update"], is_root),
        # Every package the stack needs is in the list: no Recommends pulled in unasked.
        privileged(
            [*env, "apt-get", "install", "-y", "--no-install-recommends", *missing], is_root
        ),
    ]
