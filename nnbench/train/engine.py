"""The engine boundary: what the runner and tuning hand trials to.

An engine receives trials and a `Listener`, and yields one `TrialResult` per trial it
trains, in any order. The listener is told when a trial starts and after each of its
epochs, and answers `CONTINUE` or `stop(reason)` (pruning); early stopping and
divergence are the engine's own decisions, reported in the result's status. Nothing
outside `nnbench.train` calls a training loop.

Thread policy (CPU): each engine class has its own (`default_threads`). The small
models nnbench trains run faster on one intra-op thread than on two (measured in
tests/benchmarks/test_engine_speed.py), so the serial engine uses 1 thread for a trial
whose training step takes under SPLIT_FLOPS, and above (a ResNet) the count of 1, 2, 4,
... up to the worker's share of the cores (`shared_cores`) that its step runs fastest
with now; the stacked engine takes the worker's share. Which count is fastest for a
large step depends on the load as well: with one busy process alongside on 2 cores, a
ResNet-20 epoch ran 1.3× slower on two threads than on one, and 1.8× faster quiet. So
at its first large trial the serial engine takes the share where no other process wants
a core (`others_running`), else times the trial's step on a throwaway model
(`fastest_threads`, about 0.4 s for ResNet-20) and takes the fastest count, and trains
every large trial with it; the suite's queue keeps the first count chosen
(`TrialQueue.keep`), which every worker then trains with, and so do the trials the suite
gains later. The threads change a trial's numbers (not its quality): they are recorded
per trial (`Numerics.threads`), and `--threads N` fixes them outright.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch

from nnbench.config import TrialSpec
from nnbench.train.results import Decision, TrialResult

__all__ = ["SPLIT_FLOPS", "Engine", "Listener", "cpu_cores", "default_threads",
           "fastest_threads", "make_engine", "others_running", "shared_cores", "torch_threads"]


class Listener(Protocol):
    """What an engine reports while it trains."""

    def trial_started(self, spec: TrialSpec) -> bool:
        """Called before training a trial; False: do not train it (another worker has it)."""
        ...

    def epoch_finished(self, spec: TrialSpec, metrics: dict[str, float]) -> Decision:
        """One epoch's metrics (and `epoch`); answer CONTINUE or stop(reason)."""
        ...


class Engine(Protocol):
    """Trains trials; yields one TrialResult per trial it trains, in any order (the
    registry's protocol: `nnbench.train.engines`)."""

    name: str
    device: torch.device
    lane_limit: int  # the most trials it trains together: the runner claims that many

    def describe(self, trials: Sequence[TrialSpec]) -> list[str]:
        """Lines saying how it will train `trials` (none when there is nothing to say)."""
        ...

    def run(self, trials: Sequence[TrialSpec], listener: Listener) -> Iterator[TrialResult]: ...


# a training step at least this large may run on more than one thread (the serial engine
# times which count of 1 to the worker's share of the cores is fastest: `fastest_threads`)
SPLIT_FLOPS = 1e9


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(engine: str, device: torch.device, workers: int = 1) -> int:
    """Intra-op threads for one worker of the engine called `engine` on `device`: its
    class's own policy (`default_threads`)."""
    from nnbench.train.engines import engine_class

    threads: int = engine_class(engine).default_threads(device, workers)
    return threads


