"""The benchmark report (`invoke bench.report`): every figure in one results file, a Markdown
table and a PNG chart, and the README's Performance section rewritten from them.

Collects: the model server's benchmark (:mod:`sandboxctl.bench.model`: prompt and
generation tokens/s in the container and on the host, interleaved; start to ready; first
answer; build times; image size), the supervisor image's size, the supervisor's own
overhead per agent step (``supervisor/bench/bench_supervisor.py``), and the last
end-to-end run's `up` and task figures (``results/e2e.json``) when it passed. The machine
(CPU, cores, memory, kernel, Podman) and the date go with them.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sandboxctl import _chart
from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.bench import model as model_bench

README_START = "<!-- bench:start (written by `invoke bench.report --readme`) -->"
README_END = "<!-- bench:end -->"
SUPERVISOR_FIGURES = {
    "overhead per step, null tool, fsync": "step_fsync_ms",
    "overhead per step, null tool, no fsync": "step_no_fsync_ms",
    "per step with read_file, fsync": "step_read_file_fsync_ms",
    "resident memory after imports": "rss_after_imports_mib",
}


def machine(runner: Runner | None = None) -> dict[str, Any]:
    """The machine the figures were measured on (Podman's version None without Podman)."""
    cpu = "unknown"
    memory_gib = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        total = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
        memory_gib = round(int(total) / 2**20, 1)
    except OSError:
        pass
    try:
        argv = ["podman", "version", "--format", "{{.Client.Version}}"]
        podman = (runner or Runner()).run(argv).stdout.strip()
    except CommandNotFound:
        podman = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "podman": podman or None,
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


def supervisor_overhead(
    root: Path, steps: int = 300, runner: Runner | None = None
) -> dict[str, float]:
    """Run the supervisor's own benchmark and return its figures (see
    :data:`SUPERVISOR_FIGURES`); empty when it cannot run."""
    script = root / "supervisor" / "bench" / "bench_supervisor.py"
    result = (runner or Runner()).run([sys.executable, str(script), "--steps", str(steps)])
    return parse_supervisor_output(result.stdout) if result.returncode == 0 else {}


def parse_supervisor_output(text: str) -> dict[str, float]:
    """The figures of ``bench_supervisor.py``'s printed lines that the report shows."""
    figures = {}
    for line in text.splitlines():
        label, _, rest = line.partition(":")
        key = SUPERVISOR_FIGURES.get(label.strip())
        number = re.match(r"\s*([0-9.]+)", rest)
        if key and number:
            figures[key] = float(number.group(1))
    return figures


def last_e2e(root: Path) -> dict[str, Any] | None:
    """The last end-to-end run's figures (``results/e2e.json``) when it passed."""
    path = root / "results" / "e2e.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("passed") else None


def collect(
    root: Path,
    model: model_bench.BenchResult,
    supervisor_image: str,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Everything the report shows, as one JSON-ready mapping."""
    runner = runner or Runner()
    try:
        supervisor_size: int | None = model_bench.image_size(supervisor_image, runner)
    except model_bench.BenchError:
        supervisor_size = None
    return {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine(runner),
        "model_server": {**asdict(model), "summary": model_bench.summary(model)},
        "supervisor_image": supervisor_image,
        "supervisor_image_size_bytes": supervisor_size,
        "supervisor_overhead": supervisor_overhead(root, runner=runner),
        "e2e": last_e2e(root),
    }


def _mb(value: int | None) -> str:
    return "not measured" if value is None else f"{value / 1e6:.0f} MB"


def _s(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f} s"


def _spread(value: dict[str, Any] | None) -> str:
    if not value:
        return "not measured"
    return f"{value['median']:.0f} ({value['low']:.0f}-{value['high']:.0f})"


def markdown(report: dict[str, Any], chart: str | None = None) -> str:
    """The report as Markdown: the machine, one table, the chart when given."""
    m, ms = report["machine"], report["model_server"]
    s = ms["summary"]
    sup = report["supervisor_overhead"]
    e2e = report["e2e"]
    rows = [
        (
            "model-server image (CPU variants " + ms["cpu_variants"] + ")",
            _mb(ms["image_size_bytes"]),
        ),
        ("supervisor/tools image", _mb(report["supervisor_image_size_bytes"])),
        ("model-server build, source unchanged (layer cache)", _s(ms["build_warm_s"])),
        ("model-server build, cold (no layer cache, empty ccache)", _s(ms["build_cold_s"])),
        ("model-server start to ready (`podman run` to /health 200)", _s(ms["ready_s"])),
        ("first chat answer after ready (16 tokens)", _s(ms["first_answer_s"])),
        ("prompt tokens/s, container", _spread(s["container_prompt_per_s"])),
        ("prompt tokens/s, host build", _spread(s["host_prompt_per_s"])),
        ("generation tokens/s, container", _spread(s["container_generation_per_s"])),
        ("generation tokens/s, host build", _spread(s["host_generation_per_s"])),
    ]
    for kind, label in (("prompt_per_s", "prompt"), ("generation_per_s", "generation")):
        ratio = s[f"ratio_{kind}"]
        if ratio is not None:
            rows.append((f"container / host, {label} (medians)", f"{ratio:.2f}"))
    if sup:
        rows.append(
            (
                "supervisor overhead per agent step, fsync on / off",
                f"{sup.get('step_fsync_ms', 0):.1f} ms / {sup.get('step_no_fsync_ms', 0):.2f} ms",
            )
        )
    if e2e:
        rows.append(
            (
                f"`invoke up` and one task, e2e of {e2e.get('finished', '?')[:10]}",
                e2e.get("detail", ""),
            )
        )
    load = (
        f", load average {m['load_average_1min']} at the end"
        if m.get("load_average_1min") is not None
        else ""
    )
    lines = [
        f"Measured {report['date']} on {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Podman {m['podman']}"
        f"{load}; model "
        f"`{ms['model']}`, {ms['threads']} threads, {ms['prompt_tokens']}-token prompt, "
        f"{ms['n_predict']} tokens generated, {ms['rounds']} rounds with container and "
        "host requests interleaved; tokens/s as median (lowest-highest). Figures, not "
        "guarantees.",
        "",
        "| figure | value |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    lines += [f"\nNote: {note}" for note in ms["notes"]]
    if chart:
        lines += ["", f"![tokens per second, container and host]({chart})"]
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> Path:
    """Draw prompt and generation tokens/s (container and host: median bar, low-high
    whisker) as a PNG at ``path``."""
    summary = report["model_server"]["summary"]
    groups = [("prompt processing", "prompt_per_s"), ("generation", "generation_per_s")]
    sides = [("container", _chart.PALETTE[0]), ("host", _chart.PALETTE[3])]
    values = [summary[f"{side}_{kind}"] for _, kind in groups for side, _ in sides]
    ticks = _chart.axis_ticks(max((v["high"] for v in values if v), default=0.0) * 1.1)
    top = ticks[-1]
    width, height, left, bottom, top_margin = 720, 420, 70, 60, 50
    image, draw = _chart.canvas(width, height)
    font, small = _chart.font(14), _chart.font(12)
    plot_h = height - bottom - top_margin
    draw.text(
        (left, 12),
        f"llama-server tokens/s, {report['model_server']['model']}, "
        f"{report['model_server']['threads']} threads ({report['date']})",
        fill="black",
        font=font,
    )
    draw.line((left, top_margin, left, height - bottom), fill="black")
    draw.line((left, height - bottom, width - 20, height - bottom), fill="black")
    for value in ticks:
        y = height - bottom - plot_h * value / top
        draw.line((left - 4, y, left, y), fill="black")
        draw.text((left - 8, y), _chart.tick_label(value), fill="black", font=small, anchor="rm")
    group_w = (width - 20 - left) / len(groups)
    bar_w = group_w / 4
    for g, (label, kind) in enumerate(groups):
        x0 = left + g * group_w + bar_w
        draw.text((x0, height - bottom + 24), label, fill="black", font=font)
        for i, (side, colour) in enumerate(sides):
            value = summary[f"{side}_{kind}"]
            if not value:
                continue
            x = x0 + i * bar_w
            y = height - bottom - plot_h * value["median"] / top
            draw.rectangle((x, y, x + bar_w * 0.9, height - bottom), fill=colour)
            mid = x + bar_w * 0.45
            y_low = height - bottom - plot_h * value["low"] / top
            y_high = height - bottom - plot_h * value["high"] / top
            draw.line((mid, y_low, mid, y_high), fill="black", width=2)
            draw.line((mid - 6, y_high, mid + 6, y_high), fill="black", width=2)
            draw.line((mid - 6, y_low, mid + 6, y_low), fill="black", width=2)
            draw.text((x, y - 18), f"{value['median']:.0f}", fill="black", font=small)
    for i, (side, colour) in enumerate(sides):
        x = width - 200 + i * 90
        draw.rectangle((x, 14, x + 14, 28), fill=colour)
        draw.text((x + 20, 13), side, fill="black", font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write(report: dict[str, Any], directory: Path, name: str = "bench") -> dict[str, Path]:
    """Write ``NAME.json``, ``NAME.png`` and ``NAME.md`` (which shows the chart) to
    ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / f"{name}.json",
        "png": directory / f"{name}.png",
        "md": directory / f"{name}.md",
    }
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    chart(report, paths["png"])
    paths["md"].write_text(markdown(report, paths["png"].name), encoding="utf-8")
    return paths


def update_readme(readme: Path, report: dict[str, Any], chart_path: str) -> None:
    """Replace the README's text between :data:`README_START` and :data:`README_END` with
    the report's Markdown (the chart linked at ``chart_path``, relative to the README)."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no {README_START!r} ... {README_END!r} section")
    body = markdown(report, chart_path)
    readme.write_text(
        text[: start + len(README_START)] + "\n" + body + text[end:], encoding="utf-8"
    )
