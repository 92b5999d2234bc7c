"""Command-line and environment checks, made before anything is created or trained.

Each `check_*` returns the checked value or raises `UsageError` with what was given and
what to do; none creates a file, a database, a run or a directory. Every command that
takes the option calls the same check (run, tune, report, evaluate today; the queue's
`run --workers`, `worker` and `submit` later):

- `check_tracking_uri(uri)`: the MLflow store (`--tracking-uri`, else
  $MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db`): a SQLite file whose directory
  exists and is writable, a database server (driver installed, server reachable), or
  an MLflow tracking server (reachable); `must_exist` for commands that only read;
- `check_storage_url(url)`: an Optuna RDB storage URL, checked the same way;
- `check_report_dir(path)`: a directory, or a path one can be created at;
- `check_run_id(run_id)`: an MLflow run id (32 hexadecimal digits);
- `check_device(name)`: `auto`, `cpu`, `cuda` or `cuda:N` that this machine has (and,
  for a GPU, a CUBLAS_WORKSPACE_CONFIG that deterministic cuBLAS accepts: training and
  evaluate both run deterministic);
- `whole_number(low, high)` / `real_number(low)`: argparse types for numeric options,
  refusing (exit 2, naming the option, the value and the range) what is out of range,
  not a number, or not finite (`nan`, `inf`), before any command runs.

A server that refuses connections (one restarting, as a store shared by workers may be while
a cluster starts them) is tried again each second for up to CONNECT_WAIT s, said once on
stderr, before it is an error.

Database URLs are SQLAlchemy URLs: `postgresql://user@host/db` loads SQLAlchemy's
default PostgreSQL driver (psycopg 3), `postgresql+psycopg2://...` psycopg2; both ship
with nnbench.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import sqlite3
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nnbench.messages import UsageError, did_you_mean, first_line
from nnbench.transient import is_transient, reason

if TYPE_CHECKING:
    import torch

__all__ = ["UsageError", "check_device", "check_report_dir", "check_run_id", "check_storage_url",
           "check_tracking_uri", "default_tracking_uri", "real_number", "sqlite_file",
           "sqlite_url", "sqlite_without",
           "whole_number"]

CONNECT_TIMEOUT = 5  # seconds to reach a database or tracking server
CONNECT_WAIT = 10.0  # seconds a server that refuses connections (restarting) is waited for
SERVER_SCHEMES = ("postgresql", "mysql", "mssql", "oracle")  # SQLAlchemy dialects of servers
SQLITE_HEADER = b"SQLite format 3\x00"


def default_tracking_uri() -> str:
    """What MLflow uses without --tracking-uri: $MLFLOW_TRACKING_URI or ./mlflow.db (the
    path as it is: MLflow's own resolution %-encodes it, and then makes the directory of
    the encoded path, `a%20b/`, beside the working directory `a b`)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or sqlite_url(Path.cwd() / "mlflow.db")


def sqlite_url(path: Path) -> str:
    """The `sqlite:///` URL of a file, as `sqlite_file` reads it back: a `%` or `?` in the
    path escaped (SQLAlchemy decodes %XX: a directory `x%41y` opened `xAy`), nothing
    else (a space stays a space)."""
    return "sqlite:///" + str(path).replace("%", "%25").replace("?", "%3F")


def _origin(given: str | None, option: str) -> str:
    if given is not None:
        return f"{option} {given!r}"
    if os.environ.get("MLFLOW_TRACKING_URI") and option == "--tracking-uri":
        return f"$MLFLOW_TRACKING_URI {os.environ['MLFLOW_TRACKING_URI']!r}"
    return f"the default {option} {default_tracking_uri()!r}"


