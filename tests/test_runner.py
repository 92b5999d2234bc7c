"""The runner against a real MLflow SQLite store: logging, skipping, resuming, killing."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
import torch
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from rich.console import Console

from nnbench import train
from nnbench.config import Suite, TrialSpec, load_suite
from nnbench.queue import Liveness, TrialQueue, open_storage
from nnbench.results import load_results
from nnbench.runner import RunSummary, run_suite
from nnbench.tracking import Tracker, is_done
from nnbench.transient import worker_label
from tests.chaos import queue_states
from tests.conftest import stop_process, within
from tests.processes import Command, start

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                 "epoch_seconds")
QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115 (lives for the test session)


def _trial_runs(uri: str, suite: str, view: int = ViewType.ACTIVE_ONLY) -> list[Run]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(suite)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id],
                              filter_string="tags.`nnbench.role` = 'trial'", run_view_type=view)


def test_run_logs_params_metrics_tags_and_artifacts(write_suite: Callable[..., Path],
                                                    tracking_uri: str) -> None:
    suite = load_suite(write_suite(epochs=3))
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    assert (summary.trained, summary.skipped, summary.statuses["finished"]) == (4, 0, 4)

    client = MlflowClient(tracking_uri)
    runs = _trial_runs(tracking_uri, "tiny")
    assert len(runs) == 4
    run = runs[0]
    # top-level rows in MLflow's runs table, each naming its invocation
    assert {r.data.tags["nnbench.invocation"] for r in runs} == {summary.parent_run_id}
    assert not any("mlflow.parentRunId" in r.data.tags for r in runs)
    assert {r.data.tags["nnbench.axis.activation"] for r in runs} == {"tanh", "relu"}
    axis = run.data.tags["nnbench.axis.activation"]
    assert run.data.tags["nnbench.config"] == f"activation={axis}"
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # the dataset as an MLflow input: named by its parameters, sized by its splits
    assert run.inputs is not None
    (logged,) = run.inputs.dataset_inputs
    assert logged.dataset.name == "mnist1d(num_samples=600, val_fraction=0.2)"
    assert [(t.key, t.value) for t in logged.tags] == [("mlflow.data.context", "training")]
    assert logged.dataset.profile is not None and logged.dataset.schema is not None
    assert json.loads(logged.dataset.profile) == {
        "train": 384, "val": 96, "test": 120, "input_shape": [40], "targets": "class",
        "num_classes": 10}
    assert json.loads(logged.dataset.source)["tags"]["nnbench.dataset"] == "mnist1d"
    assert "float32" in logged.dataset.schema and "[-1, 40]" in logged.dataset.schema
    digests = [r.inputs.dataset_inputs[0].dataset.digest if r.inputs else None for r in runs]
    assert digests == [logged.dataset.digest] * 4  # one dataset for every trial
    for tag in ("nnbench.trial_id", "nnbench.suite", "nnbench.seed", "nnbench.status",
                "nnbench.fingerprint", "nnbench.git_commit", "nnbench.version.torch",
                "nnbench.device", "nnbench.deterministic.use_deterministic_algorithms"):
        assert run.data.tags[tag], tag
    assert run.data.tags["nnbench.status"] == "finished"
    # the worker that trained it: this process (serial and stacked engines train in-process)
    assert {r.data.tags["nnbench.worker"] for r in runs} == {worker_label()}
    assert run.data.tags["nnbench.deterministic.use_deterministic_algorithms"] == "True"
    assert run.data.tags["nnbench.version.torch"] == torch.__version__
    # the default engine (auto) stacks the two activations' seeds: one group of 4 lanes
    numerics = {(r.data.tags["nnbench.engine"], r.data.tags["nnbench.lanes"],
                 r.data.tags["nnbench.precision"]) for r in runs}
    assert numerics == {("stacked", "4", "fp32")}
    assert int(run.data.tags["nnbench.threads"]) >= 1
    assert run.data.params["optimizer.name"] == "sgd"
    assert run.data.params["optimizer.lr"] == "0.05"
    assert run.data.params["model.hidden"] == "[16]"
    assert {"test_loss", "test_accuracy", *EPOCH_METRICS} <= set(run.data.metrics)
    for key in EPOCH_METRICS:
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"spec.yaml", "history.csv"}
    spec_text = Path(client.download_artifacts(run.info.run_id, "spec.yaml")).read_text()
    assert "name: sgd" in spec_text
    assert summary.parent_run_id is not None
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert "suite.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_second_run_trains_nothing(write_suite: Callable[..., Path], tracking_uri: str) -> None:
    suite = load_suite(write_suite(epochs=2))
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    again = run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    assert (again.trained, again.skipped, again.parent_run_id) == (0, 4, None)
    assert len(_trial_runs(tracking_uri, "tiny")) == 4


def test_a_suite_that_gains_trials_trains_them_with_its_first_lane_count(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    """More seeds added to a stacked suite trained the new trials as lanes of a group sized
    for the grown suite (the default suite's 24 trials, then 12 more as 36 lanes, then 6
    as 42): three numerics in one report, and 6 trials at the cost of 42 lanes. They
    train with the lane count its first groups had, padded, unless --lanes asks for
    fewer."""
    path = write_suite(epochs=1, seeds=2)  # 4 trials of one shape: one group of 4 lanes
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri, console=QUIET)
    path.write_text(path.read_text().replace("seeds: 2", "seeds: 3"))  # 2 more
    grown = run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri,
                      console=QUIET)
    assert grown.trained == 2
    lanes = Counter(r.data.tags["nnbench.lanes"] for r in _trial_runs(tracking_uri, "tiny"))
    assert lanes == {"4": 6}, lanes  # one numerics: not 6 lanes for the new two
    # a new shape (another batch size, 3 trials): its group too
    path.write_text(path.read_text() + "ablate:\n  batch_size: [64]\n")
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri, console=QUIET)
    lanes = Counter(r.data.tags["nnbench.lanes"] for r in _trial_runs(tracking_uri, "tiny"))
    assert lanes == {"4": 9}, lanes
    path.write_text(path.read_text().replace("seeds: 3", "seeds: 4"))  # --lanes 2 asks fewer
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri, console=QUIET,
              lanes=2)
    lanes = Counter(r.data.tags["nnbench.lanes"] for r in _trial_runs(tracking_uri, "tiny"))
    assert lanes == {"4": 9, "2": 3}, lanes


def test_a_suite_keeps_the_threads_its_first_large_trial_was_timed_fastest_with(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A serial trial with a large step trains on the threads its step was timed fastest
    with (`fastest_threads`, which the load decides: 2 quiet, 1 busy on 2 cores). The
    threads change its numbers, so the suite's queue keeps the count: the trials it gains
    later train with it, untimed, whatever the load is then; --threads still wins."""
    from nnbench.train import engine

    monkeypatch.setattr(engine, "SPLIT_FLOPS", 0.0)  # the tiny suite's steps count as large
    monkeypatch.setattr(engine, "shared_cores", lambda device, workers=1: 2)
    timed: list[int] = []
    fastest = [2]  # what the timing finds now

    def timing(step: Callable[[], object], most: int) -> tuple[int, dict[int, float]]:
        timed.append(most)
        return fastest[0], {1: 0.2, 2: 0.1}

    monkeypatch.setattr(engine, "fastest_threads", timing)
    monkeypatch.setattr(engine, "others_running", lambda: 1)  # another job: timed
    path = write_suite(epochs=1, seeds=1)  # 2 trials
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def threads() -> Counter[str]:
        return Counter(r.data.tags["nnbench.threads"] for r in _trial_runs(tracking_uri, "tiny"))

    out = io.StringIO()
    run_suite(load_suite(path), device="cpu", engine="serial", tracking_uri=tracking_uri,
              storage=storage, console=Console(file=out, width=200))
    assert (timed, threads()) == ([2], {"2": 2})  # timed once for the suite
    assert "serial engine: 2 thread(s) for each trial whose training step takes 1 GFLOP or " \
           "more: the fastest now (a step on 1 thread 0.200 s, 2 threads 0.100 s)" \
           in out.getvalue(), out.getvalue()
    queue = TrialQueue("tiny", open_storage(storage, Liveness()), Liveness())
    assert (queue.kept("threads", "cpu"), queue.kept("threads", "cuda")) == (2, None)
    assert queue.keep("threads", "cpu", 1) == 2  # another worker's timing came second
    fastest[0] = 1  # the machine is busy now
    path.write_text(path.read_text().replace("seeds: 1", "seeds: 2"))  # 2 more
    grown = run_suite(load_suite(path), device="cpu", engine="serial",
                      tracking_uri=tracking_uri, storage=storage, console=QUIET)
    assert grown.trained == 2
    assert (timed, threads()) == ([2], {"2": 4})  # one numerics, not timed again
    path.write_text(path.read_text().replace("seeds: 2", "seeds: 3"))
    run_suite(load_suite(path), device="cpu", engine="serial", tracking_uri=tracking_uri,
              storage=storage, console=QUIET, threads=1)
    assert (timed, threads()) == ([2], {"2": 4, "1": 2})


