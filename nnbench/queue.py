"""The trial queue: an Optuna storage that every worker of a suite shares, and the one
record of each trial's state.

One module owns everything that touches Optuna storages: opening them (races on a fresh
store retried), the queue of a suite's trials, claims, heartbeats, and the handling of
workers that stop answering. A suite's trials are entries of the study `<suite>/trials`,
each carrying its `trial_id` and its spec (`TrialSpec.canonical()`). An entry is WAITING
(queued), RUNNING (claimed by one worker), COMPLETE (done: finished or diverged) or FAIL
(failed, killed, withdrawn, or its worker went silent). MLflow shows what the queue says;
it is never read to decide what to train.

One invariant makes every trial train once: **a trial has at most one entry that is
waiting, running or complete**. Everything that adds an entry does so in one transaction
that holds the study's row lock (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite every
transaction is `BEGIN IMMEDIATE`), and adds one only for a trial with no such entry:

- **sync**: a worker starting queues the suite's trials that have none (all of them on a
  fresh queue; after a suite is edited, only its new trials; a failed or killed trial
  again). Whoever gets there first queues them; the others find them queued. Waiting
  entries of trials the suite no longer has are withdrawn in the same transaction (running
  ones finish, but are not queued again if killed or stale).
- **claim**: a worker moves the lowest waiting entry to RUNNING and records its first
  heartbeat in one transaction: a claim always has a heartbeat;
- **heartbeats**: while a worker holds a claim it records a heartbeat every
  `heartbeat_interval` seconds, stamped with the *database server's* clock, so it means
  the same on every host;
- **reap**: a RUNNING entry whose heartbeat is older than `grace_period` seconds (by the
  server's clock; its worker died, hung, or lost its network, on any host) is failed, and
  its trial queued again, in one transaction, by whichever worker looks next; the grace is
  the longer of the reaper's and the holder's (recorded with the claim), so workers started
  with other `--heartbeat-interval`/`--grace-period` never reap each other's live claims;
- **release**: the worker ends its entry, COMPLETE or FAIL, only if the entry is still
  RUNNING: a worker that was silent past the grace period finds its claim gone.

Optuna search trials of tuning live in the studies `<suite>/<config_id>/<definition>`
(nnbench.tuning.study_name) of the same storage, with the same heartbeats; Optuna fails
their stale trials and queues a copy.

Storages: `sqlite:///path/optuna.db` on one machine (no server; several local worker
processes), PostgreSQL for many machines (`postgresql+psycopg://user@host/db`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nnbench.cli_checks import sqlite_file, sqlite_url, sqlite_without
from nnbench.config import TrialSpec
from nnbench.messages import UsageError, upgrade_command
from nnbench.transient import (
    QuietTransient,
    process_gone,
    process_identity,
    reason,
    retrying,
    retrying_once,
    worker_label,
)

__all__ = [
    "DEFAULT_LIVENESS",
    "INSTEAD",
    "LAYOUT",
    "Claim",
    "Heartbeats",
    "Liveness",
    "QueueCounts",
    "QueueElsewhere",
    "TrialQueue",
    "default_storage",
    "finishing",
    "heartbeat_silence",
    "heartbeats",
    "holder_graces",
    "open_storage",
    "open_study",
    "queue_owner",
    "reap",
    "storage_id",
]

_log = logging.getLogger(__name__)
# Optuna's storage warns of an OperationalError it falls back from: one a retry gets past (a
# restarting server) is said once by `retrying` instead
logging.getLogger("optuna.storages._rdb.storage").addFilter(QuietTransient(messages=True))

LAYOUT = 2  # the queue is the only record (1: MLflow decided what was done)
_TRIAL_ID, _SPEC, _STATUS, _OUTCOME = ("nnbench.trial_id", "nnbench.spec", "nnbench.status",
                                       "nnbench.outcome")
_WORKER = "nnbench.worker"  # `host:pid` of the worker holding an entry or a tuning trial
# the holder's grace period (s): a worker whose own is shorter waits for it before reaping
# (a worker beating every 60 s was reaped by one whose grace was 10 s, and its trial trained
# twice)
_GRACE = "nnbench.grace"
# the holder process's `transient.process_identity`: a worker of the same machine reaps the
# claims of one that has ended at once, not a grace period later (a re-run after a SIGKILL
# waited a minute for its own dead claims)
_HOLDER = "nnbench.holder"
# a tuning point queued in place of a repeat (tuning._untried_instead): not a killed trial's
INSTEAD = "nnbench.instead"
_CLAIM_TOKEN = "nnbench.claim_token"  # one claim's own: a retry of it finds its entry by it
_WITHDRAWN = "nnbench.withdrawn"  # a running entry's trial the suite no longer has
# study attr `nnbench.<what>.<device type>` (`TrialQueue.keep`): the suite's lane count
# ("lanes") and its large serial trials' threads ("threads") on that kind of device
_KEPT = ("lanes", "threads")


@dataclass(frozen=True)
class Liveness:
    """How workers show they are alive, and how long silence is tolerated."""

    heartbeat_interval: int = 10  # seconds between a worker's heartbeats
    grace_period: int = 60  # seconds without one before a worker's trials are re-queued


DEFAULT_LIVENESS = Liveness()


class QueueElsewhere(UsageError):
    """The queue records the trials of another MLflow store's experiment."""

    def __init__(self, storage_url: str, suite_name: str, owner: str, store: str | None,
                 tracking_uri: str) -> None:
        """`owner`, `store`: the queue's and this store's experiment (`Tracker.identity`;
        `store` None: this store has no experiment of the suite)."""
        path = sqlite_file(storage_url)
        fresh = (f"delete {path} as well (the queues of other suites in it are rebuilt from "
                 f"their MLflow stores; tuning studies in it are lost)") if path else (
            f"drop the study {suite_name}/trials from that storage")
        this = (f"{tracking_uri} has no experiment {suite_name!r} (a new, replaced or "
                f"moved store?)" if store is None else
                f"{tracking_uri}'s is {_experiment_words(store)}")
        super().__init__(
            f"--storage {storage_url}: the queue of suite {suite_name!r} there belongs to "
            f"another MLflow store (its experiment {_experiment_words(owner)}), and {this}; "
            f"it holds which of that store's trials are done, so nothing would be trained "
            f"here. Give each MLflow store its own storage (--storage "
            f"sqlite:///PATH/OTHER.db); or, to start this suite over, {fresh}")


