"""Where a cold first command spends its time: each line of its output with the seconds
since it started (a timeline the fresh-machine run records), the waits between them, and
the llama.cpp compile's seconds by CMake target (the table build-llama.sh prints at the
end of the model image's build log), written as one Markdown report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_TABLE_START = "compile seconds by target"
_ROW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s{2}(\S.*)$")
_WALL = "(wall clock, first file to last)"


@dataclass(frozen=True)
class Wait:
    """One output line and the seconds until the next one (or the end)."""

    at_s: float
    seconds: float
    line: str


def timeline_line(elapsed_s: float, line: str) -> str:
    """One line of a timeline file: seconds since the start, a tab, the output line."""
    return f"{elapsed_s:.1f}\t{line.rstrip(chr(10))}\n"


def parse_timeline(text: str) -> list[tuple[float, str]]:
    """The (seconds, line) pairs of a timeline file; lines that are not one are skipped."""
    pairs = []
    for row in text.splitlines():
        stamp, tab, line = row.partition("\t")
        if not tab:
            continue
        try:
            seconds = float(stamp)
        except ValueError:
            continue
        pairs.append((seconds, line))
    return pairs


def code_cell(text: str) -> str:
    """``text`` as one inert Markdown table cell: a code span whose fence is longer than
    any run of backticks in it, its pipes escaped, anything unprintable shown as ``?``.
    The output lines come from the agent's run, so they are the model's words in part."""
    text = "".join(char if char.isprintable() else "?" for char in text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def waits(timeline: Sequence[tuple[float, str]], total_s: float) -> list[Wait]:
    """Each line with the time until the next line; the last one waits until ``total_s``."""
    ends = [at for at, _line in timeline[1:]] + [total_s]
    return [
        Wait(at, max(end - at, 0.0), line) for (at, line), end in zip(timeline, ends, strict=True)
    ]


def compile_targets(build_log: str) -> tuple[float | None, list[tuple[float, str]]]:
    """The compile's wall clock and its seconds by CMake target (largest first), read from
    the table build-llama.sh prints; (None, []) when the log has none (a cached build)."""
    _before, found, after = build_log.rpartition(_TABLE_START)
    if not found:
        return None, []
    wall: float | None = None
    rows: list[tuple[float, str]] = []
    for line in after.splitlines()[1:]:
        match = _ROW.match(line)
        if not match:
            break
        seconds, name = float(match.group(1)), match.group(2).strip()
        if name == _WALL:
            wall = seconds
        else:
            rows.append((seconds, name))
    return wall, sorted(rows, reverse=True)


def render(
    *,
    command: str,
    total_s: float,
    timeline: Sequence[tuple[float, str]],
    build_log: str,
    machine: str,
    date: str,
    longest: int = 12,
) -> str:
    """The Markdown report: the total, the longest waits in order of time, the compile by
    target with each CPU variant's share."""
    slow = sorted(waits(timeline, total_s), key=lambda wait: wait.seconds, reverse=True)
    shown = sorted(slow[:longest], key=lambda wait: wait.at_s)
    lines = [
        "# The cold first command",
        "",
        f"Measured {date} on {machine}: `{command}` in a fresh Debian 12 (nothing cached, "
        f"no image preloaded) took **{total_s:.0f} s**. Written by `nox -s speed` (the "
        "`fresh` session's cold run, `FRESH_PRELOAD=0`).",
        "",
        f"## Where the time goes: the {len(shown)} longest waits",
        "",
        "Each row is a line of the command's output and the seconds until its next line: "
        "the work that line announced (steps that overlap, like the images built beside "
        "the compile, show as the lines around them).",
        "",
        "| at | wait | share | output line |",
        "| ---: | ---: | ---: | --- |",
    ]
    for wait in shown:
        share = 100 * wait.seconds / total_s if total_s else 0.0
        cell = code_cell(wait.line[:110])
        lines.append(f"| {wait.at_s:.0f} s | {wait.seconds:.0f} s | {share:.0f}% | {cell} |")
    wall, targets = compile_targets(build_log)
    lines += ["", "## The llama.cpp compile by CMake target", ""]
    if not targets:
        lines.append("The model image's build log has no compile table (a cached build).")
        return "\n".join(lines) + "\n"
    summed = sum(seconds for seconds, _name in targets)
    lines += [
        f"Ninja's log in the model image's build: {summed:.0f} s of compiler time over "
        f"{wall or 0:.0f} s of wall clock (the jobs run in parallel). The CPU variants are "
        "the `ggml-cpu-*` rows; `LLAMA_CPU_VARIANTS` chooses them.",
        "",
        "| target | compiler seconds | share |",
        "| --- | ---: | ---: |",
    ]
    lines += [
        f"| `{name}` | {seconds:.0f} | {100 * seconds / summed:.0f}% |" for seconds, name in targets
    ]
    variants = _variant_seconds(targets)
    if variants:
        lines += [
            "",
            "CPU variants together: "
            + ", ".join(f"`{name}` {seconds:.0f} s" for name, seconds in variants)
            + f" ({100 * sum(s for _n, s in variants) / summed:.0f}% of the compile).",
        ]
    return "\n".join(lines) + "\n"


def _variant_seconds(targets: Iterable[tuple[float, str]]) -> list[tuple[str, float]]:
    """Each CPU variant's compiler seconds, its feature-probe library included."""
    totals: dict[str, float] = {}
    for seconds, name in targets:
        if name.startswith("ggml-cpu-"):
            variant = name.removeprefix("ggml-cpu-").removesuffix("-feats")
            totals[variant] = totals.get(variant, 0.0) + seconds
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)


HISTORY_HEADER = (
    "# The cold first command, run by run\n\n"
    "One row per `nox -s speed` cold run, appended (the newest last): where it stood then, "
    "to measure each change against. The breakdown of the newest is cold-start.md.\n\n"
    "| date | commit | total | compile wall clock | CPU variants |\n"
    "| --- | --- | ---: | ---: | --- |\n"
)


def history_row(*, date: str, commit: str, total_s: float, build_log: str) -> str:
    """One row of the history table: the run's total, its compile's wall clock and the
    CPU variants its build compiled (from the compile table's ``ggml-cpu-*`` rows)."""
    wall, targets = compile_targets(build_log)
    variants = ",".join(sorted(name for name, _s in _variant_seconds(targets))) or "?"
    compile_text = f"{wall:.0f} s" if wall is not None else "cached"
    return f"| {date} | `{commit}` | {total_s:.0f} s | {compile_text} | {variants} |\n"
