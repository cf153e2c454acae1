"""The record of what a run changed: a snapshot of its folder after every step that could
change files, kept where the agent cannot reach it; diffs, patches and rewinds from it.

The supervisor writes the record into the logs volume, under
``LOG_DIR/snapshots/RUN_ID/``, which the ``tools`` container (where the agent's commands
run, as the same user as the tools service) does not mount. A record kept in the
workspace, a ``.git`` there included, could be rewritten by the agent's next command.

Layout: ``meta.json`` (the run's root in the workspace), ``steps/NNNNNN.json`` (what
changed since the previous snapshot: ``{"step", "changed": {path: entry}, "removed":
[...]}``; step 0, taken before the agent's first step, holds the whole manifest), and
``packs/NNNNNN.pack`` (the contents that step added, one after the other; the step's
``objects`` maps each SHA-256 to its pack, offset and size: each content is stored once,
so a step adds only changed content, in one file however many files changed). Every
file is written once (``O_EXCL``), fsynced and made read-only; contents are checked
against their SHA-256 when read. Manifest entries are described in :mod:`.tools.snapshot`.
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sandbox_supervisor.tools.executor import Snapshots

Manifest = dict[str, list[Any]]
SNAPSHOTS_DIR = "snapshots"
CHANGING_TOOLS = frozenset({"write_file", "edit_file", "run_command"})
"""The tools after which the folder is recorded (the others only read)."""


class RecordError(RuntimeError):
    """A run's record is missing or damaged; the message says which."""


def _write_once(path: Path, data: bytes | list[bytes]) -> None:
    """Write ``data`` (or its pieces, one after the other) as a new read-only file,
    fsynced (an existing one is left as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    except FileExistsError:
        return
    try:
        for piece in [data] if isinstance(data, bytes) else data:
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Recorded:
    """What one snapshot added to the record."""

    step: int
    path: str
    changed: int
    removed: int
    stored_bytes: int
    ms: float
    refused: list[str]

    def fields(self) -> dict[str, Any]:
        """The trajectory record's fields."""
        return {
            "step": self.step,
            "record": self.path,
            "changed": self.changed,
            "removed": self.removed,
            "stored_bytes": self.stored_bytes,
            "ms": round(self.ms, 1),
            **({"not_recorded": self.refused[:20]} if self.refused else {}),
        }


