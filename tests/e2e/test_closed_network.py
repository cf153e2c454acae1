"""Closed by default, proved against an outside world of our own (issue 24).

The tests stand up their own "outside" on this host's loopback (never an external or a
private-range address of another machine): a UDP server that logs every datagram (where a
DNS query would land) and a TCP server that logs every connection (where an HTTP(S)
request would land). From each container of the running stack they then try every way
out an unprivileged process has (its resolver, a name the host itself resolves, UDP and
TCP to the canaries through every address the container could use: its own loopback and
the gateway of each of its networks) and assert that the canaries heard nothing.

The probes that send packets run this test's Python inside each container's network
namespace (``nsenter --net`` from the host): the same interfaces, addresses and routes as
the container's own processes, and no tool needed in the image (the model server's has
only busybox). Name lookups run inside the container where it has ``getent``, and as a
query to each server its ``resolv.conf`` lists otherwise.

The stack's networks carry no resolver and, being internal, no gateway: `invoke up`
creates them itself without the engine's DNS (before that, aardvark-dns 1.4 answered a
query written by hand on each network's gateway and forwarded outside names, DEV-0008,
and a host service bound to every interface answered on that gateway, DEV-0004). So each
container is also tried with a raw DNS query and a connection to a listener on every
interface of this host, through every address of this host and every gateway it has.

Also here: no process of a finished run remains in the tools container.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_sandbox import E2EStack

SERVICES = ("model-server", "supervisor", "tools")
"""The stack's services: none has a resolver (the supervisor finds the others in
/etc/hosts)."""
HOST_RESOLVED = "deb.debian.org"
"""A name this host resolves (its Debian mirror): the proof that a container did not."""


@dataclass
class Canary:
    """A UDP and a TCP server on 127.0.0.1 that log whatever reaches them."""

    udp: socket.socket
    tcp: socket.socket
    heard: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def udp_port(self) -> int:
        return int(self.udp.getsockname()[1])

    @property
    def tcp_port(self) -> int:
        return int(self.tcp.getsockname()[1])

    def serve(self) -> None:
        """Log each datagram and each connection until stopped."""
        self.udp.settimeout(0.05)
        self.tcp.settimeout(0.05)
        while not self.stop.is_set():
            try:
                data, peer = self.udp.recvfrom(4096)
                self.heard.append(f"udp from {peer}: {data[:40]!r}")
            except OSError:
                pass
            try:
                conn, peer = self.tcp.accept()
                self.heard.append(f"tcp from {peer}")
                conn.close()
            except OSError:
                pass


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    """Our own outside: the canary servers on this host's loopback, for the module."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    found = Canary(udp, tcp)
    worker = threading.Thread(target=found.serve, daemon=True)
    worker.start()
    try:
        yield found
    finally:
        found.stop.set()
        worker.join(5)
        udp.close()
        tcp.close()


def gateways(stack: E2EStack, service: str) -> list[str]:
    """The gateway address of each network the service's container is on (Podman says
    ``<nil>`` for a network with none)."""
    networks: dict[str, Any] = stack.container(service)["NetworkSettings"]["Networks"]
    found = {n.get("Gateway") or "" for n in networks.values()}
    return sorted(found - {"", "<nil>"})


_WAYS_OUT = (
    "import json, socket, sys\n"
    "udp_port, tcp_port = int(sys.argv[1]), int(sys.argv[2])\n"
    "out = {}\n"
    "for ip in sys.argv[3:]:\n"
    "    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "    try:\n"
    "        u.sendto(b'canary', (ip, udp_port)); out[f'udp {ip}'] = 'sent'\n"
    "    except OSError as exc:\n"
    "        out[f'udp {ip}'] = type(exc).__name__\n"
    "    t = socket.socket(); t.settimeout(3)\n"
    "    try:\n"
    "        t.connect((ip, tcp_port)); out[f'tcp {ip}'] = 'connected'\n"
    "    except OSError as exc:\n"
    "        out[f'tcp {ip}'] = type(exc).__name__\n"
    "    u.close(); t.close()\n"
    "print(json.dumps(out))\n"
)
_QUERY = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n"
    "try:\n"
    "    s.connect((sys.argv[1], 53)); s.send(bytes.fromhex(sys.argv[2]))\n"
    "    reply = s.recv(4096); print(int.from_bytes(reply[6:8], 'big'))\n"
    "except OSError:\n"
    "    print(0)\n"
)
"""One DNS query, from a connected socket as a resolver sends it: an answer from the
server is read, a port where nothing listens refuses at once (ICMP), and silence waits
3 s."""


