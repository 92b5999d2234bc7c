"""The trial queue: an Optuna storage that every worker of a suite shares.

One module owns everything that touches Optuna storages: opening them (races on a
fresh store retried), the queue of a suite's trials, claims, heartbeats, and the
handling of workers that stop answering. Optuna does the hard parts:

- **claims**: a worker pops a WAITING trial by moving it to RUNNING in one transaction
  (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite nnbench makes every transaction
  `BEGIN IMMEDIATE`, so a read-then-update cannot interleave with another worker's);
  a trial is claimed by exactly one worker;
- **heartbeats**: while a worker holds a claim it records a heartbeat every
  `heartbeat_interval` seconds, stamped with the *database server's* clock, so it means
  the same on every host;
- **stale workers**: a RUNNING trial whose heartbeat is older than `grace_period` seconds
  (its worker died, hung, or lost its network, on any host) is failed by whichever
  worker looks next (`optuna.storages.fail_stale_trials`), and Optuna's
  `RetryHeartbeatStaleTrialCallback` queues a copy of it (same trial, same Optuna
  parameters), which another worker then trains. A worker records a trial's first
  heartbeat right after claiming it; one killed in between leaves a RUNNING trial with
  no heartbeat at all, which Optuna would never call stale: nnbench's storage counts it
  stale once it started longer than `grace_period` ago.

A suite's grid/ablate trials (and a tuned suite's re-runs) are entries of the study
`<suite>/trials`, one per trial to train, carrying the trial's `trial_id` and its spec
(`TrialSpec.canonical()`), enqueued idempotently by trial_id. Optuna search trials of
tuning live in the studies `<suite>/<config_id>` of the same storage, with the same
heartbeats. Queue entries end COMPLETE (the trial is done: finished or diverged) or FAIL
(failed, killed, withdrawn, a duplicate, or stale); a later `nnbench run` enqueues what
is still not done.

Storages: `sqlite:///path/optuna.db` on one machine (no server; several local worker
processes), PostgreSQL for many machines (`postgresql+psycopg://user@host/db`).
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.orm import selectinload

from nnbench.config import TrialSpec
from nnbench.transient import retrying, worker_label

__all__ = [
    "DEFAULT_LIVENESS",
    "Claim",
    "Heartbeats",
    "Liveness",
    "QueueCounts",
    "TrialQueue",
    "default_storage",
    "heartbeats",
    "open_storage",
    "open_study",
    "reap",
    "storage_id",
]

@dataclass(frozen=True)
class Liveness:
    """How workers show they are alive, and how long silence is tolerated."""

    heartbeat_interval: int = 10  # seconds between a worker's heartbeats
    grace_period: int = 60  # seconds without one before a worker's trials are re-queued


DEFAULT_LIVENESS = Liveness()


def default_storage(tracking_uri: str) -> str:
    """`sqlite:///.../optuna.db` next to a SQLite MLflow store, else in the working dir."""
    if tracking_uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).parent / 'optuna.db'}"
    return f"sqlite:///{Path.cwd() / 'optuna.db'}"


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


class _Storage(RDBStorage):
    """RDBStorage whose stale trials include RUNNING trials that never recorded a
    heartbeat (their worker died between claiming and its first heartbeat) and started
    more than the grace period ago. Their start is the claiming host's clock, unlike
    heartbeats: a misjudged one is failed and queued again, never recorded twice."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        stale = super()._get_stale_trial_ids(study_id)
        grace = timedelta(seconds=self.grace_period or 2 * (self.heartbeat_interval or 0))
        now = datetime.now()
        with _create_scoped_session(self.scoped_session, True) as session:
            silent = (session.query(models.TrialModel)
                      .options(selectinload(models.TrialModel.heartbeats))
                      .filter(models.TrialModel.state == TrialState.RUNNING)
                      .filter(models.TrialModel.study_id == study_id).all())
            for trial in silent:
                started = trial.datetime_start
                if not trial.heartbeats and started is not None and now - started > grace:
                    stale.append(int(trial.trial_id))
        return stale


def open_storage(url: str, liveness: Liveness = DEFAULT_LIVENESS) -> RDBStorage:
    """The Optuna storage at `url` with heartbeats, retrying schema-creation races."""
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
    if sqlite:
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
    workers: set[str] = field(default_factory=set)  # holding a claim now

    def line(self) -> str:
        return (f"{self.done} done, {self.running} running on {len(self.workers)} worker(s), "
                f"{self.queued} queued, {self.failed} failed")