class RunRecord:
    """One run's record below ``LOG_DIR/snapshots/RUN_ID`` (see the module docstring)."""

    def __init__(self, log_dir: Path, run_id: str) -> None:
        self.base = log_dir / SNAPSHOTS_DIR / run_id
        self.run_id = run_id
        self._last: Manifest | None = None
        self._objects: dict[str, list[int]] | None = None  # digest -> [pack step, offset, size]

    # -- writing -----------------------------------------------------------------------
    def start(self, root: str | None) -> None:
        """Create the record (its folder and ``meta.json``)."""
        self.base.mkdir(parents=True, exist_ok=True)
        meta = {"run_id": self.run_id, "root": root or "."}
        _write_once(self.base / "meta.json", json.dumps(meta).encode())

    def objects(self) -> dict[str, list[int]]:
        """Where each stored content is: SHA-256 -> [pack step, offset, size]."""
        if self._objects is None:
            found: dict[str, list[int]] = {}
            folder = self.base / "steps"
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                found.update(json.loads(path.read_text()).get("objects", {}))
            self._objects = found
        return self._objects

    def take(self, source: Snapshots, step: int) -> Recorded:
        """Record the folder as it is now as ``step``: store the contents the record
        lacks (in one pack) and write what changed since the last snapshot."""
        started = time.monotonic()
        objects = self.objects()
        answer = source.snapshot(None)
        current: Manifest = answer["manifest"]
        refused = [str(line) for line in answer.get("refused", [])]
        missing = [
            path
            for path, entry in current.items()
            if entry[0] == "f" and entry[3] is not None and entry[3] not in objects
        ]
        pieces: list[bytes] = []
        added: dict[str, list[int]] = {}
        stored = 0
        while missing:
            blobs = source.snapshot(missing)["blobs"]
            if not blobs:
                break
            for path, encoded in blobs.items():
                if encoded is None:
                    current[path] = [*current[path][:3], None]
                    refused.append(f"{path!r}: could not be read for the record")
                    continue
                data = base64.b64decode(encoded)
                digest = hashlib.sha256(data).hexdigest()
                if digest != current[path][3]:  # changed in between: record what was read
                    current[path] = [current[path][0], current[path][1], len(data), digest]
                if digest not in objects and digest not in added:
                    added[digest] = [step, stored, len(data)]
                    pieces.append(data)
                    stored += len(data)
            missing = [path for path in missing if path not in blobs]
        previous = self._last if self._last is not None else {}
        changed = {p: e for p, e in current.items() if previous.get(p) != e}
        removed = sorted(p for p in previous if p not in current)
        record = {"step": step, "changed": changed, "removed": removed, "objects": added}
        name = f"steps/{step:06d}.json"
        target = self.base / name
        if target.exists():
            raise RecordError(f"step {step} of run {self.run_id} is recorded already")
        if pieces:  # the contents are on disk before the step names them
            _write_once(self.base / "packs" / f"{step:06d}.pack", pieces)
        _write_once(target, json.dumps(record, sort_keys=True).encode())
        self._last = current
        objects.update(added)
        took = (time.monotonic() - started) * 1000
        return Recorded(
            step,
            f"{SNAPSHOTS_DIR}/{self.run_id}/{name}",
            len(changed),
            len(removed),
            stored,
            took,
            refused,
        )

    # -- reading -----------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """The record's ``meta.json``."""
        try:
            data = json.loads((self.base / "meta.json").read_text())
        except (OSError, ValueError) as error:
            raise RecordError(f"run {self.run_id} has no record of its changes ({error})") from None
        if not isinstance(data, dict):
            raise RecordError(f"run {self.run_id}: meta.json is damaged")
        return data

    def _step_files(self) -> list[Path]:
        folder = self.base / "steps"
        if not folder.is_dir():
            raise RecordError(f"run {self.run_id} has no recorded steps")
        return sorted(folder.iterdir(), key=lambda p: p.name)

    def steps(self) -> list[int]:
        """The steps recorded, in order (0 first)."""
        return [int(p.name.split(".")[0]) for p in self._step_files()]

    def manifest_at(self, step: int | None) -> Manifest:
        """The folder as recorded after ``step`` (None: the last one)."""
        found: Manifest = {}
        seen = False
        for path in self._step_files():
            number = int(path.name.split(".")[0])
            if step is not None and number > step:
                break
            record = json.loads(path.read_text())
            for name in record["removed"]:
                found.pop(name, None)
            found.update(record["changed"])
            seen = True
        if not seen:
            raise RecordError(f"run {self.run_id} has no record at step {step}")
        return found

    def content(self, entry: list[Any]) -> bytes | None:
        """The bytes of a file entry (None when they were not recorded)."""
        if entry[0] != "f" or entry[3] is None:
            return None
        where = self.objects().get(entry[3])
        if where is None:
            raise RecordError(f"run {self.run_id}: content {entry[3][:12]} is missing")
        pack_step, offset, size = where
        with (self.base / "packs" / f"{pack_step:06d}.pack").open("rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
        if hashlib.sha256(data).hexdigest() != entry[3]:
            raise RecordError(f"run {self.run_id}: content {entry[3][:12]} is damaged")
        return data

    def tar(self, step: int | None, out: IO[bytes]) -> list[str]:
        """Write the folder as recorded after ``step`` as a tar stream; return the paths
        whose content was not recorded (left out)."""
        left_out: list[str] = []
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path, entry in sorted(self.manifest_at(step).items()):
                member = tarfile.TarInfo(path)
                if entry[0] == "d":
                    member.type, member.mode = tarfile.DIRTYPE, entry[1]
                    tar.addfile(member)
                elif entry[0] == "l":
                    member.type, member.linkname = tarfile.SYMTYPE, entry[1]
                    tar.addfile(member)
                elif entry[0] == "f" and entry[3] is not None:
                    data = self.content(entry) or b""
                    member.mode, member.size = entry[1], len(data)
                    member.mtime = int(time.time())
                    tar.addfile(member, io.BytesIO(data))
                else:
                    left_out.append(path)
        return left_out


# -- diffs -----------------------------------------------------------------------------
GIT_MODES = {"d": "040000", "l": "120000"}


def _mode(entry: list[Any]) -> str:
    if entry[0] == "l":
        return "120000"
    return "100755" if entry[1] & 0o100 else "100644"


def _text(record: RunRecord, entry: list[Any] | None) -> str | None:
    """An entry's content as text (a link's target), or None when it is binary."""
    if entry is None:
        return ""
    if entry[0] == "l":
        return str(entry[1])
    data = record.content(entry)
    if data is None or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _hunks(old: str, new: str, path: str, old_exists: bool, new_exists: bool) -> Iterator[str]:
    """Unified diff lines of one file, with git's "no newline at end of file" marks."""
    a = f"a/{path}" if old_exists else "/dev/null"
    b = f"b/{path}" if new_exists else "/dev/null"
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), a, b, lineterm="\n"
    )
    for line in lines:
        yield line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"


