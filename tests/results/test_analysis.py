"""The report's comparisons on synthetic per-trial tables with known answers: baselines,
the best against its runner-up, interactions and reversals, what cannot be compared."""

from __future__ import annotations

import itertools
import re
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nnbench.config import Suite, SuiteError, parse_suite
from nnbench.config.spec import value_label
from nnbench.results.analysis import (
    best_versus,
    claim_verdicts,
    comparisons_table,
    interaction_tests,
    interactions,
    leaderboard,
    main_effects,
)
from nnbench.results.stats import holm

SUITE = """\
name: synthetic
task: {{dataset: {{name: mnist1d, num_samples: 600}}, model: {{name: mlp, hidden: [8]}}}}
fixed: {{activation: {fixed}, init: kaiming_normal, optimizer: {{name: sgd, lr: 0.05}},
        epochs: 2, batch_size: 32}}
grid:
  activation: [sigmoid, tanh, relu]
  init: [xavier_normal, kaiming_normal]
seeds: {seeds}
"""
# mean test accuracy per (activation, init): xavier beats kaiming on average, but not
# with sigmoid, where kaiming scores higher
MEANS = {("sigmoid", "xavier_normal"): 0.60, ("sigmoid", "kaiming_normal"): 0.70,
         ("tanh", "xavier_normal"): 0.85, ("tanh", "kaiming_normal"): 0.75,
         ("relu", "xavier_normal"): 0.90, ("relu", "kaiming_normal"): 0.80}


def _suite(fixed: str = "relu", seeds: int = 6) -> Suite:
    return parse_suite(textwrap.dedent(SUITE.format(fixed=fixed, seeds=seeds)))


def _trials(seeds: int = 6, noise: float = 0.005) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for (activation, init), seed in itertools.product(MEANS, range(seeds)):
        rows.append({"config": f"activation={activation}, init={init}", "seed": seed,
                     "status": "finished", "activation": activation, "init": init,
                     "metric": MEANS[activation, init] + noise * rng.standard_normal(),
                     "best_epoch": 2, "wall_seconds": 1.0, "num_params": 100})
    return pd.DataFrame(rows)


def test_levels_are_compared_with_the_fixed_value_seed_paired() -> None:
    levels, family = main_effects(_trials(), _suite())
    assert family.notes == []
    pairs = {(c.axis, c.a, c.b) for c in family.rows}
    assert pairs == {("activation", "sigmoid", "relu"), ("activation", "tanh", "relu"),
                     ("init", "xavier_normal", "kaiming_normal")}
    assert all(c.result.n == 6 and c.p_holm < 0.05 for c in family.rows)
    sigmoid = next(c for c in family.rows if c.a == "sigmoid")
    assert abs(sigmoid.result.diff - (-0.20)) < 0.01 and sigmoid.result.p_improvement == 0.0
    assert "< 0.0001" in sigmoid.sentence  # p-values that small print as such
    assert set(levels[levels["baseline"]]["level"]) == {"relu", "kaiming_normal"}


def test_grid_and_ablation_levels_are_averaged_like_for_like() -> None:
    """A grid (activation × init) and an ablated learning rate (0.3, at the fixed relu
    and kaiming only): relu's mean pooled the ablation's trial in (0.80 instead of 0.85),
    and lr 0.05's mean was over all six grid cells (0.77) against 0.3's one (0.70), while
    the figure said "averaged over the other axes"."""
    suite = parse_suite(textwrap.dedent(SUITE.format(fixed="relu", seeds=6))
                        + "ablate:\n  optimizer.lr: [0.3]\n")
    grid = _trials(noise=0.0).assign(**{"optimizer.lr": "0.05"})
    ablation = grid[(grid["activation"] == "relu") & (grid["init"] == "kaiming_normal")]
    ablation = ablation.assign(**{"optimizer.lr": "0.3", "metric": 0.70})
    levels, family = main_effects(pd.concat([grid, ablation], ignore_index=True), suite)
    mean = {(r.axis, r.level): r.mean for r in levels.itertuples()}
    assert mean["activation", "relu"] == pytest.approx(0.85)  # the grid's relu cells
    assert mean["optimizer.lr", "0.05"] == pytest.approx(0.80)  # at relu and kaiming
    assert mean["optimizer.lr", "0.3"] == pytest.approx(0.70)
    lr = next(c for c in family.rows if c.axis == "optimizer.lr")
    assert lr.result.diff == pytest.approx(-0.10)
    # the activation × lr heatmap: (relu, 0.05) over kaiming only, where (relu, 0.3) ran
    means, _ = interactions(pd.concat([grid, ablation], ignore_index=True), "activation",
                            "optimizer.lr", suite.varied_axes, ablates=True)
    assert means.loc["relu", "0.05"] == pytest.approx(0.80)
    assert means.loc["relu", "0.3"] == pytest.approx(0.70)
    assert means.loc["tanh", "0.05"] == pytest.approx(0.75)  # tanh at kaiming
    assert "optimizer.lr: each level's mean is over the 6 of 36 cells (a seed and the " \
           "other axes' levels) that every level of optimizer.lr was trained at, so that its " \
           "levels are compared like for like" in family.notes


def _design(text: str, value: Callable[[dict[str, Any]], float],
            status: Callable[[dict[str, Any]], str] = lambda r: "finished") -> pd.DataFrame:
    """A per-trial table as load_results builds it: every trial of the suite, its axes'
    level labels, `value(row)` as its metric."""
    suite = parse_suite(textwrap.dedent(text))
    axes = suite.varied_axes
    rows = []
    for spec in suite.trials():
        row: dict[str, Any] = {"config": spec.label(axes), "seed": spec.seed,
                               **{a: value_label(a, spec.value(a)) for a in axes}}
        row.update(status=status(row), best_epoch=1, wall_seconds=1.0, num_params=1)
        row["metric"] = value(row) if row["status"] == "finished" else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


ABLATED = SUITE.format(fixed="relu", seeds=4) + "ablate:\n  optimizer.lr: [0.3]\n"


def test_a_baseline_that_finished_only_outside_the_shared_cells_keeps_its_row() -> None:
    """The fixed configuration (relu, kaiming, lr 0.05) diverged on every seed: lr 0.05
    finished only on the grid, outside the one cell lr 0.3 shares with it. Its row, the
    baseline, vanished, and a note called it unfinished."""
    base = {"activation": "relu", "init": "kaiming_normal", "optimizer.lr": "0.05"}
    trials = _design(ABLATED, lambda r: MEANS[r["activation"], r["init"]]
                     - (0.1 if r["optimizer.lr"] == "0.3" else 0.0) + 0.001 * r["seed"],
                     lambda r: "diverged" if all(r[k] == v for k, v in base.items())
                     else "finished")
    levels, family = main_effects(trials, parse_suite(textwrap.dedent(ABLATED)))
    lr = levels[levels["axis"] == "optimizer.lr"].set_index("level")
    assert set(lr.index) == {"0.05", "0.3"} and bool(lr.loc["0.05", "baseline"])
    assert "optimizer.lr: 0.05 finished only outside those cells; its mean is over its own " \
           "cells" in family.notes
    assert not any("has no finished trial" in note for note in family.notes)


