"""The documented database URL forms work against a real PostgreSQL server, and the
checks tell a reachable database from an unreachable or missing one (the corpus in
tests/config/test_corpus.py covers the other mistakes); a server that is restarting is
waited for, not reported as missing."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient

from nnbench import cli
from nnbench.cli_checks import UsageError, check_storage_url, check_tracking_uri
from tests.conftest import REPO, Postgres


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


def test_a_server_restarting_when_a_worker_starts_is_waited_for(
        postgres: Postgres, capsys: pytest.CaptureFixture[str]) -> None:
    """A worker a cluster starts while the shared server restarts used to exit 2 at once
    ("cannot connect to the database"); it now tries again each second for up to
    CONNECT_WAIT s, says so once, and goes on when the server is back."""
    started = time.monotonic()
    with postgres.control.outage(2.0):
        assert check_storage_url(postgres.optuna) == postgres.optuna
    assert time.monotonic() - started >= 2.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"nnbench: --storage {postgres.optuna!r}: cannot connect yet (OperationalError: "
        f"connection to server at \"127.0.0.1\", port "), err
    assert "Connection refused" in err and err.endswith(
        "); trying again for up to 10 s\n"), err


def test_a_worker_with_a_database_mlflow_store_must_name_its_queue(
        postgres: Postgres, write_suite: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`nnbench worker` by hand with a PostgreSQL MLflow store and no --storage would take
    a queue of its own machine (optuna.db in its directory): workers on several machines
    would each train every trial. It is refused before anything is made; with --storage it
    trains."""
    monkeypatch.chdir(tmp_path)
    suite = write_suite(epochs=1, seeds=1)
    assert cli.main(["worker", str(suite), "--tracking-uri", postgres.mlflow]) == 2
    err = capsys.readouterr().err
    assert f"--storage is needed with the MLflow store {postgres.mlflow}" in err
    assert f"sqlite:///{tmp_path / 'optuna.db'}" in err
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlruns").exists()
    assert cli.main(["worker", str(suite), "--tracking-uri", postgres.mlflow,
                     "--storage", postgres.optuna, "--device", "cpu"]) == 0


def test_swapped_stores_are_refused_before_either_is_written(
        write_suite: Callable[..., Path], tmp_path: Path, postgres: Postgres,
        mlflow_store: Callable[[Path], str], capsys: pytest.CaptureFixture[str]) -> None:
    """The MLflow store given as --storage and the queue as --tracking-uri: each tool wrote
    its schema into the other's database, then failed with the other's version error.
    Refused at once, naming which is which, with both files unchanged; the same for
    PostgreSQL databases."""
    import hashlib

    from mlflow.tracking import MlflowClient

    store, queue = tmp_path / "mlflow.db", tmp_path / "optuna.db"
    MlflowClient(mlflow_store(store)).create_experiment("other")
    optuna.create_study(storage=f"sqlite:///{queue}", study_name="other")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (store, queue)}
    suite = write_suite(epochs=1, seeds=1)
    assert cli.main(["run", str(suite), "--tracking-uri", f"sqlite:///{queue}",
                     "--storage", f"sqlite:///{store}"]) == 2
    err = capsys.readouterr().err
    assert (f"--tracking-uri 'sqlite:///{queue}' is an Optuna storage (a trial queue) (it "
            f"holds studies, trial_values, trials), not an MLflow store; were the two "
            f"swapped? It belongs to --storage") in err, err
    assert (f"--storage 'sqlite:///{store}' is an MLflow store (it holds experiments, "
            f"latest_metrics, runs), not an Optuna storage (a trial queue); were the two "
            f"swapped? It belongs to --tracking-uri") in err, err
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (store, queue)}
    optuna.create_study(storage=postgres.optuna, study_name="other")
    with pytest.raises(UsageError, match=r"is an Optuna storage .* were the two swapped"):
        check_tracking_uri(postgres.optuna)
    assert check_storage_url(postgres.optuna) == postgres.optuna  # in its place: fine


