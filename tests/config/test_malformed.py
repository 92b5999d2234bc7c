"""Malformed suite files: every message names the file, the key path, the value given
and what is allowed; the exit code is 2; nothing is written to MLflow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nnbench import cli

VALID = """\
name: broken
task:
  dataset: mnist1d
  model: {name: mlp, hidden: [8]}
  metric: val_accuracy
fixed:
  activation: relu
  optimizer: {name: sgd, lr: 0.1}
  epochs: 2
  batch_size: 32
grid:
  activation: [tanh, relu]
seeds: 2
"""


def _edit(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new)


# (id, suite text, fragments the error must contain: key path, given value, allowed values)
CASES: list[tuple[str, str, list[str]]] = [
    ("bad_yaml", _edit("grid:\n  activation: [tanh, relu]", "grid:\n  activation: [tanh, relu"),
     ["line 13, column 6", "invalid YAML", "expected ',' or ']'", "started on line 12",
      "the line reads 'seeds: 2'"]),
    ("not_a_mapping", "- just\n- a list\n",
     ["a suite file must be a mapping", "['just', 'a list'] (list)", "name, description, task"]),
    ("unknown_top_key", _edit("seeds: 2", "seeds: 2\ngird: {}"),
     ["gird: unknown key 'gird'", "did you mean 'grid'", "allowed: name, description, task"]),
    ("unknown_task_key", _edit("  metric: val_accuracy", "  metric: val_accuracy\n  modle: mlp"),
     ["task.modle: unknown key 'modle'", "did you mean 'model'", "allowed: dataset, model"]),
    ("typo_component", _edit("activation: [tanh, relu]", "activation: [tanh, reluu]"),
     ["grid.activation[1]", "unknown activation 'reluu'", "did you mean 'relu'",
      "known: elu, gelu, identity, leaky_relu, relu, selu, sigmoid, silu, tanh"]),
    ("typo_dataset", _edit("dataset: mnist1d", "dataset: mnist1"),
     ["task.dataset", "unknown dataset 'mnist1'", "did you mean 'mnist1d'",
      "known: breast_cancer, cifar10, circles, diabetes"]),
    ("wrong_type_epochs", _edit("epochs: 2", "epochs: ten"),
     ["fixed.epochs", "'ten' (str)", "positive integer"]),
    ("zero_batch_size", _edit("batch_size: 32", "batch_size: 0"),
     ["fixed.batch_size", "0 (int)", "positive integer"]),
    ("empty_grid", _edit("grid:\n  activation: [tanh, relu]", "grid: {}"),
     ["grid:", "{} (dict)", "non-empty mapping", "optimizer.lr"]),
    ("empty_axis", _edit("activation: [tanh, relu]", "activation: []"),
     ["grid.activation", "[] (list)", "non-empty list"]),
    ("axis_not_a_list", _edit("activation: [tanh, relu]", "activation: relu"),
     ["grid.activation", "'relu' (str)", "non-empty list"]),
    ("duplicate_axis",
     _edit("activation: [tanh, relu]", "activation: [tanh]\n  activation: [relu]"),
     ["line 13", "duplicate key 'activation'", "first given on line 12"]),
    ("duplicate_value", _edit("activation: [tanh, relu]", "activation: [relu, tanh, relu]"),
     ["grid.activation[2]", "duplicate value 'relu'", "grid.activation[0]"]),
    # -0.0 is 0: it was a second level, trained again with the same fingerprints and label
    ("negative_zero_level", _edit("activation: [tanh, relu]", "l1: [0, -0.0]"),
     ["grid.l1[1]", "duplicate value 0.0 (float)", "same as grid.l1[0]"]),
    ("unknown_axis", _edit("activation: [tanh, relu]", "activation: [tanh]\n  activations: [relu]"),
     ["grid.activations", "unknown axis 'activations'", "did you mean 'activation'",
      "allowed: an axis (dataset, model"]),
    ("seeds_zero", _edit("seeds: 2", "seeds: 0"),
     ["seeds", "got 0 (int)", "a count >= 1", "list of distinct integers from 0 to 2**63 - 1"]),
    ("seeds_repeated", _edit("seeds: 2", "seeds: [1, 1]"),
     ["seeds", "[1] listed twice", "[1, 1]", "distinct integers"]),
    ("seeds_text", _edit("seeds: 2", "seeds: many"),
     ["seeds", "'many' (str)", "a count >= 1"]),
    ("unknown_param", _edit("{name: sgd, lr: 0.1}", "{name: sgd, lrr: 0.1}"),
     ["fixed.optimizer.lrr", "unknown parameter 'lrr'", "0.1 (float)", "did you mean 'lr'",
      "allowed: lr, momentum, dampening, nesterov, weight_decay, maximize"]),
    ("bad_hidden_width", _edit("hidden: [8]", "hidden: [8, 0]"),
     ["task.model.hidden[1]", "greater than or equal to 1", "0 (int)"]),
    ("negative_dropout", _edit("  epochs: 2", "  dropout: -0.1\n  epochs: 2"),
     ["fixed.dropout", "a probability in [0, 1)", "-0.1 (float)"]),
    ("loss_for_other_targets", _edit("  metric: val_accuracy", "  loss: mse"),
     ["task.loss", "loss 'mse' needs real targets", "dataset 'mnist1d' has class targets",
      "allowed: bce, bce_with_logits, cross_entropy"]),
    ("cnn_on_signals", _edit("model: {name: mlp, hidden: [8]}", "model: cnn"),
     ["task.model", "model 'cnn' needs image inputs", "gives signal inputs"]),
    ("augmentation_not_a_list", _edit("  epochs: 2", "  augmentation: normalize\n  epochs: 2"),
     ["fixed.augmentation", "must be a list of augmentations", "'normalize' (str)"]),
    ("image_augmentation_on_signals",
     _edit("  epochs: 2", "  augmentation: [random_horizontal_flip]\n  epochs: 2"),
     ["fixed.augmentation[0]", "'random_horizontal_flip' works on image inputs",
      "gives signal inputs"]),
    ("bad_checkpoint", _edit("seeds: 2", "seeds: 2\ncheckpoint: yes please"),
     ["checkpoint", "expected true or false", "'yes please' (str)"]),
    ("tune_on_test_split", _edit("seeds: 2", "seeds: 2\ntune:\n  space: {optimizer.lr: "
                                 "{type: float, low: 0.001, high: 0.1, log: true}}\n"
                                 "  objective: {metric: test_accuracy}"),
     ["tune.objective.metric", "tuning on the test split would leak it",
      "'test_accuracy' (str)", "allowed: val_accuracy"]),
    ("tune_unknown_sampler", _edit("seeds: 2", "seeds: 2\ntune:\n  space: {optimizer.lr: "
                                   "{low: 0.001, high: 0.1}}\n  sampler: {name: cmaes}"),
     ["tune.sampler.name", "unknown sampler 'cmaes' (str)", "allowed: tpe, random, grid, qmc"]),
    ("tune_bad_range", _edit("seeds: 2", "seeds: 2\ntune:\n  space: {optimizer.lr: "
                             "{type: float, low: 0.1, high: 0.01}}"),
     ["tune.space.optimizer.lr", "float needs numbers low < high", "low=0.1, high=0.01"]),
    ("tune_value_outside_component", _edit("seeds: 2", "seeds: 2\ntune:\n  space: "
                                           "{optimizer.momentum: {low: 0.5, high: 1.5}}"),
     ["tune.space.optimizer.momentum", "1.5 does not fit configuration", "less than 1"]),
    ("tune_unknown_axis", _edit("seeds: 2", "seeds: 2\ntune:\n  space: {optimiser.lr: "
                                "{low: 0.001, high: 0.1}}"),
     ["tune.space.optimiser.lr", "unknown nuisance axis 'optimiser.lr'",
      "one of epochs, batch_size, dropout, l1, l2"]),
    # (validate said ok; each study's best point was scored on its own test split)
    ("tune_a_dataset_parameter", _edit("seeds: 2", "seeds: 2\ntune:\n  space: "
                                       "{dataset.test_fraction: {low: 0.1, high: 0.9}}"),
     ["tune.space.dataset.test_fraction", "is a dataset parameter",
      "scored on different test sets", "tune a training hyperparameter"]),
    ("plugin_twice", _edit("seeds: 2", "seeds: 2\nplugins: [math, math]"),
     ["plugins[1]", "'math' is given twice (also plugins[0])", "list each module once"]),
    ("negative_lr", _edit("lr: 0.1}", "lr: -0.1}"),
     ["fixed.optimizer.lr", "greater than 0", "-0.1 (float)"]),
    ("zero_gamma", _edit("  epochs: 2", "  schedule: {name: step, step_size: 1, gamma: 0}\n"
                                        "  epochs: 2"),
     ["fixed.schedule.gamma", "greater than 0", "0 (int)"]),
    ("missing_optimizer", _edit("  optimizer: {name: sgd, lr: 0.1}\n", ""),
     ["fixed.optimizer", "missing", "every trial needs a value for optimizer"]),
    ("component_without_name", _edit("activation: relu", "activation: {slope: 0.1}"),
     ["fixed.activation", "needs a 'name' key", "['slope']"]),
    ("unknown_metric", _edit("metric: val_accuracy", "metric: accuracy"),
     ["task.metric", "'accuracy' (str)", "did you mean 'val_accuracy'",
      "allowed: test_accuracy, test_loss, test_rmse"]),
    ("bad_name", _edit("name: broken", "name: my suite!"),
     ["name:", "'my suite!' (str)", "letters, digits"]),
    ("dotted_param_unknown_for_component",
     _edit("grid:\n  activation: [tanh, relu]", "ablate:\n  optimizer.momentom: [0.9]"),
     ["ablate.optimizer.momentom: optimizer 'sgd' has no parameter 'momentom'; no optimizer "
      "has it; did you mean 'momentum'", "allowed: lr, momentum"]),
    # a parameter of another component: "unknown parameter ...; allowed: none", for a
    # fixed component without parameters
    ("dotted_param_of_another_component",
     _edit("grid:\n  activation: [tanh, relu]", "grid:\n  grad_clip.max_norm: [0.5, 1.0]"),
     ["grid.grad_clip.max_norm: clip 'none' has no parameter 'max_norm'; max_norm is a "
      "parameter of clip norm: make one of them the fixed grad_clip (fixed.grad_clip: {name: "
      "norm}) to vary it"]),
    ("dotted_param_a_grid_level_lacks",
     _edit("grid:\n  activation: [tanh, relu]",
           "grid:\n  optimizer: [sgd, adam]\n  optimizer.momentum: [0.5, 0.9]"),
     ["grid.optimizer.momentum: optimizer 'adam' has no parameter 'momentum'; allowed for it: "
      "lr, betas", "give momentum inside the grid.optimizer entries that take it instead"]),
    ("parameter_of_a_component_that_takes_none",
     _edit("grid:\n  activation: [tanh, relu]", "grid:\n  grad_clip: [{name: none, max_norm: 1}]"),
     ["grid.grad_clip[0].max_norm: unknown parameter 'max_norm' for clip 'none' (given 1 "
      "(int)); clip 'none' takes no parameters"]),
    ("dotted_name", _edit("grid:\n  activation: [tanh, relu]",
                          "grid:\n  optimizer.name: [sgd, adam]"),
     ["grid.optimizer.name: name is not a parameter: to compare optimizers, vary optimizer "
      "itself (grid: {optimizer: [sgd, adam]})"]),
    ("dotted_list_parameter", _edit("grid:\n  activation: [tanh, relu]",
                                    "grid:\n  model.hidden: [[8], [16]]"),
     ["grid.model.hidden[0]: expected one value of parameter 'hidden', got [8] (list); a "
      "parameter axis takes single values", "(grid: {model: [{name: NAME, hidden: [8]}, "
      "...]})"]),
    ("dotted_param_bad_value", _edit("grid:\n  activation: [tanh, relu]",
                                     "grid:\n  optimizer.momentum: [0.5, 1.5]"),
     ["grid.optimizer.momentum[1]", "less than 1", "1.5 (float)"]),
]


@pytest.mark.parametrize(("text", "fragments"), [(t, f) for _, t, f in CASES],
                         ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_malformed_suite_is_rejected_before_any_work(
        command: str, text: str, fragments: list[str], write_suite: Callable[..., Path],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite(text, filename="broken.yaml")
    store = tmp_path / "store.db"
    argv = [command, str(path)]
    if command == "run":
        argv += ["--tracking-uri", f"sqlite:///{store}", "--report-dir", str(tmp_path / "r")]

    code = cli.main(argv)

    stderr = capsys.readouterr().err
    assert code == 2
    assert f"{path}: " in stderr  # every line names the file
    for fragment in fragments:
        assert fragment in stderr, f"{fragment!r} missing from:\n{stderr}"
    assert not store.exists(), "a rejected suite must not create an MLflow store"
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "r").exists()


def test_every_problem_is_reported_at_once(write_suite: Callable[..., Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    text = _edit("epochs: 2", "epochs: ten").replace("seeds: 2", "seeds: 0")
    path = write_suite(text.replace("[tanh, relu]", "[tanh, reluu]"), filename="many.yaml")

    assert cli.main(["validate", str(path)]) == 2

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 3
    keys = {line.split(": ")[1] for line in lines}
    assert keys == {"fixed.epochs", "grid.activation[1]", "seeds"}


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert f"{tmp_path / 'nope.yaml'}: no such suite file" in capsys.readouterr().err


def test_suite_cases_are_numerous_enough() -> None:
    """The issue asks for at least 15 distinct malformed files."""
    assert len({text for _, text, _ in CASES}) >= 15
