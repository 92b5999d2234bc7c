"""TrialSpec: one trial as plain, frozen data; and the table of axes a suite can set.

A TrialSpec holds values only (every component resolved, defaults filled in);
`trial_id` is a hash of its canonical JSON, so the same spec gets the same id in
every process and on every machine. `config_id` is the same hash without the
seed: trials that differ only by seed share it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import yaml

from nnbench import registry
from nnbench.registry import ComponentSpec


@dataclass(frozen=True)
class Axis:
    """Something a suite can set in `task`/`fixed` and vary in `grid`/`ablate`."""

    name: str
    kind: str | None  # registry kind for component axes; None for integer axes
    section: str  # where its base value lives: "task" or "fixed"
    default: Any = None  # used when the suite leaves it out; None = required
    doc: str = ""


AXES: dict[str, Axis] = {a.name: a for a in [
    Axis("dataset", "dataset", "task", doc="what to train on"),
    Axis("model", "model", "task", doc="network architecture"),
    Axis("loss", "loss", "task", default="cross_entropy", doc="training objective"),
    Axis("activation", "activation", "fixed", default="relu", doc="hidden-layer nonlinearity"),
    Axis("init", "init", "fixed", default="default", doc="weight initialisation"),
    Axis("optimizer", "optimizer", "fixed", doc="update rule and its hyperparameters"),
    Axis("schedule", "schedule", "fixed", default="constant", doc="learning-rate schedule"),
    Axis("epochs", None, "fixed", doc="passes over the training split"),
    Axis("batch_size", None, "fixed", doc="examples per optimizer step"),
]}


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
    batch_size: int  # examples per optimizer step
    seed: int  # drives every RNG of the trial

    def canonical(self, *, with_seed: bool = True) -> dict[str, Any]:
        """Plain nested dict, the same on every machine; the basis of the ids."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "seed" and not with_seed:
                continue
            out[f.name] = value.to_dict() if isinstance(value, ComponentSpec) else value
        return out

    @cached_property
    def trial_id(self) -> str:
        return _digest(self.canonical())

    @cached_property
    def config_id(self) -> str:
        return _digest(self.canonical(with_seed=False))

    def flat_params(self) -> dict[str, str]:
        """Dotted keys (`optimizer.lr`) -> value as text: the MLflow params of the trial."""
        flat: dict[str, str] = {}
        for key, value in self.canonical().items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    flat[f"{key}.{sub}"] = _text(v)
            else:
                flat[key] = _text(value)
        return flat

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.canonical(), sort_keys=False)

    def value(self, axis: str) -> Any:
        """An axis's value; dotted axes (`optimizer.lr`) read the component parameter."""
        head, _, param = axis.partition(".")
        value = getattr(self, head)
        if param:
            return value.kwargs[param]
        return value

    def label(self, axes: list[str]) -> str:
        """`activation=relu, init=xavier_normal`: the values of the given axes."""
        parts = []
        for axis in axes:
            v = self.value(axis)
            if isinstance(v, ComponentSpec):
                parts.append(f"{axis}={registry.label(AXES[axis].kind or '', v)}")
            else:
                parts.append(f"{axis}={_text(v)}")
        return ", ".join(parts) if parts else "baseline"


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return str(value)


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
