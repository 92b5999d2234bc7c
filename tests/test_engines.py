"""The engine registry (issue 21, point 8): an engine registered from outside nnbench (here,
this test module) is what the runner, the thread policy and the CLI's choices use, by
name, without nnbench naming it anywhere."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from mlflow.tracking import MlflowClient
from rich.console import Console

from nnbench import cli
from nnbench.config import TrialSpec, load_suite
from nnbench.runner import run_suite
from nnbench.train import SerialEngine, TrialResult, engine_names, make_engine
from nnbench.train import engines as registry
from nnbench.train.engine import Listener, default_threads


class ToyEngine:
    """Trains up to three trials per call, one after the other, and says so."""

    name = "toy"
    lane_limit = 3
    calls: ClassVar[list[list[str]]] = []  # the trial ids of each run() call

    def __init__(self, device: torch.device, *, keep_checkpoints: bool = False,
                 threads: int | None = None, max_lanes: int | None = None,
                 population: Any = None, fixed_lanes: int | None = None) -> None:
        self.device = device
        self.threads = threads  # make_engine gives its policy's (default_threads)
        self.serial = SerialEngine(device, keep_checkpoints=keep_checkpoints, threads=threads)

    @classmethod
    def default_threads(cls, device: torch.device, workers: int = 1) -> int:
        return 7

    @classmethod
    def most_lanes(cls, device: torch.device) -> int:
        return cls.lane_limit

    def describe(self, trials: Sequence[TrialSpec]) -> list[str]:
        return [f"toy engine: {len(trials)} trial(s) together"]

    def run(self, trials: Sequence[TrialSpec], listener: Listener) -> Iterator[TrialResult]:
        ToyEngine.calls.append([t.trial_id for t in trials])
        for result in self.serial.run(trials, listener):
            yield replace(result, numerics=replace(result.numerics, engine="toy",
                                                   lanes=len(trials)))


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._ENGINES, "toy",
                        registry.EngineInfo("toy", "a test's engine", ToyEngine))
    monkeypatch.setattr(ToyEngine, "calls", [])


@pytest.mark.usefixtures("toy")
def test_a_registered_engine_trains_a_suite_through_the_runner(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    suite = load_suite(write_suite(epochs=1))  # 4 trials
    out = io.StringIO()
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, engine="toy",
                        console=Console(file=out, width=200))
    assert (summary.trained, summary.statuses["finished"]) == (4, 4)
    # the runner claimed as many trials as the engine trains at once
    assert sorted(len(call) for call in ToyEngine.calls) == [1, 3]
    assert sorted(t for call in ToyEngine.calls for t in call) == sorted(
        t.trial_id for t in suite.trials())
    assert "toy engine: 3 trial(s) together" in out.getvalue()
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`nnbench.role` = 'trial'")
    assert len(runs) == 4
    assert {r.data.tags["nnbench.engine"] for r in runs} == {"toy"}
    assert sorted(r.data.tags["nnbench.lanes"] for r in runs) == ["1", "3", "3", "3"]
    assert {r.data.tags["nnbench.threads"] for r in runs} == {"7"}  # its own thread policy


@pytest.mark.usefixtures("toy")
def test_a_registered_engine_is_a_choice_with_its_own_thread_policy(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert engine_names()[:3] == ("serial", "stacked", "auto") and "toy" in engine_names()
    assert default_threads("toy", torch.device("cpu")) == 7
    engine = make_engine("toy", torch.device("cpu"))
    assert isinstance(engine, ToyEngine) and engine.threads == 7
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "toy: a test's engine" in " ".join(capsys.readouterr().out.split())


def test_an_unknown_engine_names_the_registered_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown engine 'nope'; allowed: serial, stacked, auto"):
        make_engine("nope", torch.device("cpu"))
    with pytest.raises(SystemExit):
        cli.main(["run", "suite.yaml", "--engine", "nope"])
    assert "invalid choice: 'nope' (choose from 'serial', 'stacked', 'auto')" in " ".join(
        capsys.readouterr().err.split())


@pytest.mark.parametrize("name", engine_names())
def test_what_the_registry_says_of_an_engines_lanes_is_what_its_class_does(name: str) -> None:
    """The CLI refuses `--lanes` for an engine registered with `stacks=False` without
    importing it (a no-op re-run imports no torch): that must be the engine whose class
    trains one trial at a time, on every device kind."""
    cls = registry.engine_class(name)
    for device in ("cpu", "cuda"):
        assert (cls.most_lanes(torch.device(device)) > 1) is \
            (name in registry.stacking_engines()), (name, device)


def test_lanes_are_refused_for_an_engine_that_trains_one_trial_at_a_time(
        write_suite: Callable[..., Path], tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`--engine serial --lanes 4` trained one trial at a time and said nothing."""
    path = write_suite(epochs=1)
    assert cli.main(["run", str(path), "--engine", "serial", "--lanes", "4",
                     "--tracking-uri", tracking_uri]) == 2
    assert "--lanes 4: --engine serial trains one trial at a time, so it has no lanes; drop " \
           "--lanes, or choose an engine that stacks trials: stacked, auto" \
           in " ".join(capsys.readouterr().err.split())
