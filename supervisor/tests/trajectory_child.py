"""Child process for the durability test: append records forever, acknowledging each.

Usage: ``python trajectory_child.py FILE SEED``. After ``write`` returns (the record is
fsynced), its ``seq`` is printed on stdout; the parent kills this process at random.
Record sizes vary up to 200 kB so that a kill can land inside a large write.
"""

import random
import sys
from pathlib import Path

from sandbox_supervisor.trajectory import TrajectoryWriter

path, seed = Path(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
with TrajectoryWriter(path, f"child-{seed}") as writer:
    while True:
        size = rng.choice([10] * 12 + [1000] * 6 + [20_000, 200_000])
        record = writer.write("tool_result", output="x\n{}" * (size // 4), seed=seed)
        sys.stdout.write(f"{record['seq']}\n")
        sys.stdout.flush()
