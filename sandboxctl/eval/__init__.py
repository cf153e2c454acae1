"""``invoke eval``: a bundled suite of small workspace tasks, each with a setup and a check,
run N times per model against the stack; pass rate, steps, tokens, wall time and end
reasons per model and task, as JSON, a Markdown table and a PNG chart.

Modules: :mod:`~sandboxctl.eval.taskfile` (the task files in ``suite/``, read and checked),
:mod:`~sandboxctl.eval.runner` (runs in parallel up to the server's slots, the scripted
model's one per core, through a backend: the stack, or a local supervisor for tests) and
:mod:`~sandboxctl.eval.report` (the figures and the files; the chart is drawn with Pillow
through :mod:`sandboxctl._chart`).
"""
