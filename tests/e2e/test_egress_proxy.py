"""The opt-in egress proxy, proved against servers of our own (issue 24).

A sandbox of its own (Compose project ``e2e-egress``) is brought up with ``EGRESS_ALLOW``
naming one name and port: ``allowed.test`` at the port of an HTTPS server this test runs
on this host's own address (never an external address). ``denied.test`` is the same
server under a name the allowlist does not hold. Both names resolve to this host for the
proxy alone (a test-only Compose file adds them to its /etc/hosts); the tools container
still resolves nothing. A scripted agent run then downloads through the proxy from the
allowed name (it gets the file) and from the denied one (it gets the proxy's 403), clones
a git repository and pip-installs a package from an index under the allowed name, and the
proxy's lines are in the ``egress-log`` volume and in ``invoke runs.show``.
"""

from __future__ import annotations

import http.server
import io
import re
import shlex
import socket
import ssl
import subprocess
import tarfile
import threading
import zipfile
from base64 import urlsafe_b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from e2e_sandbox import ROOT, E2EStack

from sandboxctl import scaffold
from sandboxctl.config import load_settings

PROJECT = "e2e-egress"
SERVED = "hello through the egress proxy\n"
OVERRIDE = "compose.egress-test.yaml"


def this_host_address() -> str:
    """This host's own address on its default route (a UDP ``connect`` sends nothing)."""
    for target in ("198.51.100.1", "192.0.2.1", "10.255.255.254"):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect((target, 9))
            address = str(probe.getsockname()[0])
        except OSError:
            continue
        finally:
            probe.close()
        if not address.startswith("127."):
            return address
    pytest.fail("this host has no address besides loopback: the proxy cannot reach our server")


@dataclass
class TlsServer:
    """An HTTPS server on this host's address serving one file, and its certificate."""

    address: str
    port: int
    ca_pem: str
    requests: list[str]


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """Our own outside: HTTPS on this host's address, a certificate for both test names."""
    folder = tmp_path_factory.mktemp("egress-server")
    (folder / "hello.txt").write_text(SERVED)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
         "-subj", "/CN=allowed.test",
         "-addext", "subjectAltName=DNS:allowed.test,DNS:denied.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    make_repository(folder)
    make_package_index(folder)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            requests.append(format % args)

    address = this_host_address()
    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    try:
        yield TlsServer(
            address, server.server_address[1], (folder / "cert.pem").read_text(), requests
        )
    finally:
        server.shutdown()
        worker.join(5)


def make_repository(folder: Path) -> None:
    """A bare git repository under ``folder/repo.git`` with one commit, ready for git's
    "dumb" HTTP protocol (static files: `git update-server-info`)."""
    work = folder / "work"

    def git(*args: str, cwd: Path = work) -> None:
        subprocess.run(
            ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid", *args],
            cwd=cwd, check=True, capture_output=True,
        )  # fmt: skip

    work.mkdir()
    git("init", "-q", "-b", "main")
    (work / "README").write_text(SERVED)
    git("add", "README")
    git("commit", "-q", "-m", "one commit")
    git("clone", "-q", "--bare", str(work), str(folder / "repo.git"), cwd=folder)
    git("update-server-info", cwd=folder / "repo.git")


def make_package_index(folder: Path) -> None:
    """A package index of one wheel under ``folder/simple`` (PEP 503: static pages), the
    shape of pypi.org's for pip: ``demo-pkg`` 1.0, whose module holds ``GREETING``."""
    files = {
        "demo_pkg/__init__.py": f"GREETING = {SERVED.strip()!r}\n",
        "demo_pkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n",
        "demo_pkg-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [
        f"{name},sha256={urlsafe_b64encode(sha256(body.encode()).digest()).decode().rstrip('=')},"
        f"{len(body.encode())}"
        for name, body in files.items()
    ]
    files["demo_pkg-1.0.dist-info/RECORD"] = "\n".join([*record, "demo_pkg-1.0.dist-info/RECORD,,"])
    wheel = folder / "packages" / "demo_pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    page = folder / "simple" / "demo-pkg" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text(
        f'<a href="../../packages/{wheel.name}#sha256={sha256(wheel.read_bytes()).hexdigest()}">'
        f"{wheel.name}</a>\n"
    )


def set_env(sandbox: Path, **values: str) -> None:
    """Set keys of the sandbox's .env (the answers a user would give Copier)."""
    env = sandbox / ".env"
    lines = [
        line for line in env.read_text().splitlines() if line.split("=", 1)[0].strip() not in values
    ]
    env.write_text("\n".join([*lines, *(f'{k}="{v}"' for k, v in values.items())]) + "\n")