def test_shared_cells_whose_trials_finished_without_a_metric_do_not_stop_the_report() -> None:
    """The fixed level (relu) never finished, and the one cell the ablation shares with the
    grid finished without a finite metric: choosing the best level from those means raised
    "Encountered all NA values", and the whole report failed."""
    text = SUITE.format(fixed="relu", seeds=3).replace(
        "grid:\n  activation: [sigmoid, tanh, relu]\n  init: [xavier_normal, kaiming_normal]\n",
        "grid:\n  activation: [tanh, gelu]\n  optimizer.lr: [0.05, 0.3]\nablate:\n"
        "  init: [xavier_normal]\n")
    suite = parse_suite(textwrap.dedent(text))
    trials = _design(text, lambda r: float("nan") if (r["optimizer.lr"], r["init"]) == (
        "0.05", "kaiming_normal") else {"tanh": 0.7, "gelu": 0.8}[r["activation"]]
        + 0.001 * r["seed"], lambda r: "diverged" if r["activation"] == "relu" else "finished")
    levels, family = main_effects(trials, suite)
    activation = levels[levels["axis"] == "activation"].set_index("level")
    assert set(activation.index) == {"tanh", "gelu"}
    assert activation["mean"].notna().all()  # over finite metrics, its own cells if need be
    assert any("every level is compared with the best level, gelu" in n for n in family.notes)
    interaction_tests(trials, suite)  # no exception
    means, _ = interactions(trials, "activation", "optimizer.lr", suite.varied_axes, True)
    assert means.loc["gelu", "0.3"] == pytest.approx(0.801)


def test_a_reversal_reads_its_own_axis_where_two_axes_share_level_names() -> None:
    """dropout 0.1 and l2 0.1: the reversal of l2's 0.1 vs 0.0 'with dropout=0.0' cited a
    test of dropout's 0.1 vs 0.0, and l2=0.1's one finished seed counted as tested."""
    text = SUITE.format(fixed="relu", seeds=6).replace(
        "grid:\n  activation: [sigmoid, tanh, relu]\n  init: [xavier_normal, kaiming_normal]\n",
        "grid:\n  dropout: [0.0, 0.1]\n  l2: [0.0, 0.1, 0.2]\n")
    means = {("0.0", "0.0"): 0.70, ("0.1", "0.0"): 0.90, ("0.0", "0.1"): 0.80,
             ("0.1", "0.1"): 0.75, ("0.0", "0.2"): 0.80, ("0.1", "0.2"): 0.75}
    rng = np.random.default_rng(1)
    trials = _design(text, lambda r: means[r["dropout"], r["l2"]] + 0.01 * rng.standard_normal(),
                     lambda r: "diverged" if r["l2"] == "0.1" and r["seed"] > 0 else "finished")
    (tests,) = interaction_tests(trials, parse_suite(textwrap.dedent(text)))
    by_dropout, *by_l2 = tests.reversals
    assert "but not with l2=0.1 (" in by_dropout and "; at l2=0.1 no interaction test is " \
           "behind it" in by_dropout
    (l2_01,) = [r for r in by_l2 if "0.0 − 0.1 =" in r]
    assert "but not with dropout=0.0" in l2_01 and "no interaction test is behind it" in l2_01
    assert "Holm-adjusted" not in l2_01  # the dropout test is not its own
    assert "(dropout=0.1 vs 0.0) × (l2=0.1 vs 0.0) (n = 1)" in " ".join(tests.family.notes)


def test_a_fixed_value_outside_the_grid_compares_every_level_with_the_best() -> None:
    suite = _suite(fixed="gelu")
    _, family = main_effects(_trials(), suite)
    assert family.notes == ["activation: the fixed value gelu is not a level of the grid, "
                            "so it was not trained; every level is compared with the best "
                            "level, relu"]
    assert {(c.a, c.b) for c in family.rows if c.axis == "activation"} == {
        ("sigmoid", "relu"), ("tanh", "relu")}


def test_one_seed_gives_no_row_and_says_why_once() -> None:
    _, family = main_effects(_trials(seeds=1), _suite(seeds=1))
    assert family.rows == []
    assert family.notes == ["No seed-paired test: a paired test needs at least 2 seeds and "
                            "the suite has 1; the levels' means are shown, not compared"]
    verdicts, notes = claim_verdicts(_trials(seeds=1), _suite(seeds=1))
    assert verdicts == [] and notes == []  # the suite declares no claims


def test_the_best_is_tested_against_the_runner_up_and_every_overlapping_interval() -> None:
    trials = _trials()
    near = trials["config"] == "activation=tanh, init=xavier_normal"
    trials.loc[near, "metric"] += 0.049  # within noise of the best (relu + xavier)
    table = leaderboard(trials, higher_is_better=True)
    family = best_versus(trials, table, _suite())
    best = "activation=relu, init=xavier_normal"
    assert table["config"].iloc[0] == best
    overlapping = table[(table["low"] <= table["high"].iloc[0])
                        & (table["high"] >= table["low"].iloc[0])]["config"].iloc[1:]
    expected = set(overlapping) | {table["config"].iloc[1]}
    assert {c.b for c in family.rows} == expected and {c.a for c in family.rows} == {best}
    assert all(c.kind == "best_vs" and c.result.n == 6 for c in family.rows)


def test_a_configuration_of_one_finished_seed_inside_the_best_s_interval_is_named() -> None:
    """One finished seed has no interval; it was never 'overlapping', so the best's
    section left it out silently although its value lay inside the best's interval."""
    trials = _trials(noise=0.02)
    lone = trials["config"] == "activation=tanh, init=xavier_normal"
    trials.loc[lone & (trials["seed"] > 0), "status"] = "diverged"
    best = "activation=relu, init=xavier_normal"
    runner_up = trials["config"] == "activation=relu, init=kaiming_normal"
    trials.loc[runner_up, "metric"] += 0.095  # the runner-up, tested in any case
    trials.loc[lone & (trials["seed"] == 0), "metric"] = \
        trials[trials["config"] == best]["metric"].mean() - 0.012
    table = leaderboard(trials, higher_is_better=True)
    assert list(table["config"].iloc[:3]) == [best, "activation=relu, init=kaiming_normal",
                                              "activation=tanh, init=xavier_normal"]
    assert table["low"].iloc[0] < table["mean"].iloc[2] < table["high"].iloc[0]
    family = best_versus(trials, table, _suite())
    assert "activation=tanh, init=xavier_normal" not in {c.b for c in family.rows}
    assert (f"{best} vs activation=tanh, init=xavier_normal (n = 1)"
            in " ".join(family.notes)), family.notes


