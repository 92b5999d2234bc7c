"""Rendering the report of a 200-trial suite (50 configurations × 4 seeds, 30 epochs):
target under 30 s on the 2-core CPU and a file under 10 MB. (The test run's smoke size:
10 configurations × 2 seeds.)

The trials are synthetic results recorded through the real Tracker into a real MLflow
SQLite store (training 200 trials would measure training, not the report).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnbench.config import Suite, parse_suite
from nnbench.report import render_report
from nnbench.tracking import Tracker
from nnbench.train import TrialResult
from tests.benchmarks.scale import FULL

SUITE = """\
name: two_hundred
description: 50 configurations x 4 seeds of synthetic results
task: {dataset: mnist1d, model: {name: mlp, hidden: [32, 32]}}
fixed:
  activation: relu
  optimizer: {name: sgd, lr: 0.01}
  epochs: 30
  batch_size: 64
grid:
  activation: [sigmoid, tanh, relu, elu, gelu]
  optimizer.lr: {lrs}
seeds: {seeds}
expect:
  - {claim: relu beats sigmoid, a: {activation: relu}, b: {activation: sigmoid}}
"""


def _history(rng: np.random.Generator, quality: float, epochs: int) -> list[dict[str, float]]:
    rows = []
    for epoch in range(1, epochs + 1):
        progress = 1 - math.exp(-epoch / 8)
        acc = 0.1 + (quality - 0.1) * progress + rng.normal(0, 0.01)
        rows.append({"train_loss": 2.3 * (1 - progress) + 0.3, "val_loss": 2.3 * (1 - progress)
                     + 0.4 + rng.normal(0, 0.02), "train_accuracy": min(acc + 0.05, 1.0),
                     "val_accuracy": acc, "grad_norm.layer1": 0.1 * quality,
                     "grad_norm.layer2": 0.2, "grad_norm.layer3": 0.3,
                     "dead_fraction": 0.1, "weight_sparsity": 0.01, "gap_loss": 0.1,
                     "gap_accuracy": 0.05, "lr": 0.01, "epoch_seconds": 0.02,
                     "epoch": float(epoch)})
    return rows


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory,
          mlflow_store: Callable[[Path], str]) -> tuple[Suite, str]:
    lrs = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0] if FULL else [0.01, 0.1]
    text = SUITE.replace("{lrs}", str(lrs)).replace("{seeds}", "4" if FULL else "2")
    suite = parse_suite(text)
    uri = mlflow_store(tmp_path_factory.mktemp("report-speed") / "mlflow.db")
    tracker = Tracker(suite, uri)
    parent = tracker.start_invocation({}, n_todo=len(suite.trials()))
    rng = np.random.default_rng(0)
    for spec in suite.trials():
        quality = 0.3 + 0.1 * ["sigmoid", "tanh", "relu", "elu", "gelu"].index(
            spec.activation.name) + rng.normal(0, 0.01)
        run_id = tracker.start_trial(parent, spec, {})
        history = _history(rng, quality, spec.epochs)
        for metrics in history:
            tracker.log_epoch(run_id, metrics)
        tracker.record_trial(run_id, TrialResult(
            spec=spec, status="finished", history=history,
            final={"test_loss": 1.0, "test_accuracy": history[-1]["val_accuracy"]},
            fingerprint="0" * 16, device="cpu", wall_seconds=1.0, num_params=2730,
            best_epoch=spec.epochs))
        tracker.show(run_id, "finished")
    tracker.end_invocation(parent, "FINISHED")
    return suite, uri


@pytest.mark.benchmark(group="report")
def test_render_report_of_200_trials(benchmark: Any, store: tuple[Suite, str],
                                     tmp_path: Path) -> None:
    suite, uri = store
    path = benchmark.pedantic(render_report, args=(suite,),
                              kwargs={"tracking_uri": uri, "report_dir": tmp_path},
                              rounds=2, iterations=1)
    assert path.stat().st_size < 10_000_000
    html = path.read_text()
    assert html.count("<tr class=") >= len(suite.configurations())  # the leaderboard's rows
    assert f"{len(suite.trials())} finished" in html
