"""Run a suite: queue what is not done, let workers claim and train it, record everything.

`run_suite(suite)`:

1. syncs the suite's trial queue, an Optuna storage (`nnbench.queue`; by default
   `optuna.db` next to the MLflow store), the one record of which trials are queued,
   running, done or failed: trials with no entry yet (or only failed ones) are queued,
   once, by whichever worker gets there first;
2. works the queue: claims trials (a batch per stacked group), trains them through an
   `Engine`, keeps heartbeats while they train, logs each as a top-level MLflow run
   tagged with this invocation's run (`nnbench.invocation`), records each result while
   its claim is held, releases the claim with the trial's status, then shows that status
   in MLflow; waits while other workers still hold trials (a worker that stops sending
   heartbeats has its trials re-queued after the grace period, and this worker trains
   them). A run left RUNNING by a worker that died after its queue entry ended is given
   the entry's status by the next worker that looks (`_project`);
3. with `workers > 1`, starts that many local `nnbench worker` processes on the same
   queue instead, splitting the cores between them, and shows the suite's progress;
4. once its trials are recorded, brings each configuration's summary run (the seed
   aggregate, `nnbench.role = summary`) up to date in MLflow.

MLflow is never read to decide what to train. Ctrl-C records the trials in flight as
killed and stops; finished trials stay, and the next invocation trains only what is
missing. Any number of workers, on any
number of machines (`nnbench worker`, `nnbench submit`), may share one queue.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from nnbench import provenance, seeding
from nnbench.cli_checks import sqlite_without
from nnbench.config import Suite, TrialSpec
from nnbench.config.expand import METRICS
from nnbench.messages import UsageError, first_line
from nnbench.queue import (
    DEFAULT_LIVENESS,
    Claim,
    Liveness,
    QueueElsewhere,
    TrialQueue,
    default_storage,
    open_storage,
    queue_owner,
)
from nnbench.tracking import Tracker, artifacts_elsewhere, artifacts_problem, store_uri
from nnbench.train import (
    CONTINUE,
    Decision,
    Engine,
    TrialResult,
    make_engine,
    metric_names,
    resolve_device,
    stop,
)
from nnbench.transient import bookkeeping, interrupted, worker_label

__all__ = ["RunSummary", "bookkeeping", "check_artifacts", "open_queue", "open_tracker",
           "run_suite"]


@dataclass
class RunSummary:
    suite: str
    tracking_uri: str
    storage: str  # the trial queue's Optuna storage
    experiment_id: str
    parent_run_id: str | None
    total: int  # trials in the suite
    skipped: int  # already finished before this invocation
    statuses: Counter[str] = field(default_factory=Counter)  # of the trials trained now
    lost: int = 0  # trials whose claim went stale before it was released (others re-run)
    interrupted: bool = False
    worker_codes: list[int] = field(default_factory=list)  # exit codes of local workers
    refused: bool = False  # every local worker refused its input (exit 2): a usage error
    done_after: int = 0  # trials the queue holds as done when the run ended
    device_type: str = "cpu"  # of the device it trains on

    @property
    def trained(self) -> int:
        return sum(self.statuses.values())

    @property
    def complete(self) -> bool:
        """Every trial of the run is done (finished or diverged)."""
        return self.done_after >= self.total


class _Pace:
    """One line of progress on the trials in flight (a stacked group's lanes, or one
    serial trial) at most every `every` seconds: the epoch reached, the trials still
    training, the best validation value so far, and the time left at the pace so far.
    Made of the per-epoch values the engine hands over anyway: no extra host syncs.
    Printed lines, not only the progress bar, so that a run whose output is piped to a
    file or CI log says how far it is."""

    every = 10.0  # seconds between lines

    def __init__(self) -> None:
        self.since = time.monotonic()  # the trials in flight began
        self.last = self.since  # the last line
        self.best: float | None = None
        self.key = ""

    def started(self, in_flight: int) -> None:
        if in_flight == 1:  # a new group (or serial trial): its own pace and best
            self.since = time.monotonic()
            self.best, self.key = None, ""

    def epoch(self, spec: TrialSpec, metrics: dict[str, float], in_flight: int) -> str:
        key = f"val_{metric_names(spec)[0]}"
        value = metrics.get(key)
        if value is not None and value == value:  # nan: a diverging lane is no best
            better = max if METRICS.get(key, True) else min  # val_accuracy: higher
            self.best = value if self.best is None else better(self.best, value)
            self.key = key
        now = time.monotonic()
        if now - self.last < self.every:
            return ""
        self.last = now
        epoch, total = int(metrics["epoch"]), spec.epochs
        left = (now - self.since) / max(epoch, 1) * (total - epoch)
        best = f" | best {self.key} so far {self.best:.4f}" if self.best is not None else ""
        # the last epoch: what is left is the trials' test split and results, not epochs
        tail = "finishing" if epoch >= total else f"about {_duration(left)} left"
        return (f"epoch {epoch}/{total} | {in_flight} trial{'s' if in_flight != 1 else ''} "
                f"training{best} | {tail}")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class _Recorder:
    """Listener that forwards engine events to MLflow and the progress bars."""

    def __init__(self, suite: Suite, tracker: Tracker, parent_run_id: str,
                 tags: dict[str, str], progress: Progress, console: Console,
                 n_todo: int, labels: Mapping[str, str] | None = None) -> None:
        self.suite, self.tracker, self.parent = suite, tracker, parent_run_id
        self.labels = labels or {}  # trial_id -> how it reads (tuned re-runs: rounded)
        self.tags, self.progress, self.console = tags, progress, console
        self.run_ids: dict[str, str] = {}  # trial_id -> MLflow run id, for trials in flight
        self.entries: dict[str, str] = {}  # trial_id -> its claimed queue entry's tag
        self.held: dict[str, int] = {}  # trial_id -> its claim's storage id
        self.lost: set[int] = set()  # claims the queue's heartbeats found failed as stale
        self.trials_bar: TaskID = progress.add_task("trials", total=n_todo)
        self.epochs_bar: TaskID = progress.add_task("epochs", total=1, visible=False)
        self.done = 0
        self.n_todo = n_todo
        self.model_notes: set[str] = set()
        self.pace = _Pace()

    def trial_started(self, spec: TrialSpec) -> bool:
        """Open the trial's MLflow run, tagged with the queue entry this worker claimed."""
        label = self.label(spec)
        tags = {**self.tags, "nnbench.queue_entry": self.entries[spec.trial_id]}
        with bookkeeping():
            self.run_ids[spec.trial_id] = self.tracker.start_trial(self.parent, spec, tags)
        self.progress.reset(self.epochs_bar, total=spec.epochs, visible=True,
                            description=self._in_flight(f"{label} | seed {spec.seed_label}"))
        self.pace.started(len(self.run_ids))
        return True

    def label(self, spec: TrialSpec) -> str:
        return self.labels.get(spec.trial_id) or spec.label(self.suite.varied_axes)

    def _in_flight(self, text: str) -> str:
        n = len(self.run_ids)
        return f"{n} trials in flight; {text}" if n > 1 else text

    def epoch_finished(self, spec: TrialSpec, metrics: dict[str, float]) -> Decision:
        with bookkeeping():
            self.tracker.log_epoch(self.run_ids[spec.trial_id], metrics)
        shown = " ".join(f"{k} {metrics[k]:.4f}" for k in
                         ("val_loss", *(f"val_{m}" for m in metric_names(spec))))
        running = f"{self.label(spec)} | seed {spec.seed_label} | {shown}"
        self.progress.update(self.epochs_bar, completed=int(metrics["epoch"]),
                             description=self._in_flight(running))
        line = self.pace.epoch(spec, metrics, len(self.run_ids))
        if line:
            self.console.print(line, highlight=False)
        if interrupted():  # an interrupt Python ignored (raised in a garbage collection)
            raise KeyboardInterrupt
        if self.held.get(spec.trial_id) in self.lost:  # its result would be refused
            return stop(f"claim lost at epoch {int(metrics['epoch'])}: this worker was silent "
                        f"past the grace period and another worker queued the trial again")
        return CONTINUE

    def record(self, result: TrialResult) -> None:
        """Everything of a trained trial's result but its status, the model included.
        Called inside `bookkeeping`, as are `close` and `ended`."""
        run_id = self.run_ids[result.spec.trial_id]
        model_id = self._log_model(run_id, result)
        self.tracker.record_trial(run_id, result, model_id)

    def close(self, result: TrialResult, status: str, note: str) -> None:
        """Show the status the queue took for the recorded trial (its reason is recorded
        already, unless the status is not the result's)."""
        spec = result.spec
        self.ended(spec.trial_id, status, note if status != result.status else "")
        self.done += 1
        metric = self.suite.metric
        last = (result.final.get(metric) if metric in result.final
                else (result.history[-1].get(metric) if result.history else None))
        reason = result.reason.strip().splitlines()
        shown = f"{metric} {last:.4f}" if last is not None else (reason[-1] if reason else "")
        shown = shown if status == result.status else note
        lanes = result.numerics.lanes
        seconds = f"{result.wall_seconds:.1f}s" + (
            f": 1/{lanes} of its stacked group's {result.wall_seconds * lanes:.1f}s"
            if lanes > 1 else "")
        self.console.print(f"[{self.done}/{self.n_todo}] {self.label(spec)} "
                           f"| seed {spec.seed_label}: {status} {shown} ({seconds})",
                           highlight=False)

    def _log_model(self, run_id: str, result: TrialResult) -> str | None:
        """A finished trial's checkpoint, rebuilt as a model that stands alone, becomes the
        run's MLflow model; a model that could not be logged as pt2 (or at all) is said."""
        checkpoint = result.checkpoint
        if checkpoint is None or result.status != "finished":
            return None
        from nnbench.train import servable

        model_id, note = self.tracker.log_model(run_id, result.spec,
                                                lambda: servable(checkpoint),
                                                step=result.weights_epoch or 0)
        if note and note not in self.model_notes:  # said once, tagged on every run
            self.model_notes.add(note)
            self.console.print(f"{self.label(result.spec)} | seed "
                               f"{result.spec.seed_label}: {note}", highlight=False)
        return model_id

    def claim_lost(self, spec: TrialSpec, ended: tuple[str, str] | None) -> None:
        """The trial's claim went stale while it trained: another worker re-runs it. Its
        run shows how its entry ended (`ended`: killed, as stale)."""
        status, note = ended or ("killed", "")
        self.ended(spec.trial_id, status, note or (
            "this worker's heartbeat went stale while it trained (hung, suspended or cut "
            "off); the queue re-queued the trial for another worker"))
        self.console.print(f"{self.label(spec)} | seed {spec.seed_label}: claim "
                           f"lost (heartbeat stale); not recorded as done", highlight=False)

    def ended(self, trial_id: str, status: str, note: str) -> None:
        """Show a trial's status in its MLflow run, if the run was opened (and is still
        there: a run deleted by hand is said, not shown)."""
        self.entries.pop(trial_id, None)
        run_id = self.run_ids.pop(trial_id, None)
        if run_id is None:
            return
        try:
            self.tracker.show(run_id, status, note)
        except MlflowException as err:
            self.console.print(f"MLflow: run {run_id} cannot show its status {status} "
                               f"({first_line(err)})", highlight=False)


