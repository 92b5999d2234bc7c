"""Statistics over seeds: intervals, seed-paired comparisons, Holm correction, EMA.

Every comparison in nnbench is seed-paired: trials that share a seed share their data
split and shuffling, so the difference between two configurations is taken seed by
seed (averaged over the other axes' levels within a seed). `compare(a, b)` reads the
per-seed differences d = a - b several ways, because a few seeds cannot check the
assumptions of any single test:

- a paired t-test and Student-t interval (assumes normally distributed differences);
- an exact sign-flip permutation p-value of the same differences: all 2ⁿ sign patterns
  for n ≤ 16, 65,536 seeded random patterns beyond. It assumes only that a difference
  is as likely to be positive as negative under the null, and it can never go below
  2/2ⁿ (0.125 at 4 seeds): a lone distribution-free test needs 6 seeds to reach α = 0.05,
  one Holm-adjusted in a family more (`perm_floors`: 7 in a family of 3 at equal seeds);
- a seed-paired BCa bootstrap interval of the mean difference (`scipy.stats.bootstrap`,
  10,000 seeded resamples). Below about 10 seeds every bootstrap interval is narrower
  than the t interval and covers less than its nominal 95% (roughly 80% at 4 seeds);
- the probability of improvement P(a > b) as rliable defines it (Agarwal et al. 2021,
  Bouthillier et al. 2021): the chance that a run of a beats a run of b, ties counting
  half, over all pairs of per-seed values, with a seed-paired percentile bootstrap
  interval;
- the minimum detectable difference at 80% power for this n and the observed spread
  (noncentral t), and about how many seeds would resolve a difference of the observed
  size: the fewest with 80% t-test power at the observed d_z, and no fewer than a
  distribution-free test needs to reach α.

`verdict` turns a comparison into plain English, saying where the t and permutation
verdicts disagree; `format_p` prints p-values (`< 0.0001` below that). 100 comparisons
at 4-16 seeds take about 1 s of CPU, half of it scipy's BCa bootstrap.

Degenerate data (no seeds, one seed, every difference equal) never yields p = 0, an
infinite effect size or a zero-width interval: those fields are nan and `identical`
says that every seed gave the same difference. p-values of a family of comparisons are
Holm-adjusted. Run the checks with `pytest tests/results/test_stats.py`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = ["ALPHA", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "EXACT_PERMUTATION_MAX_N",
           "PERMUTATION_SEED", "POWER", "RANDOM_PERMUTATIONS", "Interval", "Paired", "compare",
           "ema", "format_p", "holm", "min_detectable_difference", "paired", "perm_floor",
           "perm_floors", "permutation_p", "probability_of_improvement",
           "seeds_for_distribution_free", "t_interval", "verdict"]

ALPHA = 0.05  # two-sided level of every test and 1 - coverage of every interval
POWER = 0.8  # power at which the minimum detectable difference and seeds needed are stated
BOOTSTRAP_RESAMPLES = 10_000  # resamples of every bootstrap interval
BOOTSTRAP_SEED = 0  # every bootstrap draws from default_rng(0): a report is reproducible
EXACT_PERMUTATION_MAX_N = 16  # all 2ⁿ sign patterns up to here (65,536 at n = 16)
RANDOM_PERMUTATIONS = 2**16  # seeded random sign patterns beyond EXACT_PERMUTATION_MAX_N
PERMUTATION_SEED = 0
_SAME = 1e-12  # differences within 1e-12 of the values' scale are equal: rounding only
#                (0.5 - 0.485 is not exactly 0.8 - 0.785 in floating point)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float  # 95% Student-t interval over seeds; nan when n < 2 or every value is equal
    high: float
    sd: float  # sample standard deviation (n - 1)
    n: int

    @property
    def identical(self) -> bool:
        """At least 2 values, all equal: no spread, so no interval (not certainty)."""
        return self.n >= 2 and self.sd == 0


def t_interval(values: np.ndarray | pd.Series | list[float], alpha: float = ALPHA) -> Interval:
    """mean ± t(1 - α/2, n - 1) · sd / √n over the finite values. Values that are all
    equal (within rounding) have sd 0 and no interval: a zero-width interval would read as
    certainty (`Interval.identical`)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    if np.ptp(x) <= _SAME * float(np.abs(x).max()):
        return Interval(mean, math.nan, math.nan, 0.0, n)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, sd, n)