def test_a_run_id_copied_in_upper_case_is_mlflow_s_lower_case_id() -> None:
    from nnbench.cli_checks import check_run_id

    run_id = "0123456789abcdef0123456789abcdef"
    assert check_run_id(run_id.upper()) == check_run_id(run_id) == run_id


@pytest.mark.parametrize(("status", "body", "api", "refused"), [
    (404, b"", None, "GET /health answered 404 Not Found"),  # python -m http.server
    (501, b"", None, "GET /health answered 501 Not Implemented"),
    (200, b"<html>hello</html>", None, "GET /health answered 200 without MLflow's 'OK'"),
    (200, b"OK", None, None),  # MLflow's answer
    (401, b"", None, None),  # behind authentication: MLflow says what it needs
    (302, b"", None, None),  # a login page's redirect (an auth proxy)
    # --static-prefix: /health under the prefix only, the REST API at the root
    (404, b"", b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}', None),
])
def test_a_server_that_answers_but_is_not_mlflow_is_refused(
        status: int, body: bytes, api: bytes | None, refused: str | None) -> None:
    """Any HTTP answer used to pass: a web server on the port gave MLflow's traceback
    ("API request ... failed with error code 501") after the data checks."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, text = (404, b"not found") if self.path != "/health" else (status, body)
            if self.path.startswith("/api/2.0/mlflow/") and api is not None:
                code, text = 404, api
            self.send_response(code)
            if 300 <= code < 400:
                self.send_header("Location", "/login")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        if refused is None:
            assert check_tracking_uri(uri) == uri
        else:
            with pytest.raises(UsageError) as caught:
                check_tracking_uri(uri)
            assert str(caught.value) == (
                f"--tracking-uri {uri!r} answers, but is not an MLflow tracking server "
                f"({refused}); check the address and port (mlflow server --host HOST --port "
                f"PORT)")
    finally:
        server.shutdown()
        server.server_close()


def test_an_empty_or_foreign_sqlite_file_is_not_turned_into_a_store(
        write_suite: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`report` and `evaluate` (which only read) turned a 0-byte file into an empty MLflow
    store, and every command wrote MLflow's or Optuna's schema into a SQLite database of
    something else; `status` wrote Optuna's tables into any file given as --storage. Each
    is refused (or, for status, read as "no queue") with the file unchanged."""
    import sqlite3

    suite = write_suite(epochs=1, seeds=1)
    empty, foreign = tmp_path / "empty.db", tmp_path / "foreign.db"
    empty.touch()
    with sqlite3.connect(foreign) as db:
        db.execute("create table foo (x integer)")
    before = foreign.read_bytes()
    for argv in (["report", str(suite), "--report-dir", str(tmp_path / "r")],
                 ["evaluate", "0123456789abcdef0123456789abcdef"]):
        assert cli.main([*argv, "--tracking-uri", f"sqlite:///{empty}"]) == 2
        assert (f"--tracking-uri 'sqlite:///{empty}': {empty} holds no MLflow store (no "
                f"experiments or runs tables; an empty file): nothing has been logged there"
                ) in capsys.readouterr().err
        assert empty.stat().st_size == 0
    for argv in (["report", str(suite), "--report-dir", str(tmp_path / "r"),
                  "--tracking-uri", f"sqlite:///{foreign}"],
                 ["run", str(suite), "--tracking-uri", f"sqlite:///{foreign}"],
                 ["status", str(suite), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                  "--storage", f"sqlite:///{foreign}"]):
        assert cli.main(argv) == 2
        assert (f"{foreign} is a SQLite database of something else (it holds foo)"
                in capsys.readouterr().err)
    assert foreign.read_bytes() == before
    # status with an empty --storage: no queue there yet, and the file left empty
    assert cli.main(["status", str(suite), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                     "--storage", f"sqlite:///{empty}"]) == 0
    assert "tiny: no queue at" in capsys.readouterr().out
    assert empty.stat().st_size == 0 and not (tmp_path / "m.db").exists()
    assert not (tmp_path / "r").exists()


