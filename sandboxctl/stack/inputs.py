"""What each of the stack's images is built from, and so when it is out of date: the files
of its build context that the build reads and its build arguments, hashed into one digest
(:func:`inputs_digest`) that the image carries as a label (:data:`INPUTS_LABEL`). ``up``
rebuilds exactly the images whose digest changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from sandboxctl.config import MODEL_SERVER_DIR
from sandboxctl.stack.build import RUNTIME_ROOT_SCRIPT, STAGED
from sandboxctl.stack.project import Stack
from sandboxctl.stack.supervisor_image import supervisor_build_args

MODEL_SERVICE = "model-server"
SUPERVISOR_SERVICE = "supervisor"
EGRESS_SERVICE = "egress"
BUILT_SERVICES = (MODEL_SERVICE, SUPERVISOR_SERVICE, EGRESS_SERVICE)
"""The services whose images the stack builds (the others reuse one of these)."""

INPUTS_LABEL = "io.ai-sandbox.inputs"
"""The image label holding :func:`inputs_digest` of what the image was built from."""
MODEL_INPUTS = (
    "build-llama.sh", "entrypoint.sh", "healthcheck.sh", "runtime-root.sh",
    "llama-cpp-sources.yaml",
)  # fmt: skip
"""The model-server's inputs in ``model-server/`` besides its Containerfile; the llama.cpp source
itself is named by its pin in llama-cpp-sources.yaml and the version build argument."""
SUPERVISOR_INPUTS = (
    "Containerfile", "requirements.lock", "pyproject.toml", "README.md", "src", "extra",
)  # fmt: skip
"""The supervisor's inputs in ``supervisor/`` (every file the Containerfile copies; the
wheelhouse follows from requirements.lock and extra/requirements.lock, the project's
extension point with extra/debian-packages.txt); runtime-root.sh comes from ``model-server/``."""
EGRESS_INPUTS = ("Containerfile", "entrypoint.sh")
"""The egress proxy's inputs in ``egress/``; runtime-root.sh comes from ``model-server/``."""
_NOT_INPUTS = ("__pycache__", ".egg-info", ".pyc")


def _input_files(base: Path, names: Sequence[str]) -> Iterator[tuple[str, Path]]:
    for name in names:
        path = base / name
        found = sorted(path.rglob("*")) if path.is_dir() else [path]
        for item in found:
            inside = item.relative_to(base)  # only the parts inside the sandbox count
            if item.is_dir() or any(part.endswith(_NOT_INPUTS) for part in inside.parts):
                continue
            yield inside.as_posix(), item


def inputs_digest(files: Mapping[str, Path], build_args: Mapping[str, str]) -> str:
    """SHA-256 of what a build reads: each file's name and bytes (a missing one counts as
    missing) and the build arguments. Same inputs, same digest, on any machine."""
    digest = hashlib.sha256()
    for name in sorted(files):
        path = files[name]
        data = path.read_bytes() if path.is_file() else b"<missing>"
        digest.update(f"file {name} {len(data)}\n".encode())
        digest.update(data)
    for key in sorted(build_args):
        digest.update(f"arg {key}={build_args[key]}\n".encode())
    return digest.hexdigest()


def model_inputs(root: Path) -> dict[str, Path]:
    """The files the model-server image is built from, by name (one Containerfile for
    every backend: the backend enters the digest as a build argument)."""
    from sandboxctl.llama import source as llama_source

    model_dir = root / MODEL_SERVER_DIR
    return dict(_input_files(model_dir, (llama_source.CONTAINERFILE, *MODEL_INPUTS)))


def _component_inputs(root: Path, folder: str, names: Sequence[str]) -> dict[str, Path]:
    """The files a FROM-scratch component image is built from: ``names`` in its folder,
    and the runtime-root script staged into it."""
    files = dict(_input_files(root / folder, names))
    files[f"{STAGED}/{RUNTIME_ROOT_SCRIPT.name}"] = root / RUNTIME_ROOT_SCRIPT
    return files


def supervisor_inputs(root: Path) -> dict[str, Path]:
    """The files the supervisor image is built from, by name."""
    return _component_inputs(root, "supervisor", SUPERVISOR_INPUTS)


def egress_inputs(root: Path) -> dict[str, Path]:
    """The files the egress proxy image is built from, by name."""
    return _component_inputs(root, "egress", EGRESS_INPUTS)


def wanted_inputs(stack: Stack) -> dict[str, str]:
    """The inputs digest each of the stack's images must carry to be up to date."""
    settings = stack.settings
    model_args = {
        "DEBIAN_IMAGE": settings.base_image,
        "CPU_VARIANTS": settings.llama_cpu_variants,
        "LLAMA_CPP_VERSION": settings.llama_cpp_version,
        "BACKEND": settings.gpu_backend,
    }
    return {
        MODEL_SERVICE: inputs_digest(model_inputs(stack.root), model_args),
        SUPERVISOR_SERVICE: inputs_digest(
            supervisor_inputs(stack.root),
            supervisor_build_args(settings.base_image, remote_tools=bool(settings.egress_allow)),
        ),
        EGRESS_SERVICE: inputs_digest(
            egress_inputs(stack.root), {"DEBIAN_IMAGE": settings.base_image}
        ),
    }


def out_of_date(
    carried: Mapping[str, str | None], wanted: Mapping[str, str], *, rebuild: bool = False
) -> list[str]:
    """The services whose image must be built: missing (None), built from other inputs or
    before inputs were recorded (""), or every one with ``rebuild``."""
    return [name for name, digest in carried.items() if rebuild or digest != wanted[name]]
