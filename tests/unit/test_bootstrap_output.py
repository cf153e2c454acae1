"""bootstrap.sh prints a few lines, not apt's and pip's hundreds; a failure prints the tail
and the log's path (issue 12: the first command used to print 142,387 lines).

bootstrap.sh runs in a copy of the repository's files it reads, with fake ``dpkg-query``,
``apt-get``, ``sudo`` and ``python3`` on PATH, so nothing is installed and the real
``.venv`` is never touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NOISY = """#!/bin/sh
# a step that prints what apt-get or pip print: hundreds of lines (the name is looked up
# once: a $(basename) per line was a thousand processes a step)
name=$(basename "$0")
echo "$name $*" >> "$HOME/calls.log"
i=0
while [ $i -lt 500 ]; do echo "$name line $i: Unpacking something ..."; i=$((i+1)); done
if [ -n "$FAIL" ] && [ "$name" = "$FAIL" ]; then
    echo "E: Unable to locate package"
    exit 100
fi
exit 0
"""


def sandbox_copy(tmp_path: Path, *, venv_ready: bool) -> Path:
    """The files bootstrap.sh reads, in a folder of their own."""
    copy = tmp_path / "repo"
    for relpath in ("bootstrap.sh", "requirements/debian-packages.txt",
                    "requirements/debian-check-packages.txt", "requirements/dev.lock",
                    "pyproject.toml", "supervisor/pyproject.toml"):  # fmt: skip
        (copy / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relpath, copy / relpath)
    if venv_ready:
        (copy / ".venv/bin").mkdir(parents=True)
        (copy / ".venv/bin/python").write_text("#!/bin/sh\nexit 0\n")
        (copy / ".venv/bin/python").chmod(0o755)
        digest = hashlib.sha256(
            b"".join(
                (copy / name).read_bytes()
                for name in ("requirements/dev.lock", "pyproject.toml", "supervisor/pyproject.toml")
            )
        ).hexdigest()
        (copy / ".venv/.bootstrap-lock.sha256").write_text(digest + "\n")
    return copy


def fake_bin(tmp_path: Path) -> Path:
    """Fakes: dpkg-query says nothing is installed; apt-get and python3 are noisy."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "python3"):
        (bin_dir / name).write_text(NOISY)
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    # `python3 -m venv` makes .venv/bin/python; `-m pip --python ... install uv==...` gives
    # .venv/bin/uv
    (bin_dir / "python3").write_text(
        NOISY.replace(
            "exit 0\n",
            'mkdir -p .venv/bin; cp "$0" .venv/bin/python; cp "$0" .venv/bin/uv\nexit 0\n',
        )
    )
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    return bin_dir


