"""Everything MLflow: experiments, runs, params, metrics, tags, artifacts.

Layout in MLflow (its default store: `sqlite:///mlflow.db` in the working directory):

- one experiment per suite, named after the suite, of kind "custom model development"
  (tag `mlflow.experimentKind`), so MLflow's UI opens it on its runs table rather than
  on the GenAI overview (`runs_url` is the direct address);
- one invocation run per `nnbench run` / `tune` (`nnbench.role = suite`), tagged with the
  host and pid that own it and holding the suite file as `suite.yaml`;
- one top-level run per trial (`nnbench.role = trial`; `tune` for an Optuna trial), tagged
  `nnbench.invocation = <invocation run id>` (not an MLflow child run: the UI would fold
  the trials under their invocation). Params are the spec's dotted keys; per-epoch
  metrics (logged in batches), final test metrics; tags for id, status, seed,
  fingerprint, provenance, the worker that trained it (`nnbench.worker`, host:pid), the
  configuration (`nnbench.config`) and each varied axis (`nnbench.axis.<axis>`), to
  group and filter by in the UI; the dataset as an MLflow
  dataset input (context training: name, digest, source, schema, split sizes);
  artifacts `spec.yaml`, `history.csv` and, when the suite asks for it (`checkpoint:
  true`), `checkpoint.pt` (weights, optimizer state, spec, metrics) and the trained model
  as an MLflow model named `model` (PyTorch flavor, `torch.export`'s pt2 format, with an
  input example and signature; `mlflow.pytorch.load_model("runs:/<run id>/model")`),
  which the final test metrics are linked to;
- one summary run per configuration (`nnbench.role = summary`, tagged like its trials:
  suite, `nnbench.config_id`, `nnbench.config`, `nnbench.axis.<axis>`, with the params its
  trials share, never their seeds): the seed aggregate over its finished trials,
  `<metric>_mean`, `_low`, `_high` (95% Student-t interval), `_sd` and `_n` of each final
  metric, and of each per-epoch metric its per-epoch mean (`<metric>_mean`, step = epoch)
  and the same statistics of its last epoch's value (`<metric>_final_mean`, ...), so the UI
  compares configurations with their spread. `refresh_summaries` rewrites it when its done
  trials change or the suite's trials of the configuration no longer include them; it is
  never read as a trial (every reader asks for its role).

MLflow shows what the trial queue (nnbench.queue) says; it is never read to decide what
to train. A trial run is written while its worker holds the trial's claim, everything
but its status first; the status (tag `nnbench.status`, and MLflow's run status) follows
the queue's release of the claim. A run of an attempt that did not end with a result (its
worker was killed, stopped past the grace period, or interrupted) says killed or failed,
with the reason; each trial has at most one finished (or diverged) run. A run tagged
`nnbench.queue_entry` that is still RUNNING after its queue entry ended (its worker died in
between) is given the entry's status by the next worker that looks. Several workers may
open a fresh store at the same instant: schema and experiment creation, and writes that
meet another worker's lock, are retried; so are writes that meet a restarting server. A run
is made with a one-time tag (`nnbench.create_token`) that a retry looks for first, so a
retry whose first try did commit (its connection lost on the way back) makes no second run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psutil
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from nnbench import registry
from nnbench.cli_checks import default_tracking_uri, sqlite_file
from nnbench.config import Suite, TrialSpec
from nnbench.config.spec import value_label
from nnbench.messages import UsageError, first_line, mlflow_ui, upgrade_command
from nnbench.train.results import TrialResult
from nnbench.transient import (
    QuietTransient,
    bookkeeping,
    is_transient,
    retrying,
    retrying_once,
    worker_label,
)

__all__ = ["CHECKPOINT", "DONE_STATUSES", "EXPERIMENT_KIND", "MODEL", "SUMMARY", "UI_ADDRESS",
           "RunNotFound", "SummaryRefresh", "Tracker", "artifacts_elsewhere",
           "artifacts_problem", "dataset_input", "epoch_values", "is_done", "runs_url",
           "store_uri",
           "system_metrics_problem", "trial_checkpoint"]

_log = logging.getLogger(__name__)
# Reading a trial's history.csv back must not draw a progress bar per run.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow's SQL store logs each OperationalError with its traceback before raising it: one a
# retry gets past (a restarting server) is said once by `retrying` instead
logging.getLogger("mlflow.store.db.utils").addFilter(QuietTransient())
# and its INFO lines on a new store ("Creating initial MLflow database tables...", "Updating
# database tables") came, timestamped, between nnbench's own lines: nnbench names the store
logging.getLogger("mlflow.store.db.utils").addFilter(
    lambda record: record.levelno > logging.INFO)

CHECKPOINT = "checkpoint.pt"  # artifact name of a trial's checkpoint (suite `checkpoint: true`)
MODEL = "model"  # name of a trial's MLflow model: runs:/<run id>/model

DONE_STATUSES = frozenset({"finished", "diverged"})
_MLFLOW_STATUS = {"finished": "FINISHED", "diverged": "FINISHED", "failed": "FAILED",
                  "killed": "KILLED", "pruned": "FINISHED"}
_FLUSH_SECONDS = 5.0  # per-epoch metrics are sent at most this often while a trial runs
_BATCH_LIMIT = 1000  # MLflow's cap on metrics per log_batch call
SUMMARY = "summary"  # nnbench.role of a configuration's seed aggregate
CURVE_POINTS = 1000  # epochs of a summary's mean curves, at most about (`_write_summary`)
_SUMMARY_TRIALS = "nnbench.summary.trials"  # its done trials' ids, sorted, comma-separated
_IDS_PER_TAG = 400  # trial ids (16 hex digits) per tag: 6,800 characters, MLflow takes 8,000
_ABANDONED_SUMMARY_MS = 3_600_000  # a summary run still RUNNING this long: its writer died
_CREATE_TOKEN = "nnbench.create_token"  # a run's (a logged model's) one-time tag
# tags of a trial run that are its own, never its configuration's
_PER_TRIAL_TAGS = ("mlflow.", "nnbench.seed", "nnbench.trial_id", "nnbench.invocation",
                   "nnbench.worker", "nnbench.status", "nnbench.reason", "nnbench.fingerprint",
                   "nnbench.diverged_epoch", "nnbench.best_epoch", "nnbench.stopped_epoch",
                   "nnbench.epochs_done", "nnbench.model_note", "nnbench.queue_entry",
                   "nnbench.optuna", "nnbench.study", "nnbench.nuisance",
                   _CREATE_TOKEN)

# MLflow's UI (3.x) shows an experiment of this kind as classic ML training: runs table first.
# The value is the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT (mlflow/server/js bundle).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
UI_ADDRESS = "http://127.0.0.1:5000"  # where a plain `mlflow ui` serves


def system_metrics_problem(gpu: bool) -> str | None:
    """Why MLflow's system-metrics monitor cannot run here (a missing package), or None."""
    import importlib.util

    if importlib.util.find_spec("psutil") is None:
        return "MLflow's system metrics need psutil (pip install psutil)"
    if gpu and importlib.util.find_spec("pynvml") is None:
        return "GPU utilisation needs nvidia-ml-py (pip install nvidia-ml-py)"
    return None


