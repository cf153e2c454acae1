"""Check the repository against PLAN.md: every drift from the plan, with its file and line.

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
- ``model/catalog.yaml`` (the model exists) and ``model/llama-cpp-sources.yaml`` (the pinned
  version exists and has an origin with a SHA-256);
- in the template repository, the choices of ``copier.yml`` (each model choice and each pin
  choice must be one the catalogs can serve).

A file the plan requires that is not there is a drift; a service marked ``planned`` is
checked only once it exists. Open deviations in ``docs/ISSUE_LOG.md`` older than a given age
are reported as warnings, which do not fail the check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sandboxctl import issuelog
from sandboxctl.config import ConfigError, parse_dotenv

PLAN_FILE = "PLAN.md"
ENV_FILE = ".env"
ANSWERS_FILE = ".copier-answers.yml"
CATALOG_FILE = "model/catalog.yaml"
LOCAL_CATALOG_FILE = "model/catalog.local.yaml"
SOURCES_FILE = "model/llama-cpp-sources.yaml"
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
    "hardening",
    "services",
    "volumes",
    "networks",
)
ENGINE_SOCKETS = ("docker.sock", "podman.sock")

Path_ = tuple[Any, ...]


class PlanError(Exception):
    """PLAN.md cannot be read or its machine-readable section is malformed."""


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


# --- YAML with line numbers ---------------------------------------------------------------


@dataclass
class Located:
    """A parsed YAML document plus the line of each key path (1-based, in ``file``)."""

    file: str
    data: Any
    lines: dict[Path_, int]

    def has(self, *path: Any) -> bool:
        """Tell whether ``path`` was written in this document."""
        return tuple(path) in self.lines

    def line(self, *path: Any) -> int:
        """Return the line of ``path``, or of its nearest written ancestor (1 at worst)."""
        keys = tuple(path)
        while keys:
            if keys in self.lines:
                return self.lines[keys]
            keys = keys[:-1]
        return 1

    def depth(self, *path: Any) -> int:
        """Return how many leading keys of ``path`` this document writes."""
        keys = tuple(path)
        while keys and keys not in self.lines:
            keys = keys[:-1]
        return len(keys)


class _Constructor(SafeConstructor):
    """Builds plain scalars from composed nodes (ints, bools, nulls, strings)."""


def _scalar(node: ScalarNode) -> Any:
    return _Constructor().construct_object(node, deep=True)


def _convert(
    node: Node,
    path: Path_,
    lines: dict[Path_, int],
    offset: int,
    interpolate: Mapping[str, str] | None,
) -> Any:
    if isinstance(node, ScalarNode):
        value = _scalar(node)
        if interpolate is not None and isinstance(value, str):
            value = interpolate_text(value, interpolate)
        return value
    if isinstance(node, SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            line = item.start_mark.line + 1 + offset
            value = _convert(item, (*path, index), lines, offset, interpolate)
            lines[(*path, index)] = line
            if isinstance(value, str | int | bool):
                lines.setdefault((*path, str(value)), line)
            items.append(value)
        return items
    if isinstance(node, MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == "<<":
                merged = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in merged:
                    base = _convert(source, path, lines, offset, interpolate)
                    if isinstance(base, dict):
                        for key, value in base.items():
                            result.setdefault(key, value)
                continue
            key = _convert(key_node, path, {}, offset, interpolate)
            lines[(*path, key)] = key_node.start_mark.line + 1 + offset
            result[key] = _convert(value_node, (*path, key), lines, offset, interpolate)
        return result
    return None


def load_located(
    text: str, file: str, *, offset: int = 0, interpolate: Mapping[str, str] | None = None
) -> Located:
    """Parse one YAML document, recording the line of every key (``offset`` lines added).

    Merge keys (``<<: *anchor``) are applied; the merged keys keep the anchor's lines.
    With ``interpolate``, every string is interpolated as Compose does (see
    :func:`interpolate_text`).
    """
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = (mark.line + 1 + offset) if mark is not None else 1
        raise PlanError(f"{file}:{line}: not valid YAML: {error}") from error
    lines: dict[Path_, int] = {}
    data = _convert(node, (), lines, offset, interpolate) if node is not None else None
    return Located(file, data, lines)


# --- Compose interpolation ----------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    index = start
    while index < len(text):
        if text.startswith("${", index):
            depth += 1
            index += 2
            continue
        if text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise PlanError(f"unterminated ${{ in {text!r}")


def _expand(expression: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(expression)
    if match is None:
        raise PlanError(f"bad variable reference ${{{expression}}}")
    name, rest = match.group(), expression[match.end() :]
    value = env.get(name)
    for operator in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(operator):
            word = interpolate_text(rest[len(operator) :], env)
            unset = value is None or (operator.startswith(":") and value == "")
            if operator.endswith("-"):
                return word if unset else str(value)
            if operator.endswith("+"):
                return "" if unset else word
            return "" if unset else str(value)  # ?: a missing required value reads as empty
    if rest:
        raise PlanError(f"bad variable reference ${{{expression}}}")
    return value or ""


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Interpolate ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:+alt}``, ``${VAR:?err}``
    (and their forms without ``:``), nested, with ``$$`` as a literal ``$``, from ``env``."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "$":
            out.append(char)
            index += 1
            continue
        if text.startswith("$$", index):
            out.append("$")
            index += 2
        elif text.startswith("${", index):
            end = _closing_brace(text, index + 2)
            out.append(_expand(text[index + 2 : end], env))
            index = end + 1
        elif match := _NAME.match(text, index + 1):
            out.append(env.get(match.group(), ""))
            index = match.end()
        else:
            out.append(char)
            index += 1
    return "".join(out)


# --- the plan's machine-readable section --------------------------------------------------


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


# --- compose ------------------------------------------------------------------------------


@dataclass
class ComposeView:
    """The compose files ``.env`` selects, interpolated and merged, with their lines."""

    docs: list[Located]
    data: dict[str, Any]

    def where(self, *path: Any) -> tuple[str, int]:
        """Return (file, line) of the deepest written match of ``path``; later files win ties."""
        best = max(reversed(self.docs), key=lambda doc: doc.depth(*path))
        return best.file, best.line(*path)


def _merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(overlay, list):
        return base + [item for item in overlay if item not in base]
    return overlay


def compose_files(env: Mapping[str, str]) -> list[str]:
    """Return the compose files ``COMPOSE_FILE`` names (``compose.yaml`` when unset)."""
    separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    value = env.get("COMPOSE_FILE", "").strip()
    return [name for name in value.split(separator) if name] if value else ["compose.yaml"]


def load_compose(root: Path, env: Mapping[str, str], report: Report) -> ComposeView | None:
    """Load, interpolate and merge the selected compose files; a missing one is a drift."""
    docs: list[Located] = []
    for name in compose_files(env):
        path = root / name
        if not path.is_file():
            line = _env_line(root, "COMPOSE_FILE")
            report.drift(ENV_FILE, line, f"compose file {name} (COMPOSE_FILE) is missing")
            continue
        doc = load_located(path.read_text(encoding="utf-8"), name, interpolate=env)
        if isinstance(doc.data, dict):
            docs.append(doc)
    if not docs:
        return None
    data: dict[str, Any] = {}
    for doc in docs:
        data = _merge(data, doc.data)
    return ComposeView(docs, data)


def _names(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(key) for key in value]
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


def _mount_source(mount: Any) -> str:
    if isinstance(mount, dict):
        return str(mount.get("source", ""))
    return str(mount).split(":", 1)[0]


def _is_root_user(user: str) -> bool:
    name = user.split(":", 1)[0].strip()
    return name in {"", "0", "root"}


def _uid(user: str) -> str:
    return user.split(":", 1)[0].strip()


def _port_entries(ports: Any) -> list[str]:
    entries = []
    for port in ports or []:
        if isinstance(port, dict):
            host_ip = port.get("host_ip", "")
            prefix = f"{host_ip}:" if host_ip else ""
            entries.append(f"{prefix}{port.get('published', '')}:{port.get('target', '')}")
        else:
            entries.append(str(port))
    return entries


def _has_no_new_privileges(options: Any) -> bool:
    accepted = {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}
    return any(str(option).replace(" ", "") in accepted for option in options or [])


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def check_service(
    name: str, want: dict[str, Any], plan: Plan, compose: ComposeView, report: Report
) -> None:
    """Compare one planned service with its merged compose definition."""
    service = compose.data["services"][name]
    where = compose.where
    hardening = plan.spec["hardening"]

    def drift(path: Sequence[Any], message: str) -> None:
        file, line = where("services", name, *path)
        report.drift(file, line, f"service {name}: {message}")

    if "image" in want and service.get("image") != want["image"]:
        drift(["image"], f"image {service.get('image')!r}, the plan says {want['image']!r}")
    build = service.get("build") if isinstance(service.get("build"), dict) else {}
    if "containerfile" in want:
        context = str(build.get("context", "."))
        dockerfile = str(build.get("dockerfile", "Dockerfile"))
        got = os.path.normpath(str(PurePosixPath(context) / dockerfile))
        if got != os.path.normpath(want["containerfile"]):
            drift(["build"], f"builds {got}, the plan says {want['containerfile']}")
    if "target" in want and build.get("target") != want["target"]:
        drift(["build", "target"], f"build target {build.get('target')!r}, plan {want['target']!r}")

    user = str(service.get("user", ""))
    if _is_root_user(user):
        drift(["user"], f"runs as root (user {user or 'not set'}); the plan says {want['user']}")
    elif "user" in want and user != str(want["user"]):
        drift(["user"], f"user {user}, the plan says {want['user']}")

    cap_drop = [str(cap).upper() for cap in service.get("cap_drop") or []]
    for cap in hardening.get("cap_drop", []):
        if str(cap).upper() not in cap_drop:
            drift(["cap_drop"], f"cap_drop lacks {cap}")
    if hardening.get("no_new_privileges") and not _has_no_new_privileges(
        service.get("security_opt")
    ):
        drift(["security_opt"], "security_opt lacks no-new-privileges:true")
    if hardening.get("read_only") and not _truthy(service.get("read_only")):
        drift(["read_only"], "root filesystem is not read_only")

    mounts = service.get("volumes") or []
    sources = [_mount_source(mount) for mount in mounts]
    for source in sources:
        if source.endswith(ENGINE_SOCKETS):
            drift(["volumes", source], f"mounts the engine socket {source}")
    if "volumes" in want:
        planned = [str(volume) for volume in want["volumes"]]
        for source in sources:
            if source not in planned:
                drift(["volumes"], f"mounts {source!r}, not in the plan's {planned}")
        for volume in planned:
            if volume not in sources:
                drift(["volumes"], f"does not mount {volume!r}, which the plan requires")
    if "networks" in want:
        joined = sorted(_names(service.get("networks")) or ["default"])
        planned_networks = sorted(str(network) for network in want["networks"])
        if joined != planned_networks:
            drift(["networks"], f"networks {joined}, the plan says {planned_networks}")

    ports = _port_entries(service.get("ports"))
    if want.get("published"):
        port = want.get("port", plan.spec["model_port"])
        expected = f"127.0.0.1:{port}:{port}"
        if ports != [expected]:
            drift(["ports"], f"ports {ports}, the plan publishes only {expected}")
    elif ports:
        drift(["ports"], f"publishes {ports}; the plan publishes nothing for this service")
    environment = service.get("environment")
    if (
        "port" in want
        and isinstance(environment, dict)
        and "LLAMA_ARG_PORT" in environment
        and str(environment["LLAMA_ARG_PORT"]) != str(want["port"])
    ):
        drift(
            ["environment", "LLAMA_ARG_PORT"],
            f"listens on {environment['LLAMA_ARG_PORT']}, the plan says {want['port']}",
        )


def check_compose(plan: Plan, compose: ComposeView, report: Report) -> None:
    """Compare the plan's services, volumes and networks with the merged compose files."""
    services = compose.data.get("services")
    if not isinstance(services, dict):
        file, line = compose.where("services")
        report.drift(file, line, "no services")
        return
    planned: dict[str, Any] = plan.spec["services"]
    for name, want in planned.items():
        if name in services:
            check_service(name, want or {}, plan, compose, report)
        elif not (want or {}).get("planned"):
            file, line = compose.where("services")
            report.drift(file, line, f"service {name} required by PLAN.md is missing")
    for name in services:
        if name not in planned:
            file, line = compose.where("services", name)
            report.drift(file, line, f"service {name} is not in PLAN.md")

    volumes = _names(compose.data.get("volumes"))
    for volume in plan.spec["volumes"]:
        if str(volume) not in volumes:
            file, line = compose.where("volumes")
            report.drift(file, line, f"volume {volume} required by PLAN.md is missing")
    for volume in volumes:
        if volume not in [str(v) for v in plan.spec["volumes"]]:
            file, line = compose.where("volumes", volume)
            report.drift(file, line, f"volume {volume} is not in PLAN.md")

    networks = compose.data.get("networks") or {}
    networks = networks if isinstance(networks, dict) else {}
    for name, want in plan.spec["networks"].items():
        if name not in networks:
            file, line = compose.where("networks")
            report.drift(file, line, f"network {name} required by PLAN.md is missing")
            continue
        internal = _truthy((networks[name] or {}).get("internal", False))
        if internal != bool((want or {}).get("internal", False)):
            file, line = compose.where("networks", name, "internal")
            state = "internal" if internal else "not internal"
            report.drift(file, line, f"network {name} is {state}; the plan says the opposite")
    for name in networks:
        if name not in plan.spec["networks"]:
            file, line = compose.where("networks", name)
            report.drift(file, line, f"network {name} is not in PLAN.md")


