"""Run a suite: skip finished trials, hand the rest to an engine, record every outcome.

`run_suite(suite)` asks MLflow which trials are done (by trial_id), trains the
rest through an `Engine`, logs each trial as a child run of this invocation's
parent run, and shows progress (one bar over trials, one over the current
trial's epochs). Ctrl-C records the in-flight trial as killed and stops; finished
trials stay, and the next invocation trains only what is missing.

Engines sit behind one interface (`Engine.run(trials, listener)` yields results
in any order), so a later engine may train many same-shaped trials at once.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nnbench import provenance, seeding
from nnbench.config import Suite, TrialSpec
from nnbench.tracking import Tracker
from nnbench.train import (
    CONTINUE,
    Decision,
    Engine,
    SerialEngine,
    TrialResult,
    metric_names,
    resolve_device,
)

__all__ = ["RunSummary", "run_suite"]


@dataclass
class RunSummary:
    suite: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None
    total: int  # trials in the suite
    skipped: int  # already finished before this invocation
    statuses: Counter[str] = field(default_factory=Counter)  # of the trials trained now
    interrupted: bool = False

    @property
    def trained(self) -> int:
        return sum(self.statuses.values())


@contextmanager
def _bookkeeping() -> Iterator[None]:
    """Hold Ctrl-C until a block of MLflow writes is complete, then raise it.

    Training is interruptible at any point (the trainer turns the interrupt into a
    `killed` result); bookkeeping is not, so a run is never left half-recorded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


class _Recorder:
    """Listener that forwards engine events to MLflow and the progress bars."""

    def __init__(self, suite: Suite, tracker: Tracker, parent_run_id: str,
                 tags: dict[str, str], progress: Progress, console: Console,
                 n_todo: int) -> None:
        self.suite, self.tracker, self.parent = suite, tracker, parent_run_id
        self.tags, self.progress, self.console = tags, progress, console
        self.run_ids: dict[str, str] = {}  # trial_id -> MLflow run id, for trials in flight
        self.trials_bar: TaskID = progress.add_task("trials", total=n_todo)
        self.epochs_bar: TaskID = progress.add_task("epochs", total=1, visible=False)
        self.done = 0
        self.n_todo = n_todo

    def trial_started(self, spec: TrialSpec) -> bool:
        with _bookkeeping():
            run_id = self.tracker.start_trial(self.parent, spec, self.tags)
            if not self.tracker.claim(spec, run_id):
                self.console.print(f"{spec.label(self.suite.varied_axes)} | seed {spec.seed}: "
                                   f"another worker has it, skipped", highlight=False)
                self.progress.advance(self.trials_bar)
                return False
            self.run_ids[spec.trial_id] = run_id
        label = spec.label(self.suite.varied_axes)
        self.progress.reset(self.epochs_bar, total=spec.epochs, visible=True,
                            description=f"{label} | seed {spec.seed}")
        return True

    def epoch_finished(self, spec: TrialSpec, metrics: dict[str, float]) -> Decision:
        with _bookkeeping():
            self.tracker.log_epoch(self.run_ids[spec.trial_id], metrics)
        shown = " ".join(f"{k} {metrics[k]:.4f}" for k in
                         ("val_loss", *(f"val_{m}" for m in metric_names(spec))))
        running = f"{spec.label(self.suite.varied_axes)} | seed {spec.seed} | {shown}"
        self.progress.update(self.epochs_bar, completed=int(metrics["epoch"]),
                             description=running)
        return CONTINUE

    def trial_finished(self, result: TrialResult) -> None:
        spec = result.spec
        with _bookkeeping():
            self.tracker.finish_trial(self.run_ids[spec.trial_id], result)
            del self.run_ids[spec.trial_id]
        self.done += 1
        self.progress.advance(self.trials_bar)
        metric = self.suite.metric
        last = (result.final.get(metric) if metric in result.final
                else (result.history[-1].get(metric) if result.history else None))
        reason = result.reason.strip().splitlines()
        shown = f"{metric} {last:.4f}" if last is not None else (reason[-1] if reason else "")
        self.console.print(f"[{self.done}/{self.n_todo}] {spec.label(self.suite.varied_axes)} "
                           f"| seed {spec.seed}: {result.status} {shown} "
                           f"({result.wall_seconds:.1f}s)", highlight=False)

    def kill_in_flight(self, reason: str) -> None:
        with _bookkeeping():
            for run_id in self.run_ids.values():
                self.tracker.kill_trial(run_id, reason)
            self.run_ids.clear()


def run_suite(suite: Suite, *, device: str = "auto", tracking_uri: str | None = None,
              engine: Engine | None = None, console: Console | None = None,
              trials: Sequence[TrialSpec] | None = None,
              tags: dict[str, str] | None = None) -> RunSummary:
    """Train every trial of `suite` (or the given `trials`, e.g. tuned re-runs) not yet
    finished in MLflow; returns what happened. Several processes may share one store:
    each trial is trained by the first live worker that claims it."""
    console = console or Console(stderr=True)
    engine = engine or SerialEngine(resolve_device(device), keep_checkpoints=suite.checkpoint)
    flags = seeding.configure_determinism()
    tracker = Tracker(suite, tracking_uri)
    done = tracker.prepare()
    trials = list(trials) if trials is not None else suite.trials()
    todo = [t for t in trials if t.trial_id not in done]
    experiment_id = tracker.experiment_id()
    assert experiment_id is not None
    summary = RunSummary(suite=suite.name, tracking_uri=tracker.tracking_uri,
                         experiment_id=experiment_id, parent_run_id=None, total=len(trials),
                         skipped=len(trials) - len(todo))
    console.print(f"suite {suite.name}: {len(trials)} trials, {summary.skipped} already "
                  f"finished, {len(todo)} to train on {engine.device}", highlight=False)
    if not todo:
        return summary
    tags = {"nnbench.git_commit": provenance.git_commit(),
            "mlflow.source.git.commit": provenance.git_commit(),
            "nnbench.device": provenance.device_name(engine.device),
            **{f"nnbench.version.{k}": v for k, v in provenance.library_versions().items()},
            **{f"nnbench.deterministic.{k}": v for k, v in flags.items()},
            **provenance.plugin_tags(trials), **(tags or {})}
    parent = tracker.start_invocation(tags, n_todo=len(todo))
    summary.parent_run_id = parent
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        recorder = _Recorder(suite, tracker, parent, tags, progress, console, len(todo))
        try:
            for result in engine.run(todo, recorder):
                recorder.trial_finished(result)
                summary.statuses[result.status] += 1
                if result.status == "killed":
                    summary.interrupted = True
                    break
        except KeyboardInterrupt:
            recorder.kill_in_flight("interrupted (Ctrl-C) between epochs")
            summary.interrupted = True
    tracker.end_invocation(parent, "KILLED" if summary.interrupted else "FINISHED")
    return summary