def test_the_stores_are_checked_at_once(monkeypatch: pytest.MonkeyPatch,
                                        write_suite: Callable[..., Path],
                                        tmp_path: Path) -> None:
    """Each store's check may wait CONNECT_WAIT s for its server: one after the other, an
    unreachable MLflow store and storage took 22 s to refuse. They run together: each
    check here waits for the other at a barrier, which fails if they run in turn."""
    import threading

    from nnbench import cli_checks

    barrier = threading.Barrier(2, timeout=10)

    def meet(url: str | None, **_: object) -> str:
        barrier.wait()
        return str(url)

    monkeypatch.setattr(cli_checks, "check_tracking_uri", meet)
    monkeypatch.setattr(cli_checks, "check_storage_url", meet)
    suite = write_suite(epochs=1, seeds=1)
    args = cli._parser().parse_args(["status", str(suite), "--tracking-uri",
                                     f"sqlite:///{tmp_path / 'm.db'}", "--storage",
                                     f"sqlite:///{tmp_path / 'o.db'}"])
    assert [s.name for s in cli._checked(args, tracking=True, storage=True)] == ["tiny"]
    assert not barrier.broken


def test_bench_takes_validate_or_report_only_not_both(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["bench", "benchmarks/optimizers.yaml", "--validate", "--report-only"])
    assert caught.value.code == 2
    assert "argument --report-only: not allowed with argument --validate" in \
        capsys.readouterr().err