def _experiment_words(identity: str) -> str:
    """`1@1796550096236` as `1, created 2026-12-06 09:41:36 UTC`."""
    experiment, _, created = identity.partition("@")
    if not created.isdigit():
        return identity
    when = datetime.fromtimestamp(int(created) / 1000, tz=timezone.utc)
    return f"{experiment}, created {when:%Y-%m-%d %H:%M:%S} UTC"


def queue_owner(storage_url: str, suite_name: str) -> str | None:
    """The MLflow experiment (`Tracker.identity`) whose trials the storage's queue of the
    suite records, read without writing anything (None: no such queue, or no storage)."""
    if sqlite_without(storage_url, "studies"):
        return None
    storage = open_storage(storage_url, reading=True)
    try:
        study_id = retrying(lambda: storage.get_study_id_from_name(f"{suite_name}/trials"),
                            "reading the queue")
        attrs = retrying(lambda: storage.get_study_user_attrs(study_id), "reading the queue")
    except KeyError:
        return None
    finally:
        storage.engine.dispose()
    owner = attrs.get("nnbench.mlflow")
    return str(owner) if owner else None


def default_storage(tracking_uri: str) -> str:
    """`sqlite:///.../optuna.db` next to a SQLite MLflow store, else in the working dir."""
    store = sqlite_file(tracking_uri)
    return sqlite_url((store.parent if store else Path.cwd()) / "optuna.db")


def _serialize_sqlite(storage: RDBStorage) -> None:
    """Make each SQLite transaction `BEGIN IMMEDIATE` (pysqlite otherwise starts it lazily,
    after the SELECT of a read-then-update, which two processes could interleave)."""
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections made before the listeners existed


def _set_attrs(storage: RDBStorage, session: Any, trial_id: int,
               attrs: Iterable[tuple[str, Any]]) -> None:
    """Write user attributes of a trial in `session` (the caller's transaction)."""
    for key, value in attrs:
        storage._set_trial_attr_without_commit(session, models.TrialUserAttributeModel,
                                               trial_id, key, value)


_SCHEMA_HEAD: list[str] = []  # the installed Optuna's schema revision, once read


def _schema_problem(url: str, current: str, head: str, known: Sequence[str]) -> str:
    """What to do about an Optuna storage whose tables are of another Optuna's schema."""
    shown, command = upgrade_command("optuna", "storage upgrade --storage", url)
    if current in known:
        return (f"the Optuna storage {shown}: its tables are of an older Optuna's schema "
                f"({current}; the installed Optuna {optuna.__version__} uses {head}); "
                f"upgrade them with {command}, or give another --storage")
    return (f"the Optuna storage {shown}: its tables are of a newer Optuna's schema "
            f"({current}) than the installed Optuna {optuna.__version__} knows (up to "
            f"{head}); use nnbench with the Optuna that wrote them, or give another "
            f"--storage")


class _Storage(RDBStorage):
    """RDBStorage in which

    - a RUNNING trial that never recorded a heartbeat (an Optuna trial whose worker died
      between asking for it and its first heartbeat) is given one, stamped by the server,
      when a worker first looks: it goes stale a grace period later, by the same clock as
      every heartbeat;
    - the user attributes given to `finishing` before `study.tell` are written in the
      transaction that ends the trial, only if it ends it: a trial failed as stale never
      carries what its worker meant to record (tuning's budget counts by them);
    - a trial `study.ask` starts (a new one, or a waiting copy) is named with its worker
      (`nnbench.worker`) and given its first heartbeat (the server's clock) in the
      transaction that makes it RUNNING, as a queue claim is: one named afterwards, by a
      worker killed in between, showed in `status` as held by worker "?", and one whose
      first heartbeat was still to come as "no heartbeat recorded"."""

    _finishing: dict[int, dict[str, Any]]

    def __init__(self, url: str, **kwargs: Any) -> None:
        """Optuna's check that the storage's tables are of the installed Optuna's schema,
        with that schema's revision read once per process (Optuna reads it from its
        migration scripts at every opening: four fifths of an opening's time), and its
        failure a usage error that says what to run (it was a traceback)."""
        super().__init__(url, skip_compatibility_check=True, **kwargs)
        self.skip_compatibility_check = False  # as Optuna's own check leaves it
        manager = self._version_manager
        if not _SCHEMA_HEAD:
            _SCHEMA_HEAD.append(manager.get_head_version())
        current = manager.get_current_version()
        if current != _SCHEMA_HEAD[0]:
            raise UsageError(_schema_problem(url, current, _SCHEMA_HEAD[0],
                                             manager.get_all_versions()))

    def finishing(self, trial_id: int, attrs: dict[str, Any]) -> None:
        if not hasattr(self, "_finishing"):
            self._finishing = {}
        self._finishing[trial_id] = attrs

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        attrs = getattr(self, "_finishing", {}).pop(trial_id, {}) if state.is_finished() \
            else self._holder() if state == TrialState.RUNNING else {}
        if not attrs:
            return bool(super().set_trial_state_values(trial_id, state, values))
        try:
            with _create_scoped_session(self.scoped_session) as session:  # Optuna's, + attrs
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session,
                                                              for_update=True)
                self.check_trial_is_updatable(trial_id, cast(TrialState, trial.state))
                if state == TrialState.RUNNING and trial.state != TrialState.WAITING:
                    return False  # another worker took it
                _set_attrs(self, session, trial_id, attrs.items())
                if state == TrialState.RUNNING \
                        and models.TrialHeartbeatModel.where_trial_id(trial_id, session) is None:
                    session.add(models.TrialHeartbeatModel(trial_id=trial_id))
                for objective, v in enumerate(values or ()):
                    self._set_trial_value_without_commit(session, trial, objective, v)
                trial.state = state
                if state == TrialState.RUNNING:
                    trial.datetime_start = datetime.now()
                else:
                    trial.datetime_complete = datetime.now()
        except IntegrityError:  # as Optuna's: another worker's write came first
            return False
        return True

    def _get_prepared_new_trial(self, study_id: int, template_trial: FrozenTrial | None,
                                session: Session) -> models.TrialModel:
        trial = super()._get_prepared_new_trial(study_id, template_trial, session)
        if template_trial is None:  # `study.ask`'s new RUNNING trial
            _set_attrs(self, session, int(trial.trial_id), self._holder().items())
            session.add(models.TrialHeartbeatModel(trial_id=int(trial.trial_id)))
        return trial

    def _holder(self) -> dict[str, Any]:
        """The attributes of a trial this worker starts: its name, process and grace
        period."""
        return {_WORKER: worker_label(), _HOLDER: process_identity(), **(
            {} if self.grace_period is None else {_GRACE: self.grace_period})}

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        with _create_scoped_session(self.scoped_session, True) as session:
            silent = (session.query(models.TrialModel.trial_id)
                      .outerjoin(models.TrialHeartbeatModel)
                      .filter(models.TrialModel.study_id == study_id,
                              models.TrialModel.state == TrialState.RUNNING,
                              models.TrialHeartbeatModel.trial_id.is_(None)).all())
            session.add_all(models.TrialHeartbeatModel(trial_id=t) for (t,) in silent)
        return list(super()._get_stale_trial_ids(study_id))


