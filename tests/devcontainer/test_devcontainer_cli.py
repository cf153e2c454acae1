"""The dev container validated for real: the pinned Dev Containers CLI against Podman.

One check (``devcontainer_check.run_check``) renders a fresh sandbox, brings its
model server up with real Compose v2, runs ``devcontainer up`` and ``devcontainer exec``,
then tears everything down; each test asserts one thing it measured. It also records
``results/devcontainer.json``, the milestone's evidence.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import devcontainer_check as check
import pytest

from sandboxctl import devcontainer as dc
from sandboxctl.checks.milestones import read_result

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> check.CheckReport:
    """Run the whole check once (about 35 s warm; the first dev image build adds ~20 s).
    With DEVCONTAINER_CHECK_KEEP=1 its sandbox and containers are left up for debugging."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `./bootstrap.sh` or `invoke host.prepare`")
    keep = os.environ.get(check.KEEP_ENV) == "1"
    result = check.run_check(ROOT, tmp_path_factory.mktemp("devc"), keep=keep)
    print(f"\ndevcontainer check figures: {json.dumps(result.figures)}")
    return result


def test_check_reports_no_failure(report: check.CheckReport) -> None:
    """Every step of the check passed (its log is results/devcontainer.log)."""
    assert report.failures == []


def test_cli_is_the_pinned_version(report: check.CheckReport) -> None:
    """The CLI that ran is the one package.json pins, installed in .devcontainer/cli."""
    assert report.figures["cli_version"] == dc.pinned_version(ROOT)


def test_dev_container_runs_as_the_non_root_dev_user(report: check.CheckReport) -> None:
    """`devcontainer exec` runs as `dev`, whose uid is not 0."""
    assert report.figures["remote_user"] == "dev"
    assert report.figures["container_uid"] not in (None, 0)


def test_supervisor_tests_pass_inside(report: check.CheckReport) -> None:
    """`pytest supervisor/tests` inside the dev container ran tests and all passed."""
    assert report.figures["tests_passed"] > 0
    assert not any("supervisor tests" in failure for failure in report.failures)


def test_model_server_health_is_reached_by_service_name(report: check.CheckReport) -> None:
    """http://model-server:PORT/health answered llama-server's ok from the dev container."""
    assert json.loads(report.figures["health"]) == {"status": "ok"}


def test_file_created_inside_has_the_expected_host_owner(report: check.CheckReport) -> None:
    """The host user's uid (non-root), or uid 10001 when root runs the check (documented)."""
    assert report.figures["file_owner_uid"] == check.expected_owner(report.host_uid)


def test_everything_is_torn_down(report: check.CheckReport) -> None:
    """No container, volume or network of the check's project is left, nor its folder."""
    label = f"label=com.docker.compose.project={check.CHECK_PROJECT}"
    for kind in ("ps -a", "volume ls", "network ls"):
        listed = subprocess.run(
            ["podman", *kind.split(), "-q", "--filter", label],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert listed == [], kind
    assert not Path(report.figures["sandbox"]).exists()


def test_per_workspace_uid_image_is_removed(report: check.CheckReport) -> None:
    """The CLI's `vsc-...-uid` image of the throw-away sandbox does not pile up."""
    image = report.figures["uid_image"]
    assert check.is_uid_image(image)
    exists = subprocess.run(["podman", "image", "exists", image], check=False)
    assert exists.returncode == 1


def test_milestone_result_is_recorded(report: check.CheckReport) -> None:
    """results/devcontainer.json holds the outcome, as the milestone reads it."""
    result = read_result(ROOT, check.RESULT_NAME)
    assert result is not None
    assert result["passed"] is report.passed
