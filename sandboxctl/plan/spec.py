"""PLAN.md's machine-readable section, and the findings and report of the plan check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandboxctl.plan.located import Located, PlanError, load_located

PLAN_FILE = "PLAN.md"
ENV_FILE = ".env"
ANSWERS_FILE = ".copier-answers.yml"
CATALOG_FILE = "model-server/catalog.yaml"
LOCAL_CATALOG_FILE = "model-server/catalog.local.yaml"
SOURCES_FILE = "model-server/llama-cpp-sources.yaml"
ISSUE_LOG_FILE = "docs/ISSUE_LOG.md"
DEFAULT_MAX_OPEN_DAYS = 14
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SPEC_KEYS = (
    "plan_schema",
    "project",
    "model",
    "llama_cpp_version",
    "gpu_backend",
    "volume_label",
    "model_port",
    "publish_model_port",
    "egress_allow",
    "hardening",
    "services",
    "volumes",
    "networks",
)
ENGINE_SOCKETS = ("docker.sock", "podman.sock")


@dataclass(frozen=True)
class Finding:
    """One drift (or warning): where it is and what is wrong."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class Report:
    """What :func:`check` found: drifts fail the check, warnings do not."""

    drifts: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no drift."""
        return not self.drifts

    def drift(self, file: str, line: int, message: str) -> None:
        """Record a drift."""
        self.drifts.append(Finding(file, line, message))

    def warn(self, file: str, line: int, message: str) -> None:
        """Record a warning."""
        self.warnings.append(Finding(file, line, message))


@dataclass(frozen=True)
class Plan:
    """The machine-readable section of PLAN.md."""

    spec: dict[str, Any]
    doc: Located

    def line(self, *path: Any) -> int:
        """Return the PLAN.md line of ``path`` in the section."""
        return self.doc.line(*path)


_FENCE = re.compile(r"^```yaml[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def parse_plan(text: str, file: str = PLAN_FILE) -> Plan:
    """Return the fenced YAML block of ``text`` that holds ``plan_schema``, validated."""
    found: list[Plan] = []
    for match in _FENCE.finditer(text):
        offset = text.count("\n", 0, match.start(1))
        doc = load_located(match.group(1), file, offset=offset)
        if isinstance(doc.data, dict) and "plan_schema" in doc.data:
            found.append(Plan(doc.data, doc))
    if not found:
        raise PlanError(f"{file}: no ```yaml block with plan_schema: add the plan's section")
    if len(found) > 1:
        raise PlanError(f"{file}:{found[1].line()}: a second plan_schema block; keep one")
    plan = found[0]
    spec = plan.spec
    if spec.get("plan_schema") != 1:
        raise PlanError(f"{file}:{plan.line('plan_schema')}: unsupported plan_schema (want 1)")
    missing = [key for key in SPEC_KEYS if key not in spec]
    if missing:
        raise PlanError(f"{file}:{plan.line()}: the plan's section lacks {', '.join(missing)}")
    if not isinstance(spec["services"], dict) or not spec["services"]:
        raise PlanError(f"{file}:{plan.line('services')}: services must be a mapping")
    if not isinstance(spec["networks"], dict):
        raise PlanError(f"{file}:{plan.line('networks')}: networks must be a mapping")
    if not isinstance(spec["volumes"], list):
        raise PlanError(f"{file}:{plan.line('volumes')}: volumes must be a list")
    return plan


def load_plan(root: Path) -> Plan:
    """Read ``ROOT/PLAN.md`` and return its machine-readable section."""
    path = root / PLAN_FILE
    try:
        return parse_plan(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise PlanError(f"{PLAN_FILE} is missing in {root}: render it with copier") from error


def env_line(root: Path, key: str) -> int:
    try:
        text = (root / ENV_FILE).read_text(encoding="utf-8")
    except OSError:
        return 1
    pattern = re.compile(rf"^\s*(?:export\s+)?{re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return 1


def is_root_user(user: str) -> bool:
    """Tell whether a ``user`` setting (``NAME[:GROUP]``) means root (or is unset)."""
    name = user.split(":", 1)[0].strip()
    return name in {"", "0", "root"}


def uid_of(user: str) -> str:
    """Return the user part of a ``USER[:GROUP]`` setting."""
    return user.split(":", 1)[0].strip()
