"""How much of a metric's spread each source of randomness explains.

A suite that gives sources their own seeds (`seeds: {init: 3, data_order: 3}`, see
`nnbench.config.sources`) trains, per configuration, every combination of the varied
sources' seeds: a crossed random-effects design with one trial per cell. Within each
configuration,

    y = μ + Σ_f a_f(seed_f) + residual

where a_f is the effect of factor f's seed (a factor is one source, or the sources
varied together by `{count, vary}`) and the residual holds the interactions of the
factors (with one trial per cell they cannot be told apart from each other).

The estimate is the classical ANOVA (method of moments) one, pooled over the
configurations: configurations are fixed effects and every sum of squares is taken
within a configuration, so a seed's effect may differ from one configuration to the
next. For factor f with n_f levels in a design of N cells per configuration, K complete
configurations,

    MS_f = Σ_configs (N / n_f) Σ_levels (mean_level − mean)² / (K (n_f − 1))
    MS_res = (SS_total − Σ_f SS_f) / (K (N − 1 − Σ_f (n_f − 1)))
    σ²_f = max(0, (MS_f − MS_res) / (N / n_f)),  σ²_res = MS_res

(with one factor there is no residual: σ²_f is the within-configuration variance).
A factor's share is σ²_f / (Σ σ² + σ²_res). With three or more factors, E[MS_f] also
contains the interactions of f with the others; pooling them into the residual makes
σ²_f a slight overestimate, which is stated with the table.

Intervals: a pigeonhole bootstrap over the design (Owen 2007, "The pigeonhole
bootstrap"): each resample draws the levels (seeds) of every factor with replacement,
independently, keeps the cells they cross, and re-estimates; the 95% percentile
interval of each share and standard deviation is reported, with the number of
resamples. Only configurations with every cell finished enter (the others are counted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from nnbench.config import Suite

__all__ = ["Component", "Decomposition", "decompose", "suite_decomposition",
           "variance_components"]

RESIDUAL = "residual"
RESAMPLES = 2000


@dataclass(frozen=True)
class Component:
    """One factor's (or the residual's) part of the metric's variance."""

    source: str  # a source (`init`), sources varied together (`init+data_order`), residual
    levels: int  # seeds the factor takes (0 for the residual)
    variance: float  # σ², in the metric's units squared
    share: float  # σ² / total σ², in [0, 1]
    share_low: float  # bootstrap percentile interval of the share
    share_high: float
    sd: float  # σ, in the metric's units
    sd_low: float
    sd_high: float


@dataclass(frozen=True)
class Decomposition:
    metric: str
    components: tuple[Component, ...]  # the factors in design order, then the residual
    configurations: int  # configurations with every cell finished (used)
    incomplete: int  # configurations left out: some cell not finished
    trials: int  # trials used
    resamples: int  # bootstrap resamples of the intervals
    confidence: float  # of the intervals, e.g. 0.95

    @property
    def total_sd(self) -> float:
        return float(np.sqrt(sum(c.variance for c in self.components)))


def variance_components(cells: np.ndarray) -> np.ndarray:
    """σ² of each factor, then of the residual, from `cells` of shape
    (configurations, n_1, ..., n_k): one value per configuration and seed combination.
    The residual is 0 when it has no degrees of freedom (one factor)."""
    k = cells.ndim - 1
    n_configs, sizes = cells.shape[0], cells.shape[1:]
    n = int(np.prod(sizes))
    centred = cells - cells.mean(axis=tuple(range(1, k + 1)), keepdims=True)
    ss_total = float(np.square(centred).sum())
    ms, multipliers, df_factors = [], [], 0
    for f in range(k):
        others = tuple(a for a in range(1, k + 1) if a != f + 1)
        marginal = centred.mean(axis=others) if others else centred
        ss = (n / sizes[f]) * float(np.square(marginal).sum())
        df = n_configs * (sizes[f] - 1)
        ms.append(ss / df if df else 0.0)
        multipliers.append(n / sizes[f])
        df_factors += df
    df_res = n_configs * (n - 1) - df_factors
    ss_res = ss_total - sum(m * n_configs * (s - 1) for m, s in zip(ms, sizes, strict=True))
    ms_res = max(ss_res, 0.0) / df_res if df_res > 0 else 0.0
    out = [max(0.0, (m - ms_res) / c) for m, c in zip(ms, multipliers, strict=True)]
    return np.array([*out, ms_res])


