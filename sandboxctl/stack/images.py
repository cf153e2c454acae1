"""The stack's images: the Debian base, model-server, supervisor and (when EGRESS_ALLOW
turns it on) the egress proxy; which are out of date, and building those.

Every image is built by :func:`~sandboxctl.stack.build.build_image` (``podman build
--pull=never --format docker``): base images come from local storage, so a build never
reaches for a registry; the Docker format keeps the images' HEALTHCHECK, which OCI images
drop. An image carries the digest of what it was built from (:func:`inputs_digest`), so
``up`` rebuilds exactly the images whose inputs changed.

The base image (``BASE_IMAGE``, passed as the ``DEBIAN_IMAGE`` build argument) comes from
:mod:`~sandboxctl.stack.base_image` (no registry at all), or is pulled when ``.env`` names
an official image. The model image compiles the pinned llama.cpp source that
``invoke model.source`` verified and placed; the supervisor image installs from a
wheelhouse resolved on the host (TLS inside a container build may not be trusted); the
egress image is Debian's Squid on a FROM-scratch root.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from sandboxctl._proc import Runner
from sandboxctl.answers import answer
from sandboxctl.host.engine import image_exists, image_label
from sandboxctl.stack.base_image import (
    DEFAULT_TAG,
    BaseImageError,
    BaseImageSpec,
    build_base_image,
)
from sandboxctl.stack.build import (
    RUNTIME_ROOT_SCRIPT,
    STAGED,
    TAIL_LINES,
    BuildResult,
    ImageBuildError,
    build_argv,
    build_image,
    log_path,
    stage_runtime_root,
)
from sandboxctl.stack.project import Stack, StackError

if TYPE_CHECKING:
    from sandboxctl.config import Settings

VULKAN_BUILD_BASE = "localhost/ai-sandbox-base:trixie"
"""The Vulkan file's build stage base: Debian trixie, for Vulkan headers newer than
bookworm's (model-server/Containerfile.vulkan says why)."""
DEFAULT_CPU_VARIANTS = answer("LLAMA_CPU_VARIANTS").default
"""The x86-64 levels v1-v4 (model-server/Containerfile says what each choice costs)."""
MODEL_SERVICE = "model-server"
SUPERVISOR_SERVICE = "supervisor"
EGRESS_SERVICE = "egress"


# --- images in local storage ------------------------------------------------------------------


def service_images(project: Mapping[str, Any]) -> dict[str, str]:
    """Map each service of a ``compose config`` project to its image tag."""
    services: Mapping[str, Any] = project.get("services", {})
    return {name: str(spec["image"]) for name, spec in services.items() if "image" in spec}


# --- what an image is built from ----------------------------------------------------------------

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


def model_inputs(root: Path, backend: str) -> dict[str, Path]:
    """The files the model-server image of ``backend`` is built from, by name."""
    from sandboxctl.llama import source as llama_source

    model_dir = root / "model-server"
    containerfile = llama_source.CONTAINERFILES.get(backend, f"Containerfile.{backend}")
    return dict(_input_files(model_dir, (containerfile, *MODEL_INPUTS)))


def supervisor_inputs(root: Path) -> dict[str, Path]:
    """The files the supervisor image is built from, by name."""
    files = dict(_input_files(root / "supervisor", SUPERVISOR_INPUTS))
    files[f"{STAGED}/{RUNTIME_ROOT_SCRIPT.name}"] = root / RUNTIME_ROOT_SCRIPT
    return files


def egress_inputs(root: Path) -> dict[str, Path]:
    """The files the egress proxy image is built from, by name."""
    files = dict(_input_files(root / "egress", EGRESS_INPUTS))
    files[f"{STAGED}/{RUNTIME_ROOT_SCRIPT.name}"] = root / RUNTIME_ROOT_SCRIPT
    return files


def supervisor_build_args(base_image: str, *, remote_tools: bool = False) -> dict[str, str]:
    """The supervisor image's build arguments: its base, and the tools that fetch over
    HTTPS (git's helper, pip for a project's venv) only when the egress proxy is on (a
    closed sandbox has neither)."""
    return {"DEBIAN_IMAGE": base_image, "REMOTE_TOOLS": "https" if remote_tools else ""}


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
        MODEL_SERVICE: inputs_digest(model_inputs(stack.root, settings.gpu_backend), model_args),
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