def bootstrap(
    copy: Path, bin_dir: Path, command: str = "true", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(copy / "bootstrap.sh"), command],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": str(copy),
            "SANDBOX_SKIP_HOST_PREPARE": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_full_bootstrap_prints_a_handful_of_lines(tmp_path: Path) -> None:
    """Packages and the virtual environment installed: two lines, not thousands."""
    copy = sandbox_copy(tmp_path, venv_ready=False)
    result = bootstrap(copy, fake_bin(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert [line.split(" ", 2)[1] for line in lines] == ["installing", "creating"]
    assert (copy / ".cache/bootstrap/apt-install.log").read_text().count("\n") >= 500


def calls(copy: Path, name: str) -> list[str]:
    """What the fake ``name`` was run with, in order (its arguments, one line a run)."""
    lines = (copy / "calls.log").read_text().splitlines()
    return [line.split(" ", 1)[1] for line in lines if line.split(" ", 1)[0] == name]


LOCK_INSTALL = "-r requirements/dev.lock -e . -e supervisor"


def test_pip_installs_uv_at_the_locks_pin_and_uv_installs_the_lock(tmp_path: Path) -> None:
    """The system's pip installs only uv, at the lock's own pin, into a .venv made without
    pip (ensurepip and an upgrade cost 3 s); uv installs the lock and both projects into
    .venv (seconds, where pip took 15-25 s)."""
    copy = sandbox_copy(tmp_path, venv_ready=False)
    result = bootstrap(copy, fake_bin(tmp_path))
    assert result.returncode == 0, result.stderr
    lock = (copy / "requirements/dev.lock").read_text().splitlines()
    pin = next(line for line in lock if line.startswith("uv=="))
    assert calls(copy, "python3") == [
        "-m venv --without-pip .venv",
        f"-m pip --python .venv/bin/python install --quiet {pin}",
    ]
    assert calls(copy, "uv") == [f"pip install --quiet --python .venv/bin/python {LOCK_INSTALL}"]
    assert calls(copy, "python") == []  # .venv has no pip until the lock brings one


def test_when_uv_fails_pip_installs_the_lock_and_one_line_says_so(tmp_path: Path) -> None:
    """uv does not read pip's configuration (a private index in pip.conf): pip takes over,
    with one line naming uv's log instead of uv's failure."""
    copy = sandbox_copy(tmp_path, venv_ready=False)
    result = bootstrap(copy, fake_bin(tmp_path), FAIL="uv")
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert lines[-1] == (
        "bootstrap: uv could not install it (.cache/bootstrap/uv.log); pip installs it instead"
    )
    assert len(lines) == 3
    assert "E: Unable to locate package" in (copy / ".cache/bootstrap/uv.log").read_text()
    assert calls(copy, "python3")[-1] == (
        f"-m pip --python .venv/bin/python install --quiet {LOCK_INSTALL}"
    )
    assert (copy / ".venv/.bootstrap-lock.sha256").is_file()


def test_a_warm_bootstrap_prints_nothing(tmp_path: Path) -> None:
    """Everything done already (apt packages present, .venv current): silence."""
    copy = sandbox_copy(tmp_path, venv_ready=True)
    bin_dir = fake_bin(tmp_path)
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\necho 'install ok installed'\n")
    result = bootstrap(copy, bin_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_a_failing_step_prints_its_tail_and_the_log_path(tmp_path: Path) -> None:
    """apt-get fails: its last lines and where the rest is, then a non-zero exit."""
    copy = sandbox_copy(tmp_path, venv_ready=True)
    result = bootstrap(copy, fake_bin(tmp_path), FAIL="apt-get")
    assert result.returncode != 0
    err = result.stderr.splitlines()
    assert "E: Unable to locate package" in err
    assert err[-1] == "bootstrap: the whole output is in .cache/bootstrap/apt-update.log"
    assert len(err) < 30
    assert os.path.getsize(copy / ".cache/bootstrap/apt-update.log") > 10_000


def test_check_packages_are_installed_only_for_the_checks(tmp_path: Path) -> None:
    """A browser and a linter are what `nox` needs, not the first command or `up`:
    `./bootstrap.sh nox` installs them too, `./bootstrap.sh invoke ...` does not."""
    checks = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements/debian-check-packages.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert "chromium" in checks
    for command, wanted in (("true", False), ("nox", True)):
        copy = sandbox_copy(tmp_path / command, venv_ready=True)
        bin_dir = fake_bin(tmp_path / command)
        (bin_dir / "nox").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "nox").chmod(0o755)
        result = bootstrap(copy, bin_dir, command)
        assert result.returncode == 0, result.stderr
        installing = next(line for line in result.stderr.splitlines() if "installing" in line)
        assert all((f" {name}" in installing) == wanted for name in checks), installing
        assert " podman" in installing


def prepared_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy whose packages and .venv are in place, with a fake ``invoke`` in .venv that
    logs its calls (``FAIL_PREPARE=1`` makes ``host.prepare`` fail)."""
    copy = sandbox_copy(tmp_path, venv_ready=True)
    bin_dir = fake_bin(tmp_path)
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\necho 'install ok installed'\n")
    (copy / ".venv/bin/invoke").write_text(
        '#!/bin/sh\necho "invoke $*" >> "$HOME/calls.log"\n'
        '[ "$FAIL_PREPARE" = 1 ] && { echo "prepare failed" >&2; exit 1; }\nexit 0\n'
    )
    (copy / ".venv/bin/invoke").chmod(0o755)
    (copy / ".env").write_text("SANDBOX_MODEL=tiny\n")
    return copy, bin_dir


def prepare_calls(copy: Path) -> list[str]:
    """The fake ``invoke``'s host.prepare calls, in order."""
    if not (copy / "calls.log").exists():
        return []
    return [call for call in calls(copy, "invoke") if call.startswith("host.prepare")]


def test_host_prepare_runs_again_only_when_the_hosts_state_changed(tmp_path: Path) -> None:
    """Each `./bootstrap.sh COMMAND` used to run host.prepare (1-2 s of probes); it runs
    once, then again when what it reads changes (here the sandbox's .env)."""
    copy, bin_dir = prepared_copy(tmp_path)
    for _ in range(2):
        assert bootstrap(copy, bin_dir, SANDBOX_SKIP_HOST_PREPARE="").returncode == 0
    assert prepare_calls(copy) == ["host.prepare --yes"]
    (copy / ".env").write_text("SANDBOX_MODEL=smollm2-135m-instruct\n")
    assert bootstrap(copy, bin_dir, SANDBOX_SKIP_HOST_PREPARE="").returncode == 0
    assert prepare_calls(copy) == ["host.prepare --yes"] * 2


def test_a_failed_host_prepare_stops_the_command_and_is_tried_again(tmp_path: Path) -> None:
    copy, bin_dir = prepared_copy(tmp_path)
    failed = bootstrap(copy, bin_dir, SANDBOX_SKIP_HOST_PREPARE="", FAIL_PREPARE="1")
    assert failed.returncode != 0
    assert "prepare failed" in failed.stderr
    assert not (copy / ".venv/.host-prepared").exists()
    again = bootstrap(copy, bin_dir, "true", SANDBOX_SKIP_HOST_PREPARE="")
    assert again.returncode == 0, again.stderr
    assert prepare_calls(copy) == ["host.prepare --yes"] * 2
