"""Time-to-target and performance profiles on synthetic results whose answers are known:
hand-computed times with seeds that never reach the target, ties, a task nobody solves,
and a seed that is left out because one of its trials has no result."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nnbench.config.benchmark import Target
from nnbench.results.profiles import (
    MEASURES,
    Measure,
    performance_profiles,
    summarize,
    time_to_target,
)

NAN, INF = math.nan, math.inf


def _history(trials: dict[tuple[str, int], tuple[list[float], list[float]]],
             metric: str = "val_accuracy") -> pd.DataFrame:
    rows = [{"config": config, "seed": seed, "epoch": e + 1, metric: value,
             "epoch_seconds": seconds[e]}
            for (config, seed), (values, seconds) in trials.items()
            for e, value in enumerate(values)]
    return pd.DataFrame(rows)


def _half(values: list[float]) -> float:
    """Half-width of the 95% Student-t interval, computed from the textbook formula."""
    x = np.asarray(values)
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def test_time_to_target_by_hand_with_seeds_that_never_reach_it() -> None:
    history = _history({
        ("A", 0): ([0.2, 0.5, 0.7], [1.0, 2.0, 4.0]),  # reached at epoch 2 (equal counts), 3 s
        ("A", 1): ([0.6, 0.8, 0.9], [0.5, 0.5, 0.5]),  # epoch 1, 0.5 s
        ("A", 2): ([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]),  # never
        ("A", 3): ([0.3, 0.4, 0.55], [1.0, 1.0, 1.0]),  # epoch 3, 3 s
        ("B", 0): ([0.1, NAN], [1.0, 1.0]),  # diverged at epoch 2: never
    })
    times = time_to_target(history, Target("val_accuracy", 0.5))
    got = {(r.config, r.seed): (r.reached, r.epochs, r.seconds, r.epochs_run)
           for r in times.itertuples()}
    assert got == {("A", 0): (True, 2.0, 3.0, 3), ("A", 1): (True, 1.0, 0.5, 3),
                   ("A", 2): (False, INF, INF, 3), ("A", 3): (True, 3.0, 3.0, 3),
                   ("B", 0): (False, INF, INF, 2)}

    table = summarize(times).set_index("config")
    a, b = table.loc["A"], table.loc["B"]
    assert (a["seeds"], a["reached"]) == (4, 3)  # the never-reaching seed is counted, apart
    assert a["epochs_mean"] == pytest.approx(2.0)  # (2 + 1 + 3) / 3, not (2 + 1 + 0 + 3) / 4
    assert a["epochs_low"] == pytest.approx(2.0 - _half([2, 1, 3]))
    assert a["epochs_high"] == pytest.approx(2.0 + _half([2, 1, 3]))
    assert a["seconds_mean"] == pytest.approx(6.5 / 3)
    assert a["seconds_high"] - a["seconds_mean"] == pytest.approx(_half([3, 0.5, 3]))
    assert (b["seeds"], b["reached"]) == (1, 0)
    assert math.isnan(b["epochs_mean"]) and math.isnan(b["seconds_mean"])  # not 0, not inf


def test_a_lower_is_better_target_is_reached_at_or_below_it() -> None:
    history = _history({("A", 0): ([1.2, 0.8, 0.9], [1.0, 1.0, 1.0]),
                        ("A", 1): ([1.2, 0.81, 0.7], [1.0, 2.0, 3.0])}, metric="val_rmse")
    times = time_to_target(history, Target("val_rmse", 0.8)).set_index("seed")
    assert times.loc[0, "epochs"] == 2.0 and times.loc[1, "epochs"] == 3.0
    assert times.loc[1, "seconds"] == 6.0


def _times(seed_tables: dict[int, dict[str, dict[str, float]]]) -> pd.DataFrame:
    """{seed: {task: {config: epochs}}} as a times table (seconds = epochs / 2)."""
    return pd.DataFrame([{"task": task, "config": config, "seed": seed, "epochs": t,
                          "seconds": t / 2, "reached": math.isfinite(t)}
                         for seed, tasks in seed_tables.items()
                         for task, row in tasks.items() for config, t in row.items()])


# Seed 0, ratios to each task's best by construction:
#   P1: A 2, B 4, C 2      -> A 1, B 2, C 1     (a tie for the best)
#   P2: A 3, B 3, C 9      -> A 1, B 1, C 3
#   P3: A never, B 5, C 10 -> A inf, B 1, C 2
#   P4: nobody reaches it  -> inf for all       (counts in the denominator)
# Seed 1: P1 twice as slow for everyone (same ratios); on P4 only A reaches it -> A 1.
Table = dict[str, dict[str, float]]
SEED0: Table = {"P1": {"A": 2, "B": 4, "C": 2}, "P2": {"A": 3, "B": 3, "C": 9},
                "P3": {"A": INF, "B": 5, "C": 10}, "P4": {"A": INF, "B": INF, "C": INF}}
SEED1: Table = {**SEED0, "P1": {"A": 4, "B": 8, "C": 4}, "P4": {"A": 7, "B": INF, "C": INF}}
RHO = {  # rho(config, seed, tau) at the taus where the profile steps
    ("A", 0): {1: 0.5, 2: 0.5, 3: 0.5, 10: 0.5}, ("A", 1): {1: 0.75, 2: 0.75, 3: 0.75, 10: 0.75},
    ("B", 0): {1: 0.5, 2: 0.75, 3: 0.75, 10: 0.75}, ("B", 1): {1: 0.5, 2: 0.75, 3: 0.75, 10: 0.75},
    ("C", 0): {1: 0.25, 2: 0.5, 3: 0.75, 10: 0.75}, ("C", 1): {1: 0.25, 2: 0.5, 3: 0.75, 10: 0.75},
}


@pytest.mark.parametrize("measure", MEASURES)
def test_profile_known_by_construction(measure: Measure) -> None:
    times = _times({0: SEED0, 1: SEED1})
    profiles = performance_profiles(times, measure, ["A", "B", "C"], ["P1", "P2", "P3", "P4"],
                                    tau_min=1, tau_max=10)
    assert profiles.seeds == (0, 1) and profiles.incomplete == ()
    per_seed = {(r.config, r.seed, r.tau): r.rho for r in profiles.per_seed.itertuples()}
    assert sorted({tau for _, _, tau in per_seed}) == [1, 2, 3, 10]  # every step, no more
    for (config, seed), by_tau in RHO.items():
        for tau, rho in by_tau.items():
            assert per_seed[(config, seed, tau)] == rho, (config, seed, tau)
    ratios = profiles.ratios.set_index(["task", "config", "seed"])["ratio"]
    assert ratios[("P3", "A", 0)] == INF and ratios[("P4", "B", 0)] == INF
    assert ratios[("P1", "A", 0)] == ratios[("P1", "C", 0)] == 1.0  # ties share the best

    curve = profiles.curve.set_index(["config", "tau"])
    a1 = curve.loc[("A", 1.0)]
    assert a1["mean"] == pytest.approx(0.625) and a1["n"] == 2
    assert a1["high"] - a1["mean"] == pytest.approx(_half([0.5, 0.75]))
    b2 = curve.loc[("B", 2.0)]  # the same in both seeds: no spread
    assert (b2["mean"], b2["low"], b2["high"]) == (0.75, 0.75, 0.75)
    # nobody reaches P4 in seed 0, so no configuration's profile reaches 1 there
    assert max(rho for (_, seed, _), rho in per_seed.items() if seed == 0) == 0.75


def test_a_seed_without_every_result_is_left_out_of_the_profile() -> None:
    times = _times({0: SEED0, 1: SEED1, 2: {"P1": {"A": 1, "B": 1, "C": 1}}})
    profiles = performance_profiles(times, "epochs", ["A", "B", "C"], ["P1", "P2", "P3", "P4"],
                                    seeds=[0, 1, 2, 3])  # seed 3: no result at all
    assert profiles.seeds == (0, 1) and profiles.incomplete == (2, 3)
    assert set(profiles.per_seed["seed"]) == {0, 1}


def test_a_benchmark_where_nobody_reaches_any_target() -> None:
    never = {"P1": {"A": INF, "B": INF}, "P2": {"A": INF, "B": INF}}
    profiles = performance_profiles(_times({0: never, 1: never}), "epochs", ["A", "B"],
                                    ["P1", "P2"], tau_min=1, tau_max=4)
    assert list(profiles.curve["tau"].unique()) == [1.0, 4.0]
    assert (profiles.curve["mean"] == 0).all() and (profiles.per_seed["rho"] == 0).all()
