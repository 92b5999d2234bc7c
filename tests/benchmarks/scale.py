"""How big the benchmarks are: full size under `nox -s benchmarks` (which sets
NNBENCH_BENCH_FULL=1), a small smoke size when `nox -s tests` runs each benchmark once,
untimed (--benchmark-disable), to check that it still works."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

FULL = os.environ.get("NNBENCH_BENCH_FULL") == "1"
# epochs per trial of the default suite: its own 30 at full size
EPOCHS = 30 if FULL else 1

LOADS = ("quiet", "busy")  # what runs alongside a measurement: nothing, one busy process


@contextmanager
def alongside(load: str) -> Iterator[None]:
    """Nothing alongside (quiet), or one CPU-bound process (busy: a fair "other job"); at
    the smoke size nothing either way (`nox -s tests` runs a pytest process per core)."""
    if load == "quiet" or not FULL:
        yield
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # it is running before the timing starts
        yield
    finally:
        busy.kill()
        busy.wait()
