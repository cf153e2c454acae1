"""The plan's rules for the answers: ``.env``, ``.copier-answers.yml``, the catalogs (the
model exists, the llama.cpp pin has a checksum) and the template's copier choices."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sandboxctl.answers import ANSWERS
from sandboxctl.plan.located import Located, load_located
from sandboxctl.plan.spec import (
    ANSWERS_FILE,
    CATALOG_FILE,
    ENV_FILE,
    LOCAL_CATALOG_FILE,
    PLAN_FILE,
    SHA256,
    SOURCES_FILE,
    Plan,
    Report,
    env_line,
)


def _as_env(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _expected_answers(spec: Mapping[str, Any]) -> dict[str, str]:
    """The ``.env`` values the plan implies: every answer the plan states (the one table
    of answers says which, and under which keys)."""
    return {a.env: _as_env(spec[a.plan_key]) for a in ANSWERS if a.plan_key is not None}


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
            report.drift(ENV_FILE, env_line(root, key), f"{key}={got}, the plan says {want}")


# Not "model": `invoke model.use` switches the model after copy (.env and the plan), and
# the answers file keeps the model asked at copy time (a user-catalog model is no choice).
ANSWER_KEYS = {
    a.question: a.plan_key
    for a in ANSWERS
    if a.question is not None and a.plan_key is not None and a.question != "model"
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
