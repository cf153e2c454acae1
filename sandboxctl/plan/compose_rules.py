"""The plan's rules for the Compose model: services, users, hardening, mounts, networks,
ports, volumes. The model is the one Compose itself builds (``compose config --format
json``: merged and interpolated); the files are read only for the lines of findings."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sandboxctl.plan.located import Located, PlanError, load_located
from sandboxctl.plan.spec import (
    ENGINE_SOCKETS,
    ENV_FILE,
    Plan,
    Report,
    env_line,
    is_root_user,
)


@dataclass
class ComposeView:
    """The Compose model (``compose config``) of the files ``.env`` selects, with the files
    as written for the lines of findings."""

    docs: list[Located]
    data: dict[str, Any]
    root: Path = Path(".")

    def where(self, *path: Any) -> tuple[str, int]:
        """Return (file, line) of the deepest written match of ``path``; later files win ties."""
        best = max(reversed(self.docs), key=lambda doc: doc.depth(*path))
        return best.file, best.line(*path)


def compose_files(env: Mapping[str, str]) -> list[str]:
    """Return the compose files ``COMPOSE_FILE`` names (``compose.yaml`` when unset)."""
    separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    value = env.get("COMPOSE_FILE", "").strip()
    return [name for name in value.split(separator) if name] if value else ["compose.yaml"]


def compose_model(root: Path, files: Sequence[str]) -> dict[str, Any]:
    """Return ``compose config --format json`` of ``files`` in ``root``, interpolated from
    the folder's ``.env`` only (the shell's variables do not change what the files say).

    Raises :class:`PlanError` with Compose's own message when it refuses the files.
    """
    from sandboxctl._proc import Runner
    from sandboxctl.stack.compose import ComposeError, compose_config, find_compose

    clean = Runner(env={"PATH": os.environ.get("PATH", ""), "HOME": str(Path.home())})
    try:
        return compose_config(
            find_compose(clean),
            project_dir=root,
            files=[root / name for name in files],
            runner=clean,
        )
    except ComposeError as error:
        raise PlanError(f"compose config refused the compose files: {error}") from error


def load_compose(root: Path, env: Mapping[str, str], report: Report) -> ComposeView | None:
    """Load the selected compose files through Compose; a missing one is a drift."""
    docs: list[Located] = []
    for name in compose_files(env):
        path = root / name
        if not path.is_file():
            line = env_line(root, "COMPOSE_FILE")
            report.drift(ENV_FILE, line, f"compose file {name} (COMPOSE_FILE) is missing")
            continue
        doc = load_located(path.read_text(encoding="utf-8"), name)
        if isinstance(doc.data, dict):
            docs.append(doc)
    if not docs:
        return None
    try:
        data = compose_model(root, [doc.file for doc in docs])
    except PlanError as error:
        report.drift(docs[0].file, 1, str(error))
        return None
    return ComposeView(docs, data, root)


def _names(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(key) for key in value]
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


def _mount_source(mount: Any) -> str:
    if isinstance(mount, dict):
        return str(mount.get("source", ""))
    return str(mount).split(":", 1)[0]


def _port_entries(ports: Any) -> list[str]:
    entries = []
    for port in ports or []:
        if isinstance(port, dict):
            host_ip = port.get("host_ip", "")
            prefix = f"{host_ip}:" if host_ip else ""
            entries.append(f"{prefix}{port.get('published', '')}:{port.get('target', '')}")
        else:
            entries.append(str(port))
    return entries


def _has_no_new_privileges(options: Any) -> bool:
    accepted = {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}
    return any(str(option).replace(" ", "") in accepted for option in options or [])


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def check_service(
    name: str, want: dict[str, Any], plan: Plan, compose: ComposeView, report: Report
) -> None:
    """Compare one planned service with its merged compose definition."""
    service = compose.data["services"][name]
    where = compose.where
    hardening = plan.spec["hardening"]

    def drift(path: Sequence[Any], message: str) -> None:
        file, line = where("services", name, *path)
        report.drift(file, line, f"service {name}: {message}")

    if "image" in want and service.get("image") != want["image"]:
        drift(["image"], f"image {service.get('image')!r}, the plan says {want['image']!r}")
    build = service.get("build") if isinstance(service.get("build"), dict) else {}
    if "containerfile" in want:
        context = str(build.get("context", "."))
        if os.path.isabs(context):  # Compose resolves it against the project folder
            context = os.path.relpath(context, compose.root)
        dockerfile = str(build.get("dockerfile", "Dockerfile"))
        got = os.path.normpath(str(PurePosixPath(context) / dockerfile))
        if got != os.path.normpath(want["containerfile"]):
            drift(["build"], f"builds {got}, the plan says {want['containerfile']}")
    if "target" in want and build.get("target") != want["target"]:
        drift(["build", "target"], f"build target {build.get('target')!r}, plan {want['target']!r}")

    user = str(service.get("user", ""))
    if is_root_user(user):
        drift(["user"], f"runs as root (user {user or 'not set'}); the plan says {want['user']}")
    elif "user" in want and user != str(want["user"]):
        drift(["user"], f"user {user}, the plan says {want['user']}")

    cap_drop = [str(cap).upper() for cap in service.get("cap_drop") or []]
    for cap in hardening.get("cap_drop", []):
        if str(cap).upper() not in cap_drop:
            drift(["cap_drop"], f"cap_drop lacks {cap}")
    if hardening.get("no_new_privileges") and not _has_no_new_privileges(
        service.get("security_opt")
    ):
        drift(["security_opt"], "security_opt lacks no-new-privileges:true")
    if hardening.get("read_only") and not _truthy(service.get("read_only")):
        drift(["read_only"], "root filesystem is not read_only")

    mounts = service.get("volumes") or []
    sources = [_mount_source(mount) for mount in mounts]
    for source in sources:
        if source.endswith(ENGINE_SOCKETS):
            drift(["volumes", source], f"mounts the engine socket {source}")
    if "volumes" in want:
        planned = [str(volume) for volume in want["volumes"]]
        for source in sources:
            if source not in planned:
                drift(["volumes"], f"mounts {source!r}, not in the plan's {planned}")
        for volume in planned:
            if volume not in sources:
                drift(["volumes"], f"does not mount {volume!r}, which the plan requires")
    if "networks" in want:
        joined = sorted(_names(service.get("networks")) or ["default"])
        planned_networks = sorted(str(network) for network in want["networks"])
        if joined != planned_networks:
            drift(["networks"], f"networks {joined}, the plan says {planned_networks}")

    ports = _port_entries(service.get("ports"))
    if want.get("published"):
        port = want.get("port", plan.spec["model_port"])
        expected = f"127.0.0.1:{port}:{port}"
        if ports != [expected]:
            drift(["ports"], f"ports {ports}, the plan publishes only {expected}")
    elif ports:
        drift(["ports"], f"publishes {ports}; the plan publishes nothing for this service")
    environment = service.get("environment")
    if (
        "port" in want
        and isinstance(environment, dict)
        and "LLAMA_ARG_PORT" in environment
        and str(environment["LLAMA_ARG_PORT"]) != str(want["port"])
    ):
        drift(
            ["environment", "LLAMA_ARG_PORT"],
            f"listens on {environment['LLAMA_ARG_PORT']}, the plan says {want['port']}",
        )


def check_compose(plan: Plan, compose: ComposeView, report: Report) -> None:
    """Compare the plan's services, volumes and networks with the merged compose files."""
    services = compose.data.get("services")
    if not isinstance(services, dict):
        file, line = compose.where("services")
        report.drift(file, line, "no services")
        return
    planned: dict[str, Any] = plan.spec["services"]
    for name, want in planned.items():
        if name in services:
            check_service(name, want or {}, plan, compose, report)
        elif not (want or {}).get("planned"):
            file, line = compose.where("services")
            report.drift(file, line, f"service {name} required by PLAN.md is missing")
    for name in services:
        if name not in planned:
            file, line = compose.where("services", name)
            report.drift(file, line, f"service {name} is not in PLAN.md")

    volumes = _names(compose.data.get("volumes"))
    for volume in plan.spec["volumes"]:
        if str(volume) not in volumes:
            file, line = compose.where("volumes")
            report.drift(file, line, f"volume {volume} required by PLAN.md is missing")
    for volume in volumes:
        if volume not in [str(v) for v in plan.spec["volumes"]]:
            file, line = compose.where("volumes", volume)
            report.drift(file, line, f"volume {volume} is not in PLAN.md")

    networks = compose.data.get("networks") or {}
    networks = networks if isinstance(networks, dict) else {}
    for name, want in plan.spec["networks"].items():
        if name not in networks:
            file, line = compose.where("networks")
            report.drift(file, line, f"network {name} required by PLAN.md is missing")
            continue
        internal = _truthy((networks[name] or {}).get("internal", False))
        if internal != bool((want or {}).get("internal", False)):
            file, line = compose.where("networks", name, "internal")
            state = "internal" if internal else "not internal"
            report.drift(file, line, f"network {name} is {state}; the plan says the opposite")
    for name in networks:
        if name not in plan.spec["networks"]:
            file, line = compose.where("networks", name)
            report.drift(file, line, f"network {name} is not in PLAN.md")