_KEPT_SAMPLES = 10_000  # system-metric values kept while the store cannot take them


_PID_NAMESPACE = "nnbench.pid_namespace"  # of an invocation's process (`_pid_namespace`)


def _pid_namespace() -> str:
    """This process's pid namespace and the machine's boot, which with the host name say
    whose pids a pid is (containers of one host name each have their own)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: a pid is the host's
        return "host"
    return f"{namespace} {boot}"


def artifacts_elsewhere(path: Path | None) -> bool:
    """Whether the experiment's artifact directory (`Tracker.artifact_path`) is a local
    path this machine does not have: a database store's experiment keeps the `mlruns/` of
    the first worker's working directory, on its machine (workers elsewhere write to their
    own disks, and the report reads curves from one of them)."""
    # <dir>/mlruns/<experiment id>: made with the first artifact, in a directory that
    # exists where the experiment was made
    return path is not None and not any(p.exists() for p in (path, *path.parents[:2]))


def artifacts_problem(path: Path | None) -> str | None:
    """Why this process cannot write into the artifact directory `path` of this machine (a
    file in the way, no permission, a read-only file system), or None. (A path of another
    machine's is `artifacts_elsewhere`'s to tell: ask that first.)"""
    for place in (path, *path.parents) if path is not None else ():
        if not place.exists():
            continue  # made with the first artifact, below the nearest that exists
        if not place.is_dir():
            return f"{place} is a file, not a directory"
        if os.statvfs(place).f_flag & os.ST_RDONLY:
            return f"{place} is on a read-only file system"
        if not os.access(place, os.W_OK | os.X_OK):
            return f"this user may not write in {place}"
        return None
    return None


def _alive(pid: int, since_ms: int | None) -> bool:
    """Whether process `pid` of this host lives and is the one that started a run at
    `since_ms` (ms since the epoch, by this host's clock): a pid a later process reused is
    not it, nor a zombie."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and (
            since_ms is None or process.create_time() <= since_ms / 1000 + 1)
    except psutil.NoSuchProcess:  # (a zombie's create_time raises ZombieProcess, one of them)
        return False
    except psutil.Error:  # it exists, but is not ours to inspect
        return True


@functools.cache
def _monitor_class() -> type:
    """MLflow's system-metrics monitor, with a loop that outlives a failure to log.

    MLflow's loop reads the run after every sample, to stop once it is no longer RUNNING,
    and returns for good when that read or a log fails: a store that restarted for a second
    ended a worker's system metrics for the rest of its run. Here the loop samples until
    `finish` (`Tracker.system_metrics` ends it before its run), and an interval whose log
    fails is kept (MLflow's batch logger keeps what it could not send) and sent with the
    next; a failing streak is said once, on the logger of this module."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class Monitor(SystemMetricsMonitor):
        def monitor(self) -> None:
            failing = False
            while not self._shutdown_event.is_set():
                for _ in range(self.samples_before_logging):
                    self.collect_metrics()  # type: ignore[no-untyped-call]
                    if self._shutdown_event.wait(self.sampling_interval):
                        return  # the last interval: `Tracker.system_metrics` logs it
                try:
                    self.publish_metrics(  # type: ignore[no-untyped-call]
                        self.aggregate_metrics())  # type: ignore[no-untyped-call]
                except Exception as err:
                    # the interval is in the batch logger's data (its flush failed): the
                    # next step is a new one, its samples start afresh, and what waits to
                    # be sent stays bounded (an hour of 10 s samples) if the store never
                    # comes back
                    self._logging_step += 1
                    for monitor in self.monitors:
                        monitor.clear_metrics()  # type: ignore[no-untyped-call]
                    del self.mlflow_logger.data[:-_KEPT_SAMPLES]
                    if not failing:
                        _log.warning("nnbench: %s cannot log its system metrics (%s); they "
                                     "are kept and sent with the next interval",
                                     worker_label(), first_line(err))
                    failing = True
                else:
                    failing = False

    return Monitor


def runs_url(experiment_id: str, address: str = UI_ADDRESS) -> str:
    """The experiment's runs table in MLflow's UI. The UI routes in the URL's fragment; its
    `workflowType` switch (GenAI by default since MLflow 3) decides what an experiment
    page shows, so the URL asks for the machine-learning view."""
    return f"{address.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _missing(name: str) -> str:
    raise RuntimeError(f"experiment {name!r} was neither created nor found")


def epoch_values(history: Any, epoch: int, metrics: Mapping[str, float]) -> dict[str, float]:
    """Epoch `epoch`'s values of a run's per-epoch `metrics`, from its history (a DataFrame
    with an `epoch` column); empty where the history has no such epoch. What a trial that
    restored its best weights reports instead of its last epoch's."""
    at = history[history["epoch"].astype(int) == epoch]
    if not len(at):
        return {}
    return {k: float(v) for k, v in at.iloc[0].items() if k in metrics and k != "epoch"}


def is_done(run: Run) -> bool:
    """Finished or diverged, and completely recorded (MLflow closed the run)."""
    return (run.data.tags.get("nnbench.status") in DONE_STATUSES
            and run.info.status == "FINISHED")


class _Retrying:
    """An MlflowClient whose calls are retried when they meet another worker's
    transaction (a locked SQLite file, a schema being created) or a restarting server."""

    _ONCE = frozenset({"create_experiment"})  # "already exists" is an answer, not a race
    # links made once: a retry that meets a duplicate key met its own first try, which
    # committed before the connection was lost (a key of MLflow's `inputs` table)
    _LINKS = frozenset({"log_outputs"})

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name in self._ONCE:
            return attr
        link = name in self._LINKS

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            tries = 0

            def once() -> Any:
                nonlocal tries
                tries += 1
                try:
                    return attr(*args, **kwargs)
                except Exception as err:
                    text = str(err).lower()
                    if link and tries > 1 and ("duplicate key" in text
                                               or "unique constraint" in text):
                        return None
                    raise

            return retrying(once, f"MLflow {name}")
        return call


def store_uri(tracking_uri: str | None) -> str:
    """The MLflow store a command uses: `tracking_uri`, else one set with
    `mlflow.set_tracking_uri` (a Python caller's), else nnbench's resolution of MLflow's
    default (MLflow's own %-encodes the path, and made the directory `a%20b/` beside a
    working directory `a b`)."""
    if tracking_uri:
        return tracking_uri
    from mlflow.tracking._tracking_service.utils import _tracking_uri

    return str(_tracking_uri) if _tracking_uri else default_tracking_uri()


@contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """While the block runs, this process alone makes or opens the SQLite MLflow store at
    `tracking_uri` (an advisory lock on the file itself, which SQLite's own locks ignore);
    other stores: nothing."""
    import fcntl

    path = sqlite_file(tracking_uri)
    if path is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:  # a read-only place: MLflow says what is wrong with it
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def no_stray_directory(tracking_uri: str) -> Iterator[None]:
    """Remove the empty directories MLflow makes from a SQLite URI's path without decoding
    it: `sqlite:///q%3Fx/m.db` opens `q?x/m.db` and also made `q%3Fx/` (and
    `new%20dir/sub/m.db` made `new%20dir/sub/`). Only directories that did not exist
    before, are empty after, and are not on the decoded path's way."""
    raw = tracking_uri.removeprefix("sqlite:///")
    decoded = sqlite_file(tracking_uri)
    made: list[Path] = []  # the raw parent and its missing ancestors, deepest first
    if raw != tracking_uri and "%" in raw and decoded is not None:
        kept = {decoded.parent, *decoded.parent.parents}
        folder = Path(raw).parent
        while folder not in kept and folder != folder.parent and not folder.exists():
            made.append(folder)
            folder = folder.parent
    try:
        yield
    finally:
        for folder in made:
            try:
                folder.rmdir()
            except FileNotFoundError:  # never made (MLflow made none), or removed
                continue
            except OSError:  # holding something: left as it is, and what is above it
                break


def open_client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient of `tracking_uri`, leaving no undecoded twin folder behind
    (`no_stray_directory`): MLflow makes its store's folder as the client is made."""
    with no_stray_directory(tracking_uri), another_schema_refused(tracking_uri):
        return MlflowClient(tracking_uri)


@contextmanager
def another_schema_refused(tracking_uri: str) -> Iterator[None]:
    """MLflow's refusal of a database store whose tables another MLflow made (a traceback
    ending in "Detected out-of-date database schema") as a usage error that says what to
    run."""
    import re

    try:
        yield
    except MlflowException as err:
        found = re.search(r"out-of-date database schema \(found version (\S+), but expected "
                          r"(\S+)\)", str(err))
        if found is None:
            raise
        from mlflow.version import VERSION

        shown, command = upgrade_command("mlflow", "db upgrade", tracking_uri)
        raise UsageError(
            f"the MLflow store {shown}: its tables are of another MLflow's schema (revision "
            f"{found[1]}; the installed MLflow {VERSION} uses {found[2]}); made by an older "
            f"MLflow, upgrade them with {command}; by a newer one, use nnbench with that "
            f"MLflow; or give another --tracking-uri") from None


