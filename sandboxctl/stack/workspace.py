"""A user's project in and out of the workspace volume: import, list, export.

The host never mounts the volume. It packs the source folder itself (a git checkout:
tracked and untracked-but-not-ignored files, and ``.git``; no link followed out of the
source) and pipes the tar stream into a one-shot container of the supervisor image
that mounts the workspace volume and nothing else, with no network and no
capabilities, running ``sandbox-supervisor workspace unpack NAME``. Export runs
``... workspace pack NAME`` the same way, the volume read-only, and unpacks the stream
into ``DEST`` on the host with :func:`sandbox_supervisor.treecopy.unpack`: the
workspace is the agent's, so the stream is treated as hostile (no name outside
``DEST``, no link followed, no device, caps on sizes).
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from sandbox_supervisor.projects import checked_name
from sandbox_supervisor.treecopy import Copied, Keep, TreeLimits, pack, unpack
from sandbox_supervisor.view import safe

from sandboxctl._proc import Result, Runner
from sandboxctl.errors import SandboxError
from sandboxctl.stack import supervisor_image
from sandboxctl.stack.project import Stack

TOOLS_USER = "10001:10001"


class WorkspaceError(SandboxError, RuntimeError):
    """A project could not be imported, listed or exported; the message says why."""


@dataclass(frozen=True)
class VolumeAccess:
    """How to reach the workspace volume: one-shot containers of ``image`` on ``runner``'s
    engine, mounting ``volume`` (and nothing else) at ``/workspace``."""

    runner: Runner
    volume: str
    image: str
    label: str = ""
    logs: str = ""

    @classmethod
    def of(cls, stack: Stack) -> VolumeAccess:
        """The stack's workspace volume and supervisor image."""
        return cls(
            stack.runner,
            stack.volume("workspace"),
            supervisor_image.image_tag(stack.project),
            stack.settings.volume_label,
            stack.volume("logs"),
        )

    def argv(self, *command: str, writable: bool) -> list[str]:
        """``podman run`` of ``sandbox-supervisor workspace COMMAND`` against the volume."""
        return self.helper([(self.volume, "/workspace", writable)], "workspace", *command)

    def helper(self, mounts: list[tuple[str, str, bool]], *command: str) -> list[str]:
        """``podman run`` of ``sandbox-supervisor COMMAND`` in a one-shot container with
        ``mounts`` (volume, target, writable) and nothing else: no network, no
        capabilities, a read-only root, the tools user."""
        volumes: list[str] = []
        for volume, target, writable in mounts:
            options = ([] if writable else ["ro"]) + ([self.label] if self.label else [])
            volumes += ["-v", f"{volume}:{target}" + (":" + ",".join(options) if options else "")]
        return [
            "podman", "run", "--rm", "-i", "--pull=never", "--network=none",
            "--cap-drop=all", "--security-opt=no-new-privileges", "--read-only",
            f"--user={TOOLS_USER}", *volumes, self.image, "sandbox-supervisor", *command,
        ]  # fmt: skip

    def require(self) -> None:
        """Raise :class:`WorkspaceError` unless the volume and the image exist."""
        if not self.runner.run(["podman", "volume", "exists", self.volume]).ok:
            raise WorkspaceError(
                f"the workspace volume {self.volume} does not exist yet: run `invoke up` first"
            )
        if not self.runner.run(["podman", "image", "exists", self.image]).ok:
            raise WorkspaceError(f"the image {self.image} is missing: run `invoke up` first")


def _git_files(source: Path, runner: Runner) -> set[str] | None:
    """The files git would commit in ``source`` (tracked, and untracked but not ignored),
    or None when ``source`` is not the top of a git checkout."""
    if not (source / ".git").exists():
        return None
    listed = runner.run(
        ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    )
    if not listed.ok:
        raise WorkspaceError(f"git ls-files in {source} failed: {safe(listed.output)[-300:]}")
    return {name for name in listed.stdout.split("\0") if name}


def source_filter(source: Path, runner: Runner) -> Keep | None:
    """What to take from ``source``: for a git checkout, what git would commit and
    ``.git`` itself; for a plain folder, everything (None)."""
    files = _git_files(source, runner)
    if files is None:
        return None
    folders = {
        "/".join(name.split("/")[:n]) for name in files for n in range(1, name.count("/") + 1)
    }

    def keep(parts: tuple[str, ...], info: os.stat_result) -> bool:
        if parts[0] == ".git":
            return True
        rel = "/".join(parts)
        return rel in folders if stat.S_ISDIR(info.st_mode) else rel in files

    return keep


