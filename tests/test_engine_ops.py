"""The stacked engine's GPU-overhead proxies, counted on the CPU (issue 21, point 3).

On a GPU the step's time is mostly per-op launch and host synchronisation, not
arithmetic, so these counts stand in for it: every aten op the engine dispatches (a
TorchDispatchMode sees each one), and every host round trip among them (`.item()`, a
tensor made from host values, a cast or a copy between devices). The workload is the
issue's: an MLP, batch 64, SGD with momentum, four learning rates per seed, 18 steps
per epoch; its sizes are small because the counts do not depend on them.

Per training step = (ops of a 2-epoch run - ops of a 1-epoch run) / steps per epoch:
one epoch's steps plus its evaluation, diagnostics and metrics read, shared out. Ops
outside the steps = a 1-epoch run's ops minus its steps' (building and finishing).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nnbench import registry
from nnbench.config import TrialSpec, parse_suite
from nnbench.train import build
from nnbench.train.stacked import StackedEngine
from tests.conftest import Quiet

CPU = torch.device("cpu")
TRAIN, TEST, BATCH = 1280, 200, 64
STEPS = (TRAIN - round(TRAIN * 0.1) + BATCH - 1) // BATCH  # 18
# ops that are a host round trip on a GPU
ROUND_TRIPS = ("_local_scalar_dense", "lift_fresh", "_to_copy", "_copy_from")


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ops") / "d.npz"
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (TRAIN + TEST, 48)).astype(np.float32)
    y = rng.integers(0, 10, TRAIN + TEST)
    np.savez(path, x=x[:TRAIN], y=y[:TRAIN], x_test=x[TRAIN:], y_test=y[TRAIN:])
    return path


def _trials(data: Path, seeds: int, activations: str, dropout: str = "[0.0]"
            ) -> list[TrialSpec]:
    sgd = "{{name: sgd, lr: {}, momentum: 0.9}}"
    lrs = ", ".join(sgd.format(lr) for lr in (0.01, 0.02, 0.03, 0.005))
    return parse_suite(f"""
name: ops
task: {{dataset: {{name: file, path: {data}, targets: class}},
        model: {{name: mlp, hidden: [32, 16]}}, loss: cross_entropy, metric: test_accuracy}}
fixed: {{activation: relu, init: kaiming_normal, optimizer: {sgd.format(0.01)},
        schedule: constant, epochs: 2, batch_size: {BATCH}}}
