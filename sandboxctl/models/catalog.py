"""The model catalog (`model/catalog.yaml`): schema check, lookup, fetch into model data.

Every entry (stored as ``KEY.gguf``) says where the GGUF comes from, the SHA-256 it must have
(only when read on the publisher's page, cited in ``sha256_source``), its
license, chat-template and tool-calling support and a recommended per-slot
context. ``tiny`` is generated offline (:mod:`sandboxctl.models.tiny`) and is
the default for tests and hosts with no network.

Models live in the model-data directory: ``$SANDBOX_MODEL_DIR`` when set,
else ``models/`` at the repository root; the container mounts it read-only at
``/models``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandboxctl.models.download import SHA256_RE, DownloadResult, ProgressCallback, fetch

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG_FILE = REPO_ROOT / "model" / "catalog.yaml"
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
REQUIRED = {
    "description": str,
    "generated": bool,
    "license": str,
    "chat_template": str,
    "tool_calling": bool,
    "context": int,
    "size": str,
}
OPTIONAL_NULLABLE = ("url", "sha256", "sha256_source", "size_bytes")


class CatalogError(Exception):
    """The catalog is malformed or has no such model; the message says how to fix it."""


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
    chat_template: str
    tool_calling: bool
    context: int

    @property
    def file(self) -> str:
        """Return the model's file name in the model-data directory (KEY.gguf)."""
        return f"{self.key}.gguf"

    @property
    def verified(self) -> bool:
        """True when the entry pins a cited SHA-256."""
        return self.sha256 is not None


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
                f"model {key!r} is not in model/catalog.yaml (known: {known}); "
                "set SANDBOX_MODEL to one of them or add an entry"
            ) from None


def _entry(key: str, raw: Any) -> Model:
    where = f"catalog.yaml: models.{key}"
    if not KEY_RE.match(key):
        raise CatalogError(f"{where}: key must be lowercase letters, digits, '.', '_' or '-'")
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: must be a mapping")
    unknown = set(raw) - set(REQUIRED) - set(OPTIONAL_NULLABLE)
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
    url, sha, source, size_bytes = (raw[f] for f in OPTIONAL_NULLABLE)
    if raw["generated"]:
        if url is not None:
            raise CatalogError(f"{where}: a generated model has no url")
    elif not isinstance(url, str) or not url.startswith("https://"):
        raise CatalogError(f"{where}: url must be an https URL")
    if sha is not None:
        if not isinstance(sha, str) or not SHA256_RE.match(sha):
            raise CatalogError(f"{where}: sha256 must be 64 lowercase hex digits or null")
        if not isinstance(source, str) or not source.startswith("https://"):
            raise CatalogError(f"{where}: a sha256 needs sha256_source, the page it was read from")
    if size_bytes is not None and (
        not isinstance(size_bytes, int) or isinstance(size_bytes, bool) or size_bytes <= 0
    ):
        raise CatalogError(f"{where}: size_bytes must be a positive integer or null")
    return Model(
        key=key,
        description=raw["description"].strip(),
        generated=raw["generated"],
        url=url,
        sha256=sha,
        sha256_source=source,
        size_bytes=size_bytes,
        size=raw["size"],
        license=raw["license"],
        chat_template=raw["chat_template"],
        tool_calling=raw["tool_calling"],
        context=raw["context"],
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
    models = {str(key): _entry(str(key), raw) for key, raw in raw_models.items()}
    default = data.get("default")
    if default not in models:
        raise CatalogError(f"catalog.yaml: default {default!r} is not an entry")
    return Catalog(default=str(default), models=models)


def load_catalog(path: Path = CATALOG_FILE) -> Catalog:
    """Read and validate the catalog file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(f"cannot read {path}: {error}") from error
    return parse_catalog(yaml.safe_load(text))


def model_dir() -> Path:
    """Return the model-data directory ($SANDBOX_MODEL_DIR or ./models)."""
    configured = os.environ.get("SANDBOX_MODEL_DIR")
    return Path(configured).expanduser() if configured else REPO_ROOT / "models"


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
    if model.generated or model.url is None:
        raise CatalogError(
            f"{model.key} is generated, not downloaded: run `invoke model.tiny` instead"
        )
    return fetch(
        model.url,
        model_path(model, directory),
        sha256=model.sha256,
        size=model.size_bytes,
        trust_unverified=trust_unverified,
        progress=progress,
    )