def check_tracking_uri(uri: str | None, *, must_exist: bool = False, connect: bool = True,
                       writes: bool = True) -> str:
    """The MLflow tracking URI to use, checked; `must_exist`: a command that only reads;
    `connect=False`: its form and a SQLite file only, no server reached (a command that
    may not open the store: `status` of a suite that is not tuned); `writes=False`: a
    SQLite file need not be writable by this user (`status` reads)."""
    what = _origin(uri, "--tracking-uri")
    value = uri if uri is not None else default_tracking_uri()
    forms = ("sqlite:///PATH.db (a file), postgresql://USER@HOST/DB, "
             "mysql+pymysql://USER@HOST/DB, or http(s)://HOST:PORT (an MLflow server)")
    if not value.strip():
        raise UsageError(f"{what} is empty; use {forms}")
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme in ("http", "https"):
        if connect:
            _check_server(value, what)
        return value
    if scheme.startswith("databricks") or value.startswith("databricks"):
        if connect:
            _check_databricks(value, what)
        return value
    if not scheme and re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", value) and \
            not value.lower().startswith("file:"):  # (file:./mlruns: the retired file store)
        raise UsageError(f"{what} is not a valid URL: after '{value.split(':')[0]}:' come "
                         f"'//' and the location (sqlite:///relative.db, "
                         f"sqlite:////absolute/path.db); use {forms}")
    if scheme == "file" or not scheme:
        path = urllib.parse.urlparse(value).path if value.lower().startswith("file:") else value
        # sqlite:///relative.db, sqlite:////absolute.db (it said sqlite:///file:./store.db)
        hint = f"sqlite:///{path.removeprefix('./')}" if path.endswith(".db") else \
            "sqlite:///mlflow.db"
        raise UsageError(f"{what} is not a store MLflow {_mlflow_version()} writes to (plain "
                         f"paths and file: URIs are its retired file store); use a database, "
                         f"e.g. {hint}, or {forms}")
    _check_database(value, what, forms, must_exist=must_exist, kind="mlflow", connect=connect,
                    writes=writes)
    return value


def _check_databricks(uri: str, what: str) -> None:
    """A Databricks workspace's store: the credentials MLflow reads for it are there."""
    import logging

    quiet = logging.getLogger("mlflow.utils.databricks_utils")  # (its warning says it twice)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from mlflow.utils.databricks_utils import get_databricks_host_creds

        get_databricks_host_creds(uri)  # type: ignore[no-untyped-call]
    except Exception as err:  # MlflowException, the SDK's own errors, ImportError
        raise UsageError(f"{what}: no credentials for a Databricks workspace "
                         f"({first_line(err)}); set DATABRICKS_HOST and DATABRICKS_TOKEN, or "
                         f"configure a profile with `databricks configure`") from None
    finally:
        quiet.setLevel(level)


def check_storage_url(url: str, *, given: bool = True, connect: bool = True,
                      writes: bool = True) -> str:
    """An Optuna storage URL (an SQLAlchemy database URL), checked; `connect=False`: its
    form, its driver and a SQLite file only, no server reached; `writes=False`: a SQLite
    file need not be writable by this user (`status` reads)."""
    what = f"--storage {url!r}" if given else f"the default --storage {url!r}"
    forms = ("sqlite:///PATH.db, postgresql://USER@HOST/DB (or postgresql+psycopg2://...), "
             "mysql+pymysql://USER@HOST/DB")
    if "://" not in url:
        raise UsageError(f"{what} is not a database URL; use {forms}")
    _check_database(url, what, forms, must_exist=False, kind="optuna", connect=connect,
                    writes=writes)
    return url