@dataclass(frozen=True)
class Paired:
    """A seed-paired comparison of a against b: differences d = a - b, one per seed."""

    n: int
    diff: float  # mean of a - b (CSV column mean_diff)
    low: float  # 95% Student-t interval of the mean difference (t_low); nan when degenerate
    high: float  # (t_high)
    effect_size: float  # Cohen's d_z = mean / sd of the differences; nan when sd is 0
    p: float  # two-sided paired t-test; nan when n < 2 or every difference is equal
    p_perm: float  # exact two-sided sign-flip permutation p; at least 2/2ⁿ; nan when n = 0
    boot_low: float  # BCa bootstrap interval of the mean difference; nan when degenerate
    boot_high: float
    p_improvement: float  # P(a better than b), ties half; nan from `paired` (no values)
    p_improvement_low: float  # seed-paired percentile bootstrap interval
    p_improvement_high: float
    mde: float  # smallest |mean difference| detected with 80% power at this n; nan if n < 2
    seeds_needed: int | None  # seeds for 80% power at the observed difference; None if
    #                           this n already has it, the difference is 0, or no spread
    identical: bool  # every per-seed difference equal (no spread: not certainty)
    method: str  # one line naming the methods


def _bootstrap_mean(d: np.ndarray, alpha: float) -> tuple[float, float, str]:
    """BCa interval of the mean of d; the percentile interval of the same resamples if
    BCa is undefined (its jackknife degenerates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning: handled below
        result = stats.bootstrap((d,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES,
                                 vectorized=True, confidence_level=1 - alpha, method="BCa",
                                 rng=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isfinite(low) and math.isfinite(high):
        return low, high, "BCa"
    q = np.quantile(result.bootstrap_distribution, [alpha / 2, 1 - alpha / 2])
    return float(q[0]), float(q[1]), "percentile"


@lru_cache(maxsize=32)  # at most 2^16 x 16 values each (8 MiB)
def _sign_patterns(n: int) -> np.ndarray:
    """Every ±1 pattern of length n, shape (2ⁿ, n), or RANDOM_PERMUTATIONS seeded ones."""
    if n <= EXACT_PERMUTATION_MAX_N:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    else:
        bits = np.random.default_rng(PERMUTATION_SEED).integers(0, 2, (RANDOM_PERMUTATIONS, n))
    return (1 - 2 * bits).astype(float)


def permutation_p(differences: np.ndarray | pd.Series | list[float]) -> float:
    """Two-sided sign-flip permutation p of the mean of the finite differences: the share
    of sign patterns whose |sum| is at least the observed |sum|. Exact (all 2ⁿ patterns,
    floor 2/2ⁿ) for n ≤ 16; beyond, (1 + hits) / (1 + patterns) over the seeded sample,
    which is never 0. nan for n = 0."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return math.nan
    sums = np.abs(_sign_patterns(n) @ d)
    observed = abs(float(d.sum()))
    tolerance = 1e-9 * max(float(np.abs(d).sum()), 1e-300)  # float sums of the same set
    hits = int(np.count_nonzero(sums >= observed - tolerance))
    if n <= EXACT_PERMUTATION_MAX_N:
        return hits / len(sums)
    return (1 + hits) / (1 + len(sums))


def perm_floor(n: int) -> float:
    """The smallest sign-flip permutation p n seeds can give: 2/2ⁿ exactly (n ≤
    EXACT_PERMUTATION_MAX_N), 1/(1 + RANDOM_PERMUTATIONS) from random patterns beyond."""
    return 2 / 2**n if n <= EXACT_PERMUTATION_MAX_N else 1 / (1 + RANDOM_PERMUTATIONS)


