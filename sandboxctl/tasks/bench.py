"""Benchmark tasks: figures about the model server, printed and saved (assert nothing)."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from sandboxctl.models import bench as bench_model
from sandboxctl.models.catalog import CatalogError
from sandboxctl.models.source import REPO_ROOT, SourceError
from sandboxctl.tasks._args import task


@task(
    help={
        "model_name": "Catalog key of the model to time (default: tiny)",
        "threads": "Threads for llama-server, the same in the container and on the host",
        "n_predict": "Tokens to generate in each timed request",
        "rounds": "Timed requests per server; the median is reported",
        "cold": "Also time a cold build (no layer cache, empty ccache): minutes",
        "rebuild": "Time a rebuild after a cache-busting build argument (ccache warm)",
        "host": "Build the same source on the host and compare tokens/s (minutes once)",
        "output": "Results file (JSON)",
    },
    ranges={"threads": (1, 1024), "n_predict": (1, 100_000), "rounds": (1, 1000)},
)
def model(
    c: Context,
    model_name: str = "tiny",
    threads: int = 2,
    n_predict: int = 128,
    rounds: int = 3,
    cold: bool = False,
    rebuild: bool = True,
    host: bool = True,
    output: str = "results/bench-model.json",
) -> None:
    """Time llama-server in the container vs on the host; image size; build times."""
    try:
        result = bench_model.run_benchmark(
            model_key=model_name,
            threads=threads,
            n_predict=n_predict,
            rounds=rounds,
            cold=cold,
            rebuild=rebuild,
            host=host,
        )
    except (bench_model.BenchError, SourceError, CatalogError) as error:
        raise Exit(f"bench.model: {error}", code=1) from error
    path = bench_model.write_results(result, REPO_ROOT / output)
    print(bench_model.format_results(result))
    print(f"written to {path}")