def test_a_reversal_says_which_of_its_levels_no_test_is_behind() -> None:
    """xavier beats kaiming on average, but not with sigmoid (6 seeds, tested) or tanh (one
    seed finished, untested): the sentence cited the sigmoid test as if it covered both."""
    trials = _trials(noise=0.001)
    trials.loc[(trials["activation"] == "relu") & (trials["init"] == "xavier_normal"),
               "metric"] += 0.05
    tanh = trials["activation"] == "tanh"
    trials.loc[tanh & (trials["init"] == "xavier_normal"), "metric"] = 0.74
    trials.loc[tanh & (trials["seed"] > 0), "status"] = "diverged"
    (tests,) = interaction_tests(trials, _suite())
    (sentence,) = [t for t in tests.reversals if t.startswith("xavier_normal beats")]
    assert "but not with activation=sigmoid (" in sentence
    assert "or activation=tanh (" in sentence
    assert "; at activation=tanh no interaction test is behind it (fewer than 2 seeds " \
           "finished the cells it compares); the interaction test gives Holm-adjusted p" \
           in sentence, sentence
    assert "Not compared, because fewer than 2 seeds finished both sides (a paired test " \
           "needs at least 2): (activation=tanh vs relu) × (init=xavier_normal vs " \
           "kaiming_normal) (n = 1)" \
           in tests.family.notes, tests.family.notes


def test_interactions_name_where_an_average_effect_reverses() -> None:
    (tests,) = interaction_tests(_trials(), _suite())
    assert (tests.a, tests.b) == ("activation", "init")
    rows = {(c.a, c.b): c for c in tests.family.rows}
    # each level against the main effects' baseline: (3 − 1) activations × (2 − 1) inits
    assert set(rows) == {("sigmoid vs relu", "xavier_normal vs kaiming_normal"),
                         ("tanh vs relu", "xavier_normal vs kaiming_normal")}
    flip = rows["sigmoid vs relu", "xavier_normal vs kaiming_normal"]
    assert abs(flip.result.diff - (-0.20)) < 0.01 and flip.p_holm < 0.05
    assert abs(rows["tanh vs relu", "xavier_normal vs kaiming_normal"].result.diff) < 0.01
    reversal = next(r for r in tests.reversals if r.startswith("xavier_normal beats"))
    assert re.match(r"xavier_normal beats kaiming_normal on average \(test_accuracy "
                    r"xavier_normal − kaiming_normal = \+0\.03\d\d\), but not with "
                    r"activation=sigmoid \(test_accuracy xavier_normal − kaiming_normal = "
                    r"-0\.\d+\); the interaction test gives Holm-adjusted p < 0\.0001 "
                    r"\(paired t\) and 0\.0625 \(sign-flip permutation\) \(n = 6 seeds\): "
                    r"the paired t-test finds the reversal, the distribution-free sign-flip "
                    r"test does not: it rests on the per-seed differences being normally "
                    r"distributed\.$", reversal)


def test_a_reversal_is_judged_by_both_tests_and_never_said_of_a_zero() -> None:
    """Every seed gave the same interaction difference: there is no t p, and the sentence
    said "Holm-adjusted p = n/a"; it quotes the sign-flip p. A difference that prints as
    +0.0000 (1.4e-5) was called a reversal."""
    trials = _trials(noise=0.0)  # no noise: each cell's seeds agree
    (tests,) = interaction_tests(trials, _suite())
    (reversal,) = [r for r in tests.reversals if r.startswith("xavier_normal beats")]
    assert "Holm-adjusted sign-flip permutation p = 0.0625 (every seed gave the same " \
           "difference: no t-test) (n = 6 seeds): the reversal is not distinguishable " \
           "from seed noise." in reversal, reversal
    assert "n/a" not in reversal
    tiny = _trials(noise=0.0)
    tiny.loc[(tiny["activation"] == "sigmoid") & (tiny["init"] == "xavier_normal"),
             "metric"] = tiny.loc[(tiny["activation"] == "sigmoid")
                                  & (tiny["init"] == "kaiming_normal"), "metric"].to_numpy() \
        - 0.00004  # xavier − kaiming at sigmoid: -0.00004, which prints as -0.0000
    (tests,) = interaction_tests(tiny, _suite())
    assert not [r for r in tests.reversals if r.startswith("xavier_normal beats")], \
        tests.reversals


def test_every_comparison_is_one_row_of_the_csv_table() -> None:
    suite, trials = _suite(), _trials()
    _, effects = main_effects(trials, suite)
    table = comparisons_table({"main_effect": effects, "best_vs": best_versus(
        trials, leaderboard(trials, True), suite)}, [])
    for column in ("kind", "axis", "a", "b", "metric", "n", "mean_diff", "t_low", "t_high",
                   "p", "p_holm", "p_perm", "p_perm_holm", "boot_low", "boot_high",
                   "p_improvement", "p_improvement_low", "p_improvement_high", "mde"):
        assert column in table, column
        assert table[column].notna().all(), column
    assert set(table["kind"]) == {"main_effect", "best_vs"}
    assert (table["n"] == 6).all()
    # the permutation p the sentences weigh: Holm over each family, as p_holm is
    for kind, rows in table.groupby("kind"):
        assert list(rows["p_perm_holm"]) == pytest.approx(
            list(holm(list(rows["p_perm"]), family=len(rows)))), kind


def test_the_csv_says_the_seeds_its_sentence_says() -> None:
    """A family of 3 main effects at 4 seeds: its Holm-adjusted permutation p reaches α only
    from 7 seeds, which the sentence quoted, while the comparisons CSV said 6 (the t-test's
    count alone, and a lone sign-flip test's floor), on the same row."""
    trials = _trials(seeds=4, noise=0.05)
    _, effects = main_effects(trials, _suite(seeds=4))
    table = comparisons_table({"main_effect": effects}, [])
    said = {row["a"]: re.search(r"(could reach α = 0\.05 from|about) (\d+) seeds",
                                row["sentence"]) for _, row in table.iterrows()}
    # sigmoid and tanh against relu: t says yes, the permutation test cannot yet (7 seeds)
    assert [int(m.group(2)) if m else None for m in said.values()] == [7, 7, 12], said
    assert list(table["seeds_needed"]) == [7, 7, 12]
    # at 6 seeds the t-test resolves sigmoid and tanh, the permutation test not yet (7):
    # the CSV said nothing
    trials = _trials(seeds=6, noise=0.05)
    _, effects = main_effects(trials, _suite(seeds=6))
    table = comparisons_table({"main_effect": effects}, [])
    for _, row in table.iterrows():
        quoted = re.search(r"(could reach α = 0\.05 from|about) (\d+) seeds", row["sentence"])
        assert (int(quoted.group(2)) if quoted else None) == (
            None if pd.isna(row["seeds_needed"]) else int(row["seeds_needed"])), row.to_dict()
    assert int(table["seeds_needed"].iloc[0]) == 7


