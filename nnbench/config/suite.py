"""Suite files: parse, validate every key and name, expand into TrialSpecs.

A suite file (YAML)::

    name: default                 # experiment name in MLflow, report file name
    description: ...
    task:  {dataset: mnist1d, model: {name: mlp, hidden: [256, 128]},
            loss: cross_entropy, metric: test_accuracy}
    fixed: {activation: relu, optimizer: {name: sgd, lr: 0.05}, epochs: 20, batch_size: 64}
    grid:   {activation: [sigmoid, tanh, relu]}     # cartesian product
    ablate: {optimizer.lr: [0.01, 0.1]}             # one factor at a time from `fixed`
    seeds: 4                                        # count (0..n-1) or a list
    checkpoint: false                               # log weights + optimizer state per trial
    report: {ema: 0.6}                              # how the report reads the results
    expect:                                         # claims the report gives a verdict on
      - {claim: relu beats sigmoid, a: {activation: relu}, b: {activation: sigmoid}}
    plugins: [mylab.nets]                           # modules registering own components
    reference:                                      # published numbers shown beside ours
      {source: ..., metric: test_accuracy, tolerance: 0.03,
       results: [{where: {model: logistic}, value: 0.32}]}

Everything is checked before any training: `load_suite` collects every problem
and raises one `SuiteError` whose lines name the file, the key path, the value
given and what is allowed.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import TypeAdapter, ValidationError

from nnbench import registry
from nnbench.config.reference import Reference, parse_reference
from nnbench.config.spec import AXES, TrialSpec, stamped, value_label
from nnbench.registry import ComponentError, ComponentSpec

__all__ = ["METRICS", "Claim", "Dimension", "ReportOptions", "Suite", "SuiteError", "Tune",
           "apply_values", "load_suite", "parse_suite"]

# Metrics a suite can compare on, and whether larger is better. Which of them a
# trial reports depends on its loss: loss + accuracy, or loss + rmse + mae.
METRICS: dict[str, bool] = {
    f"{split}_{name}": name == "accuracy"
    for split in ("test", "val", "train") for name in ("accuracy", "loss", "rmse", "mae")
}
TOP_KEYS = ("name", "description", "task", "fixed", "grid", "ablate", "seeds", "checkpoint",
            "report", "expect", "tune", "plugins", "reference")
TUNE_KEYS = ("space", "trials", "objective", "sampler", "pruner", "seeds")
SAMPLERS = ("tpe", "random", "grid", "qmc")
PRUNERS = ("median", "hyperband", "none")
REPORT_KEYS = ("ema", "overfit_gap", "underfit_error")
CLAIM_KEYS = ("claim", "a", "b", "metric", "direction", "where")
# per-epoch diagnostics a claim may be about, besides the metrics above
DIAGNOSTICS = ("weight_sparsity", "dead_fraction", "saturated_fraction", "gap_loss",
               "gap_accuracy", "gap_rmse", "gap_mae")
TASK_KEYS = (*tuple(a.name for a in AXES.values() if a.section == "task"), "metric")
FIXED_KEYS = tuple(a.name for a in AXES.values() if a.section == "fixed")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SuiteError(ValueError):
    """Everything wrong with one suite file; each problem is (key path, message)."""

    def __init__(self, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.path}: {key}: {msg}" if key else f"{self.path}: {msg}"
                for key, msg in self.problems]


@dataclass(frozen=True)
class ReportOptions:
    """How the report reads the results (suite key `report:`)."""

    ema: float = 0.0  # β of the notes' EMA smoothing of learning curves; 0 = raw curves
    overfit_gap: float = 0.1  # validation error minus training error above this: overfit
    underfit_error: float = 0.3  # training error above this: underfit


@dataclass(frozen=True)
class Claim:
    """An `expect:` entry: configurations matching `a` have a higher/lower `metric` than
    those matching `b` (seed-paired, other axes matched), optionally only `where`."""

    text: str
    a: Mapping[str, str]  # axis -> value label, as report tables show them
    b: Mapping[str, str]
    metric: str
    direction: Literal["higher", "lower"]
    where: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dimension:
    """One nuisance hyperparameter of a `tune:` search space."""

    path: str  # an axis (epochs, dropout, ...) or axis.parameter (optimizer.lr)
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample log-uniformly
    choices: tuple[Any, ...] = ()


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


@dataclass(frozen=True)
class Suite:
    """A validated suite: its base trial, what it varies, and its trials."""

    name: str
    description: str
    path: str
    metric: str  # compared metric, e.g. test_accuracy
    base: TrialSpec  # the `fixed` trial (seed 0)
    grid: Mapping[str, tuple[Any, ...]]  # axis -> resolved values
    ablate: Mapping[str, tuple[Any, ...]]
    seeds: tuple[int, ...]
    source: str = field(repr=False)  # the file's text, logged with every invocation
    checkpoint: bool = False  # save each trial's weights + optimizer state as an artifact
    report: ReportOptions = field(default_factory=ReportOptions)
    expect: tuple[Claim, ...] = ()
    tune: Tune | None = None
    plugins: tuple[str, ...] = ()  # plugin modules imported before names are resolved
    reference: Reference | None = None  # published numbers the report compares with

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric]

    @property
    def varied_axes(self) -> list[str]:
        """Axes whose value differs between the suite's configurations, in file order."""
        return list(self._varied_axes)

    def configurations(self) -> list[TrialSpec]:
        """One spec per configuration (seed = the first seed), grid first, then ablations."""
        return list(self._configurations)

    # The suite is frozen, so its expansion is computed once: the runner reads the varied
    # axes for every epoch's progress line, tracking and results for every trial.
    @cached_property
    def _configurations(self) -> tuple[TrialSpec, ...]:
        points: list[dict[str, Any]] = []
        if self.grid:
            for combo in itertools.product(*self.grid.values()):
                points.append(dict(zip(self.grid, combo, strict=True)))
        if self.ablate:
            points.append({})
            points += [{axis: v} for axis, values in self.ablate.items() for v in values]
        if not points:
            points.append({})
        unique: dict[str, TrialSpec] = {}
        for point in points:
            spec = _apply(self.base, point)
            unique.setdefault(spec.config_id, spec)
        return tuple(unique.values())

    @cached_property
    def _varied_axes(self) -> tuple[str, ...]:
        axes = list(dict.fromkeys([*self.grid, *self.ablate]))
        configs = self._configurations
        return tuple(a for a in axes if len({_key(c.value(a)) for c in configs}) > 1)

    def trials(self) -> list[TrialSpec]:
        """Every trial: each configuration × each seed (configuration-major order)."""
        return [replace(c, seed=s) for c in self.configurations() for s in self.seeds]


