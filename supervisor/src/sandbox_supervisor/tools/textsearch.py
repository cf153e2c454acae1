"""Opening only regular files, and the text search behind ``search_text``.

Nothing here may block on a file that is not a regular file: a FIFO made in the
workspace (``mkfifo f``) blocks a plain ``open`` until a writer appears, which
would pin one of the tools service's execution slots for ever. Files are opened
with ``O_NONBLOCK``, checked with ``fstat`` and only then switched back to
blocking reads; walks go through directory handles (``openat`` with ``O_NOFOLLOW``),
yield regular files only and never follow a link.

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


class NotRegular(Exception):
    """A path names something other than a regular file; ``kind`` says what."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class HardLinked(Exception):
    """A regular file with more than one hard link (its other name may be outside)."""

    def __init__(self, links: int) -> None:
        super().__init__(f"{links} hard links")
        self.links = links


def kind_of(mode: int) -> str:
    """Name the kind of file ``mode`` describes, for messages to a model."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_regular(fd: int) -> os.stat_result:
    """``fstat`` an open file: a regular file with one link, switched to blocking reads.

    Raises :class:`NotRegular` or :class:`HardLinked`. ``fstat`` on the descriptor
    (not the name, which could be swapped in between) decides.
    """
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegular(kind_of(info.st_mode))
    if info.st_nlink > 1:
        raise HardLinked(info.st_nlink)
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    return info


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
MAX_DEPTH = 64  # directory levels a search descends


def _listing(fd: int) -> Iterator[str]:
    return iter(sorted(os.listdir(fd)))


def walk_regular_files(
    start_fd: int, start_rel: str, skipped: list[str]
) -> Iterator[tuple[int, str]]:
    """Yield ``(fd, path)`` for the regular files under an open file or directory.

    Iterative (a stack of directory handles, no recursion), sorted, ``.git`` skipped,
    at most ``MAX_DEPTH`` levels. Each name is opened relative to its directory's
    handle with ``O_NOFOLLOW``, after ``fstatat`` says it is a directory or a regular
    file, and checked again on the descriptor, so links are never followed and a
    swapped name is skipped. Files with several hard links are skipped and counted
    in ``skipped``. The caller closes each yielded descriptor.
    """
    info = os.fstat(start_fd)
    if stat.S_ISREG(info.st_mode):
        fd = os.dup(start_fd)
        try:
            check_regular(fd)
        except (NotRegular, HardLinked) as exc:
            os.close(fd)
            skipped.append(f"{start_rel}: {exc}")
            return
        yield fd, start_rel
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    first = os.dup(start_fd)
    stack = [(first, start_rel, _listing(first))]
    try:
        while stack:
            dir_fd, rel, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(dir_fd)
                stack.pop()
                continue
            path = name if rel == "." else f"{rel}/{name}"
            try:
                mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
                if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)) or name == ".git":
                    continue
                if stat.S_ISDIR(mode) and len(stack) >= MAX_DEPTH:
                    skipped.append(f"{path}/: deeper than {MAX_DEPTH} levels")
                    continue
                fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                stack.append((fd, path, _listing(fd)))
                continue
            try:
                check_regular(fd)
            except (NotRegular, HardLinked) as exc:
                os.close(fd)
                if isinstance(exc, HardLinked):
                    skipped.append(f"{path}: {exc}")
                continue
            yield fd, path
    finally:
        for dir_fd, _, _ in stack:
            os.close(dir_fd)


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
    start_fd: int,
    start_rel: str,
    max_matches: int,
    read_bytes: int,
    timeout_s: float,
    emit: Callable[[str], None] | None = None,
) -> SearchOutcome:
    """Search the regular files under the open file or directory ``start_fd``.

    The deadline is checked between files and every few hundred lines; it cannot
    interrupt one ``re`` call, hence :func:`search_in_child` for regexes.
    """
    deadline = time.monotonic() + timeout_s
    compiled = re.compile(pattern if regex else re.escape(pattern))
    matches: list[str] = []
    notes: list[str] = []
    long_lines = 0
    hit_deadline = hit_cap = False
    skipped: list[str] = []
    for fd, rel in walk_regular_files(start_fd, start_rel, skipped):
        try:
            data = os.pread(fd, read_bytes, 0)
        except OSError:
            continue
        finally:
            os.close(fd)
        if time.monotonic() > deadline:
            hit_deadline = True
            break
        if b"\x00" in data[:8192]:
            continue  # binary
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
    if skipped:
        shown = "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
        notes.append(f"[{len(skipped)} not searched: {shown}]")
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
    start_fd: int,
    start_rel: str,
    max_matches: int,
    read_bytes: int,
    timeout_s: float,
) -> SearchOutcome:
    """Run a regex :func:`search` in a ``python -I`` child, killed past its deadline.

    The child inherits ``start_fd`` (the handle the workspace walk opened), so it
    searches exactly what was resolved, never a path by name.

    The child prints each match as a JSON line as it finds it, then its notes,
    so a kill keeps the matches found so far.
    """
    request = {
        "pattern": pattern,
        "start_fd": start_fd,
        "start_rel": start_rel,
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
            cwd="/",
            pass_fds=(start_fd,),
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
        start_fd=request["start_fd"],
        start_rel=request["start_rel"],
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