def test_bench_validate_checks_the_device_it_would_run_on(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench --validate --device cuda` said ok on a machine without CUDA, where the same
    command without --validate is refused."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    bench = str(REPO / "benchmarks" / "optimizers.yaml")
    assert cli.main(["bench", bench, "--validate", "--device", "cuda"]) == 2
    said = capsys.readouterr()
    assert said.err.splitlines() == [
        "--device 'cuda': device 'cuda' requested but torch.cuda.is_available() is False "
        f"(torch {torch.__version__}); use --device cpu or auto"]
    assert said.out == ""
    assert cli.main(["bench", bench, "--validate", "--device", "cpu"]) == 0
    assert "optimizers.yaml: ok" in capsys.readouterr().out


@pytest.mark.parametrize("timeout", ["abc", "-5", "nan", "inf", "0", "30&timeout=5"])
@pytest.mark.parametrize("option", ["--tracking-uri", "--storage"])
def test_a_sqlite_timeout_that_is_no_number_of_seconds_is_refused(
        option: str, timeout: str, write_suite: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`?timeout=abc` was a traceback (ValueError: could not convert string to float) with
    an empty store file left behind; -5 and nan were taken."""
    suite = write_suite(epochs=1, seeds=1)
    url = f"sqlite:///{tmp_path / 'x.db'}?timeout={timeout}"
    assert cli.main(["run", str(suite), "--device", "cpu", option, url]) == 2
    given = timeout.rpartition("=")[2]
    assert f"{option} {url!r}: timeout={given!r}: give one timeout, a finite number of " \
           f"seconds above 0 (e.g. ?timeout=60), or none (60 s)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [suite.name]  # nothing created


@pytest.mark.parametrize("folder", ["q?x", "q?x=1", "q?timeout=1"])
@pytest.mark.parametrize("option", ["--tracking-uri", "--storage"])
def test_a_question_mark_in_a_sqlite_path_is_refused(
        tmp_path: Path, write_suite: Callable[..., Path], option: str, folder: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`sqlite:///DIR/q?x/m.db` is the file DIR/q with a query `x/m.db` that SQLAlchemy
    dropped: the run trained into a file `q` while every line named `q?x/m.db`. A folder
    `q?x=1` or `q?timeout=1` was told of SQLite options instead."""
    suite = write_suite(epochs=1, seeds=1)
    url = f"sqlite:///{tmp_path}/{folder}/m.db"
    query = folder.partition("?")[2]
    assert cli.main(["run", str(suite), "--device", "cpu", option, url]) == 2
    assert (f"{option} {url!r}: '?{query}/m.db' is read as a query (SQLite options), so the "
            f"database would be the file '{tmp_path}/q'; a '?' in a path is written %3F: "
            f"sqlite:///{tmp_path}/{folder.replace('?', '%3F')}/m.db"
            ) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [suite.name]  # nothing created


@pytest.mark.parametrize(("option", "path", "said"), [
    ("--tracking-uri", "x%00.db", "its path holds a NUL character (%00), which no file name "
                                  "can; name a file, e.g. sqlite:///mlflow.db"),
    ("--storage", "q%00.db", "its path holds a NUL character (%00), which no file name can; "
                             "name a file, e.g. sqlite:///optuna.db"),
    ("--storage", "adir", "adir is a directory; name a file, e.g. sqlite:///adir/optuna.db"),
    ("--tracking-uri", "adir", "adir is a directory; name a file, e.g. "
                               "sqlite:///adir/mlflow.db"),
])
def test_a_sqlite_path_no_file_can_have_is_refused_naming_the_stores_own_file(
        tmp_path: Path, write_suite: Callable[..., Path], option: str, path: str, said: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A `%00` in a store's SQLite path was a traceback ("embedded null byte") from the
    store's lock, after the data's facts were printed; a folder given as --storage was
    told to use `mlflow.db` in it, the MLflow store's name, not the queue's."""
    suite = write_suite(epochs=1, seeds=1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    assert cli.main(["run", str(suite), "--device", "cpu", option, f"sqlite:///{path}"]) == 2
    assert f"{option} 'sqlite:///{path}': {said}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["adir", suite.name])


@pytest.mark.parametrize(("decoded", "raw"), [("new dir/sub", "new%20dir/sub"),
                                              ("new/a b", "new/a%20b")])
def test_an_encoded_path_removes_only_the_undecoded_folders_made(
        tmp_path: Path, decoded: str, raw: str) -> None:
    """MLflow's `mkdir(parents=True)` of the undecoded path: every folder it made is
    removed, never one on the decoded store's way, nor one that existed."""
    from nnbench.tracking import open_client

    (tmp_path / decoded).mkdir(parents=True)  # as nnbench makes the store's folder
    open_client(f"sqlite:///{tmp_path / raw}/m.db")
    assert (tmp_path / decoded).is_dir()
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert found == sorted({f"{decoded}/m.db", decoded, *map(str, Path(decoded).parents)}
                           - {"."}), found


def test_an_encoded_sqlite_path_leaves_no_undecoded_twin(
        tmp_path: Path, write_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """MLflow makes the parent of a SQLite URI's path without decoding it: a store at
    `q%3Fx/m.db` (the folder `q?x`) also left an empty folder named `q%3Fx`."""
    suite = write_suite(epochs=1, seeds=1)
    (tmp_path / "q?x").mkdir()
    url = f"sqlite:///{tmp_path}/q%3Fx/m.db"
    assert cli.main(["run", str(suite), "--device", "cpu", "--tracking-uri", url,
                     "--report-dir", str(tmp_path / "r")]) == 0
    assert (tmp_path / "q?x" / "m.db").is_file()
    run_id = next(r.info.run_id for r in MlflowClient(url).search_runs(["1"])
                  if r.data.tags.get("nnbench.role") == "trial")
    assert "q%3Fx" not in {p.name for p in tmp_path.iterdir()}
    # as a new process opens the store (MLflow keeps one engine per URI and process)
    monkeypatch.setattr(SqlAlchemyStore, "_engine_map", {})
    # the run is read (it kept no checkpoint: evaluate says so)
    assert cli.main(["evaluate", run_id, "--device", "cpu", "--tracking-uri", url]) == 2
    assert f"run {run_id}: its artifacts hold no checkpoint.pt" in capsys.readouterr().err
    assert "q%3Fx" not in {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize("folder", ["h#x", "p%20c", "q?x", "sp ace"])
def test_a_store_in_a_folder_with_uri_characters_is_read_where_it_is(
        tmp_path: Path, folder: str) -> None:
    """`status` and `report` read a store without writing it (`sqlite_tables`): in a
    working directory named `h#x`, `p%20c` or `q?x` they said "no queue yet" or "holds no
    MLflow store" of the stores `run` had just filled, and created an empty file where the
    path was cut short (`h`, `q`). The URI they open is now %-encoded."""
    import sqlite3

    from nnbench.cli_checks import sqlite_tables, sqlite_url, sqlite_without

    where = tmp_path / folder
    where.mkdir()
    with sqlite3.connect(where / "optuna.db") as db:
        db.execute("create table studies (id integer)")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert sqlite_tables(where / "optuna.db") == {"studies"}
    assert not sqlite_without(sqlite_url(where / "optuna.db"), "studies")
    assert sqlite_without(sqlite_url(where / "other.db"), "studies")  # none: not made
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stray file
    assert sorted(p.name for p in where.iterdir()) == ["optuna.db"]


def test_a_report_dir_where_nothing_can_be_made_is_refused_before_training(
        tmp_path: Path) -> None:
    """As root, `os.access` says /proc is writable: `--report-dir /proc/x` passed the check
    and the report failed with a traceback after training. The check now makes (and
    removes) a folder there; a writable place keeps nothing of it."""
    from nnbench.cli_checks import check_report_dir

    with pytest.raises(UsageError, match=r"--report-dir '/proc/x': cannot create it: /proc is "
                                         r"not writable by this user"):
        check_report_dir("/proc/x")
    assert check_report_dir(tmp_path / "new" / "reports") == tmp_path / "new" / "reports"
    assert check_report_dir(tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []  # no probe left, nothing made


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir("/proc"),
                    reason="as root, os.access says /proc takes new files")
def test_a_sqlite_store_where_no_file_can_be_made_is_refused_at_once() -> None:
    """As root, `os.access` says /proc is writable: `--tracking-uri sqlite:////proc/x.db`
    passed the check, and the run retried MLflow's engine for about 100 s, then ended in a
    traceback, exit 1. The check now makes (and removes) a probe there, as for a report
    directory."""
    said = "cannot create /proc/x.db: this user cannot make files in the directory /proc"
    with pytest.raises(UsageError, match=re.escape(f"--tracking-uri 'sqlite:////proc/x.db': "
                                                   f"{said}")):
        check_tracking_uri("sqlite:////proc/x.db")
    with pytest.raises(UsageError, match=re.escape(said)):
        check_storage_url("sqlite:////proc/x.db")


def test_dangling_links_loops_and_names_too_long_are_refused_before_anything_is_made(
        tmp_path: Path, write_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A --report-dir that was a dangling symbolic link passed the check (Path.exists is
    False for it), every trial trained, and the report ended in FileExistsError; a store
    through a dangling link was retried for a minute and ended in OperationalError after
    the other store had made its experiment; a link loop or a name over 255 bytes was a
    traceback. Each is refused first, naming the option and why, and nothing is made."""
    from nnbench.cli_checks import check_report_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rdir").symlink_to(tmp_path / "gone" / "reports")
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "m.db").symlink_to(tmp_path / "gone" / "m.db")
    (tmp_path / "chain.db").symlink_to("m.db")  # to a link to nothing: the last hop decides
    long = "a" * 300
    path = write_suite(epochs=1, seeds=1)
    made = sorted(p.name for p in tmp_path.iterdir())
    cases = [
        (["--report-dir", "rdir"], f"--report-dir 'rdir': {tmp_path / 'rdir'} is a symbolic "
         f"link to {tmp_path / 'gone' / 'reports'}, which does not exist; create its target, "
         f"or name another path"),
        (["--report-dir", "loop1"], f"--report-dir 'loop1': {tmp_path / 'loop1'} is a "
         f"symbolic link in a loop (to loop2)"),
        (["--report-dir", "rdir/suite"], f"--report-dir 'rdir/suite': {tmp_path / 'rdir'} is a "
         f"symbolic link to {tmp_path / 'gone' / 'reports'}, which does not exist"),
        (["--report-dir", long], f"--report-dir '{long}': {long}: file name too long (a name "
         f"of 300 bytes; most file systems allow 255)"),
        (["--tracking-uri", f"sqlite:///{long}.db"], f"{long}.db: file name too long"),
        (["--tracking-uri", "sqlite:///loop1"], "is a symbolic link in a loop (to loop2)"),
        (["--tracking-uri", "sqlite:///chain.db"], f"{tmp_path / 'chain.db'} is a symbolic "
         f"link to m.db, which does not exist"),
        (["--tracking-uri", "sqlite:///m2.db", "--storage", "sqlite:///m.db"],
         f"--storage 'sqlite:///m.db': {tmp_path / 'm.db'} is a symbolic link to "
         f"{tmp_path / 'gone' / 'm.db'}, which does not exist"),
    ]
    for options, said in cases:
        assert cli.main(["run", str(path), "--device", "cpu", *options]) == 2, options
        assert said in " ".join(capsys.readouterr().err.split()), options
        assert sorted(p.name for p in tmp_path.iterdir()) == made, options
    # a link to a store file not made yet, in a folder that exists: SQLite makes it there
    (tmp_path / "real").mkdir()
    (tmp_path / "ok.db").symlink_to(tmp_path / "real" / "ok.db")
    check_tracking_uri("sqlite:///ok.db")
    assert check_report_dir(tmp_path / "real" / "reports") == tmp_path / "real" / "reports"


def test_a_suite_and_a_benchmark_of_one_name_never_replace_each_others_report(
        tmp_path: Path, write_suite: Callable[..., Path], tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`nnbench bench hb.yaml` beside a suite named hb: each report replaced the other's
    hb.html (and hb.summary.json), unsaid, and the index listed only the last."""
    from nnbench.cli_checks import BENCHMARK_REPORT_FILES, REPORT_FILES, check_report_files

    reports = tmp_path / "reports"
    reports.mkdir()
    page = reports / "tiny.html"
    page.write_text("<!doctype html><html><head><title>nnbench benchmark: tiny</title>")
    said = (f"--report-dir {str(reports)!r}: {page} is the report of a benchmark named 'tiny', "
            f"and this suite's report would replace it; rename one of them, or give another "
            f"--report-dir")
    assert check_report_files(reports, ["tiny"], REPORT_FILES) == [said]
    assert check_report_files(reports, ["tiny"], BENCHMARK_REPORT_FILES) == []
    path = write_suite(epochs=1, seeds=1)
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--report-dir", str(reports)]) == 2
    assert said in " ".join(capsys.readouterr().err.split())
    page.write_text("<!doctype html><html><head><title>nnbench: tiny</title>")
    assert check_report_files(reports, ["tiny"], BENCHMARK_REPORT_FILES) == [
        f"--report-dir {str(reports)!r}: {page} is the report of a suite named 'tiny', and "
        f"this benchmark's report would replace it; rename one of them, or give another "
        f"--report-dir"]
    assert check_report_files(reports, ["tiny"], REPORT_FILES) == []


def test_a_storage_of_another_optuna_s_schema_is_refused_with_what_to_run(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An Optuna storage whose tables an older Optuna made (or a newer one) ended `run` and
    `status` in Optuna's RuntimeError, a traceback. Now each is refused (exit 2) before
    anything is written, saying which schema it found and what to run; the command it
    names upgrades the storage, after which it opens. The check reads the installed
    Optuna's schema revision once per process: the second opening here is checked too."""
    import shlex
    import sqlite3
    import subprocess

    from nnbench.queue import open_storage

    path, suite = tmp_path / "optuna.db", write_suite(epochs=1, seeds=1)
    url = f"sqlite:///{path}"
    head = optuna.storages.RDBStorage(url)._version_manager.get_head_version()
    open_storage(url).engine.dispose()
    older = "v3.0.0.d"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (older,))
    db.close()
    assert cli.main(["status", str(suite), "--storage", url, "--tracking-uri", tracking_uri]) == 2
    said = capsys.readouterr().err
    assert f"the Optuna storage {url}: its tables are of an older Optuna's schema ({older}; " \
           f"the installed Optuna {optuna.__version__} uses {head}); upgrade them with `" in said
    assert "Traceback" not in said
    assert cli.main(["run", str(suite), "--storage", url, "--tracking-uri", tracking_uri,
                     "--report-dir", str(tmp_path / "reports")]) == 2
    assert f"its tables are of an older Optuna's schema ({older}; " in capsys.readouterr().err
    assert MlflowClient(tracking_uri).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri).search_experiments()]) == []
    assert "` (a copy of the file first, if processes of the older version use it), or " \
           "give another --storage" in said
    command = shlex.split(said.split("`")[1])
    assert command[1:] == ["storage", "upgrade", "--storage", url]
    assert Path(command[0]).name == "optuna"
    subprocess.run(command, check=True, capture_output=True)  # the command it names
    open_storage(url).engine.dispose()  # upgraded: it opens
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = 'v9.0.0.a'")
    db.close()
    with pytest.raises(UsageError, match=re.escape(
            f"the Optuna storage {url}: its tables are of a newer Optuna's schema (v9.0.0.a) "
            f"than the installed Optuna {optuna.__version__} knows (up to {head}); use "
            f"nnbench with the Optuna that wrote them, or give another --storage")):
        open_storage(url)


def test_an_mlflow_store_of_another_mlflow_s_schema_is_refused_with_what_to_run(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An MLflow store whose tables an older MLflow made ended `run` and `report` in
    MLflow's "Detected out-of-date database schema" traceback. Now each is refused (exit 2),
    nothing written, with the revision found and the command that upgrades the store."""
    import sqlite3

    from mlflow.version import VERSION

    path, suite = Path(tracking_uri.removeprefix("sqlite:///")), write_suite(epochs=1, seeds=1)
    with sqlite3.connect(path) as db:
        (head,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        db.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")  # MLflow 1.x
    db.close()
    for command in ("run", "report"):
        assert cli.main([command, str(suite), "--tracking-uri", tracking_uri,
                         "--report-dir", str(tmp_path / "reports")]) == 2
        said = capsys.readouterr().err
        assert (f"the MLflow store {tracking_uri}: its tables are of another MLflow's schema "
                f"(revision 451aebb31d03; the installed MLflow {VERSION} uses {head}); made "
                f"by an older MLflow, upgrade them with `") in said, said
        assert f" db upgrade {tracking_uri}` (a copy of the file first, if processes of the " \
               f"older version use it); by a newer one, use nnbench with that MLflow" in said
        assert "Traceback" not in said
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM experiments").fetchone() == (1,)  # Default
    db.close()
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(("url", "shown", "command", "first"), [
    ("postgresql://me:s3cret@db/optuna", "postgresql://me:***@db/optuna",
     "postgresql://me:PASSWORD@db/optuna",
     "with the database's password for PASSWORD; a backup of the database first"),
    ("postgresql://me@db/optuna?password=s3cret", "postgresql://me@db/optuna?password=PASSWORD",
     "'postgresql://me@db/optuna?password=PASSWORD'",
     "with the database's password for PASSWORD; a backup of the database first"),
    ("postgresql+psycopg2://me@db:5433/optuna", "postgresql+psycopg2://me@db:5433/optuna",
     "postgresql+psycopg2://me@db:5433/optuna", "a backup of the database first"),
    ("sqlite:////a dir/optuna.db", "sqlite:////a dir/optuna.db",
     "'sqlite:////a dir/optuna.db'", "a copy of the file first"),
])
def test_an_upgrade_command_never_shows_a_password(url: str, shown: str, command: str,
                                                   first: str) -> None:
    """The command that upgrades a store's tables, quoted for the shell, names a password as
    PASSWORD to fill in: the database's own was printed (hidden as ***, the command failed
    to log in)."""
    from nnbench.messages import upgrade_command

    said = upgrade_command("optuna", "storage upgrade --storage", url)
    assert said[0] == shown
    assert said[1].endswith(f" storage upgrade --storage {command}` ({first}, if processes "
                            f"of the older version use it)")
    assert "s3cret" not in " ".join(said)
