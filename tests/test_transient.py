"""Storage errors worth a retry: a session the PostgreSQL server ended mid-transaction (as
`idle_in_transaction_session_timeout` does to a worker suspended inside a write) is one;
the retry goes through a new connection and succeeds. Heartbeats that keep failing are
said, not silent."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy

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
