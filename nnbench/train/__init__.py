"""Training: the engines, the only place in nnbench that steps an optimizer.

- `results`: `TrialResult`, `Numerics`, the listener's `Decision` (plain data, no torch);
- `build`: a trial's parts from its spec (data, model, objective, optimizer, ...);
- `engine`: the `Engine` / `Listener` boundary and the thread policy;
- `serial`: one trial at a time, the reference numerics (`train_trial`);
- `lifecycle`: one lane's life in every engine: divergence, pruning, early stopping,
  best weights, the L1/L2 penalty, diagnostics and the epoch's metrics;
- `export`: a checkpoint as a model that stands alone (`servable`, what MLflow logs);
- `metrics`: what every engine shares (gaps, fingerprints, probe sizes).

The runner and tuning hand trials to an engine; nothing else calls a training loop.
Importing `nnbench.train.results` does not import torch or the loop: the names below
are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnbench.train.build import (
        Parts,
        build_model,
        build_parts,
        metric_names,
        produced_metrics,
        resolve_device,
        weight_layers,
    )
    from nnbench.train.engine import Engine, Listener, make_engine, torch_threads
    from nnbench.train.engines import engine_class, engine_names, register_engine
    from nnbench.train.export import servable
    from nnbench.train.lifecycle import Lane, penalty
    from nnbench.train.results import CONTINUE, Decision, Numerics, Status, TrialResult, stop
    from nnbench.train.serial import (
        SerialEngine,
        evaluate_checkpoint,
        run_epoch,
        train_epoch,
        train_trial,
    )

_WHERE: dict[str, tuple[str, ...]] = {
    "build": ("Parts", "build_model", "build_parts", "metric_names", "produced_metrics",
              "resolve_device", "weight_layers"),
    "lifecycle": ("Lane", "penalty"),
    "export": ("servable",),
    "engine": ("Engine", "Listener", "make_engine", "torch_threads"),
    "engines": ("engine_class", "engine_names", "register_engine"),
    "results": ("CONTINUE", "Decision", "Numerics", "Status", "TrialResult", "stop"),
    "serial": ("SerialEngine", "evaluate_checkpoint", "run_epoch", "train_epoch",
               "train_trial"),
}
_SUBMODULES = (*_WHERE, "metrics", "stacked", "stacked_model", "lane_optim")
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = ["CONTINUE", "Decision", "Engine", "Lane", "Listener", "Numerics", "Parts",
           "SerialEngine", "Status", "TrialResult", "build_model", "build_parts",
           "engine_class", "engine_names", "evaluate_checkpoint", "make_engine",
           "metric_names", "penalty", "produced_metrics", "register_engine",
           "resolve_device", "run_epoch", "servable", "stop", "torch_threads",
           "train_epoch", "train_trial", "weight_layers"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # nnbench.train.build, ...
        return importlib.import_module(f"nnbench.train.{name}")
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'nnbench.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nnbench.train.{module}"), name)
