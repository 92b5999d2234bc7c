"""Optuna tuning: budgets, resumption, reproducible proposals, pruning, shared workers."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from rich.console import Console

from nnbench import tuning
from nnbench.config import SuiteError, TrialSpec, parse_suite
from nnbench.queue import Liveness
from nnbench.report import render_report
from nnbench.tracking import is_done
from nnbench.train import Decision
from nnbench.transient import process_identity, worker_label
from nnbench.tuning import COUNTED, study_name, tune_suite
from tests.conftest import Postgres, stop_process, within
from tests.processes import Command, start

QUIET = Console(quiet=True)

TUNED = """\
name: {name}
task: {{dataset: {{name: mnist1d, num_samples: 600}}, model: {{name: mlp, hidden: [16]}}}}
fixed:
  optimizer: {{name: sgd, lr: 0.01}}
  epochs: {epochs}
  batch_size: 32
grid:
  optimizer: {optimizers}
tune:
  space:
    optimizer.lr: {space}
  trials: {trials}
  objective: {{metric: val_accuracy}}
  sampler: {{name: {sampler}, seed: {seed}}}
  pruner: {{name: {pruner}}}
  seeds: {seeds}
"""
LR_RANGE = "{type: float, low: 1.0e-5, high: 1.0, log: true}"
LR_GRID = "{type: categorical, choices: [0.001, 0.03, 1.0]}"


def _suite(path: Path, *, name: str = "tuned", epochs: int = 3, trials: int = 4,
           optimizers: str = "[sgd, adam]", sampler: str = "tpe", seed: int = 0,
           pruner: str = "none", space: str = LR_RANGE, seeds: int = 2) -> Path:
    text = TUNED.format(name=name, epochs=epochs, trials=trials, optimizers=optimizers,
                        sampler=sampler, seed=seed, pruner=pruner, space=space, seeds=seeds)
    path.write_text(text)
    return path


def _studies(storage: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """The tuning studies (not the suite's trial queue, `<suite>/trials`)."""
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).trials
            for s in optuna.get_all_study_summaries(storage)
            if not s.study_name.endswith("/trials")}


def _runs(uri: str, suite: str, role: str) -> list[Run]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(suite)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                              filter_string=f"tags.`nnbench.role` = '{role}'")


def _assert_budgets_met(storage: str, budget: int, studies: int) -> None:
    found = _studies(storage)
    assert len(found) == studies
    for name, trials in found.items():
        assert sum(bool(t.user_attrs.get(COUNTED)) for t in trials) == budget, name
        assert [t.number for t in trials] == list(range(len(trials)))  # no number lost
        assert not [t for t in trials if t.state == TrialState.RUNNING]


def _reruns_of_seed_1_raise(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Building a trial of seed 1 raises `error`: the tuned points' re-runs of seed 1 (the
    studies train seed 0)."""
    import torch

    from nnbench import train

    real_build = train.build_parts

    def build(spec: TrialSpec, device: torch.device) -> object:
        if spec.seed == 1:
            raise error
        return real_build(spec, device)

    monkeypatch.setattr(train.build, "build_parts", build)


def test_tune_exits_1_when_a_re_run_fails(tmp_path: Path, tracking_uri: str,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A re-run that fails (an error, not divergence) makes `nnbench tune` exit 1, as a
    failed trial makes `nnbench run` (it exited 0, the failure only in MLflow)."""
    from nnbench import cli

    _reruns_of_seed_1_raise(monkeypatch, RuntimeError("simulated failure"))
    path = _suite(tmp_path / "tuned.yaml", trials=2, epochs=2)
    assert cli.main(["tune", str(path), "--tracking-uri", tracking_uri, "--device", "cpu",
                     "--engine", "serial"]) == 1
    err = capsys.readouterr().err
    assert "suite tuned: 2 re-run trial(s) failed; their runs say why" in err
    reruns = _runs(tracking_uri, "tuned", "trial")
    assert Counter(r.data.tags["nnbench.status"] for r in reruns) == Counter(
        {"finished": 2, "failed": 2})
    assert {r.data.tags["nnbench.optuna_state"] for r in _runs(tracking_uri, "tuned", "tune")
            } == {"complete"}


def test_a_tune_interrupted_in_its_re_runs_says_its_studies_are_complete(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C while the tuned points were re-run said "re-run to continue the studies",
    whose budgets were met: what is left is the re-runs."""
    import torch

    from nnbench import cli, train

    _reruns_of_seed_1_raise(monkeypatch, KeyboardInterrupt())
    path = _suite(tmp_path / "tuned.yaml", trials=2, epochs=2)
    assert cli.main(["tune", str(path), "--tracking-uri", tracking_uri, "--device", "cpu",
                     "--engine", "serial"]) == 130
    err = capsys.readouterr().err
    assert err.count(": 2/2 trials (") == 2, err  # both studies met their budget
    assert ("suite tuned: interrupted; its studies are complete: re-run to train the rest of "
            "the tuned points' re-runs") in err, err
    assert "continue the studies" not in err
    # status counts the re-runs as such (the first trained, the interrupt at the next)
    assert cli.main(["status", str(path), "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert "): re-runs of tuned points: 1 done, 0 running on 0 worker(s), 3 queued, 0 " \
        "failed\n" in out, out
    # interrupted in its studies (seed 0's trials): what is left is the studies
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def at_once(spec: TrialSpec, device: torch.device) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(train.build, "build_parts", at_once)
    assert cli.main(["tune", str(path), "--tracking-uri",
                     f"sqlite:///{elsewhere / 'mlflow.db'}", "--device", "cpu", "--engine",
                     "serial"]) == 130
    err = capsys.readouterr().err
    assert "suite tuned: interrupted; re-run to continue the studies" in err, err
    assert cli.main(["status", str(path), "--tracking-uri",
                     f"sqlite:///{elsewhere / 'mlflow.db'}"]) == 0
    # while the studies are tuned, status said "0 done, 0 running on 0 worker(s), 0 queued,
    # 0 failed" of the suite, above studies that had trained
    out = capsys.readouterr().out
    assert "): no re-runs of tuned points queued yet (each tuned point is re-run over its " \
        "seeds once the studies below are done)\n" in out, out
    assert "0 done" not in out, out


def test_tuned_suite_tunes_reruns_and_reports(tmp_path: Path, tracking_uri: str) -> None:
    from nnbench.config import load_suite

    suite = load_suite(_suite(tmp_path / "tuned.yaml"))
    uri, storage = tracking_uri, f"sqlite:///{tmp_path / 'optuna.db'}"
    summary = tune_suite(suite, tracking_uri=uri, device="cpu", console=QUIET)
    assert summary.storage == storage  # next to the MLflow store by default
    assert summary.reruns == 4  # 2 points x 2 seeds
    _assert_budgets_met(storage, 4, 2)
    tune_runs = _runs(uri, "tuned", "tune")
    assert len(tune_runs) == 8
    for run in tune_runs:
        assert run.data.tags["nnbench.study"] in {study_name(suite, p)
                                                  for p in suite.configurations()}
        assert run.data.tags["nnbench.optuna_trial"] in {"0", "1", "2", "3"}
        assert run.data.tags["nnbench.optuna_state"] == "complete"
        assert "objective" in run.data.metrics and "val_accuracy" in run.data.metrics
        # the default engine trains a study's 4 proposals as the lanes of one group
        assert (run.data.tags["nnbench.engine"], run.data.tags["nnbench.lanes"]) == (
            "stacked", "4")
    reruns = _runs(uri, "tuned", "trial")
    assert len(reruns) == 4 and all(is_done(r) for r in reruns)
    assert {r.data.tags["nnbench.seed"] for r in reruns} == {"0", "1"}

    again = tune_suite(suite, tracking_uri=uri, device="cpu", console=QUIET)
    assert again.reruns == 0
    _assert_budgets_met(storage, 4, 2)  # never beyond the budget
    assert len(_runs(uri, "tuned", "tune")) == 8

    html = render_report(suite, tracking_uri=uri, report_dir=tmp_path / "r").read_text()
    for part in ('<h2 id="tuning">', "Best so far", "Isolation plot", "Parameter importances",
                 'id="tuning-counts"', "4 finished"):
        assert part in html, part
    assert "a budget of 4 trials per point (the counts below are what each study ran)" in html
    # each point's importances come from its 4 trials: said, and called unstable
    assert "with fewer, as here, the shares are unstable, a hint rather than a finding" in html
    assert html.count("<td>4</td><td>optimizer.lr: 1.00</td>") == 2, html


def test_tuning_trials_and_their_re_runs_train_on_the_suite_s_kept_threads(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A serial trial with a large step trains on the threads its step was timed fastest
    with: tuning times once and keeps the count in the suite's queue, as `run` does, so
    its study trials and its re-runs share one numerics, and a later tune (the machine
    busy now, say) trains with the kept count untimed."""
    from nnbench.config import load_suite
    from nnbench.train import engine

    monkeypatch.setattr(engine, "SPLIT_FLOPS", 0.0)  # the tiny MLP's steps count as large
    monkeypatch.setattr(engine, "shared_cores", lambda device, workers=1: 2)
    timed: list[int] = []
    fastest = [2]

    def timing(step: object, most: int) -> tuple[int, dict[int, float]]:
        timed.append(most)
        return fastest[0], {1: 0.2, 2: 0.1}

    monkeypatch.setattr(engine, "fastest_threads", timing)
    monkeypatch.setattr(engine, "others_running", lambda: 1)  # another job: timed
    path = _suite(tmp_path / "tuned.yaml", trials=2, epochs=1)
    tune_suite(load_suite(path), tracking_uri=tracking_uri, device="cpu", engine="serial",
               console=QUIET)
    threads = [r.data.tags["nnbench.threads"] for role in ("tune", "trial")
               for r in _runs(tracking_uri, "tuned", role)]
    assert (timed, Counter(threads)) == ([2], {"2": 8})  # 2 points × (2 trials + 2 re-runs)
    fastest[0] = 1
    path.write_text(path.read_text().replace("trials: 2", "trials: 3"))  # one more each
    tune_suite(load_suite(path), tracking_uri=tracking_uri, device="cpu", engine="serial",
               console=QUIET)
    threads = [r.data.tags["nnbench.threads"] for r in _runs(tracking_uri, "tuned", "tune")]
    assert (timed, Counter(threads)) == ([2], {"2": 6})


def test_a_fixed_sampler_seed_proposes_the_same_sequence(
        tmp_path: Path, mlflow_store: Callable[[Path], str]) -> None:
    proposals = []
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        suite = parse_suite(_suite(tmp_path / f"{run}.yaml", seed=seed, trials=5,
                                   optimizers="[sgd]").read_text())
        storage = f"sqlite:///{tmp_path / run}-optuna.db"
        tune_suite(suite, storage=storage, tracking_uri=mlflow_store(tmp_path / f"{run}.db"),
                   device="cpu", console=QUIET)
        (trials,) = _studies(storage).values()
        proposals.append([t.params["optimizer.lr"] for t in trials])
    assert proposals[0] == proposals[1]
    assert proposals[0] != proposals[2]


@pytest.mark.parametrize("sampler", ["random", "tpe", "grid"])
def test_workers_sharing_a_study_draw_each_point_once(tmp_path: Path, sampler: str) -> None:
    """Two workers build their samplers from the suite's one seed, as every worker does,
    and ask in turn; then a third process resumes the study. Each trial's draw depends on
    its number alone: the six proposals are those one worker asking six times gets, with
    no point twice (a stream per process gave both workers, and the resumed study, the
    same points: 4 workers, 10 random trials, 3 points)."""
    grid = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
    space = f"{{type: categorical, choices: {grid}}}" if sampler == "grid" else LR_RANGE
    suite = parse_suite(_suite(tmp_path / "s.yaml", trials=6, optimizers="[sgd]",
                               sampler=sampler, space=space).read_text())
    tune, point = suite.tune, suite.configurations()[0]
    assert tune is not None

    def study(storage: str, name: str) -> optuna.Study:
        return optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                   sampler=tuning._sampler(tune, point))

    def lr(study: optuna.Study) -> float:
        trial = study.ask()  # the space nnbench's tune suggests from
        return float(trial.suggest_float("optimizer.lr", 1e-5, 1.0, log=True)
                     if sampler != "grid" else trial.suggest_categorical("optimizer.lr", grid))

    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = study(shared, "s"), study(shared, "s")
    drawn = [lr(worker) for _ in range(2) for worker in (first, second)]
    drawn += [lr(study(shared, "s")) for _ in range(2)]  # resumed by new processes
    alone = study(f"sqlite:///{tmp_path / 'alone.db'}", "s")
    assert len(set(drawn)) == 6, drawn
    assert drawn == [lr(alone) for _ in range(6)]


