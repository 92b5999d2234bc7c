"""Shared fixtures: a tiny suite that trains in about a second, private MLflow stores (their
tables made once per session and copied), a PostgreSQL server shared by the session."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

# As the nnbench command does before torch loads OpenMP (nnbench/__init__.py): waiting
# threads sleep instead of spinning. A test module imports torch before nnbench, so the
# benchmarks (busy rows) and the tests would otherwise run under another wait policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# MLflow must not phone home from tests (the machines have no internet).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

REPO = Path(__file__).resolve().parent.parent


class Quiet:
    """An engine listener that trains every trial it is handed and never stops one."""

    def trial_started(self, spec: Any) -> bool:
        return True

    def epoch_finished(self, spec: Any, metrics: dict[str, float]) -> Any:
        from nnbench.train.results import CONTINUE

        return CONTINUE

# A task of a benchmark (tests/test_bench.py, tests/config/test_benchmark.py): an mlp on one
# dataset and loss, with the optimizer as the axis every task of the benchmark varies.
BENCHMARK_TASK = """\
name: {name}
task: {{dataset: {dataset}, model: {{name: mlp, hidden: [8]}}, loss: {loss}}}
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: {{name: sgd, lr: 0.05}}
  epochs: {epochs}
  batch_size: 32
grid:
  optimizer: {levels}
seeds: {seeds}
"""

TINY_SUITE = """\
name: {name}
description: tiny suite for tests
task:
  dataset: {{name: mnist1d, num_samples: 600, val_fraction: 0.2}}
  model: {{name: mlp, hidden: [16]}}
  loss: cross_entropy
  metric: val_accuracy
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}
  epochs: {epochs}
  batch_size: 32
grid:
  activation: [tanh, relu]
seeds: {seeds}
"""


# The modules whose tests take longest (whole minutes of worker processes, browsers and
# PostgreSQL), longest first, as measured in one `nox -s tests -- --durations=0` (summed per
# module): they are handed out first, so that the last minutes of a run (one pytest-xdist
# worker per core, a module to a worker) are not one of them running alone while the other
# core idles. The tests session passes --no-loadscope-reorder: pytest-xdist otherwise hands
# modules out by their number of tests, which put the one-test browser module last.
LONGEST_FIRST = ("test_workers.py", "test_tuning.py", "test_runner.py", "test_report.py",
                 "test_stacked.py", "test_plugins.py", "test_corpus.py", "test_cli.py",
                 "test_chaos.py", "test_suites.py", "test_tracking.py", "test_readme.py",
                 "test_fresh.py", "test_mlflow_models.py", "test_mlflow_ui.py",
                 "test_workers_speed.py", "test_load_speed.py", "test_cli_checks.py",
                 "test_transient.py", "test_bench.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-file order


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[..., Path]:
    """Write a suite file: the tiny suite by default, or the given YAML text."""

    def write(text: str | None = None, *, name: str = "tiny", epochs: int = 3, seeds: int = 2,
              filename: str | None = None) -> Path:
        body = textwrap.dedent(text) if text is not None else TINY_SUITE.format(
            name=name, epochs=epochs, seeds=seeds)
        path = tmp_path / (filename or f"{name}.yaml")
        path.write_text(body, encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], str]:
    """Make an empty MLflow SQLite store at a path; returns its URI. MLflow creates a
    store's tables by running its migrations, about a second each time: this copies a
    store made once per session, the same file MLflow would have made there."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow-template")
    template = root / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow resolves its default artifact root from the working dir
        MlflowClient(f"sqlite:///{template}").search_experiments()

    def make(path: Path) -> str:
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"

    return make


@pytest.fixture
def tracking_uri(mlflow_store: Callable[[Path], str], tmp_path: Path) -> str:
    """A private, empty MLflow store, tmp_path/mlflow.db, its tables made (tests of what
    happens where there is no store yet name a path of their own)."""
    return mlflow_store(tmp_path / "mlflow.db")


