"""The chaos test at CI size (tests/chaos.py has the driver, the properties and the big run,
`nox -s chaos`): three workers on a fresh PostgreSQL store drain a small suite while one is
SIGKILLed (and replaced), one is SIGSTOPped past the grace period and the PostgreSQL server
is stopped for a few seconds (a restart); the same for a tuned suite with `nnbench tune`
processes. The schedule's seed is new each run (printed, and
with every failure); `NNBENCH_CHAOS_SEED=N` repeats one. Seeds that found bugs of the
queue protocol before it became the only record: 47888 (a worker stopped inside a claim
past the grace period exited 1) and 31381 (a tune worker killed between telling Optuna and
closing its MLflow run left that run RUNNING)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos import Plan, grid_suite, run_chaos, seed_from_env, tuning_suite
from tests.conftest import Postgres


@pytest.mark.slow
def test_workers_drain_a_suite_through_kills_stops_and_an_outage(
        postgres: Postgres, tmp_path: Path, mlflow_store: Callable[[Path], str]) -> None:
    path = tmp_path / "chaos.yaml"
    # 6 epochs: at 2, a fast machine drained the suite (0.1 s a trial) before the schedule's
    # first reading of the progress, and no event fired
    path.write_text(grid_suite("chaos", trials=12, epochs=6))
    plan = Plan(workers=3, kills=1, stops=1, outages=1, seed=seed_from_env(), engine="serial")
    chaos = run_chaos(plan, path, postgres, tmp_path, mlflow_store(tmp_path / "reference.db"))
    assert chaos.fired == 3, chaos.describe()


@pytest.mark.slow
def test_tune_workers_meet_every_budget_through_kills_stops_and_an_outage(
        postgres: Postgres, tmp_path: Path) -> None:
    path = tmp_path / "chaos_tune.yaml"
    # 2 studies of 4 Optuna trials, each tuned point re-run over 2 seeds: 12 runs
    path.write_text(tuning_suite("chaos_tune", points=2, budget=4, seeds=2, epochs=6))
    # one `nnbench tune` (it renders the report at its end: seconds of CPU) and two `nnbench
    # worker` processes, which is what `nnbench tune --workers N` starts on a tuned suite
    plan = Plan(workers=3, kills=1, stops=1, outages=1, seed=seed_from_env(), engine="serial",
                commands=("tune", "worker", "worker"))
    chaos = run_chaos(plan, path, postgres, tmp_path)
    assert chaos.fired == 3, chaos.describe()
