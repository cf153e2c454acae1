"""The trajectory survives SIGKILL of its writer; damage is repaired or reported loudly."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox_supervisor.trajectory import TrajectoryError, TrajectoryWriter, read_records

CHILD = Path(__file__).with_name("trajectory_child.py")
KILLS = 25
KILLS_PER_FILE = 5


def _acked_until_killed(path: Path, seed: int, run_for: float) -> list[int]:
    """Start a writer, collect its acknowledgements for ``run_for`` s, SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(seed)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    acked: list[int] = []
    buffer = b""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + run_for
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        acked.extend(int(line) for line in lines)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Acknowledgements already in the pipe were given before the kill: they count too.
    rest = proc.stdout.read()
    acked.extend(int(line) for line in (buffer + rest).split(b"\n") if line.strip())
    proc.stdout.close()
    return acked


def test_every_acknowledged_record_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(4)
    total = torn_seen = 0
    for file_number in range(KILLS // KILLS_PER_FILE):
        path = tmp_path / f"crash-{file_number}.jsonl"  # a few files keep each one small
        acked: list[int] = []
        for round_number in range(KILLS_PER_FILE):
            seed = file_number * KILLS_PER_FILE + round_number
            acked += _acked_until_killed(path, seed, rng.uniform(0.05, 0.25))
            # Whatever the kill left, the file reads with at most a torn last line.
            result = read_records(path, allow_torn_tail=True)
            torn_seen += result.torn_bytes > 0
            seqs = {r["seq"] for r in result.records}
            assert set(acked) <= seqs, f"lost acknowledged records in round {seed}"
        assert acked, "the writers acknowledged nothing"
        with TrajectoryWriter(path, "final") as writer:  # repairs a torn tail, if any
            writer.write("run_end", status="success")
        final = read_records(path, allow_torn_tail=False).records
        assert final[-1]["type"] == "run_end"
        total += len(acked)
    print(f"{total} acknowledged records over {KILLS} kills, {torn_seen} torn tails repaired")


def test_torn_last_line_is_repaired_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path, "r") as writer:
        for _ in range(3):
            writer.write("tool_call", name="x")
    with path.open("ab") as handle:
        handle.write(b'{"v":1,"seq":3,"ts":"2025","run_id":"r","type":"tool_res')
    with pytest.raises(TrajectoryError, match="torn last line"):
        read_records(path, allow_torn_tail=False)
    with TrajectoryWriter(path, "r2") as writer:
        assert writer.repair.dropped_bytes > 0
        writer.write("run_end", status="success")
    records = read_records(path, allow_torn_tail=False).records
    assert [r["seq"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["type"] for r in records][-2:] == ["repair", "run_end"]


def test_reader_fails_loudly_on_damage_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path, "r") as writer:
        for _ in range(4):
            writer.write("tool_call", name="x")
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1][:20]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(TrajectoryError, match=r"t.jsonl:2: damaged record"):
        read_records(path)


def test_reader_fails_on_a_missing_record(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path, "r") as writer:
        for _ in range(4):
            writer.write("tool_call", name="x")
    lines = path.read_bytes().split(b"\n")
    del lines[2]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(TrajectoryError, match="seq 3 where 2 was expected"):
        read_records(path)


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path, "a"), pytest.raises(TrajectoryError, match="another process"):
        TrajectoryWriter(path, "b")


def test_each_record_is_one_ascii_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path, "r") as writer:
        writer.write("tool_result", output='a\nb\u2028c\udcff{"x": 1}\n')
    data = path.read_bytes()
    assert data.count(b"\n") == 1
    assert data.isascii()
    assert json.loads(data)["output"].startswith("a\nb\u2028c")