def finishing(storage: RDBStorage, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """User attributes to write with the `study.tell` that comes next, in its transaction
    (only if it ends the trial); on a storage not opened here, before it."""
    if isinstance(storage, _Storage):
        storage.finishing(storage_id(trial), attrs)
    else:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)


def open_storage(url: str, liveness: Liveness = DEFAULT_LIVENESS, *,
                 reading: bool = False) -> RDBStorage:
    """The Optuna storage at `url` with heartbeats, retrying schema-creation races;
    `reading`: only read (`status`), so SQLite's transactions need not take the write lock
    (a read-only file refused `BEGIN IMMEDIATE`)."""
    sqlite = url.startswith("sqlite")
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if sqlite else {}

    def connect() -> RDBStorage:
        return _Storage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=liveness.heartbeat_interval,
            grace_period=liveness.grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback())

    with warnings.catch_warnings():  # heartbeats are an "experimental" Optuna argument
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = retrying(connect, f"opening the Optuna storage {url}")
    if sqlite and not reading:
        _serialize_sqlite(storage)
    return storage


def open_study(storage: RDBStorage, name: str, **kwargs: Any) -> optuna.Study:
    """Create or load a study; two workers creating it at the same instant both get it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # nnbench says what it does itself
    return retrying(lambda: optuna.create_study(storage=storage, study_name=name,
                                                load_if_exists=True, **kwargs),
                    f"opening the study {name}")


@dataclass
class Claim:
    """A queue entry this worker holds: one trial to train."""

    number: int  # the Optuna trial number of the entry
    storage_id: int  # Optuna's internal trial id (heartbeats are recorded against it)
    trial_id: str
    spec: TrialSpec


@dataclass
class QueueCounts:
    """Trials of a suite's queue by state, across every worker."""

    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    withdrawn: int = 0  # queued, then dropped by an edit of the suite: not failures
    workers: set[str] = field(default_factory=set)  # holding a claim now
    done_ids: set[str] = field(default_factory=set)  # the trials that are done
    queued_ids: set[str] = field(default_factory=set)  # every trial with an entry, counted or not

    def line(self) -> str:
        return (f"{self.done} done, {self.running} running on {len(self.workers)} worker(s), "
                f"{self.queued} queued, {self.failed} failed"
                + (f", {self.withdrawn} withdrawn (the suite no longer has them)"
                   if self.withdrawn else ""))