def test_two_runs_give_identical_metrics_and_fingerprints(
        write_suite: Callable[..., Path], tmp_path: Path,
        mlflow_store: Callable[[Path], str]) -> None:
    suite = load_suite(write_suite(epochs=3))
    tables = []
    for store in ("a", "b"):
        uri = mlflow_store(tmp_path / f"{store}.db")
        run_suite(suite, device="cpu", tracking_uri=uri, console=QUIET,
                  storage=f"sqlite:///{tmp_path / store}-optuna.db")
        tables.append(load_results(suite, uri))
    first, second = tables
    columns = ["trial_id", "seed", "fingerprint", "test_loss", "test_accuracy", "val_loss"]
    assert first.trials[columns].equals(second.trials[columns])
    curves = ["trial_id", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    assert first.history[curves].equals(second.history[curves])
    # only the seed differs between trials of a configuration: their results differ
    per_config = first.trials.groupby("config")["fingerprint"].nunique()
    assert (per_config == 2).all()


def test_diverged_trial_is_recorded_and_the_suite_continues(write_suite: Callable[..., Path],
                                                            tracking_uri: str) -> None:
    suite = load_suite(write_suite("""\
        name: boom
        task: {dataset: {name: mnist1d, num_samples: 600}, model: {name: mlp, hidden: [16]}}
        fixed:
          optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
          epochs: 3
          batch_size: 32
        ablate:
          optimizer.lr: [1.0e+12]
        """))
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    assert summary.statuses == Counter({"finished": 1, "diverged": 1})
    diverged = [r for r in _trial_runs(tracking_uri, "boom")
                if r.data.tags["nnbench.status"] == "diverged"]
    assert len(diverged) == 1
    assert diverged[0].data.tags["nnbench.diverged_epoch"] in {"1", "2", "3"}
    assert "became" in diverged[0].data.tags["nnbench.reason"]
    # diverged counts as done: a re-run does not retry it
    assert run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET).trained == 0


def test_regression_suite_runs_and_reports(write_suite: Callable[..., Path], tracking_uri: str,
                                           tmp_path: Path) -> None:
    suite = load_suite(write_suite("""\
        name: reg
        task: {dataset: diabetes, model: {name: mlp, hidden: [8]}, loss: mse}
        fixed:
          optimizer: {name: sgd, lr: 0.01}
          epochs: 2
          batch_size: 32
        ablate:
          l2: [0.01]
        """))
    assert suite.metric == "test_rmse"
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    assert summary.statuses == Counter({"finished": 2})
    results = load_results(suite, tracking_uri)
    assert {"val_rmse", "val_mae", "test_rmse"} <= set(results.trials.columns)
    assert {"val_rmse", "val_mae"} <= set(results.history.columns)
    from nnbench.report import render_report

    html = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path).read_text()
    assert "test_rmse" in html
    assert 'alt="rmse curves"' in html and 'alt="loss curves"' in html
    assert "training error" in html and "RMSE" in html  # the fit section reads rmse


