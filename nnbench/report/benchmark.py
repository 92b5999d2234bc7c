"""The cross-task report of a benchmark: `<report_dir>/<benchmark>.html`, one self-contained file.

`render_benchmark(bench)` reads each task's suite back from MLflow (`load_results`, like
the suite reports), computes time-to-target and performance profiles
(`nnbench.results.profiles`) and writes the page, a tidy CSV of every trial's
time-to-target (`<benchmark>.times.csv`) and a summary that `index.html` lists.
Sections: tasks (suite, task, target, numerics that trained it, link to the suite's own
report), time-to-target per task (per seed and per configuration), then in epochs and in
seconds: the interquartile mean of each configuration's normalised scores across tasks
and the performance profiles (figure with bands, table), both with stratified bootstrap
intervals; trials without a result.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnbench.config.benchmark import Benchmark, BenchmarkTask
from nnbench.fresh import write_together
from nnbench.messages import UsageError, decimals
from nnbench.report import _ENV, _numerics, figures, render_index
from nnbench.results import Results, load_results
from nnbench.results.profiles import (
    MEASURES,
    Measure,
    Profiles,
    performance_profiles,
    summarize,
    time_to_target,
)
from nnbench.results.stats import ALPHA
from nnbench.tracking import DONE_STATUSES

__all__ = ["TABLE_TAUS", "benchmark_times", "render_benchmark"]

TABLE_TAUS = (1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)  # table columns within range


def benchmark_times(bench: Benchmark, results: dict[str, Results]
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(times, pending): one row per trial with a result (finished or diverged) with its
    task, config, seed, status, reached, epochs, seconds, epochs_run; and one row per
    trial without one (not run yet, failed, killed) with its status."""
    frames, pending = [], []
    for task in bench.tasks:
        res = results[task.name]
        trials = res.trials
        by_id = trials.set_index("trial_id") if not trials.empty else pd.DataFrame()
        done_ids = set(by_id.index[by_id["status"].isin(DONE_STATUSES)]) if len(by_id) else set()
        for spec in task.suite.trials():
            if spec.trial_id not in done_ids:
                status = str(by_id.loc[spec.trial_id, "status"]) \
                    if spec.trial_id in by_id.index else "not run yet"
                pending.append({"task": task.name, "config": spec.label(list(bench.axes)),
                                "seed": spec.seed, "status": status})
        history = res.history[res.history["trial_id"].isin(done_ids)] \
            if done_ids and not res.history.empty else pd.DataFrame()
        kept = set(history["trial_id"]) if not history.empty else set()
        for spec in task.suite.trials():  # done, but MLflow lost its history.csv
            if spec.trial_id in done_ids and spec.trial_id not in kept:
                pending.append({"task": task.name, "config": spec.label(list(bench.axes)),
                                "seed": spec.seed,
                                "status": f"{by_id.loc[spec.trial_id, 'status']}, but its "
                                          f"history.csv is not in MLflow"})
        if not history.empty:
            times = time_to_target(history, task.target)
            status = by_id["status"].to_dict()
            run_trial = history.drop_duplicates(["config", "seed"]).set_index(
                ["config", "seed"])["trial_id"]
            times["status"] = [status[run_trial[(c, s)]]
                               for c, s in zip(times["config"], times["seed"], strict=True)]
            # a diverged trial never reaches a target, even an epoch before it diverged or
            # with a finite accuracy of NaN logits (as the report says)
            diverged = times["status"] == "diverged"
            times.loc[diverged, "reached"] = False
            times.loc[diverged, ["epochs", "seconds"]] = np.inf
            times.insert(0, "task", task.name)
            frames.append(times)
    columns = ["task", "config", "seed", "reached", "epochs", "seconds", "epochs_run", "status"]
    times = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(
        columns=columns)
    return times, pd.DataFrame(pending, columns=["task", "config", "seed", "status"])