class Tracker:
    """One suite's experiment in one MLflow store."""

    def __init__(self, suite: Suite, tracking_uri: str | None = None) -> None:
        # MLflow makes the store (its schema, on a fresh database) when the client is made
        # and first used: never interrupted half-way (an interrupt waits for the end; a
        # Ctrl-C in its migrations left `_alembic_tmp_experiments` and a store no client
        # could open again), and on a SQLite file one process at a time (two at once failed
        # in alembic: "duplicate column name"); a server database's races are retried
        tracking_uri = store_uri(tracking_uri)
        with bookkeeping("the MLflow store is open (a new one's tables must not be left "
                         "half made)"), _store_lock(tracking_uri), \
                no_stray_directory(tracking_uri), another_schema_refused(tracking_uri):
            client = retrying(lambda: MlflowClient(tracking_uri), "opening the MLflow store")
            self.client = cast(MlflowClient, _Retrying(client))
            self._raw = client  # without `_Retrying`: for writes `retrying_once` retries
            self.tracking_uri = self.client.tracking_uri
            self.client.search_experiments(max_results=1)
        self.suite = suite
        self._pending: dict[str, list[Metric]] = {}
        self._last_flush: dict[str, float] = {}
        self._done_runs: dict[str, Run] = {}  # trial_id -> its latest done run (`prepare`)
        self.read_at: float | None = None  # time.time() when `prepare` read the runs
        self._vetted = False  # its experiment, made elsewhere, holds nnbench's runs or none

    # -- experiment and runs ------------------------------------------------------------

    def experiment_id(self, create: bool = True) -> str | None:
        experiment = self.client.get_experiment_by_name(self.suite.name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                if not create:  # only to read (status, report): it stays deleted
                    return str(experiment.experiment_id)
                self.client.restore_experiment(experiment.experiment_id)  # to train into
            if "nnbench.suite" not in experiment.tags and not self._vetted:  # made
                self._refuse_foreign(experiment)  # elsewhere, or by an nnbench long ago
                self._vetted = True
                if create:
                    self.client.set_experiment_tag(experiment.experiment_id, "nnbench.suite",
                                                   self.suite.name)
            key, kind = EXPERIMENT_KIND
            if key not in experiment.tags:  # made by an nnbench before the kind was set
                self.client.set_experiment_tag(experiment.experiment_id, key, kind)
            return str(experiment.experiment_id)
        if not create:
            return None
        try:
            return str(self.client.create_experiment(
                self.suite.name, tags={"nnbench.suite": self.suite.name,
                                       "mlflow.note.content": self.suite.description,
                                       EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1]}))
        except Exception as err:  # another worker created it at the same instant
            if not is_transient(err) and "RESOURCE_ALREADY_EXISTS" not in str(err):
                raise
            return retrying(lambda: self.experiment_id(create=False) or _missing(self.suite.name),
                            "reading the experiment")

    def _refuse_foreign(self, experiment: Any) -> None:
        """UsageError for an experiment of the suite's name that another program made and
        filled: it holds runs, and not one of nnbench's (`report` wrote "no trial of this
        suite is in MLflow yet", `run` mixed its trials into the other program's runs). An
        empty one (`mlflow experiments create`) is taken."""
        experiment_id = experiment.experiment_id
        if not self.client.search_runs([experiment_id], max_results=1,
                                       run_view_type=ViewType.ALL):
            return
        if self.client.search_runs([experiment_id], "tags.`nnbench.role` LIKE '%'",
                                   max_results=1, run_view_type=ViewType.ALL):
            return  # an nnbench's: an experiment of an nnbench older than the tag
        raise UsageError(
            f"{self.tracking_uri}: its experiment {experiment.name!r} (id {experiment_id}) "
            f"holds runs of another program, none of them nnbench's, and nnbench did not "
            f"make it; its trials would be mixed into them: give the suite another name "
            f"(name: in {self.suite.path}) or use another store (--tracking-uri)")

    def artifact_path(self) -> Path | None:
        """The experiment's artifact directory, when it is a local path (not s3://,
        mlflow-artifacts:, ...: shared by design)."""
        from urllib.parse import unquote, urlparse

        experiment_id = self.experiment_id(create=False)
        if experiment_id is None:
            return None
        location = str(self.client.get_experiment(experiment_id).artifact_location or "")
        parsed = urlparse(location)
        if parsed.scheme not in ("", "file"):
            return None
        return Path(unquote(parsed.path) if parsed.scheme else location)

    def identity(self) -> str:
        """The suite's experiment in this store, `<experiment id>@<its creation time, ms>`:
        the same from every host however the store's address is written (the trial queue
        records which store it belongs to); the experiment is created if there is none."""
        experiment_id = self.experiment_id()
        assert experiment_id is not None
        return self._identity_of(experiment_id)

    def existing_identity(self) -> str | None:
        """`identity`, or None where the store has no experiment of the suite yet."""
        experiment_id = self.experiment_id(create=False)
        return None if experiment_id is None else self._identity_of(experiment_id)

    def _identity_of(self, experiment_id: str) -> str:
        return f"{experiment_id}@{self.client.get_experiment(experiment_id).creation_time}"

    def runs(self, role: str, view: int = ViewType.ACTIVE_ONLY) -> Iterator[Run]:
        """Every run of the suite's experiment with the given nnbench.role."""
        experiment_id = self.experiment_id(create=False)
        if experiment_id is None:
            return
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id], filter_string=f"tags.`nnbench.role` = '{role}'",
                run_view_type=view, max_results=1000, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def prepare(self) -> set[str]:
        """Read the done trial runs (for `refresh_summaries`); returns their trial_ids."""
        self.read_at = time.time()
        done: set[str] = set()
        self._done_runs.clear()
        for run in self.runs("trial"):
            trial_id = run.data.tags.get("nnbench.trial_id", "")
            if is_done(run):
                done.add(trial_id)
                kept = self._done_runs.get(trial_id)
                if kept is None or (run.info.start_time or 0) > (kept.info.start_time or 0):
                    self._done_runs[trial_id] = run
        return done

    def open_runs(self, role: str = "trial") -> list[Run]:
        """The runs of a role that MLflow still shows RUNNING."""
        experiment_id = self.experiment_id(create=False)
        if experiment_id is None:
            return []
        return list(self.client.search_runs(
            [experiment_id], filter_string=f"tags.`nnbench.role` = '{role}' and "
                                           f"attributes.status = 'RUNNING'", max_results=5000))

    def start_invocation(self, provenance: Mapping[str, str], n_todo: int) -> str:
        experiment_id = self.experiment_id()
        assert experiment_id is not None
        self.end_dead_invocations()
        tags = {"nnbench.role": "suite", "nnbench.suite": self.suite.name,
                "nnbench.worker": worker_label(), _PID_NAMESPACE: _pid_namespace(),
                "nnbench.trials_total": str(len(self.suite.trials())),
                "nnbench.trials_todo": str(n_todo), **provenance}
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        run = self._create_run(experiment_id, tags, f"{self.suite.name} {started}")
        self.client.log_text(run.info.run_id, self.suite.source, "suite.yaml")
        return str(run.info.run_id)

    def _create_run(self, experiment_id: str, tags: dict[str, str], run_name: str) -> Run:
        """`create_run`, retried like every call, without ever making two runs
        (`retrying_once`, by a one-time tag)."""
        token = uuid.uuid4().hex
        tags = {**tags, _CREATE_TOKEN: token}
        client = self._raw

        def find() -> Run | None:
            made = client.search_runs([experiment_id], f"tags.`{_CREATE_TOKEN}` = '{token}'",
                                      run_view_type=ViewType.ALL, max_results=1)
            return made[0] if made else None

        return retrying_once("MLflow create_run", lambda: client.create_run(
            experiment_id, tags=tags, run_name=run_name), find)

    def end_invocation(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)
        self.end_dead_invocations()

    def end_dead_invocations(self) -> list[str]:
        """End KILLED the suite's invocation runs that MLflow still shows RUNNING whose
        process, on this host, is gone (SIGKILLed, killed for memory, its machine
        restarted): nothing else would ever end them. One of another host is left as it is:
        nothing here can tell whether it lives. Returns the runs ended."""
        here, namespace, ended = socket.gethostname(), _pid_namespace(), []
        for run in self.open_runs("suite"):
            host, _, pid = run.data.tags.get("nnbench.worker", "").rpartition(":")
            # (a container of this host's name has pids of its own: its runs are left)
            # (a run of an nnbench that did not record it: taken as this namespace's)
            if host != here or run.data.tags.get(_PID_NAMESPACE, namespace) != namespace \
                    or not pid.isdigit() or _alive(int(pid), run.info.start_time) \
                    or self.client.get_run(run.info.run_id).info.status != "RUNNING":
                continue  # (ended meanwhile by its process, which then exited)
            self.client.set_tag(run.info.run_id, "nnbench.reason",
                                f"its process ({host}:{pid}) ended without closing the run "
                                f"(killed); closed by {worker_label()}")
            self.client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
        return ended

    @contextmanager
    def system_metrics(self, run_id: str, node: str | None = None) -> Iterator[None]:
        """CPU, memory, disk, network and (with nvidia-ml-py) GPU utilisation of this process's
        machine, sampled by MLflow's own monitor every 10 s and logged to `run_id` as
        `system/...` metrics (`system/<node>/...` when several workers share the run), and
        once more at the end: MLflow's monitor drops the samples of its last, unfinished
        interval, so work shorter than one interval logged nothing. An interval that cannot
        be logged (the store restarting) is logged with the next one: MLflow's own loop
        stopped for good at the first failure."""
        monitor = _monitor_class()(
            run_id, node_id=node, resume_logging=node is not None, tracking_uri=self.tracking_uri)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()  # its thread has ended
            try:  # the closing sample, with what the last interval collected
                monitor.collect_metrics()
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
            except Exception as err:  # the trials' results are recorded: say it, go on
                warnings.warn(f"the last system metrics of run {run_id} could not be logged: "
                              f"{first_line(err)}", stacklevel=2)

    # -- one trial ----------------------------------------------------------------------

    def invocation_trials(self, invocation_run_id: str) -> Iterator[Run]:
        """The trial runs recorded as part of one invocation (any worker's)."""
        for run in self.runs("trial"):
            if run.data.tags.get("nnbench.invocation") == invocation_run_id:
                yield run

    def start_trial(self, invocation_run_id: str, spec: TrialSpec,
                    provenance: Mapping[str, str], *, role: str = "trial") -> str:
        """A top-level run for one trial (role "trial") or one Optuna trial (role "tune"),
        tagged with the invocation it belongs to."""
        experiment_id = self.experiment_id()
        assert experiment_id is not None
        axes = self.suite.varied_axes
        label = spec.label(axes)
        tags = {"nnbench.invocation": invocation_run_id, "nnbench.role": role,
                "nnbench.suite": self.suite.name, "nnbench.trial_id": spec.trial_id,
                "nnbench.config_id": spec.config_id, "nnbench.config": label,
                **{f"nnbench.axis.{a}": value_label(a, spec.value(a)) for a in axes},
                "nnbench.seed": spec.seed_label, "nnbench.worker": worker_label(),
                "nnbench.status": "running", **provenance}
        run = self._create_run(experiment_id, tags, f"{label} | seed {spec.seed_label}")
        run_id = str(run.info.run_id)
        self._log_batches(run_id, params=[Param(k, v) for k, v in spec.flat_params().items()])
        self.client.log_inputs(run_id, [dataset_input(spec)])
        self._pending[run_id] = []
        self._last_flush[run_id] = time.monotonic()
        return run_id

    def log_epoch(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Queue one epoch's metrics; sent in batches (every few seconds, and at the end)."""
        step, ts = int(metrics["epoch"]), _now_ms()
        self._pending[run_id] += [Metric(k, float(v), ts, step) for k, v in metrics.items()
                                  if k != "epoch"]
        if time.monotonic() - self._last_flush[run_id] >= _FLUSH_SECONDS:
            self._flush(run_id)

    def _flush(self, run_id: str, *, metrics: Iterable[Metric] = (),
               tags: Iterable[RunTag] = ()) -> None:
        """Send the epochs' metrics not sent yet, with `metrics` and `tags`."""
        pending = self._pending.get(run_id, [])
        self._log_batches(run_id, metrics=[*pending, *metrics], tags=tags)
        self._pending[run_id] = []
        self._last_flush[run_id] = time.monotonic()

    def _log_batches(self, run_id: str, *, metrics: Iterable[Metric] = (),
                     params: Iterable[Param] = (), tags: Iterable[RunTag] = ()) -> None:
        """In as few `log_batch` calls as MLflow takes (100 params, 100 tags, 1,000 values in
        all per call): each call is a transaction, 30-50 ms on SQLite."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            batch_params, params = params[:100], params[100:]
            batch_tags, tags = tags[:100], tags[100:]
            room = _BATCH_LIMIT - len(batch_params) - len(batch_tags)
            batch_metrics, metrics = metrics[:room], metrics[room:]
            self.client.log_batch(run_id, metrics=batch_metrics, params=batch_params,
                                  tags=batch_tags)

    def log_model(self, run_id: str, spec: TrialSpec, build: Callable[[], tuple[Any, Any]],
                  step: int) -> tuple[str | None, str]:
        """Log the trained model `build()` gives (a `torch.nn.Module` and a tensor of example
        inputs, from which MLflow infers the signature) as the run's MLflow model `model`: a
        logged model of the suite's experiment, output of the run at `step`. Returns the
        model id and a note: "" when it was saved as pt2; otherwise why it was pickled, or
        why no model was logged (id None). The note is also the run's `nnbench.model_note`
        tag. A model that cannot be logged never fails the trial: checkpoint.pt holds it."""
        from importlib.metadata import version

        import mlflow.pytorch
        import torch
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model

        experiment_id = self.experiment_id()
        assert experiment_id is not None
        note, model_id = "", None
        try:
            model, example = build()
            token = uuid.uuid4().hex
            tags = {"nnbench.trial_id": spec.trial_id, "nnbench.suite": self.suite.name,
                    "nnbench.config": spec.label(self.suite.varied_axes),
                    "nnbench.seed": spec.seed_label, _CREATE_TOKEN: token}
            client = self._raw
            logged = retrying_once("MLflow create_logged_model", lambda: client.create_logged_model(
                experiment_id, name=MODEL, source_run_id=run_id, params=spec.flat_params(),
                tags=tags), lambda: next(iter(client.search_logged_models(
                    [experiment_id], filter_string=f"tags.`{_CREATE_TOKEN}` = '{token}'",
                    max_results=1)), None))
            model_id = str(logged.model_id)
            # named requirements: MLflow would otherwise infer them in a subprocess (seconds)
            requirements = [f"torch=={torch.__version__.split('+')[0]}"]
            with tempfile.TemporaryDirectory() as tmp:
                def save(path: Path, serialization_format: str, pip: list[str]) -> None:
                    about = Model(artifact_path=logged.artifact_location, run_id=run_id,
                                  model_uuid=model_id, model_id=model_id)
                    mlflow.pytorch.save_model(model, str(path), mlflow_model=about,
                                              input_example=example.numpy(),
                                              pip_requirements=pip,
                                              serialization_format=serialization_format)

                path = Path(tmp) / MODEL
                try:  # pt2: a traced graph that loads with torch alone, no code of ours
                    with warnings.catch_warnings():  # nn.GRU's flat weights; harmless
                        warnings.filterwarnings("ignore", "The tensor attributes .* were "
                                                          "assigned during export")
                        save(path, "pt2", requirements)
                except Exception as err:  # torch.export cannot trace every user model
                    why = first_line(err, with_type=True)
                    note = (f"torch.export could not trace the model ({why}); "
                            f"saved it with pickle instead, which loads only where nnbench "
                            f"and the model's plugin are importable")
                    path = Path(tmp) / f"{MODEL}-pickle"
                    save(path, "pickle", [*requirements, *(f"{p}=={version(p)}" for p in
                                                          ("cloudpickle", "nnbench"))])
                self.client.log_model_artifacts(model_id, str(path))
            self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step)])
            self.client.finalize_logged_model(model_id, LoggedModelStatus.READY)
        except Exception as err:  # e.g. a plugin model pickle cannot save either
            why = first_line(err, with_type=True)
            note = (f"the MLflow model was not logged ({why}); {CHECKPOINT} "
                    f"holds the trained weights")
            if model_id is not None:
                self.client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
            model_id = None
        if note:
            self.client.set_tag(run_id, "nnbench.model_note", note)
        return model_id, note

    def record_trial(self, run_id: str, result: TrialResult, model_id: str | None = None
                     ) -> None:
        """Everything of a TrialResult but its status: final metrics (linked to `model_id`,
        the run's logged model, if any), tags, artifacts."""
        import pandas as pd

        ts = _now_ms()
        final = [Metric(k, float(v), ts, 0, model_id=model_id) for k, v in result.final.items()]
        final.append(Metric("wall_seconds", float(result.wall_seconds), ts, 0))
        tags = {"nnbench.fingerprint": result.fingerprint,
                "nnbench.num_params": str(result.num_params),
                "nnbench.epochs_done": str(len(result.history)), **result.numerics.tags()}
        optional = {"nnbench.reason": result.reason[-5000:],
                    "nnbench.diverged_epoch": result.diverged_epoch,
                    "nnbench.best_epoch": result.best_epoch,
                    "nnbench.stopped_epoch": result.stopped_epoch,
                    # the epoch of the weights it ends with, where not its last (restore_best)
                    "nnbench.weights_epoch": result.weights_epoch
                    if result.weights_epoch != len(result.history) else None}
        tags.update({k: str(v) for k, v in optional.items() if v})
        # the epochs not sent yet, the final metrics and the tags in one call; the artifacts
        # (spec.yaml, history.csv, checkpoint.pt) in one more
        self._flush(run_id, metrics=final, tags=[RunTag(k, v) for k, v in tags.items()])
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "spec.yaml").write_text(result.spec.to_yaml(), encoding="utf-8")
            if result.history:
                pd.DataFrame(result.history).to_csv(folder / "history.csv", index=False)
            if result.checkpoint is not None:
                (folder / CHECKPOINT).write_bytes(result.checkpoint)
            self.client.log_artifacts(run_id, tmp)

    def show(self, run_id: str, status: str, reason: str = "") -> None:
        """End a trial run with the status its queue entry (or Optuna trial) ended with:
        the status goes last, so a run killed while being recorded never looks done."""
        if self._pending.get(run_id):
            self._flush(run_id)
        tags = [RunTag("nnbench.status", status)]
        if reason:
            tags.append(RunTag("nnbench.reason", reason[-5000:]))
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, _MLFLOW_STATUS[status])
        self._pending.pop(run_id, None)
        self._last_flush.pop(run_id, None)

    # -- seed aggregates: one summary run per configuration ----------------------------

    def refresh_summaries(self, specs: Iterable[TrialSpec]) -> SummaryRefresh:
        """Bring the summary run of each configuration of `specs` (the suite's trials: its
        members) up to date with its done trials as `prepare` last read them (call `prepare`
        first).

        A summary stands for its configuration while the trials it was made from
        (`nnbench.summary.trials`) are all among the configuration's members; one made from
        others (the suite lost seeds, or an nnbench before that tag wrote it) is stale: it
        is replaced, and deleted even where no trial of the configuration is done yet (then
        there is none until one is). A standing summary is written anew only when its done
        trials (their runs, statuses and final values: `nnbench.summary.digest`) changed
        and no standing summary of more trials exists; the digest is the upsert key together
        with `nnbench.config_id`. Several processes may refresh at once (workers of one
        queue): each finishes its run before it looks, then keeps the standing summary of
        the most trials (then the latest read, then the greatest run id) and deletes the
        others, so the last to look leaves exactly one. Only finished summary runs are
        deleted, never one another process is writing (one left RUNNING for an hour by a
        process that died is)."""
        refresh = SummaryRefresh()
        experiment_id = self.experiment_id(create=False)
        if experiment_id is None or self.read_at is None:
            return refresh
        configs: dict[str, dict[str, TrialSpec]] = {}
        for spec in specs:
            configs.setdefault(spec.config_id, {})[spec.trial_id] = spec
        existing: dict[str, list[Run]] = {}
        for run in self.runs(SUMMARY):
            existing.setdefault(run.data.tags.get("nnbench.config_id", ""), []).append(run)
        for config_id, members in configs.items():
            done = [(spec, self._done_runs[trial_id]) for trial_id, spec in members.items()
                    if trial_id in self._done_runs]
            runs = existing.get(config_id, [])
            if done:
                digest = _summary_digest(done)
                standing = [r for r in runs if _stands_for(r, members.keys())]
                if any(r.data.tags.get("nnbench.summary.digest") == digest
                       or _summary_key(r)[0] > len(done) for r in standing):
                    refresh.unchanged += 1
                else:
                    self._write_summary(experiment_id, list(members.values()), done, digest)
                    refresh.written += 1
                    runs = self._summaries_of(experiment_id, config_id)
            if runs:
                refresh.removed += self._settle(runs, members.keys())
        return refresh

    def _summaries_of(self, experiment_id: str, config_id: str) -> list[Run]:
        return list(self.client.search_runs(
            [experiment_id], filter_string=f"tags.`nnbench.role` = '{SUMMARY}' and "
                                           f"tags.`nnbench.config_id` = '{config_id}'",
            max_results=1000))

    def _settle(self, runs: list[Run], members: Collection[str]) -> int:
        """Delete every summary run of one configuration but the one that stands for it
        (of the standing ones, the greatest `_summary_key`): stale ones (made from trials
        that are not all among `members`, the configuration's trial ids) go too."""
        complete = [r for r in runs if _is_complete_summary(r)]
        standing = sorted((r for r in complete if _stands_for(r, members)), key=_summary_key)
        stale = [r for r in complete if not _stands_for(r, members)]
        now = _now_ms()
        abandoned = [r for r in runs if not _is_complete_summary(r)
                     and now - (r.info.start_time or now) > _ABANDONED_SUMMARY_MS]
        removed = 0
        for run in [*standing[:-1], *stale, *abandoned]:
            try:
                self.client.delete_run(run.info.run_id)
                removed += 1
            except MlflowException:  # another process deleted it first
                pass
        return removed

    def _write_summary(self, experiment_id: str, members: list[TrialSpec],
                       done: list[tuple[TrialSpec, Run]], digest: str) -> str:
        """A new summary run of one configuration, its statistics over the finished trials
        of `done` (a diverged trial's values, cut short or not finite, are no seed's
        result): for each final metric its mean, 95% Student-t interval, sd and n
        (`<metric>_mean`, `_low`, `_high`, `_sd`, `_n`; a value that needs more seeds than
        there are is left out); for each per-epoch metric the mean over trials at each
        epoch (`<metric>_mean`, step = epoch) and the same five statistics of its last
        epoch's value (`<metric>_final_mean`, ...: `metric: val_accuracy` has its interval).
        Tags: the statuses of every done trial (`nnbench.summary.statuses`), n and seeds of
        the finished ones, the ids of the done trials it was made from
        (`nnbench.summary.trials`); the params the configuration's trials share but their
        seeds; its axis tags. A configuration none of whose done trials finished gets a
        summary with its statuses and n = 0 but no statistics: its row in the UI says why
        it has no values, and it replaces a summary of other trials."""
        import math

        import pandas as pd

        from nnbench.results.stats import metric_range, t_interval

        runs = [run for _, run in done]
        finished = [(s, run) for s, run in done
                    if run.data.tags.get("nnbench.status") == "finished"]
        spec = members[0]
        axes = self.suite.varied_axes
        label = spec.label(axes)
        read = [(run, self.history(run)) for _, run in finished]
        histories = [h for _, h in read if h is not None]
        per_epoch = {c for h in histories for c in h.columns} - {"epoch"}
        # each trial's final values: its latest, but for a trial that restored its best
        # weights (nnbench.weights_epoch) the per-epoch ones of that epoch
        finals = []
        for run, history in read:
            values = dict(run.data.metrics)
            ended = run.data.tags.get("nnbench.weights_epoch")
            if ended and history is not None:
                values.update(epoch_values(history, int(ended), values))
            finals.append(values)
        ts = _now_ms()
        metrics: list[Metric] = []
        for key in sorted({k for values in finals for k in values}):
            interval = t_interval([values.get(key, math.nan) for values in finals])
            if interval.n == 0:
                continue
            name = f"{key}_final" if key in per_epoch else key  # <key>_mean is the curve
            bottom, top = metric_range(key)  # cut as the report's (an accuracy reached 1.04)
            for stat in ("mean", "low", "high", "sd", "n"):
                value = float(getattr(interval, stat))
                value = max(value, bottom) if stat == "low" else \
                    min(value, top) if stat == "high" else value
                if math.isfinite(value):
                    metrics.append(Metric(f"{name}_{stat}", value, ts, 0))
        stride = 1
        if histories:
            frame = pd.concat(histories, ignore_index=True).replace([math.inf, -math.inf],
                                                                    math.nan)
            means = frame.groupby("epoch").mean(numeric_only=True)  # NaN: not counted
            # at most about CURVE_POINTS epochs, evenly, the first and the last: 100,000
            # epochs wrote 1.2 million rows per summary, for minutes (each trial run keeps
            # every epoch)
            stride = max(1, math.ceil(len(means) / CURVE_POINTS))
            if stride > 1:
                kept = means.index
                means = means[(kept % stride == 0) | (kept == kept[0]) | (kept == kept[-1])]
            for key in sorted(per_epoch & set(means.columns)):
                metrics += [Metric(f"{key}_mean", float(v), ts, int(epoch))
                            for epoch, v in means[key].items() if math.isfinite(v)]
        # a seed aggregate has no seed: the seed params (`seed`, `seed.<source>`) are never
        # copied, even where every member has the same (a suite of one seed)
        flat = [m.flat_params() for m in members]
        params = [Param(k, v) for k, v in flat[0].items()
                  if k != "seed" and not k.startswith("seed.")
                  and all(f.get(k) == v for f in flat)]
        statuses = Counter(run.data.tags.get("nnbench.status", "") for run in runs)
        ordered = sorted((s for s, _ in finished), key=lambda s: (s.seed, s.source_seeds))
        seeds = ("; " if any(s.source_seeds for s in ordered) else ", ").join(
            s.seed_label for s in ordered)
        shared = functools.reduce(lambda a, b: a & b, (set(run.data.tags.items())
                                                       for run in runs))
        run_ids = ",".join(run.info.run_id for _, run in finished)
        n = len(finished)
        thinned = "" if stride == 1 else f"; one epoch in {stride}, the first and the last"
        left_out = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())
                             if status != "finished")
        note = (f"Seed aggregate of {label} over {n} finished trial(s) (seeds {seeds or '-'})"
                f"{f'; not counted: {left_out}' if left_out else ''}. "
                f"Each final metric: <metric>_mean, the 95% Student-t interval <metric>_low "
                f".. _high, _sd and _n; each per-epoch metric: its mean curve <metric>_mean "
                f"(step = epoch{thinned}) and the same statistics of its value at the epoch "
                f"whose model each trial ends with (its last, or its best where early "
                f"stopping restored it) as <metric>_final_mean, _final_low, _final_high, "
                f"_final_sd, _final_n. Trial runs: {run_ids or '-'}")
        tags = {**{k: v for k, v in shared if not k.startswith(_PER_TRIAL_TAGS)},
                "nnbench.role": SUMMARY, "nnbench.suite": self.suite.name,
                "nnbench.config_id": spec.config_id, "nnbench.config": label,
                **{f"nnbench.axis.{a}": value_label(a, spec.value(a)) for a in axes},
                "nnbench.summary.n": str(n), "nnbench.summary.seeds": seeds,
                "nnbench.summary.statuses": ", ".join(f"{count} {status}" for status, count
                                                      in sorted(statuses.items())),
                "nnbench.summary.digest": digest,
                "nnbench.summary.read_at": str(int((self.read_at or 0) * 1000)),
                **_trials_tags(s.trial_id for s, _ in done),
                "mlflow.note.content": note}
        if len(run_ids) <= 5000:
            tags["nnbench.summary.run_ids"] = run_ids
        run = self._create_run(experiment_id, tags, f"{label} | mean over seeds")
        run_id = str(run.info.run_id)
        self._log_batches(run_id, params=params, metrics=metrics)
        self.client.set_terminated(run_id, "FINISHED")  # complete: others may now settle
        return run_id

    def history(self, run: Run) -> Any:
        """A trial run's history.csv as a DataFrame; None when it has none. Read from the
        run's artifact store directly: the run is in hand, MLflow's download would fetch it
        again (a tenth of a second per run on SQLite)."""
        import pandas as pd
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repository = get_artifact_repository(run.info.artifact_uri,
                                             tracking_uri=self.tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = retrying(lambda: str(repository.download_artifacts(  # type: ignore[no-untyped-call]
                    "history.csv", tmp)), "reading a trial's history.csv")
            except (MlflowException, OSError):  # no epoch was trained
                return None
            return pd.read_csv(path)


@dataclass
class SummaryRefresh:
    """What `Tracker.refresh_summaries` did."""

    written: int = 0  # configurations whose summary run was written anew
    unchanged: int = 0  # configurations whose summary was up to date
    removed: int = 0  # superseded or duplicate summary runs deleted


def _is_complete_summary(run: Run) -> bool:
    return run.info.status == "FINISHED" and "nnbench.summary.digest" in run.data.tags


def _trials_tags(trial_ids: Iterable[str]) -> dict[str, str]:
    """The ids of the trials a summary is made from, sorted and comma-separated, as
    `nnbench.summary.trials`, continued in `nnbench.summary.trials.2`, `.3`, ... past
    `_IDS_PER_TAG` ids (MLflow's limit on a tag's length)."""
    ids = sorted(trial_ids)
    chunks = [",".join(ids[i:i + _IDS_PER_TAG]) for i in range(0, len(ids), _IDS_PER_TAG)]
    return {_SUMMARY_TRIALS if i == 0 else f"{_SUMMARY_TRIALS}.{i + 1}": chunk
            for i, chunk in enumerate(chunks or [""])}


def _summary_trials(run: Run) -> frozenset[str] | None:
    """The ids of the trials a summary run was made from; None for a summary that does not
    say (written by an nnbench before `nnbench.summary.trials`)."""
    tags = run.data.tags
    if _SUMMARY_TRIALS not in tags:
        return None
    chunks, part = [tags[_SUMMARY_TRIALS]], 2
    while f"{_SUMMARY_TRIALS}.{part}" in tags:
        chunks.append(tags[f"{_SUMMARY_TRIALS}.{part}"])
        part += 1
    return frozenset(i for chunk in chunks for i in chunk.split(",") if i)


def _stands_for(run: Run, members: Collection[str]) -> bool:
    """Can this summary run stand for its configuration, whose trials are `members` (trial
    ids)? Only a complete one made from trials that are all among them: a summary of
    trials the suite no longer has (fewer seeds now) is stale, as is one that does not
    say which trials it was made from."""
    trials = _summary_trials(run)
    return (_is_complete_summary(run) and trials is not None
            and trials <= frozenset(members))


def _summary_key(run: Run) -> tuple[int, int, str]:
    """Which of a configuration's standing summary runs stands for it: the one made from
    the most done trials, then the latest read."""
    return (len(_summary_trials(run) or ()),
            int(run.data.tags.get("nnbench.summary.read_at", 0) or 0), str(run.info.run_id))


def _summary_digest(done: list[tuple[TrialSpec, Run]]) -> str:
    """What a summary is made from: each done trial's run, its status and its latest metric
    values."""
    rows = sorted((spec.trial_id, run.info.run_id, run.data.tags.get("nnbench.status", ""),
                   sorted(run.data.metrics.items())) for spec, run in done)
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]