@pytest.fixture(scope="session", autouse=True)
def _session_dataset_cache(tmp_path_factory: pytest.TempPathFactory,
                           request: pytest.FixtureRequest) -> Iterator[None]:
    """One dataset cache (nnbench.data.cache) for the session, its pytest-xdist workers and
    the processes they start, never the user's: MNIST-1D is generated once per size, not
    once per process (the cache's files are written atomically, so workers may share it)."""
    before = os.environ.get("NNBENCH_CACHE")
    if hasattr(request.config, "workerinput"):  # an xdist worker: basetemp is its own
        cache = tmp_path_factory.getbasetemp().parent / "nnbench-cache"
    else:
        cache = tmp_path_factory.mktemp("nnbench-cache")
    os.environ["NNBENCH_CACHE"] = str(cache)
    yield
    if before is None:
        del os.environ["NNBENCH_CACHE"]
    else:
        os.environ["NNBENCH_CACHE"] = before


@pytest.fixture(scope="session", autouse=True)
def _forkserver() -> None:
    """When a collected test module starts `nnbench` through tests/processes.py, start its
    forkserver before the first test: it is the session's, not a stray of that test."""
    processes = sys.modules.get("tests.processes")
    if processes is not None:
        processes.start_forkserver()


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write mlflow.db or reports/ into the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # as root, offline: no background connections to refuse


def launch_chromium(pw: Any) -> Any:
    """Headless Debian Chromium through playwright (`pw`: a sync_playwright() context)."""
    return pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def open_page(browser: Any, path: Path) -> tuple[Any, list[str], list[int]]:
    """`path` in a new 1300×900 page of `browser`: the page, the console errors and page
    errors it raises (a list that keeps filling while the page lives), and the natural
    width of each of its images once loaded (0 or False: not decoded)."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri(), wait_until="load")
    widths = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth)")
    return page, errors, widths


def chromium_path() -> str:
    """Debian's Chromium for the browser tests: missing fails under CI, skips elsewhere."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


