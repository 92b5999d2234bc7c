"""Storage errors worth a retry: a session the PostgreSQL server ended mid-transaction (as
`idle_in_transaction_session_timeout` does to a worker suspended inside a write) is one;
the retry goes through a new connection and succeeds. So is a server that restarts: its
refused connections are waited for (a worker used to fail the trial it was recording).
Heartbeats and calls that keep failing are said, not silent."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from optuna.trial import TrialState

from nnbench import transient
from nnbench.cli_checks import UsageError, check_storage_url
from nnbench.config import load_suite
from nnbench.queue import Heartbeats, Liveness, TrialQueue, open_storage
from nnbench.tracking import Tracker
from nnbench.transient import is_transient, retrying, worker_label
from tests.conftest import Postgres


def test_a_session_the_server_ended_mid_transaction_is_retried_on_a_new_connection(
        postgres: Postgres) -> None:
    engine = sqlalchemy.create_engine(postgres.mlflow, pool_pre_ping=True)  # as MLflow's
    admin = sqlalchemy.create_engine(f"{postgres.server}/postgres", isolation_level="AUTOCOMMIT")
    database = postgres.mlflow.rsplit("/", 1)[1]
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE t (x int)"))
        connection.commit()
        connection.execute(sqlalchemy.text("INSERT INTO t VALUES (1)"))  # in a transaction
        with admin.connect() as other:  # the server ends the session, as its timeout would
            other.execute(sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
        with pytest.raises(sqlalchemy.exc.OperationalError) as ended:
            connection.execute(sqlalchemy.text("INSERT INTO t VALUES (2)"))
    assert is_transient(ended.value), str(ended.value)

    def write() -> int:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("INSERT INTO t VALUES (3)"))
            return int(connection.execute(sqlalchemy.text("SELECT sum(x) FROM t")).scalar_one())

    assert retrying(write, "a write after the session ended", seconds=30) == 3  # 1 rolled back
    engine.dispose()
    admin.dispose()


def test_a_server_that_restarts_is_waited_for_and_said_once(
        postgres: Postgres, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stops (`pg_ctl stop -m fast`, as a restart does) between two writes and
    comes back 3 s later on the same port: the write waits for it and lands; that it waited
    is said once, and that it got through."""
    monkeypatch.setattr(transient, "SAY_AFTER", 0.5)
    caplog.set_level(logging.WARNING, logger="nnbench.transient")
    engine = sqlalchemy.create_engine(postgres.mlflow, pool_pre_ping=True)  # as MLflow's
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE t (x int)"))
        connection.execute(sqlalchemy.text("INSERT INTO t VALUES (1)"))
    calls: list[BaseException | None] = []

    def write() -> int:
        try:
            with engine.begin() as connection:
                connection.execute(sqlalchemy.text("INSERT INTO t VALUES (2)"))
                total = int(connection.execute(sqlalchemy.text("SELECT sum(x) FROM t"))
                            .scalar_one())
        except Exception as err:
            calls.append(err)
            raise
        calls.append(None)
        return total

    with postgres.control.outage(3.0):
        assert retrying(write, "a write while the server restarts", seconds=60) == 3
    refused = [err for err in calls if err is not None]
    assert len(refused) >= 3 and calls[-1] is None, calls
    # refused while it was down; a try may land in the moment it starts up
    assert all(is_transient(err) and ("refused" in str(err).lower()
                                      or "starting up" in str(err).lower())
               for err in refused), refused
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"nnbench: {worker_label()}: a write while the server restarts "
                               f"keeps failing (") and "Connection refused" in lines[0], lines
    assert lines[0].endswith("); retrying for up to 60 s"), lines
    waited = re.fullmatch(rf"nnbench: {re.escape(worker_label())}: a write while the server "
                          rf"restarts succeeded after ([0-9]+) s of retries", lines[1])
    assert waited and int(waited[1]) >= 3, lines
    engine.dispose()


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("no such column: x")

    assert not is_transient(ValueError("no such column: x"))
    with pytest.raises(ValueError, match="no such column"):
        retrying(broken, "a broken query")
    assert calls == [1]


