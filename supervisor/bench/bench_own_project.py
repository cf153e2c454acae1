"""Benchmark: a user's project in and out, and the record of a run's changes.

On a generated tree of N files (default 10,000, in 100 folders, 2 KiB each), measures:
packing it to a tar stream and unpacking it elsewhere (what workspace.import and
workspace.export do on each side, without the container), the first snapshot (every
file hashed and stored), and a snapshot after a step that changed one file (the
steady cost per step: a manifest from the hash cache, one new object). Prints figures,
asserts nothing.

    python supervisor/bench/bench_own_project.py [--files 10000] [--dir /path/on/disk]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

from sandbox_supervisor.recording import RunRecord
from sandbox_supervisor.tools import InProcessExecutor, Workspace
from sandbox_supervisor.treecopy import pack, unpack


def make_tree(root: Path, files: int) -> int:
    """``files`` files of 2 KiB in folders of 100; return the bytes written."""
    total = 0
    for n in range(files):
        folder = root / f"pkg{n // 100:03d}"
        folder.mkdir(exist_ok=True)
        data = (f"# file {n}\n" + "x = 1\n" * 340).encode()
        (folder / f"mod{n:05d}.py").write_bytes(data)
        total += len(data)
    return total


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        base = Path(scratch)
        source = base / "ws" / "proj"
        source.mkdir(parents=True)
        size = make_tree(source, args.files)
        print(f"tree: {args.files} files, {size / 1e6:.1f} MB")

        stream = io.BytesIO()
        fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
        started = time.monotonic()
        pack(fd, stream)
        packed_s = time.monotonic() - started
        os.close(fd)
        stream.seek(0)
        (base / "out").mkdir()
        fd = os.open(base / "out", os.O_RDONLY | os.O_DIRECTORY)
        started = time.monotonic()
        unpack(stream, fd)
        unpacked_s = time.monotonic() - started
        os.close(fd)
        print(
            f"pack {packed_s:.2f} s, unpack {unpacked_s:.2f} s "
            f"({len(stream.getvalue()) / 1e6:.1f} MB tar)"
        )

        executor = InProcessExecutor(Workspace.open(base / "ws")).within("proj")
        record = RunRecord(base / "logs", "bench")
        record.start("proj")
        first = record.take(executor, 0)
        print(f"snapshot step 0: {first.ms:.0f} ms, {first.stored_bytes / 1e6:.1f} MB stored")
        times, stored = [], []
        for step in range(1, 6):
            target = source / "pkg000" / "mod00000.py"
            target.write_bytes(target.read_bytes() + f"y = {step}\n".encode())
            done = record.take(executor, step)
            times.append(done.ms)
            stored.append(done.stored_bytes)
        manifest = sum(
            p.stat().st_size for p in (record.base / "steps").iterdir() if p.name != "000000.json"
        )
        print(
            f"snapshot per step (one file changed): {sum(times) / len(times):.0f} ms, "
            f"{sum(stored) / len(stored):.0f} bytes of content and "
            f"{manifest / len(times):.0f} bytes of step record"
        )


if __name__ == "__main__":
    main()