def check_separate_stores(tracking_uri: str | None, storage_url: str, *,
                          storage_given: bool) -> None:
    """The MLflow store and the Optuna storage (the trial queue) must be two databases: in
    one SQLite file, each one's schema breaks the other (Optuna then says its version no
    longer matches the file's tables)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    uri = tracking_uri if tracking_uri is not None else default_tracking_uri()
    try:
        store, queue = make_url(uri), make_url(storage_url)
    except (ArgumentError, ValueError):
        return  # each URL's own check says what is wrong with it
    if store.get_backend_name() != queue.get_backend_name() or not store.database \
            or not queue.database:
        return
    storage = (f"--storage {storage_url!r}" if storage_given else
               f"the default --storage (optuna.db next to the store, {storage_url!r})")
    given = f"{_origin(tracking_uri, '--tracking-uri')} and {storage}"
    if store.get_backend_name() == "sqlite":
        try:
            same = Path(store.database).resolve() == Path(queue.database).resolve()
        except (OSError, ValueError):  # a NUL in a path (`%00`): its own check says so
            return
        if same:
            raise UsageError(f"{given} are the same SQLite file; the MLflow store and the "
                             f"trial queue need one each: name another file for one of them, "
                             f"e.g. --tracking-uri sqlite:///mlflow.db --storage "
                             f"sqlite:///optuna.db")
    elif (store.host or "", store.port, store.database) == \
            (queue.host or "", queue.port, queue.database):  # both keep an alembic_version
        raise UsageError(f"{given} are the same database ({store.database} on "
                         f"{store.host or 'localhost'}); the MLflow store and the trial queue "
                         f"need one each: create another database for one of them")


def _mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


def _reach(attempt: Callable[[], None], what: str) -> None:
    """`attempt()`; while it fails as a server that is down or restarting does (refused,
    starting up: `transient.is_transient`), again each second for up to CONNECT_WAIT s,
    said once on stderr. Raises its last error."""
    deadline = time.monotonic() + CONNECT_WAIT
    said = False
    while True:
        try:
            attempt()
            return
        except Exception as err:
            if not is_transient(err) or time.monotonic() >= deadline:
                raise
            if not said:
                said = True
                print(f"nnbench: {what}: cannot connect yet ({reason(err)}); trying again "
                      f"for up to {CONNECT_WAIT:.0f} s", file=sys.stderr, flush=True)
        time.sleep(1.0)


def _check_server(uri: str, what: str) -> None:
    """An MLflow tracking server answers GET /health with "OK", or its REST API with JSON
    (a server started with --static-prefix serves /health under the prefix only); one
    that asks for credentials (401, 403) or sends to a login page (a redirect) is left to
    MLflow to report. Anything else is another server."""
    answer: list[str] = []
    base = uri.rstrip("/")
    opener = urllib.request.build_opener(_NoRedirect)

    def mlflow_answers() -> None:
        answer.clear()
        try:
            with opener.open(f"{base}/health", timeout=CONNECT_TIMEOUT) as response:
                if response.read(64).strip() == b"OK":
                    return
                answer.append(f"GET /health answered {response.status} without MLflow's 'OK'")
        except urllib.error.HTTPError as err:
            if err.code in (401, 403) or 300 <= err.code < 400:
                return  # authentication in front of it: MLflow's to report
            answer.append(f"GET /health answered {err.code} {err.reason}")
        if _api_answers(opener, base):
            answer.clear()

    try:
        _reach(mlflow_answers, what)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise UsageError(f"{what}: cannot reach the MLflow server ({reason}); start it "
                         f"(mlflow server --host HOST --port PORT) or check the address"
                         ) from None
    if answer:
        raise UsageError(f"{what} answers, but is not an MLflow tracking server ({answer[0]}); "
                         f"check the address and port (mlflow server --host HOST --port PORT)")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect (to a login page) is an answer of its own, not followed."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _api_answers(opener: urllib.request.OpenerDirector, base: str) -> bool:
    """Whether MLflow's REST API answers at `base`: JSON with an error_code (or 200) for
    an experiment that is not there."""
    import json

    url = f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=nnbench-probe"
    try:
        with opener.open(url, timeout=CONNECT_TIMEOUT) as response:
            body = response.read(4096)
    except urllib.error.HTTPError as err:
        body = err.read(4096)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and ("error_code" in data or "experiment" in data)


# tables that say whose a database is: MLflow's store, or an Optuna storage (the queue)
_TABLES = {"mlflow": frozenset({"experiments", "runs", "latest_metrics"}),
           "optuna": frozenset({"studies", "trials", "trial_values"})}
_NAMES = {"mlflow": "an MLflow store", "optuna": "an Optuna storage (a trial queue)"}


def _whose(tables: set[str], kind: str, what: str) -> None:
    """Refuse a database that holds the other tool's tables and none of its own (the two
    URLs swapped): each tool would write its schema into the other's database."""
    other = "optuna" if kind == "mlflow" else "mlflow"
    if _TABLES[other] <= tables and not _TABLES[kind] & tables:
        option = "--storage" if other == "optuna" else "--tracking-uri"
        raise UsageError(f"{what} is {_NAMES[other]} (it holds "
                         f"{', '.join(sorted(_TABLES[other]))}), not {_NAMES[kind]}; were "
                         f"the two swapped? It belongs to {option}")


