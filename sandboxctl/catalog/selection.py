"""``invoke model.use KEY``: switch the model the sandbox serves, everywhere it is named.

The model is named in ``.env`` (``SANDBOX_MODEL``, read by Compose and the tasks) and in
PLAN.md's machine-readable section (``model:``, which ``invoke plan.check`` compares with
``.env``). Both are rewritten line by line, leaving every other line as it was, so a later
``copier update`` merges them like any user edit. ``MODEL_CTX_SIZE`` is raised when the
model's recommended per-slot context no longer fits (``MODEL_CTX_SIZE / MODEL_PARALLEL``, as
``compose.yaml`` passes them to llama-server); it is never lowered.

``.copier-answers.yml`` is left alone: it records what was asked at copy time, Copier
forbids hand edits, and a model of the user catalog is not one of its choices.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from sandboxctl.catalog import catalog
from sandboxctl.config import parse_dotenv
from sandboxctl.errors import SandboxError

DEFAULT_CTX_SIZE = 4096
"""compose.yaml's default for MODEL_CTX_SIZE."""
_PLAN_BLOCK = re.compile(r"^```yaml[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


class SelectionError(SandboxError):
    """The model cannot be selected; the message says why and what to do."""


def _write(path: Path, text: str) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(name, path)


def set_env(text: str, key: str, value: str) -> str:
    """Return ``.env`` text with ``key`` set to ``value`` (the line replaced, else appended)."""
    pattern = re.compile(rf"^(\s*(?:export\s+)?{re.escape(key)}\s*=).*$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(lambda match: f"{match.group(1)}{value}", text, count=1)
    return text + ("" if text.endswith("\n") or not text else "\n") + f"{key}={value}\n"


def set_plan_model(text: str, key: str) -> str:
    """Return PLAN.md text whose plan section says ``model: key`` (and the prose with it)."""
    for block in _PLAN_BLOCK.finditer(text):
        body = block.group(1)
        if not re.search(r"^plan_schema:", body, re.MULTILINE):
            continue
        match = re.search(r"^model:[ \t]*(\S*).*$", body, re.MULTILINE)
        if match is None:
            raise SelectionError("PLAN.md's plan section has no `model:` line")
        old = match.group(1)
        start = block.start(1) + match.start()
        end = block.start(1) + match.end()
        text = text[:start] + f"model: {key}" + text[end:]
        # The architecture prose names the model as "serving `KEY`".
        return text.replace(f"serving `{old}`", f"serving `{key}`")
    raise SelectionError("PLAN.md has no ```yaml block with plan_schema")


def use(root: Path, key: str) -> list[str]:
    """Select model ``key`` in ``ROOT/.env`` and PLAN.md; return what changed, in words."""
    try:
        model = catalog.load_catalog(root / catalog.CATALOG_RELPATH).get(key)
    except catalog.CatalogError as error:
        raise SelectionError(str(error)) from error
    env_file = root / ".env"
    if not env_file.is_file():
        raise SelectionError(f"{env_file} is missing: render the sandbox with copier first")
    text = env_file.read_text(encoding="utf-8")
    values = parse_dotenv(text, origin=str(env_file))
    changes = []
    if values.get("SANDBOX_MODEL", "").strip() != key:
        text = set_env(text, "SANDBOX_MODEL", key)
        changes.append(f".env: SANDBOX_MODEL={key}")
    slots = max(_int(values.get("MODEL_PARALLEL"), 1), 1)
    ctx = _int(values.get("MODEL_CTX_SIZE"), DEFAULT_CTX_SIZE)
    if ctx // slots < model.context:
        text = set_env(text, "MODEL_CTX_SIZE", str(model.context * slots))
        changes.append(
            f".env: MODEL_CTX_SIZE={model.context * slots} ({model.context} per slot x {slots})"
        )
    plan_file = root / "PLAN.md"
    plan_text = plan_file.read_text(encoding="utf-8") if plan_file.is_file() else None
    new_plan = set_plan_model(plan_text, key) if plan_text is not None else None
    if changes:
        _write(env_file, text)
    if plan_text is not None and new_plan is not None and new_plan != plan_text:
        _write(plan_file, new_plan)
        changes.append(f"PLAN.md: model: {key}")
    return changes


def _int(value: str | None, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default