class RunNotFound(LookupError):
    """No run of that id in the store (`trial_checkpoint`)."""


def trial_checkpoint(tracking_uri: str | None, run_id: str) -> tuple[Run, bytes]:
    """A trial run and its `checkpoint.pt`; raises LookupError (with MLflow's reason) when
    the run or its checkpoint is not in the store."""
    from mlflow.exceptions import MlflowException

    client = open_client(store_uri(tracking_uri))
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise LookupError(f"run {run_id}: cannot read it from {client.tracking_uri} "
                              f"({str(err).splitlines()[0]})") from None
        ui = "the MLflow UI" if client.tracking_uri.startswith(("http://", "https://")) \
            else mlflow_ui(client.tracking_uri)
        raise RunNotFound(f"run {run_id} is not in {client.tracking_uri} "
                          f"({str(err).splitlines()[0]}); {ui} lists its runs") from None
    tags = run.data.tags
    role, status = tags.get("nnbench.role"), tags.get("nnbench.status")
    if role != "trial":
        what = {"tune": "an Optuna tuning trial's run (its weights are not kept: the re-runs "
                        "of its point's best values are the trials)",
                "suite": "an invocation's run", "summary": "a configuration's summary run"
                }.get(str(role), "not a run of an nnbench trial")
        raise LookupError(f"run {run_id} is {what}; evaluate takes a trial's run id (the "
                          f"report's trial table, or tags.nnbench.role = 'trial' in the MLflow "
                          f"UI)")
    if status != "finished":
        ended = f"ended {status}" if status and status != "running" else \
            "has not finished (still training, or its worker died)"
        raise LookupError(f"run {run_id}: its trial {ended}; only a finished trial keeps a "
                          f"{CHECKPOINT}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            blob = Path(client.download_artifacts(run_id, CHECKPOINT, tmp)).read_bytes()
    except (MlflowException, OSError) as err:
        try:
            kept = {a.path for a in client.list_artifacts(run_id)}
        except (MlflowException, OSError):
            kept = set()
        if kept and CHECKPOINT not in kept:  # its artifacts are there, written together
            raise LookupError(
                f"run {run_id}: its artifacts hold no {CHECKPOINT}: this trial was trained "
                f"without one (a suite's `checkpoint: true`, or --log-models, keeps one for "
                f"the trials trained after it is set; a finished trial is not trained "
                f"again), or it was deleted from them since") from None
        raise LookupError(f"run {run_id}: its {CHECKPOINT} cannot be read from "
                          f"{run.info.artifact_uri} ({str(err).splitlines()[0]}); were its "
                          f"artifacts moved, or written on another machine?") from None
    return run, blob


# -- the dataset as an MLflow input ---------------------------------------------------------

def dataset_input(spec: TrialSpec) -> DatasetInput:
    """A trial's dataset as MLflow records inputs: its label as the name (`mnist1d(num_samples=
    600)`), a digest of the dataset's parameters and of what it reads (a file dataset's
    content hash), its source (the nnbench registry, or the file), the tensors' schema and,
    as profile, the split sizes and the shape of one example. The split is seeded by the
    trial's seed: runs of one configuration share the dataset, and its sizes."""
    import numpy as np
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types import Schema, TensorSpec

    from nnbench.data import SplitParams, shape_of, split_sizes
    from nnbench.plugins import component_digests

    dataset = spec.dataset
    info = registry.get("dataset", dataset.name)
    params = info.params.model_validate(dataset.kwargs)
    assert isinstance(params, SplitParams)  # the dataset contract (nnbench.data)
    shape = shape_of(dataset.name, params)
    sizes = split_sizes(shape, params)
    recorded = dict(spec.digests)
    reads = {k: recorded.get(k, v) for k, v in component_digests([("dataset", dataset)])}
    digest = hashlib.sha256(json.dumps({"dataset": dataset.to_dict(), "reads": reads},
                                       sort_keys=True, default=str).encode()).hexdigest()[:16]
    if "files" in info.attrs:  # read from the user's file: a local source
        files = [str(f) for f in info.attrs["files"](params)]
        source_type, source = "local", json.dumps({"uri": files[0] if len(files) == 1
                                                   else ", ".join(files)})
    else:  # generated or loaded by a registered dataset: code, as MLflow calls it
        source_type = "code"
        source = json.dumps({"tags": {"nnbench.dataset": dataset.name,
                                      "nnbench.registry": info.source}})
    features = TensorSpec(np.dtype("float32"), (-1, *shape.input_shape), "x")
    targets = (TensorSpec(np.dtype("int64"), (-1,), "y") if shape.targets == "class" else
               TensorSpec(np.dtype("float32"), (-1, shape.target_dim), "y"))
    schema = TensorDatasetSchema(features=Schema([features]), targets=Schema([targets]))
    profile = {"train": sizes.train, "val": sizes.val, "test": sizes.test,
               "input_shape": list(shape.input_shape), "targets": shape.targets,
               "num_classes": shape.num_classes}
    entity = Dataset(name=registry.label("dataset", dataset), digest=digest,
                     source_type=source_type, source=source,
                     schema=json.dumps(schema.to_dict()), profile=json.dumps(profile))
    return DatasetInput(entity, [InputTag("mlflow.data.context", "training")])