def pack_source(source: Path, out: BinaryIO, runner: Runner, limits: TreeLimits) -> Copied:
    """Pack ``source`` (see :func:`source_filter`) as a tar stream into ``out``."""
    if not source.is_dir():
        raise WorkspaceError(f"{source} is not a folder")
    keep = source_filter(source, runner)
    fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return pack(fd, out, limits, keep)
    finally:
        os.close(fd)


def import_project(
    access: VolumeAccess,
    source: Path,
    name: str,
    *,
    replace: bool = False,
    limits: TreeLimits | None = None,
) -> tuple[Copied, Result]:
    """Copy ``source`` into the workspace as ``name``; return what the host packed and
    the container's result (its stderr says what it unpacked)."""
    checked_name(name)
    limits = limits or TreeLimits()
    with tempfile.TemporaryFile() as stream:
        packed = pack_source(source, stream, access.runner, limits)
        stream.seek(0)
        command = ["unpack", name, *(["--replace"] if replace else [])]
        result = access.runner.run_fed(access.argv(*command, writable=True), stream)
    if not result.ok:
        raise WorkspaceError(f"import into the workspace failed: {safe(result.stderr)[-500:]}")
    return packed, result


def list_projects(access: VolumeAccess) -> list[str]:
    """The workspace's projects, one line each (name, files, bytes), safe to print."""
    result = access.runner.run(access.argv("list", writable=False))
    if not result.ok:
        raise WorkspaceError(f"listing the workspace failed: {safe(result.stderr)[-500:]}")
    return [safe(line) for line in result.stdout.splitlines() if line]


def _empty_destination(dest: Path) -> int:
    """A handle on ``dest``: a new folder, or an empty one (never through a link)."""
    if dest.is_symlink():
        raise WorkspaceError(f"{dest} is a link: give a real folder")
    if dest.exists():
        if not dest.is_dir() or any(dest.iterdir()):
            raise WorkspaceError(f"{dest} exists and is not an empty folder")
    else:
        dest.mkdir(mode=0o755)
    return os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def export_project(
    access: VolumeAccess, name: str, dest: Path, limits: TreeLimits | None = None
) -> tuple[Copied, str]:
    """Copy project ``name`` out of the workspace into ``dest`` (new or empty); return
    what was written (with a line per entry left out) and the container's stderr."""
    checked_name(name)
    limits = limits or TreeLimits()
    fd = _empty_destination(dest)

    def read(stream: IO[bytes]) -> Copied:
        try:
            return unpack(stream, fd, limits)
        except tarfile.TarError as error:
            broken = Copied()
            broken.refuse(name, f"the stream broke: {error}")
            return broken

    try:
        code, copied, errors = access.runner.consume(
            access.argv("pack", name, writable=False), read
        )
    finally:
        os.close(fd)
    if code != 0:
        raise WorkspaceError(f"export from the workspace failed: {safe(errors)[-500:]}")
    return copied, errors


def _read_record(access: VolumeAccess, *command: str) -> Result:
    """``sandbox-supervisor record COMMAND`` in a one-shot container that mounts the logs
    volume read-only; :class:`WorkspaceError` when it fails."""
    result = access.runner.run(access.helper([(access.logs, "/logs", False)], "record", *command))
    if not result.ok:
        raise WorkspaceError(f"reading the run's record failed: {safe(result.stderr)[-500:]}")
    return result


def run_diff(access: VolumeAccess, run_id: str, step: int | None) -> tuple[str, str]:
    """The diff of a run's recorded changes (whole run, or ``step``) and the lines on what
    was left out, read from the run's record."""
    result = _read_record(
        access, "diff", run_id, *(["--step", str(step)] if step is not None else [])
    )
    return result.stdout, result.stderr


def step_diffs(access: VolumeAccess, run_id: str) -> dict[int, str]:
    """Each recorded step's own diff (from the step recorded before it), by step, read from
    the run's record (for the run viewer)."""
    from sandbox_supervisor.jsonsafe import loads

    result = _read_record(access, "diffs", run_id)
    try:
        found = loads(result.stdout).get("diffs", {})
        return {int(step): str(text) for step, text in found.items()}
    except (ValueError, AttributeError, TypeError) as error:
        raise WorkspaceError(f"the run's record gave no diffs: {error}") from error


def rewind(access: VolumeAccess, run_id: str, step: int) -> str:
    """Restore the run's folder in the workspace to ``step`` (0: before the run); return
    what the container said (what could not be restored)."""
    mounts = [(access.logs, "/logs", False), (access.volume, "/workspace", True)]
    command = ["record", "rewind", run_id, "--step", str(step)]
    result = access.runner.run(access.helper(mounts, *command))
    if not result.ok:
        raise WorkspaceError(f"rewinding failed: {safe(result.stderr)[-500:]}")
    return result.stderr