def _cell(row: pd.Series | None) -> dict[str, Any]:
    """One trial's time-to-target as the per-seed table shows it."""
    if row is None:
        return {"text": "no result", "cls": "missing"}
    if not row["reached"]:
        diverged = ", diverged" if row["status"] == "diverged" else ""
        return {"text": f"never ({int(row['epochs_run'])} ep{diverged})", "cls": "never"}
    return {"text": f"{int(row['epochs'])} ep · {row['seconds']:.3g} s", "cls": ""}


def _task_section(bench: Benchmark, task: BenchmarkTask, res: Results,
                  times: pd.DataFrame) -> dict[str, Any]:
    mine = times[times["task"] == task.name]
    cells = {(r["config"], r["seed"]): r for _, r in mine.iterrows()}
    summary = summarize(mine, list(bench.levels)).to_dict("records")
    rows = []
    for level, stats in zip(bench.levels, summary, strict=True):
        for measure in MEASURES:  # no spread: nan (or zero-width) bounds, said, not shown
            stats[f"{measure}_same"] = stats["reached"] > 1 and not (
                stats[f"{measure}_low"] < stats[f"{measure}_high"])
        rows.append({"config": level, "cells": [_cell(cells.get((level, s))) for s in bench.seeds],
                     **stats})
    return {"name": task.name, "path": task.suite.path, "describe": task.describe(),
            "target": task.target.label(), "rows": rows, "numerics": _numerics(res.trials),
            "epochs": task.suite.base.epochs, "report": f"{task.name}.html",
            "trials": len(task.suite.trials())}


def _profile_section(bench: Benchmark, times: pd.DataFrame, measure: Measure) -> dict[str, Any]:
    tasks, configs = [t.name for t in bench.tasks], list(bench.levels)
    taus = [t for t in TABLE_TAUS if bench.tau_min <= t <= bench.tau_max]
    taus = sorted({bench.tau_min, *taus, bench.tau_max})
    profiles: Profiles = performance_profiles(times, measure, configs, tasks, bench.tau_min,
                                              bench.tau_max, seeds=bench.seeds)
    section: dict[str, Any] = {
        "measure": measure, "taus": taus, "rows": [], "iqm": [], "png": None,
        "seeds": profiles.seeds, "incomplete": profiles.incomplete, "ratios": profiles.ratios,
        "resamples": profiles.resamples, "bootstrap_seed": profiles.bootstrap_seed}
    if not profiles.seeds:
        return section
    table = performance_profiles(times, measure, configs, tasks, taus=np.asarray(taus)).curve
    rows = []
    for config in configs:
        mine = table[table["config"] == config].set_index("tau")
        rows.append({"config": config, "values": [mine.loc[t].to_dict() for t in taus]})
    rows.sort(key=lambda r: [-_finite(v["mean"]) for v in r["values"]])
    iqm = profiles.iqm.sort_values("iqm", ascending=False, kind="stable").to_dict("records")
    section.update(
        rows=rows, iqm=iqm, iqm_sentence=_iqm_sentence(iqm, measure, len(profiles.seeds)),
        png=figures.performance_profile(profiles.curve, profiles.per_seed, measure,
                                        bench.tau_min, bench.tau_max))
    return section


def _iqm_sentence(rows: list[dict[str, Any]], measure: str, seeds: int) -> str:
    """Which configuration has the highest IQM, and which intervals overlap its own."""
    best = rows[0]
    if best["iqm"] <= 0:  # a score of 0: no target reached within τ_max
        return (f"Every configuration's IQM of the normalised score s ({measure}) is 0: none "
                f"reached a target within the profile's range.")
    tied = [str(r["config"]) for r in rows if r["iqm"] == best["iqm"]]
    head = (f"Highest IQM of the normalised score s ({measure}): "
            f"{' and '.join(tied) + ' (tied)' if len(tied) > 1 else best['config']}, "
            f"{decimals(best['iqm'], 3)}")
    if seeds < 2:
        return f"{head}; with one seed there is no interval."
    spread = best["low"] < best["high"]
    if spread:
        head += f" [{decimals(best['low'], 3)}, {decimals(best['high'], 3)}]"
    else:
        head += (" (the same in every resample: on each task its seeds agree where the IQM "
                 "looks; what these seeds show, not a certainty)")
    if len(tied) > 1:
        return f"{head}: these seeds do not separate them."
    mine = "its interval" if spread else "it"
    overlapping = [str(r["config"]) for r in rows[1:] if r["high"] >= best["low"]]
    if not overlapping:
        return f"{head}; {mine} lies above every other configuration's interval."
    whose = (f"that of {overlapping[0]}" if len(overlapping) == 1
             else f"those of {', '.join(overlapping)}")
    return (f"{head}; {mine} overlaps {whose}: these seeds do not separate "
            f"{'the two' if len(overlapping) == 1 else 'them'}.")


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -1.0