# --- the stack's two images ------------------------------------------------------------------


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

    manifest = llama_source.read_manifest(root / "model-server" / "context")
    pin, _origin = llama_source.resolve(
        llama_source.load_sources(root / "model-server" / "llama-cpp-sources.yaml"),
        version,
        str(manifest["origin"]) if manifest and "origin" in manifest else None,
    )
    if manifest is None or manifest.get("version") != pin.version:
        raise llama_source.SourceError(
            f"llama.cpp {pin.version} is not placed in model-server/context: "
            "run `invoke model.source`"
        )
    if backend not in llama_source.CONTAINERFILES:
        raise llama_source.SourceError(
            f"unknown GPU backend {backend!r}; choose cpu, cuda or vulkan"
        )
    model_dir = root / "model-server"
    return build_argv(
        model_dir,
        model_dir / llama_source.CONTAINERFILES[backend],
        tag,
        target="server",
        build_args={
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


def fill_wheelhouse(root: Path, runner: Runner, log: Callable[[str], None] = print) -> None:
    """Download the supervisor's locked wheels into ``supervisor/wheels`` on the host."""
    script = root / "supervisor" / "scripts" / "wheelhouse.py"
    log("resolving the supervisor's locked wheels on the host")
    result = runner.run([sys.executable, str(script)])
    if not result.ok:
        last = "\n  ".join(result.output.splitlines()[-TAIL_LINES:])
        raise ImageBuildError(
            "downloading the supervisor's wheels failed; check that this host reaches the "
            f"package index (pip's own settings and certificates apply):\n  {last}"
        )


def build_component_image(
    root: Path,
    component: str,
    tag: str,
    *,
    runner: Runner,
    base_image: str = DEFAULT_TAG,
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    verbose: bool = False,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Build ``component/Containerfile`` (a FROM-scratch image whose build stage runs the
    staged runtime-root script) FROM ``base_image``, with ``build_args``; never pulls."""
    context = root / component
    stage_runtime_root(root, context)
    argv = build_argv(
        context,
        context / "Containerfile",
        tag,
        build_args={"DEBIAN_IMAGE": base_image, **(build_args or {})},
        labels=labels,
    )
    return build_image(
        argv, tag, runner=runner, log_file=log_path(root, tag), verbose=verbose, log=log
    )


def build_supervisor_image(
    root: Path,
    tag: str,
    *,
    runner: Runner,
    base_image: str = DEFAULT_TAG,
    remote_tools: bool = False,
    labels: Mapping[str, str] | None = None,
    verbose: bool = False,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Fill the wheelhouse, then build the supervisor image FROM ``base_image`` (never
    pulls); ``remote_tools``: with git's HTTPS helper and pip's wheels (the egress proxy is on)."""
    fill_wheelhouse(root, runner, log)
    return build_component_image(
        root, "supervisor", tag, runner=runner, base_image=base_image,
        build_args=supervisor_build_args(base_image, remote_tools=remote_tools), labels=labels,
        verbose=verbose, log=log,
    )  # fmt: skip


def ensure_base_image(
    tag: str, mirror: str, runner: Runner, log: Callable[[str], None] = print
) -> None:
    """Make the base image ``tag`` present: debootstrap it when it is a ``localhost/`` name
    (no registry needed), else pull it (an official image, where a registry is reachable).
    Raises :class:`BaseImageError` when neither works."""
    if tag.startswith("localhost/"):
        build_base_image(
            BaseImageSpec(tag=tag, mirror=mirror), runner, is_root=os.geteuid() == 0, log=log
        )
        return
    if image_exists(runner, tag):
        return
    log(f"pulling the base image {tag} (BASE_IMAGE in .env)")
    result = runner.run(["podman", "pull", tag])
    if not result.ok:
        raise BaseImageError(
            f"could not pull {tag}: {result.output.strip()[-500:]}\nWith no registry, leave "
            f"BASE_IMAGE at {DEFAULT_TAG} in .env: `invoke images.base` makes it with debootstrap."
        )


def place_llama_source(stack: Stack) -> Path:
    """Verify and place the pinned llama.cpp source in model-server/context (cached; quick when
    already there) and return that folder."""
    from sandboxctl.download import rich_progress
    from sandboxctl.llama import source as llama_source

    context = stack.root / "model-server" / "context"
    with rich_progress("llama.cpp source") as progress:
        llama_source.place_source(
            stack.settings.llama_cpp_version,
            context=context,
            sources_file=stack.root / "model-server" / "llama-cpp-sources.yaml",
            progress=progress,
        )
    return context


def prepare_images(
    stack: Stack, *, rebuild: bool = False, only: str = "", verbose: bool = False
) -> dict[str, str]:
    """Build the images the Compose project runs that are missing or out of date (their
    inputs changed since they were built: :func:`wanted_inputs`), or all with ``rebuild``.

    ``only`` limits the work to one service (:class:`StackError` names the choices when
    it is not one). Returns service -> image tag.
    """
    from sandboxctl.download import DownloadError
    from sandboxctl.llama import source as llama_source
    from sandboxctl.stack.compose import ComposeError, compose_config

    built = (MODEL_SERVICE, SUPERVISOR_SERVICE, EGRESS_SERVICE)
    if only not in ("", *built):
        raise StackError(
            f"no image to build for {only!r}: choose {', '.join(built[:-1])} or {built[-1]}"
        )
    try:
        project = compose_config(
            stack.compose, project_dir=stack.root, engine=stack.engine, runner=stack.runner
        )
    except ComposeError as error:
        raise StackError(str(error)) from error
    images = service_images(project)
    if only == EGRESS_SERVICE and only not in images:
        raise StackError("the egress proxy is off (EGRESS_ALLOW is empty in .env)")
    services = tuple(name for name in built if name in images)
    wanted = [name for name in services if only in ("", name)]
    digests = wanted_inputs(stack)
    carried = {name: image_label(stack.runner, images[name], INPUTS_LABEL) for name in wanted}
    todo = out_of_date(carried, digests, rebuild=rebuild)
    for name in todo:
        if carried[name] and not rebuild:
            stack.log(f"{images[name]}: its inputs changed since it was built, rebuilding")
    if not todo:
        stack.log(f"images up to date: {', '.join(images[name] for name in wanted)}")
        return images
    try:
        ensure_base_image(
            stack.settings.base_image, stack.settings.debian_mirror, stack.runner, stack.log
        )
        if MODEL_SERVICE in todo and stack.settings.gpu_backend == "vulkan":
            build_base_image(
                BaseImageSpec(
                    tag=VULKAN_BUILD_BASE, suite="trixie", mirror=stack.settings.debian_mirror
                ),
                stack.runner,
                is_root=os.geteuid() == 0,
                log=stack.log,
            )
        if MODEL_SERVICE in todo:
            place_llama_source(stack)
            build_model_image(
                stack.root,
                images[MODEL_SERVICE],
                stack.settings.llama_cpp_version,
                stack.settings.gpu_backend,
                runner=stack.runner,
                ccache_dir=llama_source.ccache_dir(),
                labels={INPUTS_LABEL: digests[MODEL_SERVICE]},
                verbose=verbose,
                log=stack.log,
                **model_build_args(stack.settings),
            )
        if SUPERVISOR_SERVICE in todo:
            build_supervisor_image(
                stack.root,
                images[SUPERVISOR_SERVICE],
                runner=stack.runner,
                base_image=stack.settings.base_image,
                remote_tools=bool(stack.settings.egress_allow),
                labels={INPUTS_LABEL: digests[SUPERVISOR_SERVICE]},
                verbose=verbose,
                log=stack.log,
            )
        if EGRESS_SERVICE in todo:
            build_component_image(
                stack.root,
                "egress",
                images[EGRESS_SERVICE],
                runner=stack.runner,
                base_image=stack.settings.base_image,
                labels={INPUTS_LABEL: digests[EGRESS_SERVICE]},
                verbose=verbose,
                log=stack.log,
            )
    except (BaseImageError, llama_source.SourceError, DownloadError, ImageBuildError) as error:
        raise StackError(str(error)) from error
    return images
