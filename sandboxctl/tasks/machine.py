"""Podman machine tasks (a VM on Windows/WSL and macOS; the local service on native Linux)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import replace

from invoke.context import Context

from sandboxctl._proc import Runner
from sandboxctl.answers import answer
from sandboxctl.config import Settings
from sandboxctl.errors import SandboxError, UsageError
from sandboxctl.host import machine as machine_
from sandboxctl.host.engine import uses_machine
from sandboxctl.host.platform import HostInfo, Platform
from sandboxctl.stack.compose import ComposeError, find_compose
from sandboxctl.tasks._support import ask, find_engine, host, load_answers
from sandboxctl.tasks._task import task

Lines = list[str] | str
"""What a machine task prints: lines, or one line."""


def _show(lines: Lines) -> None:
    print("\n".join([lines] if isinstance(lines, str) else lines))


def _machine_or_native(
    on_machine: Callable[[Settings, HostInfo], Lines | None],
    native: Callable[[Settings, HostInfo], Lines | None],
) -> None:
    """The machine tasks' one branch: ``on_machine`` where Podman runs in a Podman machine
    (a VM: Windows/WSL, macOS, or ``ENGINE_MODE=machine``), else ``native`` (the local
    Podman service of Linux), each with the answers and this host's facts; what it
    returns is printed."""
    settings = load_answers()
    info = host()
    lines = (on_machine if uses_machine(info, settings) else native)(settings, info)
    if lines is not None:
        _show(lines)


def _native_start(settings: Settings, info: HostInfo) -> list[str]:
    """Serve the local Podman socket (the native side of init and start)."""
    return machine_.native_start(find_engine(settings, info))


def _native_stop(settings: Settings, info: HostInfo, yes: bool) -> list[str]:
    """Stop the native service we started; ask first when other sandboxes use it."""
    engine = find_engine(settings, info)
    others = machine_.engine_users(Runner(extra_env=engine.env()), settings.compose_project_name)
    return machine_.native_stop(engine, others=others, confirm=(lambda _q: True) if yes else ask)


@task(
    help={
        "cpus": "Virtual CPUs (default: MACHINE_CPUS in .env)",
        "memory": "Memory in MiB (default: MACHINE_MEMORY_MIB)",
        "disk": "Disk size in GiB (default: MACHINE_DISK_GIB)",
        "rootful": "true or false: run the machine's engine as root (default: MACHINE_ROOTFUL)",
        "image": "Machine image path or URL (default: MACHINE_IMAGE; Podman's own when empty)",
        "name": "Machine name (default: MACHINE_NAME, podman-machine-default)",
    },
    # 0: the answer in .env; otherwise the same ranges as copier.yml's questions
    ranges={
        "cpus": (0, answer("MACHINE_CPUS").high),
        "memory": (0, answer("MACHINE_MEMORY_MIB").high),
        "disk": (0, answer("MACHINE_DISK_GIB").high),
    },
    choices={"rootful": ("", "true", "false")},
)
def init(
    c: Context,
    cpus: int = 0,
    memory: int = 0,
    disk: int = 0,
    rootful: str = "",
    image: str = "",
    name: str = "",
) -> None:
    """Create and start the Podman machine (native Linux: start the local service)."""
    for flag, given, key in (
        ("cpus", cpus, "MACHINE_CPUS"),
        ("memory", memory, "MACHINE_MEMORY_MIB"),
        ("disk", disk, "MACHINE_DISK_GIB"),
    ):
        if given and given < (low := answer(key).low or 0):
            raise UsageError(f"--{flag}: expected 0 or {low} or more, got {given}")

    def create(settings: Settings, _info: HostInfo) -> None:
        spec = machine_.spec_from_settings(
            settings,
            cpus=cpus or None,
            memory_mib=memory or None,
            disk_gib=disk or None,
            rootful=rootful.lower() == "true" if rootful else None,
            image=image or None,
            name=name or None,
        )
        _show(machine_.init(spec, Runner()))
        socket(c, name=spec.name)

    _machine_or_native(create, _native_start)


@task(help={"name": "Machine name (default: MACHINE_NAME)"})
def start(c: Context, name: str = "") -> None:
    """Start the Podman machine (native Linux: serve the local Podman socket)."""
    _machine_or_native(
        lambda settings, _info: machine_.start(name or settings.machine_name, Runner()),
        _native_start,
    )


@task(
    help={
        "name": "Machine name (default: MACHINE_NAME)",
        "yes": "native Linux: stop the service even when other sandboxes use it",
    }
)
def stop(c: Context, name: str = "", yes: bool = False) -> None:
    """Stop the Podman machine (native Linux: stop the service only if we started it)."""
    _machine_or_native(
        lambda settings, _info: machine_.stop(name or settings.machine_name, Runner()),
        lambda settings, info: _native_stop(settings, info, yes),
    )


@task(help={"name": "Machine name (default: MACHINE_NAME)"})
def status(c: Context, name: str = "") -> None:
    """Show the machine's state, size and socket (native Linux: who serves the socket)."""
    _machine_or_native(
        lambda settings, info: machine_.status(
            name or settings.machine_name, Runner(), info.platform.value
        ),
        lambda settings, info: machine_.native_status(find_engine(settings, info)),
    )