def test_a_level_without_a_finished_trial_is_named_once_not_dropped() -> None:
    trials = _trials()
    trials.loc[trials["activation"] == "tanh", "status"] = "diverged"
    levels, family = main_effects(trials, _suite())
    assert "tanh" not in set(levels["level"])
    assert family.notes == ["activation: not compared, because no trial finished at "
                            "tanh (12 diverged)"]
    assert {c.a for c in family.rows} == {"sigmoid", "xavier_normal"}


def test_interaction_p_improvement_follows_the_metric_direction() -> None:
    """P(a better) of an interaction is the chance that x1's gain over x0 is larger at y1,
    'larger' in the metric's direction: for a loss, lower."""
    higher = {(c.a, c.b): c.result for c in interaction_tests(_trials(), _suite())[0].family.rows}
    loss = _trials()
    loss["metric"] = 1 - loss["metric"]  # the same trials, scored as an error
    suite = parse_suite(textwrap.dedent(SUITE.format(fixed="relu", seeds=6)).replace(
        "hidden: [8]}}", "hidden: [8]}, metric: test_loss}"))
    assert not suite.higher_is_better
    lower = {(c.a, c.b): c.result for c in interaction_tests(loss, suite)[0].family.rows}
    flip = ("sigmoid vs relu", "xavier_normal vs kaiming_normal")
    # xavier's gain over kaiming is 0.20 smaller with sigmoid than with relu: in accuracy
    # and in error alike, the interaction is against sigmoid
    assert higher[flip].p_improvement == 0.0 and lower[flip].p_improvement == 0.0
    assert higher[flip].diff == -lower[flip].diff


CLAIMS = """\
expect:
  - {claim: relu beats tanh, a: {activation: relu}, b: {activation: tanh}}
  - {claim: tanh beats sigmoid, a: {activation: tanh}, b: {activation: sigmoid}}
  - {claim: xavier beats kaiming with tanh, a: {init: xavier_normal},
     b: {init: kaiming_normal}, where: {activation: tanh}}
"""


def test_claims_are_holm_adjusted_over_every_claim_tested_and_their_means_are_paired() -> None:
    """Three claims, one of whose seeds all give the same difference (no t p): Holm's
    family is still 3 (it was 2: the other claims were under-corrected), and each claim's
    two means are over the seeds it pairs, so that their difference is its Δ."""
    from nnbench.results.stats import compare

    suite = parse_suite(textwrap.dedent(SUITE.format(fixed="relu", seeds=4)) + CLAIMS)
    trials = _trials(seeds=4, noise=0.05)
    trials["test_accuracy"] = trials["metric"]
    tanh = trials["activation"] == "tanh"
    xavier = tanh & (trials["init"] == "xavier_normal")
    kaiming = tanh & (trials["init"] == "kaiming_normal")
    trials.loc[xavier, "test_accuracy"] = trials.loc[kaiming, "test_accuracy"].to_numpy() + 0.1
    relu_seed_3 = (trials["activation"] == "relu") & (trials["seed"] == 3)
    trials.loc[relu_seed_3, "status"] = "diverged"  # relu's claim pairs seeds 0-2 only
    verdicts, notes = claim_verdicts(trials, suite)
    assert len(verdicts) == 3
    assert notes == ["relu beats tanh: tested over the 6 of 8 cells (a seed and the other axes' "
                     "levels) both sides were trained at; in the others a side did not finish "
                     "(2 diverged), and the test says nothing of them"]
    by_claim = {v.claim.text: v for v in verdicts}
    assert by_claim["xavier beats kaiming with tanh"].result.identical
    tested = [v for v in verdicts if v.result.p == v.result.p]
    assert len(tested) == 2
    smaller, larger = sorted(tested, key=lambda v: v.result.p)
    assert smaller.p_holm == min(1.0, 3 * smaller.result.p)  # m = 3, not 2
    assert larger.p_holm == min(1.0, max(smaller.p_holm, 2 * larger.result.p))
    relu = by_claim["relu beats tanh"]
    assert relu.result.n == 3
    assert abs((relu.a_mean - relu.b_mean) - relu.result.diff) < 1e-12
    done = trials[trials["status"] == "finished"]
    a = done[done["activation"] == "relu"].groupby("seed")["test_accuracy"].mean()
    b = done[(done["activation"] == "tanh") & done["seed"].isin(a.index)] \
        .groupby("seed")["test_accuracy"].mean()
    assert relu.result.diff == compare(a, b).diff


def test_the_best_s_lead_is_established_only_when_both_tests_say_so() -> None:
    """Three seeds: the t-test can separate the best from the runner-up, the sign-flip
    test cannot (its smallest p at n = 3 is 0.25), so the lead is not called established;
    the best's diverged seed is said, in the summary and in its row's wall time never."""
    from nnbench.results.analysis import best_summary

    trials = _trials(seeds=4, noise=0.001)
    best = "activation=relu, init=xavier_normal"
    lost = (trials["config"] == best) & (trials["seed"] == 3)
    trials.loc[lost, ["status", "wall_seconds"]] = ["diverged", 9.0]
    trials.loc[(trials["config"] == best) & ~lost, "wall_seconds"] = 2.0
    table = leaderboard(trials, higher_is_better=True)
    assert table["config"].iloc[0] == best and table["wall_seconds"].iloc[0] == 2.0
    family = best_versus(trials, table, _suite(seeds=4))
    assert all(c.result.n == 3 and c.p_holm < 0.05 and c.p_perm_holm >= 0.05
               for c in family.rows)
    text = best_summary(family, True, table)
    assert "established" not in text
    assert text.startswith(f"{best} is ahead of each configuration tested against it by the "
                           f"paired t-test")
    assert "the distribution-free sign-flip test does not confirm it" in text
    assert text.endswith("Its mean is over the 3 seed(s) that finished; 1 diverged: a "
                         "configuration that fails on some seeds may lead on those that "
                         "survive.")
    many = _trials(seeds=8, noise=0.001)  # 8 seeds: both tests can say so
    table = leaderboard(many, higher_is_better=True)
    text = best_summary(best_versus(many, table, _suite(seeds=8)), True, table)
    assert text.endswith("its lead is established.") and "Its mean" not in text


