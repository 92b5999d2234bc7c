"""Time-to-target and performance profiles on synthetic results whose answers are known:
hand-computed times with seeds that never reach the target, ties, a task nobody solves,
and a seed that is left out because one of its trials has no result. The IQM across tasks
and the stratified bootstrap behind its interval and the profiles' bands are checked
against rliable itself (`rliable.metrics.aggregate_iqm`, `rliable.library`'s
`get_interval_estimates` and `create_performance_profile`) on a synthetic score matrix."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nnbench.config.benchmark import Target
from nnbench.results.profiles import (
    BOOTSTRAP_SEED,
    MEASURES,
    RESAMPLES,
    Measure,
    performance_profiles,
    stratified_indices,
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
    # the t interval, 2 ± 2.48, cut at what is possible: 1 epoch to the 3 run (it showed
    # -0.48 epochs)
    assert 2.0 - _half([2, 1, 3]) < 0 and 2.0 + _half([2, 1, 3]) > 3
    assert (a["epochs_low"], a["epochs_high"]) == (1.0, 3.0)
    assert a["seconds_mean"] == pytest.approx(6.5 / 3)
    assert a["seconds_high"] - a["seconds_mean"] == pytest.approx(_half([3, 0.5, 3]))
    assert a["seconds_low"] == 0.0  # 2.17 - 3.59, cut at 0 s
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
    # A differs between its seeds only on P4 (never / the fastest): a stratified resample
    # draws P4's two runs from {never, fastest}, so rho(1) is 4/8, 5/8 or 6/8 with chances
    # 1/4, 1/2, 1/4; the 95% band is [0.5, 0.75] (a t interval over 2 seeds: ±1.59)
    assert (a1["low"], a1["high"]) == (0.5, 0.75)
    b2 = curve.loc[("B", 2.0)]  # the same in both seeds: no spread
    assert (b2["mean"], b2["low"], b2["high"]) == (0.75, 0.75, 0.75)
    # scores s = 1 / ratio over the 8 runs (2 seeds × 4 tasks), IQM = mean of the middle 4:
    #   A: 0 0 0 | 0 1 1 1 | 1 (seed 1 reached P4)   -> 0.75, resampled P4: [0.5, 1]
    #   B: 0 0 | 1/2 1/2 1 1 | 1 1, both seeds alike  -> 0.75, no spread
    #   C: 0 0 | 1/3 1/3 1/2 1/2 | 1 1                -> 5/12
    table = profiles.iqm.set_index("config")
    assert table["runs"].tolist() == [8, 8, 8]
    assert tuple(table.loc["A", ["iqm", "low", "high"]]) == (0.75, 0.5, 1.0)
    assert tuple(table.loc["B", ["iqm", "low", "high"]]) == (0.75, 0.75, 0.75)
    assert table.loc["C", "iqm"] == pytest.approx(5 / 12)
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


@pytest.fixture(scope="module")
def rliable_library() -> types.ModuleType:
    """`rliable.library`, imported without running `arch/__init__.py` (which imports
    `arch.univariate`, broken with pandas 3): `arch` is entered as a bare package, so only
    `arch.bootstrap`, all rliable uses, loads. `sys.modules` is restored afterwards."""
    spec = importlib.util.find_spec("arch")
    assert spec is not None and spec.submodule_search_locations is not None
    before = {name: module for name, module in sys.modules.items()
              if name == "arch" or name.startswith("arch.")}
    package = types.ModuleType("arch")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["arch"] = package
    try:
        library = importlib.import_module("rliable.library")
    finally:
        for name in [n for n in sys.modules if n == "arch" or n.startswith("arch.")]:
            del sys.modules[name]
        sys.modules.update(before)
    return library


CONFIGS, TASKS, SEEDS = ["A", "B", "C"], ["P1", "P2", "P3", "P4", "P5"], [0, 1, 2, 3, 4, 5]
REPS = 500  # fewer than the reports' RESAMPLES: rliable's arch loop is slow


def _synthetic_times() -> pd.DataFrame:
    """Seconds to target drawn at random (no ties), about one run in six never reaches."""
    rng = np.random.default_rng(19)
    seconds = rng.uniform(1.0, 12.0, (len(CONFIGS), len(TASKS), len(SEEDS)))
    seconds[rng.random(seconds.shape) < 0.17] = INF
    return pd.DataFrame([{"task": task, "config": config, "seed": seed,
                          "seconds": seconds[c, p, s], "epochs": seconds[c, p, s],
                          "reached": math.isfinite(seconds[c, p, s])}
                         for c, config in enumerate(CONFIGS) for p, task in enumerate(TASKS)
                         for s, seed in enumerate(SEEDS)])


def _score_matrices(times: pd.DataFrame) -> dict[str, np.ndarray]:
    """{config: [seeds, tasks]} normalised scores written out directly: the task and seed's
    best time over configurations divided by the configuration's own (0: never)."""
    t = times.set_index(["config", "task", "seed"])["seconds"]
    matrices = {}
    for config in CONFIGS:
        matrix = np.zeros((len(SEEDS), len(TASKS)))
        for s, seed in enumerate(SEEDS):
            for p, task in enumerate(TASKS):
                best = min(t[(c, task, seed)] for c in CONFIGS)
                own = t[(config, task, seed)]
                matrix[s, p] = best / own if math.isfinite(own) else 0.0
        matrices[config] = matrix
    return matrices


