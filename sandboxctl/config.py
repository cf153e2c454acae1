"""Load the sandbox's answers from the root ``.env`` into a typed, validated settings object.

Copier renders the answers into ``.env`` (Compose reads the same file for interpolation).
Code reads them from there, never from Jinja. As with Compose, a variable set in the process
environment overrides the file's value. Every problem is collected and reported at once in a
:class:`ConfigError` that names the file, the key, the bad value and what is accepted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from sandboxctl.answers import ANSWERS, answer
from sandboxctl.egress import Allowed, EgressError, parse_allow, parse_prefix

GpuBackend = Literal["cpu", "cuda", "vulkan"]
VolumeLabel = Literal["", "z", "Z"]
EngineMode = Literal["auto", "machine", "native"]

GPU_BACKENDS = cast(tuple[GpuBackend, ...], answer("GPU_BACKEND").choices)
VOLUME_LABELS = cast(tuple[VolumeLabel, ...], answer("VOLUME_LABEL").choices)
ENGINE_MODES = cast(tuple[EngineMode, ...], answer("SANDBOX_ENGINE").choices)

DEFAULTS: dict[str, str] = {answer.env: answer.default for answer in ANSWERS}
"""Answers used for keys the file leaves out (the template's defaults, from the one table)."""

KNOWN_KEYS = frozenset(DEFAULTS)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_VERSION_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_MACHINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CPU_VARIANTS = re.compile(r"^[a-z0-9_]+(,[a-z0-9_]+)*$")
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


class ConfigError(ValueError):
    """The ``.env`` file is missing, unreadable or holds invalid answers."""


@dataclass(frozen=True)
class Settings:
    """The sandbox's answers, typed. Build it with :func:`load_settings`."""

    compose_project_name: str
    sandbox_model: str
    gpu_backend: GpuBackend
    model_port: int
    publish_model_port: bool
    volume_label: VolumeLabel
    llama_cpp_version: str
    machine_cpus: int
    machine_memory_mib: int
    machine_disk_gib: int
    machine_rootful: bool
    machine_name: str = "podman-machine-default"
    machine_image: str = ""
    engine_mode: EngineMode = "auto"
    docker_host: str = ""
    debian_mirror: str = "http://deb.debian.org/debian"
    base_image: str = "localhost/ai-sandbox-base:bookworm"
    """The Debian image the Containerfiles build FROM (``DEBIAN_IMAGE``): made by
    ``images.base`` when it is ``localhost/...``, else pulled (an official image)."""
    llama_cpu_variants: str = "x64,sse42,haswell,skylakex"
    """The CPU variants of the model-server build (``CPU_VARIANTS``): names, ``all`` or
    ``native`` (model/Containerfile says what each costs)."""
    egress_allow: tuple[Allowed, ...] = ()
    """The hosts the tools container may reach through the egress proxy; () = no proxy."""
    net_prefix: str = "10.90.24"
    """``SANDBOX_NET_PREFIX``: the sandbox's /24, where its services have fixed addresses."""
    source: Path | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


def parse_dotenv(text: str, *, origin: str = ".env") -> dict[str, str]:
    """Parse ``.env`` text the way Compose does for the simple cases it supports.

    Accepts ``KEY=value``, ``export KEY=value``, single- or double-quoted values, blank
    lines, ``#`` comments and inline comments after unquoted values (`` #`` preceded by a
    space). A line that is not an assignment raises :class:`ConfigError` naming its number.
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(line.rstrip("\r"))
        if match is None:
            raise ConfigError(f"{origin}:{number}: not a KEY=value line: {stripped!r}")
        key, value = match.group(1), match.group(2).strip()
        if value[:1] in {'"', "'"}:
            quote = value[0]
            end = value.find(quote, 1)
            if end == -1:
                raise ConfigError(f"{origin}:{number}: {key}: unterminated {quote} quote")
            value = value[1:end]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        values[key] = value
    return values


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


def _as_bool(key: str, value: str, errors: list[str]) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    errors.append(f"{key}={value!r}: expected true or false")
    return False


def _as_int(key: str, value: str, errors: list[str]) -> int:
    low, high = answer(key).low or 0, answer(key).high or 0
    try:
        number = int(value.strip())
    except ValueError:
        errors.append(f"{key}={value!r}: expected a whole number from {low} to {high}")
        return low
    if not low <= number <= high:
        errors.append(f"{key}={number}: out of range, expected {low} to {high}")
    return number


def _as_choice(key: str, value: str, choices: tuple[str, ...], errors: list[str]) -> str:
    if value in choices:
        return value
    shown = ", ".join(repr(choice) for choice in choices)
    errors.append(f"{key}={value!r}: expected one of {shown}")
    return choices[0]


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
    if backend in GPU_BACKENDS and overlays != wanted:
        problems.append(
            f"GPU_BACKEND={backend} but COMPOSE_FILE names {sorted(overlays) or 'no GPU file'}:"
            f" use {sorted(wanted) or 'no GPU file'} for this backend"
        )
    return problems


def settings_from_mapping(values: Mapping[str, str], *, source: Path | None = None) -> Settings:
    """Validate ``values`` (defaults filled in for absent keys) and return :class:`Settings`.

    Raises :class:`ConfigError` listing every invalid answer.
    """
    merged = {**DEFAULTS, **values}
    errors: list[str] = []

    project = merged["COMPOSE_PROJECT_NAME"]
    if not _PROJECT_NAME.match(project):
        errors.append(
            f"COMPOSE_PROJECT_NAME={project!r}: use lowercase letters, digits, '-' and '_',"
            " starting with a letter or digit"
        )
    model = merged["SANDBOX_MODEL"].strip()
    if not model:
        errors.append("SANDBOX_MODEL is empty: name a key of model/catalog.yaml (e.g. tiny)")
    version = merged["LLAMA_CPP_VERSION"].strip()
    if version and not _VERSION_KEY.match(version):
        errors.append(
            f"LLAMA_CPP_VERSION={version!r}: expected a key of model/llama-cpp-sources.yaml"
        )
    machine_name = merged["MACHINE_NAME"].strip()
    if not _MACHINE_NAME.match(machine_name):
        errors.append(f"MACHINE_NAME={machine_name!r}: letters, digits, '-', '_' and '.' only")
    docker_host = merged["DOCKER_HOST"].strip()
    if docker_host and "://" not in docker_host:
        errors.append(
            f"DOCKER_HOST={docker_host!r}: expected a URL such as unix:///run/podman/podman.sock"
        )

    cpu_variants = merged["LLAMA_CPU_VARIANTS"].strip().replace(" ", "") or "all"
    if not _CPU_VARIANTS.match(cpu_variants):
        errors.append(
            f"LLAMA_CPU_VARIANTS={cpu_variants!r}: expected all, native or ggml variant names"
            " separated by commas (x64,sse42,haswell,skylakex)"
        )
    errors += compose_file_mismatches(merged)
    egress_allow: tuple[Allowed, ...] = ()
    net_prefix = DEFAULTS["SANDBOX_NET_PREFIX"]
    try:
        egress_allow = parse_allow(merged["EGRESS_ALLOW"])
    except EgressError as error:
        errors.append(str(error))
    try:
        net_prefix = parse_prefix(merged["SANDBOX_NET_PREFIX"])
    except EgressError as error:
        errors.append(str(error))
    if "EGRESS_NET_PREFIX" in values:
        errors.append(
            "EGRESS_NET_PREFIX is now SANDBOX_NET_PREFIX, the sandbox's /24 for every "
            "network (ai-net PREFIX.0/25, tools-net PREFIX.128/25): rename it in .env"
        )

    settings = Settings(
        compose_project_name=project,
        sandbox_model=model,
        gpu_backend=cast(
            GpuBackend, _as_choice("GPU_BACKEND", merged["GPU_BACKEND"], GPU_BACKENDS, errors)
        ),
        model_port=_as_int("MODEL_PORT", merged["MODEL_PORT"], errors),
        publish_model_port=_as_bool("PUBLISH_MODEL_PORT", merged["PUBLISH_MODEL_PORT"], errors),
        volume_label=cast(
            VolumeLabel,
            _as_choice("VOLUME_LABEL", merged["VOLUME_LABEL"], VOLUME_LABELS, errors),
        ),
        llama_cpp_version=version,
        machine_cpus=_as_int("MACHINE_CPUS", merged["MACHINE_CPUS"], errors),
        machine_memory_mib=_as_int("MACHINE_MEMORY_MIB", merged["MACHINE_MEMORY_MIB"], errors),
        machine_disk_gib=_as_int("MACHINE_DISK_GIB", merged["MACHINE_DISK_GIB"], errors),
        machine_rootful=_as_bool("MACHINE_ROOTFUL", merged["MACHINE_ROOTFUL"], errors),
        machine_name=machine_name,
        machine_image=merged["MACHINE_IMAGE"].strip(),
        engine_mode=cast(
            EngineMode,
            _as_choice("SANDBOX_ENGINE", merged["SANDBOX_ENGINE"], ENGINE_MODES, errors),
        ),
        docker_host=docker_host,
        debian_mirror=merged["DEBIAN_MIRROR"].strip() or DEFAULTS["DEBIAN_MIRROR"],
        base_image=merged["BASE_IMAGE"].strip() or DEFAULTS["BASE_IMAGE"],
        llama_cpu_variants=cpu_variants,
        egress_allow=egress_allow,
        net_prefix=net_prefix,
        source=source,
        raw=dict(merged),
    )
    if errors:
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
