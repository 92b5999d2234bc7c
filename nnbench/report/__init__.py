"""HTML reports: statistics over seeds, seaborn figures, one self-contained file per suite.

`render_report(suite)` reads the suite's runs back from MLflow (and the data's hygiene,
kept from the run's pre-flight by nnbench.data.hygiene) and writes
`<report_dir>/<suite>.html` with every figure embedded as PNG data, the tidy tables
next to it (`<suite>.trials.csv`, `<suite>.epochs.csv`), and refreshes
`<report_dir>/index.html`, which lists every suite reported there with its headline.
Sections: header (with the data's hygiene: examples shared between splits, class
balance), leaderboard (with each configuration's parameter count), the best
configuration against its runner-up and every overlapping one, published reference
(suites with `reference:`: the paper's numbers beside the measured ones), tuning (tuned
suites), main effects, interactions (with interaction tests and reversals), learning
curves, over/under-fitting, diagnostics, components, claims, provenance (with the
plugins used); a section that cannot apply says why, and headings and figures appear
only for what the suite varies. Every comparison is also written to
`<suite>.comparisons.csv`. `nnbench report SUITE` regenerates it any time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from nnbench import registry
from nnbench.config import AXES, Suite
from nnbench.config.spec import value_label
from nnbench.data.hygiene import MAX_CLASSES_LISTED, dataset_hygiene, suite_datasets
from nnbench.fresh import write_atomic, write_together
from nnbench.messages import decimals
from nnbench.registry import ComponentSpec
from nnbench.report import figures
from nnbench.results import Results, export_tables, load_results
from nnbench.results.analysis import (
    ReferenceRow,
    best_summary,
    best_versus,
    claim_verdicts,
    comparisons_table,
    fit_diagnosis,
    interaction_tests,
    interactions,
    leaderboard,
    main_effects,
    reference_comparison,
    unfinished,
)
from nnbench.results.stats import ALPHA, format_p, metric_range
from nnbench.results.variance import suite_decomposition

__all__ = ["render_index", "render_report"]

_ENV = Environment(loader=PackageLoader("nnbench.report", "templates"),
                   autoescape=select_autoescape(["html", "j2"]))
def _num(value: float | None, digits: int = 4) -> str:
    return decimals(value, digits)  # (one rounding for tables and sentences)


_ENV.filters["num"] = _num
_ENV.filters["signed"] = lambda value: decimals(value, 4, plus=True)  # a Δ: +0.0123
# a claim's side: activation=relu, init=xavier_normal (it printed the Python dict)
_ENV.filters["levels"] = lambda where: ", ".join(f"{axis}={level}"
                                                for axis, level in dict(where).items())
_ENV.filters["p"] = format_p  # "< 0.0001", 4 decimals, "n/a"


def _span(metric: str, differences: int = 1) -> float:
    """The largest difference `metric` can show: its range's width (an accuracy's 1), twice
    that for an interaction's difference of differences; inf where it is unbounded."""
    low, high = metric_range(metric)
    return differences * (high - low)


_ENV.globals["span"] = _span
# axes whose effect the diagnostics explain (the notes' vanishing gradients, dead units, L1)
EXPLAINED_BY_DIAGNOSTICS = {"activation", "init", "model", "l1", "l2", "norm", "dropout"}


def _settings(suite: Suite) -> list[dict[str, Any]]:
    """Setup's table: each axis's value, the fixed one unless varied. An axis the grid or an
    ablation sets to one value other than the fixed one shows that value (the fixed one
    is never trained), and a tuned parameter says it is tuned per point."""
    varied = {axis.partition(".")[0] for axis in suite.varied_axes}
    tuned: dict[str, list[str]] = {}
    for dimension in suite.tune.space if suite.tune is not None else ():
        head, _, param = dimension.path.partition(".")
        tuned.setdefault(head, []).append(param or head)
    rows = []
    for name in AXES:
        fixed = value_label(name, suite.base.value(name))
        shared = set(suite.levels(name))
        value, notes = fixed, []
        if name not in varied and len(shared) == 1 and fixed not in shared:
            (value,) = shared
            notes.append(f"set by the suite's grid: the fixed value {fixed} is not trained")
        elif name in varied and fixed not in shared:
            twin = _tuned_twin(suite, name)
            if twin is not None:  # sgd(lr=0.01) with lr tuned is the level sgd
                value, fixed = twin, twin
                notes.append(f"the fixed {value_label(name, suite.base.value(name))} with "
                             f"what is tuned set per point")
            else:
                notes.append("the fixed value is not trained: Main effects names the level "
                             "the others are compared with")
        if name in tuned:
            notes.append(f"tuned per point: {', '.join(tuned[name])} (the values each point "
                         f"trained with are under Tuning)")
        rows.append({"axis": name, "value": value, "varied": name in varied,
                     "trained": fixed in shared, "note": "; ".join(notes)})
    return rows