def perm_floors(ns: Sequence[int], alpha: float = ALPHA) -> list[tuple[float, int]]:
    """For each comparison of a Holm family, whose seeds are `ns`: the smallest its
    Holm-adjusted sign-flip p can be at these seeds (Holm over every comparison's
    `perm_floor`: Holm's adjusted p-values only rise with the raw ones), and the fewest
    seeds from which it could reach α, the others' seeds as they are (a family of 3 at 4
    seeds each: 3 × 2/2^4 = 0.375, and 7 seeds)."""
    base = [perm_floor(n) for n in ns]
    lowest = holm(base, family=len(ns))
    out = []
    for i, n in enumerate(ns):
        floors, more = list(base), max(n, 1)
        while more < 64:
            floors[i] = perm_floor(more)
            if float(holm(floors, family=len(ns))[i]) < alpha:
                break
            more += 1
        out.append((float(lowest[i]), more))
    return out


def seeds_for_distribution_free(alpha: float = ALPHA) -> int:
    """The fewest seeds at which an exact sign-flip test can reach α: 2/2ⁿ ≤ α (6 at 0.05)."""
    return max(1, math.ceil(1 - math.log2(alpha)))


def _power(n: np.ndarray | int, dz: float, alpha: float) -> np.ndarray:
    """Power of a two-sided paired t-test at level α with n seeds, true d_z = dz."""
    n = np.asarray(n, dtype=float)
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = dz * np.sqrt(n)
    upper = stats.nct.sf(critical, df, noncentrality)
    lower = stats.nct.cdf(-critical, df, noncentrality)  # far tail: scipy can give nan
    return np.asarray(upper + np.where(np.isfinite(lower), lower, 0.0))


@lru_cache(maxsize=256)
def _detectable_dz(n: int, alpha: float, power: float) -> float:
    """The d_z a paired t-test with n seeds detects with the given power."""
    def short(dz: float) -> float:
        return float(_power(n, dz, alpha)) - power

    high = 1.0
    while short(high) < 0:
        high *= 2
    return float(optimize.brentq(short, 1e-9, high, xtol=1e-10))


def min_detectable_difference(n: int, sd: float, alpha: float = ALPHA,
                              power: float = POWER) -> float:
    """Smallest |mean difference| a paired t-test on n seeds detects with `power`, given
    the sd of the per-seed differences. nan when n < 2 or sd is not a positive number."""
    if n < 2 or not (sd > 0) or not math.isfinite(sd):
        return math.nan
    return _detectable_dz(n, alpha, power) * sd


# the values a metric can take, by its name's last part (accuracy 0-1; loss, rmse, mae from
# 0): a t interval over 2 or 3 seeds is cut there (it reached an accuracy of 1.21)
METRIC_RANGES = {"accuracy": (0.0, 1.0), "loss": (0.0, math.inf), "rmse": (0.0, math.inf),
                 "mae": (0.0, math.inf)}


# the diagnostics: shares of units or weights, and norms, rates and times
SHARES = ("dead_fraction", "saturated_fraction", "weight_sparsity")
NON_NEGATIVE = ("grad_norm", "lr", "epoch_seconds", "wall_seconds")


def metric_range(metric: str) -> tuple[float, float]:
    """The values `metric` can take (`test_accuracy`: 0 to 1; a diagnostic's share, such as
    `dead_fraction`, 0 to 1; a gradient norm, from 0; `gap_accuracy`, val − train, and
    unknown ones: unbounded)."""
    if metric in SHARES:
        return (0.0, 1.0)
    if metric.partition(".")[0] in NON_NEGATIVE:
        return (0.0, math.inf)
    split, _, measure = metric.partition("_")
    if split not in ("train", "val", "test"):
        return (-math.inf, math.inf)
    return METRIC_RANGES.get(measure, (-math.inf, math.inf))


MANY_SEEDS = 10_000  # beyond, a verdict says "more than 10,000 seeds", not a number