@pytest.fixture(scope="module")
def egress_stack(
    tmp_path_factory: pytest.TempPathFactory, tls_server: TlsServer
) -> Iterator[E2EStack]:
    """A sandbox with the proxy on, allowing only ``allowed.test`` at the server's port;
    brought up with `invoke up` and taken down with its volumes at the end."""
    sandbox = scaffold.fresh_sandbox(ROOT, tmp_path_factory.mktemp("egress") / "sandbox", PROJECT)
    (sandbox / OVERRIDE).write_text(
        "# Test only: the two names resolve to this host, for the proxy alone.\n"
        "services:\n  egress:\n    extra_hosts:\n"
        f'      - "allowed.test={tls_server.address}"\n'
        f'      - "denied.test={tls_server.address}"\n'
    )
    set_env(
        sandbox,
        EGRESS_ALLOW=f"allowed.test:{tls_server.port}",
        COMPOSE_FILE=f"compose.yaml:compose.egress.yaml:{OVERRIDE}",
    )
    stack = E2EStack(sandbox, project=PROJECT)
    stack.invoke("down", "--volumes", "--yes", check=False, timeout=300)
    try:
        stack.invoke("up", "--timeout", "600")
        yield stack
    finally:
        stack.invoke("down", "--volumes", "--yes", check=False, timeout=300)


def fetch_command(name: str, port: int) -> str:
    """A tools command: download /hello.txt from ``name`` over HTTPS, through whatever
    proxy the environment names (as pip and git do), trusting only the test's certificate."""
    code = (
        "import ssl, sys, urllib.request\n"
        "ctx = ssl.create_default_context(cafile='ca.pem')\n"
        "try:\n"
        f"    body = urllib.request.urlopen('https://{name}:{port}/hello.txt', context=ctx,"
        " timeout=20).read()\n"
        "    print('GOT', body.decode().strip())\n"
        "except OSError as exc:\n"
        "    print('FAILED', exc); sys.exit(1)\n"
    )
    return f"python3 -c {shlex.quote(code)}"


