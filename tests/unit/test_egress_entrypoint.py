"""The egress proxy's entrypoint (egress/entrypoint.sh) writes Squid's configuration from
EGRESS_ALLOW, refusing bad entries before Squid starts. Run here with a fake ``squid`` on
PATH that records its arguments and the configuration it was given (the real Squid parses
the same configuration in the image build, and serves it in the e2e session)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "egress" / "entrypoint.sh"


def run(tmp_path: Path, allow: str, *, check_only: bool = False) -> tuple[int, str, str]:
    """Run the entrypoint with a fake squid; (exit code, stderr, the configuration)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "squid"
    fake.write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/argv\n'
        f'while [ $# -gt 0 ]; do [ "$1" = -f ] && cat "$2" > {tmp_path}/seen; shift; done\n'
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "EGRESS_ALLOW": allow,
        "EGRESS_CONF": str(tmp_path / "squid.conf"),
        "EGRESS_LOG_DIR": str(tmp_path / "logs"),
        **({"EGRESS_CHECK_ONLY": "1"} if check_only else {}),
    }
    (tmp_path / "example.org").touch()  # what a glob in the allowlist would turn into
    done = subprocess.run(
        ["/bin/sh", str(ENTRYPOINT)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    seen = tmp_path / "seen"
    return done.returncode, done.stderr, seen.read_text() if seen.is_file() else ""


def test_each_allowed_name_gets_its_ports_and_the_rest_is_denied(tmp_path: Path) -> None:
    code, _, conf = run(tmp_path, "pypi.org, .pythonhosted.org git.example.com:8443")
    assert code == 0
    lines = conf.splitlines()
    assert "acl allow_1 dstdomain pypi.org" in lines
    assert "acl ports_1 port 80 443" in lines
    assert "acl allow_2 dstdomain .pythonhosted.org" in lines
    assert "acl allow_3 dstdomain git.example.com" in lines
    assert "acl ports_3 port 8443" in lines
    allows = [line for line in lines if line.startswith("http_access")]
    assert allows[-1] == "http_access deny all"
    assert allows[:-1] == [f"http_access allow allow_{n} ports_{n}" for n in (1, 2, 3)]


def test_squid_runs_in_the_foreground_and_logs_to_the_volume(tmp_path: Path) -> None:
    code, _, conf = run(tmp_path, "pypi.org")
    assert code == 0
    assert (tmp_path / "argv").read_text().split()[:1] == ["-N"]
    assert f"access_log stdio:{tmp_path}/logs/access.log logformat=egress" in conf
    assert (tmp_path / "logs").is_dir()


def test_check_only_parses_without_starting(tmp_path: Path) -> None:
    code, _, _ = run(tmp_path, "pypi.org", check_only=True)
    assert code == 0
    assert (tmp_path / "argv").read_text().split()[:2] == ["-k", "parse"]


@pytest.mark.parametrize(
    "allow",
    [
        "",
        " , ",
        "pypi.org; rm -rf /",
        "https://pypi.org",
        "pypi.org:http",
        "a..b",
        "-x.org",
        ".",
        "*",
    ],
)
def test_bad_or_empty_allowlist_stops_before_squid_starts(tmp_path: Path, allow: str) -> None:
    code, stderr, _ = run(tmp_path, allow)
    assert code == 64, stderr
    assert stderr.startswith("egress: ")
    assert not (tmp_path / "argv").exists()
