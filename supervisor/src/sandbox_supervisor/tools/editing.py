"""The tools for real code: ``edit_file`` (replace one exact, unique text) and ``view_file``
(lines with their numbers, a range at a time).

Both go through the same confinement as the other tools (:meth:`.Workspace.open_file`
for reading: no link out, no FIFO, no hard-linked file; :func:`.builtin.replace_file`
for writing: atomic, relative to the directory's handle, protected directories kept).
An edit that does not apply says why and shows the candidates with their line numbers,
so a model can correct itself without reading the whole file again.
"""

from __future__ import annotations

import difflib
import os
import time

from pydantic import Field

from sandbox_supervisor.tools.builtin import (
    ToolArgs,
    _not_regular,
    _read_at,
    replace_file,
    result,
)
from sandbox_supervisor.tools.commands import clean_text
from sandbox_supervisor.tools.textsearch import NotRegular
from sandbox_supervisor.tools.types import Limits, ToolResult
from sandbox_supervisor.tools.workspace import Workspace

MAX_CANDIDATES = 5
CONTEXT_LINES = 3
SCAN_FACTOR = 256  # view_file reads at most read_cap_bytes * SCAN_FACTOR bytes of a file


class EditFileArgs(ToolArgs):
    """Arguments of edit_file."""

    path: str = Field(description="file path relative to the workspace root")
    old_text: str = Field(min_length=1, description="exact text to replace; must occur once")
    new_text: str = Field(description="replacement text")


class ViewFileArgs(ToolArgs):
    """Arguments of view_file."""

    path: str = Field(description="file path relative to the workspace root")
    start_line: int = Field(1, ge=1, description="first line (1-based)")
    end_line: int = Field(0, ge=0, description="last line (0: to the end)")


def _numbered(lines: list[str], first: int) -> str:
    """``lines`` with their numbers (``first`` is the number of the first one)."""
    return "\n".join(f"{first + n:6d}\t{line}" for n, line in enumerate(lines))


def _line_of(text: str, offset: int) -> int:
    """The 1-based number of the line holding character ``offset``."""
    return text.count("\n", 0, offset) + 1


def _candidates(text: str, old: str) -> str:
    """Where ``old`` might have been meant: the file's lines closest to its first line."""
    lines = text.split("\n")
    wanted = next((line for line in old.split("\n") if line.strip()), old).strip()
    stripped = [line.strip() for line in lines]
    close = difflib.get_close_matches(wanted, stripped, n=MAX_CANDIDATES, cutoff=0.6)
    shown: list[str] = []
    for match in dict.fromkeys(close):
        for number, line in enumerate(stripped, 1):
            if line == match and len(shown) < MAX_CANDIDATES:
                shown.append(_numbered([lines[number - 1]], number))
    if not shown:
        return "no similar line; view the file with view_file"
    return "the closest lines:\n" + "\n".join(shown)


