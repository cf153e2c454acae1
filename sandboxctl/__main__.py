"""Module entry points for automation (the Nox sessions), without Invoke.

    python -m sandboxctl plan-check     # what `invoke plan.check` does
    python -m sandboxctl base-image     # `invoke images.base`
    python -m sandboxctl model-source   # `invoke model.source`
    python -m sandboxctl model-tiny     # `invoke model.tiny`
    python -m sandboxctl model-build    # `invoke model.build`

Each command calls the same library function as its task, with the task's defaults (the
answers in ``.env``, else the built-in ones); a failure (a
:class:`~sandboxctl.errors.SandboxError`) prints ``COMMAND: message`` on stderr and exits
with the status the task gives it. The tasks stay the interface for people (options,
prompts, progress).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sandboxctl import plan
from sandboxctl._proc import Runner
from sandboxctl.catalog import tiny
from sandboxctl.config import Settings, find_root, load_settings
from sandboxctl.errors import SandboxError
from sandboxctl.host.platform import detect_host
from sandboxctl.llama import source
from sandboxctl.stack import base_image as base_image_
from sandboxctl.stack import model_image


def _settings() -> Settings:
    return load_settings(find_root(), require_file=False)


def plan_check() -> int:
    """Compare the repository with PLAN.md; 1 when it drifts."""
    report = plan.check(find_root())
    for line in plan.format_report(report):
        print(line)
    return 0 if report.ok else 1


def base_image() -> int:
    """Build the Debian base image (debootstrap + podman import) unless it exists."""
    spec = base_image_.answered_spec(_settings())
    base_image_.build_base_image(spec, Runner(), is_root=detect_host().is_root)
    return 0


def model_source() -> int:
    """Download, verify and place the pinned llama.cpp source in model-server/context."""
    pin, origin, result, tree = source.place_source(_settings().llama_cpp_version or None)
    print(f"llama.cpp {pin.version} from {origin.name}: {tree} (sha256 {result.sha256})")
    return 0


def model_tiny() -> int:
    """Generate the offline tiny test model deterministically (the default seed)."""
    print(f"tiny model written to {tiny.write_catalog_model()}")
    return 0


def model_build() -> int:
    """Build the model-server image from the placed source (ccache-backed, no pull)."""
    model_image.build_answered_model_image(
        find_root(), _settings(), runner=Runner(), ccache_dir=source.ccache_dir()
    )
    return 0


COMMANDS: dict[str, Callable[[], int]] = {
    "plan-check": plan_check,
    "base-image": base_image,
    "model-source": model_source,
    "model-tiny": model_tiny,
    "model-build": model_build,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a :class:`SandboxError` becomes its message and its exit status
    (2 for answers or plans that cannot be read, as the tasks give)."""
    parser = argparse.ArgumentParser(
        prog="python -m sandboxctl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=(command.__doc__ or "").splitlines()[0])
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command]()
    except SandboxError as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