def _foreign(tables: set[str], kind: str, what: str, path: Path, *, must_exist: bool) -> None:
    """Refuse a SQLite file that is not the tool's: one holding other tables only (MLflow
    or Optuna would add its schema to someone's database), or, for a command that only
    reads the MLflow store (`must_exist`), one with no store in it (an empty file, which
    it would have turned into an empty store)."""
    if tables & _TABLES[kind]:
        return
    other = tables - {"alembic_version", "sqlite_sequence"}
    if other:
        shown = ", ".join(sorted(other)[:5]) + (", ..." if len(other) > 5 else "")
        raise UsageError(f"{what}: {path} is a SQLite database of something else (it holds "
                         f"{shown}), not {_NAMES[kind]}; name another file")
    if must_exist and kind == "mlflow":
        raise UsageError(f"{what}: {path} holds no MLflow store (no experiments or runs "
                         f"tables; {'an empty file' if not tables else 'no tables'}): nothing "
                         f"has been logged there (run the suite first, or point "
                         f"--tracking-uri at the store you used)")


def sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite:///` URL as SQLAlchemy opens it (query dropped, %XX decoded:
    MLflow writes its default `sqlite:////a%20b/mlflow.db` for a directory `a b`); None for
    other URLs."""
    from urllib.parse import unquote

    if not url.startswith("sqlite:///"):
        return None
    return Path(unquote(url.removeprefix("sqlite:///").split("?")[0]))


def sqlite_without(url: str, table: str) -> bool:
    """A SQLite database URL whose file does not exist or has no `table` yet (nothing has
    written it): read without opening it as a store, which would create its schema."""
    path = sqlite_file(url)
    if path is None:
        return False
    if not path.exists():
        return True
    tables = sqlite_tables(path) if path.stat().st_size else set()
    return tables is not None and table not in tables


def sqlite_tables(path: Path) -> set[str] | None:
    """The tables of the SQLite database at `path`, read without writing (None: another
    process holds it locked). Raises sqlite3.DatabaseError for a file that is not one."""
    try:
        # (a URI: its path %-encoded, or a `#`, `?` or `%20` in a directory's name cut it
        # short or read it as another file, and a missing one was created, read-write)
        with sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True,
                             timeout=CONNECT_TIMEOUT) as db:
            return {name for (name,) in db.execute(
                "select name from sqlite_master where type = 'table'")}
    except sqlite3.OperationalError as err:
        # another process writing to it (locked, busy), or a hot journal a killed writer
        # left, which only a read-write open rolls back ("readonly"): a store, not broken
        if any(word in str(err) for word in ("locked", "busy", "readonly")):
            return None
        raise


def _check_database(url: str, what: str, forms: str, *, must_exist: bool, kind: str,
                    connect: bool = True, writes: bool = True) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UsageError(f"{what} is not a valid database URL; use {forms}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        query = url.partition("?")[2]
        if "/" in query or any("=" not in part for part in query.split("&") if part):
            raise UsageError(f"{what}: '?{query}' is read as a query (SQLite options), so "
                             f"the database would be the file {parsed.database!r}; a '?' "
                             f"in a path is written %3F: "
                             f"{url.replace('?', '%3F')}")
        options = sorted(set(parsed.query) - {"timeout"})
        if options:  # SQLAlchemy ignores mode=ro and the like, with a warning, and writes
            raise UsageError(f"{what}: SQLite query options other than timeout are not "
                             f"taken (given: {', '.join(options)}); the store is read and "
                             f"written as a plain file: drop '?{url.partition('?')[2]}'")
        if "timeout" in parsed.query:  # seconds a locked file is waited for
            given = parsed.query["timeout"]
            value = given if isinstance(given, str) else given[-1]
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not (math.isfinite(seconds) and seconds > 0) or not isinstance(given, str):
                raise UsageError(f"{what}: timeout={value!r}: give one timeout, a finite "
                                 f"number of seconds above 0 (e.g. ?timeout=60), or none "
                                 f"(60 s)")
        _check_sqlite(parsed.database, url, what, must_exist=must_exist, kind=kind,
                      writes=writes)
        return
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        known = ["sqlite", "postgresql", "mysql", "mssql", "oracle"]
        raise UsageError(f"{what}: unknown database {parsed.drivername!r}; "
                         f"{did_you_mean(parsed.get_backend_name(), known)}use {forms}"
                         ) from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        raise UsageError(f"{what}: the Python driver {dialect.driver!r} that "
                         f"{parsed.drivername}:// needs is not installed ({err}); install it "
                         f"or name an installed one, e.g. postgresql+psycopg2:// or "
                         f"postgresql+psycopg://") from None
    if backend not in SERVER_SCHEMES or not connect:
        return
    _check_connect(url, what, kind)


def _check_connect(url: str, what: str, kind: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT},
                                      poolclass=sqlalchemy.pool.NullPool)
    tables: set[str] = set()

    def connect() -> None:
        with engine.connect() as connection:
            tables.update(sqlalchemy.inspect(connection).get_table_names())

    try:
        _reach(connect, what)
    except Exception as err:  # OperationalError, InterfaceError, ...: the driver's words
        orig = getattr(err, "orig", err)
        reason = " ".join(str(orig).split())[:300]
        raise UsageError(f"{what}: cannot connect to the database ({reason}); start the "
                         f"server, create the database, or fix the URL") from None
    finally:
        engine.dispose()
    _whose(tables, kind, what)


_DEFAULT_FILE = {"mlflow": "mlflow.db", "optuna": "optuna.db"}  # each store's usual name


def path_trouble(path: Path, *, file_through_link: bool = False) -> str | None:
    """Why `path` cannot name a file or folder to be made or used, before anything else
    looks at it (each of these was a traceback, or a failure after training): a name too
    long for the file system; a symbolic link in a loop; a symbolic link (the path or a
    folder above it) to a place that does not exist, where a folder would be made (mkdir
    refuses a dangling link) or a file created. `file_through_link`: the path itself may be
    a dangling link to a file not made yet, in an existing folder (SQLite creates it there).
    None when there is none."""
    try:
        os.lstat(path)
    except OSError as err:  # a name too long, a loop above it (the rest: the callers say)
        if err.errno not in (errno.ENAMETOOLONG, errno.ELOOP):
            return None if err.errno != errno.ENOENT else _dangling(path, file_through_link)
        longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
        detail = f" (a name of {longest} bytes; most file systems allow 255)" if \
            err.errno == errno.ENAMETOOLONG and longest > 255 else ""
        return f"{path}: {(err.strerror or type(err).__name__).lower()}{detail}"
    return _dangling(path, file_through_link)


def _dangling(path: Path, file_through_link: bool) -> str | None:
    """A symbolic link, `path` or a folder above it, in a loop or to nothing (`path_trouble`)."""
    absolute = Path(os.path.abspath(path))
    for candidate in (absolute, *absolute.parents):
        if not os.path.lexists(candidate):
            continue  # (not made yet: what is above it decides)
        if not candidate.is_symlink():
            return None
        try:
            os.stat(candidate)
            return None  # a link to something that exists
        except OSError as err:
            target = os.readlink(candidate)
            if err.errno == errno.ELOOP:
                return f"{candidate} is a symbolic link in a loop (to {target})"
            if file_through_link and candidate == absolute and os.path.isdir(
                    os.path.dirname(os.path.realpath(candidate))):  # (through every link)
                return None
            return (f"{candidate} is a symbolic link to {target}, which does not exist; "
                    f"create its target, or name another path")
    return None


def _check_sqlite(database: str | None, url: str, what: str, *, must_exist: bool,
                  kind: str, writes: bool = True) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        raise UsageError(f"{what} names no file (an in-memory database keeps nothing); use "
                         f"sqlite:///PATH.db")
    if "\x00" in database:  # `%00`: os.open raised "embedded null byte", a traceback
        raise UsageError(f"{what}: its path holds a NUL character (%00), which no file name "
                         f"can; name a file, e.g. sqlite:///{_DEFAULT_FILE[kind]}")
    path = Path(database)
    if trouble := path_trouble(path, file_through_link=True):
        raise UsageError(f"{what}: {trouble}")
    if path.is_dir():
        raise UsageError(f"{what}: {path} is a directory; name a file, e.g. "
                         f"sqlite:///{path / _DEFAULT_FILE[kind]}")
    if path.exists() and not path.is_file():
        raise UsageError(f"{what}: {path} is not a regular file (a device, a pipe or a "
                         f"socket); name a file, e.g. sqlite:///{_DEFAULT_FILE[kind]}")
    if path.exists():
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:
            raise UsageError(f"{what}: {path} exists and is not a SQLite database; name "
                             f"another file")
        if not os.access(path, os.R_OK | (os.W_OK if writes else 0)):
            raise UsageError(f"{what}: {path} is not {'writable' if writes else 'readable'} "
                             f"by this user")
        tables: set[str] | None = set()  # (an empty file: none)
        if header:
            try:
                tables = sqlite_tables(path)
            except sqlite3.DatabaseError as err:
                raise UsageError(f"{what}: {path} is not a readable SQLite database ({err})"
                                 ) from None
        if tables is not None:  # (None: another process is writing to it: busy, not broken)
            _whose(tables, kind, what)
            _foreign(tables, kind, what, path, must_exist=must_exist)
        return
    if must_exist:
        raise UsageError(f"{what}: {path} does not exist; nothing has been logged there yet "
                         f"(run the suite first, or point --tracking-uri at the store you "
                         f"used)")
    if not writes:  # a reader of a store not made yet: nothing to create
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{what}: the directory {parent} does not exist; create it first or "
                         f"choose another path")
    if not _can_make_in(parent):  # (tried: os.access says yes to root on /proc)
        raise UsageError(f"{what}: cannot create {path}: this user cannot make files in the "
                         f"directory {parent}")


def check_report_dir(path: str | Path, option: str = "--report-dir",
                     holds: str = "<suite>.html, the CSV tables and index.html") -> Path:
    """Where reports (or `option`'s files) go: an existing writable directory, or a path one
    can be created at."""
    given = Path(path)
    what = f"{option} {str(path)!r}"
    if not str(path).strip():
        raise UsageError(f"{what} is empty; name a directory (it holds {holds})")
    if trouble := path_trouble(given):
        raise UsageError(f"{what}: {trouble}")
    if given.exists():
        if not given.is_dir():
            raise UsageError(f"{what} is a file, not a directory; name a directory (it "
                             f"holds {holds})")
        if not _can_make_in(given):
            raise UsageError(f"{what} is not writable by this user")
        return given
    ancestor = given.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{what}: {ancestor} is a file, so the directory cannot be created")
    if not _can_make_in(ancestor):
        raise UsageError(f"{what}: cannot create it: {ancestor} is not writable by this user")
    return given


def _can_make_in(directory: Path) -> bool:
    """Whether a folder can be made in `directory`, tried (and removed): `os.access`, used
    before, says yes to root on /proc and /sys, where the report then failed with a
    traceback, after training."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nnbench-probe-", dir=directory))
    except OSError:
        return False
    return True


