"""The HTML report, built only from what MLflow holds, checked as text and in Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import textwrap
import warnings
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

from nnbench.config import Suite, load_suite, parse_suite
from nnbench.messages import decimals
from nnbench.registry import ComponentInfo, NoParams, register, unregister
from nnbench.report import render_report
from nnbench.results import Results, load_results
from nnbench.results.stats import format_p
from nnbench.runner import run_suite
from nnbench.tracking import Tracker
from tests.conftest import REPO, launch_chromium, open_page

QUIET = Console(quiet=True)
SECTIONS = ("leaderboard", "best", "effects", "interactions", "curves", "fit", "diagnostics",
            "components", "claims", "provenance")

THREE_AXES = """\
name: three_axes
description: three varied axes, four seeds
task: {dataset: {name: mnist1d, num_samples: 600}, model: {name: mlp, hidden: [16]}}
fixed:
  activation: relu
  init: default
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
  epochs: 3
  batch_size: 32
grid:
  activation: [sigmoid, relu]
  init: [default, xavier_normal]
  optimizer.lr: [0.05, 0.2]
seeds: 4
report: {ema: 0.5}
expect:
  - {claim: relu beats sigmoid, a: {activation: relu}, b: {activation: sigmoid}}
  - {claim: sparsity does not depend on init, a: {init: xavier_normal}, b: {init: default},
     metric: weight_sparsity, direction: lower}