@task(
    help={
        "name": "Machine name (default: MACHINE_NAME)",
        "yes": "Remove without asking (the machine's disk, images and volumes are lost)",
    }
)
def rm(c: Context, name: str = "", yes: bool = False) -> None:
    """Remove the Podman machine and its disk (native Linux: nothing to remove)."""

    def remove(settings: Settings, _info: HostInfo) -> str:
        target = name or settings.machine_name
        if not yes and not ask(f"Remove machine {target} with all its images and volumes?"):
            raise SandboxError("not removed (pass --yes to skip the question)")
        return machine_.remove(target, Runner())

    def stop_native(settings: Settings, info: HostInfo) -> list[str]:
        _show(["native Linux: no VM to remove; stopping the local service if we started it"])
        return _native_stop(settings, info, yes)

    _machine_or_native(remove, stop_native)


@task(
    help={
        "name": "Machine name (default: MACHINE_NAME)",
        "command": "Command to run in the machine (default: an interactive shell)",
    }
)
def ssh(c: Context, name: str = "", command: str = "") -> None:
    """Open a shell (or run a command) in the Podman machine."""

    def shell(settings: Settings, _info: HostInfo) -> None:
        argv = machine_.ssh_argv(name or settings.machine_name, command)
        result = c.run(shlex.join(argv), pty=True, warn=True)
        if result is None or not result.ok:
            raise SandboxError(f"`{shlex.join(argv)}` failed")

    def no_vm(_settings: Settings, _info: HostInfo) -> None:
        raise SandboxError(
            "native Linux has no VM: the engine runs on this host; "
            "run podman commands here directly"
        )

    _machine_or_native(shell, no_vm)


@task(help={"name": "Machine name (default: MACHINE_NAME)"})
def socket(c: Context, name: str = "") -> None:
    """Print the DOCKER_HOST to export, and the VS Code settings that use it."""
    settings = load_answers()
    info = host()
    if name and name != settings.machine_name:
        settings = replace(settings, machine_name=name)
    engine = find_engine(settings, info)
    try:
        compose = find_compose()
        compose_path = compose.path if compose.kind == "standalone" else None
    except ComposeError:
        compose_path = None
    _show(
        machine_.socket_lines(
            engine.docker_host, compose_path, windows=info.platform is Platform.WINDOWS
        )
    )
    if engine.kind == "native" and os.environ.get("DOCKER_HOST") != engine.docker_host:
        print(f"# native Linux: `invoke machine.start` serves {engine.docker_host}")
