"""Text for a terminal of any width: the one place that knows how wide it is, how a
labelled item wraps, and how a table of plain columns is cut to fit (80 columns at least
read well: no box drawing, no cell wrapped into a tower of fragments)."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence

MIN_COLUMNS = 40


def columns() -> int:
    """The terminal's width ($COLUMNS first), 80 when it cannot be told."""
    return max(MIN_COLUMNS, shutil.get_terminal_size((80, 24)).columns)


def labelled(label: str, text: str, width: int, indent: int) -> list[str]:
    """``label`` then ``text``, wrapped at word boundaries to ``width``, every further line
    indented by ``indent`` spaces (long words are broken rather than overflow)."""
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=label.ljust(indent),
        subsequent_indent=" " * indent,
        break_on_hyphens=False,
    ) or [label.rstrip()]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list[str]:
    """Rows as left-aligned columns two spaces apart; the last column is cut with '...'
    so that no line is wider than ``width``."""
    count = len(header)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(count - 1)]
    lines = []
    for row in [header, *rows]:
        head = "  ".join(str(cell).ljust(size) for cell, size in zip(row, widths, strict=False))
        last = str(row[-1])
        room = width - len(head) - 2
        if len(last) > room:
            last = last[: max(room - 3, 0)] + "..." if room > 3 else ""
        lines.append(f"{head}  {last}".rstrip())
    return lines