def _seeds_needed(n: int, diff: float, sd: float, alpha: float, power: float) -> int | None:
    """Seeds at which a paired t-test has `power` for d_z = |diff| / sd, and at least the
    seeds a distribution-free test needs to reach α; None if n already has both."""
    if n < 2 or not (sd > 0) or diff == 0 or not math.isfinite(diff):
        return None
    dz = abs(diff) / sd
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    start = max(2, math.ceil((z / dz) ** 2) - 1)  # normal approximation; t needs a few more
    if start > MANY_SEEDS:  # the normal approximation is exact enough out there
        return int(start)
    while True:
        candidates = np.arange(start, start + 16)
        enough = np.flatnonzero(_power(candidates, dz, alpha) >= power)
        if len(enough):
            needed = int(candidates[enough[0]])
            break
        start += 16
    needed = max(needed, seeds_for_distribution_free(alpha))
    return needed if needed > n else None


def probability_of_improvement(a: np.ndarray, b: np.ndarray) -> float:
    """P(a > b) over all (i, j) pairs of values, ties counting half (rliable's definition,
    the Mann-Whitney U statistic over n_a · n_b)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    wins = (a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean()
    return float(wins)


def _improvement_interval(a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile bootstrap of P(a > b), resampling seeds (a and b stay paired)."""
    n = len(a)
    wins = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])  # (seed i, seed j)
    # a resample is how often each seed is drawn: P = Σ counts_i · wins_ij · counts_j / n²
    index = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, (BOOTSTRAP_RESAMPLES, n))
    index += n * np.arange(BOOTSTRAP_RESAMPLES)[:, None]
    counts = np.bincount(index.ravel(), minlength=BOOTSTRAP_RESAMPLES * n).reshape(-1, n)
    counts = counts.astype(float)
    resampled = np.einsum("ri,ri->r", counts @ wins, counts) / n**2
    q = np.quantile(resampled, [alpha / 2, 1 - alpha / 2])
    return float(q[0]), float(q[1])


def _method(n: int, bootstrap: str | None, improvement: bool) -> str:
    parts = ["paired t"]
    if n <= EXACT_PERMUTATION_MAX_N:
        parts.append(f"exact sign-flip permutation (2^{n} = {2**n:,} patterns)")
    else:
        parts.append(f"sign-flip permutation ({RANDOM_PERMUTATIONS:,} random patterns, "
                     f"seed {PERMUTATION_SEED})")
    if bootstrap:
        parts.append(f"{bootstrap} bootstrap of the mean difference, "
                     f"{BOOTSTRAP_RESAMPLES:,} resamples (seed {BOOTSTRAP_SEED})")
    if improvement:
        parts.append(f"P(a > b) with ties half, seed-paired percentile bootstrap, "
                     f"{BOOTSTRAP_RESAMPLES:,} resamples")
    parts.append(f"MDE at {POWER:.0%} power (noncentral t)")
    return "; ".join(parts)


def _analyse(d: np.ndarray, alpha: float, a: np.ndarray | None,
             b: np.ndarray | None) -> Paired:
    """Every statistic of the finite per-seed differences d (a, b: the oriented values
    behind them for P(a > b), or None)."""
    n = len(d)
    values = [np.abs(v) for v in (d, a, b) if v is not None and len(v)]
    scale = max((float(v.max()) for v in values), default=0.0)
    # a difference within rounding of the values' scale is 0 (a difference of differences
    # of equal values left -1e-17: "-0.0000", and "10,000 seeds would resolve it")
    d = np.where(np.abs(d) <= _SAME * scale, 0.0, d)
    nan = math.nan
    improvement = a is not None and b is not None and n > 0
    p_imp, imp_low, imp_high = nan, nan, nan
    if a is not None and b is not None and n > 0:
        p_imp = probability_of_improvement(a, b)
        if n >= 2:
            imp_low, imp_high = _improvement_interval(a, b, alpha)
    if n == 0:
        return Paired(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, None,
                      False, "no seed-paired values")
    mean = float(d.mean())
    p_perm = permutation_p(d)
    if n == 1:
        return Paired(1, mean, nan, nan, nan, nan, p_perm, nan, nan, p_imp, nan, nan, nan,
                      None, False, "one seed: no paired test")
    identical = bool(np.ptp(d) <= _SAME * scale)
    if identical:
        return Paired(n, mean, nan, nan, nan, nan, p_perm, nan, nan, p_imp, imp_low, imp_high,
                      nan, None, True, _method(n, None, improvement)
                      + "; every difference equal: no t-test, interval or MDE")
    interval = t_interval(d, alpha)
    sd = interval.sd
    p = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))  # paired t-test
    boot_low, boot_high, boot_method = _bootstrap_mean(d, alpha)
    return Paired(n, mean, interval.low, interval.high, mean / sd, p, p_perm,
                  boot_low, boot_high, p_imp, imp_low, imp_high,
                  min_detectable_difference(n, sd, alpha),
                  _seeds_needed(n, mean, sd, alpha, POWER), False,
                  _method(n, boot_method, improvement))


