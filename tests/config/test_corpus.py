"""The bad-input corpus: realistic mistakes in suite files and command lines.

Every case runs the real command in-process (`nnbench.cli.main`) in a fresh directory
and must: exit 2; name the file (or option), the key path, the value given and what is
allowed; print no traceback; create no MLflow store, Optuna storage, run or report
directory; and fit on one screen. The cases are grouped by the categories of issue 8:

- science: configurations that would train and exit 0 with a silently wrong comparison;
- late: what used to pass `validate` and then fail every affected trial;
- traceback: what used to end in a Python traceback (or a hang, or a MemoryError);
- cli: command-line and environment mistakes (stores, storages, directories, devices); a
  server that refuses connections is tried again for CONNECT_WAIT s (10; 1 here), said on
  a line of its own;
- yaml: encodings, characters and YAML constructs;
- names: suite names that are unsafe as experiment or file names.

`VALID` holds unusual but valid inputs (merge keys, UTF-16, BOMs, CRLF, `1e-4`) that
must be accepted, with the same trials as their plain UTF-8 form.
"""

from __future__ import annotations

import codecs
import math
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nnbench import cli, cli_checks
from nnbench.config import SuiteError, load_suite, parse_suite

SCREEN_LINES = 40  # one screen: at most this many terminal lines of 100 columns
SCREEN_COLUMNS = 100

SIGNALS = """\
name: corpus
task:
  dataset: {name: mnist1d, num_samples: 600}
  model: {name: mlp, hidden: [8]}
  metric: val_accuracy
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: {name: sgd, lr: 0.1}
  epochs: 2
  batch_size: 32
grid:
  activation: [tanh, relu]
seeds: 2
"""  # 600 examples: 480 train+val (48 val, 432 train), 120 test

IMAGES = """\
name: corpus
task:
  dataset: digits
  model: {name: cnn, channels: [4], hidden: [8]}
fixed:
  activation: relu
  optimizer: {name: adam, lr: 0.01}
  epochs: 2
  batch_size: 64
  augmentation: [normalize]
seeds: 2
"""  # sklearn digits: 1797 grey 8×8 images, 10 classes

CIRCLES = """\
name: corpus
task:
  dataset: {name: circles, n_samples: 200}
  model: {name: mlp, hidden: [8]}
fixed:
  activation: relu
  optimizer: {name: sgd, lr: 0.1}
  epochs: 2
  batch_size: 32
seeds: 2
"""

TUNED = SIGNALS.replace("grid:\n  activation: [tanh, relu]\n",
                        "grid:\n  optimizer: [sgd, adam]\n")


def edit(base: str, old: str, new: str) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


def add(base: str, text: str) -> str:
    return base + textwrap.dedent(text)


def fixed(base: str, line: str) -> str:
    """`base` with one more line under fixed:."""
    return edit(base, "  epochs: 2\n", f"  {line}\n  epochs: 2\n")


def tune(space: str, extra: str = "") -> str:
    return add(TUNED, f"tune:\n  space: {space}\n  trials: 3\n{extra}")


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    suite: str | bytes  # the suite file's content
    fragments: tuple[str, ...]  # key path, given value, allowed values ({tmp}: the directory)
    args: tuple[str, ...] = ()  # extra options after the command's own ({tmp} substituted)
    command: str = "run"
    env: tuple[tuple[str, str], ...] = ()


