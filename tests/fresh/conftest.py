"""Fixtures of the fresh-machine session: one fresh Debian 12 machine per run, and the
README's first command run in it (see fresh_machine.py for how the machine is made)."""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from fresh_machine import (
    CACHE,
    GUEST_CA,
    GUEST_CLONE,
    HOST_CA,
    NETWORK,
    REF,
    ROOT,
    RUN_TIMEOUT_S,
    FreshMachine,
    ReadmeRun,
    base_rootfs_tarball,
    demo_image_names,
    ensure_network,
    first_readme_command,
    host_run,
    preload_images,
)

from sandboxctl import stack


@pytest.fixture(scope="session")
def fresh_machine() -> Iterator[FreshMachine]:
    """Start a fresh Debian 12 machine with a clean clone of this repository in it."""
    if shutil.which("podman") is None:
        pytest.fail("podman is needed on the host to start the fresh machine")
    started = time.monotonic()
    tarball = base_rootfs_tarball()
    timings = {"rootfs_cache_s": time.monotonic() - started}
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = CACHE / f"run-{uuid.uuid4().hex[:8]}"  # on the host's disk: real overlay
    rootfs = scratch / "rootfs"
    name = f"ai-sandbox-fresh-{scratch.name}"
    log_dir = ROOT / "results" / "fresh"  # kept after the run, unlike pytest's tmp folders
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        host_run(["mkdir", "-p", str(rootfs)])
        host_run(["tar", "-C", str(rootfs), "--numeric-owner", "-xf", str(tarball)])
        clone = rootfs / GUEST_CLONE.lstrip("/")
        host_run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)])
        if REF:  # an experiment: another commit of this repository (see REF)
            host_run(["git", "-C", str(clone), "checkout", "--quiet", REF])
        if os.environ.get("FRESH_PRELOAD", "1") == "1":
            step = time.monotonic()
            # What the container session did not build yet (layer caches make it quick).
            stack.prepare_images(stack.open_stack(ROOT))
            preload_images(rootfs / "var/lib/containers/storage", demo_image_names(), scratch)
            timings["preload_s"] = time.monotonic() - step
        ensure_network()
        host_run(
            [
                "podman", "run", "-d", "--rm", "--privileged", "--name", name,
                "--network", NETWORK, "--hostname", "fresh-debian",
                "-v", f"{HOST_CA}:{GUEST_CA}:ro",
                "-e", f"PIP_CERT={GUEST_CA}", "-e", f"SSL_CERT_FILE={GUEST_CA}",
                "-e", f"REQUESTS_CA_BUNDLE={GUEST_CA}", "-e", "HOME=/root",
                # Output in the order a terminal shows it (Python buffers a file fully).
                "-e", "PYTHONUNBUFFERED=1",
                "-e", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--rootfs", str(rootfs), "sleep", "infinity",
            ]
        )  # fmt: skip
        yield FreshMachine(name, rootfs, log_dir / "readme-command.log", timings)
    finally:
        host_run(["podman", "rm", "-f", "-t", "0", name], check=False)
        host_run(["rm", "-rf", str(scratch)], check=False)


@pytest.fixture(scope="session")
def readme_run(fresh_machine: FreshMachine) -> ReadmeRun:
    """Run the README's first command in the fresh machine, as root, exactly as printed."""
    command = first_readme_command()
    start = time.monotonic()
    result = fresh_machine.exec(
        f"cd {GUEST_CLONE} && {command}", timeout=RUN_TIMEOUT_S, log_to=fresh_machine.log
    )
    seconds = time.monotonic() - start
    preloaded = "preloaded images" if "preload_s" in fresh_machine.timings else "cold"
    print(
        f"\nfresh: `{command}` in a fresh Debian 12 ({preloaded}) exited {result.returncode} "
        f"after {seconds:.0f} s; {len(result.stdout.splitlines())} lines of output "
        f"(full log: {fresh_machine.log})",
        file=sys.stderr,
    )
    return ReadmeRun(command, result.returncode, result.stdout, seconds, fresh_machine)
