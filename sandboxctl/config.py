"""Load the sandbox's answers from the root ``.env`` into a typed, validated settings object.

Copier renders the answers into ``.env`` (Compose reads the same file for interpolation).
Code reads them from there, never from Jinja: python-dotenv's parser reads the file, and
:class:`Settings`, whose fields, defaults, ranges and choices all come from the one table
(:mod:`sandboxctl.answers`), types and checks the values. As with Compose, a variable set
in the process environment overrides the file's value. Every problem is collected and
reported at once in a :class:`ConfigError` that names the file, the key, the bad value and
what is accepted.

Values are read literally, as before: no ``${VAR}`` interpolation and no line skipped. That
is why the file is not read through pydantic-settings' dotenv source, which interpolates
every value (single-quoted ones too) from the process environment, passes over a malformed
line with a log warning, and reads only the process environment, where the doctor and the
tests give their own.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import field, fields
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream
from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from sandboxctl.answers import ANSWERS, BY_ENV, Answer, answer
from sandboxctl.egress import Allowed, EgressError, parse_allow, parse_prefix
from sandboxctl.errors import SandboxError

DEFAULTS: dict[str, str] = {answer.env: answer.default for answer in ANSWERS}
"""Answers used for keys the file leaves out (the template's defaults, from the one table)."""

KNOWN_KEYS = frozenset(DEFAULTS)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_VERSION_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_MACHINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CPU_VARIANTS = re.compile(r"^[a-z0-9_]+(,[a-z0-9_]+)*$")


class ConfigError(SandboxError, ValueError):
    """The ``.env`` file is missing, unreadable or holds invalid answers."""

    exit_code = 2


def _answer(env: str) -> Any:
    """The field of the answer whose ``.env`` key is ``env``: that key, the table's default."""
    return Field(answer(env).default, alias=env)


@dataclass(
    frozen=True,
    config=ConfigDict(validate_default=True, validate_by_alias=True, validate_by_name=True),
)
class Settings:
    """The sandbox's answers, typed. Build it with :func:`load_settings`.

    Each field is validated from its ``.env`` key's text (defaults included, from the
    table); values already typed, as :func:`dataclasses.replace` copies them, are kept.
    """

    compose_project_name: str = _answer("COMPOSE_PROJECT_NAME")
    sandbox_model: str = _answer("SANDBOX_MODEL")
    gpu_backend: str = _answer("GPU_BACKEND")
    model_port: int = _answer("MODEL_PORT")
    publish_model_port: bool = _answer("PUBLISH_MODEL_PORT")
    volume_label: str = _answer("VOLUME_LABEL")
    llama_cpp_version: str = _answer("LLAMA_CPP_VERSION")
    machine_cpus: int = _answer("MACHINE_CPUS")
    machine_memory_mib: int = _answer("MACHINE_MEMORY_MIB")
    machine_disk_gib: int = _answer("MACHINE_DISK_GIB")
    machine_rootful: bool = _answer("MACHINE_ROOTFUL")
    machine_name: str = _answer("MACHINE_NAME")
    machine_image: str = _answer("MACHINE_IMAGE")
    engine_mode: str = _answer("SANDBOX_ENGINE")
    docker_host: str = _answer("DOCKER_HOST")
    debian_mirror: str = _answer("DEBIAN_MIRROR")
    base_image: str = _answer("BASE_IMAGE")
    """The Debian image the Containerfiles build FROM (``DEBIAN_IMAGE``): made by
    ``images.base`` when it is ``localhost/...``, else pulled (an official image)."""
    llama_cpu_variants: str = _answer("LLAMA_CPU_VARIANTS")
    """The CPU variants of the model-server build (``CPU_VARIANTS``): names, ``all`` or
    ``native`` (model-server/Containerfile says what each costs)."""
    egress_allow: tuple[Allowed, ...] = _answer("EGRESS_ALLOW")
    """The hosts the tools container may reach through the egress proxy; () = no proxy."""
    net_prefix: str = _answer("SANDBOX_NET_PREFIX")
    """``SANDBOX_NET_PREFIX``: the sandbox's /24, where its services have fixed addresses."""
    source: Path | None = None
    """The ``.env`` file read (None: built from a mapping)."""
    raw: Mapping[str, str] = field(default_factory=dict)
    """Every key's text: the table's defaults, the file's values, the environment's."""

    @field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value: object, info: ValidationInfo) -> object:
        """Type and check an answer given as text, by its entry in the table."""
        entry = _ANSWER_OF_FIELD.get(info.field_name or "")
        if entry is None or not isinstance(value, str):
            return value
        return _CHECKS.get(entry.env, _typed)(entry, value)