def _tuned_twin(suite: Suite, axis: str) -> str | None:
    """The level of `axis` that is the fixed value once tuning sets what it tunes (a tuned
    suite's fixed sgd(lr=0.01) is its level sgd, lr tuned per point: Setup said the fixed
    value was not trained while Main effects compared every level with it), or None."""
    from nnbench.config.tune import as_tuned

    if suite.tune is None:
        return None
    base = as_tuned(suite.base, suite.tune.space)
    if base is None:
        return None
    for spec in suite.configurations():
        tuned = as_tuned(spec, suite.tune.space)
        if tuned is not None and tuned.value(axis) == base.value(axis):
            return value_label(axis, spec.value(axis))
    return None


def _curve_keys(history_columns: list[str]) -> list[tuple[str, tuple[str, str]]]:
    keys = [("loss", ("train_loss", "val_loss"))]
    for metric in ("accuracy", "rmse"):
        if f"val_{metric}" in history_columns:
            keys.append((metric, (f"train_{metric}", f"val_{metric}")))
            break
    return keys


def _activation_specs(suite: Suite) -> list[ComponentSpec]:
    seen: dict[str, ComponentSpec] = {}
    for config in suite.configurations():
        seen.setdefault(registry.label("activation", config.activation), config.activation)
    return list(seen.values())




