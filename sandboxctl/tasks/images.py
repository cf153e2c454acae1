"""Image tasks: the Debian base image built from a mirror (hosts with no registry)."""

from __future__ import annotations

from invoke.context import Context

from sandboxctl._proc import Runner
from sandboxctl.stack import base_image as base_image_
from sandboxctl.tasks._support import host, load_answers
from sandboxctl.tasks._task import task


@task(
    help={
        "force": "Rebuild even when the image exists",
        "tag": "Image name to tag (default: BASE_IMAGE in .env)",
        "suite": "Debian suite to bootstrap",
        "mirror": "Debian mirror URL (default: DEBIAN_MIRROR in .env, else deb.debian.org)",
    }
)
def base(
    c: Context,
    force: bool = False,
    tag: str = "",
    suite: str = base_image_.DEFAULT_SUITE,
    mirror: str = "",
) -> None:
    """Build the Debian base image with debootstrap + podman import (no registry)."""
    settings = load_answers(require_file=False)
    spec = base_image_.answered_spec(settings, tag=tag, suite=suite, mirror=mirror)
    base_image_.build_base_image(spec, Runner(), is_root=host().is_root, force=force)