def test_failed_trials_are_retried_and_their_failed_runs_stay_failed(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed trial's queue entry fails; the next run queues it again and trains it. Its
    failed run stays in MLflow as the failed attempt it was (no run is deleted), and each
    trial has one finished run."""
    suite = load_suite(write_suite(epochs=2))
    real_build = train.build_parts

    def flaky(spec: TrialSpec, device: torch.device) -> object:
        if spec.activation.name == "tanh":
            raise RuntimeError("simulated failure")
        return real_build(spec, device)

    monkeypatch.setattr(train.build, "build_parts", flaky)
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET,
                        engine="serial")
    assert summary.statuses == Counter({"finished": 2, "failed": 2})
    failed = [r for r in _trial_runs(tracking_uri, "tiny") if r.info.status == "FAILED"]
    assert len(failed) == 2
    assert "simulated failure" in failed[0].data.tags["nnbench.reason"]

    monkeypatch.setattr(train.build, "build_parts", real_build)
    retry = run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    assert (retry.skipped, retry.trained, retry.statuses["finished"]) == (2, 2, 2)
    active = _trial_runs(tracking_uri, "tiny")
    assert Counter(r.data.tags["nnbench.status"] for r in active) == Counter(
        {"finished": 4, "failed": 2})
    done = Counter(r.data.tags["nnbench.trial_id"] for r in active if is_done(r))
    assert sorted(done.values()) == [1, 1, 1, 1]
    assert {r.data.tags["nnbench.trial_id"] for r in failed} <= set(done)
    assert not _trial_runs(tracking_uri, "tiny", ViewType.DELETED_ONLY)


def _fail_entry(storage: str) -> None:
    """What the worker that finds a stopped worker's claim stale does to its one RUNNING
    queue entry (here without queueing the trial again)."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name="tiny/trials", storage=storage)
    (entry,) = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    study._storage.set_trial_state_values(entry._trial_id, TrialState.FAIL)


def test_a_result_is_recorded_before_its_queue_entry_is_released_and_closed_after(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the queue says a trial is done, its MLflow run already holds the whole result
    (written while the claim was held) and only its status is still to come, a moment
    later."""
    from nnbench.queue import TrialQueue

    suite = load_suite(write_suite(epochs=2))
    real_release = TrialQueue.release
    at_release: list[Run] = []

    def release(self: TrialQueue, claim: Any, outcome: str, note: str = "") -> bool:
        (run,) = [r for r in _trial_runs(tracking_uri, "tiny")
                  if r.data.tags["nnbench.trial_id"] == claim.trial_id]
        at_release.append(run)
        return bool(real_release(self, claim, outcome, note))

    monkeypatch.setattr(TrialQueue, "release", release)
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    assert summary.statuses == Counter({"finished": 4})
    client = MlflowClient(tracking_uri)
    for run in at_release:
        assert run.info.status == "RUNNING" and run.data.tags["nnbench.status"] == "running"
        assert {"test_loss", "test_accuracy", "wall_seconds"} <= set(run.data.metrics)
        assert run.data.tags["nnbench.fingerprint"]
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
            "spec.yaml", "history.csv"}
    assert len(at_release) == 4
    assert all(is_done(r) for r in _trial_runs(tracking_uri, "tiny"))


def test_a_run_whose_worker_died_after_its_release_gets_the_queue_s_status(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed between releasing a claim and showing the trial's status leaves the
    run RUNNING with the whole result in it: the next worker that looks (here the same
    run, at its end) shows the status the queue holds."""
    suite = load_suite(write_suite(epochs=2))
    real_show = Tracker.show
    skipped: list[str] = []

    def killed_before_the_status(self: Tracker, run_id: str, status: str,
                                 reason: str = "") -> None:
        if not skipped:
            skipped.append(run_id)  # the worker died here
            return
        real_show(self, run_id, status, reason)

    monkeypatch.setattr(Tracker, "show", killed_before_the_status)
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    assert summary.complete
    run = MlflowClient(tracking_uri).get_run(skipped[0])
    assert (run.info.status, run.data.tags["nnbench.status"]) == ("FINISHED", "finished")
    assert len([r for r in _trial_runs(tracking_uri, "tiny") if is_done(r)]) == 4


def test_a_worker_whose_claim_went_stale_while_it_recorded_shows_its_run_killed(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The claim goes stale while a result is recorded (the worker was stopped there past
    the grace period): the release finds the entry failed, so the worker counts its claim
    as lost, shows its run killed, never finished, and goes on with the other trials."""
    import optuna
    from optuna.trial import TrialState

    suite = load_suite(write_suite(epochs=2))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    real_record = Tracker.record_trial
    taken: list[str] = []

    def stale_meanwhile(self: Tracker, run_id: str, *args: Any) -> None:
        if not taken:
            _fail_entry(storage)
            taken.append(run_id)
        real_record(self, run_id, *args)

    monkeypatch.setattr(Tracker, "record_trial", stale_meanwhile)
    out = io.StringIO()
    with within(120, "the run"):  # (a claim left held would keep the worker waiting)
        summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage,
                            engine="serial", console=Console(file=out, width=200))
    assert (summary.lost, summary.statuses) == (1, Counter({"finished": 3}))
    assert "claim lost (heartbeat stale); not recorded as done" in out.getvalue()
    runs = {r.info.run_id: r for r in _trial_runs(tracking_uri, "tiny")}
    lost = runs[taken[0]]
    assert (lost.info.status, lost.data.tags["nnbench.status"]) == ("KILLED", "killed")
    assert "heartbeat went stale" in lost.data.tags["nnbench.reason"]
    assert len([r for r in runs.values() if is_done(r)]) == 3
    entries = optuna.load_study(study_name="tiny/trials", storage=storage).get_trials()
    assert Counter(e.state for e in entries) == Counter({TrialState.COMPLETE: 3,
                                                         TrialState.FAIL: 1})
    again = run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage,
                      console=QUIET)  # the next run trains the lost trial, once
    assert (again.skipped, again.statuses) == (3, Counter({"finished": 1}))


@pytest.mark.parametrize("engine", ["serial", "stacked"])
def test_a_trial_whose_claim_was_failed_as_stale_stops_training_at_the_next_epoch(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    """A worker stopped past the grace period and resumed found out that its claim was gone
    only at the release, after training the trial to its last epoch for a result the queue
    then refused, while another worker trained it again. Its heartbeats now notice the
    failed entry, and the trial (a stacked group's lane) stops at the next epoch; the
    others train on."""
    from nnbench import runner

    suite = load_suite(write_suite(epochs=40))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    real = runner._Recorder.epoch_finished
    taken: list[str] = []

    def failed_as_stale_at_epoch_2(self: runner._Recorder, spec: TrialSpec,
                                   metrics: dict[str, float]) -> Any:
        if not taken and metrics["epoch"] == 2:
            taken.append(self.run_ids[spec.trial_id])
            study = optuna.load_study(study_name="tiny/trials", storage=storage)
            study._storage.set_trial_state_values(self.held[spec.trial_id], TrialState.FAIL)
            deadline = time.monotonic() + 30  # its next heartbeat (every second) notices
            while self.held[spec.trial_id] not in self.lost:
                assert time.monotonic() < deadline, "the heartbeats never noticed"
                time.sleep(0.05)
        return real(self, spec, metrics)

    monkeypatch.setattr(runner._Recorder, "epoch_finished", failed_as_stale_at_epoch_2)
    out = io.StringIO()
    with within(300, "the run"):
        summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage,
                            engine=engine, console=Console(file=out, width=200),
                            liveness=Liveness(heartbeat_interval=1, grace_period=60))
    assert (summary.lost, summary.statuses) == (1, Counter({"finished": 3})), out.getvalue()
    lost = MlflowClient(tracking_uri).get_run(taken[0])
    assert (lost.info.status, lost.data.tags["nnbench.status"]) == ("KILLED", "killed")
    history = MlflowClient(tracking_uri).get_metric_history(taken[0], "val_loss")
    assert len(history) == 2, history  # stopped after the epoch that found it lost
    trained = [len(MlflowClient(tracking_uri).get_metric_history(r.info.run_id, "val_loss"))
               for r in _trial_runs(tracking_uri, "tiny") if is_done(r)]
    assert trained == [40, 40, 40]


@pytest.mark.parametrize("where", ["engine", "record"])
def test_an_error_in_the_engine_leaves_no_claim_held(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """An unexpected error while claimed trials train (the engine's: `OMP_NUM_THREADS=²`
    crashed its thread policy this way; or while a result is recorded, other than MLflow's
    own) propagated with the claims still held: `status` said "2 running" and the next run
    waited a grace period for them. They are now released as failed, with the error,
    before it propagates, and the next run trains them."""
    from nnbench.train import SerialEngine

    suite = load_suite(write_suite(epochs=1))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def broken(self: SerialEngine, trials: Any, listener: Any) -> Any:
        raise RuntimeError("a bug in the engine\nand its second line")
        yield  # (a generator, as the engine's run is)

    def full(self: Tracker, *args: Any) -> None:
        raise OSError(28, "No space left on device")

    error = RuntimeError if where == "engine" else OSError
    with monkeypatch.context() as patch:
        if where == "engine":
            patch.setattr(SerialEngine, "run", broken)
        else:
            patch.setattr(Tracker, "record_trial", full)
        with pytest.raises(error):
            run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage,
                      engine="serial", console=QUIET)
    entries = optuna.load_study(study_name="tiny/trials", storage=storage).get_trials()
    assert [e.state for e in entries if e.state != TrialState.WAITING] == [TrialState.FAIL]
    assert entries[0].user_attrs["nnbench.outcome"] == (
        "failed: the worker stopped on an error: RuntimeError: a bug in the engine"
        if where == "engine" else
        "failed: the worker stopped on an error: OSError: [Errno 28] No space left on device")
    again = run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage,
                      engine="serial", console=QUIET)
    assert (again.statuses, again.lost) == (Counter({"finished": 4}), 0)


def test_a_result_whose_run_was_deleted_by_hand_fails_the_trial_and_the_worker_goes_on(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A user deletes a trial's run while it trains: its result cannot be recorded, so the
    queue records the trial as failed (the next run trains it again); the worker says so
    and trains the others."""
    suite = load_suite(write_suite(epochs=2))
    real_record = Tracker.record_trial
    taken: list[str] = []

    def deleted_meanwhile(self: Tracker, run_id: str, *args: Any) -> None:
        if not taken:
            self.client.delete_run(run_id)
            taken.append(run_id)
        real_record(self, run_id, *args)

    monkeypatch.setattr(Tracker, "record_trial", deleted_meanwhile)
    out = io.StringIO()
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, engine="serial",
                        console=Console(file=out, width=200))
    assert summary.statuses == Counter({"finished": 3, "failed": 1})
    assert "failed its result could not be recorded in MLflow" in out.getvalue()
    assert len([r for r in _trial_runs(tracking_uri, "tiny") if is_done(r)]) == 3
    assert summary.done_after == 3 and not summary.complete


def _to_layout_1(storage: str, forget: set[str]) -> None:
    """Make a queue look as an nnbench before this layout left it: no layout or store mark
    on the queue study, and no entry at all for the trials in `forget` (trials MLflow held
    as done before they were ever queued: that nnbench queued only what MLflow did not
    hold)."""
    engine = sqlalchemy.create_engine(storage)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DELETE FROM study_user_attributes"))
        ids = [row[0] for row in connection.execute(sqlalchemy.text(
            "SELECT trial_id FROM trial_user_attributes WHERE key = 'nnbench.trial_id' "
            "AND value_json IN :forget").bindparams(
                sqlalchemy.bindparam("forget", expanding=True)),
            {"forget": [json.dumps(t) for t in forget]})]
        for table in ("trial_user_attributes", "trial_values", "trial_heartbeats"):
            connection.execute(sqlalchemy.text(f"DELETE FROM {table} WHERE trial_id IN :ids")
                               .bindparams(sqlalchemy.bindparam("ids", expanding=True)),
                               {"ids": ids})
        connection.execute(sqlalchemy.text("DELETE FROM trials WHERE trial_id IN :ids")
                           .bindparams(sqlalchemy.bindparam("ids", expanding=True)),
                           {"ids": ids})
    engine.dispose()


@pytest.mark.parametrize("storage_kind", ["earlier layout", "new storage"])
def test_a_store_written_before_the_queue_was_the_only_record_keeps_working(
        storage_kind: str, write_suite: Callable[..., Path], tracking_uri: str,
        tmp_path: Path) -> None:
    """A store written before the queue was the only record. Its queue has no layout mark,
    no entry for trials MLflow held as done, a waiting twin of a done trial, and a
    complete entry whose MLflow run never got its status (its worker was killed between
    the two); or there is no queue at all (a new, empty storage next to an MLflow store
    with results). The re-run takes MLflow's word once: it trains only the trial MLflow
    does not hold as done, shows the run left RUNNING as killed, reads back the same
    results, and each trial has one finished run."""
    import optuna

    suite = load_suite(write_suite(epochs=2))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage, console=QUIET)
    before = load_results(suite, tracking_uri).trials
    trials = sorted(suite.trials(), key=lambda t: t.trial_id)
    unfinished = None
    if storage_kind == "earlier layout":
        _to_layout_1(storage, {trials[0].trial_id, trials[1].trial_id})
        optuna.load_study(study_name="tiny/trials", storage=storage).enqueue_trial(
            {}, user_attrs={"nnbench.trial_id": trials[2].trial_id, "nnbench.spec": json.dumps(
                trials[2].canonical(), sort_keys=True)})  # a twin of a done trial
        client = MlflowClient(tracking_uri)
        (unfinished,) = [r for r in _trial_runs(tracking_uri, "tiny")
                         if r.data.tags["nnbench.trial_id"] == trials[3].trial_id]
        client.update_run(unfinished.info.run_id, "RUNNING")  # killed before its status
        client.set_tag(unfinished.info.run_id, "nnbench.status", "running")
        client.delete_tag(unfinished.info.run_id, "nnbench.queue_entry")
    else:
        (tmp_path / "optuna.db").unlink()
    printed = io.StringIO()
    again = run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage,
                      console=Console(file=printed, width=200))
    retrained = 1 if unfinished is not None else 0
    assert (again.trained, again.skipped, again.complete) == (retrained, 4 - retrained, True)
    assert f"{4 - retrained} already finished, {retrained} to train" in printed.getvalue()
    runs = _trial_runs(tracking_uri, "tiny")
    assert sorted(r.data.tags["nnbench.trial_id"] for r in runs if is_done(r)) == sorted(
        t.trial_id for t in trials)  # each trial finished once
    if unfinished is not None:
        shown = MlflowClient(tracking_uri).get_run(unfinished.info.run_id)
        assert (shown.info.status, shown.data.tags["nnbench.status"]) == ("KILLED", "killed")
        assert shown.data.tags["nnbench.reason"] == "left running by an earlier nnbench"
    columns = ["trial_id", "fingerprint", "test_accuracy", "val_loss"]
    after = load_results(suite, tracking_uri).trials
    assert after[columns].sort_values("trial_id").reset_index(drop=True).equals(
        before[columns].sort_values("trial_id").reset_index(drop=True))
    queue = TrialQueue("tiny", open_storage(storage, Liveness()), Liveness())
    assert queue.migrated() and queue.done() == {t.trial_id for t in trials}
    entries = queue.entries()
    assert not [e for e in entries if e.state in (TrialState.WAITING, TrialState.RUNNING)]
    imported = [e for e in entries if str(e.user_attrs.get("nnbench.outcome", ""))
                .startswith("done: recorded in MLflow")]
    assert len(imported) == (2 if storage_kind == "earlier layout" else 4)
    queue.close()
    assert run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage,
                     console=QUIET).trained == 0


