"""Statistics over seeds: intervals, seed-paired comparisons, Holm correction, EMA.

Every comparison in nnbench is seed-paired: trials that share a seed share their data
split and shuffling, so the difference between two configurations is taken seed by
seed (averaged over the other axes' levels within a seed) and tested with a paired
t-test on those per-seed differences. Intervals are Student-t intervals over seeds.
p-values of a family of comparisons are Holm-adjusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["ALPHA", "Interval", "Paired", "ema", "holm", "paired", "t_interval"]

ALPHA = 0.05  # two-sided level of every test and 1 - coverage of every interval


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float  # 95% Student-t interval over seeds; nan when n < 2
    high: float
    sd: float  # sample standard deviation (n - 1)
    n: int


def t_interval(values: np.ndarray | pd.Series | list[float], alpha: float = ALPHA) -> Interval:
    """mean ± t(1 - α/2, n - 1) · sd / √n over the finite values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, sd, n)


@dataclass(frozen=True)
class Paired:
    """A seed-paired comparison of a against b: differences a - b, one per seed."""

    n: int
    diff: float  # mean of a - b
    low: float  # 95% t interval of the mean difference
    high: float
    effect_size: float  # Cohen's d_z = mean / sd of the differences
    p: float  # two-sided paired t-test; nan when n < 2 or every difference is equal


def paired(differences: np.ndarray | pd.Series | list[float], alpha: float = ALPHA) -> Paired:
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    interval = t_interval(d, alpha)
    if interval.n < 2:
        return Paired(interval.n, interval.mean, math.nan, math.nan, math.nan, math.nan)
    if interval.sd == 0:
        # identical differences: no spread to test against (exactly equal -> no evidence)
        same = interval.mean == 0
        return Paired(interval.n, interval.mean, interval.mean, interval.mean,
                      0.0 if same else math.copysign(math.inf, interval.mean),
                      1.0 if same else 0.0)
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return Paired(interval.n, interval.mean, interval.low, interval.high,
                  interval.mean / interval.sd, p)


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (nan stays nan and does not count)."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = len(order), 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted


def ema(values: pd.Series, beta: float) -> pd.Series:
    """The notes' exponential moving average: S1 = Y1, St = β·St-1 + (1 - β)·Yt."""
    if not 0 <= beta < 1:
        raise ValueError(f"EMA beta must be in [0, 1), got {beta}")
    return values.ewm(alpha=1 - beta, adjust=False).mean()