# what a suite's report writes in --report-dir (nnbench.report.render_report; a test checks
# that it writes these and no others), and a benchmark's (render_benchmark)
REPORT_FILES = ("{name}.html", "{name}.trials.csv", "{name}.epochs.csv",
                "{name}.comparisons.csv", "{name}.summary.json", "index.html")
BENCHMARK_REPORT_FILES = ("{name}.html", "{name}.times.csv", "{name}.summary.json",
                          "index.html")


def check_report_files(directory: str | Path, names: list[str],
                       files: tuple[str, ...] = REPORT_FILES) -> list[str]:
    """The problems of the files the reports of `names` would be written to: one that is a
    directory failed the report after every trial had trained, with a traceback and half
    of the files written."""
    problems: list[str] = []
    if path_trouble(Path(directory)):  # (check_report_dir says what)
        return problems
    kind = "benchmark" if files is BENCHMARK_REPORT_FILES else "suite"
    for name in names:
        for pattern in files:  # (a read-only file is fine: a report replaces it whole)
            path = Path(directory) / pattern.format(name=name)
            page = _page_kind(path) if path.suffix == ".html" and path.is_file() else None
            if path.is_dir():
                problems.append(f"--report-dir {str(directory)!r}: {path} is a directory, "
                                f"where the report writes a file; move it away, or give "
                                f"another --report-dir")
            elif page == "":
                problems.append(f"--report-dir {str(directory)!r}: {path} is a page nnbench "
                                f"did not write (a site's own index.html?), and the report "
                                f"would replace it; give another --report-dir, or move it")
            elif page in ("suite", "benchmark") and page != kind:  # a suite and a benchmark
                # of one name: each report replaced the other's page, unsaid
                problems.append(f"--report-dir {str(directory)!r}: {path} is the report of "
                                f"a {page} named {name!r}, and this {kind}'s report would "
                                f"replace it; rename one of them, or give another "
                                f"--report-dir")
    return list(dict.fromkeys(problems))


