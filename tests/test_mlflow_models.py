"""Checkpoints as MLflow models: with `checkpoint: true` (or `--log-models`) every finished
trial's run has an MLflow model named `model` that loads the MLflow way (`runs:/<run
id>/model`) for every kind of model nnbench builds (logistic, mlp, cnn, cnn1d, gru, resnet,
a plugin's), takes the dataset's inputs as they come (normalize inside), and scores
exactly the test metrics the trial logged; a model torch.export cannot trace is pickled
instead, and one that cannot be saved at all is said, never fatal. `--log-models` reaches
the workers that `run`, `tune` and `submit` start, and changes no trial id."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import mlflow.pyfunc
import mlflow.pytorch
import pytest
import torch
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient
from rich.console import Console
from torch import nn

from nnbench import cli, registry, run_suite
from nnbench.config import load_suite
from nnbench.data import TensorData
from nnbench.testing import isolated_registry
from tests.conftest import REPO

SUITES = {
    "signals": """\
        name: signals
        task: {dataset: {name: mnist1d, num_samples: 400, val_fraction: 0.2}, model: mlp}
        fixed:
          optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
          epochs: 2
          batch_size: 32
          augmentation: [normalize]
        grid:
          model: [logistic, {name: mlp, hidden: [16]}, {name: cnn1d, channels: [4],
                  kernel_sizes: [5], hidden: [8]}, {name: gru, hidden_size: 4, hidden: [8]}]
        seeds: 1
        checkpoint: true
        """,
    "images": """\
        name: images
        task: {dataset: digits, model: {name: cnn, channels: [4], hidden: [8]}}
        fixed:
          optimizer: {name: adam, lr: 0.01}
          epochs: 2
          batch_size: 64
          norm: batchnorm
          dropout: 0.2
          augmentation: [normalize]
        seeds: 2
        checkpoint: true
        """,
}


def _trial_runs(client: MlflowClient, suite: str) -> list[mlflow.entities.Run]:
    experiment = client.get_experiment_by_name(suite)
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id], "tags.`nnbench.role` = 'trial'"))


def _models(run: mlflow.entities.Run) -> list[mlflow.entities.LoggedModelOutput]:
    """The logged models that are the run's outputs."""
    return list(run.outputs.model_outputs) if run.outputs is not None else []


def _test_split(path: Path, trial_id: str) -> TensorData:
    """The trial's data exactly as its dataset gives it (before any augmentation)."""
    spec = next(t for t in load_suite(path).trials() if t.trial_id == trial_id)
    data: TensorData = registry.build("dataset", spec.dataset, seed=spec.seed,
                                      device=torch.device("cpu"))
    return data


def _scores_its_logged_test_metrics(run: mlflow.entities.Run, path: Path
                                    ) -> tuple[TensorData, torch.Tensor]:
    """Load the run's model from `runs:/<run id>/model` (a pt2 graph, no nnbench code
    inside), check it scores the test metrics the trial logged; its test data and logits."""
    label = run.data.tags["nnbench.config"]
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    assert isinstance(model, torch.fx.GraphModule), label
    assert "nnbench.model_note" not in run.data.tags, label
    data = _test_split(path, run.data.tags["nnbench.trial_id"])
    with torch.no_grad():
        logits = model(data.x_test)
    accuracy = (logits.argmax(1) == data.y_test).double().mean().item()
    loss = nn.functional.cross_entropy(logits, data.y_test).item()
    assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-9), label
    assert loss == pytest.approx(run.data.metrics["test_loss"], rel=1e-5), label
    return data, logits


