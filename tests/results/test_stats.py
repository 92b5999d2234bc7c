"""Statistics against known truth: planted effects are found, null comparisons reject at
the stated rate, intervals equal a direct computation and cover at their level."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
import pytest

from nnbench.config import parse_suite
from nnbench.results.analysis import claim_verdicts, fit_diagnosis, leaderboard, main_effects
from nnbench.results.stats import ALPHA, ema, holm, paired, t_interval

T_975 = {3: 3.182446305284263, 4: 2.7764451051977987, 7: 2.3646242510102993}  # tables


def test_t_interval_equals_the_textbook_formula() -> None:
    values = [0.5, 0.7, 0.9, 0.6]
    interval = t_interval(values)
    sd = math.sqrt(sum((v - 0.675) ** 2 for v in values) / 3)
    assert interval.mean == pytest.approx(0.675)
    assert interval.sd == pytest.approx(sd)
    assert interval.low == pytest.approx(0.675 - T_975[3] * sd / 2)
    assert interval.high == pytest.approx(0.675 + T_975[3] * sd / 2)
    assert interval.n == 4
    one = t_interval([0.3])
    assert (one.mean, one.n) == (0.3, 1)
    assert math.isnan(one.low)


def test_t_interval_covers_the_true_mean_at_its_level() -> None:
    rng = np.random.default_rng(0)
    trials = 4000
    covered = sum(t.low <= 2.0 <= t.high for t in
                  (t_interval(rng.normal(2.0, 3.0, 5)) for _ in range(trials)))
    sigma = math.sqrt(0.95 * 0.05 / trials)
    assert abs(covered / trials - 0.95) < 3 * sigma


def test_paired_test_finds_a_planted_effect() -> None:
    rng = np.random.default_rng(1)
    result = paired(rng.normal(0.05, 0.01, 8))
    assert result.p < 0.001
    assert result.low < 0.05 < result.high
    assert result.effect_size > 2
    assert result.n == 8


def test_false_positive_rate_of_null_comparisons_is_alpha() -> None:
    rng = np.random.default_rng(2)
    trials = 4000
    rejected = sum(paired(rng.normal(0, 1, 6)).p < ALPHA for _ in range(trials))
    sigma = math.sqrt(ALPHA * (1 - ALPHA) / trials)
    assert abs(rejected / trials - ALPHA) < 3 * sigma


def test_holm_controls_the_family_wise_error_rate() -> None:
    rng = np.random.default_rng(3)
    families = 2000
    any_rejected = sum((holm([paired(rng.normal(0, 1, 5)).p for _ in range(5)]) < ALPHA).any()
                       for _ in range(families))
    sigma = math.sqrt(ALPHA * (1 - ALPHA) / families)
    assert any_rejected / families < ALPHA + 3 * sigma


def test_holm_adjustment_by_hand() -> None:
    adjusted = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])


def test_ema_is_the_notes_recursion() -> None:
    values = pd.Series([3.0, 1.0, 4.0, 1.0, 5.0])
    expected, s = [], None
    for y in values:
        s = y if s is None else 0.9 * s + 0.1 * y
        expected.append(s)
    assert ema(values, 0.9).tolist() == pytest.approx(expected)


SUITE = parse_suite(textwrap.dedent("""\
    name: synthetic
    task: {dataset: mnist1d, model: {name: mlp, hidden: [8]}}
    fixed: {activation: relu, init: default, optimizer: sgd, epochs: 1, batch_size: 8}
    grid:
      activation: [tanh, relu]
      init: [default, xavier_normal]
    seeds: 8
    expect:
      - {claim: tanh beats relu, a: {activation: tanh}, b: {activation: relu}}
      - {claim: relu beats tanh, a: {activation: relu}, b: {activation: tanh}}
      - {claim: xavier beats default, a: {init: xavier_normal}, b: {init: default}}
    """))


def _trials(effect_tanh: float, effect_xavier: float, seeds: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for seed in range(seeds):
        seed_level = rng.normal(0.6, 0.05)  # shared by the seed's configurations
        for activation in ("tanh", "relu"):
            for init in ("default", "xavier_normal"):
                value = (seed_level + effect_tanh * (activation == "tanh")
                         + effect_xavier * (init == "xavier_normal") + rng.normal(0, 0.005))
                rows.append({"config": f"activation={activation}, init={init}", "seed": seed,
                             "status": "finished", "metric": value, "activation": activation,
                             "init": init, "best_epoch": 1, "wall_seconds": 1.0,
                             "test_accuracy": value, "train_accuracy": value + 0.2,
                             "val_accuracy": value})
    return pd.DataFrame(rows)


def test_main_effects_find_the_planted_effect_and_not_the_null() -> None:
    levels, effects = main_effects(_trials(0.03, 0.0), SUITE)
    by_axis = {e.axis: e for e in effects}
    tanh = by_axis["activation"]
    assert (tanh.level, tanh.baseline) == ("tanh", "relu")
    assert tanh.result.diff == pytest.approx(0.03, abs=0.006)
    assert tanh.p_holm < ALPHA
    assert "tanh is better than relu" in tanh.sentence
    assert by_axis["init"].p_holm > ALPHA
    assert "not distinguishable from default at n = 8 seeds" in by_axis["init"].sentence
    baseline = levels[(levels["axis"] == "activation") & levels["baseline"]]
    assert baseline["level"].tolist() == ["relu"]


def test_claims_are_supported_contradicted_or_inconclusive() -> None:
    verdicts = [v.verdict for v in claim_verdicts(_trials(0.03, 0.0), SUITE)]
    assert verdicts == ["supported", "contradicted", "inconclusive"]


def test_leaderboard_marks_the_best_and_keeps_diverged_configurations() -> None:
    trials = _trials(0.03, 0.01)
    trials.loc[trials["config"] == "activation=relu, init=default", "status"] = "diverged"
    table = leaderboard(trials, higher_is_better=True)
    assert table.iloc[0]["config"] == "activation=tanh, init=xavier_normal"
    assert table["best"].tolist() == [True, False, False, False]
    last = table.iloc[-1]
    assert (last["config"], last["n"], last["diverged"]) == ("activation=relu, init=default", 0, 8)
    row = table.iloc[0]
    direct = t_interval(trials[trials["config"] == row["config"]]["metric"])
    assert (row["low"], row["high"]) == pytest.approx((direct.low, direct.high))


def test_fit_diagnosis_applies_the_stated_thresholds() -> None:
    trials = _trials(0.0, 0.0)  # train accuracy 0.8, validation 0.6: gap 0.2, train error 0.2
    table = fit_diagnosis(trials, SUITE)
    assert set(table["verdict"]) == {"overfit"}
    assert table["gap"].iloc[0] == pytest.approx(0.2, abs=0.01)
    trials["train_accuracy"] = 0.5  # training error 0.5 > 0.3: underfit
    assert set(fit_diagnosis(trials, SUITE)["verdict"]) == {"underfit"}
