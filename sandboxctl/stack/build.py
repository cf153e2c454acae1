"""How one image is built: ``podman build --pull=never --format docker`` through the
:class:`~sandboxctl._proc.Runner`, with one live line (the step, the compile counter, the
elapsed time), the whole output in a log file, the last lines and the log's path on
failure, and a summary line (image, size, time) at the end. Also the one runtime-root
script that every FROM-scratch image's build stage runs, staged into each context, and
the build of such an image from its folder (:func:`build_component_image`).
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from sandboxctl._proc import CommandNotFound, Runner, quote
from sandboxctl.config import MODEL_SERVER_DIR
from sandboxctl.errors import SandboxError
from sandboxctl.host.engine import image_size
from sandboxctl.stack.base_image import DEFAULT_TAG

TAIL_LINES = 25
_STEP = re.compile(r"^(?:\[\d+/\d+\] )?STEP (\d+/\d+): (.*)")
"""A Podman build step (multi-stage builds prefix the stage: ``[4/10] STEP 6/12: ...``)."""
_COMPILED = re.compile(r"^\[(\d+)/(\d+)\] (?!STEP |COMMIT )")
"""Ninja's counter of the compile's edges: ``[123/269] Building CXX object ...`` (not
Podman's stage counter, which prefixes its ``STEP`` and ``COMMIT`` lines the same way)."""


class ImageBuildError(SandboxError, RuntimeError):
    """A build failed; the message has what failed and where its log is."""


@dataclass(frozen=True)
class BuildResult:
    """What a finished build produced."""

    tag: str
    seconds: float
    size_bytes: int | None
    log: Path | None = None


def build_argv(
    context: Path,
    containerfile: Path,
    tag: str,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    volumes: Mapping[Path, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """Return the ``podman build`` command line (never pulls; Docker format)."""
    argv = ["podman", "build", "--pull=never", "--format", "docker"]
    argv += ["-f", str(containerfile), "-t", tag]
    if target:
        argv += ["--target", target]
    for key, value in (labels or {}).items():  # a last LABEL step: the layers above stay cached
        argv += ["--label", f"{key}={value}"]
    for host_dir, mount in (volumes or {}).items():
        argv += ["-v", f"{host_dir}:{mount}"]
    for key, value in (build_args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(str(context))
    return argv


def progress_text(line: str, current: str) -> str:
    """Return what the live line shows after ``line``: the Podman step, with the compile's
    progress in percent (from Ninja's ``[123/269]``) when the line has it; ``current``
    when the line says neither."""
    step = _STEP.match(line)
    if step:
        return f"step {step.group(1)}: {step.group(2)[:60]}"
    compiled = _COMPILED.match(line)
    if compiled:
        percent = int(compiled.group(1)) * 100 // max(int(compiled.group(2)), 1)
        return re.sub(r"( · compile \d+%)?$", f" · compile {percent}%", current, count=1)
    return current


def log_path(root: Path, tag: str) -> Path:
    """Return the build log's path for ``tag`` (``.cache/build-logs/`` in the sandbox)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag.removeprefix("localhost/"))
    return root / ".cache" / "build-logs" / f"{name}.log"


@contextmanager
def _live(label: str) -> Iterator[Callable[[str], None]]:
    """A one-line status on a terminal (rich); nothing when the output is not a terminal."""
    if not sys.stderr.isatty():
        yield lambda _text: None
        return
    from rich.console import Console

    console = Console(stderr=True)
    start = time.monotonic()
    with console.status(label) as status:
        yield lambda text: status.update(f"{label}: {text} ({time.monotonic() - start:.0f} s)")


def build_image(
    argv: list[str],
    tag: str,
    *,
    runner: Runner,
    log_file: Path,
    verbose: bool = False,
    live: bool = True,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Run the build ``argv`` of ``tag``: a live line (``live``: another build running at
    the same time has it, this one says only when it starts) and a log file (or,
    ``verbose``, all output), then a summary line. Raises :class:`ImageBuildError` with
    the last lines and the log's path when it fails."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    current = "starting"
    if not live:
        log(f"building {tag} (log: {log_file})")
    status = _live(f"building {tag}") if live else nullcontext(lambda _text: None)
    with log_file.open("w", encoding="utf-8") as saved, status as show:
        saved.write(f"$ {quote(argv)}\n")

        def take(line: str) -> None:
            nonlocal current
            saved.write(line)
            tail.append(line.rstrip("\n"))
            if verbose:
                sys.stdout.write(line)
            current = progress_text(line, current)
            show(current)

        try:
            code = runner.stream(argv, take)
        except CommandNotFound as error:
            raise ImageBuildError("podman is not installed: run `invoke host.prepare`") from error
    seconds = time.monotonic() - start
    if code != 0:
        shown = "\n  ".join(tail)
        raise ImageBuildError(
            f"building {tag} failed (exit {code}) after {seconds:.0f} s; its last lines:\n"
            f"  {shown}\nfull log: {log_file}"
        )
    size = image_size(runner, tag)
    log(f"built {tag}: {size / 1e6:.0f} MB in {seconds:.0f} s" if size else f"built {tag}")
    return BuildResult(tag, seconds, size, log_file)


RUNTIME_ROOT_SCRIPT = MODEL_SERVER_DIR / "runtime-root.sh"
"""The one script that assembles a FROM-scratch runtime root (both images use it)."""
STAGED = ".build"
"""Where a build context gets files staged from elsewhere in the sandbox (git-ignored)."""


def stage_runtime_root(root: Path, context: Path) -> Path:
    """Copy the one runtime-root script into ``context/.build/`` (a build context sees only
    its own folder) and return the copy's path."""
    staged = context / STAGED / RUNTIME_ROOT_SCRIPT.name
    staged.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / RUNTIME_ROOT_SCRIPT, staged)
    return staged


def build_component_image(
    root: Path,
    component: str,
    tag: str,
    *,
    runner: Runner,
    base_image: str = DEFAULT_TAG,
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    verbose: bool = False,
    live: bool = True,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Build ``component/Containerfile`` (a FROM-scratch image whose build stage runs the
    staged runtime-root script) FROM ``base_image``, with ``build_args``; never pulls
    (``live``: see :func:`build_image`)."""
    context = root / component
    stage_runtime_root(root, context)
    argv = build_argv(
        context,
        context / "Containerfile",
        tag,
        build_args={"DEBIAN_IMAGE": base_image, **(build_args or {})},
        labels=labels,
    )
    return build_image(
        argv, tag, runner=runner, log_file=log_path(root, tag), verbose=verbose, live=live,
        log=log,
    )  # fmt: skip
