"""The stack's images: the Debian base, model-server, supervisor and (when EGRESS_ALLOW
turns it on) the egress proxy; which are out of date, and building those.

Every image is built by :func:`~sandboxctl.stack.build.build_image` (``podman build
--pull=never --format docker``): base images come from local storage, so a build never
reaches for a registry; the Docker format keeps the images' HEALTHCHECK, which OCI images
drop. An image carries the digest of what it was built from
(:mod:`~sandboxctl.stack.inputs`), so ``up`` rebuilds exactly the images whose inputs
changed.

The base image (``BASE_IMAGE``, passed as the ``DEBIAN_IMAGE`` build argument) comes from
:mod:`~sandboxctl.stack.base_image` (no registry at all), or is pulled when ``.env`` names
an official image. The model image (:mod:`~sandboxctl.stack.model_image`) compiles the
pinned llama.cpp source that ``invoke model.source`` verified and placed; the supervisor
image (:mod:`~sandboxctl.stack.supervisor_image`) installs from a wheelhouse resolved on
the host; the egress image is Debian's Squid on a FROM-scratch root.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from sandboxctl.host.engine import image_label
from sandboxctl.stack import base_image, build, model_image, supervisor_image
from sandboxctl.stack.inputs import (
    BUILT_SERVICES,
    EGRESS_SERVICE,
    INPUTS_LABEL,
    MODEL_SERVICE,
    SUPERVISOR_SERVICE,
    out_of_date,
    wanted_inputs,
)
from sandboxctl.stack.project import Stack, StackError


def beside_compile(
    stack: Stack,
    build_model: Callable[[], None],
    build_side: Callable[[bool], None],
    side: Sequence[str],
) -> None:
    """Build the model image (the llama.cpp compile: minutes) and, in a second thread at
    the same time, the other images (``side``), which then print only their start and
    end; wait for both, and raise the model build's error first, else the other's."""
    stack.log(f"building {', '.join(side)} beside the model-server compile")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="side-build") as pool:
        beside = pool.submit(build_side, False)
        try:
            build_model()
        finally:
            wait([beside])
    error = beside.exception()
    if error is not None:
        raise error


def service_images(project: Mapping[str, Any]) -> dict[str, str]:
    """Map each service of a ``compose config`` project to its image tag."""
    services: Mapping[str, Any] = project.get("services", {})
    return {name: str(spec["image"]) for name, spec in services.items() if "image" in spec}


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

    built = BUILT_SERVICES
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
        base_image.ensure_base_image(
            stack.settings.base_image, stack.settings.debian_mirror, stack.runner, stack.log
        )
        if MODEL_SERVICE in todo and stack.settings.gpu_backend == "vulkan":
            base_image.build_base_image(
                base_image.BaseImageSpec(
                    tag=model_image.VULKAN_BUILD_BASE,
                    suite="trixie",
                    mirror=stack.settings.debian_mirror,
                ),
                stack.runner,
                is_root=os.geteuid() == 0,
                log=stack.log,
            )

        def build_side(live: bool) -> None:
            """The supervisor and egress images (no compile: they can go beside it)."""
            if SUPERVISOR_SERVICE in todo:
                supervisor_image.build_supervisor_image(
                    stack.root,
                    images[SUPERVISOR_SERVICE],
                    runner=stack.runner,
                    base_image=stack.settings.base_image,
                    remote_tools=bool(stack.settings.egress_allow),
                    labels={INPUTS_LABEL: digests[SUPERVISOR_SERVICE]},
                    verbose=verbose,
                    live=live,
                    log=stack.log,
                )
            if EGRESS_SERVICE in todo:
                build.build_component_image(
                    stack.root,
                    "egress",
                    images[EGRESS_SERVICE],
                    runner=stack.runner,
                    base_image=stack.settings.base_image,
                    labels={INPUTS_LABEL: digests[EGRESS_SERVICE]},
                    verbose=verbose,
                    live=live,
                    log=stack.log,
                )

        def build_model() -> None:
            model_image.place_llama_source(stack)
            model_image.build_model_image(
                stack.root,
                images[MODEL_SERVICE],
                stack.settings.llama_cpp_version,
                stack.settings.gpu_backend,
                runner=stack.runner,
                ccache_dir=llama_source.ccache_dir(),
                labels={INPUTS_LABEL: digests[MODEL_SERVICE]},
                verbose=verbose,
                log=stack.log,
                **model_image.model_build_args(stack.settings),
            )

        side = [name for name in (SUPERVISOR_SERVICE, EGRESS_SERVICE) if name in todo]
        if MODEL_SERVICE in todo and side and not verbose:
            beside_compile(stack, build_model, build_side, [images[name] for name in side])
        else:  # one build at a time: nothing to overlap, or all output asked for
            if MODEL_SERVICE in todo:
                build_model()
            build_side(True)
    except (
        base_image.BaseImageError,
        llama_source.SourceError,
        DownloadError,
        build.ImageBuildError,
    ) as error:
        raise StackError(str(error)) from error
    return images
