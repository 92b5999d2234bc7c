"""The runner against a real MLflow SQLite store: logging, skipping, resuming, killing."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient
from rich.console import Console

from nnbench import train
from nnbench.config import Suite, TrialSpec, load_suite
from nnbench.queue import Liveness
from nnbench.results import load_results
from nnbench.runner import RunSummary, run_suite
from nnbench.tracking import Tracker, is_done
from nnbench.transient import worker_label
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


def test_two_runs_give_identical_metrics_and_fingerprints(
        write_suite: Callable[..., Path], tmp_path: Path,
        mlflow_store: Callable[[Path], str]) -> None:
    suite = load_suite(write_suite(epochs=3))
    tables = []
    for store in ("a", "b"):
        uri = mlflow_store(tmp_path / f"{store}.db")
        run_suite(suite, device="cpu", tracking_uri=uri, console=QUIET)
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


def test_failed_trials_are_retried_and_their_failed_runs_superseded(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert (retry.trained, retry.statuses["finished"]) == (2, 2)
    active = _trial_runs(tracking_uri, "tiny")
    assert sorted(r.data.tags["nnbench.status"] for r in active) == ["finished"] * 4
    assert len({r.data.tags["nnbench.trial_id"] for r in active}) == 4
    deleted = _trial_runs(tracking_uri, "tiny", ViewType.DELETED_ONLY)
    assert {r.info.run_id for r in deleted} == {r.info.run_id for r in failed}


def _delete_meanwhile(tracker: Tracker, run_id: str, storage: str, *, fail_entry: bool
                      ) -> None:
    """What happens to a serial worker's trial while the worker is stopped: its one RUNNING
    queue entry is failed as stale (by the worker that takes the trial over; `fail_entry`)
    and its MLflow run is deleted (once the trial is done again, or by hand)."""
    import optuna
    from optuna.trial import TrialState

    if fail_entry:
        study = optuna.load_study(study_name="tiny/trials", storage=storage)
        (entry,) = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        study._storage.set_trial_state_values(entry._trial_id, TrialState.FAIL)
    tracker.client.delete_run(run_id)


def test_a_result_is_recorded_before_its_queue_entry_is_released_and_closed_after(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the queue says a trial is done, its MLflow run holds the whole result and only
    its status is still to come: a worker starting at that moment finds the trial done in
    MLflow a moment later, not after the result's recording (seconds, with a model)."""
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


@pytest.mark.parametrize("by", ["another worker", "hand"])
def test_a_result_whose_run_was_deleted_while_it_was_recorded_is_not_recorded(
        by: str, write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The claim goes stale while a result is recorded (a worker stopped there): the worker
    that took the trial over deletes the run once it is done. Or a user deletes the run
    by hand meanwhile. The worker counts its claim as lost, records nothing more, ends its
    queue entry (a later run queues the trial again) and goes on."""
    import optuna
    from optuna.trial import TrialState

    suite = load_suite(write_suite(epochs=2))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    real_record = Tracker.record_trial
    taken: list[str] = []

    def deleted_meanwhile(self: Tracker, run_id: str, *args: Any) -> None:
        if not taken:  # its claim went stale: failed by the worker taking over; or not
            _delete_meanwhile(self, run_id, storage, fail_entry=by == "another worker")
            taken.append(run_id)
        real_record(self, run_id, *args)

    monkeypatch.setattr(Tracker, "record_trial", deleted_meanwhile)
    out = io.StringIO()
    with within(120, "the run"):  # (a claim left held would keep the worker waiting)
        summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage,
                            engine="serial", console=Console(file=out, width=200))
    assert (summary.lost, summary.statuses) == (1, Counter({"finished": 3}))
    assert "claim lost (heartbeat stale); not recorded as done" in out.getvalue()
    (run,) = _trial_runs(tracking_uri, "tiny", ViewType.DELETED_ONLY)
    assert run.info.run_id == taken[0] and run.data.tags["nnbench.status"] == "running"
    assert len([r for r in _trial_runs(tracking_uri, "tiny") if is_done(r)]) == 3
    entries = optuna.load_study(study_name="tiny/trials", storage=storage).get_trials()
    assert Counter(e.state for e in entries) == Counter({TrialState.COMPLETE: 3,
                                                         TrialState.FAIL: 1})


def test_a_worker_whose_run_was_taken_over_while_it_opened_it_skips_the_trial(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that stops (hung, suspended) right after creating a trial's run loses its
    claim; the worker that takes the trial over closes that run and, once the trial is
    done, deletes it. When the first worker resumes, it skips the trial, says its claim was
    lost and goes on with the others (it used to fail writing to the deleted run)."""

    suite = load_suite(write_suite(epochs=2))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    real_start = Tracker.start_trial
    taken: list[str] = []

    def stopped_after_creating_the_run(self: Tracker, *args: Any, **kwargs: Any) -> str:
        create = self.client.create_run

        def create_then_taken_over(*a: Any, **k: Any) -> Run:
            run = create(*a, **k)
            if not taken:  # meanwhile the claim went stale, another worker did the trial
                _delete_meanwhile(self, run.info.run_id, storage, fail_entry=True)
                taken.append(run.info.run_id)
            return run

        self.client.create_run = create_then_taken_over  # type: ignore[method-assign]
        try:
            return real_start(self, *args, **kwargs)
        finally:
            del self.client.create_run

    monkeypatch.setattr(Tracker, "start_trial", stopped_after_creating_the_run)
    out = io.StringIO()
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, storage=storage,
                        engine="serial", console=Console(file=out, width=200))
    assert (summary.lost, summary.statuses) == (1, Counter({"finished": 3}))
    assert "skipped: its run was closed by another worker while it was opened (claim lost)" \
        in out.getvalue()
    (run,) = _trial_runs(tracking_uri, "tiny", ViewType.DELETED_ONLY)
    assert run.info.run_id == taken[0]
    assert len([r for r in _trial_runs(tracking_uri, "tiny") if is_done(r)]) == 3


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