_ANSWER_OF_FIELD: dict[str, Answer] = {
    item.name: BY_ENV[item.default.alias]
    for item in fields(Settings)
    if isinstance(item.default, FieldInfo) and item.default.alias in BY_ENV
}


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is ``message`` as written."""
    return PydanticCustomError("answer", message)


def _typed(entry: Answer, value: str) -> object:
    """``value`` as the table's kind of ``entry`` says: a number in range, a flag, a choice."""
    key = entry.env
    if entry.kind == "int":
        try:
            number = int(value.strip())
        except ValueError:
            raise _invalid(f"{key}={value!r}: expected {entry.describe()}") from None
        if not (entry.low or 0) <= number <= (entry.high or 0):
            raise _invalid(f"{key}={number}: out of range, expected {entry.low} to {entry.high}")
        return number
    if entry.kind == "bool":
        lowered = value.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise _invalid(f"{key}={value!r}: expected {entry.describe()}")
        return lowered in _TRUE
    if entry.kind == "choice" and value not in entry.choices:
        raise _invalid(f"{key}={value!r}: expected {entry.describe()}")
    return value


def _project(entry: Answer, value: str) -> str:
    if not _PROJECT_NAME.match(value):
        raise _invalid(
            f"{entry.env}={value!r}: use lowercase letters, digits, '-' and '_',"
            " starting with a letter or digit"
        )
    return value


def _model(entry: Answer, value: str) -> str:
    if not value.strip():
        raise _invalid(f"{entry.env} is empty: name a key of model-server/catalog.yaml (e.g. tiny)")
    return value.strip()


def _version(entry: Answer, value: str) -> str:
    version = value.strip()
    if version and not _VERSION_KEY.match(version):
        raise _invalid(
            f"{entry.env}={version!r}: expected a key of model-server/llama-cpp-sources.yaml"
        )
    return version


def _machine_name(entry: Answer, value: str) -> str:
    name = value.strip()
    if not _MACHINE_NAME.match(name):
        raise _invalid(f"{entry.env}={name!r}: letters, digits, '-', '_' and '.' only")
    return name


def _docker_host(entry: Answer, value: str) -> str:
    url = value.strip()
    if url and "://" not in url:
        raise _invalid(
            f"{entry.env}={url!r}: expected a URL such as unix:///run/podman/podman.sock"
        )
    return url


def _or_default(entry: Answer, value: str) -> str:
    return value.strip() or entry.default


def _cpu_variants(entry: Answer, value: str) -> str:
    variants = value.strip().replace(" ", "") or "all"
    if not _CPU_VARIANTS.match(variants):
        raise _invalid(
            f"{entry.env}={variants!r}: expected all, native or ggml variant names"
            " separated by commas (x64,haswell,skylakex)"
        )
    return variants


def _egress(parse: Callable[[str], object]) -> Callable[[Answer, str], object]:
    def check(entry: Answer, value: str) -> object:
        try:
            return parse(value)
        except EgressError as error:
            raise _invalid(str(error)) from None

    return check


_CHECKS: dict[str, Callable[[Answer, str], object]] = {
    "COMPOSE_PROJECT_NAME": _project,
    "SANDBOX_MODEL": _model,
    "LLAMA_CPP_VERSION": _version,
    "MACHINE_NAME": _machine_name,
    "MACHINE_IMAGE": lambda _entry, value: value.strip(),
    "DOCKER_HOST": _docker_host,
    "DEBIAN_MIRROR": _or_default,
    "BASE_IMAGE": _or_default,
    "LLAMA_CPU_VARIANTS": _cpu_variants,
    "EGRESS_ALLOW": _egress(parse_allow),
    "SANDBOX_NET_PREFIX": _egress(parse_prefix),
}
"""The checks of the answers whose rules go beyond the table's kind (text by default)."""


def parse_dotenv(text: str, *, origin: str = ".env") -> dict[str, str]:
    """Parse ``.env`` text with python-dotenv's parser, literally (no interpolation).

    Accepts what Compose does: ``KEY=value``, ``export KEY=value``, single- or
    double-quoted values, blank lines, ``#`` comments and inline comments after unquoted
    values (`` #`` preceded by a space). A statement that is not an assignment raises
    :class:`ConfigError` naming its line (python-dotenv itself would skip it).
    """
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error or (binding.key is not None and binding.value is None):
            first = binding.original.string.strip().splitlines()[0]
            raise ConfigError(f"{origin}:{binding.original.line}: not a KEY=value line: {first!r}")
        if binding.key is not None and binding.value is not None:  # else a blank or a comment
            values[binding.key] = binding.value
    return values


MODEL_SERVER_DIR = Path("model-server")
"""The model-server image's folder in a sandbox: its Containerfiles, the model catalog, the
llama.cpp pin and the placed source."""


def find_root(start: Path | None = None) -> Path:
    """Return the sandbox root: the nearest folder at or above ``start`` with a
    ``.copier-answers.yml``, ``tasks.py``, ``.env`` or ``compose.yaml``; ``start`` (default:
    the working directory) otherwise.

    The one rule for where a sandbox is: the folder a command stands in, never the
    location of the installed package (another sandbox's environment may run it).
    """
    here = (start or Path.cwd()).resolve()
    markers = (".copier-answers.yml", "tasks.py", ".env", "compose.yaml")
    for folder in (here, *here.parents):
        if any((folder / marker).is_file() for marker in markers):
            return folder
    return here


def compose_file_mismatches(values: Mapping[str, str]) -> list[str]:
    """Say where COMPOSE_FILE disagrees with PUBLISH_MODEL_PORT, EGRESS_ALLOW or GPU_BACKEND.

    Compose only reads COMPOSE_FILE, so a flag changed without it would do nothing.
    """
    files = [name.strip() for name in values.get("COMPOSE_FILE", "").split(":") if name.strip()]
    if not files:
        return []
    problems = []
    publish = values.get("PUBLISH_MODEL_PORT", "").strip().lower() in _TRUE
    if publish != ("compose.publish.yaml" in files):
        problems.append(
            f"PUBLISH_MODEL_PORT={values.get('PUBLISH_MODEL_PORT')} but COMPOSE_FILE "
            f"{'lacks' if publish else 'has'} compose.publish.yaml: change both together"
        )
    egress = bool(values.get("EGRESS_ALLOW", "").replace(",", " ").strip())
    if egress != ("compose.egress.yaml" in files):
        problems.append(
            f"EGRESS_ALLOW={values.get('EGRESS_ALLOW', '')!r} but COMPOSE_FILE "
            f"{'lacks' if egress else 'has'} compose.egress.yaml: change both together"
        )
    backend = values.get("GPU_BACKEND", "cpu").strip()
    overlays = {name for name in files if name in {"compose.cuda.yaml", "compose.vulkan.yaml"}}
    wanted = set() if backend == "cpu" else {f"compose.{backend}.yaml"}
    if backend in answer("GPU_BACKEND").choices and overlays != wanted:
        problems.append(
            f"GPU_BACKEND={backend} but COMPOSE_FILE names {sorted(overlays) or 'no GPU file'}:"
            f" use {sorted(wanted) or 'no GPU file'} for this backend"
        )
    return problems


def _problem(error: Mapping[str, Any]) -> str:
    """One line of a :class:`ConfigError` from one of pydantic's errors."""
    if error["type"] == "answer":
        return str(error["msg"])
    key = ".".join(str(part) for part in error["loc"])
    return f"{key}={error['input']!r}: {error['msg']}"


def settings_from_mapping(values: Mapping[str, str], *, source: Path | None = None) -> Settings:
    """Validate ``values`` (defaults filled in for absent keys) and return :class:`Settings`.

    Raises :class:`ConfigError` listing every invalid answer.
    """
    merged = {**DEFAULTS, **values}
    given: dict[str, Any] = {key: value for key, value in merged.items() if key in KNOWN_KEYS}
    errors: list[str] = []
    settings = None
    try:
        settings = Settings(**given, source=source, raw=merged)
    except ValidationError as error:
        errors += [_problem(problem) for problem in error.errors()]
    errors += compose_file_mismatches(merged)
    if "EGRESS_NET_PREFIX" in values:
        errors.append(
            "EGRESS_NET_PREFIX is now SANDBOX_NET_PREFIX, the sandbox's /24 for every "
            "network (ai-net PREFIX.0/25, tools-net PREFIX.128/25): rename it in .env"
        )
    if errors or settings is None:
        where = str(source) if source else "configuration"
        bullet = "\n  - ".join(errors)
        raise ConfigError(f"{where} has invalid answers:\n  - {bullet}\nFix them in {where}.")
    return settings


def load_settings(
    root: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    require_file: bool = True,
) -> Settings:
    """Read ``ROOT/.env``, let ``environ`` (default: the process environment) override the
    known keys, validate, and return :class:`Settings`.

    Without a ``.env`` this raises :class:`ConfigError` unless ``require_file`` is false,
    in which case the template's defaults are used.
    """
    folder = root if root is not None else find_root()
    path = folder / ".env"
    values: dict[str, str] = {}
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read {path}: {error.strerror}") from error
        values = parse_dotenv(text, origin=str(path))
    elif require_file:
        raise ConfigError(
            f"no .env in {folder}: render the sandbox with `copier copy` (it writes .env) "
            "or create .env with the answers listed in docs/HOST.md"
        )
    env = os.environ if environ is None else environ
    for key in KNOWN_KEYS:
        if key in env:
            values[key] = env[key]
    return settings_from_mapping(values, source=path)
