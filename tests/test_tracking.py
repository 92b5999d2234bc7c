"""What MLflow users see of a suite: the experiment's kind, top-level trial runs, their
dataset inputs and grouping tags (the runs table itself is checked in Chromium, in
tests/test_mlflow_ui.py)."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from nnbench import cli, tracking
from nnbench.config import Suite, load_suite
from nnbench.tracking import EXPERIMENT_KIND, Tracker, dataset_input, runs_url
from tests.processes import ready_then_wait, release_at_once, spawn

FILE_SUITE = """\
name: own_data
task:
  dataset: {{name: file, path: {path}, val_fraction: 0.25}}
  model: {{name: mlp, hidden: [8]}}
fixed: {{optimizer: {{name: sgd, lr: 0.05}}, epochs: 1, batch_size: 16}}
grid: {{activation: [tanh, relu]}}
"""


def test_file_dataset_input_names_the_file_and_its_digest_follows_the_content(
        write_suite: Callable[..., Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(40, 5)).astype(np.float32), y=np.arange(40) % 2)
    path = write_suite(textwrap.dedent(FILE_SUITE.format(path=data)), name="own_data")
    first = dataset_input(load_suite(path).trials()[0]).dataset
    assert first.source_type == "local" and first.profile is not None
    assert json.loads(first.source) == {"uri": str(data.resolve())}
    assert first.name.startswith("file(") and str(data) in first.name
    # no test split in the file: 20% held out (8), then a quarter of the rest for validation
    assert json.loads(first.profile) == {"train": 24, "val": 8, "test": 8, "input_shape": [5],
                                         "targets": "class", "num_classes": 2}
    # other trials of the suite read the same data: one dataset, one digest
    assert {dataset_input(t).dataset.digest for t in load_suite(path).trials()} \
        == {first.digest}
    np.savez(data, x=rng.normal(size=(40, 5)).astype(np.float32), y=np.arange(40) % 2)
    changed = dataset_input(load_suite(path).trials()[0]).dataset
    assert changed.name == first.name and changed.digest != first.digest


def test_dataset_digest_follows_the_dataset_parameters_not_the_seed_or_the_model(
        write_suite: Callable[..., Path]) -> None:
    suite = load_suite(write_suite(epochs=1, seeds=2))
    digests = {dataset_input(t).dataset.digest for t in suite.trials()}
    assert len(digests) == 1  # 2 activations x 2 seeds: one dataset
    other = Path(write_suite(epochs=1, seeds=1, name="other"))
    other.write_text(other.read_text().replace("num_samples: 600", "num_samples: 700"))
    (trial, *_) = load_suite(other).trials()
    assert dataset_input(trial).dataset.digest not in digests


def test_an_existing_nnbench_experiment_gains_the_kind_the_ui_opens_on_runs(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    suite = load_suite(write_suite(epochs=1))
    client = MlflowClient(tracking_uri)
    old = client.create_experiment("tiny", tags={"nnbench.suite": "tiny"})  # an older nnbench
    assert EXPERIMENT_KIND[0] not in client.get_experiment(old).tags
    assert Tracker(suite, tracking_uri).experiment_id(create=False) == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND[0]] == "custom_model_development"
    # a kind the user chose in the UI is theirs: kept
    client.set_experiment_tag(old, EXPERIMENT_KIND[0], "genai_development")
    Tracker(suite, tracking_uri).experiment_id()
    assert client.get_experiment(old).tags[EXPERIMENT_KIND[0]] == "genai_development"


@pytest.mark.parametrize("command", ["run", "report"])
def test_an_experiment_of_the_suites_name_another_program_filled_is_refused(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path, command: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A store whose experiment `tiny` holds another program's runs: `run` mixed the suite's
    trials into them, and `report` wrote "No trial of this suite is in MLflow yet". An empty
    experiment of that name (`mlflow experiments create`) is taken, and one with an older
    nnbench's runs (no `nnbench.suite` tag) too."""
    path = write_suite(epochs=1, seeds=1)
    client = MlflowClient(tracking_uri)
    theirs = client.create_experiment("tiny")
    client.set_terminated(client.create_run(theirs).info.run_id)
    argv = [command, str(path), "--tracking-uri", tracking_uri,
            "--report-dir", str(tmp_path / "reports"),
            *(["--device", "cpu"] if command == "run" else [])]
    assert cli.main(argv) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert (f"{tracking_uri}: its experiment 'tiny' (id {theirs}) holds runs of another "
            f"program, none of them nnbench's, and nnbench did not make it; its trials would "
            f"be mixed into them: give the suite another name (name: in {path}) or use another "
            f"store (--tracking-uri)") in said, said
    assert len(client.search_runs([theirs])) == 1 and not (tmp_path / "reports").exists()
    suite = load_suite(path)
    empty = MlflowClient(tracking_uri).create_experiment("empty")
    assert Tracker(replace(suite, name="empty"), tracking_uri).experiment_id() == empty
    older = client.create_experiment("older")
    client.set_tag(client.create_run(older).info.run_id, "nnbench.role", "trial")
    assert Tracker(replace(suite, name="older"), tracking_uri).experiment_id() == older
    assert client.get_experiment(older).tags["nnbench.suite"] == "older"


