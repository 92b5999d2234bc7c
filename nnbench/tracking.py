"""Everything MLflow: experiments, runs, params, metrics, tags, artifacts.

Layout in MLflow (its default store: `sqlite:///mlflow.db` in the working directory):

- one experiment per suite, named after the suite;
- one parent run per `nnbench run` invocation (`nnbench.role = suite`), tagged with the
  host and pid that own it and holding the suite file as `suite.yaml`;
- one child run per trial (`nnbench.role = trial`): params are the spec's dotted keys,
  per-epoch metrics (logged in batches), final test metrics, tags for id, status,
  seed, fingerprint and provenance, artifacts `spec.yaml`, `history.csv` and, when the
  suite asks for it, `checkpoint.pt` (weights, optimizer state, spec, metrics).

A trial counts as done when a child run with its `nnbench.trial_id` has status
finished or diverged and MLflow closed it (the status tag is written last). Runs
left RUNNING by a dead process are marked killed on the next invocation; when a
trial later finishes, its earlier killed/failed attempts are soft-deleted (MLflow
keeps them: `mlflow runs restore --run-id ...`), so each trial shows once in the UI.
"""

from __future__ import annotations

import io
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from mlflow.entities import Metric, Param, Run, RunTag, ViewType
from mlflow.tracking import MlflowClient

from nnbench.config import Suite, TrialSpec
from nnbench.train.results import TrialResult

__all__ = ["CHECKPOINT", "DONE_STATUSES", "Tracker", "is_done"]

# Reading a trial's history.csv back must not draw a progress bar per run.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

CHECKPOINT = "checkpoint.pt"  # artifact name of a trial's checkpoint (suite `checkpoint: true`)

DONE_STATUSES = frozenset({"finished", "diverged"})
_MLFLOW_STATUS = {"finished": "FINISHED", "diverged": "FINISHED", "failed": "FAILED",
                  "killed": "KILLED", "pruned": "FINISHED"}
_FLUSH_SECONDS = 5.0  # per-epoch metrics are sent at most this often while a trial runs
_BATCH_LIMIT = 1000  # MLflow's cap on metrics per log_batch call


def _now_ms() -> int:
    return int(time.time() * 1000)


