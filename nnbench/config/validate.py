"""Validation: plain YAML data -> a `Suite`, or one `SuiteError` listing every problem.

The steps, in order (each later step runs only on what the earlier ones accepted):

1. the top-level keys (`sections.TOP_KEYS`) and their types;
2. plugins named by the suite are imported, before any name is resolved;
3. the name (also a file name: reserved and unsafe names are refused);
4. the base trial (`task`, `fixed`), every component resolved by its registry;
5. `grid` / `ablate`: known axes, non-empty lists of distinct, valid values, no axis
   in both; `seeds` (a count, a list, or per-source seeds: `config.sources`); `tune`,
   `report` and `data` sections;
6. the size, counted before anything is built: configurations × seeds (× Optuna
   trials) against `max_trials`;
7. `axis.parameter` values against every component they apply to;
8. the configurations: none repeated (an ablation equal to the base trial, a grid
   value overwritten by a parameter axis), components that fit together; a source of
   randomness varied on its own that no configuration draws from;
9. the `tune` block (`tune.validate`): nuisance axes only, objective and direction;
10. the dry build of every configuration (`dry.dry_build`) and of every tuned extreme;
    configurations that would train identically (an axis with no effect);
11. the claims (`claims.check_claims`): each must be testable;
12. the published `reference` numbers (`reference.parse_reference`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from nnbench import registry
from nnbench.config.claims import check_claims
from nnbench.config.errors import Problems
from nnbench.config.expand import (
    METRICS,
    DataOptions,
    Point,
    ReportOptions,
    Suite,
    apply_point,
    apply_values,
    count,
    points,
)
from nnbench.config.reference import parse_reference
from nnbench.config.sections import (
    FIXED_KEYS,
    TASK_KEYS,
    TOP_KEYS,
    DataSection,
    ReportSection,
    SuiteSection,
    TuneSection,
    check,
)
from nnbench.config.sources import SeedDesign, parse_seeds, source_problems
from nnbench.config.spec import AXES, TrialSpec, stamped
from nnbench.config.tune import Tune, check_tune, tuned_variants
from nnbench.messages import count as counted
from nnbench.messages import describe, did_you_mean
from nnbench.registry import ComponentError, ComponentSpec, Params

__all__ = ["NAME_PATTERN", "RESERVED_NAMES", "ignored_axis_problems", "unused_setting_problems",
           "validate"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NAME_LENGTH = 100
MAX_SEED = 2**63 - 1
# names that would collide with files or experiments nnbench (or MLflow) already uses
RESERVED_NAMES = {
    "index": "reports/index.html lists every suite; a suite named index would overwrite it",
    "Default": "MLflow's own default experiment is called Default",
}
_DEVICE_NAMES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)

assert set(TOP_KEYS) == set(SuiteSection.model_fields), "declare every top-level key once"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(raw: Any, text: str, path: str) -> Suite:
    """The suite `raw` (parsed YAML) describes; raises SuiteError with every problem."""
    return _Validator(path).run(raw, text)


class _Validator:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems = Problems(path)

    def add(self, key: str, msg: str) -> None:
        self.problems.add(key, msg)

    def run(self, raw: Any, text: str) -> Suite:
        # 1. top-level keys and types
        if raw is None:  # (YAML reads an empty file, or one of comments only, as null)
            content = [line for line in text.splitlines() if line.strip()
                       and not line.lstrip().startswith("#") and line.strip() not in
                       ("---", "...")]
            what = (f"holds only a YAML null ({content[0].strip()!r})" if content else
                    "holds nothing (it is empty, or comments only)")
            self.add("", f"the file {what}; a suite file is a mapping with keys "
                         f"{', '.join(TOP_KEYS)}")
            self.problems.raise_if_any()
        if not isinstance(raw, dict):
            self.add("", f"a suite file must be a mapping with keys {', '.join(TOP_KEYS)}, "
                         f"got {describe(raw)}")
            self.problems.raise_if_any()
        top = self.top(raw)
        # 2. plugins named by the suite, imported before any name is resolved (a missing
        #    one would make every name below look unknown)
        from nnbench.plugins import load_suite_plugins

        plugins, plugin_problems = load_suite_plugins(raw.get("plugins"), self.path)
        self.problems.extend(plugin_problems)
        self.problems.raise_if_any()
        # 3-5. name, base trial, axes, seeds, sections
        name = self.name(top.name)
        task = self.keys(top.task, "task", TASK_KEYS)
        dataset = task.get("dataset")
        if isinstance(dataset, dict) and dataset.get("folds") and "val_fraction" in dataset:
            # (it was ignored, yet named in every label and part of every trial id)
            self.add("task.dataset.val_fraction",
                     f"has no effect with folds: {dataset['folds']} (each fold holds out "
                     f"1/{dataset['folds']} of the examples for validation); drop it")
        fixed = self.keys(top.fixed, "fixed", FIXED_KEYS)
        base_values = self.base_values(task, fixed)
        metric = self.metric(task, base_values)
        grid = self.axes(raw, top.grid, "grid")
        ablate = self.axes(raw, top.ablate, "ablate")
        for axis in ablate:
            if axis in grid:
                self.add(f"ablate.{axis}", f"{axis} is also a grid axis (grid.{axis}): the grid "
                                           f"already crosses its values with the others; list "
                                           f"it under grid or ablate, not both")
        problems: list[tuple[str, str]] = []
        design: SeedDesign | None = None
        n_seeds: int
        seed_list: tuple[int, ...] | None
        if isinstance(top.seeds, dict):  # per-source seeds (config.sources)
            design = parse_seeds(top.seeds, "seeds", problems)
            n_seeds, seed_list = (len(design), (design.fixed,)) if design else (1, (0,))
            if "tune" in raw:
                problems.append(("seeds", "per-source seeds apply to a suite's own trials; a "
                                          "tuned suite trains its re-runs over tune.seeds; "
                                          "allowed here: a count or a list of seeds, or "
                                          "remove tune"))
        else:
            n_seeds, seed_list = self.seeds(top.seeds, "seeds")
        tune_section = check(TuneSection, top.tune, "tune", problems) \
            if "tune" in raw else None
        report = check(ReportSection, top.report or {}, "report", problems)
        data = check(DataSection, top.data or {}, "data", problems)
        self.problems.extend(problems)
        n_tune_seeds, tune_seed_list = (n_seeds, seed_list)
        if tune_section is not None and tune_section.seeds is not None:
            n_tune_seeds, tune_seed_list = self.seeds(tune_section.seeds, "tune.seeds")
            if raw.get("seeds") is not None \
                    and not any(k == "seeds" for k, _ in self.problems.items) \
                    and (seed_list or tuple(range(n_seeds))) != (
                        tune_seed_list or tuple(range(n_tune_seeds))):
                # different seeds in two places: one of the two would silently not be used
                self.add("seeds", f"a tuned suite trains its re-runs over tune.seeds (given "
                                  f"{tune_section.seeds!r}); these seeds "
                                  f"({raw['seeds']!r}) would not be used; give the "
                                  f"seeds in one place: tune.seeds, or seeds without "
                                  f"tune.seeds")
        # 6. the size, before anything is materialised
        if not self.problems:
            self.size(grid, ablate, n_seeds, tune_section, n_tune_seeds, top.max_trials)
        self.problems.raise_if_any()
        seeds = seed_list or tuple(range(n_seeds))
        base = stamped(TrialSpec(**base_values, seed=seeds[0]))
        suite = Suite(name=name, description=top.description, path=self.path, metric=metric,
                      base=base, grid=grid, ablate=ablate, seeds=seeds, source=text,
                      checkpoint=top.checkpoint, plugins=plugins,
                      report=ReportOptions(**(report.model_dump() if report else {})),
                      data=DataOptions(**(data.model_dump() if data else {})),
                      seed_design=design)
        # 7. parameter axes against every component they apply to
        self.check_dotted(suite)
        self.problems.raise_if_any()
        # 8. configurations: none repeated, components that fit together
        from nnbench.config import dry

        configs = self.configurations(suite)
        self.problems.raise_if_any()
        for problem in self.grouped([(k, m, c.label) for c in configs
                                     for k, m in dry.static_problems(c, metric)], configs):
            self.add(*problem)
        if design is not None:  # a source varied that no configuration draws from
            self.problems.extend(source_problems(design, [c.spec for c in configs], "seeds"))
        self.problems.raise_if_any()
        # 9. tune
        tune: Tune | None = None
        if tune_section is not None:
            tune_seeds = tune_seed_list or tuple(range(n_tune_seeds))
            problems = []
            tune = check_tune(tune_section, suite, tune_seeds, raw, problems)
            self.problems.extend(problems)
            self.problems.raise_if_any()
        # 10. dry build
        checked = list(configs)
        if tune is not None:
            by_id = {c.spec.config_id: c for c in configs}
            known = set(by_id)
            for spec, variant, key in tuned_variants(tune, suite.configurations()):
                if variant.config_id in known:
                    continue
                known.add(variant.config_id)
                origin = by_id[spec.config_id]
                tuned = {a: key for a in AXES if getattr(variant, a) != getattr(spec, a)}
                checked.append(dry.Config(variant, {**origin.origins, **tuned},
                                          f"{origin.label} tuned to "
                                          f"{_tuned_label(variant, spec)}"))
        report_ = dry.dry_build(checked)
        for problem in self.grouped(report_.problems, checked):
            self.add(*problem)
        self.identical(configs, report_, suite.varied_axes)
        if tune is not None:
            self.tuned_identical(tune, configs, report_)
        self.problems.raise_if_any()
        for problem in ignored_axis_problems(suite, raw):  # an axis a model declares unused
            self.add(*problem)
        # a parameter its values disable, in every configuration and tuned variant given it
        for problem in unused_setting_problems([c.spec for c in checked], raw):
            self.add(*problem)
        self.problems.raise_if_any()
        # 11. claims
        problems = []
        claims = check_claims(top.expect, suite, report_.produced,
                              len(tune.seeds) if tune else suite.seeds_per_configuration,
                              problems, "tune.seeds" if tune else "seeds")
        # 12. the published reference numbers
        reference = parse_reference(raw["reference"], suite, problems, report_.produced) \
            if "reference" in raw else None
        # 13. the fit thresholds: on accuracies, an error (1 - accuracy) and a gap are at
        # most 1, so a threshold of 1 or more flags nothing
        if report_.produced and all({"train_accuracy", "val_accuracy"} <= set(m)
                                    for m in report_.produced.values()):
            for key, what in (("overfit_gap", "the gap, validation minus training error "
                                              "(each 1 - accuracy here), is"),
                              ("underfit_error", "the training error, 1 - accuracy here, is")):
                value = getattr(suite.report, key)
                if value >= 1:
                    problems.append((f"report.{key}", (
                        f"{value:g} is never exceeded: {what} at most 1, so no "
                        f"configuration would ever be flagged; give it as a fraction below "
                        f"1 (0.1 for 10 points of accuracy)")))
        self.problems.extend(problems)
        self.problems.raise_if_any()
        return replace(suite, expect=claims, tune=tune, reference=reference)

    # -- 1. the top level -------------------------------------------------------------------

    def top(self, raw: dict[str, Any]) -> SuiteSection:
        problems: list[tuple[str, str]] = []
        section = check(SuiteSection, raw, "", problems)
        if section is None:  # keep what is valid, so every other problem is found too
            bad = {key.split(".")[0].split("[")[0] for key, _ in problems}
            section = SuiteSection.model_validate({k: v for k, v in raw.items()
                                                   if k in TOP_KEYS and k not in bad})
        for key, msg in problems:
            self.add(key, msg)
        return section

    # -- 3. the name ------------------------------------------------------------------------

    def name(self, name: str | None) -> str:
        allowed = "ASCII letters, digits, '_', '.', '-' (it names the MLflow experiment and the " \
                  "report files)"
        if name is None:
            self.add("name", f"missing; give the suite a name of {allowed}")
            return ""
        if not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
            self.add("name", f"expected a name of at most {MAX_NAME_LENGTH} {allowed}, "
                             f"starting with a letter or digit, got {describe(name)}")
            return ""
        for reserved, why in RESERVED_NAMES.items():
            if name.lower() == reserved.lower() and (reserved != "Default" or name == reserved):
                self.add("name", f"{name!r} is reserved: {why}; choose another name")
                return ""
        if _DEVICE_NAMES.match(name):
            self.add("name", f"{name!r} cannot be a file name on Windows (a device name); "
                             f"choose another name")
            return ""
        if name.endswith("."):
            self.add("name", f"{name!r} ends with '.', which Windows drops from file names; "
                             f"choose another name")
            return ""
        return name

    # -- 4. the base trial ----------------------------------------------------------------

    def keys(self, raw: dict[str, Any] | None, section: str,
             allowed: tuple[str, ...]) -> dict[str, Any]:
        if raw is None:
            return {}
        for key in raw:
            if key not in allowed:
                axis = AXES.get(key) if isinstance(key, str) else None
                home = f"{key} belongs under {axis.section}:, not {section}:; " \
                    if axis is not None and axis.section != section else ""
                self.add(f"{section}.{key}", f"unknown key {key!r}; {home}"
                                             f"{did_you_mean(key, allowed)}allowed: "
                                             f"{', '.join(allowed)}")
        return raw

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
                self.add(key, f"missing; every trial needs a value for {axis.name} "
                              f"({axis.doc}): {_allowed(axis.name)}")
        return values

    def metric(self, task: dict[str, Any], base: dict[str, Any]) -> str:
        loss = base.get("loss")
        default = "test_accuracy"
        if isinstance(loss, ComponentSpec):  # the loss's first metric on the test split
            default = f"test_{registry.get('loss', loss.name).attrs['metrics'][0]}"
        metric = task.get("metric", default)
        if not isinstance(metric, str) or metric not in METRICS:
            self.add("task.metric", f"unknown metric {describe(metric)}; "
                                    f"{did_you_mean(metric, METRICS)}allowed: "
                                    f"{', '.join(METRICS)}")
            return "test_accuracy"
        return str(metric)

    def value(self, axis: str, value: Any, key: str) -> Any:
        """Resolve one axis value; None (and a problem) when invalid."""
        spec = AXES[axis]
        if spec.scalar is not None:
            try:
                return TypeAdapter(spec.scalar).validate_python(value, strict=True)
            except ValidationError:
                self.add(key, f"{axis} must be {spec.expects}, got {describe(value)}")
                return None
        kind = spec.kind or ""
        if spec.many:
            if not isinstance(value, list):
                self.add(key, f"{axis} must be a list of {kind}s (possibly empty), "
                              f"got {describe(value)}; {kind}s: {_allowed(axis)}")
                return None
            items = [self.component(kind, v, f"{key}[{i}]") for i, v in enumerate(value)]
            return None if any(i is None for i in items) else tuple(items)
        return self.component(kind, value, key)

    def component(self, kind: str, value: Any, key: str) -> ComponentSpec | None:
        try:
            return registry.resolve(kind, value)
        except ComponentError as err:
            for sub, msg in err.problems:
                self.add(f"{key}.{sub}" if sub else key, msg)
            return None

    # -- 5. grid / ablate, seeds ----------------------------------------------------------

    def axes(self, raw_top: dict[str, Any], raw: Any, section: str
             ) -> dict[str, tuple[Any, ...]]:
        """`grid`/`ablate`: axis (or axis.param) -> non-empty list of distinct values."""
        if section not in raw_top:
            return {}
        allowed = f"an axis ({', '.join(AXES)}) or axis.parameter such as optimizer.lr"
        if not isinstance(raw, dict) or not raw:
            self.add(section, f"expected a non-empty mapping of {allowed} to a list of "
                              f"values, got {describe(raw)}")
            return {}
        out: dict[str, tuple[Any, ...]] = {}
        for axis, values in raw.items():
            key = f"{section}.{axis}"
            head, dot, param = axis.partition(".")
            if head not in AXES:
                self.add(key, f"unknown axis {axis!r}; {did_you_mean(head, AXES)}"
                              f"allowed: {allowed}")
                continue
            if dot and (not param or AXES[head].kind is None or AXES[head].many):
                components = [a.name for a in AXES.values() if a.kind and not a.many]
                self.add(key, f"{head} has no parameters to vary one by one ({axis!r}); "
                              f"vary {head} itself, or a parameter of one of "
                              f"{', '.join(components)}")
                continue
            if not isinstance(values, list) or not values:
                self.add(key, f"expected a non-empty list of values, got {describe(values)}"
                              f"{'' if dot else '; ' + head + ': ' + _allowed(head)}")
                continue
            if param == "name":  # it read as unknown parameters the user never gave
                self.add(key, f"name is not a parameter: to compare {head}s, vary {head} "
                              f"itself ({section}: {{{head}: [{', '.join(map(str, values))}]}})")
                continue
            resolved = []
            for i, v in enumerate(values):
                if dot:
                    if isinstance(v, dict | list):
                        whole = f"{{name: NAME, {param}: {_flow(v)}}}"
                        self.add(f"{key}[{i}]", f"expected one value of parameter {param!r}, "
                                                f"got {describe(v)}; a parameter axis takes "
                                                f"single values: to vary a list or mapping, "
                                                f"vary {head} itself ({section}: {{{head}: "
                                                f"[{whole}, ...]}})")
                    resolved.append(v)  # checked against each component in check_dotted
                else:
                    resolved.append(self.value(head, v, f"{key}[{i}]"))
            seen: dict[str, int] = {}
            for i, (v, r) in enumerate(zip(values, resolved, strict=True)):
                marker = repr(r) if r is not None else None
                if marker is not None and marker in seen:
                    self.add(f"{key}[{i}]", f"duplicate value {describe(v)} (same as "
                                            f"{key}[{seen[marker]}]); list each value once")
                elif marker is not None:
                    seen[marker] = i
            out[axis] = tuple(resolved)
        return out

    def seeds(self, raw: Any, key: str) -> tuple[int, tuple[int, ...] | None]:
        """(how many, the list when given as one): a count is never materialised here."""
        allowed = ("a count >= 1 (seeds 0..n-1) or a non-empty list of distinct integers "
                   "from 0 to 2**63 - 1")
        if key == "seeds":  # the suite's own trials may also seed each source on its own
            allowed += (", or seeds per source of randomness ({init: 3, data_order: 3}, "
                        "crossed; or {count: 4, vary: [init]})")
        if _is_int(raw) and raw >= 1:
            return raw, None
        if isinstance(raw, list) and raw and all(_is_int(s) and 0 <= s <= MAX_SEED
                                                 for s in raw):
            if len(set(raw)) == len(raw):
                return len(raw), tuple(raw)
            dupes = sorted({s for s in raw if raw.count(s) > 1})
            self.add(key, f"seed(s) {dupes} listed twice in {describe(raw)}; {allowed}")
            return 1, (0,)
        self.add(key, f"expected {allowed}, got {describe(raw)}")
        return 1, (0,)

    # -- 6. size ----------------------------------------------------------------------------

    def size(self, grid: Mapping[str, tuple[Any, ...]], ablate: Mapping[str, tuple[Any, ...]],
             n_seeds: int, tune: TuneSection | None, n_tune_seeds: int, cap: int) -> None:
        n_points = count(grid, ablate)
        if tune is not None:
            total = n_points * (tune.trials + n_tune_seeds)
            how = (f"{counted(n_points, 'scientific point')} × "
                   f"({counted(tune.trials, 'Optuna trial')} + {counted(n_tune_seeds, 'seed')})")
        else:
            total = n_points * n_seeds
            how = f"{counted(n_points, 'configuration')} × {counted(n_seeds, 'seed')}"
        if total <= cap:
            return
        parts = []
        if grid:
            parts.append("grid " + " × ".join(f"{a} {len(v)}" for a, v in grid.items()))
        if ablate:
            parts.append(f"ablate 1 + {sum(len(v) for v in ablate.values())}")
        factors = {"seeds": n_seeds, "grid": n_points} if tune is None else \
            {"tune.trials": tune.trials, "grid": n_points}
        key = max(factors, key=lambda k: factors[k])
        if key == "grid" and not grid:
            key = "ablate"
        shrink = {"seeds": "use fewer seeds", "tune.trials": "give fewer Optuna trials",
                  "grid": "shrink the grid (ablate varies one axis at a time: a sum, not a "
                          "product)", "ablate": "shrink the ablations"}[key]
        self.add(key, f"the suite expands to {how} = {total:,} trials"
                      f"{' (' + '; '.join(parts) + ')' if parts else ''}, more than "
                      f"max_trials ({cap:,}); {shrink}, or raise the cap with "
                      f"`max_trials: {total}` at the top of the suite")

    # -- 7. parameter axes --------------------------------------------------------------

    def check_dotted(self, suite: Suite) -> None:
        """Every `axis.param` value must be valid for every component it is applied to."""
        for section, axes in (("grid", suite.grid), ("ablate", suite.ablate)):
            for axis, values in axes.items():
                if "." not in axis:
                    continue
                head, _, param = axis.partition(".")
                # what the axis is applied to: a grid's to the grid's levels of the component
                # where the grid varies it, else (and an ablation's) to the fixed one
                levels = section == "grid" and head in suite.grid
                components = set(suite.grid[head]) if levels else {getattr(suite.base, head)}
                kind = AXES[head].kind
                assert kind is not None  # (a dotted axis is a component's: `values` checked)
                takes = set()  # the components that have the parameter
                for component in sorted(components):  # a component without it is a problem
                    info = registry.get(kind, component.name)
                    if param in info.params.model_fields:
                        takes.add(component)
                        continue
                    having = [c.name for c in registry.list_components(kind)
                              if param in c.params.model_fields]
                    own = ", ".join(info.params.model_fields) or "none: it takes no parameters"
                    if levels:  # one of the grid's levels
                        how = (f"; allowed for it: {own}; give {param} inside the grid.{head} "
                               f"entries that take it instead (grid: {{{head}: [{{name: NAME, "
                               f"{param}: VALUE}}, ...]}})")
                    elif having:
                        how = (f"; {param} is a parameter of {kind} {', '.join(having)}: make "
                               f"one of them the fixed {head} (fixed.{head}: {{name: "
                               f"{having[0]}}}) to vary it")
                    else:
                        how = (f"; no {kind} has it; "
                               f"{did_you_mean(param, info.params.model_fields)}allowed: {own}")
                    self.add(f"{section}.{axis}", f"{kind} {component.name!r} has no parameter "
                                                  f"{param!r}{how}")
                for i, v in enumerate(values):
                    for component in sorted(takes):
                        try:
                            apply_point(replace(suite.base, **{head: component}), {axis: v})
                        except ComponentError as err:
                            for _, msg in err.problems:
                                self.add(f"{section}.{axis}[{i}]", msg)

    # -- 8. configurations ------------------------------------------------------------------

    def configurations(self, suite: Suite) -> list[Any]:
        """The configurations with where each axis was set; repeated ones are problems."""
        from nnbench.config.dry import Config

        base_origins = {a.name: f"{a.section}.{a.name}" for a in AXES.values()}
        seen: dict[str, Point] = {}
        configs: list[Config] = []
        varied = suite.varied_axes
        for point in points(suite.grid, suite.ablate):
            spec = apply_point(suite.base, point.values)
            first = seen.get(spec.config_id)
            if first is not None:
                self.repeated(point, first, spec, spec.config_id == suite.base.config_id)
                continue
            seen[spec.config_id] = point
            origins = dict(base_origins)
            for key in sorted(point.origins, key=lambda k: "." in k):  # parameters last
                origins[key.partition(".")[0]] = point.origins[key]
            configs.append(Config(spec, origins, spec.label(varied)))
        return configs

    def repeated(self, point: Point, first: Point, spec: TrialSpec, base: bool) -> None:
        """`point` gives the configuration `first` gave; `base`: it is the fixed one's."""
        if not point.values:
            return  # the base trial is also a grid point: the grid contains it
        # an ablation back to the base trial (which a grid point may train too)
        if point.ablation and (base or not first.values):
            ((axis, origin),) = point.origins.items()
            self.add(origin, f"{axis} = {_label(axis, spec)} is the fixed value: the base "
                             f"trial already trains it, so this ablation repeats it; remove "
                             f"it (ablate lists the values that differ from fixed)")
            return
        label = ", ".join(f"{a}={_label(a, spec)}" for a in point.values)
        there = ", ".join(first.origins.values()) or "the base trial"
        self.add(next(iter(point.origins.values())),
                 f"gives the same configuration ({label}) as {there}: a parameter axis "
                 f"overwrites what the component values say, so one of them has no effect; "
                 f"keep one")

    def grouped(self, found: list[tuple[str, str, str]], configs: list[Any]
                ) -> list[tuple[str, str]]:
        """(key, msg) once each, naming the configurations when not all have it."""
        where: dict[tuple[str, str], list[str]] = {}
        for key, msg, label in found:
            where.setdefault((key, msg), []).append(label)
        out = []
        for (key, msg), labels in where.items():
            labels = list(dict.fromkeys(labels))
            if len(labels) < len(configs) and labels != ["baseline"]:
                shown = "; ".join(labels[:3])
                more = f" and {len(labels) - 3} more" if len(labels) > 3 else ""
                msg += f" (in configuration {shown}{more})"
            out.append((key, msg))
        return out

    # -- 10. configurations that train identically -----------------------------------------

    def identical(self, configs: list[Any], report: Any, varied: list[str]) -> None:
        groups: dict[str, list[Any]] = {}
        for cfg in configs:
            effect = report.effect.get(cfg.spec.config_id)
            if effect is not None:
                groups.setdefault(effect, []).append(cfg)
        for group in groups.values():
            first = group[0]
            for other in group[1:]:
                differ = [a for a in AXES if getattr(first.spec, a) != getattr(other.spec, a)]
                named = [a for a in varied if _label(a, first.spec) != _label(a, other.spec)]
                why = _why_identical(differ, first, other, report)
                self.add(other.where(differ[0]) if differ else "grid",
                         f"configurations {first.label} and {other.label} would train "
                         f"identically ({why}): {', '.join(named or differ)} has no "
                         f"effect here, and the comparison would be meaningless; remove one "
                         f"or change what makes them equal")

    def tuned_identical(self, tune: Tune, configs: list[Any], report: Any) -> None:
        """A tuned dimension two of whose values train every configuration identically: the
        study would spend trials on one point as if on two (batch sizes of 256 and 512 both
        take a training split of 200 whole). A range is checked at its two ends. (Where
        only some configurations are unmoved, the others still tune: it is no problem.)"""
        for dim in tune.space:
            twins = [t for cfg in configs if (t := self._twins(dim, cfg.spec, report))]
            if not twins or len(twins) < len(configs):
                continue
            first, value, why = twins[0]
            every = "" if len(configs) == 1 else " (and every other configuration)"
            if dim.kind == "categorical":
                what, then = f"its choices {first!r} and {value!r}", (
                    "the study would spend trials on one point as if on two; drop one")
            else:
                what, then = f"both ends of its range ({first} and {value})", (
                    "so, likely, would every value between: the dimension would tune "
                    "nothing; give it a range whose values train differently")
            self.add(f"tune.space.{dim.path}",
                     f"{what} would train {configs[0].label}{every} identically ({why}): "
                     f"{then}")

    @staticmethod
    def _twins(dim: Any, spec: TrialSpec, report: Any) -> tuple[Any, Any, str] | None:
        """(a value of `dim`, a later one training `spec` identically, why), or None."""
        seen: dict[str, tuple[Any, TrialSpec]] = {}
        for value in dim.extremes():
            try:
                variant = apply_values(spec, {dim.path: value})
            except (ComponentError, ValueError):
                continue  # reported by check_tune
            effect = report.effect.get(variant.config_id)
            if effect is None:
                continue
            if effect in seen:
                first, twin = seen[effect]
                return first, value, _why_identical([dim.path.partition(".")[0]],
                                                    _Checked(twin), _Checked(variant), report)
            seen[effect] = (value, variant)
        return None