def _provenance(device: str, flags: dict[str, str], extra: dict[str, str] | None
                ) -> dict[str, str]:
    commit = provenance.git_commit()
    return {"nnbench.git_commit": commit, "mlflow.source.git.commit": commit,
            "nnbench.device": provenance.device_name(resolve_device(device)),
            **{f"nnbench.version.{k}": v for k, v in provenance.library_versions().items()},
            **{f"nnbench.deterministic.{k}": v for k, v in flags.items()}, **(extra or {})}


def run_suite(suite: Suite, *, device: str = "auto", tracking_uri: str | None = None,
              storage: str | None = None, engine: str | Engine = "auto",
              lanes: int | None = None, workers: int = 1, threads: int | None = None,
              precision: str = "fp32",
              liveness: Liveness = DEFAULT_LIVENESS, parent_run_id: str | None = None,
              console: Console | None = None, trials: Sequence[TrialSpec] | None = None,
              tags: dict[str, str] | None = None, withdraw: bool = True,
              system_metrics: bool = False, log_models: bool = False,
              lane_population: Sequence[TrialSpec] | None = None,
              labels: Mapping[str, str] | None = None) -> RunSummary:
    """Train every trial of `suite` (or the given `trials`, e.g. tuned re-runs) that the
    trial queue does not hold as done; returns what happened.

    `storage`: the trial queue's Optuna storage (default: optuna.db next to a SQLite
    MLflow store). `engine`: serial, stacked or auto, or an Engine; `lanes`: most lanes of
    a stacked group. `workers`: local worker processes. `threads`: torch threads of each
    training process (default: the engine's policy; a local worker gets cores / workers).
    `precision`: fp32, or tf32 on a GPU that has it (`seeding.configure_determinism`;
    a ValueError on any other device), recorded in each trial's numerics.
    `parent_run_id`: a coordinator's invocation run, which this worker's trials
    name as theirs (`nnbench.invocation`) instead of a run of its own.
    `withdraw`: queued trials that are not in `trials` are withdrawn (the suite changed).
    `system_metrics`: each process that trains logs its machine's utilisation (MLflow's
    system-metrics monitor) to the invocation run, under `system/<worker>/` when it is one
    of several workers of that run.
    `log_models`: every finished trial keeps its checkpoint and logs its MLflow model, as
    the suite's `checkpoint: true` does (the trials and their ids are the same either way).
    `lane_population`: the trials a stacked engine computes its one lane count from
    (default: `trials`, or the suite's), so that a part trained now and the rest trained
    later share it (tuned re-runs: every point, tuned yet or not).
    `labels`: trial_id -> how a trial reads in the progress lines (default: its label;
    tuned re-runs: `config.tune.tuned_label`, as the report reads).
    """
    console = console or Console(stderr=True)
    population = list(trials) if trials is not None else suite.trials()
    # the summaries stand for whole configurations: all of the suite's trials of each
    # (a part given as `trials` must not make the others' summaries look stale)
    members = population if trials is None else list(
        {t.trial_id: t for t in (*suite.trials(), *population)}.values())
    torch_device = resolve_device(device)
    flags = seeding.configure_determinism(precision, torch_device)
    tracker, storage_url = open_tracker(suite, tracking_uri, storage)
    experiment_id = tracker.experiment_id()
    assert experiment_id is not None
    queue = open_queue(suite, tracker, storage_url, liveness)
    queue.reap()
    queue.sync(population, keep={t.trial_id for t in population} if withdraw else None,
               store=tracker.identity(), tracking_uri=tracker.tracking_uri)
    _project(queue, tracker)
    counts = queue.counts()  # (one read of the queue: what is done, and the line below)
    todo = [t for t in population if t.trial_id not in counts.done_ids]
    summary = RunSummary(suite=suite.name, tracking_uri=tracker.tracking_uri,
                         storage=storage_url, experiment_id=experiment_id,
                         parent_run_id=parent_run_id, total=len(population),
                         skipped=len(population) - len(todo),
                         device_type=torch_device.type)
    console.print(f"suite {suite.name}: {len(population)} trials, {summary.skipped} already "
                  f"finished, {len(todo)} to train; queue {storage_url}: {counts.line()}",
                  highlight=False)
    if not todo and not counts.running and not counts.queued:
        queue.close()
        tracker.end_dead_invocations()
        summary.done_after = len(population)
        if parent_run_id is None:  # e.g. a store written before summaries existed
            _refresh_summaries(tracker, members, console)
        return summary
    elsewhere = check_artifacts(tracker)
    if elsewhere is not None:
        console.print(f"warning: experiment {suite.name}'s artifacts (history.csv, "
                      f"checkpoints) go to {elsewhere}, which is not on this machine: this "
                      f"worker writes them to its own disk, where the report and `nnbench "
                      f"evaluate` elsewhere do not find them; use an MLflow server that "
                      f"holds the artifacts (README: Workers)", highlight=False)
    run_tags = _provenance(device, flags, {**provenance.plugin_tags(population), **(tags or {})})
    if summary.parent_run_id is None:
        summary.parent_run_id = tracker.start_invocation(
            {**run_tags, "nnbench.workers": str(workers)}, n_todo=len(todo))
    ended: str | None = "KILLED"  # while an exception escapes (a second Ctrl-C), else below
    try:
        if workers > 1:
            _local_workers(suite, summary, queue, tracker, console, device=device,
                           engine=engine, precision=precision, lanes=lanes,
                           workers=workers, threads=threads, trials=len(population),
                           liveness=liveness, system_metrics=system_metrics,
                           log_models=log_models)
        else:
            if isinstance(engine, str):
                # the lane count the suite's first groups on this kind of device had (at
                # most --lanes) and the threads its first large serial trial was timed
                # fastest with, kept when it gains trials
                kept = queue.kept("lanes", torch_device.type)
                engine = make_engine(engine, torch_device,
                                     keep_checkpoints=suite.checkpoint or log_models,
                                     population=list(lane_population or population),
                                     max_lanes=lanes, threads=threads,
                                     fixed_lanes=min(kept, lanes or kept) if kept else None,
                                     kept_threads=queue.kept("threads", torch_device.type),
                                     keep_threads=partial(queue.keep, "threads",
                                                          torch_device.type))
            # one monitor per training process, on the invocation run it works for
            node = worker_label() if parent_run_id is not None else None
            with (tracker.system_metrics(summary.parent_run_id, node) if system_metrics
                  else nullcontext()):
                _work(suite, summary, queue, tracker, engine, run_tags, console, len(todo),
                      labels)
        ended = None
    finally:
        queue.close()
        if ended is not None and parent_run_id is None:
            tracker.end_invocation(summary.parent_run_id, ended)
    _project(queue, tracker)
    done_now = queue.done()
    summary.done_after = sum(1 for t in population if t.trial_id in done_now)
    if workers > 1 and summary.complete:  # one worker stopped, the others trained the rest
        summary.interrupted = False
    if parent_run_id is None:  # (the invocation's status as the command's exit says it)
        tracker.end_invocation(summary.parent_run_id, "KILLED" if summary.interrupted else
                               "FAILED" if summary.refused else "FINISHED")
        if not summary.interrupted:
            _refresh_summaries(tracker, members, console)
    return summary