class Process(Protocol):
    """A process a test started: a subprocess.Popen or a tests.processes.Command."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def send_signal(self, signum: int) -> None: ...


def stop_process(proc: Process, timeout: float = 30) -> None:
    """SIGSTOP `proc` and return once every thread of it is stopped (a signal is delivered
    asynchronously: a process running on another core goes on for a moment). What a test
    then reads of its state cannot change until it is sent SIGCONT (or killed)."""
    proc.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in Path(f"/proc/{proc.pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):
                states.append(task.read_text().rpartition(")")[2].split()[0])
        if states and all(state in "Tt" for state in states):
            return
        assert proc.poll() is None, f"process {proc.pid} ended (exit {proc.returncode})"
        time.sleep(0.01)
    raise AssertionError(f"process {proc.pid} did not stop within {timeout} s")


@contextlib.contextmanager
def within(seconds: float, what: str) -> Iterator[None]:
    """Fail (TimeoutError) when the block runs longer than `seconds`: what a subprocess's
    timeout gives, for work done in the test's own process (a worker loop that never ends
    would otherwise hang the test run). Main thread only (SIGALRM)."""

    def expire(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"{what} took longer than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _descendants(pid: int) -> list[int]:
    """Every living process below `pid` (Linux: read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _fork_count() -> int | None:
    text = Path("/proc/stat").read_text(encoding="ascii")  # (not a test's patched `open`)
    try:
        return int(text.partition("\nprocesses ")[2].split(None, 1)[0])
    except (IndexError, ValueError):
        return None


def _forks() -> int | None:
    """Processes and threads this machine has started since it booted (/proc/stat), or
    None where that count is not kept (gVisor's reads 0 always): /proc is then read at
    every test."""
    count = _fork_count()
    if _LAST_SCAN["counts"] is None:  # once: does the count follow a process started?
        subprocess.run(["true"], check=False)
        after = _fork_count()
        _LAST_SCAN["counts"] = count is not None and after is not None and after > count > 0
    return count if _LAST_SCAN["counts"] else None


_LAST_SCAN: dict[str, Any] = {"forks": None, "found": set(), "counts": None}  # this process's


@pytest.fixture(autouse=True)
def _no_stray_processes() -> Iterator[None]:
    """A test that fails or times out while its workers run must not leave them training
    (and loading the machine) under the tests that follow: the processes it started are
    killed here (not those of longer-lived fixtures, started before it). /proc is read
    only where the machine started a process or thread since it was last read (two reads
    of every process's stat per test, 4.2 ms each, were about 16 CPU-s of a run)."""
    if not Path("/proc/self/stat").exists():
        yield
        return
    forks = _forks()  # read before the scan: a process started during it counts as new
    if forks is None or forks != _LAST_SCAN["forks"]:
        _LAST_SCAN.update(forks=forks, found=set(_descendants(os.getpid())))
    before = _LAST_SCAN["found"]
    yield
    forks = _forks()
    if forks is not None and forks == _LAST_SCAN["forks"]:
        return  # nothing started anywhere: no process of the test's
    after = _descendants(os.getpid())
    for pid in after:
        if pid not in before:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _LAST_SCAN.update(forks=forks, found={pid for pid in after if pid in before})


# -- tiny torchvision datasets in their real on-disk formats --------------------------------

def _write_idx(path: Path, array: Any) -> None:
    """MNIST's IDX format: magic (0, 0, 0x08 = uint8, ndim), big-endian sizes, raw bytes."""
    import numpy as np

    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist_like(root: Path, folder: str, n_train: int, n_test: int) -> None:
    import numpy as np

    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def _write_cifar10(root: Path, per_batch: int) -> dict[str, str]:
    """CIFAR-10's python pickles; returns the md5 of each file (torchvision checks them)."""
    import hashlib
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    md5 = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": [int(i) % 10 for i in range(per_batch)], "batch_label": name}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    for name in [*names, "batches.meta"]:
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    return md5


@pytest.fixture(scope="session")
def _vision_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("vision-data")
    _write_mnist_like(root, "MNIST", 60, 20)
    _write_mnist_like(root, "FashionMNIST", 60, 20)
    return root, _write_cifar10(root, 12)


@pytest.fixture
def vision_data(_vision_root: tuple[Path, dict[str, str]],
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """NNBENCH_DATA pointing at tiny MNIST / Fashion-MNIST / CIFAR-10 files.

    torchvision verifies CIFAR-10's files against the real archive's md5 sums; the
    generated files get their own sums, everything else is torchvision's own code.
    """
    from torchvision import datasets

    from nnbench.data import vision

    root, md5 = _vision_root
    monkeypatch.setenv("NNBENCH_DATA", str(root))
    monkeypatch.setattr(datasets.CIFAR10, "train_list",
                        [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {"filename": "batches.meta",
                                                  "key": "label_names",
                                                  "md5": md5["batches.meta"]})
    vision._load.cache_clear()
    yield root
    vision._load.cache_clear()


# -- a PostgreSQL server for tests of workers sharing a store -----------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_port() -> int:
    """A free port below the kernel's ephemeral range: no client's outgoing connection is
    given it while a test has the server down (an outage), so it starts again there."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _free_port()
    if low - 1024 < 1000:  # hardly any port below the range ("1024 65535"): take any
        return _free_port()
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(max(1024, low - 12_000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return _free_port()


class PostgresServer:
    """A throw-away PostgreSQL server on 127.0.0.1 (run as `postgres` when we are root) that a
    test may stop and start again on the same port (`outage`)."""

    def __init__(self, initdb: str, pg_ctl: str) -> None:
        self.pg_ctl = pg_ctl
        # pytest's tmp tree is private to root; the server's directory must be reachable
        self.root = Path(tempfile.mkdtemp(prefix="nnbench-pg-"))
        self.data = self.root / "data"
        self.data.mkdir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.data, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.as_user, initdb, "-D", str(self.data), "-A", "trust", "-U",
                        "postgres"], check=True, capture_output=True)
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        """postgresql+psycopg2://postgres@127.0.0.1:PORT (no database)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it: on a new port the first time (again on another when that one was taken
        before the server bound it), on the same port after `stop`."""
        for attempt in itertools.count(1):
            self.starts += 1
            port, log = self.port or _server_port(), self.data / f"log-{self.starts}"
            started = subprocess.run(
                [*self.as_user, self.pg_ctl, "-D", str(self.data), "-l", str(log), "-w", "-o",
                 f"-p {port} -k {self.data} -c listen_addresses=127.0.0.1 "
                 # what a shared store should set: a hung worker's open transaction
                 # (its locks) ends after 5 s instead of blocking every other worker
                 f"-c idle_in_transaction_session_timeout=5s "
                 # a throw-away server: no waiting for the disk at each commit (what the
                 # tests kill are clients and the server, never the machine)
                 f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off", "start"],
                capture_output=True, text=True)
            if started.returncode == 0:
                self.port = port
                return
            text = ""
            with contextlib.suppress(OSError):
                text = log.read_text(errors="replace")
            if "Address already in use" not in text or self.port or attempt == 3:
                pytest.fail(f"PostgreSQL did not start on port {port}:\n{started.stderr}\n"
                            f"{text[-3000:]}")

    @contextlib.contextmanager
    def outage(self, seconds: float) -> Iterator[None]:
        """Stop the server now and start it again `seconds` later (from a thread) while the
        block runs; on leaving, wait for the start and raise its error, if any."""
        self.stop()
        failed: list[BaseException] = []

        def back() -> None:
            try:
                self.start()
            except BaseException as err:  # pytest.fail raises outside Exception
                failed.append(err)

        timer = threading.Timer(seconds, back)
        timer.start()
        try:
            yield
        finally:
            timer.join()
            if failed:
                raise AssertionError(f"PostgreSQL did not start again: {failed[0]}")

    def stop(self) -> None:
        """Stop it as an administrator's restart does (`-m fast`: sessions are ended, their
        transactions rolled back); until `start`, connections are refused."""
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w",
                        "stop"], capture_output=True, check=True)

    def remove(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class Postgres:
    """A test's own two empty databases on the session's PostgreSQL server."""

    server: str  # postgresql+psycopg2://postgres@127.0.0.1:PORT (no database)
    optuna: str  # <server>/<database> for an Optuna storage
    mlflow: str  # <server>/<database> for an MLflow store
    control: PostgresServer  # the server itself: stop and start it for an outage


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (starting one takes about a second)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL (initdb, pg_ctl) is not installed")
        pytest.skip("PostgreSQL is not installed")
    server = PostgresServer(initdb, pg_ctl)
    try:
        server.start()
        yield server
    finally:
        server.remove()


_databases = itertools.count()


@pytest.fixture
def postgres(_postgres_server: PostgresServer) -> Iterator[Postgres]:
    """Two empty databases of this test's own, for an Optuna storage and an MLflow store,
    on the session's server; dropped afterwards, with whatever connections are left."""
    import sqlalchemy

    n = next(_databases)
    names = (f"optuna_{n}", f"mlflow_{n}")
    server = _postgres_server.url
    # no pool: a connection kept across a test's outage of the server would be dead
    engine = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT",
                                      poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            for name in names:
                connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        yield Postgres(server, f"{server}/{names[0]}", f"{server}/{names[1]}", _postgres_server)
    finally:
        with engine.connect() as connection:
            for name in names:
                connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} "
                                                   f"WITH (FORCE)"))
        engine.dispose()