def is_done(run: Run) -> bool:
    """Finished or diverged, and completely recorded (MLflow closed the run)."""
    return (run.data.tags.get("nnbench.status") in DONE_STATUSES
            and run.info.status == "FINISHED")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Tracker:
    """One suite's experiment in one MLflow store."""

    def __init__(self, suite: Suite, tracking_uri: str | None = None) -> None:
        self.client = MlflowClient(tracking_uri)
        self.suite = suite
        self.tracking_uri = self.client.tracking_uri
        self._pending: dict[str, list[Metric]] = {}
        self._last_flush: dict[str, float] = {}
        self._unfinished: dict[str, list[str]] = {}  # trial_id -> killed/failed run ids

    # -- experiment and runs ------------------------------------------------------------

    def experiment_id(self, create: bool = True) -> str | None:
        experiment = self.client.get_experiment_by_name(self.suite.name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            return str(experiment.experiment_id)
        if not create:
            return None
        return str(self.client.create_experiment(
            self.suite.name, tags={"nnbench.suite": self.suite.name,
                                   "mlflow.note.content": self.suite.description}))

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
        """Reap stale runs, index unfinished attempts; returns the trial_ids already done."""
        self.reap_stale()
        done: set[str] = set()
        self._unfinished.clear()
        for run in self.runs("trial"):
            trial_id = run.data.tags.get("nnbench.trial_id", "")
            if is_done(run):
                done.add(trial_id)
            elif run.info.status != "RUNNING":
                self._unfinished.setdefault(trial_id, []).append(run.info.run_id)
        return done

    def reap_stale(self) -> int:
        """Mark runs left RUNNING by a dead nnbench process on this host as killed."""
        host = socket.gethostname()
        dead = {r.info.run_id for r in self.runs("suite")
                if r.info.status == "RUNNING" and r.data.tags.get("nnbench.host") == host
                and not _pid_alive(int(r.data.tags.get("nnbench.pid", "0") or 0))}
        reaped = 0
        for run in [*self.runs("trial"), *self.runs("tune")]:
            if run.info.status == "RUNNING" and run.data.tags.get("mlflow.parentRunId") in dead:
                self.client.set_tag(run.info.run_id, "nnbench.status", "killed")
                self.client.set_tag(run.info.run_id, "nnbench.reason",
                                    "its nnbench process died before the trial ended")
                self.client.set_terminated(run.info.run_id, "KILLED")
                reaped += 1
        for run_id in dead:
            self.client.set_terminated(run_id, "KILLED")
        return reaped

    def start_invocation(self, provenance: Mapping[str, str], n_todo: int) -> str:
        experiment_id = self.experiment_id()
        assert experiment_id is not None
        tags = {"nnbench.role": "suite", "nnbench.suite": self.suite.name,
                "nnbench.host": socket.gethostname(), "nnbench.pid": str(os.getpid()),
                "nnbench.trials_total": str(len(self.suite.trials())),
                "nnbench.trials_todo": str(n_todo), **provenance}
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        run = self.client.create_run(experiment_id, tags=tags,
                                     run_name=f"{self.suite.name} {started}")
        self.client.log_text(run.info.run_id, self.suite.source, "suite.yaml")
        return str(run.info.run_id)

    def end_invocation(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)

    # -- one trial ----------------------------------------------------------------------

    def start_trial(self, parent_run_id: str, spec: TrialSpec, provenance: Mapping[str, str],
                    *, role: str = "trial") -> str:
        """A child run for one trial (role "trial") or one Optuna trial (role "tune")."""
        experiment_id = self.experiment_id()
        assert experiment_id is not None
        label = spec.label(self.suite.varied_axes)
        tags = {"mlflow.parentRunId": parent_run_id, "nnbench.role": role,
                "nnbench.suite": self.suite.name, "nnbench.trial_id": spec.trial_id,
                "nnbench.config_id": spec.config_id, "nnbench.config": label,
                "nnbench.seed": str(spec.seed), "nnbench.status": "running", **provenance}
        run = self.client.create_run(experiment_id, tags=tags,
                                     run_name=f"{label} | seed {spec.seed}")
        run_id = str(run.info.run_id)
        params = [Param(k, v) for k, v in spec.flat_params().items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=params[i:i + 100])
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

    def _flush(self, run_id: str) -> None:
        pending = self._pending.get(run_id, [])
        for i in range(0, len(pending), _BATCH_LIMIT):
            self.client.log_batch(run_id, metrics=pending[i:i + _BATCH_LIMIT])
        self._pending[run_id] = []
        self._last_flush[run_id] = time.monotonic()

    def finish_trial(self, run_id: str, result: TrialResult) -> None:
        """Record a TrialResult: final metrics, status tags, artifacts; then end the run."""
        import pandas as pd

        self._flush(run_id)
        ts = _now_ms()
        final = [Metric(k, float(v), ts, 0) for k, v in result.final.items()]
        final.append(Metric("wall_seconds", float(result.wall_seconds), ts, 0))
        tags = {"nnbench.fingerprint": result.fingerprint,
                "nnbench.num_params": str(result.num_params),
                "nnbench.epochs_done": str(len(result.history)), **result.numerics.tags()}
        optional = {"nnbench.reason": result.reason[-5000:],
                    "nnbench.diverged_epoch": result.diverged_epoch,
                    "nnbench.best_epoch": result.best_epoch,
                    "nnbench.stopped_epoch": result.stopped_epoch}
        tags.update({k: str(v) for k, v in optional.items() if v})
        self.client.log_batch(run_id, metrics=final,
                              tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.log_text(run_id, result.spec.to_yaml(), "spec.yaml")
        if result.history:
            buffer = io.StringIO()
            pd.DataFrame(result.history).to_csv(buffer, index=False)
            self.client.log_text(run_id, buffer.getvalue(), "history.csv")
        if result.checkpoint is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / CHECKPOINT
                path.write_bytes(result.checkpoint)
                self.client.log_artifact(run_id, str(path))
        # the status goes last: a run killed while being recorded never looks done
        self.client.set_tag(run_id, "nnbench.status", result.status)
        self.client.set_terminated(run_id, _MLFLOW_STATUS[result.status])
        self._pending.pop(run_id, None)
        self._last_flush.pop(run_id, None)
        if result.status in DONE_STATUSES:
            # earlier killed/failed attempts of this trial are superseded: soft-delete them
            for old in self._unfinished.pop(result.spec.trial_id, []):
                self.client.set_tag(old, "nnbench.superseded_by", run_id)
                self.client.delete_run(old)
        else:
            self._unfinished.setdefault(result.spec.trial_id, []).append(run_id)

    def claim(self, spec: TrialSpec, run_id: str) -> bool:
        """After creating `run_id` for a trial: is it ours to train? Workers sharing a store
        keep the earliest live claim; a later one is deleted and the trial skipped."""
        experiment_id = self.experiment_id(create=False)
        assert experiment_id is not None, "claim() after start_trial()"
        rivals = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`nnbench.trial_id` = '{spec.trial_id}' "
                                           f"and tags.`nnbench.role` = 'trial'")
        mine = next((r for r in rivals if r.info.run_id == run_id), None)
        key = (mine.info.start_time, run_id) if mine else (0, run_id)
        for run in rivals:
            if run.info.run_id == run_id:
                continue
            earlier = (run.info.start_time, run.info.run_id) < key
            if is_done(run) or (run.info.status == "RUNNING" and earlier):
                self.client.set_tag(run_id, "nnbench.status", "duplicate")
                self.client.set_terminated(run_id, "KILLED")
                self.client.delete_run(run_id)
                return False
        return True

    def kill_trial(self, run_id: str, reason: str) -> None:
        """Record a trial interrupted outside the trainer (e.g. Ctrl-C while logging)."""
        self._flush(run_id)
        self.client.set_tag(run_id, "nnbench.status", "killed")
        self.client.set_tag(run_id, "nnbench.reason", reason)
        self.client.set_terminated(run_id, "KILLED")
