"""The supervisor image: its Python packages from a wheelhouse resolved on the host (TLS
inside a container build may not be trusted), then the FROM-scratch image built on it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from sandboxctl._proc import Runner
from sandboxctl.stack.base_image import DEFAULT_TAG
from sandboxctl.stack.build import TAIL_LINES, BuildResult, ImageBuildError, build_component_image


def image_tag(project: str) -> str:
    """The supervisor image's tag in the Compose project ``project``, as compose.yaml
    names it (the tools service runs the same image)."""
    return f"localhost/{project}-supervisor:dev"


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


def supervisor_build_args(base_image: str, *, remote_tools: bool = False) -> dict[str, str]:
    """The supervisor image's build arguments: its base, and the tools that fetch over
    HTTPS (git's helper, pip for a project's venv) only when the egress proxy is on (a
    closed sandbox has neither)."""
    return {"DEBIAN_IMAGE": base_image, "REMOTE_TOOLS": "https" if remote_tools else ""}


def build_supervisor_image(
    root: Path,
    tag: str,
    *,
    runner: Runner,
    base_image: str = DEFAULT_TAG,
    remote_tools: bool = False,
    labels: Mapping[str, str] | None = None,
    verbose: bool = False,
    live: bool = True,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Fill the wheelhouse, then build the supervisor image FROM ``base_image`` (never
    pulls); ``remote_tools``: with git's HTTPS helper and pip's wheels (the egress proxy is
    on); ``live``: see :func:`~sandboxctl.stack.build.build_image`."""
    fill_wheelhouse(root, runner, log)
    return build_component_image(
        root, "supervisor", tag, runner=runner, base_image=base_image,
        build_args=supervisor_build_args(base_image, remote_tools=remote_tools), labels=labels,
        verbose=verbose, live=live, log=log,
    )  # fmt: skip
