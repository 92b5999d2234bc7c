"""Workers sharing a suite's trial queue: claims, heartbeats, dead and silent workers,
local worker processes, submitit, and many workers opening a fresh store at once. Workers
killed and stopped at random on a fresh PostgreSQL store: tests/test_chaos.py.

Liveness in these tests: a heartbeat every second, a grace period of 4 seconds (the
defaults are 10 and 60 s), so a silent worker's trials are re-queued within seconds.
A worker is stopped or killed in the middle of a trial by freezing it first (SIGSTOP) and
checking, while it cannot move, that it holds a trial whose MLflow run is open: the
trials can be short, and what the test then does hits a trial in flight whatever the load.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import psutil
import pytest
import sqlalchemy
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from nnbench import cli
from nnbench.config import load_suite
from nnbench.config.spec import TrialSpec
from nnbench.queue import Liveness, TrialQueue, open_storage
from nnbench.tracking import is_done
from nnbench.tuning import study_name
from tests.conftest import Postgres, stop_process, within
from tests.processes import Command, ready_then_wait, release_at_once, spawn, start

FAST = ("--heartbeat-interval", "1", "--grace-period", "4")
LIVENESS = Liveness(heartbeat_interval=1, grace_period=4)

# trials of a fraction of a second each (a 40-32-10 MLP, 40 steps an epoch)
HEAD = """\
name: {name}
task:
  dataset: {{name: mnist1d, num_samples: 1000, val_fraction: 0.2}}
  model: {{name: mlp, hidden: [32]}}
  metric: val_accuracy
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}
  epochs: {epochs}
  batch_size: 16
"""
SUITE = HEAD + """\
grid:
  activation: [tanh, relu]
