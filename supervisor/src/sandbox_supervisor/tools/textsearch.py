"""Opening only regular files, and the text search behind ``search_text``.

Nothing here may block on a file that is not a regular file: a FIFO made in the
workspace (``mkfifo f``) blocks a plain ``open`` until a writer appears, which
would pin one of the tools service's execution slots for ever. Files are opened
with ``O_NONBLOCK``, checked with ``fstat`` and only then switched back to
blocking reads; walks yield regular files only (``lstat``, links never followed).

A regular expression can take exponential time on a single line (``(a+)+$``
over 24 ``a`` and a ``b`` takes ~0.75 s here, and each further ``a`` doubles it)
and Python's ``re`` holds the GIL and cannot be interrupted while it matches,
so no cap on line length short enough to bound every pattern is also long
enough to be useful (``.*.*.*=`` over a 512-character line takes ~2.7 s). A
regex search therefore runs in a child process that is killed at its deadline
(:func:`search_in_child`); this module is stdlib-only so that the child is a
bare ``python -I`` running this file. A literal search cannot backtrack and
runs in-process, with the same deadline checked between files and lines.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

REGEX_LINE_CAP = 4096  # characters of a line a regex is matched against
SHOWN_CHARS = 300  # characters of a matching line shown
_CHECK_EVERY = 256  # lines between deadline checks
_KILL_GRACE_S = 0.5  # the child's own deadline comes first; this is the backstop


class NotRegularFile(Exception):
    """A path names something other than a regular file; ``kind`` says what."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def kind_of(mode: int) -> str:
    """Name the kind of file ``mode`` describes, for messages to a model."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> int:
    """Open a regular file for reading, never blocking; raise :class:`NotRegularFile`.

    ``O_NONBLOCK`` makes opening a FIFO return at once; ``fstat`` on the open
    descriptor (not the path, which could be swapped in between) decides, and
    blocking mode is restored before the caller reads.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(kind_of(mode))
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def walk_regular_files(root: str) -> Iterator[str]:
    """Yield the regular files under ``root`` (or ``root`` itself), sorted, skipping ``.git``.

    Links, FIFOs, sockets and devices are skipped; links are never followed.
    """
    try:
        mode = os.lstat(root).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode):
        yield root
        return
    if not stat.S_ISDIR(mode):
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    yield path
            except OSError:
                continue


@dataclass(frozen=True)
class SearchOutcome:
    """Matches (``path:line: text``) and the notes on why a search stopped or was cut."""

    matches: list[str]
    notes: list[str]
    hit_deadline: bool = False
    hit_match_cap: bool = False


def search(
    pattern: str,
    *,
    regex: bool,
    root: str,
    base: str,
    max_matches: int,
    read_bytes: int,
    timeout_s: float,
    emit: Callable[[str], None] | None = None,
) -> SearchOutcome:
    """Search the regular files under ``root``; paths are shown relative to ``base``.

    The deadline is checked between files and every few hundred lines; it cannot
    interrupt one ``re`` call, hence :func:`search_in_child` for regexes.
    """
    deadline = time.monotonic() + timeout_s
    compiled = re.compile(pattern if regex else re.escape(pattern))
    matches: list[str] = []
    notes: list[str] = []
    long_lines = 0
    hit_deadline = hit_cap = False
    for path in walk_regular_files(root):
        if time.monotonic() > deadline:
            hit_deadline = True
            break
        try:
            fd = open_regular(path)
        except (OSError, NotRegularFile):
            continue
        with os.fdopen(fd, "rb") as handle:
            try:
                data = handle.read(read_bytes)
            except OSError:
                continue
        if b"\x00" in data[:8192]:
            continue  # binary
        rel = os.path.relpath(path, base).replace(os.sep, "/")
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if number % _CHECK_EVERY == 0 and time.monotonic() > deadline:
                hit_deadline = True
                break
            searched = line
            if regex and len(line) > REGEX_LINE_CAP:
                searched = line[:REGEX_LINE_CAP]
                long_lines += 1
            if compiled.search(searched):
                match = f"{rel}:{number}: {line[:SHOWN_CHARS]}"
                matches.append(match)
                if emit is not None:
                    emit(match)
                if len(matches) >= max_matches:
                    hit_cap = True
                    break
        if hit_deadline or hit_cap:
            break
    if long_lines:
        notes.append(
            f"[{long_lines} lines longer than {REGEX_LINE_CAP} characters were searched"
            f" in their first {REGEX_LINE_CAP} only]"
        )
    if hit_cap:
        notes.append(f"[stopped at {max_matches} matches]")
    if hit_deadline:
        notes.append(f"[search stopped at its {timeout_s:g} s deadline; results are partial]")
    return SearchOutcome(matches, notes, hit_deadline, hit_cap)


def search_in_child(
    pattern: str,
    *,
    root: str,
    base: str,
    max_matches: int,
    read_bytes: int,
    timeout_s: float,
) -> SearchOutcome:
    """Run a regex :func:`search` in a ``python -I`` child, killed past its deadline.

    The child prints each match as a JSON line as it finds it, then its notes,
    so a kill keeps the matches found so far.
    """
    request = {
        "pattern": pattern,
        "root": root,
        "base": base,
        "max_matches": max_matches,
        "read_bytes": read_bytes,
        "timeout_s": timeout_s,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-I", os.path.abspath(__file__)],
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=timeout_s + _KILL_GRACE_S,
            env={"LC_ALL": "C.UTF-8"},
            cwd=base,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        matches, _ = _parse_child_output(exc.stdout or b"")
        note = (
            f"[regex search killed after {timeout_s:g} s: the pattern backtracks too much"
            " on some line; results are partial]"
        )
        return SearchOutcome(matches, [note], hit_deadline=True)
    matches, tail = _parse_child_output(done.stdout)
    if done.returncode != 0 or tail is None:
        error = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        raise OSError(f"regex search failed: {' '.join(error) or done.returncode}")
    notes = tail.get("notes")
    return SearchOutcome(
        matches,
        [str(note) for note in notes] if isinstance(notes, list) else [],
        hit_deadline=bool(tail["hit_deadline"]),
        hit_match_cap=bool(tail["hit_match_cap"]),
    )


def _parse_child_output(raw: bytes) -> tuple[list[str], dict[str, object] | None]:
    matches: list[str] = []
    tail: dict[str, object] | None = None
    for line in raw.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            break  # cut off mid-line by the kill
        if isinstance(item, str):
            matches.append(item)
        elif isinstance(item, dict):
            tail = item
    return matches, tail


def _child_main() -> None:
    request = json.loads(sys.stdin.buffer.read())

    def emit(match: str) -> None:
        sys.stdout.write(json.dumps(match) + "\n")
        sys.stdout.flush()

    outcome = search(
        request["pattern"],
        regex=True,
        root=request["root"],
        base=request["base"],
        max_matches=request["max_matches"],
        read_bytes=request["read_bytes"],
        timeout_s=request["timeout_s"],
        emit=emit,
    )
    tail = {
        "notes": outcome.notes,
        "hit_deadline": outcome.hit_deadline,
        "hit_match_cap": outcome.hit_match_cap,
    }
    sys.stdout.write(json.dumps(tail) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _child_main()