def check_artifacts(tracker: Tracker) -> Path | None:
    """Refuse, before any run is opened, to train what could not be recorded: the
    experiment's artifacts (suite.yaml, history.csv, checkpoints) in a directory this
    process cannot write (a traceback after the invocation run was opened, left RUNNING).
    Returns the artifact directory when it is another machine's (`artifacts_elsewhere`:
    the caller warns of it), else None."""
    path = tracker.artifact_path()
    if artifacts_elsewhere(path):
        return path
    problem = artifacts_problem(path)
    if problem is not None:
        raise UsageError(f"experiment {tracker.suite.name}'s artifacts go to {path}, where "
                         f"they cannot be written: {problem}; make it writable, or use "
                         f"another MLflow store (--tracking-uri)")
    return None


def _refresh_summaries(tracker: Tracker, population: list[TrialSpec], console: Console) -> None:
    """Each configuration's seed aggregate in MLflow, brought up to date with what `prepare`
    just read (`Tracker.refresh_summaries`: written only where its trials changed).

    Done by whoever owns the invocation, after its trials (and its local workers, which
    have exited) are recorded: a coordinator's workers leave it to the coordinator. Workers
    without one (`submit`, several `nnbench tune`) each refresh at their end; the tracker
    keeps one summary per configuration however many do. A summary is a projection: an
    MLflow error here is said and the trials stand; the next run refreshes it."""
    try:
        with bookkeeping():
            tracker.prepare()
            tracker.refresh_summaries(population)
    except MlflowException as err:
        console.print(f"MLflow: seed summaries not refreshed ({str(err).splitlines()[0]}); "
                      f"the next run refreshes them", highlight=False)


