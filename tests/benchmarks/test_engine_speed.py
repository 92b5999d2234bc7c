"""Training throughput (model-epochs per second) on the default suite's 24 trials
(MNIST-1D, MLP 40-256-128-10, batch 64, SGD + momentum; activation × init × 4 seeds):
the serial engine, the stacked engine (one group of 24 lanes) and the notes' DataLoader
loop, in one run (`nox -s benchmarks`, group `engines-default-suite`). Each trains all 24
trials for EPOCHS epochs from the same seeded models; every row's extra_info holds its
model-epochs/s. The `threads` group measures the thread policy (engine.default_threads):
one epoch of the 24 trials (6 at the smoke size) at 1 and at 2 intra-op threads per
engine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch

from nnbench import seeding
from nnbench.config import TrialSpec, load_suite
from nnbench.train import SerialEngine, build_parts, torch_threads
from nnbench.train.stacked import StackedEngine
from tests.benchmarks.notes_loop import notes_epoch
from tests.benchmarks.scale import EPOCHS, FULL
from tests.conftest import REPO, Quiet

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trials() -> list[TrialSpec]:
    specs = [replace(t, epochs=EPOCHS) for t in load_suite(REPO / "suites/default.yaml").trials()]
    assert len(specs) == 24
    build_parts(specs[0], CPU)  # the dataset is generated once, outside the timings
    return specs


def _throughput(benchmark: Any, run: Callable[[], list[float]], model_epochs: int) -> None:
    """Time `run` (returns each trial's final val_accuracy); record model-epochs/s."""
    started = time.perf_counter()
    accuracies = benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    # with --benchmark-disable there are no stats: one untimed call
    seconds = benchmark.stats.stats.median if benchmark.stats else time.perf_counter() - started
    benchmark.extra_info["model_epochs_per_second"] = round(model_epochs / seconds, 2)
    assert all(math.isfinite(a) for a in accuracies)
    assert sum(accuracies) / len(accuracies) > 0.15  # they learn: chance is 0.1


def _engine_run(engine: Any, trials: list[TrialSpec]) -> Callable[[], list[float]]:
    def run() -> list[float]:
        results = list(engine.run(trials, Quiet()))
        assert {r.status for r in results} == {"finished"}
        return [r.history[-1]["val_accuracy"] for r in results]
    return run


@pytest.mark.benchmark(group="engines-default-suite")
def test_serial_engine_throughput(benchmark: Any, trials: list[TrialSpec]) -> None:
    _throughput(benchmark, _engine_run(SerialEngine(CPU), trials), len(trials) * EPOCHS)


@pytest.mark.benchmark(group="engines-default-suite")
def test_stacked_engine_throughput(benchmark: Any, trials: list[TrialSpec]) -> None:
    engine = StackedEngine(CPU, population=trials)
    assert [g.lanes for g in engine.plan(trials).groups] == [24]
    _throughput(benchmark, _engine_run(engine, trials), len(trials) * EPOCHS)


@pytest.mark.benchmark(group="engines-default-suite")
def test_notes_loop_throughput(benchmark: Any, trials: list[TrialSpec]) -> None:
    """The notes' loop as a user runs it: torch's default threads, one model at a time."""

    def run() -> list[float]:
        accuracies = []
        for spec in trials:
            with seeding.trial_rng(spec.seed, CPU):
                parts = build_parts(spec, CPU)  # the same seeded model and split
            optimizer = torch.optim.SGD(parts.model.parameters(), lr=0.01, momentum=0.9)
            epoch = notes_epoch(parts.model, optimizer, parts.data, batch_size=64)
            for _ in range(spec.epochs):
                _, accuracy = epoch()
            accuracies.append(accuracy)
        return accuracies

    _throughput(benchmark, run, len(trials) * EPOCHS)


@pytest.mark.benchmark(group="threads")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("engine", ["serial", "stacked"])
def test_thread_policy(benchmark: Any, trials: list[TrialSpec], engine: str,
                       threads: int) -> None:
    # the smoke size trains one seed of each configuration: where other jobs keep the cores
    # busy, two threads spin waiting for each other
    one_epoch = [replace(t, epochs=1) for t in trials
                 if FULL or t.seed == trials[0].seed]
    built = (SerialEngine(CPU, threads=threads) if engine == "serial"
             else StackedEngine(CPU, threads=threads, population=one_epoch))
    with torch_threads(CPU, threads):
        _throughput(benchmark, _engine_run(built, one_epoch), len(one_epoch))
