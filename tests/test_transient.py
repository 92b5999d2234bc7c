"""Storage errors worth a retry: a session the PostgreSQL server ended mid-transaction (as
`idle_in_transaction_session_timeout` does to a worker suspended inside a write) is one;
the retry goes through a new connection and succeeds. So is a server that restarts: its
refused connections are waited for (a worker used to fail the trial it was recording).
Heartbeats and calls that keep failing are said, not silent."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest
import sqlalchemy

from nnbench import transient
from nnbench.queue import Heartbeats
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

    postgres.control.stop()
    back = threading.Timer(3.0, postgres.control.start)
    back.start()
    try:
        assert retrying(write, "a write while the server restarts", seconds=60) == 3
    finally:
        back.join()
    refused = [err for err in calls if err is not None]
    assert len(refused) >= 3 and calls[-1] is None, calls
    assert all(is_transient(err) and "refused" in str(err).lower() for err in refused), refused
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