def paired(differences: np.ndarray | pd.Series | list[float], alpha: float = ALPHA) -> Paired:
    """Every statistic of the finite per-seed differences; P(a > b) fields are nan (the
    values behind the differences are not known here: use `compare`)."""
    d = np.asarray(differences, dtype=float)
    return _analyse(d[np.isfinite(d)], alpha, None, None)


def compare(a: np.ndarray | pd.Series | list[float], b: np.ndarray | pd.Series | list[float],
            *, higher_is_better: bool = True, alpha: float = ALPHA) -> Paired:
    """a, b: per-seed values aligned by seed (same length; pairs with a NaN dropped).
    `diff` and the intervals are of a - b whatever the orientation; P(improvement) is the
    chance that a is better than b (higher, or lower when not higher_is_better)."""
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"compare needs per-seed values aligned by seed: got {len(x)} "
                         f"values of a and {len(y)} of b")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    sign = 1.0 if higher_is_better else -1.0
    return _analyse(x - y, alpha, sign * x, sign * y)


def _p_is(name: str, p: float, verb: str = "=") -> str:
    """`paired t p = 0.0123`, `paired t p < 0.0001` (never `= < 0.0001`)."""
    text = format_p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} {verb} {text}"


def format_p(p: float) -> str:
    """A p-value for people: 4 decimals, `< 0.0001` below that, `n/a` for nan."""
    if not math.isfinite(p):
        return "n/a"
    if p < 0.0001:
        return "< 0.0001"
    return f"{p:.4f}"