def test_a_level_that_lost_cells_says_how_it_lost_them() -> None:
    """sigmoid diverged at xavier_normal on every seed: its Δ against relu is over the
    kaiming_normal cells alone, and the note said only that some cells "finished at some of
    its levels only", with no word of divergence."""
    trials = _trials()
    lost = (trials["activation"] == "sigmoid") & (trials["init"] == "xavier_normal")
    trials.loc[lost, "status"] = "diverged"
    _, family = main_effects(trials, _suite())
    (note,) = [n for n in family.notes if n.startswith("activation: ")]
    assert note.startswith("activation: 6 of 12 cells (a seed and the other axes' levels) "
                           "finished at some of its levels only (not finished: sigmoid (6 "
                           "diverged)); each level's mean"), note


def test_an_interaction_cell_s_interval_width_is_of_its_interval_cut_at_the_range() -> None:
    """Two seeds far apart (0.99 and 0.3): the t interval of that cell's accuracy is about
    8.8 wide; the heatmap said so beside the leaderboard's [0.0000, 1.0000]."""
    trials = _trials(seeds=2, noise=0.0)
    cell = (trials["activation"] == "relu") & (trials["init"] == "xavier_normal")
    trials.loc[cell, "metric"] = [0.99, 0.3]
    uncut = interactions(trials, "activation", "init")[1]
    _, widths = interactions(trials, "activation", "init", bounds=(0.0, 1.0))
    assert uncut.loc["relu", "xavier_normal"] > 8
    assert widths.loc["relu", "xavier_normal"] == 1.0
    assert (widths.fillna(0) <= 1.0).all().all()


def test_two_configurations_equal_on_every_seed_are_tied_not_one_leading() -> None:
    """A grad_clip that never clips trains bit for bit as no clipping: the summary said the
    first of the two "leads, but is not distinguishable from" the other."""
    from nnbench.results.analysis import best_summary

    trials = _trials(seeds=4, noise=0.001)
    best = "activation=relu, init=xavier_normal"
    twin = "activation=relu, init=kaiming_normal"
    trials.loc[trials["config"] == twin, "metric"] = \
        trials.loc[trials["config"] == best, "metric"].to_numpy()
    table = leaderboard(trials, higher_is_better=True)
    family = best_versus(trials, table, _suite(seeds=4))
    assert {c.b for c in family.rows} == {twin}
    text = best_summary(family, True, table)
    first, second = table["config"].iloc[:2]
    assert text == (f"{first} is tied with {second}: every seed gave both exactly the same "
                    f"value. Which of them is first is not settled."), text
    assert "leads" not in text


def test_an_interaction_without_a_finished_cell_is_said_not_dropped() -> None:
    trials = _trials()
    cell = (trials["activation"] == "sigmoid") & (trials["init"] == "xavier_normal")
    trials.loc[cell, "status"] = "failed"
    (tests,) = interaction_tests(trials, _suite())
    assert [(c.a, c.b) for c in tests.family.rows] == [
        ("tanh vs relu", "xavier_normal vs kaiming_normal")]
    assert tests.family.notes == [
        "(activation=sigmoid vs relu) × (init=xavier_normal vs kaiming_normal): not tested, "
        "because no trial finished at activation=sigmoid with init=xavier_normal"]


def test_a_reversal_without_an_interaction_test_says_so() -> None:
    """One seed: no interaction test can be made, and the reversal sentence says that it
    may be seed noise rather than standing as a bare "beats"."""
    (tests,) = interaction_tests(_trials(seeds=1), _suite(seeds=1))
    assert tests.family.rows == []
    reversal = next(r for r in tests.reversals if r.startswith("xavier_normal beats"))
    assert reversal.endswith("; no interaction test is behind it (fewer than 2 seeds "
                             "finished the cells it compares), so it may be seed noise.")


def test_a_difference_within_rounding_is_exactly_zero() -> None:
    """Differences of differences of equal values leave about 1e-17: the comparison reads
    0 (it printed -0.0000 and asked for more than 10,000 seeds)."""
    from nnbench.results.stats import compare

    at_1 = np.array([0.7 - 0.1, 0.3 - 0.1, 0.9 - 0.6])
    at_0 = np.array([0.8 - 0.2, 0.4 - 0.2, 0.5 - 0.2])
    assert (at_1 - at_0).any()  # rounding: not all exactly 0
    r = compare(at_1, at_0)
    assert r.diff == 0.0 and r.identical and f"{r.diff:+.4f}" == "+0.0000"


def test_a_claim_s_direction_defaults_to_its_metric_s_better_one() -> None:
    """"a beats b" on a loss means a lower loss: a claim on val_loss without `direction`
    was judged as 'a has the higher loss' (the default was higher for every metric)."""
    claims = """\
expect:
  - {claim: relu beats tanh, a: {activation: relu}, b: {activation: tanh}}
  - {claim: relu has the lower loss, a: {activation: relu}, b: {activation: tanh},
     metric: val_loss}
  - {claim: relu is sparser, a: {activation: relu}, b: {activation: tanh},
     metric: weight_sparsity}
  - {claim: relu has the higher loss, a: {activation: relu}, b: {activation: tanh},
     metric: val_loss, direction: higher}
  - {claim: relu overfits less, a: {activation: relu}, b: {activation: tanh},
     metric: gap_loss}
"""
    suite = parse_suite(textwrap.dedent(SUITE.format(fixed="relu", seeds=6)) + claims)
    assert [c.direction for c in suite.expect] == ["higher", "lower", "higher", "higher",
                                                   "lower"]
    with pytest.raises(SuiteError, match=r"expect\[0\]\.direction: grad_norm\.layer1 has no "
                                         r"better direction; say which a must have"):
        parse_suite(textwrap.dedent(SUITE.format(fixed="relu", seeds=6)) + (
            "expect:\n  - {claim: x, a: {activation: relu}, b: {activation: tanh}, "
            "metric: grad_norm.layer1}\n"))
    trials = _trials()
    trials["test_accuracy"] = trials["metric"]
    trials["val_loss"] = 1 - trials["metric"]  # relu: the lower loss
    trials["weight_sparsity"] = trials["metric"]
    trials["gap_loss"] = 1 - trials["metric"]  # relu: the smaller gap
    verdicts, _ = claim_verdicts(trials, suite)
    assert [v.verdict for v in verdicts] == ["supported", "supported", "supported",
                                             "contradicted", "supported"]


