"""The engine registry: every way nnbench can train trials, by name.

An engine is one class in one file, registered here by name with a one-line doc and
where it lives (`"module:Class"`, imported on first use, so listing the names does not
import torch). The runner, tuning, the CLI's `--engine` choices and the results use
the registry and the class's protocol, never an engine's name:

- `default_threads(device, workers)` (class method): its thread policy;
- `most_lanes(device)` (class method): the most trials it trains together (1: one at a
  time), which tuning asks a study's proposals in batches of;
- `Engine(device, *, keep_checkpoints, threads, max_lanes, population, fixed_lanes)`:
  `make_engine` passes `threads` resolved by `default_threads` unless given; a class with
  `own_threads = True` (serial, stacked: threads chosen per trial) gets `threads` only when
  asked for (else None), `workers`, the processes sharing the cores, `kept_threads`, the
  threads the suite's trials with large steps were timed fastest with before (kept in
  its queue), and `keep_threads(timed)`, which keeps a count it times in the queue unless
  another worker's came first and returns the one kept;
- `engine.lane_limit`: the most trials the runner claims for it at once;
- `engine.describe(trials)`: lines saying how it will train them;
- `engine.run(trials, listener)`: one `TrialResult` per trial, with the `Numerics` it
  trained them under.

`register_engine` adds one (a plugin module, a test): `nnbench run --engine NAME` and
`run_suite(..., engine=NAME)` then train through it. `stacks=False` registers one that
trains one trial at a time (its `most_lanes` is 1): the CLI refuses `--lanes` for it
without importing it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["EngineInfo", "engine_class", "engine_names", "register_engine",
           "stacking_engines"]


@dataclass(frozen=True)
class EngineInfo:
    name: str
    doc: str  # one line: the CLI's --engine help
    where: str | type  # "module:Class", or the class itself
    stacks: bool = True  # trains several trials together: takes --lanes

    def load(self) -> Any:
        if not isinstance(self.where, str):
            return self.where
        module, _, attr = self.where.partition(":")
        return getattr(importlib.import_module(module), attr)


_ENGINES: dict[str, EngineInfo] = {}


def register_engine(name: str, doc: str, where: str | type, *, stacks: bool = True) -> None:
    """Add (or replace) the engine `name`."""
    _ENGINES[name] = EngineInfo(name, doc, where, stacks)


def engine_names() -> tuple[str, ...]:
    return tuple(_ENGINES)


def engine_docs() -> str:
    """`name: doc; ...` for every engine, in registration order (the CLI's help)."""
    return "; ".join(f"{info.name}: {info.doc}" for info in _ENGINES.values())


def stacking_engines() -> tuple[str, ...]:
    """The engines that train several trials together (take `--lanes`)."""
    return tuple(name for name, info in _ENGINES.items() if info.stacks)


def engine_class(name: str) -> Any:
    """The class of engine `name`; ValueError naming the registered ones otherwise."""
    info = _ENGINES.get(name)
    if info is None:
        raise ValueError(f"unknown engine {name!r}; allowed: {', '.join(_ENGINES)}")
    return info.load()


register_engine("serial", "one trial at a time (the reference numerics)",
                "nnbench.train.serial:SerialEngine", stacks=False)
register_engine("stacked", "same-shaped trials as lanes of one batched model",
                "nnbench.train.stacked:StackedEngine")
register_engine("auto", "stacked wherever two or more trials share a shape, serial "
                        "otherwise (default)", "nnbench.train.stacked:AutoEngine")
