"""What the report says: leaderboard, the best configuration against its runner-up, main
effects, interaction tests and reversals, fit, claims, and the comparison with published
numbers (a suite's `reference:`).

Every comparison is seed-paired and carries the per-seed values of both sides into
`stats.compare` (t and permutation tests, bootstrap intervals, P(a better), MDE), is
Holm-adjusted over its family, and is one row of `comparisons_table` (the report's
`<suite>.comparisons.csv`). A comparison without two paired seeds is no row: its family
names it once, with the reason (`Family.notes`), so no row shows n = 0 or NaN.

Each function takes the tidy per-trial table (`Results.trials`: one row per trial,
the varied axes as label columns, `seed`, `status`, the metrics) and returns plain
DataFrames / dicts that the report renders. Only finished trials enter statistics;
diverged and failed ones are counted and shown, never silently dropped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from nnbench.config import Claim, PublishedResult, Suite, apply_values
from nnbench.config.spec import NOT_APPLICABLE, value_label
from nnbench.messages import decimals
from nnbench.results.stats import (
    ALPHA,
    Interval,
    Paired,
    compare,
    format_p,
    holm,
    perm_floors,
    t_interval,
    verdict,
)

__all__ = ["Comparison", "Family", "InteractionTests", "baseline_level", "best_summary",
           "best_versus", "claim_verdicts", "comparisons_table", "fit_diagnosis",
           "interaction_tests", "interactions", "leaderboard", "main_effects",
           "reference_comparison", "unfinished"]


def _finished(trials: pd.DataFrame) -> pd.DataFrame:
    if trials.empty:
        return trials
    return trials[trials["status"] == "finished"]


def leaderboard(trials: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """One row per configuration with a finished seed: mean, 95% t interval (none when
    every seed gave the same value: `identical`), sd, n finished seeds, status counts, mean
    best epoch and wall time (of the finished seeds); best first. Configurations without a
    finished seed are no row: `unfinished` names them once, with their statuses."""
    columns = ["config", "mean", "low", "high", "sd", "n", "identical", "diverged", "failed",
               "killed", "best_epoch", "wall_seconds", "params", "best"]
    rows = []
    for config, group in trials.groupby("config", sort=False) if not trials.empty else []:
        done = group[group["status"] == "finished"]
        interval = t_interval(done["metric"])
        if interval.n == 0:  # no finished seed with a finite metric: `unfinished` names it
            continue
        rows.append({
            "config": config, "mean": interval.mean, "low": interval.low,
            "high": interval.high, "sd": interval.sd, "n": interval.n,
            "identical": interval.identical,
            **{s: int((group["status"] == s).sum()) for s in ("diverged", "failed", "killed")},
            "best_epoch": float(done["best_epoch"].mean()),
            "wall_seconds": float(done["wall_seconds"].mean()),  # a killed run's is partial
            "params": int(group["num_params"].max()) if "num_params" in group else 0,
        })
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows).sort_values("mean", ascending=not higher_is_better,
                                           na_position="last", kind="stable")
    table["best"] = False
    table.iloc[0, table.columns.get_loc("best")] = True
    return table.reset_index(drop=True)[columns]


def _statuses(group: pd.DataFrame) -> str:
    counts = group["status"].value_counts()
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def unfinished(trials: pd.DataFrame, column: str = "config") -> list[str]:
    """Each value of `column` (a configuration, or an axis's level) that has trials but no
    finished one with a finite metric, with its statuses: "activation=relu (4 diverged)",
    "lr=0.1 (2 finished without a finite metric)"."""
    if trials.empty:
        return []
    done = _finished(trials)
    scored = set(done[np.isfinite(done["metric"].astype(float))][column].astype(str))
    out = []
    for value, group in trials.groupby(trials[column].astype(str), sort=False):
        if value in scored:
            continue
        text = _statuses(group).replace(" finished", " finished without a finite metric")
        out.append(f"{value} ({text})")
    return out


def _seed_pairs(frame: pd.DataFrame, axes: list[str], axis: str, a: str, b: str,
                value: str) -> tuple[pd.Series, pd.Series]:
    """Per-seed values of `value` at level a and at level b of `axis`, matched on the
    other axes (a cell counts only where both finished), then averaged within each seed;
    aligned by seed."""
    others = [c for c in axes if c != axis]
    table = frame.pivot_table(index=["seed", *others], columns=axis, values=value,
                              aggfunc="mean")
    if a not in table or b not in table:
        return pd.Series(dtype=float), pd.Series(dtype=float)
    both = table[[a, b]].dropna()
    per_seed = both.groupby(level="seed").mean()
    return per_seed[a], per_seed[b]


@dataclass(frozen=True)
class Comparison:
    """One seed-paired comparison of the report: a against b on one metric (a − b)."""

    kind: str  # main_effect | best_vs | interaction | claim
    axis: str  # the varied axis; "config" (best_vs); "x × y" (interaction); claim: its axes
    a: str  # level names as in trials.csv (interaction: "x1 vs x0", the first axis's contrast)
    b: str  # (interaction: "y1 vs y0": mean_diff = (x1 − x0 at y1) − (x1 − x0 at y0))
    metric: str
    result: Paired
    p_holm: float  # Holm-adjusted over the comparison's family (nan: no t-test, see sentence)
    p_perm_holm: float  # the permutation p-values, Holm-adjusted over the same family
    sentence: str


@dataclass(frozen=True)
class Family:
    """Comparisons tested together (Holm over them) and, once, what could not be compared."""

    rows: list[Comparison]
    notes: list[str]


def _too_few(pairs: list[tuple[str, str, int]], seeds: int) -> list[str]:
    """The note that stands for comparisons without two paired seeds (an interaction's
    contrasts come parenthesized, and are joined by ×)."""
    if not pairs:
        return []
    if seeds < 2:
        return [f"No seed-paired test: a paired test needs at least 2 seeds and the suite "
                f"has {seeds}; the levels' means are shown, not compared"]
    def listed(chosen: list[tuple[str, str, int]], n: bool) -> str:
        return "; ".join(f"{a} {'×' if a.startswith('(') else 'vs'} {b}"
                         + (f" (n = {k})" if n else "") for a, b, k in chosen)

    none, one = [p for p in pairs if p[2] == 0], [p for p in pairs if p[2] > 0]
    return ([f"Not compared, because no seed finished both sides in any cell (a seed and the "
             f"other axes' levels) where both were trained: {listed(none, False)}"]
            if none else []) + (
        [f"Not compared, because fewer than 2 seeds finished both sides (a paired test needs "
         f"at least 2): {listed(one, True)}"] if one else [])


def _compare(a: pd.Series, b: pd.Series, higher_is_better: bool) -> Paired:
    return compare(a.to_numpy(float), b.to_numpy(float), higher_is_better=higher_is_better)


def _holm(kind: str, pending: list[tuple[str, str, str, Paired]], metric: str,
          say: Callable[[str, str, Paired, float, float, tuple[float, int]], str]
          ) -> list[Comparison]:
    """Holm over a family (the t p-values, and apart the permutation p-values); each row's
    sentence from `say(a, b, result, p_holm, p_perm_holm, perm_floor_seeds)` (the lowest
    its Holm-adjusted permutation p can be at the family's seeds, and the seeds from which
    it could reach α: `stats.perm_floors`)."""
    return [Comparison(kind, axis, a, b, metric, r, p, q, say(a, b, r, p, q, floor))
            for (axis, a, b, _), (r, p, q, floor) in zip(
                pending, _family([r for *_, r in pending]), strict=True)]


def _family(results: list[Paired]
            ) -> list[tuple[Paired, float, float, tuple[float, int]]]:
    """Per comparison of a Holm family: its result, with `seeds_needed` at least the seeds
    from which its Holm-adjusted permutation p could reach α (the sentence said 7 where the
    comparisons CSV said 6); its Holm-adjusted t p and permutation p; and the lowest that
    permutation p can be at the family's seeds with those seeds (`stats.perm_floors`).
    Every row compared counts in the family, one whose t p is undefined (identical
    differences) too, so the others are not under-corrected."""
    adjusted = holm([r.p for r in results], family=len(results))
    adjusted_perm = holm([r.p_perm for r in results], family=len(results))
    return [(replace(r, seeds_needed=_seeds_in_family(r, floor[1])), float(p), float(q), floor)
            for r, p, q, floor in zip(results, adjusted, adjusted_perm,
                                      perm_floors([r.n for r in results]), strict=True)]


def _seeds_in_family(r: Paired, free: int) -> int | None:
    """The seeds a row needs, as its sentence says them: the t-test's, and at least `free`,
    those from which its Holm-adjusted permutation p could reach α; None where it has both,
    or a difference of exactly 0 (nothing would resolve it). At 6 seeds in a family of 3,
    the sentence said "from 7 seeds" and the CSV nothing."""
    if r.diff == 0 or not math.isfinite(r.diff):
        return r.seeds_needed
    if r.seeds_needed is None and r.n >= free:
        return None
    return max(r.seeds_needed or 0, free)


def _says(metric: str) -> Callable[[str, str, Paired, float, float, tuple[float, int]], str]:
    """The sentence of a comparison of a against b: the difference, P(a better), verdict."""

    def say(a: str, b: str, r: Paired, p_holm: float, p_perm_holm: float,
            floor: tuple[float, int]) -> str:
        text = f"{a} vs {b}: Δ {metric} = {decimals(r.diff, plus=True)}"
        if r.p_improvement == r.p_improvement:  # oriented by higher_is_better in compare
            text += f", P({a} better than {b}) = {decimals(r.p_improvement, 2)}"
        return (f"{text}; " + verdict(r, p_adjusted=_finite(p_holm),
                                      p_perm_adjusted=_finite(p_perm_holm),
                                      perm_floor_seeds=floor))

    return say


def _finite(p: float) -> float | None:
    return p if math.isfinite(p) else None


def _nested_notes(suite: Suite) -> list[str]:
    """What the main effects say of each nested parameter axis (`nested_axes`)."""
    return [f"{axis} is a parameter of {head}, which the suite varies too: {head}'s levels "
            f"carry its value ({', '.join(suite.levels(head))}), so it is compared as "
            f"part of them and has no rows of its own"
            for axis, head in suite.nested_axes.items()]


def _replicates(suite: Suite) -> int:
    """Trials per configuration the comparisons pair: a tuned suite's re-runs use
    `tune.seeds`; a per-source design has one per seed combination."""
    return len(suite.tune.seeds) if suite.tune is not None else suite.seeds_per_configuration


def _design_notes(suite: Suite) -> list[str]:
    """Where the paired replicates are not independent: a crossed per-source design."""
    varied = suite.design.varied
    if not suite.design.per_source or len(varied) < 2:
        return []
    names = " × ".join("+".join(sources) for sources in varied)
    return [f"The {suite.seeds_per_configuration} seed combinations of each configuration "
            f"cross {names}: combinations that share a seed are not independent, but the "
            f"paired tests below treat them as {suite.seeds_per_configuration} independent "
            f"replicates, so their intervals and p-values overstate the precision; for "
            f"independent replicates vary the sources together (seeds: {{count: N, vary: "
            f"[...]}}). Sources of randomness shows what each source contributes"]


def baseline_level(suite: Suite, axis: str) -> str | None:
    """The level of `axis` the others are compared with: the `fixed` value. In a tuned
    suite, the point whose value is the fixed one once its nuisance values are the fixed
    ones too (the fixed value's own tuned point); None when the grid does not hold it."""
    fixed = value_label(axis, suite.base.value(axis))
    if suite.tune is None:
        return fixed if fixed in suite.levels(axis) else None
    nuisance: dict[str, Any] = {}
    for d in suite.tune.space:
        try:
            value = suite.base.value(d.path)
        except AttributeError:
            continue
        if value != NOT_APPLICABLE:  # else the fixed value has no such parameter
            nuisance[d.path] = value
    for point in suite.configurations():
        try:
            as_fixed = apply_values(point, nuisance)
        except ValueError:
            continue
        if value_label(axis, as_fixed.value(axis)) == fixed:
            return value_label(axis, point.value(axis))
    return None


def _reference(done: pd.DataFrame, suite: Suite, axis: str,
               means: pd.DataFrame | None = None) -> tuple[str, str]:
    """The level of `axis` its other levels are compared with, and the note that says so
    when it is not the `fixed` value (`baseline_level`): then the best finished level, by
    the level means (`means`: the trials they are over, `_like_for_like`; default all)."""
    reference = baseline_level(suite, axis)
    if reference is not None and reference in set(done[axis].astype(str)):
        return reference, ""

    def by_level(frame: pd.DataFrame) -> pd.Series:
        per_level = _with_metric(frame).groupby(["seed", axis])["metric"].mean().groupby(
            level=axis).mean()
        per_level.index = per_level.index.astype(str)
        return per_level

    per_level = by_level(means) if means is not None else pd.Series(dtype=float)
    if per_level.empty:  # no finite metric among the shared cells: every finished trial
        per_level = by_level(done)
    if per_level.empty:  # none anywhere: any level; nothing is compared with it
        per_level = pd.Series(0.0, index=sorted(set(done[axis].astype(str))) or [""])
    best = str(per_level.idxmax() if suite.higher_is_better else per_level.idxmin())
    fixed = value_label(axis, suite.base.value(axis))
    where = ("has no finished trial" if reference is not None else
             "is not a point of the grid, so it was not tuned" if suite.tune is not None else
             "is not a level of the grid, so it was not trained")
    return best, (f"{axis}: the fixed value {fixed} {where}; every level is compared with the "
                  f"best level, {best}")


def main_effects(trials: pd.DataFrame, suite: Suite) -> tuple[pd.DataFrame, Family]:
    """Per varied axis: the metric by level (per-seed means over the other axes, t interval)
    and each level's seed-paired comparison with the axis's baseline: the `fixed` value
    (`baseline_level`), or, where the grid does not hold it, the best level. p-values are
    Holm-adjusted over every main-effect comparison of the suite."""
    axes = suite.compared_axes
    done = _finished(trials)
    columns = ["axis", "level", "mean", "low", "high", "n", "baseline"]
    if done.empty or not axes:
        return pd.DataFrame(columns=columns), Family([], [])
    levels: list[dict[str, Any]] = []
    pending: list[tuple[str, str, str, Paired]] = []
    notes: list[str] = _design_notes(suite) + _nested_notes(suite)
    too_few: list[tuple[str, str, int]] = []
    for axis in axes:
        index = ["seed", *(c for c in axes if c != axis)]
        # a cell is a seed and the other axes' levels; planned: it has a run (whatever its
        # status) at that level; an ablation's unplanned combinations are not
        planned = trials.pivot_table(index=index, columns=axis, values="metric",
                                     aggfunc="size").notna()
        cells = done.pivot_table(index=index, columns=axis, values="metric",
                                 aggfunc="mean").reindex_like(planned)
        shared, note = _like_for_like(trials, done, suite, axis)
        if note:
            notes.append(note)
        rows: list[dict[str, Any]] = []
        alone: list[str] = []
        for level, group in done.groupby(axis, sort=False):
            own = _with_metric(shared[shared[axis] == level])
            if own.empty:  # it finished only outside the shared cells: over its own
                own = group
                alone.append(str(level))
            interval = t_interval(own.groupby("seed")["metric"].mean())
            rows.append({"axis": axis, "level": str(level), "mean": interval.mean,
                         "low": interval.low, "high": interval.high, "n": interval.n})
        if alone:
            notes.append(f"{axis}: {', '.join(alone)} finished only outside those cells; its "
                         f"mean is over its own cells")
        names = [str(r["level"]) for r in rows]
        # (a level no trial finished at has a note of its own, below)
        # a gap: a cell finished at some of its planned levels, not all (one finished at
        # none weighs on no level); out of the cells with two levels planned
        ran = [c for c in planned.columns if cells[c].notna().any()]
        two = planned[ran].sum(axis=1) >= 2
        gaps = int(((cells[ran].isna() & planned[ran]).any(axis=1)
                    & cells[ran].notna().any(axis=1) & two).sum())
        compared = int(two.sum())
        if gaps:
            # which levels lost cells, and how (lr 50 diverged on every relu trial, and its
            # row beat lr 0.05 on tanh's cells alone, with no word of divergence)
            lost = [f"{level} ({_statuses(group)})" for level, group in
                    trials[trials["status"] != "finished"].groupby(axis, sort=False)
                    if str(level) in names]
            notes.append(f"{axis}: {gaps} of {compared} cells (a seed and the other axes' "
                         f"levels) finished at some of its levels only"
                         + (f" (not finished: {'; '.join(lost)})" if lost else "")
                         + "; each level's mean (figure, level rows) is over its own finished "
                           "cells, each Δ over the cells finished at both of its levels, so "
                           "the two can differ")
        reference, note = _reference(done, suite, axis, shared)
        if note:
            notes.append(note)
        # levels without a finished trial; the fixed value's own note already names it
        fixed = f"{value_label(axis, suite.base.value(axis))} ("
        missing = [m for m in unfinished(trials, axis) if not (note and m.startswith(fixed))]
        if missing:
            notes.append(f"{axis}: not compared, because no trial finished at "
                         f"{'; '.join(missing)}")
        # levels the suite has but no trial of which has run (a level edited in since):
        # the section read "No main effects: ." with nothing said
        present = set(trials[axis].astype(str))
        never = sorted({value_label(axis, c.value(axis)) for c in suite.configurations()}
                       - present)
        if never:
            notes.append(f"{axis}: {', '.join(never)} not compared yet, because no trial of "
                         f"{'it' if len(never) == 1 else 'them'} has run (the next run "
                         f"trains {'it' if len(never) == 1 else 'them'})")
        for row, level in zip(rows, names, strict=True):
            row["baseline"] = level == reference
            levels.append(row)
            if level == reference:
                continue
            a, b = _seed_pairs(done, axes, axis, level, reference, "metric")
            if len(a) < 2:
                too_few.append((level, reference, len(a)))
                continue
            pending.append((axis, level, reference, _compare(a, b, suite.higher_is_better)))
    notes += _too_few(too_few, _replicates(suite))
    return pd.DataFrame(levels, columns=columns), Family(
        _holm("main_effect", pending, suite.metric,
                                               _says(suite.metric)), notes)


def _like_for_like(trials: pd.DataFrame, done: pd.DataFrame, suite: Suite, axis: str
                   ) -> tuple[pd.DataFrame, str]:
    """The finished trials a level mean of `axis` is over, and the note that says which.

    A grid plans every level at every cell (a seed and the other axes' levels): all of
    `done`. Where the suite ablates, an ablation's level exists at the fixed values only,
    and a level's mean over its own cells would pool configurations the other levels
    never ran (relu's mean took the ablated learning rate in): then the cells every level
    was trained at, or, where there are none, every level's own cells, said."""
    if not suite.ablate:
        return done, ""
    index, common = _common_cells(trials, suite.compared_axes, [axis])
    if common.all():
        return done, ""
    if not common.any():
        return done, (f"{axis}: no cell (a seed and the other axes' levels) was trained at "
                      f"every level of {axis}, so each level's mean is over its own cells, "
                      f"which differ: compare them with care")
    return _in_cells(done, index, common), (
        f"{axis}: each level's mean is over the {int(common.sum())} of {len(common)} cells (a "
        f"seed and the other axes' levels) that every level of {axis} was trained at, so "
        f"that its levels are compared like for like")


def _common_cells(trials: pd.DataFrame, axes: Sequence[str], columns: list[str]
                  ) -> tuple[list[str], pd.Series]:
    """The cells of `columns`' levels (a seed and the levels of the other `axes`: their
    `index` columns) and, for each, whether every combination of `columns`' levels that
    has a run somewhere has one there (whatever its status): planned there, too."""
    index = ["seed", *(c for c in axes if c not in columns)]
    planned = trials.pivot_table(index=index, columns=columns, values="metric",
                                 aggfunc="size").notna()
    return index, planned.all(axis=1)


def _with_metric(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with a finite metric (a trial can finish without one)."""
    return frame[np.isfinite(frame["metric"].astype(float))] if not frame.empty else frame


def _in_cells(done: pd.DataFrame, index: list[str], cells: pd.Series) -> pd.DataFrame:
    """The finished trials of the cells (`index` columns' values) where `cells` is True."""
    keep = set(cells[cells].index)
    keys = done[index].itertuples(index=False, name=None) if len(index) > 1 else done[index[0]]
    return done[[key in keep for key in keys]]


def best_versus(trials: pd.DataFrame, table: pd.DataFrame, suite: Suite) -> Family:
    """The best configuration (the leaderboard's first) against the runner-up and every
    configuration whose 95% interval overlaps its own, seed-paired, Holm over them."""
    done = _finished(trials)
    if done.empty or len(table) < 2:
        return Family([], [])
    # every seed the same, or one seed finished: no interval, the value itself is what may
    # overlap (such a configuration inside the best's interval is named, not skipped)
    point = table["identical"].astype(bool) | table["low"].isna() | table["high"].isna()
    low = table["low"].where(~point, table["mean"])
    high = table["high"].where(~point, table["mean"])
    best = table.iloc[0]
    others = table.iloc[1:]
    overlap = (low.iloc[1:] <= high.iloc[0]) & (high.iloc[1:] >= low.iloc[0])
    if len(others):
        overlap.iloc[0] = True  # the runner-up, overlapping or not
    chosen = others[overlap]
    pending: list[tuple[str, str, str, Paired]] = []
    too_few: list[tuple[str, str, int]] = []
    for other in chosen["config"]:
        a, b = _seed_pairs(done, [], "config", str(best["config"]), str(other), "metric")
        if len(a) < 2:
            too_few.append((str(best["config"]), str(other), len(a)))
            continue
        pending.append(("config", str(best["config"]), str(other),
                        _compare(a, b, suite.higher_is_better)))
    rows = _holm("best_vs", pending, suite.metric, _says(suite.metric))
    return Family(rows, _too_few(too_few, _replicates(suite)))


def best_summary(family: Family, higher_is_better: bool,
                 table: pd.DataFrame | None = None) -> str:
    """One sentence: is the best configuration's lead established? Only when each
    configuration it was to be tested against (`best_versus`) was compared and both the
    Holm-adjusted paired t-test and the Holm-adjusted sign-flip permutation test put it
    ahead; and the sentence says when the best's own mean leaves out seeds that did not
    finish (`table`: the leaderboard)."""
    if not family.rows:  # nothing was compared: the family's notes say why
        return ""
    caveat = ""
    if table is not None and len(table):
        row = table.iloc[0]
        lost = [f"{int(row[s])} {s}" for s in ("diverged", "failed", "killed") if row[s]]
        if lost:
            caveat = (f" Its mean is over the {int(row['n'])} seed(s) that finished; "
                      f"{', '.join(lost)}: a configuration that fails on some seeds may lead "
                      f"on those that survive.")
    best = family.rows[0].a

    def ahead(p: float, c: Comparison) -> bool:
        return bool(p < ALPHA and (c.result.diff > 0) == higher_is_better)

    # the same value on every seed: a tie, not a lead (a grad_clip that never clips was
    # said to trail "the leader" it equals bit for bit)
    tied = [c.b for c in family.rows if c.result.identical and c.result.diff == 0]
    tie = (f"{best} is tied with {'; '.join(tied)}: every seed gave "
           f"{'both' if len(tied) == 1 else 'each'} exactly the same value. "
           if tied else "")
    open_ = [c.b for c in family.rows if not ahead(c.p_holm, c) and c.b not in tied]
    untested = " Some were not compared (see above)." if family.notes else ""
    if open_:
        return (f"{tie}{best} leads, but is not distinguishable from {'; '.join(open_)}: the "
                f"order at the top is not settled at these seeds.{untested}{caveat}")
    if tied:  # (the others, if any, are behind: said in the table)
        return f"{tie}Which of them is first is not settled.{untested}{caveat}"
    unconfirmed = [c.b for c in family.rows if not ahead(c.p_perm_holm, c)]
    if unconfirmed:
        return (f"{best} is ahead of each configuration tested against it by the paired "
                f"t-test (Holm-adjusted p < {ALPHA}), but the distribution-free sign-flip "
                f"test does not confirm it against {'; '.join(unconfirmed)} at these seeds: "
                f"the lead rests on the seeds' differences being normally distributed."
                f"{untested}{caveat}")
    if family.notes:
        return (f"{best} is better than each configuration it was compared with (Holm-"
                f"adjusted p < {ALPHA} by both tests), but not every close configuration "
                f"could be compared (see above): its lead is not established.{caveat}")
    return (f"{best} is better than each configuration tested against it (Holm-adjusted "
            f"p < {ALPHA} by the paired t-test and the sign-flip permutation test): its "
            f"lead is established.{caveat}")


def interactions(trials: pd.DataFrame, a: str, b: str, axes: Sequence[str] = (),
                 ablates: bool = False, bounds: tuple[float, float] = (-math.inf, math.inf)
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean metric and 95% interval width for each (level of a, level of b), over seeds and
    the other varied `axes`' levels that every combination was trained at (as the main
    effects' level means, where the suite `ablates`: a combination only an ablation made
    exists at the fixed values alone, and the others' means must not pool configurations
    it never ran)."""
    done = _finished(trials)
    shared = done
    if ablates and not done.empty:
        index, common = _common_cells(trials, axes, [a, b])
        if common.any() and not common.all():
            shared = _with_metric(_in_cells(done, index, common))
    cells = []
    for (level_a, level_b), group in done.groupby([a, b], sort=False):
        own = shared[(shared[a] == level_a) & (shared[b] == level_b)]
        if not own.empty:  # else it finished only outside the shared cells: its own
            group = own
        interval = t_interval(group.groupby("seed")["metric"].mean())
        # the width of the interval cut at the metric's `bounds`, as the leaderboard cuts
        # it (a cell's accuracy interval was 2.0118 wide beside the leaderboard's [0, 1])
        cells.append({a: level_a, b: level_b, "mean": interval.mean,
                      "width": min(interval.high, bounds[1]) - max(interval.low, bounds[0])})
    frame = pd.DataFrame(cells)
    if frame.empty:
        return frame, frame
    return (frame.pivot(index=a, columns=b, values="mean"),
            frame.pivot(index=a, columns=b, values="width"))


@dataclass(frozen=True)
class InteractionTests:
    """The interaction tests of one pair of varied axes and where an average effect reverses."""

    a: str
    b: str
    family: Family
    reversals: list[str]


def interaction_tests(trials: pd.DataFrame, suite: Suite) -> list[InteractionTests]:
    """For each pair of varied axes (x, y), each level x1 of x against x's reference x0 (the
    main effects' baseline) and each y1 against y0: the seed-paired difference of
    differences (x1 − x0 at y1) − (x1 − x0 at y0), averaged over the other axes within a
    seed ((|x| − 1)(|y| − 1) tests, Holm over the pair's family); and a sentence for each
    main effect (x1 against x0) that reverses at some level of y."""
    done = _finished(trials)
    axes = suite.compared_axes
    out: list[InteractionTests] = []
    if done.empty:
        return out
    references = {axis: _reference(done, suite, axis,
                                   _like_for_like(trials, done, suite, axis)[0])[0]
                  for axis in axes}
    for x, y in itertools.combinations(axes, 2):
        others = [c for c in axes if c not in (x, y)]
        cells = done.pivot_table(index=["seed", *others], columns=[x, y], values="metric",
                                 aggfunc="mean")
        planned = set(zip(trials[x].astype(str), trials[y].astype(str), strict=True))
        finished = {k for k in cells.columns if cells[k].notna().any()}
        x0, y0, crossed = _crossed_references(done, suite, x, y, references, planned,
                                              finished)
        xs = [v for v in dict.fromkeys(str(v) for v in done[x]) if v != x0]
        ys = [v for v in dict.fromkeys(str(v) for v in done[y]) if v != y0]
        pending: list[tuple[str, str, str, Paired]] = []
        too_few: list[tuple[str, str, int]] = []
        untested: list[str] = list(crossed)
        for x1, y1 in itertools.product(xs, ys):
            keys = _corners(x1, x0, y1, y0)
            if any(k not in cells for k in keys):
                if any(k not in planned for k in keys):
                    continue  # not a configuration of the suite (an ablation's design)
                empty = ", ".join(f"{x}={kx} with {y}={ky}" for kx, ky in keys
                                  if (kx, ky) not in cells)
                untested.append(f"({x}={x1} vs {x0}) × ({y}={y1} vs {y0}): not tested, "
                                f"because no trial finished at {empty}")
                continue
            block = cells[keys].dropna()
            at_1 = (block[(x1, y1)] - block[(x0, y1)]).groupby(level="seed").mean()
            at_0 = (block[(x1, y0)] - block[(x0, y0)]).groupby(level="seed").mean()
            name_a, name_b = f"{x1} vs {x0}", f"{y1} vs {y0}"
            if len(at_1) < 2:  # named as the untested: (x=x1 vs x0) × (y=y1 vs y0)
                too_few.append((f"({x}={name_a})", f"({y}={name_b})", len(at_1)))
                continue
            # P(a better): x1's gain over x0 is larger (in the metric's direction) at y1
            pending.append((f"{x} × {y}", name_a, name_b,
                            _compare(at_1, at_0, suite.higher_is_better)))

        def say(a: str, b: str, r: Paired, p_holm: float, p_perm_holm: float,
                floor: tuple[float, int], x: str = x, y: str = y) -> str:
            x1, _, x0 = a.partition(" vs ")
            y1, _, y0 = b.partition(" vs ")
            return (f"({x1} − {x0} at {y}={y1}) − ({x1} − {x0} at {y}={y0}) = "
                    f"{decimals(r.diff, plus=True)}: " + verdict(r, p_adjusted=_finite(p_holm),
                                                 p_perm_adjusted=_finite(p_perm_holm),
                                                 perm_floor_seeds=floor))

        if not pending and not too_few and len(untested) == len(crossed):
            untested.append(f"No interaction test of {x} × {y}: " + (
                "no two levels of each were trained in all four combinations (an ablation "
                "varies one axis at a time, from the fixed values)" if not _crossed(planned)
                else "; ".join(f"{axis} finished at {', '.join(levels)} only"
                               for axis in (x, y)
                               if len(levels := list(dict.fromkeys(done[axis].astype(str))))
                               < 2)
                or "no two levels of each finished in all four combinations"))
        family = Family(_holm("interaction", pending, suite.metric, say),
                        untested + _too_few(too_few, _replicates(suite)))
        reversals = (_reversals(done, axes, x, y, x0, xs, family, suite, planned, y0,
                                first=True)
                     + _reversals(done, axes, y, x, y0, ys, family, suite,
                                  {(b, a) for a, b in planned}, x0, first=False))
        out.append(InteractionTests(x, y, family, reversals))
    return out


def _corners(x1: str, x0: str, y1: str, y0: str) -> list[tuple[str, str]]:
    """The four combinations an interaction test (x1 − x0 at y1) − (x1 − x0 at y0) reads."""
    return [(x1, y1), (x0, y1), (x1, y0), (x0, y0)]


def _crossed(planned: set[tuple[str, str]]) -> bool:
    """Whether two levels of each axis are planned in all four combinations."""
    by_x: dict[str, set[str]] = {}
    for a, b in planned:
        by_x.setdefault(a, set()).add(b)
    return any(len(by_x[a] & by_x[b]) >= 2 for a, b in itertools.combinations(by_x, 2))


def _crossed_references(done: pd.DataFrame, suite: Suite, x: str, y: str,
                        references: Mapping[str, str], planned: set[tuple[str, str]],
                        finished: set[tuple[str, str]]) -> tuple[str, str, list[str]]:
    """The levels (x0, y0) an interaction pair's tests are against, and the note that says
    where they are not the main effects' baselines. A test of x1 vs x0 × y1 vs y0 needs all
    four combinations planned; where an ablation made a baseline (its level exists at the
    fixed values only, relu at kaiming alone), the baselines allow none, and the pair had
    no test while its reversals blamed the seeds: then the levels that allow the most
    tests, the baselines first, then by their mean (the better first). A test counts where
    its four combinations finished (`finished`), else where they are planned."""
    xs = list(dict.fromkeys(str(v) for v in done[x]))
    ys = list(dict.fromkeys(str(v) for v in done[y]))

    def tests(a0: str, b0: str) -> tuple[int, int]:
        def count(among: set[tuple[str, str]]) -> int:
            return sum(all(k in among for k in _corners(a1, a0, b1, b0))
                       for a1 in xs if a1 != a0 for b1 in ys if b1 != b0)

        return count(finished), count(planned)

    def ranked(axis: str, levels: list[str]) -> list[str]:
        means = _with_metric(done).groupby(done[axis].astype(str))["metric"].mean()
        others = sorted((v for v in levels if v != references[axis]),
                        key=lambda v: -means.get(v, -math.inf) if suite.higher_is_better
                        else means.get(v, math.inf))
        return [references[axis], *others]

    x0, y0 = references[x], references[y]
    if tests(x0, y0)[0]:
        return x0, y0, []
    count, a0, b0 = max(((tests(a, b), a, b) for a in ranked(x, xs) for b in ranked(y, ys)),
                        key=lambda t: t[0])
    if count <= tests(x0, y0):
        return x0, y0, []
    why = ("was not trained at every level of {other} the others were (an ablation's level "
           "exists at the fixed values only)" if not tests(x0, y0)[1] else
           "did not finish at every level of {other} the others did")
    notes = [f"{axis}: its baseline {old} {why.format(other=other)}, so its interactions "
             f"with {other} are against {new}"
             for axis, other, old, new in ((x, y, x0, a0), (y, x, y0, b0)) if new != old]
    return a0, b0, notes


def _prints_as_zero(value: float) -> bool:
    """The sentences print it (`decimals`) as 0.0000 or -0.0000."""
    return float(decimals(value)) == 0


def _judged_p(c: Comparison) -> float:
    """The p a comparison is judged by: the larger of its Holm-adjusted t and permutation
    p, or the permutation p alone where there is no t p (no spread)."""
    if not math.isfinite(c.p_perm_holm):
        return 2.0
    return max(c.p_holm, c.p_perm_holm) if math.isfinite(c.p_holm) else c.p_perm_holm


def _p_text(p: float) -> str:
    shown = format_p(p)
    return shown if shown.startswith("<") else f"= {shown}"


def _reversals(done: pd.DataFrame, axes: list[str], x: str, y: str, x0: str, xs: list[str],
               family: Family, suite: Suite, planned: set[tuple[str, str]], y0: str, *,
               first: bool) -> list[str]:
    """"xavier beats kaiming on average, but not with sigmoid": each main effect of x (x1
    against its reference x0) whose seed-paired difference changes sign at some level of y,
    with the interaction tests behind it (against y's reference y0; `planned`: the (x, y)
    combinations the suite has, which say why a test is missing). `first`: x is the
    family's first axis (its contrasts are the rows' `a`, y's their `b`; else the other way
    round), so that levels two axes both have (0.1 of dropout and of l2) are not taken for
    each other."""
    metric, higher = suite.metric, suite.higher_is_better
    ended = set(zip(_with_metric(done)[x].astype(str), _with_metric(done)[y].astype(str),
                    strict=True))
    sentences = []
    for x1 in xs:
        a, b = _seed_pairs(done, axes, x, x1, x0, "metric")
        # a difference that prints as 0.0000 turns nothing around (1.4e-5 read "but not
        # with lr=0.05 (... = +0.0000)")
        if len(a) < 1 or _prints_as_zero(float((a - b).mean())):
            continue
        average = float((a - b).mean())
        flipped = []
        for level, scope in done.groupby(y, sort=False):
            a_at, b_at = _seed_pairs(scope, [c for c in axes if c != y], x, x1, x0, "metric")
            if not len(a_at):
                continue
            diff_at = float((a_at - b_at).mean())
            if np.sign(diff_at) == -np.sign(average) and not _prints_as_zero(diff_at):
                flipped.append((str(level), diff_at))
        if not flipped:
            continue
        winner, loser = (x1, x0) if (average > 0) == higher else (x0, x1)
        sign = 1 if winner == x1 else -1
        where = " or ".join(f"{y}={level} ({metric} {winner} − {loser} = "
                            f"{decimals(sign * d, plus=True)})" for level, d in flipped)
        pair, at = f"{x1} vs {x0}", {level for level, _ in flipped}

        def sides(c: Comparison) -> tuple[str, str]:  # (x's contrast, y's)
            return (c.a, c.b) if first else (c.b, c.a)

        tests = [c for c in family.rows  # x1 against x0 at a level where it flips
                 if sides(c)[0] == pair and at & set(sides(c)[1].split(" vs "))]
        text = (f"{winner} beats {loser} on average ({metric} {winner} − {loser} = "
                f"{decimals(sign * average, plus=True)}), but not with {where}")
        tested = {level for c in tests for level in sides(c)[1].split(" vs ")}
        bare = [level for level, _ in flipped if level not in tested]
        # why: the four cells a test compares are not all in the suite (an ablation), or
        # fewer than 2 seeds finished them
        def reason(level: str, x1: str = x1) -> str:
            """Why no test of x1 vs x0 × (level vs y0) (or, at y0, of any y1 vs y0)."""
            others = [level] if level != y0 else sorted(set(done[y].astype(str)) - {y0})

            def among(pairs: set[tuple[str, str]]) -> bool:
                return any(all(k in pairs for k in _corners(x1, x0, y1, y0))
                           for y1 in others)

            if not among(planned):
                return ("the suite does not train all four combinations it compares: an "
                        "ablation varies one axis at a time")
            if not among(ended):
                return "no trial finished at one of the four combinations it compares"
            return "fewer than 2 seeds finished the cells it compares"

        why: dict[str, list[str]] = {}
        for level in bare:
            why.setdefault(reason(level), []).append(level)
        if tests and bare:  # the test below covers some of the levels named, not these
            text += "".join(f"; at {', '.join(f'{y}={level}' for level in levels)} no "
                            f"interaction test is behind it ({because})"
                            for because, levels in why.items())
        if not tests:
            text += ("; no interaction test is behind it ("
                     + "; ".join(because if len(why) == 1 else
                                 f"at {', '.join(f'{y}={v}' for v in levels)}: {because}"
                                 for because, levels in why.items())
                     + "), so it may be seed noise")
        else:
            # as the tables' verdicts: both tests must find it (where every seed gave the
            # same difference there is no t-test, and the sign-flip p decides; the
            # sentence said "p = n/a")
            strongest = min(tests, key=_judged_p)
            t_yes = strongest.p_holm < ALPHA  # (False for nan)
            perm_yes = strongest.p_perm_holm < ALPHA
            if perm_yes and (t_yes or not math.isfinite(strongest.p_holm)):
                outcome = "the reversal is more than seed noise"
            elif t_yes:
                outcome = ("the paired t-test finds the reversal, the distribution-free "
                           "sign-flip test does not: it rests on the per-seed differences "
                           "being normally distributed")
            elif perm_yes:
                outcome = ("the sign-flip test finds the reversal, the paired t-test does "
                           "not (an outlying seed widens it)")
            else:
                outcome = "the reversal is not distinguishable from seed noise"
            if math.isfinite(strongest.p_holm):
                numbers = (f"Holm-adjusted p {_p_text(strongest.p_holm)} (paired t) and "
                           f"{format_p(strongest.p_perm_holm)} (sign-flip permutation)")
            else:
                numbers = (f"Holm-adjusted sign-flip permutation p "
                           f"{_p_text(strongest.p_perm_holm)} (every seed gave the same "
                           f"difference: no t-test)")
            text += (f"; the interaction test{'s give' if len(tests) > 1 else ' gives'} "
                     f"{numbers}{' at best' if len(tests) > 1 else ''} "
                     f"(n = {strongest.result.n} seeds): {outcome}")
        sentences.append(text + ".")
    return sentences


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
    p_perm_holm: float
    a_mean: float
    b_mean: float
    sentence: str  # stats.verdict's plain-English reading


def _select(frame: pd.DataFrame, where: dict[str, str]) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for axis, label in where.items():
        mask &= frame[axis] == label
    return mask


def claim_verdicts(trials: pd.DataFrame, suite: Suite) -> tuple[list[Verdict], list[str]]:
    """Each `expect:` claim against the seed-paired statistics (Holm over the claims), and
    a note for each claim that cannot be tested yet, with the reason."""
    done = _finished(trials)
    pending: list[tuple[Claim, Paired, float, float]] = []
    notes: list[str] = []
    for claim in suite.expect:
        if done.empty or claim.metric not in done.columns:
            notes.append(f"{claim.text}: not tested, because no finished trial has "
                         f"{claim.metric} yet")
            continue
        # each side's trials, whatever their status, with the keys they are paired on
        keys = suite.paired_on(claim.a, claim.b)
        index = ["seed", *keys]
        scope = trials[_select(trials, dict(claim.where))]
        sides = [_keyed(scope[_select(scope, dict(side))], suite, keys)
                 for side in (claim.a, claim.b)]
        a, b = (_finished(side) for side in sides)
        both = pd.concat([a.groupby(index)[claim.metric].mean().rename("a"),
                          b.groupby(index)[claim.metric].mean().rename("b")],
                         axis=1).dropna()
        per_seed = both.groupby(level="seed").mean()
        # the cells both sides were trained at, and the trials of those cells that did not
        # finish: what the test leaves out
        cells = [set(side[index].itertuples(index=False, name=None)) for side in sides]
        planned = cells[0] & cells[1]
        stopped = [side[[key in planned and status != "finished" for key, status in zip(
            side[index].itertuples(index=False, name=None), side["status"], strict=True)]]
            for side in sides]
        if len(per_seed) < 2:
            empty = [name for name, side, out in zip("ab", (a, b), stopped, strict=True)
                     if side.empty]
            if empty:  # (it said "... and a paired test needs at least 2 seeds" too)
                why = " or ".join(f"no trial of {name} finished" + (
                    f" ({_statuses(out)})" if len(out) else "") for name, out in zip(
                        "ab", stopped, strict=True) if name in empty)
                diverged = [name for name, out in zip("ab", stopped, strict=True)
                            if name in empty and len(out)
                            and (out["status"] == "diverged").all()]
                said = {"a": "a diverged on every seed it was trained on: the claim has no "
                             "support",
                        "b": "b diverged on every seed it was trained on, which speaks for "
                             "the claim, but a test needs finished trials of both sides"}
                notes.append(f"{claim.text}: not tested, because {why}" + (
                    f"; {said['a'] if 'a' in diverged else said['b']}" if diverged else ""))
            else:
                notes.append(f"{claim.text}: not tested, because {len(per_seed)} seed(s) "
                             f"finished both sides and a paired test needs at least 2 seeds")
            continue
        if len(both) < len(planned):
            out = pd.concat(stopped)
            notes.append(f"{claim.text}: tested over the {len(both)} of {len(planned)} cells "
                         f"(a seed and the other axes' levels) both sides were trained at; in "
                         f"the others a side did not finish ({_statuses(out)}), and the test "
                         f"says nothing of them")
        r = compare(per_seed["a"].to_numpy(float), per_seed["b"].to_numpy(float),
                    higher_is_better=claim.direction == "higher")
        # the sides' means over the seeds and cells compared, so that a − b is Δ
        pending.append((claim, r, float(per_seed["a"].mean()), float(per_seed["b"].mean())))
    # every claim tested counts in the family (`_family`)
    verdicts = []
    for (claim, _, a_mean, b_mean), (r, p_holm, p_perm_holm, floor) in zip(
            pending, _family([r for _, r, _, _ in pending]), strict=True):
        sign = 1 if claim.direction == "higher" else -1
        if p_holm < ALPHA and np.sign(r.diff) == sign:
            outcome = "supported"
        elif p_holm < ALPHA:
            outcome = "contradicted"
        else:
            outcome = "inconclusive"
        sentence = verdict(r, p_adjusted=_finite(p_holm), p_perm_adjusted=_finite(p_perm_holm),
                           perm_floor_seeds=floor)
        if outcome == "inconclusive" and r.diff * sign < 0:  # (nan: no direction)
            # not significant either way, but a reader should not take it as leaning the
            # claimed way
            sentence = (f"the observed difference runs against the claim (a − b = "
                        f"{decimals(r.diff, 4, plus=True)}, where the claim expects a "
                        f"{claim.direction}); {sentence}")
        verdicts.append(Verdict(claim, outcome, r, p_holm, p_perm_holm, a_mean,
                                b_mean, sentence))
    return verdicts, notes


def _keyed(frame: pd.DataFrame, suite: Suite, keys: list[str]) -> pd.DataFrame:
    """`frame` with a column for each `paired_on` key that is not an axis (a component's
    level without some of its parameters), read from its axis's level."""
    derived = [k for k in keys if k not in frame.columns]
    if not derived or frame.empty:
        return frame
    columns = {}
    for key in derived:
        axis = key.partition(" without ")[0]
        levels = {value_label(axis, c.value(axis)): suite.key_label(key, c)
                  for c in suite.configurations()}
        columns[key] = frame[axis].map(levels)
    return frame.assign(**columns)


def _unmeasured(suite: Suite, where: Mapping[str, str], chosen: pd.DataFrame,
                metric: str) -> list[str]:
    """The suite's configurations that `where` selects (by their varied axes' levels; a
    tuned suite's scientific points) with no finished trial with a finite `metric` among
    `chosen`: not run yet, not finished, or finished without it."""
    axes = suite.varied_axes
    measured = set()
    if not chosen.empty and metric in chosen.columns:
        with_metric = chosen[np.isfinite(chosen[metric].astype(float))]
        measured = set(with_metric[axes].astype(str).itertuples(index=False, name=None)) \
            if axes else ({()} if len(with_metric) else set())
    out = []
    for spec in suite.configurations():
        levels = tuple(value_label(a, spec.value(a)) for a in axes)
        if all(dict(zip(axes, levels, strict=True)).get(a) == v for a, v in where.items()) \
                and levels not in measured:
            out.append(spec.label(axes))
    return out


def _side(where: Mapping[str, str]) -> str:
    """A claim's side as trials.csv names it: the level, or `axis=level, ...` for several."""
    items = list(dict(where).items())
    if len(items) == 1:
        return str(items[0][1])
    return ", ".join(f"{axis}={level}" for axis, level in items)


def comparisons_table(families: dict[str, Family], verdicts: list[Verdict]) -> pd.DataFrame:
    """Every comparison of a report, one row each (reports/<suite>.comparisons.csv)."""
    rows: list[Comparison] = [c for family in families.values() for c in family.rows]
    rows += [Comparison("claim", ", ".join(dict(v.claim.a)), _side(v.claim.a),
                        _side(v.claim.b), v.claim.metric, v.result, v.p_holm, v.p_perm_holm,
                        f"{v.claim.text}: {v.verdict}; {v.sentence}") for v in verdicts]
    columns = ["kind", "axis", "a", "b", "metric", "n", "mean_diff", "t_low", "t_high",
               "effect_size", "p", "p_holm", "p_perm", "p_perm_holm", "boot_low", "boot_high",
               "p_improvement", "p_improvement_low", "p_improvement_high", "mde",
               "seeds_needed", "identical", "method", "sentence"]
    return pd.DataFrame([{
        "kind": c.kind, "axis": c.axis, "a": c.a, "b": c.b, "metric": c.metric,
        "n": c.result.n, "mean_diff": c.result.diff, "t_low": c.result.low,
        "t_high": c.result.high, "effect_size": c.result.effect_size, "p": c.result.p,
        "p_holm": c.p_holm, "p_perm": c.result.p_perm, "p_perm_holm": c.p_perm_holm,
        "boot_low": c.result.boot_low,
        "boot_high": c.result.boot_high, "p_improvement": c.result.p_improvement,
        "p_improvement_low": c.result.p_improvement_low,
        "p_improvement_high": c.result.p_improvement_high, "mde": c.result.mde,
        "seeds_needed": c.result.seeds_needed, "identical": c.result.identical,
        "method": c.result.method, "sentence": c.sentence} for c in rows], columns=columns)


@dataclass(frozen=True)
class ReferenceRow:
    """One published number beside the measured one."""

    result: PublishedResult
    label: str  # "model=logistic": the configurations it stands for
    metric: str
    measured: Interval  # over seeds (per-seed mean of the matched configurations)
    difference: float  # measured mean - published
    verdict: str  # reproduced | outside tolerance | no tolerance | incomplete | not run yet |
    # not measured
    statuses: str = ""  # of the trials it selects ("8 diverged"): why it is not measured
    left_out: str = ""  # the selected trials the measured mean is not over, and why


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
        selected = trials[_select(trials, dict(result.where))] if not trials.empty else trials
        statuses = _statuses(selected) if not selected.empty else ""
        unfinished_rows = selected[~selected.index.isin(chosen.index)] \
            if not selected.empty else selected
        never = _unmeasured(suite, result.where, chosen, reference.metric)
        left_out = "; ".join(
            ([f"left out: {_statuses(unfinished_rows)}"] if len(unfinished_rows) else [])
            + ([f"no finished trial with a {reference.metric} at {'; '.join(never)}, so the "
                f"mean is not over every configuration the row selects"] if never else []))
        if measured.n == 0:
            verdict = "not measured" if statuses else "not run yet"
        elif never:
            verdict = "incomplete"
        elif reference.tolerance is None:
            verdict = "no tolerance"
        elif abs(difference) <= reference.tolerance + 1e-12:
            verdict = "reproduced"
        else:
            verdict = "outside tolerance"
        rows.append(ReferenceRow(result, label, reference.metric, measured, difference,
                                 verdict, statuses, left_out))
    return rows
