"""Copying a hostile tree out (pack, then unpack into a destination) writes nothing outside
the destination and follows no link, whatever the tree holds: links to /etc and above
the root, FIFOs, sockets, devices, hard links, a 1 TB sparse file, names that are
terminal escapes, a tree 1,500 levels deep with paths longer than PATH_MAX. A crafted
stream (absolute and ``..`` names, writes through links it made itself, hard links and
devices) is refused entry by entry. These are unit tests on local trees; the
real-container path is in tests/e2e/test_own_project.py."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_supervisor.treecopy import TreeLimits, pack, remove_tree, unpack

DEPTH = 1500
LEVEL = "ddd"  # 1,500 levels of "ddd/" make a path of 6,000 characters, over PATH_MAX


def _state(top: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every name below ``top`` with its mode, size and (for small files) bytes; the
    walk does not enter ``skip`` folders (too deep for pathlib)."""
    seen: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d not in ("hostile", "dest")]
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            info = path.lstat()
            small = path.read_bytes() if stat.S_ISREG(info.st_mode) and info.st_size < 1e6 else b""
            seen[str(path.relative_to(top))] = (info.st_mode, info.st_size, small)
    return seen


def _deep(root: Path) -> None:
    """A chain of DEPTH directories under ``root`` with a file at the bottom, made with
    handles (the path is too long for one system call)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(DEPTH):
        os.mkdir(LEVEL, dir_fd=fd)
        child = os.open(LEVEL, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
    os.write(leaf, b"bottom\n")
    os.close(leaf)
    os.close(fd)


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Path]:
    """A workspace folder holding every kind of trouble (removed without recursion)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("do not touch\n")
    root = tmp_path / "hostile"
    root.mkdir()
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "etc_link").symlink_to("/etc")
    (root / "passwd_link").symlink_to("/etc/passwd")
    (root / "above").symlink_to("../outside")
    (root / "far_above").symlink_to("src/../../outside/secret.txt")
    (root / "inside_link").symlink_to("src/app.py")
    os.mkfifo(root / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    server.close()
    if os.geteuid() == 0:
        os.mknod(root / "null_dev", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.link(tmp_path / "outside" / "secret.txt", root / "hardlink_out")
    with (root / "sparse.bin").open("wb") as handle:
        handle.truncate(1 << 40)
    (root / "\x1b]0;owned\x07\x1b[2J").write_text("escape\n")
    _deep(root)
    yield root
    remove_tree(os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY), "hostile")


def _export(source: Path, dest: Path, limits: TreeLimits) -> tuple[list[str], list[str]]:
    buffer = io.BytesIO()
    source_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    try:
        packed = pack(source_fd, buffer, limits)
    finally:
        os.close(source_fd)
    buffer.seek(0)
    dest.mkdir()
    dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        unpacked = unpack(buffer, dest_fd, limits)
    finally:
        os.close(dest_fd)
    return packed.refused, unpacked.refused


@pytest.mark.long  # a large hostile tree packed and unpacked
def test_a_hostile_tree_exports_without_writing_outside_or_following_links(
    hostile: Path, tmp_path: Path
) -> None:
    before = _state(tmp_path)
    started = time.monotonic()
    dest = tmp_path / "dest"
    packed, unpacked = _export(hostile, dest, TreeLimits(max_file_bytes=1 << 20))
    took = time.monotonic() - started
    try:
        assert _state(tmp_path) == before, "something outside the destination changed"
        assert took < 60
        # what is kept: regular files with their modes, the link that stays inside
        assert (dest / "src" / "app.py").read_text() == "print('hi')\n"
        assert (dest / "run.sh").stat().st_mode & 0o777 == 0o755
        assert os.readlink(dest / "inside_link") == "src/app.py"
        # the hard link's content is inside the workspace's copy, not a link out
        assert (dest / "hardlink_out").stat().st_nlink == 1
        # what is refused, one line each, with names escaped
        refused = "\n".join(packed + unpacked)
        assert "\x1b" not in refused
        assert "\x07" not in refused
        for name in ("etc_link", "passwd_link", "above", "far_above"):
            assert not os.path.lexists(dest / name), name
            assert f"'{name}': a link to" in refused
        for name in ("fifo", "sock", "sparse.bin", *(["null_dev"] if os.geteuid() == 0 else [])):
            assert not os.path.lexists(dest / name), name
            assert f"'{name}'" in refused
        assert "1099511627776 bytes, over the" in refused
        assert "a control character in the name" in refused
        assert sorted(os.listdir(dest)) == [
            "ddd",
            "hardlink_out",
            "inside_link",
            "run.sh",
            "src",
        ]
        # the 1,500-level tree came through whole, its path longer than PATH_MAX
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(DEPTH):
            child = os.open(LEVEL, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf.txt", os.O_RDONLY, dir_fd=fd)
        assert os.read(leaf, 100) == b"bottom\n"
        assert stat.S_IMODE(os.fstat(leaf).st_mode) == 0o640
        os.close(leaf)
        os.close(fd)
    finally:
        remove_tree(os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY), "dest")


def _member(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    data = kw.pop("data", b"x")
    for key, value in kw.items():
        setattr(info, key, value)
    if kind == tarfile.REGTYPE:
        assert isinstance(data, bytes)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def test_a_crafted_stream_cannot_write_outside_or_through_links(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _member(tar, "../escaped.txt")
        _member(tar, "/tmp/absolute-escape.txt")
        _member(tar, "a/../../escaped2.txt")
        _member(tar, "out_link", tarfile.SYMTYPE, linkname=str(tmp_path / "outside"))
        _member(tar, "out_link/through.txt")
        _member(tar, "in_link", tarfile.SYMTYPE, linkname="sub")
        _member(tar, "sub", tarfile.DIRTYPE, mode=0o755)
        _member(tar, "in_link/through.txt")
        _member(tar, "up", tarfile.SYMTYPE, linkname="..")
        _member(tar, "hard", tarfile.LNKTYPE, linkname="/etc/passwd")
        _member(tar, "dev", tarfile.CHRTYPE, devmajor=1, devminor=3)
        _member(tar, "fifo", tarfile.FIFOTYPE)
        _member(tar, "setuid", mode=0o4755)
        _member(tar, "big", data=b"y" * 5000)
        _member(tar, "n" * 300)
        _member(tar, "ok.txt", data=b"fine\n")
    stream.seek(0)
    dest = tmp_path / "dest"
    dest.mkdir()
    before = _state(tmp_path)
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copied = unpack(stream, fd, TreeLimits(max_file_bytes=1000))
    finally:
        os.close(fd)
    assert _state(tmp_path) == before
    assert list((tmp_path / "outside").iterdir()) == []
    assert not Path("/tmp/absolute-escape.txt").exists()
    # the refused link left its name free: the file below it became a real folder
    assert sorted(os.listdir(dest)) == ["in_link", "ok.txt", "out_link", "setuid", "sub"]
    assert os.listdir(dest / "out_link") == ["through.txt"]
    assert os.listdir(dest / "sub") == []  # nothing went through in_link
    assert (dest / "setuid").stat().st_mode & 0o7777 == 0o755
    assert len(copied.refused) == 11, "\n".join(copied.refused)


def test_remove_tree_deletes_a_deep_tree_that_recursion_cannot(tmp_path: Path) -> None:
    (tmp_path / "top").mkdir()
    _deep(tmp_path / "top")
    (tmp_path / "top" / "link").symlink_to("/etc")
    (tmp_path / "keep.txt").write_text("kept\n")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        removed = remove_tree(fd, "top")
    finally:
        os.close(fd)
    assert removed == DEPTH + 3  # the levels, the leaf, the link, the top
    assert os.listdir(tmp_path) == ["keep.txt"]
    assert Path("/etc/passwd").exists()