def _sections(results: Results) -> dict[str, Any]:
    """Everything the template shows, computed from the tidy tables."""
    suite, trials, history = results.suite, results.trials, results.history
    table = leaderboard(trials, suite.higher_is_better)
    # a t interval cut at the metric's range (accuracy 0-1; loss, rmse, mae from 0): with 2
    # or 3 seeds it reached an accuracy of 1.21
    low, high = metric_range(suite.metric)
    table["low"], table["high"] = table["low"].clip(lower=low), table["high"].clip(upper=high)
    finished = (not trials.empty) and bool((trials["status"] == "finished").any())
    out: dict[str, Any] = {"table": table.to_dict("records"), "finished": finished,
                           "unfinished": unfinished(trials)}
    out["leaderboard_png"] = figures.leaderboard(trials, table, suite.metric) if finished else None

    levels, effects = main_effects(trials, suite)
    if len(levels):  # the figure's intervals, cut as the leaderboard's
        levels["low"], levels["high"] = levels["low"].clip(lower=low), \
            levels["high"].clip(upper=high)
    out["effects"] = effects
    out["effects_png"] = figures.main_effects(levels, suite.metric) if len(levels) else None
    out["effects_why"] = _why_not(suite, finished, needs_axes=1)
    out["best"] = best_versus(trials, table, suite)
    out["best_summary"] = best_summary(out["best"], suite.higher_is_better, table)

    tests = {(t.a, t.b): t for t in interaction_tests(trials, suite)}
    out["interactions"] = []
    compared = suite.compared_axes
    for a, b in itertools.combinations(compared, 2) if finished else []:
        means, widths = interactions(trials, a, b, compared, bool(suite.ablate),
                                     bounds=(low, high))
        if not means.empty:
            out["interactions"].append({"a": a, "b": b, "png": figures.interaction(
                means, widths, suite.metric), "tests": tests.get((a, b))})
    out["interactions_why"] = _why_not(suite, finished, needs_axes=2)

    out["curves"] = []
    out["history_empty"] = history.empty
    # the curves are of finished trials: a diverged one's values run to inf or nan, and a
    # mean over seeds with it says nothing (its epochs are in the epochs CSV)
    finished_ids = set(trials.loc[trials["status"] == "finished", "trial_id"]) \
        if not trials.empty else set()
    curve_history = history[history["trial_id"].isin(finished_ids)] if not history.empty \
        else history
    out["curves_left_out"] = (sorted(set(history["config"]) - set(curve_history["config"]))
                              if not history.empty else [])
    out["curves_partial"] = not history.empty and len(curve_history) < len(history)
    if not curve_history.empty:
        for name, keys in _curve_keys(list(curve_history.columns)):
            out["curves"].append({"name": name, "png": figures.curves(
                curve_history, keys, suite.report.ema, name)})
        out["lr_png"] = figures.lr_curves(history)
    else:
        out["lr_png"] = None
    fit = fit_diagnosis(trials, suite)
    out["fit"] = fit.to_dict("records")
    out["fit_error"] = fit.attrs.get("error", "")

    varied = {a.partition(".")[0] for a in suite.varied_axes}
    explained = sorted(EXPLAINED_BY_DIAGNOSTICS & varied)
    out["diagnostics_axes"] = explained
    out["diagnostics"] = (figures.diagnostics(history, trials, varied)
                          if explained and not history.empty else [])
    # figures of what the suite varies only: lr curves where the schedule or the optimizer
    # (its learning rate) varies or is tuned, activations where the activation varies
    if not varied & {"schedule", "optimizer"} and suite.tune is None:
        out["lr_png"] = None
    out["activations_png"] = (figures.activations(_activation_specs(suite))
                              if "activation" in varied else None)
    out["verdicts"], out["claim_notes"] = claim_verdicts(trials, suite)
    out["comparisons"] = comparisons_table(
        {"main_effect": effects, "best_vs": out["best"],
         **{f"{t.a} × {t.b}": t.family for t in tests.values()}}, out["verdicts"])
    out["numerics"] = _numerics(trials)
    out["reference_rows"] = [_within_range(r) for r in reference_comparison(trials, suite)]
    out["reference_unmeasured"] = [f"{r.label} ({r.statuses or 'not run yet'})"
                                   for r in out["reference_rows"] if not r.measured.n]
    out["tuning"] = _tuning_section(results) if suite.tune is not None else None
    # tuned points whose tuning ended without a best value: their re-runs never train
    untunable = [b for b in out["tuning"]["best"] if b.get("exhausted")] \
        if out["tuning"] else []
    seeds = len(suite.tune.seeds) if suite.tune is not None else 0
    out["missing"] = max(0, results.missing - seeds * len(untunable))
    out["untunable"] = [f"{b['point']}: {b['note']}, so its {seeds} re-run"
                        f"{'s' if seeds != 1 else ''} cannot train" for b in untunable]
    said = [f"{b['point']}: not compared, because {b['note']}" for b in untunable]
    if out["effects"].rows or out["effects"].notes:
        out["effects"].notes.extend(said)
    elif said:  # the section shows only its reason: theirs with it
        out["effects_why"] = "; ".join([*filter(None, [out["effects_why"]]), *said])
    out["variance"] = suite_decomposition(trials, suite)  # seeds varied per source only
    return out


def _numerics(trials: Any) -> dict[str, Any]:
    """Which engines/lane counts/precisions/threads made the results, and whether mixed.

    Trials of different numerics agree only to rounding (bitwise results need the same
    engine, lane count, precision, threads, device and versions): the report says so
    wherever the comparison pools them, never silently."""
    if trials.empty:
        return {"counts": {}, "mixed": False, "by_config": {}}
    done = trials[trials["status"].isin(["finished", "diverged"])]
    counts = done["numerics"].value_counts().to_dict() if not done.empty else {}
    by_config = {str(config): ", ".join(sorted(set(rows["numerics"])))
                 for config, rows in done.groupby("config", sort=False)}
    return {"counts": counts, "mixed": len(counts) > 1, "by_config": by_config,
            "remedy": _numerics_remedy(list(counts)) if len(counts) > 1 else ""}


