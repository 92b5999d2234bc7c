"""The default suite's 24 trials on a CPU with and without one busy process alongside (a
`while True: pass` loop, the brief's "busy"), the serial and the stacked engine, each in a
process of its own (the OpenMP wait policy is read when torch loads), in one run (`nox -s
benchmarks`, group `engines-under-load`). Side by side: the stacked engine under load as
before nnbench chose the wait policy (OpenMP's default: threads spin while they wait).
Each row's extra_info holds its seconds; the last row holds the ratios:
stacked ≥ 2.5× serial quiet and ≥ 1.5× serial busy (issue 21, point 5), checked at full
size."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.benchmarks.scale import EPOCHS, FULL
from tests.conftest import REPO

SECONDS: dict[str, float] = {}


@contextmanager
def _busy(on: bool) -> Iterator[None]:
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        yield
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()


def _train(engine: str, busy: bool, spinning: bool = False) -> float:
    env_args = ["--spinning"] if spinning else []
    with _busy(busy):
        done = subprocess.run(
            [sys.executable, "-m", "tests.benchmarks.load_child", engine, str(EPOCHS),
             *env_args], cwd=REPO, capture_output=True, text=True, timeout=1800, check=False,
            env=_env(spinning))
    assert done.returncode == 0, done.stderr[-3000:]
    return float(done.stdout.strip().splitlines()[-1])


def _env(spinning: bool) -> dict[str, str]:
    """The caller's environment without OpenMP settings: the engines' own thread policy,
    and nnbench's wait policy (or OpenMP's default where `spinning`)."""
    import os

    return {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}


# full size: every case; the smoke size (`nox -s tests`) checks that both ways of starting
# the child work, without a busy loop taking a core from the other tests
CASES = ([("serial", False, False), ("stacked", False, False), ("serial", True, False),
          ("stacked", True, False), ("stacked", True, True)] if FULL
         else [("stacked", False, False), ("serial", False, True)])


@pytest.mark.benchmark(group="engines-under-load")
@pytest.mark.parametrize(("engine", "busy", "spinning"), CASES,
                         ids=lambda v: str(v))
def test_default_suite_quiet_and_busy(benchmark: Any, engine: str, busy: bool,
                                      spinning: bool) -> None:
    started = time.perf_counter()
    seconds = benchmark.pedantic(_train, args=(engine, busy, spinning), rounds=1,
                                 warmup_rounds=0)
    key = f"{engine}-{'busy' if busy else 'quiet'}{'-spinning' if spinning else ''}"
    SECONDS[key] = seconds
    benchmark.extra_info["training_seconds"] = round(seconds, 3)
    benchmark.extra_info["process_seconds"] = round(time.perf_counter() - started, 3)
    if FULL and len(SECONDS) == len(CASES):  # the last case: the ratios of this run
        quiet = SECONDS["serial-quiet"] / SECONDS["stacked-quiet"]
        busy_ratio = SECONDS["serial-busy"] / SECONDS["stacked-busy"]
        benchmark.extra_info["stacked_vs_serial_quiet"] = round(quiet, 2)
        benchmark.extra_info["stacked_vs_serial_busy"] = round(busy_ratio, 2)
        benchmark.extra_info["sleeping_vs_spinning_busy"] = round(
            SECONDS["stacked-busy-spinning"] / SECONDS["stacked-busy"], 2)
        assert quiet >= 2.5, SECONDS
        assert busy_ratio >= 1.5, SECONDS
