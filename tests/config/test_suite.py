"""Suite expansion: grid, ablate, seeds, and stable trial ids."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from nnbench.config import SuiteError, load_suite, parse_suite
from tests.conftest import REPO

BASE = """\
name: expand
task: {dataset: mnist1d, model: {name: mlp, hidden: [8]}}
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: {name: sgd, lr: 0.1}
  epochs: 2
  batch_size: 32
"""


def test_default_suite_is_the_issue_grid() -> None:
    suite = load_suite(REPO / "suites" / "default.yaml")
    trials = suite.trials()
    assert len(trials) == 24
    assert suite.varied_axes == ["activation", "init"]
    assert {t.activation.name for t in trials} == {"sigmoid", "tanh", "relu"}
    assert {t.init.name for t in trials} == {"xavier_normal", "kaiming_normal"}
    assert sorted({t.seed for t in trials}) == [0, 1, 2, 3]
    assert len({t.trial_id for t in trials}) == 24
    assert len({t.config_id for t in trials}) == 6
    assert trials[0].dataset.kwargs["num_samples"] == 5000
    assert trials[0].dataset.kwargs["val_fraction"] == 0.1


def test_grid_is_the_cartesian_product() -> None:
    suite = parse_suite(BASE + textwrap.dedent("""\
        grid:
          activation: [sigmoid, tanh, relu]
          optimizer.lr: [0.01, 0.1]
        seeds: [3, 7]
        """))
    configs = suite.configurations()
    assert [(c.activation.name, c.optimizer.kwargs["lr"]) for c in configs] == [
        ("sigmoid", 0.01), ("sigmoid", 0.1), ("tanh", 0.01), ("tanh", 0.1),
        ("relu", 0.01), ("relu", 0.1)]
    assert [t.seed for t in suite.trials()[:2]] == [3, 7]
    assert len(suite.trials()) == 12


def test_ablate_varies_one_axis_at_a_time_from_fixed() -> None:
    suite = parse_suite(BASE + textwrap.dedent("""\
        ablate:
          activation: [tanh]
          optimizer: [{name: adam, lr: 0.001}]
        """))
    labels = [c.label(suite.varied_axes) for c in suite.configurations()]
    assert labels == [
        "activation=relu, optimizer=sgd(lr=0.1)",  # the base trial comes first
        "activation=tanh, optimizer=sgd(lr=0.1)",
        "activation=relu, optimizer=adam",
    ]
    assert suite.seeds == (0,)


def test_grid_and_ablate_together_are_their_union() -> None:
    suite = parse_suite(BASE + textwrap.dedent("""\
        grid: {activation: [tanh, relu]}
        ablate: {epochs: [4]}
        """))
    pairs = [(c.activation.name, c.epochs) for c in suite.configurations()]
    assert pairs == [("tanh", 2), ("relu", 2), ("relu", 4)]


def test_dotted_axis_overrides_every_component_of_the_grid() -> None:
    suite = parse_suite(BASE + textwrap.dedent("""\
        grid:
          optimizer: [{name: sgd, momentum: 0.9}, adam]
          optimizer.lr: [0.5]
        """))
    optimizers = [c.optimizer for c in suite.configurations()]
    assert [(o.name, o.kwargs["lr"]) for o in optimizers] == [("sgd", 0.5), ("adam", 0.5)]
    assert optimizers[0].kwargs["momentum"] == 0.9


def test_defaults_are_filled_into_the_spec() -> None:
    spec = parse_suite(BASE).base
    assert spec.optimizer.to_dict() == {"name": "sgd", "lr": 0.1, "momentum": 0.0,
                                        "dampening": 0.0, "nesterov": False,
                                        "weight_decay": 0.0, "maximize": False}
    assert spec.schedule.name == "constant"
    assert spec.loss.name == "cross_entropy"


def test_trial_id_depends_on_every_value_and_only_on_values() -> None:
    spec = parse_suite(BASE).base
    same = parse_suite(BASE.replace("{name: sgd, lr: 0.1}", "{lr: 0.1, name: sgd, momentum: 0}"))
    assert same.base.trial_id == spec.trial_id  # key order and explicit defaults do not matter
    assert replace(spec, seed=1).trial_id != spec.trial_id
    assert replace(spec, seed=1).config_id == spec.config_id
    assert replace(spec, epochs=3).trial_id != spec.trial_id
    assert replace(spec, epochs=3).config_id != spec.config_id


def test_trial_id_is_the_same_in_another_process(write_suite: Callable[..., Path]) -> None:
    path = write_suite()
    here = [t.trial_id for t in load_suite(path).trials()]
    code = ("import json, sys; from nnbench.config import load_suite; "
            "print(json.dumps([t.trial_id for t in load_suite(sys.argv[1]).trials()]))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert json.loads(out.stdout) == here


def test_trial_id_is_a_hash_of_the_canonical_json() -> None:
    """Pinned value: a change here changes every stored id, so it must be deliberate."""
    spec = parse_suite(BASE).base
    text = json.dumps(spec.canonical(), sort_keys=True, separators=(",", ":"))
    assert spec.trial_id == hashlib.sha256(text.encode()).hexdigest()[:16]
    # 975bd9ce0a2fcc33 until issue 8: kaiming_normal gained PyTorch's nonlinearity and a
    assert spec.trial_id == "e77cafa7027dcb6f"


@pytest.mark.parametrize("seeds", ["3", "[0, 5, 2]"])
def test_seeds_count_or_list(seeds: str) -> None:
    suite = parse_suite(BASE + f"seeds: {seeds}\n")
    assert suite.seeds == ((0, 1, 2) if seeds == "3" else (0, 5, 2))


# a grid over a parameter (momentum) beside an ablated component without it (adam)
MOMENTUM_AND_ADAM = textwrap.dedent("""\
    name: momentum_and_adam
    task: {dataset: digits, model: {name: mlp, hidden: [8]}}
    fixed: {optimizer: {name: sgd, lr: 0.05, momentum: 0.9}, epochs: 1, batch_size: 64}
    grid: {optimizer.momentum: [0.0, 0.9]}
    ablate: {optimizer: [{name: adam, lr: 0.01}]}
    seeds: 2
    """)


def test_a_grid_parameter_beside_an_ablated_component_without_it_reads_n_a() -> None:
    """`grid: {optimizer.momentum: [0.0, 0.9]}` with an ablated adam, which has no momentum:
    validate and run ended in "could not be checked: KeyError: 'momentum'"."""
    suite = parse_suite(MOMENTUM_AND_ADAM)
    assert suite.varied_axes == ["optimizer.momentum", "optimizer"]
    assert suite.nested_axes == {"optimizer.momentum": "optimizer"}
    assert [c.label(suite.varied_axes) for c in suite.configurations()] == [
        "optimizer.momentum=0.0, optimizer=sgd(lr=0.05)",
        "optimizer.momentum=0.9, optimizer=sgd(lr=0.05, momentum=0.9)",
        "optimizer.momentum=n/a, optimizer=adam(lr=0.01)"]
    assert len(suite.trials()) == 6


def test_a_claim_and_a_reference_row_may_name_the_n_a_level() -> None:
    """'n/a' is a level the report shows (adam's momentum), but naming it in a claim or a
    reference row was refused with "optimizer 'sgd': expected a number" (found by an
    edge-case run). A reference row takes it; a claim of n/a against 0.9 pairs adam with sgd
    nowhere (the optimizer without momentum differs), which the refusal now says."""
    text = MOMENTUM_AND_ADAM + textwrap.dedent("""\
        reference: {source: made up, results: [{where: {optimizer.momentum: n/a},
                                                value: 0.5}]}
        """)
    suite = parse_suite(text)
    assert suite.reference is not None
    assert dict(suite.reference.results[0].where) == {"optimizer.momentum": "n/a"}
    claim = ("expect:\n  - {claim: adam beats sgd, a: {optimizer.momentum: n/a}, "
             "b: {optimizer.momentum: 0.9}}\n")
    with pytest.raises(SuiteError, match=re.escape(
            "claim 'adam beats sgd' can never be tested: no configuration matching a "
            "(optimizer.momentum=n/a) has a partner matching b (optimizer.momentum=0.9) with "
            "the same optimizer without momentum")):
        parse_suite(text + claim)
