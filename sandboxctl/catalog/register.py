"""``invoke model.add``: register a GGUF the user already has (LM Studio, Ollama, a colleague).

The file's metadata is read with the ``gguf`` library (:mod:`sandboxctl.catalog.metadata`), its
SHA-256 computed while it is copied (or hard-linked) into the model-data directory as
``KEY.gguf``, and an entry written to the user catalog ``model-server/catalog.local.yaml``: a file
the template never renders, so ``copier update`` never overwrites it. The copy goes to a
temporary name and is renamed only once complete (and, with ``expect_sha256``, verified);
the catalog is written after the file, so an entry never names a missing file.

A symbolic link would not do: the container sees only the model-data directory, so a link
to a file outside it dangles there. A hard link (``link=True``) shares the bytes without a
copy when both are on one filesystem.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from sandboxctl.catalog import catalog, metadata
from sandboxctl.download import (
    ChecksumMismatch,
    file_blocks,
    fsync_dir,
    sha256_file,
    write_temporary,
)
from sandboxctl.errors import SandboxError

DEFAULT_CONTEXT = 4096
"""Per-slot context recommended for an added model (lowered to its trained context)."""
LOCAL_HEADER = """\
# Your models (`invoke model.add PATH` writes this file; `invoke model.use KEY` selects one).
# Same schema as model-server/catalog.yaml, whose entries these add to. Copier never renders or
# overwrites this file, so `copier update` keeps it. sha256 is the one computed when the
# file was added: `invoke doctor` notices a file that changed since.
"""


class RegisterError(SandboxError):
    """The file cannot be registered; the message says why and what to do."""


def key_from_name(path: Path) -> str:
    """Return a catalog key made from the file name (``SmolLM2-135M.Q4_1.gguf`` ->
    ``smollm2-135m.q4_1``)."""
    stem = path.name.removesuffix(".gguf").lower()
    return re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._") or "model"


def human_size(size: int) -> str:
    """Return ``size`` bytes as the catalog's ``size`` text (decimal units, as publishers)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _place(source: Path, dest: Path, *, link: bool) -> tuple[Path, str]:
    """Copy (or hard-link) ``source`` to a temporary file next to ``dest``; return it hashed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not link:
        with source.open("rb") as src:  # hashed while copying: the file is read once
            tmp, sha256, _ = write_temporary(dest, file_blocks(src))
        return tmp, sha256
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # the name only: os.link makes the entry
    try:
        os.link(source, tmp)
    except OSError as error:
        raise RegisterError(
            f"cannot hard-link {source} into {dest.parent} ({error.strerror}); "
            "they must be on one filesystem: add it without --link to copy it"
        ) from error
    try:
        return tmp, sha256_file(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def entry_for(info: metadata.GgufInfo, source: Path, sha256: str, size: int) -> dict[str, Any]:
    """Return the user-catalog entry describing a GGUF with this metadata."""
    context = min(info.context_trained or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
    template: str | None = None
    if info.chat_template is not None:
        tools = "renders tools" if info.handles_tools else "no tool syntax"
        template = f"embedded in the GGUF ({tools}; needs --jinja)"
    name = info.name or source.name
    return {
        "description": f"{name} ({info.architecture}, {info.parameters}), added from {source}",
        "generated": False,
        "url": None,
        "sha256": sha256,
        "sha256_source": None,
        "size_bytes": size,
        "size": human_size(size),
        "license": info.license or "unknown (the GGUF names none: check where it came from)",
        "chat_template": template,
        "tool_calling": info.handles_tools,
        "context": context,
        "added_from": str(source),
        "architecture": info.architecture,
        "parameters": info.parameters,
        "context_trained": info.context_trained,
    }


def _write_local(path: Path, key: str, entry: dict[str, Any]) -> None:
    data: Any = None
    if path.is_file():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        catalog.parse_local(data)  # refuse to rewrite a file that is already broken
    if not isinstance(data, dict):
        data = {"schema": 1, "models": {}}
    models = data.get("models") or {}
    models[key] = entry
    data["models"] = models
    text = LOCAL_HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(name, path)


def add(
    source: Path,
    *,
    key: str = "",
    catalog_file: Path | None = None,
    directory: Path | None = None,
    link: bool = False,
    expect_sha256: str = "",
) -> catalog.Model:
    """Register the GGUF at ``source`` as ``key`` (default: from its name); return the entry."""
    catalog_file = catalog_file or catalog.catalog_file()
    source = source.expanduser().resolve()
    if not source.is_file():
        raise RegisterError(f"{source} is not a file")
    key = key or key_from_name(source)
    if not catalog.KEY_RE.match(key):
        raise RegisterError(f"key {key!r}: use lowercase letters, digits, '.', '_' or '-'")
    try:
        known = catalog.load_catalog(catalog_file)
    except catalog.CatalogError as error:
        raise RegisterError(str(error)) from error
    if key in known.models and not known.models[key].local:
        raise RegisterError(
            f"{key!r} is a model of {catalog_file.name}; choose another name with --key"
        )
    try:
        info = metadata.read(source)
    except metadata.MetadataError as error:
        raise RegisterError(str(error)) from error
    expected = expect_sha256.strip().lower()
    if expected and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise RegisterError("--sha256 must be 64 hex digits")
    dest = (directory or catalog.model_dir()) / f"{key}.gguf"
    tmp, sha256 = _place(source, dest, link=link)
    if expected and sha256 != expected:
        tmp.unlink()
        raise ChecksumMismatch(
            f"{source} has SHA-256 {sha256}, not the expected {expected}; nothing was added"
        )
    size = tmp.stat().st_size
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    entry = entry_for(info, source, sha256, size)
    _write_local(catalog.local_catalog_path(catalog_file), key, entry)
    return catalog.parse_entry(key, entry, local=True)
