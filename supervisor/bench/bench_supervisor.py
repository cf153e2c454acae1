"""Benchmark: supervisor overhead per agent step, resident memory, cost of fsync.

Prints figures, asserts nothing. The model is a zero-latency scripted model (canned
json-mode replies), so what is measured is the supervisor itself: the loop, reply
validation, tool dispatch, trajectory encoding, write and fsync.

    python supervisor/bench/bench_supervisor.py [--steps 300] [--dir /path/on/target/disk]

Run it on the filesystem the logs will live on (``--dir``): fsync cost is a property
of the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox_supervisor.agent import Agent, AgentLimits
from sandbox_supervisor.client import ModelReply, Usage
from sandbox_supervisor.tools import InProcessExecutor, ToolRequest, ToolResult, Workspace
from sandbox_supervisor.trajectory import TrajectoryWriter


class ZeroLatencyModel:
    """Answer every request at once with the next canned reply (then ``finish``)."""

    def __init__(self, steps: int, action: dict[str, Any]) -> None:
        self.left = steps
        self.reply = ModelReply(
            json.dumps({"thought": "t", "action": action}), usage=Usage(100, 20, 120)
        )
        self.finish = ModelReply(
            json.dumps({"thought": "t", "action": {"tool": "finish", "args": {"answer": "a"}}}),
            usage=Usage(100, 20, 120),
        )

    def complete(self, messages: list[dict[str, Any]], **_: Any) -> ModelReply:
        self.left -= 1
        return self.reply if self.left > 0 else self.finish


class NullExecutor(InProcessExecutor):
    """Tools that do nothing: isolates the loop from the tools' own work."""

    def execute(self, request: ToolRequest) -> ToolResult:
        return ToolResult(request.call_id, request.name, "ok", "done")


def rss_mib() -> float:
    """Current resident set size in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_loop(
    directory: Path, steps: int, executor: InProcessExecutor, fsync: bool, action: dict[str, Any]
) -> float:
    """Seconds per step of a full run of ``steps`` steps."""
    path = directory / f"bench-{fsync}-{time.monotonic_ns()}.jsonl"
    model = ZeroLatencyModel(steps, action)
    limits = AgentLimits(max_steps=steps + 1, max_total_tokens=10**8)
    with TrajectoryWriter(path, "bench", fsync=fsync) as log:
        started = time.perf_counter()
        result = Agent(model, executor, log, mode="json", limits=limits).run("bench")
        elapsed = time.perf_counter() - started
    assert result.status == "finished", result
    path.unlink()
    return elapsed / steps


def raw_writes(directory: Path, count: int, fsync: bool) -> float:
    """Seconds per record of the bare trajectory writer."""
    path = directory / f"raw-{fsync}.jsonl"
    with TrajectoryWriter(path, "raw", fsync=fsync) as log:
        started = time.perf_counter()
        for n in range(count):
            log.write("tool_result", call_id=str(n), output="x" * 200)
        elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed / count


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None, help="where to write trajectories")
    args = parser.parse_args()
    base_rss = rss_mib()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        ws = directory / "ws"
        ws.mkdir()
        (ws / "small.txt").write_text("hello\n" * 20)
        workspace = Workspace.open(ws)
        null = NullExecutor(workspace)
        real = InProcessExecutor(workspace)
        noop = {"tool": "list_dir", "args": {"path": "."}}
        read = {"tool": "read_file", "args": {"path": "small.txt"}}
        run_loop(directory, 20, null, True, noop)  # warm up
        loop_fsync = run_loop(directory, args.steps, null, True, noop)
        loop_nofsync = run_loop(directory, args.steps, null, False, noop)
        with_read = run_loop(directory, args.steps, real, True, read)
        raw_fsync = raw_writes(directory, 2000, True)
        raw_nofsync = raw_writes(directory, 2000, False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"steps per run: {args.steps} (conversation grows with each step)")
    print(f"overhead per step, null tool, fsync:     {loop_fsync * 1e3:8.3f} ms")
    print(f"overhead per step, null tool, no fsync:  {loop_nofsync * 1e3:8.3f} ms")
    print(f"per step with read_file, fsync:          {with_read * 1e3:8.3f} ms")
    print(f"fsync vs none, per agent step (ratio):   {loop_fsync / loop_nofsync:8.2f}x")
    print(f"trajectory record, fsync:                {raw_fsync * 1e6:8.1f} us")
    print(f"trajectory record, no fsync:             {raw_nofsync * 1e6:8.1f} us")
    print(f"fsync vs none, per record (ratio):       {raw_fsync / raw_nofsync:8.1f}x")
    print(f"resident memory after imports:           {base_rss:8.1f} MiB")
    print(f"resident memory now / peak:              {rss_mib():8.1f} / {peak:.1f} MiB")


if __name__ == "__main__":
    main()
