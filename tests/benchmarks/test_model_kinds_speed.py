"""Every shipped model kind (mlp, cnn, cnn1d, gru, resnet): nnbench's chosen engine and
threads (`make_engine("auto")`, its own thread policy) against the notes' plain loop
(tests/benchmarks/notes_loop.py: DataLoader, `.item()` per step, torch's default threads,
one model at a time), quiet and with one busy process alongside, in one run
(`nox -s benchmarks -- -k kinds`; group `kinds-<kind>-<load>`, two rows each; each row's
extra_info holds its model-epochs/s and the threads it used).

Both train the same trials from the same seeded models and splits; nnbench's time also
holds what the notes' loop does not do (per-epoch diagnostics, the test split, weights'
fingerprints). The workloads (full size):

- mlp: the default suite's MLP 40-256-128-10 on MNIST-1D, batch 64, 8 trials, 5 epochs;
- cnn: the small CNN (16, 32 channels) on digits, batch 64, 8 trials, 5 epochs;
- cnn1d: the notes' 1-D CNN on MNIST-1D (4,000), batch 64, 4 trials, 3 epochs;
- gru: the bidirectional GRU on MNIST-1D (4,000), batch 64, 2 trials, 2 epochs;
- resnet: ResNet-20 on CIFAR-shaped generated images (2,000), batch 128, 1 trial, 3 epochs
  (at 1 epoch the per-trial costs, the test split and oneDNN's set-up, weighed most).

At the smoke size (`nox -s tests`) each runs once, untimed, on a few examples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nnbench import seeding
from nnbench.config import TrialSpec, parse_suite
from nnbench.train import build_parts, make_engine
from nnbench.train.engine import cpu_cores
from tests.benchmarks.notes_loop import notes_epoch
from tests.benchmarks.scale import FULL, LOADS, alongside
from tests.conftest import Quiet

CPU = torch.device("cpu")
KINDS = ("mlp", "cnn", "cnn1d", "gru", "resnet")


def _workload(kind: str, images: Path) -> tuple[str, int, int, int]:
    """(task, batch size, trials, epochs) of a kind, at the benchmark's size."""
    mnist1d = 4000 if FULL else 400
    mlp_examples = 5000 if FULL else 400
    tasks = {
        "mlp": (f"{{dataset: {{name: mnist1d, num_samples: {mlp_examples}}}, "
                f"model: {{name: mlp, hidden: [256, 128]}}}}", 64, 8, 5),
        "cnn": ("{dataset: digits, model: {name: cnn, channels: [16, 32], hidden: [64]}}",
                64, 8, 5),
        "cnn1d": (f"{{dataset: {{name: mnist1d, num_samples: {mnist1d}}}, model: cnn1d}}",
                  64, 4, 3),
        "gru": (f"{{dataset: {{name: mnist1d, num_samples: {mnist1d}}}, model: gru}}",
                64, 2, 2),
        "resnet": (f"{{dataset: {{name: file, path: '{images}', targets: class, "
                   f"input: image}}, model: resnet}}", 128, 1, 3),
    }
    task, batch, trials, epochs = tasks[kind]
    return task, batch, trials if FULL else min(trials, 2), epochs if FULL else 1


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR-shaped random images (3×32×32, 10 classes) in the `file` dataset's format."""
    rng = np.random.default_rng(0)
    n, test = (2000, 500) if FULL else (64, 16)
    path = tmp_path_factory.mktemp("images") / "cifar_shaped.npz"
    np.savez(path, x=rng.random((n, 3, 32, 32), dtype=np.float32), y=rng.integers(0, 10, n),
             x_test=rng.random((test, 3, 32, 32), dtype=np.float32),
             y_test=rng.integers(0, 10, test))
    return path


def _trials(kind: str, images: Path) -> list[TrialSpec]:
    task, batch, trials, epochs = _workload(kind, images)
    lrs = [0.01, 0.02] if trials > 1 else [0.01]
    text = (f"name: {kind}\ntask: {task}\nfixed:\n"
            f"  optimizer: {{name: sgd, lr: 0.01, momentum: 0.9}}\n"
            f"  epochs: {epochs}\n  batch_size: {batch}\n"
            f"grid:\n  optimizer.lr: {lrs}\nseeds: {trials // len(lrs)}\n")
    specs = parse_suite(text).trials()
    assert len(specs) == trials
    return specs


def _measure(benchmark: Any, run: Callable[[], tuple[list[float], int]], model_epochs: int,
             load: str) -> None:
    """Time `run` (returns each trial's last val_accuracy and the threads it used) under
    `load`; record model-epochs/s and the threads."""
    started = time.perf_counter()
    with alongside(load):
        accuracies, threads = benchmark.pedantic(run, rounds=2 if FULL else 1,
                                                 warmup_rounds=0)
    seconds = benchmark.stats.stats.median if benchmark.stats else time.perf_counter() - started
    benchmark.extra_info["model_epochs_per_second"] = round(model_epochs / seconds, 3)
    benchmark.extra_info["threads"] = threads
    assert accuracies and all(math.isfinite(a) for a in accuracies)


@pytest.mark.parametrize("load", LOADS)
@pytest.mark.parametrize("kind", KINDS)
def test_nnbench_chosen_engine(benchmark: Any, images: Path, kind: str, load: str) -> None:
    benchmark.group = f"kinds-{kind}-{load}"
    trials = _trials(kind, images)
    with seeding.trial_rng(trials[0].seed, CPU):
        build_parts(trials[0], CPU)  # the data generated and checked outside the timings

    def run() -> tuple[list[float], int]:
        engine = make_engine("auto", CPU, population=trials)
        results = list(engine.run(trials, Quiet()))
        assert {r.status for r in results} == {"finished"}, [r.reason for r in results]
        return [r.history[-1]["val_accuracy"] for r in results], results[0].numerics.threads

    _measure(benchmark, run, sum(t.epochs for t in trials), load)


@pytest.mark.parametrize("load", LOADS)
@pytest.mark.parametrize("kind", KINDS)
def test_notes_loop(benchmark: Any, images: Path, kind: str, load: str) -> None:
    """The notes' loop as a user runs it: torch's default threads (one per core), one model
    at a time, the same seeded model and split."""
    benchmark.group = f"kinds-{kind}-{load}"
    trials = _trials(kind, images)
    threads = cpu_cores()

    def run() -> tuple[list[float], int]:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            accuracies = []
            for spec in trials:
                with seeding.trial_rng(spec.seed, CPU):
                    parts = build_parts(spec, CPU)
                # the layout a user's model has (build_parts lays a CPU conv net out
                # channels-last for nnbench's engines)
                model = parts.model.to(memory_format=torch.contiguous_format)
                optimizer = torch.optim.SGD(model.parameters(), momentum=0.9,
                                            lr=spec.optimizer.kwargs["lr"])
                epoch = notes_epoch(model, optimizer, parts.data, parts.batch_size)
                for _ in range(spec.epochs):
                    _, accuracy = epoch()
                accuracies.append(accuracy)
            return accuracies, threads
        finally:
            torch.set_num_threads(before)

    _measure(benchmark, run, sum(t.epochs for t in trials), load)