def _work(suite: Suite, summary: RunSummary, queue: TrialQueue, tracker: Tracker,
          engine: Engine, tags: dict[str, str], console: Console, n_todo: int,
          labels: Mapping[str, str] | None = None) -> None:
    """Claim, train, record and release until the queue holds nothing for anyone."""
    assert summary.parent_run_id is not None
    batch = engine.lane_limit
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    waiting = False
    with Progress(*columns, console=console, transient=True) as progress:
        recorder = _Recorder(suite, tracker, summary.parent_run_id, tags, progress, console,
                             n_todo, labels)
        while True:
            queue.reap()
            claims: list[Claim] = []
            try:
                with bookkeeping():  # an interrupt waits until the claims are in hand
                    claims = queue.claim(batch, summary.parent_run_id)
            except KeyboardInterrupt:  # released at once, as killed, untrained
                _train(claims, summary, queue, engine, recorder, interrupted=True)
                return
            if not claims:
                counts = queue.counts()
                progress.update(recorder.trials_bar, completed=counts.done,
                                total=counts.done + counts.running + counts.queued,
                                description=f"suite: {counts.line()}")
                if not counts.running and not counts.queued:
                    return
                if not waiting:
                    console.print(f"waiting for {counts.running} trial(s) on other workers; a "
                                  f"worker silent for {queue.liveness.grace_period} s (or its "
                                  f"own longer --grace-period) has its trials re-queued",
                                  highlight=False)
                    waiting = True
                time.sleep(min(2.0, queue.liveness.heartbeat_interval))
                continue
            waiting = False
            _train(claims, summary, queue, engine, recorder)
            counts = queue.counts()
            progress.update(recorder.trials_bar, completed=counts.done,
                            total=counts.done + counts.running + counts.queued,
                            description=f"suite: {counts.line()}")
            if summary.interrupted:
                return