# -- whole processes: SIGKILL and Ctrl-C ----------------------------------------------------
#
# A run is interrupted at a moment checked while it is frozen (SIGSTOP): what the test reads
# of the stores cannot change before the signal lands, whatever the machine's load.

def _slow_suite(write_suite: Callable[..., Path]) -> Suite:
    """12 trials of a fraction of a second each."""
    path = write_suite("""\
        name: slow
        task: {dataset: {name: mnist1d, num_samples: 1000}, model: {name: mlp, hidden: [32]}}
        fixed:
          optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
          epochs: 12
          batch_size: 32
        grid:
          activation: [sigmoid, tanh, relu]
          init: [xavier_normal, kaiming_normal]
        seeds: 2
        """)
    return load_suite(path)


def _start(suite: Suite, uri: str, cwd: Path, *extra: str) -> Command:
    """`nnbench run` as a process of its own (tests/processes.py)."""
    return start("run", suite.path, "--device", "cpu", "--tracking-uri", uri,
                 "--report-dir", str(cwd / "reports"), *extra, cwd=cwd)


@dataclass(frozen=True)
class _Progress:
    finished: int  # trial runs tagged finished
    open_runs: frozenset[str]  # trial runs still open (RUNNING)
    claimed: int  # queue entries held (RUNNING): released only after training ends

    @property
    def running(self) -> int:
        return len(self.open_runs)