def in_netns(stack: E2EStack, service: str, code: str, *args: str) -> str:
    """Run Python ``code`` in the service container's network namespace; its stdout."""
    pid = str(stack.container(service)["State"]["Pid"])
    result = subprocess.run(
        ["nsenter", "--target", pid, "--net", sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def probe_ways_out(stack: E2EStack, service: str, canary: Canary) -> dict[str, str]:
    """From ``service``'s network: a datagram and a TCP connection to the canaries through
    its loopback and each gateway; returns what each attempt did."""
    targets = ["127.0.0.1", *gateways(stack, service)]
    ports = (str(canary.udp_port), str(canary.tcp_port))
    found: dict[str, str] = json.loads(in_netns(stack, service, _WAYS_OUT, *ports, *targets))
    return found


def answers_from(stack: E2EStack, service: str, server: str, name: str) -> int:
    """How many answers ``server`` (port 53) gives ``service``'s network for ``name``."""
    return int(in_netns(stack, service, _QUERY, server, _dns_query(name).hex()).strip() or 0)


def resolv_conf_servers(stack: E2EStack, service: str) -> list[str]:
    """The nameservers of the container's own resolv.conf (read through /proc/PID/root)."""
    pid = stack.container(service)["State"]["Pid"]
    text = Path(f"/proc/{pid}/root/etc/resolv.conf").read_text()
    return [ln.split()[1] for ln in text.splitlines() if ln.startswith("nameserver")]


@pytest.fixture(scope="module")
def host_resolves() -> str:
    """The name the containers must not resolve, once this host has resolved it (without
    that, a failed lookup inside would prove nothing)."""
    try:
        socket.getaddrinfo(HOST_RESOLVED, 443)
    except OSError as exc:
        pytest.fail(f"this host cannot resolve {HOST_RESOLVED} ({exc}): the test proves nothing")
    return HOST_RESOLVED


def test_the_raw_query_is_answered_by_this_hosts_own_resolver(host_resolves: str) -> None:
    """The control for the queries below: sent from this host to its own resolvers, the
    same query gets an answer, so their silence inside the containers means something."""
    servers = [
        line.split()[1]
        for line in Path("/etc/resolv.conf").read_text().splitlines()
        if line.startswith("nameserver")
    ]
    query = _dns_query(host_resolves).hex()
    answered = {
        server: subprocess.run(
            [sys.executable, "-c", _QUERY, server, query], capture_output=True, text=True
        ).stdout.strip()
        for server in servers
    }
    assert any(int(count or 0) > 0 for count in answered.values()), answered


@pytest.mark.parametrize("service", SERVICES)
def test_no_outside_name_resolves_in_any_container(
    e2e_stack: E2EStack, service: str, host_resolves: str
) -> None:
    """resolv.conf names only the container's own (empty) loopback, which answers no
    query for a name the host resolves; where the image has ``getent`` (tools, the
    supervisor), the libc lookup inside fails too."""
    servers = resolv_conf_servers(e2e_stack, service)
    answered = {ip: answers_from(e2e_stack, service, ip, host_resolves) for ip in servers}
    assert not any(answered.values()), f"{host_resolves} answered in {service}: {answered}"
    assert servers == ["127.0.0.1"], servers
    if service != "model-server":
        lookup = e2e_stack.exec(service, "getent", "ahosts", host_resolves)
        assert lookup.returncode == 2, f"{host_resolves} in {service}: {lookup.stdout}"


def test_the_supervisor_still_resolves_the_stack_s_own_names(e2e_stack: E2EStack) -> None:
    """The one container that calls others by name still finds them (in /etc/hosts, at
    their fixed addresses)."""
    for name in ("tools", "model-server"):
        lookup = e2e_stack.exec("supervisor", "getent", "hosts", name)
        assert lookup.returncode == 0, f"{name} does not resolve in the supervisor"


@pytest.mark.parametrize("service", SERVICES)
def test_nothing_reaches_our_outside_servers_from_any_container(
    e2e_stack: E2EStack, service: str, canary: Canary
) -> None:
    """UDP and TCP to the canaries, through the container's loopback and every gateway it
    has: no connection is made and the canaries' logs stay empty."""
    before = len(canary.heard)
    outcome = probe_ways_out(e2e_stack, service, canary)
    assert outcome, "the probe printed nothing"
    assert not [k for k, v in outcome.items() if v == "connected"], outcome
    assert canary.heard[before:] == [], canary.heard[before:]


def _dns_query(name: str) -> bytes:
    """A minimal DNS query (A record, recursion desired) for ``name``."""
    header = random.randrange(1 << 16).to_bytes(2, "big") + bytes.fromhex("01000001000000000000")
    labels = b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.split("."))
    return header + labels + b"\x00\x00\x01\x00\x01"


def stack_networks(stack: E2EStack) -> dict[str, dict[str, Any]]:
    """``podman network inspect`` of every network the stack's containers are on."""
    names = sorted(
        {n for c in stack.containers().values() for n in c["NetworkSettings"]["Networks"]}
    )
    inspected = json.loads(stack.podman("network", "inspect", *names))
    return {n["name"]: n for n in inspected}


def test_the_stack_s_networks_have_no_resolver_and_no_gateway(e2e_stack: E2EStack) -> None:
    """Every network of the stack: no engine DNS (nothing to forward a query), internal
    and so no gateway (no address of the host on it)."""
    networks = stack_networks(e2e_stack)
    assert networks
    for name, network in networks.items():
        assert network["dns_enabled"] is False, name
        assert network["internal"] is True, name
        assert not [s for s in network.get("subnets") or [] if s.get("gateway")], network
    for service in SERVICES:
        assert gateways(e2e_stack, service) == [], service


def host_addresses() -> list[str]:
    """Every IPv4 address of this host's interfaces but loopback (its bridges included)."""
    result = subprocess.run(
        ["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=30, check=True
    )
    found = [
        info["local"]
        for link in json.loads(result.stdout)
        for info in link.get("addr_info", [])
        if not info["local"].startswith("127.")
    ]
    assert found, "this host has no address but loopback: the probe proves nothing"
    return sorted(set(found))


def reachable_candidates(stack: E2EStack, service: str) -> list[str]:
    """Where a way out could be, seen from ``service``: its resolvers, its gateways, and
    every address of this host."""
    servers = resolv_conf_servers(stack, service)
    return sorted({*servers, *gateways(stack, service), *host_addresses()})


@pytest.mark.parametrize("service", SERVICES)
def test_a_query_sent_by_hand_gets_no_answer_anywhere_a_container_can_send_it(
    e2e_stack: E2EStack, service: str, host_resolves: str
) -> None:
    """A raw UDP query for a name the host resolves, from the container's network to its
    resolvers, its gateways and every address of this host (where aardvark-dns or a host
    resolver could listen): no answer."""
    answered = {
        ip: answers_from(e2e_stack, service, ip, host_resolves)
        for ip in reachable_candidates(e2e_stack, service)
    }
    print(f"\nraw queries for {host_resolves} from {service}: {answered}")
    assert not any(answered.values()), answered


@pytest.mark.parametrize("service", SERVICES)
def test_a_host_service_on_every_interface_is_out_of_reach(
    e2e_stack: E2EStack, service: str
) -> None:
    """A UDP and a TCP listener on 0.0.0.0 of this host, tried from the container's network
    through every address of this host and every gateway: no connection, no datagram."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 0))
    udp.settimeout(0.5)
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    try:
        ports = (str(udp.getsockname()[1]), str(server.getsockname()[1]))
        targets = reachable_candidates(e2e_stack, service)
        outcome = json.loads(in_netns(e2e_stack, service, _WAYS_OUT, *ports, *targets))
        try:
            heard = [repr(udp.recvfrom(4096))]
        except OSError:
            heard = []
    finally:
        server.close()
        udp.close()
    print(f"\nfrom {service} to this host's listeners: {outcome}")
    assert not [k for k, v in outcome.items() if v == "connected"], outcome
    assert heard == [], heard


_OTHER_PROTOCOLS = (
    "import json, socket, sys\n"
    "kinds = {\n"
    "    'icmp echo (raw)':\n"
    "        (socket.SOCK_RAW, socket.IPPROTO_ICMP, b'\\x08\\0\\xf7\\xff\\0\\0\\0\\0'),\n"
    "    'udplite': (socket.SOCK_DGRAM, getattr(socket, 'IPPROTO_UDPLITE', 136), b'canary'),\n"
    "    'sctp': (socket.SOCK_STREAM, getattr(socket, 'IPPROTO_SCTP', 132), None),\n"
    "}\n"
    "out = {}\n"
    "for ip in sys.argv[1:]:\n"
    "    for name, (kind, proto, data) in kinds.items():\n"
    "        try:\n"
    "            s = socket.socket(socket.AF_INET, kind, proto); s.settimeout(3)\n"
    "        except OSError as exc:\n"
    "            out[f'{name} {ip}'] = 'no socket: ' + type(exc).__name__; continue\n"
    "        try:\n"
    "            if data is None:\n"
    "                s.connect((ip, 9)); out[f'{name} {ip}'] = 'connected'\n"
    "            else:\n"
    "                s.sendto(data, (ip, 9)); out[f'{name} {ip}'] = 'sent'\n"
    "        except OSError as exc:\n"
    "            out[f'{name} {ip}'] = type(exc).__name__\n"
    "        s.close()\n"
    "print(json.dumps(out))\n"
)


@pytest.mark.parametrize("service", SERVICES)
def test_no_other_ip_protocol_has_a_route_to_the_host(e2e_stack: E2EStack, service: str) -> None:
    """Beyond UDP and TCP: ICMP (a raw socket), UDP-Lite and SCTP from the container's
    network to every address of this host and every gateway. The probe runs with root's
    capabilities in that network namespace (more than the container's, which has none), so
    what stops it is the routing: no packet of any protocol leaves for the host."""
    targets = sorted(set(reachable_candidates(e2e_stack, service)) - {"127.0.0.1"})
    outcome = json.loads(in_netns(e2e_stack, service, _OTHER_PROTOCOLS, *targets))
    print(f"\nother protocols from {service}: {outcome}")
    assert outcome, "the probe tried nothing"
    assert not [k for k, v in outcome.items() if v in ("sent", "connected")], outcome


# A daemon's detach, as fast as Python does it: fork, setsid, fork, output closed.
_DETACH = (
    "python3 -c 'import os, time\n"
    "if os.fork(): os._exit(0)\n"
    "os.setsid()\n"
    "if os.fork(): os._exit(0)\n"
    "for fd in (0, 1, 2): os.close(fd)\n"
    "time.sleep({m})\n'"
)
_PROCESSES = (
    "import json, os\n"
    "out = {}\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        out[pid] = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
    "    except OSError:\n"
    "        pass\n"
    "out.pop(str(os.getpid()), None)\n"
    "print(json.dumps(out))\n"
)


def tools_processes(stack: E2EStack) -> dict[str, str]:
    """PID -> command line of every process in tools, but the probe's own."""
    result = stack.exec("tools", "python3", "-c", _PROCESSES)
    assert result.returncode == 0, result.stderr
    found: dict[str, str] = json.loads(result.stdout)
    return found


def test_no_process_of_a_finished_run_remains_in_tools(e2e_stack: E2EStack) -> None:
    """A scripted run whose commands detach in each way we know (a double fork with
    setsid and output closed, twenty times over; setsid and nohup in the background): once
    the run is over, tools holds exactly the processes it held before."""
    marker = f"2404.{random.randrange(10**9)}"
    commands = [
        *[_DETACH.format(m=marker)] * 20,
        f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & echo detached",
        f"nohup sleep {marker} >/dev/null 2>&1 & echo nohup",
    ]
    steps: list[dict[str, Any]] = [
        *[{"action": {"tool": "run_command", "args": {"command": c}}} for c in commands],
        {"action": {"tool": "finish", "args": {"answer": "done"}}},
    ]
    before = tools_processes(e2e_stack)
    result, records = e2e_stack.scripted_run("closed-detach", steps)
    assert result.returncode == 0, result.stderr[-2000:]
    calls = [r for r in records if r["type"] == "tool_result"]
    assert len(calls) == len(commands), [c.get("status") for c in calls]
    after = tools_processes(e2e_stack)
    left = {pid: line for pid, line in after.items() if pid not in before}
    assert left == {}, f"processes of a finished run remain in tools: {left}"
    assert not [line for line in after.values() if marker in line]