"""


def _text(html: str) -> str:
    """What a reader sees of a piece of the report: no tags, entities decoded, one space."""
    return " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())


def _section(html: str, name: str) -> str:
    start = html.index(f'<h2 id="{name}">')
    end = html.find("<h2 id=", start + 10)
    return html[start:end if end > 0 else len(html)]


@pytest.fixture(scope="module")
def three_axes(tmp_path_factory: pytest.TempPathFactory,
               mlflow_store: Callable[[Path], str]) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("three-axes")
    suite_path = root / "three_axes.yaml"
    suite_path.write_text(THREE_AXES)
    uri = mlflow_store(root / "mlflow.db")
    suite = load_suite(suite_path)
    summary = run_suite(suite, device="cpu", tracking_uri=uri, console=QUIET)
    assert summary.statuses["finished"] == 32
    return render_report(suite, tracking_uri=uri, report_dir=root / "reports"), uri


def test_every_section_renders_for_three_axes_and_four_seeds(
        three_axes: tuple[Path, str]) -> None:
    path, _ = three_axes
    html = path.read_text()
    assert 'class="why"' not in html  # no section had to explain itself away
    assert "src=\"http" not in html and "href=\"http" not in html  # self-contained
    for name in SECTIONS:
        assert f'<h2 id="{name}">' in html
    assert "Varied (scientific axes): <b>activation, init, optimizer.lr</b>" in html
    assert "32 finished" in html and "Seeds: 0, 1, 2, 3" in html
    assert 'id="numerics-warning"' not in html  # one group, one numerics: nothing to warn of
    leaderboard = _section(html, "leaderboard")
    assert leaderboard.count("<tr class=") == 8 and leaderboard.count("★ best") == 1
    assert "95% Student-t" in leaderboard
    assert "<th>best epoch</th><th>wall time per trial (s)</th>" in leaderboard
    assert ("best epoch (the epoch of lowest validation loss; with early stopping, the best "
            "epoch of its monitor)") in leaderboard
    assert "the lanes of one stacked group share the group's time equally" in leaderboard
    effects = _section(html, "effects")
    assert effects.count("<li>") == 3  # one comparison per non-baseline level
    assert "Holm-adjusted" in effects and "paired t-test" in effects
    interactions = _section(html, "interactions")
    assert interactions.count("<img") == 3  # three pairs of axes
    assert interactions.count('class="sortable interaction-table"') == 3
    best = _section(html, "best")
    assert "against the runner-up" in best and 'id="best-table"' in best
    assert "Weight sparsity" not in html  # the suite does not vary L1
    assert "β = 0.5" in _section(html, "curves")
    assert _section(html, "curves").count("<img") == 2  # loss and accuracy
    assert "underfit when training error &gt; 0.3" in _section(html, "fit")
    assert "Gradient norm per layer" in _section(html, "diagnostics")
    assert _section(html, "components").count("<img") == 2  # lr curves and activations
    claims = _section(html, "claims")
    assert "relu beats sigmoid" in claims
    assert re.search(r'class="(supported|contradicted|inconclusive)"', claims)
    # a claim's sides as levels (they printed as Python dicts)
    assert "a: activation=relu; b: activation=sigmoid; expects a higher" in claims
    # an interaction's Δ is a difference of differences, not a − b
    assert interactions.count("<th>Δ of Δ: (x1 − x0 at y1) − (x1 − x0 at y0)</th>") == 3
    assert "<th>Holm p (t)</th><th>Holm p (permutation)</th>" in effects
    provenance = _section(html, "provenance")
    assert "mlflow ui --backend-store-uri" in provenance
    assert "use_deterministic_algorithms" in provenance
    assert path.stat().st_size < 10_000_000


def test_tidy_tables_and_index_are_written_next_to_the_report(
        three_axes: tuple[Path, str]) -> None:
    path, _ = three_axes
    trials = pd.read_csv(path.parent / "three_axes.trials.csv")
    epochs = pd.read_csv(path.parent / "three_axes.epochs.csv")
    assert len(trials) == 32 and {"activation", "init", "optimizer.lr", "metric"} <= set(trials)
    assert len(epochs) == 32 * 3 and {"epoch", "val_loss", "grad_norm.layer1"} <= set(epochs)
    index = (path.parent / "index.html").read_text()
    assert '<a href="three_axes.html">three_axes</a>' in index
    assert "best: " in index


def test_every_comparison_of_the_report_is_a_row_of_its_csv(
        three_axes: tuple[Path, str]) -> None:
    """Main effects, the best against the rest, the interaction tests of each pair of axes
    and the claims: each is one row of three_axes.comparisons.csv, its numbers those the
    page shows."""
    path, _ = three_axes
    table = pd.read_csv(path.parent / "three_axes.comparisons.csv")
    trials = pd.read_csv(path.parent / "three_axes.trials.csv")
    kinds = table["kind"].value_counts().to_dict()
    assert set(kinds) == {"main_effect", "best_vs", "interaction", "claim"}
    assert kinds["main_effect"] == 3  # one non-baseline level on each of three axes
    assert kinds["interaction"] == 3  # (2 − 1) × (2 − 1) per pair, three pairs
    assert kinds["claim"] == 2
    interaction = table[table["kind"] == "interaction"]
    assert set(interaction["axis"]) == {"activation × init", "activation × optimizer.lr",
                                        "init × optimizer.lr"}
    for _, row in interaction.iterrows():
        x, _, y = row["axis"].partition(" × ")
        for side, axis in ((row["a"], x), (row["b"], y)):
            level, _, reference = side.partition(" vs ")
            levels = set(trials[axis].astype(str))
            assert {level, reference} <= levels, (side, levels)
    claims = table[table["kind"] == "claim"].set_index("metric")
    assert set(claims.index) == {"test_accuracy", "weight_sparsity"}
    assert (claims.loc["test_accuracy", "a"], claims.loc["test_accuracy", "b"]) == (
        "relu", "sigmoid")  # level names, as in trials.csv
    assert claims.loc["test_accuracy", "axis"] == "activation"
    assert (table["n"] == 4).all()
    tested = table[~table["identical"].astype(bool)]
    for column in ("mean_diff", "t_low", "t_high", "p", "p_holm", "p_perm", "boot_low",
                   "boot_high", "p_improvement", "p_improvement_low", "p_improvement_high",
                   "mde"):
        assert tested[column].notna().all(), column
    html = path.read_text()
    for _, row in table.iterrows():  # the page shows the CSV's difference on every row,
        # rounded as its sentences round it (half up), and its Holm-adjusted permutation p
        # beside the t-test's (the sentences quoted it; the table showed only the unadjusted)
        assert decimals(row["mean_diff"], 4, plus=True) in html, row["kind"]
        cells = f'<td class="num">{format_p(row["p_holm"])}</td><td class="num">' \
                f'{format_p(row["p_perm_holm"])}</td>'
        assert cells in html, row["kind"]


def test_tables_round_as_sentences_do_half_up(three_axes: tuple[Path, str]) -> None:
    """A class's share of its split and a Δ in a table are rounded half up, as every
    sentence's number: 21 of 400 printed 5.2% (Python's format, half to even on the
    binary value) and 35 of 400 8.8%."""
    from nnbench.report import _ENV

    assert _ENV.from_string("{{ (100 * 21 / 400) | num(1) }} {{ (100 * 35 / 400) | num(1) }} "
                            "{{ 0.00125 | signed }} {{ -0.00125 | signed }}").render() == \
        "5.3 8.8 +0.0013 -0.0013"
    path, _ = three_axes
    balance = _section(path.read_text(), "header")
    rows = re.findall(r'<tr><td>(train|val|test)</td><td class="num">(\d+)</td>(.*?)</tr>',
                      balance)
    assert [split for split, _, _ in rows] == ["train", "val", "test"]
    for _split, size, cells in rows:
        shares = re.findall(r'<td class="num">(\d+) \(([\d.]+)%\)</td>', cells)
        assert len(shares) == 10
        for count, share in shares:
            exact = Decimal(100 * int(count)) / Decimal(int(size))
            assert share == str(exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def test_a_component_and_an_ablated_parameter_of_it_read_as_one_axis(tmp_path: Path,
                                                                      tracking_uri: str) -> None:
    """`optimizer: [sgd, adam]` in the grid and `optimizer.lr` ablated: every Δ of both axes
    read "n = 0" and each said no cell was trained at all its levels."""
    suite = parse_suite(textwrap.dedent("""\
        name: nested
        task: {dataset: digits, model: {name: mlp, hidden: [8]}}
        fixed: {optimizer: {name: sgd, lr: 0.05}, epochs: 1, batch_size: 64}
        grid: {optimizer: [{name: sgd, lr: 0.05}, adam]}
        ablate: {optimizer.lr: [0.2]}
        seeds: 2
        """))
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    html = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path).read_text()
    effects = _section(html, "effects")
    assert "n = 0" not in effects and "no cell" not in effects
    assert ("optimizer.lr is a parameter of optimizer, which the suite varies too: "
            "optimizer&#39;s levels carry its value (sgd(lr=0.05), adam, sgd(lr=0.2)), so it "
            "is compared as part of them and has no rows of its own") in effects
    table = pd.read_csv(tmp_path / "nested.comparisons.csv")
    effects_rows = table[table["kind"] == "main_effect"]
    assert sorted(effects_rows["a"]) == ["adam", "sgd(lr=0.2)"]
    assert (effects_rows["b"] == "sgd(lr=0.05)").all() and (effects_rows["n"] == 2).all()
    assert ("No interactions: this needs at least 2 varied axes; the suite varies 2 "
            "(optimizer, optimizer.lr), and optimizer.lr is a parameter of optimizer, "
            "compared as part of its levels, which leaves 1") in _section(html, "interactions")


def test_a_trial_that_restored_its_best_weights_reports_that_epoch_s_values(
        tracking_uri: str) -> None:
    """With restore_best, a trial ends with its best epoch's model, but its row (trials.csv,
    the fit diagnosis) held the last epoch's training and validation values: the fit rows
    of restore_best true and false read the same while their models differed."""
    suite = parse_suite(textwrap.dedent("""\
        name: restored
        task: {dataset: digits, model: {name: mlp, hidden: [16]}}
        fixed: {optimizer: {name: sgd, lr: 0.5}, epochs: 12, batch_size: 32}
        grid:
          early_stopping: [{name: patience, patience: 1, restore_best: true},
                           {name: patience, patience: 1, restore_best: false}]
        seeds: 3
        """))
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    results = load_results(suite, tracking_uri)
    trials, history = results.trials, results.history
    assert set(trials["status"]) == {"finished"}
    client = Tracker(suite, tracking_uri).client
    restored = 0
    for row in trials.itertuples():
        curve = history[history["trial_id"] == row.trial_id].set_index("epoch")
        run = client.get_run(row.run_id)
        ended = int(run.data.tags.get("nnbench.weights_epoch", curve.index.max()))
        assert ended == (row.best_epoch if "restore_best=False" not in row.config
                         else curve.index.max()), (row.config, dict(run.data.tags),
                                                   curve["val_loss"].tolist())
        restored += ended < curve.index.max()
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            assert getattr(row, key) == curve.loc[ended, key], (row.config, key)
    assert restored  # at least one trial stopped after its best epoch and restored it
    # the summary run's _final statistics are of the same epochs as the rows
    experiment = client.get_experiment_by_name("restored")
    assert experiment is not None
    for summary in client.search_runs([experiment.experiment_id],
                                      "tags.`nnbench.role` = 'summary'"):
        rows = trials[trials["config_id"] == summary.data.tags["nnbench.config_id"]]
        assert len(rows) == 3
        assert summary.data.metrics["val_accuracy_final_mean"] == pytest.approx(
            rows["val_accuracy"].mean(), rel=1e-12)
    # a run written before nnbench.weights_epoch was recorded: the spec says it restored
    from nnbench.results import _weights_epoch

    true, false = (t for t in suite.trials()[::3])
    assert _weights_epoch(true, {}, 3, "finished") == 3
    assert _weights_epoch(false, {}, 3, "finished") is None
    assert _weights_epoch(true, {}, 3, "diverged") is None


def test_one_axis_one_seed_renders_and_says_what_cannot_apply(tmp_path: Path,
                                                              tracking_uri: str) -> None:
    suite = parse_suite(textwrap.dedent("""\
        name: one_axis
        task: {dataset: {name: mnist1d, num_samples: 600}, model: {name: mlp, hidden: [8]}}
        fixed: {optimizer: {name: sgd, lr: 0.05}, epochs: 2, batch_size: 32}
        grid: {activation: [tanh, relu]}
        """))
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    html = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path).read_text()
    assert "a paired test needs at least 2 seeds" in _section(html, "effects")
    assert ("No interactions: this needs at least 2 varied axes; the suite varies 1"
            in _section(html, "interactions"))
    assert "The suite declares no claims" in _section(html, "claims")
    assert "<td class=\"num\">–</td>" in _section(html, "leaderboard")  # no CI with n = 1
    for name in ("leaderboard", "curves", "diagnostics", "components"):
        assert "<img" in _section(html, name), name
    assert "<tbody><tr>" in _section(html, "fit")


DIVERGING = """\
name: diverging
task: {dataset: {name: mnist1d, num_samples: 600}, model: {name: mlp, hidden: [8]}}
fixed: {optimizer: {name: sgd, lr: 0.05}, epochs: 2, batch_size: 32}
grid: {optimizer.lr: [0.05, 0.1, 1000000.0]}
seeds: [3, 1]
reference:
  source: made up for the test
  tolerance: 0.5
  results:
    - {where: {optimizer.lr: 0.05}, value: 0.3}
    - {where: {optimizer.lr: 1000000.0}, value: 0.3}
