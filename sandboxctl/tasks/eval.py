"""The evaluation task: `invoke eval` runs the bundled suite against the running stack
(the logic is in :mod:`sandboxctl.eval`; docs/EVAL.md describes it)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context

from sandboxctl import stack as stack_
from sandboxctl.catalog import catalog
from sandboxctl.errors import SandboxError
from sandboxctl.eval import report, runner, taskfile
from sandboxctl.tasks._support import opened, root
from sandboxctl.tasks._task import task


@task(
    help={
        "model": "Comma-separated models: 'scripted' (each task's script) or catalog keys "
        "(default: the model the stack serves; another one is brought up for its runs)",
        "repeat": "Runs of each task per model",
        "tasks": "Comma-separated task ids (default: the whole suite)",
        "parallel": "Runs at once (0: the model server's slots; scripted: one per core)",
        "out": "Folder of eval.json, eval.md and eval.png (default: results/eval/STAMP)",
        "keep": "Keep each run's workspace folder (eval/STAMP/RUN in the workspace volume)",
        "max_steps": "Step budget of every run of a model (0: each task's, else the "
        "supervisor's); the scripted model follows each task's script to its end",
    },
    ranges={"repeat": (1, 1000), "parallel": (0, runner.MAX_PARALLEL), "max_steps": (0, 10_000)},
)
def evaluate(
    c: Context,
    model: str = "",
    repeat: int = 1,
    tasks: str = "",
    parallel: int = 0,
    out: str = "",
    keep: bool = False,
    max_steps: int = 0,
) -> None:
    """Run the evaluation suite per model; write its figures as JSON, Markdown and PNG."""
    named = [m.strip() for m in model.split(",") if m.strip()]
    chosen = taskfile.load_suite(only=tasks)
    known = catalog.load_catalog().models
    unknown = [name for name in named if name != "scripted" and name not in known]
    if unknown:  # before the stack is touched: nothing is brought up for a typo
        raise SandboxError(
            f"unknown model {', '.join(map(repr, unknown))}; known: scripted, "
            f"{', '.join(sorted(known))} (`invoke model.list`)"
        )
    stack = opened()
    stack_.require_running(stack)
    models = named or [stack.settings.sandbox_model]
    prefix = runner.stamp()
    backend = runner.StackBackend(
        stack, runner.stack_serving(stack, stack.log), max_steps=max_steps
    )
    outcomes = runner.run_all(
        backend, runner.plan(models, chosen, repeat), prefix=prefix, parallel=parallel
    )
    if not keep:
        stack.compose_run("exec", "-T", "tools", "rm", "-rf", f"/workspace/eval/{prefix}")
    directory = Path(out) if out else root() / "results" / "eval" / prefix
    meta = {
        "stamp": prefix,
        "tasks": len(chosen),
        "repeat": repeat,
        "models": models,
        "max_steps": max_steps or None,
    }
    _summary, paths = report.write(directory, outcomes, [t.id for t in chosen], meta)
    print(paths[1].read_text(encoding="utf-8"))
    print(f"eval: wrote {', '.join(str(p) for p in paths)}")
    print(f"eval: trajectories in the logs volume under /logs/eval/{prefix}/")
