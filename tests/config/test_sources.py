"""Per-source seeds (`seeds: {init: 3, data_order: 3}`): parsing, expansion, trial ids."""

from __future__ import annotations

import hashlib
import textwrap
from dataclasses import replace

import pytest

from nnbench.config import SuiteError, TrialSpec, load_suite, parse_suite
from nnbench.config.sources import SOURCES, SeedDesign
from tests.conftest import REPO

BASE = """\
name: sources
task: {dataset: {name: mnist1d, num_samples: 600}, model: {name: mlp, hidden: [8]}}
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: {name: sgd, lr: 0.1}
  epochs: 2
  batch_size: 32
grid:
  activation: [relu, tanh]
"""


def _problems(seeds: str, extra: str = "") -> list[tuple[str, str]]:
    with pytest.raises(SuiteError) as err:
        parse_suite(BASE + textwrap.dedent(extra) + f"seeds: {seeds}\n")
    return err.value.problems


def test_per_source_counts_are_crossed_and_the_rest_held_fixed() -> None:
    suite = parse_suite(BASE + "seeds: {init: 3, data_order: 2, fixed: 5}\n")
    trials = suite.trials()
    assert len(trials) == 2 * 3 * 2 == len({t.trial_id for t in trials})
    first = trials[:6]  # configuration-major: the first configuration's 6 combinations
    assert [(t.seed_of("init"), t.seed_of("data_order")) for t in first] == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    for t in trials:
        assert (t.seed_of("split"), t.seed_of("augmentation"), t.seed_of("dropout")) == (5, 5, 5)
    # the trials of one configuration share its config_id; seeds never enter it
    assert len({t.config_id for t in trials}) == 2
    assert suite.seeds_per_configuration == 6
    assert suite.seed_design is not None
    assert suite.seed_design.varied == (("init",), ("data_order",))
    assert suite.seed_design.describe() == ("init 0..2 × data_order 0, 1 (6 per configuration); "
                                            "split, augmentation, dropout fixed at 5")
    assert suite.design.label(trials[1]) == "init=0, data_order=1"


def test_seeds_given_as_lists_and_count_with_vary() -> None:
    suite = parse_suite(BASE + "seeds: {split: [3, 8]}\n")
    assert [t.seed_of("split") for t in suite.trials()[:2]] == [3, 8]
    assert {t.seed_of("init") for t in suite.trials()} == {0}
    # sources varied together: one factor (init draws, so the inert dropout is allowed)
    together = parse_suite(BASE + "seeds: {count: 3, vary: [init, dropout]}\n")
    assert together.seed_design is not None and together.seed_design.form == "together"
    trials = together.trials()[:3]
    assert [(t.seed_of("init"), t.seed_of("dropout"), t.seed_of("data_order"))
            for t in trials] == [(0, 0, 0), (1, 1, 0), (2, 2, 0)]
    assert together.seed_design.varied == (("init", "dropout"),)


def test_the_default_form_keeps_every_trial_id() -> None:
    """A suite written with today's `seeds: N` / list form expands to exactly the trials
    (and ids) it always had: no source_seeds, nothing new in the canonical JSON."""
    suite = load_suite(REPO / "suites" / "default.yaml")
    trials = suite.trials()
    assert suite.seed_design is None
    assert all(t.source_seeds == () and "source_seeds" not in t.canonical() for t in trials)
    # computed before per-source seeds existed (every id of suites/*.yaml was compared)
    ids = [t.trial_id for t in trials]
    assert (ids[0], ids[-1], len(ids)) == ("935e0f5f0b8d58ad", "8daf5dbafde9f1d7", 24)
    assert hashlib.sha256("".join(ids).encode()).hexdigest()[:16] == "9cdbe720d457bda9"
    old = parse_suite(BASE + "seeds: [3, 7]\n")
    assert [t.seed for t in old.trials()[:2]] == [3, 7]
    assert all(t.seed_of(s) == t.seed for t in old.trials() for s in SOURCES)


def test_a_combination_equal_to_a_default_seed_is_the_same_trial() -> None:
    """A trial is a pure function of its spec: the seeds (init 0, data_order 0, rest 0)
    train exactly what seed 0 trains, so they share its id and its stored result."""
    crossed = parse_suite(BASE + "seeds: {init: 2, data_order: 2}\n").trials()
    default = parse_suite(BASE + "seeds: 2\n").trials()
    assert crossed[0].trial_id == default[0].trial_id
    assert crossed[1].trial_id not in {t.trial_id for t in default}
    # all five sources at 1 is seed 1, however it is written
    spec = default[0].with_seeds(dict.fromkeys(SOURCES, 1))
    assert (spec.seed, spec.source_seeds, spec.trial_id) == (1, (), default[1].trial_id)


