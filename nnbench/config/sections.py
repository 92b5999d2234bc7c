"""The fixed-shape parts of a suite file, as pydantic models, and every top-level key.

`TOP_KEYS` is the one place the top-level keys of a suite file are declared (with what
each is for); `SuiteSection` checks their types. Sections whose keys are known in
advance (`report`, `data`, `tune` and its parts, each `expect` claim) are models here too;
`task`/`fixed` (keys: the axes) and `grid`/`ablate` (keys: axes and axis.parameters)
are checked against `nnbench.config.spec.AXES` by the validator. Every pydantic error
becomes (key path, message) through `nnbench.messages.pydantic_problems`.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nnbench.config.spec import AXES
from nnbench.messages import pydantic_problems

__all__ = ["CLAIM_KEYS", "DEFAULT_MAX_TRIALS", "FIXED_KEYS", "PRUNERS", "SAMPLERS", "TASK_KEYS",
           "TOP_KEYS", "ClaimSection", "DataSection", "ReportSection", "SuiteSection",
           "TuneSection", "check"]

DEFAULT_MAX_TRIALS = 10_000

# Every top-level key of a suite file, in the order the README documents them.
TOP_KEYS: dict[str, str] = {
    "name": "MLflow experiment and report file name (letters, digits, _ . -)",
    "description": "what the suite asks, in words",
    "task": "dataset, model, loss, metric: what is trained and compared",
    "fixed": "the base trial: a value for every other axis",
    "grid": "axes whose values are crossed (cartesian product)",
    "ablate": "axes varied one at a time from the fixed trial",
    "seeds": "a count (seeds 0..n-1), a list of seeds, or seeds per source of randomness "
             "({init: 3, data_order: 3} or {count: 4, vary: [init]})",
    "checkpoint": "true: save each trial's weights and optimizer state, and its MLflow model",
    "report": "how the report reads the results (ema, overfit_gap, underfit_error)",
    "expect": "claims the report gives a verdict on",
    "tune": "Optuna search over nuisance axes for every scientific point",
    "max_trials": f"cap on the trials the suite may expand to (default {DEFAULT_MAX_TRIALS:,})",
    "plugins": "Python modules to import first: their components register like nnbench's own",
    "reference": "published numbers the report shows beside the measured ones",
    "data": "data hygiene: on_leakage: warn (default) or error (refuse to train)",
}
TASK_KEYS = (*tuple(a.name for a in AXES.values() if a.section == "task"), "metric")
FIXED_KEYS = tuple(a.name for a in AXES.values() if a.section == "fixed")
SAMPLERS = ("tpe", "random", "grid", "qmc")
PRUNERS = ("median", "hyperband", "none")
CLAIM_KEYS = ("claim", "a", "b", "metric", "direction", "where")

# what a section must look like, added to "input should be a valid dictionary" and the like
SHAPES = {
    "task": f"a mapping with keys {', '.join(TASK_KEYS)}",
    "fixed": f"a mapping with keys {', '.join(FIXED_KEYS)}",
    "grid": "a mapping of axes (or axis.parameter) to lists of values",
    "ablate": "a mapping of axes (or axis.parameter) to lists of values",
    "expect": f"a list of claims with keys {', '.join(CLAIM_KEYS)}",
    "report": "a mapping with keys ema, overfit_gap, underfit_error",
    "data": "a mapping with key on_leakage (warn or error)",
    "tune": "a mapping with keys space, trials, objective, sampler, pruner, seeds",
    "tune.space": "a mapping of axis.parameter (e.g. optimizer.lr) to a distribution",
    "tune.objective": "a mapping with keys metric, direction, against_metric",
    "tune.sampler": f"a mapping with keys name ({', '.join(SAMPLERS)}) and seed",
    "tune.pruner": f"a mapping with key name ({', '.join(PRUNERS)})",
}


class _Section(BaseModel):
    """Unknown keys are errors; no silent coercion ("1" is not 1, true is not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class SuiteSection(_Section):
    name: str | None = None  # required: the validator says why and what is allowed
    description: str = ""
    task: dict[str, Any] | None = None
    fixed: dict[str, Any] | None = None
    grid: Any = None  # checked by the validator (axes, values)
    ablate: Any = None
    seeds: Any = 1  # a count or a list: checked by the validator (size first)
    checkpoint: bool = False
    report: dict[str, Any] | None = None
    expect: list[Any] | None = None
    tune: dict[str, Any] | None = None
    max_trials: int = Field(DEFAULT_MAX_TRIALS, ge=1)
    plugins: Any = None  # checked (and imported) by the validator's plugin step
    reference: Any = None  # checked by nnbench.config.reference
    data: dict[str, Any] | None = None  # checked as DataSection


class ReportSection(_Section):
    ema: float = Field(0.0, ge=0, lt=1, description="β of the EMA smoothing of curves; 0 = raw")
    overfit_gap: float = Field(0.1, ge=0, description="val error - train error above this: "
                                                      "overfit")
    underfit_error: float = Field(0.3, ge=0, description="train error above this: underfit")


class DataSection(_Section):
    on_leakage: Literal["warn", "error"] = Field(
        "warn", description="test (or val) examples identical to training ones: warn in the "
                            "output and the report, or refuse to train (exit 2)")


class Distribution(_Section):
    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample log-uniformly
    choices: list[Any] | None = Field(None, min_length=1)


class Objective(_Section):
    metric: str | None = None  # default: the compared metric on the validation split
    direction: Literal["maximize", "minimize"] | None = None  # default: the metric's own
    # true: optimise against the metric's natural direction (e.g. minimize val_accuracy),
    # which nnbench otherwise rejects as a mistake
    against_metric: bool = False


class Sampler(_Section):
    name: Literal["tpe", "random", "grid", "qmc"] = "tpe"
    seed: int = Field(default=0, ge=0)


class Pruner(_Section):
    name: Literal["median", "hyperband", "none"] = "median"


class TuneSection(_Section):
    space: dict[str, Distribution] = Field(..., min_length=1)
    trials: int = Field(20, ge=1, description="Optuna trials per scientific point")
    objective: Objective = Field(default_factory=Objective)
    sampler: Sampler = Field(default_factory=Sampler)
    pruner: Pruner = Field(default_factory=Pruner)
    seeds: Any = None  # like the top-level seeds; default: the suite's


class ClaimSection(_Section):
    claim: str = Field(..., min_length=1)
    a: dict[str, Any] = Field(..., min_length=1)
    b: dict[str, Any] = Field(..., min_length=1)
    metric: str | None = None  # default: the suite's compared metric
    # default: the metric's better direction (accuracy higher; loss, rmse, mae lower; a
    # diagnostic higher)
    direction: Literal["higher", "lower"] | None = None
    where: dict[str, Any] | None = None


M = TypeVar("M", bound=BaseModel)


def check(model: type[M], raw: Any, prefix: str, problems: list[tuple[str, str]]) -> M | None:
    """`model` validated from `raw`, or None with its problems (key paths under `prefix`)."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        found = pydantic_problems(err, prefix, allowed=list(model.model_fields), model=model)
        for key, msg in found:
            shape = SHAPES.get(key)
            if shape and msg.startswith(("expected a mapping", "expected a list")):
                msg = f"expected {shape}{msg.partition(',')[1]}{msg.partition(',')[2]}"
            problems.append((key, msg))
        return None
