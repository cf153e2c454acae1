"""The plan: PLAN.md as the source of truth, and the check that the repository follows
it: every drift from the plan, with its file and line.

``PLAN.md`` ends with a fenced YAML block (the one holding ``plan_schema``) that states what
must be true: services, volumes, networks, the model port and whether it is published,
images, non-root users, the pinned llama.cpp version and the model. :func:`check` compares
it with

- ``compose.yaml`` and the overlays ``.env`` selects through ``COMPOSE_FILE``, interpolated
  with ``.env`` as Compose would (services, volumes, networks and ``internal``, published
  ports, ``cap_drop: [ALL]``, ``no-new-privileges``, ``read_only``, non-root users, images,
  build targets);
- the Containerfiles (stage names, a non-root ``USER`` in the stage that runs);
- ``.env`` and, in a rendered sandbox, ``.copier-answers.yml`` (model, pin, port, ...);
- ``model-server/catalog.yaml`` (the model exists) and
  ``model-server/llama-cpp-sources.yaml`` (the pinned version exists and has an origin with
  a SHA-256);
- in the template repository, the choices of ``copier.yml`` (each model choice and each pin
  choice must be one the catalogs can serve).

A file the plan requires that is not there is a drift; a service marked ``planned`` is
checked only once it exists. Open deviations in ``docs/ISSUE_LOG.md`` older than a given age
are reported as warnings, which do not fail the check.

Modules: :mod:`~sandboxctl.plan.located` (YAML with line numbers),
:mod:`~sandboxctl.plan.spec` (PLAN.md's section, findings and the report),
:mod:`~sandboxctl.plan.compose_rules` (the merged Compose model from ``compose config``),
:mod:`~sandboxctl.plan.containerfiles`, :mod:`~sandboxctl.plan.answer_rules` (``.env``,
answers, catalogs, copier choices), :mod:`~sandboxctl.plan.check` (the whole check). The
deviation log it reads is :mod:`sandboxctl.journal.issuelog`.
"""

from sandboxctl.plan.check import check, check_deviations, check_kube, format_report
from sandboxctl.plan.compose_rules import compose_files
from sandboxctl.plan.containerfiles import effective_user, parse_containerfile
from sandboxctl.plan.located import PlanError
from sandboxctl.plan.spec import DEFAULT_MAX_OPEN_DAYS, Finding, Plan, Report, load_plan, parse_plan

__all__ = [
    "DEFAULT_MAX_OPEN_DAYS",
    "Finding",
    "Plan",
    "PlanError",
    "Report",
    "check",
    "check_deviations",
    "check_kube",
    "compose_files",
    "effective_user",
    "format_report",
    "load_plan",
    "parse_containerfile",
    "parse_plan",
]
