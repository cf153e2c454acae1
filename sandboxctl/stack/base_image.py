"""The Debian base image, made with no registry at all: ``debootstrap --variant=minbase``
from a Debian mirror, apt caches and lists removed, ``tar | podman import``, tagged
``localhost/ai-sandbox-base:bookworm`` (``BASE_IMAGE`` in ``.env``), which the
Containerfiles receive as their ``DEBIAN_IMAGE`` build argument, so builds find it locally
and never pull. Where a registry is reachable, ``BASE_IMAGE`` may name the official
``docker.io/library/debian:bookworm-slim`` instead: it is then pulled, not built."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandboxctl._proc import Runner, quote
from sandboxctl.errors import SandboxError
from sandboxctl.host.engine import image_exists, image_size

if TYPE_CHECKING:
    from sandboxctl.config import Settings

DEFAULT_TAG = "localhost/ai-sandbox-base:bookworm"
"""A name of our own: importing under ``docker.io/library/debian:bookworm-slim`` would
silently replace that official image for every other project on the machine."""
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CLEAN_GLOBS: tuple[str, ...] = (
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*_*",
    "var/log/*.log",
    "var/log/apt/*",
)
"""What the base rootfs need not carry (apt re-downloads lists on first ``apt-get update``)."""
TAIL_LINES = 25


class BaseImageError(SandboxError, RuntimeError):
    """The base image could not be built; the message says why and what to do."""


@dataclass(frozen=True)
class BaseImageSpec:
    """Which base image to build and from where."""

    tag: str = DEFAULT_TAG
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    variant: str = "minbase"


def answered_spec(
    settings: Settings, *, tag: str = "", suite: str = DEFAULT_SUITE, mirror: str = ""
) -> BaseImageSpec:
    """The base image the answers name (``BASE_IMAGE`` from ``DEBIAN_MIRROR``), with
    ``tag`` and ``mirror`` in their place when given: what ``invoke images.base`` and
    ``python -m sandboxctl base-image`` build."""
    return BaseImageSpec(
        tag=tag or settings.base_image, suite=suite, mirror=mirror or settings.debian_mirror
    )


def debootstrap_argv(spec: BaseImageSpec, rootfs: Path, is_root: bool) -> list[str]:
    """Return the debootstrap command (through sudo when not root)."""
    argv = ["debootstrap", f"--variant={spec.variant}", spec.suite, str(rootfs), spec.mirror]
    return argv if is_root else ["sudo", *argv]


def import_argv(spec: BaseImageSpec) -> list[str]:
    """Return the ``podman import`` command that reads the rootfs tar from stdin."""
    message = f"debootstrap --variant={spec.variant} {spec.suite} {spec.mirror}"
    return [
        "podman",
        "import",
        "--change",
        'CMD ["/bin/bash"]',
        "--message",
        message,
        "-",
        spec.tag,
    ]


def clean_targets(rootfs: Path) -> list[Path]:
    """Return the cache and list files to remove from ``rootfs`` before import."""
    return sorted(path for pattern in CLEAN_GLOBS for path in rootfs.glob(pattern))


def _remove(paths: list[Path], runner: Runner, is_root: bool) -> None:
    if not paths:
        return
    if is_root:
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        return
    result = runner.run(["sudo", "rm", "-rf", "--", *map(str, paths)])
    if not result.ok:
        raise BaseImageError(f"could not clean the rootfs: {result.output}")


def _pipe_import(spec: BaseImageSpec, rootfs: Path, runner: Runner, is_root: bool) -> None:
    tar = ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."]
    if not is_root:
        tar = ["sudo", *tar]
    produced, imported = runner.pipe(tar, import_argv(spec))
    if produced != 0:
        raise BaseImageError(f"`{quote(tar)}` failed with exit {produced}")
    if not imported.ok:
        raise BaseImageError(f"`podman import` failed: {imported.stderr.strip()}")


def build_base_image(
    spec: BaseImageSpec,
    runner: Runner,
    *,
    is_root: bool,
    force: bool = False,
    log: Callable[[str], None] = print,
    workdir: Path | None = None,
) -> bool:
    """Build and tag the base image; return False when it existed and ``force`` was not set.

    Works with no registry: only the Debian mirror is contacted. Raises
    :class:`BaseImageError` on failure.
    """
    if image_exists(runner, spec.tag) and not force:
        log(f"{spec.tag} exists; skipped (pass --force to rebuild it)")
        return False
    if runner.which("debootstrap") is None:
        raise BaseImageError("debootstrap is not installed: run `invoke host.prepare`")
    start = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="sandbox-base-", dir=workdir))
    rootfs = scratch / "rootfs"
    try:
        argv = debootstrap_argv(spec, rootfs, is_root)
        log(f"base image: debootstrap {spec.suite} from {spec.mirror} (about 30 s)")
        result = runner.run(argv)
        if not result.ok:
            last = "\n  ".join(result.output.splitlines()[-TAIL_LINES:])
            raise BaseImageError(
                f"debootstrap failed with exit {result.returncode}: check that {spec.mirror} "
                f"is reachable (set DEBIAN_MIRROR in .env or pass --mirror); its last lines:\n"
                f"  {last}"
            )
        _remove(clean_targets(rootfs), runner, is_root)
        _pipe_import(spec, rootfs, runner, is_root)
    finally:
        if is_root:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            runner.run(["sudo", "rm", "-rf", "--", str(scratch)])
    size = image_size(runner, spec.tag)
    shown = f": {size / 1e6:.0f} MB" if size else ""
    log(f"built {spec.tag}{shown} in {time.monotonic() - start:.0f} s")
    return True


def ensure_base_image(
    tag: str, mirror: str, runner: Runner, log: Callable[[str], None] = print
) -> None:
    """Make the base image ``tag`` present: debootstrap it when it is a ``localhost/`` name
    (no registry needed), else pull it (an official image, where a registry is reachable).
    Raises :class:`BaseImageError` when neither works."""
    if tag.startswith("localhost/"):
        build_base_image(
            BaseImageSpec(tag=tag, mirror=mirror), runner, is_root=os.geteuid() == 0, log=log
        )
        return
    if image_exists(runner, tag):
        return
    log(f"pulling the base image {tag} (BASE_IMAGE in .env)")
    result = runner.run(["podman", "pull", tag])
    if not result.ok:
        raise BaseImageError(
            f"could not pull {tag}: {result.output.strip()[-500:]}\nWith no registry, leave "
            f"BASE_IMAGE at {DEFAULT_TAG} in .env: `invoke images.base` makes it with debootstrap."
        )