def _progress(uri: str, suite: str) -> _Progress | None:
    """Read without creating or migrating anything (the child may still be creating the
    stores' tables); None while a store cannot be read."""
    mlflow_db = Path(uri.removeprefix("sqlite:///"))
    optuna_db = mlflow_db.parent / "optuna.db"  # the queue, next to the store by default
    if not (mlflow_db.exists() and optuna_db.exists()):
        return None
    try:
        with sqlite3.connect(f"file:{mlflow_db}?mode=ro", uri=True, timeout=1) as db:
            finished, = db.execute("SELECT count(*) FROM tags WHERE key = 'nnbench.status' "
                                   "AND value = 'finished'").fetchone()
            open_runs = frozenset(run for (run,) in db.execute(
                "SELECT run_uuid FROM runs JOIN tags USING (run_uuid) WHERE tags.key = "
                "'nnbench.role' AND tags.value = 'trial' AND runs.status = 'RUNNING'"))
        with sqlite3.connect(f"file:{optuna_db}?mode=ro", uri=True, timeout=1) as db:
            claimed, = db.execute(
                "SELECT count(*) FROM trials JOIN studies USING (study_id) WHERE "
                "studies.study_name = ? AND trials.state = 'RUNNING'",
                (f"{suite}/trials",)).fetchone()
    except sqlite3.OperationalError:  # no tables yet, or locked by the frozen child
        return None
    return _Progress(int(finished), open_runs, int(claimed))


