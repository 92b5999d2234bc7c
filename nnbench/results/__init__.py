"""Results read back from MLflow as tidy pandas tables, and their statistics.

`load_results(suite)` returns one row per trial of the suite (its latest finished
or diverged run; otherwise its latest attempt) with the varied axes as label
columns (a tuned suite's re-runs under their scientific point's levels, `sgd`, not the
tuned `sgd(lr=0.02)`, which `config` holds), and the per-epoch history of the finished
ones. `analysis` turns them into leaderboards, effects, interactions and claim verdicts
(statistics in `stats`).
MLflow is the source of truth: reports are rebuilt from here.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Run, ViewType

from nnbench.config import Suite, TrialSpec
from nnbench.config.sources import SOURCES
from nnbench.config.spec import value_label
from nnbench.config.tune import tuned_label
from nnbench.messages import UsageError
from nnbench.tracking import DONE_STATUSES, Tracker, epoch_values, is_done
from nnbench.train.results import Numerics

__all__ = ["Results", "export_tables", "load_results", "results_digest"]


@dataclass(frozen=True)
class Results:
    suite: Suite
    tracking_uri: str
    experiment_id: str | None
    trials: pd.DataFrame  # one row per trial of the suite that has a run
    history: pd.DataFrame  # one row per (trial, epoch) of finished/diverged trials
    invocations: pd.DataFrame  # invocation runs: run_id, start, status, provenance tags
    missing: int  # trials of the suite with no run at all
    tuning: pd.DataFrame  # one row per Optuna trial (tune runs); empty for untuned suites


def _pick(runs: list[Run]) -> Run:
    """The run that stands for a trial: the latest done one, else the latest attempt."""
    done = [r for r in runs if is_done(r)]
    return max(done or runs, key=lambda r: r.info.start_time or 0)


def _deleted(tracker: Tracker, specs: dict[str, TrialSpec],
             by_trial: dict[str, list[Run]]) -> dict[str, Run]:
    """The trials whose only done run was deleted in MLflow (by hand, or in `mlflow ui`),
    each with that run: the report said "not run yet ... the next run trains it", while
    the queue holds them done and no run trains them again."""
    if all(any(is_done(r) for r in by_trial.get(t, ())) for t in specs):
        return {}
    deleted: dict[str, Run] = {}
    for run in tracker.runs("trial", ViewType.DELETED_ONLY):
        trial_id = run.data.tags.get("nnbench.trial_id", "")
        active = by_trial.get(trial_id, ())
        # (an attempt since, as after a new --storage trains it again, stands for it)
        if trial_id in specs and is_done(run) and not any(
                is_done(r) or (r.info.start_time or 0) > (run.info.start_time or 0)
                for r in active):
            kept = deleted.get(trial_id)
            if kept is None or (run.info.start_time or 0) > (kept.info.start_time or 0):
                deleted[trial_id] = run
    return deleted


def load_results(suite: Suite, tracking_uri: str | None = None) -> Results:
    tracker = Tracker(suite, tracking_uri)
    experiment = tracker.client.get_experiment_by_name(suite.name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        # (MLflow marks its runs deleted too: the report would show none)
        raise UsageError(
            f"{suite.name}: its MLflow experiment (id {experiment.experiment_id}) in "
            f"{tracker.tracking_uri} was deleted; to report it, restore it (mlflow ui: the "
            f"experiment list's deleted experiments, or MLFLOW_TRACKING_URI="
            f"{shlex.quote(tracker.tracking_uri)} mlflow experiments restore --experiment-id "
            f"{experiment.experiment_id}); running the suite again restores it too")
    points: dict[str, TrialSpec] = {}  # tuned config_id -> the scientific point it tunes
    bests: dict[str, dict[str, Any]] = {}  # tuned config_id -> its tuned values
    if suite.tune is not None:  # a tuned suite compares the re-runs of its tuned points
        from nnbench.config import apply_values
        from nnbench.tuning import tuned_points, tuned_trials

        tuned = tuned_points(suite, tracker)
        specs = {t.trial_id: t for t in tuned_trials(suite, tuned)}
        expected = len(suite.configurations()) * len(suite.tune.seeds)
        for point, best in tuned.values():
            config_id = apply_values(point, best).config_id
            points[config_id] = point
            bests[config_id] = best
    else:
        specs = {t.trial_id: t for t in suite.trials()}
        expected = len(specs)
    axes = suite.varied_axes
    by_trial: dict[str, list[Run]] = {}
    for run in tracker.runs("trial"):
        trial_id = run.data.tags.get("nnbench.trial_id", "")
        if trial_id in specs:
            by_trial.setdefault(trial_id, []).append(run)

    deleted = _deleted(tracker, specs, by_trial)
    rows, curves = [], []
    for trial_id, runs in [*by_trial.items(), *((t, [r]) for t, r in deleted.items()
                                                 if t not in by_trial)]:
        run, spec = deleted.get(trial_id) or _pick(runs), specs[trial_id]
        tags, metrics = run.data.tags, run.data.metrics
        status = "deleted" if trial_id in deleted else tags.get("nnbench.status", "running")
        # a tuned re-run's levels are its point's (the scientific value, not the tuned one)
        point = points.get(spec.config_id, spec)
        row = {
            "trial_id": trial_id, "config_id": spec.config_id,
            "config": tuned_label(spec, bests.get(spec.config_id, {}), axes),
            "point": point.label(axes),
            # the pairing key: the seed, or the varied sources' seeds (`init=1, data_order=0`)
            "seed": suite.design.label(spec) if suite.seed_design else spec.seed,
            **{f"seed.{s}": spec.seed_of(s) for s in SOURCES if suite.seed_design},
            "status": status, "run_id": run.info.run_id,
            "fingerprint": tags.get("nnbench.fingerprint", ""),
            "num_params": int(tags.get("nnbench.num_params", 0) or 0),
            "epochs_done": int(tags.get("nnbench.epochs_done", 0) or 0),
            "reason": (f"its finished MLflow run was deleted (MLflow keeps it until `mlflow "
                       f"gc`): `mlflow runs restore --run-id {run.info.run_id}` brings it "
                       f"back; while the queue holds it done, runs do not train it again "
                       f"(to train it again: a new --storage, README 'Training a done "
                       f"trial again')"
                       if status == "deleted" else tags.get("nnbench.reason", "")),
            "device": tags.get("nnbench.device", ""),
            "numerics": _numerics(tags),
            "git_commit": tags.get("nnbench.git_commit", ""),
            "wall_seconds": metrics.get("wall_seconds", float("nan")),
            **{axis: value_label(axis, point.value(axis)) for axis in axes},
        }
        row.update(metrics)  # final test metrics and the last epoch's values (below: those
        # of the epoch whose weights it ends with)
        row["best_epoch"] = int(tags.get("nnbench.best_epoch", 0) or 0)
        if status in DONE_STATUSES and (curve := _history(tracker, run, row)) is not None:
            curves.append(curve)
            # a trial that restored its best weights ends with that epoch's model: its
            # training and validation values are that epoch's, not the last one's
            ended = _weights_epoch(spec, tags, row["best_epoch"], status)
            if ended:
                row.update(epoch_values(curve, ended, metrics))
        row["metric"] = row.get(suite.metric, float("nan"))
        rows.append(row)
    trials = pd.DataFrame(rows)
    if not trials.empty:
        trials = trials.sort_values(["config", "seed"], kind="stable").reset_index(drop=True)
    history = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    invocations = pd.DataFrame([
        {"run_id": r.info.run_id, "start_time": pd.to_datetime(r.info.start_time, unit="ms"),
         "status": r.info.status, **{k: v for k, v in r.data.tags.items()
                                     if k.startswith("nnbench.")}}
        for r in tracker.runs("suite")])
    return Results(suite=suite, tracking_uri=tracker.tracking_uri,
                   experiment_id=tracker.experiment_id(create=False), trials=trials,
                   history=history, invocations=invocations,
                   missing=expected - len(set(by_trial) | set(deleted)),
                   tuning=_tuning(tracker))


def _numerics(tags: dict[str, str]) -> str:
    """How a trial's numbers were made (engine, lanes, precision, threads), as one label."""
    if "nnbench.engine" not in tags:
        return "not recorded"
    return Numerics(engine=tags["nnbench.engine"], lanes=int(tags.get("nnbench.lanes", 1)),
                    precision=tags.get("nnbench.precision", "fp32"),
                    threads=int(tags.get("nnbench.threads", 1)),
                    layout=tags.get("nnbench.layout", "")).label()