# --- Containerfiles -----------------------------------------------------------------------

_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
_USER = re.compile(r"^\s*USER\s+(\S+)", re.IGNORECASE)


@dataclass
class Stage:
    """One stage of a Containerfile."""

    name: str
    parent: str
    line: int
    user: str | None = None
    user_line: int | None = None


def parse_containerfile(text: str) -> list[Stage]:
    """Return the stages of a Containerfile with the last ``USER`` each one sets."""
    stages: list[Stage] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if match := _FROM.match(line):
            name = match.group(2) or str(len(stages))
            stages.append(Stage(name=name, parent=match.group(1), line=number))
        elif (match := _USER.match(line)) and stages:
            stages[-1].user, stages[-1].user_line = match.group(1), number
    return stages


def effective_user(stages: Sequence[Stage], target: str | None) -> tuple[str | None, int | None]:
    """Return the user (and its line) the ``target`` stage (default: last) runs as."""
    by_name = {stage.name: stage for stage in stages}
    stage = by_name.get(target) if target else (stages[-1] if stages else None)
    seen: set[str] = set()
    while stage is not None and stage.name not in seen:
        if stage.user is not None:
            return stage.user, stage.user_line
        seen.add(stage.name)
        stage = by_name.get(stage.parent)
    return None, None


def check_containerfile(
    root: Path, relpath: str, want: Mapping[str, Any], plan_line: int, report: Report
) -> None:
    """Check one Containerfile's stage names and the user its target stage runs as."""
    path = root / relpath
    if not path.is_file():
        report.drift(PLAN_FILE, plan_line, f"{relpath} is missing (the plan builds from it)")
        return
    stages = parse_containerfile(path.read_text(encoding="utf-8"))
    if not stages:
        report.drift(relpath, 1, "no FROM: not a Containerfile")
        return
    if want.get("stages"):
        names = [stage.name for stage in stages]
        if names != [str(stage) for stage in want["stages"]]:
            report.drift(relpath, stages[0].line, f"stages {names}, the plan says {want['stages']}")
    target = want.get("target")
    if target and target not in {stage.name for stage in stages}:
        report.drift(relpath, stages[-1].line, f"no stage {target!r} to build")
        return
    user, line = effective_user(stages, target)
    final_line = next((s.line for s in stages if s.name == target), stages[-1].line)
    if user is None:
        report.drift(relpath, final_line, "no USER: the image runs as root")
    elif _is_root_user(user):
        report.drift(relpath, line or final_line, f"USER {user} is root")
    elif "user" in want and user[:1].isdigit() and _uid(user) != _uid(str(want["user"])):
        report.drift(relpath, line or final_line, f"USER {user}, the plan says {want['user']}")