class Heartbeats:
    """A thread that records a heartbeat for every trial this worker holds."""

    def __init__(self, storage: RDBStorage, interval: int) -> None:
        self.storage, self.interval = storage, interval
        self.held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="nnbench-heartbeat",
                                        daemon=True)
        self._thread.start()

    def hold(self, storage_id: int) -> None:
        retrying(partial(self.storage.record_heartbeat, storage_id), "recording a heartbeat")
        with self._lock:
            self.held.add(storage_id)

    def drop(self, storage_id: int) -> None:
        with self._lock:
            self.held.discard(storage_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self.held)
            for storage_id in held:
                try:
                    retrying(partial(self.storage.record_heartbeat, storage_id),
                             "recording a heartbeat", seconds=self.interval)
                except Exception:  # the next beat tries again; staleness decides
                    continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class TrialQueue:
    """The suite's trials as entries of the Optuna study `<suite>/trials`."""

    def __init__(self, suite_name: str, storage: RDBStorage, liveness: Liveness) -> None:
        self.suite_name, self.storage, self.liveness = suite_name, storage, liveness
        self.study = open_study(storage, f"{suite_name}/trials", direction="maximize")
        self.worker = worker_label()
        self._heartbeats: Heartbeats | None = None

    # -- what is in the queue ------------------------------------------------------------------

    def entries(self, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        wanted = tuple(states) if states is not None else None
        return retrying(lambda: self.study.get_trials(deepcopy=False, states=wanted),
                        "reading the queue")

    def counts(self) -> QueueCounts:
        counts = QueueCounts()
        latest: dict[str, FrozenTrial] = {}
        for entry in self.entries():
            trial_id = entry.user_attrs.get("nnbench.trial_id")
            if trial_id is None:
                continue
            if entry.state == TrialState.RUNNING:
                counts.workers.add(str(entry.user_attrs.get("nnbench.worker", "?")))
            best = latest.get(trial_id)
            if best is None or _rank(entry) > _rank(best):
                latest[trial_id] = entry
        outcomes = Counter(_outcome(e) for e in latest.values())
        counts.queued, counts.running = outcomes["queued"], outcomes["running"]
        counts.done, counts.failed = outcomes["done"], outcomes["failed"]
        return counts

    def enqueue(self, specs: Sequence[TrialSpec], as_of: float | None = None) -> int:
        """Queue every trial of `specs` (the ones MLflow did not hold as done when it was
        read at `as_of`, a `time.time()`; default now) that has no waiting or running entry
        yet.

        Several workers enqueueing at once may queue a trial twice; `claim` drops the
        extra entry, so duplicates never train twice. Each entry carries the time MLflow
        was read for it (`nnbench.queued_at`, this host's clock) for that.
        """
        held = {e.user_attrs.get("nnbench.trial_id") for e in self.entries(
            (TrialState.WAITING, TrialState.RUNNING))}
        added = 0
        for spec in specs:
            if spec.trial_id in held:
                continue
            held.add(spec.trial_id)
            attrs = {"nnbench.trial_id": spec.trial_id,
                     "nnbench.spec": json.dumps(spec.canonical(), sort_keys=True),
                     "nnbench.queued_at": time.time() if as_of is None else as_of}
            retrying(partial(self.study.enqueue_trial, {}, user_attrs=attrs), "queueing a trial")
            added += 1
        return added

    def withdraw(self, keep: set[str]) -> int:
        """Fail waiting entries whose trial is no longer in the suite (it was edited)."""
        withdrawn = 0
        for entry in self.entries((TrialState.WAITING,)):
            if entry.user_attrs.get("nnbench.trial_id") in keep:
                continue
            try:
                self._note(entry._trial_id, "withdrawn: no longer a trial of the suite")
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker took it meanwhile
            if self._set_state(entry._trial_id, TrialState.FAIL):
                withdrawn += 1
        return withdrawn

    # -- claims -------------------------------------------------------------------------------

    def reap(self) -> None:
        """Fail entries whose worker stopped sending heartbeats; Optuna queues a copy."""
        reap(self.study)

    def claim(self, n: int, parent_run_id: str | None = None) -> list[Claim]:
        """Pop up to `n` waiting entries; each is this worker's until released or stale.

        An entry whose trial another worker already holds under an earlier entry (two
        workers enqueued it at the same instant) is released as a duplicate. Whether the
        trial is already done is MLflow's to say: the worker checks before training.
        """
        claims: list[Claim] = []
        heartbeats = self.heartbeats()
        while len(claims) < n:
            storage_id = retrying(self.study._pop_waiting_trial_id, "claiming a trial")
            if storage_id is None:
                break
            heartbeats.hold(storage_id)
            entry = retrying(partial(self.storage.get_trial, storage_id),
                             "reading a claimed trial")
            for key, value in (("nnbench.worker", self.worker),
                               ("nnbench.parent_run", parent_run_id or "")):
                retrying(partial(self.storage.set_trial_user_attr, storage_id, key, value),
                         "stamping a claim")
            spec_json = entry.user_attrs.get("nnbench.spec")
            duplicate = self._duplicate_of(entry)
            if spec_json is None or duplicate is not None:
                self._end(storage_id, "duplicate", f"of queue entry {duplicate}"
                          if duplicate is not None else "not a trial entry")
                continue
            claims.append(Claim(entry.number, storage_id,
                                str(entry.user_attrs["nnbench.trial_id"]),
                                TrialSpec.from_canonical(json.loads(spec_json))))
        return claims

    def _duplicate_of(self, entry: FrozenTrial) -> int | None:
        """Another entry of the same trial that makes this one a duplicate: an earlier one
        another claim is running, or one that was done after MLflow was read for this one
        (its worker may still be writing the run's status, so MLflow could not tell).
        An entry done before is history: its result was lost or deleted, and the trial is
        queued to train again. (Not covered: MLflow read after another worker released
        the trial as done but before it wrote the run's status, a window of two MLflow
        writes: workers record a result before they release its entry; the trial then
        trains twice.)"""
        trial_id = entry.user_attrs.get("nnbench.trial_id")
        queued_at = entry.user_attrs.get("nnbench.queued_at")
        for other in self.entries((TrialState.RUNNING, TrialState.COMPLETE)):
            if other.number == entry.number or other.user_attrs.get("nnbench.trial_id") \
                    != trial_id:
                continue
            if other.state == TrialState.RUNNING and other.number < entry.number:
                return other.number
            done = other.datetime_complete
            if other.state == TrialState.COMPLETE and done is not None \
                    and isinstance(queued_at, (int, float)) and done.timestamp() > queued_at:
                return other.number
        return None

    def release(self, claim: Claim, outcome: str, note: str = "") -> bool:
        """End a claim: `done` (COMPLETE), else FAIL with the outcome. False when the claim
        was lost: its heartbeat went stale and the trial was failed and re-queued."""
        return self._end(claim.storage_id, outcome, note)

    def _end(self, storage_id: int, outcome: str, note: str = "") -> bool:
        if self._heartbeats is not None:
            self._heartbeats.drop(storage_id)
        state = TrialState.COMPLETE if outcome == "done" else TrialState.FAIL
        try:  # the outcome first: a finished entry takes no more attributes
            self._note(storage_id, outcome + (f": {note}" if note else ""))
            return bool(retrying(lambda: self.storage.set_trial_state_values(
                storage_id, state, [1.0] if state == TrialState.COMPLETE else None),
                "releasing a claim"))
        except optuna.exceptions.UpdateFinishedTrialError:
            return False

    def holds(self, claim: Claim) -> bool:
        """Is the claim still this worker's (RUNNING, not failed as stale)?"""
        entry = retrying(lambda: self.storage.get_trial(claim.storage_id), "reading a claim")
        return entry.state == TrialState.RUNNING

    def heartbeats(self) -> Heartbeats:
        if self._heartbeats is None:
            self._heartbeats = Heartbeats(self.storage, self.liveness.heartbeat_interval)
        return self._heartbeats

    def close(self) -> None:
        if self._heartbeats is not None:
            self._heartbeats.stop()
            self._heartbeats = None

    def _set_state(self, storage_id: int, state: TrialState) -> bool:
        try:
            return bool(retrying(lambda: self.storage.set_trial_state_values(storage_id, state),
                                 "updating a queue entry"))
        except optuna.exceptions.UpdateFinishedTrialError:
            return False

    def _note(self, storage_id: int, outcome: str) -> None:
        retrying(lambda: self.storage.set_trial_user_attr(storage_id, "nnbench.outcome",
                                                          outcome[:500]), "noting an outcome")


def reap(study: optuna.Study) -> None:
    """Fail the study's trials whose heartbeat is older than the grace period (any host);
    the storage's callback queues a copy of each."""
    with warnings.catch_warnings():  # Optuna marks the function "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retrying(lambda: optuna.storages.fail_stale_trials(study), "failing stale trials")


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


def _outcome(entry: FrozenTrial) -> str:
    if entry.state == TrialState.WAITING:
        return "queued"
    if entry.state == TrialState.RUNNING:
        return "running"
    if entry.state == TrialState.COMPLETE:
        return "done"
    return "failed"


def _rank(entry: FrozenTrial) -> tuple[int, int]:
    """Which entry stands for a trial: done > running > queued > failed, then the latest."""
    order = {"done": 3, "running": 2, "queued": 1, "failed": 0}[_outcome(entry)]
    return order, entry.number
