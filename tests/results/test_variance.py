"""The variance decomposition over sources of randomness, on data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnbench.config import parse_suite
from nnbench.results.variance import decompose, suite_decomposition, variance_components

FACTORS = {"init": "seed.init", "data_order": "seed.data_order"}


def _frame(values: np.ndarray, configs: int = 1) -> pd.DataFrame:
    rows = [{"config": f"c{c}", "seed.init": i, "seed.data_order": j, "status": "finished",
             "metric": float(values[c, i, j])}
            for c in range(configs) for i in range(values.shape[1])
            for j in range(values.shape[2])]
    return pd.DataFrame(rows)


def test_additive_effects_are_recovered_exactly() -> None:
    """y = a_init + b_order with no residual: σ² of each source is the sample variance
    of its effects, the residual 0."""
    a, b = np.array([0.0, 1.0, 2.0]), np.array([0.0, 10.0])
    cells = (a[:, None] + b[None, :])[None]
    assert variance_components(cells) == pytest.approx([1.0, 50.0, 0.0])
    # a configuration offset is a fixed effect: it changes nothing
    both = np.stack([cells[0], cells[0] + 7.0])
    assert variance_components(both) == pytest.approx([1.0, 50.0, 0.0])


def test_one_factor_is_the_within_configuration_variance() -> None:
    values = np.array([[1.0, 2.0, 4.0], [5.0, 5.0, 8.0]])
    expected = np.mean([np.var(v, ddof=1) for v in values])
    assert variance_components(values) == pytest.approx([expected, 0.0])


def test_random_effects_shares_converge_to_the_generating_variances() -> None:
    """σ_init = 2, σ_order = 1, σ_residual = 0.5 over 60 × 60 seeds in 2 configurations:
    shares 4 : 1 : 0.25 of 5.25, inside the bootstrap intervals."""
    rng = np.random.default_rng(1)
    values = np.stack([rng.normal(0, 2, 60)[:, None] + rng.normal(0, 1, 60)[None, :]
                       + rng.normal(0, 0.5, (60, 60)) + c for c in range(2)])
    result = decompose(_frame(values, configs=2), FACTORS, "m", resamples=300)
    assert result is not None
    shares = {c.source: c for c in result.components}
    assert list(shares) == ["init", "data_order", "residual"]
    for source, truth in (("init", 4 / 5.25), ("data_order", 1 / 5.25),
                          ("residual", 0.25 / 5.25)):
        c = shares[source]
        assert c.share == pytest.approx(truth, abs=0.08)
        assert c.share_low <= truth <= c.share_high, source
        assert c.share_low <= c.share <= c.share_high
    assert shares["residual"].sd == pytest.approx(0.5, abs=0.03)
    assert sum(c.share for c in result.components) == pytest.approx(1.0)
    assert (result.configurations, result.incomplete, result.trials) == (2, 0, 7200)


def test_a_source_with_no_effect_gets_a_share_near_zero() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(0, 1, 20)[None, :, None] + np.zeros((1, 20, 20))  # init only
    result = decompose(_frame(values), FACTORS, "m", resamples=200)
    assert result is not None
    init, order, residual = result.components
    assert init.share == pytest.approx(1.0)
    assert order.variance == pytest.approx(0.0, abs=1e-20)
    assert residual.variance == pytest.approx(0.0, abs=1e-20)


def test_incomplete_configurations_are_left_out_and_counted() -> None:
    rng = np.random.default_rng(3)
    frame = _frame(rng.normal(size=(2, 3, 3)), configs=2)
    frame.loc[frame.index[-1], "status"] = "diverged"
    result = decompose(frame, FACTORS, "m", resamples=50)
    assert result is not None
    assert (result.configurations, result.incomplete, result.trials) == (1, 1, 9)
    frame.loc[frame.index[0], "metric"] = float("nan")
    assert decompose(frame, FACTORS, "m", resamples=50) is None  # no complete configuration


def test_only_suites_with_per_source_seeds_are_decomposed() -> None:
    text = """\
name: v
task: {dataset: mnist1d, model: {name: mlp, hidden: [8]}}
fixed: {optimizer: {name: sgd, lr: 0.1}, epochs: 1, batch_size: 32}
"""
    frame = _frame(np.random.default_rng(4).normal(size=(1, 2, 2)))
    assert suite_decomposition(frame, parse_suite(text + "seeds: 4\n")) is None
    suite = parse_suite(text + "seeds: {init: 2, data_order: 2}\n")
    result = suite_decomposition(frame, suite)
    assert result is not None and result.metric == "test_accuracy"
