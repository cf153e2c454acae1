"""Build images with ``podman build --pull=never``, output streamed as it comes.

``--pull=never``: base images come from local storage (``invoke images.base`` on hosts with
no registry), so a build never reaches for a registry behind the user's back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sandboxctl._proc import CommandNotFound, Runner, quote


class ImageBuildError(RuntimeError):
    """``podman build`` failed; the message has the command and the exit code."""


@dataclass(frozen=True)
class BuildResult:
    """What a finished build produced."""

    tag: str
    seconds: float
    size_bytes: int | None


def build_argv(
    context: Path,
    containerfile: Path,
    tag: str,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
) -> list[str]:
    """Return the ``podman build`` command line (never pulls)."""
    argv = ["podman", "build", "--pull=never", "-f", str(containerfile), "-t", tag]
    if target:
        argv += ["--target", target]
    for key, value in (build_args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(str(context))
    return argv


def build_image(
    context: Path,
    containerfile: Path,
    tag: str,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    *,
    runner: Runner | None = None,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Build ``tag`` from ``containerfile`` in ``context``; podman's progress streams through.

    Raises :class:`ImageBuildError` when podman is missing or the build fails.
    """
    run = runner or Runner()
    argv = build_argv(context, containerfile, tag, target, build_args)
    log(f"building {tag}: {quote(argv)}")
    start = time.monotonic()
    try:
        result = run.run(argv, capture=False)
    except CommandNotFound as error:
        raise ImageBuildError("podman is not installed: run `invoke host.prepare`") from error
    seconds = time.monotonic() - start
    if not result.ok:
        raise ImageBuildError(
            f"building {tag} failed (exit {result.returncode}) after {seconds:.0f} s; "
            "the build output above shows the failing step"
        )
    inspect = run.run(["podman", "image", "inspect", "--format", "{{.Size}}", tag])
    text = inspect.stdout.strip()
    size = int(text) if inspect.ok and text.isdigit() else None
    shown = f", {size / 1e6:.0f} MB" if size else ""
    log(f"built {tag} in {seconds:.0f} s{shown}")
    return BuildResult(tag=tag, seconds=seconds, size_bytes=size)