@pytest.mark.parametrize("kind", list(SUITES))
def test_every_model_kind_loads_the_mlflow_way_and_scores_its_logged_test_metrics(
        kind: str, write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_suite(SUITES[kind], name=kind)
    summary = run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri,
                        console=Console(quiet=True))
    assert summary.complete
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # where runs:/ URIs resolve
    client = MlflowClient(tracking_uri)
    runs = _trial_runs(client, kind)
    assert len(runs) == {"signals": 4, "images": 2}[kind]
    for i, run in enumerate(runs):
        data, logits = _scores_its_logged_test_metrics(run, path)

        (output,) = _models(run)  # the run's model, logged once
        logged = client.get_logged_model(output.model_id)
        assert (logged.name, logged.status) == ("model", LoggedModelStatus.READY)
        assert logged.source_run_id == run.info.run_id
        assert logged.tags["nnbench.trial_id"] == run.data.tags["nnbench.trial_id"]
        assert {m.key: m.value for m in logged.metrics or []} == {
            k: run.data.metrics[k] for k in ("test_loss", "test_accuracy")}
        assert logged.params == run.data.params
        if i:
            continue  # loading as a pyfunc once is enough
        pyfunc = mlflow.pyfunc.load_model(f"models:/{output.model_id}")
        inputs = pyfunc.metadata.signature.inputs.inputs[0]
        assert tuple(inputs.shape) == (-1, *data.input_shape)
        example = data.x_test[:5].numpy()  # the input example: the first test examples
        assert pyfunc.predict(example) == pytest.approx(logits[:5].numpy(), abs=1e-5)


LAB = '''\
"""Models torch.export cannot trace: the branch depends on the data."""

import threading

from pydantic import Field
from torch import nn

from nnbench.registry import ComponentInfo, Params, register


class BranchyParams(Params):
    lock: bool = Field(False, description="hold a lock, which no pickle can save (and no bias)")


class Branchy(nn.Module):
    def __init__(self, inputs, outputs, lock):
        super().__init__()
        self.a = nn.Linear(inputs, outputs)
        self.b = nn.Linear(inputs, outputs, bias=not lock)
        self.lock = threading.Lock() if lock else None

    def forward(self, x):
        x = x.flatten(1)
        return self.a(x) if x.sum() > 0 else self.b(x)


def build_branchy(params, *, input_shape, outputs, activation, gain, init, norm, dropout,
                  generator):
    model = Branchy(input_shape[-1], outputs, params.lock)
    init(model.a, ("linear", None), generator)
    init(model.b, ("linear", None), generator)
    return model


register(ComponentInfo(kind="model", name="branchy", build=build_branchy,
                       params=BranchyParams, doc="branches on its input's sign"))
'''