def _numerics_remedy(labels: list[str]) -> str:
    """What differs between the numerics `labels` name, and how to get one: it always said
    "with one --engine", also when every trial was stacked and only the lane counts
    differed (a suite that gained trials before nnbench kept its lane count)."""
    from nnbench.train.results import Numerics

    parsed = [Numerics.from_label(label) for label in labels]
    known = [n for n in parsed if n is not None]
    differ = {field: [str(v) for v in sorted({getattr(n, field) for n in known})]
              for field in ("engine", "lanes", "precision", "threads", "layout")}
    differ = {field: values for field, values in differ.items() if len(values) > 1}
    for field in ("lanes", "threads"):  # serial's 1 lane (or thread) against stacked's:
        if field in differ and not any(  # the engines, and their own policies
                len({getattr(n, field) for n in known if n.engine == engine}) > 1
                for engine in {n.engine for n in known}):
            del differ[field]
    said = {"engine": "engines", "lanes": "lane counts", "precision": "precisions",
            "threads": "thread counts", "layout": "memory layouts"}
    parts = [f"{said[field]} ({escape(', '.join(v or 'torch default' for v in values))})"
             for field, values in differ.items()]
    if len(known) < len(parsed):
        parts.append("trials whose numerics were not recorded (an older nnbench)")
    options = [f"one <code>--{field}</code>" for field in ("engine", "precision", "threads")
               if field in differ]
    why = {"engine": "the default engine, auto, stacks the configurations whose model has "
                     "a stacked form and trains the others (a model that is not an "
                     "nn.Sequential of layers, a shape with one trial) on the serial engine, "
                     "each with its own lane count and thread policy (the run says which it "
                     "trains serially and why); or a run was given another "
                     "<code>--engine</code>",
           "lanes": "a suite's later groups keep the lane count of its first; trials of "
                    "another were trained before nnbench kept it, or with another "
                    "<code>--lanes</code>",
           "threads": "a serial trial whose step takes under 1 GFLOP trains on 1 thread, a "
                      "larger one on the count its step was timed fastest with, which the "
                      "suite keeps; trials of another were trained with another "
                      "<code>--threads</code> or <code>--workers</code>, on another machine, "
                      "or before nnbench kept it",
           "layout": "nnbench versions before and after CPU conv nets trained channels-last"}
    notes = [why[field] for field in ("engine", "lanes", "threads", "layout")
             if field in differ]
    return (f"They differ in {'; '.join(parts)}"
            + (f" ({'; '.join(notes)})" if notes else "")
            + ". To compare under one numerics, re-run the suite into a fresh MLflow store "
              "and queue (<code>--tracking-uri</code>, <code>--storage</code>)"
            + (f" with {' and '.join(options)}" if options else "") + ".")


def _tuning_section(results: Results) -> dict[str, Any]:
    """Best-so-far per point, the isolation plot, importances, boundary warnings, counts."""
    from nnbench.tracking import Tracker
    from nnbench.tuning import boundary_warnings, importances, tuned_points, tuned_studies

    suite, tuning = results.suite, results.tuning
    assert suite.tune is not None
    tracker = Tracker(suite, results.tracking_uri)
    names = tuned_studies(suite, tracker)
    if not tuning.empty:  # the studies of points or tune definitions since removed: not these
        tuning = tuning[tuning["study"].isin(names)]
    maximize = suite.tune.direction == "maximize"
    points = tuned_points(suite, tracker)
    section: dict[str, Any] = {"tune": suite.tune, "names": names, "counts": [],
                               "warnings": boundary_warnings(suite, points), "importances": [],
                               "best": [{"point": p.label(suite.varied_axes), "values": b}
                                        for p, b in points.values()]}
    if tuning.empty:
        section["why"] = ("no Optuna trial of this tune definition (space, objective, "
                          "seed) is in MLflow yet: run nnbench tune")
        return section
    for study, rows in tuning.groupby("study", sort=False):
        # Optuna has no diverged state: a diverged trial is FAIL there, its run says why
        state = rows["state"].mask(rows["status"] == "diverged", "diverged")
        counts = state.value_counts().to_dict()
        section["counts"].append({"point": names.get(str(study), str(study)), **counts,
                                  "total": len(rows)})
    # a point with no best value: why (its budget spent without a complete trial, or
    # tuning not done yet)
    counted = {c["point"]: c for c in section["counts"]}
    tuned_labels = {b["point"] for b in section["best"]}
    for label in names.values():
        if label in tuned_labels:
            continue
        spent, note = _untuned(counted.get(label, {}), suite.tune.trials)
        section["best"].append({"point": label, "values": {}, "exhausted": spent,
                                "note": note})
    found = importances(suite, tuning)
    complete = tuning[tuning["state"] == "complete"]["study"].value_counts()
    for study, label in names.items():
        if study in found:
            section["importances"].append({"point": label, "values": found[study],
                                           "n": int(complete.get(study, 0))})
        elif complete.get(study, 0):
            section["importances"].append({"point": label, "values": {},
                                           "n": int(complete[study]), "note": (
                f"not estimated: {complete[study]} complete trial is too few for "
                f"Optuna's evaluator (it would give every parameter an equal share)")})
    section["best_png"] = figures.best_so_far(tuning, names, maximize)
    if not results.trials.empty:
        section["isolation_png"] = figures.isolation(tuning, results.trials, names, suite.metric,
                                                     suite.tune.metric, maximize)
    return section


