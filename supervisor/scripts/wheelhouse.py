#!/usr/bin/env python3
"""Fill ``supervisor/wheels/`` with the locked wheels, on the host, for the image build.

Pip inside a container build cannot verify TLS on hosts whose proxy CA is trusted
only by the host, so the build installs from this wheelhouse with ``--no-index``
instead. This script runs on the host (where TLS works) and downloads exactly the
pins of ``requirements.lock``, hash-checked, as binary wheels for the image's
Python (CPython 3.11, Debian bookworm, glibc 2.36) and CPU architecture.

    python3 supervisor/scripts/wheelhouse.py            # host architecture
    python3 supervisor/scripts/wheelhouse.py --arch aarch64

It needs ``pip`` (any recent one) on the Python that runs it, or ``--pip`` naming
another pip command. ``supervisor/wheels/`` is a build input: keep it out of git.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
# Tags a CPython 3.11 on glibc 2.36 accepts, newest first (pip takes several --platform).
MANYLINUX = [
    "manylinux_2_36",
    "manylinux_2_34",
    "manylinux_2_28",
    "manylinux_2_17",
    "manylinux2014",
]


def download_command(pip: list[str], lock: Path, dest: Path, arch: str) -> list[str]:
    """The pip command that downloads every locked wheel for ``arch``."""
    command = [
        *pip,
        "download",
        "--only-binary=:all:",
        "--no-deps",
        "--require-hashes",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--abi",
        "abi3",
        "--abi",
        "none",
        "-r",
        str(lock),
        "-d",
        str(dest),
    ]
    for tag in MANYLINUX:
        command += ["--platform", f"{tag}_{arch}"]
    return [*command, "--platform", "any"]


def main(argv: list[str] | None = None) -> int:
    """Download the wheelhouse; return pip's exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=HERE / "requirements.lock")
    parser.add_argument(
        "--extra-lock",
        type=Path,
        default=HERE / "extra" / "requirements.lock",
        help="the project's own locked requirements (downloaded too when it names any)",
    )
    parser.add_argument("--dest", type=Path, default=HERE / "wheels")
    parser.add_argument(
        "--arch",
        default=platform.machine(),
        help="target CPU: x86_64 or aarch64 (default: this host's)",
    )
    parser.add_argument(
        "--pip",
        default=f"{shlex.quote(sys.executable)} -m pip",
        help="pip command to use (default: this Python's pip)",
    )
    args = parser.parse_args(argv)
    arch = ARCHES.get(args.arch.lower())
    if arch is None:
        parser.error(f"unsupported architecture {args.arch!r}; use x86_64 or aarch64")
    pip = shlex.split(args.pip)
    if subprocess.run([*pip, "--version"], capture_output=True).returncode != 0:
        print(
            f"wheelhouse: {args.pip!r} is not a working pip; run this script with a Python "
            "that has pip, or pass --pip 'PATH/TO/pip'",
            file=sys.stderr,
        )
        return 2
    args.dest.mkdir(parents=True, exist_ok=True)
    for stale in args.dest.glob("*.whl"):  # only what the lock names goes into the image
        stale.unlink()
    for lock in (args.lock, args.extra_lock):
        if lock != args.lock and not _names_any(lock):
            continue
        command = download_command(pip, lock, args.dest, arch)
        print("wheelhouse:", shlex.join(command), file=sys.stderr)
        code = subprocess.run(command).returncode
        if code != 0:
            return code
    return 0


def _names_any(lock: Path) -> bool:
    """Whether a requirements file names any package (not only comments)."""
    if not lock.is_file():
        return False
    lines = lock.read_text(encoding="utf-8").splitlines()
    return any(line.strip() and not line.lstrip().startswith("#") for line in lines)


if __name__ == "__main__":
    raise SystemExit(main())
