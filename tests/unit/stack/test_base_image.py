"""Unit tests of the base image (sandboxctl.stack.images) against fake `debootstrap`, `sudo`
and `podman` (the fake podman import reads the real tar stream and records its members)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.harness import FakeTools

from sandboxctl.config import load_settings
from sandboxctl.stack import base_image

SPEC = base_image.BaseImageSpec(mirror="http://mirror.example/debian")


def make(tmp_path: Path, **state: object) -> FakeTools:
    return FakeTools.create(tmp_path, state={"images": [], **state})


def build(fakes: FakeTools, tmp_path: Path, *, is_root: bool = True, force: bool = False) -> bool:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return base_image.build_base_image(
        SPEC, fakes.runner(), is_root=is_root, force=force, log=lambda _m: None, workdir=work
    )


def test_existing_image_is_skipped_without_debootstrap(tmp_path: Path) -> None:
    fakes = make(tmp_path, images=[base_image.DEFAULT_TAG])
    messages: list[str] = []
    built = base_image.build_base_image(SPEC, fakes.runner(), is_root=True, log=messages.append)
    assert built is False
    assert fakes.calls("debootstrap") == []
    assert "skipped" in messages[0]


def test_build_runs_minbase_debootstrap_from_the_mirror(tmp_path: Path) -> None:
    fakes = make(tmp_path)
    build(fakes, tmp_path)
    argv = fakes.calls("debootstrap")[0]
    assert argv[0] == "--variant=minbase"
    assert argv[1] == "bookworm"
    assert argv[3] == "http://mirror.example/debian"


def test_imported_rootfs_has_no_apt_caches_or_lists(tmp_path: Path) -> None:
    fakes = make(tmp_path)
    build(fakes, tmp_path)
    members = fakes.state["imported"][base_image.DEFAULT_TAG]
    assert "./etc/os-release" in members
    assert not [m for m in members if m.endswith(".deb") or m.endswith(".bin")]
    assert not [m for m in members if "dists_bookworm" in m]
    assert "./var/lib/apt/lists/partial" in members


def test_import_tags_the_name_the_containerfiles_use(tmp_path: Path) -> None:
    fakes = make(tmp_path)
    build(fakes, tmp_path)
    assert fakes.state["import_args"][-2:] == ["-", "localhost/ai-sandbox-base:bookworm"]


def test_scratch_rootfs_is_removed_afterwards(tmp_path: Path) -> None:
    fakes = make(tmp_path)
    build(fakes, tmp_path)
    assert list((tmp_path / "work").iterdir()) == []


def test_force_rebuilds_an_existing_image(tmp_path: Path) -> None:
    fakes = make(tmp_path, images=[base_image.DEFAULT_TAG])
    assert build(fakes, tmp_path, force=True) is True
    assert len(fakes.calls("debootstrap")) == 1


def test_non_root_runs_debootstrap_and_tar_through_sudo(tmp_path: Path) -> None:
    fakes = make(tmp_path)
    build(fakes, tmp_path, is_root=False)
    sudo = fakes.calls("sudo")
    assert sudo[0][0] == "debootstrap"
    assert any(argv[0] == "tar" for argv in sudo)


def test_debootstrap_failure_names_the_mirror(tmp_path: Path) -> None:
    fakes = make(tmp_path, debootstrap_rc=1)
    with pytest.raises(base_image.BaseImageError, match=r"mirror\.example"):
        build(fakes, tmp_path)


def test_missing_debootstrap_says_host_prepare(tmp_path: Path) -> None:
    fakes = FakeTools.create(tmp_path, tools=("podman",), state={"images": []})
    with pytest.raises(base_image.BaseImageError, match=r"host\.prepare"):
        build(fakes, tmp_path)


def test_the_answered_spec_is_base_image_from_debian_mirror_unless_given(tmp_path: Path) -> None:
    """`invoke images.base` and `python -m sandboxctl base-image` build the same image."""
    answers = {"BASE_IMAGE": "localhost/mine:bookworm", "DEBIAN_MIRROR": "http://m.example/d"}
    settings = load_settings(tmp_path, environ=answers, require_file=False)
    assert base_image.answered_spec(settings) == base_image.BaseImageSpec(
        tag="localhost/mine:bookworm", mirror="http://m.example/d"
    )
    given = base_image.answered_spec(settings, tag="t:1", suite="trixie", mirror="http://o/d")
    assert given == base_image.BaseImageSpec(tag="t:1", suite="trixie", mirror="http://o/d")