def test_runs_url_is_the_ui_route_to_the_runs_table() -> None:
    assert runs_url("7") == ("http://127.0.0.1:5000/#/experiments/7/runs"
                             "?workflowType=machine_learning")
    assert runs_url("7", "http://host:8080/").startswith("http://host:8080/#/experiments/7/")


def test_system_metrics_are_logged_to_the_invocation_run(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psutil")  # a dependency of nnbench (pyproject.toml)
    from rich.console import Console

    from nnbench.runner import run_suite

    # sample every 60 s: the tiny suite is done long before MLflow's monitor logs its first
    # sample (as any run shorter than its 10 s was), so what it shows is the closing sample
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "60")
    suite = load_suite(write_suite(epochs=2, seeds=1))
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, system_metrics=True,
                        console=Console(quiet=True))
    assert summary.parent_run_id is not None
    invocation = MlflowClient(tracking_uri).get_run(summary.parent_run_id)
    logged = set(invocation.data.metrics)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} \
        <= logged, logged
    assert 0 <= invocation.data.metrics["system/cpu_utilization_percentage"] <= 100
    trial = next(Tracker(suite, tracking_uri).invocation_trials(summary.parent_run_id))
    assert not any(k.startswith("system/") for k in trial.data.metrics)  # on the invocation


def test_system_metrics_on_without_psutil_is_a_usage_error_before_anything_runs(
        write_suite: Callable[..., Path], tmp_path: Path, mlflow_store: Callable[[Path], str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from nnbench import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "psutil" else real(name, *a))
    path = write_suite(epochs=1, seeds=1)
    assert cli.main(["run", str(path), "--device", "cpu", "--system-metrics", "on"]) == 2
    assert "--system-metrics on: MLflow's system metrics need psutil (pip install psutil)" \
        in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()
    # auto on a CPU stays off without asking for psutil
    uri = mlflow_store(tmp_path / "store.db")
    assert cli.main(["run", str(path), "--device", "cpu", "--system-metrics", "auto",
                     "--tracking-uri", uri]) == 0


# -- seed aggregates: one summary run per configuration ----------------------------------

def _summaries(uri: str, suite: str) -> list[Run]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(suite)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id],
                              filter_string="tags.`nnbench.role` = 'summary'")


def _trained(write_suite: Callable[..., Path], uri: str, *, seeds: int = 2,
             epochs: int = 2) -> Suite:
    from rich.console import Console

    from nnbench.runner import run_suite

    suite = load_suite(write_suite(epochs=epochs, seeds=seeds))
    summary = run_suite(suite, device="cpu", tracking_uri=uri, console=Console(quiet=True))
    assert summary.complete
    return suite