def _within_range(row: ReferenceRow) -> ReferenceRow:
    """A published-reference row's interval cut at its metric's range, as the leaderboard's
    is (an accuracy's t interval over 2 seeds reached [-1.10, 1.56])."""
    low, high = metric_range(row.metric)
    measured = row.measured
    return dataclasses.replace(row, measured=dataclasses.replace(
        measured, low=float(np.clip(measured.low, low, high)),
        high=float(np.clip(measured.high, low, high))))


def _untuned(counts: dict[str, Any], budget: int) -> tuple[bool, str]:
    """Whether a point without a best value has spent its tuning budget (so its re-runs
    can never train), and what the report says of it. `counts`: its Optuna trials by state
    (the tuning counts' row). Only ended trials count toward the budget: a killed one is
    queued again, a running one has not ended."""
    ended = {k: int(counts.get(k, 0) or 0) for k in ("complete", "diverged", "failed", "pruned")}
    total, running = sum(ended.values()), int(counts.get("running", 0) or 0)
    if total >= budget and not ended["complete"] and not running:
        states = ", ".join(f"{n} {k}" for k, n in ended.items() if n)
        return True, f"no tuned value: none of its {total} Optuna trials completed ({states})"
    return False, (f"not tuned yet ({total} of {budget} Optuna trials ended"
                   f"{f', {running} running' if running else ''})")


def _why_not(suite: Suite, finished: bool, needs_axes: int) -> str:
    """Why a comparison section is empty, or "" when it is not."""
    varied = len(suite.compared_axes)
    if varied < needs_axes:
        nested = "; ".join(f"{axis} is a parameter of {head}, compared as part of its levels"
                           for axis, head in suite.nested_axes.items())
        return (f"this needs at least {needs_axes} varied "
                f"{'axis' if needs_axes == 1 else 'axes'}; the suite varies "
                + (f"{len(suite.varied_axes)} ({', '.join(suite.varied_axes)}), and "
                   f"{nested}, which leaves {varied}" if nested else f"{varied}"))
    if not finished:
        return "no trial has finished yet"
    return ""


def _plugins(suite: Suite, latest: dict[str, Any]) -> list[dict[str, str]]:
    """Plugins behind the suite's components: as recorded by the latest invocation, and
    which of the suite's components each provides."""
    from nnbench.provenance import PLUGIN_TAG

    provided: dict[str, set[str]] = {}
    for config in suite.configurations():
        for kind, spec in config.components():
            source = registry.get(kind, spec.name).source
            if source != registry.BUILTIN:
                provided.setdefault(source, set()).add(f"{kind} {spec.name}")
    recorded = {k.removeprefix(PLUGIN_TAG): v for k, v in latest.items()
                if k.startswith(PLUGIN_TAG) and isinstance(v, str)}
    return [{"module": module, "recorded": recorded.get(module, "not recorded yet"),
             "components": ", ".join(sorted(provided.get(module, set())))}
            for module in sorted(set(recorded) | set(provided))]


def _hygiene(suite: Suite) -> list[dict[str, Any]]:
    """Each dataset's hygiene (nnbench.data.hygiene): usually kept from the run's pre-flight
    (this process or the cache); otherwise counted from the data, or why it cannot be."""
    rows: list[dict[str, Any]] = []
    for spec, seeds in suite_datasets(suite):
        dataset = registry.label("dataset", spec.dataset)
        try:
            rows.append({"dataset": dataset, "hygiene": dataset_hygiene(spec, seeds),
                         "why": ""})
        except (OSError, ValueError, RuntimeError) as e:  # the data is missing or unreadable
            rows.append({"dataset": dataset, "hygiene": None,
                         "why": f"not checked: the data cannot be read here ({e})"})
    return rows


