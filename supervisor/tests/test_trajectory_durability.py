"""The trajectory survives SIGKILL of its writer; damage is repaired or reported loudly."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import time
from pathlib import Path

import pytest

from sandbox_supervisor.trajectory import TrajectoryError, TrajectoryWriter, read_records

KILLS = 200
KILLS_PER_FILE = 10


def _child(path: Path, seed: int, ack_fd: int) -> None:
    """In a forked child: append records for ever, acknowledging each seq once fsynced."""
    rng = random.Random(seed)
    try:
        with TrajectoryWriter(path, f"child-{seed}") as writer:
            while True:
                size = rng.choice([10] * 12 + [1000] * 6 + [20_000, 200_000])
                record = writer.write("tool_result", output="x\n{}" * (size // 4), seed=seed)
                os.write(ack_fd, f"{record['seq']}\n".encode())
    finally:
        os._exit(1)


def _acked_until_killed(path: Path, seed: int, run_for: float) -> list[int]:
    """Fork a writer, wait for its first acknowledgement, collect more for ``run_for`` s,
    then SIGKILL it; return every seq it acknowledged."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child never returns)
        os.close(read_fd)
        _child(path, seed, write_fd)
    os.close(write_fd)
    acked: list[int] = []
    buffer = b""
    deadline: float | None = None
    limit = time.monotonic() + 20.0  # a loaded machine: the first record may take a while
    while True:
        now = time.monotonic()
        end = deadline if deadline is not None else limit
        if now >= end:
            break
        ready, _, _ = select.select([read_fd], [], [], end - now)
        if not ready:
            break
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        acked.extend(int(line) for line in lines)
        if acked and deadline is None:
            deadline = time.monotonic() + run_for
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    # Acknowledgements already in the pipe were given before the kill: they count too.
    while chunk := os.read(read_fd, 65536):
        buffer += chunk
    os.close(read_fd)
    acked.extend(int(line) for line in buffer.split(b"\n") if line.strip())
    return acked


@pytest.mark.long  # 200 writers killed at random moments
def test_every_acknowledged_record_survives_sigkill(
    tmp_path: Path, figures: dict[str, str]
) -> None:
    rng = random.Random(4)
    total = torn_seen = lost = 0
    for file_number in range(KILLS // KILLS_PER_FILE):
        path = tmp_path / f"crash-{file_number}.jsonl"  # a few files keep each one small
        acked: list[int] = []
        for round_number in range(KILLS_PER_FILE):
            seed = file_number * KILLS_PER_FILE + round_number
            acked += _acked_until_killed(path, seed, rng.uniform(0.0, 0.05))
            # Whatever the kill left, the file reads with at most a torn last line.
            result = read_records(path, allow_torn_tail=True)
            torn_seen += result.torn_bytes > 0
            lost += len(set(acked) - {r["seq"] for r in result.records})
        assert acked, "the writers acknowledged nothing"
        with TrajectoryWriter(path, "final") as writer:  # repairs a torn tail, if any
            writer.write("run_end", status="success")
        final = read_records(path, allow_torn_tail=False).records
        assert final[-1]["type"] == "run_end"
        total += len(acked)
    figures["durability"] = (
        f"{lost} of {total} acknowledged records lost over {KILLS} SIGKILLs "
        f"({torn_seen} torn tails repaired)"
    )
    assert lost == 0


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