def _key(value: Any) -> Any:
    return value if not isinstance(value, list) else tuple(value)


def _apply(base: TrialSpec, point: Mapping[str, Any]) -> TrialSpec:
    """Base trial with the point's axis values; whole components first, then parameters."""
    whole: dict[str, Any] = {a: v for a, v in point.items() if "." not in a}
    spec = replace(base, **whole)
    for axis, v in point.items():
        if "." in axis:
            head, _, param = axis.partition(".")
            component: ComponentSpec = getattr(spec, head)
            resolved = registry.resolve(AXES[head].kind or "", {**component.to_dict(), param: v})
            changes: dict[str, Any] = {head: resolved}
            spec = replace(spec, **changes)
    return stamped(spec)


def apply_values(spec: TrialSpec, values: Mapping[str, Any]) -> TrialSpec:
    """A spec with nuisance values applied (`optimizer.lr`, `epochs`, ...), validated."""
    for path in values:
        axis = AXES[path.partition(".")[0]]
        if "." not in path and axis.scalar is not None:
            TypeAdapter(axis.scalar).validate_python(values[path], strict=True)
    return _apply(spec, values)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (YAML silently keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {seen[key] + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file. Raises SuiteError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(str(path), [("", "no such suite file")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteError(str(path), [("", f"cannot read suite file: {err}")]) from None
    return parse_suite(text, str(path))


def parse_suite(text: str, path: str = "<suite>") -> Suite:
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        msg = getattr(err, "problem", None) or str(err)
        context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context:
            msg += f" ({context}" + (f" started on line {context_mark.line + 1}"
                                     if context_mark else "") + ")"
        lines = text.splitlines()
        if mark and mark.line < len(lines):
            msg += f"; the line reads {lines[mark.line].strip()!r}"
        raise SuiteError(path, [(where, f"invalid YAML: {msg}")]) from None
    return _Validator(path).validate(raw, text)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Validator:
    """Walks the raw YAML, collecting (key path, message) problems."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[tuple[str, str]] = []

    def problem(self, key: str, msg: str) -> None:
        self.problems.append((key, msg))

    def fail_if_any(self) -> None:
        if self.problems:
            raise SuiteError(self.path, self.problems)

    def mapping(self, value: Any, key: str, allowed: Iterable[str]) -> dict[str, Any]:
        """Check a mapping's type and keys; unknown keys are reported with the closest name."""
        allowed = list(allowed)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(key, f"expected a mapping with keys from {', '.join(allowed)}, "
                              f"got {_describe(value)}")
            return {}
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                where = f"{key}.{k}" if key else str(k)
                self.problem(where, f"unknown key {k!r}; {hint}allowed: {', '.join(allowed)}")
        return value

    def validate(self, raw: Any, text: str) -> Suite:
        if not isinstance(raw, dict):
            self.problem("", f"a suite file must be a mapping with keys {', '.join(TOP_KEYS)}, "
                             f"got {_describe(raw)}")
            self.fail_if_any()
        top = self.mapping(raw, "", TOP_KEYS)
        plugins = self.plugins(top)
        self.fail_if_any()  # a missing plugin would make every name below look unknown
        name = self.name(top)
        description = top.get("description", "")
        if not isinstance(description, str):
            self.problem("description", f"expected text, got {_describe(description)}")
        task = self.mapping(top.get("task"), "task", TASK_KEYS)
        fixed = self.mapping(top.get("fixed"), "fixed", FIXED_KEYS)
        base_values = self.base_values(task, fixed)
        metric = self.metric(task, base_values)
        grid = self.axes(top, "grid", base_values)
        ablate = self.axes(top, "ablate", base_values)
        seeds = self.seeds(top)
        checkpoint = top.get("checkpoint", False)
        if not isinstance(checkpoint, bool):
            self.problem("checkpoint", f"expected true or false, got {_describe(checkpoint)}")
        self.fail_if_any()
        report = self.report_options(top)
        base = stamped(TrialSpec(**base_values, seed=seeds[0]))
        suite = Suite(name=name, description=description, path=self.path, metric=metric,
                      base=base, grid=grid, ablate=ablate, seeds=seeds, source=text,
                      checkpoint=checkpoint, report=report, plugins=plugins)
        self.check_dotted(suite)
        self.fail_if_any()
        self.check_configurations(suite)
        for key, msg in ignored_axis_problems(suite, top):
            self.problem(key, msg)
        claims = self.claims(top, suite)
        reference = parse_reference(top.get("reference"), suite, self) \
            if "reference" in top else None
        tune = self.tune(top, suite)
        self.fail_if_any()
        return replace(suite, expect=claims, tune=tune, reference=reference)

    def plugins(self, top: dict[str, Any]) -> tuple[str, ...]:
        """Import the suite's plugin modules (before any component name is resolved)."""
        from nnbench.plugins import load_suite_plugins

        names, problems = load_suite_plugins(top.get("plugins"), self.path)
        self.problems += problems
        return names

    def tune(self, top: dict[str, Any], suite: Suite) -> Tune | None:
        if "tune" not in top:
            return None
        raw = self.mapping(top["tune"], "tune", TUNE_KEYS)
        space = self.tune_space(raw.get("space"), suite)
        trials = raw.get("trials", 20)
        if not _is_int(trials) or trials < 1:
            self.problem("tune.trials", f"expected a positive number of Optuna trials per "
                                        f"scientific point, got {_describe(trials)}")
            trials = 1
        objective = self.mapping(raw.get("objective", {}), "tune.objective",
                                 ("metric", "direction"))
        default_metric = "val_" + suite.metric.split("_", 1)[1]
        metric = objective.get("metric", default_metric)
        allowed = [m for m in METRICS if not m.startswith("test_")]
        if metric not in allowed:
            why = ("tuning on the test split would leak it into the comparison; "
                   if str(metric).startswith("test_") else "")
            self.problem("tune.objective.metric", f"{why}got {_describe(metric)}; allowed: "
                                                  f"{', '.join(allowed)}")
            metric = default_metric
        direction = objective.get("direction",
                                  "maximize" if METRICS.get(metric, True) else "minimize")
        if direction not in ("maximize", "minimize"):
            self.problem("tune.objective.direction",
                         f"expected maximize or minimize, got {_describe(direction)}")
        sampler = self.mapping(raw.get("sampler", {}), "tune.sampler", ("name", "seed"))
        sampler_name = sampler.get("name", "tpe")
        if sampler_name not in SAMPLERS:
            self.problem("tune.sampler.name", f"unknown sampler {_describe(sampler_name)}; "
                                              f"allowed: {', '.join(SAMPLERS)}")
        sampler_seed = sampler.get("seed", 0)
        if not _is_int(sampler_seed) or sampler_seed < 0:
            self.problem("tune.sampler.seed", f"expected an integer >= 0, got "
                                              f"{_describe(sampler_seed)}")
        pruner = self.mapping(raw.get("pruner", {}), "tune.pruner", ("name",))
        pruner_name = pruner.get("name", "median")
        if pruner_name not in PRUNERS:
            self.problem("tune.pruner.name", f"unknown pruner {_describe(pruner_name)}; "
                                             f"allowed: {', '.join(PRUNERS)}")
        if sampler_name == "grid" and any(d.kind != "categorical" for d in space):
            self.problem("tune.sampler.name", "the grid sampler needs every dimension of "
                                              "tune.space to be categorical")
        seeds = self.seeds({"seeds": raw["seeds"]}) if "seeds" in raw else suite.seeds
        return Tune(space=space, trials=trials, metric=str(metric), direction=direction,
                    sampler=str(sampler_name), sampler_seed=int(sampler_seed)
                    if _is_int(sampler_seed) else 0, pruner=str(pruner_name), seeds=seeds)

    def tune_space(self, raw: Any, suite: Suite) -> tuple[Dimension, ...]:
        allowed = "float {low, high, log}, int {low, high, log} or categorical {choices}"
        if not isinstance(raw, dict) or not raw:
            self.problem("tune.space", f"expected a mapping of axis.parameter (e.g. optimizer.lr) "
                                       f"to a distribution ({allowed}), got {_describe(raw)}")
            return ()
        dims = []
        for path, dist in raw.items():
            key = f"tune.space.{path}"
            head, dot, _ = str(path).partition(".")
            numeric_axis = head in AXES and not dot and AXES[head].scalar is not None
            if head not in AXES or not ((dot and AXES[head].kind and not AXES[head].many)
                                        or numeric_axis):
                self.problem(key, f"unknown nuisance axis {path!r}; allowed: a parameter such as "
                                  f"optimizer.lr, or one of epochs, batch_size, dropout, l1, l2")
                continue
            entry = self.mapping(dist, key, ("type", "low", "high", "log", "choices"))
            kind = entry.get("type", "float")
            if kind not in ("float", "int", "categorical"):
                self.problem(f"{key}.type", f"expected float, int or categorical, got "
                                            f"{_describe(kind)}")
                continue
            if kind == "categorical":
                choices = entry.get("choices")
                if not isinstance(choices, list) or not choices:
                    self.problem(f"{key}.choices", f"expected a non-empty list, got "
                                                   f"{_describe(choices)}")
                    continue
                dim = Dimension(str(path), "categorical", choices=tuple(choices))
                values = list(choices)
            else:
                low: Any = entry.get("low")
                high: Any = entry.get("high")
                log = entry.get("log", False)
                number = (int,) if kind == "int" else (int, float)
                if not all(isinstance(v, number) and not isinstance(v, bool)
                           for v in (low, high)) or not low < high:
                    self.problem(key, f"{kind} needs numbers low < high, got low={low!r}, "
                                      f"high={high!r}")
                    continue
                if log and low <= 0:
                    self.problem(f"{key}.low", f"a log-uniform range needs low > 0, got {low!r}")
                    continue
                dim = Dimension(str(path), kind, low=low, high=high, log=bool(log))
                values = [low, high]
            for spec in suite.configurations():  # every point must accept the range
                for value in values:
                    try:
                        apply_values(spec, {dim.path: value})
                    except (ComponentError, ValueError) as err:
                        self.problem(key, f"{value!r} does not fit configuration "
                                          f"{spec.label(suite.varied_axes)}: {err}")
            dims.append(dim)
        return tuple(dims)

    def report_options(self, top: dict[str, Any]) -> ReportOptions:
        raw = self.mapping(top.get("report"), "report", REPORT_KEYS)
        values: dict[str, float] = {}
        bounds = {"ema": (0.0, 1.0, "a number in [0, 1)"),
                  "overfit_gap": (0.0, math.inf, "a number >= 0"),
                  "underfit_error": (0.0, math.inf, "a number >= 0")}
        for key, value in raw.items():
            if key not in bounds:
                continue
            low, high, text = bounds[key]
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not low <= value < high:
                self.problem(f"report.{key}", f"expected {text}, got {_describe(value)}")
                continue
            values[key] = float(value)
        return ReportOptions(**values)

    def claims(self, top: dict[str, Any], suite: Suite) -> tuple[Claim, ...]:
        raw = top.get("expect")
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.problem("expect", f"expected a list of claims with keys {', '.join(CLAIM_KEYS)}, "
                                   f"got {_describe(raw)}")
            return ()
        metrics = [*METRICS, *DIAGNOSTICS]
        claims = []
        for i, item in enumerate(raw):
            key = f"expect[{i}]"
            entry = self.mapping(item, key, CLAIM_KEYS)
            if not entry:
                if not isinstance(item, dict):
                    continue
                self.problem(key, "an empty claim; give claim, a, b (and metric, direction)")
                continue
            text = entry.get("claim")
            if not isinstance(text, str) or not text:
                self.problem(f"{key}.claim", f"expected the claim as text, got {_describe(text)}")
            metric = entry.get("metric", suite.metric)
            if metric not in metrics and not str(metric).startswith("grad_norm.layer"):
                close = difflib.get_close_matches(str(metric), metrics, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.problem(f"{key}.metric", f"unknown metric {_describe(metric)}; {hint}"
                                              f"allowed: {', '.join(metrics)}, grad_norm.layerN")
            direction = entry.get("direction", "higher")
            if direction not in ("higher", "lower"):
                self.problem(f"{key}.direction", f"expected higher or lower, got "
                                                 f"{_describe(direction)}")
            sides = {}
            for side in ("a", "b", "where"):
                required = side != "where"
                sides[side] = self.claim_side(entry.get(side), f"{key}.{side}", suite, required)
            if sides["a"] and sides["a"] == sides["b"]:
                self.problem(f"{key}.b", "a and b select the same configurations")
            claims.append(Claim(text=str(text), a=sides["a"], b=sides["b"], metric=str(metric),
                                direction=direction, where=sides["where"]))
        return tuple(claims)

    def claim_side(self, raw: Any, key: str, suite: Suite, required: bool) -> dict[str, str]:
        """`{axis: value}` of a claim, resolved to the labels the report's tables use."""
        varied = suite.varied_axes
        if raw is None and not required:
            return {}
        if not isinstance(raw, dict) or not raw:
            self.problem(key, f"expected a mapping of varied axes ({', '.join(varied) or 'none'}) "
                              f"to values, got {_describe(raw)}")
            return {}
        out = {}
        for axis, value in raw.items():
            if axis not in varied:
                close = difflib.get_close_matches(str(axis), varied, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.problem(f"{key}.{axis}", f"{axis!r} is not varied by this suite; {hint}"
                                              f"allowed: {', '.join(varied) or 'none'}")
                continue
            head, dot, param = str(axis).partition(".")
            try:
                if dot:
                    component = suite.base.value(head).to_dict()
                    resolved = registry.resolve(AXES[head].kind or "",
                                                {**component, param: value}).kwargs[param]
                else:
                    resolved = self.value(head, value, f"{key}.{axis}")
            except ComponentError as err:
                self.problem(f"{key}.{axis}", str(err))
                continue
            labels = {c.label([axis]).partition("=")[2] for c in suite.configurations()}
            label = value_label(axis, resolved)
            if resolved is not None and label not in labels:
                self.problem(f"{key}.{axis}", f"no configuration has {axis}={label}; the suite "
                                              f"has {', '.join(sorted(labels))}")
            out[str(axis)] = label
        return out

    def name(self, top: dict[str, Any]) -> str:
        name = top.get("name")
        if name is None:
            self.problem("name", "missing; give the suite a name (letters, digits, _ . -)")
            return ""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            self.problem("name", f"expected a name of letters, digits, '_', '.', '-' "
                                 f"(it names the MLflow experiment and report file), "
                                 f"got {_describe(name)}")
            return ""
        return name

    def metric(self, task: dict[str, Any], base: dict[str, Any]) -> str:
        loss = base.get("loss")
        default = "test_accuracy"
        if isinstance(loss, ComponentSpec):  # the loss's first metric on the test split
            default = f"test_{registry.get('loss', loss.name).attrs['metrics'][0]}"
        metric = task.get("metric", default)
        if metric not in METRICS:
            close = difflib.get_close_matches(str(metric), list(METRICS), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            self.problem("task.metric", f"unknown metric {_describe(metric)}; {hint}"
                                        f"allowed: {', '.join(METRICS)}")
            return "test_accuracy"
        return str(metric)

    def value(self, axis: str, value: Any, key: str) -> Any:
        """Resolve one axis value; None (and a problem) when invalid."""
        spec = AXES[axis]
        if spec.scalar is not None:
            try:
                return TypeAdapter(spec.scalar).validate_python(value, strict=True)
            except ValidationError:
                self.problem(key, f"{axis} must be {spec.expects}, got {_describe(value)}")
                return None
        kind = spec.kind or ""
        if spec.many:
            if not isinstance(value, list):
                self.problem(key, f"{axis} must be a list of {kind}s (possibly empty), "
                                  f"got {_describe(value)}")
                return None
            items = [self.component(kind, v, f"{key}[{i}]") for i, v in enumerate(value)]
            return None if any(i is None for i in items) else tuple(items)
        return self.component(kind, value, key)

    def component(self, kind: str, value: Any, key: str) -> ComponentSpec | None:
        try:
            return registry.resolve(kind, value)
        except ComponentError as err:
            for sub, msg in err.problems:
                self.problem(f"{key}.{sub}" if sub else key, msg)
            return None

    def base_values(self, task: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for axis in AXES.values():
            section = task if axis.section == "task" else fixed
            key = f"{axis.section}.{axis.name}"
            if axis.name in section:
                values[axis.name] = self.value(axis.name, section[axis.name], key)
            elif axis.default is not None:
                values[axis.name] = self.value(axis.name, axis.default, key)
            else:
                self.problem(key, f"missing; every trial needs a value for {axis.name} "
                                  f"({axis.doc})")
        return values

    def axes(self, top: dict[str, Any], section: str,
             base: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
        """`grid`/`ablate`: axis (or axis.param) -> non-empty list of distinct values."""
        if section not in top:
            return {}
        raw = top[section]
        allowed = f"an axis ({', '.join(AXES)}) or axis.parameter such as optimizer.lr"
        if not isinstance(raw, dict) or not raw:
            self.problem(section, f"expected a non-empty mapping of {allowed} to a list of values, "
                                  f"got {_describe(raw)}")
            return {}
        out: dict[str, tuple[Any, ...]] = {}
        for axis, values in raw.items():
            key = f"{section}.{axis}"
            head, dot, param = str(axis).partition(".")
            if head not in AXES or (dot and (not param or AXES[head].kind is None
                                             or AXES[head].many)):
                close = difflib.get_close_matches(head, list(AXES), n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.problem(key, f"unknown axis {axis!r}; {hint}allowed: {allowed}")
                continue
            if not isinstance(values, list) or not values:
                self.problem(key, f"expected a non-empty list of values, got {_describe(values)}")
                continue
            resolved = []
            for i, v in enumerate(values):
                if dot:
                    if isinstance(v, dict):
                        self.problem(f"{key}[{i}]",
                                     f"expected a parameter value, got {_describe(v)}")
                    resolved.append(v)  # checked against each component in check_dotted
                else:
                    resolved.append(self.value(head, v, f"{key}[{i}]"))
            seen: dict[Any, int] = {}
            for i, (v, r) in enumerate(zip(values, resolved, strict=True)):
                marker = repr(r) if r is not None else None
                if marker is not None and marker in seen:
                    self.problem(f"{key}[{i}]", f"duplicate value {v!r} (same as "
                                                f"{key}[{seen[marker]}]); list each value once")
                elif marker is not None:
                    seen[marker] = i
            out[str(axis)] = tuple(resolved)
        return out

    def seeds(self, top: dict[str, Any]) -> tuple[int, ...]:
        raw = top.get("seeds", 1)
        allowed = "a count >= 1 (seeds 0..n-1) or a non-empty list of distinct integers >= 0"
        if _is_int(raw) and raw >= 1:
            return tuple(range(raw))
        if isinstance(raw, list) and raw and all(_is_int(s) and s >= 0 for s in raw):
            if len(set(raw)) == len(raw):
                return tuple(raw)
            dupes = sorted({s for s in raw if raw.count(s) > 1})
            self.problem("seeds", f"seed(s) {dupes} listed twice in {raw!r}; {allowed}")
            return (0,)
        self.problem("seeds", f"expected {allowed}, got {_describe(raw)}")
        return (0,)

    def check_dotted(self, suite: Suite) -> None:
        """Every `axis.param` value must be valid for every component it is applied to."""
        for section, axes in (("grid", suite.grid), ("ablate", suite.ablate)):
            for axis, values in axes.items():
                if "." not in axis:
                    continue
                head = axis.partition(".")[0]
                components = set(suite.grid.get(head, ())) | {getattr(suite.base, head)}
                for i, v in enumerate(values):
                    for component in sorted(components):
                        try:
                            _apply(replace(suite.base, **{head: component}), {axis: v})
                        except ComponentError as err:
                            for _, msg in err.problems:
                                self.problem(f"{section}.{axis}[{i}]", msg)

    def check_configurations(self, suite: Suite) -> None:
        """Components that cannot work together (loss vs dataset, cnn vs vectors, ...)."""
        configs = suite.configurations()
        where: dict[tuple[str, str], list[str]] = {}
        for spec in configs:
            for problem in compatibility_problems(spec, suite.metric):
                where.setdefault(problem, []).append(spec.label(suite.varied_axes))
        for (key, msg), labels in where.items():
            if len(labels) < len(configs):  # only some configurations: say which
                msg += f" (in configuration {'; '.join(labels)})"
            self.problem(key, msg)


def ignored_axis_problems(suite: Suite, top: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Axes the suite varies (or sets away from their default) that no configuration's
    model uses: a comparison of identical trials. Models declare what they ignore in
    `attrs["ignored_axes"](params) -> {axis: why}` (logistic: activation, norm, dropout)."""
    from nnbench.models import ignored_axes

    problems = []
    configs = suite.configurations()
    varied = {a.partition(".")[0] for a in suite.varied_axes}
    for axis in ("activation", "init", "norm", "dropout"):
        kind = AXES[axis].kind
        default = registry.resolve(kind, AXES[axis].default) if kind else AXES[axis].default
        changed = axis in varied or suite.base.value(axis) != default
        if not changed:
            continue
        why = [ignored_axes(c.model).get(axis) for c in configs]
        if all(why):
            where = next((f"{section}.{a}" for section in ("grid", "ablate")
                          for a in top.get(section) or {} if a.partition(".")[0] == axis),
                         f"fixed.{axis}")
            problems.append((where, f"{axis} has no effect on model "
                                    f"'{configs[0].model.name}': {why[0]}; every trial would "
                                    f"be the same as with the default"))
    return problems


def compatibility_problems(spec: TrialSpec, metric: str) -> list[tuple[str, str]]:
    """Why a trial's components cannot train together; empty when they can."""
    from nnbench.data import dataset_attrs

    problems = []
    try:  # a dataset reading a file checks the file's header here
        data = dataset_attrs(spec.dataset)
    except (OSError, ValueError) as err:
        return [("task.dataset", str(err))]
    loss = registry.get("loss", spec.loss.name).attrs
    if loss["targets"] != data["targets"]:
        fitting = [i.name for i in registry.list_components("loss")
                   if i.attrs["targets"] == data["targets"]]
        problems.append(("task.loss", f"loss '{spec.loss.name}' needs {loss['targets']} targets "
                                      f"but dataset '{spec.dataset.name}' has {data['targets']} "
                                      f"targets; allowed: {', '.join(fitting)}"))
    allowed = [f"{split}_{m}" for split in ("test", "val", "train")
               for m in ("loss", *loss["metrics"])]
    if metric not in allowed:
        problems.append(("task.metric", f"loss '{spec.loss.name}' reports no {metric!r}; "
                                        f"allowed: {', '.join(allowed)}"))
    monitor = spec.early_stopping.kwargs.get("monitor")
    if monitor is not None and monitor not in allowed:
        problems.append(("fixed.early_stopping.monitor",
                         f"loss '{spec.loss.name}' reports no {monitor!r}; allowed: "
                         f"{', '.join(m for m in allowed if m.startswith('val_'))}"))
    need = registry.get("model", spec.model.name).attrs.get("input")
    if need and need != data["input"]:
        problems.append(("task.model", f"model '{spec.model.name}' needs {need} inputs but "
                                       f"dataset '{spec.dataset.name}' gives {data['input']} "
                                       f"inputs"))
    for i, aug in enumerate(spec.augmentation):
        need = registry.get("augmentation", aug.name).attrs["input"]
        if need != "any" and need != data["input"]:
            problems.append((f"fixed.augmentation[{i}]",
                             f"augmentation '{aug.name}' works on {need} inputs but dataset "
                             f"'{spec.dataset.name}' gives {data['input']} inputs"))
    return problems
