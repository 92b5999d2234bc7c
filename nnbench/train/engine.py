"""The engine boundary: what the runner and tuning hand trials to.

An engine receives trials and a `Listener`, and yields one `TrialResult` per trial it
trains, in any order. The listener is told when a trial starts and after each of its
epochs, and answers `CONTINUE` or `stop(reason)` (pruning); early stopping and
divergence are the engine's own decisions, reported in the result's status. Nothing
outside `nnbench.train` calls a training loop.

Thread policy (CPU): the small models nnbench trains run faster on one intra-op
thread than on two (measured in tests/benchmarks/test_engine_speed.py), so the
serial engine uses 1 thread; several local workers split the cores between them.
The threads used are recorded per trial (`Numerics.threads`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import torch

from nnbench.config import TrialSpec
from nnbench.train.results import Decision, TrialResult

__all__ = ["ENGINES", "Engine", "Listener", "cpu_cores", "default_threads", "make_engine",
           "torch_threads"]

ENGINES = ("serial", "stacked", "auto")


class Listener(Protocol):
    """What an engine reports while it trains."""

    def trial_started(self, spec: TrialSpec) -> bool:
        """Called before training a trial; False: do not train it (another worker has it)."""
        ...

    def epoch_finished(self, spec: TrialSpec, metrics: dict[str, float]) -> Decision:
        """One epoch's metrics (and `epoch`); answer CONTINUE or stop(reason)."""
        ...


class Engine(Protocol):
    """Trains trials; yields one TrialResult per trial it trains, in any order."""

    name: str
    device: torch.device

    def run(self, trials: Sequence[TrialSpec], listener: Listener) -> Iterator[TrialResult]: ...


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(engine: str, device: torch.device, workers: int = 1) -> int:
    """Intra-op threads for one worker of `engine` on `device`.

    Serial: 1 (one small model per step is faster on one thread). Stacked: the worker's
    share of the cores (a group's batched matmuls are large enough to split), at most
    `OMP_NUM_THREADS` when that is set, as it caps torch's own default: on a machine other
    jobs keep busy, OpenMP threads spin waiting for each other (a small MLP's steps ran 11×
    slower on two threads than on one with two CPU-bound processes alongside, on 2 cores).
    On a GPU the host threads only feed the device: 1.
    """
    if device.type != "cpu" or engine == "serial":
        return 1
    return max(1, min(cpu_cores() // max(1, workers), _omp_num_threads() or cpu_cores()))


def _omp_num_threads() -> int | None:
    """`OMP_NUM_THREADS` as a positive count; None when unset or not one (torch and
    OpenMP then ignore it too)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


@contextmanager
def torch_threads(device: torch.device, threads: int | None,
                  engine: str = "serial") -> Iterator[int]:
    """Run with `threads` intra-op threads (default: `default_threads`), restore after."""
    wanted = threads or default_threads(engine, device)
    before = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)


def make_engine(name: str, device: torch.device, *, keep_checkpoints: bool = False,
                population: Sequence[TrialSpec] | None = None, max_lanes: int | None = None,
                fixed_lanes: int | None = None, workers: int = 1,
                threads: int | None = None) -> Engine:
    """The engine called `name` (serial | stacked | auto) on `device`.

    `auto` stacks every group of at least two same-shaped trials of the `population`
    and trains the rest serially; `stacked` stacks whatever it can (groups of one
    included); both fall back to serial, saying why, for trials they cannot stack.
    """
    from nnbench.train.serial import SerialEngine
    from nnbench.train.stacked import StackedEngine

    if name == "serial":
        return SerialEngine(device, keep_checkpoints=keep_checkpoints,
                            threads=threads or default_threads("serial", device, workers))
    if name in ("stacked", "auto"):
        return StackedEngine(device, keep_checkpoints=keep_checkpoints,
                             threads=threads or default_threads("stacked", device, workers),
                             max_lanes=max_lanes, population=population,
                             fixed_lanes=fixed_lanes, auto=name == "auto")
    raise ValueError(f"unknown engine {name!r}; allowed: {', '.join(ENGINES)}")