def _cpu_seconds(pid: int) -> float:
    """CPU time a process has used (all its threads): its own progress, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _freeze_when(proc: Command, uri: str, suite: str,
                 ready: Callable[[_Progress], bool], cpu_into: float = 0.0) -> _Progress:
    """Stop `proc` (SIGSTOP) at a moment when `ready` holds, with the same trial runs open
    since it has used `cpu_into` seconds of CPU (into their training, past building them);
    checked again while it is stopped. Returns what was read then. The caller signals it,
    then sends SIGCONT."""
    deadline = time.monotonic() + 120
    seen: tuple[frozenset[str], float] | None = None  # the runs in flight, CPU then
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        progress = _progress(uri, suite)
        if progress is None or not ready(progress):
            seen = None
        else:
            if seen is None or seen[0] != progress.open_runs:
                seen = (progress.open_runs, _cpu_seconds(proc.pid))
            if _cpu_seconds(proc.pid) - seen[1] >= cpu_into:
                stop_process(proc)
                again = _progress(uri, suite)
                if again is not None and ready(again) and again.open_runs == seen[0]:
                    return again
                proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the run never reached the moment to interrupt it within 120 s")


def _rerun(suite: Suite, uri: str, **options: Any) -> tuple[RunSummary, str]:
    """Run the suite again in this process, as `nnbench run` would; its summary (checked
    complete, not interrupted) and what it printed."""
    printed = io.StringIO()
    with within(300, "the rerun"):
        summary = run_suite(suite, device="cpu", tracking_uri=uri,
                            console=Console(file=printed, width=200), **options)
    assert summary.complete and not summary.interrupted, printed.getvalue()
    return summary, printed.getvalue()


def _assert_complete_and_unique(uri: str, suite: Suite) -> list[Run]:
    """Each trial has exactly one finished run; every other run (an interrupted attempt)
    is closed as killed, none left RUNNING, none deleted. Returns the killed runs."""
    active = _trial_runs(uri, suite.name)
    done = [r.data.tags["nnbench.trial_id"] for r in active if is_done(r)]
    assert sorted(done) == sorted(t.trial_id for t in suite.trials())  # each trial once
    others = [r for r in active if not is_done(r)]
    assert {(r.info.status, r.data.tags["nnbench.status"]) for r in others} <= {
        ("KILLED", "killed")}
    assert not _trial_runs(uri, suite.name, ViewType.DELETED_ONLY)
    return others


@pytest.mark.slow
def test_sigkill_mid_suite_then_rerun_ends_with_every_trial_once(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path) -> None:
    suite = _slow_suite(write_suite)
    # the killed worker's claim is queued again once its heartbeats are 3 s old
    options = ("--heartbeat-interval", "1", "--grace-period", "3", "--engine", "serial")
    proc = _start(suite, tracking_uri, tmp_path, *options)
    # killed with 3 or more trials finished and one in flight (claimed, not yet released,
    # its run open)
    _freeze_when(proc, tracking_uri, suite.name,
                 lambda p: p.finished >= 3 and p.claimed == p.running == 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len([r for r in _trial_runs(tracking_uri, suite.name) if is_done(r)])
    assert 3 <= done_before < 12

    # the rerun (in this process): the killed claim's process is gone from this machine, so
    # it is queued again at once, not after the grace period (600 s here), and trained
    summary, output = _rerun(suite, tracking_uri, engine="serial",
                             liveness=Liveness(heartbeat_interval=1, grace_period=600))
    assert f"{done_before} already finished" in output
    assert summary.statuses == Counter({"finished": 12 - done_before}), output
    (lost,) = _assert_complete_and_unique(tracking_uri, suite)  # the killed worker's trial
    assert f"its worker ({socket.gethostname()}:{proc.pid}) has ended (no such process on " \
           f"this machine); queued again" in lost.data.tags["nnbench.reason"]
    # the killed process's invocation run is ended (it showed RUNNING for good), the
    # re-run's is finished
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(suite.name)
    assert experiment is not None
    invocations = {r.data.tags["nnbench.worker"]: r for r in client.search_runs(
        [experiment.experiment_id], "tags.`nnbench.role` = 'suite'")}
    killed = invocations.pop(f"{socket.gethostname()}:{proc.pid}")
    assert killed.info.status == "KILLED"
    assert killed.data.tags["nnbench.reason"].startswith(
        f"its process ({socket.gethostname()}:{proc.pid}) ended without closing the run")
    assert [r.info.status for r in invocations.values()] == ["FINISHED"]


@pytest.mark.parametrize(("signum", "forked"), [(signal.SIGINT, False), (signal.SIGHUP, True)],
                         ids=["SIGINT", "SIGHUP"])
def test_ctrl_c_with_the_output_piped_to_a_reader_that_is_gone_records_every_lane(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, signum: signal.Signals, forked: bool) -> None:
    """`nnbench run ... | tee log` and Ctrl-C: the terminal ends tee as well, and the
    first line written to the closed pipe (BrokenPipeError) aborted recording the other
    lanes: 1 of 4 recorded killed, 3 left RUNNING with their claims held, exit 1. The
    terminal closed (SIGHUP, an ssh session dropped): the process died outright, its runs
    RUNNING and claims held. Ctrl-C runs `python -m nnbench.cli` itself (its interpreter's
    exit flushes into the broken pipe too); SIGHUP forks the command from the tests'
    forkserver (8 CPU-s of imports less), its output to a named pipe the test reads."""
    import subprocess

    suite = load_suite(write_suite("""\
        name: piped
        task: {dataset: {name: mnist1d, num_samples: 1000}, model: {name: mlp, hidden: [32]}}
        fixed:
          optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
          epochs: 400
          batch_size: 32
        grid:
          activation: [relu, tanh]
        seeds: 2
        """))
    argv = ["run", str(suite.path), "--device", "cpu", "--engine", "stacked", "--tracking-uri",
            tracking_uri, "--report-dir", str(tmp_path / "reports")]
    monkeypatch.setenv("COLUMNS", "100")
    proc: subprocess.Popen[bytes] | Command
    if forked:
        tee = tmp_path / "tee"
        os.mkfifo(tee)
        proc = start(*argv, cwd=tmp_path, log=tee)
        with within(120, "nnbench run opening its output"):
            reader = os.open(tee, os.O_RDONLY)  # once the command has opened it to write
    else:
        proc = subprocess.Popen([sys.executable, "-m", "nnbench.cli", *argv], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        reader = os.dup(proc.stdout.fileno())
        proc.stdout.close()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the group's four lanes in flight
            progress = _progress(tracking_uri, suite.name)
            if progress is not None and progress.running == progress.claimed == 4:
                break
            assert proc.poll() is None, os.read(reader, 1 << 16).decode()  # (ended: no block)
            time.sleep(0.05)
        else:
            raise AssertionError("the group did not start")
        stop_process(proc)
    finally:
        os.close(reader)  # the reader is gone (tee ended by the same Ctrl-C)
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=60) == 130
    runs = _trial_runs(tracking_uri, suite.name)
    assert sorted((r.info.status, r.data.tags["nnbench.status"]) for r in runs) == \
        [("KILLED", "killed")] * 4
    optuna_db = Path(tracking_uri.removeprefix("sqlite:///")).parent / "optuna.db"
    states, _, _ = queue_states(f"sqlite:///{optuna_db}", suite.name)
    assert sorted(states.values()) == ["queued"] * 4, states  # no claim held


def test_an_interrupt_python_ignored_still_stops_the_command(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A KeyboardInterrupt raised inside a garbage-collection callback is ignored by Python
    ("Exception ignored in: <function WeakKeyDictionary...>"): `nnbench report` went on and
    exited 0, a run trained on. The training stops at its next epoch, the command exits
    130 and says so."""
    from nnbench import cli, transient

    def swallowed(args: Any) -> int:  # the interrupt lands where Python ignores it
        with contextlib.suppress(KeyboardInterrupt):
            transient.interrupt(signal.SIGINT, None)
        return 0

    path = write_suite(epochs=3, seeds=1)
    monkeypatch.setattr(cli, "_cmd_validate", swallowed)
    assert cli.main(["validate", str(path)]) == 130
    assert "interrupted (the command could not stop at once" in capsys.readouterr().err
    transient._SIGNALLED.append(signal.SIGINT)  # as an ignored interrupt leaves it
    try:
        summary = run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri,
                            console=QUIET)
    finally:
        transient.interrupted(clear=True)
    assert summary.interrupted and summary.statuses == Counter({"killed": 2})
    runs = _trial_runs(tracking_uri, "tiny")
    assert {int(r.data.tags["nnbench.epochs_done"]) for r in runs} <= {0, 1}  # not 3