def test_iqm_and_its_stratified_bootstrap_interval_are_rliables(
        rliable_library: types.ModuleType) -> None:
    metrics = importlib.import_module("rliable.metrics")
    times = _synthetic_times()
    assert performance_profiles(times, "seconds", CONFIGS, TASKS).resamples == RESAMPLES
    profiles = performance_profiles(times, "seconds", CONFIGS, TASKS, resamples=REPS)
    assert profiles.bootstrap_seed == BOOTSTRAP_SEED
    table = profiles.iqm.set_index("config")
    for config, matrix in _score_matrices(times).items():
        assert table.loc[config, "iqm"] == pytest.approx(metrics.aggregate_iqm(matrix),
                                                         rel=1e-12)
        assert table.loc[config, "runs"] == matrix.size == 30  # seeds × tasks
        np.random.seed(BOOTSTRAP_SEED)  # rliable's StratifiedBootstrap draws from np.random
        point, interval = rliable_library.get_interval_estimates(
            {config: matrix}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=REPS)
        assert point[config][0] == pytest.approx(table.loc[config, "iqm"], rel=1e-12)
        low, high = interval[config][:, 0]
        assert (table.loc[config, "low"], table.loc[config, "high"]) == pytest.approx(
            (low, high), rel=1e-12)
        assert low < table.loc[config, "iqm"] < high


def test_profile_bands_are_rliables_score_distributions(
        rliable_library: types.ModuleType) -> None:
    """rho(tau) = share of runs with ratio <= tau = share with score >= 1/tau; rliable counts
    score > threshold, so it is given the float just below 1/tau (tau = 1 then counts the
    runs that were the fastest, score exactly 1)."""
    times = _synthetic_times()
    taus = np.array([1.0, 1.1, 1.3, 1.7, 2.2, 3.1, 4.5, 7.0, 10.0])
    curve = performance_profiles(times, "seconds", CONFIGS, TASKS, taus=taus,
                                 resamples=REPS).curve
    thresholds = np.nextafter(1.0 / taus, -INF)
    for config, matrix in _score_matrices(times).items():
        mine = curve[curve["config"] == config]
        np.random.seed(BOOTSTRAP_SEED)
        profile, band = rliable_library.create_performance_profile(
            {config: matrix}, thresholds, reps=REPS)
        assert mine["mean"].tolist() == pytest.approx(profile[config].tolist(), abs=1e-12)
        assert mine["low"].tolist() == pytest.approx(band[config][0].tolist(), abs=1e-12)
        assert mine["high"].tolist() == pytest.approx(band[config][1].tolist(), abs=1e-12)
        assert (mine["high"] > mine["low"]).any()


def test_resamples_are_stratified_seeded_and_reproducible() -> None:
    """Each task's column is resampled from its own runs only; the draws are those of
    `np.random.choice(runs, (runs, tasks))` per resample after `np.random.seed`, as in
    rliable's `StratifiedBootstrap.update_indices`; the same input gives the same bits."""
    indices = stratified_indices(6, 5, resamples=300, seed=BOOTSTRAP_SEED)
    assert indices.shape == (300, 6, 5) and indices.min() == 0 and indices.max() == 5
    np.random.seed(BOOTSTRAP_SEED)
    one_by_one = np.stack([np.random.choice(6, (6, 5), replace=True) for _ in range(300)])
    assert (indices == one_by_one).all()
    matrix = np.arange(30.0).reshape(6, 5)  # column p holds p, p + 5, ...: values mod 5 = p
    resampled = matrix[indices, np.arange(5)[None, None, :]]
    assert ((resampled % 5) == np.arange(5)).all()
    times = _synthetic_times()
    first, again = (performance_profiles(times, "seconds", CONFIGS, TASKS) for _ in range(2))
    pd.testing.assert_frame_equal(first.curve, again.curve, check_exact=True)
    pd.testing.assert_frame_equal(first.iqm, again.iqm, check_exact=True)