def test_pruning_stops_hopeless_trials_early(tmp_path: Path, tracking_uri: str) -> None:
    """Learning rates down to 1e-5 cannot learn in 8 epochs: the median pruner stops them."""
    suite = parse_suite(_suite(tmp_path / "prune.yaml", name="prune", epochs=8, trials=14,
                               optimizers="[sgd]", sampler="random", pruner="median")
                        .read_text())
    uri = tracking_uri
    # serially, each trial meets the completed ones (stacked, a batch trains together)
    tune_suite(suite, tracking_uri=uri, device="cpu", engine="serial", console=QUIET)
    runs = _runs(uri, "prune", "tune")
    pruned = [r for r in runs if r.data.tags["nnbench.optuna_state"] == "pruned"]
    assert pruned, Counter(r.data.tags["nnbench.optuna_state"] for r in runs)
    for run in pruned:
        assert int(run.data.tags["nnbench.epochs_done"]) < 8  # stopped before the budget
        assert "pruned by the median pruner" in run.data.tags["nnbench.reason"]
    _assert_budgets_met(f"sqlite:///{tmp_path / 'optuna.db'}", 14, 1)
    states = _assert_stores_agree(f"sqlite:///{tmp_path / 'optuna.db'}", uri, "prune")
    assert states["PRUNED"] == len(pruned)


QUICK_LIVENESS = ("--heartbeat-interval", "1", "--grace-period", "3")


def _tune(path: Path, storage: str, uri: str, cwd: Path, *extra: str) -> Command:
    """`nnbench tune` as a process of its own (tests/processes.py)."""
    return start("tune", str(path), "--device", "cpu", "--storage", storage,
                 "--tracking-uri", uri, "--report-dir", str(cwd / "reports"), *extra, cwd=cwd)


def _trial_states_read_only(path: Path) -> Counter[str]:
    """Optuna's trial states, read without creating or migrating anything (the worker may
    still be creating the tables)."""
    if not path.exists():
        return Counter()
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return Counter(state for (state,) in db.execute("SELECT state FROM trials"))
    except sqlite3.OperationalError:
        return Counter()