def test_a_usage_error_is_not_retried_whatever_path_it_quotes() -> None:
    """nnbench's own refusal quoting the user's path, /srv/locked-queue/optuna.db, read as
    a database that is locked: 120 s of retries, then a traceback."""
    from nnbench.messages import UsageError

    calls: list[int] = []
    refusal = UsageError("the Optuna storage sqlite:////srv/database is locked/optuna.db: its "
                         "tables are of an older Optuna's schema")

    def refused() -> None:
        calls.append(1)
        raise refusal

    assert is_transient(ValueError(str(refusal)))  # the words alone read as a lock
    with pytest.raises(UsageError):
        retrying(refused, "opening the Optuna storage")
    assert calls == [1]


def test_heartbeats_that_keep_failing_are_said_once_and_their_recovery_too(
        caplog: pytest.LogCaptureFixture) -> None:
    """The heartbeat thread retries each beat for an interval; one that still fails used to
    be dropped without a word, while the worker's trials went stale."""
    beats: list[int] = []

    class Storage:  # the storage's heartbeat write: fails four times, then succeeds
        def record_heartbeat(self, storage_id: int) -> None:
            beats.append(storage_id)
            if len(beats) <= 4:
                raise ConnectionError("could not translate host name \"db\"")

    caplog.set_level(logging.WARNING, logger="nnbench.queue")
    heartbeats = Heartbeats(Storage(), interval=1)  # type: ignore[arg-type]
    heartbeats.hold(7, beat=False)
    deadline = time.monotonic() + 60
    while len(caplog.records) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    heartbeats.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0] == (f"nnbench: {worker_label()} cannot record its heartbeats "
                        f"(ConnectionError: could not translate host name \"db\"); if they "
                        f"fail past the grace period, other workers train its trials again "
                        f"and this worker's results for them are not recorded")
    assert lines[1].startswith(f"nnbench: {worker_label()} records its heartbeats again, "
                               f"after ")
    assert set(beats) == {7} and len(beats) >= 5


def test_a_permanent_error_is_not_retried_whatever_else_its_message_says(
        postgres: Postgres) -> None:
    """libpq joins the errors of every address it tried: one that refused (a server down)
    and one that answered "does not exist" is a missing database, said at once. A value
    the statement carried is not the error: a tag quoting "Connection refused" that is too
    long for its column is too long, not a refused connection."""
    port = postgres.server.rpartition(":")[2]
    both = f"postgresql+psycopg2://postgres@/nowhere?host=127.0.0.1:9&host=127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(UsageError, match='database "nowhere" does not exist'):
        check_storage_url(both)
    assert time.monotonic() - started < 5  # not the 10 s wait for a server coming back
    engine = sqlalchemy.create_engine(postgres.mlflow)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE tags (value varchar(20))"))
    with pytest.raises(sqlalchemy.exc.DataError) as long, engine.begin() as connection:
        connection.execute(sqlalchemy.text("INSERT INTO tags VALUES (:v)"),
                           {"v": "failed: (OperationalError) Connection refused by the server"})
    assert "connection refused" in str(long.value).lower()  # in its [parameters: ...]
    assert not is_transient(long.value)
    engine.dispose()