class Heartbeats:
    """A thread that records a heartbeat for every trial this worker holds, and notes the
    held trials that are no longer RUNNING (`lost`: another worker failed them as stale
    while this one was stopped or cut off), so that their training stops at the next epoch
    instead of running to its end for a result the queue will refuse."""

    def __init__(self, storage: RDBStorage, interval: int) -> None:
        self.storage, self.interval = storage, interval
        self.held: set[int] = set()
        self.lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="nnbench-heartbeat",
                                        daemon=True)
        self._thread.start()

    def hold(self, storage_id: int, *, beat: bool = True) -> None:
        if beat:
            retrying(partial(self.storage.record_heartbeat, storage_id),
                     "recording a heartbeat")
        with self._lock:
            self.held.add(storage_id)

    def drop(self, storage_id: int) -> None:
        with self._lock:
            self.held.discard(storage_id)
            self.lost.discard(storage_id)

    def _ended(self, held: Sequence[int]) -> set[int]:
        """Of the `held` trials, those no longer RUNNING (one read)."""
        with _create_scoped_session(self.storage.scoped_session) as session:
            return {int(t) for (t,) in session.query(models.TrialModel.trial_id).filter(
                models.TrialModel.trial_id.in_(held),
                models.TrialModel.state != TrialState.RUNNING)}

    def _beat(self) -> None:
        """Every `interval` s, a heartbeat for each trial held. A beat that still fails after
        an interval of retries is tried again at the next (staleness decides what becomes of
        the trials); the first pass with a failure after passes without is said on stderr,
        and so is the first pass whose beats all succeed after it."""
        failing_since: float | None = None
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self.held)
            failed: Exception | None = None
            for storage_id in held:
                try:
                    retrying(partial(self.storage.record_heartbeat, storage_id),
                             "recording a heartbeat", seconds=self.interval, say=False)
                except Exception as err:  # the next beat tries again; staleness decides
                    failed = err
            if held and failed is None:
                try:
                    ended = self._ended(held)
                except Exception:  # the next beat looks again
                    ended = set()
                with self._lock:
                    self.lost |= ended & self.held
            if failed is not None and failing_since is None:
                failing_since = time.monotonic()
                _log.warning("nnbench: %s cannot record its heartbeats (%s); if they fail past "
                             "the grace period, other workers train its trials again and "
                             "this worker's results for them are not recorded", worker_label(),
                             reason(failed))
            elif failed is None and held and failing_since is not None:
                _log.warning("nnbench: %s records its heartbeats again, after %.0f s",
                             worker_label(), time.monotonic() - failing_since)
                failing_since = None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class TrialQueue:
    """The suite's trials as entries of the Optuna study `<suite>/trials`."""

    def __init__(self, suite_name: str, storage: RDBStorage, liveness: Liveness, *,
                 reading: bool = False) -> None:
        self.suite_name, self.storage, self.liveness = suite_name, storage, liveness
        name = f"{suite_name}/trials"
        # `reading` (status): load the study, never try to create it (a write)
        self.study = retrying(lambda: optuna.load_study(study_name=name, storage=storage),
                              "reading the queue") if reading else \
            open_study(storage, name, direction="maximize")
        self.study_id = self.study._study_id
        self.worker = worker_label()
        self._heartbeats: Heartbeats | None = None
        self._uid = ""
        self._kept: dict[str, int] = {}  # the study attrs this process recorded (keep)

    # -- what is in the queue ------------------------------------------------------------------

    def entries(self, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        wanted = tuple(states) if states is not None else None
        return retrying(lambda: self.storage.get_all_trials(self.study_id, deepcopy=False,
                                                            states=wanted), "reading the queue")

    def counts(self, only: Collection[str] | None = None) -> QueueCounts:
        """Each trial counted once, by its entry that stands for it: done > running >
        queued > failed. `only`: those trial ids (a suite file's), the others left out."""
        counts = QueueCounts()
        latest: dict[str, FrozenTrial] = {}
        for entry in self.entries():
            trial_id = entry.user_attrs.get(_TRIAL_ID)
            if trial_id is None:
                continue
            counts.queued_ids.add(str(trial_id))
            if only is not None and trial_id not in only:
                continue
            if entry.state == TrialState.RUNNING:
                counts.workers.add(str(entry.user_attrs.get(_WORKER, "?")))
            best = latest.get(trial_id)
            if best is None or _rank(entry) > _rank(best):
                latest[trial_id] = entry
        outcomes = Counter(_outcome(e) for e in latest.values())
        counts.queued, counts.running = outcomes["queued"], outcomes["running"]
        counts.done, counts.failed = outcomes["done"], outcomes["failed"]
        counts.withdrawn = outcomes["withdrawn"]
        counts.done_ids = {t for t, e in latest.items() if _outcome(e) == "done"}
        return counts

    def graces(self) -> dict[str, tuple[int | None, str]]:
        """Per worker holding a claim, the grace period and process it recorded with it
        (`holder_graces`)."""
        return holder_graces(self.entries((TrialState.RUNNING,)))

    def silence(self) -> dict[str, float]:
        """Per worker holding a claim, the seconds since its latest heartbeat by the server's
        clock (which `reap` goes by; the longest silence where it holds several)."""
        return heartbeat_silence(self.storage, self.entries((TrialState.RUNNING,)))

    def kept(self, what: str, device_type: str) -> int | None:
        """The suite's kept `what` ("lanes", "threads") on this kind of device (`keep`),
        or None before the first."""
        assert what in _KEPT, what
        attrs = retrying(lambda: self.storage.get_study_user_attrs(self.study_id),
                         "reading the queue")
        value = attrs.get(f"nnbench.{what}.{device_type}")
        return int(value) if value else None

    def keep(self, what: str, device_type: str, value: int) -> int:
        """Record, once, a choice of the suite's first trials on this kind of device that
        changes their numbers, and return the one recorded (another worker's, where it came
        first): the trials the suite gains later (more seeds, a new level), and every
        worker, train with it, and its results stay of one numerics. "lanes": the lane
        count of its first group of lanes (adding seeds to the default suite trained the
        new ones as 36, then 42 lanes: three numerics in its report, and 6 trials at the
        cost of 42); "threads": the threads its large serial trials were timed fastest
        with (`engine.fastest_threads`)."""
        assert what in _KEPT, what
        key = f"nnbench.{what}.{device_type}"
        if key in self._kept:  # (one transaction per process, not per trial)
            return self._kept[key]

        def transaction() -> int:
            with self._locked() as session:
                row = session.query(models.StudyUserAttributeModel).filter_by(
                    study_id=self.study_id, key=key).one_or_none()
                if row is not None:
                    return int(json.loads(str(row.value_json)))
                self._set_study_attr(session, key, value)
                return value

        self._kept[key] = retrying(transaction, f"recording the suite's {what}")
        return self._kept[key]

    def done(self) -> set[str]:
        """The trial_ids the queue holds as done (finished or diverged)."""
        return {str(e.user_attrs.get(_TRIAL_ID)) for e in self.entries((TrialState.COMPLETE,))}

    @property
    def uid(self) -> str:
        """This queue's own id (a study attribute made with its layout), with which trial
        runs name their entry: `<uid>:<entry id>` (entry ids repeat across storages)."""
        if not self._uid:
            attrs = retrying(lambda: self.storage.get_study_user_attrs(self.study_id),
                             "reading the queue's id")
            self._uid = str(attrs.get("nnbench.queue_uid", ""))
        return self._uid

    def entry_tag(self, claim: Claim) -> str:
        return f"{self.uid}:{claim.storage_id}"

    def ended(self, tag: str, trial_id: str) -> tuple[str, str] | None:
        """(status, note) of the entry a trial run names (`entry_tag`) once it has ended;
        None while it waits or runs. An entry failed as stale says `killed` whatever its
        worker meant to record; an entry that is not this queue's (the storage was replaced
        meanwhile) says `killed` too: nothing holds that attempt any more."""
        uid, _, number = tag.rpartition(":")
        entry = None
        if uid == self.uid and number.isdigit():
            entry = retrying(partial(self._entry, int(number)), "reading an entry")
        if entry is None or entry.user_attrs.get(_TRIAL_ID) != trial_id:
            return "killed", (f"its queue entry {tag} is not in the queue at "
                              f"{self.storage.url}; no worker holds this attempt")
        if not entry.state.is_finished():
            return None
        status = str(entry.user_attrs.get(_STATUS, ""))
        if entry.state == TrialState.COMPLETE:
            return status or "finished", ""
        return (status if status in ("failed", "killed") else "killed",
                str(entry.user_attrs.get(_OUTCOME, "")))

    def _entry(self, storage_id: int) -> FrozenTrial | None:
        """The entry of this queue with that id, if there is one."""
        try:
            entry = self.storage.get_trial(storage_id)
            mine = self.storage.get_trial_id_from_study_id_trial_number(self.study_id,
                                                                       entry.number)
        except KeyError:
            return None
        return entry if mine == storage_id else None

    # -- queueing: one transaction under the study's lock ------------------------------------

    def migrated(self) -> bool:
        """Is the queue in this layout (else `sync` migrates it)? One written by a newer
        nnbench is refused."""
        attrs = retrying(lambda: self.storage.get_study_user_attrs(self.study_id),
                         "reading the queue's layout")
        layout = int(attrs.get("nnbench.layout", 0))
        if layout > LAYOUT:
            raise UsageError(f"--storage {self.storage.url}: the queue of suite "
                             f"{self.suite_name!r} was written by a newer nnbench (layout "
                             f"{layout}; this one knows {LAYOUT}): upgrade nnbench")
        return layout == LAYOUT

    def sync(self, specs: Sequence[TrialSpec], *, keep: Collection[str] | None = None,
             store: str = "", tracking_uri: str = "", done_before: Collection[str] = ()
             ) -> int:
        """Queue each trial of `specs` that has no entry waiting, running or done; returns
        how many were queued. `keep`: waiting entries of trials not in it are withdrawn (the
        suite was edited). `store`: the MLflow experiment the queue's trials are recorded
        in (`Tracker.identity`, of the store at `tracking_uri`); a queue made for another
        refuses (`QueueElsewhere`). `done_before`: trials a
        store written before the queue was the only record holds as done (MLflow's),
        recorded as done on the queue's first sync under this layout, once."""

        def transaction() -> int:
            with self._locked() as session:
                attrs = _attrs(session.query(models.StudyUserAttributeModel)
                               .filter_by(study_id=self.study_id))
                if store and attrs.get("nnbench.mlflow", store) != store:
                    raise QueueElsewhere(self.storage.url, self.suite_name,
                                         attrs["nnbench.mlflow"], store, tracking_uri)
                if attrs.get("nnbench.layout", 0) < LAYOUT:
                    self._migrate(session, set(done_before))
                if store and "nnbench.mlflow" not in attrs:
                    self._set_study_attr(session, "nnbench.mlflow", store)
                if keep is not None:
                    self._withdraw(session, keep)
                session.flush()
                return self._top_up(session, specs, self._states(session))

        return retrying(transaction, "queueing the suite's trials")

    def _migrate(self, session: Session, done_before: set[str]) -> None:
        """From the layout in which MLflow said what was done (`done_before`): the queue
        then had no entry for a trial MLflow held as done, and could hold twin waiting
        entries, waiting entries of done trials, and complete entries whose MLflow run never
        got its status. MLflow's word stands: its done trials get a complete entry, other
        complete entries fail (their trials train again), and of the waiting entries only
        the first of each trial that is not done stays."""
        waiting: set[str] = set()
        for entry in session.query(models.TrialModel).filter_by(
                study_id=self.study_id).order_by(models.TrialModel.trial_id).with_for_update():
            trial_id = _attrs(entry.user_attributes).get(_TRIAL_ID)
            if entry.state == TrialState.COMPLETE and trial_id not in done_before:
                entry.state = TrialState.FAIL  # (a finished entry takes no attributes)
                outcome = next((a for a in entry.user_attributes if a.key == _OUTCOME), None)
                if outcome is None:
                    outcome = models.TrialUserAttributeModel(trial_id=entry.trial_id,
                                                             key=_OUTCOME)
                    session.add(outcome)
                outcome.value_json = json.dumps(
                    "failed: done in the queue, not in MLflow (earlier layout)")
            elif entry.state == TrialState.WAITING and (trial_id in done_before
                                                        or trial_id in waiting):
                self._end_entry(session, entry, TrialState.FAIL, "failed",
                                "withdrawn: done or queued twice (earlier layout)")
            elif entry.state == TrialState.WAITING:
                waiting.add(str(trial_id))
        session.flush()
        done = self._states(session).get(TrialState.COMPLETE, set())
        for trial_id in done_before - done:
            self._add(session, trial_id, None, TrialState.COMPLETE)
        self._set_study_attr(session, "nnbench.layout", LAYOUT)
        self._set_study_attr(session, "nnbench.queue_uid", uuid.uuid4().hex[:12])

    @contextmanager
    def _locked(self) -> Iterator[Session]:
        with _create_scoped_session(self.storage.scoped_session) as session:
            models.StudyModel.find_or_raise_by_id(self.study_id, session, for_update=True)
            yield session

    def _states(self, session: Session) -> dict[TrialState, set[str]]:
        """Trial ids by the states of their entries."""
        rows = (session.query(models.TrialUserAttributeModel.value_json,
                              models.TrialModel.state)
                .join(models.TrialModel,
                      models.TrialModel.trial_id == models.TrialUserAttributeModel.trial_id)
                .filter(models.TrialModel.study_id == self.study_id,
                        models.TrialUserAttributeModel.key == _TRIAL_ID))
        states: dict[TrialState, set[str]] = {}
        for value, state in rows:
            states.setdefault(state, set()).add(json.loads(value))
        return states

    def _top_up(self, session: Session, specs: Iterable[TrialSpec],
                states: dict[TrialState, set[str]]) -> int:
        """Add a waiting entry for each trial with none waiting, running or complete."""
        held = set().union(*(states.get(s, set()) for s in (
            TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)))
        added = 0
        for spec in specs:
            if spec.trial_id not in held:
                held.add(spec.trial_id)
                self._add(session, spec.trial_id, spec, TrialState.WAITING)
                added += 1
        return added

    def _add(self, session: Session, trial_id: str, spec: TrialSpec | None,
             state: TrialState) -> None:
        attrs: dict[str, Any] = {_TRIAL_ID: trial_id}
        if spec is not None:
            attrs[_SPEC] = json.dumps(spec.canonical(), sort_keys=True)
        else:
            attrs[_OUTCOME] = "done: recorded in MLflow before the queue was the only record"
        template = create_trial(state=state, user_attrs=attrs,
                                value=1.0 if state == TrialState.COMPLETE else None)
        self.storage._get_prepared_new_trial(self.study_id, template, session)

    def _set_study_attr(self, session: Session, key: str, value: Any) -> None:
        attribute = session.query(models.StudyUserAttributeModel).filter_by(
            study_id=self.study_id, key=key).one_or_none()
        if attribute is None:
            session.add(models.StudyUserAttributeModel(study_id=self.study_id, key=key,
                                                       value_json=json.dumps(value)))
        else:
            attribute.value_json = json.dumps(value)
        session.flush()

    def _withdraw(self, session: Session, keep: Collection[str]) -> None:
        """Waiting entries of trials not in `keep` end (withdrawn); running ones train on
        and are recorded, but are marked so that neither a kill nor staleness queues them
        again (`reap`, `release`); the mark goes when a later sync keeps the trial again."""
        for entry in session.query(models.TrialModel).filter(
                models.TrialModel.study_id == self.study_id, models.TrialModel.state.in_(
                    (TrialState.WAITING, TrialState.RUNNING))).with_for_update():
            attrs = _attrs(entry.user_attributes)
            kept = attrs.get(_TRIAL_ID) in keep
            if entry.state == TrialState.WAITING and not kept:
                self._end_entry(session, entry, TrialState.FAIL, "failed",
                                "withdrawn: no longer a trial of the suite")
            elif entry.state == TrialState.RUNNING and attrs.get(_WITHDRAWN, False) != (not kept):
                _set_attrs(self.storage, session, int(entry.trial_id), [(_WITHDRAWN, not kept)])

    def _end_entry(self, session: Session, entry: models.TrialModel, state: TrialState,
                   status: str, outcome: str) -> None:
        _set_attrs(self.storage, session, int(entry.trial_id),
                   [(_STATUS, status), (_OUTCOME, outcome[:500])])
        if state == TrialState.COMPLETE:
            self.storage._set_trial_value_without_commit(session, entry, 0, 1.0)
        entry.state, entry.datetime_complete = state, datetime.now()

    # -- claims -------------------------------------------------------------------------------

    def reap(self) -> int:
        """Fail the entries whose worker stopped sending heartbeats (by the server's clock)
        and queue their trials again, in one transaction; returns how many."""
        stale = retrying(lambda: self.storage._get_stale_trial_ids(self.study_id),
                         "finding stale claims")
        gone = _gone_here(self.entries((TrialState.RUNNING,)))
        if not stale and not gone:
            return 0
        grace = timedelta(seconds=self.liveness.grace_period)

        def transaction() -> int:
            with self._locked() as session:
                failed, ended = [], _still_stale(session, stale, grace, gone)
                for entry, silence in ended:
                    attrs = _attrs(entry.user_attributes)
                    self._end_entry(session, entry, TrialState.FAIL, "killed", (
                        f"stale: its worker ({attrs.get(_WORKER, '?')}) " + (
                            f"sent no heartbeat for over {silence} s; " if silence else
                            "has ended (no such process on this machine); ") + (
                            "not queued again: no longer a trial of the suite"
                            if attrs.get(_WITHDRAWN) else "queued again")))
                    if _SPEC in attrs and not attrs.get(_WITHDRAWN):
                        failed.append(TrialSpec.from_canonical(json.loads(attrs[_SPEC])))
                session.flush()
                self._top_up(session, failed, self._states(session))
                return len(ended)

        return retrying(transaction, "failing stale claims")

    def claim(self, n: int, parent_run_id: str | None = None) -> list[Claim]:
        """Take up to `n` waiting entries; each is this worker's until released or stale."""
        claims: list[Claim] = []
        heartbeats = self.heartbeats()
        while len(claims) < n:
            taken = self._claim_once(parent_run_id or "")
            if taken is None:
                break
            heartbeats.hold(taken, beat=False)
            entry = retrying(partial(self.storage.get_trial, taken), "reading a claimed trial")
            claims.append(Claim(entry.number, taken, str(entry.user_attrs[_TRIAL_ID]),
                                TrialSpec.from_canonical(json.loads(entry.user_attrs[_SPEC]))))
        return claims

    def _claim_once(self, parent_run_id: str) -> int | None:
        """`_claim_one`, retried (`retrying_once`): a retry first takes back the entry its
        earlier try may have claimed before the connection was lost, found by the one-time
        token that try wrote on it."""
        token = uuid.uuid4().hex

        def find() -> int | None:
            return next((storage_id(e) for e in self.storage.get_all_trials(
                self.study_id, deepcopy=False, states=(TrialState.RUNNING,))
                if e.user_attrs.get(_CLAIM_TOKEN) == token), None)

        return retrying_once("claiming a trial", partial(self._claim_one, parent_run_id, token),
                             find)

    def _claim_one(self, parent_run_id: str, token: str = "") -> int | None:
        """The lowest waiting entry no other worker is taking, moved to RUNNING with its first
        heartbeat and this worker's name, in one transaction."""
        with _create_scoped_session(self.storage.scoped_session) as session:
            entry = (session.query(models.TrialModel)
                     .filter_by(study_id=self.study_id, state=TrialState.WAITING)
                     .order_by(models.TrialModel.trial_id)
                     .with_for_update(skip_locked=True).first())
            if entry is None:
                return None
            storage_id = int(entry.trial_id)
            entry.state, entry.datetime_start = TrialState.RUNNING, datetime.now()
            session.add(models.TrialHeartbeatModel(trial_id=storage_id))
            session.flush()
            _set_attrs(self.storage, session, storage_id, [
                (_WORKER, self.worker), (_GRACE, self.liveness.grace_period),
                (_HOLDER, process_identity()), ("nnbench.parent_run", parent_run_id),
                (_CLAIM_TOKEN, token)])
            return storage_id

    def release(self, claim: Claim, status: str, note: str = "") -> bool:
        """End a claim with the trial's status: done (finished, diverged) makes the entry
        COMPLETE, anything else FAIL; a killed trial (its worker interrupted: Ctrl-C,
        SIGTERM) is queued again in the same transaction, for the other workers. False when
        the claim was lost: it went stale, and the trial was queued again. (A retried
        release whose first try did commit, its connection lost on the way back, finds its
        own ending: True.)"""
        state = TrialState.COMPLETE if status in ("finished", "diverged") else TrialState.FAIL

        def transaction() -> bool:
            # a killed trial's new entry takes the study's lock first, as every other new
            # entry does (`sync`, `reap`): Optuna numbers an entry by counting those before
            # it, and two inserts at once would get one number
            with (self._locked() if status == "killed" else
                  _create_scoped_session(self.storage.scoped_session)) as session:
                entry = (session.query(models.TrialModel).filter_by(trial_id=claim.storage_id)
                         .with_for_update().one())
                attrs = _attrs(entry.user_attributes)
                if entry.state != TrialState.RUNNING:
                    return bool(entry.state == state and attrs.get(_WORKER)
                                == self.worker and attrs.get(_STATUS) == status)
                self._end_entry(session, entry, state, status,
                                status + (f": {note}" if note else ""))
                if status == "killed" and not attrs.get(_WITHDRAWN):
                    session.flush()
                    self._top_up(session, [claim.spec], self._states(session))
                return True

        try:
            return retrying(transaction, "releasing a claim")
        finally:
            if self._heartbeats is not None:
                self._heartbeats.drop(claim.storage_id)

    def heartbeats(self) -> Heartbeats:
        if self._heartbeats is None:
            self._heartbeats = Heartbeats(self.storage, self.liveness.heartbeat_interval)
        return self._heartbeats

    def close(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.stop()
            self._heartbeats = None


def holder_graces(running: Iterable[FrozenTrial]) -> dict[str, tuple[int | None, str]]:
    """Per worker of the `running` trials, the grace period it recorded with its claims
    (`nnbench.grace`; None before this was recorded: reapers wait for it where it is longer
    than theirs) and its process (`nnbench.holder`: one gone from this machine is reaped
    at once); `status` says which."""
    out: dict[str, tuple[int | None, str]] = {}
    for trial in running:
        worker = str(trial.user_attrs.get(_WORKER, "?"))
        grace, holder = trial.user_attrs.get(_GRACE), str(trial.user_attrs.get(_HOLDER, ""))
        grace = grace if isinstance(grace, int) else None
        before, _ = out.get(worker, (None, ""))
        out[worker] = (max(grace or 0, before or 0) or None, holder)
    return out


def heartbeat_silence(storage: RDBStorage, running: Iterable[FrozenTrial]
                      ) -> dict[str, float]:
    """Per worker (`nnbench.worker`) of the `running` trials (a queue's claims, a tuning
    study's trials), the seconds since its latest heartbeat by the server's clock (which
    reaping goes by; the longest silence where it holds several)."""
    workers = {t._trial_id: str(t.user_attrs.get(_WORKER, "?")) for t in running}

    def read() -> dict[str, float]:
        with _create_scoped_session(storage.scoped_session) as session:
            now = session.execute(func.now()).scalar()
            assert now is not None
            beats = session.query(models.TrialHeartbeatModel).filter(
                models.TrialHeartbeatModel.trial_id.in_(workers)).all()
            out: dict[str, float] = {}
            for beat in beats:
                age = (now.replace(tzinfo=None) - beat.heartbeat).total_seconds()
                worker = workers[int(beat.trial_id)]
                out[worker] = max(age, out.get(worker, age))
            return out

    return retrying(read, "reading the heartbeats") if workers else {}


def reap(study: optuna.Study) -> None:
    """Fail a tuning study's trials whose heartbeat is older than the grace period (any
    host, the server's clock) and queue a copy of each (the storage's
    RetryHeartbeatStaleTrialCallback's), in one transaction. (Optuna's `fail_stale_trials`
    commits the failures, then adds each copy in a transaction of its own: a worker killed
    between the two, or a retry after a session ended, left a failed trial with no copy, a
    grid point never trained.)"""
    storage = getattr(study._storage, "_backend", study._storage)
    callback = storage.get_heartbeat_stale_trial_callback() \
        if isinstance(storage, _Storage) else None
    if not isinstance(storage, _Storage) or storage.heartbeat_interval is None \
            or not isinstance(callback, RetryHeartbeatStaleTrialCallback):
        # a storage not opened here (`open_storage`): Optuna's own, which does nothing
        # without heartbeats
        with warnings.catch_warnings():  # Optuna marks the function "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retrying(lambda: optuna.storages.fail_stale_trials(study), "failing stale trials")
        return
    study_id = study._study_id
    stale = retrying(lambda: storage._get_stale_trial_ids(study_id), "finding stale trials")
    gone = _gone_here(retrying(lambda: study.get_trials(
        deepcopy=False, states=(TrialState.RUNNING,)), "reading the running trials"))
    if not stale and not gone:
        return
    grace = timedelta(seconds=storage.grace_period or 2 * storage.heartbeat_interval)

    def transaction() -> None:
        with _create_scoped_session(storage.scoped_session) as session:
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            for entry, _ in _still_stale(session, stale, grace, gone):
                entry.state, entry.datetime_complete = TrialState.FAIL, datetime.now()
                session.flush()
                copies = _Copies()  # what the callback would add (none past max_retry)
                callback(cast(optuna.Study, copies),
                         storage._build_frozen_trial_from_trial_model(entry))
                for copy in copies.trials:
                    storage._get_prepared_new_trial(study_id, copy, session)

    retrying(transaction, "failing stale trials")


def fail_waiting(study: optuna.Study, attrs: dict[str, Any]) -> None:
    """Fail the study's WAITING trials that carry no values (copies of trials that failed
    before drawing any: one queued with values holds a point someone must train), or that
    were queued in place of a repeat (`INSTEAD`: any untried point would do, and the budget
    is met; its worker died before it took it), each with
    the user attributes `attrs`, in one transaction under the study's lock (a copy a worker
    pops meanwhile is skipped by Optuna's `ask`, which then draws a trial of its own)."""
    storage = cast(RDBStorage, getattr(study._storage, "_backend", study._storage))
    study_id = study._study_id

    def transaction() -> None:
        with _create_scoped_session(storage.scoped_session) as session:
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            for entry in (session.query(models.TrialModel)
                          .filter(models.TrialModel.study_id == study_id,
                                  models.TrialModel.state == TrialState.WAITING)
                          .with_for_update().all()):
                system = {a.key for a in entry.system_attributes}
                if (entry.params or "fixed_params" in system) and not (
                        any(a.key == INSTEAD for a in entry.user_attributes)
                        and "failed_trial" not in system):  # (a stale one's copy inherits
                    continue  # its user attributes: it holds a point someone must train)
                _set_attrs(storage, session, int(entry.trial_id), attrs.items())
                now = datetime.now()  # (a trial that ended has a start: Optuna checks)
                entry.state, entry.datetime_start, entry.datetime_complete = \
                    TrialState.FAIL, entry.datetime_start or now, now

    retrying(transaction, "failing queued copies no one needs")


def _holder_gone(attrs: dict[str, Any]) -> bool:
    """Whether the process a trial's attributes record has ended on this machine
    (`transient.process_gone`)."""
    return process_gone(str(attrs.get(_WORKER, "")), str(attrs.get(_HOLDER, "")))


def _gone_here(running: Iterable[FrozenTrial]) -> set[int]:
    """Of the `running` trials, those whose holder was a process of this machine that has
    ended."""
    return {int(t._trial_id) for t in running if _holder_gone(t.user_attrs)}


def _still_stale(session: Session, stale: Sequence[int], grace: timedelta,
                 gone: Collection[int] = ()) -> list[tuple[models.TrialModel, int]]:
    """Of the `stale` trials, those still RUNNING and silent for `grace`, or for their
    holder's own grace period where it is longer, by the server's clock, and of the `gone`
    ones, those whose holder has still ended (0: not waited for), now that the caller holds
    the study's lock, locked for update (rows another worker holds are skipped: the next
    reap finds them); each with the grace it outlasted, in seconds."""
    now = session.execute(func.now()).scalar()
    assert now is not None
    now = now.replace(tzinfo=None)
    candidates = (session.query(models.TrialModel, models.TrialHeartbeatModel.heartbeat)
                  .outerjoin(models.TrialHeartbeatModel)
                  .filter(models.TrialModel.trial_id.in_({*stale, *gone}),
                          models.TrialModel.state == TrialState.RUNNING)
                  .with_for_update(skip_locked=True, of=models.TrialModel))
    ended = []
    for entry, beat in candidates:
        attrs = _attrs(entry.user_attributes)
        if int(entry.trial_id) in gone and _holder_gone(attrs):
            ended.append((entry, 0))
            continue
        holder = attrs.get(_GRACE)
        longest = max(grace, timedelta(seconds=holder if isinstance(holder, int) else 0))
        if beat is not None and beat < now - longest:
            ended.append((entry, int(longest.total_seconds())))
    return ended


class _Copies:
    """The study as the RetryHeartbeatStaleTrialCallback sees it in `reap` (it only adds the
    copy): keeps the copies it adds, which `reap` then writes in its own transaction."""

    def __init__(self) -> None:
        self.trials: list[FrozenTrial] = []

    def add_trial(self, trial: FrozenTrial) -> None:
        self.trials.append(trial)


@contextmanager
def heartbeats(storage: RDBStorage, interval: int) -> Iterator[Heartbeats]:
    """A heartbeat thread for the trials held while the block runs (tuning's Optuna
    trials: each held as soon as it is asked)."""
    beats = Heartbeats(storage, interval)
    try:
        yield beats
    finally:
        beats.stop()


def storage_id(trial: optuna.Trial | FrozenTrial) -> int:
    """Optuna's internal id of a trial: what heartbeats are recorded against."""
    return int(trial._trial_id)


def _attrs(rows: Iterable[Any]) -> dict[str, Any]:
    """Rows of an Optuna attribute table as a dict."""
    return {str(a.key): json.loads(a.value_json) for a in rows}


def _outcome(entry: FrozenTrial) -> str:
    if entry.state == TrialState.FAIL and \
            str(entry.user_attrs.get(_OUTCOME, "")).startswith("withdrawn"):
        return "withdrawn"
    return {TrialState.WAITING: "queued", TrialState.RUNNING: "running",
            TrialState.COMPLETE: "done"}.get(entry.state, "failed")


def _rank(entry: FrozenTrial) -> tuple[int, int]:
    """Which entry stands for a trial: done > running > queued > failed (or withdrawn),
    then the latest."""
    order = {"done": 3, "running": 2, "queued": 1, "failed": 0,
             "withdrawn": 0}[_outcome(entry)]
    return order, entry.number