@pytest.mark.slow
@pytest.mark.parametrize(("engine", "in_flight"), [("serial", 1), ("stacked", 2)])
def test_sigkill_mid_study_then_rerun_reaches_exactly_the_budget(
        tmp_path: Path, engine: str, in_flight: int,
        mlflow_store: Callable[[Path], str], capsys: pytest.CaptureFixture[str]) -> None:
    """Serial: one Optuna trial in flight; stacked with 2 lanes: a batch of two proposals."""
    path = _suite(tmp_path / "killed.yaml", name="killed", epochs=40, trials=6,
                  optimizers="[sgd]")
    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", mlflow_store(tmp_path / "mlflow.db")
    # the killed worker's trials are re-queued once its heartbeats are 3 s old
    options = ("--engine", engine, "--lanes", str(in_flight), *QUICK_LIVENESS)
    proc = _tune(path, storage, uri, tmp_path, *options)

    def ready() -> bool:
        states = _trial_states_read_only(tmp_path / "optuna.db")
        return states["COMPLETE"] >= 2 and states["RUNNING"] == in_flight

    # killed at a moment checked while it is frozen (SIGSTOP): in_flight trials running
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.output()
        if ready():
            stop_process(proc)
            if ready():
                break
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    else:
        raise AssertionError("the study never had trials in flight to kill")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # status names the dead worker that holds the running trials (it said only "N running")
    from nnbench import cli

    capsys.readouterr()
    assert cli.main(["status", str(path), "--storage", storage, "--tracking-uri", uri]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f": 2/6 trials, {in_flight} running" in said, said
    assert re.search(rf"tuning worker \S+:{proc.pid}: last heartbeat \d+ s ago \(no such "
                     rf"process on this machine: it has stopped\); the next tune or worker "
                     rf"started on this machine queues its trials again at once", said), said
    # the rerun, in this process: the killed trials' process is gone from this machine, so
    # they are queued again at once, not after its grace period (600 s here), and it goes on
    with within(300, "the rerun"):
        rerun = tune_suite(parse_suite(path.read_text()), storage=storage, tracking_uri=uri,
                           device="cpu", engine=engine, lanes=in_flight, console=QUIET,
                           liveness=Liveness(heartbeat_interval=1, grace_period=600))
    assert not rerun.interrupted and rerun.reruns == 2  # then the tuned point's 2 seeds
    _assert_budgets_met(storage, 6, 1)
    (trials,) = _studies(storage).values()
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == in_flight
    assert not any(t.user_attrs.get(COUNTED) for t in killed)
    states = Counter(r.data.tags["nnbench.status"] for r in _runs(uri, "killed", "tune"))
    # the dead worker's runs (if it got that far before the kill) are reaped, none stays running
    assert states["finished"] == 6 and states["killed"] <= in_flight
    assert set(states) <= {"finished", "killed"}
    assert _assert_stores_agree(storage, uri, "killed") == Counter(COMPLETE=6, FAIL=in_flight)


# -- two workers on one PostgreSQL server ----------------------------------------------------

@pytest.mark.slow
def test_two_workers_share_the_studies_on_postgresql(postgres: Postgres, tmp_path: Path) -> None:
    path = _suite(tmp_path / "shared.yaml", name="shared", epochs=4, trials=6,
                  optimizers="[sgd, adam, rmsprop]")
    storage, uri = postgres.optuna, postgres.mlflow
    # both workers start at the same instant on fresh databases: schemas, experiment and
    # studies are created by whichever gets there first, the other retries and joins
    workers = [_tune(path, storage, uri, tmp_path) for _ in range(2)]
    outputs = [w.finish(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(outputs)
    assert all("shared/" in output for output in outputs)  # each worker tuned the suite
    _assert_budgets_met(storage, 6, 3)
    tune_runs = _runs(uri, "shared", "tune")
    studies = Counter(r.data.tags["nnbench.study"] for r in tune_runs)
    assert set(studies.values()) == {6}  # one MLflow run per counted Optuna trial
    numbers = Counter((r.data.tags["nnbench.study"], r.data.tags["nnbench.optuna_trial"])
                      for r in tune_runs)
    assert max(numbers.values()) == 1  # nothing duplicated
    reruns = [r for r in _runs(uri, "shared", "trial") if is_done(r)]
    ids = Counter(r.data.tags["nnbench.trial_id"] for r in reruns)
    assert len(ids) == 3 * 2 and set(ids.values()) == {1}  # one re-run per point and seed
    # both workers did tuning work (which trials each got depends on who asked first)
    assert all(re.search(r"^shared/\S+ trial \d+: complete ", o, re.MULTILINE)
               for o in outputs), "\n".join(outputs)


def test_run_refuses_a_tuned_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnbench import cli

    path = _suite(tmp_path / "t.yaml")
    assert cli.main(["run", str(path)]) == 2
    assert "run it with `nnbench tune" in capsys.readouterr().err
    assert cli.main(["validate", str(path)]) == 0
    assert "2 scientific points × 4 Optuna trials" in capsys.readouterr().out


# -- what MLflow records is what Optuna holds ------------------------------------------------

# how each end of an Optuna trial (its state, nnbench.outcome) is recorded in MLflow:
# (run status, nnbench.status, nnbench.optuna_state)
RECORDED: dict[tuple[TrialState, str], tuple[str, str, str | None]] = {
    (TrialState.COMPLETE, "finished"): ("FINISHED", "finished", "complete"),
    (TrialState.PRUNED, "pruned"): ("FINISHED", "pruned", "pruned"),
    (TrialState.FAIL, "diverged"): ("FINISHED", "diverged", "failed"),
    (TrialState.FAIL, "failed"): ("FAILED", "failed", "failed"),
    (TrialState.FAIL, "killed"): ("KILLED", "killed", "killed"),  # Ctrl-C
    # failed as stale (its worker died or went silent), a copy queued: its run, if the
    # worker had opened one, shows killed (by the next tune worker that looks, or by its
    # own worker on resuming)
    (TrialState.FAIL, "None"): ("KILLED", "killed", "killed"),
}


def _assert_stores_agree(storage: str, uri: str, suite: str) -> Counter[str]:
    """Every Optuna trial of the suite's studies and its one MLflow tune run hold the same
    state (a surplus trial, failed before it trained, has none), and every tune run is an
    Optuna trial's; returns the Optuna states seen."""
    runs: dict[tuple[str, int], list[Run]] = {}
    for run in _runs(uri, suite, "tune"):
        tags = run.data.tags
        key = (tags["nnbench.study"], int(tags["nnbench.optuna_trial"]))
        runs.setdefault(key, []).append(run)
    seen: Counter[str] = Counter()
    for name, trials in _studies(storage).items():
        for trial in trials:
            outcome = str(trial.user_attrs.get("nnbench.outcome"))
            found = runs.pop((name, trial.number), [])
            seen[trial.state.name] += 1
            if trial.state == TrialState.WAITING:  # queued again, not yet asked for
                assert not found, (name, trial.number)
                continue
            if outcome == "surplus" or (outcome == "None" and not found):
                assert trial.state == TrialState.FAIL and not found, (name, trial.number)
                continue
            assert len(found) == 1, (name, trial.number, trial.state, len(found))
            run = found[0]
            recorded = (run.info.status, run.data.tags.get("nnbench.status"),
                        run.data.tags.get("nnbench.optuna_state"))
            assert recorded == RECORDED.get((trial.state, outcome)), (
                name, trial.number, trial.state, outcome, recorded)
    assert not runs, sorted(runs)  # no MLflow tune run without its Optuna trial
    return seen


# (median judges a trial only once 5 of its study are complete: in 3 trials it never acts,
# and validation refuses it; test_pruning_stops_hopeless_trials_early has it prune)
@pytest.mark.parametrize("pruner", ["hyperband", "none"])
@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "qmc"])
def test_optuna_and_mlflow_agree_on_every_trial(tmp_path: Path, tracking_uri: str,
                                                sampler: str, pruner: str) -> None:
    """Whatever the sampler and pruner, each Optuna trial's state is its MLflow run's after
    `tune`. Optuna's grid sampler ends a covered grid with `Study.stop`, which raised from
    `study.tell` (outside `Study.optimize`) after the state was stored: the last grid point
    told was recorded KILLED ("claim lost") while Optuna held it COMPLETE."""
    space = LR_GRID if sampler == "grid" else LR_RANGE
    path = _suite(tmp_path / "agree.yaml", name="agree", epochs=3, trials=3,
                  optimizers="[sgd]", sampler=sampler, pruner=pruner, space=space, seeds=1,
                  seed=1 if sampler == "grid" else 3)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    console = Console(record=True, width=200)
    summary = tune_suite(parse_suite(path.read_text()), storage=storage,
                         tracking_uri=tracking_uri, device="cpu", console=console)
    assert not summary.interrupted and summary.reruns == 1
    assert "claim lost" not in console.export_text()
    _assert_budgets_met(storage, 3, 1)
    states = _assert_stores_agree(storage, tracking_uri, "agree")
    assert states.total() == 3
    if pruner == "hyperband" and sampler != "qmc":  # (with these sampler seeds, some are)
        assert states["PRUNED"] >= 1, states
    if sampler == "grid":  # each point of the grid trained once
        (trials,) = _studies(storage).values()
        assert sorted(t.params["optimizer.lr"] for t in trials) == [0.001, 0.03, 1.0]


def test_a_tune_run_whose_worker_died_after_telling_optuna_gets_optunas_state(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed between telling Optuna and showing the status in MLflow leaves the
    tune run RUNNING (chaos seed 31381 found it): the next tune worker that looks (here the
    same command, at its end) gives it the Optuna trial's state."""
    from nnbench.tracking import Tracker

    path = _suite(tmp_path / "told.yaml", name="told", epochs=2, trials=2,
                  optimizers="[sgd]", sampler="random", seeds=1)
    real_show = Tracker.show
    skipped: list[str] = []

    def killed_before_the_status(self: Tracker, run_id: str, status: str,
                                 reason: str = "") -> None:
        if not skipped and self.client.get_run(run_id).data.tags["nnbench.role"] == "tune":
            skipped.append(run_id)  # the worker died here
            return
        real_show(self, run_id, status, reason)

    monkeypatch.setattr(Tracker, "show", killed_before_the_status)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tune_suite(parse_suite(path.read_text()), storage=storage, tracking_uri=tracking_uri,
               device="cpu", engine="serial", console=QUIET)
    run = MlflowClient(tracking_uri).get_run(skipped[0])
    assert (run.info.status, run.data.tags["nnbench.status"],
            run.data.tags["nnbench.optuna_state"]) == ("FINISHED", "finished", "complete")
    assert _assert_stores_agree(storage, tracking_uri, "told") == Counter(COMPLETE=2)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_a_trial_failed_as_stale_never_carries_what_its_worker_meant_to_record(
        tmp_path: Path) -> None:
    """What a tell records for the budget (counted, outcome) is written in the transaction
    that ends the trial: a worker whose trial was failed as stale meanwhile is refused, and
    the stale trial does not count (its copy will)."""
    from nnbench.queue import finishing, open_storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    rdb, reaper = open_storage(url, Liveness(1, 60)), open_storage(url, Liveness(1, 60))
    study = optuna.create_study(storage=rdb, study_name="budget/point")
    stale, told = study.ask(), study.ask()
    finishing(rdb, stale, {COUNTED: True, "nnbench.outcome": "finished"})
    # another worker fails it as stale after `study.tell` checked its state, before it
    # stores the result (what the tell stores, here directly)
    reaper.set_trial_state_values(stale._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        rdb.set_trial_state_values(stale._trial_id, TrialState.COMPLETE, [0.5])
    finishing(rdb, told, {COUNTED: True, "nnbench.outcome": "finished"})
    study.tell(told, 0.7)
    first, second = study.get_trials()
    me = {"nnbench.worker": worker_label(), "nnbench.grace": 60,  # named as it was asked
          "nnbench.holder": process_identity()}
    assert (first.state, first.user_attrs) == (TrialState.FAIL, me)
    assert (second.state, second.value, second.user_attrs) == (
        TrialState.COMPLETE, 0.7, {**me, COUNTED: True, "nnbench.outcome": "finished"})


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_an_asked_trial_is_named_with_its_worker_as_it_starts_running(tmp_path: Path) -> None:
    """`status` names the worker of each running tuning trial and its heartbeat's age. The
    name, and the first heartbeat, were written after `study.ask`: a worker killed between
    them left a RUNNING trial that status said was held by worker "?", or had "no heartbeat
    recorded". Now every RUNNING state, a new trial's or a waiting copy's (a killed trial
    queued again), is written with its worker's name and a heartbeat in one transaction."""
    from nnbench.queue import open_storage

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=open_storage(url, Liveness(1, 60)), study_name="p/q")
    study.enqueue_trial({"x": 1.0})  # a waiting copy
    copy, new = study.ask(), study.ask()
    with sqlite3.connect(tmp_path / "optuna.db") as db:  # another process's view
        named = dict(db.execute(
            "SELECT t.number, a.value_json FROM trials t JOIN trial_user_attributes a "
            "ON a.trial_id = t.trial_id AND a.key = 'nnbench.worker' WHERE t.state = 'RUNNING'"))
        beating = dict(db.execute(
            "SELECT t.number, h.heartbeat >= datetime('now', '-60 seconds') FROM trials t "
            "JOIN trial_heartbeats h ON h.trial_id = t.trial_id WHERE t.state = 'RUNNING'"))
    assert named == {copy.number: json.dumps(worker_label()), new.number: json.dumps(
        worker_label())}
    assert beating == {copy.number: 1, new.number: 1}  # stamped by the server as it started
    assert copy.number == 0 and new.number == 1


@pytest.mark.parametrize("sampler", ["grid", "random"])
def test_a_killed_trial_is_trained_again_with_its_values(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch,
        sampler: str) -> None:
    """Ctrl-C (or SIGTERM) while a point trains: its Optuna trial fails (it does not count)
    and is queued again with its values, so the next `tune` (or another worker) trains that
    point: for the grid, not a repeat of another (Optuna's grid sampler counts a failed
    trial's point as visited); for the others, not a new draw in its place."""
    path = _suite(tmp_path / "grid.yaml", name="grid", epochs=2, trials=3, optimizers="[sgd]",
                  sampler=sampler, space=LR_GRID if sampler == "grid" else LR_RANGE, seeds=1)
    suite = parse_suite(path.read_text())
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    epoch_finished = tuning._Pruning.epoch_finished

    def ctrl_c_in_trial_1(self: tuning._Pruning, spec: TrialSpec,
                          metrics: dict[str, float]) -> Decision:
        if self.trial.number == 1:
            raise KeyboardInterrupt
        return epoch_finished(self, spec, metrics)

    with monkeypatch.context() as patch:
        patch.setattr(tuning._Pruning, "epoch_finished", ctrl_c_in_trial_1)
        first = tune_suite(suite, storage=storage, tracking_uri=tracking_uri, device="cpu",
                           engine="serial", console=QUIET)
    assert first.interrupted
    (trials,) = _studies(storage).values()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.WAITING]
    _assert_stores_agree(storage, tracking_uri, "grid")

    again = tune_suite(suite, storage=storage, tracking_uri=tracking_uri, device="cpu",
                       engine="serial", console=QUIET)
    assert not again.interrupted and again.reruns == 1
    _assert_budgets_met(storage, 3, 1)
    assert _assert_stores_agree(storage, tracking_uri, "grid") == Counter(COMPLETE=3, FAIL=1)
    (trials,) = _studies(storage).values()
    killed = trials[1].params["optimizer.lr"]
    counted = [t.params["optimizer.lr"] for t in trials if t.user_attrs.get(COUNTED)]
    assert killed in counted and len(counted) == 3
    if sampler == "grid":
        assert sorted(counted) == [0.001, 0.03, 1.0]


def test_trials_asked_when_an_interrupt_comes_are_queued_again_not_left_running(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or SIGTERM) between two asks of a stacked batch: the trial asked already,
    not yet trained, is failed uncounted and queued again with its values, its run shown
    killed, instead of holding its slot until it went stale."""
    path = _suite(tmp_path / "asked.yaml", name="asked", epochs=2, trials=3,
                  optimizers="[sgd]", sampler="random", seeds=1)
    suite = parse_suite(path.read_text())
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    real_ask = tuning._ask
    asks: list[int] = []

    def interrupted_second_ask(*args: object, **kwargs: object) -> object:
        asks.append(1)
        if len(asks) == 2:
            raise KeyboardInterrupt
        return real_ask(*args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(tuning, "_ask", interrupted_second_ask)
        first = tune_suite(suite, storage=storage, tracking_uri=tracking_uri, device="cpu",
                           engine="stacked", console=QUIET)
    assert first.interrupted and len(asks) == 2
    (trials,) = _studies(storage).values()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs == {"nnbench.worker": trials[0].user_attrs["nnbench.worker"],
                                    "nnbench.grace": 60, "nnbench.outcome": "killed",
                                    "nnbench.holder": process_identity()}
    assert trials[1].system_attrs["fixed_params"] == trials[0].params
    (run,) = _runs(tracking_uri, "asked", "tune")
    assert (run.info.status, run.data.tags["nnbench.status"]) == ("KILLED", "killed")
    assert run.data.tags["nnbench.reason"] == "interrupted (Ctrl-C or SIGTERM) before it trained"
    _assert_stores_agree(storage, tracking_uri, "asked")


def test_trials_of_a_tune_stopped_by_an_error_are_queued_again_not_left_running(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error while a batch of asked trials trains (the engine's own, here)
    propagated with the trials RUNNING: status counted them running until they went stale
    a grace period later. They are failed uncounted and queued again with their values,
    their runs shown killed with the error, and the error goes on; the next tune trains
    them."""
    from nnbench.train.stacked import StackedEngine

    path = _suite(tmp_path / "broken.yaml", name="broken", epochs=2, trials=2,
                  optimizers="[sgd]", sampler="random", seeds=1)
    suite = parse_suite(path.read_text())
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def broken(self: object, trials: object, listener: object) -> object:
        raise RuntimeError("a bug in the engine")
        yield  # (a generator, as the engine's run is)

    with monkeypatch.context() as patch:
        patch.setattr(StackedEngine, "run", broken)
        with pytest.raises(RuntimeError, match="a bug in the engine"):
            tune_suite(suite, storage=storage, tracking_uri=tracking_uri, device="cpu",
                       engine="stacked", lanes=2, console=QUIET)
    (trials,) = _studies(storage).values()
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    assert [t.user_attrs.get("nnbench.outcome") for t in trials[:2]] == ["killed"] * 2
    assert sorted(t.system_attrs["fixed_params"]["optimizer.lr"] for t in trials[2:]) == \
        sorted(t.params["optimizer.lr"] for t in trials[:2])
    runs = _runs(tracking_uri, "broken", "tune")
    assert {(r.info.status, r.data.tags["nnbench.reason"]) for r in runs} == {
        ("KILLED", "the worker stopped on an error: RuntimeError: a bug in the engine")}
    again = tune_suite(suite, storage=storage, tracking_uri=tracking_uri, device="cpu",
                       engine="stacked", lanes=2, console=QUIET)
    assert not again.interrupted
    _assert_budgets_met(storage, 2, 1)


@pytest.mark.parametrize("sampler", ["random", "tpe", "qmc"])
def test_a_finite_space_is_searched_without_repeating_a_point(
        tmp_path: Path, tracking_uri: str, sampler: str) -> None:
    """tpe, random and qmc draw with replacement: 3 trials over 3 learning rates trained
    0.05 twice (with the same seed: identical results, counted as new evidence) and never
    tried 0.01. A proposal of a point another trial holds ends uncounted ("repeat", never
    trained) and an untried point is queued in its place: the budget covers the space."""
    path = _suite(tmp_path / "distinct.yaml", name="distinct", epochs=1, trials=3,
                  optimizers="[sgd]", sampler=sampler, space=LR_GRID, seeds=1)
    summary = tune_suite(parse_suite(path.read_text()), storage=f"sqlite:///"
                         f"{tmp_path / 'optuna.db'}", tracking_uri=tracking_uri,
                         device="cpu", engine="serial", console=QUIET)
    (trials,) = _studies(f"sqlite:///{tmp_path / 'optuna.db'}").values()
    trained = [t.params["optimizer.lr"] for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(trained) == [0.001, 0.03, 1.0], [(t.state, t.params) for t in trials]
    repeats = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs["nnbench.outcome"] == "repeat" for t in repeats)
    assert not any(t.user_attrs.get(COUNTED) for t in repeats)
    (point,) = summary.points
    assert point.counted == 3 and point.states.get("repeat", 0) == len(repeats)
    assert len(_runs(tracking_uri, "distinct", "tune")) == 3  # a repeat opens no run


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_a_queued_copy_is_never_redirected_and_a_counted_failure_holds_its_point(
        tmp_path: Path) -> None:
    """The no-repeat search must not turn a killed trial's queued copy (its values) into
    a "repeat" while the original still shows RUNNING, and a point whose trial diverged or
    failed (counted) must not be proposed again: it would train again with the same seed."""
    from nnbench.queue import open_storage

    tune = parse_suite(_suite(tmp_path / "d.yaml", name="d", trials=3, optimizers="[sgd]",
                              sampler="random", space=LR_GRID, seeds=1).read_text()).tune
    assert tune is not None
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'o.db'}"),
                                study_name="d/p")
    running = study.ask({"optimizer.lr": optuna.distributions.CategoricalDistribution(
        [0.001, 0.03, 1.0])})  # its worker still trains 0.03
    running_lr = running.params["optimizer.lr"]
    study.enqueue_trial({"optimizer.lr": running_lr})  # a copy queued for it
    copy = study.ask()
    lr = copy.suggest_categorical("optimizer.lr", [0.001, 0.03, 1.0])
    assert lr == running_lr
    assert tuning._untried_instead(study, tune, copy, {"optimizer.lr": lr}) is None
    failed = next(v for v in (0.001, 0.03, 1.0) if v != running_lr)
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params={"optimizer.lr": failed}, user_attrs={COUNTED: True},
        distributions={"optimizer.lr": optuna.distributions.CategoricalDistribution(
            [0.001, 0.03, 1.0])}))
    fresh = study.ask()
    fresh.suggest_categorical("optimizer.lr", [0.001, 0.03, 1.0])
    (left,) = {0.001, 0.03, 1.0} - {running_lr, failed}
    assert tuning._untried_instead(study, tune, fresh, {"optimizer.lr": failed}) == {
        "optimizer.lr": left}
    # a stale trial's copy (Optuna's retry callback: params, failed_trial) trains its point
    # (the chaos test caught one failed as a "repeat", its trial never trained)
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params={"optimizer.lr": running_lr},
        distributions={"optimizer.lr": optuna.distributions.CategoricalDistribution(
            [0.001, 0.03, 1.0])}, system_attrs={"failed_trial": running.number}))
    stale_copy = study.ask()
    assert stale_copy.params == {"optimizer.lr": running_lr}
    assert tuning._untried_instead(study, tune, stale_copy, {"optimizer.lr": running_lr}) \
        is None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_two_workers_that_queued_the_same_untried_point_train_it_once(tmp_path: Path) -> None:
    """Two workers whose proposals were repeats at once each queued an untried point in
    place of theirs, and both drew the same one: both trained it (a point queued in place of
    a repeat was never redirected). The later one yields now; a stale trial's copy, though
    it inherits the mark, trains its values."""
    from nnbench.queue import INSTEAD, open_storage

    tune = parse_suite(_suite(tmp_path / "d.yaml", name="d", trials=3, optimizers="[sgd]",
                              sampler="random", space=LR_GRID, seeds=1).read_text()).tune
    assert tune is not None
    lrs = [0.001, 0.03, 1.0]
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}")
    study = optuna.create_study(storage=storage, study_name="d/p")
    for _ in range(2):
        study.enqueue_trial({"optimizer.lr": 0.03}, user_attrs={INSTEAD: True})
    first, second = study.ask(), study.ask()
    assert first.number < second.number
    for trial in (first, second):
        assert trial.suggest_categorical("optimizer.lr", lrs) == 0.03
    assert tuning._untried_instead(study, tune, first, {"optimizer.lr": 0.03}) is None
    other = tuning._untried_instead(study, tune, second, {"optimizer.lr": 0.03})
    assert other is not None and other["optimizer.lr"] in (0.001, 1.0), other
    # the first one, asked only after the second was set up, still keeps its point
    assert tuning._untried_instead(study, tune, first, {"optimizer.lr": 0.03}) is None
    # a sampler's proposal made after it, of the same point: it gives way, the queued point
    # keeps it (both gave it up, and two more points were queued)
    later = study.ask()
    assert later.number > first.number
    lr = optuna.distributions.CategoricalDistribution(lrs)  # (as if the sampler drew 0.03)
    storage.set_trial_param(later._trial_id, "optimizer.lr", lrs.index(0.03), lr)
    assert tuning._untried_instead(study, tune, first, {"optimizer.lr": 0.03}) is None
    assert tuning._untried_instead(study, tune, later, {"optimizer.lr": 0.03}) is not None
    # a stale trial's copy of a queued point carries its mark: it trains its values
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params={"optimizer.lr": 0.03}, user_attrs={INSTEAD: True},
        distributions={"optimizer.lr": optuna.distributions.CategoricalDistribution(lrs)},
        system_attrs={"failed_trial": first.number}))
    stale_copy = study.ask()
    assert stale_copy.params == {"optimizer.lr": 0.03}
    assert tuning._untried_instead(study, tune, stale_copy, {"optimizer.lr": 0.03}) is None


