"""Unit tests of `up`'s convergence: an unchanged running stack is left alone, only the
services whose inputs changed are recreated (fake podman and compose on PATH)."""

from __future__ import annotations

import json
from pathlib import Path

from fakes.stack import ROOT, calls, make_stack

from sandboxctl.stack import up

HASHES = {"model-server": "h-model", "supervisor": "h-sup", "tools": "h-tools"}
IMAGES = {"model-server": "img-model", "supervisor": "img-sup", "tools": "img-sup"}


def ps_json(*, state: str = "running", hashes: dict[str, str] = HASHES, stopped: str = "") -> str:
    """What `podman ps -a --format json` lists for the project's containers."""
    return json.dumps(
        [
            {
                "State": "exited" if service == stopped else state,
                "ImageID": IMAGES[service],
                "Labels": {
                    "com.docker.compose.service": service,
                    "com.docker.compose.config-hash": digest,
                },
            }
            for service, digest in hashes.items()
        ]
    )


def answers(listed: str) -> dict[str, tuple[int, str]]:
    images = {service: {"image": f"name-{service}"} for service in HASHES}
    return {
        "ps -a": (0, listed),
        f"--project-directory {ROOT} config --hash": (
            0,
            "".join(f"{s} {h}\n" for s, h in HASHES.items()),
        ),
        f"--project-directory {ROOT} config --format json": (0, json.dumps({"services": images})),
        # one image ID for every name: the fake cannot tell names apart
        "image inspect": (0, "sha256:img-sup\n"),
    }


def up_calls(log: Path) -> list[list[str]]:
    """The `compose up` calls, without the --project-directory every compose call has."""
    return [call[3:] for call in calls(log) if call[3:4] == ["up"]]


def test_outdated_names_missing_and_changed_services() -> None:
    """A service with no container, another config hash or another image is outdated."""
    states = {
        "model-server": up.ServiceState(True, "h-model", "img-model"),
        "supervisor": up.ServiceState(True, "old", "img-sup"),
        "tools": up.ServiceState(True, "h-tools", "old-image"),
    }
    expected = {
        "model-server": ("h-model", "img-model"),
        "supervisor": ("h-sup", "img-sup"),
        "tools": ("h-tools", "img-sup"),
        "extra": ("h", "i"),
    }
    assert up.outdated(states, expected) == ["extra", "supervisor", "tools"]


def test_service_states_reads_labels_state_and_bare_image_ids(tmp_path: Path) -> None:
    """`podman ps` JSON becomes states by service; `sha256:` prefixes are dropped."""
    built, _ = make_stack(tmp_path, {"ps -a": (0, ps_json(stopped="tools"))})
    states = up.service_states(built)
    assert states["tools"] == up.ServiceState(False, "h-tools", "img-sup")
    assert states["model-server"].running


def test_unchanged_running_stack_recreates_nothing_and_says_so(tmp_path: Path) -> None:
    """Same hashes, same images, all running: only `up --no-recreate`, and a line saying
    so (the fake image inspect answers img-sup for every name, so every container runs
    img-sup here)."""
    listed = ps_json().replace('"img-model"', '"img-sup"')
    built, log = make_stack(tmp_path, answers(listed))
    said: list[str] = []
    built.log = said.append
    assert up.converge(built, up.service_states(built)) == []
    assert up_calls(log) == [["up", "-d", "--no-recreate"]]
    assert said == [f"stack {built.project} unchanged and running: nothing recreated"]


def test_changed_service_alone_is_recreated(tmp_path: Path) -> None:
    """model-server's image differs (img-model against img-sup): only it is recreated."""
    built, log = make_stack(tmp_path, answers(ps_json()))
    assert up.converge(built, up.service_states(built)) == ["model-server"]
    assert up_calls(log) == [
        ["up", "-d", "--no-recreate"],
        ["up", "-d", "--no-deps", "--force-recreate", "model-server"],
    ]


def test_new_model_bytes_recreate_the_running_model_server(tmp_path: Path) -> None:
    """A model copied into the volume restarts a running server even with the same config."""
    listed = ps_json().replace('"img-model"', '"img-sup"')
    built, log = make_stack(tmp_path, answers(listed))
    assert up.converge(built, up.service_states(built), model_changed=True) == ["model-server"]
    assert up_calls(log)[-1] == ["up", "-d", "--no-deps", "--force-recreate", "model-server"]


def test_a_first_up_starts_the_model_server_once(tmp_path: Path) -> None:
    """No container before this `up`: starting it reads the new model; no recreate."""
    listed = ps_json().replace('"img-model"', '"img-sup"')
    built, log = make_stack(tmp_path, answers(listed))
    assert up.converge(built, {}, model_changed=True) == []
    assert up_calls(log) == [["up", "-d", "--no-recreate"]]