def _tuning(tracker: Tracker) -> pd.DataFrame:
    """The Optuna trials recorded as MLflow runs (role tune): study, number, state, values."""
    import json

    rows = []
    for run in tracker.runs("tune"):
        tags = run.data.tags
        rows.append({"study": tags.get("nnbench.study", ""),
                     "config": tags.get("nnbench.config", ""),
                     "trial": int(tags.get("nnbench.optuna_trial", -1)),
                     "state": tags.get("nnbench.optuna_state", "running"),
                     "status": tags.get("nnbench.status", ""),  # diverged: Optuna's FAIL
                     "objective": run.data.metrics.get("objective", float("nan")),
                     "epochs_done": int(tags.get("nnbench.epochs_done", 0) or 0),
                     "run_id": run.info.run_id,
                     **json.loads(tags.get("nnbench.nuisance", "{}"))})
    frame = pd.DataFrame(rows)
    return frame.sort_values(["study", "trial"]).reset_index(drop=True) if rows else frame


def _weights_epoch(spec: TrialSpec, tags: dict[str, str], best_epoch: int,
                   status: str) -> int | None:
    """The epoch whose weights a finished trial ends with where it is not its last: its
    best, restored (early stopping's restore_best); None otherwise. Runs written before
    nnbench.weights_epoch was recorded: the best epoch where the spec restores it."""
    if status != "finished":
        return None
    if "nnbench.weights_epoch" in tags:
        return int(tags["nnbench.weights_epoch"])
    restores = spec.early_stopping.name != "none" and bool(
        spec.early_stopping.kwargs.get("restore_best"))
    return best_epoch or None if restores else None


def _history(tracker: Tracker, run: Run, row: dict[str, object]) -> pd.DataFrame | None:
    """Per-epoch metrics of one run (its history.csv artifact), with the trial's keys;
    None when the run has none."""
    frame = tracker.history(run)
    if frame is None:
        return None
    frame["epoch"] = frame["epoch"].astype(int)
    for key in ("trial_id", "config_id", "config", "seed", "run_id"):
        frame[key] = row[key]
    return frame


def results_digest(results: Results) -> str:
    """sha256 of everything a report is rendered from: its tables and the invocations."""
    import hashlib

    digest = hashlib.sha256()
    for frame in (results.trials, results.history, results.tuning):
        digest.update(frame.to_csv(index=False).encode())
    digest.update(str(results.missing).encode())
    if not results.invocations.empty:
        digest.update(results.invocations.to_csv(index=False).encode())
    return digest.hexdigest()


def export_tables(results: Results, directory: Path) -> dict[Path, str]:
    """The tidy tables next to the report, for users' own analysis: each CSV file's path and
    text (the report writes them together with itself: `fresh.write_together`)."""
    return {directory / f"{results.suite.name}.{kind}.csv": frame.to_csv(index=False)
            for kind, frame in (("trials", results.trials), ("epochs", results.history))}