def shared_cores(device: torch.device, workers: int = 1) -> int:
    """The worker's share of the cores, for an engine whose steps are large enough to split
    (a stacked group's batched matmuls): at most `OMP_NUM_THREADS` when that is set, as it
    caps torch's own default: on a machine other jobs keep busy, OpenMP threads spin
    waiting for each other (a small MLP's steps ran 11× slower on two threads than on one
    with two CPU-bound processes alongside, on 2 cores). On a GPU the host threads only
    feed the device: 1."""
    if device.type != "cpu":
        return 1
    return max(1, min(cpu_cores() // max(1, workers), _omp_num_threads() or cpu_cores()))


# a larger thread count is chosen only where its step takes under this share of the time
# of the best smaller count's: fewer threads are kinder to whatever else runs on the cores,
# and a smaller gain is within the timing's noise
MORE_THREADS_TIME = 0.85


def fastest_threads(step: Callable[[], object], most: int, repeats: int = 2,
                    clock: Callable[[], float] = time.perf_counter
                    ) -> tuple[int, dict[int, float]]:
    """The intra-op thread count, of 1, 2, 4, ... and `most`, with which `step` (a training
    step of the workload on a throwaway model, `build.timing_step`) runs fastest now, and
    each count's time: its best of `repeats` timings, taken in turns after one warm-up
    step (oneDNN's primitives). A larger count is chosen only where it takes under
    MORE_THREADS_TIME of the best smaller count's time. The caller's thread count is
    restored."""
    powers = (2 ** k for k in range(most.bit_length()) if 2 ** k < most)
    counts: list[int] = sorted({max(most, 1), *powers})
    best_time = dict.fromkeys(counts, math.inf)
    if len(counts) == 1:
        return counts[0], {}
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(most)
        step()
        for _ in range(repeats):
            for count in counts:
                torch.set_num_threads(count)
                start = clock()
                step()
                best_time[count] = min(best_time[count], clock() - start)
    finally:
        torch.set_num_threads(before)
    chosen: int = counts[0]
    for i, count in enumerate(counts[1:], 1):
        if best_time[count] < MORE_THREADS_TIME * min(best_time[c] for c in counts[:i]):
            chosen = count
    return chosen, best_time


def others_running(samples: int = 5, every: float = 0.001) -> int | None:
    """The most tasks runnable on the machine besides this one over `samples` looks
    `every` seconds apart (Linux's /proc/stat `procs_running`, which counts the reader);
    None where that cannot be read. 0: nothing else wants a core now. Inside a container
    it may count the host's tasks too: then more than 0, which only means "time it"."""
    most = 0
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                running = next(int(line.split()[1]) for line in stat
                               if line.startswith("procs_running "))
        except (OSError, StopIteration, ValueError, IndexError):
            return None
        most = max(most, running - 1)
        if i + 1 < samples:
            time.sleep(every)
    return most


def _omp_num_threads() -> int | None:
    """`OMP_NUM_THREADS` as a positive count (of a list, `4,2`, its first: the outermost
    level's); None when unset or not one (torch and OpenMP then ignore it too). Digits
    only ASCII's: `²` passed `str.isdigit` and then crashed `int` after the run had claimed
    its trials."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isascii() and value.isdigit() and int(value) > 0 else None


@contextmanager
def torch_threads(device: torch.device, threads: int | None,
                  engine: str = "serial") -> Iterator[int]:
    """Run with `threads` intra-op threads (default: engine `engine`'s policy), restore
    after."""
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
                threads: int | None = None, kept_threads: int | None = None,
                keep_threads: Callable[[int], int] | None = None) -> Engine:
    """The registered engine called `name` on `device` (`nnbench.train.engines`), with
    its own thread policy (for `workers` processes sharing the cores) unless `threads` is
    given. For an engine that times its large trials' threads (`own_threads`):
    `kept_threads`, the count the suite's queue keeps (None: none yet), and
    `keep_threads(timed)`, which keeps a count it timed unless another worker's came first,
    and returns the one kept."""
    from nnbench.train.engines import engine_class

    cls = engine_class(name)
    if getattr(cls, "own_threads", False):  # it applies its policy itself, per trial
        policy: dict[str, Any] = {"threads": threads, "workers": workers,
                                  "kept_threads": kept_threads, "keep_threads": keep_threads}
    else:  # the protocol's: the threads it trains with
        policy = {"threads": threads or cls.default_threads(device, workers)}
    engine: Engine = cls(device, keep_checkpoints=keep_checkpoints, max_lanes=max_lanes,
                         population=population, fixed_lanes=fixed_lanes, **policy)
    return engine