def open_tracker(suite: Suite, tracking_uri: str | None, storage: str | None
                 ) -> tuple[Tracker, str]:
    """The suite's MLflow store and its trial queue's storage URL (`storage`, by default
    next to the store), once the queue there, if any, is known to record this store's
    trials: one that records another store's (a deleted or replaced mlflow.db, two stores
    sharing one storage) is refused (`QueueElsewhere`) before this store is written (a new
    mlflow.db, the suite's experiment). `TrialQueue.sync` checks again, in its transaction."""
    uri = store_uri(tracking_uri)
    url = storage or default_storage(uri)
    owner = queue_owner(url, suite.name)
    if owner is not None and sqlite_without(uri, "experiments"):
        raise QueueElsewhere(url, suite.name, owner, None, uri)
    tracker = Tracker(suite, uri)
    if owner is not None and (mine := tracker.existing_identity()) != owner:
        raise QueueElsewhere(url, suite.name, owner, mine, uri)
    return tracker, url


def open_queue(suite: Suite, tracker: Tracker, storage_url: str, liveness: Liveness
               ) -> TrialQueue:
    """The suite's trial queue. On its first use under the current layout (a storage
    written before the queue was the only record, or a new storage for an MLflow store
    that holds results), the trials MLflow holds as done are recorded as done, once: the
    one time MLflow is read to say what is done."""
    queue = TrialQueue(suite.name, open_storage(storage_url, liveness), liveness)
    if not queue.migrated():
        # runs an earlier nnbench left RUNNING (its workers are stopped before an upgrade)
        for run in tracker.open_runs():
            if "nnbench.queue_entry" not in run.data.tags:
                tracker.show(run.info.run_id, "killed", "left running by an earlier nnbench")
        queue.sync([], store=tracker.identity(), tracking_uri=tracker.tracking_uri,
                   done_before=tracker.prepare())
    return queue


def _project(queue: TrialQueue, tracker: Tracker) -> int:
    """MLflow shows what the queue says: a trial run still RUNNING whose queue entry has
    ended (its worker died between the release and the run's status, or was stopped past
    the grace period and its trial queued again) is given the entry's status."""
    shown = 0
    for run in tracker.open_runs():
        tags = run.data.tags
        if "nnbench.queue_entry" not in tags:
            continue
        ended = queue.ended(tags["nnbench.queue_entry"], tags.get("nnbench.trial_id", ""))
        if ended is not None:
            try:
                tracker.show(run.info.run_id, *ended)
                shown += 1
            except MlflowException:  # deleted meanwhile (by hand)
                continue
    return shown


def _train(claims: list[Claim], summary: RunSummary, queue: TrialQueue, engine: Engine,
           recorder: _Recorder, *, interrupted: bool = False) -> None:
    """Train claimed trials; each result is recorded while its claim is held, the claim is
    released with the trial's status, and MLflow then shows that status. `interrupted`:
    the interrupt came as they were claimed: none trains, each is released as killed (and
    queued again). Whatever the moment of an interrupt, no claim is left held."""
    pending = {c.trial_id: c for c in claims}
    error: Exception | None = None
    recorder.entries.update({c.trial_id: queue.entry_tag(c) for c in claims})
    recorder.held.update({c.trial_id: c.storage_id for c in claims})
    recorder.lost = queue.heartbeats().lost
    summary.interrupted = summary.interrupted or interrupted
    try:
        if interrupted:
            raise KeyboardInterrupt
        for line in engine.describe([c.spec for c in claims]):
            recorder.console.print(line, highlight=False)
        for result in engine.run([c.spec for c in claims], recorder):
            status, note = result.status, result.reason.strip()[-300:]
            with bookkeeping():
                claim = pending[result.spec.trial_id]  # (dropped once released: an error
                try:  # before that releases it below, as failed)
                    recorder.record(result)
                except MlflowException as err:  # e.g. its run was deleted by hand meanwhile
                    status, note = "failed", f"its result could not be recorded in MLflow: " \
                                             f"{first_line(err)}"
                released = queue.release(claim, status, note)
                del pending[claim.trial_id]
                if released:
                    recorder.close(result, status, note)
                    summary.statuses[status] += 1
                else:
                    recorder.claim_lost(result.spec,
                                        queue.ended(queue.entry_tag(claim), claim.trial_id))
                    summary.lost += 1
            if result.numerics.lanes > 1:
                queue.keep("lanes", summary.device_type, result.numerics.lanes)
            if result.status == "killed":  # the engine ended the trials still in flight
                summary.interrupted = True
    except KeyboardInterrupt:
        summary.interrupted = True
    except Exception as err:  # (a bug, a store gone): no claim is left held until stale
        error = err
    status, note = (("killed", "interrupted (Ctrl-C or SIGTERM)") if summary.interrupted
                    else ("failed", f"the worker stopped on an error: "
                                    f"{type(error).__name__}: {first_line(error)}")
                    if error is not None else ("failed", "not trained"))
    with bookkeeping():
        for claim in pending.values():  # interrupted before they trained
            # after an error, each claim on its own (one the store refuses goes stale)
            with suppress(Exception) if error else nullcontext():
                if queue.release(claim, status, note):
                    recorder.ended(claim.trial_id, status, note)
                else:
                    summary.lost += 1
                    recorder.claim_lost(claim.spec,
                                        queue.ended(queue.entry_tag(claim), claim.trial_id))
    if error is not None:
        raise error


def _local_workers(suite: Suite, summary: RunSummary, queue: TrialQueue, tracker: Tracker,
                   console: Console, *, device: str, engine: str | Engine, precision: str,
                   lanes: int | None,
                   workers: int, threads: int | None, trials: int, liveness: Liveness,
                   system_metrics: bool, log_models: bool) -> None:
    """`workers` local `nnbench worker` processes on the queue, each with `threads` threads
    (default: its engine's policy, within its share of the cores); their trials are tagged
    with this invocation's run. Where one worker's claim (its engine's lane limit) holds
    all of the suite's `trials`, the others may have nothing to do: said, with `--lanes`,
    which shares them out at another lane count (the numerics), left to the user."""
    from nnbench.train.engine import cpu_cores, shared_cores
    from nnbench.workers import all_refused, spawn_local, worker_options

    if not isinstance(engine, str):
        raise ValueError("local workers take an engine name, not an Engine object")
    if not Path(suite.path).is_file():
        raise ValueError(f"local workers read the suite file; {suite.path!r} is not a file")
    options = worker_options(
        storage=summary.storage, tracking_uri=summary.tracking_uri, device=device,
        engine=engine, precision=precision, heartbeat_interval=liveness.heartbeat_interval,
        grace_period=liveness.grace_period, system_metrics="on" if system_metrics else "off",
        log_models=log_models, lanes=lanes, threads=threads, parent_run=summary.parent_run_id,
        source=suite.source)
    each = (f"{threads} thread(s) each" if threads else
            f"up to {shared_cores(resolve_device(device), workers)} thread(s) each")
    console.print(f"{workers} local workers, {each} ({cpu_cores()} cores)", highlight=False)
    from nnbench.train.engines import engine_class

    most = engine_class(engine).most_lanes(resolve_device(device))
    if lanes is None and 1 < trials <= most:
        console.print(f"note: a worker claims up to {most} trials at once (one group of "
                      f"lanes), so one may take all {trials} of this suite while the others "
                      f"wait; --lanes {-(-trials // workers)} shares them out, at that lane "
                      f"count (part of the numerics: results differ from a run at another "
                      f"one by rounding)", highlight=False)
    codes = spawn_local(suite.path, options, workers, console,
                        progress=lambda: queue.counts().line())
    summary.interrupted = any(c == 130 for c in codes)
    summary.refused = all_refused(codes)
    summary.worker_codes = codes
    for run in tracker.invocation_trials(str(summary.parent_run_id)):
        if run.info.status != "RUNNING":
            summary.statuses[run.data.tags.get("nnbench.status", "unknown")] += 1
    console.print(f"suite {suite.name}: {queue.counts().line()}", highlight=False)