def test_levels_whose_cells_finished_apart_say_their_means_and_deltas_can_differ() -> None:
    """Two of relu's six seeds diverged with xavier: relu's level mean (the figure) is over
    its own finished cells, its Δ against each level over the cells both finished; the
    main effects say so, with how many cells are concerned."""
    trials = _trials()
    lost = ((trials["activation"] == "relu") & (trials["init"] == "xavier_normal")
            & trials["seed"].isin([0, 1]))
    trials.loc[lost, "status"] = "diverged"
    _, family = main_effects(trials, _suite())
    assert family.notes == [
        "activation: 2 of 12 cells (a seed and the other axes' levels) finished at some of "
        "its levels only (not finished: relu (2 diverged)); each level's mean (figure, level "
        "rows) is over its own finished cells, each Δ over the cells finished at both of its "
        "levels, so the two can differ",
        "init: 2 of 18 cells (a seed and the other axes' levels) finished at some of its "
        "levels only (not finished: xavier_normal (2 diverged)); each level's mean (figure, "
        "level rows) is over its own finished cells, each Δ over the cells finished at both "
        "of its levels, so the two can differ"]
    assert main_effects(_trials(), _suite())[1].notes == []  # every cell finished


def test_an_ablation_s_unplanned_cells_are_no_gaps() -> None:
    """An ablation changes one axis at a time from the fixed values: the combinations it
    never plans (tanh with xavier) are not 'finished at some levels only' cells nor
    interaction tests without a finished trial (both notes said so of a complete run)."""
    text = textwrap.dedent(SUITE.format(fixed="relu", seeds=4)).replace(
        "grid:\n  activation: [sigmoid, tanh, relu]\n  init: [xavier_normal, kaiming_normal]\n",
        "ablate:\n  activation: [tanh]\n  init: [xavier_normal]\n")
    suite = parse_suite(text)
    assert len(suite.configurations()) == 3
    trials = _trials(seeds=4)
    planned = {("relu", "kaiming_normal"), ("tanh", "kaiming_normal"), ("relu", "xavier_normal")}
    trials = trials[[(a, i) in planned for a, i in zip(trials["activation"], trials["init"],
                                                        strict=True)]]
    levels, family = main_effects(trials, suite)
    # each level over the cells every level was trained at: relu's mean leaves out the
    # ablation's xavier trials, where tanh never trained
    like_for_like = [f"{axis}: each level's mean is over the 4 of 8 cells (a seed and the "
                     f"other axes' levels) that every level of {axis} was trained at, so that "
                     f"its levels are compared like for like" for axis in ("activation", "init")]
    assert family.notes == like_for_like and len(family.rows) == 2
    relu = levels[(levels["axis"] == "activation") & (levels["level"] == "relu")]
    at_kaiming = trials[(trials["activation"] == "relu") & (trials["init"] == "kaiming_normal")]
    assert float(relu["mean"].iloc[0]) == pytest.approx(float(at_kaiming["metric"].mean()))
    (tests,) = interaction_tests(trials, suite)
    assert tests.family.rows == [] and tests.family.notes == [  # no test, and why
        "No interaction test of activation × init: no two levels of each were trained in all "
        "four combinations (an ablation varies one axis at a time, from the fixed values)"]
    lost = trials.index[(trials["activation"] == "tanh") & (trials["seed"] == 0)]
    trials.loc[lost, "status"] = "diverged"  # a planned cell that did not finish: said
    assert main_effects(trials, suite)[1].notes == [like_for_like[0],
        "activation: 1 of 4 cells (a seed and the other axes' levels) finished at some of its "
        "levels only (not finished: tanh (1 diverged)); each level's mean (figure, level "
        "rows) is over its own finished cells, each Δ over the cells finished at both of its "
        "levels, so the two can differ",
        like_for_like[1]]


NESTED = """\
name: nested
task: {dataset: digits, model: {name: mlp, hidden: [8]}}
fixed: {activation: relu, optimizer: {name: sgd, lr: 0.01, momentum: 0.9}, epochs: 2,
        batch_size: 32}
grid:
  optimizer: [{name: sgd, lr: 0.01, momentum: 0.9}, {name: adam, lr: 0.001}]
  activation: [relu, tanh]
ablate:
  optimizer.lr: [0.003, 0.03]
seeds: 3
expect:
  - {claim: a larger lr helps sgd, a: {optimizer.lr: 0.03}, b: {optimizer.lr: 0.01}}
"""
# mean test accuracy by optimizer level; tanh adds 0.05 everywhere
NESTED_MEANS = {"sgd(lr=0.01, momentum=0.9)": 0.80, "sgd(lr=0.003, momentum=0.9)": 0.70,
                "sgd(lr=0.03, momentum=0.9)": 0.86, "adam": 0.84}


def test_a_grid_over_a_component_and_an_ablated_parameter_of_it_is_compared_not_n_0() -> None:
    """`optimizer: [sgd, adam]` with `ablate: optimizer.lr`: the parameter's axis sat in the
    pairing cells of the optimizer's comparisons and the optimizer's in the parameter's,
    and the two always move together, so every Δ of either axis read "n = 0" and neither
    axis had a like-for-like mean. The parameter is part of the optimizer's levels."""
    suite = parse_suite(textwrap.dedent(NESTED))
    assert suite.varied_axes == ["optimizer", "activation", "optimizer.lr"]
    assert suite.nested_axes == {"optimizer.lr": "optimizer"}
    assert suite.compared_axes == ["optimizer", "activation"]
    trials = _design(NESTED, lambda r: NESTED_MEANS[r["optimizer"]]
                     + (0.05 if r["activation"] == "tanh" else 0.0) + 0.001 * r["seed"])
    trials["test_accuracy"] = trials["metric"]
    levels, family = main_effects(trials, suite)
    assert set(levels["axis"]) == {"optimizer", "activation"}
    optimizer = {c.a: c for c in family.rows if c.axis == "optimizer"}
    assert set(optimizer) == {"sgd(lr=0.003, momentum=0.9)", "sgd(lr=0.03, momentum=0.9)",
                              "adam"}
    assert all(c.b == "sgd(lr=0.01, momentum=0.9)" and c.result.n == 3
               for c in optimizer.values())
    assert optimizer["adam"].result.diff == pytest.approx(0.04)  # at relu and tanh
    assert optimizer["sgd(lr=0.03, momentum=0.9)"].result.diff == pytest.approx(0.06)
    activation = next(c for c in family.rows if c.axis == "activation")
    assert activation.result.n == 3 and activation.result.diff == pytest.approx(0.05)
    assert not any("n = 0" in note or "no cell" in note for note in family.notes), family.notes
    assert ("optimizer.lr is a parameter of optimizer, which the suite varies too: "
            "optimizer's levels carry its value (sgd(lr=0.01, momentum=0.9), adam, "
            "sgd(lr=0.003, momentum=0.9), sgd(lr=0.03, momentum=0.9)), so it is compared as "
            "part of them and has no rows of its own") in family.notes
    (tests,) = interaction_tests(trials, suite)  # optimizer × activation only
    assert (tests.a, tests.b) == ("optimizer", "activation")
    assert {r.result.n for r in tests.family.rows} == {3}
    assert all(r.result.diff == pytest.approx(0.0, abs=1e-12) for r in tests.family.rows)
    # the claim on the parameter pairs sgd at 0.03 with sgd at 0.01, over the activations
    (verdict,), notes = claim_verdicts(trials, suite)
    assert notes == [] and verdict.result.n == 3
    assert verdict.result.diff == pytest.approx(0.06)