def test_an_interrupt_swallowed_mid_import_ends_as_interrupted_not_as_its_damage(
        write_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM to `nnbench worker` 0.8-1 s after its start (while torch imported numpy),
    once in seven tries: C code swallowed the KeyboardInterrupt and left numpy half
    imported. What followed was numpy's RecursionError: a traceback and exit 1 where it
    met `import mlflow`, or "fixed.optimizer: maximum recursion depth exceeded" where it
    met validation (the suite blamed). Both now end as interrupted (130)."""
    from nnbench import cli, registry, transient

    def damaged() -> None:  # the interrupt swallowed, then the half-made import's error
        with contextlib.suppress(KeyboardInterrupt):
            transient.interrupt(signal.SIGTERM, None)
        raise RecursionError("maximum recursion depth exceeded")

    path = write_suite(epochs=1, seeds=1)
    monkeypatch.setattr(registry, "load_builtins", damaged)  # validation loads components
    try:
        assert cli.main(["validate", str(path)]) == 130
    finally:
        transient.interrupted(clear=True)
    said = capsys.readouterr().err
    assert "recursion" not in said and said.strip().endswith("interrupted"), said
    monkeypatch.undo()

    def worker(args: Any) -> int:  # a command's own import meets the damage
        damaged()
        return 0

    monkeypatch.setattr(cli, "_cmd_validate", worker)
    try:
        assert cli.main(["validate", str(path)]) == 130
    finally:
        transient.interrupted(clear=True)
    said = capsys.readouterr().err
    assert "Traceback" not in said and said.strip() == (
        "interrupted (then RecursionError: maximum recursion depth exceeded)"), said


def test_an_interrupt_python_could_not_raise_prints_no_traceback(
        write_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C landing in a garbage-collection callback (SQLAlchemy's class registry, in a
    `tune --workers` worker) printed "Exception ignored in: <bound method
    _MultipleClassMarker._remove_item ...>", a traceback and "KeyboardInterrupt" over the
    command's output (Python's unraisable hook). The command still says it was
    interrupted, once, and exits 130; another exception Python cannot raise still goes to
    the hook."""
    from nnbench import cli, transient

    class Collected:
        def __init__(self, then: Callable[[], None]) -> None:
            self.then = then

        def __del__(self) -> None:  # where Python cannot raise: it reports it instead
            self.then()

    def validate(args: Any) -> int:
        Collected(lambda: transient.interrupt(signal.SIGINT, None))  # collected at once
        return 0

    reported: list[BaseException | None] = []  # what reaches Python's hook (it prints it)
    def hook(report: Any) -> None:
        reported.append(report.exc_value)

    monkeypatch.setattr(sys, "unraisablehook", hook)
    monkeypatch.setattr(cli, "_cmd_validate", validate)
    assert cli.main(["validate", str(write_suite(epochs=1, seeds=1))]) == 130
    assert reported == []
    assert capsys.readouterr().err.count("interrupted") == 1

    def other(args: Any) -> int:
        def fail() -> None:
            raise ValueError("a bug in a finalizer")
        Collected(fail)
        return 0

    monkeypatch.setattr(cli, "_cmd_validate", other)
    assert cli.main(["validate", str(write_suite(epochs=1, seeds=1))]) == 0
    assert [str(e) for e in reported] == ["a bug in a finalizer"]
    assert sys.unraisablehook is hook  # restored after the command


def test_an_interrupt_while_trials_are_claimed_leaves_no_claim_held(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or SIGTERM) landing as a worker takes its claims: it waits until they are in
    hand, then releases each as killed, untrained, and queued again. Before, the interrupt
    could escape between the claim and the training, the claims held until they went stale
    (a grace period, 60 s by default) while the process had already exited."""
    suite = load_suite(write_suite(epochs=1, seeds=2))
    real = TrialQueue.claim

    def claim_then_interrupt(self: TrialQueue, n: int, parent_run_id: str | None = None
                             ) -> list[Any]:
        claims = real(self, n, parent_run_id)
        os.kill(os.getpid(), signal.SIGINT)  # delivered while the claims are being taken
        return claims

    monkeypatch.setattr(TrialQueue, "claim", claim_then_interrupt)
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, engine="serial",
                        console=Console(quiet=True))
    assert summary.interrupted and not summary.statuses
    optuna_db = Path(tracking_uri.removeprefix("sqlite:///")).parent / "optuna.db"
    states, entries, _ = queue_states(f"sqlite:///{optuna_db}", suite.name)
    assert set(states.values()) == {"queued"} and len(states) == len(suite.trials()), states
    assert entries["RUNNING"] == 0 and entries["FAIL"] >= 1, entries  # released, re-queued


@pytest.mark.slow
@pytest.mark.parametrize(("engine", "in_flight", "signum"),
                         [("serial", 1, signal.SIGINT), ("stacked", 2, signal.SIGTERM)],
                         ids=["serial-ctrl-c", "stacked-sigterm"])
def test_ctrl_c_records_the_in_flight_trials_as_killed(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path, engine: str,
        in_flight: int, signum: signal.Signals) -> None:
    """Serial: one trial in flight; stacked: a group's two lanes (the batch-32 seeds
    finish as one group, then the batch-16 group's two lanes are interrupted together).
    Ctrl-C (SIGINT) or SIGTERM (a cluster's time limit or preemption; it used to end the
    process at once, its trials held until the grace period ran out) lands while the
    trials in flight train: their MLflow runs are open, their queue claims held (a claim
    is released only once its trial has trained), and the process has spent 0.2 s of CPU
    on them (building a group's lanes takes about 0.01 s; training them 0.8-4 s: at 40
    epochs, 0.3 s, the group could finish between the freeze's reads under load, and one
    lane be recorded finished before the signal was taken)."""
    suite = load_suite(write_suite("""\
        name: long
        task: {dataset: {name: mnist1d, num_samples: 1000}, model: {name: mlp, hidden: [32]}}
        fixed:
          optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
          epochs: 100
          batch_size: 32
        grid:
          batch_size: [32, 16]
        seeds: 2
        """))
    proc = _start(suite, tracking_uri, tmp_path, "--engine", engine)
    at = _freeze_when(proc, tracking_uri, suite.name, lambda p: p.finished >= in_flight
                      and p.running == p.claimed == in_flight, cpu_into=0.2)
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    output = proc.finish(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    runs = _trial_runs(tracking_uri, suite.name)
    statuses = Counter(r.data.tags["nnbench.status"] for r in runs)
    assert statuses == Counter({"finished": at.finished, "killed": in_flight}), output
    killed = [r for r in runs if r.data.tags["nnbench.status"] == "killed"]
    assert {r.info.status for r in killed} == {"KILLED"}
    assert {r.data.tags["nnbench.reason"] for r in killed} <= {
        "interrupted (Ctrl-C or SIGTERM)", *(f"interrupted during epoch {e}" for e in range(101)),
        *(f"interrupted after its last epoch ({e}), before its end was recorded"
          for e in range(101))
    }, [r.data.tags["nnbench.reason"] for r in killed]
    # the killed trials are queued again at once, for any other worker: waiting, not failed
    optuna_db = Path(tracking_uri.removeprefix("sqlite:///")).parent / "optuna.db"
    states, _, _ = queue_states(f"sqlite:///{optuna_db}", suite.name)
    assert {states[r.data.tags["nnbench.trial_id"]] for r in killed} == {"queued"}, states

    summary, output = _rerun(suite, tracking_uri, engine=engine)  # in this process
    assert f"{at.finished} already finished, {4 - at.finished} to train" in output
    assert summary.statuses == Counter({"finished": 4 - at.finished}), output
    again = _assert_complete_and_unique(tracking_uri, suite)
    assert sorted(r.info.run_id for r in again) == sorted(r.info.run_id for r in killed)
