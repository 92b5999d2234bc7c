"""Time-to-target and performance profiles across tasks (DeepOBS / AlgoPerf practice).

Plain functions of tidy tables, so their statistics are tested on synthetic results:

- `time_to_target(history, target)`: per trial (config, seed), the first epoch whose
  validation metric reaches the target and the seconds until then (the sum of
  `epoch_seconds` up to and including that epoch); `inf` when it never does.
- `summarize(times)`: per configuration, how many seeds reached the target, and over
  those that did the mean epochs and seconds with a 95% Student-t interval
  (`stats.t_interval`). Seeds that never reached it are counted as such, never as 0 and
  never averaged in.
- `performance_profiles(times, measure, taus)`: Dolan & Moré (2002), seed by seed. For
  seed s, task p and configuration c, with t = time-to-target in `measure` (epochs or
  seconds; inf when not reached), the ratio r(p, c, s) = t(p, c, s) / min over c' of
  t(p, c', s); a task nobody reached gives every configuration r = inf. The profile is
  rho(c, s, tau) = share of tasks p with r(p, c, s) <= tau. The reported curve is the
  mean of rho over seeds (the share of all seeds × tasks runs with r <= tau) with a 95%
  stratified-bootstrap band. Only seeds with a result for every (task, configuration)
  enter (`complete_seeds`): a profile over an incomplete set of tasks would compare
  unlike things.

Across tasks, as rliable (Agarwal et al. 2021) aggregates: each run (task, seed) of a
configuration gets the normalised score s = 1 / r (the best configuration's time to
target on that task and seed divided by its own: 1 = the fastest, 0 = never reached), so
scores of different tasks are comparable; a configuration's runs form a seeds × tasks
matrix. Its interquartile mean (IQM: the mean of the middle 50% of the seeds × tasks
scores, `rliable.metrics.aggregate_iqm`) and the profile rho(tau) (= rliable's
score-distribution profile, the share of runs with s >= 1/tau) get 95% percentile
intervals from the stratified bootstrap (rliable's `StratifiedBootstrap`): each resample
draws, for each task on its own, as many seeds as there are, with replacement.
`stratified_indices` draws them from `np.random.RandomState(BOOTSTRAP_SEED)` exactly as
rliable does from `np.random` (`choice(seeds, (seeds, tasks))` per resample), so a report
is bitwise reproducible and its intervals equal rliable's after `np.random.seed`. Every
configuration is resampled with the same draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from nnbench.config.benchmark import Target
from nnbench.results.stats import ALPHA, t_interval

__all__ = ["BOOTSTRAP_SEED", "MEASURES", "RESAMPLES", "Measure", "Profiles", "iqm",
           "performance_profiles", "stratified_indices", "summarize", "tau_grid",
           "time_to_target"]

Measure = Literal["epochs", "seconds"]
MEASURES: tuple[Measure, ...] = ("epochs", "seconds")
RESAMPLES = 2000  # stratified bootstrap resamples behind every interval across tasks
BOOTSTRAP_SEED = 0  # seed of those resamples: the same report twice is the same bits


def time_to_target(history: pd.DataFrame, target: Target) -> pd.DataFrame:
    """One row per (config, seed) in `history` (columns config, seed, epoch, the target's
    metric, epoch_seconds): epochs and seconds to the target (inf: never), whether it was
    reached, and the epochs the trial ran."""
    rows = []
    for (config, seed), trial in history.groupby(["config", "seed"], sort=False):
        trial = trial.sort_values("epoch")
        values = trial[target.metric].to_numpy(dtype=float)
        hit = values >= target.value if target.higher_is_better else values <= target.value
        seconds = np.cumsum(trial["epoch_seconds"].to_numpy(dtype=float))
        reached = bool(hit.any())  # NaN (a diverged epoch) never reaches anything
        first = int(np.argmax(hit)) if reached else -1
        rows.append({"config": config, "seed": seed, "reached": reached,
                     "epochs": float(trial["epoch"].iloc[first]) if reached else np.inf,
                     "seconds": float(seconds[first]) if reached else np.inf,
                     "epochs_run": int(trial["epoch"].max())})
    return pd.DataFrame(rows, columns=["config", "seed", "reached", "epochs", "seconds",
                                       "epochs_run"])


def summarize(times: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Per configuration: seeds, reached (how many), and epochs / seconds to target over
    the seeds that reached it (mean, 95% t interval low/high, n)."""
    rows = []
    configs = order if order is not None else list(dict.fromkeys(times["config"]))
    for config in configs:
        mine = times[times["config"] == config]
        row: dict[str, object] = {"config": config, "seeds": len(mine),
                                  "reached": int(mine["reached"].sum()) if len(mine) else 0}
        for measure in MEASURES:
            interval = t_interval(mine[measure]) if len(mine) else t_interval([])
            # cut at what is possible: at least 1 epoch (0 s), at most the epochs run (a
            # t interval of 2 seeds reached -10.7 epochs)
            low, high = interval.low, interval.high
            if measure == "epochs" and len(mine):
                low, high = max(low, 1.0), min(high, float(mine["epochs_run"].max()))
            elif measure == "seconds":
                low = max(low, 0.0)
            row.update({f"{measure}_mean": interval.mean, f"{measure}_low": low,
                        f"{measure}_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def tau_grid(ratios: np.ndarray, tau_min: float, tau_max: float) -> np.ndarray:
    """Where a profile can change: tau_min, tau_max and every finite ratio between them."""
    finite = ratios[np.isfinite(ratios)]
    inside = finite[(finite >= tau_min) & (finite <= tau_max)]
    return np.unique(np.concatenate([[tau_min, tau_max], inside]))


def iqm(scores: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of `scores` (all of them, or along
    `axis`), as `rliable.metrics.aggregate_iqm` (scipy's 25% trimmed mean)."""
    return np.asarray(stats.trim_mean(scores, proportiontocut=0.25, axis=axis))


def stratified_indices(runs: int, tasks: int, resamples: int = RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """[resamples, runs, tasks] run indices: per resample and per task, `runs` draws with
    replacement (rliable's `StratifiedBootstrap`, runs resampled within each task); a
    score matrix m [runs, tasks] resamples as m[indices, arange(tasks)]."""
    indices: np.ndarray = np.random.RandomState(seed).choice(runs, size=(resamples, runs,
                                                                          tasks))
    return indices


def _shares_at_most(ratios: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """[..., runs] ratios -> [..., len(grid)]: the share of runs with ratio <= each tau
    (counted through each ratio's first grid step at or above it: no [..., runs, grid]
    array)."""
    steps = np.searchsorted(grid, ratios, side="left")  # len(grid): above every tau, or inf
    rows = steps.reshape(-1, steps.shape[-1])
    offsets = np.arange(len(rows))[:, None] * (len(grid) + 1)
    counts = np.bincount((rows + offsets).ravel(), minlength=len(rows) * (len(grid) + 1))
    at_most = np.cumsum(counts.reshape(len(rows), len(grid) + 1), axis=1)[:, :len(grid)]
    shares: np.ndarray = (at_most / steps.shape[-1]).reshape(*steps.shape[:-1], len(grid))
    return shares


def _percentiles(samples: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis, as arch's `conf_int(method="percentile")`."""
    low, high = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return low, high


@dataclass(frozen=True)
class Profiles:
    """Performance profiles of one measure, and the IQM of its normalised scores."""

    measure: str
    ratios: pd.DataFrame  # task, config, seed, time, best, ratio (inf: not reached), score
    per_seed: pd.DataFrame  # config, seed, tau, rho
    curve: pd.DataFrame  # config, tau, mean, low, high (bootstrap band), n (seeds)
    iqm: pd.DataFrame  # config, iqm, low, high (bootstrap interval), runs (seeds × tasks)
    seeds: tuple[int, ...]  # the complete seeds the profile is computed over
    incomplete: tuple[int, ...]  # seeds left out: some (task, config) has no result
    resamples: int  # stratified bootstrap resamples behind curve and iqm intervals
    bootstrap_seed: int


def performance_profiles(times: pd.DataFrame, measure: Measure, configs: list[str],
                         tasks: list[str], tau_min: float = 1.0, tau_max: float = 10.0,
                         taus: np.ndarray | None = None, seeds: Sequence[int] = (),
                         resamples: int = RESAMPLES, bootstrap_seed: int = BOOTSTRAP_SEED,
                         alpha: float = ALPHA) -> Profiles:
    """Profiles of `measure` from `times` (columns task, config, seed, epochs, seconds, one
    row per trial with a result); `taus` default to every step between tau_min, tau_max.
    `seeds`: the seeds expected; one without any result counts as incomplete too."""
    wanted = {(p, c) for p in tasks for c in configs}
    complete_list: list[int] = []
    incomplete_list: list[int] = []
    for seed, rows in times.groupby("seed"):
        have = set(zip(rows["task"], rows["config"], strict=True)) & wanted
        (complete_list if have == wanted else incomplete_list).append(int(seed))
    incomplete_list += [int(s) for s in seeds if int(s) not in complete_list + incomplete_list]
    complete, incomplete = tuple(sorted(complete_list)), tuple(sorted(incomplete_list))
    used = times[times["seed"].isin(complete) & times["task"].isin(tasks)
                 & times["config"].isin(configs)].copy()
    used["time"] = used[measure].astype(float)
    best = used.groupby(["task", "seed"])["time"].transform("min")
    used["best"] = best
    with np.errstate(invalid="ignore", divide="ignore"):
        used["ratio"] = np.where(np.isfinite(best), used["time"] / best, np.inf)
        used["score"] = 1.0 / used["ratio"]  # 0 where never reached
    ratios = used[["task", "config", "seed", "time", "best", "ratio", "score"]].reset_index(
        drop=True)
    grid = taus if taus is not None else tau_grid(ratios["ratio"].to_numpy(float),
                                                  tau_min, tau_max)
    grid = np.asarray(grid, dtype=float)
    indices = stratified_indices(len(complete), len(tasks), resamples, bootstrap_seed) \
        if complete else np.zeros((0, 0, len(tasks)), dtype=int)
    columns = np.arange(len(tasks))[None, None, :]
    per_seed_rows, curve_rows, iqm_rows = [], [], []
    for config in configs:
        # [seeds, tasks] matrix of this configuration's ratios, seeds as rows
        matrix = ratios[ratios["config"] == config].pivot(
            index="seed", columns="task", values="ratio").reindex(
            index=list(complete), columns=tasks).to_numpy(float)
        rho_by_seed = _shares_at_most(matrix, grid)  # [seeds, taus]
        per_seed_rows += [{"config": config, "seed": seed, "tau": t, "rho": v}
                          for seed, rho in zip(complete, rho_by_seed, strict=True)
                          for t, v in zip(grid, rho, strict=True)]
        if not complete:
            continue
        resampled = matrix[indices, columns].reshape(resamples, -1)  # [resamples, runs]
        mean = _shares_at_most(matrix.ravel(), grid)
        low, high = _percentiles(_shares_at_most(resampled, grid), alpha)
        curve_rows += [{"config": config, "tau": float(tau), "mean": float(m),
                        "low": float(lo), "high": float(hi), "n": len(complete)}
                       for tau, m, lo, hi in zip(grid, mean, low, high, strict=True)]
        with np.errstate(divide="ignore"):
            scores, resampled_scores = 1.0 / matrix, 1.0 / resampled
        iqm_low, iqm_high = _percentiles(iqm(resampled_scores, axis=1), alpha)
        iqm_rows.append({"config": config, "iqm": float(iqm(scores)), "low": float(iqm_low),
                         "high": float(iqm_high), "runs": int(scores.size)})
    return Profiles(measure=measure, ratios=ratios,
                    per_seed=pd.DataFrame(per_seed_rows, columns=["config", "seed", "tau",
                                                                  "rho"]),
                    curve=pd.DataFrame(curve_rows, columns=["config", "tau", "mean", "low",
                                                            "high", "n"]),
                    iqm=pd.DataFrame(iqm_rows, columns=["config", "iqm", "low", "high",
                                                        "runs"]),
                    seeds=complete, incomplete=incomplete, resamples=resamples,
                    bootstrap_seed=bootstrap_seed)
