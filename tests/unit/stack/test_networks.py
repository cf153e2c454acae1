"""Unit tests of the stack's resolver-less networks (sandboxctl.stack.networks): which
networks `up` creates itself, with what, and what it does with one that exists already.
Podman is a recording fake on PATH (tests/e2e/test_closed_network.py holds the real
networks: no resolver, no gateway)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.stack import ROOT, calls, make_stack

from sandboxctl.stack.networks import (
    RESOLVER_LABEL,
    NetworkSpec,
    create_argv,
    differences,
    ensure_networks,
    wanted_networks,
)
from sandboxctl.stack.project import StackError

CONFIG: dict[str, Any] = {
    "networks": {
        "ai-net": {
            "name": "box_ai-net",
            "internal": True,
            "labels": {RESOLVER_LABEL: "none"},
            "ipam": {"config": [{"subnet": "10.90.24.0/25", "ip_range": "10.90.24.0/26"}]},
        },
        "egress-net": {"name": "box_egress-net", "ipam": {}},
    }
}
AI_NET = NetworkSpec(
    key="ai-net",
    name="box_ai-net",
    internal=True,
    subnet="10.90.24.0/25",
    ip_range="10.90.24.0/26",
    labels=(
        ("com.docker.compose.network", "ai-net"),
        ("com.docker.compose.project", "box"),
        (RESOLVER_LABEL, "none"),
    ),
)
GOOD = {"dns_enabled": False, "internal": True, "subnets": [{"subnet": "10.90.24.0/25"}]}


def test_only_networks_labelled_resolver_none_are_created_by_up() -> None:
    assert wanted_networks(CONFIG, "box") == [AI_NET]


def test_a_network_is_created_without_dns_with_composes_labels_and_its_subnet() -> None:
    argv = create_argv(AI_NET)
    assert argv[:4] == ["network", "create", "--disable-dns", "--internal"]
    assert argv[argv.index("--subnet") + 1] == "10.90.24.0/25"
    assert argv[argv.index("--ip-range") + 1] == "10.90.24.0/26"
    assert "com.docker.compose.project=box" in argv
    assert "com.docker.compose.network=ai-net" in argv
    assert argv[-1] == "box_ai-net"


@pytest.mark.parametrize(
    ("inspected", "says"),
    [
        ({**GOOD, "dns_enabled": True}, "resolver"),
        ({**GOOD, "internal": False}, "internal"),
        ({**GOOD, "subnets": [{"subnet": "10.89.0.0/24"}]}, "10.89.0.0/24"),
    ],
)
def test_an_existing_network_that_differs_is_told_apart(
    inspected: dict[str, Any], says: str
) -> None:
    found = differences(AI_NET, inspected)
    assert found
    assert says in "; ".join(found)


def test_an_existing_network_as_wanted_has_no_differences() -> None:
    assert differences(AI_NET, GOOD) == []


def stack_answering(
    tmp_path: Path, answers: dict[str, tuple[int, str]]
) -> tuple[Any, Path, dict[str, Any]]:
    """A stack whose fake podman answers ``answers``, its call log, and CONFIG for it."""
    built, log = make_stack(tmp_path, answers)
    return built, log, replace_project(built)


def replace_project(built: Any) -> dict[str, Any]:
    """CONFIG with this stack's project name in the engine's names."""
    project = built.project
    networks = {
        key: {**value, "name": f"{project}_{key}"} for key, value in CONFIG["networks"].items()
    }
    return {"networks": networks}


def podman_calls(log: Path) -> list[list[str]]:
    return [call[1:] for call in calls(log) if call[0] == "podman"]


def test_a_missing_network_is_created(tmp_path: Path) -> None:
    built, log, config = stack_answering(tmp_path, {"network inspect": (1, "")})
    assert ensure_networks(built, config) == [f"{built.project}_ai-net"]
    created = [c for c in podman_calls(log) if c[:2] == ["network", "create"]]
    assert len(created) == 1
    assert "--disable-dns" in created[0]


def test_a_network_as_wanted_is_left_alone(tmp_path: Path) -> None:
    built, log, config = stack_answering(tmp_path, {"network inspect": (0, json.dumps([GOOD]))})
    assert ensure_networks(built, config) == []
    assert all(c[:2] == ["network", "inspect"] for c in podman_calls(log))


def test_an_unused_network_with_a_resolver_is_made_again(tmp_path: Path) -> None:
    with_dns = json.dumps([{**GOOD, "dns_enabled": True}])
    built, log, config = stack_answering(
        tmp_path, {"network inspect": (0, with_dns), "ps -aq": (0, "")}
    )
    assert ensure_networks(built, config) == [f"{built.project}_ai-net"]
    verbs = [c[:2] for c in podman_calls(log)]
    assert verbs.index(["network", "rm"]) < verbs.index(["network", "create"])


def test_a_used_network_with_a_resolver_stops_up_with_the_fix(tmp_path: Path) -> None:
    with_dns = json.dumps([{**GOOD, "dns_enabled": True}])
    built, log, config = stack_answering(
        tmp_path, {"network inspect": (0, with_dns), "ps -aq": (0, "abc123\n")}
    )
    with pytest.raises(StackError, match=r"invoke down.*invoke up"):
        ensure_networks(built, config)
    assert not [c for c in podman_calls(log) if c[:2] in (["network", "rm"], ["network", "create"])]


def test_a_subnet_taken_by_another_network_names_the_setting_to_change(tmp_path: Path) -> None:
    taken = "Error: subnet 10.90.24.0/25 is already used on the host or by another config"
    built, _, config = stack_answering(
        tmp_path, {"network inspect": (1, ""), "network create": (125, taken)}
    )
    with pytest.raises(StackError, match="SANDBOX_NET_PREFIX"):
        ensure_networks(built, config)


NO_RESOLVER_FILES = ["compose.yaml", "compose.publish.yaml"]


@pytest.mark.parametrize("name", NO_RESOLVER_FILES)
def test_every_network_of_containers_without_a_resolver_is_labelled(name: str) -> None:
    """The stack's own networks (not the proxy's or the dev container's way out) carry the
    label that makes `up` create them with no DNS."""
    networks = yaml.safe_load((ROOT / name).read_text())["networks"]
    assert networks
    for key, network in networks.items():
        assert (network or {}).get("labels", {}).get(RESOLVER_LABEL) == "none", key
