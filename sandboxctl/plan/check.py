"""The plan check: every rule against the repository, one report, and its lines."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sandboxctl.config import ConfigError, parse_dotenv
from sandboxctl.journal import issuelog
from sandboxctl.plan.answer_rules import (
    check_answers,
    check_catalogs,
    check_env,
    check_template_choices,
)
from sandboxctl.plan.compose_rules import check_compose, load_compose
from sandboxctl.plan.containerfiles import check_containerfiles
from sandboxctl.plan.located import PlanError
from sandboxctl.plan.spec import (
    DEFAULT_MAX_OPEN_DAYS,
    ENV_FILE,
    ISSUE_LOG_FILE,
    PLAN_FILE,
    Report,
    load_plan,
)


def check_deviations(
    root: Path, report: Report, *, max_open_days: int, now: datetime | None = None
) -> None:
    """Warn about deviations in the issue log left open longer than ``max_open_days``."""
    path = root / ISSUE_LOG_FILE
    if not path.is_file():
        return
    for entry in issuelog.stale(path, timedelta(days=max_open_days), now=now):
        report.warn(
            ISSUE_LOG_FILE,
            entry.line,
            f"{entry.id} ({entry.title}) has been open since {entry.opened}, longer than "
            f"{max_open_days} days: resolve it (invoke issue.resolve) or fold it into PLAN.md",
        )


def check_kube(root: Path, report: Report) -> None:
    """Report each file of ``kube/`` (when the sandbox has one) that a fresh render of the
    Compose model would write differently (``invoke kube.render``; docs/KUBERNETES.md)."""
    if not (root / "kube").is_dir():
        return
    from sandboxctl.kube import render
    from sandboxctl.kube.convert import ConvertError
    from sandboxctl.stack.compose import ComposeError, find_compose

    try:
        found = render.drift(root, render.compose_model(find_compose(), root))
    except (ComposeError, ConvertError) as error:
        report.drift("kube", 1, f"the Kubernetes manifests cannot be rendered: {error}")
        return
    for file, problem in found:
        report.drift(file, 1, f"{problem}: run `invoke kube.render`")
    report.checked.append("kube/")


def check(
    root: Path, *, max_open_days: int = DEFAULT_MAX_OPEN_DAYS, now: datetime | None = None
) -> Report:
    """Compare the repository at ``root`` with its PLAN.md; raise :class:`PlanError` when the
    plan itself cannot be read."""
    plan = load_plan(root)
    report = Report()
    env_path = root / ENV_FILE
    env: dict[str, str] = {}
    if env_path.is_file():
        try:
            env = parse_dotenv(env_path.read_text(encoding="utf-8"), origin=ENV_FILE)
        except ConfigError as error:
            raise PlanError(str(error)) from error
        check_env(root, plan, env, report)
        report.checked.append(ENV_FILE)
    else:
        report.drift(PLAN_FILE, 1, f"{ENV_FILE} is missing (the answers live there)")
    check_answers(root, plan, report)
    compose = load_compose(root, env, report)
    present: list[str] = []
    if compose is not None:
        check_compose(plan, compose, report)
        report.checked += [doc.file for doc in compose.docs]
        services = compose.data.get("services")
        present = list(services) if isinstance(services, dict) else []
    check_containerfiles(root, plan, present, report)
    check_catalogs(root, plan, report)
    check_template_choices(root, report)
    check_deviations(root, report, max_open_days=max_open_days, now=now)
    check_kube(root, report)
    return report


def format_report(report: Report) -> list[str]:
    """Return the report as lines: drifts, then warnings, then a summary."""
    lines = [f"drift: {finding}" for finding in report.drifts]
    lines += [f"warning: {finding}" for finding in report.warnings]
    if report.ok:
        lines.append(f"plan.check: no drift ({len(report.warnings)} warning(s))")
    else:
        lines.append(
            f"plan.check: {len(report.drifts)} drift(s) from PLAN.md; fix the files or change "
            "the plan (and log the deviation with `invoke issue.log`)"
        )
    return lines
