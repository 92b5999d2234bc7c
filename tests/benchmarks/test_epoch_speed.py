"""One training epoch on MNIST-1D, MLP 40-256-128-10, batch 64, Adam(lr 1e-3):
nnbench's trainer against the DataLoader loop a user writes from the notes
(seed 004, "项目实战" MNIST project: DataLoader(shuffle=True), `.item()` per step,
then an eval loop over a DataLoader with batch 512).

Both include the validation pass; nnbench's epoch also computes its per-epoch
diagnostics (a probe forward/backward). Both use the same data tensors, model shape
and optimizer. Run timed with `nox -s benchmarks`; compare the two rows of the
`epoch-mnist1d` group.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import optim

from nnbench import seeding, train
from nnbench.config import TrialSpec, parse_suite
from tests.benchmarks.notes_loop import notes_epoch

SUITE = """\
name: bench
task: {dataset: mnist1d, model: {name: mlp, hidden: [256, 128]}}
fixed:
  activation: relu
  optimizer: {name: adam, lr: 0.001}
  epochs: 1
  batch_size: 64
"""
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def spec() -> TrialSpec:
    return parse_suite(SUITE).base


@pytest.mark.benchmark(group="epoch-mnist1d")
def test_nnbench_trainer_epoch(benchmark: Any, spec: TrialSpec) -> None:
    with seeding.trial_rng(spec.seed, CPU):
        parts = train.build_parts(spec, CPU)

    def epoch() -> dict[str, float]:
        return train.run_epoch(parts, train.metric_names(spec))

    metrics = benchmark.pedantic(epoch, rounds=8, warmup_rounds=1)
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["val_accuracy"] > 0.2  # it learns: chance is 0.1


@pytest.mark.benchmark(group="epoch-mnist1d")
def test_notes_dataloader_epoch(benchmark: Any, spec: TrialSpec) -> None:
    with seeding.trial_rng(spec.seed, CPU):
        parts = train.build_parts(spec, CPU)  # same data, same model shape and init
    optimizer = optim.Adam(parts.model.parameters(), lr=0.001)
    epoch = notes_epoch(parts.model, optimizer, parts.data, batch_size=64)
    val_loss, val_acc = benchmark.pedantic(epoch, rounds=8, warmup_rounds=1)
    assert math.isfinite(val_loss)
    assert val_acc > 0.2