def test_a_claim_on_a_nested_parameter_pairs_within_the_component_s_other_settings() -> None:
    """A claim `optimizer.lr: 0.03` against `0.01`, where sgd and adam both have lr 0.01:
    its b side averaged sgd and adam per seed, so a learning rate that changes nothing
    read Δ = +0.15. sgd at 0.03 pairs with sgd at 0.01 only."""
    text = """\
        name: nested_claim
        task: {dataset: digits, model: {name: mlp, hidden: [8]}}
        fixed: {optimizer: {name: sgd, lr: 0.01}, epochs: 2, batch_size: 32}
        grid:
          optimizer: [{name: sgd, lr: 0.01}, {name: adam, lr: 0.01}]
        ablate:
          optimizer.lr: [0.03]
        seeds: 3
        expect:
          - {claim: lr 0.03 helps, a: {optimizer.lr: 0.03}, b: {optimizer.lr: 0.01}}
        """
    suite = parse_suite(textwrap.dedent(text))
    assert suite.paired_on({"optimizer.lr": "0.03"}, {"optimizer.lr": "0.01"}) == [
        "optimizer without lr"]
    trials = _design(text, lambda r: (0.5 if r["optimizer"].startswith("adam") else 0.8)
                     + 0.01 * r["seed"])
    trials["test_accuracy"] = trials["metric"]
    (verdict,), notes = claim_verdicts(trials, suite)
    assert notes == [] and verdict.result.n == 3
    assert verdict.result.diff == pytest.approx(0.0, abs=1e-12)
    assert verdict.a_mean == pytest.approx(0.81) and verdict.b_mean == pytest.approx(0.81)


def test_an_interaction_whose_baseline_an_ablation_made_is_tested_against_a_crossed_level(
) -> None:
    """The fixed activation (relu) outside the grid, made a level by the ablated learning
    rate (relu at kaiming and lr 0.3 only): every test of activation × init needed (relu,
    xavier), which the suite never trains, so the fully crossed 3 × 2 grid got no test, and
    its reversal said fewer than 2 seeds had finished. The pairs an ablation leaves without
    any test say so."""
    text = SUITE.format(fixed="relu", seeds=3).replace(
        "activation: [sigmoid, tanh, relu]", "activation: [sigmoid, tanh, gelu]") \
        + "ablate:\n  optimizer.lr: [0.3]\n"
    means = {**MEANS, ("gelu", "xavier_normal"): 0.88, ("gelu", "kaiming_normal"): 0.82}
    trials = _design(text, lambda r: means[r["activation"], r["init"]] + 0.001 * r["seed"])
    suite = parse_suite(textwrap.dedent(text))
    tests = {(t.a, t.b): t for t in interaction_tests(trials, suite)}
    crossed = tests["activation", "init"].family
    assert ("activation: its baseline relu was not trained at every level of init the others "
            "were (an ablation's level exists at the fixed values only), so its interactions "
            "with init are against gelu") in crossed.notes
    rows = {(c.a, c.b): c.result for c in crossed.rows}
    assert set(rows) == {("sigmoid vs gelu", "xavier_normal vs kaiming_normal"),
                         ("tanh vs gelu", "xavier_normal vs kaiming_normal")}
    assert all(r.n == 3 for r in rows.values())
    # (0.60 − 0.88) − (0.70 − 0.82) at sigmoid; (0.85 − 0.88) − (0.75 − 0.82) at tanh
    assert rows["sigmoid vs gelu", "xavier_normal vs kaiming_normal"].diff == pytest.approx(-0.16)
    assert rows["tanh vs gelu", "xavier_normal vs kaiming_normal"].diff == pytest.approx(0.04)
    for pair in (("activation", "optimizer.lr"), ("init", "optimizer.lr")):
        family = tests[pair].family
        assert family.rows == [] and family.notes == [
            f"No interaction test of {pair[0]} × {pair[1]}: no two levels of each were trained "
            f"in all four combinations (an ablation varies one axis at a time, from the fixed "
            f"values)"]


# a grid of learning rates and activations whose relu trials diverge at lr 100 on every seed
LR_100 = """\
        name: lr_100
        task: {dataset: digits, model: {name: mlp, hidden: [8]}}
        fixed: {activation: relu, optimizer: {name: sgd, lr: 0.05}, epochs: 1, batch_size: 64}
        grid:
          optimizer.lr: [0.05, 0.2, 100.0]
          activation: [relu, tanh]
        seeds: 3
"""


def _relu_diverges_at_lr_100(row: dict[str, Any]) -> str:
    return "diverged" if (row["activation"], row["optimizer.lr"]) == ("relu", "100.0") \
        else "finished"


def test_a_reference_row_says_which_trials_it_left_out_and_is_incomplete_without_a_config(
) -> None:
    """relu at lr 100 diverged on every seed: the row for relu averaged lr 0.05 and 0.2 only
    and read "reproduced" with an empty note, while tanh's row averaged all three rates."""
    from nnbench.results.analysis import reference_comparison

    text = LR_100 + """\
        reference:
          source: a paper
          tolerance: 0.02
          results:
            - {where: {activation: relu}, value: 0.25}
            - {where: {activation: tanh}, value: 0.2}
        """
    trials = _design(text, lambda r: 0.25 if r["activation"] == "relu" else 0.2,
                     _relu_diverges_at_lr_100)
    trials["test_accuracy"] = trials["metric"]
    relu, tanh = reference_comparison(trials, parse_suite(textwrap.dedent(text)))
    assert relu.measured.n == 3 and relu.measured.mean == pytest.approx(0.25)
    assert relu.verdict == "incomplete"
    assert relu.left_out == ("left out: 3 diverged; no finished trial with a test_accuracy at "
                             "optimizer.lr=100.0, activation=relu, so the mean is not over "
                             "every configuration the row selects")
    assert (tanh.verdict, tanh.left_out) == ("reproduced", "")
    # a report written mid-run (relu at lr 100 not run yet), and a configuration whose
    # trials finished without the metric: incomplete too (found in review)
    not_run = trials[trials["status"] == "finished"]
    relu, _ = reference_comparison(not_run, parse_suite(textwrap.dedent(text)))
    assert relu.verdict == "incomplete" and relu.left_out.startswith(
        "no finished trial with a test_accuracy at optimizer.lr=100.0, activation=relu")
    no_metric = trials.assign(status="finished")
    no_metric.loc[trials["status"] == "diverged", "test_accuracy"] = float("nan")
    relu, _ = reference_comparison(no_metric, parse_suite(textwrap.dedent(text)))
    assert relu.verdict == "incomplete" and relu.measured.n == 3


