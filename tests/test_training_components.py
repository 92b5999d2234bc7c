"""The trainer with the whole component set: regularizers do what the notes say,
every task type trains, diagnostics see what they should, checkpoints reload."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import nn

from nnbench import cli, registry, seeding, train
from nnbench.config import TrialSpec, load_suite, parse_suite
from nnbench.runner import run_suite
from nnbench.train import train_trial

CPU = torch.device("cpu")


def _spec(task: str, fixed: str) -> TrialSpec:
    text = f"name: t\ntask: {task}\nfixed:\n{textwrap.indent(textwrap.dedent(fixed), '  ')}"
    return parse_suite(text).base


DIGITS = "{dataset: digits, model: {name: mlp, hidden: [32]}}"
BASIC = """\
optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
epochs: 4
batch_size: 64
"""


def _with(spec: TrialSpec, axis: str, value: Any) -> TrialSpec:
    from nnbench.config import AXES

    kind = AXES[axis].kind
    if kind and AXES[axis].many:
        value = tuple(registry.resolve(kind, v) for v in value)
    elif kind:
        value = registry.resolve(kind, value)
    return replace(spec, **{axis: value})


def test_model_layers_follow_the_notes_order() -> None:
    spec = _with(_with(_spec(DIGITS, BASIC), "norm", "batchnorm"), "dropout", 0.3)
    with seeding.trial_rng(0, CPU):
        model = train.build_parts(spec, CPU).model
    assert isinstance(model, nn.Sequential)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]


def test_l1_makes_weights_sparse() -> None:
    base = _spec(DIGITS, BASIC.replace("epochs: 4", "epochs: 15"))
    plain = train_trial(base, CPU).history[-1]["weight_sparsity"]
    sparse = train_trial(replace(base, l1=0.002), CPU).history[-1]["weight_sparsity"]
    assert sparse > plain + 0.2  # the notes: L1 drives weights to exactly (here: nearly) zero


def test_l2_penalty_is_half_lambda_sum_of_squared_weights_only() -> None:
    spec = replace(_spec(DIGITS, BASIC), l2=0.3, l1=0.05)
    with seeding.trial_rng(0, CPU):
        parts = train.build_parts(spec, CPU)
    weights = [m.weight for m in parts.model.modules() if isinstance(m, nn.Linear)]
    expected = (0.05 * sum(w.abs().sum() for w in weights)
                + 0.5 * 0.3 * sum(w.square().sum() for w in weights))
    penalty = train.penalty(parts.weights, parts.l1, parts.l2, lanes=False)
    assert penalty is not None
    torch.testing.assert_close(penalty, expected)  # biases are not penalised


def test_l2_shrinks_weights() -> None:
    base = _spec(DIGITS, BASIC)
    norms = []
    for l2 in (0.0, 0.05):
        with seeding.trial_rng(0, CPU):
            parts = train.build_parts(replace(base, l2=l2), CPU)
        for _ in range(3):
            train.train_epoch(parts)
        norms.append(sum(float(w.detach().norm()) for w in parts.weights))
    assert norms[1] < 0.9 * norms[0]


def test_early_stopping_stops_and_restores_the_best_epoch() -> None:
    fixed = """\
    optimizer: {name: adam, lr: 0.01}
    epochs: 60
    batch_size: full
    early_stopping: {name: patience, patience: 3}
    """
    spec = _spec("{dataset: regression, model: {name: mlp, hidden: [64]}, loss: mse, "
                 "metric: val_loss}", fixed)
    result = train_trial(spec, CPU)
    assert result.status == "finished"
    assert result.stopped_epoch is not None and result.best_epoch is not None
    assert result.stopped_epoch == result.best_epoch + 3 < 60
    assert len(result.history) == result.stopped_epoch
    best = min(h["val_loss"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_loss"] == best
    kept = train_trial(_with(spec, "early_stopping", {"name": "patience", "patience": 3,
                                                       "restore_best": False}), CPU)
    assert kept.fingerprint != result.fingerprint  # restoring changed the final weights


def test_full_batch_is_one_step_per_epoch() -> None:
    spec = _with(_spec(DIGITS, BASIC.replace("batch_size: 64", "batch_size: full")), "schedule",
                 {"name": "step", "step_size": 1, "gamma": 0.5, "interval": "batch"})
    lrs = [h["lr"] for h in train_trial(spec, CPU).history]
    assert lrs == pytest.approx([0.1, 0.05, 0.025, 0.0125])


@pytest.mark.parametrize("clip", [{"name": "norm", "max_norm": 0.5},
                                  {"name": "value", "clip_value": 0.01}])
def test_gradient_clipping_changes_the_trajectory(clip: dict[str, Any]) -> None:
    base = _spec(DIGITS, BASIC.replace("epochs: 4", "epochs: 2"))
    clipped = train_trial(_with(base, "grad_clip", clip), CPU)
    assert clipped.status == "finished"
    assert clipped.fingerprint != train_trial(base, CPU).fingerprint


def test_sigmoid_gradients_vanish_in_deep_nets() -> None:
    """The notes: with sigmoid, gradients vanish within a few layers; relu keeps them."""
    ratios = {}
    for activation in ("sigmoid", "relu"):
        spec = _spec("{dataset: {name: mnist1d, num_samples: 600}, "
                     "model: {name: mlp, hidden: [64, 64, 64, 64, 64, 64]}}",
                     BASIC.replace("epochs: 4", "epochs: 1") + f"activation: {activation}\n"
                     "init: xavier_normal\n")
        last = train_trial(spec, CPU).history[-1]
        ratios[activation] = last["grad_norm.layer1"] / last["grad_norm.layer7"]
    assert ratios["sigmoid"] < 0.01 < ratios["relu"]


def test_dead_units_and_saturation_are_measured() -> None:
    negative = _spec(DIGITS, BASIC.replace("epochs: 4", "epochs: 1")
                     + "init: {name: constant, value: -1.0}\n")
    assert train_trial(negative, CPU).history[0]["dead_fraction"] == 1.0  # never positive
    big = _spec(DIGITS, BASIC.replace("epochs: 4", "epochs: 1")
                + "activation: sigmoid\ninit: {name: normal, std: 5.0}\n")
    small = _with(big, "init", "xavier_normal")
    saturated = train_trial(big, CPU).history[0]["saturated_fraction"]
    assert saturated > 0.5 > train_trial(small, CPU).history[0]["saturated_fraction"]


@pytest.mark.parametrize(("task", "metric", "bound"), [
    ("{dataset: breast_cancer, model: {name: mlp, hidden: [16]}, loss: bce_with_logits}",
     "test_accuracy", 0.9),
    ("{dataset: breast_cancer, model: logistic, loss: bce}", "test_accuracy", 0.9),
    ("{dataset: circles, model: {name: mlp, hidden: [64, 32]}, loss: cross_entropy}",
     "test_accuracy", 0.9),
    ("{dataset: diabetes, model: {name: mlp, hidden: [32]}, loss: mse}", "test_rmse", 1.0),
    ("{dataset: diabetes, model: logistic, loss: smooth_l1}", "test_mae", 1.0),
])
def test_every_task_type_trains(task: str, metric: str, bound: float) -> None:
    spec = _spec(task, BASIC.replace("epochs: 4", "epochs: 30").replace("lr: 0.1", "lr: 0.02"))
    result = train_trial(spec, CPU)
    assert result.status == "finished", result.reason
    value = result.final[metric]
    assert value > bound if metric.endswith("accuracy") else value < bound
    if "mse" in task:
        assert set(result.final) == {"test_loss", "test_rmse", "test_mae"}
        assert result.final["test_rmse"] ** 2 == pytest.approx(result.final["test_loss"])


def test_cnn_learns_digits() -> None:
    spec = _spec("{dataset: digits, model: {name: cnn, channels: [8, 16], hidden: [32]}}",
                 BASIC.replace("epochs: 4", "epochs: 6") + "norm: batchnorm\n")
    result = train_trial(spec, CPU)
    assert result.final["test_accuracy"] > 0.8


def test_augmentation_and_dropout_are_still_bitwise_reproducible() -> None:
    fixed = BASIC + textwrap.dedent("""\
        dropout: 0.3
        augmentation:
          - {name: random_crop, size: 8, padding: 1}
          - {name: random_rotation, degrees: 10}
          - {name: gaussian_noise, std: 0.05}
          - normalize
        """)
    spec = _spec("{dataset: digits, model: {name: cnn, channels: [8], hidden: [16]}}", fixed)
    first, second = train_trial(spec, CPU), train_trial(spec, CPU)
    strip = [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in first.history]
    assert strip == [{k: v for k, v in h.items() if k != "epoch_seconds"}
                     for h in second.history]
    assert first.fingerprint == second.fingerprint
    other = train_trial(replace(spec, seed=1), CPU)
    assert other.fingerprint != first.fingerprint


def test_checkpoint_reloads_and_evaluates_to_the_logged_test_metrics(
        write_suite: Callable[..., Path], tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite("""\
        name: ckpt
        task: {dataset: moons, model: {name: mlp, hidden: [16]}}
        fixed:
          optimizer: {name: sgd, lr: 0.1}
          epochs: 3
          batch_size: 64
          augmentation: [normalize]
        checkpoint: true
        """)
    summary = run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri,
                        console=Console(quiet=True))
    assert summary.statuses["finished"] == 1
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("ckpt")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id],
                                filter_string="tags.`nnbench.role` = 'trial'")
    assert "checkpoint.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}

    assert cli.main(["evaluate", run.info.run_id, "--tracking-uri", tracking_uri,
                     "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for key in ("test_loss", "test_accuracy"):
        match = re.search(rf"{key} = ([0-9.]+)  \(logged ([0-9.]+)\)", out)
        assert match is not None, out
        assert match.group(1) == match.group(2)  # the same weights give the same numbers
    # a deleted run (in MLflow's trash until `mlflow gc`) is evaluated, and said deleted
    client.delete_run(run.info.run_id)
    assert cli.main(["evaluate", run.info.run_id, "--tracking-uri", tracking_uri,
                     "--device", "cpu"]) == 0
    said = capsys.readouterr()
    assert f"run {run.info.run_id} is deleted" in said.err and "test_accuracy = " in said.out


def test_evaluate_refuses_a_checkpoint_of_another_trial(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """One trial's checkpoint.pt copied over another's (by hand, in the artifact store):
    evaluate printed the first trial's test metrics under the second's label, exit 0."""
    from mlflow.tracking import MlflowClient

    path = write_suite("""\
        name: swapped
        task: {dataset: moons, model: {name: mlp, hidden: [8]}}
        fixed: {optimizer: {name: sgd, lr: 0.1}, epochs: 1, batch_size: 64}
        grid: {activation: [relu, tanh]}
        checkpoint: true
        """)
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri,
              console=Console(quiet=True))
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("swapped")
    assert experiment is not None
    relu, tanh = sorted(client.search_runs([experiment.experiment_id],
                                           filter_string="tags.`nnbench.role` = 'trial'"),
                        key=lambda r: r.data.tags["nnbench.config"])
    copied = client.download_artifacts(relu.info.run_id, "checkpoint.pt", str(tmp_path))
    client.log_artifact(tanh.info.run_id, copied)  # over tanh's own
    assert cli.main(["evaluate", tanh.info.run_id, "--tracking-uri", tracking_uri,
                     "--device", "cpu"]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert (f"run {tanh.info.run_id}: its checkpoint.pt is another trial's (trial "
            f"{relu.data.tags['nnbench.trial_id']}, seed 0), not this run's (trial "
            f"{tanh.data.tags['nnbench.trial_id']}: activation=tanh, seed 0); was it replaced "
            f"by hand? Nothing evaluated") in said, said
    assert cli.main(["evaluate", relu.info.run_id, "--tracking-uri", tracking_uri,
                     "--device", "cpu"]) == 0


def test_evaluate_without_checkpoint_is_a_clear_error(write_suite: Callable[..., Path],
                                                      tracking_uri: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_suite(load_suite(write_suite(epochs=1, seeds=1)), device="cpu",
              tracking_uri=tracking_uri, console=Console(quiet=True))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    run = client.search_runs([experiment.experiment_id],
                             filter_string="tags.`nnbench.role` = 'trial'")[0]
    assert cli.main(["evaluate", run.info.run_id, "--tracking-uri", tracking_uri]) == 2
    # (it advised "set checkpoint: true and run it again", which trains nothing)
    # (and a deleted one was called "trained without": a bad-input hunt)
    assert (f"run {run.info.run_id}: its artifacts hold no checkpoint.pt: this trial was "
            "trained without one (a suite's `checkpoint: true`, or --log-models, keeps one "
            "for the trials trained after it is set; a finished trial is not trained again), "
            "or it was deleted from them since") in " ".join(capsys.readouterr().err.split())


def test_evaluate_says_why_a_run_gives_no_checkpoint_to_evaluate(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each run evaluate cannot use says its own reason (every one was told that its trial
    was trained without a checkpoint): a summary or invocation run is not a trial's,
    artifacts moved away are not where the run says, a damaged checkpoint.pt cannot be read
    (a traceback before)."""
    import shutil
    from urllib.parse import urlparse

    from mlflow.tracking import MlflowClient

    path = write_suite(epochs=1, seeds=1)
    path.write_text("checkpoint: true\n" + path.read_text())
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri,
              console=Console(quiet=True))
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None

    def role(name: str) -> str:
        found = client.search_runs([experiment.experiment_id],
                                   filter_string=f"tags.`nnbench.role` = '{name}'")
        return str(found[0].info.run_id)

    def refused(run_id: str) -> str:
        capsys.readouterr()
        assert cli.main(["evaluate", run_id, "--tracking-uri", tracking_uri]) == 2
        return capsys.readouterr().err.replace("\n", " ")

    for name, what in (("summary", "a configuration's summary run"),
                       ("suite", "an invocation's run")):
        assert (f"run {role(name)} is {what}; evaluate takes a trial's run id (the report's "
                f"trial table, or tags.nnbench.role = 'trial' in the MLflow UI)"
                ) in refused(role(name))
    trial = role("trial")
    capsys.readouterr()  # a copy of its id in upper case is its id
    assert cli.main(["evaluate", trial.upper(), "--tracking-uri", tracking_uri]) == 0
    assert f"run {trial} (" in capsys.readouterr().out
    artifacts = Path(urlparse(client.get_run(trial).info.artifact_uri).path)
    checkpoint = artifacts / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:2000])  # cut short
    err = refused(trial)
    assert f"run {trial}: its checkpoint.pt cannot be read as an nnbench checkpoint (" in err
    assert "): is it damaged, or written by something else?" in err
    kept = checkpoint.read_bytes()
    for other in ([1, 2], {"spec": 5}, {"spec": "abc"}, {"spec": None}):  # someone else's
        buffer = io.BytesIO()
        torch.save(other, buffer)
        checkpoint.write_bytes(buffer.getvalue())
        err = refused(trial)  # (a TypeError or AttributeError traceback, exit 1)
        assert f"run {trial}: its checkpoint.pt cannot be read as an nnbench checkpoint (" \
               in err and "written by something else?" in err, (other, err)
    checkpoint.write_bytes(kept)
    shutil.move(artifacts, tmp_path / "away")
    err = refused(trial)
    assert f"run {trial}: its checkpoint.pt cannot be read from " \
           f"{client.get_run(trial).info.artifact_uri} (" in err, err
    assert "); were its artifacts moved, or written on another machine?" in err, err
    client.set_tag(trial, "nnbench.status", "diverged")  # as a diverged trial's run
    assert (f"run {trial}: its trial ended diverged; only a finished trial keeps a "
            f"checkpoint.pt") in refused(trial)
