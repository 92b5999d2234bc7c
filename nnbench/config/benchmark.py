"""Benchmark files: one scientific axis run over several tasks, each with a validation target.

    name: optimizers
    description: which optimizer reaches each task's target first?
    tasks:                                  # one suite per task (dataset, model, loss)
      - suite: ../suites/optimizers_mnist1d.yaml       # relative to this file
        target: {metric: val_accuracy, value: 0.6}      # reached when val_accuracy >= 0.6
      - suite: ../suites/optimizers_diabetes.yaml
        target: {metric: val_rmse, value: 0.8}          # rmse: reached when <= 0.8
    profile: {tau_max: 10}                  # performance profiles over tau in [1, 10]

`load_benchmark(path)` reads and checks the file and every suite it names before anything
runs, like `load_suite`: every problem at once, naming the file, the key path, what was
given and what is allowed (`BenchmarkError`, a `SuiteError` that also carries the listed
suites' own problems). Checks: known keys and types; a valid name that no listed suite
uses (it names the report); at least two tasks; each suite exists and validates, is not
tuned, appears once (by file and by name), and is one task (it varies none of dataset,
model, loss, and no two suites share all three); every suite varies the same axes with
the same levels and the same seeds; each target is a validation metric the suite's loss
produces, with a value in the metric's range; 1 <= tau_min < tau_max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from nnbench.config.errors import SuiteError
from nnbench.config.expand import METRICS, Suite
from nnbench.config.loading import decode, load_suite, parse_yaml, read_bytes, read_input
from nnbench.config.sections import _Section, check
from nnbench.config.spec import value_label
from nnbench.config.validate import NAME_PATTERN, RESERVED_NAMES
from nnbench.messages import describe, did_you_mean

__all__ = ["TASK_AXES", "Benchmark", "BenchmarkError", "BenchmarkTask", "Target",
           "is_benchmark_file", "load_benchmark"]

TASK_AXES = ("dataset", "model", "loss")  # what makes a task; a benchmark's suite fixes them
BENCHMARK_KEYS = ("name", "description", "tasks", "profile")
TASK_KEYS = ("suite", "target")


@dataclass(frozen=True)
class Target:
    """A validation metric's target: reached at the first epoch whose value is at least
    (accuracy) or at most (loss, rmse, mae) `value`."""

    metric: str  # val_accuracy, val_loss, val_rmse or val_mae
    value: float  # in the metric's unit (accuracy as a fraction)

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric]

    def label(self) -> str:
        return f"{self.metric} {'≥' if self.higher_is_better else '≤'} {self.value:g}"


@dataclass(frozen=True)
class BenchmarkTask:
    suite: Suite
    target: Target

    @property
    def name(self) -> str:
        return self.suite.name

    def describe(self) -> str:
        """`mnist1d(num_samples=2000) · mlp(hidden=[64]) · cross_entropy`."""
        base = self.suite.base
        return " · ".join(value_label(axis, base.value(axis)) for axis in TASK_AXES)


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    path: str
    tasks: tuple[BenchmarkTask, ...]
    axes: tuple[str, ...]  # the scientific axes every suite varies
    levels: tuple[str, ...]  # configuration labels over `axes`, in the first suite's order
    seeds: tuple[int, ...]  # shared by every suite
    tau_min: float = 1.0
    tau_max: float = 10.0

    @property
    def suites(self) -> list[Suite]:
        return [t.suite for t in self.tasks]


class BenchmarkError(SuiteError):
    """Problems of a benchmark file, followed by those of the suite files it lists."""

    def __init__(self, path: str, problems: list[tuple[str, str]],
                 details: list[str] | None = None) -> None:
        self.details = list(details or [])
        super().__init__(path, problems)

    def lines(self) -> list[str]:
        return [*super().lines(), *self.details]


class _TargetSection(_Section):
    metric: str
    value: float


class _TaskSection(_Section):
    suite: str = Field(..., min_length=1)
    target: dict[str, Any]


class _ProfileSection(_Section):
    tau_min: float = Field(default=1.0, ge=1.0, description="smallest ratio to the best shown")
    tau_max: float = Field(default=10.0, gt=1.0, description="largest ratio to the best shown")


class _BenchmarkSection(_Section):
    name: str | None = None
    description: str = ""
    tasks: list[Any] | None = None
    profile: _ProfileSection = Field(default_factory=_ProfileSection)


def is_benchmark_file(path: str | Path) -> bool:
    """Does the file read as a benchmark file (a mapping with `tasks:` and no suite's
    `task:`)? False for anything unreadable: loading it then says what is wrong."""
    try:
        if not Path(path).is_file():  # nothing to tell; and a pipe is read once only, by
            return False  # the loader (`nnbench validate <(cat suite.yaml)`)
        raw = parse_yaml(decode(read_bytes(Path(path)), str(path)), str(path))
    except (OSError, SuiteError):
        return False
    return isinstance(raw, dict) and "tasks" in raw and "task" not in raw


def load_benchmark(path: str | Path) -> Benchmark:
    """Read and check a benchmark file and its suites; raises BenchmarkError listing every
    problem (nothing is created)."""
    path = Path(path)
    data = read_input(path, "benchmark file", BenchmarkError)
    raw = parse_yaml(decode(data, str(path)), str(path))
    if isinstance(raw, dict) and isinstance(raw.get("task"), dict) and "tasks" not in raw:
        # a suite's task (dataset, model), not a benchmark's misspelt list: the wrong command
        raise BenchmarkError(str(path), [("", "a suite file (it has `task:`), not a benchmark "
                                              f"file; run it with `nnbench run {path}`")], [])
    return _check(raw, path)


def _check(raw: Any, path: Path) -> Benchmark:
    where = str(path)
    problems: list[tuple[str, str]] = []
    details: list[str] = []

    def fail() -> BenchmarkError:
        return BenchmarkError(where, problems, details)

    if not isinstance(raw, dict):
        problems.append(("", f"a benchmark file must be a mapping with keys "
                             f"{', '.join(BENCHMARK_KEYS)}, got {describe(raw)}"))
        raise fail()
    # the profile apart: a bad tau_min hid every problem of the tasks until it was fixed
    top = check(_BenchmarkSection, {k: v for k, v in raw.items() if k != "profile"}, "",
                problems)
    profile = check(_ProfileSection, raw.get("profile") or {}, "profile", problems)
    if top is None:
        raise fail()
    name = _name(top.name, problems)
    items = top.tasks
    if not items or len(items) < 2:
        problems.append(("tasks", f"expected a list of at least two tasks ({{suite: FILE, "
                                  f"target: {{metric: val_..., value: NUMBER}}}}): profiles "
                                  f"compare configurations across tasks, got "
                                  f"{describe(items)}"))
        raise fail()
    if profile is not None and profile.tau_max <= profile.tau_min:
        problems.append(("profile.tau_max", f"expected a number above profile.tau_min "
                                            f"({profile.tau_min:g}), got "
                                            f"{profile.tau_max:g}"))
    tasks: list[BenchmarkTask] = []
    keys: list[str] = []  # each task's key path, parallel to `tasks`
    seen_files: dict[Path, int] = {}
    for i, item in enumerate(items):
        key = f"tasks[{i}]"
        section = check(_TaskSection, item, key, problems)
        if section is None:
            continue
        file = (path.parent / section.suite).resolve()
        if file in seen_files:
            problems.append((f"{key}.suite", f"{section.suite!r} is already tasks"
                                             f"[{seen_files[file]}]; list each suite once"))
            continue
        seen_files[file] = i
        if file.is_dir():
            problems.append((f"{key}.suite", f"{section.suite!r} is a directory ({file}); name "
                                             f"a suite file in it, e.g. {section.suite}/x.yaml"))
            continue
        if not file.is_file():
            problems.append((f"{key}.suite", f"no such suite file {section.suite!r} (looked "
                                             f"for {file}; paths are relative to the "
                                             f"benchmark file)"))
            continue
        try:
            suite = load_suite(_shown(file))
        except SuiteError as e:
            if is_benchmark_file(file):  # not a suite's unknown keys: a benchmark in a task
                problems.append((f"{key}.suite", f"{section.suite!r} is a benchmark file (it "
                                                 f"lists `tasks:`), not a suite; a task names "
                                                 f"a suite file"))
                continue
            problems.append((f"{key}.suite", f"{section.suite!r} is not a valid suite (its "
                                             f"problems follow)"))
            details += e.lines()
            continue
        target = _target(section.target, f"{key}.target", suite, problems)
        if suite.tune is not None:
            problems.append((f"{key}.suite", f"suite {suite.name!r} tunes its nuisance axes "
                                             f"(tune:); a benchmark runs suites as given: "
                                             f"fix the tuned values in a plain suite"))
            continue
        varied_task = [a for a in suite.varied_axes if a.partition(".")[0] in TASK_AXES]
        if varied_task:
            problems.append((f"{key}.suite", f"suite {suite.name!r} varies "
                                             f"{', '.join(varied_task)}; a task is one "
                                             f"dataset, model and loss: list each as its own "
                                             f"suite"))
            continue
        same = [k for k, t in zip(keys, tasks, strict=True)
                if t.name.lower() == suite.name.lower()]
        if same:
            problems.append((f"{key}.suite", f"suite {suite.name!r} has the name of the suite "
                                             f"of {same[0]} (names are compared ignoring "
                                             f"case); they would share an MLflow experiment "
                                             f"and a report: rename one"))
            continue
        if target is not None:
            tasks.append(BenchmarkTask(suite, target))
            keys.append(key)
    if problems:
        raise fail()
    _same_design(tasks, keys, problems)
    for task in tasks:
        if name.lower() == task.name.lower():
            problems.append(("name", f"{name!r} is also the name of suite {task.suite.path}; "
                                     f"the benchmark's report would overwrite the suite's: "
                                     f"choose another name"))
    if problems or profile is None:
        raise fail()
    first = tasks[0].suite
    return Benchmark(name=name, description=top.description, path=where, tasks=tuple(tasks),
                     axes=tuple(first.varied_axes),
                     levels=tuple(c.label(first.varied_axes) for c in first.configurations()),
                     seeds=first.seeds, tau_min=profile.tau_min,
                     tau_max=profile.tau_max)


def _shown(file: Path) -> Path:
    """The path as messages and reports show it: relative to the working directory when
    the file is under it, else absolute."""
    try:
        return file.relative_to(Path.cwd())
    except ValueError:
        return file


def _name(name: str | None, problems: list[tuple[str, str]]) -> str:
    allowed = "ASCII letters, digits, '_', '.', '-' (it names the report file)"
    if name is None:
        problems.append(("name", f"missing; give the benchmark a name of {allowed}"))
        return ""
    if not NAME_PATTERN.fullmatch(name) or len(name) > 100 or name.endswith("."):
        problems.append(("name", f"expected a name of at most 100 {allowed}, starting with a "
                                 f"letter or digit, got {describe(name)}"))
        return ""
    if name.lower() == "index":
        problems.append(("name", f"{name!r} is reserved: {RESERVED_NAMES['index']}"))
        return ""
    return name


def _target(raw: dict[str, Any], key: str, suite: Suite,
            problems: list[tuple[str, str]]) -> Target | None:
    section = check(_TargetSection, raw, key, problems)
    if section is None:
        return None
    from nnbench.train.build import metric_names

    produced = [f"val_{m}" for m in ("loss", *metric_names(suite.base))]
    metric, value = section.metric, section.value
    if metric not in produced:
        split, _, base = metric.partition("_")
        if split in ("train", "test") and f"val_{base}" in produced:
            why = (f"{metric!r} is not a validation metric: time-to-target is measured on "
                   f"the validation split each epoch (test is for the final verdict, not "
                   f"for deciding when training got there); use 'val_{base}'")
        else:
            why = (f"suite {suite.name!r} (loss {suite.base.loss.name}) does not produce "
                   f"{describe(metric)}; {did_you_mean(metric, produced)}its validation "
                   f"metrics: {', '.join(produced)}")
        problems.append((f"{key}.metric", why))
        return None
    if not math.isfinite(value):
        problems.append((f"{key}.value", f"expected a finite number, got {describe(value)}"))
        return None
    if metric == "val_accuracy" and not 0 < value <= 1:
        problems.append((f"{key}.value", f"expected an accuracy in (0, 1] (a fraction, not a "
                                         f"percentage), got {value:g}"))
        return None
    if metric != "val_accuracy" and value <= 0:
        problems.append((f"{key}.value", f"expected a {metric} above 0 (it cannot go below "
                                         f"0, so a target of {value:g} is never reached), got "
                                         f"{value:g}"))
        return None
    return Target(metric=metric, value=float(value))


def _same_design(tasks: list[BenchmarkTask], keys: list[str],
                 problems: list[tuple[str, str]]) -> None:
    """Every suite varies the first one's axes, with its levels and seeds, on its own task."""
    first = tasks[0].suite
    axes = first.varied_axes
    levels = [c.label(axes) for c in first.configurations()]
    if not axes:
        problems.append((f"{keys[0]}.suite", f"suite {first.name!r} varies no axis: there is "
                                             f"nothing to compare across tasks"))
        return
    tasks_seen: dict[tuple[str, ...], str] = {}
    for task, key in zip(tasks, keys, strict=True):
        suite = task.suite
        marker = tuple(value_label(a, suite.base.value(a)) for a in TASK_AXES)
        if marker in tasks_seen:
            problems.append((f"{key}.suite", f"suite {suite.name!r} trains the same task as "
                                             f"{tasks_seen[marker]} ({task.describe()}); a "
                                             f"profile would count that task twice"))
        tasks_seen.setdefault(marker, f"suite {suite.name!r}")
        if suite.seed_design is not None:  # the profiles pair runs by their one seed
            problems.append((f"{key}.suite", f"suite {suite.name!r} gives sources of "
                                             f"randomness their own seeds; a benchmark's "
                                             f"suites give one seed per trial: allowed: "
                                             f"seeds as a count or a list"))
            continue
        if suite is first:
            continue
        if suite.varied_axes != axes:
            problems.append((f"{key}.suite", f"suite {suite.name!r} varies "
                                             f"{', '.join(suite.varied_axes) or 'nothing'}; "
                                             f"every suite of the benchmark must vary what "
                                             f"{first.name!r} ({keys[0]}) varies: "
                                             f"{', '.join(axes)}"))
            continue
        mine = [c.label(axes) for c in suite.configurations()]
        missing = [lv for lv in levels if lv not in mine]
        extra = [lv for lv in mine if lv not in levels]
        if missing or extra:
            diff = "; ".join(part for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"not in {first.name!r}: {', '.join(extra)}" if extra else "") if part)
            problems.append((f"{key}.suite", f"suite {suite.name!r} does not vary "
                                             f"{', '.join(axes)} over the same levels as "
                                             f"{first.name!r} ({keys[0]}): {diff}"))
        if set(suite.seeds) != set(first.seeds):  # (paired by value: [1, 0] is [0, 1])
            problems.append((f"{key}.suite", f"suite {suite.name!r} has seeds "
                                             f"{sorted(suite.seeds)}; every suite must have "
                                             f"the seeds of suite {first.name!r}, "
                                             f"{sorted(first.seeds)} (the profile is "
                                             f"computed seed by seed)"))
