"""Checks of the host and of the plan's progress: one result type, one probe set.

- :mod:`sandboxctl.checks.base`: :class:`~sandboxctl.checks.base.Check` (one measured
  result, with its fix) and :class:`~sandboxctl.checks.base.Probes` (what every check looks
  at: the root, the host, the runner, the environment, and what a run found out so far);
- :mod:`sandboxctl.checks.doctor`: ``invoke doctor``'s checks of the host and the engine,
  its table and the preflight that ``up``, ``run`` and ``demo`` run;
- :mod:`sandboxctl.checks.files`: the doctor's checks of the repository's files (script line
  endings, the model file, the context per slot);
- :mod:`sandboxctl.checks.milestones`: the plan's six milestones (``invoke milestones``) and
  the result files the e2e and dev container suites leave as their evidence.
"""