seeds: {seeds}
"""


def _suite(write_suite: Callable[..., Path], name: str, epochs: int = 30,
           seeds: int = 4) -> Path:
    return write_suite(SUITE.format(name=name, epochs=epochs, seeds=seeds), name=name)


def _worker(path: Path, storage: str, uri: str, cwd: Path, *extra: str) -> Command:
    """An `nnbench worker` process (tests/processes.py); its output goes to a file,
    readable while it runs."""
    return start("worker", str(path), "--device", "cpu", "--storage", storage,
                 "--tracking-uri", uri, *FAST, *extra, cwd=cwd)


def _runs(uri: str, suite: str, role: str = "trial",
          view: int = ViewType.ACTIVE_ONLY) -> list[Run]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(suite)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], run_view_type=view,
                              filter_string=f"tags.`nnbench.role` = '{role}'")


def _entries(storage: str, study: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _study_exists(storage: str, study: str) -> bool:
    """Read without creating anything: opening an Optuna storage creates its tables, which
    the workers under test must do themselves."""
    engine = sqlalchemy.create_engine(storage)
    try:
        with engine.connect() as connection:
            found = connection.execute(sqlalchemy.text(
                "SELECT 1 FROM studies WHERE study_name = :name"), {"name": study}).first()
        return found is not None
    except sqlalchemy.exc.DBAPIError:  # no tables yet
        return False
    finally:
        engine.dispose()


def _open_run_of(entry: FrozenTrial, role: str, worker: Command) -> str:
    """The MLflow filter for `worker`'s open run of a queue entry (role trial) or of an
    Optuna trial (role tune)."""
    if role == "trial":
        key, value = "nnbench.trial_id", str(entry.user_attrs["nnbench.trial_id"])
    else:
        key, value = "nnbench.optuna_trial", str(entry.number)
    return (f"tags.`nnbench.role` = '{role}' AND tags.`{key}` = '{value}' AND "
            f"tags.`nnbench.worker` LIKE '%:{worker.pid}' AND attributes.status = 'RUNNING'")


def _transactions_open(postgres: Postgres) -> bool:
    """Is a session on the test's databases (other than this query's) inside a transaction?"""
    engine = sqlalchemy.create_engine(f"{postgres.server}/postgres")
    try:
        with engine.connect() as connection:
            return bool(connection.execute(sqlalchemy.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname IN (:a, :b) AND state "
                "<> 'idle' AND pid <> pg_backend_pid()"), {
                    "a": postgres.optuna.rpartition("/")[2],
                    "b": postgres.mlflow.rpartition("/")[2]}).scalar())
    finally:
        engine.dispose()


def _freeze_mid_trial(workers: list[Command], postgres: Postgres, study: str, suite: str,
                      role: str = "trial", *, idle: bool = False,
                      timeout: float = 240) -> tuple[Command, list[FrozenTrial]]:
    """Stop (SIGSTOP) a worker that is in the middle of a trial of `study`: it holds a
    RUNNING entry and its own MLflow run of the trial is open. (A worker that has just
    claimed an entry holds it while it checks whether the entry is a twin of a trial another
    worker trains: that other worker's run is then the open one.) Checked once it is
    stopped and the server has carried out what it had sent; a worker caught between two
    trials is resumed and another moment is tried. With `idle` (a test whose only worker is
    this one), the worker must also be stopped outside any transaction on the test's
    databases, training rather than writing. Returns the stopped worker and the entries it
    holds."""
    storage, uri = postgres.optuna, postgres.mlflow
    deadline = time.monotonic() + timeout
    rdb: optuna.storages.RDBStorage | None = None
    while time.monotonic() < deadline:
        for worker in workers:
            assert worker.poll() is None, worker.output()
        if rdb is None and _study_exists(storage, study):
            rdb = optuna.storages.RDBStorage(storage)
        if rdb is not None:
            for worker in workers:
                if not _holding(rdb, study, worker):
                    continue
                stop_process(worker)
                try:
                    _settled(postgres, worker)
                except BaseException:
                    worker.send_signal(signal.SIGCONT)
                    raise
                held = _holding(rdb, study, worker)
                experiment = MlflowClient(uri).get_experiment_by_name(suite)
                if held and experiment is not None and all(
                        MlflowClient(uri).search_runs([experiment.experiment_id],
                                                      _open_run_of(e, role, worker))
                        for e in held) and not (idle and _transactions_open(postgres)):
                    return worker, held
                worker.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError("no worker was caught in the middle of a trial in time")


def _settled(postgres: Postgres, worker: Command, timeout: float = 60) -> None:
    """Return once the PostgreSQL server has carried out every statement the stopped
    `worker` sent: a COMMIT sent just before SIGSTOP still lands after it (the worker's
    release of an entry, say), so what the test reads before that is not yet what holds.
    Settled: none of the worker's sessions is running a statement, and the server's end of
    each of its connections has nothing unread, twice in a row 50 ms apart."""
    port = int(postgres.server.rpartition(":")[2])
    engine = sqlalchemy.create_engine(f"{postgres.server}/postgres")
    deadline, calm = time.monotonic() + timeout, 0
    try:
        while calm < 2:
            assert time.monotonic() < deadline, f"worker {worker.pid}: the server stays busy"
            clients = [c.laddr.port for c in psutil.Process(worker.pid).net_connections("tcp")
                       if c.raddr and c.raddr.port == port]
            assert clients, f"worker {worker.pid} holds no connection to the server"
            with engine.connect() as connection:  # (a backend writing to the stopped
                busy = connection.execute(sqlalchemy.text(  # worker waits on it: not busy)
                    "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(:ports) "
                    "AND state = 'active' AND wait_event IS DISTINCT FROM 'ClientWrite'"),
                    {"ports": clients}).scalar()
            calm = calm + 1 if not busy and not _unread(port, clients) else 0
            time.sleep(0.05)
    finally:
        engine.dispose()


def _unread(server_port: int, clients: list[int]) -> bool:
    """Has the server's end of a connection from one of the `clients` ports bytes it has not
    read yet (/proc/net/tcp's rx_queue; the test server listens on 127.0.0.1)?"""
    unread, seen = False, set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        client = int(remote.rpartition(":")[2], 16)
        if int(local.rpartition(":")[2], 16) == server_port and client in clients:
            seen.add(client)
            unread = unread or bool(int(queues.partition(":")[2], 16))
    # every connection found from the server's end (a client closing one just now may not)
    assert seen or not clients, f"no server end of the connections from ports {clients}"
    return unread


def _holding(rdb: optuna.storages.RDBStorage, study: str, worker: Command) -> list[FrozenTrial]:
    """The RUNNING entries of `study` that `worker` claimed."""
    entries = optuna.load_study(study_name=study, storage=rdb).get_trials(
        deepcopy=False, states=(TrialState.RUNNING,))
    return [e for e in entries
            if str(e.user_attrs.get("nnbench.worker", "")).endswith(f":{worker.pid}")]


def _trained_after(stale: FrozenTrial, entries: list[FrozenTrial]) -> None:
    """After `stale` failed, its trial was queued again and trained to the end, once: one
    COMPLETE entry of it, numbered after the stale one, and none waiting or running (a
    trial never has two live entries)."""
    trial_id = stale.user_attrs["nnbench.trial_id"]
    same = [e for e in entries if e.user_attrs.get("nnbench.trial_id") == trial_id]
    (trained,) = [e for e in same if e.state == TrialState.COMPLETE]
    assert trained.number > stale.number
    assert trained.user_attrs["nnbench.outcome"] == "finished"
    assert not [e for e in same if e.state in (TrialState.WAITING, TrialState.RUNNING)]


def _finished_once(uri: str, suite_name: str, trial_ids: set[str]) -> dict[str, Run]:
    """Every trial has exactly one active, finished run; returns them by trial_id."""
    runs = _runs(uri, suite_name)
    done = [r for r in runs if is_done(r)]
    counts = Counter(r.data.tags["nnbench.trial_id"] for r in done)
    assert set(counts) == trial_ids
    assert set(counts.values()) == {1}, counts
    assert not [r for r in runs if r.info.status == "RUNNING"]
    return {r.data.tags["nnbench.trial_id"]: r for r in done}


# -- a worker whose heartbeat stops (as one dying on another host) -------------------------

def _silent_worker(path: Path, postgres: Postgres, cwd: Path, study: str, suite: str,
                   role: str) -> tuple[Command, list[FrozenTrial], str]:
    """SIGSTOP freezes a first worker in the middle of a trial, as a hung machine or a cut
    network would: its heartbeats stop while its process still exists (liveness is not
    checked by pid). A second worker runs the suite to the end meanwhile; then the first
    is resumed and finishes too. Both exit 0. Returns the first worker, the entries of
    `study` it held when it was frozen, and its output.

    On PostgreSQL, as hosts share a store: a worker frozen inside a transaction would
    hold SQLite's one write lock, and every other worker with it, until it resumes."""
    first = _worker(path, postgres.optuna, postgres.mlflow, cwd, "--engine", "serial")
    # frozen while it trains: a worker frozen inside a transaction has its session ended by
    # the server after 5 s (idle_in_transaction_session_timeout), another matter
    _, held = _freeze_mid_trial([first], postgres, study, suite, role, idle=True)
    try:
        second = _worker(path, postgres.optuna, postgres.mlflow, cwd, "--engine", "serial")
        output = second.finish(timeout=600)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 0, output
    first_output = first.finish(timeout=300)
    assert first.returncode == 0, first_output
    return first, held, first_output


@pytest.mark.slow
def test_a_silent_worker_s_trials_are_rerun_and_its_late_result_is_not_recorded(
        postgres: Postgres, write_suite: Callable[..., Path], tmp_path: Path) -> None:
    """The other worker re-runs the silent worker's trial after the grace period; when the
    silent worker wakes up and finishes, its claim is gone and its result is recorded as
    killed, not done."""
    path = _suite(write_suite, "silent", seeds=2)
    suite = load_suite(path)
    first, _, first_output = _silent_worker(path, postgres, tmp_path, "silent/trials",
                                            "silent", "trial")
    assert "claim lost (heartbeat stale); not recorded as done" in first_output
    uri = postgres.mlflow
    finished = _finished_once(uri, "silent", {t.trial_id for t in suite.trials()})
    lost = [r for r in _runs(uri, "silent", view=ViewType.ALL)
            if r.data.tags.get("nnbench.status") == "killed"]
    # the silent worker's run of its trial shows killed (its entry went stale), never
    # finished, and stays in MLflow; its late result did not make it done
    assert lost and all("stale" in r.data.tags["nnbench.reason"] for r in lost)
    assert {r.info.status for r in lost} == {"KILLED"}
    assert all(r.info.lifecycle_stage == "active" for r in lost)
    assert all(r.data.tags["nnbench.worker"].endswith(f":{first.pid}") for r in lost)
    assert all(r.info.run_id not in {f.info.run_id for f in finished.values()} for r in lost)
    entries = _entries(postgres.optuna, "silent/trials")
    stale = [e for e in entries if e.state == TrialState.FAIL
             and str(e.user_attrs.get("nnbench.worker", "")).endswith(f":{first.pid}")]
    assert stale  # the silent worker's claim, failed by the other worker
    for entry in stale:  # ... queued again, and trained to completion
        _trained_after(entry, entries)


TUNED = HEAD + """\
grid:
  optimizer: [sgd]
tune:
  space:
    optimizer.lr: {{type: float, low: 0.001, high: 0.3, log: true}}
  trials: 4
  sampler: {{name: random, seed: 0}}
  pruner: {{name: none}}
  seeds: 2
"""


@pytest.mark.slow
def test_a_silent_worker_s_optuna_trial_is_rerun_and_the_study_completes(
        postgres: Postgres, write_suite: Callable[..., Path], tmp_path: Path) -> None:
    path = write_suite(TUNED.format(name="silent_tune", epochs=30), name="silent_tune")
    suite = load_suite(path)
    storage, uri = postgres.optuna, postgres.mlflow
    study = study_name(suite, suite.configurations()[0])
    _, held, _ = _silent_worker(path, postgres, tmp_path, study, "silent_tune", "tune")
    stopped_trials = {e.number for e in held}
    trials = _entries(storage, study)
    counted = [t for t in trials if t.user_attrs.get("counted")]
    assert len(counted) == 4  # the budget, met exactly
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for number in stopped_trials:  # failed as stale, and a copy with its parameters re-ran
        assert next(t for t in trials if t.number == number).state == TrialState.FAIL
        copies = [t for t in trials if number in t.system_attrs.get("retry_history", [])]
        assert copies and copies[0].state == TrialState.COMPLETE
        assert copies[0].params == next(t for t in trials if t.number == number).params
    tune_runs = _runs(uri, "silent_tune", role="tune", view=ViewType.ALL)
    late = [r for r in tune_runs if int(r.data.tags["nnbench.optuna_trial"]) in stopped_trials]
    assert late and all(r.data.tags["nnbench.status"] == "killed" for r in late)
    reruns = _runs(uri, "silent_tune")
    assert len([r for r in reruns if is_done(r)]) == 2  # the tuned point over 2 seeds


# -- local workers, submitit, atomic claims ---------------------------------------------------

@pytest.mark.slow
def test_run_with_two_local_workers_trains_every_trial_once(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`run --workers 2`: two worker processes, one coordinator, which refreshes the
    summaries once both are done: one summary run per configuration."""
    path = _suite(write_suite, "two", epochs=3)  # 8 short trials
    uri = tracking_uri
    # the command in this process; its two workers are processes of their own
    with within(600, "nnbench run --workers 2"):
        code = cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", uri,
                         "--workers", "2", "--engine", "serial",
                         "--report-dir", str(tmp_path / "reports"), *FAST])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "2 local workers, up to 1 thread(s) each (" in err
    assert "note: a worker claims" not in err  # the serial engine claims one at a time
    assert "[worker 1]" in err and "[worker 2]" in err
    suite = load_suite(path)
    finished = _finished_once(uri, "two", {t.trial_id for t in suite.trials()})
    invocations = {r.data.tags["nnbench.invocation"] for r in finished.values()}
    assert len(invocations) == 1  # the coordinator's run holds both workers' trials
    assert not any("mlflow.parentRunId" in r.data.tags for r in finished.values())
    workers = {r.data.tags["nnbench.threads"] for r in finished.values()}
    assert workers == {"1"}
    assert (tmp_path / "reports" / "two.html").exists()
    _one_summary_per_configuration(uri, "two")
    assert cli.main(["status", str(path), "--tracking-uri", uri]) == 0
    assert "8 done, 0 running on 0 worker(s), 0 queued, 0 failed" in capsys.readouterr().out


def test_workers_that_one_claim_would_leave_idle_are_told_how_to_share(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --workers 2` on a suite one stacked group holds: the first worker claimed all 8
    lanes and the other waited, slower than one worker, unsaid."""
    from rich.console import Console

    import nnbench.workers
    from nnbench.runner import run_suite

    monkeypatch.setattr(nnbench.workers, "spawn_local", lambda *args, **kwargs: [0, 0])
    path = _suite(write_suite, "shared", epochs=1)
    console = Console(record=True, width=400)
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri, workers=2,
              engine="auto", console=console)
    said = console.export_text()
    assert "note: a worker claims up to 64 trials at once (one group of lanes), so one may " \
           "take all 8 of this suite while the others wait; --lanes 4 shares them out" in said


@pytest.mark.slow
def test_submitit_local_executor_runs_a_suite_to_completion(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str) -> None:
    """`nnbench submit --local` as its own process, as a user types it: submitit runs each
    job (a worker) as a process; the command exits 0 with no "Exception ignored" (a job
    deleted at interpreter teardown printed "Exception ignored in LocalJob.__del__ ...
    TypeError" after every submit) and no traceback. The workers own no coordinator: each
    refreshes the summaries at its end, at about the same moment as the other, and they
    leave one summary run per configuration."""
    path = _suite(write_suite, "submitted", epochs=2)
    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", tracking_uri
    done = subprocess.run(
        [sys.executable, "-m", "nnbench.cli", "submit", str(path), "--storage", storage,
         "--tracking-uri", uri, "--workers", "2", "--local", "--device", "cpu", "--engine",
         "serial", "--folder", str(tmp_path / "jobs"), "--report-dir",
         str(tmp_path / "reports"), *FAST],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted 2 worker job(s)" in done.stderr
    assert "exit codes [0, 0]" in done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    suite = load_suite(path)
    _finished_once(uri, "submitted", {t.trial_id for t in suite.trials()})
    logs = list((tmp_path / "jobs").glob("*_log.out"))
    assert len(logs) == 2  # one log per array job, written by submitit
    _one_summary_per_configuration(uri, "submitted")


@pytest.mark.slow
def test_workers_of_a_sigkilled_run_stop_and_release_their_claims_at_once(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str) -> None:
    """SIGKILL of `run --workers 2` (the OOM killer, `kill -9`) while its workers train: they
    trained on, unseen (their output went with it), and a re-run started two more beside
    them. Now each notices its coordinator is gone and stops as SIGTERM stops it: its trial
    in flight recorded as killed, its claim released and the trial queued again at once,
    not a grace period (60 s here) later."""
    path = _suite(write_suite, "orphans", epochs=2000)  # trials of minutes each
    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", tracking_uri
    run = start("run", str(path), "--storage", storage, "--tracking-uri", uri, "--workers", "2",
                "--device", "cpu", "--engine", "serial", "--report-dir",
                str(tmp_path / "reports"), cwd=tmp_path)
    client = MlflowClient(uri)

    def training() -> int:
        experiment = client.get_experiment_by_name("orphans")
        return 0 if experiment is None else len(client.search_runs(
            [experiment.experiment_id], "attributes.status = 'RUNNING' and "
            "tags.`nnbench.role` = 'trial'"))

    with within(300, "both workers training"):
        while training() < 2:
            assert run.poll() is None, run.output()
            time.sleep(0.5)
    workers = [p for p in psutil.Process(run.pid).children(recursive=True)
               if "worker" in p.cmdline()]
    assert len(workers) == 2
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=60)
    for orphan in alive:  # (not left training past the test)
        orphan.kill()
    assert not alive, [p.cmdline() for p in alive]
    entries = optuna.load_study(study_name="orphans/trials", storage=storage).get_trials()
    states = Counter(e.state for e in entries)  # released, not left for the grace period
    assert (states[TrialState.RUNNING], states[TrialState.FAIL]) == (0, 2), states
    runs = _runs(uri, "orphans")
    assert sorted((r.info.status, r.data.tags["nnbench.status"]) for r in runs) == [
        ("KILLED", "killed")] * 2


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "terminal"])
def test_a_kill_of_submit_local_interrupts_its_workers_and_waits_for_them(
        how: str, write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`kill` (SIGTERM) of `nnbench submit --local` while its workers train: it used to
    exit 130 at once and leave both workers training, unseen. Now it interrupts them as
    Ctrl-C would and waits: each records its trial in flight as killed, releases its claim
    and exits 130; no process of the jobs is left, no trial is left running. The same for
    a terminal's Ctrl-C (SIGINT to the whole process group: submitit's controllers too,
    which kill their job a second later, leaving no result for it)."""
    path = _suite(write_suite, "stopped", epochs=2000)  # trials of minutes each
    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", tracking_uri
    argv = ["submit", str(path), "--storage", storage, "--tracking-uri", uri, "--workers",
            "2", "--local", "--device", "cpu", "--engine", "serial", "--folder",
            str(tmp_path / "jobs"), "--report-dir", str(tmp_path / "reports"), "--slurm-mem",
            "4", *FAST]
    log = tmp_path / "submit.log"
    if how == "kill":
        submit: Any = start(*argv, cwd=tmp_path, log=log)
    else:  # a terminal's foreground process group of its own
        with log.open("w") as out:
            submit = subprocess.Popen([sys.executable, "-m", "nnbench.cli", *argv],
                                      cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
    client = MlflowClient(uri)

    def training() -> int:
        experiment = client.get_experiment_by_name("stopped")
        return 0 if experiment is None else len(client.search_runs(
            [experiment.experiment_id], "attributes.status = 'RUNNING' and "
            "tags.`nnbench.role` = 'trial'"))

    with within(300, "both workers training"):
        while training() < 2:
            assert submit.poll() is None, log.read_text()
            time.sleep(0.5)
    below = psutil.Process(submit.pid).children(recursive=True)
    assert sum("worker" in p.cmdline() for p in below) == 2  # the jobs' two workers
    if how == "kill":
        submit.send_signal(signal.SIGTERM)
    else:
        os.killpg(submit.pid, signal.SIGINT)
    with within(180, "submit interrupted"):
        submit.wait(timeout=180)
    output = log.read_text()
    assert submit.returncode == 130, output
    assert "interrupting the workers" in output
    assert "--slurm-mem: Slurm's only; ignored with --local" in output
    assert "workers ended with exit codes [130, 130]" in output, output
    assert "Traceback" not in output and "without an exit code" not in output, output
    _, alive = psutil.wait_procs(below, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    runs = _runs(uri, "stopped")
    assert sorted(r.data.tags["nnbench.status"] for r in runs) == ["killed", "killed"]
    assert all(r.info.status == "KILLED" for r in runs)
    capsys.readouterr()
    assert cli.main(["status", str(path), "--storage", storage, "--tracking-uri", uri]) == 0
    assert "0 done, 0 running on 0 worker(s), 8 queued, 0 failed" in capsys.readouterr().out


def test_a_job_stopped_at_its_time_limit_counts_as_interrupted_and_says_why(
        tmp_path: Path) -> None:
    """A submitit job that reached its time limit (`submit --slurm-time`) has no exit
    code: `job.result()` raises, and `submit --local` ended in that traceback. Now the
    job counts as interrupted (130) and the command says why, with the job's log. A real
    local job, with a limit of 33 s that submitit enforces 30 s early."""
    import submitit
    from rich.console import Console

    from nnbench.workers import wait_for_jobs

    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=0.55)
    job = executor.submit(time.sleep, 120)
    console = Console(record=True, width=400)
    with within(90, "a job at its time limit"):
        codes = wait_for_jobs([job], console, local=True)
    assert codes == [130]
    said = console.export_text()
    assert f"worker job {job.job_id} ended without an exit code: at its time limit " \
           f"(--slurm-time)" in said, said
    assert str(job.paths.stdout) in said


class _SwallowingJob:
    """A local submitit job whose first poll meets an interrupt that Python swallows (as
    one raised inside a garbage-collection callback is); its worker ends by itself, as an
    interrupted one, 50 polls later (no result file: 130)."""

    job_id = "999999999"  # no such process: nothing to signal

    def __init__(self, folder: Path) -> None:
        self.polls = 0
        self.paths = SimpleNamespace(result_pickle=folder / "no-result.pkl")

    def done(self) -> bool:
        self.polls += 1
        if self.polls == 1:
            from nnbench.transient import interrupt

            with contextlib.suppress(KeyboardInterrupt):  # swallowed, as Python does there
                interrupt(signal.SIGTERM, None)
        return self.polls > 50

    def wait(self) -> None:
        while not self.done():
            time.sleep(0.01)

    def result(self) -> int:
        return 130


def test_an_interrupt_swallowed_while_submit_waits_still_interrupts_the_workers(
        tmp_path: Path) -> None:
    """`submit --local` interrupted by a terminal's Ctrl-C ended 130 but never said it was
    interrupting the workers (the terminal case below, once in three full runs): its
    KeyboardInterrupt was swallowed while submitit polled (raised inside a callback Python
    ignores), and it waited on. Killed (SIGTERM: the workers are not signalled themselves), it
    would wait for workers that train on. The wait now looks at the interrupt it
    recorded."""
    from rich.console import Console

    from nnbench.transient import interrupted
    from nnbench.workers import wait_for_jobs

    console = Console(record=True, width=400)
    job = _SwallowingJob(tmp_path)
    try:
        codes = wait_for_jobs([job], console, local=True)
    finally:
        interrupted(clear=True)
    assert codes == [130]
    assert "interrupting the workers: their trials in flight are recorded as killed" \
        in console.export_text()


def test_local_workers_are_interrupted_by_an_interrupt_python_swallowed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --workers N` (and `tune --workers N`) waited for its workers without looking at
    an interrupt Python had swallowed (as `submit --local` did): a killed command waited
    for workers that trained on. It now forwards it, as Ctrl-C, at its next poll."""
    from rich.console import Console

    from nnbench import transient, workers

    monkeypatch.setattr(workers, "worker_command", lambda *_: ["sleep", "60"])
    with contextlib.suppress(KeyboardInterrupt):  # swallowed where Python cannot raise it
        transient.interrupt(signal.SIGTERM, None)
    started = time.monotonic()
    try:
        codes = workers.spawn_local("suite.yaml", [], 2, Console(record=True))
    finally:
        transient.interrupted(clear=True)
    assert codes == [130, 130]  # each took the SIGINT it was sent
    assert time.monotonic() - started < 30