def check_containerfiles(root: Path, plan: Plan, present: Iterable[str], report: Report) -> None:
    """Check the Containerfile of each built service, and the stage names of its siblings
    (every backend's file must have the same stages)."""
    present = set(present)
    for name, want in plan.spec["services"].items():
        want = want or {}
        if "containerfile" not in want or (want.get("planned") and name not in present):
            continue
        relpath = str(want["containerfile"])
        check_containerfile(
            root, relpath, want, plan.line("services", name, "containerfile"), report
        )
        if not want.get("stages"):
            continue
        folder = (root / relpath).parent
        for sibling in sorted(folder.glob("Containerfile*")):
            sibling_rel = str(sibling.relative_to(root))
            if sibling_rel != relpath and sibling.is_file():
                stages = {"stages": want["stages"]}
                check_containerfile(root, sibling_rel, stages, 1, report)


# --- .env, answers, catalogs --------------------------------------------------------------


def _env_line(root: Path, key: str) -> int:
    try:
        text = (root / ENV_FILE).read_text(encoding="utf-8")
    except OSError:
        return 1
    pattern = re.compile(rf"^\s*(?:export\s+)?{re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return 1


def _expected_answers(spec: Mapping[str, Any]) -> dict[str, str]:
    return {
        "COMPOSE_PROJECT_NAME": str(spec["project"]),
        "SANDBOX_MODEL": str(spec["model"]),
        "LLAMA_CPP_VERSION": str(spec["llama_cpp_version"]),
        "GPU_BACKEND": str(spec["gpu_backend"]),
        "MODEL_PORT": str(spec["model_port"]),
        "PUBLISH_MODEL_PORT": str(bool(spec["publish_model_port"])).lower(),
        "VOLUME_LABEL": str(spec["volume_label"] or ""),
    }


def check_env(root: Path, plan: Plan, env: Mapping[str, str], report: Report) -> None:
    """Compare the answers in ``.env`` with the plan's."""
    for key, want in _expected_answers(plan.spec).items():
        if key not in env:
            report.drift(ENV_FILE, 1, f"{key} is not set; the plan says {want!r}")
            continue
        got = env[key].strip()
        if key == "PUBLISH_MODEL_PORT":
            got = got.lower()
        if got != want:
            report.drift(ENV_FILE, _env_line(root, key), f"{key}={got}, the plan says {want}")


# Not "model": `invoke model.use` switches the model after copy (.env and the plan), and
# the answers file keeps the model asked at copy time (a user-catalog model is no choice).
ANSWER_KEYS = {
    "project_slug": "project",
    "llama_cpp_version": "llama_cpp_version",
    "gpu_backend": "gpu_backend",
    "model_port": "model_port",
    "publish_model_port": "publish_model_port",
    "volume_label": "volume_label",
}


def check_answers(root: Path, plan: Plan, report: Report) -> None:
    """In a rendered sandbox, compare ``.copier-answers.yml`` with the plan."""
    path = root / ANSWERS_FILE
    if not path.is_file():
        return
    doc = load_located(path.read_text(encoding="utf-8"), ANSWERS_FILE)
    answers = doc.data if isinstance(doc.data, dict) else {}
    for answer, key in ANSWER_KEYS.items():
        if answer in answers and str(answers[answer] or "") != str(plan.spec[key] or ""):
            report.drift(
                ANSWERS_FILE,
                doc.line(answer),
                f"{answer}: {answers[answer]!r}, the plan says {plan.spec[key]!r}",
            )


def _load_required(root: Path, relpath: str, plan_line: int, report: Report) -> Located | None:
    path = root / relpath
    if not path.is_file():
        report.drift(PLAN_FILE, plan_line, f"{relpath} is missing (the plan needs it)")
        return None
    return load_located(path.read_text(encoding="utf-8"), relpath)


def pinned_with_checksum(sources: Located, version: str) -> tuple[bool, bool]:
    """Return (version exists, some origin of it has a SHA-256) in the sources file."""
    versions = sources.data.get("versions") if isinstance(sources.data, dict) else None
    entry = versions.get(version) if isinstance(versions, dict) else None
    if not isinstance(entry, dict):
        return False, False
    origins = entry.get("origins")
    values = origins.values() if isinstance(origins, dict) else []
    checksum = any(isinstance(o, dict) and SHA256.match(str(o.get("sha256"))) for o in values)
    return True, checksum


def check_catalogs(root: Path, plan: Plan, report: Report) -> None:
    """The model is in the catalog; the llama.cpp pin is in the sources with a checksum."""
    model, version = str(plan.spec["model"]), str(plan.spec["llama_cpp_version"])
    catalog = _load_required(root, CATALOG_FILE, plan.line("model"), report)
    if catalog is not None:
        models = catalog.data.get("models") if isinstance(catalog.data, dict) else None
        local = root / LOCAL_CATALOG_FILE  # the user's models (`invoke model.add`)
        if isinstance(models, dict) and local.is_file():
            extra = yaml.safe_load(local.read_text(encoding="utf-8"))
            extra_models = extra.get("models") if isinstance(extra, dict) else None
            models = {**models, **(extra_models if isinstance(extra_models, dict) else {})}
        if not isinstance(models, dict) or model not in models:
            known = ", ".join(sorted(models)) if isinstance(models, dict) else "none"
            report.drift(
                CATALOG_FILE, catalog.line("models"), f"no model {model!r} (known: {known})"
            )
    sources = _load_required(root, SOURCES_FILE, plan.line("llama_cpp_version"), report)
    if sources is not None:
        exists, checksum = pinned_with_checksum(sources, version)
        if not exists:
            report.drift(
                SOURCES_FILE,
                sources.line("versions"),
                f"no llama.cpp version {version!r} (the plan pins it)",
            )
        elif not checksum:
            report.drift(
                SOURCES_FILE,
                sources.line("versions", version),
                f"llama.cpp {version} has no origin with a sha256: pin a cited checksum",
            )


def _choices(question: Any) -> list[str]:
    choices = question.get("choices", []) if isinstance(question, dict) else []
    values = choices.values() if isinstance(choices, dict) else choices
    return [str(value) for value in values]


def check_template_choices(root: Path, report: Report) -> None:
    """In the template repository, every model and pin choice must be servable."""
    path = root / "copier.yml"
    if not path.is_file():
        return
    doc = load_located(path.read_text(encoding="utf-8"), "copier.yml")
    questions = doc.data if isinstance(doc.data, dict) else {}
    catalog_path, sources_path = root / CATALOG_FILE, root / SOURCES_FILE
    if catalog_path.is_file():
        catalog = load_located(catalog_path.read_text(encoding="utf-8"), CATALOG_FILE)
        models = catalog.data.get("models") if isinstance(catalog.data, dict) else {}
        for model in _choices(questions.get("model")):
            if not isinstance(models, dict) or model not in models:
                line = doc.line("model", "choices")
                report.drift("copier.yml", line, f"model choice {model!r} is not in {CATALOG_FILE}")
    if sources_path.is_file():
        sources = load_located(sources_path.read_text(encoding="utf-8"), SOURCES_FILE)
        for version in _choices(questions.get("llama_cpp_version")):
            exists, checksum = pinned_with_checksum(sources, version)
            if not (exists and checksum):
                line = doc.line("llama_cpp_version", "choices")
                why = "has no checksummed origin in" if exists else "is not in"
                report.drift(
                    "copier.yml", line, f"llama_cpp_version choice {version!r} {why} {SOURCES_FILE}"
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
