"""Bring the stack up: secrets, images, the model, Compose, readiness (the tasks run the
doctor's preflight first: :func:`sandboxctl.checks.doctor.stack_preflight`).

``up`` is idempotent: on an unchanged, running stack it recreates nothing. Compose alone
cannot promise that on Podman 4.3: its compat API reports a container's ``NetworkID`` as
the network's *name*, Compose compares it with the network's ID, concludes the running
container left its network and recreates every running container on each ``up`` (and on
``create``), killing an agent run in progress. So :func:`converge` compares what Compose
compares (``compose config --hash``, the service's image ID) and has Compose recreate only
the services whose inputs changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxctl.stack.images import prepare_images
from sandboxctl.stack.model_image import place_llama_source
from sandboxctl.stack.networks import ensure_networks
from sandboxctl.stack.project import READY_DEADLINE_S, Stack, StackError
from sandboxctl.stack.secrets import ensure_api_key, ensure_tools_token


def prepare_model(stack: Stack) -> Path:
    """Return the host path of the answered model, generating or fetching it when absent."""
    from sandboxctl.catalog import catalog
    from sandboxctl.catalog import tiny as tiny_model
    from sandboxctl.download import DownloadError, rich_progress
    from sandboxctl.llama import source as llama_source

    try:
        model = catalog.load_catalog(stack.root / catalog.CATALOG_RELPATH).get(
            stack.settings.sandbox_model
        )
        path = catalog.model_path(model, catalog.model_dir(stack.root))
        if path.is_file():
            return path
        if model.generated:
            stack.log(f"generating the offline tiny model into {path}")
            context = place_llama_source(stack)  # its tokenizer comes from the source
            return tiny_model.generate(llama_source.vocab_path(context), path)
        with rich_progress(model.key) as progress:
            catalog.fetch_model(model, directory=path.parent, progress=progress)
    except (catalog.CatalogError, llama_source.SourceError, tiny_model.TinyModelError) as error:
        raise StackError(str(error)) from error
    except DownloadError as error:
        raise StackError(f"{error} (or fetch it first: `invoke model.fetch`)") from error
    return path


def bring_up(stack: Stack, *, rebuild: bool = False, deadline_s: float = READY_DEADLINE_S) -> float:
    """Key, images, model, then ``compose up -d`` and wait for readiness; return its
    seconds."""
    ensure_api_key(stack.root)
    ensure_tools_token(stack.root)
    images = prepare_images(stack, rebuild=rebuild)
    model_file = prepare_model(stack)
    before = service_states(stack)
    config = compose_config(stack)
    ensure_networks(stack, config)  # before Compose makes them with DNS
    # `create` only makes what is missing (the model-data volume load_model fills)
    stack.require(stack.compose_run("create", "--no-recreate", capture=True), "compose create")
    copied = stack.load_model(model_file, images["model-server"], stack.root / "models")
    converge(stack, before, model_changed=copied, config=config)
    seconds = stack.wait_ready(deadline_s)
    stack.log(f"stack {stack.project} ready in {seconds:.1f} s after `up`")
    return seconds


@dataclass(frozen=True)
class ServiceState:
    """One service's container as the engine reports it."""

    running: bool
    config_hash: str
    """Compose's ``com.docker.compose.config-hash`` label: the hash of its configuration."""
    image_id: str


def _bare_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def service_states(stack: Stack) -> dict[str, ServiceState]:
    """Return the project's containers by Compose service (first replica)."""
    listed = stack.podman(
        "ps", "-a", "--filter", f"label=com.docker.compose.project={stack.project}",
        "--format", "json",
    )  # fmt: skip
    if not listed.ok or not listed.stdout.strip():
        return {}
    states: dict[str, ServiceState] = {}
    for container in json.loads(listed.stdout):
        labels = container.get("Labels") or {}
        service = labels.get("com.docker.compose.service")
        if service and service not in states:
            states[service] = ServiceState(
                running=container.get("State") == "running",
                config_hash=labels.get("com.docker.compose.config-hash", ""),
                image_id=_bare_id(container.get("ImageID", "")),
            )
    return states


def compose_config(stack: Stack) -> dict[str, Any]:
    """Return the resolved Compose model (``compose config --format json``)."""
    result = stack.compose_run("config", "--format", "json", capture=True)
    config: dict[str, Any] = json.loads(stack.require(result, "compose config").stdout)
    return config


def expected_states(
    stack: Stack, config: dict[str, Any] | None = None
) -> dict[str, tuple[str, str]]:
    """Return each service's current (config hash, image ID), as Compose computes them
    (``config``: the resolved model when the caller has it already)."""
    hashes = stack.require(
        stack.compose_run("config", "--hash", "*", capture=True), "compose config --hash"
    )
    config = compose_config(stack) if config is None else config
    expected: dict[str, tuple[str, str]] = {}
    for line in hashes.stdout.splitlines():
        service, _, digest = line.strip().partition(" ")
        image = config.get("services", {}).get(service, {}).get("image", "")
        found = stack.podman("image", "inspect", "--format", "{{.Id}}", image) if image else None
        image_id = _bare_id(found.stdout.strip()) if found is not None and found.ok else ""
        expected[service] = (digest.strip(), image_id)
    return expected


def outdated(states: dict[str, ServiceState], expected: dict[str, tuple[str, str]]) -> list[str]:
    """Return the services whose container is missing or was made from other inputs."""
    stale = []
    for service, (config_hash, image_id) in sorted(expected.items()):
        state = states.get(service)
        if state is None or state.config_hash != config_hash or state.image_id != image_id:
            stale.append(service)
    return stale


def converge(
    stack: Stack,
    before: dict[str, ServiceState],
    *,
    model_changed: bool = False,
    config: dict[str, Any] | None = None,
) -> list[str]:
    """Start what is stopped and recreate only what changed; return the recreated services.

    ``before``: the states before this ``up`` (the running stack it must leave alone);
    ``config``: the resolved Compose model, when the caller has it already.
    """
    stale = outdated(service_states(stack), expected_states(stack, config))
    server = before.get("model-server")
    if model_changed and server is not None and server.running and "model-server" not in stale:
        stale.append("model-server")  # running on the old bytes; a stopped one reads the new
    stack.require(stack.compose_run("up", "-d", "--no-recreate", capture=True), "compose up")
    if stale:
        stack.log(f"recreating {', '.join(stale)} (configuration, image or model changed)")
        stack.require(
            stack.compose_run("up", "-d", "--no-deps", "--force-recreate", *stale, capture=True),
            "compose up",
        )
    elif before and all(state.running for state in before.values()):
        stack.log(f"stack {stack.project} unchanged and running: nothing recreated")
    return stale
