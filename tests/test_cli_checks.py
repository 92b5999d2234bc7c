"""The documented database URL forms work against a real PostgreSQL server, and the
checks tell a reachable database from an unreachable or missing one (the corpus in
tests/config/test_corpus.py covers the other mistakes)."""

from __future__ import annotations

import optuna
import pytest

from nnbench import cli
from nnbench.cli_checks import UsageError, check_storage_url, check_tracking_uri
from tests.conftest import Postgres


@pytest.mark.slow
def test_plain_postgresql_urls_work_as_documented(postgres: Postgres,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    plain = postgres.server.replace("postgresql+psycopg2://", "postgresql://")  # psycopg 3
    optuna_db, mlflow_db = (url.rpartition("/")[2] for url in (postgres.optuna,
                                                                postgres.mlflow))
    for url in (f"{plain}/{optuna_db}", postgres.optuna):
        assert check_storage_url(url) == url
        optuna.storages.RDBStorage(url)  # what `nnbench tune --storage URL` opens
    assert check_tracking_uri(f"{plain}/{mlflow_db}") == f"{plain}/{mlflow_db}"
    with pytest.raises(UsageError, match='database "nowhere" does not exist'):
        check_storage_url(f"{plain}/nowhere")
    with pytest.raises(SystemExit):
        cli.main(["tune", "--help"])
    assert "postgresql://user@host/db" in capsys.readouterr().out