@dataclass(frozen=True)
class _Checked:
    """A configuration as `_why_identical` reads it."""

    spec: TrialSpec


def _why_identical(differ: list[str], first: Any, other: Any, report: Any) -> str:
    spec = first.spec
    if report.explain.get(spec.config_id) == "no hidden layer" and \
            set(differ) <= {"activation", "init", "norm", "dropout"}:
        return (f"model '{spec.model.name}' has no hidden layer, so there is no activation, "
                f"norm or dropout to apply and the output layer is initialised alike")
    if differ == ["schedule"]:
        return "both schedules give the same learning rate at every step of the run"
    if differ == ["optimizer"] and {first.spec.optimizer.name, other.spec.optimizer.name} \
            == {"adam", "adamw"}:
        return "adamw with weight_decay 0 is adam: it decays nothing"
    if differ == ["optimizer"] and spec.schedule.name == "onecycle":
        return "onecycle sets the learning rate (and momentum) itself from max_lr"
    if differ == ["batch_size"]:
        return "both batch sizes cover the whole training split in one batch"
    if differ == ["early_stopping"]:
        return "early stopping cannot stop the run early within its epochs"
    if differ == ["init"]:
        return "both inits draw the same initial weights"
    return "same model, initial weights, data, updates and learning rates"


def _flow(value: Any) -> str:
    """`value` in YAML's flow style, as a suite would give it: [8, 16], {a: 1}."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix(
        "\n...\n").strip()


def _label(axis: str, spec: TrialSpec) -> str:
    return spec.label([axis]).partition("=")[2]


def _allowed(axis: str) -> str:
    spec = AXES[axis]
    if spec.kind is None:
        return str(spec.expects)
    return ", ".join(i.name for i in registry.list_components(spec.kind))


def _tuned_label(variant: TrialSpec, base: TrialSpec) -> str:
    return ", ".join(f"{a}={_label(a, variant)}" for a in AXES
                     if getattr(variant, a) != getattr(base, a))



def ignored_axis_problems(suite: Suite, raw: Mapping[str, Any]) -> list[tuple[str, str]]:
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
        if axis not in varied and suite.base.value(axis) == default:
            continue
        why = [ignored_axes(c.model).get(axis) for c in configs]
        if all(why):
            sections = [(section, raw.get(section)) for section in ("grid", "ablate")]
            where = next((f"{section}.{a}" for section, axes in sections
                          if isinstance(axes, dict) for a in axes
                          if str(a).partition(".")[0] == axis), f"fixed.{axis}")
            problems.append((where, f"{axis} has no effect on model "
                                    f"'{configs[0].model.name}': {why[0]}; every trial would "
                                    f"be the same as with the default; allowed: the default "
                                    f"({describe(AXES[axis].default)}), or a model that uses "
                                    f"{axis}"))
    return problems


def unused_setting_problems(specs: list[TrialSpec], raw: Mapping[str, Any]
                            ) -> list[tuple[str, str]]:
    """Component parameters given a value (other than their default) that has no effect in
    every configuration and tuned variant (`specs`) that has it: a warm-up start factor
    where nothing warms up. Its trials would train as without it, labelled with it. The
    component's parameters declare what their other values disable
    (`Params._unused_settings()`); a grid or tune space that turns the parameter on in some
    configurations (schedule.warmup: [0, 5]) is a comparison, and kept."""
    from nnbench.config.dry import optimizer_unused

    # what a parameter's effect depends on beyond its own component (an sgd's dampening on
    # the schedule: onecycle cycles the momentum it damps)
    elsewhere = {"optimizer": optimizer_unused}
    problems = []
    for axis in AXES.values():
        if axis.kind is None or axis.many:
            continue
        # (parameter, value) -> (the value, why it is unused in each spec that has it)
        given: dict[tuple[str, str], tuple[Any, list[str | None]]] = {}
        for spec in specs:
            component = getattr(spec, axis.name)
            model = registry.get(axis.kind, component.name).params
            params = model.model_validate(component.kwargs)
            unused = params._unused_settings() if isinstance(params, Params) else {}
            if axis.name in elsewhere:
                unused = {**unused, **elsewhere[axis.name](spec)}
            for name, field in model.model_fields.items():
                value = getattr(params, name)
                if field.is_required() or value == field.default:
                    continue
                entry = given.setdefault((name, repr(value)), (value, []))
                entry[1].append(unused.get(name))
        for (name, _), (value, reasons) in given.items():
            if all(reasons):
                problems.append((_given_at(raw, axis.name, name, value),
                                 f"{name} {_shown(value)} has no effect: {reasons[0]}"))
    return problems


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _given_at(raw: Mapping[str, Any], axis: str, param: str, value: Any) -> str:
    """Where the suite file gives `axis`'s `param` this `value`: a parameter axis's value
    (`grid.schedule.warmup_start_factor[1]`), a component among an axis's values
    (`grid.schedule[0].warmup_start_factor`), the fixed component's
    (`fixed.schedule.warmup_start_factor`), or a tuned range's; else the axis's fixed
    value."""
    def same(given: Any) -> bool:
        try:
            return bool(given == value or list(given) == list(value))
        except TypeError:
            return False

    for section in ("grid", "ablate"):
        axes = raw.get(section)
        for key, values in (axes.items() if isinstance(axes, dict) else ()):
            for i, given in enumerate(values if isinstance(values, list) else ()):
                if key == f"{axis}.{param}" and same(given):
                    return f"{section}.{key}[{i}]"
                if key == axis and isinstance(given, dict) and same(given.get(param)):
                    return f"{section}.{key}[{i}].{param}"
    home = AXES[axis].section
    base = raw.get(home)
    fixed = base.get(axis) if isinstance(base, dict) else None
    if isinstance(fixed, dict) and param in fixed:
        return f"{home}.{axis}.{param}"
    tune = raw.get("tune")
    space = tune.get("space") if isinstance(tune, dict) else None
    if isinstance(space, dict) and f"{axis}.{param}" in space:
        return f"tune.space.{axis}.{param}"
    return f"{home}.{axis}"