"""


def _diverging(tracking_uri: str) -> tuple[Suite, Results]:
    """The DIVERGING suite trained into `tracking_uri`, and what the report reads of it."""
    suite = parse_suite(DIVERGING)
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    return suite, load_results(suite, tracking_uri)


def test_no_row_shows_n_0_nan_or_a_zero_width_interval(tmp_path: Path,
                                                       tracking_uri: str) -> None:
    """A configuration whose every seed diverged is named once above the leaderboard, in
    no row; a level without a finished trial is named above the main effects; a published
    number with nothing measured is named above its table; seeds that all gave the same
    value have no interval, said in words."""
    suite, results = _diverging(tracking_uri)
    trials = results.trials
    diverged = trials[trials["optimizer.lr"].astype(str).str.startswith("1")]
    assert len(diverged) == 2 and set(diverged["status"]) == {"diverged"}
    # both seeds of lr = 0.1 score the same (test accuracies move in steps of 1/n)
    same = trials["config"] == "optimizer.lr=0.1"
    assert same.sum() == 2
    trials.loc[same, "metric"] = trials.loc[trials["config"] == "optimizer.lr=0.05",
                                            "metric"].max() + 0.01
    html = render_report(suite, results=results, report_dir=tmp_path).read_text()
    for name in ("leaderboard", "best", "reference", "effects", "claims"):
        part = _section(html, name)
        assert not re.search(r">\s*nan\s*<|\bn = 0\b|>0</td></tr>", part, re.I), name
    board = _section(html, "leaderboard")
    assert re.search(r"Not in the table, because none of their trials finished: "
                     r"optimizer\.lr=1000000\.0 \(2 diverged\)\.", board), board[:600]
    assert board.count("<tr class=") == 2  # the two configurations with finished seeds
    assert "optimizer.lr=0.1 ★ best" in board
    assert "none: every seed the same" in board
    assert "(every one of its 2 seeds gave this value)" in html  # the headline
    effects = _section(html, "effects")
    assert re.search(r"optimizer\.lr: not compared, because no trial finished at "
                     r"1000000\.0 \(2 diverged\)\.", effects)
    reference = _section(html, "reference")
    assert re.search(r"Not measured, because no trial it selects has finished: "
                     r"optimizer\.lr=1000000\.0 \(2 diverged\)\.", reference)
    summary = json.loads((tmp_path / f"{suite.name}.summary.json").read_text())
    unmeasured = [r for r in summary["reference"] if r["n"] == 0]
    assert [(r["verdict"], r["statuses"]) for r in unmeasured] == [("not measured",
                                                                    "2 diverged")]
    assert reference.count("<tr><td>optimizer.lr=") == 1
    curves = _section(html, "curves")  # the curves are of the finished trials only
    assert ("mean over its finished seeds, band ±1 sd. Diverged trials are left out (their "
            "values run to infinity; their epochs are in the epochs CSV), and so are "
            "configurations none of whose trials finished: optimizer.lr=1000000.0.") in curves
    assert "Trials: 6 planned; 6 started: 4 finished, 2 diverged." in html
    assert "Seeds: 3, 1.\n" in html  # as listed; all trained


def test_a_killed_trial_is_counted_in_its_row_and_not_in_its_times(
        tmp_path: Path, tracking_uri: str) -> None:
    """A configuration with a killed trial (interrupted; the next run trains it again):
    its leaderboard row counts it in its own column, and its wall time is the mean of its
    finished seeds (a killed run's time is partial: it was averaged in)."""
    suite, results = _diverging(tracking_uri)
    trials = results.trials
    rows = trials.index[trials["config"] == "optimizer.lr=0.05"]
    trials.loc[rows, "wall_seconds"] = [4.0, 2.0]
    trials.loc[rows[1], "status"] = "killed"
    html = render_report(suite, results=results, report_dir=tmp_path).read_text()
    board = _section(html, "leaderboard")
    assert "<th>diverged</th><th>failed</th><th>killed</th><th>parameters</th>" in board
    row = board[board.index("<td>optimizer.lr=0.05"):]
    row = row[:row.index("</tr>")]
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    # mean, CI, sd, n, best epoch, wall time, diverged, failed, killed, parameters
    assert (cells[3], cells[5], cells[6:9]) == ("1", "4.00", ["0", "0", "1"]), cells


def test_a_report_of_killed_trials_only_says_started_and_that_no_numerics_are_counted(
        tmp_path: Path, tracking_uri: str) -> None:
    """After a Ctrl-C at the first epoch: the setup said "6 trained: 6 killed" and the
    provenance's numerics cell was empty, beside trial rows that each named theirs."""
    suite, results = _diverging(tracking_uri)
    results.trials["status"] = "killed"
    results.trials["num_params"] = 0  # killed before their models were built: none logged
    html = render_report(suite, results=results, report_dir=tmp_path).read_text()
    assert "Trials: 6 planned; 6 started: 6 killed." in html
    assert "Parameters per model" not in html  # (it said "Parameters per model: 0.")
    assert "comparisons, α" not in _section(html, "effects")  # ("over all 0 comparisons")
    assert re.search(r"<tr><th>numerics</th><td><span class=\"muted\">of the finished and "
                     r"diverged trials: none yet</span></td></tr>", html), html


def test_report_says_which_numerics_made_the_results_and_warns_when_mixed(
        write_suite, tracking_uri: str, tmp_path: Path) -> None:
    suite = load_suite(write_suite(epochs=2))
    trials = suite.trials()
    tanh = [t for t in trials if t.activation.name == "tanh"]
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET, trials=tanh)
    html = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path).read_text()
    assert "Trained by: <b>stacked×2 fp32" in html
    assert 'id="numerics-warning"' not in html
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET, engine="serial")
    html = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path).read_text()
    warning = _text(html[html.index('id="numerics-warning"'):].split("</p>")[0])
    assert "2 different numerics" in warning
    # what differs, and how to get one (it always said "with one --engine")
    assert "They differ in engines (serial, stacked) (the default engine, auto, stacks the " \
           "configurations whose model has a stacked form and trains the others" in warning
    assert "or a run was given another --engine). To compare under one numerics, re-run " \
           "the suite into a fresh MLflow store and queue (--tracking-uri, --storage) with " \
           "one --engine." in warning, warning
    board = _section(html, "leaderboard")
    assert "<th>numerics</th>" in board
    assert re.search(r"activation=relu.*?<td>serial fp32 1 thread</td>", board, re.S)
    assert re.search(r"activation=tanh.*?<td>stacked×2 fp32", board, re.S)