def _one_summary_per_configuration(uri: str, suite: str) -> None:
    """One summary run per configuration of a `_suite` (two activations, four seeds), made
    from all four finished seeds."""
    summaries = _runs(uri, suite, role="summary")
    assert sorted(r.data.tags["nnbench.config"] for r in summaries) \
        == ["activation=relu", "activation=tanh"]
    assert {r.data.tags["nnbench.summary.n"] for r in summaries} == {"4"}


def _claim(storage: str, out: Path, specs: Path) -> None:
    """In a process of its own (tests.processes.spawn): queue the 60 trials (as every
    worker does when it starts), then claim and release entries as fast as it can; write
    how many it queued and the entry numbers it claimed. It starts queueing once `go`
    exists next to `out` (after writing `<out>.ready`), so that every process queues at the
    same instant. The trials come as canonical specs in `specs` (JSON)."""
    live = Liveness(1, 4)
    trials = [TrialSpec.from_canonical(c) for c in json.loads(specs.read_text())]
    queue = TrialQueue("race", open_storage(storage, live), live)
    ready_then_wait(Path(f"{out}.ready"), out.parent / "go")
    queued = queue.sync(trials, store="1@0")
    numbers = []
    while claims := queue.claim(1):
        numbers.append(claims[0].number)
        queue.release(claims[0], "finished")
    queue.close()
    out.write_text(json.dumps([queued, numbers]))