grid: {{activation: {activations}, optimizer: [{lrs}], dropout: {dropout}}}
seeds: {seeds}
""").trials()


def _counts(trials: list[TrialSpec], drawn: list[float] | None = None,
            draw: str = "aten.uniform_.default") -> tuple[float, float, float]:
    """(ops per step, round trips per step, ops outside the steps) of one stacked group;
    `drawn` gets the random draws (`draw`: uniform_) per step. The model's FLOPs, which size a
    CPU's evaluation passes, are counted first: once per shape and process (a forward of
    one example), and never on a GPU (`build.eval_flops`)."""
    build.eval_flops(trials[0], CPU)
    runs = []
    for epochs in (1, 2):
        specs = [replace(t, epochs=epochs) for t in trials]
        engine = StackedEngine(CPU, population=specs)
        assert len(engine.plan(specs).groups) == 1
        with _Count() as count:
            results = list(engine.run(specs, Quiet()))
        assert {r.status for r in results} == {"finished"}
        runs.append(count.ops)
    one, two = runs
    per_step = (sum(two.values()) - sum(one.values())) / STEPS
    if drawn is not None:
        drawn.append((two[draw] - one[draw]) / STEPS)
    trips = sum(two[k] - one[k] for k in two if any(r in k for r in ROUND_TRIPS)) / STEPS
    return per_step, trips, sum(one.values()) - per_step * STEPS


@pytest.fixture(scope="module")
def counts(data: Path) -> dict[str, tuple[float, float, float]]:
    return {"8 lanes": _counts(_trials(data, 2, "[relu]")),
            "32 lanes": _counts(_trials(data, 8, "[relu]")),
            "32 lanes, 2 activations": _counts(_trials(data, 4, "[relu, tanh]"))}


def test_a_training_step_is_at_most_100_ops_whatever_the_lanes_and_activations(
        counts: dict[str, tuple[float, float, float]]) -> None:
    per_step = {case: c[0] for case, c in counts.items()}
    assert max(per_step.values()) <= 100, per_step
    assert per_step["32 lanes"] <= 1.1 * per_step["8 lanes"], per_step


def test_training_makes_no_host_round_trip_but_the_epochs_metrics_read(
        counts: dict[str, tuple[float, float, float]]) -> None:
    trips = {case: c[1] for case, c in counts.items()}
    assert max(trips.values()) <= 0.05, trips


def test_the_ops_outside_the_steps_do_not_grow_with_the_lanes(
        counts: dict[str, tuple[float, float, float]]) -> None:
    """Building (every lane's layer drawn at once) and finishing (one test evaluation, one
    weights read) a group of 32 lanes dispatches about as many ops as one of 8."""
    outside = {case: c[2] for case, c in counts.items()}
    assert outside["32 lanes"] <= 1.25 * outside["8 lanes"], outside


def test_dropout_adds_one_draw_per_lane_and_layer_and_a_few_ops_for_all_lanes(
        data: Path) -> None:
    """Each lane's dropout masks come from its own generator (as the serial engine's), so
    a step draws once per lane and dropout layer (the MLP has two); the masks are then
    compared and scaled for all the lanes at once: the step's other ops do not grow with
    the lanes. (Before, each lane's mask was made apart: 333 ops per step at 32 lanes.)"""
    plain, plain_drawn = _counts(_trials(data, 8, "[relu]"))[0], 0.0
    steps: dict[int, float] = {}
    for seeds in (2, 8):
        drawn: list[float] = []
        steps[4 * seeds] = _counts(_trials(data, seeds, "[relu]", "[0.2]"), drawn)[0]
        assert drawn == [2 * 4 * seeds + plain_drawn], drawn
        steps[4 * seeds] -= drawn[0]
    assert steps[32] <= 1.1 * steps[8], steps  # (each lane's shuffle: once per epoch)
    assert steps[32] <= min(100, plain + 2 * 10), (steps, plain)  # ≤ 10 a dropout layer


def test_augmentation_adds_one_op_per_lane_and_draw_and_a_few_for_all_lanes(
        data: Path) -> None:
    """Each lane's augmentation parameters come from its own generator, so a step draws
    once per lane and draw (a signal's random shift: one, Gaussian noise: one); the rest of
    the sampling and the transforms run once for all the lanes. (Before, each lane was
    sampled apart: its ops grew by about 15 a lane.)"""
    steps: dict[int, float] = {}
    for seeds in (2, 8):
        drawn: list[float] = []
        trials = [replace(t, augmentation=(registry.resolve("augmentation", {
            "name": "random_shift", "max_shift": 2}), registry.resolve("augmentation", {
                "name": "gaussian_noise", "std": 0.1}))) for t in _trials(data, seeds, "[relu]")]
        steps[4 * seeds] = _counts(trials, drawn, "aten.normal_.default")[0]
        assert drawn == [4 * seeds], drawn  # the noise; the shift's uniform_ counted apart
        steps[4 * seeds] -= 2 * drawn[0]
    assert steps[32] <= 1.1 * steps[8], steps


def test_lane_index_gives_the_lanes_on_the_device_as_longs() -> None:
    """The index every lane-wise copy uses (keeping best weights, retiring, clearing
    lanes): on a GPU it goes through pinned memory without blocking; on the CPU as is."""
    from nnbench.train.stacked_model import lane_index

    index = lane_index((3, 0, 2), torch.device("cpu"))
    assert index.dtype == torch.int64 and index.tolist() == [3, 0, 2]
    table = torch.arange(12.0).view(4, 3)
    table[index] = 0.0
    assert table.sum(dim=1).tolist() == [0.0, 12.0, 0.0, 0.0]