@pytest.mark.parametrize(("labels", "said"), [
    # a plugin model without a stacked form beside stacked MLPs: the threads differ with the
    # engines, and were blamed on --threads, --workers or another machine
    (["stacked×6 fp32 2 threads", "serial fp32 1 thread"],
     "They differ in engines (serial, stacked) (the default engine, auto, stacks the "
     "configurations whose model has a stacked form and trains the others (a model that is "
     "not an nn.Sequential of layers, a shape with one trial) on the serial engine, each "
     "with its own lane count and thread policy (the run says which it trains serially and "
     "why); or a run was given another <code>--engine</code>). To compare under one "
     "numerics, re-run the suite into a fresh MLflow store and queue "
     "(<code>--tracking-uri</code>, <code>--storage</code>) with one <code>--engine</code>."),
    (["stacked×42 fp32 2 threads", "stacked×4 fp32 2 threads", "stacked×36 fp32 2 threads"],
     "They differ in lane counts (4, 36, 42) (a suite's later groups keep the lane count of "
     "its first; trials of another were trained before nnbench kept it, or with another "
     "<code>--lanes</code>). To compare under one numerics, re-run the suite into a fresh "
     "MLflow store and queue (<code>--tracking-uri</code>, <code>--storage</code>)."),
    (["serial fp32 1 thread", "serial fp32 2 threads", "not recorded"],
     "They differ in thread counts (1, 2); trials whose numerics were not recorded (an older "
     "nnbench) (a serial trial whose step takes under 1 GFLOP trains on 1 thread, a larger "
     "one on the count its step was timed fastest with, which the suite keeps; trials of "
     "another were trained with another <code>--threads</code> or <code>--workers</code>, "
     "on another machine, or before nnbench kept it). To compare under one numerics, re-run "
     "the suite into a fresh MLflow store and queue (<code>--tracking-uri</code>, "
     "<code>--storage</code>) with one <code>--threads</code>."),
    (["serial fp32 2 threads channels-last", "serial fp32 2 threads"],
     "They differ in memory layouts (torch default, channels_last) (nnbench versions before "
     "and after CPU conv nets trained channels-last). To compare under one numerics, re-run "
     "the suite into a fresh MLflow store and queue (<code>--tracking-uri</code>, "
     "<code>--storage</code>)."),
])
def test_the_mixed_numerics_warning_says_what_differs(labels: list[str], said: str) -> None:
    from nnbench.report import _numerics_remedy

    assert _numerics_remedy(labels) == said


# suites/tune_optimizers.yaml at CI size: every point and the tuned comparison kept, data,
# model, epochs, Optuna trials and seeds shrunk (its median pruner never acts in 3 trials:
# validation refuses it, so none)
TUNE_CI = {"num_samples: 2000": "num_samples: 600", "hidden: [64]": "hidden: [16]",
           "epochs: 10": "epochs: 2", "trials: 12": "trials: 3", "  seeds: 4": "  seeds: 3",
           "pruner: {name: median}": "pruner: {name: none}"}


@pytest.fixture(scope="module")
def tuned_report(tmp_path_factory: pytest.TempPathFactory,
                 mlflow_store: Callable[[Path], str]) -> Path:
    from nnbench.tuning import tune_suite

    root = tmp_path_factory.mktemp("tune-optimizers")
    text = (REPO / "suites" / "tune_optimizers.yaml").read_text()
    for big, small in TUNE_CI.items():
        assert text.count(big) == 1, big
        text = text.replace(big, small)
    path = root / "tune_optimizers.yaml"
    path.write_text(text)
    uri = mlflow_store(root / "mlflow.db")
    suite = load_suite(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow's default artifact root is the working directory
        out = io.StringIO()
        summary = tune_suite(suite, tracking_uri=uri, device="cpu",
                             console=Console(file=out, width=300))
        (root / "tune.out").write_text(out.getvalue())  # what the command printed
        assert summary.reruns == 15  # 5 tuned points × 3 seeds
        return render_report(suite, tracking_uri=uri, report_dir=root / "reports")


def test_a_tuned_report_compares_tuned_reruns_seed_paired(tuned_report: Path) -> None:
    html = tuned_report.read_text()
    assert "Seeds: 0, 1, 2." in html  # the re-runs' seeds, not the suite's `seeds`
    assert "Trials: 15 planned (re-runs of the 5 tuned points over 3 seeds" in html
    assert "; 15 started: 15 finished." in html
    effects = _section(html, "effects")
    rows = re.findall(r"<tr><td>optimizer</td><td>([^<]*)</td><td>([^<]*)</td>", effects)
    # the fixed sgd(lr=0.01)'s own tuned point, sgd, is every other point's baseline
    assert sorted(rows) == [("adam", "sgd"), ("adamw", "sgd"), ("rmsprop", "sgd"),
                            ("sgd(momentum=0.9)", "sgd")]
    assert 'class="why comparison-note"' not in effects  # every comparison could be made
    for name in ("best", "effects", "claims"):
        part = _section(html, name)
        assert not re.search(r"\bnan\b|n = 0\b", part, re.I), name
    assert re.findall(r'<td class="num">(\d+)</td></tr>', _section(html, "effects")) == ["3"] * 4
    assert 'id="numerics-warning"' not in html  # one lane count for the whole suite
    comparisons = pd.read_csv(tuned_report.parent / "tune_optimizers.comparisons.csv")
    trials = pd.read_csv(tuned_report.parent / "tune_optimizers.trials.csv")
    main = comparisons[comparisons["kind"] == "main_effect"]
    assert len(main) == 4 and set(main["b"]) == {"sgd"} and (main["n"] == 3).all()
    assert set(main["a"]) | {"sgd"} == set(trials["optimizer"])  # level names as in trials.csv
    # tuned values read short (the headline said rmsprop(lr=0.011854715845433215))
    for label in [*trials["config"], _text(html[html.index("best: "):]).split(" — ")[0]]:
        for number in re.findall(r"=(\d+\.\d+(?:e-?\d+)?)", label):
            digits = number.split("e")[0].replace(".", "").lstrip("0")
            assert len(digits) <= 4, (label, number)
    # and the re-runs' progress lines as the report reads them (they printed every digit)
    printed = re.findall(r"^\[\d+/15\] (.*) \| seed \d: finished",
                         (tuned_report.parent.parent / "tune.out").read_text(), re.M)
    assert len(printed) == 15 and set(printed) == set(trials["config"]), printed
    best = comparisons[comparisons["kind"] == "best_vs"]
    assert len(best) >= 1 and (best["n"] == 3).all()
    assert set(best["a"]) | set(best["b"]) <= set(trials["config"])
    assert set(comparisons["kind"]) == {"main_effect", "best_vs"}
    tested = comparisons[~comparisons["identical"].astype(bool)]
    for column in ("mean_diff", "t_low", "t_high", "p", "p_holm", "p_perm", "boot_low",
                   "boot_high", "p_improvement", "p_improvement_low", "p_improvement_high",
                   "mde"):
        assert tested[column].notna().all(), column
    assert comparisons[["mean_diff", "p_perm", "p_improvement"]].notna().all().all()


def test_the_gradient_heatmap_is_of_finished_trials_only() -> None:
    """With every trial diverged, the heatmap of gradient norms at the last epoch was all nan
    and seaborn printed "RuntimeWarning: All-NaN slice encountered" into the command's
    output; a diverged trial's inf gradients also made its configuration's mean inf."""
    from nnbench.report import figures

    def frames(statuses: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = [{"trial_id": f"t{i}", "config": f"c{i % 2}", "epoch": e,
                 "grad_norm.layer1": float("nan") if s == "diverged" and e else 0.5 + e,
                 "grad_norm.layer2": float("inf") if s == "diverged" and e else 0.1,
                 "dead_fraction": 0.1 * e}
                for i, s in enumerate(statuses) for e in range(3)]
        trials = pd.DataFrame({"trial_id": [f"t{i}" for i in range(len(statuses))],
                               "status": statuses})
        return pd.DataFrame(rows), trials

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        shown = figures.diagnostics(*frames(["diverged"] * 4), {"activation"})
    assert [title for title, _ in shown] == ["share of dead units (ReLU family)"]
    shown = figures.diagnostics(*frames(["diverged", "finished", "finished", "diverged"]),
                                {"activation"})
    assert shown[0][0].startswith("Gradient norm per layer")


def test_report_of_a_suite_never_run(write_suite, tmp_path: Path) -> None:
    suite = load_suite(write_suite())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # no store at all yet
    html = render_report(suite, tracking_uri=uri, report_dir=tmp_path).read_text()
    assert "No trial of this suite is in MLflow yet" in html
    assert "4 not run yet" in html
    assert "no trial has finished yet" in html


def test_an_interrupt_while_the_report_is_written_leaves_its_files_of_one_piece(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C between the report's files (its CSV tables, then, seconds later, its page)
    left trials.csv of 4 trials beside an HTML page, summary and comparisons of 2, and
    `nnbench report` said only "interrupted". The slow part is now done before any file
    is written, and the files are written with the interrupt held: the new set, whole,
    then the KeyboardInterrupt."""
    import signal

    from nnbench import fresh
    from nnbench import report as report_module

    reports = tmp_path / "reports"
    path = write_suite(epochs=1, seeds=1)  # activation: relu, tanh
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri, console=QUIET)
    render_report(load_suite(path), tracking_uri=tracking_uri, report_dir=reports)
    suite = load_suite(write_suite(epochs=1, seeds=2))  # the same suite, one seed more
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    write = fresh.write_atomic
    written: list[str] = []

    def interrupted_after_the_first(target: Path, text: str) -> None:
        write(target, text)
        written.append(target.name)
        if len(written) == 1:  # Ctrl-C arrives now
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # type: ignore[operator,misc]

    for module in (fresh, report_module):
        monkeypatch.setattr(module, "write_atomic", interrupted_after_the_first, raising=False)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            render_report(suite, tracking_uri=tracking_uri, report_dir=reports)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert {"tiny.trials.csv", "tiny.epochs.csv", "tiny.comparisons.csv", "tiny.html",
            "tiny.summary.json", "index.html"} <= set(written), written
    assert len(pd.read_csv(reports / "tiny.trials.csv")) == 4
    assert "Trials: 4 planned; 4 started: 4 finished." in _text(
        (reports / "tiny.html").read_text())
    assert json.loads((reports / "tiny.summary.json").read_text())["statuses"] == {
        "finished": 4}


def test_a_running_trial_is_said_to_be_mlflow_s_word_with_where_to_ask_if_it_lives(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str) -> None:
    """After a SIGKILL of `nnbench run` the report read "1 running" while `nnbench status`
    said its worker had stopped: the report reads MLflow alone, where the run stays open
    until the next run or worker queues the trial again. It now says so, and where to ask;
    a report with no running trial says nothing of it."""
    from mlflow.tracking import MlflowClient

    suite = load_suite(write_suite(epochs=1, seeds=1))  # activation: relu, tanh
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    note = "Running is what MLflow holds when the report was made"
    text = _text(render_report(suite, tracking_uri=tracking_uri,
                               report_dir=tmp_path).read_text())
    assert "Trials: 2 planned; 2 started: 2 finished." in text and note not in text, text
    # one seed: nothing is compared, and the best configuration's section says no family
    # size (it said "p-values Holm-adjusted over these 0 comparisons")
    assert ("The leaderboard's first configuration is to be tested seed by seed against the "
            "runner-up and against every configuration whose 95% interval overlaps its "
            "own.") in text, text
    assert "0 comparisons" not in text
    client = MlflowClient(tracking_uri)
    held = next(Tracker(suite, tracking_uri).runs("trial"))
    client.update_run(held.info.run_id, "RUNNING")  # as a killed worker's trial is left
    client.delete_tag(held.info.run_id, "nnbench.status")
    text = _text(render_report(suite, tracking_uri=tracking_uri,
                               report_dir=tmp_path).read_text())
    assert "Trials: 2 planned; 2 started: 1 finished, 1 running." in text, text
    assert (f"{note}: a trial whose worker was killed (SIGKILL, a lost machine) shows as "
            f"running until the next run or worker queues it again; nnbench status says "
            f"whether its worker is alive.") in text, text


def test_a_trial_whose_run_was_deleted_in_mlflow_is_said_deleted_not_still_to_run(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str) -> None:
    """A trial's finished run deleted in MLflow (by hand, `mlflow ui`): the report read
    "1 not run yet ... relu not compared yet, because no trial of it has run (the next run
    trains it)", and no run ever did (the queue holds it done). It is now a row of its own
    status, with the command that brings it back."""
    from mlflow.tracking import MlflowClient

    suite = load_suite(write_suite(epochs=1, seeds=1))  # activation: relu, tanh
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    client = MlflowClient(tracking_uri)
    runs = Tracker(suite, tracking_uri).runs("trial")
    gone = next(r for r in runs if r.data.tags["nnbench.config"].startswith("activation=tanh"))
    client.delete_run(gone.info.run_id)
    results = load_results(suite, tracking_uri)
    row = results.trials.set_index("run_id").loc[gone.info.run_id]
    assert (row["status"], results.missing) == ("deleted", 0)
    assert row["reason"] == (
        f"its finished MLflow run was deleted (MLflow keeps it until `mlflow gc`): `mlflow runs "
        f"restore --run-id {gone.info.run_id}` brings it back; while the queue holds it done, "
        f"runs do not train it again (to train it again: a new --storage, README 'Training a "
        f"done trial again')")
    text = _text(render_report(suite, results=results, report_dir=tmp_path).read_text())
    assert "Trials: 2 planned; 2 started: 1 finished, 1 deleted." in text, text
    assert f"{gone.data.tags['nnbench.config']} (1 deleted)" in text
    assert "not run yet" not in text and "the next run trains" not in text
    # an attempt since (a new storage trains it again) stands for the trial
    attempt = client.create_run(gone.info.experiment_id, tags={
        **{k: v for k, v in gone.data.tags.items() if k.startswith("nnbench.")},
        "nnbench.status": "killed"})
    again = load_results(suite, tracking_uri).trials.set_index("trial_id")
    assert again.loc[gone.data.tags["nnbench.trial_id"], "run_id"] == attempt.info.run_id
    assert again.loc[gone.data.tags["nnbench.trial_id"], "status"] == "killed"
    client.delete_run(attempt.info.run_id)
    client.restore_run(gone.info.run_id)
    restored = load_results(suite, tracking_uri)
    assert list(restored.trials["status"]) == ["finished"] * 2


def test_report_is_rebuilt_from_mlflow_alone(three_axes: tuple[Path, str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleting the report and re-rendering from the store gives the same numbers. Each
    figure, which the report crops to a box it measures itself (`figures._png`, without the
    draw that savefig's "tight" makes first), is pixel for pixel the image that
    `bbox_inches="tight"` makes of it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    from nnbench.report import figures

    made, compared = figures._png, []

    def both(fig: Any) -> str:
        # the box measured on the figure as the report has it, never drawn; then "tight"
        assert fig.get_layout_engine() is None and isinstance(fig.canvas, FigureCanvasAgg)
        ours = made(fig)
        tight = io.BytesIO()
        fig.savefig(tight, format="png", dpi=figures.DPI, bbox_inches="tight")
        mine = Image.open(io.BytesIO(base64.b64decode(ours.split(",", 1)[1])))
        theirs = Image.open(tight)
        assert mine.size == theirs.size
        assert np.array_equal(np.asarray(mine), np.asarray(theirs))
        compared.append(mine.size)
        return ours

    monkeypatch.setattr(figures, "_png", both)
    path, uri = three_axes
    suite = load_suite(path.parent.parent / "three_axes.yaml")
    again = render_report(suite, tracking_uri=uri, report_dir=tmp_path).read_text()
    strip = re.compile(r"generated</th><td>[^<]*|data:image/png;base64,[A-Za-z0-9+/=]*")
    assert strip.sub("", again) == strip.sub("", path.read_text())
    assert Tracker(suite, uri).experiment_id(create=False) is not None
    assert len(load_results(suite, uri).trials) == 32
    assert len(compared) == again.count("data:image/png;base64,") == 12


# -- in a real browser --------------------------------------------------------------------

@pytest.mark.slow
def test_report_in_headless_chromium(three_axes: tuple[Path, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    path, _ = three_axes
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page, errors, widths = open_page(browser, path)
        assert len(widths) >= 10
        assert all(w and w > 0 for w in widths), widths  # every image decoded
        for table in ("leaderboard-table", "best-table", "effects-table", "fit-table",
                      "claims-table"):
            assert page.locator(f"#{table} tbody tr").count() > 0, table
        # the comparisons' new columns and sections render: one interaction test per pair
        assert page.locator("table.interaction-table tbody tr").count() == 3
        assert page.locator("#best-summary").is_visible()
        headers = page.locator("#effects-table thead th").all_inner_texts()
        for heading in ("95% bootstrap CI", "P(a better)", "p (permutation)", "MDE"):
            assert heading in headers, heading

        def column(index: int) -> list[float]:
            cells = page.locator(f"#leaderboard-table tbody tr td:nth-child({index})")
            return [float(t) for t in cells.all_inner_texts()]

        header = page.locator("#leaderboard-table thead th").nth(1)  # mean
        header.click()
        assert column(2) == sorted(column(2))
        header.click()
        assert column(2) == sorted(column(2), reverse=True)
        first = page.locator("#leaderboard-table thead th").nth(0)  # configuration, as text

        def names() -> list[str]:
            return page.locator("#leaderboard-table tbody tr td:nth-child(1)").all_inner_texts()

        first.click()
        ascending = names()
        # the order the page promises: the browser's own collation of the same texts
        expected = page.evaluate("t => [...t].sort((a, b) => a.localeCompare(b))", ascending)
        assert ascending == expected
        assert len(set(ascending)) == len(ascending) > 1
        first.click()
        assert names() == ascending[::-1]
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_the_headline_says_when_the_best_lost_seeds() -> None:
    """The best configuration's mean is over its finished seeds: the headline says what
    became of the others, so a configuration that diverges on half its seeds is not
    announced as plainly best."""
    from types import SimpleNamespace

    from nnbench.report import _headline

    row = {"config": "lr=10", "mean": 0.1375, "low": -0.0213, "high": 0.2963, "n": 2,
           "identical": False, "diverged": 2, "failed": 0, "killed": 1}
    results: Any = SimpleNamespace(suite=SimpleNamespace(metric="test_accuracy"))
    assert _headline(results, [row]) == ("best: lr=10 — test_accuracy 0.1375 (95% CI "
                                         "-0.0213–0.2963, n = 2); of its other seeds 2 "
                                         "diverged, 1 killed")
    row.update(diverged=0, killed=0)
    assert _headline(results, [row]).endswith("n = 2)")


def test_a_diagnostic_s_legend_names_the_configurations_it_applies_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Dead units are of the ReLU family, saturation of sigmoid/tanh: each figure's legend
    names only the configurations with values (it listed all six of the default suite)."""
    from matplotlib.figure import Figure

    from nnbench.report import figures

    drawn: list[Figure] = []

    def keep(fig: Figure) -> str:
        drawn.append(fig)
        return ""

    monkeypatch.setattr(figures, "_png", keep)
    history = pd.DataFrame({
        "trial_id": ["r", "r", "t", "t"], "config": ["activation=relu"] * 2 + [
            "activation=tanh"] * 2, "epoch": [1, 2, 1, 2],
        "dead_fraction": [0.1, 0.2, np.nan, np.nan],
        "saturated_fraction": [np.nan, np.nan, 0.3, 0.4]})
    trials = pd.DataFrame({"trial_id": ["r", "t"], "status": ["finished"] * 2})
    figures.diagnostics(history, trials, set())
    legends = [fig.axes[0].get_legend() for fig in drawn]
    assert [[t.get_text() for t in legend.get_texts()] if legend else None
            for legend in legends] == [["activation=relu"], ["activation=tanh"]]


def test_figures_show_what_their_tables_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interaction heatmap's cells read as the tables (4 decimals, not 0.237 beside
    0.2375); with one seed per cell its interval panel says there is none (it drew an
    empty map under a colour bar); a learning rate far from the others is on a log axis
    with markers (a 1-epoch lr of 1e5 was a line of one point beside 0.01, invisible)."""
    from matplotlib.figure import Figure

    from nnbench.report import figures

    drawn: list[Figure] = []

    def keep(fig: Figure) -> str:
        drawn.append(fig)
        return ""

    monkeypatch.setattr(figures, "_png", keep)
    means = pd.DataFrame({"xavier": [0.2375, 0.5], "kaiming": [0.25, 0.75]},
                         index=["relu", "tanh"])
    figures.interaction(means, means * float("nan"), "test_accuracy")
    left, right = drawn[-1].axes[:2]
    assert sorted(t.get_text() for t in left.texts) == ["0.2375", "0.2500", "0.5000", "0.7500"]
    assert not right.axison
    assert [t.get_text() for t in right.texts] == ["no 95% interval:\nfewer than 2 seeds "
                                                   "per cell"]
    history = pd.DataFrame({"config": ["lr=0.01", "lr=0.01", "lr=1e5"], "seed": [0, 0, 0],
                            "epoch": [1, 2, 1], "lr": [0.01, 0.01, 1e5]})
    figures.lr_curves(history)
    (ax,) = drawn[-1].axes
    assert ax.get_yscale() == "log"
    assert all(line.get_marker() == "o" for line in ax.lines
               if np.size(line.get_xdata()))
    # configurations sharing a curve: one line, drawn as is (seaborn bootstrapped a band
    # over them, a minute at 5,000 epochs); two curves whose shortened labels agree stay two
    long = "optimizer.lr=0.1, schedule=cosine, activation=relu, init=kaiming_normal"
    epochs = range(1, 301)
    history = pd.DataFrame(
        [{"config": f"{long}, seed {k}", "seed": 0, "epoch": e, "lr": 0.1 / e}
         for k in (1, 2) for e in epochs]  # one curve, two configurations
        + [{"config": f"{long}, other", "seed": 0, "epoch": e, "lr": 0.2 / e} for e in epochs]
        + [{"config": "short", "seed": 0, "epoch": 1, "lr": 0.05}])  # a 1-epoch curve
    labels = figures.lr_curve_labels(history)
    assert list(labels) == [f"{long}, seed 1", f"{long}, other", "short"]
    assert len(set(labels.values())) == 3 and labels["short"] == "short"
    figures.lr_curves(history)
    (ax,) = drawn[-1].axes
    drawn_lines = [line for line in ax.lines if np.size(line.get_xdata())]
    assert len(drawn_lines) == 3 and not ax.collections  # no band
    assert all(line.get_marker() == "o" for line in drawn_lines)  # the short one shows


class _PairSort(torch.nn.Module):
    """GroupSort(2) (Anil et al. 2019): sorts each example's features in pairs, so it has no
    value at one number alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f = x.shape[0], x.shape[1]
        return x.view(b, f // 2, 2).sort(dim=-1).values.view(b, f)


class _Halves(torch.nn.Module):
    """GLU-like: half the numbers out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[: len(x) // 2]


class _Share(torch.nn.Module):
    """Softmax over the features: one output per input, each depending on all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1)


class _Step(torch.nn.Module):
    """A step: a function of each number, with no gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0).float()


@pytest.fixture
def whole_vector_activations() -> Any:
    for name, module in (("pair_sort", _PairSort), ("halves", _Halves), ("share", _Share),
                         ("step", _Step)):
        register(ComponentInfo(kind="activation", name=name, build=lambda p, m=module: m(),
                               params=NoParams, doc="acts on feature vectors",
                               attrs={"gain": lambda p: ("linear", None)}))
    yield
    for name in ("pair_sort", "halves", "share", "step"):
        unregister("activation", name)


@pytest.mark.usefixtures("whole_vector_activations")
def test_an_activation_of_whole_feature_vectors_is_said_not_drawn_beside_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin activation that sorts pairs of features raised IndexError on the activation
    figure's 1-D input: after both trials had finished, no report was written, and `nnbench
    report` failed the same way each time. Its panel now says why it has no curve."""
    from matplotlib.figure import Figure

    from nnbench.registry import resolve
    from nnbench.report import figures

    drawn: list[Figure] = []
    def keep(fig: Figure) -> str:
        drawn.append(fig)
        return ""

    monkeypatch.setattr(figures, "_png", keep)
    names = ("pair_sort", "relu", "halves", "share", "step")
    figures.activations([resolve("activation", n) for n in names])
    pair, relu, halves, share, step = drawn[-1].axes
    assert [ax.get_title() for ax in drawn[-1].axes] == list(names)
    assert not pair.axison and not pair.lines

    def said(ax: Any) -> str:
        return " ".join(" ".join(t.get_text() for t in ax.texts).split())

    assert said(pair).startswith("not drawn: it does not act on one number at a time "
                                 "(IndexError: ")
    assert not halves.axison and said(halves) == (
        "not drawn: it maps 401 numbers to (200,), not each number to one")
    assert not share.axison and said(share) == (
        "not drawn: its value at a number depends on the numbers beside it")
    # a step has no gradient: its curve, and a slope of 0
    assert step.axison and not step.texts
    assert list(np.asarray(step.lines[1].get_ydata())) == [0.0] * 401
    f, slope = (np.asarray(line.get_ydata()) for line in relu.lines[:2])
    assert f[-1] == 5.0 and slope[-1] == 1.0 and slope[0] == 0.0


def test_an_accuracy_interval_is_cut_at_0_and_1(tmp_path: Path, tracking_uri: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Two seeds far apart: the t interval of their accuracy runs from -3.8 to 5.1; the
    leaderboard, the headline and the main effects' figure show it cut at what an accuracy
    can be (the figure drew error bars from -0.8 to 1.2)."""
    from nnbench.report import figures

    drawn: list[pd.DataFrame] = []
    draw = figures.main_effects

    def keep(levels: pd.DataFrame, metric: str) -> str:
        drawn.append(levels.copy())
        return draw(levels, metric)

    monkeypatch.setattr(figures, "main_effects", keep)
    suite, results = _diverging(tracking_uri)
    trials = results.trials
    rows = trials.index[trials["config"] == "optimizer.lr=0.05"]
    trials.loc[rows, "metric"] = [0.99, 0.3]
    trials.loc[trials["config"] == "optimizer.lr=0.1", "metric"] = 0.2
    html = render_report(suite, results=results, report_dir=tmp_path).read_text()
    board = _section(html, "leaderboard")
    row = board[board.index("<td>optimizer.lr=0.05"):]
    assert '<td class="num">[0.0000, 1.0000]</td>' in row[:row.index("</tr>")]
    assert "(95% CI 0.0000–1.0000, n = 2)" in html  # the headline
    # the smallest difference two such seeds detect is beyond any an accuracy can show
    # (the tables printed MDE 1.9056)
    effects = _section(html, "effects")
    effects = effects[effects.index("<tbody>"):effects.index("</tbody>")]
    mdes = re.findall(r'<td class="num">([^<]*(?:<span[^>]*>[^<]*</span>)?)</td><td '
                      r'class="num">2</td></tr>', effects)
    assert mdes and all("&gt; 1.0000" in m for m in mdes), effects
    (levels,) = drawn
    assert levels["low"].min() == 0.0 and levels["high"].max() == 1.0, levels


def test_numbers_print_with_four_decimals_and_huge_ones_in_scientific_form() -> None:
    """A finite loss of 8.8e35 (a trial that ended without a NaN) printed as 36 digits in
    the claims table."""
    from nnbench.report import _num

    assert _num(0.123456) == "0.1235" and _num(-2.5) == "-2.5000"
    # a half rounds up, as a reader rounds what they see (format gave 15.2 and 2.67)
    assert (_num(15.25, 1), _num(2.675, 2), _num(-0.125, 2), _num(3, 2)) == (
        "15.3", "2.68", "-0.13", "3.00")
    assert _num(8.8e35) == "8.800e+35" and _num(-1234567.0) == "-1.235e+06"
    assert _num(float("inf")) == "inf" and _num(None) == "–" and _num(float("nan")) == "–"
    assert _num(0.5, 2) == "0.50" and _num(3e7, 2) == "3.0e+07"


def test_setup_shows_the_value_the_trials_trained_with_and_which_are_tuned() -> None:
    """A one-level grid (`optimizer: [sgd]` beside a fixed adam) trained every trial with sgd,
    but Setup listed adam as held fixed, and 'sgd' appeared nowhere in the report; a tuned
    suite listed its tuned batch size as held fixed at the fixed value (found by a report
    audit)."""
    from nnbench.report import _settings

    one_level = parse_suite(textwrap.dedent("""\
        name: one_level
        task: {dataset: digits, model: {name: mlp, hidden: [8]}}
        fixed: {optimizer: {name: adam, lr: 0.01}, epochs: 1, batch_size: 64}
        grid: {optimizer: [{name: sgd, lr: 0.05}], activation: [relu, tanh]}
        seeds: 2
        """))
    rows = {r["axis"]: r for r in _settings(one_level)}
    assert (rows["optimizer"]["value"], rows["optimizer"]["varied"]) == ("sgd(lr=0.05)", False)
    assert rows["optimizer"]["note"] == ("set by the suite's grid: the fixed value "
                                         "adam(lr=0.01) is not trained")
    assert rows["activation"]["varied"] and rows["activation"]["note"] == ""
    assert rows["activation"]["trained"]
    # a varied axis whose fixed value no point trains (found in review): not a baseline
    weight_decay = parse_suite(textwrap.dedent("""\
        name: decayed
        task: {dataset: digits, model: {name: mlp, hidden: [8]}}
        fixed: {optimizer: {name: adam, lr: 0.01}, epochs: 1, batch_size: 64}
        grid: {optimizer: [sgd, adam], optimizer.weight_decay: [0.01]}
        seeds: 2
        """))
    rows = {r["axis"]: r for r in _settings(weight_decay)}
    assert rows["optimizer"]["varied"] and not rows["optimizer"]["trained"]
    assert rows["optimizer"]["note"] == ("the fixed value is not trained: Main effects names "
                                         "the level the others are compared with")
    rows = {r["axis"]: r for r in _settings(one_level)}
    assert (rows["batch_size"]["value"], rows["batch_size"]["note"]) == ("64", "")
    tuned = parse_suite(textwrap.dedent("""\
        name: tuned_setup
        task: {dataset: digits, model: {name: mlp, hidden: [8]}}
        fixed: {optimizer: {name: adam, lr: 0.01}, epochs: 1, batch_size: 64}
        grid: {activation: [relu, tanh]}
        tune:
          space:
            optimizer.lr: {type: float, low: 1.0e-4, high: 1.0, log: true}
            batch_size: {type: int, low: 16, high: 128, log: true}
          trials: 3
          objective: {metric: val_accuracy}
          seeds: 2
        """))
    rows = {r["axis"]: r for r in _settings(tuned)}
    assert rows["batch_size"]["note"] == ("tuned per point: batch_size (the values each point "
                                          "trained with are under Tuning)")
    assert rows["optimizer"]["note"] == ("tuned per point: lr (the values each point trained "
                                         "with are under Tuning)")
    # a varied, tuned axis whose fixed value is a level once tuned (suites/tune_optimizers:
    # the fixed sgd(lr=0.01), lr tuned, is the level sgd): that level is the baseline, not
    # "the fixed value is not trained" beside Main effects comparing every level with it
    varied = parse_suite(textwrap.dedent("""\
        name: tuned_varied
        task: {dataset: digits, model: {name: mlp, hidden: [8]}}
        fixed: {optimizer: {name: sgd, lr: 0.01}, epochs: 1, batch_size: 64}
        grid: {optimizer: [sgd, adam]}
        tune:
          space: {optimizer.lr: {type: float, low: 1.0e-4, high: 1.0, log: true}}
          trials: 3
          objective: {metric: val_accuracy}
          seeds: 2
        """))
    rows = {r["axis"]: r for r in _settings(varied)}
    assert (rows["optimizer"]["value"], rows["optimizer"]["trained"]) == ("sgd", True)
    assert rows["optimizer"]["note"] == ("the fixed sgd(lr=0.01) with what is tuned set per "
                                         "point; tuned per point: lr (the values each point "
                                         "trained with are under Tuning)")


@pytest.mark.parametrize("objective", ["val_loss", "test_accuracy"])
def test_the_isolation_plot_gives_a_tuning_objective_of_another_metric_its_own_axis(
        objective: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The best tuning trials' val_loss (0.51) and the re-runs' test_accuracy (0.77-0.84)
    shared one y axis, told apart only by the legend (found by a report audit)."""
    import matplotlib.pyplot as plt

    from nnbench.report import figures

    monkeypatch.setattr(figures, "_png", lambda fig: fig)
    tuning = pd.DataFrame({"study": ["s1", "s1", "s2"], "state": ["complete"] * 3,
                           "objective": [0.51, 0.60, 0.55]})
    trials = pd.DataFrame({"point": ["a", "a", "b", "b"], "status": ["finished"] * 4,
                           "metric": [0.77, 0.80, 0.84, 0.81]})
    fig: Any = figures.isolation(tuning, trials, {"s1": "a", "s2": "b"}, "test_accuracy",
                                 objective, maximize=False)
    axes = fig.get_axes()
    try:
        if objective == "test_accuracy":
            assert len(axes) == 1 and axes[0].get_ylabel() == "test_accuracy"
        else:
            assert [a.get_ylabel() for a in axes] == [
                "test_accuracy", "val_loss (best tuning trial)"]
            assert axes[1].collections[0].get_offsets()[0][1] == pytest.approx(0.51)
        legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
        assert sorted(legend) == [f"best tuning trial ({objective})",
                                  "re-runs over seeds (test_accuracy)"]  # once each
    finally:
        plt.close(fig)


def test_a_reference_row_s_interval_is_cut_at_its_metric_s_range_like_the_leaderboard_s(
) -> None:
    """The leaderboard cut an accuracy's interval at [0, 1]; the published-reference row of
    the same configuration showed [-1.0974, 1.5571] (found by an edge-case run)."""
    import math

    from nnbench.config import PublishedResult
    from nnbench.report import _within_range
    from nnbench.results.analysis import ReferenceRow
    from nnbench.results.stats import Interval

    def row(metric: str, low: float, high: float) -> ReferenceRow:
        return ReferenceRow(PublishedResult(where={}, value=0.5), "x", metric,
                            Interval(0.2298, low, high, 0.15, 2), -0.27, "outside tolerance")

    cut = _within_range(row("test_accuracy", -1.0974, 1.5571)).measured
    assert (cut.low, cut.high, cut.mean) == (0.0, 1.0, 0.2298)
    cut = _within_range(row("test_rmse", -3.0, 9.0)).measured
    assert (cut.low, cut.high) == (0.0, 9.0)
    cut = _within_range(row("test_accuracy", math.nan, math.nan)).measured  # one seed
    assert math.isnan(cut.low) and math.isnan(cut.high)