def test_a_point_queued_in_place_of_a_repeat_is_surplus_once_the_budget_is_met(
        tmp_path: Path) -> None:
    """A worker that queued an untried point in place of a repeat and died before taking
    it left the point WAITING for good once the others met the budget (status: "1 queued
    again"): fail_waiting kept every waiting trial with values. A killed trial's copy still
    waits (someone must train its point); the replacement fails as surplus."""
    from nnbench.queue import INSTEAD, fail_waiting, open_storage

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'o.db'}"),
                                study_name="d/p")
    study.enqueue_trial({"optimizer.lr": 0.03}, user_attrs={INSTEAD: True})
    study.enqueue_trial({"optimizer.lr": 1.0})  # a killed trial's copy
    lr = optuna.distributions.CategoricalDistribution([0.001, 0.03, 1.0])
    study.add_trial(optuna.trial.create_trial(  # a stale trial's copy: its user attributes
        state=TrialState.WAITING, params={"optimizer.lr": 0.001},  # too (it popped one)
        distributions={"optimizer.lr": lr}, user_attrs={INSTEAD: True},
        system_attrs={"failed_trial": 0}))
    fail_waiting(study, {"nnbench.outcome": "surplus"})
    states = [(t.state, t.user_attrs.get("nnbench.outcome")) for t in study.get_trials()]
    assert states == [(TrialState.FAIL, "surplus"), (TrialState.WAITING, None),
                      (TrialState.WAITING, None)]


