"""The Podman machine lifecycle (init, start, stop, status, rm, ssh, socket).

On Windows/WSL and macOS the engine is a Podman machine (a VM). On native Linux no VM is
needed: each action says so and manages the local ``podman system service`` instead
(see :mod:`sandboxctl.host.engine`). Every function returns the lines to show the user and raises
:class:`MachineError` with a fix when something fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sandboxctl._proc import CommandNotFound, Result, Runner, quote
from sandboxctl.config import Settings
from sandboxctl.errors import SandboxError
from sandboxctl.host.engine import Engine, EngineError, inspect_machine, machine_docker_host
from sandboxctl.host.service import ensure_service, service_status, stop_service


class MachineError(SandboxError, RuntimeError):
    """A machine action failed; the message says how to fix it."""


@dataclass(frozen=True)
class MachineSpec:
    """The size and image of a Podman machine."""

    name: str
    cpus: int
    memory_mib: int
    disk_gib: int
    rootful: bool
    image: str = ""


def spec_from_settings(
    settings: Settings,
    *,
    cpus: int | None = None,
    memory_mib: int | None = None,
    disk_gib: int | None = None,
    rootful: bool | None = None,
    image: str | None = None,
    name: str | None = None,
) -> MachineSpec:
    """Return the machine the answers describe, with any flag given overriding its answer."""
    spec = MachineSpec(
        name=settings.machine_name,
        cpus=settings.machine_cpus,
        memory_mib=settings.machine_memory_mib,
        disk_gib=settings.machine_disk_gib,
        rootful=settings.machine_rootful,
        image=settings.machine_image,
    )
    overrides: dict[str, Any] = {
        "cpus": cpus,
        "memory_mib": memory_mib,
        "disk_gib": disk_gib,
        "rootful": rootful,
        "image": image,
        "name": name,
    }
    return replace(spec, **{key: value for key, value in overrides.items() if value is not None})


def _podman(runner: Runner, args: Sequence[str], *, capture: bool = True) -> Result:
    try:
        return runner.run(["podman", *args], capture=capture)
    except CommandNotFound as error:
        raise MachineError(
            "podman is not installed: run `invoke host.prepare` (Debian/WSL) or install "
            "Podman Desktop / `brew install podman` (macOS)"
        ) from error


def podman_major(runner: Runner) -> int:
    """Return the major version of the podman client (4 when it cannot be read)."""
    result = _podman(runner, ["version", "--format", "{{.Client.Version}}"])
    head = result.stdout.strip().split(".", 1)[0]
    return int(head) if result.ok and head.isdigit() else 4


def init_argv(spec: MachineSpec, major: int = 4) -> list[str]:
    """Return ``podman machine init`` with the spec's size, rootful mode and image.

    Podman 5 names the image option ``--image``; Podman 4 ``--image-path``.
    """
    argv = [
        "podman",
        "machine",
        "init",
        "--cpus",
        str(spec.cpus),
        "--memory",
        str(spec.memory_mib),
        "--disk-size",
        str(spec.disk_gib),
    ]
    if spec.rootful:
        argv.append("--rootful")
    if spec.image:
        argv += ["--image" if major >= 5 else "--image-path", spec.image]
    argv.append(spec.name)
    return argv


def _inspect(runner: Runner, name: str) -> dict[str, Any] | None:
    try:
        return inspect_machine(runner, name)
    except EngineError as error:
        raise MachineError(str(error)) from error


def _fail(result: Result) -> MachineError:
    detail = result.output or f"exit {result.returncode}"
    return MachineError(f"`{quote(result.argv)}` failed: {detail}")


def size_differences(spec: MachineSpec, info: dict[str, Any]) -> list[str]:
    """Return how an existing machine differs from ``spec`` (empty when it matches)."""
    resources = info.get("Resources") or {}
    wanted = {
        "CPUs": spec.cpus,
        "Memory": spec.memory_mib,
        "DiskSize": spec.disk_gib,
    }
    differences = [
        f"{key} is {resources.get(key)} (answers say {value})"
        for key, value in wanted.items()
        if key in resources and resources.get(key) != value
    ]
    if "Rootful" in info and bool(info["Rootful"]) != spec.rootful:
        differences.append(f"Rootful is {info['Rootful']} (answers say {spec.rootful})")
    return differences


def init(spec: MachineSpec, runner: Runner, *, start_after: bool = True) -> list[str]:
    """Create the machine unless it exists, then start it (unless ``start_after`` is false)."""
    lines: list[str] = []
    info = _inspect(runner, spec.name)
    if info is not None:
        lines.append(f"machine {spec.name} exists ({info.get('State', 'unknown')}); not re-created")
        for difference in size_differences(spec, info):
            lines.append(
                f"  note: {difference}; `podman machine set` changes a stopped machine, "
                "or `invoke machine.rm` then `invoke machine.init` recreates it"
            )
    else:
        argv = init_argv(spec, podman_major(runner))
        lines.append(f"creating machine: {quote(argv)}")
        result = _podman(runner, argv[1:], capture=False)
        if not result.ok:
            raise MachineError(
                f"`{quote(argv)}` failed (exit {result.returncode}); it downloads a Fedora "
                "CoreOS image: check the network, or pass --image with a local image file"
            )
    if start_after:
        lines.append(start(spec.name, runner))
    return lines


def _state(info: dict[str, Any]) -> str:
    return str(info.get("State", "unknown")).lower()


def start(name: str, runner: Runner) -> str:
    """Start the machine unless it runs already."""
    info = _inspect(runner, name)
    if info is None:
        raise MachineError(f"no machine named {name}: create it with `invoke machine.init`")
    if _state(info) == "running":
        return f"machine {name} is already running"
    result = _podman(runner, ["machine", "start", name], capture=False)
    if not result.ok:
        raise _fail(result)
    return f"machine {name} started"


def stop(name: str, runner: Runner) -> str:
    """Stop the machine if it runs."""
    info = _inspect(runner, name)
    if info is None:
        return f"no machine named {name}; nothing to stop"
    if _state(info) != "running":
        return f"machine {name} is not running"
    result = _podman(runner, ["machine", "stop", name], capture=False)
    if not result.ok:
        raise _fail(result)
    return f"machine {name} stopped"


def status(name: str, runner: Runner, platform_name: str) -> list[str]:
    """Describe the machine: state, size, rootful, API socket."""
    info = _inspect(runner, name)
    if info is None:
        return [f"no machine named {name}; create it with `invoke machine.init`"]
    from sandboxctl.host.platform import Platform

    resources = info.get("Resources") or {}
    lines = [
        f"machine {name}: {_state(info)}",
        f"  cpus {resources.get('CPUs', '?')}, memory {resources.get('Memory', '?')} MiB, "
        f"disk {resources.get('DiskSize', '?')} GiB, rootful {info.get('Rootful', '?')}",
    ]
    try:
        lines.append(f"  DOCKER_HOST={machine_docker_host(info, Platform(platform_name))}")
    except EngineError as error:
        lines.append(f"  {error}")
    return lines


def remove(name: str, runner: Runner) -> str:
    """Remove the machine and its disk (the caller asks for consent first)."""
    if _inspect(runner, name) is None:
        return f"no machine named {name}; nothing to remove"
    result = _podman(runner, ["machine", "rm", "--force", name], capture=False)
    if not result.ok:
        raise _fail(result)
    return f"machine {name} removed"


def ssh_argv(name: str, command: str = "") -> list[str]:
    """Return ``podman machine ssh NAME [COMMAND]``."""
    argv = ["podman", "machine", "ssh", name]
    if command:
        argv.append(command)
    return argv


def vscode_settings(docker_host: str, compose_path: str | None) -> dict[str, Any]:
    """Return the VS Code settings that point the Docker/Container Tools and Dev Containers
    extensions at this engine."""
    settings: dict[str, Any] = {
        "docker.environment": {"DOCKER_HOST": docker_host},
        "containers.environment": {"DOCKER_HOST": docker_host},
        "dev.containers.dockerPath": "podman",
    }
    if compose_path:
        settings["dev.containers.dockerComposePath"] = compose_path
    return settings


def socket_lines(docker_host: str, compose_path: str | None, *, windows: bool = False) -> list[str]:
    """Return the ``export DOCKER_HOST=...`` line (PowerShell form on Windows) and the VS Code
    settings JSON."""
    export = (
        f'$env:DOCKER_HOST = "{docker_host}"' if windows else f"export DOCKER_HOST={docker_host}"
    )
    return [
        export,
        "",
        "# VS Code settings.json (user or workspace):",
        json.dumps(vscode_settings(docker_host, compose_path), indent=2),
    ]


# --- native Linux: no VM, the local service ------------------------------------------------

NATIVE_NOTICE = "native Linux: no VM needed; the engine is the local Podman service"


def native_start(engine: Engine, state_dir: Path | None = None, **service: Any) -> list[str]:
    """Serve the native engine's socket (start ``podman system service`` if nothing does).

    ``service`` goes to :func:`sandboxctl.host.service.ensure_service` (``ping_fn``, ``spawn``).
    """
    try:
        result = ensure_service(engine, state_dir=state_dir, **service)
    except EngineError as error:
        raise MachineError(str(error)) from error
    return [
        f"{NATIVE_NOTICE} ({engine.reason})",
        result.message,
        f"DOCKER_HOST={engine.docker_host}",
    ]


COMPOSE_PROJECT_LABEL = "com.docker.compose.project"


def engine_users(runner: Runner, own_project: str) -> list[str]:
    """Describe who else runs containers on the engine: other Compose projects (other
    sandboxes) and containers outside any project. Empty when nobody else does."""
    try:
        result = runner.run(["podman", "ps", "--format", "json"])
    except CommandNotFound:
        return []
    try:
        containers = json.loads(result.stdout or "[]") if result.ok else []
    except json.JSONDecodeError:
        containers = []
    projects: dict[str, int] = {}
    for container in containers if isinstance(containers, list) else []:
        labels = container.get("Labels") or {}
        project = labels.get(COMPOSE_PROJECT_LABEL, "")
        if project != own_project:
            projects[project] = projects.get(project, 0) + 1
    return [
        f"{count} container(s) of {f'project {name}' if name else 'no Compose project'}"
        for name, count in sorted(projects.items())
    ]


def native_stop(
    engine: Engine,
    state_dir: Path | None = None,
    *,
    others: Sequence[str] = (),
    confirm: Callable[[str], bool] = lambda _question: False,
) -> list[str]:
    """Stop the local service only if sandboxctl started it, and, when ``others`` (see
    :func:`engine_users`) use the engine, only if ``confirm`` says yes."""
    if engine.socket_path is None:
        return [f"{engine.docker_host} is not a local socket; nothing to stop"]
    if others and not confirm(
        f"The Podman service is in use ({'; '.join(others)}). Stop it anyway?"
    ):
        return [NATIVE_NOTICE, f"kept the service: in use by {'; '.join(others)}"]
    return [NATIVE_NOTICE, stop_service(engine.socket_path, state_dir=state_dir)]


def native_status(engine: Engine, state_dir: Path | None = None) -> list[str]:
    """Say who serves the native engine's socket."""
    if engine.socket_path is None:
        return [f"engine at {engine.docker_host} ({engine.reason})"]
    return [
        f"{NATIVE_NOTICE} ({engine.reason})",
        service_status(engine.socket_path, state_dir=state_dir),
    ]
