"""Behaviour of the fake host tools in ``bin/`` (podman, docker, apt-get, dpkg-query, sudo,
debootstrap).

Each fake appends ``{"tool": NAME, "argv": [...]}`` as one JSON line to ``$FAKE_LOG`` and
answers like the real tool from a JSON state file ``$FAKE_STATE`` that it also updates
(``podman machine init`` creates a machine there, ``apt-get install`` marks packages
installed, ...), so a test can drive a whole lifecycle and then read what was called.

A test run starts these fakes over a thousand times, so each one starts lean: the scripts run
``python3 -S`` (no site-packages to scan, they use only the standard library) and the
modules only one fake needs (``tarfile``) are imported where it is used.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

HYBRID_ERROR = (
    "Error: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all "
    "controllers from cgroupv2"
)
ULIMIT_ERROR = "Error: OCI runtime error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted"
ROOTLESS_OVERLAY_ERROR = (
    'Error: rootfs-overlay: creating overlay failed "/" from native overlay: mount '
    "overlay:/tmp/podman-run-1000/containers/overlay-containers/0b83/rootfs/merge, flags: "
    "0x4, data: lowerdir=/,upperdir=...,workdir=...,userxattr: invalid argument"
)
"""What rootless Podman answers when the host's ``/`` is a probe's overlay root (measured)."""


def _state_path() -> Path:
    return Path(os.environ["FAKE_STATE"])


def load() -> dict[str, Any]:
    path = _state_path()
    return json.loads(path.read_text()) if path.exists() else {}


def save(state: dict[str, Any]) -> None:
    _state_path().write_text(json.dumps(state, indent=2))


def record(tool: str, argv: list[str]) -> None:
    with open(os.environ["FAKE_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": tool, "argv": argv}) + "\n")


def fail(message: str, code: int) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(code)


# --- podman --------------------------------------------------------------------------------


def _option(args: list[str], name: str, default: str | None = None) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def _dropin_settings(state: dict[str, Any]) -> str:
    path = state.get("dropin")
    return Path(path).read_text() if path and Path(path).exists() else ""


def podman_machine(state: dict[str, Any], args: list[str]) -> None:
    action, rest = args[0], args[1:]
    machines: dict[str, Any] = state.setdefault("machines", {})
    name = rest[-1] if rest and not rest[-1].startswith("-") else "podman-machine-default"
    if action == "ssh" and rest:
        name = rest[0]
    if action == "inspect":
        if name not in machines:
            fail(f"Error: {name}: VM does not exist", 125)
        print(json.dumps([machines[name]], indent=2))
        return
    if action == "init":
        if state.get("machine_init_error"):
            fail(state["machine_init_error"], 125)
        if name in machines:
            fail(f"Error: {name}: VM already exists", 125)
        machines[name] = {
            "Name": name,
            "State": "stopped",
            "Rootful": "--rootful" in rest,
            "Image": _option(rest, "--image-path") or _option(rest, "--image") or "",
            "Resources": {
                "CPUs": int(_option(rest, "--cpus", "1") or 1),
                "Memory": int(_option(rest, "--memory", "2048") or 2048),
                "DiskSize": int(_option(rest, "--disk-size", "100") or 100),
            },
            "ConnectionInfo": {
                "PodmanSocket": {"Path": f"/run/user/1000/podman/{name}-api.sock"},
                "PodmanPipe": {"Path": f"\\\\.\\pipe\\{name}"},
            },
        }
        save(state)
        print(f"Machine init complete\nTo start your machine run:\n\n\tpodman machine start {name}")
        return
    if name not in machines:
        fail(f"Error: {name}: VM does not exist", 125)
    if action == "start":
        machines[name]["State"] = "running"
        print(f'Machine "{name}" started successfully')
    elif action == "stop":
        machines[name]["State"] = "stopped"
        print(f'Machine "{name}" stopped successfully')
    elif action == "rm":
        del machines[name]
    elif action == "ssh":
        print(f"ssh into {name}: {' '.join(rest[1:])}")
    save(state)


INIT_ERROR = (
    "Error: container create: container-init binary not found on the host: "
    "stat /usr/libexec/podman/catatonit: no such file or directory"
)


def network_backend(state: dict[str, Any]) -> str:
    """The backend the fake engine uses: the drop-in's choice, else the state's (netavark)."""
    if 'network_backend = "netavark"' in _dropin_settings(state):
        return "netavark"
    return str(state.get("network_backend", "netavark"))


def podman_run(state: dict[str, Any], args: list[str]) -> None:
    dropin = _dropin_settings(state)
    if "--init" in args and "catatonit" not in state.get("installed", ["catatonit"]):
        fail(INIT_ERROR, 127)
    if state.get("rootless") and "/:O" in args:
        fail(ROOTLESS_OVERLAY_ERROR, 126)
    quirks = state.get("quirks", [])
    if "hybrid" in quirks and "--runtime=runc" not in args and 'runtime = "runc"' not in dropin:
        fail(HYBRID_ERROR, 126)
    if (
        "ulimits" in quirks
        and not any(a.startswith("--ulimit") for a in args)
        and ("default_ulimits" not in dropin)
    ):
        fail(ULIMIT_ERROR, 126)
    if "-d" in args:
        print("f00dfeed" * 8)
    elif "getent" in args:
        name = args[-1]
        if state.get("dns_broken") or network_backend(state) == "cni":
            sys.exit(2)
        print(f"10.89.0.2       {name}.dns.podman {name}")


def podman_import(state: dict[str, Any], args: list[str]) -> None:
    import io
    import tarfile

    tag = args[-1]
    data = sys.stdin.buffer.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        members = sorted(member.name for member in archive.getmembers())
    state.setdefault("imported", {})[tag] = members
    state.setdefault("images", []).append(tag)
    state["import_args"] = args
    save(state)
    print("sha256:" + "ab" * 32)


def podman(args: list[str]) -> None:
    state = load()
    if not args:
        fail("Error: missing command", 125)
    command, rest = args[0], args[1:]
    if command == "version":
        print(state.get("podman_version", "4.3.1"))
    elif command == "machine":
        podman_machine(state, rest)
    elif command == "image" and rest[:1] == ["exists"]:
        sys.exit(0 if rest[1] in state.get("images", []) else 1)
    elif command == "image" and rest[:1] == ["inspect"]:
        if ".Labels" in (_option(rest, "--format") or ""):
            if rest[-1] not in state.get("images", []):
                fail(f"Error: {rest[-1]}: image not known", 125)
            print(json.dumps(state.get("labels", {}).get(rest[-1]) or None))
        else:
            print(state.get("image_size", 123_000_000))
    elif command == "run":
        podman_run(state, rest)
    elif command == "import":
        podman_import(state, rest)
    elif command == "info":
        info = json.loads(json.dumps(state.get("info", {})))
        info.setdefault("host", {})["networkBackend"] = network_backend(state)
        print(json.dumps(info))
    elif command == "ps":
        if _option(rest, "--format") == "json":  # the running ones, with their labels
            print(json.dumps(state.get("running", [])))
        else:
            print("\n".join(state.get("containers", [])))
    elif command == "build":
        print("STEP 1/2: FROM localhost/ai-sandbox-base:bookworm")
        code = int(state.get("build_rc", 0))
        if code == 0:
            tag = _option(rest, "-t") or ""
            state.setdefault("images", []).append(tag)
            labels = [rest[i + 1] for i, arg in enumerate(rest[:-1]) if arg == "--label"]
            state.setdefault("labels", {})[tag] = dict(label.split("=", 1) for label in labels)
            save(state)
            print("COMMIT")
        sys.exit(code)
    elif command in {"network", "rm"}:
        return
    else:
        fail(f"fake podman: unsupported command {args}", 125)


# --- the others ----------------------------------------------------------------------------


def docker(args: list[str]) -> None:
    state = load()
    if args[:1] == ["compose"]:
        if not state.get("docker_compose_plugin"):
            fail("docker: 'compose' is not a docker command.", 1)
        if args[1:2] == ["version"]:
            print(f"Docker Compose version v{state.get('compose_version', '2.40.3')}")
        return
    print("Docker version 28.2.2, build e6534b4")


def apt_get(args: list[str]) -> None:
    state = load()
    if state.get("apt_rc"):
        fail("E: Could not get lock /var/lib/dpkg/lock-frontend", int(state["apt_rc"]))
    if "install" in args:
        packages = [a for a in args[args.index("install") + 1 :] if not a.startswith("-")]
        state["installed"] = sorted(set(state.get("installed", [])) | set(packages))
        save(state)


def dpkg_query(args: list[str]) -> None:
    """``dpkg-query -W [-f=FORMAT] PACKAGE...``: a line for each installed package and for
    each one the state knows by another status (``known_statuses``: removed, half
    installed, ...), as the real one lists them; exit 1 if any is unknown."""
    fmt = next((a[len("-f=") :] for a in args if a.startswith("-f=")), "${Package}\t\n")
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    state = load()
    installed = state.get("installed", [])
    known: dict[str, str] = state.get("known_statuses", {})  # known, not installed
    unknown = False
    for package in [a for a in args if not a.startswith("-")]:
        status = "install ok installed" if package in installed else known.get(package)
        if status is not None:
            sys.stdout.write(fmt.replace("${Package}", package).replace("${Status}", status))
        else:
            sys.stderr.write(f"dpkg-query: no packages found matching {package}\n")
            unknown = True
    if unknown:
        sys.exit(1)


def sudo(args: list[str]) -> None:
    while args and args[0].startswith("-"):
        args = args[1:]
    if load().get("sudo_denied"):
        fail("sudo: a password is required", 1)
    os.execvp(args[0], args)


def debootstrap(args: list[str]) -> None:
    state = load()
    if state.get("debootstrap_rc"):
        fail("E: Failed getting release file", int(state["debootstrap_rc"]))
    positional = [a for a in args if not a.startswith("--")]
    target = Path(positional[1])
    files = {
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
        "usr/bin/true": "",
        "var/cache/apt/archives/libc6_2.36_amd64.deb": "deb",
        "var/cache/apt/pkgcache.bin": "bin",
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease": "lists",
        "var/lib/apt/lists/lock": "",
    }
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (target / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    print("I: Base system installed successfully.")


def ip(args: list[str]) -> None:
    """``ip link delete NAME`` removes NAME from the fake ``sys_net`` folder."""
    state = load()
    if args[:2] == ["link", "delete"] and state.get("sys_net"):
        link = Path(state["sys_net"]) / args[2]
        if not link.exists():
            fail(f'Cannot find device "{args[2]}"', 1)
        link.rmdir()
        return
    fail(f"fake ip: unsupported command {args}", 1)


TOOLS = {
    "ip": ip,
    "podman": podman,
    "docker": docker,
    "apt-get": apt_get,
    "dpkg-query": dpkg_query,
    "sudo": sudo,
    "debootstrap": debootstrap,
}


def main(tool: str) -> None:
    args = sys.argv[1:]
    record(tool, args)
    TOOLS[tool](args)