def _page_kind(page: Path) -> str | None:
    """What an HTML page is, by its title: a suite's report ("suite"), a benchmark's
    ("benchmark"), the index ("index"), or not nnbench's (""); None when it cannot be read
    (left to fail where it is written)."""
    try:
        with page.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    for marker, kind in ((b"<title>nnbench benchmark:", "benchmark"),
                         (b"<title>nnbench reports", "index"), (b"<title>nnbench:", "suite")):
        if marker in head:
            return kind
    return "" if b"<title>nnbench" not in head else None


RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def check_run_id(run_id: str) -> str:
    """An MLflow run id, lower-cased as MLflow writes them (a copy in upper case too)."""
    if not RUN_ID.fullmatch(run_id.lower()):
        trial = re.fullmatch(r"[0-9a-fA-F]{16}", run_id) is not None
        raise UsageError(f"RUN_ID {run_id!r} is not an MLflow run id (32 hexadecimal digits, "
                         f"e.g. from the report's trial table or the MLflow UI)"
                         + ("; 16 digits are a trial id (nnbench.trial_id): its run's id "
                            "is the 32-digit one beside it in the report's trial table"
                            if trial else ""))
    return run_id.lower()


# `--precision`'s choices (nnbench.seeding.PRECISIONS, without importing torch)
PRECISIONS = ("fp32", "tf32")