def test_a_model_torch_export_cannot_trace_is_pickled_and_one_nothing_saves_is_said(
        tmp_path: Path, write_suite: Callable[..., Path], tracking_uri: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lab_branchy.py").write_text(LAB, encoding="utf-8")
    path = write_suite(textwrap.dedent("""\
        name: branchy
        plugins: [lab_branchy]
        task: {dataset: {name: moons, n_samples: 200}, model: branchy}
        fixed:
          optimizer: {name: sgd, lr: 0.1}
          epochs: 1
          batch_size: 32
        grid:
          model: [branchy, {name: branchy, lock: true}]
        seeds: 1
        checkpoint: true
        """))
    with isolated_registry():
        assert cli.main(["run", str(path), "--device", "cpu",
                         "--tracking-uri", tracking_uri]) == 0
    err = capsys.readouterr().err
    assert "torch.export could not trace the model" in err
    assert "the MLflow model was not logged" in err and "checkpoint.pt holds" in err
    client = MlflowClient(tracking_uri)
    runs = {r.data.params["model.lock"]: r for r in _trial_runs(client, "branchy")}
    assert {r.data.tags["nnbench.status"] for r in runs.values()} == {"finished"}

    pickled, unsaved = runs["False"], runs["True"]
    assert pickled.data.tags["nnbench.model_note"].startswith("torch.export could not trace")
    (output,) = _models(pickled)
    assert client.get_logged_model(output.model_id).status == LoggedModelStatus.READY
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    with isolated_registry():  # loads where nnbench and the plugin are importable
        load_suite(path)
        model = mlflow.pytorch.load_model(f"runs:/{pickled.info.run_id}/model")
        assert type(model).__name__ == "Servable"
        data = _test_split(path, pickled.data.tags["nnbench.trial_id"])
        with torch.no_grad():
            accuracy = (model(data.x_test).argmax(1) == data.y_test).double().mean().item()
    assert accuracy == pytest.approx(pickled.data.metrics["test_accuracy"], abs=1e-9)

    assert unsaved.data.tags["nnbench.model_note"].startswith("the MLflow model was not logged")
    assert not _models(unsaved)
    assert "checkpoint.pt" in {a.path for a in client.list_artifacts(unsaved.info.run_id)}


# -- --log-models: the same models without `checkpoint: true` in the suite --------------------

UNCHECKPOINTED = """\
    name: unkept
    task: {dataset: digits, model: {name: mlp, hidden: [8]}}
    fixed:
      optimizer: {name: adam, lr: 0.01}
      epochs: 1
      batch_size: 64
      norm: batchnorm
    grid:
      model: [{name: mlp, hidden: [8]}, {name: resnet, blocks: [1, 1], widths: [4, 8]}]
    seeds: 1
    """


def test_log_models_logs_every_finished_trial_of_a_suite_without_checkpoint(
        write_suite: Callable[..., Path], mlflow_store: Callable[[Path], str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite(UNCHECKPOINTED, name="unkept")
    assert not load_suite(path).checkpoint
    for folder in ("plain", "logged"):  # a store each, with its own queue beside it
        (tmp_path / folder).mkdir()
    plain, logged = (mlflow_store(tmp_path / f / "mlflow.db") for f in ("plain", "logged"))
    assert run_suite(load_suite(path), device="cpu", tracking_uri=plain,
                     console=Console(quiet=True)).complete
    # `nnbench worker`, the command `run --workers N` starts (it renders no report)
    assert cli.main(["worker", str(path), "--device", "cpu", "--tracking-uri", logged,
                     "--log-models"]) == 0
    without = _trial_runs(MlflowClient(plain), "unkept")
    assert len(without) == 2
    for run in without:  # off by default: neither a model nor a checkpoint
        assert not _models(run)
        assert "checkpoint.pt" not in {
            a.path for a in MlflowClient(plain).list_artifacts(run.info.run_id)}

    client = MlflowClient(logged)
    runs = _trial_runs(client, "unkept")
    assert {r.data.tags["nnbench.trial_id"] for r in runs} \
        == {r.data.tags["nnbench.trial_id"] for r in without}  # the flag changes no trial id
    assert sorted(r.data.params["model.name"] for r in runs) == ["mlp", "resnet"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged)
    for run in runs:
        assert run.data.tags["nnbench.status"] == "finished"
        _scores_its_logged_test_metrics(run, path)
        (output,) = _models(run)
        assert client.get_logged_model(output.model_id).status == LoggedModelStatus.READY

    # on trials already done it logs nothing, and says so (it was silent), whether the
    # report is re-rendered or already fresh
    for _ in range(2):
        capsys.readouterr()
        assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", plain,
                         "--report-dir", str(tmp_path / "r"), "--log-models"]) == 0
        assert ("--log-models: no model logged; models are logged as trials train, and a "
                "finished trial is not trained again") in capsys.readouterr().err
    assert all(not _models(run) for run in _trial_runs(MlflowClient(plain), "unkept"))


@pytest.mark.parametrize("command", ["run", "bench", "tune", "worker", "submit"])
def test_every_command_that_trains_takes_log_models_and_hands_it_to_its_workers(
        command: str) -> None:
    parser = cli._parser()
    required = ["--storage", "sqlite:///q.db"] if command == "submit" else []
    assert not parser.parse_args([command, "s.yaml", *required]).log_models  # off by default
    args = parser.parse_args([command, "s.yaml", *required, "--log-models"])
    assert args.log_models
    if command in ("submit", "tune"):  # the command line of the workers they start
        suite = load_suite(REPO / "suites" / "default.yaml")
        assert "--log-models" in cli._worker_options(args, suite, storage="sqlite:///q.db",
                                                     tracking_uri="sqlite:///m.db")


def test_the_workers_run_starts_get_log_models_on_their_command_line(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --workers 2 --log-models`: the local workers, which train every trial, are
    started with the flag, and `worker --log-models` logs the models (the test above);
    starting real workers costs about 40 s on 2 cores."""
    from nnbench import workers

    started: list[list[str]] = []

    def spawn_local(suite_path: str, options: list[str], n: int, *_: object,
                    **__: object) -> list[int]:
        started.append(list(options))
        return [0] * n

    monkeypatch.setattr(workers, "spawn_local", spawn_local)
    path = write_suite(epochs=1, seeds=1)
    for log_models in (False, True):
        run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri, workers=2,
                  engine="serial", console=Console(quiet=True), log_models=log_models)
    assert ["--log-models" in options for options in started] == [False, True]
