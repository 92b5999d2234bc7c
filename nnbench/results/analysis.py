"""What the report says: leaderboard, main effects, interactions, fit, claims, and the
comparison with published numbers (a suite's `reference:`).

Each function takes the tidy per-trial table (`Results.trials`: one row per trial,
the varied axes as label columns, `seed`, `status`, the metrics) and returns plain
DataFrames / dicts that the report renders. Only finished trials enter statistics;
diverged and failed ones are counted and shown, never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nnbench.config import Claim, PublishedResult, Suite
from nnbench.results.stats import ALPHA, Interval, Paired, holm, paired, t_interval

__all__ = ["claim_verdicts", "fit_diagnosis", "interactions", "leaderboard", "main_effects",
           "reference_comparison"]


def _finished(trials: pd.DataFrame) -> pd.DataFrame:
    if trials.empty:
        return trials
    return trials[trials["status"] == "finished"]


def leaderboard(trials: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """One row per configuration: mean, 95% t interval, sd, n seeds, status counts,
    mean best epoch and wall time; best first, configurations without a finished
    seed last."""
    columns = ["config", "mean", "low", "high", "sd", "n", "diverged", "failed", "killed",
               "best_epoch", "wall_seconds", "params", "best"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for config, group in trials.groupby("config", sort=False):
        done = group[group["status"] == "finished"]
        interval = t_interval(done["metric"])
        rows.append({
            "config": config, "mean": interval.mean, "low": interval.low,
            "high": interval.high, "sd": interval.sd, "n": interval.n,
            **{s: int((group["status"] == s).sum()) for s in ("diverged", "failed", "killed")},
            "best_epoch": float(done["best_epoch"].mean()) if len(done) else math.nan,
            "wall_seconds": float(group["wall_seconds"].mean()),
            "params": int(group["num_params"].max()) if "num_params" in group else 0,
        })
    table = pd.DataFrame(rows).sort_values("mean", ascending=not higher_is_better,
                                           na_position="last", kind="stable")
    table["best"] = False
    if table["n"].iloc[0] > 0:
        table.iloc[0, table.columns.get_loc("best")] = True
    return table.reset_index(drop=True)[columns]


def _per_seed_differences(frame: pd.DataFrame, axis: str, level: str, baseline: str,
                          value: str) -> pd.Series:
    """Seed-paired differences level - baseline of `value`, matched on the other axes,
    averaged within each seed."""
    others = [c for c in frame.attrs.get("axes", []) if c != axis]
    index = ["seed", *others]
    table = frame.pivot_table(index=index, columns=axis, values=value, aggfunc="mean")
    if level not in table or baseline not in table:
        return pd.Series(dtype=float)
    diff = (table[level] - table[baseline]).dropna()
    return diff.groupby(level="seed").mean()


@dataclass(frozen=True)
class Effect:
    axis: str
    level: str
    baseline: str
    result: Paired
    p_holm: float
    sentence: str


def _sentence(level: str, baseline: str, metric: str, r: Paired, p_holm: float,
              higher_is_better: bool) -> str:
    if r.n < 2:
        return (f"{level} vs {baseline}: Δ {metric} = {r.diff:+.4f} from n = {r.n} seed; "
                f"a paired test needs at least 2 seeds")
    if not (p_holm < ALPHA):
        return (f"{level} is not distinguishable from {baseline} at n = {r.n} seeds "
                f"(Δ {metric} = {r.diff:+.4f}, 95% CI [{r.low:+.4f}, {r.high:+.4f}], "
                f"Holm-adjusted p = {p_holm:.3g})")
    better = (r.diff > 0) == higher_is_better
    return (f"{level} is {'better' if better else 'worse'} than {baseline}: Δ {metric} = "
            f"{r.diff:+.4f} (95% CI [{r.low:+.4f}, {r.high:+.4f}], d_z = {r.effect_size:.2f}, "
            f"paired t-test Holm-adjusted p = {p_holm:.3g}, n = {r.n} seeds)")


def main_effects(trials: pd.DataFrame, suite: Suite) -> tuple[pd.DataFrame, list[Effect]]:
    """Per varied axis: the metric by level (per-seed means over the other axes, t interval)
    and each level's seed-paired difference against the suite's baseline (the `fixed`
    value), Holm-adjusted over every comparison in the suite."""
    axes = suite.varied_axes
    done = _finished(trials)
    levels, effects = [], []
    if done.empty or not axes:
        return pd.DataFrame(columns=["axis", "level", "mean", "low", "high", "n"]), []
    done = done.copy()
    done.attrs["axes"] = axes
    pending: list[tuple[str, str, str, Paired]] = []
    for axis in axes:
        baseline = suite.base.label([axis]).partition("=")[2]
        for level, group in done.groupby(axis, sort=False):
            interval = t_interval(group.groupby("seed")["metric"].mean())
            levels.append({"axis": axis, "level": level, "mean": interval.mean,
                           "low": interval.low, "high": interval.high, "n": interval.n,
                           "baseline": level == baseline})
            if level != baseline:
                diffs = _per_seed_differences(done, axis, str(level), baseline, "metric")
                pending.append((axis, str(level), baseline, paired(diffs)))
    adjusted = holm([r.p for *_, r in pending])
    for (axis, level, baseline, r), p_holm in zip(pending, adjusted, strict=True):
        effects.append(Effect(axis, level, baseline, r, float(p_holm), _sentence(
            level, baseline, suite.metric, r, float(p_holm), suite.higher_is_better)))
    return pd.DataFrame(levels), effects


def interactions(trials: pd.DataFrame, a: str, b: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean metric and 95% interval width for each (level of a, level of b), over seeds."""
    done = _finished(trials)
    cells = []
    for (level_a, level_b), group in done.groupby([a, b], sort=False):
        interval = t_interval(group.groupby("seed")["metric"].mean())
        cells.append({a: level_a, b: level_b, "mean": interval.mean,
                      "width": interval.high - interval.low})
    frame = pd.DataFrame(cells)
    if frame.empty:
        return frame, frame
    return (frame.pivot(index=a, columns=b, values="mean"),
            frame.pivot(index=a, columns=b, values="width"))