def _headline(results: Results, table_rows: list[dict[str, Any]]) -> str:
    suite = results.suite
    if not table_rows:
        return "no finished trials yet"
    best = table_rows[0]
    text = f"best: {best['config']} — {suite.metric} {decimals(best['mean'])}"
    if best["identical"]:
        text += f" (every one of its {best['n']} seeds gave this value)"
    elif best["n"] > 1:
        text += f" (95% CI {decimals(best['low'])}–{decimals(best['high'])}, n = {best['n']})"
    lost = [f"{best[s]} {s}" for s in ("diverged", "failed", "killed") if best.get(s)]
    if lost:
        text += f"; of its other seeds {', '.join(lost)}"
    return text


def render_report(suite: Suite, *, tracking_uri: str | None = None,
                  report_dir: str | Path = "reports", results: Results | None = None) -> Path:
    """Write `<report_dir>/<suite.name>.html` (+ CSV tables, index) from MLflow; returns it."""
    results = results or load_results(suite, tracking_uri)
    report_dir = Path(report_dir)
    trials = results.trials
    sections = _sections(results)
    statuses = trials["status"].value_counts().to_dict() if not trials.empty else {}
    latest = (results.invocations.sort_values("start_time").iloc[-1].to_dict()
              if not results.invocations.empty else {})
    files = export_tables(results, report_dir)  # written below, together with the page
    comparisons = report_dir / f"{suite.name}.comparisons.csv"
    files[comparisons] = sections.pop("comparisons").to_csv(index=False)
    csv_paths = list(files)
    # what was trained and compared: a tuned suite's re-runs (points × tune.seeds)
    seeds = suite.tune.seeds if suite.tune is not None else suite.seeds
    trial_count = (len(suite.configurations()) * len(seeds) if suite.tune is not None
                   else len(suite.trials()))
    trained_seeds = (sorted(set(trials["seed"].tolist()))
                     if not trials.empty and suite.seed_design is None else [])
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    headline = _headline(results, sections["table"])
    html = _ENV.get_template("report.html.j2").render(
        suite=suite, results=results, **sections, statuses=statuses,
        fixed=_settings(suite), varied=suite.varied_axes, alpha=ALPHA,
        # (a trial killed before its model was built has none: it read "Parameters per
        # model: 0.")
        num_params=sorted({int(n) for n in trials["num_params"] if n == n and n > 0})
        if not trials.empty else [],
        trial_rows=trials.to_dict("records"), latest=latest, headline=headline,
        versions={k.removeprefix("nnbench.version."): v for k, v in latest.items()
                  if k.startswith("nnbench.version.")},
        flags={k.removeprefix("nnbench.deterministic."): v for k, v in latest.items()
               if k.startswith("nnbench.deterministic.")},
        plugin_rows=_plugins(suite, latest), hygiene=_hygiene(suite),
        max_classes_listed=MAX_CLASSES_LISTED,
        commits=sorted(set(trials["git_commit"])) if not trials.empty else [],
        devices=sorted(set(trials["device"])) if not trials.empty else [],
        csv_files=[p.name for p in csv_paths], generated=generated, seeds=list(seeds),
        trial_count=trial_count, trained=len(trials),
        trained_seeds=trained_seeds,
        seeds_partial=suite.seed_design is None and set(trained_seeds) != set(seeds))
    out = report_dir / f"{suite.name}.html"
    files[out] = html
    summary = {"name": suite.name, "description": suite.description, "headline": headline,
               "metric": suite.metric, "trials": trial_count, "statuses": statuses,
               "generated": generated, "file": out.name,
               "reference": [{"configuration": r.label, "metric": r.metric,
                              "published": r.result.value, "measured": _finite(r.measured.mean),
                              "n": r.measured.n, "verdict": r.verdict,
                              **({"statuses": r.statuses} if not r.measured.n else {})}
                             for r in sections["reference_rows"]]}
    files[report_dir / f"{suite.name}.summary.json"] = json.dumps(summary, indent=1)
    write_together(files, then=lambda: render_index(report_dir))
    return out


def _finite(value: float) -> float | None:
    return value if value == value else None  # JSON has no NaN


def render_index(report_dir: str | Path) -> Path:
    """`index.html`: every suite reported in this directory with its headline."""
    report_dir = Path(report_dir)
    summaries = [json.loads(p.read_text(encoding="utf-8"))
                 for p in sorted(report_dir.glob("*.summary.json"))]
    html = _ENV.get_template("index.html.j2").render(suites=summaries)
    out = report_dir / "index.html"
    write_atomic(out, html)
    return out


