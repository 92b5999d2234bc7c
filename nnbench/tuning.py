"""Everything Optuna: tune the nuisance axes of every scientific point, then re-run the best.

`tune_suite(suite)` creates one Optuna study per scientific point (configuration of
the suite's grid/ablate) and tune definition, named `<suite>/<config_id>/<definition>`
(`study_name`), in an Optuna storage that
survives restarts (default: `optuna.db` next to the MLflow store; any RDB URL such as
PostgreSQL). Each study runs Optuna trials until its budget (`tune.trials`) is met,
never beyond: a trial counts when it completed, was pruned, failed or diverged. The
studies live in the suite's trial-queue storage (nnbench.queue) with its heartbeats: an
Optuna trial whose worker stops sending them (on any host) is failed after the grace
period, does not count, and Optuna queues a copy with the same parameters, which the
next worker to ask trains. A trial killed by Ctrl-C or SIGTERM is queued again with its
values the same way, so another worker (or a re-run) trains that point; for the grid
sampler, which proposes each point of its grid once (a suite with more trials than points
is refused), the point would otherwise never be trained.
Each Optuna trial trains through the shared trainer, reports the objective (a
validation metric) every epoch to the pruner, and is an MLflow run
(`nnbench.role = tune`, tagged with study, trial number and state). When a study
has met its budget its best values are re-run over `tune.seeds` as ordinary trials
(MLflow `nnbench.role = trial`), so `nnbench report` compares the tuned points with
the same statistics as any grid; the re-runs go through the suite's trial queue.
Several `nnbench tune` / `nnbench worker` processes may share one suite, storage and
MLflow store: they split the Optuna trials, and each re-run is claimed by one worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from nnbench import provenance, seeding
from nnbench.config import Dimension, Suite, TrialSpec, Tune, apply_values
from nnbench.config.tune import MEDIAN_STARTUP_TRIALS, tuned_label
from nnbench.messages import first_line
from nnbench.queue import (
    DEFAULT_LIVENESS,
    INSTEAD,
    Heartbeats,
    Liveness,
    fail_waiting,
    finishing,
    heartbeat_silence,
    heartbeats,
    holder_graces,
    open_storage,
    open_study,
    reap,
    storage_id,
)
from nnbench.runner import _Pace, bookkeeping, check_artifacts, open_queue, open_tracker, run_suite
from nnbench.tracking import Tracker
from nnbench.train import (
    CONTINUE,
    Decision,
    Engine,
    TrialResult,
    engine_class,
    make_engine,
    resolve_device,
    stop,
)
from nnbench.transient import (
    RETRY_SECONDS,
    interrupted,
    is_transient,
    retrying,
    retrying_once,
)

__all__ = ["TuneSummary", "best_values", "boundary_warnings", "budget_text", "importances",
           "study_name", "tune_suite", "tuned_points", "tuned_studies", "tuned_trials"]

# the state an Optuna trial ended in, as its MLflow run's `nnbench.optuna_state`, by status
_OPTUNA_STATE = {"finished": "complete", "pruned": "pruned", "diverged": "failed",
                 "failed": "failed", "killed": "killed"}
COUNTED = "counted"  # user attr on trials that use up budget (complete/pruned/failed/diverged)
# experiment tag prefix: the best values (JSON) of each tuned point's study, one tag per
# study: nnbench.tuned.<config_id>.<definition> (nnbench.tuned.<config_id>: an earlier
# nnbench's study `<suite>/<config_id>`), so workers of two definitions never clobber
TUNED_TAG = "nnbench.tuned."


def definition(tune: Tune) -> dict[str, Any]:
    """What makes a point's Optuna trials comparable with each other: the search space,
    the objective and the seed they train at (not the budget, sampler or pruner, which
    decide only which trials are drawn and how long they train)."""
    def bound(d: Dimension, value: float | None) -> float | int | None:
        return None if value is None else int(value) if d.kind == "int" else float(value)

    return {"space": [[d.path, d.kind, bound(d, d.low), bound(d, d.high), d.log,
                       list(d.choices)] for d in sorted(tune.space, key=lambda d: d.path)],
            "metric": tune.metric, "direction": tune.direction, "seed": tune.seeds[0]}


def _canonical(defined: Any) -> str:
    """A tune definition (`definition`, or one read back from a study) as one string."""
    return json.dumps(defined, sort_keys=True, default=str)


def study_name(suite: Suite, point: TrialSpec) -> str:
    """The study of `point` under the suite's tune definition (`definition`): editing the
    space, objective or tuning seed starts a new study, never mixing trials of two."""
    assert suite.tune is not None
    digest = hashlib.sha256(_canonical(definition(suite.tune)).encode()).hexdigest()[:12]
    return f"{_earlier_name(suite, point)}/{digest}"


def _earlier_name(suite: Suite, point: TrialSpec) -> str:
    """The name an earlier nnbench gave `point`'s study, whatever its tune definition."""
    return f"{suite.name}/{point.config_id}"


def point_studies(suite: Suite, storage: RDBStorage) -> dict[str, str]:
    """config_id -> the study each point's tuning uses in `storage`: `study_name`'s, or the
    study an earlier nnbench named `<suite>/<config_id>` when it is of the current
    definition and no study of the new name exists: the definition recorded on it by the
    first tune that used it here, or, before that, trials that fit (the same parameters and
    distributions, the same direction: its metric and seed were not recorded)."""
    assert suite.tune is not None
    names = set(retrying(lambda: optuna.get_all_study_names(storage), "listing studies"))
    dims = {d.path: distribution(d) for d in suite.tune.space}
    out = {}
    for point in suite.configurations():
        name, earlier = study_name(suite, point), _earlier_name(suite, point)
        if name not in names and earlier in names:
            study = retrying(partial(optuna.load_study, study_name=earlier, storage=storage),
                             f"reading study {earlier}")
            recorded = retrying(partial(storage.get_study_user_attrs, study._study_id),
                                f"reading study {earlier}").get("nnbench.tune")
            if recorded is not None:
                fits = _canonical(recorded) == _canonical(definition(suite.tune))
            else:
                fits = study.direction.name.lower() == suite.tune.direction and all(
                    all(dims.get(p) == d for p, d in t.distributions.items())
                    and (t.state != TrialState.COMPLETE or t.distributions.keys() == dims.keys())
                    for t in _trials(study))
            if fits:
                name = earlier
        out[point.config_id] = name
    return out


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler under nnbench's budget. nnbench ends a study itself, at
    `tune.trials` counted trials, never more than the grid's points (the suite validation
    refuses more). Optuna's sampler ends it by calling `Study.stop` from `after_trial` once
    at most one grid point is unfinished; outside `Study.optimize` that raises RuntimeError
    from `study.tell` after the trial's state is stored, so a trial Optuna holds COMPLETE
    looked like a lost claim and was recorded KILLED."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        return None


class _PerTrialSeed(optuna.samplers.BaseSampler):
    """A sampler whose draws for a trial depend only on the study's seed and the trial's
    number: it makes the real sampler for each trial from both. Every worker builds its
    sampler from the suite's seed, and a sampler keeps one random stream per process: two
    workers drew the same points, one after the other (4 workers, 10 random trials: 3
    points), and a study resumed by a new process drew again the points it had tried."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._by_trial: dict[int, optuna.samplers.BaseSampler] = {}

    def _of(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        sampler = self._by_trial.get(trial.number)
        if sampler is None:
            if len(self._by_trial) >= 1024:  # trials asked and never told (killed): the oldest
                self._by_trial.pop(next(iter(self._by_trial)))
            seed = seeding.derive_seed(self._seed, f"trial {trial.number}") % (1 << 32)
            sampler = self._by_trial[trial.number] = self._make(seed)
        return sampler

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, optuna.distributions.BaseDistribution]:
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, optuna.distributions.BaseDistribution]
                        ) -> dict[str, Any]:
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._of(trial).after_trial(study, trial, state, values)
        self._by_trial.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Nothing to reseed: each trial's draws come from its own seed."""


def _sampler(tune: Tune, point: TrialSpec, batch: int = 1) -> optuna.samplers.BaseSampler:
    """The study's sampler; proposals asked `batch` at a time use TPE's constant liar. The
    random and TPE samplers draw from a seed per trial (`_PerTrialSeed`), and so does QMC's
    independent sampler (its first trial's values); the grid and QMC samplers number their
    points through the study (the grid: trial n takes point n of an order its seed makes,
    the same in every worker; QMC keeps a counter in the study, which Optuna reads and writes
    without a lock, so two workers asking at one instant may share a point)."""
    seed = seeding.derive_seed(tune.sampler_seed, point.config_id) % (1 << 32)
    match tune.sampler:
        case "tpe":
            return _PerTrialSeed(lambda s: optuna.samplers.TPESampler(
                seed=s, constant_liar=batch > 1), seed)
        case "random":
            return _PerTrialSeed(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
        case "qmc":  # its first trial's values come from its independent sampler
            return optuna.samplers.QMCSampler(seed=seed, scramble=True, independent_sampler=(
                _PerTrialSeed(lambda s: optuna.samplers.RandomSampler(seed=s), seed)))
        case "grid":
            return _GridSampler({d.path: list(d.choices) for d in tune.space}, seed=seed)
    raise ValueError(f"unknown sampler {tune.sampler!r}")


def _pruner(tune: Tune, epochs: int) -> optuna.pruners.BasePruner:
    match tune.pruner:
        case "median":
            return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS,
                                               n_warmup_steps=1)
        case "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
        case "none":
            return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {tune.pruner!r}")


def distribution(d: Dimension) -> optuna.distributions.BaseDistribution:
    if d.kind == "categorical":
        return optuna.distributions.CategoricalDistribution(list(d.choices))
    if d.kind == "int":
        return optuna.distributions.IntDistribution(int(d.low or 0), int(d.high or 0), log=d.log)
    return optuna.distributions.FloatDistribution(float(d.low or 0), float(d.high or 0),
                                                  log=d.log)


def _trials(study: optuna.Study, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
    """The study's trials (of `states`, or all), read through `retrying`: a worker
    resuming from a stop may find the server ended its session (a transient error)."""
    return retrying(lambda: study.get_trials(deepcopy=False, states=states or None),
                    f"reading study {study.study_name}")


def _budget(study: optuna.Study) -> tuple[int, int, int]:
    """(trials that used budget, trials running: their workers' heartbeats are fresh, since
    stale ones were failed by `reap` first, trials waiting: copies queued again)."""
    trials = _trials(study)
    counted = sum(1 for t in trials if t.user_attrs.get(COUNTED))
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
    return counted, running, waiting


@dataclass
class PointSummary:
    name: str
    label: str
    counted: int = 0
    states: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None


@dataclass
class TuneSummary:
    suite: str
    storage: str
    points: list[PointSummary]
    reruns: int = 0  # re-run trials trained by this worker
    failed: int = 0  # of them, failed (an error, not divergence): the command exits 1
    interrupted: bool = False
    tracking_uri: str = ""
    experiment_id: str = ""  # the suite's MLflow experiment


def _suggest(trial: optuna.Trial, d: Dimension) -> Any:
    if d.kind == "categorical":
        return trial.suggest_categorical(d.path, list(d.choices))
    if d.kind == "int":
        return trial.suggest_int(d.path, int(d.low or 0), int(d.high or 0), log=d.log)
    return trial.suggest_float(d.path, float(d.low or 0), float(d.high or 0), log=d.log)


class _Pruning:
    """Listener of one Optuna trial: logs each epoch, feeds the pruner, stops when it prunes."""

    def __init__(self, tracker: Tracker, run_id: str, trial: optuna.Trial, tune: Tune) -> None:
        self.tracker, self.run_id, self.trial, self.tune = tracker, run_id, trial, tune

    def trial_started(self, _spec: TrialSpec) -> bool:
        return True

    def epoch_finished(self, spec: TrialSpec, metrics: dict[str, float]) -> Decision:
        """Report the epoch's objective; stop when the pruner says so, but never after the
        last epoch: a trial that trained all its epochs is complete, with its value (it was
        told PRUNED when the pruner judged its last epoch, its value lost to the study)."""
        self.tracker.log_epoch(self.run_id, metrics)
        epoch, value = int(metrics["epoch"]), metrics[self.tune.metric]
        try:
            retrying(partial(self.trial.report, value, epoch), f"reporting epoch {epoch}")
        except optuna.exceptions.UpdateFinishedTrialError:
            # this worker's heartbeat went stale (it was stopped) and another failed the
            # trial, a copy queued: this lane stops, the others train on; its tell is then
            # refused and the run shown killed, as any lost claim (`_tell`)
            return stop(f"claim lost at epoch {epoch}: the trial was failed as stale")
        if epoch < spec.epochs and retrying(self.trial.should_prune, "asking the pruner"):
            return stop(f"pruned by the {self.tune.pruner} pruner at epoch {epoch} "
                        f"({self.tune.metric} {value:.4f})")
        return CONTINUE


@dataclass
class _Asked:
    """One Optuna trial asked for, with the trial spec it proposes and its MLflow run."""

    trial: optuna.Trial
    values: dict[str, Any]
    spec: TrialSpec
    run_id: str


class _Lanes:
    """Listener of a batch of Optuna trials: each lane's epochs go to its own trial, and a
    line of progress at most every 10 s (`runner._Pace`: a stacked batch of 4 trials of 600
    epochs printed nothing for 28 s)."""

    def __init__(self, listeners: dict[int, _Pruning], console: Console, study: str) -> None:
        self.listeners = listeners  # id(spec) -> its trial's listener
        self.console, self.study, self.pace = console, study, _Pace()

    def trial_started(self, _spec: TrialSpec) -> bool:
        return True

    def epoch_finished(self, spec: TrialSpec, metrics: dict[str, float]) -> Decision:
        decision = self.listeners[id(spec)].epoch_finished(spec, metrics)
        line = self.pace.epoch(spec, metrics, len(self.listeners))
        if line:
            self.console.print(f"{self.study}: {line}", highlight=False)
        if interrupted():  # an interrupt Python ignored (raised in a garbage collection)
            raise KeyboardInterrupt
        return decision


def _ask(study: optuna.Study, suite: Suite, point: TrialSpec, tracker: Tracker, parent: str,
         tags: dict[str, str], beats: Heartbeats, storage: RDBStorage) -> _Asked | None:
    """Ask Optuna for one trial (its heartbeats start at once) and open its MLflow run;
    None when the budget is met."""
    tune = suite.tune
    assert tune is not None
    # each write retried (`retrying`): a worker stopped inside one finds the server ended its
    # session. An ask whose trial was stored but whose answer was lost leaves that trial
    # RUNNING with the first heartbeat the storage wrote with it (`_Storage`), so it goes
    # stale a grace period later and is queued again, uncounted (a copy
    # still waiting once the others met the budget is failed as surplus: `fail_waiting`)
    while True:
        trial = retrying(study.ask, f"asking {study.study_name} for a trial")
        beats.hold(storage_id(trial))
        try:  # (the storage named the trial with this worker as it made it RUNNING)
            uncounted = sum(1 for t in _trials(study)
                            if t.number < trial.number and t.state == TrialState.FAIL
                            and not t.user_attrs.get(COUNTED))
            if trial.number >= tune.trials + uncounted:  # another worker took the last slot
                _surplus(study, storage, trial)
                return None
            values = {d.path: retrying(partial(_suggest, trial, d), f"suggesting {d.path}")
                      for d in tune.space}
            other = _untried_instead(study, tune, trial, values)
            if other is None:
                break
            # a point already taken, with the same seed (identical results): this trial
            # ends uncounted and an untried point is queued, which the next ask takes
            _tell_once(study, storage, trial, TrialState.FAIL, float("nan"),
                       {"nnbench.outcome": "repeat"})
            _enqueue_once(study, other, instead=True)
            beats.drop(storage_id(trial))
        except optuna.exceptions.UpdateFinishedTrialError:
            # this worker, stopped past the grace period, had the trial failed as stale
            # (a copy queued) before it was set up: ask again
            beats.drop(storage_id(trial))
    spec = apply_values(replace(point, seed=tune.seeds[0]), values)
    run_id = tracker.start_trial(parent, spec, {
        **tags, "nnbench.study": study.study_name, "nnbench.optuna_trial": str(trial.number),
        "nnbench.nuisance": json.dumps(values, sort_keys=True)}, role="tune")
    return _Asked(trial, values, spec, run_id)


# a finite space of at most this many points is searched without repeats (`_untried_instead`)
DISTINCT_POINTS = 100_000


def _untried_instead(study: optuna.Study, tune: Tune, trial: optuna.Trial,
                     values: dict[str, Any]) -> dict[str, Any] | None:
    """For a space of finitely many points (choices, integer ranges) and a sampler that
    draws with replacement (tpe, random, qmc: 3 trials over 3 learning rates trained 0.05
    twice and never tried 0.01): when `values` is a point another trial holds (complete,
    pruned, running or queued), an untried one, chosen by a generator seeded from the
    study and the trial number; None when `values` is new, or every point is taken (the
    budget check keeps trials within the space's size). The grid sampler never repeats.

    A killed or stale trial's copy trains its values whoever holds them. A point queued in
    place of a repeat (`INSTEAD`) is any untried point, so it gives way too (two workers
    that queued the same point at once trained it twice), except to a trial made after it
    that gives way itself (a sampler's proposal, another queued point): that one sees it,
    stored with its values, and gives way, so the point is kept by one and trained once."""
    if tune.sampler == "grid" or any(d.kind == "float" for d in tune.space):
        return None
    sizes = [len(d.choices) if d.kind == "categorical" else int(d.high or 0) - int(d.low or 0)
             + 1 for d in tune.space]
    if math.prod(sizes) > DISTINCT_POINTS:
        return None
    trials = _trials(study)
    mine = next(t for t in trials if t.number == trial.number)

    def copy(t: FrozenTrial) -> bool:  # a killed or stale trial's copy (a stale one's copy
        # inherits the mark of a point queued in place of a repeat, with failed_trial)
        return "failed_trial" in t.system_attrs or (
            "fixed_params" in t.system_attrs and not t.user_attrs.get(INSTEAD))

    def gives_way(t: FrozenTrial) -> bool:  # holds its point only until it sees an earlier
        # holder: a sampler's proposal or a point queued in place of a repeat, not yet ended
        return t.state in (TrialState.RUNNING, TrialState.WAITING) and not copy(t)

    if copy(mine):
        return None  # it trains its values

    def key(point: dict[str, Any]) -> tuple[str, ...]:
        return tuple(repr(point.get(d.path)) for d in tune.space)

    queued = bool(mine.user_attrs.get(INSTEAD))
    taken, held = set(), set()
    for t in trials:
        # every point a trial holds, or held and counted (a diverged or failed one): a
        # stale trial's copy carries its params, a queued point its fixed_params
        if t is mine or (t.state == TrialState.FAIL and not t.user_attrs.get(COUNTED)):
            continue
        point = t.params or t.system_attrs.get("fixed_params")
        if not point:
            continue
        held.add(key(point))
        # a queued point keeps it against a later one that gives way: that one was made
        # after it, so it sees it (stored with its values) and gives way (both gave it up)
        if not (queued and t.number > mine.number and gives_way(t)):
            taken.add(key(point))
    if key(values) not in taken:
        return None
    axes = [list(d.choices) if d.kind == "categorical" else
            list(range(int(d.low or 0), int(d.high or 0) + 1)) for d in tune.space]
    untried = [point for point in (dict(zip((d.path for d in tune.space), p, strict=True))
                                   for p in itertools.product(*axes))
               if key(point) not in held]
    if not untried:
        return None
    return random.Random(f"{study.study_name}:{trial.number}").choice(untried)


def _surplus(study: optuna.Study, storage: RDBStorage, trial: optuna.Trial) -> None:
    """Fail a trial asked for past the budget (outcome `surplus`: it never counts); one
    another worker ended meanwhile (failed as stale) is left as it is."""
    try:
        _tell_once(study, storage, trial, TrialState.FAIL, float("nan"),
                   {"nnbench.outcome": "surplus"})
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        # Optuna raises ValueError for a tell of a finished trial; of a RUNNING one, a bug
        if _state(storage, trial) == TrialState.RUNNING:
            raise


def _state(storage: RDBStorage, trial: optuna.Trial) -> TrialState:
    """The trial's state as stored now (read through `retrying`)."""
    stored = retrying(lambda: storage.get_trial(storage_id(trial)),
                      f"reading trial {trial.number}")
    return stored.state


def _tell_once(study: optuna.Study, storage: RDBStorage, trial: optuna.Trial,
               state: TrialState, objective: float, attrs: dict[str, Any]) -> None:
    """`study.tell` with `attrs` in its transaction, once, through a broken connection: a
    worker stopped mid-transaction finds the server ended its session (the transaction
    rolled back, or committed with the answer lost). Told again while the trial is still
    RUNNING; a commit that did happen is recognised by its own outcome; a trial someone
    else ended raises UpdateFinishedTrialError (the caller's lost claim)."""
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        finishing(storage, trial, attrs)
        try:
            if state == TrialState.COMPLETE:
                study.tell(trial, objective)
            else:
                study.tell(trial, state=state)
            return
        except Exception as err:
            if not is_transient(err) or time.monotonic() > deadline:
                raise
            stored = retrying(lambda: storage.get_trial(storage_id(trial)),
                              f"read trial {trial.number} after a failed tell")
            if stored.state == state and \
                    stored.user_attrs.get("nnbench.outcome") == attrs["nnbench.outcome"]:
                return  # the tell committed; only its answer was lost
            if stored.state != TrialState.RUNNING:
                raise optuna.exceptions.UpdateFinishedTrialError(
                    f"trial {trial.number} was ended by another worker") from err
        time.sleep(0.1)


def _tell(study: optuna.Study, tune: Tune, asked: _Asked, result: TrialResult,
          tracker: Tracker, console: Console, storage: RDBStorage) -> None:
    """Record one trial's result in MLflow (all but its status), tell Optuna, then show
    the status Optuna took in MLflow. A trial Optuna already failed (this worker's
    heartbeat went stale while it trained, and a copy was queued) shows killed, never done;
    anything else Optuna refuses is raised, never recorded as a lost claim. A killed trial
    (Ctrl-C, SIGTERM) is queued again with its values, like a stale trial's copy: another
    worker trains that point, and a grid is still covered once. A worker killed between the
    tell and the status leaves the run RUNNING: `_project` gives it Optuna's state."""
    trial, run_id = asked.trial, asked.run_id
    objective = float("nan")
    state = _OPTUNA_STATE[result.status]
    if result.status == "finished":
        objective = result.history[-1][tune.metric]
        tracker.client.log_metric(run_id, "objective", objective)
    tracker.record_trial(run_id, result)
    # what the trial's end means for the budget, written with the tell, in its transaction:
    # a trial failed as stale meanwhile never counts
    attrs: dict[str, Any] = {"nnbench.outcome": result.status}
    if result.status != "killed":
        attrs[COUNTED] = True
    if result.status in ("diverged", "failed"):
        attrs["nnbench.error"] = result.reason[-2000:]
    told = {"finished": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
        result.status, TrialState.FAIL)
    if result.status == "killed" and asked.values and _state(storage, trial) == \
            TrialState.RUNNING:  # the copy first: while the trial runs, no slot is free
        _enqueue_once(study, asked.values)  # (none drawn: a new ask is the same)
    try:
        _tell_once(study, storage, trial, told, objective, attrs)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        # Optuna raises these before it stores anything (a sampler's after_trial raising
        # comes after the store, and is not caught here): a trial no longer RUNNING was
        # finished by someone else, i.e. failed as stale by another worker, a copy queued
        if _state(storage, trial) == TrialState.RUNNING:
            raise  # Optuna refused the values: a bug to see, not a claim another worker took
        tracker.client.set_tag(run_id, "nnbench.optuna_state", _OPTUNA_STATE["killed"])
        tracker.show(run_id, "killed", "this worker's heartbeat went stale while it trained; "
                                       "Optuna failed the trial and queued a copy")
        console.print(f"{study.study_name} trial {trial.number}: claim lost (heartbeat stale)",
                      highlight=False)
        return
    tracker.client.set_tag(run_id, "nnbench.optuna_state", state)
    tracker.show(run_id, result.status, result.reason)
    if result.status != "killed":
        console.print(f"{study.study_name} trial {trial.number}: {state}"
                      + (f" {tune.metric} {objective:.4f}" if result.status == "finished"
                         else "") + f" {json.dumps(asked.values)}", highlight=False)


def _project(tracker: Tracker, studies: dict[str, tuple[TrialSpec, optuna.Study]]) -> int:
    """MLflow shows what Optuna says: a tune run still RUNNING whose Optuna trial (of one of
    the suite's `studies`) has ended (its worker died after the tell, or went silent and
    Optuna failed the trial) is given the trial's state."""
    shown = 0
    for run in tracker.open_runs("tune"):
        tags = run.data.tags
        found = studies.get(tags.get("nnbench.study", ""))
        number = tags.get("nnbench.optuna_trial", "")
        if found is None or not number.isdigit():
            continue
        trial = next((t for t in _trials(found[1]) if t.number == int(number)), None)
        if trial is None or not trial.state.is_finished():
            continue
        outcome = str(trial.user_attrs.get("nnbench.outcome", ""))
        status = {TrialState.COMPLETE: "finished", TrialState.PRUNED: "pruned"}.get(
            trial.state, outcome if outcome in ("diverged", "failed") else "killed")
        tracker.client.set_tag(run.info.run_id, "nnbench.optuna_state", _OPTUNA_STATE[status])
        tracker.show(run.info.run_id, status, "" if outcome else (
            "its worker stopped sending heartbeats; Optuna failed the trial and queued a copy"))
        shown += 1
    return shown


def _train_batch(study: optuna.Study, suite: Suite, point: TrialSpec, tracker: Tracker,
                 parent: str, tags: dict[str, str], engine: Engine, console: Console,
                 size: int, storage: RDBStorage, liveness: Liveness) -> bool:
    """Ask up to `size` trials, train them together (lanes of one stacked group when the
    engine stacks), tell each; False when the study's budget is already met."""
    tune = suite.tune
    assert tune is not None
    batch: list[_Asked] = []
    killed = False
    with heartbeats(storage, liveness.heartbeat_interval) as beats:
        try:
            for _ in range(size):
                with bookkeeping():  # an interrupt waits until the trial is asked and opened
                    asked = _ask(study, suite, point, tracker, parent, tags, beats, storage)
                    if asked is not None:
                        batch.append(asked)
                if asked is None:
                    break
        except KeyboardInterrupt:
            _interrupted_before_training(study, batch, tracker, storage)
            raise
        if not batch:
            return False
        by_spec = {id(a.spec): a for a in batch}
        listener = _Lanes({id(a.spec): _Pruning(tracker, a.run_id, a.trial, tune)
                           for a in batch}, console, study.study_name)
        try:
            for result in engine.run([a.spec for a in batch], listener):
                with bookkeeping():  # never half told: an interrupt waits for the tell's end
                    _tell(study, tune, by_spec[id(result.spec)], result, tracker, console,
                          storage)
                    del by_spec[id(result.spec)]
                killed = killed or result.status == "killed"
        except Exception as err:  # (a bug, a store gone): not left running until stale
            _interrupted_before_training(
                study, list(by_spec.values()), tracker, storage,
                f"the worker stopped on an error: {type(err).__name__}: {first_line(err)}",
                error=True)
            raise
    if killed:
        raise KeyboardInterrupt
    return True


def _interrupted_before_training(study: optuna.Study, asked: list[_Asked], tracker: Tracker,
                                 storage: RDBStorage, why: str = "interrupted (Ctrl-C or "
                                                                 "SIGTERM) before it trained",
                                 *, error: bool = False) -> None:
    """Trials asked for, interrupted (Ctrl-C, SIGTERM) before they trained, or stopped by an
    error (`why`, `error`: each trial on its own, whatever fails for another, Optuna first
    for all, then MLflow): each is queued again with its values and failed uncounted, its
    run shown killed, as a trial killed while it trained; otherwise they would hold their
    slots until they went stale. A trial this worker told already is left as told."""
    shown = []
    with bookkeeping():
        for one in asked:
            with contextlib.suppress(Exception) if error else contextlib.nullcontext():
                stored = retrying(partial(storage.get_trial, storage_id(one.trial)),
                                  f"reading trial {one.trial.number}")
                if stored.state not in (TrialState.RUNNING, TrialState.FAIL) \
                        or stored.user_attrs.get(COUNTED):  # told before the error
                    continue
                if one.values and stored.state == TrialState.RUNNING:
                    _enqueue_once(study, one.values)
                # (failed as stale meanwhile, a copy queued: nothing more to do)
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError,
                                         ValueError):
                    _tell_once(study, storage, one.trial, TrialState.FAIL, float("nan"),
                               {"nnbench.outcome": "killed"})
                shown.append(one)
        for one in shown:
            with contextlib.suppress(Exception) if error else contextlib.nullcontext():
                tracker.client.set_tag(one.run_id, "nnbench.optuna_state",
                                       _OPTUNA_STATE["killed"])
                tracker.show(one.run_id, "killed", why)


def _enqueue_once(study: optuna.Study, values: dict[str, Any], *,
                  instead: bool = False) -> None:
    """Queue a killed trial's point again (or, `instead`, an untried point in place of a
    repeat: surplus once the budget is met, `queue.fail_waiting`), once (`retrying_once`):
    a retry first looks for the waiting copy its earlier try may have committed before the
    connection was lost."""
    def enqueue() -> bool:
        study.enqueue_trial(values, user_attrs={INSTEAD: True} if instead else None)
        return True

    def find() -> bool | None:
        return any(t.system_attrs.get("fixed_params") == values for t in study.get_trials(
            deepcopy=False, states=(TrialState.WAITING,))) or None

    retrying_once("queueing a killed trial's point again", enqueue, find)


def status_lines(suite: Suite, storage: RDBStorage
                 ) -> tuple[list[str], dict[str, tuple[float | None, int | None, str]]]:
    """One line per tuning study: trials that used budget, running, waiting (re-queued);
    and the workers of the running trials, each with the seconds since its latest
    heartbeat (None: none recorded), for `status` to say which have stopped (a SIGKILLed
    `tune` left its trials running, and status said only "12 running")."""
    assert suite.tune is not None
    lines = []
    held: list[optuna.trial.FrozenTrial] = []
    names = point_studies(suite, storage)
    for point in suite.configurations():
        name = names[point.config_id]
        try:
            study = retrying(partial(optuna.load_study, study_name=name, storage=storage),
                             f"reading study {name}")
        except KeyError:
            lines.append(f"{name} ({point.label(suite.varied_axes)}): not started")
            continue
        counted, running, waiting = _budget(study)
        lines.append(f"{name} ({point.label(suite.varied_axes)}): "
                     f"{budget_text(counted, suite.tune.trials)}, {running} running, "
                     f"{waiting} queued again")
        if running:
            held += [t for t in _trials(study) if t.state == TrialState.RUNNING]
    silent, graces = heartbeat_silence(storage, held), holder_graces(held)
    workers = {str(t.user_attrs.get("nnbench.worker", "?")) for t in held}
    return lines, {worker: (silent.get(worker), *graces.get(worker, (None, "")))
                   for worker in workers}


def budget_text(counted: int, trials: int) -> str:
    """"3/4 trials"; past a budget since lowered, says so (the best is over them all)."""
    if counted <= trials:
        return f"{counted}/{trials} trials"
    return (f"{counted} trials (budget {trials}, lowered since they ran: the best is over "
            f"all {counted})")


def best_values(study: optuna.Study) -> dict[str, Any] | None:
    complete = _trials(study, TrialState.COMPLETE)
    return dict(retrying(lambda: study.best_trial, f"reading {study.study_name}'s best trial")
                .params) if complete else None


def _tuned_key(study: str) -> str:
    """The experiment tag of a study's best values: `<suite>/<config_id>[/<definition>]`
    -> nnbench.tuned.<config_id>[.<definition>]."""
    return TUNED_TAG + study.partition("/")[2].replace("/", ".")


def _forget_other_definitions(suite: Suite, tracker: Tracker, names: dict[str, str]) -> None:
    """Drop the best values of a point's study an earlier nnbench named, when its tuning
    now uses another (`point_studies`: the tune definition was edited): they would be read
    as this definition's best wherever they fit its space (`_tuned`)."""
    experiment_id = tracker.experiment_id()
    assert experiment_id is not None
    tags = tracker.client.get_experiment(experiment_id).tags
    for point in suite.configurations():
        earlier = _earlier_name(suite, point)
        if names[point.config_id] != earlier and _tuned_key(earlier) in tags:
            tracker.client.delete_experiment_tag(experiment_id, _tuned_key(earlier))


def tuned_points(suite: Suite, tracker: Tracker) -> dict[str, tuple[TrialSpec, dict[str, Any]]]:
    """point config_id -> (the point, its best nuisance values), as recorded in MLflow, of
    the points whose values are the best of the current tune definition's study (one an
    earlier nnbench recorded: if they are values of the current space)."""
    return {cid: (point, values) for cid, (point, values, _) in _tuned(suite, tracker).items()}


def tuned_studies(suite: Suite, tracker: Tracker) -> dict[str, str]:
    """study name -> the point's label, for each point's study of the current tune
    definition (the tuned study where its best values are recorded)."""
    tuned = _tuned(suite, tracker)
    return {(tuned[p.config_id][2] if p.config_id in tuned else study_name(suite, p)):
            p.label(suite.varied_axes) for p in suite.configurations()}


def _tuned(suite: Suite, tracker: Tracker
           ) -> dict[str, tuple[TrialSpec, dict[str, Any], str]]:
    experiment_id = tracker.experiment_id(create=False)
    if suite.tune is None or experiment_id is None:
        return {}
    tags = tracker.client.get_experiment(experiment_id).tags
    dims = {d.path: distribution(d) for d in suite.tune.space}
    out = {}
    for point in suite.configurations():
        study, earlier = study_name(suite, point), _earlier_name(suite, point)
        if _tuned_key(study) in tags:
            out[point.config_id] = (point, json.loads(tags[_tuned_key(study)]), study)
        elif _tuned_key(earlier) in tags:  # an earlier nnbench's, if of the current space
            values = json.loads(tags[_tuned_key(earlier)])
            if values.keys() == dims.keys() and all(_fits(dims[p], values[p]) for p in dims):
                out[point.config_id] = (point, values, earlier)
    return out


def tuned_trials(suite: Suite, points: dict[str, tuple[TrialSpec, dict[str, Any]]]
                 ) -> list[TrialSpec]:
    """The re-run trials of tuned points (`tuned_points`): best values × tune.seeds."""
    seeds = suite.tune.seeds if suite.tune else ()
    return [replace(apply_values(point, best), seed=s)
            for point, best in points.values() for s in seeds]


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every study and trial at INFO, and warns that heartbeats are meant for
    `Study.optimize` (nnbench records them itself around ask/tell); nnbench prints its own
    progress."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            yield
    finally:
        optuna.logging.set_verbosity(before)


def importances(suite: Suite, tuning: Any) -> dict[str, dict[str, float]]:
    """Optuna's parameter importances per study, from the Optuna trials MLflow holds."""
    assert suite.tune is not None
    with _quiet_optuna():
        return _importances(suite, tuning)


def _importances(suite: Suite, tuning: Any) -> dict[str, dict[str, float]]:
    assert suite.tune is not None
    dims = {d.path: distribution(d) for d in suite.tune.space}
    out: dict[str, dict[str, float]] = {}
    for name, rows in tuning[tuning["state"] == "complete"].groupby("study"):
        study = optuna.create_study(direction=suite.tune.direction)
        for row in rows.to_dict("records"):
            # a trial of an earlier space (a range since narrowed, a dimension since added)
            # is not one of this space's: left out, not a crash of the report
            if not all(p in row and _fits(dims[p], row[p]) for p in dims):
                continue
            study.add_trial(optuna.trial.create_trial(
                params={p: row[p] for p in dims}, distributions=dims, value=row["objective"]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                found = optuna.importance.get_param_importances(study)
            except (RuntimeError, ValueError):  # too few distinct trials to attribute anything
                continue
        # too few trials, Optuna's evaluator says, and returns equal shares: not a finding
        if not any("too small" in str(w.message) for w in caught):
            out[str(name)] = found
    return out


def _fits(dist: Any, value: Any) -> bool:
    """Is `value` one `dist` can take (a float range's NaN, or a choice no longer offered:
    no)?"""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def boundary_warnings(suite: Suite, points: dict[str, tuple[TrialSpec, dict[str, Any]]]
                      ) -> list[str]:
    """Best values within 5% (of the log range when log-uniform) of a search-range end."""
    assert suite.tune is not None
    warnings = []
    for point, best in points.values():
        for d in suite.tune.space:
            if d.kind == "categorical" or d.path not in best:
                continue
            low, high, value = float(d.low or 0), float(d.high or 0), float(best[d.path])
            if d.log:
                low, high, value = math.log(low), math.log(high), math.log(value)
            position = (value - low) / (high - low)
            if position < 0.05 or position > 0.95:
                end = "lower" if position < 0.05 else "upper"
                warnings.append(f"{point.label(suite.varied_axes)}: best {d.path} = "
                                f"{best[d.path]:.4g} is at the {end} end of [{d.low}, {d.high}]; "
                                f"widen the range, the optimum may lie beyond it")
    return warnings


def tune_suite(suite: Suite, *, storage: str | None = None, tracking_uri: str | None = None,
               device: str = "auto", engine: str = "auto", lanes: int | None = None,
               liveness: Liveness = DEFAULT_LIVENESS, console: Console | None = None,
               system_metrics: bool = False, log_models: bool = False,
               precision: str = "fp32") -> TuneSummary:
    """Tune every scientific point to its budget, then re-run each tuned point's best values
    over the suite's seeds. Safe to re-run and to run in several processes at once.

    With a stacking engine (stacked, or auto when a study has more than one trial),
    up to `lanes` proposals of a study (default: all of its trials, at most the
    engine's lane cap) are asked together and train as lanes of one group. A worker
    keeps going until every study has met its budget with nothing running: trials of a
    worker that stopped sending heartbeats are queued again and trained here.
    `log_models`: each finished re-run logs its MLflow model, as `checkpoint: true` does
    (Optuna's own trials log none either way). `precision`: as `run_suite`'s, for the
    Optuna trials and the re-runs."""
    if suite.tune is None:
        raise ValueError(f"{suite.path}: the suite has no `tune:` block")
    with _quiet_optuna():
        return _tune_suite(suite, storage, tracking_uri, device, engine, lanes, liveness,
                           console or Console(stderr=True), system_metrics, log_models,
                           precision)


def _tune_suite(suite: Suite, storage: str | None, tracking_uri: str | None, device: str,
                engine_name: str, lanes: int | None, liveness: Liveness,
                console: Console, system_metrics: bool = False,
                log_models: bool = False, precision: str = "fp32") -> TuneSummary:
    assert suite.tune is not None
    tune = suite.tune
    torch_device = resolve_device(device)
    # a study's proposals are asked (and train) together, as many as the engine trains at once
    most = engine_class(engine_name).most_lanes(torch_device)
    batch = min(lanes or most, tune.trials) if most > 1 else 1
    flags = seeding.configure_determinism(precision, torch_device)
    tracker, url = open_tracker(suite, tracking_uri, storage)
    experiment_id = tracker.experiment_id()
    assert experiment_id is not None
    # the storage's queue belongs to this MLflow store (else QueueElsewhere, before any work)
    queue = open_queue(suite, tracker, url, liveness)
    queue.sync([], store=tracker.identity(), tracking_uri=tracker.tracking_uri)
    # a large serial trial's threads: the suite's, kept in its queue (its re-runs' too)
    engine = make_engine(engine_name, torch_device, fixed_lanes=batch,
                         kept_threads=queue.kept("threads", torch_device.type),
                         keep_threads=partial(queue.keep, "threads", torch_device.type))
    check_artifacts(tracker)
    rdb = open_storage(url, liveness)
    tags = {"nnbench.git_commit": provenance.git_commit(),
            "nnbench.device": provenance.device_name(torch_device),
            **{f"nnbench.version.{k}": v for k, v in provenance.library_versions().items()},
            **{f"nnbench.deterministic.{k}": v for k, v in flags.items()},
            **provenance.plugin_tags(suite.configurations())}
    parent = tracker.start_invocation({**tags, "nnbench.command": "tune",
                                       "nnbench.optuna_storage": url}, n_todo=0)
    summary = TuneSummary(suite.name, url, [], tracking_uri=tracker.tracking_uri,
                          experiment_id=experiment_id)
    studies: dict[str, tuple[TrialSpec, optuna.Study]] = {}
    names = point_studies(suite, rdb)
    for point in suite.configurations():
        name = names[point.config_id]
        study = open_study(rdb, name, direction=tune.direction,
                           sampler=_sampler(tune, point, batch),
                           pruner=_pruner(tune, point.epochs))
        retrying(partial(study.set_user_attr, "nnbench.config",
                         point.label(suite.varied_axes)), "labelling a study")
        retrying(partial(study.set_user_attr, "nnbench.tune", definition(tune)),
                 "labelling a study")
        studies[name] = (point, study)
    _forget_other_definitions(suite, tracker, names)
    # the points' studies of other tune definitions: their trials a dead worker left
    # RUNNING are failed as stale (and their runs shown so) though no one tunes them now
    earlier: dict[str, tuple[TrialSpec, optuna.Study]] = {}
    listed = retrying(lambda: optuna.get_all_study_names(rdb), "listing studies")
    for point in suite.configurations():
        prefix = _earlier_name(suite, point)
        for name in listed:
            if name != names[point.config_id] and (name == prefix
                                                   or name.startswith(f"{prefix}/")):
                earlier[name] = (point, retrying(partial(optuna.load_study, study_name=name,
                                                         storage=rdb), f"reading {name}"))
    for _, study in earlier.values():
        reap(study)
    # runs of trials whose worker died after Optuna was told
    _project(tracker, {**studies, **earlier})
    waiting = False
    monitor: AbstractContextManager[None] = (tracker.system_metrics(parent) if system_metrics
                                             else nullcontext())
    try:
        with monitor:
            while True:
                trained = running_elsewhere = False
                for point, study in studies.values():
                    reap(study)
                    counted, running, queued = _budget(study)
                    if counted >= tune.trials and queued:
                        # the copy of a trial asked past the budget that went stale before
                        # its worker saw so (an ask whose answer was lost): it could only
                        # ever be surplus, and no worker asks once the budget is met
                        fail_waiting(study, {"nnbench.outcome": "surplus"})
                    if counted + running < tune.trials:
                        size = min(batch, tune.trials - counted - running)
                        trained |= _train_batch(study, suite, point, tracker, parent, tags,
                                                engine, console, size, rdb, liveness)
                    elif running:
                        running_elsewhere = True
                if not trained and not running_elsewhere:
                    break
                if not trained:  # only other workers' trials are left: wait, take over the stale
                    if not waiting:
                        console.print(f"waiting for Optuna trials on other workers; a worker "
                                      f"silent for {liveness.grace_period} s (or its own "
                                      f"longer --grace-period) has its trials queued again",
                                      highlight=False)
                        waiting = True
                    time.sleep(min(2.0, liveness.heartbeat_interval))
    except KeyboardInterrupt:
        summary.interrupted = True
        tracker.end_invocation(parent, "KILLED")
        return summary
    for _, study in earlier.values():
        reap(study)
    _project(tracker, {**studies, **earlier})
    tracker.end_invocation(parent, "FINISHED")
    complete: list[tuple[TrialSpec, optuna.Study]] = []
    for name, (point, study) in studies.items():
        counted, running, _ = _budget(study)
        states: dict[str, int] = {}
        for t in _trials(study):
            outcome = str(t.user_attrs.get("nnbench.outcome", "killed" if t.state ==
                                       TrialState.FAIL else t.state.name.lower()))
            states[outcome] = states.get(outcome, 0) + 1
        point_summary = PointSummary(name, point.label(suite.varied_axes), counted, states)
        summary.points.append(point_summary)
        if counted >= tune.trials and not running:
            point_summary.best = best_values(study)
            if point_summary.best is not None:
                complete.append((point, study))
    # re-run the best values of every point whose study met its budget, over tune.seeds
    experiment_id = tracker.experiment_id()
    assert experiment_id is not None
    for _, study in complete:
        best = best_values(study)
        tracker.client.set_experiment_tag(experiment_id, _tuned_key(study.study_name),
                                          json.dumps(best, sort_keys=True))
    # the re-runs go through the suite's trial queue, like any grid's trials
    tuned = tuned_points(suite, tracker)
    reruns = tuned_trials(suite, tuned)
    # one lane count for every point's re-runs, whichever points are tuned by now (a point
    # not tuned yet stands in with its own values: the nuisance values rarely change shapes)
    every_point: dict[str, tuple[TrialSpec, dict[str, Any]]] = {
        p.config_id: (p, {}) for p in suite.configurations()}
    every_point.update(tuned)
    # their progress lines read as the report does (tuned floats to 4 significant digits)
    labels = {spec.trial_id: tuned_label(spec, best, suite.varied_axes)
              for point, best in tuned.values() for spec in tuned_trials(
                  suite, {point.config_id: (point, best)})}
    done = run_suite(suite, device=device, tracking_uri=tracker.tracking_uri, storage=url,
                     engine=engine_name, lanes=lanes, precision=precision,
                     liveness=liveness, console=console,
                     trials=reruns, tags={"nnbench.tuned": "true"}, withdraw=False,
                     system_metrics=system_metrics, log_models=log_models,
                     lane_population=tuned_trials(suite, every_point), labels=labels)
    summary.reruns = done.trained
    summary.failed = done.statuses.get("failed", 0)
    summary.interrupted = done.interrupted
    return summary
