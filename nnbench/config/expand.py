"""Expansion: a validated `Suite` -> its configurations (grid × ablations) -> trials (× seeds).

`points(grid, ablate)` yields what each configuration sets, with where in the file each
value was given (`Point.origins`), so a problem found in one configuration names the
key that caused it. `count(grid, ablate)` is the number of points, computed without
building them: the validator caps a suite's size before anything is materialised.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter

from nnbench import registry
from nnbench.config.sources import SeedDesign
from nnbench.config.spec import AXES, TrialSpec, stamped, value_label
from nnbench.registry import ComponentSpec

if TYPE_CHECKING:
    from nnbench.config.claims import Claim
    from nnbench.config.reference import Reference
    from nnbench.config.tune import Tune

__all__ = ["METRICS", "DataOptions", "Point", "ReportOptions", "Suite", "apply_values", "count",
           "points"]

# Metrics a suite can compare on, and whether larger is better. Which of them a
# trial reports depends on its loss: loss + accuracy, or loss + rmse + mae.
METRICS: dict[str, bool] = {
    f"{split}_{name}": name == "accuracy"
    for split in ("test", "val", "train") for name in ("accuracy", "loss", "rmse", "mae")
}


@dataclass(frozen=True)
class ReportOptions:
    """How the report reads the results (suite key `report:`)."""

    ema: float = 0.0  # β of the notes' EMA smoothing of learning curves; 0 = raw curves
    overfit_gap: float = 0.1  # validation error minus training error above this: overfit
    underfit_error: float = 0.3  # training error above this: underfit


@dataclass(frozen=True)
class DataOptions:
    """What to do about the data's hygiene (suite key `data:`); not part of any trial's id."""

    # examples of test (or val) identical to training ones: "warn" (in the output and the
    # report) or "error" (refuse to train, exit 2); see nnbench.data.hygiene
    on_leakage: Literal["warn", "error"] = "warn"


@dataclass(frozen=True)
class Point:
    """One configuration before it is applied: axis (or axis.param) -> value, and where
    in the file each value was given (`grid.activation[1]`)."""

    values: Mapping[str, Any]
    origins: Mapping[str, str]
    ablation: bool = False  # a one-factor change from the base trial


def count(grid: Mapping[str, tuple[Any, ...]], ablate: Mapping[str, tuple[Any, ...]]) -> int:
    """How many points `points()` yields (before configurations equal to the base merge)."""
    n = math.prod(len(v) for v in grid.values()) if grid else 0
    if ablate:
        n += 1 + sum(len(v) for v in ablate.values())
    return n or 1


def points(grid: Mapping[str, tuple[Any, ...]],
           ablate: Mapping[str, tuple[Any, ...]]) -> Iterator[Point]:
    """The grid's cartesian product, then the base trial and each ablation (lazily)."""
    if grid:
        indexed = [list(enumerate(values)) for values in grid.values()]
        for combo in itertools.product(*indexed):
            yield Point(values={axis: v for axis, (_, v) in zip(grid, combo, strict=True)},
                        origins={axis: f"grid.{axis}[{i}]"
                                 for axis, (i, _) in zip(grid, combo, strict=True)})
    if ablate:
        yield Point(values={}, origins={})
        for axis, values in ablate.items():
            for i, v in enumerate(values):
                yield Point(values={axis: v}, origins={axis: f"ablate.{axis}[{i}]"},
                            ablation=True)
    if not grid and not ablate:
        yield Point(values={}, origins={})


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
    checkpoint: bool = False  # save each trial's weights + optimizer state, and its MLflow model
    report: ReportOptions = field(default_factory=ReportOptions)
    expect: tuple[Claim, ...] = ()
    tune: Tune | None = None
    plugins: tuple[str, ...] = ()  # plugin modules imported before names are resolved
    reference: Reference | None = None  # published numbers the report compares with
    data: DataOptions = field(default_factory=DataOptions)  # leakage policy (suite key data:)
    # per-source seeds (`seeds: {init: 3, data_order: 3}`); None: one seed per trial drives
    # every source (`seeds` above); with a design, `seeds` is (the design's fixed seed,)
    seed_design: SeedDesign | None = None

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
        unique: dict[str, TrialSpec] = {}
        for point in points(self.grid, self.ablate):
            spec = apply_point(self.base, point.values)
            unique.setdefault(spec.config_id, spec)
        return tuple(unique.values())

    @cached_property
    def _varied_axes(self) -> tuple[str, ...]:
        axes = list(dict.fromkeys([*self.grid, *self.ablate]))
        configs = self._configurations
        return tuple(a for a in axes if len({_key(c.value(a)) for c in configs}) > 1)

    def levels(self, axis: str) -> list[str]:
        """The levels (table labels) of `axis` among the suite's configurations, in order."""
        return list(dict.fromkeys(value_label(axis, c.value(axis))
                                  for c in self.configurations()))

    @property
    def nested_axes(self) -> dict[str, str]:
        """Each varied parameter axis (`optimizer.lr`) whose component axis (`optimizer`) is
        varied too, with that component axis. A component's level names its parameters'
        values (`sgd(lr=0.03, momentum=0.9)`), so the parameter's level is a function of
        the component's: as an axis of its own it would only split the cells (a seed and
        the other axes' levels) that the component's levels are paired in."""
        varied = self.varied_axes
        return {axis: head for axis in varied
                if (head := axis.partition(".")[0]) != axis and head in varied}

    @property
    def compared_axes(self) -> list[str]:
        """The varied axes the report compares level by level and pairs cells over: every
        one but the nested parameter axes (`nested_axes`), which are compared as part of
        their component's levels."""
        nested = self.nested_axes
        return [axis for axis in self.varied_axes if axis not in nested]

    def paired_on(self, *sides: Mapping[str, Any]) -> list[str]:
        """The keys a comparison of `sides` (a claim's a and b: axis -> level) matches its
        trials on (`key_label` reads them): the compared axes the sides do not name; where a
        side names a parameter of a varied component (`optimizer.lr`), the component's
        level without that parameter (`optimizer without lr`: sgd at lr 0.03 pairs with
        sgd at lr 0.01, not with adam at lr 0.01)."""
        named = {axis for side in sides for axis in side}
        dropped: dict[str, list[str]] = {}
        for axis, head in self.nested_axes.items():
            if axis in named:
                dropped.setdefault(head, []).append(axis.partition(".")[2])
        return [f"{axis} without {', '.join(dropped[axis])}" if axis in dropped else axis
                for axis in self.compared_axes if axis not in named]

    @staticmethod
    def key_label(key: str, spec: TrialSpec) -> str:
        """The spec's level of a `paired_on` key: an axis's label, or a component's label
        without the parameters the key names (`optimizer without lr`: `sgd(momentum=0.9)`)."""
        axis, _, without = key.partition(" without ")
        value = spec.value(axis)
        if without and isinstance(value, ComponentSpec):
            drop = set(without.split(", "))
            value = ComponentSpec(value.name, tuple(p for p in value.params if p[0] not in drop))
        return value_label(axis, value)

    @property
    def seeds_per_configuration(self) -> int:
        """Trials per configuration: the seeds, or the design's seed combinations."""
        return len(self.seed_design) if self.seed_design else len(self.seeds)

    @property
    def design(self) -> SeedDesign:
        """Which seed each source gets in each trial of a configuration."""
        return self.seed_design or SeedDesign.common(self.seeds)

    def trials(self) -> list[TrialSpec]:
        """Every trial: each configuration × each seed (configuration-major order)."""
        if self.seed_design is not None:
            combos = self.seed_design.combinations()
            return [c.with_seeds(seeds) for c in self.configurations() for seeds in combos]
        return [replace(c, seed=s) for c in self.configurations() for s in self.seeds]


def _key(value: Any) -> Any:
    return value if not isinstance(value, list) else tuple(value)


def apply_point(base: TrialSpec, point: Mapping[str, Any]) -> TrialSpec:
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
    return stamped(spec)  # with the digests of the plugins and files it uses


def apply_values(spec: TrialSpec, values: Mapping[str, Any]) -> TrialSpec:
    """A spec with nuisance values applied (`optimizer.lr`, `epochs`, ...), validated."""
    for path in values:
        axis = AXES[path.partition(".")[0]]
        if "." not in path and axis.scalar is not None:
            TypeAdapter(axis.scalar).validate_python(values[path], strict=True)
    return apply_point(spec, values)