CASES: list[Case] = [
    # -- science: silently wrong comparisons --------------------------------------------------
    Case("tune_maximizes_against_accuracy", "science",
         tune("{optimizer.lr: {low: 0.001, high: 0.1, log: true}}",
              "  objective: {metric: val_accuracy, direction: minimize}\n"),
         ("tune.objective.direction", "minimize val_accuracy", "tune every point to its worst",
          "allowed: maximize", "against_metric: true")),
    Case("tune_maximizes_a_loss", "science",
         tune("{optimizer.lr: {low: 0.001, high: 0.1}}",
              "  objective: {metric: val_loss, direction: maximize}\n"),
         ("tune.objective.direction", "maximize val_loss", "allowed: minimize")),
    Case("against_metric_in_the_metric_direction", "science",
         tune("{optimizer.lr: {low: 0.001, high: 0.1}}",
              "  objective: {metric: val_accuracy, direction: maximize, against_metric: true}\n"),
         ("tune.objective.against_metric", "direction maximize is val_accuracy's own",
          "remove against_metric")),
    Case("tuned_dropout_beyond_its_range", "science",
         tune("{dropout: {type: float, low: 0.0, high: 1.5}}"),
         ("tune.space.dropout.high", "dropout takes a probability in [0, 1) (0, or from",
          "given 1.5")),
    Case("tuned_epochs_from_zero", "science", tune("{epochs: {type: int, low: 0, high: 3}}"),
         ("tune.space.epochs.low", "epochs takes a positive integer, at most 100,000; given "
          "0 (int)")),
    Case("unknown_key_in_a_tuned_range", "science",
         tune("{optimizer.lr: {low: 0.001, high: 0.1, step: 0.01}}"),
         ("tune.space.optimizer.lr.step", "unknown key 'step'",
          "allowed: type, low, high, log, choices")),
    Case("seeds_in_two_places", "science",
         add(SIGNALS.replace("seeds: 2", "seeds: [5, 6, 7]"),
             "tune:\n  space: {optimizer.lr: {low: 0.001, high: 0.1}}\n  trials: 3\n"
             "  seeds: 2\n"),
         ("seeds: a tuned suite trains its re-runs over tune.seeds (given 2); these seeds "
          "([5, 6, 7]) would not be used", "give the seeds in one place")),
    Case("float_range_on_an_integer_parameter", "late",
         edit(tune("{schedule.step_size: {type: float, low: 1, high: 3}}"), "  epochs: 2\n",
              "  epochs: 2\n  schedule: {name: step, step_size: 1}\n"),
         ("tune.space.schedule.step_size", "(a value inside the range) does not fit",
          "expected an integer", "a float range draws fractional values: use type: int")),
    Case("list_choices", "traceback",
         tune("{model.hidden: {type: categorical, choices: [[8], [16]]}}"),
         ("tune.space.model.hidden.choices", "each choice must be a number, a string, a "
          "boolean or null", "given [8] (list)")),
    Case("a_choice_twice", "science",
         tune("{optimizer.lr: {type: categorical, choices: [0.01, 0.1, 0.01]}}"),
         ("tune.space.optimizer.lr.choices", "0.01 is given twice", "every choice must "
          "differ")),
    Case("claim_over_one_tuned_seed", "science",  # it said "set seeds: 2", which is refused
         tune("{optimizer.lr: {type: float, low: 0.01, high: 0.1, log: true}}",
              "  seeds: 1\nexpect:\n  - {claim: x, a: {optimizer: sgd}, b: {optimizer: adam}}\n"
              ).replace("seeds: 2\n", "", 1),
         ("expect[0]: claim 'x' can never be tested: a seed-paired test needs at least 2 "
          "seeds and the compared trials have 1; set tune.seeds: 2 or more",)),
    Case("val_fraction_with_folds", "science",  # ignored, yet in every label and trial id
         edit(SIGNALS, "num_samples: 600", "num_samples: 600, folds: 3, val_fraction: 0.3"),
         ("task.dataset.val_fraction: has no effect with folds: 3 (each fold holds out 1/3 of "
          "the examples for validation); drop it",)),
    Case("one_choice", "science",  # it tuned nothing, and the report said "tuned per point"
         tune("{optimizer.lr: {type: categorical, choices: [0.05]}}"),
         ("tune.space.optimizer.lr.choices: one choice (0.05) tunes nothing: give two or "
          "more, or fix optimizer.lr to 0.05 under fixed: instead",)),
    Case("float_range_on_batch_size", "science",  # it said "given 16.0 (float)"
         tune("{batch_size: {type: float, low: 16, high: 64}}"),
         ("tune.space.batch_size: batch_size takes a positive integer or 'full', and a float "
          "range draws fractional values: use type: int",)),
    Case("one_and_one_point_zero", "science",
         tune("{batch_size: {type: categorical, choices: [16, 16.0]}}"),
         ("tune.space.batch_size.choices", "16.0 is given twice (16 and 16.0 are the same "
          "value to Optuna)")),
    # a pruner named that could never act: tuned "with pruning" that never happened
    Case("median_pruner_within_its_startup_trials", "science",
         tune("{optimizer.lr: {type: float, low: 0.001, high: 0.1, log: true}}",
              "  pruner: {name: median}\n"),
         ("tune.pruner.name: median would never prune: it judges a trial only once 5 trials "
          "of its study are complete, and tune.trials is 3", "allowed: none, hyperband, or "
          "trials: 6 or more")),
    Case("pruner_of_one_epoch_trials", "science",
         edit(tune("{optimizer.lr: {type: float, low: 0.001, high: 0.1, log: true}}",
                   "  pruner: {name: hyperband}\n"), "epochs: 2", "epochs: 1"),
         ("tune.pruner.name: hyperband would never prune: a trial is pruned between its "
          "epochs, and every trial trains 1 epoch; allowed: none, or more epochs",)),
    Case("tuned_step_size_never_reached", "science",
         edit(tune("{schedule.step_size: {type: int, low: 1, high: 3}}"), "  epochs: 2\n",
              "  epochs: 2\n  schedule: {name: step, step_size: 1}\n"),
         ("tune.space.schedule.step_size: step_size 3 is not reached in the 2 epochs",)),
    Case("cosine_eta_min_above_lr", "science",  # trained, the lr rising to eta_min
         fixed(SIGNALS, "schedule: {name: cosine, eta_min: 0.5}"),
         ("fixed.schedule.eta_min", "eta_min 0.5 is above the optimizer's lr 0.1",
          "raise the learning rate towards 0.5", "allowed: eta_min 0 to 0.1")),
    Case("tuned_lr_below_cosine_eta_min", "science",
         edit(tune("{optimizer.lr: {type: float, low: 0.0001, high: 0.1, log: true}}"),
              "  epochs: 2\n", "  epochs: 2\n  schedule: {name: cosine, eta_min: 0.0005}\n"),
         ("tune.space.optimizer.lr: eta_min 0.0005 is above the optimizer's lr 0.0001",
          "allowed: eta_min 0 to 0.0001, or a tuned lr from 0.0005 up")),
    Case("onecycle_three_phase_past_half", "science",  # it ended at lr 0.0227 of 0.1
         fixed(SIGNALS, "schedule: {name: onecycle, max_lr: 0.1, three_phase: true, "
                        "pct_start: 0.6}"),
         ("fixed.schedule", "pct_start 0.6 with three_phase: true leaves no room for the "
          "third phase", "allowed: pct_start below 0.5, or three_phase: false")),
    Case("cosine_t_max_shorter_than_the_run", "science",  # lr 0.1, 0, 0.1, 0 per epoch
         edit(SIGNALS, "  epochs: 2\n", "  epochs: 6\n  schedule: {name: cosine, T_max: 1}\n"),
         ("fixed.schedule.T_max", "T_max 1 ends before the 6 epochs of training",
          "climbs back up after 1 epoch", "allowed: T_max 5 or more (at 5 the last epoch "
          "trains at eta_min), or leave it out")),
    Case("step_size_in_one_epoch", "science",  # it said "allowed: 1 to 0"
         edit(SIGNALS, "  epochs: 2\n", "  epochs: 1\n  schedule: {name: step, step_size: 5}\n"),
         ("fixed.schedule.step_size", "step_size 5 is not reached in the 1 epoch of training",
          "allowed: none in 1 epoch: train more epochs, or use schedule constant")),
    Case("tune_space_overwrites_grid_axis", "science",
         add(SIGNALS.replace("activation: [tanh, relu]", "optimizer.lr: [0.01, 0.1]"),
             "tune:\n  space: {optimizer.lr: {low: 0.001, high: 0.1}}\n  trials: 3\n"),
         ("tune.space.optimizer.lr", "also a scientific axis (grid.optimizer.lr)",
          "tune a nuisance axis")),
    Case("tune_space_overwrites_ablate_axis", "science",
         add(TUNED, "ablate: {epochs: [3]}\ntune:\n  space: {epochs: {type: int, low: 1, "
                    "high: 4}}\n  trials: 3\n"),
         ("tune.space.epochs", "also a scientific axis (ablate.epochs)", "drop ablate.epochs")),
    Case("tuned_parameter_given_in_grid_value", "science",
         edit(tune("{optimizer.lr: {low: 0.001, high: 0.1}}"), "optimizer: [sgd, adam]",
              "optimizer: [{name: sgd, lr: 0.05}, adam]"),
         ("grid.optimizer[0].lr", "optimizer.lr is tuned", "never be used", "remove it")),
    Case("activation_grid_without_hidden_layer", "science",
         edit(SIGNALS, "hidden: [8]", "hidden: []"),
         ("grid.activation[1]", "activation=tanh and activation=relu", "train identically",
          "no hidden layer")),
    Case("activation_grid_on_logistic", "science",
         edit(SIGNALS, "{name: mlp, hidden: [8]}", "logistic"),
         ("grid.activation[1]", "train identically", "model 'logistic' has no hidden layer")),
    Case("norm_grid_without_hidden_layer", "science",
         edit(SIGNALS, "hidden: [8]", "hidden: []").replace("activation: [tanh, relu]",
                                                             "norm: [none, batchnorm]"),
         ("grid.norm[1]", "norm 'batchnorm' has no effect", "no hidden layer",
          "allowed: none")),
    Case("dropout_without_hidden_layer", "science",
         fixed(edit(SIGNALS, "{name: mlp, hidden: [8]}", "logistic"), "dropout: 0.3"),
         ("fixed.dropout", "dropout 0.3 has no effect", "allowed: 0")),
    Case("normalize_twice", "science",
         fixed(SIGNALS, "augmentation: [normalize, {name: gaussian_noise, std: 0.1}, normalize]"),
         ("fixed.augmentation[2]", "already in the pipeline (fixed.augmentation[0])",
          "keep one")),
    Case("multistep_milestones_after_the_run", "science",
         fixed(SIGNALS, "schedule: {name: multistep, milestones: [1, 5]}"),
         ("fixed.schedule.milestones[1]", "milestone 5", "2 epochs", "never takes effect",
          "allowed: 1 to 1")),
    Case("multistep_never_fires", "science",
         fixed(SIGNALS, "schedule: {name: multistep, milestones: [10, 20]}"),
         ("fixed.schedule.milestones[0]", "milestone 10", "allowed: 1 to 1")),
    Case("step_size_longer_than_the_run", "science",
         fixed(SIGNALS, "schedule: {name: step, step_size: 5}"),
         ("fixed.schedule.step_size", "step_size 5", "never decays", "allowed: 1 to 1")),
    Case("exponential_gamma_one", "science",
         fixed(SIGNALS, "schedule: {name: exponential, gamma: 1}"),
         ("fixed.schedule", "schedule 'exponential' never changes the learning rate",
          "stays 0.1", "use constant")),
    Case("cosine_to_its_own_lr", "science",
         fixed(SIGNALS, "schedule: {name: cosine, eta_min: 0.1}"),
         ("fixed.schedule", "'cosine' never changes the learning rate", "use constant")),
    Case("onecycle_ignores_the_lr_grid", "science",
         fixed(SIGNALS.replace("activation: [tanh, relu]", "optimizer.lr: [0.01, 0.1]"),
               "schedule: {name: onecycle, max_lr: 0.1}"),
         ("grid.optimizer.lr[1]", "train identically", "onecycle sets the learning rate")),
    Case("batch_sizes_both_the_whole_split", "science",
         SIGNALS.replace("activation: [tanh, relu]", "batch_size: [full, 1000]"),
         ("grid.batch_size[1]", "batch_size=full and batch_size=1000", "train identically",
          "cover the whole training split")),
    Case("two_inits_with_one_gain", "science",
         SIGNALS.replace("activation: [tanh, relu]",
                         "init: [kaiming_normal, {name: kaiming_normal, nonlinearity: relu}]"),
         ("grid.init[1]", "train identically", "same initial weights")),
    # it validated; the trial stopped at epoch 3 and kept epoch 1's weights, silently
    Case("early_stopping_min_delta_beyond_accuracy", "science",
         fixed(SIGNALS, "early_stopping: {name: patience, monitor: val_accuracy, "
                        "patience: 1, min_delta: 5}"),
         ("fixed.early_stopping", "min_delta 5 is not below 1, val_accuracy's whole range",
          "allowed: 0 <= min_delta < 1")),
    Case("early_stopping_that_cannot_stop", "science",
         fixed(SIGNALS, "early_stopping: {name: patience, patience: 5, restore_best: false}"),
         ("fixed.early_stopping", "can never stop a run of 2 epoch(s) early",
          "a stop at the last epoch stops nothing; and restore_best is false",
          "allowed: early_stopping: none, or at least 3 epochs")),
    # patience 1 of 2 epochs: the earliest stop is after epoch 2, the last (it was accepted,
    # and trained as `none` under a trial id of its own)
    Case("early_stopping_whose_earliest_stop_is_the_last_epoch", "science",
         fixed(SIGNALS, "early_stopping: {name: patience, patience: 1, restore_best: false}"),
         ("fixed.early_stopping", "can never stop a run of 2 epoch(s) early",
          "allowed: early_stopping: none, or at least 3 epochs")),
    Case("patience_one_short_of_the_epochs", "science",
         edit(fixed(SIGNALS, "early_stopping: {name: patience, patience: 4, "
                             "restore_best: false}"), "epochs: 2", "epochs: 5"),
         ("fixed.early_stopping.patience", "patience 4 can never stop the run of 5 epochs "
          "early", "the earliest stop is after patience + 1 epochs", "allowed: 1 to 3")),
    # one epoch: nothing to stop and no better epoch to restore (restore_best is true)
    Case("early_stopping_in_one_epoch", "science",
         edit(edit(SIGNALS, "epochs: 2", "epochs: 1"), "  activation: [tanh, relu]\n",
              "  early_stopping: [none, {name: patience}]\n"),
         ("grid.early_stopping[1]", "can never stop a run of 1 epoch(s) early",
          "with one epoch there is no better epoch for restore_best to go back to")),
    # torch's AdamW is Adam with decoupled decay: with none, the same updates bit for bit
    Case("adamw_without_decay_beside_adam", "science",
         edit(SIGNALS, "  activation: [tanh, relu]\n",
              "  optimizer: [{name: adam, lr: 0.01}, {name: adamw, lr: 0.01, "
              "weight_decay: 0}]\n"),
         ("grid.optimizer[1]", "train identically", "adamw with weight_decay 0 is adam")),
    Case("claim_on_saturation_under_relu", "science",
         add(SIGNALS.replace("[tanh, relu]", "[relu, leaky_relu]"),
             "expect:\n  - {claim: relu saturates less, a: {activation: relu}, "
             "b: {activation: leaky_relu}, metric: saturated_fraction, direction: lower}\n"),
         ("expect[0]", "can never be tested", "'saturated_fraction' is not logged",
          "sigmoid and tanh", "dead_fraction")),
    Case("milestones_out_of_order", "late",  # it was said of the schedule, as a dict
         edit(fixed(SIGNALS, "schedule: {name: multistep, milestones: [2, 1]}"),
              "epochs: 2", "epochs: 5"),
         ("fixed.schedule.milestones: schedule 'multistep': milestones must be increasing "
          "positive integers, given [2, 1] (list)",)),
    Case("leaky_relu_of_slope_0_beside_relu", "science",  # the same fingerprints
         edit(SIGNALS, "activation: [tanh, relu]",
              "activation: [relu, {name: leaky_relu, negative_slope: 0}]"),
         ("grid.activation[1].negative_slope: activation 'leaky_relu': a slope of 0 is relu; "
          "allowed: a slope in (0, 1), or activation relu",)),
    Case("claim_on_layer_0", "science",  # it said the model had fewer weight layers
         add(SIGNALS, "expect:\n  - {claim: x, a: {activation: relu}, b: {activation: tanh}, "
                      "metric: grad_norm.layer0}\n"),
         ("expect[0]", "'grad_norm.layer0' is not logged", "weight layers are numbered from 1 "
          "(grad_norm.layer1: the input layer)", "grad_norm.layer2")),
    Case("claim_on_saturation_against_relu", "science",  # relu is the side that never logs it
         add(SIGNALS, "expect:\n  - {claim: tanh saturates, a: {activation: tanh}, "
                      "b: {activation: relu}, metric: saturated_fraction}\n"),
         ("expect[0]", "'saturated_fraction' is not logged", "b (activation=relu) does not log "
          "it: saturated units are counted for sigmoid and tanh; activation 'relu' is not "
          "saturating")),
    Case("claim_on_a_layer_the_model_lacks", "science",
         add(SIGNALS, "expect:\n  - {claim: deep gradients, a: {activation: tanh}, "
                      "b: {activation: relu}, metric: grad_norm.layer9}\n"),
         ("expect[0]", "'grad_norm.layer9' is not logged", "grad_norm.layer2")),
    Case("two_claims_with_one_text", "science",  # two report rows that read alike
         add(SIGNALS, "expect:\n  - {claim: relu wins, a: {activation: relu}, "
                      "b: {activation: tanh}}\n  - {claim: Relu  wins, a: {activation: relu}, "
                      "b: {activation: tanh}, metric: val_loss, direction: lower}\n"),
         ("expect[1].claim: claim 'Relu  wins' is also the text of expect[0], which tests "
          "something else",)),
    Case("claim_with_one_seed", "science",
         add(SIGNALS.replace("seeds: 2", "seeds: 1"),
             "expect:\n  - {claim: relu wins, a: {activation: relu}, b: {activation: tanh}}\n"),
         ("expect[0]", "at least 2 seeds", "have 1", "seeds: 2 or more")),
    Case("claim_on_rmse_of_a_classifier", "science",
         add(SIGNALS, "expect:\n  - {claim: relu fits, a: {activation: relu}, "
                      "b: {activation: tanh}, metric: val_rmse}\n"),
         ("expect[0]", "'val_rmse' is not logged", "reports accuracy")),
    Case("claim_where_selects_nothing", "science",
         add(SIGNALS.replace("grid:\n  activation: [tanh, relu]",
                             "ablate:\n  activation: [tanh]\n  epochs: [3]"),
             "expect:\n  - {claim: tanh wins, a: {activation: tanh}, b: {activation: relu}, "
             "where: {epochs: 3}}\n"),
         ("expect[0]", "no configuration matches a (activation=tanh) where epochs=3")),
    Case("claim_compares_a_side_with_itself", "science",
         add(SIGNALS, "expect:\n  - {claim: same, a: {activation: relu}, "
                      "b: {activation: relu}}\n"),
         ("expect[0].b", "a and b select the same configurations", "activation=relu")),
    # it was tested, pairing nothing: tanh with lr 0.1 sat on both sides (a bad-input hunt)
    Case("claim_sides_set_different_axes", "science",
         add(SIGNALS.replace("grid:\n  activation: [tanh, relu]",
                             "grid:\n  activation: [tanh, relu]\n  optimizer.lr: [0.01, 0.1]"),
             "expect:\n  - {claim: x, a: {activation: tanh}, b: {optimizer.lr: 0.1}}\n"),
         ("expect[0].b", "a sets activation and b sets optimizer.lr",
          "give a and b the same ones")),
    # it was tested twice: two report rows, and counted twice in the Holm correction
    Case("claim_given_twice", "science",
         add(SIGNALS, "expect:\n  - {claim: relu wins, a: {activation: relu}, "
                      "b: {activation: tanh}}\n  - {claim: again, a: {activation: relu}, "
                      "b: {activation: tanh}}\n"),
         ("expect[1]", "claim 'again' tests what expect[0] tests", "remove one")),
    Case("claim_mirrored", "science",  # "a higher than b" and "b lower than a": one test
         add(SIGNALS, "expect:\n  - {claim: relu wins, a: {activation: relu}, "
                      "b: {activation: tanh}}\n  - {claim: tanh loses, a: {activation: tanh}, "
                      "b: {activation: relu}, direction: lower}\n"),
         ("expect[1]: claim 'tanh loses' tests what expect[0] tests, with a and b swapped and "
          "the direction reversed (the same test, counted twice in the Holm correction); "
          "remove one",)),
    Case("claim_on_an_axis_not_varied", "science",
         add(SIGNALS, "expect:\n  - {claim: xavier, a: {init: xavier_normal}, "
                      "b: {init: kaiming_normal}}\n"),
         ("expect[0].a.init", "'init' is not varied", "allowed: activation")),
    Case("claim_on_a_value_not_trained", "science",
         add(SIGNALS, "expect:\n  - {claim: sigmoid, a: {activation: sigmoid}, "
                      "b: {activation: relu}}\n"),
         ("expect[0].a.activation", "no configuration has activation=sigmoid",
          "'sigmoid' (str)", "the suite has relu, tanh")),
    Case("ablate_value_equal_to_fixed", "science",
         SIGNALS.replace("grid:\n  activation: [tanh, relu]", "ablate:\n  activation: [relu]"),
         ("ablate.activation[0]", "activation = relu is the fixed value", "remove it")),
    # with the fixed value also in a grid, it said "a parameter axis overwrites what the
    # component values say", which is not what happened; -0.0 is 0
    Case("ablate_value_equal_to_fixed_with_a_grid", "science",
         add(SIGNALS, "ablate:\n  l2: [-0.0]\n"),
         ("ablate.l2[0]", "l2 = 0.0 is the fixed value", "remove it")),
    Case("ablate_lr_equal_to_fixed", "science",
         SIGNALS.replace("grid:\n  activation: [tanh, relu]",
                         "ablate:\n  optimizer.lr: [0.01, 0.1]"),
         ("ablate.optimizer.lr[1]", "optimizer.lr = 0.1 is the fixed value")),
    Case("axis_in_grid_and_ablate", "science",
         add(SIGNALS, "ablate: {activation: [sigmoid]}\n"),
         ("ablate.activation", "also a grid axis (grid.activation)",
          "under grid or ablate, not both")),
    Case("grid_values_overwritten_by_a_parameter_axis", "science",
         SIGNALS.replace("activation: [tanh, relu]",
                         "optimizer: [{name: sgd, lr: 0.1}, {name: sgd, lr: 0.01}]\n"
                         "  optimizer.lr: [0.05]"),
         ("grid.optimizer[1]", "gives the same configuration", "grid.optimizer[0]",
          "keep one")),
    Case("kaiming_slope_without_leaky_relu", "science",
         edit(SIGNALS, "init: kaiming_normal", "init: {name: kaiming_normal, "
                                               "nonlinearity: relu, a: 0.1}"),
         ("fixed.init", "a=0.1 is only used with nonlinearity leaky_relu", "no effect")),
    # a warm-up setting where nothing warms up: trained as without it, labelled with it
    Case("warmup_start_factor_without_warmup", "science",
         fixed(SIGNALS, "schedule: {name: cosine, warmup_start_factor: 0.5}"),
         ("fixed.schedule.warmup_start_factor: warmup_start_factor 0.5 has no effect: there "
          "is no warm-up (warmup is 0); allowed: warmup > 0, or no warmup_start_factor",)),
    Case("warmup_start_factor_of_onecycle", "science",
         fixed(SIGNALS, "schedule: {name: onecycle, max_lr: 0.1, warmup_start_factor: 0.5}"),
         ("fixed.schedule.warmup_start_factor: warmup_start_factor 0.5 has no effect: this "
          "schedule has its own warm-up (pct_start", "allowed: no warmup_start_factor")),
    Case("warmup_start_factor_of_the_schedule_without_warmup", "science",
         edit(SIGNALS, "activation: [tanh, relu]",
              "schedule: [{name: cosine, warmup_start_factor: 0.5}, "
              "{name: cosine, warmup: 1}]"),
         ("grid.schedule[0].warmup_start_factor: warmup_start_factor 0.5 has no effect",)),
    # a setting its own component or the schedule disables, said where it is written
    Case("dampening_without_momentum_fixed", "science",
         edit(SIGNALS, "lr: 0.1", "lr: 0.1, dampening: 0.5"),
         ("fixed.optimizer.dampening: dampening 0.5 has no effect: dampening damps momentum, "
          "and momentum is 0 (torch skips it); allowed: momentum > 0, or no dampening",)),
    Case("dampening_without_momentum_beside_an_ablation", "science",
         add(fixed(SIGNALS.replace("lr: 0.1", "lr: 0.1, dampening: 0.5"), "l2: 0.001"),
             "ablate:\n  l2: [0.0]\n"),
         ("fixed.optimizer.dampening: dampening 0.5 has no effect",)),
    Case("base_momentum_without_cycling", "science",
         fixed(edit(SIGNALS, "{name: sgd, lr: 0.1}", "sgd"),
               "schedule: {name: onecycle, max_lr: 0.2, cycle_momentum: false, "
               "base_momentum: 0.5}"),
         ("fixed.schedule.base_momentum: base_momentum 0.5 has no effect: cycle_momentum is "
          "false, so the optimizer keeps its own momentum; allowed: cycle_momentum: true, or "
          "no base_momentum",)),
    # per value: the 0.2 of the warmed-up schedule takes effect, the 0.5 never does
    Case("one_start_factor_of_two_without_warmup", "science",
         edit(SIGNALS, "activation: [tanh, relu]",
              "schedule: [{name: cosine, warmup_start_factor: 0.5}, "
              "{name: cosine, warmup: 1, warmup_start_factor: 0.2}]"),
         ("grid.schedule[0].warmup_start_factor: warmup_start_factor 0.5 has no effect: "
          "there is no warm-up (warmup is 0)",)),
    # a onecycle from 1e39 failed each serial trial with an overflow, and its stacked ones
    # were recorded as diverged
    Case("onecycle_starting_above_its_peak", "late",
         fixed(edit(SIGNALS, "{name: sgd, lr: 0.1}", "sgd"),
               "schedule: {name: onecycle, max_lr: 1.0e+38, div_factor: 0.1}"),
         ("fixed.schedule", "div_factor 0.1 starts the cycle at 1e+39, above max_lr 1e+38",
          "allowed: div_factor 1 or more")),
    Case("onecycle_starting_below_float32", "science",
         fixed(edit(SIGNALS, "{name: sgd, lr: 0.1}", "sgd"),
               "schedule: {name: onecycle, max_lr: 1.0e-30, div_factor: 1.0e+10}"),
         ("fixed.schedule", "the learning rate starts at 1e-40, below float32's smallest "
          "normal number (1.18e-38)", "allowed: a schedule that starts from 1.18e-38")),
    # a key in the other section: said where it belongs, not only what this one allows
    Case("epochs_under_task", "late",
         edit(SIGNALS, "  metric: val_accuracy\n", "  metric: val_accuracy\n  epochs: 3\n"),
         ("task.epochs: unknown key 'epochs'; epochs belongs under fixed:, not task:; "
          "allowed: dataset, model, loss, metric",)),
    Case("model_under_fixed", "late",
         fixed(SIGNALS, "model: {name: mlp, hidden: [4]}"),
         ("fixed.model: unknown key 'model'; model belongs under task:, not fixed:",)),
    Case("batch_interval_of_a_constant_lr", "science",
         fixed(SIGNALS, "schedule: {name: constant, interval: batch}"),
         ("fixed.schedule.interval: interval 'batch' has no effect: the constant schedule "
          "without warm-up never changes the lr; allowed: warmup > 0",)),
    Case("flip_that_never_flips", "science",
         edit(IMAGES, "augmentation: [normalize]",
              "augmentation: [{name: random_horizontal_flip, p: 0}, normalize]"),
         ("fixed.augmentation[0]", "'random_horizontal_flip' has no effect", "p is 0")),
    Case("grayscale_on_grey_images", "science",
         edit(IMAGES, "augmentation: [normalize]", "augmentation: [random_grayscale, normalize]"),
         ("fixed.augmentation[0]", "'random_grayscale' has no effect on 1×8×8",
          "already grey")),
    Case("saturation_on_grey_images", "science",
         edit(IMAGES, "augmentation: [normalize]",
              "augmentation: [{name: color_jitter, saturation: 0.4}, normalize]"),
         ("fixed.augmentation[0]", "saturation and hue leave grey")),
    Case("crop_that_is_the_image", "science",
         edit(IMAGES, "augmentation: [normalize]",
              "augmentation: [{name: random_crop, size: 8}, normalize]"),
         ("fixed.augmentation[0]", "size 8 is the whole 8×8 image", "padding: 1")),
    Case("normalize_by_zero_and_one", "science",
         edit(IMAGES, "augmentation: [normalize]",
              "augmentation: [{name: normalize, mean: [0], std: [1]}]"),
         ("fixed.augmentation[0]", "mean 0 and std 1 leave every value unchanged")),
    # -- late: accepted by validate, then every affected trial failed ---------------------------
    Case("bce_on_ten_classes", "late", edit(SIGNALS, "  metric:", "  loss: bce\n  metric:"),
         ("task.loss", "binary cross-entropy needs 2 classes", "has 10", "use cross_entropy")),
    Case("bce_with_logits_on_ten_classes", "late",
         edit(SIGNALS, "  metric:", "  loss: bce_with_logits\n  metric:"),
         ("task.loss", "needs 2 classes", "use cross_entropy")),
    Case("crop_larger_than_the_image", "late",
         edit(IMAGES, "augmentation: [normalize]",
              "augmentation: [{name: random_crop, size: 12}, normalize]"),
         ("fixed.augmentation[0]", "random_crop size 12", "8×8 image",
          "allowed: size up to 8")),
    Case("crop_padding_not_smaller_than_its_size", "late",  # most crops were pure fill
         edit(IMAGES, "augmentation: [normalize]",
              "augmentation: [{name: random_crop, size: 8, padding: 20}, normalize]"),
         ("fixed.augmentation[0]", "random_crop padding 20 is not smaller than size 8",
          "only padding", "allowed: padding 0 to 7")),
    Case("shift_past_the_signal", "late",  # 61% of the examples became zeros, labels kept
         fixed(SIGNALS, "augmentation: [{name: random_shift, max_shift: 100}]"),
         ("fixed.augmentation[0]", "random_shift max_shift 100 is not shorter than the 40-step "
          "signals: 122 of its 201 shifts leave only zeros", "allowed: max_shift 1 to 39")),
    Case("crop_that_changes_the_input_shape", "late",
         edit(IMAGES, "augmentation: [normalize]",
              "augmentation: [{name: random_crop, size: 6, padding: 1}, normalize]"),
         ("fixed.augmentation[0]", "(1, 8, 8) inputs into (1, 6, 6)",
          "(pad first, e.g. size: 8, padding: 4)")),
    Case("resized_crop_that_changes_the_input_shape", "late",  # it said "padding: 4", which
         edit(IMAGES, "augmentation: [normalize]",  # random_resized_crop does not take
              "augmentation: [{name: random_resized_crop, size: 4}, normalize]"),
         ("fixed.augmentation[0]", "(1, 8, 8) inputs into (1, 4, 4)",
          "crop to the image size (size: 8)")),
    Case("normalize_with_three_channels_on_grey", "late",
         edit(IMAGES, "augmentation: [normalize]", "augmentation: [{name: normalize, "
                                                   "mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}]"),
         ("fixed.augmentation[0]", "mean has 3 values", "1 channel", "give 1 value")),
    Case("normalize_with_too_few_features", "late",
         fixed(SIGNALS, "augmentation: [{name: normalize, mean: [0.1, 0.2], std: [1, 2]}]"),
         ("fixed.augmentation[0]", "mean has 2 values", "40 features", "give 1 or 40")),
    Case("warmup_longer_than_the_run", "late",
         fixed(SIGNALS, "schedule: {name: cosine, warmup: 5}"),
         ("fixed.schedule.warmup", "warmup=5 epochs", "the 2 epochs of training",
          "allowed: warmup 0 to 1")),
    Case("batch_warmup_longer_than_the_run", "late",
         fixed(SIGNALS, "schedule: {name: cosine, interval: batch, warmup: 100}"),
         ("fixed.schedule.warmup", "warmup=100 batches", "28 batches",
          "allowed: warmup 0 to 27")),
    Case("too_many_pooling_blocks", "late",
         edit(IMAGES, "channels: [4]", "channels: [4, 4, 4, 4]"),
         ("task.model", "4 conv blocks halve 8×8", "at most 3 blocks")),
    Case("batchnorm_with_batches_of_one", "late",
         fixed(SIGNALS.replace("batch_size: 32", "batch_size: 1"), "norm: batchnorm"),
         ("fixed.batch_size", "batch_size 1 with BatchNorm (fixed.norm)",
          "a batch size of 2 or more, or norm: none")),
    Case("batchnorm_with_a_last_batch_of_one", "late",
         fixed(SIGNALS.replace("batch_size: 32", "batch_size: 431"), "norm: batchnorm"),
         ("fixed.batch_size", "with batch_size 431 the last batch", "holds 1 example",
          "e.g. 432")),
    Case("more_folds_than_examples", "late",
         edit(SIGNALS, "{name: mnist1d, num_samples: 600}",
              "{name: mnist1d, num_samples: 600, folds: 1000}"),
         ("task.dataset", "folds=1000", "480 examples", "at most 480 folds")),
    Case("val_fraction_rounds_to_zero", "late",
         edit(SIGNALS, "num_samples: 600}", "num_samples: 600, val_fraction: 0.0001}"),
         ("task.dataset", "val_fraction=0.0001", "gives 0 validation",
          "between 0.00208 and 0.998")),
    Case("test_fraction_rounds_to_zero", "late",
         edit(CIRCLES, "n_samples: 200}", "n_samples: 200, test_fraction: 0.001}"),
         ("task.dataset", "test_fraction=0.001", "0 test examples", "at least 1")),
    Case("tune_objective_the_loss_lacks", "late",
         tune("{optimizer.lr: {low: 0.001, high: 0.1}}", "  objective: {metric: val_rmse}\n"),
         ("tune.objective.metric", "reports no 'val_rmse'",
          "allowed: val_loss, val_accuracy")),
    Case("onecycle_with_adagrad", "late",
         fixed(edit(SIGNALS, "{name: sgd, lr: 0.1}", "{name: adagrad, lr: 0.1}"),
               "schedule: {name: onecycle, max_lr: 0.1}"),
         ("fixed.schedule", "schedule 'onecycle'", "momentum", "cycle_momentum")),
    # a study over batch sizes beyond the 432-example training split trained one point as
    # if it were several
    Case("tuned_batch_sizes_that_each_take_the_whole_split", "science",
         tune("{batch_size: {type: categorical, choices: [32, 500, 1000]}}"),
         ("tune.space.batch_size", "its choices 500 and 1000 would train optimizer=sgd (and "
          "every other configuration) identically", "cover the whole training split",
          "one point as if on two; drop one")),
    Case("tuned_batch_size_range_beyond_the_split", "science",
         tune("{batch_size: {type: int, low: 500, high: 1000}}"),
         ("tune.space.batch_size", "both ends of its range (500 and 1000)",
          "the dimension would tune nothing")),
    Case("tuned_batch_size_of_one_under_batchnorm", "late",
         fixed(tune("{batch_size: {type: int, low: 1, high: 64}}"), "norm: batchnorm"),
         ("tune.space.batch_size", "batch_size 1 with BatchNorm", "tuned to batch_size=1")),
    Case("cnn_on_signals", "late", edit(SIGNALS, "{name: mlp, hidden: [8]}", "cnn"),
         ("task.model", "model 'cnn' needs image inputs", "gives signal inputs",
          "allowed: cnn1d, gru, logistic, mlp")),
    Case("monitor_the_loss_lacks", "late",
         fixed(SIGNALS, "early_stopping: {name: patience, monitor: val_rmse}"),
         ("fixed.early_stopping.monitor", "reports no 'val_rmse'",
          "allowed: val_loss, val_accuracy")),
    Case("regression_loss_on_classes", "late", edit(SIGNALS, "  metric:", "  loss: mse\n  metric:"),
         ("task.loss", "loss 'mse' needs real targets", "has class targets",
          "allowed: bce, bce_with_logits, cross_entropy")),
    Case("compared_metric_the_loss_lacks", "late",
         edit(SIGNALS, "metric: val_accuracy", "metric: test_rmse"),
         ("task.metric", "reports no 'test_rmse'", "allowed: test_loss, test_accuracy")),
    # -- traceback: crashes, hangs and MemoryErrors -------------------------------------------
    Case("infinity_in_a_grid_list", "traceback",
         SIGNALS.replace("activation: [tanh, relu]", "l2: [0.0, .inf]"),
         ("grid.l2[1]", "inf (float)", "0 or a number from")),
    Case("nan_learning_rate", "traceback", edit(SIGNALS, "lr: 0.1", "lr: .nan"),
         ("fixed.optimizer.lr", "nan (float)", "finite number")),
    # a number written as a word or a string passed pydantic's lax mode as 1.0 and 0.05
    Case("learning_rate_true", "science", edit(SIGNALS, "lr: 0.1", "lr: true"),
         ("fixed.optimizer.lr", "expected a number, not a bool", "given True (bool)")),
    Case("learning_rate_quoted", "science", edit(SIGNALS, "lr: 0.1", 'lr: "0.05"'),
         ("fixed.optimizer.lr", "expected a number, not a str", "given '0.05' (str)")),
    Case("quoted_level_of_a_parameter_axis", "science",
         SIGNALS.replace("activation: [tanh, relu]", 'optimizer.lr: [0.1, "0.5"]'),
         ("grid.optimizer.lr[1]", "expected a number, not a str")),
    # a switch written as a number or a word passed as True ("standardize: 1")
    Case("switch_as_number", "science",
         edit(SIGNALS, "num_samples: 600}", "num_samples: 600, standardize: 1}"),
         ("task.dataset.standardize", "expected true or false", "given 1 (int)")),
    Case("width_true", "science", edit(SIGNALS, "hidden: [8]", "hidden: [8, true]"),
         ("task.model.hidden", "expected numbers, not a bool (True)")),
    # counted on the meta device before the dry build allocates it (a width of 10^8 took
    # validate to 20 GB)
    Case("width_beyond_memory", "traceback",
         edit(SIGNALS, "hidden: [8]", "hidden: [1000000000000]"),
         ("task.model", "model 'mlp' has 51,000,000,000,010 parameters for inputs of shape "
          "(40,)", "GiB of free memory; make it smaller")),
    # the stacked engine held every step's schedule: 10^6 epochs took 3.6 GB in a minute
    Case("epochs_beyond_reason", "traceback", edit(SIGNALS, "epochs: 2", "epochs: 100000000000"),
         ("fixed.epochs", "at most 100,000", "100000000000 (int)")),
    Case("infinite_width", "traceback", edit(SIGNALS, "hidden: [8]", "hidden: [8, .inf]"),
         ("task.model.hidden[1]", "inf (float)", "expected a finite number")),
    Case("flow_sequence_as_a_key", "traceback",
         edit(SIGNALS, "  activation: [tanh, relu]", "  [activation, init]: [tanh, relu]"),
         ("line 13, column 3", "a list is used as a key", "keys are names")),
    Case("flow_mapping_as_a_key", "traceback", add(SIGNALS, "{a: 1}: 2\n"),
         ("line 15, column 1", "a mapping is used as a key")),
    Case("number_as_a_parameter_name", "traceback",
         edit(SIGNALS, "{name: sgd, lr: 0.1}", "{name: sgd, 1: 0.1}"),
         ("line 9", "keys are names, got 1 (int)", "quote it")),
    Case("a_billion_seeds", "traceback", SIGNALS.replace("seeds: 2", "seeds: 1000000000"),
         ("seeds", "2 configurations × 1,000,000,000 seeds", "more than max_trials (10,000)",
          "max_trials: 2000000000")),
    Case("a_million_configurations", "traceback",
         SIGNALS.replace("activation: [tanh, relu]",
                         "optimizer.lr: [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, "
                         "0.1]\n"
                         "  optimizer.momentum: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n"
                         "  dropout: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n"
                         "  l1: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n"
                         "  l2: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n"
                         "  epochs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"),
         ("grid", "1,000,000 configurations", "optimizer.lr 10 × optimizer.momentum 10",
          "more than max_trials", "ablate varies one axis at a time")),
    Case("a_billion_optuna_trials", "traceback",
         tune("{optimizer.lr: {low: 0.001, high: 0.1}}").replace("trials: 3",
                                                                   "trials: 1000000000"),
         ("tune.trials", "1,000,000,000 Optuna trials", "max_trials")),
    Case("metric_given_as_a_list", "traceback",
         edit(SIGNALS, "metric: val_accuracy", "metric: [val_accuracy]"),
         ("task.metric", "unknown metric ['val_accuracy'] (list)", "allowed: test_accuracy")),
    Case("component_with_mixed_keys", "traceback",
         edit(SIGNALS, "{name: sgd, lr: 0.1}", "{lr: 0.1}"),
         ("fixed.optimizer", "needs a 'name' key", "sgd", "got keys ['lr']")),
    Case("max_trials_zero", "traceback", add(SIGNALS, "max_trials: 0\n"),
         ("max_trials", "greater than or equal to 1", "0 (int)")),
    Case("seed_beyond_64_bits", "traceback",
         SIGNALS.replace("seeds: 2", "seeds: [1, 100000000000000000000]"),
         ("seeds", "100000000000000000000", "distinct integers from 0 to 2**63 - 1")),
    # -- cli: options and environment, checked before anything is created ----------------------
    Case("tracking_uri_with_one_slash", "cli", SIGNALS,
         ("--tracking-uri 'sqlite:/x.db'", "not a valid URL", "sqlite:///relative.db"),
         ("--tracking-uri", "sqlite:/x.db")),
    Case("tracking_uri_as_a_path", "cli", SIGNALS,
         ("--tracking-uri 'store.db'", "retired file store", "e.g. sqlite:///store.db"),
         ("--tracking-uri", "store.db")),
    Case("tracking_uri_file_without_slashes", "cli", SIGNALS,  # (it gave sqlite examples
         # for a file: URI, "after 'file:' come '//'", which MLflow refuses all the same)
         ("--tracking-uri 'file:./mlruns'", "retired file store", "e.g. sqlite:///mlflow.db"),
         ("--tracking-uri", "file:./mlruns")),
    Case("tracking_uri_file_to_a_database", "cli", SIGNALS,  # (it said sqlite:///file:./s.db)
         ("--tracking-uri 'file:./store.db'", "retired file store", "e.g. sqlite:///store.db,"),
         ("--tracking-uri", "file:./store.db")),
    Case("tracking_uri_in_a_missing_directory", "cli", SIGNALS,
         ("--tracking-uri", "{tmp}/nowhere", "does not exist", "create it first"),
         ("--tracking-uri", "sqlite:///{tmp}/nowhere/store.db")),
    Case("tracking_uri_is_a_directory", "cli", SIGNALS,
         ("--tracking-uri", "is a directory", "name a file"),
         ("--tracking-uri", "sqlite:///{tmp}")),
    Case("tracking_uri_is_not_sqlite", "cli", SIGNALS,
         ("--tracking-uri", "corpus.yaml exists and is not a SQLite database"),
         ("--tracking-uri", "sqlite:///{tmp}/corpus.yaml")),
    Case("tracking_uri_is_a_device", "cli", SIGNALS,
         ("--tracking-uri 'sqlite:////dev/null'", "/dev/null is not a regular file",
          "name a file"),
         ("--tracking-uri", "sqlite:////dev/null")),
    Case("store_and_queue_in_one_file", "cli", SIGNALS,
         ("--tracking-uri 'sqlite:///{tmp}/optuna.db' and the default --storage (optuna.db "
          "next to the store", "are the same SQLite file", "need one each"),
         ("--tracking-uri", "sqlite:///{tmp}/optuna.db")),
    Case("queue_in_the_store_file", "cli", SIGNALS,
         ("--tracking-uri 'sqlite:///{tmp}/mlflow.db' and --storage 'sqlite:///{tmp}/mlflow.db'",
          "are the same SQLite file"),
         ("--tracking-uri", "sqlite:///{tmp}/mlflow.db", "--storage",
          "sqlite:///{tmp}/mlflow.db")),
    Case("tracking_uri_unknown_scheme", "cli", SIGNALS,
         ("--tracking-uri 'postgres://u@localhost/db'", "unknown database 'postgres'",
          "did you mean 'postgresql'"),
         ("--tracking-uri", "postgres://u@localhost/db")),
    Case("tracking_server_unreachable", "cli", SIGNALS,
         ("--tracking-uri 'http://127.0.0.1:9'", "cannot reach the MLflow server",
          "mlflow server --host", "cannot connect yet", "trying again for up to 1 s"),
         ("--tracking-uri", "http://127.0.0.1:9")),
    Case("tracking_uri_from_the_environment", "cli", SIGNALS,
         ("$MLFLOW_TRACKING_URI 'mlruns'", "retired file store"),
         env=(("MLFLOW_TRACKING_URI", "mlruns"),)),
    Case("storage_driver_not_installed", "cli", tune("{optimizer.lr: {low: 0.001, high: 0.1}}"),
         ("--storage 'postgresql+pg8000://u@127.0.0.1/db'", "driver 'pg8000'",
          "not installed", "postgresql+psycopg2://"),
         ("--storage", "postgresql+pg8000://u@127.0.0.1/db"), command="tune"),
    Case("storage_unreachable", "cli", tune("{optimizer.lr: {low: 0.001, high: 0.1}}"),
         ("--storage 'postgresql://nobody@127.0.0.1:9/optuna'", "cannot connect",
          "start the server", "cannot connect yet", "trying again for up to 1 s"),
         ("--storage", "postgresql://nobody@127.0.0.1:9/optuna"), command="tune"),
    Case("storage_unreachable_psycopg2", "cli", tune("{optimizer.lr: {low: 0.001, high: 0.1}}"),
         ("--storage 'postgresql+psycopg2://nobody@127.0.0.1:9/optuna'", "cannot connect",
          "cannot connect yet"),
         ("--storage", "postgresql+psycopg2://nobody@127.0.0.1:9/optuna"), command="tune"),
    Case("submit_folder_under_a_file", "cli", SIGNALS,
         ("--folder '{tmp}/corpus.yaml/jobs'", "corpus.yaml is a file, so the directory "
          "cannot be created"),
         ("--storage", "sqlite:///{tmp}/optuna.db", "--folder", "{tmp}/corpus.yaml/jobs",
          "--local"), command="submit"),
    Case("storage_is_a_path", "cli", tune("{optimizer.lr: {low: 0.001, high: 0.1}}"),
         ("--storage 'optuna.db'", "not a database URL", "sqlite:///PATH.db"),
         ("--storage", "optuna.db"), command="tune"),
    Case("storage_in_a_missing_directory", "cli", tune("{optimizer.lr: {low: 0.001, high: 0.1}}"),
         ("--storage", "{tmp}/nowhere", "does not exist"),
         ("--storage", "sqlite:///{tmp}/nowhere/optuna.db"), command="tune"),
    Case("report_dir_is_a_file", "cli", SIGNALS,
         ("--report-dir", "corpus.yaml", "is a file, not a directory"),
         ("--report-dir", "{tmp}/corpus.yaml")),
    Case("report_dir_below_a_file", "cli", SIGNALS,
         ("--report-dir", "corpus.yaml is a file, so the directory cannot be created"),
         ("--report-dir", "{tmp}/corpus.yaml/reports")),
    Case("unknown_device", "cli", SIGNALS,
         ("--device 'tpu'", "unsupported device 'tpu'", "allowed: auto, cpu, cuda, cuda:N"),
         ("--device", "tpu")),
    Case("run_id_that_is_not_one", "cli", SIGNALS,
         ("RUN_ID 'trial-3'", "not an MLflow run id", "32 hexadecimal digits"),
         command="evaluate:trial-3"),
    Case("run_id_that_is_a_trial_id", "cli", SIGNALS,
         ("RUN_ID 'd449661699a019d7'", "16 digits are a trial id",
          "the 32-digit one beside it in the report's trial table"),
         command="evaluate:d449661699a019d7"),
    Case("evaluate_in_a_missing_store", "cli", SIGNALS,
         ("--tracking-uri", "{tmp}/none.db does not exist", "run the suite first"),
         ("--tracking-uri", "sqlite:///{tmp}/none.db"),
         command="evaluate:0123456789abcdef0123456789abcdef"),
    Case("report_from_a_missing_store", "cli", SIGNALS,
         ("--tracking-uri", "{tmp}/none.db does not exist", "nothing has been logged"),
         ("--tracking-uri", "sqlite:///{tmp}/none.db"), command="report"),
    Case("run_id_ending_in_a_newline", "cli", SIGNALS,
         ("RUN_ID '0123456789abcdef0123456789abcdef\\n'", "not an MLflow run id"),
         command="evaluate:0123456789abcdef0123456789abcdef\n"),
    Case("tracking_uri_with_sqlite_options", "cli", SIGNALS,
         ("--tracking-uri 'sqlite:///{tmp}/store.db?mode=ro'", "query options other than "
          "timeout are not taken (given: mode)", "drop '?mode=ro'"),
         ("--tracking-uri", "sqlite:///{tmp}/store.db?mode=ro")),
    Case("tracking_uri_databricks_without_credentials", "cli", SIGNALS,
         ("--tracking-uri 'databricks'", "no credentials for a Databricks workspace",
          "DATABRICKS_HOST"),
         ("--tracking-uri", "databricks")),
    Case("status_with_a_tracking_uri_that_is_a_path", "cli", SIGNALS,
         ("--tracking-uri 'plain'", "retired file store"),
         ("--tracking-uri", "plain"), command="status"),
    Case("status_with_one_file_for_both_stores", "cli", SIGNALS,
         ("--tracking-uri 'sqlite:///{tmp}/optuna.db'", "are the same SQLite file"),
         ("--tracking-uri", "sqlite:///{tmp}/optuna.db"), command="status"),
    Case("status_with_an_unreachable_tracking_store", "cli",
         tune("{optimizer.lr: {low: 0.001, high: 0.1}}"),
         ("--tracking-uri 'postgresql://nobody@127.0.0.1:9/mlflow'", "cannot connect",
          "trying again for up to 1 s"),
         ("--tracking-uri", "postgresql://nobody@127.0.0.1:9/mlflow"), command="status"),
    Case("bench_given_a_suite_file", "cli", SIGNALS,
         ("a suite file (it has `task:`), not a benchmark file", "nnbench run"),
         command="bench"),
    Case("worker_parent_run_that_is_not_a_run_id", "cli", SIGNALS,
         ("--parent-run: RUN_ID 'xyz' is not an MLflow run id",),
         ("--parent-run", "xyz"), command="worker"),
    Case("worker_parent_run_not_in_the_store", "cli", SIGNALS,
         ("--parent-run 0123456789abcdef0123456789abcdef: a coordinator's invocation run of "
          "suite corpus", "holds no runs yet"),
         ("--parent-run", "0123456789abcdef0123456789abcdef"), command="worker"),
    Case("tune_a_suite_without_tune", "cli", SIGNALS,
         ("tune: missing", "needs a tune: block"), command="tune"),
    Case("run_a_tuned_suite", "cli", tune("{optimizer.lr: {low: 0.001, high: 0.1}}"),
         ("tune: the suite tunes its nuisance axes", "nnbench tune")),
    # -- yaml: encodings, characters, constructs ----------------------------------------------
    Case("alias_bomb", "yaml",
         "name: bomb\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, "
         "*a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, "
         "*c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, "
         "*e, *e, *e, *e, *e, *e, *e, *e]\n",
         ("line 6, column 4", "expands to more than 100,000 values", "fewer nested aliases")),
    Case("mnist1d_of_a_billion", "traceback",
         edit(SIGNALS, "num_samples: 600", "num_samples: 1000000000"),
         ("task.dataset.num_samples", "less than or equal to 200000", "given 1000000000")),
    Case("gru_of_a_thousand_layers", "traceback",
         edit(SIGNALS, "model: {name: mlp, hidden: [8]}", "model: {name: gru, layers: 1000}"),
         ("task.model.layers", "less than or equal to 64", "given 1000")),
    Case("circles_seed_beyond_random_state", "late",
         edit(CIRCLES, "n_samples: 200", "n_samples: 200, data_seed: 99999999999"),
         ("task.dataset.data_seed", "less than or equal to 4294967295", "given 99999999999")),
    Case("reference_metric_never_logged", "science",
         add(SIGNALS, "reference:\n  source: X\n  metric: test_rmse\n  results:\n"
                      "    - {where: {activation: relu}, value: 0.5}\n"),
         ("reference.metric", "test_rmse is logged by no configuration of the suite",
          "could never be compared", "test_accuracy")),
    # a ReLU-family measure on a tanh row: the report said "no trial it selects has finished"
    Case("reference_row_that_never_logs_its_metric", "science",
         add(SIGNALS, "reference:\n  source: X\n  metric: dead_fraction\n  results:\n"
                      "    - {where: {activation: relu}, value: 0.5}\n"
                      "    - {where: {activation: tanh}, value: 0.5}\n"),
         ("reference.results[1].where: selects activation=tanh, which never logs "
          "dead_fraction, so this row could never be compared",)),
    # thresholds an accuracy's error never reaches: the fit diagnosis flagged nothing, unsaid
    Case("fit_thresholds_past_one_on_accuracies", "science",
         add(SIGNALS, "report: {overfit_gap: 5, underfit_error: 1}\n"),
         ("report.overfit_gap: 5 is never exceeded: the gap, validation minus training error "
          "(each 1 - accuracy here), is at most 1", "report.underfit_error: 1 is never "
          "exceeded", "give it as a fraction below 1")),
    Case("reference_url_that_urllib_cannot_split", "science",  # a ValueError, unreported
         add(SIGNALS, "reference:\n  source: X\n  url: 'http://[arxiv.org/abs/1'\n  results:\n"
                      "    - {where: {activation: relu}, value: 0.5}\n"),
         ("reference.url: expected a web address", "'http://[arxiv.org/abs/1'")),
    Case("init_constant_an_integer_past_a_double", "late",  # OverflowError, blamed on nnbench
         edit(SIGNALS, "init: kaiming_normal", "init: {name: constant, value: " + "1" * 400 + "}"),
         ("fixed.init.value", "beyond float32's range")),
    # the report links the url: a javascript: one ran in the reader's browser on a click
    Case("reference_url_that_is_no_web_address", "science",
         add(SIGNALS, "reference:\n  source: X\n  url: 'javascript:alert(1)'\n  results:\n"
                      "    - {where: {activation: relu}, value: 0.5}\n"),
         ("reference.url: expected a web address (http:// or https://, with a host), got "
          "'javascript:alert(1)'",)),
    Case("reference_tolerance_past_a_fraction", "science",  # every row read "reproduced"
         add(SIGNALS, "reference:\n  source: X\n  tolerance: 5\n  results:\n"
                      "    - {where: {activation: relu}, value: 0.5}\n"),
         ("reference.tolerance: 5 on val_accuracy, whose values span 1 at most, makes every "
          "row reproduced; give it as a fraction (0.01 for a point of accuracy)",)),
    Case("reference_sparsity_as_a_percentage", "science",
         add(SIGNALS, "reference:\n  source: X\n  metric: weight_sparsity\n  results:\n"
                      "    - {where: {activation: relu}, value: 50}\n"),
         ("reference.results[0].value: expected a weight_sparsity in [0, 1] (a fraction, not "
          "a percentage), got 50",)),
    Case("reference_gap_beyond_one", "science",
         add(SIGNALS, "reference:\n  source: X\n  metric: gap_accuracy\n  results:\n"
                      "    - {where: {activation: relu}, value: -5}\n"),
         ("reference.results[0].value: expected a gap_accuracy in [-1, 1] (train minus "
          "validation accuracy), got -5",)),
    Case("dampening_without_momentum", "science",
         add(SIGNALS.replace("grid:\n  activation: [tanh, relu]\n", ""),
             "grid:\n  optimizer: [{name: sgd, lr: 0.1}, {name: sgd, lr: 0.1, "
             "dampening: 0.5}]\n"),
         ("grid.optimizer[1]", "train identically")),
    Case("lr_beyond_float32", "late", edit(SIGNALS, "lr: 0.1", "lr: 1e300"),
         ("fixed.optimizer.lr", "beyond float32's range", "given 1e+300")),
    # every component's numbers, and the penalties: an init constant of 1e39 diverged every
    # trial, a BatchNorm eps of 1e300 trained at chance, both after "ok" from validate
    Case("init_constant_beyond_float32", "late",
         edit(SIGNALS, "init: kaiming_normal", "init: {name: constant, value: 1e39}"),
         ("fixed.init.value", "beyond float32's range (±3.4e+38), in which training computes",
          "allowed: a magnitude up to 3.4e+38", "given 1e+39")),
    Case("batchnorm_eps_beyond_float32", "late",
         fixed(SIGNALS, "norm: {name: batchnorm, eps: 1.0e+300}"),
         ("fixed.norm.eps", "beyond float32's range", "given 1e+300")),
    Case("weight_decay_beyond_float32", "late",
         edit(SIGNALS, "lr: 0.1", "lr: 0.1, weight_decay: 1.0e+300"),
         ("fixed.optimizer.weight_decay", "beyond float32's range", "given 1e+300")),
    Case("l2_beyond_float32", "late", fixed(SIGNALS, "l2: 1.0e+300"),
         ("fixed.l2", "0 or a number from 1.18e-38 to 3.4e+38 (float32's normal range), "
          "got 1e+300")),
    # and below its smallest normal number: an lr of 1e-50 is 0 in float32, and trained
    # nothing after "ok" from validate
    Case("lr_below_float32", "science", edit(SIGNALS, "lr: 0.1", "lr: 1.0e-50"),
         ("fixed.optimizer.lr", "below float32's smallest normal number (1.18e-38)",
          "it would be 0 there", "allowed: a magnitude from 1.18e-38", "given 1e-50")),
    Case("eps_subnormal_in_float32", "science",
         edit(SIGNALS, "{name: sgd, lr: 0.1}", "{name: adam, lr: 0.01, eps: 1.0e-40}"),
         ("fixed.optimizer.eps", "below float32's smallest normal number", "given 1e-40")),
    Case("l2_below_float32", "science", fixed(SIGNALS, "l2: 1.0e-45"),
         ("fixed.l2", "0 or a number from 1.18e-38", "got 1e-45")),
    Case("dropout_below_float32", "science", fixed(SIGNALS, "dropout: 1.0e-39"),
         ("fixed.dropout", "a probability in [0, 1) (0, or from 1.18e-38", "got 1e-39")),
    # past a float's range: it was read as infinity, and refused as "given inf"
    Case("lr_beyond_float64", "yaml", edit(SIGNALS, "lr: 0.1", "lr: 1e400"),
         ("line ", "1e400 is beyond the range of a float (about ±1.8e308); where an infinity "
          "is meant, write .inf")),
    Case("int_tag_on_text", "yaml", edit(SIGNALS, "epochs: 2", "epochs: !!int abc"),
         ("line ", "int 'abc' is not an integer")),
    Case("int_tag_on_text_validated", "yaml", edit(SIGNALS, "epochs: 2", "epochs: !!int abc"),
         ("line ", "int 'abc' is not an integer"), command="validate"),
    Case("float_tag_on_text", "yaml", fixed(SIGNALS, "dropout: !!float abc"),
         ("line ", "float 'abc' is not a number")),
    Case("bool_tag_on_yes", "yaml", add(SIGNALS, "checkpoint: !!bool yes\n"),
         ("line ", "bool 'yes' is not true or false (YAML 1.2)")),
    Case("alias_to_itself", "yaml", add(SIGNALS, "loop: &loop [1, *loop]\n"),
         ("line 15", "a cycle")),
    Case("latin1_file", "yaml", SIGNALS.replace("name: corpus", "name: corpus\ndescription: "
                                                                "café").encode("latin-1"),
         ("line 2, column 17", "not valid UTF-8", "byte 0xe9", "Windows-1252",
          "save it as UTF-8")),
    Case("no_break_space_indentation", "yaml", SIGNALS.replace("  epochs: 2", "\u00a0 epochs: 2"),
         ("line 10, column 1", "U+00A0 (NO-BREAK SPACE)", "replace it with a space")),
    Case("no_break_space_after_colon", "yaml", SIGNALS.replace("epochs: 2", "epochs:\u00a02"),
         ("line 10, column 10", "U+00A0 (NO-BREAK SPACE)")),
    Case("tab_indentation", "yaml", SIGNALS.replace("  epochs: 2", "\tepochs: 2"),
         ("line 10, column 1", "a tab in the indentation", "spaces only")),
    Case("zero_width_space_in_a_value", "yaml",
         SIGNALS.replace("[tanh, relu]", "[tanh, relu\u200b]"),
         ("line 13, column 26", "U+200B (ZERO WIDTH SPACE)", "delete it")),
    Case("control_character", "yaml", SIGNALS.replace("name: corpus", "name: corpus\x07"),
         ("line 1, column 13", "U+0007", "cannot appear in YAML")),
    Case("early_stopping_off", "yaml", fixed(SIGNALS, "early_stopping: off"),
         ("fixed.early_stopping", "unknown early_stopping 'off' (str)",
          "known: none, patience")),
    Case("checkpoint_yes", "yaml", add(SIGNALS, "checkpoint: yes\n"),
         ("checkpoint", "expected true or false", "'yes' (str)", "YAML 1.2")),
    Case("duplicate_key", "yaml", edit(SIGNALS, "  epochs: 2\n", "  epochs: 2\n  epochs: 3\n"),
         ("line 11, column 3", "duplicate key 'epochs'", "first given on line 10")),
    Case("empty_file", "yaml", "",
         ("the file holds nothing (it is empty, or comments only); a suite file is a "
          "mapping", "name, description, task")),
    Case("truncated_utf16", "yaml", codecs.BOM_UTF16_LE + SIGNALS.encode("utf-16-le")[:-1],
         ("not valid UTF-16", "save it as UTF-8")),
    Case("unclosed_bracket", "yaml", edit(SIGNALS, "[tanh, relu]", "[tanh, relu"),
         ("line 14, column 6", "invalid YAML", "expected ',' or ']'", "started on line 13",
          "the line reads 'seeds: 2'")),
    Case("python_object_tag", "yaml", add(SIGNALS, "report: !!python/object:os.system {}\n"),
         ("line 15", "invalid YAML", "could not determine a constructor")),
    Case("tune_key_left_empty", "yaml", add(SIGNALS, "tune:\n"),
         ("tune: expected a mapping with keys space, trials", "given None (NoneType)")),
    Case("list_instead_of_a_suite", "yaml", "- name: corpus\n- seeds: 2\n",
         ("a suite file must be a mapping", "(list)", "name, description, task")),
    # -- names: experiment and file names -------------------------------------------------------
    Case("name_index", "names", SIGNALS.replace("name: corpus", "name: index"),
         ("name", "'index' is reserved", "reports/index.html", "choose another name")),
    Case("name_Index", "names", SIGNALS.replace("name: corpus", "name: Index"),
         ("name", "'Index' is reserved")),
    Case("name_mlflow_default", "names", SIGNALS.replace("name: corpus", "name: Default"),
         ("name", "'Default' is reserved", "MLflow's own default experiment")),
    Case("name_windows_device", "names", SIGNALS.replace("name: corpus", "name: con"),
         ("name", "'con' cannot be a file name on Windows")),
    Case("name_too_long", "names", SIGNALS.replace("name: corpus", "name: " + "x" * 101),
         ("name", "at most 100", "xxxxxxxx")),
    Case("name_trailing_dot", "names", SIGNALS.replace("name: corpus", "name: corpus."),
         ("name", "'corpus.' ends with '.'")),
    Case("name_with_a_slash", "names", SIGNALS.replace("name: corpus", "name: a/b"),
         ("name", "'a/b' (str)", "letters, digits")),
    Case("name_with_an_umlaut", "names", SIGNALS.replace("name: corpus", "name: wü"),
         ("name", "'wü' (str)", "ASCII letters, digits")),  # it said "letters"
    Case("name_ending_in_a_newline", "names", SIGNALS.replace("name: corpus", 'name: "corpus\\n"'),
         ("name", "'corpus\\n' (str)", "letters, digits")),  # it named files "corpus⏎.html"
    Case("name_missing", "names", SIGNALS.replace("name: corpus\n", ""),
         ("name: missing", "letters, digits")),
]


