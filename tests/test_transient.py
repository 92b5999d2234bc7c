"""Storage errors worth a retry: a session the PostgreSQL server ended mid-transaction (as
`idle_in_transaction_session_timeout` does to a worker suspended inside a write) is one;
the retry goes through a new connection and succeeds."""

from __future__ import annotations

import pytest
import sqlalchemy

from nnbench.transient import is_transient, retrying
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