def edit_file(args: EditFileArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """Replace the one occurrence of ``old_text`` in a file by ``new_text``.

    Refused when the text is missing (the closest lines are shown) or occurs more
    than once (every occurrence's line is shown); the file keeps its mode. Files over
    the write cap are refused, as is a result over it.
    """
    started = time.monotonic()
    try:
        fd, rel = ws.open_file(args.path)
    except NotRegular as exc:
        return _not_regular("edit_file", args.path, exc.kind, started)
    try:
        info = os.fstat(fd)
        if info.st_size > limits.write_cap_bytes:
            return result(
                "edit_file",
                "refused",
                f"{rel} is {info.st_size} bytes; edit_file handles files up to "
                f"{limits.write_cap_bytes} bytes",
                started,
            )
        data = _read_at(fd, 0, limits.write_cap_bytes + 1)
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="surrogateescape")
    old = args.old_text
    count = text.count(old)
    if count == 0:
        hint = ""
        if text.replace("\r\n", "\n").count(old.replace("\r\n", "\n")) == 1:
            hint = " (it occurs with other line endings)"
        return result(
            "edit_file",
            "failed",
            clean_text(
                f"old_text not found in {rel}{hint}; {_candidates(text, old)}".encode(
                    "utf-8", "replace"
                )
            ),
            started,
        )
    if count > 1:
        where: list[str] = []
        at = text.find(old)
        while at >= 0 and len(where) < MAX_CANDIDATES:
            number = _line_of(text, at)
            where.append(_numbered([text.split("\n")[number - 1]], number))
            at = text.find(old, at + 1)
        more = f"\n[{count - len(where)} more]" if count > len(where) else ""
        return result(
            "edit_file",
            "failed",
            clean_text(
                f"old_text occurs {count} times in {rel}; include more of the surrounding "
                f"lines so it occurs once. It starts at:\n{chr(10).join(where)}{more}".encode(
                    "utf-8", "replace"
                )
            ),
            started,
        )
    at = text.index(old)
    new_text = text[:at] + args.new_text + text[at + len(old) :]
    new_data = new_text.encode("utf-8", errors="surrogateescape")
    if len(new_data) > limits.write_cap_bytes:
        return result(
            "edit_file",
            "refused",
            f"the edited file would be {len(new_data)} bytes; the limit is "
            f"{limits.write_cap_bytes}",
            started,
        )
    replace_file(ws, rel, new_data, info.st_mode)
    first = _line_of(new_text, at)
    last = first + args.new_text.count("\n")
    lines = new_text.split("\n")
    low = max(1, first - CONTEXT_LINES)
    high = min(len(lines), last + CONTEXT_LINES)
    shown = _numbered(lines[low - 1 : high], low)
    return result(
        "edit_file",
        "ok",
        clean_text(
            f"edited {rel}: lines {first}-{last} now read (with context):\n{shown}".encode(
                "utf-8", "replace"
            )
        ),
        started,
        details={"first_line": first, "last_line": last},
    )


def view_file(args: ViewFileArgs, ws: Workspace, limits: Limits) -> ToolResult:
    """Show lines ``start_line``..``end_line`` of a text file, each with its number.

    The file is read from the start in chunks, only as far as needed, and never more
    than ``read_cap_bytes * SCAN_FACTOR`` bytes (a huge or sparse file costs no more);
    the output stops at ``read_cap_bytes`` with a note saying where to continue.
    """
    started = time.monotonic()
    end = args.end_line or None
    if end is not None and end < args.start_line:
        return result("view_file", "invalid", "end_line is before start_line", started)
    try:
        fd, rel = ws.open_file(args.path)
    except NotRegular as exc:
        return _not_regular("view_file", args.path, exc.kind, started)
    shown: list[str] = []
    size_shown = 0
    number = 0
    offset = 0
    scan_cap = limits.read_cap_bytes * SCAN_FACTOR
    note = ""
    pending = b""
    ended = False
    try:
        while True:
            chunk = os.pread(fd, 1 << 16, offset) if offset < scan_cap else b""
            offset += len(chunk)
            if not chunk:
                lines = [pending] if pending else []
                pending = b""
                ended = offset < scan_cap
                if not ended:
                    note = f"[stopped reading at byte {offset}: the file is too large to view]"
            else:
                pending += chunk
                *lines, pending = pending.split(b"\n")
            for raw in lines:
                number += 1
                if number < args.start_line:
                    continue
                if end is not None and number > end:
                    break
                line = clean_text(raw)
                if size_shown + len(line) > limits.read_cap_bytes:
                    note = f"[output cap reached; continue with start_line={number}]"
                    break
                shown.append(f"{number:6d}\t{line}")
                size_shown += len(line) + 8
            if note or not chunk or (end is not None and number >= end):
                break
    finally:
        os.close(fd)
    total = f" of {number}" if ended else ""
    if not shown:
        if number < args.start_line and ended:
            message = f"{rel} has {number} lines; start_line {args.start_line} is past the end"
            return result("view_file", "failed", message, started)
        return result("view_file", "ok", note or f"{rel}: no lines to show", started)
    first = args.start_line
    last = first + len(shown) - 1
    head = f"{rel}: lines {first}-{last}{total}"
    body = "\n".join(shown)
    return result(
        "view_file",
        "ok",
        f"{head}\n{body}" + (f"\n{note}" if note else ""),
        started,
        truncated=bool(note),
    )