def _headline(sections: list[dict[str, Any]], bench: Benchmark, times: pd.DataFrame) -> str:
    """Who is fastest: the share of tasks on which each configuration's epochs to target
    are the best (τ = 1, whatever the table's τ range), mean over the complete seeds; every
    configuration tied at the top is named."""
    epochs = sections[0]
    seeds = epochs["seeds"]
    if not seeds:
        return "no seed has a result on every task yet"
    configs, tasks = list(bench.levels), [t.name for t in bench.tasks]
    at_one = performance_profiles(times[times["seed"].isin(seeds)], "epochs", configs, tasks,
                                  taus=np.asarray([1.0])).curve.set_index("config")["mean"]
    top = float(at_one.max())
    over = f"(mean over {len(seeds)} seed{'s' if len(seeds) != 1 else ''})"
    if top <= 0:
        return f"no configuration reached a task's target {over}"
    best = [str(c) for c in at_one.index if abs(float(at_one[c]) - top) < 1e-12]
    who = best[0] if len(best) == 1 else " and ".join([", ".join(best[:-1]), best[-1]]) + \
        " (tied)"
    return (f"fastest to target (epochs): {who} on {top:.0%} of the {len(tasks)} tasks "
            f"{over}")


def render_benchmark(bench: Benchmark, *, tracking_uri: str | None = None,
                     report_dir: str | Path = "reports") -> Path:
    """Write `<report_dir>/<bench.name>.html` (+ times CSV, summary, index); returns it."""
    report_dir = Path(report_dir)
    results: dict[str, Results] = {}
    refused: list[str] = []  # every task's reason at once (a deleted experiment, ...)
    for task in bench.tasks:
        try:
            results[task.name] = load_results(task.suite, tracking_uri)
        except UsageError as e:
            refused.append(str(e))
    if refused:
        raise UsageError("\n".join(refused))
    times, pending = benchmark_times(bench, results)
    tasks = [_task_section(bench, t, results[t.name], times) for t in bench.tasks]
    profiles = [_profile_section(bench, times, m) for m in MEASURES]
    headline = _headline(profiles, bench, times)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    report_dir.mkdir(parents=True, exist_ok=True)
    csv = report_dir / f"{bench.name}.times.csv"
    files = {csv: times.to_csv(index=False)}  # written together with the page, below
    html = _ENV.get_template("benchmark.html.j2").render(
        bench=bench, tasks=tasks, profiles=profiles, headline=headline, alpha=ALPHA,
        pending=pending.to_dict("records"), generated=generated, csv_file=csv.name,
        reports={t.name: (report_dir / f"{t.name}.html").exists() for t in bench.tasks})
    out = report_dir / f"{bench.name}.html"
    files[out] = html
    statuses = times["status"].value_counts().to_dict()
    for status, n in pending["status"].value_counts().items():
        statuses[str(status)] = statuses.get(str(status), 0) + int(n)
    summary = {"name": bench.name, "kind": "benchmark", "description": bench.description,
               "headline": headline, "metric": "time-to-target",
               "trials": sum(len(t.suite.trials()) for t in bench.tasks),
               "statuses": {str(k): int(v) for k, v in statuses.items()},
               "generated": generated, "file": out.name, "reference": []}
    files[report_dir / f"{bench.name}.summary.json"] = json.dumps(summary, indent=1)
    write_together(files, then=lambda: render_index(report_dir))
    return out
