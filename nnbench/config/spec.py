"""TrialSpec: one trial as plain, frozen data; and the table of axes a suite can set.

A TrialSpec holds values only (every component resolved, defaults filled in);
`trial_id` is a hash of its canonical JSON, so the same spec gets the same id in
every process and on every machine. `config_id` is the same hash without the
seeds: trials that differ only by seed share it.

`source_seeds` give sources of randomness (`config.sources`) their own seed; they
enter `canonical()` only when present, so a default trial (one seed for every source)
keeps its id.

`digests` hold what a spec names but does not contain: the source hash of each plugin
whose components it uses and the content hash of files components read (the `file`
dataset). `stamped(spec)` fills them in; they enter `canonical()` only when present,
so specs of built-in components keep their ids, and a changed plugin or data file
makes a new trial_id (see nnbench.plugins).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field

from nnbench import registry
from nnbench.config.sources import SOURCES
from nnbench.registry import FLOAT32_MAX, FLOAT32_TINY, ComponentSpec


@dataclass(frozen=True)
class Axis:
    """Something a suite can set in `task`/`fixed` and vary in `grid`/`ablate`.

    Component axes name a registry `kind`; `many` axes hold a list of components
    (applied in order); scalar axes have a pydantic `scalar` type with its bounds.
    """

    name: str
    section: str  # where its base value lives: "task" or "fixed"
    kind: str | None = None  # registry kind of component axes
    many: bool = False  # a list of components
    scalar: Any = None  # pydantic type of scalar axes
    expects: str = ""  # how errors describe a valid scalar
    default: Any = None  # used when the suite leaves it out; None = required
    doc: str = ""


def _float32_normal(value: float) -> float:
    if registry.below_float32_normal(value):
        raise ValueError("below float32's smallest normal number")
    return value


Probability = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False),
                        AfterValidator(_float32_normal)]
# a penalty's λ: in float32's normal range, in which training computes (1e300 was inf there,
# 1e-50 was 0)
NonNegative = Annotated[float, Field(ge=0, le=FLOAT32_MAX, allow_inf_nan=False),
                        AfterValidator(_float32_normal)]
PositiveInt = Annotated[int, Field(ge=1)]
_PENALTY = (f"0 or a number from {FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g} (float32's normal "
            f"range)")
MAX_EPOCHS = 100_000  # a typo's bound (`epochs: 100000000000`): the stacked engine holds each
# lane's schedule for every optimizer step, and 10^6 epochs of 20 steps took 3.6 GB in a minute

AXES: dict[str, Axis] = {a.name: a for a in [
    Axis("dataset", "task", kind="dataset", doc="what to train on"),
    Axis("model", "task", kind="model", doc="network architecture"),
    Axis("loss", "task", kind="loss", default="cross_entropy", doc="training objective"),
    Axis("activation", "fixed", kind="activation", default="relu",
         doc="hidden-layer nonlinearity"),
    Axis("init", "fixed", kind="init", default="default", doc="weight initialisation"),
    Axis("optimizer", "fixed", kind="optimizer", doc="update rule and its hyperparameters"),
    Axis("schedule", "fixed", kind="schedule", default="constant", doc="learning-rate schedule"),
    Axis("norm", "fixed", kind="norm", default="none",
         doc="normalization layer before each activation (batchnorm)"),
    Axis("dropout", "fixed", scalar=Probability,
         expects=f"a probability in [0, 1) (0, or from {FLOAT32_TINY:.3g}: float32's "
                 f"smallest normal number)", default=0.0,
         doc="dropout probability after each hidden activation (whole channels in conv blocks)"),
    Axis("l1", "fixed", scalar=NonNegative, expects=_PENALTY, default=0.0,
         doc="λ of the L1 penalty λ·Σ|w| over weights (not biases), added to the loss"),
    Axis("l2", "fixed", scalar=NonNegative, expects=_PENALTY, default=0.0,
         doc="λ of the explicit L2 penalty ½λ·Σw² over weights (coupled decay: optimizer "
             "weight_decay; decoupled: adamw)"),
    Axis("grad_clip", "fixed", kind="clip", default="none", doc="gradient clipping"),
    Axis("early_stopping", "fixed", kind="early_stopping", default="none",
         doc="stop when validation stops improving"),
    Axis("augmentation", "fixed", kind="augmentation", many=True, default=[],
         doc="transforms applied in order to each training batch"),
    Axis("epochs", "fixed", scalar=Annotated[int, Field(ge=1, le=MAX_EPOCHS)],
         expects=f"a positive integer, at most {MAX_EPOCHS:,}",
         doc="passes over the training split"),
    Axis("batch_size", "fixed", scalar=PositiveInt | Literal["full"],
         expects="a positive integer or 'full'",
         doc="examples per optimizer step: an integer, or full (batch gradient descent)"),
]}


NONE = ComponentSpec("none")
# the level of a parameter axis at a component without that parameter (adam's momentum)
NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class TrialSpec:
    """Everything that determines one trial's result."""

    dataset: ComponentSpec
    model: ComponentSpec
    loss: ComponentSpec
    activation: ComponentSpec
    init: ComponentSpec
    optimizer: ComponentSpec
    schedule: ComponentSpec
    epochs: int  # passes over the training split
    batch_size: int | Literal["full"]  # examples per optimizer step; full = the whole split
    seed: int  # drives every source of randomness without its own seed in source_seeds
    norm: ComponentSpec = NONE
    dropout: float = 0.0  # probability
    l1: float = 0.0  # λ of λ·Σ|w|
    l2: float = 0.0  # λ of ½λ·Σw²
    grad_clip: ComponentSpec = NONE
    early_stopping: ComponentSpec = NONE
    augmentation: tuple[ComponentSpec, ...] = ()
    # (key, digest): `plugin:<module>` -> its source hash, `<kind>:<name>` -> what it reads
    digests: tuple[tuple[str, str], ...] = ()
    # (source, seed) of the sources of randomness (config.sources.SOURCES) whose seed is
    # not `seed`; normalised (sorted, none equal to `seed`): () for a default trial
    source_seeds: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.source_seeds:
            return
        seeds = dict(self.source_seeds)
        unknown = set(seeds) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown source(s) of randomness {sorted(unknown)}; allowed: "
                             f"{', '.join(SOURCES)}")
        seed = self.seed
        if set(seeds) == set(SOURCES):  # `seed` drives none: the most common one stands for it
            counts = Counter(seeds.values())
            seed = min(counts, key=lambda s: (-counts[s], s))
            object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "source_seeds", tuple(
            (source, seeds[source]) for source in SOURCES
            if source in seeds and seeds[source] != seed))

    def seed_of(self, source: str) -> int:
        """The seed of one source of randomness (`split`, `init`, `data_order`,
        `augmentation`, `dropout`)."""
        if source not in SOURCES:
            raise KeyError(f"unknown source of randomness {source!r}; allowed: "
                           f"{', '.join(SOURCES)}")
        return dict(self.source_seeds).get(source, self.seed)

    def with_seeds(self, seeds: Mapping[str, int]) -> TrialSpec:
        """The spec with the given seed of every source (source -> seed, all of them)."""
        return replace(self, seed=seeds[next(iter(SOURCES))],
                       source_seeds=tuple((s, seeds[s]) for s in SOURCES))

    @property
    def seed_label(self) -> str:
        """`3`, or `init=1, data_order=2, rest=0` when sources have their own seeds."""
        if not self.source_seeds:
            return str(self.seed)
        own = ", ".join(f"{source}={seed}" for source, seed in self.source_seeds)
        return f"{own}, rest={self.seed}"

    def canonical(self, *, with_seed: bool = True) -> dict[str, Any]:
        """Plain nested dict, the same on every machine; the basis of the ids."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("seed", "source_seeds") and not with_seed:
                continue
            if f.name == "source_seeds":
                if value:  # absent for default trials: their ids never change
                    out[f.name] = dict(value)
                continue
            if f.name == "digests":
                if value:  # absent for built-in components: their ids never change
                    out[f.name] = dict(value)
                continue
            out[f.name] = _plain(value)
        return out

    @classmethod
    def from_canonical(cls, canonical: dict[str, Any]) -> TrialSpec:
        """Rebuild a spec from `canonical()` (e.g. a checkpoint's or spec.yaml's); the
        plugins its digests name are imported first (from the working directory or
        sys.path). The digests are kept as recorded: compare with `stamped(spec)`."""
        from nnbench.plugins import load_plugin

        for key in canonical.get("digests", {}):
            if key.startswith("plugin:"):
                load_plugin(key.removeprefix("plugin:"), [Path.cwd()])
        values: dict[str, Any] = {"seed": canonical["seed"]}
        for name, axis in AXES.items():
            raw = canonical[name]
            if axis.kind is None:
                values[name] = raw
            elif axis.many:
                values[name] = tuple(registry.resolve(axis.kind, v) for v in raw)
            else:
                values[name] = registry.resolve(axis.kind, raw)
        values["digests"] = tuple(sorted(canonical.get("digests", {}).items()))
        values["source_seeds"] = tuple(canonical.get("source_seeds", {}).items())
        return cls(**values)

    def components(self) -> list[tuple[str, ComponentSpec]]:
        """Every (registry kind, component) of the spec, the many-valued axes flattened."""
        out: list[tuple[str, ComponentSpec]] = []
        for name, axis in AXES.items():
            if axis.kind is None:
                continue
            value = getattr(self, name)
            out += [(axis.kind, v) for v in (value if axis.many else (value,))]
        return out

    @cached_property
    def trial_id(self) -> str:
        return _digest(self.canonical())

    @cached_property
    def config_id(self) -> str:
        return _digest(self.canonical(with_seed=False))

    def flat_params(self) -> dict[str, str]:
        """Dotted keys (`optimizer.lr`) -> value as text: the MLflow params of the trial;
        `seed.<source>` is the seed of each source of randomness."""
        flat: dict[str, str] = {}
        for key, value in self.canonical().items():
            if key == "source_seeds":
                continue
            if key == "seed":
                flat["seed"] = _text(value)
                flat.update({f"seed.{source}": str(self.seed_of(source)) for source in SOURCES})
            elif isinstance(value, dict):
                for sub, v in value.items():
                    flat[f"{key}.{sub}"] = _text(v)
            else:
                flat[key] = _text(value)
        return flat

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.canonical(), sort_keys=False)

    def value(self, axis: str) -> Any:
        """An axis's value; dotted axes (`optimizer.lr`) read the component parameter, and
        are NOT_APPLICABLE where the component has no such parameter (a grid over
        `optimizer.momentum` beside an ablated adam, which has none)."""
        head, _, param = axis.partition(".")
        value = getattr(self, head)
        if param:
            return value.kwargs.get(param, NOT_APPLICABLE)
        return value

    def label(self, axes: list[str]) -> str:
        """`activation=relu, init=xavier_normal`: the values of the given axes."""
        parts = [f"{axis}={value_label(axis, self.value(axis))}" for axis in axes]
        return ", ".join(parts) if parts else "baseline"


def stamped(spec: TrialSpec) -> TrialSpec:
    """The spec with the digests of the plugins and files its components use."""
    from nnbench.plugins import component_digests

    return replace(spec, digests=component_digests(spec.components()))


def value_label(axis: str, value: Any) -> str:
    """How an axis value reads in tables: `sgd(lr=0.1)`, `none`, `flip+crop(size=8)`, `0.3`."""
    kind = AXES[axis].kind if axis in AXES else None
    if isinstance(value, ComponentSpec) and kind:
        return registry.label(kind, value)
    if isinstance(value, tuple) and kind:
        return "+".join(registry.label(kind, v) for v in value) or "none"
    return _text(value)


def _plain(value: Any) -> Any:
    if isinstance(value, ComponentSpec):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return json.dumps(_plain(value) if isinstance(value, tuple) else value)
    return str(value)


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: a parameter that allows them (clip's norm_type) hashes as text."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def spec_digest(canonical: dict[str, Any]) -> str:
    """The trial id of a spec's `canonical()` dict as stored (a checkpoint's, spec.yaml's):
    the id it had when written, whatever this nnbench would rebuild from it."""
    return _digest(canonical)


def _digest(obj: Any) -> str:
    text = json.dumps(_finite(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