DEFAULT = Path(__file__).resolve().parent.parent / "suites" / "default.yaml"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_workers_queue_each_trial_once_and_claim_each_entry_once(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Four processes start on one fresh queue at the same instant: they queue the suite's
    60 trials once between them (whoever gets there first), then drain it as fast as they
    can: each entry is claimed by one of them, and a later sync queues nothing."""
    from dataclasses import replace

    if backend == "postgresql":
        storage = request.getfixturevalue("postgres").optuna
    else:
        storage = f"sqlite:///{tmp_path / 'queue.db'}"
    outs = [tmp_path / f"claims{i}.json" for i in range(4)]
    suite = load_suite(DEFAULT)
    specs = [replace(t, seed=s) for t in suite.configurations() for s in range(10)]
    canonical = tmp_path / "specs.json"
    canonical.write_text(json.dumps([spec.canonical() for spec in specs]))
    procs = [spawn(_claim, storage, out, canonical) for out in outs]
    assert release_at_once(procs, [Path(f"{out}.ready") for out in outs], tmp_path / "go",
                           ready_within=300) == [0, 0, 0, 0]
    results = [json.loads(out.read_text()) for out in outs]
    assert sum(queued for queued, _ in results) == 60  # queued once, between them
    claimed = [n for _, numbers in results for n in numbers]
    assert sorted(claimed) == list(range(60))  # every entry once, none twice
    queue = TrialQueue("race", open_storage(storage, LIVENESS), LIVENESS)
    assert queue.counts().line() == "60 done, 0 running on 0 worker(s), 0 queued, 0 failed"
    assert queue.sync(specs, store="1@0") == 0  # done whichever sync queued them
    assert queue.sync([*specs[:3], replace(specs[0], seed=99)], store="1@0") == 1  # new only
    queue.close()


def _queue(tmp_path: Path, name: str, live: Liveness = LIVENESS) -> TrialQueue:
    return TrialQueue(name, open_storage(f"sqlite:///{tmp_path / 'queue.db'}", live), live)


def test_a_stale_claim_is_failed_and_its_trial_queued_again_once(tmp_path: Path) -> None:
    """A worker that stops sending heartbeats loses its claim after the grace period (by the
    server's clock): the entry fails and one copy is queued, however many workers reap;
    its worker's late release is refused, and a sync queues no second copy."""
    suite = load_suite(DEFAULT)
    spec, other = suite.trials()[:2]
    queue = _queue(tmp_path, "stale")
    assert queue.sync([spec, other], store="1@0") == 2
    (claim,) = queue.claim(1)
    queue.close()  # its heartbeats stop (a worker stopped, or dead)
    assert queue.reap() == 0  # not yet stale
    time.sleep(LIVENESS.grace_period + 1.5)
    reapers = [_queue(tmp_path, "stale") for _ in range(2)]
    assert sorted(r.reap() for r in (queue, *reapers)) == [0, 0, 1]
    assert queue.sync([spec, other], store="1@0") == 0
    entries = queue.entries()
    assert [(e.number, e.state) for e in entries] == [
        (0, TrialState.FAIL), (1, TrialState.WAITING), (2, TrialState.WAITING)]
    assert str(entries[0].user_attrs["nnbench.outcome"]).startswith("stale: its worker")
    assert queue.ended(queue.entry_tag(claim), claim.trial_id) == (
        "killed", entries[0].user_attrs["nnbench.outcome"])
    assert not queue.release(claim, "finished")  # the late result: refused
    first, again = queue.claim(2)
    assert (first.spec, again.spec) == (other, spec)
    assert queue.release(first, "finished") and queue.release(again, "diverged")
    assert queue.done() == {spec.trial_id, other.trial_id}
    queue.close()


def _silent_for(url: str, seconds: int, *ids: int) -> None:
    """Move the heartbeats of the trials `ids` back to `seconds` ago (by the server's clock):
    a silence, without waiting it out on a busy machine."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        moved = connection.execute(sqlalchemy.text(
            "UPDATE trial_heartbeats SET heartbeat = datetime('now', :ago) "
            "WHERE trial_id IN (" + ", ".join(map(str, ids)) + ")"), {"ago": f"-{seconds} seconds"})
        assert moved.rowcount == len(ids)
    engine.dispose()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_a_worker_with_a_shorter_grace_period_waits_for_the_holders_own(
        tmp_path: Path) -> None:
    """A worker started with `--heartbeat-interval 60 --grace-period 300` beats every 60 s;
    another worker of the suite with the default grace (60 s) found its claim silent for
    over 60 s between two beats, reaped it, and trained the trial again while the holder
    went on training it (its result then refused). Each claim, and each tuning trial,
    now records its holder's grace period, and a reaper waits for the longer of the two."""
    from nnbench.queue import reap

    url = f"sqlite:///{tmp_path / 'queue.db'}"
    spec, other = load_suite(DEFAULT).trials()[:2]
    patient, hasty = Liveness(heartbeat_interval=60, grace_period=300), Liveness(1, 4)
    holder, reaper = _queue(tmp_path, "mixed", patient), _queue(tmp_path, "mixed", hasty)
    assert holder.sync([spec, other], store="1@0") == 2
    (claim,) = holder.claim(1)
    studies = [optuna.create_study(storage=open_storage(url, patient), study_name="p/q"),
               optuna.load_study(storage=open_storage(url, hasty), study_name="p/q")]
    asked = studies[0].ask()
    _silent_for(url, 59, claim.storage_id, asked._trial_id)  # between two of its beats
    assert reaper.reap() == 0
    reap(studies[1])
    assert [e.state for e in reaper.entries()] == [TrialState.RUNNING, TrialState.WAITING]
    assert [t.state for t in studies[1].get_trials()] == [TrialState.RUNNING]
    assert holder.release(claim, "finished")  # its result counts: no one trains it twice
    (claim,) = holder.claim(1)
    _silent_for(url, 301, claim.storage_id, asked._trial_id)  # past the holder's own grace
    assert reaper.reap() == 1
    reap(studies[1])
    assert [e.state for e in reaper.entries()] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert "sent no heartbeat for over 300 s" in str(reaper.entries()[1].user_attrs[
        "nnbench.outcome"])
    assert [t.state for t in studies[1].get_trials()] == [TrialState.FAIL, TrialState.WAITING]
    holder.close()
    reaper.close()


def test_status_says_how_long_a_holding_worker_is_silent_and_that_a_dead_one_stopped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SIGKILLed worker's claim stays RUNNING until some worker or run reaps it, and
    `status` showed it as "1 running on 1 worker(s)" with the dead worker listed as if it
    were training. It now says how long the worker has been silent and, for a worker of
    this machine whose process is gone, that it has stopped."""
    import socket

    suite = load_suite(DEFAULT)
    storage = f"sqlite:///{tmp_path / 'queue.db'}"
    queue = TrialQueue(suite.name, open_storage(storage, LIVENESS), LIVENESS)
    assert queue.sync(suite.trials()[:2], store="1@0") == 2
    (claim,) = queue.claim(1)
    assert set(queue.silence()) == {queue.worker}
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead = f"{socket.gethostname()}:{ended.stdout.strip()}"  # a worker SIGKILLed here
    queue.storage.set_trial_user_attr(claim.storage_id, "nnbench.worker", dead)
    queue.close()  # its heartbeats stop
    time.sleep(2.2)  # the server's clock counts whole seconds (SQLite)
    (silent,) = queue.silence().values()
    assert 1 <= silent <= 30
    capsys.readouterr()
    assert cli.main(["status", str(DEFAULT), "--storage", storage, "--tracking-uri",
                     f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 0
    out = capsys.readouterr().out
    assert "1 running on 1 worker(s), 1 queued" in out, out
    # (the claim's recorded process is this test's, alive: reapers wait for the grace)
    said = re.search(rf"worker {re.escape(dead)}: last heartbeat (\d+) s ago \(no such "
                     rf"process on this machine: it has stopped\); the next run or worker "
                     rf"queues its trials again once it has been silent for the grace period "
                     rf"\(60 s unless --grace-period says otherwise\)", " ".join(out.split()))
    assert said is not None and 1 <= int(said.group(1)) <= 30, out


def test_a_claim_of_a_process_of_this_machine_that_has_ended_is_reaped_at_once(
        tmp_path: Path) -> None:
    """A re-run after a SIGKILL waited a grace period (a minute by default) for the dead
    process's claims, though it ran on this machine. A claim records its process's identity
    (pid namespace, pid, start time); a worker of the same machine reaps it at once when no
    such process exists. A live holder, a pid reused by another process, or one of another
    pid namespace (a container sharing the host name) is left to its heartbeats."""
    import socket

    from nnbench.transient import process_gone, process_identity

    suite = load_suite(DEFAULT)
    spec, other = suite.trials()[:2]
    patient = Liveness(heartbeat_interval=1, grace_period=600)
    holder, reaper = _queue(tmp_path, "gone", patient), _queue(tmp_path, "gone", patient)
    assert holder.sync([spec, other], store="1@0") == 2
    (claim,) = holder.claim(1)
    me = process_identity()
    assert holder.entries((TrialState.RUNNING,))[0].user_attrs["nnbench.holder"] == me
    assert not process_gone(holder.worker, me) and reaper.reap() == 0  # alive: kept
    ended = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead, dead_label = process_identity(ended.pid), f"{socket.gethostname()}:{ended.pid}"
    ended.kill()
    ended.wait()
    machine, _, rest = dead.partition("|")
    boot, _, namespace = machine.partition("/")
    assert not process_gone(dead_label, f"{boot}/pid:[1]|{rest}")  # another container's
    assert not process_gone(dead_label, f"another-boot/{namespace}|{rest}")  # (same host
    assert not process_gone(f"elsewhere:{ended.pid}", dead)  # name) / another host's
    reused = f"{machine}|{os.getpid()}|1"  # this pid, another start tick: reused
    assert process_gone(f"{socket.gethostname()}:{os.getpid()}", reused)
    holder.storage.set_trial_user_attr(claim.storage_id, "nnbench.worker", dead_label)
    holder.storage.set_trial_user_attr(claim.storage_id, "nnbench.holder", dead)
    assert reaper.reap() == 1  # at once, its heartbeats still fresh
    entries = reaper.entries()
    assert [e.state for e in entries] == [TrialState.FAIL, TrialState.WAITING,
                                          TrialState.WAITING]
    assert entries[0].user_attrs["nnbench.outcome"] == (
        f"stale: its worker ({dead_label}) has ended (no such process on this "
        f"machine); queued again")
    holder.close()
    reaper.close()


def test_status_judges_a_silent_worker_by_the_grace_period_it_recorded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A worker started with `--grace-period 300`, silent 100 s: status said "silent past
    the default grace period: it may have stopped ... (60 s unless --grace-period says
    otherwise)", while no worker reaps it before 300 s."""
    suite = load_suite(DEFAULT)
    storage = f"sqlite:///{tmp_path / 'queue.db'}"
    patient = Liveness(heartbeat_interval=60, grace_period=300)
    queue = TrialQueue(suite.name, open_storage(storage, patient), patient)
    assert queue.sync(suite.trials()[:2], store="1@0") == 2
    (claim,) = queue.claim(1)
    argv = ["status", str(DEFAULT), "--storage", storage, "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}"]
    for silent, said in ((100, ""), (400, (
            " (silent past its own grace period: it may have stopped); the next run or worker "
            "queues its trials again once it has been silent for its own grace period (300 s, "
            "or a reaping worker's longer --grace-period)"))):
        _silent_for(storage, silent, claim.storage_id)
        capsys.readouterr()
        assert cli.main(argv) == 0
        out = " ".join(capsys.readouterr().out.split())
        found = re.search(rf"worker {re.escape(queue.worker)}: last heartbeat (\d+) s ago"
                          rf"{re.escape(said)}", out)
        assert found is not None and silent <= int(found.group(1)) <= silent + 30, out
        assert ("silent past" in out) is (silent == 400), out
    queue.close()


def test_a_trial_the_edited_suite_dropped_is_not_queued_again_when_killed_or_stale(
        tmp_path: Path) -> None:
    """The suite is edited while trials run: a newer worker's sync withdraws the waiting
    entries of the trials it no longer has, and marks the running ones. Those finish as
    usual, but one killed (Ctrl-C, SIGTERM) or stale is not queued again; a later sync that
    has the trial again clears the mark, and a kill then queues it again as before."""
    suite = load_suite(DEFAULT)
    kept, dropped, stale, waiting = suite.trials()[:4]
    queue = _queue(tmp_path, "edited")
    assert queue.sync([kept, dropped, stale, waiting], store="1@0") == 4
    claims = {c.trial_id: c for c in queue.claim(3)}
    assert set(claims) == {kept.trial_id, dropped.trial_id, stale.trial_id}
    newer = _queue(tmp_path, "edited")  # the edited suite has only `kept`
    assert newer.sync([kept], keep={kept.trial_id}, store="1@0") == 0
    assert queue.release(claims[dropped.trial_id], "killed", "interrupted")
    queue.heartbeats().drop(claims[stale.trial_id].storage_id)  # its worker went silent
    time.sleep(LIVENESS.grace_period + 1.5)
    assert newer.reap() == 1
    outcomes = {e.user_attrs["nnbench.trial_id"]: (e.state, e.user_attrs.get("nnbench.outcome"))
                for e in queue.entries()}
    assert outcomes[dropped.trial_id] == (TrialState.FAIL, "killed: interrupted")
    assert outcomes[stale.trial_id][0] == TrialState.FAIL
    assert str(outcomes[stale.trial_id][1]).endswith(
        "not queued again: no longer a trial of the suite")
    assert outcomes[waiting.trial_id] == (TrialState.FAIL,
                                          "withdrawn: no longer a trial of the suite")
    # counted as withdrawn, not as a failure (the workers' line said "1 failed")
    counts = newer.counts()
    assert (counts.failed, counts.withdrawn) == (2, 1)
    assert counts.line().endswith("2 failed, 1 withdrawn (the suite no longer has them)")
    assert [e.user_attrs["nnbench.trial_id"] for e in queue.entries((TrialState.WAITING,))] \
        == []
    # the suite edited back: the kept trial's mark stays off, and a kill queues it again
    assert newer.sync([kept, dropped], keep={kept.trial_id, dropped.trial_id},
                      store="1@0") == 1  # `dropped` again: it is no longer done or queued
    assert queue.release(claims[kept.trial_id], "killed", "interrupted")
    assert sorted(e.user_attrs["nnbench.trial_id"] for e in queue.entries(
        (TrialState.WAITING,))) == sorted([kept.trial_id, dropped.trial_id])
    queue.close()
    newer.close()


def test_a_running_trial_the_suite_has_again_is_queued_again_when_killed(
        tmp_path: Path) -> None:
    """A running trial marked by a sync that dropped it, then kept by a later one (the edit
    undone): a kill queues it again."""
    suite = load_suite(DEFAULT)
    spec, other = suite.trials()[:2]
    queue = _queue(tmp_path, "undone")
    queue.sync([spec, other], store="1@0")
    (claim,) = queue.claim(1)
    queue.sync([other], keep={other.trial_id}, store="1@0")
    assert queue.entries((TrialState.RUNNING,))[0].user_attrs["nnbench.withdrawn"] is True
    queue.sync([spec, other], keep={spec.trial_id, other.trial_id}, store="1@0")
    assert queue.entries((TrialState.RUNNING,))[0].user_attrs["nnbench.withdrawn"] is False
    assert queue.release(claim, "killed", "interrupted")
    assert [e.user_attrs["nnbench.trial_id"] for e in queue.entries((TrialState.WAITING,))] \
        == [other.trial_id, spec.trial_id]
    queue.close()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_an_optuna_trial_without_a_heartbeat_goes_stale_by_the_servers_clock(
        tmp_path: Path) -> None:
    """An Optuna trial with no heartbeat (an earlier nnbench's ask recorded none, and its
    worker died before its first) is given one (stamped by the database server) when a
    worker first looks, and is stale a grace period later by that clock; a trial whose
    heartbeats go on is not, however long ago it started. (The heartbeats are moved back
    in the database rather than waited out: a busy machine could delay a heartbeat past a
    grace period short enough to wait for.)"""
    from nnbench.queue import reap

    storage = f"sqlite:///{tmp_path / 'queue.db'}"
    live = Liveness(heartbeat_interval=1, grace_period=60)
    rdb = open_storage(storage, live)
    study = optuna.create_study(storage=rdb, study_name="orphan/point")
    orphan = study.ask()  # its worker died at once
    held = study.ask()
    rdb.record_heartbeat(held._trial_id)
    engine = sqlalchemy.create_engine(storage)
    with engine.begin() as connection:  # as an earlier nnbench's ask left it: no heartbeat
        connection.execute(sqlalchemy.text("DELETE FROM trial_heartbeats WHERE trial_id = :id"),
                           {"id": orphan._trial_id})
    reap(study)  # the orphan gets its first heartbeat from the server now
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 2
    with engine.begin() as connection:  # the orphan's first heartbeat: two grace periods ago
        moved = connection.execute(sqlalchemy.text(
            "UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-120 seconds') "
            "WHERE trial_id = :id"), {"id": orphan._trial_id})
        assert moved.rowcount == 1
        connection.execute(sqlalchemy.text(  # the held one started long ago
            "UPDATE trials SET datetime_start = datetime(datetime_start, '-1 day')"))
    engine.dispose()
    reap(study)
    first, kept, copy = study.get_trials()
    assert (first.state, kept.state, copy.state) == (TrialState.FAIL, TrialState.RUNNING,
                                                     TrialState.WAITING)
    assert copy.system_attrs["retry_history"] == [first.number]


def test_a_queue_refuses_another_mlflow_store(
        write_suite: Callable[..., Path], tmp_path: Path, mlflow_store: Callable[[Path], str],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two MLflow stores in one folder share the default storage next to them: the second
    store's run would find the first's trials done in the queue and train nothing. It is
    refused before anything is written to the second store (its experiment was created and
    left behind), naming the storage and both ways out. A user who deleted mlflow.db to
    start over gets the same, and no new mlflow.db is left behind."""
    path = _suite(write_suite, "shared_queue", epochs=1, seeds=1)
    reports = str(tmp_path / "reports")
    first = mlflow_store(tmp_path / "a.db")
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", first,
                     "--report-dir", reports]) == 0
    capsys.readouterr()
    second = mlflow_store(tmp_path / "b.db")
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", second,
                     "--report-dir", reports]) == 2
    err = " ".join(capsys.readouterr().err.split())
    storage = tmp_path / "optuna.db"
    assert f"--storage sqlite:///{storage}: the queue of suite 'shared_queue' there belongs " \
           f"to another MLflow store (its experiment 1, created 20" in err, err
    assert f"and {second} has no experiment 'shared_queue' (a new, replaced or moved store?)" \
        in err, err
    assert ("Give each MLflow store its own storage (--storage sqlite:///PATH/OTHER.db); or, "
            f"to start this suite over, delete {storage} as well") in err, err
    assert MlflowClient(second).get_experiment_by_name("shared_queue") is None  # untouched
    own = f"sqlite:///{tmp_path / 'b-optuna.db'}"
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", second,
                     "--storage", own, "--report-dir", reports]) == 0
    capsys.readouterr()
    # the first store deleted, to start over: refused, and no mlflow.db made again
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.db").unlink()
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", first,
                     "--report-dir", reports]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"and {first} has no experiment 'shared_queue'" in err, err
    assert not (tmp_path / "a.db").exists()
    storage.unlink()  # as the message says: the suite starts over (in a fresh process:
    # MLflow keeps this one's store of the deleted file open)
    again = start("run", str(path), "--device", "cpu", "--tracking-uri", first,
                  "--report-dir", reports, cwd=tmp_path)
    assert again.wait(timeout=120) == 0, again.output()
    assert "2 trials, 0 already finished, 2 to train" in again.output(), again.output()


# how a local worker dies at once, and what the run says of it (None: nothing, as of a
# worker that was interrupted)
DEATHS = [
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
     "ended with signal SIGKILL; a trial it held is trained again"),
    ("import sys; sys.exit(130)", None),  # a SIGTERM'd worker's exit
    # interrupted while it started, before its handlers: interrupted, not a death
    ("import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
     "os.kill(os.getpid(), signal.SIGINT)", None),
    ("import sys; sys.exit(2)", "refused its input (exit code 2)"),
]


def test_local_workers_that_die_while_another_finishes_are_no_failure(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Of five local workers, four die at once, each its own way (DEATHS); the first trains
    every trial. The run said 'interrupted' and wrote no report (a worker's 130), or exited
    1 without a word (a worker killed); it now says which worker ended how, writes the
    report, exits 0. (One run for the four deaths: each real worker is a process of its own
    that imports torch and MLflow, about 9 s of CPU.)"""
    from nnbench import workers

    made = workers.worker_command
    started: list[int] = []

    def all_but_the_first_die(suite_path: str, options: Any) -> list[str]:
        started.append(1)
        if len(started) == 1:
            return made(suite_path, options)
        return [sys.executable, "-c", DEATHS[len(started) - 2][0]]

    monkeypatch.setattr(workers, "worker_command", all_but_the_first_die)
    path = _suite(write_suite, "dies", epochs=2)
    with within(600, "nnbench run --workers 5"):
        code = cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                         "--workers", str(1 + len(DEATHS)), "--engine", "serial",
                         "--report-dir", str(tmp_path / "reports"), *FAST])
    err = capsys.readouterr().err
    assert code == 0, err
    assert len(started) == 1 + len(DEATHS)
    assert "interrupted" not in err and "ended with signal SIGINT" not in err
    for number, (_, said) in enumerate(DEATHS, 2):
        if said:
            assert f"[worker {number}] {said}" in err, err
        else:  # the dying worker printed nothing, and the run says nothing of it
            assert f"[worker {number}]" not in err, err
    assert (tmp_path / "reports" / "dies.html").exists()
    _finished_once(tracking_uri, "dies", {t.trial_id for t in load_suite(path).trials()})
    # the invocation's status is the command's: finished (a worker's 130 made it KILLED)
    (invocation,) = _runs(tracking_uri, "dies", role="suite")
    assert invocation.info.status == "FINISHED"


def test_local_workers_that_all_refuse_their_input_are_a_usage_error(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Every worker refused its input (a suite edited into an invalid one after the run
    began): exit 2 and no report; it was exit 1 and 'a trial it held is trained again',
    with the invocation run FINISHED."""
    from nnbench import workers

    monkeypatch.setattr(workers, "worker_command",
                        lambda *_: [sys.executable, "-c", "import sys; sys.exit(2)"])
    path = _suite(write_suite, "refused", epochs=1)
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--workers", "2", "--report-dir", str(tmp_path / "reports"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "[worker 1] refused its input (exit code 2)" in err and "trained again" not in err
    assert not (tmp_path / "reports" / "refused.html").exists()
    (invocation,) = _runs(tracking_uri, "refused", role="suite")
    assert invocation.info.status == "FAILED"


def test_a_worker_refuses_a_suite_file_edited_after_its_command_read_it(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`run --workers 2` with the suite edited once the workers were starting: they trained
    the new version, the coordinator reported the one it had read ("no finished trials
    yet"), exit 0. Its workers, and `tune --workers` and `submit`'s, are given the digest of
    the text their command read, and refuse another, before anything is created."""
    from rich.console import Console

    from nnbench import workers
    from nnbench.runner import run_suite

    path = write_suite(epochs=1, seeds=1)
    started: list[list[str]] = []

    def spawn_local(_suite_path: str, options: list[str], n: int, *_: object,
                    **__: object) -> list[int]:
        started.append(list(options))
        return [0] * n

    monkeypatch.setattr(workers, "spawn_local", spawn_local)
    suite = load_suite(path)
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, workers=2, engine="serial",
              console=Console(quiet=True))
    (options,) = started
    digest = options[options.index("--suite-digest") + 1]
    assert digest == workers.suite_digest(path.read_text())
    args = cli._parser().parse_args(["tune", str(path), "--storage", "sqlite:///q.db"])
    assert digest in cli._worker_options(args, suite, storage="sqlite:///q.db",
                                         tracking_uri=tracking_uri)
    # the file as the worker reads it: edited since
    path.write_text(path.read_text().replace("epochs: 1", "epochs: 2"))
    storage = f"sqlite:///{tmp_path / 'other.db'}"
    assert cli.main(["worker", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--storage", storage, "--suite-digest", digest]) == 2
    assert (f"{path}: the suite file changed after the command that started this worker "
            f"read it; nothing was trained from it") in capsys.readouterr().err
    assert not (tmp_path / "other.db").exists()


def test_submit_local_takes_as_many_workers_as_run_does(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`submit --local --workers 2000` was taken (Slurm arrays may be that large) and forked
    hundreds of workers on one machine, for a 4-trial suite: its jobs are processes of this
    machine, capped as run's and tune's."""
    path = write_suite(epochs=1, seeds=1)
    assert cli.main(["submit", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--storage", f"sqlite:///{tmp_path / 'q.db'}", "--local",
                     "--folder", str(tmp_path / "jobs"), "--workers", "2000"]) == 2
    assert ("--workers 2000: the jobs run as processes of this machine, all at once with "
            "--local; allowed: 1 to 1024, as for run and tune") in capsys.readouterr().err
    assert not (tmp_path / "jobs").exists() and not (tmp_path / "q.db").exists()


@pytest.mark.parametrize("command", ["run", "tune", "submit"])
def test_local_workers_this_machines_memory_cannot_hold_are_refused(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str, command: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`submit --local --workers 99` (or run's, tune's) on a 24 GB machine started 99 torch
    processes, which filled its memory and stalled every process on it for minutes. The
    count its available memory holds is checked first (here: 2 GB available, 8 workers at
    0.25 GB each at the least)."""
    from collections import namedtuple

    import psutil

    memory = namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(2 * 2**30))
    path = write_suite(epochs=1, seeds=1)  # (tune: refused before its tune: block is read)
    argv = [command, str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
            "--storage", f"sqlite:///{tmp_path / 'q.db'}", "--workers", "9",
            *(["--local", "--folder", str(tmp_path / "jobs")] if command == "submit" else [])]
    assert cli.main(argv) == 2
    assert ("--workers 9: each local worker process takes at least about 0.25 GB (torch, "
            "MLflow and Optuna loaded, before its data), so 9 need about 2.2 GB, and this "
            "machine has 2.0 GB available: at most 8 here") in " ".join(
                capsys.readouterr().err.split())
    assert not (tmp_path / "q.db").exists() and not (tmp_path / "jobs").exists()