@pytest.fixture(scope="module")
def egress_run(
    egress_stack: E2EStack, tls_server: TlsServer
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One scripted run: write the certificate, fetch from the allowed and the denied name;
    returns the two fetches' tool results and every record."""
    steps: list[dict[str, Any]] = [
        {"action": {"tool": "write_file",
                    "args": {"path": "ca.pem", "content": tls_server.ca_pem}}},
        {"action": {"tool": "run_command",
                    "args": {"command": fetch_command("allowed.test", tls_server.port)}}},
        {"action": {"tool": "run_command",
                    "args": {"command": fetch_command("denied.test", tls_server.port)}}},
        {"action": {"tool": "run_command", "args": {"command": (
            f"GIT_SSL_CAINFO=ca.pem git clone -q https://allowed.test:{tls_server.port}/repo.git"
            " cloned && cat cloned/README")}}},
        {"action": {"tool": "run_command", "args": {"command": (
            "python3 -m venv venv && venv/bin/pip install -q --no-deps --cert ca.pem"
            f" --index-url https://allowed.test:{tls_server.port}/simple/ demo-pkg==1.0"
            " && venv/bin/python -c 'import demo_pkg; print(demo_pkg.GREETING)'")}}},
        {"action": {"tool": "finish", "args": {"answer": "fetched"}}},
    ]  # fmt: skip
    result, records = egress_stack.scripted_run("egress", steps)
    assert result.returncode == 0, result.stderr[-2000:]
    results = [r for r in records if r["type"] == "tool_result"]
    assert len(results) == 5, results
    found = {"allowed": results[1], "denied": results[2], "git": results[3], "pip": results[4]}
    return found, records


def test_an_allowed_name_is_fetched_over_https_through_the_proxy(
    egress_run: tuple[dict[str, Any], list[dict[str, Any]]], tls_server: TlsServer
) -> None:
    """The file arrives, and our server saw the request (from the proxy)."""
    fetched = egress_run[0]["allowed"]
    assert fetched.get("exit_code") == 0, fetched.get("output")
    assert f"GOT {SERVED.strip()}" in fetched["output"]
    assert any("GET /hello.txt" in line for line in tls_server.requests), tls_server.requests


def test_a_name_not_allowed_gets_the_proxy_s_denial(
    egress_run: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    """The same server under another name: the CONNECT is refused with 403."""
    refused = egress_run[0]["denied"]
    assert refused.get("exit_code") == 1, refused.get("output")
    assert "403" in refused["output"], refused["output"]


def test_git_clones_over_https_through_the_proxy(
    egress_run: tuple[dict[str, Any], list[dict[str, Any]]], tls_server: TlsServer
) -> None:
    """With the proxy on, the tools image's git has its HTTPS helper; it honours the
    proxy variables as pip does."""
    cloned = egress_run[0]["git"]
    assert cloned.get("exit_code") == 0, cloned.get("output")
    assert SERVED.strip() in cloned["output"]
    assert any("repo.git/info/refs" in line for line in tls_server.requests)


def test_pip_installs_from_an_allowed_index_through_the_proxy(
    egress_run: tuple[dict[str, Any], list[dict[str, Any]]], tls_server: TlsServer
) -> None:
    """A project's venv in the workspace (the image's Python makes it with pip, offline)
    installs a package from an index under the allowed name, through the proxy."""
    installed = egress_run[0]["pip"]
    assert installed.get("exit_code") == 0, installed.get("output")
    assert SERVED.strip() in installed["output"]
    assert any("demo_pkg-1.0-py3-none-any.whl" in line for line in tls_server.requests)


def egress_log(stack: E2EStack) -> str:
    """The proxy's access log, read from the egress-log volume."""
    exported = subprocess.run(
        ["podman", "volume", "export", f"{stack.project}_egress-log"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        handle = tar.extractfile("egress/access.log")
        assert handle is not None
        return handle.read().decode()


def test_both_requests_are_logged_in_the_egress_volume(
    egress_stack: E2EStack,
    egress_run: tuple[dict[str, Any], list[dict[str, Any]]],
    tls_server: TlsServer,
) -> None:
    text = egress_log(egress_stack)
    print(f"\negress log:\n{text}")
    allowed = [ln for ln in text.splitlines() if f"CONNECT allowed.test {tls_server.port}" in ln]
    denied = [ln for ln in text.splitlines() if f"CONNECT denied.test {tls_server.port}" in ln]
    assert allowed, text
    assert " 200 " in allowed[-1], allowed
    assert denied, text
    assert "TCP_DENIED 403" in denied[-1], denied


def test_runs_show_lists_the_run_s_egress_lines(
    egress_stack: E2EStack,
    egress_run: tuple[dict[str, Any], list[dict[str, Any]]],
    tls_server: TlsServer,
) -> None:
    run_id = egress_run[1][0]["run_id"]
    shown = egress_stack.invoke("runs.show", "--id", run_id).stdout
    print(f"\n{shown}")
    assert re.search(r"== egress: \d+ request\(s\) through the proxy, 1 denied", shown), shown
    assert f"allowed CONNECT allowed.test:{tls_server.port} -> 200" in shown
    assert f"DENIED CONNECT denied.test:{tls_server.port} -> 403" in shown


def test_tools_still_resolves_no_name_with_the_proxy_on(egress_stack: E2EStack) -> None:
    """The proxy resolves; tools knows only the proxy's fixed address in the sandbox's
    /24 (SANDBOX_NET_PREFIX of its .env)."""
    lookup = egress_stack.exec("tools", "getent", "ahosts", "allowed.test")
    assert lookup.returncode == 2, lookup.stdout
    hosts = egress_stack.exec("tools", "getent", "hosts", "egress")
    prefix = load_settings(egress_stack.path, require_file=True).net_prefix
    assert hosts.stdout.split()[:1] == [f"{prefix}.250"], hosts.stdout


def test_the_supervisor_s_model_traffic_never_uses_the_proxy(egress_stack: E2EStack) -> None:
    env = egress_stack.container("supervisor")["Config"]["Env"]
    assert not [item for item in env if item.lower().startswith(("http_proxy", "https_proxy"))]


def test_the_proxy_runs_hardened(egress_stack: E2EStack) -> None:
    """Every process of the proxy: uid 10001, no capabilities, no new privileges; its root
    is read-only and it mounts its own volume only (never the logs or the workspace)."""
    probe = 'for f in /proc/[0-9]*/status; do cat "$f"; echo ===; done'
    out = egress_stack.exec("egress", "sh", "-c", probe).stdout
    blocks = [
        dict(ln.split(":", 1) for ln in b.splitlines() if ":" in ln) for b in out.split("===")
    ]
    processes = [{k: v.strip() for k, v in b.items()} for b in blocks if "Uid" in b]
    assert processes, out
    for fields in processes:
        assert set(fields["Uid"].split()) == {"10001"}, fields.get("Name")
        assert int(fields["CapEff"], 16) == 0, fields.get("Name")
        assert fields["NoNewPrivs"] == "1", fields.get("Name")
    proxy = egress_stack.container("egress")
    assert proxy["HostConfig"]["ReadonlyRootfs"] is True
    mounted = sorted(m.get("Name", "") for m in proxy["Mounts"] if m.get("Type") == "volume")
    assert mounted == [f"{PROJECT}_egress-log"], mounted
