"""The doctor's checks of the repository's files: script line endings, the model file and
its checksum, the context each parallel slot gets."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sandboxctl.catalog import catalog
from sandboxctl.checks.base import Check, Probes
from sandboxctl.download import sha256_file

MIN_CONTEXT_PER_SLOT = 2048
DEFAULT_CTX_SIZE = 4096
"""compose.yaml's default for MODEL_CTX_SIZE."""
SCRIPT_DIRS = ("model-server", "supervisor", ".devcontainer", "scripts", "docker", ".ci")
SKIP_DIRS = {".git", ".venv", ".nox", "node_modules", "__pycache__", ".mypy_cache", "build"}


def iter_scripts(root: Path, dirs: Iterable[str] = SCRIPT_DIRS) -> Iterable[Path]:
    """Yield the repository's shell scripts: ``*.sh`` anywhere, and files with a shebang in
    the folders containers run scripts from."""
    for path in root.rglob("*.sh"):
        if not SKIP_DIRS.intersection(path.relative_to(root).parts) and path.is_file():
            yield path
    for name in dirs:
        folder = root / name
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if (
                path.is_file()
                and path.suffix != ".sh"
                and not SKIP_DIRS.intersection(path.relative_to(root).parts)
            ):
                with path.open("rb") as handle:
                    if handle.read(2) == b"#!":
                        yield path


def crlf_scripts(root: Path) -> list[Path]:
    """Return the scripts under ``root`` with CRLF line endings."""
    return sorted({path for path in iter_scripts(root) if b"\r\n" in path.read_bytes()})


def check_line_endings(probes: Probes) -> Check:
    """Shell scripts use LF (CRLF breaks their shebang inside Linux containers)."""
    bad = crlf_scripts(probes.root)
    if not bad:
        return Check("script line endings", "ok", "LF everywhere")
    shown = ", ".join(str(path.relative_to(probes.root)) for path in bad[:5])
    return Check(
        "script line endings",
        "fail",
        f"CRLF in {shown}",
        "git config core.autocrlf input; sed -i 's/\\r$//' FILE; "
        "`*.sh text eol=lf` in .gitattributes",
    )


def _fetch_fix(model: catalog.Model) -> str:
    if model.generated:
        return "invoke model.tiny"
    if model.added_from:
        return f"invoke model.add {model.added_from} --key {model.key}"
    return f"invoke model.fetch {model.key}"


def model_directory(probes: Probes) -> Path:
    """Return the model-data directory: ``$SANDBOX_MODEL_DIR``, else ``models/``."""
    return catalog.model_dir(probes.root, probes.environ)


def check_model(probes: Probes) -> Check:
    """The model file is in the model-data directory and matches its catalog checksum."""
    settings = probes.answers()
    key = settings.sandbox_model if settings else "tiny"
    model = catalog.find_model(probes.root, key)
    if model is None:
        return Check("model file", "skip", f"no catalog entry {key!r} (model-server/catalog.yaml)")
    path = catalog.model_path(model, model_directory(probes))
    if not path.is_file():
        return Check("model file", "fail", f"{path} missing", _fetch_fix(model))
    expected = (model.sha256 or "").lower()
    if not expected:
        return Check("model file", "ok", f"{path.name} present (no checksum in the catalog)")
    if probes.quick:
        return Check("model file", "ok", f"{path.name} present (--quick: checksum not verified)")
    if sha256_file(path) != expected:
        return Check("model file", "fail", f"{path.name}: SHA-256 mismatch", _fetch_fix(model))
    return Check("model file", "ok", f"{path.name} present, SHA-256 verified")


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def check_context(probes: Probes) -> Check:
    """Context per parallel slot (MODEL_CTX_SIZE / MODEL_PARALLEL, as compose.yaml passes them
    to llama-server) against the catalog's recommended per-slot context."""
    settings = probes.answers()
    raw = settings.raw if settings else {}
    ctx = _int(raw.get("MODEL_CTX_SIZE"), DEFAULT_CTX_SIZE)
    slots = max(_int(raw.get("MODEL_PARALLEL"), 1), 1)
    per_slot = ctx // slots
    key = settings.sandbox_model if settings else "tiny"
    model = catalog.find_model(probes.root, key)
    wanted = model.context if model is not None else MIN_CONTEXT_PER_SLOT
    detail = f"{ctx} tokens / {slots} slot(s) = {per_slot} per slot"
    if per_slot < wanted:
        return Check(
            "context per slot",
            "warn",
            f"{detail}; {key} recommends {wanted}",
            f"set MODEL_CTX_SIZE={wanted * slots} or lower MODEL_PARALLEL in .env",
        )
    return Check("context per slot", "ok", f"{detail} (recommended {wanted})")


def check_chat_template(probes: Probes) -> Check:
    """The selected model has a chat template (without one, llama-server falls back to a
    generic template and a base model's chat replies are poor)."""
    from sandboxctl.catalog.metadata import selected_chat_template

    settings = probes.answers()
    key = settings.sandbox_model if settings else "tiny"
    has = selected_chat_template(probes.root, key, model_directory(probes))
    if has is None:
        return Check("chat template", "skip", f"no catalog entry {key!r}")
    if has:
        return Check("chat template", "ok", f"{key} has a chat template")
    return Check(
        "chat template",
        "warn",
        f"{key} has no chat template: llama-server falls back to a generic one, and a base "
        "model's chat replies are poor",
        "invoke model.use smollm2-135m-instruct (an instruct model with a template)",
    )