def decompose(trials: pd.DataFrame, factors: Mapping[str, str], metric: str, *,
              value: str = "metric", config: str = "config", resamples: int = RESAMPLES,
              confidence: float = 0.95, seed: int = 0) -> Decomposition | None:
    """The share of `value`'s variance each factor explains, with bootstrap intervals.

    `factors`: factor name -> the column holding its seed (`{"init": "seed.init"}`).
    Rows with a non-finite value (or not `finished`, when there is a status column) are
    left out, and so is every configuration that then misses a cell. None when no
    configuration is complete or no factor takes two seeds.
    """
    names = [f for f in factors if trials[factors[f]].nunique() > 1] if len(trials) else []
    if not names:
        return None
    rows = trials[np.isfinite(trials[value].astype(float))]
    if "status" in rows:
        rows = rows[rows["status"] == "finished"]
    columns = [factors[f] for f in names]
    levels = [sorted(trials[c].unique()) for c in columns]
    shape = tuple(len(lv) for lv in levels)
    blocks = []
    configs = list(dict.fromkeys(trials[config]))
    for name in configs:
        mine = rows[rows[config] == name].groupby(columns)[value].mean()
        index = pd.MultiIndex.from_product(levels, names=columns) if len(columns) > 1 \
            else pd.Index(levels[0], name=columns[0])
        full = mine.reindex(index)
        if full.isna().any():
            continue
        blocks.append(full.to_numpy(dtype=float).reshape(shape))
    if not blocks:
        return None
    cells = np.stack(blocks)
    estimate = variance_components(cells)
    rng = np.random.default_rng(seed)
    draws = np.empty((resamples, len(estimate)))
    for b in range(resamples):
        picks = [rng.integers(0, size, size) for size in shape]
        draws[b] = variance_components(cells[np.ix_(np.arange(len(blocks)), *picks)])
    alpha = (1 - confidence) / 2
    shares = _shares(draws)
    sds = np.sqrt(draws)
    total = estimate.sum()
    components = []
    for i, name in enumerate([*names, RESIDUAL]):
        if name == RESIDUAL and len(names) == 1:
            break  # one factor: no residual to estimate
        components.append(Component(
            source=name, levels=shape[i] if i < len(names) else 0,
            variance=float(estimate[i]),
            share=float(estimate[i] / total) if total > 0 else float("nan"),
            share_low=float(np.nanquantile(shares[:, i], alpha)),
            share_high=float(np.nanquantile(shares[:, i], 1 - alpha)),
            sd=float(np.sqrt(estimate[i])),
            sd_low=float(np.quantile(sds[:, i], alpha)),
            sd_high=float(np.quantile(sds[:, i], 1 - alpha))))
    return Decomposition(metric=metric, components=tuple(components),
                         configurations=len(blocks), incomplete=len(configs) - len(blocks),
                         trials=int(cells.size), resamples=resamples, confidence=confidence)


def _shares(draws: np.ndarray) -> np.ndarray:
    totals = draws.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, draws / np.where(totals > 0, totals, 1), np.nan)


def suite_decomposition(trials: pd.DataFrame, suite: Suite) -> Decomposition | None:
    """The decomposition of the suite's compared metric over the sources its seeds vary
    separately (`seeds: {init: 3, data_order: 3}`); None for the default form."""
    design = suite.seed_design
    if design is None or trials.empty or not design.varied:
        return None
    factors = {"+".join(sources): f"seed.{sources[0]}" for sources in design.varied}
    if any(column not in trials for column in factors.values()):
        return None
    return decompose(trials, factors, suite.metric)