def test_source_seeds_are_normalised_and_round_trip() -> None:
    spec = parse_suite(BASE + "seeds: 1\n").trials()[0]
    a = replace(spec, source_seeds=(("data_order", 4), ("init", 2), ("split", 0)))
    b = replace(spec, source_seeds=(("init", 2), ("data_order", 4)))
    assert a.source_seeds == b.source_seeds == (("init", 2), ("data_order", 4))
    assert a.trial_id == b.trial_id != spec.trial_id
    assert a.config_id == spec.config_id
    assert a.canonical()["source_seeds"] == {"init": 2, "data_order": 4}
    assert TrialSpec.from_canonical(a.canonical()) == a
    assert a.seed_label == "init=2, data_order=4, rest=0"
    # four sources at 3, one at 0: seed 3 drives the four
    c = spec.with_seeds({**dict.fromkeys(SOURCES, 3), "split": 0})
    assert (c.seed, c.source_seeds) == (3, (("split", 0),))
    with pytest.raises(ValueError, match="unknown source"):
        replace(spec, source_seeds=(("weights", 1),))


def test_mlflow_params_carry_every_sources_seed() -> None:
    trials = parse_suite(BASE + "seeds: {init: 2, data_order: 2}\n").trials()
    params = trials[3].flat_params()
    assert {k: v for k, v in params.items() if k.startswith("seed")} == {
        "seed": "0", "seed.split": "0", "seed.init": "1", "seed.data_order": "1",
        "seed.augmentation": "0", "seed.dropout": "0"}
    assert not any(k.startswith("source_seeds") for k in params)
    default = parse_suite(BASE + "seeds: [7]\n").trials()[0].flat_params()
    assert {default[f"seed.{s}"] for s in SOURCES} == {"7"}


@pytest.mark.parametrize(("seeds", "extra", "key", "fragments"), [
    ("{inti: 3}", "", "seeds.inti",
     ["unknown source of randomness 'inti'", "did you mean 'init'", "allowed: split, init, "
      "data_order, augmentation, dropout"]),
    ("{count: 0, vary: [init]}", "", "seeds.count", ["integer >= 1", "got 0"]),
    ("{count: 2, vary: [weights]}", "", "seeds.vary[0]",
     ["unknown source of randomness 'weights'", "allowed: split, init"]),
    ("{count: 2, vary: [init, init]}", "", "seeds.vary[1]", ["init listed twice"]),
    ("{count: 2, vary: init}", "", "seeds.vary", ["non-empty list of sources", "got 'init'"]),
    ("{count: 2, vary: [init], data_order: 2}", "", "seeds.data_order", ["not both"]),
    ("{}", "", "seeds", ["got an empty mapping", "{init: 3, data_order: 3}"]),
    ("{fixed: 2}", "", "seeds", ["names no source to vary"]),
    ("{init: [1, 1]}", "", "seeds.init", ["seed(s) [1] listed twice"]),
    ("{init: 0}", "", "seeds.init", ["a count >= 1", "got 0"]),
    ("{init: 2, fixed: -1}", "", "seeds.fixed", ["integer from 0 to 2**63 - 1", "got -1"]),
    ("{dropout: 3}", "", "seeds.dropout",
     ["dropout is 0 in every configuration", "identical trials",
      "allowed: a source some configuration draws from (split, init, data_order)"]),
    ("{augmentation: 3}", "", "seeds.augmentation", ["no configuration has a random "
                                                      "augmentation"]),
    ("{count: 2, vary: [data_order]}", "fixed: {batch_size: full}\n", "seeds.vary",
     ["full batch", "floating-point rounding"]),
    ("{init: 2}", "tune:\n  space: {optimizer.lr: {low: 0.01, high: 0.1, log: true}}\n"
                  "  trials: 2\n", "seeds", ["tune.seeds", "a count or a list of seeds"]),
])
def test_invalid_per_source_seeds_teach(seeds: str, extra: str, key: str,
                                        fragments: list[str]) -> None:
    if extra.startswith("fixed:"):  # replace the base's batch size
        text = BASE.replace("  batch_size: 32\n", "  batch_size: full\n")
        with pytest.raises(SuiteError) as err:
            parse_suite(text + f"seeds: {seeds}\n")
        problems = err.value.problems
    else:
        problems = _problems(seeds, extra)
    messages = [m for k, m in problems if k == key]
    assert messages, problems
    for fragment in fragments:
        assert fragment in messages[0], (fragment, messages[0])


def test_dropout_and_augmentation_sources_where_a_configuration_draws_from_them() -> None:
    text = BASE.replace("grid:\n  activation: [relu, tanh]\n",
                        "grid:\n  dropout: [0.0, 0.2]\n")
    suite = parse_suite(text + "seeds: {dropout: 2}\n")  # one configuration has dropout
    assert len(suite.trials()) == 4


def test_a_count_form_design_is_the_default_design_when_it_varies_everything() -> None:
    design = SeedDesign.common((0, 1))
    assert not design.per_source
    assert [c["init"] for c in design.combinations()] == [0, 1]
    assert design.describe() == "0, 1"
