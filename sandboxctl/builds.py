"""Build the stack's two images with Podman: model-server and supervisor.

The tags come from the Compose project (``compose config``), so the images built here are
exactly the ones ``compose.yaml`` runs. The model image compiles the pinned llama.cpp
source that ``invoke model.source`` verified and placed; the supervisor image installs
from a wheelhouse resolved on the host (TLS inside a container build may not be trusted).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sandboxctl._proc import Runner
from sandboxctl.images import BuildResult, ImageBuildError, build_image
from sandboxctl.models import source as llama_source

MODEL_SERVICE = "model-server"
SUPERVISOR_SERVICE = "supervisor"


def service_images(project: Mapping[str, Any]) -> dict[str, str]:
    """Map each service of a ``compose config`` project to its image tag."""
    services: Mapping[str, Any] = project.get("services", {})
    return {name: str(spec["image"]) for name, spec in services.items() if "image" in spec}


def model_build_command(
    root: Path,
    tag: str,
    version: str,
    backend: str,
    ccache_dir: Path | None,
) -> list[str]:
    """Return the ``podman build`` of the model-server image from the placed source.

    Raises :class:`llama_source.SourceError` when the pinned version is not placed yet.
    """
    manifest = llama_source.read_manifest(root / "model" / "context")
    pin, _origin = llama_source.resolve(
        llama_source.load_sources(root / "model" / "llama-cpp-sources.yaml"),
        version,
        str(manifest["origin"]) if manifest and "origin" in manifest else None,
    )
    if manifest is None or manifest.get("version") != pin.version:
        raise llama_source.SourceError(
            f"llama.cpp {pin.version} is not placed in model/context: run `invoke model.source`"
        )
    return llama_source.build_command(
        pin, manifest, backend=backend, ccache_dir=ccache_dir, model_dir=root / "model", tag=tag
    )


def build_model_image(
    root: Path,
    tag: str,
    version: str,
    backend: str,
    *,
    ccache_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Build the model-server image; llama.cpp's compile output streams through.

    ``env`` is the environment podman runs with (the engine's, see ``Engine.env``).

    Raises :class:`ImageBuildError` when the build fails.
    """
    if ccache_dir is not None:
        ccache_dir.mkdir(parents=True, exist_ok=True)
    command = model_build_command(root, tag, version, backend, ccache_dir)
    log(f"building {tag} (llama.cpp {version}, {backend}); a cold build takes minutes")
    if subprocess.run(command, check=False, env=None if env is None else dict(env)).returncode:
        raise ImageBuildError(f"building {tag} failed; the output above shows the failing step")


def fill_wheelhouse(root: Path, log: Callable[[str], None] = print) -> None:
    """Download the supervisor's locked wheels into ``supervisor/wheels`` on the host."""
    script = root / "supervisor" / "scripts" / "wheelhouse.py"
    log("resolving the supervisor's locked wheels on the host")
    if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
        raise ImageBuildError(
            "downloading the supervisor's wheels failed; check that this host reaches the "
            "package index (pip's own settings and certificates apply)"
        )


def build_supervisor_image(
    root: Path,
    tag: str,
    *,
    runner: Runner | None = None,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Fill the wheelhouse, then build the supervisor image (never pulls)."""
    fill_wheelhouse(root, log)
    context = root / "supervisor"
    return build_image(context, context / "Containerfile", tag, runner=runner, log=log)
