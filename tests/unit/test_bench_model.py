"""Unit tests of sandboxctl.models.bench's pure parts (the benchmark itself needs Podman)."""

from __future__ import annotations

import json
from pathlib import Path

from sandboxctl.models import bench as bench_model

CONTAINERFILE = Path(__file__).resolve().parents[2] / "model" / "Containerfile"


def test_host_build_uses_the_same_cmake_flags_as_the_cpu_image() -> None:
    body = CONTAINERFILE.read_text(encoding="utf-8")
    missing = [flag for flag in bench_model.CMAKE_FLAGS if flag not in body]
    assert missing == []


def test_with_build_arg_keeps_the_context_last() -> None:
    command = ["podman", "build", "-t", "x", "/ctx"]
    assert bench_model.with_build_arg(command, "K", "v") == [
        "podman", "build", "-t", "x", "--build-arg", "K=v", "/ctx",
    ]  # fmt: skip


def test_results_are_written_as_json_without_temporary_file(tmp_path: Path) -> None:
    result = bench_model.BenchResult("b1", "img", "tiny", 2, 64, image_size_bytes=10)
    path = bench_model.write_results(result, tmp_path / "results" / "bench-model.json")
    assert json.loads(path.read_text())["image_size_bytes"] == 10
    assert [p.name for p in path.parent.iterdir()] == ["bench-model.json"]


def test_unmeasured_figures_print_as_not_measured() -> None:
    result = bench_model.BenchResult("b1", "img", "tiny", 2, 64, container_tokens_per_s=12.345)
    text = bench_model.format_results(result)
    assert "container tokens/s      12.35 tok/s" in text
    assert "host tokens/s           not measured" in text


def test_build_stage_image_is_the_last_new_layer_of_stage_one() -> None:
    output = "\n".join(
        [
            "[1/3] STEP 7/8: ARG X",
            "--> Using cache 948a10cf02a4",
            "--> 948a10cf02a",
            "[1/3] STEP 8/8: RUN make",
            "--> 8d69d9f0d50",
            "[2/3] STEP 1/2: FROM debian AS base",
            "--> f9f60374362",
        ]
    )
    assert bench_model.build_stage_image(output) == "8d69d9f0d50"