def _assert_complete_and_unique(uri: str, suite: Suite) -> None:
    active = _trial_runs(uri, suite.name)
    ids = [r.data.tags["nnbench.trial_id"] for r in active]
    assert sorted(ids) == sorted(t.trial_id for t in suite.trials())  # each trial exactly once
    assert {r.data.tags["nnbench.status"] for r in active} == {"finished"}
    assert {r.info.status for r in active} == {"FINISHED"}


@pytest.mark.slow
def test_sigkill_mid_suite_then_rerun_ends_with_every_trial_once(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path) -> None:
    suite = _slow_suite(write_suite)
    # the killed worker's claim is queued again once its heartbeats are 3 s old
    options = ("--heartbeat-interval", "1", "--grace-period", "3", "--engine", "serial")
    proc = _start(suite, tracking_uri, tmp_path, *options)
    # killed with 3 or more trials finished and one in flight (claimed, not yet released)
    _freeze_when(proc, tracking_uri, suite.name, lambda p: p.finished >= 3 and p.claimed == 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len([r for r in _trial_runs(tracking_uri, suite.name) if is_done(r)])
    assert 3 <= done_before < 12

    # the rerun (in this process): it waits for the killed claim to go stale and trains it
    summary, output = _rerun(suite, tracking_uri, engine="serial",
                             liveness=Liveness(heartbeat_interval=1, grace_period=3))
    assert f"{done_before} already finished" in output
    assert summary.statuses == Counter({"finished": 12 - done_before}), output
    _assert_complete_and_unique(tracking_uri, suite)


@pytest.mark.slow
@pytest.mark.parametrize(("engine", "in_flight"), [("serial", 1), ("stacked", 2)])
def test_ctrl_c_records_the_in_flight_trials_as_killed(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path, engine: str,
        in_flight: int) -> None:
    """Serial: one trial in flight; stacked: a group's two lanes (the batch-32 seeds
    finish as one group, then the batch-16 group's two lanes are interrupted together).
    Ctrl-C lands while the trials in flight train: their MLflow runs are open, their queue
    claims held (a claim is released only once its trial has trained), and the process has
    spent 0.2 s of CPU on them (building a group's lanes takes about 0.01 s; training them
    0.3-1.5 s)."""
    suite = load_suite(write_suite("""\
        name: long
        task: {dataset: {name: mnist1d, num_samples: 1000}, model: {name: mlp, hidden: [32]}}
        fixed:
          optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
          epochs: 40
          batch_size: 32
        grid:
          batch_size: [32, 16]
        seeds: 2
        """))
    proc = _start(suite, tracking_uri, tmp_path, "--engine", engine)
    at = _freeze_when(proc, tracking_uri, suite.name, lambda p: p.finished >= in_flight
                      and p.running == p.claimed == in_flight, cpu_into=0.2)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    output = proc.finish(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    runs = _trial_runs(tracking_uri, suite.name)
    statuses = Counter(r.data.tags["nnbench.status"] for r in runs)
    assert statuses == Counter({"finished": at.finished, "killed": in_flight}), output
    killed = [r for r in runs if r.data.tags["nnbench.status"] == "killed"]
    assert {r.info.status for r in killed} == {"KILLED"}
    assert all("interrupted" in r.data.tags["nnbench.reason"] for r in killed)

    summary, output = _rerun(suite, tracking_uri, engine=engine)  # in this process
    assert f"{at.finished} already finished, {4 - at.finished} to train" in output
    assert summary.statuses == Counter({"finished": 4 - at.finished}), output
    _assert_complete_and_unique(tracking_uri, suite)
    deleted = _trial_runs(tracking_uri, suite.name, ViewType.DELETED_ONLY)
    # superseded, kept restorable
    assert sorted(r.info.run_id for r in deleted) == sorted(r.info.run_id for r in killed)