def _lost_answer(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """`owner.name` commits its first call, then raises what a connection lost on the way
    back raises; later calls are left alone. Returns the calls, counted."""
    real = getattr(owner, name)
    calls: list[int] = []

    def lost(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 1:
            raise sqlalchemy.exc.OperationalError(
                "COMMIT", {}, Exception("server closed the connection unexpectedly"))
        return result

    monkeypatch.setattr(owner, name, lost)
    return calls


def test_a_write_whose_answer_was_lost_is_not_made_twice(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first try commits and its connection is lost before the answer comes back; the
    retry must find that write, not make another: a second run of the trial (which would
    show as a second finished run), a second claim (an entry left RUNNING under this worker,
    later failed as stale with a misleading reason), a duplicate model link (a duplicate
    key retried for two minutes), a second logged model (an orphan left PENDING)."""
    from mlflow.entities import LoggedModelOutput, ViewType
    from mlflow.tracking import MlflowClient

    suite = load_suite(write_suite(epochs=1, seeds=1))
    spec = suite.trials()[0]
    tracker = Tracker(suite, tracking_uri)
    invocation = tracker.start_invocation({}, 1)
    runs = _lost_answer(monkeypatch, MlflowClient, "create_run")
    run_id = tracker.start_trial(invocation, spec, {})
    assert len(runs) == 1  # found by its one-time tag, not made again
    experiment_id = tracker.experiment_id()
    assert experiment_id is not None
    made = tracker.client.search_runs([experiment_id], "tags.`nnbench.role` = 'trial'",
                                      run_view_type=ViewType.ALL)
    assert [r.info.run_id for r in made] == [run_id]

    model = tracker.client.create_logged_model(experiment_id, name="model")
    links = _lost_answer(monkeypatch, MlflowClient, "log_outputs")
    tracker.client.log_outputs(run_id, [LoggedModelOutput(model.model_id, 0)])
    assert len(links) == 2  # the retry met its own first write: a duplicate key, done
    outputs = tracker.client.get_run(run_id).outputs
    assert outputs is not None
    assert [o.model_id for o in outputs.model_outputs] == [model.model_id]

    # a logged model (`--log-models`): made once, found by its one-time tag; its saving is
    # made to fail at once (what is tested is its creation), so it is finalized FAILED
    import mlflow.pytorch
    import torch

    def unsavable(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("not saved here")

    models = _lost_answer(monkeypatch, MlflowClient, "create_logged_model")
    monkeypatch.setattr(mlflow.pytorch, "save_model", unsavable)
    model_id, note = tracker.log_model(run_id, spec, lambda: (torch.nn.Linear(2, 2),
                                                              torch.zeros(1, 2)), 1)
    assert len(models) == 1 and model_id is None and "not logged" in note, note
    made_models = tracker.client.search_logged_models([experiment_id])
    assert [m.name for m in made_models] == ["model", "model"]  # the one above, and this one
    assert sorted(str(m.status) for m in made_models) == ["FAILED", "PENDING"]

    live = Liveness(heartbeat_interval=1, grace_period=60)
    queue = TrialQueue(suite.name, open_storage(f"sqlite:///{tmp_path / 'q.db'}", live), live)
    queue.sync(suite.trials() * 1, store="1@0")
    claims = _lost_answer(monkeypatch, TrialQueue, "_claim_one")
    (claim,) = queue.claim(1)
    assert len(claims) == 1  # taken back, not a second entry claimed
    running = queue.entries([TrialState.RUNNING])
    assert [e.number for e in running] == [claim.number]
    assert queue.release(claim, "finished")
    queue.close()


def test_system_metrics_go_on_after_the_store_restarts(
        postgres: Postgres, write_suite: Callable[..., Path], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The store is down for 3 s while a worker's system metrics are sampled each second:
    the interval that could not be logged is said once and sent later, and sampling goes
    on after the outage (MLflow's own loop returned for good at its first failure: no
    sample after it but the closing one)."""
    pytest.importorskip("psutil")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    caplog.set_level(logging.WARNING, logger="nnbench.tracking")
    tracker = Tracker(load_suite(write_suite(epochs=1, seeds=1)), postgres.mlflow)
    run_id = tracker.start_invocation({}, n_todo=0)
    with tracker.system_metrics(run_id):
        time.sleep(2.5)
        with postgres.control.outage(3.0):
            time.sleep(3.0)
        back = time.time() * 1000
        time.sleep(4.0)
    history = MlflowClient(postgres.mlflow).get_metric_history(
        run_id, "system/cpu_utilization_percentage")
    after = [m for m in history if m.timestamp > back]
    assert len(after) >= 3, [(m.step, m.timestamp - back) for m in history]  # 2+ and closing
    assert all(0 <= m.value <= 100 for m in history)
    steps = [m.step for m in history]  # each interval once, the one not logged included
    assert len(set(steps)) == len(steps) and sorted(steps) == list(range(len(steps))), steps
    said = [r.getMessage() for r in caplog.records if "system metrics" in r.getMessage()]
    assert len(said) == 1 and "cannot log its system metrics" in said[0], said
