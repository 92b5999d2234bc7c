"""The `tune:` block: nuisance axes Optuna searches for every scientific point.

Checked before anything runs: every dimension names a nuisance axis (never one the
suite compares: tuning it would overwrite the levels being compared), every value of
every range fits every configuration, the objective is a validation (or training)
metric the loss reports, and its direction is the metric's own (accuracy is maximised,
losses, RMSE and MAE minimised) unless `against_metric: true` says otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import TypeAdapter, ValidationError

from nnbench import registry
from nnbench.config.expand import METRICS, Suite, apply_values
from nnbench.config.sections import TuneSection
from nnbench.config.spec import AXES, TrialSpec
from nnbench.messages import describe, did_you_mean
from nnbench.registry import ComponentError

__all__ = ["Dimension", "Tune", "as_tuned", "check_tune", "tuned_label", "tuned_variants"]

NUISANCE_SCALARS = ("epochs", "batch_size", "dropout", "l1", "l2")
MEDIAN_STARTUP_TRIALS = 5  # the median pruner judges none before this many trials complete


@dataclass(frozen=True)
class Dimension:
    """One nuisance hyperparameter of a `tune:` search space."""

    path: str  # an axis (epochs, dropout, ...) or axis.parameter (optimizer.lr)
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample log-uniformly
    choices: tuple[Any, ...] = ()

    def extremes(self) -> list[Any]:
        """The values that bound the search: both ends of a range, or every choice."""
        if self.kind == "categorical":
            return list(self.choices)
        return [self.low, self.high]


@dataclass(frozen=True)
class Tune:
    """How Optuna tunes the nuisance axes of every scientific point (suite key `tune:`)."""

    space: tuple[Dimension, ...]
    trials: int  # Optuna trials per scientific point
    metric: str  # validation (or training) metric the study optimises; never test_*
    direction: Literal["maximize", "minimize"]
    sampler: str  # tpe | random | grid | qmc
    sampler_seed: int
    pruner: str  # median | hyperband | none
    seeds: tuple[int, ...]  # seeds of the final comparison of the tuned points


def _scientific(path: str, suite: Suite) -> str | None:
    """The grid/ablate key that already varies `path` (or its whole axis), if any."""
    head = path.partition(".")[0]
    for section, axes in (("grid", suite.grid), ("ablate", suite.ablate)):
        for axis in axes:
            if axis == path or ("." not in path and axis.partition(".")[0] == head):
                return f"{section}.{axis}"
    return None


def _given_in_grid(path: str, raw_sections: Mapping[str, Any]) -> str | None:
    """Where a grid/ablate component value spells out the parameter `path` tunes."""
    head, dot, param = path.partition(".")
    if not dot:
        return None
    for section in ("grid", "ablate"):
        raw = raw_sections.get(section)
        values = raw.get(head) if isinstance(raw, dict) else None
        if isinstance(values, list):
            for i, value in enumerate(values):
                if isinstance(value, dict) and param in value:
                    return f"{section}.{head}[{i}].{param}"
    return None


def check_tune(section: TuneSection, suite: Suite, seeds: tuple[int, ...],
               raw_sections: Mapping[str, Any], problems: list[tuple[str, str]]) -> Tune:
    """The validated `Tune` (problems appended to `problems`)."""
    dims = [d for d in (_dimension(path, dist, suite, raw_sections, problems)
                        for path, dist in section.space.items()) if d is not None]
    objective = section.objective
    default_metric = "val_" + suite.metric.split("_", 1)[1]
    metric = objective.metric or default_metric
    allowed = [m for m in METRICS if not m.startswith("test_")]
    if metric not in allowed:
        why = ("tuning on the test split would leak it into the comparison; "
               if metric.startswith("test_") else did_you_mean(metric, allowed))
        problems.append(("tune.objective.metric", f"{why}got {describe(metric)}; allowed: "
                                                  f"{', '.join(allowed)}"))
        metric = default_metric
        judged = False  # (its direction was for that metric: not judged against the
        # default's, which said "minimize val_accuracy …" of a metric never written)
    else:
        judged = True
        for spec in suite.configurations():
            names = registry.get("loss", spec.loss.name).attrs["metrics"]
            reported = [f"{split}_{m}" for split in ("val", "train") for m in ("loss", *names)]
            if metric not in reported:
                problems.append(("tune.objective.metric",
                                 f"loss '{spec.loss.name}' reports no {metric!r}, so every "
                                 f"Optuna trial would fail; allowed: {', '.join(reported)}"))
                break
    natural: Literal["maximize", "minimize"] = "maximize" if METRICS[metric] else "minimize"
    direction = objective.direction or natural
    if not judged:
        direction = natural
    elif direction != natural and not objective.against_metric:
        problems.append(("tune.objective.direction",
                         f"{direction} {metric} would tune every point to its worst "
                         f"values ({metric} is better when "
                         f"{'higher' if natural == 'maximize' else 'lower'}); allowed: "
                         f"{natural}, or set against_metric: true if that is what you want"))
    elif objective.against_metric and direction == natural:
        problems.append(("tune.objective.against_metric",
                         f"against_metric is true but direction {direction} is {metric}'s own "
                         f"direction; remove against_metric or reverse the direction"))
    _check_distinct_points(dims, suite, problems)
    if "pruner" in section.model_fields_set:  # one named that never acts (the default may)
        _check_pruner(section, suite, dims, problems)
    if section.sampler.name == "grid" and any(d.kind != "categorical" for d in dims):
        problems.append(("tune.sampler.name", "the grid sampler needs every dimension of "
                                              "tune.space to be categorical; allowed with "
                                              "float/int ranges: tpe, random, qmc"))
    elif dims and len(dims) == len(section.space):
        _check_budget(section.trials, dims, section.sampler.name, problems)
    return Tune(space=tuple(dims), trials=section.trials, metric=metric, direction=direction,
                sampler=section.sampler.name, sampler_seed=section.sampler.seed,
                pruner=section.pruner.name, seeds=seeds)


def _check_pruner(section: TuneSection, suite: Suite, dims: list[Dimension],
                  problems: list[tuple[str, str]]) -> None:
    """A pruner the suite names that could never stop a trial: pruning acts between epochs
    (none in a 1-epoch trial), and the median pruner only once MEDIAN_STARTUP_TRIALS trials
    of a study are complete."""
    name = section.pruner.name
    if name == "none":
        return
    if all(spec.epochs == 1 for spec in suite.configurations()) and \
            not any(d.path == "epochs" for d in dims):
        problems.append(("tune.pruner.name", f"{name} would never prune: a trial is pruned "
                                             f"between its epochs, and every trial trains 1 "
                                             f"epoch; allowed: none, or more epochs"))
    elif name == "median" and section.trials <= MEDIAN_STARTUP_TRIALS:
        problems.append(("tune.pruner.name", f"median would never prune: it judges a trial "
                                             f"only once {MEDIAN_STARTUP_TRIALS} trials of its "
                                             f"study are complete, and tune.trials is "
                                             f"{section.trials}; allowed: none, hyperband, or "
                                             f"trials: {MEDIAN_STARTUP_TRIALS + 1} or more"))


def _check_distinct_points(dims: list[Dimension], suite: Suite,
                           problems: list[tuple[str, str]]) -> None:
    """Two scientific points that differ only in what tuning sets (the fixed adam(lr=0.01)
    beside the grid's adam, lr tuned) would be tuned twice as the same search, and their
    tuning noise compared as if they were two levels."""
    if not dims:
        return
    axes = suite.varied_axes
    seen: dict[str, TrialSpec] = {}
    for spec in suite.configurations():
        tuned = as_tuned(spec, dims)
        if tuned is None:
            continue  # a dimension the point does not have: reported by _dimension
        key = tuned.config_id
        if key in seen:
            problems.append(("tune.space", (
                f"the points {seen[key].label(axes)} and {spec.label(axes)} are the same once "
                f"tuning sets {', '.join(d.path for d in dims)}: each would be tuned as the "
                f"same search and the two compared as different levels; give them the same "
                f"value there (the fixed value and the grid's alike, e.g. without the tuned "
                f"parameter), or remove the grid's or the ablation's level that repeats the "
                f"fixed one")))
            return
        seen[key] = spec


def as_tuned(spec: TrialSpec, dims: Sequence[Dimension]) -> TrialSpec | None:
    """`spec` as tuning makes it, every dimension of `dims` set to one value (any: tuning
    sets it per point), so that two points can be compared as tuned; None where a
    dimension does not apply to it (a parameter its component lacks)."""
    try:
        return apply_values(spec, {d.path: d.extremes()[0] for d in dims})
    except (ComponentError, ValueError):
        return None


def tuned_label(spec: TrialSpec, best: Mapping[str, Any], axes: list[str]) -> str:
    """How a tuned re-run reads (the report, trials.csv, the run's progress lines): its
    label with each tuned float to 4 significant digits (`rmsprop(lr=0.01185)`, not
    `lr=0.011854715845433215`; one re-run configuration per point, so the labels stay
    distinct), whole `param=value` items only (`base_lr=0.1` is not `lr=0.1`). MLflow's
    params keep the whole value."""
    label = spec.label(axes)
    for path, value in best.items():
        if isinstance(value, float):
            name = path.rpartition(".")[2]
            label = re.sub(rf"(?<![\w.]){re.escape(f'{name}={value}')}(?=[,)\s]|$)",
                           f"{name}={value:.4g}", label)
    return label


def _check_budget(trials: int, dims: list[Dimension], sampler: str,
                  problems: list[tuple[str, str]]) -> None:
    """A space of finitely many points (choices, integer ranges) with more trials than
    points would train points again with the same seed (identical results, counted as
    new evidence): the grid sampler proposes each point once, and tpe, random or qmc
    repeat one at the latest once every point is taken (a tpe study over 2 learning rates
    trained one of them 5 times in 6 trials)."""
    if any(d.kind == "float" or (d.kind == "int" and d.low is None) for d in dims):
        return
    sizes = [len(d.choices) if d.kind == "categorical" else
             int(cast(float, d.high)) - int(cast(float, d.low)) + 1 for d in dims]
    points = math.prod(sizes)
    if trials > points:
        words = " × ".join(f"{d.path}: {n} {'choices' if d.kind == 'categorical' else 'values'}"
                           for d, n in zip(dims, sizes, strict=True))
        space = "the grid sampler's grid" if sampler == "grid" else "the space"
        other = "use sampler tpe, random or qmc" if sampler == "grid" else \
            "widen the space (a float range, more choices)"
        problems.append(("tune.trials",
                         f"{trials} trials, but {space} has {points} "
                         f"point{'s' if points != 1 else ''} ({words}): the trials beyond "
                         f"it would train points again with the same seed; write "
                         f"trials: {points} to cover it once (or fewer for part of "
                         f"it), or {other}"))


_NONE = object()  # no such choice (None is a choice)


def _takes_int(scalar: Any) -> bool:
    """Whether an axis's scalar type takes a whole number (batch_size, epochs): a float
    range's ends, 16.0, were refused as "given 16.0 (float)" where the user wrote 16."""
    try:
        TypeAdapter(scalar).validate_python(16, strict=True)
    except ValidationError:
        return False
    return True


def _dimension(path: str, dist: Any, suite: Suite, raw_sections: Mapping[str, Any],
               problems: list[tuple[str, str]]) -> Dimension | None:
    key = f"tune.space.{path}"
    head, dot, _ = path.partition(".")
    axis = AXES.get(head)
    numeric_axis = axis is not None and not dot and head in NUISANCE_SCALARS
    component_param = axis is not None and dot and axis.kind and not axis.many
    if not (numeric_axis or component_param):
        allowed = "a parameter such as optimizer.lr, or one of " + ", ".join(NUISANCE_SCALARS)
        problems.append((key, f"unknown nuisance axis {path!r}; "
                              f"{did_you_mean(head, list(AXES)) if axis is None else ''}"
                              f"allowed: {allowed}"))
        return None
    if head == "dataset":  # (validate said ok; each study's best then had its own split)
        problems.append((key, f"{path} is a dataset parameter: it changes the data each point "
                              f"is trained and scored on (its examples or splits), so the "
                              f"study would compare points on different data, and the tuned "
                              f"configurations would be scored on different test sets; fix "
                              f"it under task.dataset, or vary it under grid: as an axis the "
                              f"suite compares; tune a training hyperparameter instead, such "
                              f"as optimizer.lr"))
        return None
    scientific = _scientific(path, suite)
    if scientific:
        problems.append((key, f"{path} is also a scientific axis ({scientific}): tuning it "
                              f"would overwrite the levels the suite compares; tune a nuisance "
                              f"axis, or drop {scientific}"))
        return None
    given = _given_in_grid(path, raw_sections)
    if given:
        problems.append((given, f"{path} is tuned (tune.space.{path}), so the value given "
                                f"here would never be used; remove it"))
    if dist.type == "categorical":
        if dist.choices is None:
            problems.append((f"{key}.choices", "categorical needs a non-empty list of choices"))
            return None
        if dist.low is not None or dist.high is not None or dist.log:
            problems.append((key, "categorical takes choices only, not low/high/log"))
        odd = [c for c in dist.choices if c is not None and not isinstance(c, (bool, int, float,
                                                                               str))]
        if odd:  # Optuna stores a choice as a scalar; a list breaks its importances
            problems.append((f"{key}.choices", f"each choice must be a number, a string, a "
                                               f"boolean or null; given {describe(odd[0])}"))
            return None
        seen: list[Any] = []
        for choice in dist.choices:  # Optuna finds a choice by ==: 1, 1.0 and true are one
            twin = next((c for c in seen if c == choice), _NONE)
            if twin is not _NONE:
                same = "" if repr(twin) == repr(choice) else \
                    f" ({twin!r} and {choice!r} are the same value to Optuna)"
                problems.append((f"{key}.choices", f"{choice!r} is given twice{same}: every "
                                                   f"choice must differ (a grid sampler would "
                                                   f"train it twice)"))
                return None
            seen.append(choice)
        if len(seen) == 1:  # (low == high is refused the same way)
            problems.append((f"{key}.choices", f"one choice ({seen[0]!r}) tunes nothing: "
                                               f"give two or more, or fix {path} to "
                                               f"{seen[0]!r} under fixed: instead"))
            return None
        dim = Dimension(path, "categorical", choices=tuple(dist.choices))
    else:
        low, high = dist.low, dist.high
        if low is None or high is None or not low < high:
            problems.append((key, f"{dist.type} needs numbers low < high, got low={low!r}, "
                                  f"high={high!r}"))
            return None
        if dist.type == "int" and not (float(low).is_integer() and float(high).is_integer()):
            problems.append((key, f"int needs whole numbers, got low={low!r}, high={high!r}"))
            return None
        if dist.log and low <= 0:
            problems.append((f"{key}.low", f"a log-uniform range needs low > 0, got {low!r}"))
            return None
        if dist.choices is not None:
            problems.append((f"{key}.choices", f"{dist.type} takes low/high, not choices; use "
                                               f"type: categorical"))
        if dist.type == "int":
            low, high = int(low), int(high)
        dim = Dimension(path, dist.type, low=low, high=high, log=dist.log)
    for value in dim.extremes():  # a scalar axis's own bounds (dropout, epochs, ...)
        if numeric_axis and axis is not None:
            try:
                TypeAdapter(axis.scalar).validate_python(value, strict=True)
            except ValidationError:
                end = "choices" if dim.kind == "categorical" else \
                    "low" if value == dim.low else "high"
                whole = dim.kind == "float" and all(  # (1.0 to 20.5: refused as int too)
                    float(end).is_integer() for end in dim.extremes()) and \
                    _takes_int(axis.scalar)
                problems.append((key if whole else f"{key}.{end}",
                                 f"{path} takes {axis.expects}, and a float range draws "
                                 f"fractional values: use type: int" if whole else
                                 f"{path} takes {axis.expects}; given {describe(value)}"))
                return None
    # a float range draws fractional values: one inside it is checked too (a range of
    # whole-number ends on an integer parameter passed, and `tune` failed mid-run)
    probes = dim.extremes()
    if dim.kind == "float" and dim.low is not None and dim.high is not None:
        probes.append(dim.low + (dim.high - dim.low) * 0.371)
    for spec in suite.configurations():  # every point must accept every value
        for value in probes:
            try:
                apply_values(spec, {dim.path: value})
            except (ComponentError, ValueError) as err:
                inside = value not in dim.extremes()
                problems.append((key, f"{value!r}{' (a value inside the range)' if inside else ''}"
                                      f" does not fit configuration "
                                      f"{spec.label(suite.varied_axes)}: "
                                      f"{str(err).splitlines()[0]}"
                                      + ("; a float range draws fractional values: use "
                                         "type: int" if inside else "")))
                return None
    return dim


def tuned_variants(tune: Tune, configurations: list[TrialSpec]
                   ) -> list[tuple[TrialSpec, TrialSpec, str]]:
    """(configuration, the configuration at one end of one dimension, that dimension's key
    path) for every configuration and dimension: what the dry build also checks."""
    out = []
    for spec in configurations:
        for dim in tune.space:
            for value in dim.extremes():
                try:
                    variant = apply_values(spec, {dim.path: value})
                except (ComponentError, ValueError):
                    continue  # reported by check_tune
                out.append((spec, variant, f"tune.space.{dim.path}"))
    return out