def check_device(name: str, *, precision: str = "fp32") -> torch.device:
    """`auto`, `cpu`, `cuda` or `cuda:N`, present on this machine; a GPU under a
    CUBLAS_WORKSPACE_CONFIG that deterministic cuBLAS accepts; for `precision` tf32, a GPU
    that has TensorFloat-32."""
    from nnbench.seeding import tf32_problem
    from nnbench.train.build import resolve_device

    try:
        device = resolve_device(name)
    except ValueError as err:
        raise UsageError(f"--device {name!r}: {err}") from None
    problem = tf32_problem(device) if precision == "tf32" else None
    if problem is not None:
        raise UsageError(f"--precision tf32 (--device {name!r}): {problem}")
    return device


def _range(low: float, high: float | None, *, above: bool = False) -> str:
    def number(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else repr(value)

    first = f"above {number(low)}" if above else f"at least {number(low)}"
    return first if high is None else f"{first} and at most {number(high)}"


# the memory a local worker process takes at the least (torch, MLflow and Optuna imported,
# the smallest suite's data): 99 workers of a 2-trial suite filled a 24 GB machine, which
# then stalled every process on it
WORKER_GB = 0.25


def local_workers_problem(workers: int) -> str | None:
    """Why this machine cannot hold `workers` local worker processes at once (None: it
    can): their memory, at WORKER_GB each at the least, against what is available now."""
    if workers < 2:
        return None
    import psutil

    available = psutil.virtual_memory().available / 2**30
    most = int(available // WORKER_GB)
    if workers <= most:
        return None
    return (f"--workers {workers}: each local worker process takes at least about "
            f"{WORKER_GB} GB (torch, MLflow and Optuna loaded, before its data), so {workers} "
            f"need about {workers * WORKER_GB:.1f} GB, and this machine has {available:.1f} GB "
            f"available: at most {max(1, most)} here (more workers than cores train no "
            f"faster; this one has {os.cpu_count() or 1})")


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]. argparse names the option in front of
    the message ("argument --slurm-gpus: ...") and exits 2 before the command runs."""

    def parse(text: str) -> int:
        allowed = f"an integer {_range(low, high)}"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse's fallback message: "invalid integer value"
    return parse


def real_number(low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number above `low` (and at most `high`); `nan`, `inf`
    and values that overflow to it are refused."""

    def parse(text: str) -> float:
        allowed = f"a finite number {_range(low, high, above=True)}"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
        if not math.isfinite(value) or value <= low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse
