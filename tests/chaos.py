"""Chaos for workers that share a suite's queue (issue 22): N `nnbench worker` (or `nnbench
tune`) processes on PostgreSQL drain a suite while a seeded schedule SIGKILLs random workers
(each replaced at once by a new one), SIGTERMs others (as a cluster's time limit does; each
replaced too), SIGSTOPs others for longer than the grace period
(then SIGCONT) and stops the PostgreSQL server for a few seconds (an outage: a restart, as
an administrator's `pg_ctl restart` or a failover makes); once every worker has exited, the
stores are checked.

    python -m tests.chaos                  # 4 workers, 48 trials of 10 epochs, 4 kills,
                                           # 2 stops, 1 outage of the server
    python -m tests.chaos --workers 6 --kills 6 --stops 3 --outages 2 --seed 7 --engine stacked
    python -m tests.chaos --tune           # a tuned suite, `nnbench tune` processes
    python -m tests.chaos --verbose        # every worker's output, with times, also on success
    nox -s chaos [-- the same options]

On the 2-core machine the default run (4 kills, 1 SIGTERM, 2 stops, 1 outage) took 18 s of
chaos, `--tune` 20 s, measured together on one day (a day when the CPU ran about twice as
fast as on others).

The CI-sized cases are tests/test_chaos.py, part of `nox -s tests`. `python -m
tests.chaos` runs `test_chaos` below through pytest, for the fixtures of tests/conftest.py
(the session's PostgreSQL server, the dataset cache, the forkserver of tests/processes.py);
its options travel in $NNBENCH_CHAOS. pytest does not collect this file otherwise (its name
is not test_*.py).

The schedule: each event fires once the suite has that many trials done in MLflow (progress,
not time: a slow machine gets the same schedule); its victim is drawn from the live workers
that are not stopped, those in the middle of a trial (an open MLflow run) first. A victim is
frozen first (SIGSTOP, every thread stopped) and its open runs noted, then killed (SIGKILL,
and a new worker started), terminated (SIGTERM then SIGCONT: it records its trials in flight
as killed, releases their claims and exits 130; a new worker is started at once) or left
stopped for 1.5 grace periods and a bit, then continued.
An outage has no victim: the server is stopped (`pg_ctl stop -m fast`: every session ended,
its transaction rolled back; new connections refused) and started again on the same port
1 to 2 s later, short of the grace period (4 s) with the time to start and a retry's backoff,
so a worker's claims usually survive it; the workers wait for it (their heartbeats fail
meanwhile).
Liveness is fast (`--heartbeat-interval 1 --grace-period 4`), so a silent worker's trials go
back to the queue within seconds.

Checked afterwards, all at once (a failure lists every property that failed, with the seed,
the schedule as carried out, every worker's exit code and the tails of their logs):

- grid suite: every trial finished once among the active MLflow runs, none finished twice
  among all runs (deleted ones included), the fingerprints equal those of an undisturbed
  run (one worker, the same engine and lanes, a fresh SQLite store), every clean worker
  (not SIGKILLed or SIGTERMed; a stopped and continued one is clean) exited 0 and every
  SIGTERMed one 130, no trial run is left RUNNING (nor an invocation run: a killed
  worker's is ended by the others, all on one host), every run's MLflow status agrees with
  its `nnbench.status`, for every trial MLflow's status equals the queue's
  (`QUEUE_TO_MLFLOW`), whose entries are all ended, and the queue holds one entry of each
  trial that did not fail (the workers, which start at the same instant on the fresh
  store, queued each trial once; a copy only replaced an attempt that failed, as a killed
  or stopped worker's does);
- tuning suite: each study has exactly its budget of counted Optuna trials, nothing running
  or waiting, each trial failed as stale has a copy that counted (with its parameters, if it
  had drawn any; one that had drawn none, asked past a budget the others then met, may have
  a copy failed as surplus instead: the exact budget is checked apart), every Optuna trial
  and its MLflow tune run hold the same state (`OPTUNA_TO_MLFLOW`; no tune run without its
  trial, none twice), the re-runs of each study's best values over the tune seeds each
  finished once among active runs and never twice among all runs, MLflow's status of each
  re-run equals the queue's, every clean worker exited 0, and each Optuna trial killed by a
  SIGTERM had its parameters trained again by a later trial that counted.

Only public surfaces are read: the commands as processes (exit codes, output), the MLflow
store (runs and the tags the README describes) and the Optuna storage. One function,
`queue_states`, knows how the trial queue keeps a trial (the study `<suite>/trials`, one
entry per attempt with the user attribute `nnbench.trial_id`): when the queue's layout
changes, it is the one place to change.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from nnbench.config import Suite, load_suite
from nnbench.transient import retrying
from nnbench.tuning import COUNTED, best_values, study_name, tuned_trials
from tests.conftest import Postgres, stop_process
from tests.processes import Command, start
from tests.test_workers import HEAD  # trials of a fraction of a second each

__all__ = ["OPTUNA_TO_MLFLOW", "QUEUE_TO_MLFLOW", "Chaos", "Plan", "check_grid", "check_tuning",
           "grid_suite", "main", "queue_states", "run_chaos", "schedule", "seed_from_env",
           "tuning_suite"]

HEARTBEAT_S, GRACE_S = 1, 4
LIVENESS = ("--heartbeat-interval", str(HEARTBEAT_S), "--grace-period", str(GRACE_S))
DONE = frozenset({"finished", "diverged"})  # a trial that needs no more training
# a run's MLflow status for each nnbench.status it closed with (the README's run layout)
RUN_STATUS = {"finished": "FINISHED", "diverged": "FINISHED", "pruned": "FINISHED",
              "failed": "FAILED", "killed": "KILLED"}
# the queue's state of a trial -> the nnbench.status MLflow may show for it (its one done
# active run's, else its latest run's); "queued" and "running" are never left after a drain
QUEUE_TO_MLFLOW: dict[str, frozenset[str]] = {
    "done": DONE,
    "failed": frozenset({"failed", "killed"}),
}
# an Optuna trial (state, nnbench.outcome) -> its MLflow tune run (run status, nnbench.status,
# nnbench.optuna_state); None: it has no run. A trial failed as stale (its worker was killed
# or stopped; no outcome) has a run closed as killed if its worker had opened one.
OPTUNA_TO_MLFLOW: dict[tuple[TrialState, str | None], frozenset[tuple[str, str, str | None]
                                                                 | None]] = {
    (TrialState.COMPLETE, "finished"): frozenset({("FINISHED", "finished", "complete")}),
    (TrialState.PRUNED, "pruned"): frozenset({("FINISHED", "pruned", "pruned")}),
    (TrialState.FAIL, "diverged"): frozenset({("FINISHED", "diverged", "failed")}),
    (TrialState.FAIL, "failed"): frozenset({("FAILED", "failed", "failed")}),
    (TrialState.FAIL, "killed"): frozenset({("KILLED", "killed", "killed")}),
    (TrialState.FAIL, None): frozenset({("KILLED", "killed", "killed"), None}),
    (TrialState.FAIL, "surplus"): frozenset({None}),  # asked past the budget, never trained
}


def grid_suite(name: str, trials: int, epochs: int) -> str:
    """A grid suite of `trials` trials (three activations, or two when `trials` is even but
    not a multiple of three; the rest are seeds)."""
    levels = ["tanh", "relu", "elu"] if trials % 3 == 0 else ["tanh", "relu"]
    if trials % len(levels):
        raise ValueError(f"{trials} trials: a multiple of 2 or 3, please")
    return (HEAD.format(name=name, epochs=epochs)
            + f"grid:\n  activation: [{', '.join(levels)}]\nseeds: {trials // len(levels)}\n")


def tuning_suite(name: str, points: int, budget: int, seeds: int, epochs: int) -> str:
    """A tuned suite: `points` optimizers, each a study of `budget` random-sampled learning
    rates, its best re-run over `seeds` seeds."""
    optimizers = ["sgd", "adam", "rmsprop", "adamw"][:points]
    return HEAD.format(name=name, epochs=epochs) + f"""\
grid:
  optimizer: [{', '.join(optimizers)}]
tune:
  space:
    optimizer.lr: {{type: float, low: 0.001, high: 0.3, log: true}}
  trials: {budget}
  sampler: {{name: random, seed: 0}}
  pruner: {{name: none}}
  seeds: {seeds}
"""


# -- the schedule -------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What to run and how much to disturb it."""

    workers: int = 3  # worker processes running at once (a killed one is replaced)
    kills: int = 1  # SIGKILLs, each followed by a new worker
    terms: int = 0  # SIGTERMs, each followed by a new worker (the victim exits 130)
    stops: int = 1  # SIGSTOPs, each for 1.5 grace periods plus up to 2 s, then SIGCONT
    outages: int = 0  # the PostgreSQL server stopped, each for 1 to 2 s, then started again
    seed: int = 0  # of the schedule
    engine: str = "serial"  # the workers' --engine (and the reference run's)
    lanes: int | None = None  # their --lanes
    # the command of each worker, in turn (a replacement runs its victim's): `worker`, or
    # for a tuned suite `tune` too (which also renders the report at its end)
    commands: tuple[str, ...] = ("worker",)
    timeout_s: float = 600.0  # the whole run, every worker exited


@dataclass(frozen=True)
class Event:
    after: int  # fires once this many trials (or Optuna trials) are done in MLflow
    action: str  # kill | term | stop | outage
    pick: float  # which victim: candidates[int(pick * len(candidates))] (none for an outage)
    seconds: float  # how long a stopped worker (or the server) stays stopped (0 for a kill)

    def line(self) -> str:
        if self.action == "outage":
            return f"after {self.after} done: server down for {self.seconds:.1f} s"
        held = f" for {self.seconds:.1f} s" if self.action == "stop" else " and replace"
        return f"after {self.after} done: {self.action}{held} (pick {self.pick:.2f})"


def schedule(plan: Plan, total: int) -> list[Event]:
    """The seeded events, by progress: thresholds drawn from 1 .. total/2, so every event
    fires while most of the suite is still to do."""
    rng = random.Random(plan.seed)
    actions = (["kill"] * plan.kills + ["term"] * plan.terms + ["stop"] * plan.stops
               + ["outage"] * plan.outages)
    rng.shuffle(actions)
    afters = sorted(rng.randint(1, max(1, total // 2)) for _ in actions)
    seconds = {"kill": lambda: 0.0, "term": lambda: 0.0,
               "stop": lambda: round(1.5 * GRACE_S + rng.uniform(0, 2), 1),
               "outage": lambda: round(rng.uniform(1, 2), 1)}
    return [Event(after, action, rng.random(), seconds[action]())
            for after, action in zip(afters, actions, strict=True)]


# -- the stores, read from outside ---------------------------------------------------------

def _experiment_id(uri: str, name: str) -> str | None:
    """The suite's MLflow experiment, read with plain SQL: an MlflowClient on a database
    whose schema a worker is still creating would create it too."""
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as connection:
            found = connection.execute(sqlalchemy.text(
                "SELECT experiment_id FROM experiments WHERE name = :name"),
                {"name": name}).first()
        return None if found is None else str(found[0])
    except sqlalchemy.exc.DBAPIError:  # no tables yet
        return None
    finally:
        engine.dispose()


def _runs(client: MlflowClient, experiment_id: str, roles: Sequence[str] = ("trial",),
          view: int = ViewType.ALL) -> list[Run]:
    """The runs of `roles`, read again from the start when the server ends the session in
    between, as workers retry: on a loaded machine the harness, starved between two
    queries of one read, outlasted the server's idle_in_transaction_session_timeout (5 s)
    and failed the test with "server closed the connection unexpectedly"."""
    def read() -> list[Run]:
        runs: list[Run] = []
        for role in roles:
            token = None
            while True:
                page = client.search_runs([experiment_id], f"tags.`nnbench.role` = '{role}'",
                                          run_view_type=view, max_results=1000,
                                          page_token=token)
                runs += list(page)
                token = page.token
                if not token:
                    break
        return runs

    return retrying(read, "the chaos harness reading the runs", say=False)


def _is_done(run: Run) -> bool:
    """Finished or diverged and closed (the README's definition of a done trial)."""
    return run.data.tags.get("nnbench.status") in DONE and run.info.status == "FINISHED"


def queue_states(storage: str, suite: str
                 ) -> tuple[dict[str, str], Counter[str], Counter[str]]:
    """The queue's state of each trial it holds (done, running, queued or failed: an entry
    that is done makes the trial done, else one running, else one waiting), the Optuna
    states of its entries, and how many entries of each trial did not fail (a trial is
    queued once, and again only after an attempt failed: one each). The one function that
    knows the queue's layout."""
    entries = optuna.load_study(study_name=f"{suite}/trials", storage=storage).get_trials(
        deepcopy=False)
    rank = {TrialState.COMPLETE: (3, "done"), TrialState.RUNNING: (2, "running"),
            TrialState.WAITING: (1, "queued")}
    best: dict[str, tuple[int, str]] = {}
    alive: Counter[str] = Counter()
    for entry in entries:
        trial_id = entry.user_attrs.get("nnbench.trial_id")
        if trial_id is None:
            continue
        state = rank.get(entry.state, (0, "failed"))
        best[str(trial_id)] = max(best.get(str(trial_id), state), state)
        alive[str(trial_id)] += entry.state != TrialState.FAIL
    return ({t: state for t, (_, state) in best.items()},
            Counter(e.state.name for e in entries), alive)


# -- one chaos run ------------------------------------------------------------------------

@dataclass
class Worker:
    number: int
    name: str  # the nnbench command it runs: worker or tune
    command: Command
    started: float  # seconds since the chaos began
    replaces: int | None = None  # the number of the killed worker it replaces
    killed: bool = False  # SIGKILLed by the chaos (not a clean worker)
    terminated: bool = False  # SIGTERMed by the chaos: it must exit 130 (see `exits`)
    term_held: bool = False  # it held an open run when SIGTERMed
    stopped_until: float | None = None  # monotonic time of its SIGCONT while stopped
    stops: int = 0
    lines: list[tuple[float, str]] = field(default_factory=list)  # its output, as it came
    _read: int = 0  # bytes of its log read so far

    def follow(self, now: float) -> None:
        """Stamp the lines it printed since the last look with the chaos's clock."""
        with open(self.command.log, "rb") as log:
            log.seek(self._read)
            chunk = log.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._read += len(complete)
        self.lines += [(now, line) for line in
                       complete.decode(errors="replace").splitlines()]

    @property
    def label(self) -> str:
        return f"w{self.number} (`nnbench {self.name}`, pid {self.command.pid})"


@dataclass
class Chaos:
    """One run: its plan, the workers, what was done to them, and the outcome."""

    plan: Plan
    suite: Suite
    path: Path
    postgres: Postgres
    cwd: Path
    events: list[Event]
    total: int  # units of progress: trials (grid), or Optuna trials and re-runs (tuning)
    workers: list[Worker] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what was done, as it happened
    fired: int = 0
    hits: Counter[str] = field(default_factory=Counter)  # kill/stop of a worker mid-trial
    seconds: float = 0.0
    began: float = field(default_factory=time.monotonic)
    client: MlflowClient | None = None  # on the MLflow store, once a worker has made it
    experiment_id: str | None = None
    down_until: float | None = None  # the server is stopped until then (an outage)

    # -- workers ----------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.began

    def say(self, line: str) -> None:
        text = f"[chaos {self.now():6.1f} s] {line}"
        self.log.append(text)
        print(text, flush=True)

    def spawn(self, name: str, replaces: int | None = None) -> Worker:
        number = len(self.workers) + 1
        options = ["--device", "cpu", "--storage", self.postgres.optuna, "--tracking-uri",
                   self.postgres.mlflow, *LIVENESS, "--engine", self.plan.engine,
                   *(["--lanes", str(self.plan.lanes)] if self.plan.lanes else [])]
        if name == "tune":
            options += ["--report-dir", str(self.cwd / "reports")]
        command = start(name, str(self.path), *options, cwd=self.cwd,
                        log=self.cwd / f"worker-{number}.log")
        worker = Worker(number, name, command, self.now(), replaces)
        self.workers.append(worker)
        return worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.command.poll() is None]

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> None:
        names = [self.plan.commands[i % len(self.plan.commands)]
                 for i in range(self.plan.workers)]
        kinds = ", ".join(f"{n} `nnbench {c}`" for c, n in Counter(names).items())
        self.say(f"seed {self.plan.seed}: {self.plan.workers} workers ({kinds}), engine "
                 f"{self.plan.engine}"
                 f"{f' ({self.plan.lanes} lanes)' if self.plan.lanes else ''}, {self.total} "
                 f"to do; schedule: " + ("; ".join(e.line() for e in self.events) or "none"))
        for name in names:
            self.spawn(name)
        pending = list(self.events)
        progress = 0
        deadline = time.monotonic() + self.plan.timeout_s
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the workers did not drain the suite within "
                                   f"{self.plan.timeout_s:.0f} s ({progress} of {self.total} "
                                   f"done)")
            for worker in self.workers:
                if worker.stopped_until is not None and time.monotonic() >= worker.stopped_until:
                    worker.command.send_signal(signal.SIGCONT)
                    worker.stopped_until = None
                    self.say(f"SIGCONT {worker.label}")
            if self.down_until is not None and time.monotonic() >= self.down_until:
                self.down_until = None  # (a failed start is not tried again by `finally`)
                self.postgres.control.start()
                self.say("PostgreSQL server started again")
            server_up = self.down_until is None  # else nothing to read until it is back
            if server_up and self.experiment_id is None:
                self.experiment_id = _experiment_id(self.postgres.mlflow, self.suite.name)
            if server_up and self.experiment_id is not None:
                runs = self._open_and_done()
                progress = sum(1 for r in runs if r.info.status != "RUNNING" and
                               r.data.tags.get("nnbench.status") in {*DONE, "pruned"})
                # (an outage ends the round: what follows reads the stores)
                while pending and pending[0].after <= progress and self.down_until is None:
                    if not self._fire(pending[0], runs):
                        break  # no worker to pick now (all stopped): the next round
                    pending.pop(0)
            for worker in self.workers:
                worker.follow(self.now())
            if not self.live():
                break
            time.sleep(0.2)
        self.seconds = self.now()
        for worker in self.workers:
            worker.follow(self.now())
        for event in pending:
            self.say(f"not fired (every worker had exited): {event.line()}")
        codes = ", ".join(f"{w.label}: {w.command.returncode}" for w in self.workers)
        self.say(f"every worker exited after {self.seconds:.1f} s: {codes}")

    def _open_and_done(self) -> list[Run]:
        """The suite's active trial and tune runs (read once the experiment exists)."""
        assert self.experiment_id is not None
        self.client = self.client or MlflowClient(self.postgres.mlflow)
        return _runs(self.client, self.experiment_id, ("trial", "tune"), ViewType.ACTIVE_ONLY)

    def _fire(self, event: Event, runs: list[Run]) -> bool:
        """Carry out one event on a worker (or the server); False when there is none to
        pick."""
        if event.action == "outage":
            mid_trial = sum(1 for w in self.live() if self._open_runs(w, runs))
            self.postgres.control.stop()
            self.down_until = time.monotonic() + event.seconds
            self.hits["outage" + (" mid-trial" if mid_trial else "")] += 1
            self.fired += 1
            self.say(f"PostgreSQL server stopped, {mid_trial} worker(s) in the middle of a trial "
                     f"({event.line()})")
            return True
        while True:
            candidates = [w for w in self.live() if w.stopped_until is None]
            if not candidates:
                return False
            busy = [w for w in candidates if self._open_runs(w, runs)]
            pool = busy or candidates
            victim = pool[int(event.pick * len(pool))]
            try:
                stop_process(victim.command)
            except AssertionError:
                if victim.command.poll() is None:
                    raise
                continue  # it exited just now: pick again
            # what it holds, read while it cannot move (its last writes may still land)
            held = self._open_runs(victim, self._open_and_done())
            what = f"in the middle of {', '.join(held)}" if held else "holding no open run"
            self.hits[event.action + (" mid-trial" if held else "")] += 1
            self.fired += 1
            if event.action == "kill":
                victim.command.send_signal(signal.SIGKILL)
                victim.command.wait(timeout=60)
                victim.killed = True
                new = self.spawn(victim.name, replaces=victim.number)
                self.say(f"SIGKILL {victim.label}, {what} ({event.line()}); started "
                         f"{new.label}")
            elif event.action == "term":
                victim.command.send_signal(signal.SIGTERM)
                victim.command.send_signal(signal.SIGCONT)
                victim.terminated, victim.term_held = True, bool(held)
                new = self.spawn(victim.name, replaces=victim.number)
                self.say(f"SIGTERM {victim.label}, {what} ({event.line()}); started "
                         f"{new.label}")
            else:
                victim.stopped_until = time.monotonic() + event.seconds
                victim.stops += 1
                self.say(f"SIGSTOP {victim.label}, {what} ({event.line()})")
            return True

    @staticmethod
    def _open_runs(worker: Worker, runs: list[Run]) -> list[str]:
        """The worker's open (RUNNING) trial and tune runs, by name."""
        return [f"{r.data.tags.get('nnbench.role')} '{r.info.run_name}'" for r in runs
                if r.info.status == "RUNNING"
                and r.data.tags.get("nnbench.worker", "").endswith(f":{worker.command.pid}")]

    # -- what a failure says -------------------------------------------------------------------

    def describe(self, tail: int = 40) -> str:
        lines = [f"chaos seed {self.plan.seed} (reproduce the schedule: "
                 f"NNBENCH_CHAOS_SEED={self.plan.seed}, or python -m tests.chaos --seed "
                 f"{self.plan.seed}); plan {asdict(self.plan)}",
                 "schedule: " + ("; ".join(e.line() for e in self.events) or "none"),
                 "what was done:", *(f"  {line}" for line in self.log), "workers:"]
        for w in self.workers:
            role = f"replacing w{w.replaces}" if w.replaces else "first"
            state = ("SIGKILLed" if w.killed else "SIGTERMed, " * w.terminated +
                     f"exit {w.command.returncode}" + (f", stopped {w.stops}x" if w.stops else ""))
            lines.append(f"  {w.label}, {role}, started at {w.started:.1f} s: {state}")
        for w in self.workers:
            w.follow(self.now())
            output = [f"{at:6.1f} s | {line}" for at, line in w.lines if line.strip()]
            lines.append(f"--- {w.label}: last {min(tail, len(output))} of {len(output)} "
                         f"lines of {w.command.log} (each with the chaos time it was seen at)")
            lines += output[-tail:]
        return "\n".join(lines)

    def summary(self) -> str:
        replaced = sum(1 for w in self.workers if w.replaces)
        hits = ", ".join(f"{n} {what}" for what, n in sorted(self.hits.items())) or "no event"
        return (f"chaos seed {self.plan.seed}: {self.plan.workers} workers (+{replaced} "
                f"replacements), {self.total} to do, {self.fired} of {len(self.events)} events "
                f"fired ({hits}); every worker exited after {self.seconds:.1f} s")

    # -- the properties ----------------------------------------------------------------------

    def who(self, label: object) -> str:
        """The worker a `host:pid` label (nnbench.worker) names, as w<number>."""
        pid = str(label).rpartition(":")[2]
        found = [f"w{w.number}" for w in self.workers if str(w.command.pid) == pid]
        return found[0] if found else f"{label} (no worker of the chaos)"

    def run_line(self, run: Run) -> str:
        tags = run.data.tags
        return (f"run {run.info.run_id[:8]} of {self.who(tags.get('nnbench.worker'))}: "
                f"{run.info.status}/{tags.get('nnbench.status')}, {run.info.lifecycle_stage}")

    def exits(self) -> list[str]:
        """Every clean worker (not SIGKILLed or SIGTERMed; stopped ones included) exited 0,
        every SIGTERMed one 130 (interrupted), or -15 if it held no open run: one still
        importing when signalled, before `nnbench` took SIGTERM as an interrupt, ends at
        once, holding nothing."""
        def allowed(w: Worker) -> list[int]:
            if not w.terminated:
                return [0]
            return [130] if w.term_held else [130, -int(signal.SIGTERM)]

        return [f"{w.label} (not killed) exited {w.command.returncode}, not "
                f"{' or '.join(map(str, allowed(w)))}" for w in self.workers
                if not w.killed and w.command.returncode not in allowed(w)]


def _trials_once(chaos: Chaos, client: MlflowClient, experiment_id: str, trial_ids: set[str]
                 ) -> tuple[list[str], dict[str, Run]]:
    """The properties of trial runs (a grid's trials, or a tuned suite's re-runs): each of
    `trial_ids` finished once among active runs and never twice among all runs, no run left
    open (an invocation run neither), each run's statuses agree, and MLflow's status of each
    trial is the queue's. Returns the problems and each trial's done run."""
    problems: list[str] = []
    every = [r for r in _runs(client, experiment_id)
             if r.data.tags.get("nnbench.trial_id") in trial_ids]
    active = [r for r in every if r.info.lifecycle_stage == "active"]
    done_active = Counter(r.data.tags["nnbench.trial_id"] for r in active if _is_done(r))
    done_all = Counter(r.data.tags["nnbench.trial_id"] for r in every if _is_done(r))

    def runs_of(trial_id: str) -> str:
        return "; ".join(chaos.run_line(r) for r in every
                         if r.data.tags["nnbench.trial_id"] == trial_id) or "no run"

    for trial_id in sorted(trial_ids):
        if done_active[trial_id] != 1:
            problems.append(f"trial {trial_id}: {done_active[trial_id]} done active runs, "
                            f"not 1 ({runs_of(trial_id)})")
        if done_all[trial_id] > 1:
            problems.append(f"trial {trial_id}: done {done_all[trial_id]} times among all "
                            f"runs, deleted ones included ({runs_of(trial_id)})")
    for run in every:
        status = run.data.tags.get("nnbench.status")
        if run.info.status == "RUNNING":
            problems.append(f"trial {run.data.tags['nnbench.trial_id']}: a run is left "
                            f"RUNNING ({runs_of(run.data.tags['nnbench.trial_id'])})")
        elif RUN_STATUS.get(str(status)) != run.info.status:
            problems.append(f"trial {run.data.tags['nnbench.trial_id']}: {chaos.run_line(run)}"
                            f": its MLflow status is not its nnbench.status's")
    for run in _runs(client, experiment_id, ("suite",)):
        if run.info.status == "RUNNING":  # its process was killed: the others end it
            problems.append(f"invocation run {run.info.run_id} of "
                            f"{chaos.who(run.data.tags.get('nnbench.worker'))} is left RUNNING")
    queue, entries, alive = queue_states(chaos.postgres.optuna, chaos.suite.name)
    if entries["WAITING"] or entries["RUNNING"]:
        problems.append(f"queue entries left waiting or running: {dict(entries)}")
    for trial_id in sorted(trial_ids):
        if alive[trial_id] != 1:  # queued by two workers at once, or copied twice
            problems.append(f"trial {trial_id}: {alive[trial_id]} queue entries that did "
                            f"not fail, not 1 ({runs_of(trial_id)})")
        in_queue = queue.get(trial_id, "absent")
        runs = sorted((r for r in active if r.data.tags["nnbench.trial_id"] == trial_id
                       and r.info.status != "RUNNING"), key=lambda r: r.info.start_time or 0)
        done = [r for r in runs if _is_done(r)]
        shown = (done[-1] if done else runs[-1]).data.tags.get("nnbench.status") if runs \
            else None
        if shown not in QUEUE_TO_MLFLOW.get(in_queue, frozenset()):
            problems.append(f"trial {trial_id}: the queue says {in_queue}, MLflow {shown} "
                            f"({runs_of(trial_id)})")
    return problems, {r.data.tags["nnbench.trial_id"]: r for r in active if _is_done(r)}


def check_grid(chaos: Chaos, reference_uri: str) -> list[str]:
    """Every property of a grid suite after the chaos (module docstring)."""
    client = MlflowClient(chaos.postgres.mlflow)
    experiment_id = _experiment_id(chaos.postgres.mlflow, chaos.suite.name)
    if experiment_id is None:
        return ["no MLflow experiment was created", *chaos.exits()]
    trial_ids = {t.trial_id for t in chaos.suite.trials()}
    problems, finished = _trials_once(chaos, client, experiment_id, trial_ids)
    others = {str(r.data.tags.get("nnbench.trial_id")) for r in _runs(client, experiment_id)}
    if others - trial_ids:
        problems.append(f"runs of trials not in the suite: {sorted(others - trial_ids)}")
    reference = MlflowClient(reference_uri)
    ref_experiment = reference.get_experiment_by_name(chaos.suite.name)
    assert ref_experiment is not None, "the reference run made no experiment"
    expected = {r.data.tags["nnbench.trial_id"]: r.data.tags.get("nnbench.fingerprint")
                for r in _runs(reference, ref_experiment.experiment_id, view=ViewType.ACTIVE_ONLY)
                if _is_done(r)}
    if set(expected) != trial_ids:
        problems.append(f"the reference run finished {len(expected)} of {len(trial_ids)} trials")
    for trial_id, run in sorted(finished.items()):
        got = run.data.tags.get("nnbench.fingerprint")
        if trial_id in expected and got != expected[trial_id]:
            problems.append(f"trial {trial_id}: fingerprint {got}, undisturbed "
                            f"{expected[trial_id]} ({chaos.run_line(run)})")
    return problems + chaos.exits()


def check_tuning(chaos: Chaos) -> list[str]:
    """Every property of a tuned suite after the chaos (module docstring)."""
    suite, storage = chaos.suite, chaos.postgres.optuna
    tune = suite.tune
    assert tune is not None
    experiment_id = _experiment_id(chaos.postgres.mlflow, suite.name)
    if experiment_id is None:
        return ["no MLflow experiment was created", *chaos.exits()]
    client = MlflowClient(chaos.postgres.mlflow)
    problems: list[str] = []
    tune_runs: dict[tuple[str, int], list[Run]] = {}
    for run in _runs(client, experiment_id, ("tune",)):
        key = (run.data.tags["nnbench.study"], int(run.data.tags["nnbench.optuna_trial"]))
        tune_runs.setdefault(key, []).append(run)
    points: dict[str, tuple[Any, dict[str, Any]]] = {}
    for point in suite.configurations():
        name = study_name(suite, point)
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counted = [t for t in trials if t.user_attrs.get(COUNTED)]
        if len(counted) != tune.trials:
            problems.append(f"{name}: {len(counted)} counted trials, budget {tune.trials}")
        left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        if left:
            problems.append(f"{name}: trials {left} left running or waiting")
        problems += _copies_counted(name, trials) + _killed_points_counted(name, trials)
        for trial in trials:
            outcome = trial.user_attrs.get("nnbench.outcome")
            found = tune_runs.pop((name, trial.number), [])
            recorded = [(r.info.status, r.data.tags.get("nnbench.status"),
                         r.data.tags.get("nnbench.optuna_state")) for r in found]
            allowed = OPTUNA_TO_MLFLOW.get((trial.state, outcome), frozenset())
            if len(recorded) > 1 or (recorded[0] if recorded else None) not in allowed:
                runs = "; ".join(f"{chaos.run_line(r)}, optuna_state "
                                 f"{r.data.tags.get('nnbench.optuna_state')}" for r in found)
                problems.append(f"{name} trial {trial.number} (asked by "
                                f"{chaos.who(trial.user_attrs.get('nnbench.worker'))}): Optuna "
                                f"{trial.state.name}, outcome {outcome}; MLflow "
                                f"{runs or 'no run'}")
        best = best_values(study)
        if best is None:
            problems.append(f"{name}: no complete trial, no best values")
        else:
            points[point.config_id] = (point, best)
    if tune_runs:
        problems.append(f"MLflow tune runs without their Optuna trial: {sorted(tune_runs)}")
    reruns = {t.trial_id for t in tuned_trials(suite, points)}
    problems += _trials_once(chaos, client, experiment_id, reruns)[0]
    others = {r.data.tags.get("nnbench.trial_id") for r in _runs(client, experiment_id)}
    if others - reruns:
        problems.append(f"re-runs of values that are not a study's best: "
                        f"{sorted(str(t) for t in others - reruns)}")
    return problems + chaos.exits()


def _copies_counted(name: str, trials: list[FrozenTrial]) -> list[str]:
    """Each Optuna trial failed as stale (no outcome) has a copy that counted (or was killed
    by SIGTERM, its values queued again), at the end of its chain of copies, with its
    parameters (a trial whose worker died between asking for
    it and drawing its parameters, or whose ask lost its answer, had none: its copy draws its
    own, or is failed as surplus when the others met the budget, which is checked apart)."""
    problems = []
    copies: dict[int, FrozenTrial] = {}
    for trial in trials:
        with warnings.catch_warnings():  # Optuna calls it experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
        if history:
            copies[history[-1]] = trial
    for trial in trials:
        if trial.state != TrialState.FAIL or trial.user_attrs.get("nnbench.outcome"):
            continue
        last = trial
        while last.number in copies:
            last = copies[last.number]
        surplus = not trial.params and last.user_attrs.get("nnbench.outcome") == "surplus"
        # a copy killed by its worker's SIGTERM queued its values again, with no link to it:
        # `_killed_points_counted` checks that a later trial with them counted
        killed = bool(last.params) and last.user_attrs.get("nnbench.outcome") == "killed"
        if last is trial or not (last.user_attrs.get(COUNTED) or surplus or killed) or (
                trial.params and last.params != trial.params):
            problems.append(f"{name} trial {trial.number} failed as stale; its last copy "
                            f"{'(none)' if last is trial else last.number} "
                            f"{last.state.name} counted={bool(last.user_attrs.get(COUNTED))}")
    return problems


def _killed_points_counted(name: str, trials: list[FrozenTrial]) -> list[str]:
    """Each Optuna trial killed by its worker's interrupt (SIGTERM: outcome killed) with
    parameters drawn has them trained again by a later trial that counted (its copy,
    queued with those values)."""
    return [f"{name} trial {t.number} was killed (SIGTERM) with {t.params}; no later trial "
            f"with them counted" for t in trials
            if t.state == TrialState.FAIL and t.user_attrs.get("nnbench.outcome") == "killed"
            and t.params and not any(c.number > t.number and c.params == t.params
                                     and c.user_attrs.get(COUNTED) for c in trials)]


def run_chaos(plan: Plan, suite_path: Path, postgres: Postgres, cwd: Path,
              reference_uri: str | None = None, *, verbose: bool = False) -> Chaos:
    """Run the chaos of `plan` on the suite at `suite_path` and check every property
    (`check_grid` against an undisturbed run into `reference_uri`, a fresh store, or
    `check_tuning`); AssertionError lists each failed property with `Chaos.describe`, which
    `verbose` prints after a success too (every worker's whole output, with times).
    The reference run (one worker, the same engine and lanes) trains while the chaos does."""
    suite = load_suite(suite_path)
    tune = suite.tune
    total = (len(suite.trials()) if tune is None
             else len(suite.configurations()) * (tune.trials + len(tune.seeds)))
    chaos = Chaos(plan, suite, suite_path, postgres, cwd, schedule(plan, total), total)
    reference: Command | None = None
    if tune is None:
        assert reference_uri is not None, "a grid suite's chaos needs a reference store"
        reference = start("worker", str(suite_path), "--device", "cpu", "--storage",
                          f"sqlite:///{cwd / 'reference-optuna.db'}", "--tracking-uri",
                          reference_uri, "--engine", plan.engine,
                          *(["--lanes", str(plan.lanes)] if plan.lanes else []), cwd=cwd,
                          log=cwd / "reference.log")
    try:
        chaos.run()
    except BaseException as err:
        raise AssertionError(f"{type(err).__name__}: {err}\n\n{chaos.describe()}") from err
    finally:
        for worker in chaos.workers:  # a failed run leaves none stopped
            worker.command.send_signal(signal.SIGCONT)
        if chaos.down_until is not None:  # nor the server
            postgres.control.start()
    if reference is not None:
        output = reference.finish(timeout=600)
        assert reference.returncode == 0, f"the undisturbed reference run failed:\n{output}"
        problems = check_grid(chaos, str(reference_uri))
    else:
        problems = check_tuning(chaos)
    if problems:
        raise AssertionError(f"{len(problems)} propert{'y' if len(problems) == 1 else 'ies'} "
                             f"failed:\n  " + "\n  ".join(problems) + f"\n\n{chaos.describe()}")
    print(chaos.summary(), flush=True)
    if verbose:
        print(chaos.describe(tail=10_000), flush=True)
    return chaos


def seed_from_env() -> int:
    """$NNBENCH_CHAOS_SEED, else a new seed (printed with every run and failure)."""
    return int(os.environ.get("NNBENCH_CHAOS_SEED") or random.randrange(1 << 16))


# -- python -m tests.chaos ------------------------------------------------------------------

_ENV = "NNBENCH_CHAOS"  # python -m tests.chaos -> test_chaos: the options, as JSON


@pytest.fixture
def chaos_options() -> dict[str, Any]:
    raw = os.environ.get(_ENV)
    if raw is None:
        pytest.skip("run through `python -m tests.chaos` (nox -s chaos)")
    options: dict[str, Any] = json.loads(raw)
    return options


def test_chaos(chaos_options: dict[str, Any], postgres: Postgres, tmp_path: Path,
               mlflow_store: Callable[[Path], str]) -> None:
    """The run `python -m tests.chaos` asked for."""
    options = dict(chaos_options)
    tuned, trials, epochs = options.pop("tune"), options.pop("trials"), options.pop("epochs")
    verbose = options.pop("verbose")
    plan = Plan(**options, commands=("tune",) if tuned else ("worker",))
    path = tmp_path / "chaos.yaml"
    if tuned:
        points = 2
        budget = max(1, trials // points - 2)
        path.write_text(tuning_suite("chaos", points, budget, 2, epochs))
        run_chaos(plan, path, postgres, tmp_path, verbose=verbose)
    else:
        path.write_text(grid_suite("chaos", trials, epochs))
        run_chaos(plan, path, postgres, tmp_path, mlflow_store(tmp_path / "reference.db"),
                  verbose=verbose)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=(
        "N workers on a fresh PostgreSQL store drain a suite while random ones are SIGKILLed "
        "(and replaced) or SIGSTOPped past the grace period and the server is stopped for "
        "a few seconds; then every property of "
        "tests/chaos.py is checked. Needs PostgreSQL's initdb and pg_ctl."))
    parser.add_argument("--workers", type=int, default=4, help="workers at once (default 4)")
    parser.add_argument("--trials", type=int, default=48,
                        help="trials of the grid suite (a multiple of 2 or 3; default 48); "
                             "with --tune, about the Optuna trials and re-runs in all")
    parser.add_argument("--epochs", type=int, default=10,
                        help="epochs per trial (default 10: under half a second each)")
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs (default 4)")
    parser.add_argument("--terms", type=int, default=1, help="SIGTERMs (default 1)")
    parser.add_argument("--stops", type=int, default=2, help="SIGSTOPs (default 2)")
    parser.add_argument("--outages", type=int, default=1,
                        help="times the PostgreSQL server is stopped for 1 to 2 s (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="of the schedule (default: new)")
    parser.add_argument("--engine", choices=("serial", "stacked"), default="serial")
    parser.add_argument("--lanes", type=int, default=None,
                        help="most lanes of a stacked group (default: 2 with --engine stacked)")
    parser.add_argument("--tune", action="store_true",
                        help="a tuned suite, `nnbench tune` processes as the workers")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds (default 900)")
    parser.add_argument("--verbose", action="store_true",
                        help="print every worker's output, with times, after a success too")
    args = parser.parse_args(argv)
    lanes = args.lanes or (2 if args.engine == "stacked" else None)
    seed = args.seed if args.seed is not None else seed_from_env()
    os.environ[_ENV] = json.dumps({
        "workers": args.workers, "kills": args.kills, "terms": args.terms, "stops": args.stops,
        "outages": args.outages, "seed": seed,
        "engine": args.engine, "lanes": lanes, "timeout_s": args.timeout, "tune": args.tune,
        "trials": args.trials, "epochs": args.epochs, "verbose": args.verbose})
    # (this process imported MLflow before pytest could rewrite the plugins it imports)
    return int(pytest.main([f"{__file__}::test_chaos", "-q", "-s", "-n", "0",
                            "-p", "no:cacheprovider", "--benchmark-disable",
                            "-W", "ignore::pytest.PytestAssertRewriteWarning"]))


if __name__ == "__main__":
    sys.exit(main())
