"""What MLflow users see of a suite: the experiment's kind, top-level trial runs, their
dataset inputs and grouping tags (the runs table itself is checked in Chromium, in
tests/test_mlflow_ui.py)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from nnbench.config import load_suite
from nnbench.tracking import EXPERIMENT_KIND, Tracker, dataset_input, runs_url

FILE_SUITE = """\
name: own_data
task:
  dataset: {{name: file, path: {path}, val_fraction: 0.25}}
  model: {{name: mlp, hidden: [8]}}
fixed: {{optimizer: {{name: sgd, lr: 0.05}}, epochs: 1, batch_size: 16}}
grid: {{activation: [tanh, relu]}}
"""


def test_file_dataset_input_names_the_file_and_its_digest_follows_the_content(
        write_suite: Callable[..., Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(40, 5)).astype(np.float32), y=np.arange(40) % 2)
    path = write_suite(textwrap.dedent(FILE_SUITE.format(path=data)), name="own_data")
    first = dataset_input(load_suite(path).trials()[0]).dataset
    assert first.source_type == "local" and first.profile is not None
    assert json.loads(first.source) == {"uri": str(data.resolve())}
    assert first.name.startswith("file(") and str(data) in first.name
    # no test split in the file: 20% held out (8), then a quarter of the rest for validation
    assert json.loads(first.profile) == {"train": 24, "val": 8, "test": 8, "input_shape": [5],
                                         "targets": "class", "num_classes": 2}
    # other trials of the suite read the same data: one dataset, one digest
    assert {dataset_input(t).dataset.digest for t in load_suite(path).trials()} \
        == {first.digest}
    np.savez(data, x=rng.normal(size=(40, 5)).astype(np.float32), y=np.arange(40) % 2)
    changed = dataset_input(load_suite(path).trials()[0]).dataset
    assert changed.name == first.name and changed.digest != first.digest


def test_dataset_digest_follows_the_dataset_parameters_not_the_seed_or_the_model(
        write_suite: Callable[..., Path]) -> None:
    suite = load_suite(write_suite(epochs=1, seeds=2))
    digests = {dataset_input(t).dataset.digest for t in suite.trials()}
    assert len(digests) == 1  # 2 activations x 2 seeds: one dataset
    other = Path(write_suite(epochs=1, seeds=1, name="other"))
    other.write_text(other.read_text().replace("num_samples: 600", "num_samples: 700"))
    (trial, *_) = load_suite(other).trials()
    assert dataset_input(trial).dataset.digest not in digests


def test_an_existing_nnbench_experiment_gains_the_kind_the_ui_opens_on_runs(
        write_suite: Callable[..., Path], tracking_uri: str) -> None:
    suite = load_suite(write_suite(epochs=1))
    client = MlflowClient(tracking_uri)
    old = client.create_experiment("tiny", tags={"nnbench.suite": "tiny"})  # an older nnbench
    assert EXPERIMENT_KIND[0] not in client.get_experiment(old).tags
    assert Tracker(suite, tracking_uri).experiment_id(create=False) == old
    assert client.get_experiment(old).tags[EXPERIMENT_KIND[0]] == "custom_model_development"
    # a kind the user chose in the UI is theirs: kept
    client.set_experiment_tag(old, EXPERIMENT_KIND[0], "genai_development")
    Tracker(suite, tracking_uri).experiment_id()
    assert client.get_experiment(old).tags[EXPERIMENT_KIND[0]] == "genai_development"


def test_runs_url_is_the_ui_route_to_the_runs_table() -> None:
    assert runs_url("7") == ("http://127.0.0.1:5000/#/experiments/7/runs"
                             "?workflowType=machine_learning")
    assert runs_url("7", "http://host:8080/").startswith("http://host:8080/#/experiments/7/")


def test_system_metrics_are_logged_to_the_invocation_run(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psutil")  # a dependency of nnbench (pyproject.toml)
    from rich.console import Console

    from nnbench.runner import run_suite

    # sample every 0.1 s: the tiny suite trains in about a second
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    suite = load_suite(write_suite(epochs=2, seeds=1))
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, system_metrics=True,
                        console=Console(quiet=True))
    assert summary.parent_run_id is not None
    invocation = MlflowClient(tracking_uri).get_run(summary.parent_run_id)
    logged = set(invocation.data.metrics)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} \
        <= logged, logged
    assert 0 <= invocation.data.metrics["system/cpu_utilization_percentage"] <= 100
    trial = next(Tracker(suite, tracking_uri).invocation_trials(summary.parent_run_id))
    assert not any(k.startswith("system/") for k in trial.data.metrics)  # on the invocation


def test_system_metrics_on_without_psutil_is_a_usage_error_before_anything_runs(
        write_suite: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from nnbench import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "psutil" else real(name, *a))
    path = write_suite(epochs=1, seeds=1)
    assert cli.main(["run", str(path), "--device", "cpu", "--system-metrics", "on"]) == 2
    assert "--system-metrics on: MLflow's system metrics need psutil (pip install psutil)" \
        in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()
    # auto on a CPU stays off without asking for psutil
    assert cli.main(["run", str(path), "--device", "cpu", "--system-metrics", "auto"]) == 0
