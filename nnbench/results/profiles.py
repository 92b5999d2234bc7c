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
  mean of rho over seeds with a 95% Student-t interval over seeds. Only seeds with a
  result for every (task, configuration) enter (`complete_seeds`): a profile over an
  incomplete set of tasks would compare unlike things.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from nnbench.config.benchmark import Target
from nnbench.results.stats import t_interval

__all__ = ["MEASURES", "Measure", "Profiles", "performance_profiles", "summarize", "tau_grid",
           "time_to_target"]

Measure = Literal["epochs", "seconds"]
MEASURES: tuple[Measure, ...] = ("epochs", "seconds")


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
            row.update({f"{measure}_mean": interval.mean, f"{measure}_low": interval.low,
                        f"{measure}_high": interval.high})
        rows.append(row)
    return pd.DataFrame(rows)


def tau_grid(ratios: np.ndarray, tau_min: float, tau_max: float) -> np.ndarray:
    """Where a profile can change: tau_min, tau_max and every finite ratio between them."""
    finite = ratios[np.isfinite(ratios)]
    inside = finite[(finite >= tau_min) & (finite <= tau_max)]
    return np.unique(np.concatenate([[tau_min, tau_max], inside]))


@dataclass(frozen=True)
class Profiles:
    """Performance profiles of one measure."""

    measure: str
    ratios: pd.DataFrame  # task, config, seed, time, best, ratio (inf: not reached)
    per_seed: pd.DataFrame  # config, seed, tau, rho
    curve: pd.DataFrame  # config, tau, mean, low, high, n (seeds)
    seeds: tuple[int, ...]  # the complete seeds the profile is computed over
    incomplete: tuple[int, ...]  # seeds left out: some (task, config) has no result


def performance_profiles(times: pd.DataFrame, measure: Measure, configs: list[str],
                         tasks: list[str], tau_min: float = 1.0, tau_max: float = 10.0,
                         taus: np.ndarray | None = None,
                         seeds: Sequence[int] = ()) -> Profiles:
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
    ratios = used[["task", "config", "seed", "time", "best", "ratio"]].reset_index(drop=True)
    grid = taus if taus is not None else tau_grid(ratios["ratio"].to_numpy(float),
                                                  tau_min, tau_max)
    per_seed_rows, curve_rows = [], []
    for config in configs:
        rho_by_seed = []
        for seed in complete:
            r = ratios[(ratios["config"] == config) & (ratios["seed"] == seed)]["ratio"]
            rho = (r.to_numpy(float)[None, :] <= grid[:, None]).sum(axis=1) / len(tasks)
            rho_by_seed.append(rho)
            per_seed_rows += [{"config": config, "seed": seed, "tau": t, "rho": v}
                              for t, v in zip(grid, rho, strict=True)]
        for j, tau in enumerate(grid):
            interval = t_interval([rho[j] for rho in rho_by_seed])
            curve_rows.append({"config": config, "tau": float(tau), "mean": interval.mean,
                               "low": interval.low, "high": interval.high, "n": interval.n})
    return Profiles(measure=measure, ratios=ratios,
                    per_seed=pd.DataFrame(per_seed_rows, columns=["config", "seed", "tau",
                                                                  "rho"]),
                    curve=pd.DataFrame(curve_rows, columns=["config", "tau", "mean", "low",
                                                            "high", "n"]),
                    seeds=complete, incomplete=incomplete)