def fit_diagnosis(trials: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """Per configuration: final training and validation error, their gap, and the notes'
    reading of them with the suite's stated thresholds. Error is 1 - accuracy for
    classification, RMSE for regression."""
    done = _finished(trials)
    if done.empty:
        return pd.DataFrame()
    classification = {"train_accuracy", "val_accuracy"} <= set(done.columns)
    if classification:
        train_error, val_error = 1 - done["train_accuracy"], 1 - done["val_accuracy"]
    elif {"train_rmse", "val_rmse"} <= set(done.columns):
        train_error, val_error = done["train_rmse"], done["val_rmse"]
    else:
        return pd.DataFrame()  # the runs carry no per-epoch metrics to read
    frame = pd.DataFrame({"config": done["config"], "train_error": train_error,
                          "val_error": val_error})
    table = frame.groupby("config", sort=False).mean()
    table["gap"] = table["val_error"] - table["train_error"]
    options = suite.report

    def verdict(row: pd.Series) -> str:
        if row["train_error"] > options.underfit_error:
            return "underfit"  # the notes: training and validation errors both high
        if row["gap"] > options.overfit_gap:
            return "overfit"  # the notes: low training error, high validation error
        return "good fit"

    table["verdict"] = table.apply(verdict, axis=1)
    table.attrs["error"] = "1 − accuracy" if classification else "RMSE"
    return table.reset_index()


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str  # supported | contradicted | inconclusive
    result: Paired
    p_holm: float
    a_mean: float
    b_mean: float


def _select(frame: pd.DataFrame, where: dict[str, str]) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for axis, label in where.items():
        mask &= frame[axis] == label
    return mask


def claim_verdicts(trials: pd.DataFrame, suite: Suite) -> list[Verdict]:
    """Each `expect:` claim against the seed-paired statistics (Holm over the claims)."""
    done = _finished(trials)
    pending = []
    for claim in suite.expect:
        if done.empty or claim.metric not in done.columns:
            pending.append((claim, paired([]), math.nan, math.nan))
            continue
        scope = done[_select(done, dict(claim.where))]
        a, b = scope[_select(scope, dict(claim.a))], scope[_select(scope, dict(claim.b))]
        keys = [c for c in suite.varied_axes if c not in claim.a and c not in claim.b]
        per_a = a.groupby(["seed", *keys])[claim.metric].mean()
        per_b = b.groupby(["seed", *keys])[claim.metric].mean()
        diff = (per_a - per_b).dropna().groupby(level="seed").mean()
        pending.append((claim, paired(diff), float(a[claim.metric].mean()),
                        float(b[claim.metric].mean())))
    adjusted = holm([r.p for _, r, _, _ in pending])
    verdicts = []
    for (claim, r, a_mean, b_mean), p_holm in zip(pending, adjusted, strict=True):
        sign = 1 if claim.direction == "higher" else -1
        if p_holm < ALPHA and np.sign(r.diff) == sign:
            verdict = "supported"
        elif p_holm < ALPHA:
            verdict = "contradicted"
        else:
            verdict = "inconclusive"
        verdicts.append(Verdict(claim, verdict, r, float(p_holm), a_mean, b_mean))
    return verdicts


@dataclass(frozen=True)
class ReferenceRow:
    """One published number beside the measured one."""

    result: PublishedResult
    label: str  # "model=logistic": the configurations it stands for
    metric: str
    measured: Interval  # over seeds (per-seed mean of the matched configurations)
    difference: float  # measured mean - published
    verdict: str  # reproduced | outside tolerance | no tolerance | not run yet


def reference_comparison(trials: pd.DataFrame, suite: Suite) -> list[ReferenceRow]:
    """Each published result of the suite's `reference:` against the finished trials."""
    reference = suite.reference
    if reference is None:
        return []
    done = _finished(trials)
    rows = []
    for result in reference.results:
        label = ", ".join(f"{axis}={value}" for axis, value in result.where.items())
        chosen = done[_select(done, dict(result.where))] if not done.empty else done
        if chosen.empty or reference.metric not in chosen.columns:
            measured = t_interval([])
        else:
            measured = t_interval(chosen.groupby("seed")[reference.metric].mean())
        difference = measured.mean - result.value
        if measured.n == 0:
            verdict = "not run yet"
        elif reference.tolerance is None:
            verdict = "no tolerance"
        elif abs(difference) <= reference.tolerance + 1e-12:
            verdict = "reproduced"
        else:
            verdict = "outside tolerance"
        rows.append(ReferenceRow(result, label, reference.metric, measured, difference,
                                 verdict))
    return rows
