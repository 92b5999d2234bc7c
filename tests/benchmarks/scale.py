"""How big the benchmarks are: full size under `nox -s benchmarks` (which sets
NNBENCH_BENCH_FULL=1), a small smoke size when `nox -s tests` runs each benchmark once,
untimed (--benchmark-disable), to check that it still works."""

from __future__ import annotations

import os

FULL = os.environ.get("NNBENCH_BENCH_FULL") == "1"
# epochs per trial of the default suite: its own 30 at full size
EPOCHS = 30 if FULL else 1
