"""Benchmark tasks: figures about the model server and the stack, printed and saved (they
assert nothing)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context

from sandboxctl.bench import model as bench_model
from sandboxctl.bench import report as bench_report
from sandboxctl.stack import supervisor_image
from sandboxctl.tasks._support import root
from sandboxctl.tasks._task import task

MODEL_HELP = {
    "model_name": "Catalog key of the model to time (default auto: smollm2-135m-instruct "
    "when fetched, else tiny)",
    "threads": "Threads for llama-server, the same in the container and on the host",
    "n_predict": "Tokens to generate in each timed request",
    "rounds": "Interleaved rounds (one container and one host request each)",
    "cold": "Also time a cold build (no layer cache, empty ccache): minutes",
    "host": "Build the same source on the host and compare tokens/s (minutes once)",
}
RANGES = {"threads": (1, 1024), "n_predict": (1, 100_000), "rounds": (1, 1000)}


def _run(
    model_key: str, threads: int, n_predict: int, rounds: int, cold: bool, host: bool
) -> bench_model.BenchResult:
    from sandboxctl.config import load_settings
    from sandboxctl.stack import model_image

    settings = load_settings(root(), require_file=False)

    def build_command(tag: str, version: str, ccache: Path) -> list[str]:
        return model_image.model_build_argv(
            root(), tag, version, "cpu", ccache, **model_image.model_build_args(settings)
        )

    return bench_model.run_benchmark(
        build_command, project=settings.compose_project_name,
        cpu_variants=settings.llama_cpu_variants, model_key=model_key, threads=threads,
        n_predict=n_predict, rounds=rounds, cold=cold, host=host,
    )  # fmt: skip


@task(help={**MODEL_HELP, "output": "Results file (JSON)"}, ranges=RANGES)
def model(
    c: Context,
    model_name: str = "auto",
    threads: int = 2,
    n_predict: int = 64,
    rounds: int = 7,
    cold: bool = False,
    host: bool = True,
    output: str = "results/bench-model.json",
) -> None:
    """Time llama-server in the container vs on the host (interleaved); sizes; builds."""
    result = _run(
        model_key=model_name, threads=threads, n_predict=n_predict, rounds=rounds,
        cold=cold, host=host,
    )  # fmt: skip
    path = bench_model.write_results(result, root() / output)
    print(bench_model.format_results(result))
    print(f"written to {path}")


@task(
    help={
        **MODEL_HELP,
        "output_dir": "Folder of bench.json, bench.md and bench.png (default results/)",
        "readme": "Also rewrite the README's Performance figures (chart in docs/performance/)",
    },
    ranges=RANGES,
)
def report(
    c: Context,
    model_name: str = "auto",
    threads: int = 2,
    n_predict: int = 64,
    rounds: int = 7,
    cold: bool = False,
    host: bool = True,
    output_dir: str = "results",
    readme: bool = False,
) -> None:
    """Every figure in one results file: model server, images, builds, supervisor, e2e."""
    from sandboxctl.config import load_settings

    result = _run(
        model_key=model_name, threads=threads, n_predict=n_predict, rounds=rounds,
        cold=cold, host=host,
    )  # fmt: skip
    project = load_settings(root(), require_file=False).compose_project_name
    report = bench_report.collect(root(), result, supervisor_image.image_tag(project))
    directory = root() / ("docs/performance" if readme else output_dir)
    paths = bench_report.write(report, directory)
    print(paths["md"].read_text(encoding="utf-8"))
    if readme:
        chart = Path(paths["png"]).relative_to(root()).as_posix()
        bench_report.update_readme(root() / "README.md", report, chart)
        print("README.md's Performance figures rewritten")
    print("written: " + ", ".join(str(p) for p in paths.values()))