def test_a_claim_says_which_cells_it_left_out_where_a_side_did_not_finish() -> None:
    """relu at lr 100 diverged on every seed while tanh finished there: the claim "relu beats
    tanh" was tested on the other learning rates only, with no word of the cells that speak
    most against it; a side that never finished read "0 seed(s) finished both sides"."""
    text = LR_100 + """\
        expect:
          - {claim: relu beats tanh, a: {activation: relu}, b: {activation: tanh}}
          - {claim: lr 100 is bad, a: {optimizer.lr: 0.05}, b: {optimizer.lr: 100.0},
             where: {activation: relu}}
        """
    trials = _design(text, lambda r: (0.25 if r["activation"] == "relu" else 0.2)
                     + 0.01 * r["seed"], _relu_diverges_at_lr_100)
    trials["test_accuracy"] = trials["metric"]
    (relu,), notes = claim_verdicts(trials, parse_suite(textwrap.dedent(text)))
    assert relu.result.n == 3 and relu.result.diff == pytest.approx(0.05)
    assert notes == [
        "relu beats tanh: tested over the 6 of 9 cells (a seed and the other axes' levels) "
        "both sides were trained at; in the others a side did not finish (3 diverged), and "
        "the test says nothing of them",
        "lr 100 is bad: not tested, because no trial of b finished (3 diverged); b diverged "
        "on every seed it was trained on, which speaks for the claim, but a test needs "
        "finished trials of both sides"]
    # the other way round: the side the claim favours never finished
    text = text.replace("{claim: lr 100 is bad, a: {optimizer.lr: 0.05}, b: {optimizer.lr: "
                        "100.0}", "{claim: lr 100 is good, a: {optimizer.lr: 100.0}, b: "
                        "{optimizer.lr: 0.05}")
    _, notes = claim_verdicts(trials, parse_suite(textwrap.dedent(text)))
    assert notes[1] == ("lr 100 is good: not tested, because no trial of a finished (3 "
                        "diverged); a diverged on every seed it was trained on: the claim has "
                        "no support")


def test_comparisons_with_a_baseline_that_never_finished_in_their_cells_say_so_not_n_0() -> None:
    """The fixed configuration (relu at lr 100) diverged on every seed: each comparison with
    it was listed as "fewer than 2 seeds finished both sides ... (n = 0)"."""
    text = """\
        name: baseline_diverged
        task: {dataset: digits, model: {name: mlp, hidden: [8]}}
        fixed: {activation: relu, optimizer: {name: sgd, lr: 100.0}, epochs: 1, batch_size: 64}
        ablate:
          optimizer.lr: [0.05, 0.2]
          activation: [tanh]
        seeds: 3
        """
    trials = _design(text, lambda r: 0.2 + 0.01 * r["seed"],
                     lambda r: "diverged" if (r["activation"], r["optimizer.lr"]) == (
                         "relu", "100.0") else "finished")
    _, family = main_effects(trials, parse_suite(textwrap.dedent(text)))
    assert family.rows == []
    assert not any("n = 0" in note for note in family.notes), family.notes
    assert ("Not compared, because no seed finished both sides in any cell (a seed and the "
            "other axes' levels) where both were trained: 0.05 vs 100.0; 0.2 vs 100.0; tanh vs "
            "relu") in family.notes


def test_a_claim_does_not_blame_a_failure_for_cells_an_ablation_never_paired() -> None:
    """An ablated learning rate trains relu alone at lr 0.3: those cells were never paired
    with tanh, yet one diverged trial there made the claim say it left cells out because a
    side did not finish (found in review)."""
    text = SUITE.format(fixed="relu", seeds=3) + "ablate:\n  optimizer.lr: [0.3]\n" + \
        "expect:\n  - {claim: relu beats tanh, a: {activation: relu}, b: {activation: tanh}}\n"
    trials = _design(text, lambda r: MEANS[r["activation"], r["init"]] + 0.001 * r["seed"],
                     lambda r: "diverged" if (r["optimizer.lr"], r["seed"]) == ("0.3", 0)
                     else "finished")
    trials["test_accuracy"] = trials["metric"]
    (verdict,), notes = claim_verdicts(trials, parse_suite(textwrap.dedent(text)))
    assert notes == [] and verdict.result.n == 3


def test_an_interaction_reference_is_one_whose_combinations_finished() -> None:
    """gelu, the best crossed level, never finished at kaiming: chosen as the reference, it
    left both tests 'not tested' where tanh allowed one; and a plain grid whose kaiming
    trials all diverged was said to be an ablation (found in review)."""
    text = SUITE.format(fixed="relu", seeds=3).replace(
        "activation: [sigmoid, tanh, relu]", "activation: [sigmoid, tanh, gelu]") \
        + "ablate:\n  optimizer.lr: [0.3]\n"
    means = {**MEANS, ("gelu", "xavier_normal"): 0.88, ("gelu", "kaiming_normal"): 0.82}
    trials = _design(text, lambda r: means[r["activation"], r["init"]] + 0.001 * r["seed"],
                     lambda r: "diverged" if (r["activation"], r["init"]) == (
                         "gelu", "kaiming_normal") else "finished")
    tests = {(t.a, t.b): t for t in interaction_tests(trials, parse_suite(textwrap.dedent(text)))}
    family = tests["activation", "init"].family
    assert [(c.a, c.b, c.result.n) for c in family.rows] == [
        ("sigmoid vs tanh", "xavier_normal vs kaiming_normal", 3)]
    assert family.rows[0].result.diff == pytest.approx((0.60 - 0.85) - (0.70 - 0.75))
    assert ("activation: its baseline relu was not trained at every level of init the others "
            "were (an ablation's level exists at the fixed values only), so its interactions "
            "with init are against tanh") in family.notes
    plain = _design(SUITE.format(fixed="relu", seeds=3),
                    lambda r: MEANS[r["activation"], r["init"]] + 0.001 * r["seed"],
                    lambda r: "diverged" if r["init"] == "kaiming_normal" else "finished")
    (pair,) = interaction_tests(plain, _suite(seeds=3))
    assert pair.family.notes == [
        "No interaction test of activation × init: init finished at xavier_normal only"]


def test_a_level_no_trial_of_which_has_run_is_named() -> None:
    """A level edited into the suite since it ran: the section read "No main effects: ."
    with nothing after the colon (found by a bad-input hunt)."""
    trials = _trials()
    trials = trials[trials["activation"] != "sigmoid"]
    _, family = main_effects(trials, _suite())
    assert "activation: sigmoid not compared yet, because no trial of it has run (the next " \
           "run trains it)" in family.notes, family.notes
    _, family = main_effects(_trials(), _suite())
    assert not [n for n in family.notes if "not compared yet" in n]