def verdict(r: Paired, *, alpha: float = ALPHA, p_adjusted: float | None = None,
            p_perm_adjusted: float | None = None,
            perm_floor_seeds: tuple[float, int] | None = None) -> str:
    """Plain English: is the comparison distinguishable at α (by the paired t-test, using
    p_adjusted when given), and does the sign-flip permutation test agree. Pass
    p_perm_adjusted (the same adjustment applied to the family's p_perm) so that a
    permutation verdict is weighed at the same family-wise level; without it only the
    unadjusted permutation p is used, which can flag a t verdict as unsupported but never
    claims the permutation test finds what the adjusted t-test does not. With it,
    `perm_floor_seeds` (`perm_floors`): the lowest that Holm-adjusted p can be at the
    family's seeds, and the seeds from which it could reach α, which the sentence quotes
    (it quoted a lone test's 2/2ⁿ and 6 seeds beside a Holm-adjusted p of a family of 3,
    which needs 7)."""
    in_family = p_perm_adjusted is not None and perm_floor_seeds is not None
    if in_family:
        assert perm_floor_seeds is not None
        lowest, free = perm_floor_seeds
        floor_text = f"{format_p(lowest)} at n = {r.n}, Holm-adjusted over its family"
    else:
        free = seeds_for_distribution_free(alpha)
        floor_text = f"2/2^{r.n} = {format_p(2 / 2**r.n)} at n = {r.n}"
    level = f"α = {alpha:g}"
    if r.n == 0:
        return "no seed has both configurations: nothing to compare"
    if r.n == 1:
        return "only 1 seed has both configurations: a paired test needs at least 2 seeds"
    if r.identical:
        if r.diff == 0:
            return (f"every one of the {r.n} seeds gave exactly the same value to both: "
                    f"not distinguishable, and this is not certainty that they are equal")
        p_same = p_perm_adjusted if p_perm_adjusted is not None else r.p_perm
        p_name = ("Holm-adjusted sign-flip permutation p" if in_family
                  else "sign-flip permutation p")
        found = (f", distinguishable at {level} without assuming normality" if p_same < alpha
                 else f", not distinguishable at {level}")
        return (f"every one of the {r.n} seeds gave the same difference ({r.diff:+.4g}): "
                f"there is no spread to test it against, so this is not certainty; the "
                f"{_p_is(p_name, p_same, verb='is')} (it cannot go below "
                f"{floor_text}){found}"
                + (f"; a distribution-free test could reach {level} from {free} seeds"
                   if r.n < free else ""))
    adjusted = p_adjusted is not None
    p_t = p_adjusted if p_adjusted is not None else r.p
    t_name = "Holm-adjusted paired t p" if adjusted else "paired t p"
    perm_known = p_perm_adjusted is not None or not adjusted
    p_perm = p_perm_adjusted if p_perm_adjusted is not None else r.p_perm
    perm_name = ("Holm-adjusted sign-flip permutation p" if p_perm_adjusted is not None
                 else "exact sign-flip permutation p" if r.n <= EXACT_PERMUTATION_MAX_N
                 else "sign-flip permutation p")
    t_yes, perm_yes = p_t < alpha, p_perm < alpha
    numbers = f"{_p_is(t_name, p_t)}, {_p_is(perm_name, p_perm)}"
    if t_yes and perm_yes:
        return f"distinguishable at {level} ({numbers})"
    if t_yes:
        floor = (f", which cannot go below {floor_text}; a distribution-free test could "
                 f"reach {level} from {free} seeds" if r.n < free else "")
        return (f"distinguishable at {level} by the paired t-test but not by the "
                f"distribution-free sign-flip permutation test ({numbers}{floor}): the t "
                f"verdict rests on the per-seed differences being normally distributed, "
                f"which {r.n} values {'cannot' if r.n <= 16 else 'can only loosely'} check")
    if perm_yes and perm_known:
        return (f"distinguishable at {level} by the sign-flip permutation test but not by "
                f"the paired t-test ({numbers}): the t-test assumes normally distributed "
                f"per-seed differences, and an outlying seed widens it")
    tail = f"not distinguishable at {level} ({numbers})"
    if r.seeds_needed is not None and r.seeds_needed > MANY_SEEDS:
        return (f"{tail}; the observed difference is so small against the seeds' spread "
                f"that more than {MANY_SEEDS:,} seeds would be needed to resolve it")
    if r.seeds_needed is not None:  # (and the permutation test could reach α there)
        return (f"{tail}; about {max(r.seeds_needed, free)} seeds would resolve a difference "
                f"of the observed size")
    if r.diff == 0:
        return f"{tail}; the observed mean difference is 0"
    if math.isfinite(r.mde):
        return (f"{tail}, although {r.n} seeds had {POWER:.0%} power for a difference of "
                f"the observed size (smallest detectable ±{r.mde:.4g})")
    return tail


def holm(pvalues: list[float] | np.ndarray, family: int | None = None) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values. nan stays nan; it does not count towards the
    family's size unless `family` (the number of comparisons made, e.g. rows whose paired
    t p is undefined because every seed gave the same difference) says otherwise."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = max(len(order), family or 0), 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted


def ema(values: pd.Series, beta: float) -> pd.Series:
    """The notes' exponential moving average: S1 = Y1, St = β·St-1 + (1 - β)·Yt."""
    if not 0 <= beta < 1:
        raise ValueError(f"EMA beta must be in [0, 1), got {beta}")
    return values.ewm(alpha=1 - beta, adjust=False).mean()