def test_a_grid_sampler_with_more_trials_than_points_is_refused_before_compute(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnbench import cli

    path = _suite(tmp_path / "t.yaml", trials=12, sampler="grid", space=LR_GRID)
    stores = ["--storage", f"sqlite:///{tmp_path / 'optuna.db'}",
              "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    for argv in (["validate", str(path)],
                 ["tune", str(path), "--device", "cpu", *stores,
                  "--report-dir", str(tmp_path / "reports")]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        for part in ("t.yaml: tune.trials: 12 trials", "grid has 3 points",
                     "optimizer.lr: 3 choices", "write trials: 3"):
            assert part in err, (argv, part, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.yaml"]  # nothing created
    # the grid's size is the product of its dimensions' choices: 3 x 2 points take 6 trials
    two = path.read_text().replace("trials: 12", "trials: 7").replace(
        "    optimizer.lr:", "    dropout: {type: categorical, choices: [0.0, 0.5]}\n"
                            "    optimizer.lr:")
    with pytest.raises(SuiteError, match=r"tune\.trials: 7 trials, but the grid sampler's "
                                         r"grid has 6 points \(dropout: 2 choices × "
                                         r"optimizer\.lr: 3 choices\)"):
        parse_suite(two)
    assert parse_suite(two.replace("trials: 7", "trials: 6")).tune is not None
    # tpe and random repeat a point too once every point is taken (a tpe study over 2
    # learning rates trained one of them 5 times in 6 trials); integer ranges count
    for sampler in ("tpe", "random"):
        finite = two.replace("name: grid", f"name: {sampler}").replace(
            "dropout: {type: categorical, choices: [0.0, 0.5]}",
            "epochs: {type: int, low: 1, high: 2}")
        assert f"name: {sampler}" in finite
        with pytest.raises(SuiteError, match=r"tune\.trials: 7 trials, but the space has 6 "
                                             r"points \(epochs: 2 values × optimizer\.lr: 3 "
                                             r"choices\).*or widen the space"):
            parse_suite(finite)
        assert parse_suite(finite.replace("trials: 7", "trials: 6")).tune is not None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
@pytest.mark.parametrize("broken", ["before_commit", "after_commit", "ended_meanwhile"])
def test_a_tell_through_a_connection_the_server_closed_is_told_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    """A worker SIGSTOPped mid-transaction finds, once resumed, that PostgreSQL ended its
    session (chaos seed 8724: the worker crashed with StorageInternalError). The tell is
    told again while the trial still runs; a commit whose answer was lost is recognised by
    its outcome; a trial another worker ended meanwhile is that worker's (a lost claim)."""
    from typing import Any

    import sqlalchemy

    from nnbench.queue import _Storage, open_storage
    from nnbench.tuning import _tell_once

    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", Liveness(1, 60))
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    real = _Storage.set_trial_state_values
    calls: list[int] = []

    def closed(self: Any, trial_id: int, state: Any, values: Any = None) -> bool:
        calls.append(1)
        if len(calls) == 1:
            if broken == "after_commit":
                real(self, trial_id, state, values)
            elif broken == "ended_meanwhile":
                real(self, trial_id, TrialState.FAIL, None)
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit") from sqlalchemy.exc.OperationalError(
                    "COMMIT", {}, Exception("server closed the connection unexpectedly"))
        return bool(real(self, trial_id, state, values))

    monkeypatch.setattr(_Storage, "set_trial_state_values", closed)
    attrs = {"nnbench.outcome": "finished", COUNTED: True}
    if broken == "ended_meanwhile":
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            _tell_once(study, storage, trial, TrialState.COMPLETE, 0.5, attrs)
        assert storage.get_trial(trial._trial_id).state == TrialState.FAIL
        return
    _tell_once(study, storage, trial, TrialState.COMPLETE, 0.5, attrs)
    stored = storage.get_trial(trial._trial_id)
    assert (stored.state, stored.values, stored.user_attrs.get(COUNTED)) == (
        TrialState.COMPLETE, [0.5], True)
    assert len(calls) == (1 if broken == "after_commit" else 2)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_tuning_writes_that_meet_an_ended_session_are_retried(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Optuna write of a tune worker (ask, which names the trial with its worker, a
    suggestion, an epoch's report) goes through an ended session once, as a worker resumed
    from a stop past the server's idle timeout finds it: each is retried, never fatal. An
    ask whose trial was stored with its answer lost leaves that trial RUNNING without a
    heartbeat: it goes stale a grace period later, does not count, and its copy trains, so
    the budget is met exactly."""
    import sqlalchemy

    from nnbench.queue import _Storage

    broken: list[str] = []

    def once(name: str, *, after_commit: bool = False) -> None:
        real = getattr(_Storage, name)

        def flaky(self: _Storage, *args: object, **kwargs: object) -> object:
            failures = broken.count(name)
            if failures < (2 if name == "_create_new_trial" else 1):
                broken.append(name)
                # _create_new_trial: first the transaction rolled back, then a commit whose
                # answer was lost
                if after_commit and failures == 1:
                    real(self, *args, **kwargs)
                raise optuna.exceptions.StorageInternalError(
                    "An exception is raised during the commit") from \
                    sqlalchemy.exc.OperationalError("COMMIT", {}, Exception(
                        "server closed the connection unexpectedly"))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(_Storage, name, flaky)

    once("_create_new_trial", after_commit=True)
    for name in ("_set_trial_param", "set_trial_intermediate_value"):
        once(name)
    path = _suite(tmp_path / "ended.yaml", name="ended", epochs=2, trials=2,
                  optimizers="[sgd]", sampler="random", seeds=1)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    summary = tune_suite(parse_suite(path.read_text()), storage=storage,
                         tracking_uri=tracking_uri, device="cpu", engine="serial",
                         console=QUIET, liveness=Liveness(heartbeat_interval=1, grace_period=2))
    assert Counter(broken) == {"_create_new_trial": 2, "_set_trial_param": 1,
                               "set_trial_intermediate_value": 1}
    assert not summary.interrupted and summary.reruns == 1
    _assert_budgets_met(storage, 2, 1)
    (trials,) = _studies(storage).values()
    # trial 0: the lost answer, failed as stale (uncounted); its copy is the last trial
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs == {"nnbench.worker": worker_label(),  # named, not counted
                                    "nnbench.grace": 2,
                                    "nnbench.holder": process_identity()}
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * (len(trials) - 1)
    assert _assert_stores_agree(storage, tracking_uri, "ended") == Counter(
        FAIL=1, COMPLETE=len(trials) - 1)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_the_copy_of_a_trial_asked_past_a_met_budget_is_failed_as_surplus(
        tmp_path: Path, tracking_uri: str) -> None:
    """An ask past the budget whose answer was lost (its worker asked again, found the
    second trial surplus and moved on) leaves a RUNNING trial that goes stale; its copy, in
    a study whose budget other trials met, could only be surplus and no worker asks for it:
    a worker that finds the budget met fails it as surplus (a chaos run once ended with the
    copy WAITING for good, a study that never finished)."""
    from nnbench.queue import open_storage

    path = _suite(tmp_path / "orphan.yaml", name="orphan", epochs=1, trials=2,
                  optimizers="[sgd]", sampler="random", seeds=1)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    fast = Liveness(heartbeat_interval=1, grace_period=2)

    def tune() -> tuning.TuneSummary:
        return tune_suite(parse_suite(path.read_text()), storage=storage,
                          tracking_uri=tracking_uri, device="cpu", engine="serial",
                          console=QUIET, liveness=fast)

    tune()
    (name,) = _studies(storage)
    # the lost answer: a trial stored RUNNING (with its first heartbeat), no parameters, no run
    orphan = optuna.load_study(study_name=name, storage=open_storage(storage, fast)).ask()
    summary = tune()
    (trials,) = _studies(storage).values()
    assert [(t.state, t.user_attrs.get("nnbench.outcome")) for t in trials] == [
        (TrialState.COMPLETE, "finished"), (TrialState.COMPLETE, "finished"),
        (TrialState.FAIL, None), (TrialState.FAIL, "surplus")]
    assert trials[3].system_attrs["failed_trial"] == orphan.number == 2
    assert trials[3].datetime_start is not None  # an ended trial Optuna can copy
    _assert_budgets_met(storage, 2, 1)
    (point,) = summary.points
    assert (point.counted, point.states) == (2, {"finished": 2, "killed": 1, "surplus": 1})
    assert _assert_stores_agree(storage, tracking_uri, "orphan") == Counter(FAIL=2, COMPLETE=2)


def _failed_as_stale(study: optuna.Study, trial: optuna.Trial) -> None:
    """What another worker's `fail_stale_trials` does to a trial whose worker was stopped
    past the grace period: FAIL, and a WAITING copy queued by the storage's callback."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    storage = study._storage
    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, storage.get_trial(trial._trial_id))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
@pytest.mark.parametrize("when", ["set_up", "training"])
def test_a_tune_trial_failed_as_stale_under_its_worker_costs_the_budget_nothing(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """A tune worker stopped past the grace period finds, on resuming, its trial failed as
    stale by another worker (a copy queued). Between the ask and the first suggestion it
    asks again (it once exited 1 on UpdateFinishedTrialError); while training, that lane
    stops at its next report while the other lanes of its stacked group train on, and its
    run shows killed (the exception once failed the whole group, its other trials counted
    as failed). Either way the copy trains and the budget is met exactly."""
    path = _suite(tmp_path / "stale.yaml", name="stale", epochs=2, trials=2,
                  optimizers="[sgd]", sampler="random", seeds=1)
    reaped: list[int] = []
    if when == "set_up":
        ask = optuna.Study.ask

        def ask_then_reaped(self: optuna.Study, *args: object, **kwargs: object) -> optuna.Trial:
            trial = ask(self, *args, **kwargs)  # type: ignore[arg-type]
            if not reaped:
                reaped.append(trial.number)
                _failed_as_stale(self, trial)
            return trial

        monkeypatch.setattr(optuna.Study, "ask", ask_then_reaped)
    else:
        epoch_finished = tuning._Pruning.epoch_finished

        def reaped_at_its_first_epoch(self: tuning._Pruning, spec: TrialSpec,
                                      metrics: dict[str, float]) -> Decision:
            if not reaped:
                reaped.append(self.trial.number)
                _failed_as_stale(self.trial.study, self.trial)
            return epoch_finished(self, spec, metrics)

        monkeypatch.setattr(tuning._Pruning, "epoch_finished", reaped_at_its_first_epoch)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # while training: trials 0 and 1 as the two lanes of one stacked group
    summary = tune_suite(parse_suite(path.read_text()), storage=storage,
                         tracking_uri=tracking_uri, device="cpu",
                         engine="serial" if when == "set_up" else "stacked", console=QUIET)
    assert reaped == [0] and not summary.interrupted and summary.reruns == 1
    _assert_budgets_met(storage, 2, 1)
    (trials,) = _studies(storage).values()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert _assert_stores_agree(storage, tracking_uri, "stale") == Counter(FAIL=1, COMPLETE=2)
    runs = {r.data.tags["nnbench.optuna_trial"]: r for r in _runs(tracking_uri, "stale", "tune")}
    if when == "set_up":  # failed before its run was opened
        assert sorted(runs) == ["1", "2"]
    else:
        assert (runs["0"].info.status, runs["0"].data.tags["nnbench.status"]) == (
            "KILLED", "killed")
        assert len(MlflowClient(tracking_uri).get_metric_history(
            runs["0"].info.run_id, "val_accuracy")) == 1  # it stopped at its first epoch


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_a_stale_trial_is_failed_together_with_its_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`queue.reap` fails a stale tuning trial and queues its copy in one transaction: a
    session ended while the copy is written rolls back the failure too, and the retry does
    both (Optuna's fail_stale_trials committed the failure first: the retry then found no
    stale trial, and the grid point was never trained)."""
    import sqlalchemy

    from nnbench.queue import _Storage, open_storage, reap

    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", Liveness(1, 2))
    study = optuna.create_study(storage=storage, study_name="s")
    stale = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(stale._trial_id)
    time.sleep(3)  # past the grace period
    # the failed trial read back to make its copy: the session ends there once (Optuna's
    # own trial creation retries by itself, so the read is where it could not recover)
    real = _Storage._build_frozen_trial_from_trial_model
    broken: list[int] = []

    def ended(self: _Storage, *args: object) -> object:
        if not broken:
            broken.append(1)
            raise optuna.exceptions.StorageInternalError("ended") from \
                sqlalchemy.exc.OperationalError("SELECT", {}, Exception(
                    "server closed the connection unexpectedly"))
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_Storage, "_build_frozen_trial_from_trial_model", ended)
    reap(study)
    assert broken == [1]
    failed, copy = study.get_trials()
    assert (failed.number, failed.state) == (0, TrialState.FAIL)
    assert (copy.state, copy.params, copy.system_attrs["failed_trial"]) == (
        TrialState.WAITING, failed.params, 0)
    reap(study)  # nothing stale is left: no second copy
    assert len(study.get_trials()) == 2


def test_a_study_read_that_meets_an_ended_session_is_retried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker resumed from a stop past the server's idle timeout finds its session ended:
    Optuna raises StorageInternalError on the next read, which is retried, not fatal (it
    once ended a chaos run's `nnbench tune` with exit 1)."""
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.set_user_attr(COUNTED, True)
    study.tell(trial, 0.5)
    study.ask()  # running
    read = study.get_trials
    failures = [optuna.exceptions.StorageInternalError(
        "An exception is raised during the commit.")]

    def flaky(*args: object, **kwargs: object) -> list[optuna.trial.FrozenTrial]:
        if failures:
            raise failures.pop()
        return read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(study, "get_trials", flaky)
    assert tuning._budget(study) == (1, 1, 0)
    assert not failures


def test_the_report_counts_diverged_optuna_trials_as_diverged(
        tmp_path: Path, tracking_uri: str) -> None:
    """Optuna has no diverged state (a diverged trial is FAIL there): the report's tuning
    counts read the run's status, so a point whose search met a diverging learning rate
    shows it as diverged, not as a failure."""
    from nnbench.config import load_suite

    path = _suite(tmp_path / "tuned.yaml", trials=2, optimizers="[sgd]", sampler="grid",
                  space="{type: categorical, choices: [0.01, 1000000.0]}", epochs=2)
    suite = load_suite(path)
    tune_suite(suite, tracking_uri=tracking_uri, device="cpu", console=QUIET)
    assert sorted(r.data.tags["nnbench.status"] for r in _runs(tracking_uri, "tuned", "tune")
                  ) == ["diverged", "finished"]
    html = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path / "r").read_text()
    table = html[html.index('id="tuning-counts"'):]
    table = table[:table.index("</table>")]
    assert "<th>complete</th><th>pruned</th><th>diverged</th><th>failed</th>" in table
    cells = re.findall(r'<td class="num">([^<]*)</td>', table)
    assert cells == ["1", "0", "1", "0", "0", "2"], cells  # complete .. killed, total


def test_importances_leave_out_trials_of_an_earlier_space(tmp_path: Path) -> None:
    """The space was narrowed (lr 0.036 is outside it now) and a dimension added (l2, which
    the old trials lack): the report's importances crashed (ValueError, KeyError) on the
    old trials; they are left out."""
    import pandas as pd

    from nnbench.config import load_suite
    from nnbench.tuning import importances

    path = _suite(tmp_path / "tuned.yaml", optimizers="[sgd]",
                  space="{type: float, low: 0.001, high: 0.02, log: true}\n"
                        "    l2: {type: float, low: 0.0, high: 0.01}")
    suite = load_suite(path)
    (name,) = {study_name(suite, p) for p in suite.configurations()}
    rows = [{"study": name, "state": "complete", "objective": 0.5 + i / 100,
             "optimizer.lr": lr, "l2": l2}
            for i, (lr, l2) in enumerate([(0.036, float("nan")), (0.002, 0.001),
                                          (0.01, 0.005), (0.015, 0.002), (0.005, 0.008)])]
    tuning = pd.DataFrame(rows)
    found = importances(suite, tuning)
    assert set(found[name]) == {"optimizer.lr", "l2"}
    assert sum(found[name].values()) == pytest.approx(1.0)


def test_importances_of_too_few_trials_are_not_reported_as_equal_shares(tmp_path: Path) -> None:
    """Optuna's evaluator, given one trial, warns and returns equal shares (0.50, 0.50):
    the report printed them as a finding (and the warning leaked to stderr). They are left
    out; with more trials they are computed."""
    import warnings

    import pandas as pd

    from nnbench.config import load_suite
    from nnbench.tuning import importances

    path = _suite(tmp_path / "few.yaml", optimizers="[sgd]",
                  space="{type: float, low: 0.001, high: 0.1, log: true}\n"
                        "    l2: {type: float, low: 0.0, high: 0.01}")
    suite = load_suite(path)
    (name,) = {study_name(suite, p) for p in suite.configurations()}

    def rows(n: int) -> pd.DataFrame:
        return pd.DataFrame([{"study": name, "state": "complete",
                              "objective": 0.5 + (i % 7) / 100 + i / 1000,
                              "optimizer.lr": 0.001 * 1.2 ** i, "l2": 0.01 * (i % 5) / 5}
                             for i in range(n)])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none leaks
        assert importances(suite, rows(1)) == {}
        found = importances(suite, rows(4))
    assert set(found[name]) == {"optimizer.lr", "l2"}
    assert len(set(found[name].values())) == 2  # not equal shares


def _tuning_counts(suite_path: Path, uri: str) -> list[dict[str, object]]:
    """The report's tuning counts table: one row per study it shows."""
    from nnbench.config import load_suite
    from nnbench.report import _tuning_section
    from nnbench.results import load_results

    counts: list[dict[str, object]] = _tuning_section(
        load_results(load_suite(suite_path), uri))["counts"]
    return counts


def test_an_edited_tune_definition_tunes_a_study_of_its_own(
        tmp_path: Path, tracking_uri: str) -> None:
    """Editing the space (here a categorical's choices) or the objective starts a study of
    its own: trials of the earlier definition never fill the new budget, nor give its best
    values, nor show in the report. Before, the edit reused the study: new choices crashed
    Optuna ("CategoricalDistribution does not support dynamic value space"), a narrowed
    range kept a best outside it, a changed objective ranked val_loss against
    val_accuracy values in a study still maximising."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    path = _suite(tmp_path / "edited.yaml", name="edited", epochs=1, trials=2,
                  optimizers="[sgd]", sampler="random", seeds=1,
                  space="{type: categorical, choices: [0.001, 0.003]}")

    def tune() -> tuning.TuneSummary:
        summary = tune_suite(parse_suite(path.read_text()), storage=storage,
                             tracking_uri=tracking_uri, device="cpu", console=QUIET)
        assert not summary.interrupted
        return summary

    def tuned() -> dict[str, object]:
        from nnbench.tracking import Tracker

        (point,) = tuning.tuned_points(parse_suite(path.read_text()),
                                       Tracker(parse_suite(path.read_text()),
                                               tracking_uri)).values()
        return point[1]

    first = tune()
    assert tuned()["optimizer.lr"] in (0.001, 0.003) and first.reruns == 1
    path.write_text(path.read_text().replace("[0.001, 0.003]", "[0.1, 0.3]"))
    second = tune()
    assert second.reruns == 1 and second.points[0].counted == 2
    assert tuned()["optimizer.lr"] in (0.1, 0.3)
    studies = _studies(storage)  # (a proposal of a point taken ends as a "repeat")
    assert len(studies) == 2 and all(
        len([t for t in trials if t.user_attrs.get("nnbench.outcome") != "repeat"]) == 2
        for trials in studies.values())
    assert [(c["total"], c.get("complete")) for c in _tuning_counts(path, tracking_uri)] == [
        (2, 2)]  # the earlier study's trials are not this definition's

    # a new objective: a study that minimises it
    path.write_text(path.read_text().replace("{metric: val_accuracy}",
                                             "{metric: val_loss}"))
    tune()
    edited = parse_suite(path.read_text())
    minimised = optuna.load_study(study_name=study_name(edited, edited.configurations()[0]),
                                  storage=storage)
    assert minimised.direction == optuna.study.StudyDirection.MINIMIZE
    complete = [t for t in minimised.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2 and {t.params["optimizer.lr"] for t in complete} == {0.1, 0.3}
    best = min(complete, key=lambda t: t.value or 0.0)
    assert tuned() == best.params

    # back to the first definition: its study is complete, nothing trains again
    path.write_text(path.read_text().replace("{metric: val_loss}", "{metric: val_accuracy}")
                    .replace("[0.1, 0.3]", "[0.001, 0.003]"))
    again = tune()
    assert again.reruns == 0 and len(_studies(storage)) == 3
    assert tuned()["optimizer.lr"] in (0.001, 0.003)


def test_a_study_an_earlier_nnbench_named_is_kept_while_its_definition_holds(
        tmp_path: Path, tracking_uri: str) -> None:
    """A store tuned by an earlier nnbench (studies `<suite>/<config_id>`, the best values
    tagged without their study) trains nothing on a re-run of the same suite and keeps its
    best values; once its space is edited, a new study is tuned and the old best values
    are no longer the point's."""
    from nnbench.tracking import Tracker

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    path = _suite(tmp_path / "old.yaml", name="old", epochs=1, trials=2, optimizers="[sgd]",
                  sampler="random", seeds=1, space="{type: categorical, choices: [0.001, 0.003]}")
    suite = parse_suite(path.read_text())
    tune_suite(suite, storage=storage, tracking_uri=tracking_uri, device="cpu", console=QUIET)
    (point,) = suite.configurations()
    earlier = f"old/{point.config_id}"
    with sqlite3.connect(tmp_path / "optuna.db") as db:  # as an earlier nnbench named it
        db.execute("UPDATE studies SET study_name = ? WHERE study_name = ?",
                   (earlier, study_name(suite, point)))
        db.execute("DELETE FROM study_user_attributes WHERE key = 'nnbench.tune'")
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("old")
    assert experiment is not None
    (tag,) = [t for t in experiment.tags if t.startswith(tuning.TUNED_TAG)]
    assert tag.startswith(f"{tuning.TUNED_TAG}{point.config_id}.")  # one per definition
    best = json.loads(experiment.tags[tag])
    client.delete_experiment_tag(experiment.experiment_id, tag)  # as an earlier nnbench's
    client.set_experiment_tag(experiment.experiment_id, f"{tuning.TUNED_TAG}{point.config_id}",
                              json.dumps(best))
    assert tuning.tuned_points(suite, Tracker(suite, tracking_uri))[point.config_id][1] == best

    again = tune_suite(suite, storage=storage, tracking_uri=tracking_uri, device="cpu",
                       console=QUIET)
    assert again.reruns == 0 and [p.name for p in again.points] == [earlier]
    assert list(_studies(storage)) == [earlier]
    assert tuning.tuned_points(suite, Tracker(suite, tracking_uri))[point.config_id][1] == best

    # the tune that kept it recorded its definition: another tuning seed, whose trials
    # would fit, is a study of its own
    path.write_text(path.read_text().replace("seeds: 1", "seeds: [7]"))
    reseeded = parse_suite(path.read_text())
    assert reseeded.tune is not None and reseeded.tune.seeds == (7,)
    tune_suite(reseeded, storage=storage, tracking_uri=tracking_uri, device="cpu",
               console=QUIET)
    assert sorted(_studies(storage)) == sorted([earlier, study_name(reseeded, point)])

    path.write_text(path.read_text().replace("[0.001, 0.003]", "[0.1, 0.3]"))
    edited = parse_suite(path.read_text())
    assert tuning.tuned_points(edited, Tracker(edited, tracking_uri)) == {}  # not its values
    tune_suite(edited, storage=storage, tracking_uri=tracking_uri, device="cpu", console=QUIET)
    assert study_name(edited, point) in _studies(storage) and len(_studies(storage)) == 3
    assert tuning.tuned_points(edited, Tracker(edited, tracking_uri))[point.config_id][1][
        "optimizer.lr"] in (0.1, 0.3)
    # the earlier study's values, no longer the point's under any definition here, are gone
    experiment = client.get_experiment_by_name("old")
    assert experiment is not None
    assert f"{tuning.TUNED_TAG}{point.config_id}" not in experiment.tags


def test_the_report_says_why_a_point_of_one_trial_has_no_importances(
        tmp_path: Path, tracking_uri: str) -> None:
    path = _suite(tmp_path / "one.yaml", name="one", epochs=1, trials=1, optimizers="[sgd]",
                  sampler="random", seeds=1)
    suite = parse_suite(path.read_text())
    tune_suite(suite, storage=f"sqlite:///{tmp_path / 'optuna.db'}", tracking_uri=tracking_uri,
               device="cpu", console=QUIET)
    html = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path / "r").read_text()
    assert ("<td>1</td><td>not estimated: 1 complete trial is too few for Optuna&#39;s "
            "evaluator (it would give every parameter an equal share)</td>") in html


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked without Study.optimize
def test_a_dead_worker_s_trial_of_an_earlier_definition_is_settled_by_the_next_tune(
        tmp_path: Path, tracking_uri: str) -> None:
    """A worker killed while tuning one definition, then the space edited: the next tune
    (of the new definition) still fails that trial as stale and shows its run killed; both
    stayed RUNNING for good, as nothing tuned the earlier study again."""
    from nnbench.queue import open_storage, reap

    storage, fast = f"sqlite:///{tmp_path / 'optuna.db'}", Liveness(1, 2)
    path = _suite(tmp_path / "dead.yaml", name="dead", epochs=1, trials=2, optimizers="[sgd]",
                  sampler="random", seeds=1, space="{type: categorical, choices: [0.001, 0.003]}")
    suite = parse_suite(path.read_text())
    tune_suite(suite, storage=storage, tracking_uri=tracking_uri, device="cpu", console=QUIET,
               liveness=fast)
    (point,) = suite.configurations()
    first = optuna.load_study(study_name=study_name(suite, point),
                              storage=open_storage(storage, fast))
    orphan = first.ask()  # its worker died right after: RUNNING, with a run RUNNING
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("dead")
    assert experiment is not None
    run_id = client.create_run(experiment.experiment_id, tags={
        "nnbench.role": "tune", "nnbench.study": first.study_name,
        "nnbench.optuna_trial": str(orphan.number)}).info.run_id
    reap(first)  # the first look starts its heartbeat: stale a grace period later
    time.sleep(3.5)  # past it by more than a second: SQLite's clock counts whole seconds
    path.write_text(path.read_text().replace("[0.001, 0.003]", "[0.1, 0.3]"))
    tune_suite(parse_suite(path.read_text()), storage=storage, tracking_uri=tracking_uri,
               device="cpu", console=QUIET, liveness=fast)
    assert optuna.load_study(study_name=first.study_name, storage=storage).trials[
        orphan.number].state == TrialState.FAIL
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags["nnbench.status"]) == ("KILLED", "killed")


def test_a_budget_lowered_after_its_trials_ran_is_said_so() -> None:
    assert tuning.budget_text(3, 4) == "3/4 trials"
    assert tuning.budget_text(4, 4) == "4/4 trials"
    assert tuning.budget_text(7, 3) == ("7 trials (budget 3, lowered since they ran: the best "
                                        "is over all 7)")


def test_status_counts_the_re_runs_of_the_file_s_tune_definition(
        tmp_path: Path, tracking_uri: str, mlflow_store: Callable[[Path], str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """status on a tuned suite counts the re-runs of its current best values (it counted
    every re-run ever queued, an earlier definition's too) and says how many others the
    queue holds."""
    from nnbench import cli

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    path = _suite(tmp_path / "st.yaml", name="st", epochs=1, trials=2, optimizers="[sgd]",
                  sampler="random", seeds=1, space="{type: categorical, choices: [0.001, 0.003]}")
    for choices in ("[0.001, 0.003]", "[0.1, 0.3]"):
        path.write_text(re.sub(r"choices: \[[^]]*\]", f"choices: {choices}", path.read_text()))
        tune_suite(parse_suite(path.read_text()), storage=storage, tracking_uri=tracking_uri,
                   device="cpu", console=QUIET)
    capsys.readouterr()
    assert cli.main(["status", str(path), "--storage", storage,
                     "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert "1 done, 0 running on 0 worker(s), 0 queued, 0 failed" in out, out
    assert "1 trial(s) in the queue that this file no longer has" in out, out
    # another store (here one where another suite ran): "0 done", and every re-run "no
    # longer" the file's; refused as run refuses it
    other = mlflow_store(tmp_path / "other.db")
    MlflowClient(other).create_experiment("st")
    assert cli.main(["status", str(path), "--storage", storage, "--tracking-uri", other]) == 2
    assert (f"--storage {storage}: its queue of suite 'st' records the trials of another "
            f"MLflow store's experiment than {other}'s") in capsys.readouterr().err


def test_tune_with_workers_that_all_refuse_their_input_exits_2(
        tmp_path: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every local worker refused the same input (here artifacts bound for a directory that
    cannot be made): a usage error, exit 2 (it was 1, 'a trial failed', none having run)."""
    from nnbench import cli

    path = _suite(tmp_path / "blocked.yaml", name="blocked", epochs=1, trials=2,
                  optimizers="[sgd]", sampler="random", seeds=1)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    MlflowClient(tracking_uri).create_experiment(
        "blocked", artifact_location=str(blocker / "artifacts"), tags={"nnbench.suite": "blocked"})
    assert cli.main(["tune", str(path), "--workers", "2", "--device", "cpu", "--tracking-uri",
                     tracking_uri, "--storage", f"sqlite:///{tmp_path / 'optuna.db'}",
                     "--report-dir", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert err.count(f"{blocker} is a file, not a directory") == 2, err


def test_a_point_whose_every_optuna_trial_diverged_is_said_not_missing(
        tmp_path: Path, tracking_uri: str) -> None:
    """sgd at learning rates from 1e3 diverges on every Optuna trial, so it has no tuned
    value and no re-runs: the report said its re-runs were 'not run yet' (a re-run trains
    nothing), and sgd vanished from the best values and the main effects without a word
    (found by a report audit)."""
    from nnbench.config import load_suite

    suite = load_suite(_suite(tmp_path / "tuned.yaml", name="diverging", epochs=1, trials=3,
                              space="{type: float, low: 1.0e+3, high: 1.0e+5, log: true}"))
    tune_suite(suite, tracking_uri=tracking_uri, device="cpu", console=QUIET)
    html = render_report(suite, tracking_uri=tracking_uri,
                         report_dir=tmp_path / "r").read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    states = Counter(r.data.tags.get("nnbench.status") for r in _runs(tracking_uri, "diverging",
                                                                       "tune")
                     if r.data.tags["nnbench.config"].startswith("optimizer=sgd"))
    assert states == Counter({"diverged": 3}), states
    assert "not run yet" not in text
    assert ("optimizer=sgd: no tuned value: none of its 3 Optuna trials completed "
            "(3 diverged), so its 2 re-runs cannot train") in text
    assert ("optimizer=sgd: not compared, because no tuned value: none of its 3 "
            "Optuna trials completed (3 diverged)") in text


def test_points_that_differ_only_in_what_tuning_sets_are_refused() -> None:
    """The fixed adam(lr=0.01) beside the grid's adam, the learning rate tuned: two studies
    ran the same search, and the report compared their tuning noise as two optimizer
    levels ('adam(lr=0.01) vs adam: +0.075'; found by a report audit)."""
    text = TUNED.format(name="same_search", epochs=1, trials=3, optimizers="[sgd, adam]",
                        sampler="tpe", seed=0, pruner="none", space=LR_RANGE, seeds=2)
    fixed_adam = text.replace("optimizer: {name: sgd, lr: 0.01}",
                              "optimizer: {name: adam, lr: 0.01}") \
        + "ablate:\n  activation: [tanh]\n"
    with pytest.raises(SuiteError, match=re.escape(
            "tune.space: the points optimizer=adam, activation=relu and "
            "optimizer=adam(lr=0.01), activation=relu are the same once tuning sets "
            "optimizer.lr: each would be tuned as the same search")):
        parse_suite(fixed_adam)
    parse_suite(fixed_adam.replace("optimizer: {name: adam, lr: 0.01}", "optimizer: adam"))


def test_a_point_is_without_a_tuned_value_only_once_its_budget_has_ended() -> None:
    """A killed Optuna trial is queued again and a running one has not ended: counting them
    said 'no tuned value' of a study still owing trials, and dropped its re-runs from the
    'not run yet' count (found in review)."""
    from nnbench.report import _untuned

    assert _untuned({"diverged": 3, "total": 3}, 3) == (
        True, "no tuned value: none of its 3 Optuna trials completed (3 diverged)")
    assert _untuned({"diverged": 2, "killed": 1, "total": 3}, 3) == (
        False, "not tuned yet (2 of 3 Optuna trials ended)")
    assert _untuned({"running": 3, "total": 3}, 3) == (
        False, "not tuned yet (0 of 3 Optuna trials ended, 3 running)")
    assert _untuned({"diverged": 3, "running": 1, "total": 4}, 3)[0] is False
    assert _untuned({"failed": 2, "pruned": 2, "total": 4}, 3) == (
        True, "no tuned value: none of its 4 Optuna trials completed (2 failed, 2 pruned)")


@pytest.mark.filterwarnings("error:No artists with labels")  # (an empty legend warned)
def test_a_tune_whose_every_trial_diverged_says_nothing_is_re_run(
        tmp_path: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every Optuna trial diverged: the command printed "best None", the report's leaderboard
    said "No trial of this suite is in MLflow yet: run nnbench run" beside its tune runs,
    and its tuning section that the best values "were then re-run"."""
    from nnbench import cli

    path = _suite(tmp_path / "tuned.yaml", trials=2, epochs=2, optimizers="[sgd]", seeds=1,
                  space="{type: float, low: 1.0e+25, high: 1.0e+30, log: true}")
    reports = tmp_path / "reports"
    cli.main(["tune", str(path), "--tracking-uri", tracking_uri, "--device", "cpu",
              "--engine", "serial", "--report-dir", str(reports)])
    err = " ".join(capsys.readouterr().err.split())
    assert "best none (no trial completed: nothing to re-run)" in err, err
    html = (reports / "tuned.html").read_text()
    board = html[html.index('<h2 id="leaderboard">'):html.index('<h2 id="', html.index(
        '<h2 id="leaderboard">') + 10)]
    assert "No re-run of a tuned point is in MLflow yet: " in board, board
    assert "No trial of this suite is in MLflow yet" not in html
    assert "were then re-run" not in html and "none is re-run yet." in html
