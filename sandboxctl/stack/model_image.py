"""The model-server image: llama.cpp compiled from the pinned source that
``invoke model.source`` verified and placed in ``model-server/context``, FROM the base
image, for one GPU backend and a set of CPU variants; tagged as compose.yaml names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from sandboxctl._proc import Runner
from sandboxctl.answers import answer
from sandboxctl.config import MODEL_SERVER_DIR
from sandboxctl.stack.base_image import DEFAULT_TAG
from sandboxctl.stack.build import BuildResult, build_argv, build_image, log_path
from sandboxctl.stack.project import Stack

if TYPE_CHECKING:
    from sandboxctl.config import Settings

VULKAN_BUILD_BASE = "localhost/ai-sandbox-base:trixie"
"""The Vulkan toolchain stage's base: Debian trixie, for Vulkan headers newer than
bookworm's (model-server/Containerfile says why)."""
DEFAULT_CPU_VARIANTS = answer("LLAMA_CPU_VARIANTS").default
"""The x86-64 levels v1, v3 and v4 (model-server/Containerfile says what each choice costs)."""


def model_build_argv(
    root: Path,
    tag: str,
    version: str,
    backend: str,
    ccache: Path | None,
    *,
    base_image: str = DEFAULT_TAG,
    cpu_variants: str = DEFAULT_CPU_VARIANTS,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """Return the ``podman build`` of the model-server image from the placed source, FROM
    ``base_image`` with the CPU variants ``cpu_variants`` (names, ``all`` or ``native``).

    The build arguments are always passed in the same order with the same names: Podman's
    layer cache keys on them, so an unchanged source rebuilds in seconds.
    Raises ``SourceError`` when the pinned version is not placed yet.
    """
    from sandboxctl.llama import source as llama_source

    manifest = llama_source.read_manifest(root / llama_source.CONTEXT_RELPATH)
    pin, _origin = llama_source.resolve(
        llama_source.load_sources(root / llama_source.SOURCES_RELPATH),
        version,
        str(manifest["origin"]) if manifest and "origin" in manifest else None,
    )
    if manifest is None or manifest.get("version") != pin.version:
        raise llama_source.SourceError(
            f"llama.cpp {pin.version} is not placed in model-server/context: "
            "run `invoke model.source`"
        )
    if backend not in llama_source.BACKENDS:
        raise llama_source.SourceError(
            f"unknown GPU backend {backend!r}; choose {', '.join(llama_source.BACKENDS)}"
        )
    model_dir = root / MODEL_SERVER_DIR
    return build_argv(
        model_dir,
        model_dir / llama_source.CONTAINERFILE,
        tag,
        target="server",
        build_args={
            "GPU_BACKEND": backend,
            "DEBIAN_IMAGE": base_image,
            "CPU_VARIANTS": cpu_variants,
            **llama_source.build_args(pin, manifest),
        },
        volumes={ccache: "/ccache"} if ccache is not None else None,
        labels=labels,
    )


def build_model_image(
    root: Path,
    tag: str,
    version: str,
    backend: str,
    *,
    runner: Runner,
    ccache_dir: Path | None = None,
    base_image: str = DEFAULT_TAG,
    cpu_variants: str = DEFAULT_CPU_VARIANTS,
    labels: Mapping[str, str] | None = None,
    verbose: bool = False,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Build the model-server image (llama.cpp compiled from the placed, pinned source)."""
    if ccache_dir is not None:
        ccache_dir.mkdir(parents=True, exist_ok=True)
    argv = model_build_argv(
        root,
        tag,
        version,
        backend,
        ccache_dir,
        base_image=base_image,
        cpu_variants=cpu_variants,
        labels=labels,
    )
    log(
        f"building {tag} (llama.cpp {version}, {backend}, CPU variants {cpu_variants}): "
        "minutes cold, seconds cached"
    )
    return build_image(
        argv, tag, runner=runner, log_file=log_path(root, tag), verbose=verbose, log=log
    )


class ModelBuildArgs(TypedDict):
    """The answers a model-server build takes (``BASE_IMAGE``, ``LLAMA_CPU_VARIANTS``), as
    the keywords of :func:`model_build_argv` and :func:`build_model_image`."""

    base_image: str
    cpu_variants: str


def model_build_args(settings: Settings) -> ModelBuildArgs:
    """The answers' build arguments of the model-server image: every build of it passes
    these, so the layer cache holds across ``up``, ``model.build`` and the benchmark."""
    return {"base_image": settings.base_image, "cpu_variants": settings.llama_cpu_variants}


def build_answered_model_image(
    root: Path,
    settings: Settings,
    *,
    runner: Runner,
    ccache_dir: Path | None,
    version: str = "",
    backend: str = "",
    verbose: bool = False,
) -> BuildResult:
    """Build the model-server image the answers describe (``LLAMA_CPP_VERSION``,
    ``GPU_BACKEND``, ``BASE_IMAGE``, ``LLAMA_CPU_VARIANTS``; ``version`` and ``backend``
    in their place when given), tagged as compose.yaml names it
    (:func:`~sandboxctl.llama.source.image_tag`): what ``invoke model.build`` and
    ``python -m sandboxctl model-build`` do."""
    from sandboxctl.llama import source as llama_source

    version = version or settings.llama_cpp_version
    backend = backend or settings.gpu_backend
    return build_model_image(
        root,
        llama_source.image_tag(version, backend, settings.compose_project_name),
        version,
        backend,
        runner=runner,
        ccache_dir=ccache_dir,
        verbose=verbose,
        **model_build_args(settings),
    )


def place_llama_source(stack: Stack) -> Path:
    """Verify and place the pinned llama.cpp source in model-server/context (cached; quick when
    already there) and return that folder."""
    from sandboxctl.download import rich_progress
    from sandboxctl.llama import source as llama_source

    context = stack.root / llama_source.CONTEXT_RELPATH
    with rich_progress("llama.cpp source") as progress:
        llama_source.place_source(
            stack.settings.llama_cpp_version,
            context=context,
            sources_file=stack.root / llama_source.SOURCES_RELPATH,
            progress=progress,
        )
    return context
