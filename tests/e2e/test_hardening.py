"""Hardening asserted in the running stack: what the engine reports (`podman inspect`)
and what the processes see from inside (probes run with `podman exec`).

The network probes only ever address 127.0.0.1 and the project's own container networks
(container addresses and the internal networks' gateways on this host): no test sends
traffic anywhere else.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from e2e_sandbox import PROJECT, ROOT, E2EStack

SERVICES = ("model-server", "supervisor", "tools")
USER = "10001"
ENGINE_SOCKETS = ("docker.sock", "podman.sock")


def status_fields(text: str) -> dict[str, str]:
    """The `Key:\tvalue` lines of a /proc/PID/status."""
    return {k: v.strip() for k, v in (ln.split(":", 1) for ln in text.splitlines() if ":" in ln)}


def every_process_status(stack: E2EStack, service: str) -> list[dict[str, str]]:
    """/proc/PID/status of every process in the service's container, read inside it."""
    probe = 'for f in /proc/[0-9]*/status; do cat "$f" 2>/dev/null; echo ===; done'
    out = stack.exec(service, "sh", "-c", probe).stdout
    return [status_fields(block) for block in out.split("===") if "Uid:" in block]


@pytest.mark.parametrize("service", SERVICES)
def test_every_process_is_non_root_without_capabilities_under_seccomp(
    e2e_stack: E2EStack, service: str
) -> None:
    """Every process: uid 10001, CapEff/CapPrm 0, NoNewPrivs 1, seccomp filter mode (2)."""
    processes = every_process_status(e2e_stack, service)
    assert len(processes) >= 2, processes  # the init and the service at least
    for fields in processes:
        who = f"{service} {fields.get('Name')}"
        assert set(fields["Uid"].split()) == {USER}, who
        assert int(fields["CapEff"], 16) == 0, who
        assert int(fields["CapPrm"], 16) == 0, who
        assert fields["NoNewPrivs"] == "1", who
        assert fields["Seccomp"] == "2", who


@pytest.mark.parametrize("service", SERVICES)
def test_root_filesystem_is_read_only(e2e_stack: E2EStack, service: str) -> None:
    """The engine says read-only, and a write to / or /etc fails inside."""
    assert e2e_stack.container(service)["HostConfig"]["ReadonlyRootfs"] is True
    probe = e2e_stack.exec(service, "sh", "-c", "touch /probe || touch /etc/probe")
    assert probe.returncode != 0
    assert "Read-only file system" in probe.stderr


def cgroup_limit(stack: E2EStack, service: str, v1: str, v2: str) -> str:
    """A cgroup limit as the container sees it (cgroup v1 file, else the v2 one)."""
    out = stack.exec(service, "sh", "-c", f"cat {v1} 2>/dev/null || cat {v2}")
    assert out.returncode == 0, f"{service}: neither {v1} nor {v2} readable: {out.stderr}"
    return out.stdout.strip()


