"""Local workers: `nnbench run --workers 2` against one worker on the default suite's
24 trials (EPOCHS epochs per trial; one seed, 6 trials, at the smoke size), training
throughput in model-epochs per second, in one run (`nox -s benchmarks`, group
`workers-default-suite`). Each round starts from fresh
MLflow and Optuna stores; a round includes everything a user waits for (the workers'
start-up, their imports, MLflow bookkeeping), not the report.

Serial engine: each of two workers trains one model on one thread, the case where a
second core helps most. For reference, one worker with the stacked engine (the default,
`auto`), which uses both cores inside one process.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from nnbench.config import load_suite
from nnbench.runner import run_suite
from tests.benchmarks.scale import EPOCHS, FULL
from tests.conftest import REPO

_rounds = itertools.count()


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = yaml.safe_load((REPO / "suites" / "default.yaml").read_text())
    raw["fixed"]["epochs"] = EPOCHS
    if not FULL:  # the smoke size: one seed (6 trials) checks the same paths
        raw["seeds"] = 1
        del raw["expect"]  # its claims are seed-paired: they need 2 seeds
    path = tmp_path_factory.mktemp("workers") / "default.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _throughput(benchmark: Any, suite_path: Path, tmp_path: Path, **options: Any) -> None:
    suite = load_suite(suite_path)
    trials = len(suite.trials())

    def run() -> int:
        store = tmp_path / f"round{next(_rounds)}"
        store.mkdir()
        summary = run_suite(suite, device="cpu", tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
                            console=Console(quiet=True), **options)
        return summary.statuses["finished"]

    started = time.perf_counter()
    finished = benchmark.pedantic(run, rounds=2, warmup_rounds=0)
    seconds = benchmark.stats.stats.median if benchmark.stats else time.perf_counter() - started
    benchmark.extra_info["model_epochs_per_second"] = round(trials * EPOCHS / seconds, 2)
    assert finished == trials == (24 if FULL else 6)


@pytest.mark.benchmark(group="workers-default-suite")
def test_one_serial_worker(benchmark: Any, suite_path: Path, tmp_path: Path) -> None:
    _throughput(benchmark, suite_path, tmp_path, engine="serial", workers=1)


@pytest.mark.benchmark(group="workers-default-suite")
def test_two_serial_workers(benchmark: Any, suite_path: Path, tmp_path: Path) -> None:
    _throughput(benchmark, suite_path, tmp_path, engine="serial", workers=2)


@pytest.mark.benchmark(group="workers-default-suite")
def test_one_stacked_worker(benchmark: Any, suite_path: Path, tmp_path: Path) -> None:
    _throughput(benchmark, suite_path, tmp_path, engine="auto", workers=1)