def _screen_lines(text: str) -> int:
    return sum(max(1, math.ceil(len(line) / SCREEN_COLUMNS)) for line in text.splitlines())


def _argv(case: Case, path: Path, tmp: Path) -> list[str]:
    args = [a.replace("{tmp}", str(tmp)) for a in case.args]
    command, _, run_id = case.command.partition(":")
    if command == "evaluate":
        return ["evaluate", run_id, *args]
    if command == "validate":  # no store, no report: only the file
        return ["validate", str(path), *args]
    defaults = {"--tracking-uri": f"sqlite:///{tmp / 'store.db'}"}
    if command not in ("status", "worker"):
        defaults["--report-dir"] = str(tmp / "reports")
    if command in ("tune", "worker"):
        defaults["--storage"] = f"sqlite:///{tmp / 'optuna.db'}"
    if command in ("run", "tune", "worker"):
        defaults["--device"] = "cpu"
    for option, value in defaults.items():
        if option not in args and not (option == "--tracking-uri" and case.env):
            args += [option, value]
    return [command, str(path), *args]


def _created(tmp: Path) -> list[str]:
    """What a rejected command must not have made in its directory."""
    names = ("mlflow.db", "store.db", "optuna.db", "reports", "mlruns", "mlartifacts",
             "x.db", "nowhere")
    return [n for n in names if (tmp / n).exists()]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_rejected_before_anything_is_created(
        case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "corpus.yaml"
    content = case.suite if isinstance(case.suite, bytes) else case.suite.encode()
    path.write_bytes(content)
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(cli_checks, "CONNECT_WAIT", 1.0)  # a refused server: 1 s, not 10

    code = cli.main(_argv(case, path, tmp_path))

    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 2, output
    assert "Traceback" not in output
    if case.category != "cli" or case.id.startswith(("tune_a_", "run_a_")):
        assert f"{path}: " in captured.err, captured.err  # the file is named
    for fragment in case.fragments:
        fragment = fragment.replace("{tmp}", str(tmp_path))
        assert fragment in captured.err, f"{fragment!r} missing from:\n{captured.err}"
    assert not _created(tmp_path), _created(tmp_path)
    assert _screen_lines(output) <= SCREEN_LINES, f"more than a screen:\n{output}"


def test_the_corpus_covers_every_category() -> None:
    counts = Counter(c.category for c in CASES)
    assert sum(counts.values()) >= 80
    assert set(counts) == {"science", "late", "traceback", "cli", "yaml", "names"}
    assert min(counts.values()) >= 7, counts
    assert len({c.id for c in CASES}) == len(CASES)


def test_a_run_against_an_existing_store_leaves_no_run(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """A tune with an unreachable storage must not leave a RUNNING parent run behind."""
    monkeypatch.setattr(cli_checks, "CONNECT_WAIT", 1.0)  # a refused server: 1 s, not 10
    good = tmp_path / "good.yaml"
    good.write_text(SIGNALS.replace("epochs: 2", "epochs: 1").replace("seeds: 2", "seeds: 1"))
    store = f"sqlite:///{tmp_path / 'store.db'}"
    assert cli.main(["run", str(good), "--tracking-uri", store, "--device", "cpu",
                     "--report-dir", str(tmp_path / "r")]) == 0
    runs_before = _runs(tmp_path / "store.db")
    bad = tmp_path / "bad.yaml"
    bad.write_text(tune("{optimizer.lr: {low: 0.001, high: 0.1}}"))
    capsys.readouterr()
    code = cli.main(["tune", str(bad), "--tracking-uri", store, "--device", "cpu",
                     "--storage", "postgresql://nobody@127.0.0.1:9/optuna",
                     "--report-dir", str(tmp_path / "r")])
    assert code == 2
    assert "cannot connect" in capsys.readouterr().err
    assert _runs(tmp_path / "store.db") == runs_before


def _runs(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return sorted(con.execute("select run_uuid, status from runs").fetchall())


def test_two_suites_whose_names_differ_only_in_case(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(SIGNALS)
    second.write_text(SIGNALS.replace("name: corpus", "name: Corpus"))
    assert cli.main(["validate", str(first), str(second)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{first}, {second}: 2 suite files share the name 'corpus' (names "
                          f"are compared ignoring case, as file names are on macOS and Windows: "
                          f"{first} says 'corpus', {second} says 'Corpus'); names must be unique")
    assert not _created(tmp_path)


def test_every_file_sharing_a_name_is_named(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    paths = [tmp_path / f"{letter}.yaml" for letter in "abc"]
    for path in paths:
        path.write_text(SIGNALS)
    other = tmp_path / "other.yaml"
    other.write_text(SIGNALS.replace("name: corpus", "name: other"))
    assert cli.main(["run", *map(str, paths), str(other), "--tracking-uri",
                     f"sqlite:///{tmp_path / 'mlflow.db'}", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        f"{paths[0]}, {paths[1]}, {paths[2]}: 3 suite files share the name 'corpus'; names "
        f"must be unique (they name the MLflow experiment and the report): rename all but "
        f"one\n")
    assert cli.main(["validate", str(other), str(other)]) == 2  # one file given twice
    assert capsys.readouterr().err == f"{other}: given 2 times; name each suite file once\n"
    assert not _created(tmp_path)


def test_many_problems_are_counted_not_printed(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    values = ", ".join(f"bad{i}" for i in range(60))
    path = tmp_path / "many.yaml"
    path.write_text(SIGNALS.replace("[tanh, relu]", f"[{values}]"))
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "... and 50 more problems" in err
    assert _screen_lines(err) <= SCREEN_LINES


def test_a_huge_value_is_described_in_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(SIGNALS.replace("name: corpus", "name: " + "y" * 5_000_000))
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err) < 2000
    assert "yyy...yyy" in err


@pytest.mark.parametrize("command", ["validate", "run", "bench"])
def test_a_named_pipe_nothing_writes_to_is_refused_not_waited_on(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`nnbench validate suite.yaml` where suite.yaml is a FIFO with no writer waited for
    ever (opening a FIFO waits for a writer)."""
    monkeypatch.chdir(tmp_path)
    fifo = tmp_path / "suite.yaml"
    os.mkfifo(fifo)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(cli.main([command, str(fifo)])),
                              daemon=True)
    thread.start()
    thread.join(60)
    assert codes == [2], "the command still waits on the pipe after 60 s"
    what = "benchmark file" if command == "bench" else "suite file"
    assert (f"{fifo}: is a named pipe (FIFO) with nothing to read (nothing writes to it), "
            f"not a {what}") in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.yaml"]


def test_a_pipe_being_written_is_read_once_as_a_suite(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`nnbench validate <(cat suite.yaml)`: the shell hands over a pipe that is being
    written; validate read it twice (is it a benchmark file? then the suite), the second
    time empty."""
    read, write = os.pipe()

    def write_suite() -> None:
        os.write(write, SIGNALS.encode())
        os.close(write)

    writer = threading.Thread(target=write_suite)
    writer.start()
    try:
        assert cli.main(["validate", f"/dev/fd/{read}"]) == 0, capsys.readouterr().err
    finally:
        writer.join()
        os.close(read)
    assert f"/dev/fd/{read}: ok" in capsys.readouterr().out


def test_a_device_is_refused_not_read() -> None:
    """`nnbench validate /dev/zero` read for ever (and filled the memory); /dev/null read as
    an empty suite. In a process of its own, its memory capped: a regression fails, never
    takes the machine's memory."""
    code = ("import resource\n"
            "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
            "from nnbench import cli\n"
            "raise SystemExit(cli.main(['validate', '/dev/zero', '/dev/null']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        "/dev/zero: cannot read suite file: it is a device, not a file",
        "/dev/null: cannot read suite file: it is a device, not a file"]


# -- unusual but valid ---------------------------------------------------------------------------

MERGE_KEYS = """\
name: corpus
task:
  dataset: {name: mnist1d, num_samples: 600}
  model: {name: mlp, hidden: [8]}
  metric: val_accuracy
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: &sgd {name: sgd, lr: 0.1}
  epochs: 2
  batch_size: 32
grid:
  optimizer:
    - *sgd
    - <<: *sgd
      momentum: 0.9
    - {<<: *sgd, lr: 0.05}
seeds: 2
"""
MERGED = SIGNALS.replace("activation: [tanh, relu]", "optimizer: [{name: sgd, lr: 0.1}, "
                         "{name: sgd, lr: 0.1, momentum: 0.9}, {name: sgd, lr: 0.05}]")

VALID: list[tuple[str, bytes, str]] = [  # id, file content, the plain suite it equals
    ("utf16_le_bom", codecs.BOM_UTF16_LE + SIGNALS.encode("utf-16-le"), SIGNALS),
    ("utf16_be_bom", codecs.BOM_UTF16_BE + SIGNALS.encode("utf-16-be"), SIGNALS),
    ("utf16_le_without_bom", SIGNALS.encode("utf-16-le"), SIGNALS),
    ("utf32_le_without_bom", SIGNALS.encode("utf-32-le"), SIGNALS),  # was read as UTF-16
    ("utf32_be_without_bom", SIGNALS.encode("utf-32-be"), SIGNALS),
    ("utf8_bom", codecs.BOM_UTF8 + SIGNALS.encode(), SIGNALS),
    ("crlf", SIGNALS.replace("\n", "\r\n").encode(), SIGNALS),
    ("utf16_crlf_like_powershell",
     codecs.BOM_UTF16_LE + SIGNALS.replace("\n", "\r\n").encode("utf-16-le"), SIGNALS),
    ("exponent_without_a_dot", fixed(edit(SIGNALS, "lr: 0.1", "lr: 1e-1"), "l2: 1e-4").encode(),
     fixed(SIGNALS, "l2: 0.0001")),
    ("exponent_with_a_dot", fixed(edit(SIGNALS, "lr: 0.1", "lr: 1.0e-1"), "l2: 1.0E-4").encode(),
     fixed(SIGNALS, "l2: 0.0001")),
    ("merge_keys", MERGE_KEYS.encode(), MERGED),
    ("no_break_space_in_text", SIGNALS.replace("name: corpus",
                                               "name: corpus\ndescription: 10\u00a0%").encode(),
     SIGNALS),
    ("tab_in_quoted_text", SIGNALS.replace("name: corpus",
                                           'name: corpus\ndescription: "a\tb"').encode(), SIGNALS),
    ("tab_in_a_comment_line", SIGNALS.replace("seeds: 2", "seeds: 2\n#\tthe end").encode(),
     SIGNALS),
]


@pytest.mark.parametrize(("content", "plain"), [(c, p) for _, c, p in VALID],
                         ids=[i for i, _, _ in VALID])
def test_unusual_but_valid_input_is_accepted(content: bytes, plain: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "unusual.yaml"
    path.write_bytes(content)
    reference = tmp_path / "plain.yaml"
    reference.write_text(plain, encoding="utf-8")

    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert f"{path}: ok" in capsys.readouterr().out
    assert [t.trial_id for t in load_suite(path).trials()] == \
        [t.trial_id for t in load_suite(reference).trials()]


# near the new checks' edges, and valid: each once refused, or nearly, by one of them
EDGES = {
    # a warm-up's LinearLR lowers the group's lr first: eta_min is judged against 0.1
    "eta_min_under_the_lr_after_a_warm_up": edit(fixed(
        SIGNALS, "schedule: {name: cosine, warmup: 2, eta_min: 0.05}"), "epochs: 2", "epochs: 6"),
    # 5 steps in 6 epochs: T_max 5 reaches eta_min at the last epoch, never climbs back
    "t_max_of_the_steps_the_run_takes": edit(fixed(
        SIGNALS, "schedule: {name: cosine, T_max: 5}"), "epochs: 2", "epochs: 6"),
    # an ablation of a parameter applies to the fixed step schedule, not the grid's constant
    "ablated_parameter_of_the_fixed_component_only": fixed(
        SIGNALS.replace("grid:\n  activation: [tanh, relu]\n",
                        "grid:\n  schedule: [{name: step, step_size: 1}, constant]\n"
                        "ablate:\n  schedule.gamma: [0.5]\n"),
        "schedule: {name: step, step_size: 1}"),
    # the fixed start factor applies to the grid's warmed-up configurations: a comparison
    "warmup_start_factor_with_a_warmup_grid": edit(fixed(
        SIGNALS, "schedule: {name: cosine, warmup_start_factor: 0.5}"),
        "activation: [tanh, relu]", "schedule.warmup: [0, 1]"),
    "batch_interval_of_a_constant_lr_warming_up": fixed(
        SIGNALS, "schedule: {name: constant, interval: batch, warmup: 3}"),
    # float32's smallest normal number itself, and a penalty just above it
    "lr_at_float32_s_smallest_normal_number": edit(SIGNALS, "lr: 0.1",
                                                   "lr: 1.1754943508222875e-38"),
    "l2_just_above_float32_s_smallest_normal_number": fixed(SIGNALS, "l2: 1.2e-38"),
    "three_phase_onecycle_under_half": fixed(
        edit(SIGNALS, "{name: sgd, lr: 0.1}", "sgd"),
        "schedule: {name: onecycle, max_lr: 0.1, three_phase: true, pct_start: 0.4}"),
    # the optimizer's lr and momentum beside onecycle, which replaces them: written by habit
    "lr_and_momentum_under_onecycle": fixed(
        edit(SIGNALS, "{name: sgd, lr: 0.1}", "{name: sgd, lr: 0.1, momentum: 0.9, "
                                              "nesterov: true}"),
        "schedule: {name: onecycle, max_lr: 0.2}"),
    # tune spaces that turn the setting on in some trials
    "start_factor_with_a_tuned_warmup": add(fixed(
        SIGNALS, "schedule: {name: cosine, warmup_start_factor: 0.5}"),
        "tune:\n  space: {schedule.warmup: {type: int, low: 0, high: 1}}\n  trials: 2\n"),
    "dampening_with_a_tuned_momentum": add(edit(
        SIGNALS, "lr: 0.1", "lr: 0.1, dampening: 0.5"),
        "tune:\n  space: {optimizer.momentum: {low: 0.5, high: 0.9}}\n  trials: 3\n"),
    "momentum_bounds_with_a_tuned_cycle": add(fixed(
        edit(SIGNALS, "{name: sgd, lr: 0.1}", "sgd"),
        "schedule: {name: onecycle, max_lr: 0.2, cycle_momentum: true, base_momentum: 0.8}"),
        "tune:\n  space: {schedule.cycle_momentum: {type: categorical, choices: [true, "
        "false]}}\n  trials: 2\n"),
    # onecycle cycles the momentum that the dampening damps
    "dampening_of_momentum_onecycle_cycles": fixed(
        edit(SIGNALS, "{name: sgd, lr: 0.1}", "{name: sgd, dampening: 0.5}"),
        "schedule: {name: onecycle, max_lr: 0.1}"),
    # the fixed lr is onecycle's to override, and constant's to train with
    "lr_beside_a_onecycle_grid": edit(SIGNALS, "activation: [tanh, relu]",
                                      "schedule: [constant, {name: onecycle, max_lr: 0.1}]"),
}


@pytest.mark.parametrize("name", list(EDGES))
def test_valid_suites_at_the_edges_of_a_check_are_accepted(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(EDGES[name])
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_a_schedule_whose_lr_leaves_float32_s_range_is_refused() -> None:
    """A plugin schedule multiplying the lr by 1e30 an epoch: 0.1, 1e29, then 1e59, which
    is inf in float32 (the built-ins cannot get there: their numbers are in float32's range
    and onecycle's div_factor is at least 1)."""
    from torch.optim import lr_scheduler

    from nnbench.components.schedules import Schedule
    from nnbench.registry import ComponentInfo, NoParams, register, unregister

    def build(params: NoParams, optimizer: Any, epochs: int, steps_per_epoch: int) -> Schedule:
        return Schedule(lr_scheduler.LambdaLR(optimizer, lambda epoch: 1e30 ** epoch), "epoch")

    register(ComponentInfo(kind="schedule", name="explode", build=build, params=NoParams,
                           doc="lr × 1e30 every epoch"))
    try:
        with pytest.raises(SuiteError) as err:
            parse_suite(edit(fixed(SIGNALS, "schedule: explode"), "epochs: 2", "epochs: 3"))
        assert [line.partition(": ")[2] for line in err.value.lines()] == [
            "fixed.schedule: the learning rate reaches 1e+59 at epoch 3 of 3, beyond float32's "
            "range (±3.4e+38), in which training computes; allowed: a schedule whose lr stays "
            "within it"]
        parse_suite(fixed(SIGNALS, "schedule: explode"))  # 2 epochs: 1e29 at most
    finally:
        unregister("schedule", "explode")


def test_a_plugin_parameter_may_be_called_unused() -> None:
    """The check of settings without effect asks each component's parameters which of them
    their values disable; a plugin's own parameter named `unused` (a field of that name)
    made it fail as 'bool object is not callable'."""
    from torch import nn

    from nnbench.registry import ComponentInfo, Params, register, unregister

    class Flagged(Params):
        unused: bool = False

    register(ComponentInfo(kind="activation", name="flagged", build=lambda p: nn.ReLU(),
                           params=Flagged, doc="relu with a flag",
                           attrs={"gain": lambda p: ("relu", None)}))
    try:
        suite = parse_suite(edit(SIGNALS, "activation: [tanh, relu]",
                                 "activation: [relu, {name: flagged, unused: true}]"))
        assert [c.activation.kwargs for c in suite.configurations()] == [{}, {"unused": True}]
    finally:
        unregister("activation", "flagged")


def test_an_infinite_clip_norm_is_a_valid_value(tmp_path: Path) -> None:
    path = tmp_path / "clip.yaml"
    path.write_text(fixed(SIGNALS, "grad_clip: {name: norm, norm_type: .inf}"))
    trials = load_suite(path).trials()
    assert trials[0].grad_clip.kwargs["norm_type"] == math.inf
    assert re.fullmatch(r"[0-9a-f]{16}", trials[0].trial_id)


def test_validation_in_a_fresh_process_imports_no_tracking_or_tuning(tmp_path: Path,
                                                                     vision_data: Path) -> None:
    """`nnbench validate` pays for what the dry build needs (torch), not for MLflow,
    Optuna, pandas, scikit-learn or torchvision (it finds the torchvision suites' files
    from $NNBENCH_DATA, set by `vision_data`, without torchvision)."""
    from tests.conftest import REPO

    code = ("import sys; from nnbench import cli; code = cli.main(['validate', *sys.argv[1:]]); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'optuna', "
            "'pandas', 'seaborn', 'matplotlib', 'sklearn', 'scipy', 'torchvision', 'mnist1d', "
            "'sqlalchemy'}); print('HEAVY', heavy); sys.exit(code)")
    suites = sorted(str(p) for p in (REPO / "suites").glob("*.yaml"))
    result = subprocess.run([sys.executable, "-c", code, *suites], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_a_bad_suite_in_a_fresh_process_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SIGNALS.replace("[tanh, relu]", "[tanh, relu").replace("seeds: 2", ""))
    result = subprocess.run([sys.executable, "-m", "nnbench.cli", "run", str(path)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid YAML" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(("top", "problems"), [
    ("seeds: 2", []),  # the same seeds in both places: nothing unused
    ("seeds: [0, 1]", []),
    ("seeds: 3", ["a tuned suite trains its re-runs over tune.seeds (given 2); these seeds "
                  "(3) would not be used"]),
    ("seeds:", ["expected"]),  # empty: its own problem, once
])
def test_seeds_beside_tune_seeds(top: str, problems: list[str]) -> None:
    text = add(SIGNALS.replace("seeds: 2", top),
               "tune:\n  space: {optimizer.lr: {low: 0.001, high: 0.1}}\n  trials: 3\n"
               "  seeds: 2\n")
    if not problems:
        assert parse_suite(text).tune is not None
        return
    with pytest.raises(SuiteError) as raised:
        parse_suite(text)
    found = [m for k, m in raised.value.problems if k == "seeds"]
    assert len(found) == 1 and problems[0] in found[0], raised.value.problems


def test_an_unknown_tune_objective_is_the_only_problem_said_of_it() -> None:
    """`objective: {metric: gap_loss, direction: minimize}` got the right error, and a
    second one about a metric never written: "minimize val_accuracy would tune every point
    to its worst values" (its direction was judged against the default metric's; found by
    a bad-input hunt). A known metric's wrong direction is still refused."""
    from nnbench.config import SuiteError, parse_suite

    for objective in ("{metric: gap_loss, direction: minimize}",
                      "{metric: dead_fraction, direction: minimize, against_metric: true}"):
        with pytest.raises(SuiteError) as raised:
            parse_suite(tune("{optimizer.lr: {low: 0.001, high: 0.1}}",
                             f"  objective: {objective}\n"))
        said = str(raised.value)
        assert "tune.objective.metric" in said and "val_accuracy would tune" not in said \
            and "tune.objective.against_metric" not in said, said
    with pytest.raises(SuiteError, match="minimize val_accuracy would tune every point"):
        parse_suite(tune("{optimizer.lr: {low: 0.001, high: 0.1}}",
                         "  objective: {metric: val_accuracy, direction: minimize}\n"))


def _no_suite(kind: str, folder: Path) -> str:
    """A path that holds no suite, of a kind `test_a_suite_path_that_holds_no_suite...`."""
    path = folder / f"{kind}.yaml"
    if kind == "dangling":
        path.symlink_to("/no/such/thing")
    elif kind in ("empty", "comments", "null"):
        path.write_text({"empty": "", "comments": "# to do\n---\n", "null": "~\n"}[kind])
    return "" if kind == "blank" else str(path)


@pytest.mark.parametrize(("kind", "said"), [
    ("blank", "'': an empty path, not a suite file"),
    ("dangling", "dangling.yaml: a broken symbolic link (to /no/such/thing, which does not "
                 "exist)"),
    ("empty", "empty.yaml: the file holds nothing (it is empty, or comments only); a suite "
              "file is a mapping with keys name, description, task"),
    ("comments", "comments.yaml: the file holds nothing (it is empty, or comments only)"),
    ("null", "null.yaml: the file holds only a YAML null ('~'); a suite file is a mapping"),
])
def test_a_suite_path_that_holds_no_suite_says_what_it_is(
        kind: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`validate ''` said ".: is a directory"; a dangling link "no such suite file; did you
    mean ...?"; an empty file "must be a mapping ..., got None (NoneType)"."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", _no_suite(kind, tmp_path)]) == 2
    assert said in capsys.readouterr().err


def test_a_claim_on_a_metric_one_side_does_not_log_names_what_both_sides_log() -> None:
    """A claim on dead_fraction between relu and tanh is refused; the message listed what
    either side logs ("they log dead_fraction, ..."), naming the refused metric as logged
    (a bad-input hunt). It lists what every compared configuration logs."""
    text = add(SIGNALS, "expect:\n  - {claim: x, a: {activation: relu}, "
                        "b: {activation: tanh}, metric: dead_fraction}\n")
    with pytest.raises(SuiteError) as raised:
        parse_suite(text)
    (found,) = [m for k, m in raised.value.problems if k == "expect[0]"]
    assert "'dead_fraction' is not logged by the compared configurations" in found, found
    listed = found.partition("all of them log ")[2]
    assert listed.startswith("gap_accuracy, gap_loss, grad_norm.layer1"), found
    assert "dead_fraction" not in listed and "saturated_fraction" not in listed, found


@pytest.mark.parametrize("edit_suite", [
    # early stopping that acts in some configuration or tuned variant is a comparison
    lambda s: add(fixed(s, "early_stopping: {name: patience, patience: 3}"),
                  "tune:\n  space: {epochs: {type: int, low: 1, high: 10}}\n  trials: 3\n"),
    lambda s: add(fixed(s, "early_stopping: {name: patience, patience: 3, "
                           "restore_best: false}"),
                  "tune:\n  space: {epochs: {type: int, low: 4, high: 10}}\n  trials: 3\n"),
    lambda s: add(edit(fixed(s, "early_stopping: {name: patience, patience: 1, "
                                "restore_best: false}"), "epochs: 2", "epochs: 10"),
                  "tune:\n  space: {early_stopping.patience: {type: int, low: 1, high: 9}}\n"
                  "  trials: 3\n"),
    lambda s: edit(fixed(s, "early_stopping: {name: patience, patience: 1, "
                            "restore_best: false}"), "  activation: [tanh, relu]\n",
                   "  epochs: [2, 10]\n"),
], ids=["tuned_epochs_from_1", "tuned_epochs_from_4", "tuned_patience", "grid_epochs"])
def test_early_stopping_that_acts_somewhere_is_kept(edit_suite: Any) -> None:
    """The rule for early stopping that cannot stop the run early refused a whole suite for
    one short configuration or tuned extreme (a review found it); a setting is refused only
    where it does nothing in every configuration and tuned variant that has it."""
    parse_suite(edit_suite(SIGNALS))