@pytest.mark.parametrize("service", SERVICES)
def test_memory_and_pids_limits_are_in_effect_inside(e2e_stack: E2EStack, service: str) -> None:
    """The limits Compose asked for are the ones the kernel enforces in the container.

    Podman drops a limit silently where the cgroup controller is missing; then the file
    inside says `max` (or a page-rounded huge number) and this test names the drop.
    """
    host = e2e_stack.container(service)["HostConfig"]
    memory = cgroup_limit(
        e2e_stack,
        service,
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory.max",
    )
    pids = cgroup_limit(
        e2e_stack, service, "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"
    )
    asked_memory, asked_pids = host["Memory"], host["PidsLimit"]
    print(f"\n{service}: memory {asked_memory} -> {memory} inside; pids {asked_pids} -> {pids}")
    assert asked_memory > 0, f"{service}: no memory limit asked for"
    assert asked_pids > 0, f"{service}: no pids limit asked for"
    assert memory == str(asked_memory), (
        f"{service}: Podman dropped the memory limit (asked {asked_memory}, inside {memory})"
    )
    assert pids == str(asked_pids), (
        f"{service}: Podman dropped the pids limit (asked {asked_pids}, inside {pids})"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_no_engine_socket_is_mounted_or_reachable(e2e_stack: E2EStack, service: str) -> None:
    """No mount is an engine socket, and none sits at the usual paths inside."""
    for mount in e2e_stack.container(service)["Mounts"]:
        for end in (mount.get("Source", ""), mount.get("Destination", "")):
            assert not end.endswith(ENGINE_SOCKETS), f"{service} mounts {end}"
    paths = "/run/podman/podman.sock /var/run/docker.sock /run/docker.sock /var/run/podman.sock"
    probe = e2e_stack.exec(service, "sh", "-c", f"for p in {paths}; do test -e $p && echo $p; done")
    assert probe.stdout.strip() == "", f"{service}: {probe.stdout}"


@pytest.mark.parametrize("service", SERVICES)
def test_no_host_namespace_is_shared(e2e_stack: E2EStack, service: str) -> None:
    """Not host network/pid/ipc by configuration, and the namespaces differ from the host's."""
    host_config = e2e_stack.container(service)["HostConfig"]
    for key in ("NetworkMode", "PidMode", "IpcMode"):
        assert host_config.get(key) != "host", f"{service}: {key} is host"
    # One link per call: the images' busybox readlink takes a single file.
    links = "; ".join(f"readlink /proc/1/ns/{ns}" for ns in ("net", "pid", "ipc"))
    inside = e2e_stack.exec(service, "sh", "-c", links)
    ours = [os.readlink(f"/proc/self/ns/{ns}") for ns in ("net", "pid", "ipc")]
    theirs = inside.stdout.split()
    assert len(theirs) == 3, inside.stderr
    assert all(a != b for a, b in zip(ours, theirs, strict=True)), (ours, theirs)


def test_model_port_is_unpublished_by_default_and_loopback_only_when_asked(
    e2e_stack: E2EStack,
) -> None:
    """No container publishes a port; with compose.publish.yaml, only 127.0.0.1 binds."""
    for name, info in e2e_stack.containers().items():
        bindings = (info["NetworkSettings"].get("Ports") or {}).values()
        assert all(not b for b in bindings), name
    compose = ROOT / ".venv/lib/python3.11/site-packages/compose/docker-compose"
    if not compose.exists():
        pytest.skip(f"the Compose v2 binary is not at {compose}")
    config = subprocess.run(
        [str(compose), "config", "--format", "json"],
        cwd=e2e_stack.path,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COMPOSE_FILE": "compose.yaml:compose.publish.yaml"},
    )
    services = json.loads(config.stdout)["services"]
    ports = services["model-server"]["ports"]
    assert [p.get("host_ip") for p in ports] == ["127.0.0.1"]
    assert not services["supervisor"].get("ports")
    assert not services["tools"].get("ports")


def test_secrets_are_not_visible_in_inspect_output(e2e_stack: E2EStack) -> None:
    """Neither the model API key nor the tools token appears in any container's inspect
    output (environment, labels, command): they are files, mounted only where needed."""
    secrets = {p.name: p.read_text().strip() for p in (e2e_stack.path / "secrets").iterdir()}
    assert set(secrets) == {"model_api_key", "tools_token"}
    dumped = json.dumps(e2e_stack.containers())
    for name, value in secrets.items():
        assert len(value) >= 16, name
        assert value not in dumped, name
    mounted = {
        service: sorted(
            m["Destination"].rsplit("/", 1)[-1]
            for m in info["Mounts"]
            if m["Destination"].startswith("/run/secrets/")
        )
        for service, info in e2e_stack.containers().items()
    }
    assert mounted == {
        "model-server": ["model_api_key"],
        "supervisor": ["model_api_key", "tools_token"],
        "tools": ["tools_token"],
    }


def test_workspace_is_mounted_in_tools_only_and_logs_in_supervisor_only(
    e2e_stack: E2EStack,
) -> None:
    """tools mounts the workspace and nothing else of the stack's state."""
    volumes = {
        service: sorted(m["Name"] for m in info["Mounts"] if m["Type"] == "volume")
        for service, info in e2e_stack.containers().items()
    }
    assert volumes == {
        "model-server": [f"{PROJECT}_model-data"],
        "supervisor": [f"{PROJECT}_logs"],
        "tools": [f"{PROJECT}_workspace"],
    }


def test_a_file_the_agent_writes_is_owned_by_the_service_user(e2e_stack: E2EStack) -> None:
    """A run's write_file lands in the workspace volume (through tools) as 10001:10001."""
    steps = [
        {"action": {"tool": "write_file", "args": {"path": "owned.txt", "content": "x\n"}}},
        {"action": {"tool": "finish", "args": {"answer": "done"}}},
    ]
    result, _records = e2e_stack.scripted_run("hardening-owner", steps)
    assert result.returncode == 0, result.stderr[-2000:]
    inside = e2e_stack.exec("tools", "stat", "-c", "%u:%g %a", "/workspace/owned.txt")
    assert inside.stdout.split() == [f"{USER}:{USER}", "644"]
    on_host = (e2e_stack.volume_path("workspace") / "owned.txt").stat()
    assert (on_host.st_uid, on_host.st_gid) == (int(USER), int(USER))


def test_tools_holds_no_logs_no_model_key_and_sees_no_other_process(e2e_stack: E2EStack) -> None:
    """From inside tools: /logs is the image's empty read-only folder, /run/secrets holds
    only the tools token, the model key's value is in no file it can read, and its process
    list is its own (the supervisor's processes are invisible)."""
    key = (e2e_stack.path / "secrets" / "model_api_key").read_text().strip()
    assert e2e_stack.exec("tools", "ls", "-A", "/logs").stdout.strip() == ""
    assert e2e_stack.exec("tools", "ls", "-A", "/run/secrets").stdout.split() == ["tools_token"]
    search = 'grep -rlsF -- "$KEY" /workspace /tmp /run /etc /opt; true'
    grep = e2e_stack.exec("tools", "env", f"KEY={key}", "sh", "-c", search)
    assert grep.stdout.strip() == "", f"the model key is readable in tools: {grep.stdout}"
    processes = e2e_stack.exec("tools", "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert "serve" in processes.stdout
    assert "sleep infinity" not in processes.stdout
    assert "llama" not in processes.stdout


def test_tools_network_is_internal_with_no_default_route(e2e_stack: E2EStack) -> None:
    """tools-net is internal and the routing table in tools has no default route."""
    for network in ("tools-net", "ai-net"):
        info = json.loads(e2e_stack.podman("network", "inspect", f"{PROJECT}_{network}"))[0]
        assert info["internal"] is True, network
    routes = e2e_stack.exec("tools", "cat", "/proc/net/route").stdout.splitlines()[1:]
    assert routes, "no routing table"
    destinations = [line.split()[1] for line in routes if line.strip()]
    assert "00000000" not in destinations, routes


def connect_from_tools(stack: E2EStack, targets: list[tuple[str, int]]) -> dict[str, str]:
    """Try a TCP connection from inside tools to each (host, port); return what happened."""
    probe = (
        "import json, socket, sys\n"
        "out = {}\n"
        "for host, port in json.loads(sys.argv[1]):\n"
        "    s = socket.socket(); s.settimeout(3)\n"
        "    try:\n"
        "        s.connect((host, port)); out[f'{host}:{port}'] = 'connected'\n"
        "    except OSError as exc:\n"
        "        out[f'{host}:{port}'] = type(exc).__name__\n"
        "    finally:\n"
        "        s.close()\n"
        "print(json.dumps(out))\n"
    )
    result = stack.exec("tools", "python3", "-c", probe, json.dumps(targets))
    assert result.returncode == 0, result.stderr
    outcome: dict[str, str] = json.loads(result.stdout)
    return outcome


def test_tools_cannot_reach_the_model_server(e2e_stack: E2EStack) -> None:
    """The model server's name does not resolve in tools, and its address is unroutable."""
    resolve = e2e_stack.exec("tools", "getent", "hosts", "model-server")
    assert resolve.returncode != 0, resolve.stdout
    networks = e2e_stack.container("model-server")["NetworkSettings"]["Networks"]
    address = next(n["IPAddress"] for name, n in networks.items() if name.endswith("ai-net"))
    outcome = connect_from_tools(e2e_stack, [(address, 8080)])
    assert outcome[f"{address}:8080"] != "connected", outcome


@contextmanager
def listening(address: str) -> Iterator[int]:
    """A TCP listener on this host at ``address`` (an ephemeral port); yields the port."""
    server = socket.socket()
    server.bind((address, 0))
    server.listen()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_tools_cannot_reach_ports_bound_to_the_hosts_loopback(e2e_stack: E2EStack) -> None:
    """A service on the host's 127.0.0.1 is out of reach from tools (neither through the
    network's gateway nor through the container's own loopback).

    Measured alongside, and printed: a host service bound to every interface (0.0.0.0)
    *is* reachable through the internal network's gateway; docs/SECURITY.md says so."""
    networks = e2e_stack.container("tools")["NetworkSettings"]["Networks"]
    gateway = next(n["Gateway"] for name, n in networks.items() if name.endswith("tools-net"))
    with listening("127.0.0.1") as loopback_port, listening("0.0.0.0") as wildcard_port:
        outcome = connect_from_tools(
            e2e_stack,
            [(gateway, loopback_port), ("127.0.0.1", loopback_port), (gateway, wildcard_port)],
        )
    assert outcome[f"{gateway}:{loopback_port}"] != "connected", outcome
    assert outcome[f"127.0.0.1:{loopback_port}"] != "connected", outcome
    wildcard = outcome[f"{gateway}:{wildcard_port}"]
    print(f"\nhost port bound to 0.0.0.0, from tools via gateway {gateway}: {wildcard}")


def test_a_fork_bomb_is_contained_and_the_supervisor_records_it(e2e_stack: E2EStack) -> None:
    """A bounded fork bomb (sleeps spawned until fork fails, at most 4x the pids limit,
    20 s timeout) stops at the tools container's pids limit; the call comes back as a
    tool error, the next call works, and the supervisor goes on running."""
    limit = int(
        cgroup_limit(e2e_stack, "tools", "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max")
    )
    bomb = (
        f"n=0; while [ $n -lt {4 * limit} ]; do sleep 30 & n=$((n+1)); done; echo NOT-CONTAINED $n"
    )
    steps: list[dict[str, Any]] = [
        {"action": {"tool": "run_command", "args": {"command": bomb, "timeout_s": 20}}},
        {"action": {"tool": "run_command", "args": {"command": "echo alive"}}},
        {"action": {"tool": "finish", "args": {"answer": "done"}}},
    ]
    result, records = e2e_stack.scripted_run("hardening-forkbomb", steps)
    assert result.returncode == 0, result.stderr[-2000:]
    bombed, after = [r for r in records if r["type"] == "tool_result"]
    print(
        f"\nfork bomb: {bombed['status']} exit={bombed['exit_code']} "
        f"{bombed['duration_s']} s: {bombed['output'][:120]!r}"
    )
    assert bombed["status"] in ("failed", "timeout")
    assert "NOT-CONTAINED" not in bombed["output"]
    assert "fork" in bombed["output"].lower()
    assert bombed["details"]["killed_leftovers"] is True
    assert (after["status"], after["output"].strip()) == ("ok", "alive")
    assert e2e_stack.container("supervisor")["State"]["Running"] is True
    assert e2e_stack.container("tools")["State"]["Running"] is True
    left = cgroup_limit(
        e2e_stack, "tools", "/sys/fs/cgroup/pids/pids.current", "/sys/fs/cgroup/pids.current"
    )
    assert int(left) < 20, f"{left} processes left in tools after the bomb"


def test_hardening_figures(e2e_stack: E2EStack) -> None:
    """Print what the engine applies per service (for the report); secrets/ stays 0700."""
    for service in SERVICES:
        info = e2e_stack.container(service)
        host = info["HostConfig"]
        networks = sorted(info["NetworkSettings"]["Networks"])
        print(
            f"\n{service}: user {info['Config']['User']}, memory {host['Memory'] // 2**20} MiB, "
            f"pids {host['PidsLimit']}, read-only {host['ReadonlyRootfs']}, networks {networks}"
        )
    assert (e2e_stack.path / "secrets").stat().st_mode & 0o777 == 0o700


SIZE_BUDGETS = {"model-server": 60_000_000, "supervisor": 120_000_000, "tools": 120_000_000}
"""Each running service's image at most this many bytes (issue 18): the model server's
runtime holds llama-server, its libraries and busybox; supervisor and tools share one
Python image. No Debian system (apt, dpkg, perl) in either."""


@pytest.mark.parametrize("service", SERVICES)
def test_images_fit_their_size_budget_and_hold_no_package_manager(
    e2e_stack: E2EStack, service: str
) -> None:
    """The image the service runs is within its budget, and has no apt, dpkg or bash."""
    image = e2e_stack.container(service)["Image"]
    size = int(e2e_stack.podman("image", "inspect", "--format", "{{.Size}}", image))
    print(f"\n{service}: {size / 1e6:.1f} MB")
    assert size <= SIZE_BUDGETS[service], f"{service}: {size / 1e6:.1f} MB"
    probe = e2e_stack.exec(
        service,
        "sh",
        "-c",
        "for p in /usr/bin/apt-get /usr/bin/dpkg /bin/bash; do test -e $p && echo $p; done; true",
    )
    assert probe.stdout.strip() == "", f"{service}: {probe.stdout}"
