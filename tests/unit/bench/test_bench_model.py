"""Unit tests of the benchmarks' pure parts (sandboxctl.bench.model, sandboxctl.bench.report;
the benchmark itself needs Podman)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from fakes.harness import FakeTools

from sandboxctl._proc import Runner
from sandboxctl.bench import host as bench_host
from sandboxctl.bench import model as bench_model
from sandboxctl.bench import report as bench_report

CONTAINERFILE = Path(__file__).resolve().parents[3] / "model-server" / "build-llama.sh"
"""The one compile of the model Containerfile (the CPU image's cmake flags and edits)."""


def test_host_build_uses_the_same_cmake_flags_as_the_cpu_image() -> None:
    body = CONTAINERFILE.read_text(encoding="utf-8")
    missing = [flag for flag in bench_model.CMAKE_FLAGS if flag not in body]
    assert missing == []


@pytest.mark.parametrize("variants", ["all", "native", "x64,haswell"])
def test_cpu_flags_are_the_containerfiles_choice(variants: str) -> None:
    body = CONTAINERFILE.read_text(encoding="utf-8")
    flags = bench_model.cpu_flags(variants)
    if variants == "native":
        assert flags == ["-DGGML_NATIVE=ON"]
        assert 'native) cpu="-DGGML_NATIVE=ON"' in body
    elif variants == "all":
        assert 'all) cpu="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=ON"' in body
    else:
        assert flags[-1] == "-DSANDBOX_CPU_VARIANTS=x64;haswell"
        assert "-DSANDBOX_CPU_VARIANTS=$(echo \"${CPU_VARIANTS}\" | tr , ';')" in body


@pytest.mark.parametrize("edit", bench_model.GGML_EDITS, ids=lambda e: e[0])
def test_host_edits_are_the_containerfiles_sed_edits(edit: tuple[str, str, str]) -> None:
    """Same file, same anchor line, same inserted lines as the image's `sed -i`."""
    relative, anchor, insert = edit
    body = CONTAINERFILE.read_text(encoding="utf-8")
    sed = f"s/^{anchor}$/&\\n{insert.replace(chr(10), chr(92) + 'n')}/"
    assert sed in body
    assert f"llama.cpp/{relative}" in body


def test_host_tree_edits_copies_and_leaves_the_placed_source_alone(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for relative, anchor, _insert in bench_model.GGML_EDITS:
        path = context / "llama.cpp" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"before\n{anchor}\nafter\n")
    tree = bench_model.host_tree(context, tmp_path / "host")
    for relative, anchor, insert in bench_model.GGML_EDITS:
        assert (tree / relative).read_text() == f"before\n{anchor}\n{insert}\nafter\n"
        assert (context / "llama.cpp" / relative).read_text() == f"before\n{anchor}\nafter\n"
    assert bench_model.host_tree(context, tmp_path / "host") == tree  # kept: stamp matches


def test_host_tree_refuses_a_source_without_the_anchor(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for relative, _anchor, _insert in bench_model.GGML_EDITS:
        path = context / "llama.cpp" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("nothing to edit\n")
    with pytest.raises(bench_model.BenchError, match="no line"):
        bench_model.host_tree(context, tmp_path / "host")


def test_a_failed_command_is_a_bench_error_with_its_last_output(tmp_path: Path) -> None:
    fakes = FakeTools.create(tmp_path, tools=("podman",), state={"images": []})
    argv = ["podman", "image", "inspect", "--format", "{{json .Labels}}", "missing:1"]
    with pytest.raises(bench_model.BenchError, match=r"(?s)failed \(125\).*image not known"):
        bench_host.run(fakes.runner(), argv)


def test_a_missing_program_is_a_bench_error_not_a_traceback(tmp_path: Path) -> None:
    runner = Runner(env={"PATH": str(tmp_path)})
    with pytest.raises(bench_model.BenchError, match="cp: command not found"):
        bench_host.run(runner, ["cp", "-al", "a", "b"])


def test_image_size_is_the_engines_answer(tmp_path: Path) -> None:
    fakes = FakeTools.create(tmp_path, tools=("podman",), state={"image_size": 4242})
    assert bench_model.image_size("localhost/x:1", fakes.runner()) == 4242
    assert fakes.calls("podman") == [["image", "inspect", "--format", "{{.Size}}", "localhost/x:1"]]


def test_the_report_asks_podman_and_the_supervisor_benchmark(tmp_path: Path) -> None:
    """``collect`` runs Podman (version, supervisor image size) and the supervisor's own
    benchmark through the runner it is given."""
    fakes = FakeTools.create(
        tmp_path, tools=("podman",), state={"podman_version": "5.0.1", "image_size": 90}
    )
    script = tmp_path / "root" / "supervisor" / "bench" / "bench_supervisor.py"
    script.parent.mkdir(parents=True)
    script.write_text(f"print({SUPERVISOR_OUTPUT!r})\n")
    collected = bench_report.collect(tmp_path / "root", result(), "img", fakes.runner())
    assert collected["machine"]["podman"] == "5.0.1"
    assert collected["supervisor_image_size_bytes"] == 90
    assert collected["supervisor_overhead"]["step_fsync_ms"] == 9.25


def test_the_report_says_when_there_is_no_podman(tmp_path: Path) -> None:
    assert bench_report.machine(Runner(env={"PATH": str(tmp_path)}))["podman"] is None


def result() -> bench_model.BenchResult:
    measured = bench_model.BenchResult("b1", "img", "tiny", 2, 64, 3, "x64", 240, 10)
    measured.container.prompt_per_s = [100.0, 120.0, 110.0]
    measured.container.generation_per_s = [50.0, 40.0, 45.0]
    measured.host.prompt_per_s = [100.0, 100.0, 100.0]
    measured.host.generation_per_s = [45.0, 45.0, 45.0]
    return measured


def test_summary_has_median_range_and_ratio_per_kind() -> None:
    summary = bench_model.summary(result())
    assert summary["container_prompt_per_s"] == {
        "median": 110.0, "low": 100.0, "high": 120.0, "n": 3
    }  # fmt: skip
    assert summary["ratio_prompt_per_s"] == pytest.approx(1.1)
    assert summary["ratio_generation_per_s"] == pytest.approx(1.0)


def test_results_are_written_as_json_without_temporary_file(tmp_path: Path) -> None:
    path = bench_model.write_results(result(), tmp_path / "results" / "bench-model.json")
    data = json.loads(path.read_text())
    assert data["image_size_bytes"] == 10
    assert data["summary"]["host_generation_per_s"]["median"] == 45.0
    assert [p.name for p in path.parent.iterdir()] == ["bench-model.json"]


def test_unmeasured_figures_print_as_not_measured() -> None:
    text = bench_model.format_results(result())
    assert "container prompt        110.0 (100.0-120.0, n=3) tok/s" in text
    assert "host build (ccache)     not measured" in text


SUPERVISOR_OUTPUT = """steps per run: 300 (conversation grows with each step)
overhead per step, null tool, fsync:        9.250 ms
overhead per step, null tool, no fsync:     0.120 ms
per step with read_file, fsync:            10.000 ms
resident memory after imports:              41.5 MiB
"""


def test_supervisor_figures_are_read_from_its_printed_lines() -> None:
    assert bench_report.parse_supervisor_output(SUPERVISOR_OUTPUT) == {
        "step_fsync_ms": 9.25,
        "step_no_fsync_ms": 0.12,
        "step_read_file_fsync_ms": 10.0,
        "rss_after_imports_mib": 41.5,
    }


def report() -> dict[str, Any]:
    measured = result()
    return {
        "date": "2026-11-30",
        "machine": {
            "cpu": "CPU X",
            "cores": 2,
            "memory_gib": 23.0,
            "kernel": "6.1",
            "podman": "4.3.1",
        },
        "model_server": {
            **asdict(measured),
            "summary": bench_model.summary(measured),
        },
        "supervisor_image": "img",
        "supervisor_image_size_bytes": 90_000_000,
        "supervisor_overhead": bench_report.parse_supervisor_output(SUPERVISOR_OUTPUT),
        "e2e": None,
    }


def test_markdown_is_dated_describes_the_machine_and_shows_the_chart() -> None:
    text = bench_report.markdown(report(), "bench.png")
    assert text.startswith("Measured 2026-11-30 on CPU X, 2 cores")
    assert "| prompt tokens/s, container | 110 (100-120) |" in text
    assert "| supervisor/tools image | 90 MB |" in text
    assert "| container / host, prompt (medians) | 1.10 |" in text
    assert "![tokens per second, container and host](bench.png)" in text


def test_write_makes_json_markdown_and_a_png(tmp_path: Path) -> None:
    paths = bench_report.write(report(), tmp_path)
    assert json.loads(paths["json"].read_text())["date"] == "2026-11-30"
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(bench.png)" in paths["md"].read_text()


def test_readme_section_between_the_markers_is_replaced(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# X\n## Performance\n{bench_report.README_START}\nstale figures\n"
        f"{bench_report.README_END}\nend\n"
    )
    bench_report.update_readme(readme, report(), "docs/performance/bench.png")
    text = readme.read_text()
    assert "stale figures" not in text
    assert text.endswith(f"{bench_report.README_END}\nend\n")
    assert "(docs/performance/bench.png)" in text
    plain = tmp_path / "plain.md"
    plain.write_text("# no markers\n")
    with pytest.raises(ValueError, match="section"):
        bench_report.update_readme(plain, report(), "x")
