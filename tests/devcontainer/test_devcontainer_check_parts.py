"""The dev container check's own parts, without containers: the CLI's outcome line, the
pytest summary, the per-workspace image, who owns files created inside."""

from __future__ import annotations

import os
from pathlib import Path

import devcontainer_check as check
import pytest

from sandboxctl import devcontainer as dc


def test_up_outcome_success_is_returned() -> None:
    """The last JSON line of `devcontainer up` is its outcome."""
    out = 'noise\n{"outcome":"success","containerId":"abc","remoteUser":"dev"}\n'
    assert check.parse_up_output(out)["remoteUser"] == "dev"


def test_up_outcome_error_carries_the_cli_message() -> None:
    """An error outcome raises with the CLI's own message."""
    out = '{"outcome":"error","message":"Command failed: compose build","description":"x"}'
    with pytest.raises(dc.DevcontainerError, match="compose build"):
        check.parse_up_output(out)


def test_up_without_outcome_is_an_error() -> None:
    """No JSON at all (the CLI crashed) is an error too."""
    with pytest.raises(dc.DevcontainerError, match="no outcome"):
        check.parse_up_output("Segmentation fault\n")


def test_passed_count_reads_the_pytest_summary() -> None:
    """`95 passed in 12.40s` -> 95; no summary -> 0."""
    assert check.passed_count("....\n95 passed in 12.40s\n") == 95
    assert check.passed_count("ERROR: file not found") == 0


def test_uid_image_is_recognised_with_its_registry_and_tag() -> None:
    """Podman reports `docker.io/library/vsc-NAME-HASH-uid:latest`; the base image is not one."""
    assert check.is_uid_image("docker.io/library/vsc-sandbox-0123abcd-uid:latest")
    assert not check.is_uid_image("localhost/devc-sandbox-dev:dev")
    assert not check.is_uid_image("localhost/uid:latest")


# --- ownership ----------------------------------------------------------------------------


def test_non_root_host_user_owns_files_created_inside() -> None:
    """updateRemoteUserUID gives `dev` the host user's uid: the file is theirs."""
    assert check.expected_owner(1000) == 1000


def test_root_host_user_leaves_files_to_the_dev_uid() -> None:
    """uid 0 is root's in the image: the CLI keeps `dev` at 10001 (never root inside)."""
    assert check.expected_owner(0) == dc.DEV_UID == 10001


def test_chown_tree_changes_links_not_their_targets(tmp_path: Path) -> None:
    """Every entry gets the uid; a link to a file outside is not followed."""
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("y")
    (tree / "link").symlink_to(outside)
    check.chown_tree(tree, 4242, 4242)
    assert (tree / "sub" / "f").stat().st_uid == 4242
    assert os.lstat(tree / "link").st_uid == 4242
    assert outside.stat().st_uid == 0