def test_each_configuration_has_one_summary_run_with_mean_interval_sd_n_and_mean_curve(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    from nnbench.results.stats import metric_range, t_interval

    def cut(key: str, stat: str, value: float) -> float:  # at the metric's range, as the
        bottom, top = metric_range(key)  # report's (2 seeds: an accuracy's bound of 1.04)
        return max(value, bottom) if stat == "low" else min(value, top) if stat == "high" \
            else value

    suite = _trained(write_suite, tracking_uri)
    client = MlflowClient(tracking_uri)
    summaries = {r.data.tags["nnbench.config"]: r for r in _summaries(tracking_uri, "tiny")}
    assert sorted(summaries) == ["activation=relu", "activation=tanh"]
    tracker = Tracker(suite, tracking_uri)
    for label, summary in summaries.items():
        trials = [r for r in tracker.runs("trial") if r.data.tags["nnbench.config"] == label]
        assert len(trials) == 2
        tags = summary.data.tags
        # tagged like its trials: suite, configuration, its axes, what they share
        for key in ("nnbench.suite", "nnbench.config_id", "nnbench.axis.activation",
                    "nnbench.engine", "nnbench.num_params"):
            assert tags[key] == trials[0].data.tags[key], key
        assert tags["nnbench.role"] == "summary" and "nnbench.trial_id" not in tags
        assert tags["nnbench.summary.n"] == "2" and tags["nnbench.summary.seeds"] == "0, 1"
        assert set(tags["nnbench.summary.run_ids"].split(",")) == {r.info.run_id for r in trials}
        assert summary.info.run_name == f"{label} | mean over seeds"
        assert summary.info.status == "FINISHED"
        # the params the configuration's trials share; never the seed
        assert summary.data.params["activation.name"] == label.removeprefix("activation=")
        assert summary.data.params["optimizer.lr"] == "0.05" and "seed" not in summary.data.params
        # every final metric: mean, 95% t interval, sd, n over seeds
        metrics = summary.data.metrics
        # (not wall_seconds: the seeds of a stacked group share their group's time, so its
        # t interval of identical values has no bounds; its mean is that share)
        assert metrics["wall_seconds_mean"] == pytest.approx(trials[0].data.metrics[
            "wall_seconds"])
        for key in ("test_accuracy", "test_loss"):
            expected = t_interval([r.data.metrics[key] for r in trials])
            assert metrics[f"{key}_n"] == 2
            for stat in ("mean", "low", "high", "sd"):
                assert metrics[f"{key}_{stat}"] == pytest.approx(
                    cut(key, stat, getattr(expected, stat))), key
            assert metrics[f"{key}_low"] <= metrics[f"{key}_mean"] <= metrics[f"{key}_high"]
        assert metrics["test_accuracy_low"] >= 0 and metrics["test_accuracy_high"] <= 1
        assert metrics["test_loss_low"] >= 0
        # each per-epoch metric: the mean curve over seeds, step = epoch
        curve = client.get_metric_history(summary.info.run_id, "val_accuracy_mean")
        assert [m.step for m in curve] == [1, 2]
        for point in curve:
            per_seed = [next(m.value for m in client.get_metric_history(r.info.run_id,
                                                                       "val_accuracy")
                             if m.step == point.step) for r in trials]
            assert point.value == pytest.approx(float(np.mean(per_seed)))
        # its last epoch's value: the statistics as a final metric's, not on the curve's name
        expected = t_interval([r.data.metrics["val_accuracy"] for r in trials])
        assert metrics["val_accuracy_final_n"] == 2
        for stat in ("mean", "low", "high", "sd"):
            assert metrics[f"val_accuracy_final_{stat}"] == pytest.approx(
                cut("val_accuracy", stat, getattr(expected, stat)))
        assert "val_accuracy_low" not in metrics and "val_accuracy_n" not in metrics


def test_summary_intervals_are_cut_at_the_metrics_range(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Summary runs stored t intervals past what a metric can take (test_accuracy_high 1.04,
    test_loss_low -1.1 over 3 seeds), where the report cut them. The intervals here are
    widened to make every one reach past its range."""
    from nnbench.results import stats

    real = stats.t_interval

    def wide(values: Any) -> Any:
        interval = real(values)
        return replace(interval, low=interval.low - 100, high=interval.high + 100)

    monkeypatch.setattr(stats, "t_interval", wide)
    _trained(write_suite, tracking_uri)
    seen: set[str] = set()
    for summary in _summaries(tracking_uri, "tiny"):
        metrics = summary.data.metrics
        for key in ("test_accuracy", "val_accuracy_final", "train_accuracy_final"):
            assert (metrics[f"{key}_low"], metrics[f"{key}_high"]) == (0.0, 1.0), key
        for key in ("test_loss", "val_loss_final"):
            assert metrics[f"{key}_low"] == 0.0 and metrics[f"{key}_high"] > 99, key
        # a gap (val − train) can be below 0: no range, as computed
        assert metrics["gap_accuracy_final_low"] < -99 and metrics["gap_loss_final_low"] < -99
        # the diagnostics' shares are 0 to 1 (dead_fraction_final_low was -0.0014), gradient
        # norms and times from 0
        for key in ("dead_fraction_final", "saturated_fraction_final",
                    "weight_sparsity_final"):
            if f"{key}_low" in metrics:  # (dead units of relu, saturation of tanh)
                seen.add(key)
                assert (metrics[f"{key}_low"], metrics[f"{key}_high"]) == (0.0, 1.0), key
        for key in ("grad_norm.layer1_final",):
            assert metrics[f"{key}_low"] == 0.0 and metrics[f"{key}_high"] > 99, key
    # (no relu unit died here: every seed's 0, no interval)
    assert {"saturated_fraction_final", "weight_sparsity_final"} <= seen


def test_a_long_runs_summary_curve_keeps_an_even_share_of_its_epochs(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 epochs wrote 1.2 million metric rows into each summary, for minutes: its mean
    curves keep about CURVE_POINTS epochs (here 3 of 7: one in 3, the first and the last),
    and its note says so; each trial run keeps every epoch."""
    monkeypatch.setattr(tracking, "CURVE_POINTS", 3)
    path = write_suite(epochs=7, seeds=1)
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--report-dir", str(path.parent / "reports")]) == 0
    client = MlflowClient(tracking_uri)
    (summary,) = [r for r in _summaries(tracking_uri, "tiny")
                  if r.data.tags["nnbench.config"] == "activation=relu"]
    (trial,) = [r for r in Tracker(load_suite(path), tracking_uri).runs("trial")
                if r.data.tags["nnbench.config"] == "activation=relu"]
    every = {m.step: m.value for m in client.get_metric_history(trial.info.run_id, "val_loss")}
    assert sorted(every) == [1, 2, 3, 4, 5, 6, 7]
    curve = client.get_metric_history(summary.info.run_id, "val_loss_mean")
    assert [m.step for m in curve] == [1, 3, 6, 7]
    assert [m.value for m in curve] == pytest.approx([every[e] for e in (1, 3, 6, 7)])
    assert "(step = epoch; one epoch in 3, the first and the last)" in \
        summary.data.tags["mlflow.note.content"]


def test_summary_runs_are_never_read_as_trials(write_suite: Callable[..., Path],
                                               tracking_uri: str) -> None:
    from nnbench.results import load_results

    suite = _trained(write_suite, tracking_uri)
    summary_ids = {r.info.run_id for r in _summaries(tracking_uri, "tiny")}
    assert len(summary_ids) == 2
    tracker = Tracker(suite, tracking_uri)
    # done-trial lookup: the four trials, by trial id
    assert tracker.prepare() == {t.trial_id for t in suite.trials()}
    assert not summary_ids & {r.info.run_id for r in tracker.runs("trial")}
    # the invocation's trials (status counts of local workers)
    (invocation,) = tracker.runs("suite")
    assert len(list(tracker.invocation_trials(invocation.info.run_id))) == 4
    # results (the report and the cross-task benchmark read them): four trials, no summary
    results = load_results(suite, tracking_uri)
    assert len(results.trials) == 4 and results.missing == 0
    assert not summary_ids & set(results.trials["run_id"])
    assert not summary_ids & set(results.history["run_id"])
    assert results.tuning.empty and len(results.invocations) == 1


def test_summaries_follow_added_trials_and_a_complete_rerun_writes_nothing(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    _trained(write_suite, tracking_uri, seeds=1)
    first = {r.data.tags["nnbench.config"]: r for r in _summaries(tracking_uri, "tiny")}
    assert {r.data.tags["nnbench.summary.n"] for r in first.values()} == {"1"}
    assert "test_accuracy_sd" not in first["activation=tanh"].data.metrics  # needs 2 seeds
    assert first["activation=tanh"].data.metrics["test_accuracy_n"] == 1
    _trained(write_suite, tracking_uri, seeds=2)  # a seed added: two trials more
    second = {r.data.tags["nnbench.config"]: r for r in _summaries(tracking_uri, "tiny")}
    assert len(second) == 2 and len(_summaries(tracking_uri, "tiny")) == 2
    assert {r.data.tags["nnbench.summary.n"] for r in second.values()} == {"2"}
    assert not {r.info.run_id for r in first.values()} & {r.info.run_id for r in
                                                          second.values()}
    _trained(write_suite, tracking_uri, seeds=2)  # complete: nothing trained, nothing written
    assert {r.info.run_id for r in _summaries(tracking_uri, "tiny")} \
        == {r.info.run_id for r in second.values()}


def test_a_store_without_summaries_gains_them_on_a_rerun_that_trains_nothing(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    suite = _trained(write_suite, tracking_uri)
    client = MlflowClient(tracking_uri)
    for run in _summaries(tracking_uri, "tiny"):  # as an nnbench before summaries left it
        client.delete_run(run.info.run_id)
    assert _summaries(tracking_uri, "tiny") == []
    trials = {r.info.run_id for r in Tracker(suite, tracking_uri).runs("trial")}
    _trained(write_suite, tracking_uri)
    assert {r.info.run_id for r in Tracker(suite, tracking_uri).runs("trial")} == trials
    assert len(_summaries(tracking_uri, "tiny")) == 2


def test_refreshes_at_once_leave_one_summary_per_configuration_the_most_complete(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    """Two workers refresh at the same time: each looked for summaries before the other
    wrote one, and one read MLflow before the other's trial was done. Both write; the
    summary of the most trials stands, alone, whichever settles last."""
    suite = _trained(write_suite, tracking_uri)
    client = MlflowClient(tracking_uri)
    for run in _summaries(tracking_uri, "tiny"):
        client.delete_run(run.info.run_id)
    stale, fresh = Tracker(suite, tracking_uri), Tracker(suite, tracking_uri)
    stale.prepare()
    fresh.prepare()
    seed_1 = [t.trial_id for t in suite.trials() if t.seed == 1]
    for trial_id in seed_1:  # `stale` read before the seed-1 trials were done
        del stale._done_runs[trial_id]

    def blind(tracker: Tracker) -> None:  # looked before any summary was written
        runs = tracker.runs
        tracker.runs = lambda role, *a: iter(()) if role == "summary" else runs(role, *a)  # type: ignore[method-assign]

    blind(stale)
    blind(fresh)
    assert fresh.refresh_summaries(suite.trials()).written == 2
    later = stale.refresh_summaries(suite.trials())  # settles last: deletes its own
    assert later.written == 2 and later.removed == 2
    runs = _summaries(tracking_uri, "tiny")
    assert len(runs) == 2 and {r.data.tags["nnbench.summary.n"] for r in runs} == {"2"}
    # the other order: the stale one writes first, the fresh one settles last
    for run in runs:
        client.delete_run(run.info.run_id)
    assert stale.refresh_summaries(suite.trials()).written == 2
    assert fresh.refresh_summaries(suite.trials()).removed == 2
    runs = _summaries(tracking_uri, "tiny")
    assert len(runs) == 2 and {r.data.tags["nnbench.summary.n"] for r in runs} == {"2"}
    # a refresher that sees a summary of more trials than it read leaves it be
    unblinded = Tracker(suite, tracking_uri)
    unblinded.prepare()
    for trial_id in seed_1:
        del unblinded._done_runs[trial_id]
    assert unblinded.refresh_summaries(suite.trials()).unchanged == 2
    assert {r.info.run_id for r in _summaries(tracking_uri, "tiny")} \
        == {r.info.run_id for r in runs}


def test_a_summary_of_trials_the_suite_no_longer_has_is_replaced(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    """seeds: 2 -> 1: the summary of two trials is not the suite's any more (a summary of
    more trials than a refresher read stands only when all its trials are the suite's)."""
    suite = _trained(write_suite, tracking_uri, seeds=2)
    two = {r.info.run_id for r in _summaries(tracking_uri, "tiny")}
    assert len(two) == 2
    one = _trained(write_suite, tracking_uri, seeds=1)  # trains nothing; refreshes
    trials = {r.data.tags["nnbench.trial_id"]: r
              for r in Tracker(suite, tracking_uri).runs("trial")}
    summaries = _summaries(tracking_uri, "tiny")
    assert len(summaries) == 2 and not two & {r.info.run_id for r in summaries}
    for summary in summaries:
        tags = summary.data.tags
        (spec,) = [t for t in one.trials() if t.config_id == tags["nnbench.config_id"]]
        run = trials[spec.trial_id]
        assert tags["nnbench.summary.n"] == "1" and tags["nnbench.summary.seeds"] == "0"
        assert tags["nnbench.summary.trials"] == spec.trial_id
        assert tags["nnbench.summary.run_ids"] == run.info.run_id
        assert summary.data.metrics["test_accuracy_n"] == 1
        assert summary.data.metrics["test_accuracy_mean"] == run.data.metrics["test_accuracy"]
    # a summary that does not say its trials (an older nnbench's) cannot stand either
    client = MlflowClient(tracking_uri)
    client.delete_tag(summaries[0].info.run_id, "nnbench.summary.trials")
    refresher = Tracker(one, tracking_uri)
    refresher.prepare()
    refresh = refresher.refresh_summaries(one.trials())
    assert (refresh.written, refresh.unchanged, refresh.removed) == (1, 1, 1)
    after = _summaries(tracking_uri, "tiny")
    assert len(after) == 2 and summaries[0].info.run_id not in {r.info.run_id for r in after}


def test_running_a_part_of_the_suite_keeps_the_whole_configurations_summaries(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    """`run_suite(trials=...)` with one seed of a configuration: its summary of every seed
    still stands (the summaries are of the suite's trials, not of the part run)."""
    from rich.console import Console

    from nnbench.runner import run_suite

    suite = _trained(write_suite, tracking_uri, seeds=2)
    before = {r.info.run_id for r in _summaries(tracking_uri, "tiny")}
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=Console(quiet=True),
              trials=suite.trials()[:1])
    after = _summaries(tracking_uri, "tiny")
    assert {r.info.run_id for r in after} == before
    assert {r.data.tags["nnbench.summary.n"] for r in after} == {"2"}


def test_summary_statistics_are_over_finished_trials_only(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    """A diverged trial is done (never re-trained) but no seed's result: its statuses are
    listed, its values (cut short, not finite or garbage) not counted. A configuration with
    no finished trial has a summary of statuses, without statistics."""
    suite = _trained(write_suite, tracking_uri)
    client = MlflowClient(tracking_uri)
    runs = {(r.data.tags["nnbench.config"], int(r.data.tags["nnbench.seed"])): r
            for r in Tracker(suite, tracking_uri).runs("trial")}
    for label, seed in (("activation=relu", 1), ("activation=tanh", 0), ("activation=tanh", 1)):
        run_id = runs[label, seed].info.run_id
        client.set_tag(run_id, "nnbench.status", "diverged")
        client.log_metric(run_id, "test_accuracy", 1e9)  # garbage: must not enter a mean
    tracker = Tracker(suite, tracking_uri)
    tracker.prepare()
    assert tracker.refresh_summaries(suite.trials()).written == 2
    summaries = {r.data.tags["nnbench.config"]: r for r in _summaries(tracking_uri, "tiny")}
    assert len(summaries) == 2 and len(_summaries(tracking_uri, "tiny")) == 2
    relu = summaries["activation=relu"]
    tags, metrics, finished = relu.data.tags, relu.data.metrics, runs["activation=relu", 0]
    assert tags["nnbench.summary.n"] == "1" and tags["nnbench.summary.seeds"] == "0"
    assert tags["nnbench.summary.statuses"] == "1 diverged, 1 finished"
    assert tags["nnbench.summary.run_ids"] == finished.info.run_id
    assert len(tags["nnbench.summary.trials"].split(",")) == 2  # made from both done trials
    assert "over 1 finished trial(s)" in tags["mlflow.note.content"]
    assert "not counted: 1 diverged" in tags["mlflow.note.content"]
    for key in ("test_accuracy", "wall_seconds"):
        assert metrics[f"{key}_n"] == 1
        assert metrics[f"{key}_mean"] == pytest.approx(finished.data.metrics[key])
    assert metrics["val_accuracy_final_mean"] == pytest.approx(
        finished.data.metrics["val_accuracy"])
    curve = client.get_metric_history(relu.info.run_id, "val_accuracy_mean")
    assert [m.value for m in sorted(curve, key=lambda m: m.step)] == pytest.approx(
        [m.value for m in sorted(client.get_metric_history(finished.info.run_id,
                                                           "val_accuracy"),
                                 key=lambda m: m.step)])
    tanh = summaries["activation=tanh"]
    assert tanh.data.tags["nnbench.summary.n"] == "0"
    assert tanh.data.tags["nnbench.summary.statuses"] == "2 diverged"
    assert tanh.data.metrics == {}
    assert tanh.data.params["activation.name"] == "tanh"
    # refreshed again: up to date, nothing written
    again = Tracker(suite, tracking_uri)
    again.prepare()
    assert again.refresh_summaries(suite.trials()).unchanged == 2


def test_a_summary_of_one_seed_has_no_seed_params_nor_per_trial_tags(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    """With one seed every param is shared by the configuration's trials, its seeds too:
    a seed aggregate still has no seed."""
    suite = _trained(write_suite, tracking_uri, seeds=1, epochs=1)
    trials = {r.data.tags["nnbench.config_id"]: r
              for r in Tracker(suite, tracking_uri).runs("trial")}
    for summary in _summaries(tracking_uri, "tiny"):
        trial = trials[summary.data.tags["nnbench.config_id"]]
        assert "seed" in trial.data.params and "seed.init" in trial.data.params
        params = summary.data.params
        assert not [k for k in params if k == "seed" or k.startswith("seed.")], params
        assert params == {k: v for k, v in trial.data.params.items()
                          if k != "seed" and not k.startswith("seed.")}
        tags = summary.data.tags
        for key in ("nnbench.seed", "nnbench.trial_id", "nnbench.fingerprint",
                    "nnbench.worker", "nnbench.invocation", "nnbench.status"):
            assert key in trial.data.tags and key not in tags, key
        assert tags["nnbench.summary.n"] == "1"


def test_summary_trial_ids_past_one_tags_length_continue_in_numbered_tags() -> None:
    from types import SimpleNamespace

    from nnbench.tracking import _summary_trials, _trials_tags

    ids = {f"{i:016x}" for i in range(900)}
    tags = _trials_tags(ids)
    assert sorted(tags) == ["nnbench.summary.trials", "nnbench.summary.trials.2",
                            "nnbench.summary.trials.3"]
    assert all(len(v) <= 8000 for v in tags.values())  # MLflow's longest tag value
    run = cast(Run, SimpleNamespace(data=SimpleNamespace(tags=tags)))
    assert _summary_trials(run) == frozenset(ids)
    assert _trials_tags(["a"]) == {"nnbench.summary.trials": "a"}
    assert _summary_trials(cast(Run, SimpleNamespace(data=SimpleNamespace(tags={})))) is None


def test_a_worker_whose_experiment_keeps_artifacts_elsewhere_is_warned(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        mlflow_store: Callable[[Path], str]) -> None:
    """An experiment made by a worker on another machine keeps its artifacts under that
    machine's working directory: a worker here writes its history.csv to its own disk,
    where the report does not look. It is warned; a store made here is not."""
    from rich.console import Console

    from nnbench.runner import run_suite

    suite = load_suite(write_suite(epochs=1, seeds=1))
    here = Console(record=True, width=300)
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=here)
    assert "artifacts" not in here.export_text()
    other = mlflow_store(tmp_path / "other.db")
    elsewhere = tmp_path / "machine-a" / "home" / "project" / "mlruns" / "1"  # not made yet
    MlflowClient(other).create_experiment(suite.name, artifact_location=str(elsewhere))
    there = Console(record=True, width=300)
    run_suite(suite, device="cpu", tracking_uri=other, console=there,
              storage=f"sqlite:///{tmp_path / 'other-optuna.db'}")
    text = " ".join(there.export_text().split())
    assert (f"warning: experiment {suite.name}'s artifacts (history.csv, checkpoints) go to "
            f"{elsewhere}, which is not on this machine") in text, text


def _open_fresh_store(suite_path: Path, uri: str, ready: Path, out: Path) -> None:
    """In a process of its own (tests.processes.spawn): once `go` exists beside `ready`,
    open the MLflow store `uri` for the suite and write the experiment's id to `out`."""
    suite = load_suite(suite_path)
    ready_then_wait(ready, ready.parent / "go")
    experiment = Tracker(suite, uri).experiment_id()
    assert experiment is not None
    out.write_text(experiment)


def test_processes_making_one_fresh_sqlite_store_at_once_all_open_it(
        write_suite: Callable[..., Path], tmp_path: Path) -> None:
    """Three processes make the same fresh SQLite store at the same instant (local workers,
    `tune --workers`, `submit --local` on a first run): alembic failed in all but one
    ('duplicate column name: step'); they now take turns, and each opens it."""
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    suite = write_suite(epochs=1, seeds=1)
    ready = [tmp_path / f"ready{i}" for i in range(3)]
    outs = [tmp_path / f"experiment{i}" for i in range(3)]
    procs = [spawn(_open_fresh_store, suite, uri, ready[i], outs[i]) for i in range(3)]
    # (a traceback, if any, is on stderr)
    assert release_at_once(procs, ready, tmp_path / "go", ready_within=120) == [0, 0, 0]
    assert len({out.read_text() for out in outs}) == 1  # one experiment between them


def test_an_interrupt_while_the_store_is_made_waits_for_its_end(
        write_suite: Callable[..., Path], tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C in the middle of a fresh store's migrations (just after alembic made its
    temporary table) left `_alembic_tmp_...` and a store no client could open again; the
    interrupt now lands once the store is made. It says at once that it waits (the
    migrations took 6 s here, with nothing printed)."""
    import signal

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    fired: list[str] = []

    def interrupt(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not fired and statement.lstrip().upper().startswith("CREATE TABLE _ALEMBIC_TMP_"):
            fired.append(statement)
            signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, mid-migration

    event.listen(Engine, "after_cursor_execute", interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            Tracker(load_suite(write_suite(epochs=1, seeds=1)), uri)
    finally:
        event.remove(Engine, "after_cursor_execute", interrupt)
    assert fired
    assert capfd.readouterr().err.count(
        "interrupted: stopping once the MLflow store is open (a new one's tables must not be "
        "left half made)\n") == 1
    client = MlflowClient(uri)
    experiment = client.create_experiment("after")  # the store opens and takes writes
    assert client.get_experiment(experiment).name == "after"


def test_an_invocation_whose_process_is_gone_is_ended_killed_others_are_left(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    """Invocation runs still RUNNING: one whose process on this host has exited (a zombie
    too), or whose pid a later process now has, is ended KILLED with the reason; one of a
    live process, of another host, or of a container with this host's name (pids of its
    own) is left running (nothing here can tell)."""
    import os
    import socket
    import subprocess
    import sys

    from nnbench.tracking import _pid_namespace

    tracker = Tracker(load_suite(write_suite()), tracking_uri)
    here = socket.gethostname()
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for
    while True:
        with open(f"/proc/{zombie.pid}/stat") as stat:
            if stat.read().split(") ")[1].startswith("Z"):
                break
        time.sleep(0.01)
    now_ms = int(time.time() * 1000)
    ours = _pid_namespace()
    workers = {"exited": (f"{here}:{exited.pid}", now_ms, ours),
               "zombie": (f"{here}:{zombie.pid}", now_ms, ours),
               "reused": (f"{here}:{os.getpid()}", now_ms - 10 ** 8, ours),  # of long ago
               "live": (f"{here}:{os.getpid()}", now_ms, ours),
               "elsewhere": (f"{here}-other:{exited.pid}", now_ms, ours),
               "container": (f"{here}:{exited.pid}", now_ms, "pid:[1] another-boot")}
    experiment_id = tracker.experiment_id()
    assert experiment_id is not None
    client = MlflowClient(tracking_uri)
    runs = {name: client.create_run(experiment_id, start_time=started, tags={
        "nnbench.role": "suite", "nnbench.worker": worker,
        "nnbench.pid_namespace": namespace}).info.run_id
            for name, (worker, started, namespace) in workers.items()}
    try:
        ended = tracker.end_dead_invocations()
    finally:
        zombie.wait()
    assert sorted(ended) == sorted(runs[n] for n in ("exited", "zombie", "reused"))
    statuses = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert statuses == {"exited": "KILLED", "zombie": "KILLED", "reused": "KILLED",
                        "live": "RUNNING", "elsewhere": "RUNNING", "container": "RUNNING"}
    reason = client.get_run(runs["exited"]).data.tags["nnbench.reason"]
    assert reason == (f"its process ({here}:{exited.pid}) ended without closing the run "
                      f"(killed); closed by {here}:{os.getpid()}")
    assert tracker.end_dead_invocations() == []  # once

    # alive at one look, gone at the next: ended then (nothing remembers it alive)
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run_id = client.create_run(experiment_id, tags={
        "nnbench.role": "suite", "nnbench.worker": f"{here}:{later.pid}",
        "nnbench.pid_namespace": ours}).info.run_id
    assert tracker.end_dead_invocations() == []
    later.kill()
    later.wait()
    assert tracker.end_dead_invocations() == [run_id]


def test_reading_a_deleted_experiment_leaves_it_deleted(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path) -> None:
    """The report of a suite whose experiment was deleted in MLflow says so and how to
    restore it, and leaves it deleted (it restored the experiment, a read undoing the
    user's delete); a run that trains into it again restores it."""
    from rich.console import Console

    from nnbench.messages import UsageError
    from nnbench.report import render_report
    from nnbench.runner import run_suite

    suite = _trained(write_suite, tracking_uri, seeds=1, epochs=1)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(suite.name)
    assert experiment is not None
    client.delete_experiment(experiment.experiment_id)
    with pytest.raises(UsageError) as refused:
        render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path / "r")
    assert str(refused.value) == (
        f"tiny: its MLflow experiment (id {experiment.experiment_id}) in {tracking_uri} was "
        f"deleted; to report it, restore it (mlflow ui: the experiment list's deleted "
        f"experiments, or MLFLOW_TRACKING_URI={tracking_uri} mlflow experiments restore "
        f"--experiment-id {experiment.experiment_id}); running the suite again restores it too")
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").iterdir())
    assert client.get_experiment(experiment.experiment_id).lifecycle_stage == "deleted"
    path = Path(suite.path)
    path.write_text(path.read_text().replace("seeds: 1", "seeds: 2"))
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri,
              console=Console(quiet=True))
    assert client.get_experiment(experiment.experiment_id).lifecycle_stage == "active"


def test_a_run_whose_artifacts_cannot_be_written_is_refused_before_any_run_opens(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Artifacts bound for a directory this process cannot write (here a file stands where
    it should be) are refused before an invocation run opens: it was a traceback, exit 1,
    with the invocation run left RUNNING."""
    from nnbench import cli

    path = write_suite(epochs=1, seeds=1)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    client = MlflowClient(tracking_uri)
    client.create_experiment("tiny", artifact_location=str(blocker / "artifacts"),
                             tags={"nnbench.suite": "tiny"})
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--report-dir", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err
    assert (f"experiment tiny's artifacts go to {blocker / 'artifacts'}, where they cannot "
            f"be written: {blocker} is a file, not a directory; make it writable, or use "
            f"another MLflow store (--tracking-uri)") in err.replace("\n", " "), err
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    assert not client.search_runs([experiment.experiment_id])  # no run opened


def test_mlflow_s_info_lines_on_a_new_store_are_not_printed(
        caplog: pytest.LogCaptureFixture) -> None:
    """"2026/12/06 06:05:47 INFO mlflow.store.db.utils: Creating initial MLflow database
    tables..." came between nnbench's lines on a new user's first run; its warnings pass."""
    import logging

    import nnbench.tracking  # noqa: F401  (installs the filter)

    logger = logging.getLogger("mlflow.store.db.utils")
    with caplog.at_level(logging.INFO, logger="mlflow.store.db.utils"):
        logger.info("Creating initial MLflow database tables...")
        logger.warning("a warning of its own")
    assert "Creating initial" not in caplog.text and "a warning of its own" in caplog.text