def _plain(path: str) -> bool:
    """Whether git writes ``path`` unquoted (no control character, quote or backslash)."""
    return not any(ord(c) < 0x20 or c in '"\\\x7f' for c in path) and " " not in path[-1:]


def diff(record: RunRecord, old_step: int, new_step: int | None) -> tuple[str, list[str]]:
    """A git-style unified diff of the folder from ``old_step`` to ``new_step`` (None: the
    last), without ``.git/``; and the paths left out (binary, not recorded, odd names)."""
    old = record.manifest_at(old_step)
    new = record.manifest_at(new_step)
    out: list[str] = []
    left_out: list[str] = []
    for path in sorted(set(old) | set(new)):
        if path == ".git" or path.startswith(".git/"):
            continue
        before, after = old.get(path), new.get(path)
        if before is not None and before[0] in ("d", "o"):
            before = None
        if after is not None and after[0] in ("d", "o"):
            after = None
        if before == after or (before is None and after is None):
            continue
        if not _plain(path):
            left_out.append(f"{path!r}: a name git would quote")
            continue
        old_text, new_text = _text(record, before), _text(record, after)
        if old_text is None or new_text is None:
            left_out.append(f"{path!r}: binary or not recorded")
            continue
        head = [f"diff --git a/{path} b/{path}\n"]
        if before is None and after is not None:
            head.append(f"new file mode {_mode(after)}\n")
        elif after is None and before is not None:
            head.append(f"deleted file mode {_mode(before)}\n")
        elif before is not None and after is not None and _mode(before) != _mode(after):
            if "120000" in (_mode(before), _mode(after)):
                left_out.append(f"{path!r}: changed between a file and a link")
                continue
            head += [f"old mode {_mode(before)}\n", f"new mode {_mode(after)}\n"]
        body = list(_hunks(old_text, new_text, path, before is not None, after is not None))
        if body or len(head) > 1:
            out += head + body
    return "".join(out), left_out


def restore(record: RunRecord, step: int | None, root_fd: int) -> list[str]:
    """Make the folder at ``root_fd`` what it was after ``step``: its content is deleted,
    then the recorded tree is written back through :func:`~.treecopy.unpack` (the same
    checks as an import). Returns the lines of what could not be restored."""
    from sandbox_supervisor.treecopy import unpack
    from sandbox_supervisor.treewalk import remove_tree

    buffer = io.BytesIO()
    left_out = [f"{path!r}: its content was not recorded" for path in record.tar(step, buffer)]
    buffer.seek(0)
    for name in os.listdir(root_fd):
        remove_tree(root_fd, name)
    copied = unpack(buffer, root_fd)
    return left_out + copied.refused


def open_record(log_dir: Path, run_id: str) -> RunRecord:
    """The record of ``run_id`` under ``log_dir`` (a :class:`RecordError` when absent)."""
    record = RunRecord(log_dir, run_id)
    record.meta()
    return record


def run_root(workspace: Path, record: RunRecord) -> int:
    """A handle on the run's folder in ``workspace`` (never through a link)."""
    root = str(record.meta().get("root", "."))
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in [p for p in root.split("/") if p not in ("", ".")]:
            if part == "..":
                raise RecordError(f"the record's root {root!r} leaves the workspace")
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd
