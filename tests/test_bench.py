"""`nnbench bench`: a CI-sized benchmark (two tasks, two optimizers, two seeds) runs through
the normal runner and renders its cross-task report; the report's time-to-target agrees
with the per-epoch tables the suite reports export, its IQM across tasks and bootstrap
intervals agree with rliable's formulas applied to the exported times, and a second run
trains nothing."""

from __future__ import annotations

import importlib
import json
import math
import re
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nnbench import cli
from tests.conftest import BENCHMARK_TASK, launch_chromium, open_page

LEVELS = "[{name: sgd, lr: 0.05, momentum: 0.9}, {name: adam, lr: 0.01}]"
BENCH = """\
name: mini_bench
description: two tiny tasks
tasks:
  - {suite: tasks/circ.yaml, target: {metric: val_accuracy, value: 0.8}}
  - {suite: tasks/reg.yaml, target: {metric: val_rmse, value: 0.9}}
profile: {tau_max: 3}
"""
TARGETS = {"circ": ("val_accuracy", 0.8, True), "reg": ("val_rmse", 0.9, False)}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory,
        mlflow_store: Callable[[Path], str]) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("bench")
    (root / "tasks").mkdir()
    (root / "tasks" / "circ.yaml").write_text(BENCHMARK_TASK.format(
        name="circ", dataset="{name: circles, n_samples: 300}", loss="cross_entropy",
        levels=LEVELS, seeds=2, epochs=3))
    (root / "tasks" / "reg.yaml").write_text(BENCHMARK_TASK.format(
        name="reg", dataset="{name: diabetes}", loss="mse", levels=LEVELS, seeds=2, epochs=3))
    path = root / "mini.yaml"
    path.write_text(textwrap.dedent(BENCH))
    uri = mlflow_store(root / "mlflow.db")
    args = ["bench", str(path), "--device", "cpu", "--tracking-uri", uri,
            "--report-dir", str(root / "reports")]
    assert cli.main(args) == 0
    return root, uri, " ".join(args)


def test_report_is_one_self_contained_file_linked_from_the_index(
        ran: tuple[Path, str, str]) -> None:
    root = ran[0]
    html = (root / "reports" / "mini_bench.html").read_text()
    assert "src=\"http" not in html and "href=\"http" not in html
    assert html.count('src="data:image/png;base64,') == 2  # profiles in epochs and seconds
    for anchor in ("tasks", "time-to-target", "profile-epochs", "profile-seconds"):
        assert f'id="{anchor}"' in html
    assert 'id="pending"' not in html  # every trial has a result
    assert "val_accuracy ≥ 0.8" in html and "val_rmse ≤ 0.9" in html
    # which numerics trained each task, as the suite reports say it
    tasks = html[html.index('id="tasks-table"'):html.index('id="time-to-target"')]
    assert tasks.count("fp32") >= 2 and ("stacked" in tasks or "serial" in tasks)
    assert '<a href="circ.html">circ</a>' in tasks  # the suite's own report
    index = (root / "reports" / "index.html").read_text()
    assert '<a href="mini_bench.html">mini_bench</a> <span class="muted">(benchmark' in index
    assert '<a href="circ.html">circ</a>' in index
    summary = json.loads((root / "reports" / "mini_bench.summary.json").read_text())
    assert summary["kind"] == "benchmark" and summary["statuses"] == {"finished": 8}
    # what `bench` checks before training (a directory there failed it after) is what it
    # writes
    from nnbench.cli_checks import BENCHMARK_REPORT_FILES

    written = {p.name for p in (root / "reports").iterdir() if p.name.startswith("mini_bench")}
    assert written == {f.format(name="mini_bench") for f in BENCHMARK_REPORT_FILES} - \
        {"index.html"}


def test_time_to_target_agrees_with_the_suites_epoch_tables(ran: tuple[Path, str, str]) -> None:
    root = ran[0]
    times = pd.read_csv(root / "reports" / "mini_bench.times.csv")
    assert len(times) == 8  # 2 tasks × 2 configurations × 2 seeds
    for task, (metric, target, higher) in TARGETS.items():
        epochs = pd.read_csv(root / "reports" / f"{task}.epochs.csv")
        for (config, seed), rows in epochs.groupby(["config", "seed"]):
            rows = rows.sort_values("epoch")
            hit = rows[rows[metric] >= target] if higher else rows[rows[metric] <= target]
            row = times[(times["task"] == task) & (times["config"] == config)
                        & (times["seed"] == seed)].iloc[0]
            if hit.empty:
                assert not row["reached"] and math.isinf(row["epochs"])
            else:
                first = int(hit["epoch"].iloc[0])
                assert row["reached"] and row["epochs"] == first
                assert row["seconds"] == pytest.approx(
                    rows[rows["epoch"] <= first]["epoch_seconds"].sum())


def test_the_report_shows_every_seed_and_the_profile_table(ran: tuple[Path, str, str]) -> None:
    root = ran[0]
    html = (root / "reports" / "mini_bench.html").read_text()
    times = pd.read_csv(root / "reports" / "mini_bench.times.csv")
    cells = re.findall(r'<td class="num (?:never)?\s*">(never \(\d+ ep[^<]*|\d+ ep · [\d.]+ s)',
                       html)
    assert len(cells) == 8  # one cell per trial: reached or never, none dropped
    assert sum(c.startswith("never") for c in cells) == int((~times["reached"]).sum())
    table = html[html.index('id="profile-table-epochs"'):html.index('id="profile-seconds"')]
    assert table.count("<tr><td>optimizer=") == 2
    assert "ρ(τ = 1)" in table and "ρ(τ = 3)" in table


def _rliable_iqm_interval(matrix: np.ndarray, reps: int = 2000) -> tuple[float, float, float]:
    """rliable's IQM of a [seeds, tasks] score matrix and its 95% percentile interval from
    rliable's stratified bootstrap, written out: after `np.random.seed(0)`, each resample
    draws `np.random.choice(seeds, (seeds, tasks))`, a run index per (run, task), and
    takes every task's runs from its own column (`StratifiedBootstrap.update_indices`)."""
    aggregate_iqm = importlib.import_module("rliable.metrics").aggregate_iqm
    np.random.seed(0)
    runs, tasks = matrix.shape
    resamples = np.stack([matrix[np.random.choice(runs, (runs, tasks)), np.arange(tasks)]
                          for _ in range(reps)])
    # aggregate_iqm (scipy's trim_mean over all runs) of every resample at once
    samples = stats.trim_mean(resamples.reshape(reps, -1), proportiontocut=0.25, axis=1)
    assert samples[0] == pytest.approx(aggregate_iqm(resamples[0]))
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(aggregate_iqm(matrix)), float(low), float(high)


def test_iqm_across_tasks_is_rliables_with_its_stratified_bootstrap_interval(
        ran: tuple[Path, str, str]) -> None:
    """Recomputed from the exported times: each run's score is the task and seed's best
    time over its own (0: never), and the IQM row of each configuration, its interval and
    its run count are rliable's; the sentences say how and how many resamples."""
    root = ran[0]
    html = (root / "reports" / "mini_bench.html").read_text()
    times = pd.read_csv(root / "reports" / "mini_bench.times.csv")
    for measure, end in (("epochs", 'id="profile-seconds"'), ("seconds", "Every trial's")):
        section = html[html.index(f'id="profile-{measure}"'):html.index(end)]
        assert section.index(f'id="iqm-table-{measure}"') < section.index("<img")  # beside
        rows = re.findall(r"<tr><td>(optimizer=[^<]+)</td><td class=\"num\">([\d.]+)"
                          r"(?: \[([\d.]+), ([\d.]+)\]| <span class=\"why\">\(the same in "
                          r"every resample\)</span>)</td><td class=\"num\">(\d+)</td></tr>",
                          section)
        assert len(rows) == 2
        best = times.groupby(["task", "seed"])[measure].transform("min")
        times["score"] = np.where(np.isfinite(times[measure]), best / times[measure], 0.0)
        for config, shown_iqm, shown_low, shown_high, runs in rows:
            matrix = times[times["config"] == config].pivot(
                index="seed", columns="task", values="score").to_numpy(float)
            assert matrix.shape == (2, 2) and int(runs) == 4  # seeds × tasks
            value, low, high = _rliable_iqm_interval(matrix)
            assert shown_iqm == f"{value:.3f}"
            if low < high:
                assert (shown_low, shown_high) == (f"{low:.3f}", f"{high:.3f}")
            else:  # a zero-width interval is said to be one, not shown as [x, x]
                assert shown_low == shown_high == ""
        values = [float(r[1]) for r in rows]
        assert values == sorted(values, reverse=True)  # highest first
        assert f"Highest IQM of the normalised score s ({measure}): {rows[0][0]}, " in section
        assert "2,000 resamples (seed 0)" in section
        assert "each drawing every task's seeds with replacement from that task's own runs" \
            in section
        assert f"s = t<sub>best</sub> / t, the best configuration's {measure} to target" \
            in section
        assert "of a configuration's 4 runs (2 seeds × 2 tasks)" in section
        assert "95% stratified-bootstrap percentile band (the same 2,000 resamples" in section
        assert "Student-t" not in section  # the profile's band is no longer a t interval


@pytest.mark.slow
def test_iqm_and_profiles_in_headless_chromium(ran: tuple[Path, str, str]) -> None:
    """What a reader of the cross-task section sees: per measure, an IQM row per
    configuration holding a number within its interval (or said to have none), the
    sentence saying how the interval was made, and every figure decoded; no console error."""
    from playwright.sync_api import sync_playwright

    path = ran[0] / "reports" / "mini_bench.html"
    cell = re.compile(r"(\d+\.\d+)(?: \[(\d+\.\d+), (\d+\.\d+)\]| \(the same in every "
                      r"resample\))")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page, errors, widths = open_page(browser, path)
        assert len(widths) == 2 and all(w and w > 0 for w in widths), widths  # both decoded
        for measure in ("epochs", "seconds"):
            rows = page.locator(f"#iqm-table-{measure} tbody tr")
            assert rows.count() == 2  # one per configuration
            shown = []
            for i in range(rows.count()):
                config, value, runs = rows.nth(i).locator("td").all_inner_texts()
                assert config.startswith("optimizer=") and runs == "4"
                match = cell.fullmatch(value)
                assert match, value
                iqm, low, high = (float(v) if v else None for v in match.groups())
                assert iqm is not None and 0 <= iqm <= 1
                if low is not None and high is not None:
                    assert low <= iqm <= high, value
                shown.append(iqm)
            assert shown == sorted(shown, reverse=True)  # highest first
            sentence = page.locator(f"#iqm-{measure} + p")  # the paragraph under the heading
            method = page.locator(f"#iqm-{measure} + p + p")
            assert sentence.is_visible() and method.is_visible()
            assert sentence.inner_text().startswith(
                f"Highest IQM of the normalised score s ({measure}): optimizer=")
            assert "stratified bootstrap — 2,000 resamples (seed 0)" in method.inner_text()
            profile = page.locator(f"#profile-table-{measure} tbody tr")
            assert profile.count() == 2
            for i in range(profile.count()):
                for value in profile.nth(i).locator("td").all_inner_texts()[1:]:  # ρ per τ
                    match = re.fullmatch(r"(\d+\.\d+)(?: \[(\d+\.\d+), (\d+\.\d+)\])?", value)
                    assert match, value
                    rho = float(match[1])  # no interval: the same in every resample
                    low, high = (float(v) if v else rho for v in match.groups()[1:])
                    assert 0 <= low <= rho <= high <= 1, value
            assert page.locator(f"img[alt='performance profile in {measure}']").is_visible()
        text = page.locator("body").inner_text()
        browser.close()
    # no number the page failed to compute: nan, inf, n = 0, an interval with empty bounds
    assert not re.search(r"\bnan\b|\binf\b|\bn = 0\b|\[–|–\]|\b0/0\b", text, re.IGNORECASE)
    assert errors == []


def test_a_second_run_trains_nothing(ran: tuple[Path, str, str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    root, uri, _ = ran
    capsys.readouterr()
    assert cli.main(["bench", str(root / "mini.yaml"), "--device", "cpu", "--tracking-uri", uri,
                     "--report-dir", str(root / "reports")]) == 0
    captured = capsys.readouterr()
    assert "trained" not in captured.err
    assert "benchmark report: " in captured.out


def test_report_only_shows_trials_without_a_result_and_leaves_their_seed_out(
        ran: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """The same suites with a third seed, re-rendered without training: the new trials are
    listed as not run yet, in no statistic, and seed 2 is left out of the profiles."""
    root, uri, _ = ran
    more = root / "more"
    (more / "tasks").mkdir(parents=True)
    for name in ("circ", "reg"):
        text = (root / "tasks" / f"{name}.yaml").read_text()
        (more / "tasks" / f"{name}.yaml").write_text(text.replace("seeds: 2", "seeds: 3"))
    (more / "mini.yaml").write_text(textwrap.dedent(BENCH))
    capsys.readouterr()
    assert cli.main(["bench", str(more / "mini.yaml"), "--report-only", "--tracking-uri", uri,
                     "--report-dir", str(more / "reports")]) == 0
    assert "trained" not in capsys.readouterr().err
    html = (more / "reports" / "mini_bench.html").read_text()
    pending = html[html.index('id="pending"'):]
    assert pending.count("not run yet") == 4  # 2 tasks × 2 configurations, seed 2
    assert html.count('<td class="num missing">no result</td>') == 4
    assert "Left out: seed(s) 2, which have no result yet" in html
    assert html.count("Seeds used: 0, 1.") == 2
    assert not (more / "reports" / "circ.html").exists()  # nothing ran, no suite report


def test_time_to_target_rows_say_when_no_seed_has_a_result_or_every_seed_agrees(
        ran: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """The same runs re-rendered without training, with a third optimizer (no result yet)
    and targets every trial reaches at its first epoch: the third's row says no seed has a
    result (not "0/0" seeds that "never" reached it), and the others' epochs say every
    seed took the same, neither a zero-width interval nor one of empty bounds."""
    root, uri, _ = ran
    more = root / "third"
    (more / "tasks").mkdir(parents=True)
    for name in ("circ", "reg"):
        text = (root / "tasks" / f"{name}.yaml").read_text()
        (more / "tasks" / f"{name}.yaml").write_text(
            text.replace(LEVELS, LEVELS[:-1] + ", {name: sgd, lr: 0.2}]"))
    (more / "mini.yaml").write_text(textwrap.dedent(BENCH).replace(
        "value: 0.8}", "value: 0.01}").replace("value: 0.9}", "value: 100}"))
    assert cli.main(["bench", str(more / "mini.yaml"), "--report-only", "--tracking-uri", uri,
                     "--report-dir", str(more / "reports")]) == 0
    assert "trained" not in capsys.readouterr().err
    html = (more / "reports" / "mini_bench.html").read_text()
    same = '<span class="why">(the same for each seed that reached it)</span>'
    for name in ("circ", "reg"):
        table = html[html.index(f'id="ttt-{name}"'):]
        table = table[:table.index("</table>")]
        rows = dict(re.findall(r"<tr>\n<td>(optimizer=[^<]+)</td>(.*?)</tr>", table, re.DOTALL))
        assert len(rows) == 3
        for config, cells in rows.items():
            if "lr=0.2" in config:  # nothing ran
                assert cells.count('<td class="num missing">no result</td>') == 2  # its seeds
                assert '<td class="num missing">no seed has a result</td>' in cells
                assert "never" not in cells and "0/0" not in cells
            else:  # both seeds reached the target at epoch 1
                assert cells.count('<td class="num ">1 ep · ') == 2
                assert '<td class="num">2/2</td>' in cells
                assert f'<td class="num">1.00 {same}</td>' in cells
                assert "[–" not in cells and "[1.00, 1.00]" not in cells
    assert "0/0" not in html


def test_validate_takes_benchmark_files_and_run_names_the_right_command(
        ran: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    root = ran[0]
    bench, suite = root / "mini.yaml", root / "tasks" / "circ.yaml"
    assert cli.main(["validate", str(bench), str(suite)]) == 0
    out = capsys.readouterr().out
    assert f"{bench}: ok — 2 tasks × 2 configurations of optimizer × 2 seeds = 8 trials" in out
    assert "target val_rmse ≤ 0.9" in out and f"{suite}: ok — 2 configurations" in out

    broken = root / "broken.yaml"  # a listed suite that does not exist
    broken.write_text(bench.read_text().replace("tasks/reg.yaml", "tasks/gone.yaml"))
    assert cli.main(["validate", str(broken), str(suite)]) == 2
    captured = capsys.readouterr()
    assert "tasks[1].suite" in captured.err and "gone.yaml" in captured.err
    # each valid file is reported ok, the broken one is not (`validate`, since 9f47ac5)
    assert f"{suite}: ok" in captured.out and str(broken) not in captured.out

    assert cli.main(["run", str(bench)]) == 2  # a benchmark is not a suite: say what runs it
    assert capsys.readouterr().err.strip() == (
        f"{bench}: a benchmark file (it lists `tasks:`), not a suite; run it with "
        f"`nnbench bench {bench}`")


def _loaded(root: Path, uri: str) -> tuple[Any, dict[str, Any]]:
    from nnbench.config.benchmark import load_benchmark
    from nnbench.results import load_results

    bench = load_benchmark(root / "mini.yaml")
    return bench, {t.name: load_results(t.suite, uri) for t in bench.tasks}


def test_a_diverged_trial_never_reaches_a_target_and_a_lost_history_is_said(
        ran: tuple[Path, str, str]) -> None:
    """A diverged trial's finite accuracy (NaN logits still pick a class) reached circ's
    target in the report, against its own sentence; a finished trial whose history.csv
    MLflow lost vanished from every table without a word."""
    from nnbench.report.benchmark import benchmark_times

    root, uri, _ = ran
    bench, results = _loaded(root, uri)
    circ = results["circ"]
    times, _ = benchmark_times(bench, results)
    reached = times[(times["task"] == "circ") & times["reached"]].iloc[0]
    trial_id = circ.history[(circ.history["config"] == reached["config"])
                            & (circ.history["seed"] == reached["seed"])]["trial_id"].iloc[0]
    circ.trials.loc[circ.trials["trial_id"] == trial_id, "status"] = "diverged"
    lost = circ.trials[circ.trials["trial_id"] != trial_id].iloc[0]
    results["circ"] = replace(circ, history=circ.history[circ.history["trial_id"]
                                                         != lost["trial_id"]])
    times, pending = benchmark_times(bench, results)
    row = times[(times["task"] == "circ") & (times["config"] == reached["config"])
                & (times["seed"] == reached["seed"])].iloc[0]
    assert (row["status"], row["reached"], row["epochs"]) == ("diverged", False, math.inf)
    said = pending[(pending["task"] == "circ") & (pending["seed"] == lost["seed"])
                   & (pending["config"] == lost["config"])]
    assert list(said["status"]) == ["finished, but its history.csv is not in MLflow"]


def test_the_headline_names_who_is_fastest_at_tau_1_with_ties_or_nobody(
        ran: tuple[Path, str, str]) -> None:
    """With the table's τ from 2 the headline gave the share within 2× of the best as
    'fastest'; a tie named one configuration; nothing reached gave 'fastest on 0%'."""
    from nnbench.report.benchmark import _headline

    root, uri, _ = ran
    bench, _ = _loaded(root, uri)
    sgd, adam = bench.levels
    def times(epochs: dict[tuple[str, str], float]) -> pd.DataFrame:
        return pd.DataFrame([{"task": task, "config": config, "seed": seed,
                              "epochs": value, "seconds": value, "reached": value < math.inf}
                             for (task, config), value in epochs.items() for seed in (0, 1)])

    sections = [{"seeds": [0, 1]}]
    one = times({("circ", sgd): 1.0, ("circ", adam): 2.0, ("reg", sgd): 3.0, ("reg", adam): 2.0})
    assert _headline(sections, replace(bench, tau_min=2.0), one) == (
        f"fastest to target (epochs): {sgd} and {adam} (tied) on 50% of the 2 tasks (mean "
        f"over 2 seeds)")
    first = times({("circ", sgd): 1.0, ("circ", adam): 2.0, ("reg", sgd): 2.0,
                   ("reg", adam): 2.0})
    assert _headline(sections, bench, first) == (
        f"fastest to target (epochs): {sgd} on 100% of the 2 tasks (mean over 2 seeds)")
    never = times({key: math.inf for key in [("circ", sgd), ("circ", adam), ("reg", sgd),
                                              ("reg", adam)]})
    assert _headline(sections, bench, never) == (
        "no configuration reached a task's target (mean over 2 seeds)")


def test_the_iqm_sentence_names_ties_and_says_when_nothing_was_reached() -> None:
    from nnbench.report.benchmark import _iqm_sentence

    tied = [{"config": "a", "iqm": 0.875, "low": 0.75, "high": 1.0},
            {"config": "b", "iqm": 0.875, "low": 0.75, "high": 1.0},
            {"config": "c", "iqm": 0.25, "low": 0.0, "high": 0.5}]
    assert _iqm_sentence(tied, "epochs", 3) == (
        "Highest IQM of the normalised score s (epochs): a and b (tied), 0.875 [0.750, "
        "1.000]: these seeds do not separate them.")
    zero = [{"config": c, "iqm": 0.0, "low": 0.0, "high": 0.0} for c in "ab"]
    assert _iqm_sentence(zero, "epochs", 3) == (
        "Every configuration's IQM of the normalised score s (epochs) is 0: none reached a "
        "target within the profile's range.")


def test_report_only_names_every_task_whose_experiment_was_deleted(
        ran: tuple[Path, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It stopped at the first deleted task: restoring it led to the next refusal."""
    import shutil

    from mlflow.tracking import MlflowClient

    root, uri, _ = ran
    store = tmp_path / "copy.db"
    shutil.copy(uri.removeprefix("sqlite:///"), store)
    client = MlflowClient(f"sqlite:///{store}")
    for name in ("circ", "reg"):
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None
        client.delete_experiment(experiment.experiment_id)
    capsys.readouterr()
    assert cli.main(["bench", str(root / "mini.yaml"), "--report-only", "--tracking-uri",
                     f"sqlite:///{store}", "--report-dir", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err
    assert "circ: its MLflow experiment" in err and "reg: its MLflow experiment" in err, err
    assert err.count("was deleted; to report it, restore it") == 2
    assert not (tmp_path / "reports").exists()


def test_an_interrupt_while_the_benchmark_report_is_made_says_how_to_write_it(
        ran: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C while `bench` made its cross-task report said only "interrupted": no page, no
    entry in the index, and no word of `--report-only`."""
    import nnbench.report.benchmark

    root, uri, _ = ran

    def interrupted(*_args: object, **_kwargs: object) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(nnbench.report.benchmark, "render_benchmark", interrupted)
    capsys.readouterr()
    reports = tmp_path / "reports"
    assert cli.main(["bench", str(root / "mini.yaml"), "--report-only", "--tracking-uri", uri,
                     "--report-dir", str(reports)]) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert err.endswith(
        f"benchmark mini_bench: interrupted while its report was made; every trained result "
        f"is recorded, and the report there (if any) is whole but may be the one from "
        f"before: `nnbench bench {root / 'mini.yaml'} --report-only --tracking-uri {uri} "
        f"--report-dir {reports}` writes it"), err
