"""The stacked engine's optimizer: each lane's own hyperparameters and schedule, one rule.

`torch.optim` takes one learning rate per parameter group; a stacked group needs one
per lane. The update itself is the optimizer's per-lane rule, registered with it
(`attrs["lane_rule"]`, a `LaneRule` in nnbench.components.optimizers); an optimizer
without one trains on the serial engine. This module holds what every rule shares:

Schedules act through tables: for each lane, its own schedule is built by the
registry on a one-parameter optimizer of the lane's class and stepped through the
whole run, recording, per optimizer step, every group value the rule says a
scheduler may change (`lr`, and `momentum` / `betas[0]` for OneCycleLR's momentum
cycling). The rule turns them into `[steps, lanes, 1]` device tables: training reads
one row per step, with no host round trip. A lane that ends is retired (lr 0, state
cleared); a lane's state converts back to `torch.optim`'s `state_dict()` for its
checkpoint.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from nnbench import registry
from nnbench.components.optimizers import LaneRule, lane_rule
from nnbench.config import TrialSpec
from nnbench.registry import ComponentSpec
from nnbench.train.stacked_model import lane_index

__all__ = ["LaneOptimizer", "flags_of", "schedule_tables"]


def flags_of(spec: TrialSpec) -> dict[str, Any] | None:
    """The optimizer parameters that must be equal for trials to share a stacked group
    (None: the optimizer has no per-lane rule)."""
    rule = lane_rule(spec.optimizer.name)
    if rule is None:
        return None
    return {f: spec.optimizer.kwargs[f] for f in rule.flag_names}


def schedule_tables(spec: TrialSpec, steps_per_epoch: int,
                    keys: Sequence[str] = ("lr",)) -> dict[str, list[float]]:
    """Per optimizer step (epochs × steps_per_epoch), the values the lane's schedule sets
    for `keys` (`lr`, `momentum`, `beta1`: the group's `betas[0]`). The schedule is the
    registry's own, stepped per batch or per epoch as the serial engine steps it."""
    return _schedule_tables(spec.optimizer, spec.schedule, spec.epochs, steps_per_epoch,
                            tuple(keys))


@functools.lru_cache(maxsize=256)
def _schedule_tables(optimizer_spec: ComponentSpec, schedule_spec: ComponentSpec, epochs: int,
                     steps_per_epoch: int, keys: tuple[str, ...]) -> dict[str, list[float]]:
    dummy = torch.nn.Parameter(torch.zeros(1))
    optimizer = registry.build("optimizer", optimizer_spec, parameters=[dummy])
    schedule = registry.build("schedule", schedule_spec, optimizer=optimizer,
                              epochs=epochs, steps_per_epoch=steps_per_epoch)
    group = optimizer.param_groups[0]
    read: dict[str, Callable[[], float]] = {
        "lr": lambda: float(group["lr"]), "momentum": lambda: float(group["momentum"]),
        "beta1": lambda: float(group["betas"][0])}
    tables: dict[str, list[float]] = {key: [] for key in keys}
    with warnings.catch_warnings():  # stepping a schedule without optimizer steps is the point
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        for _ in range(epochs):
            for _ in range(steps_per_epoch):
                for key in keys:
                    tables[key].append(read[key]())
                if schedule.interval == "batch":
                    schedule.scheduler.step()
            if schedule.interval == "epoch":
                schedule.scheduler.step()
    return tables


class LaneOptimizer:
    """One optimizer's per-lane rule over a `[lanes, P]` parameter tensor.

    `specs[i]` is lane i's trial (None for a padding lane, which never moves: lr 0).
    `step(grad)` applies step `t` (counted from 0) reading row t of the rule's tables.
    """

    def __init__(self, specs: Sequence[TrialSpec | None], param: torch.Tensor,
                 steps_per_epoch: int, device: torch.device) -> None:
        real = [s for s in specs if s is not None]
        self.name = real[0].optimizer.name
        rule = lane_rule(self.name)
        if rule is None:
            raise ValueError(f"no per-lane rule for optimizer {self.name!r}")
        self.param = param
        self.lanes = len(specs)
        steps = real[0].epochs * steps_per_epoch
        keys = ("lr", *(k for k in rule.schedules if k != "lr"))
        # each lane's schedule, per step (double precision); a padding lane's: all 0
        self.host: dict[str, list[list[float]]] = {key: [] for key in keys}
        for spec in specs:
            table = schedule_tables(spec, steps_per_epoch, keys) if spec is not None else None
            for key in keys:
                self.host[key].append(table[key] if table is not None else [0.0] * steps)
        flags = {f: bool(real[0].optimizer.kwargs[f]) for f in rule.flag_names}
        self.maximize = flags.get("maximize", False)
        self.rule: LaneRule = rule([dict(s.optimizer.kwargs) if s is not None else None
                                    for s in specs], self.host, steps, flags, device)
        self.rule.start(param)
        self.device = device
        self.t = 0  # optimizer steps taken

    @property
    def state(self) -> dict[str, torch.Tensor]:
        return self.rule.state

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        """One step of every lane; `grad` is laid out as the parameter, `[lanes, P]`."""
        self.rule.update(self.param, -grad if self.maximize else grad, self.t)
        self.t += 1

    @torch.no_grad()
    def retire(self, lanes: Sequence[int]) -> None:
        """Lanes that stopped: from now on their lr is 0 and their state is cleared (one
        op per tensor whatever the number of lanes)."""
        if not lanes:
            return
        index = lane_index(lanes, self.device)
        ones = self.rule.ones
        for key, table in self.rule.tables.items():
            table[:, index] = 1.0 if key in ones else 0.0
        for key, value in self.rule.hyper.items():
            value[index] = 1.0 if key in ones else 0.0
        for buf in self.rule.state.values():
            buf[index] = 0.0

    def torch_state(self, lane: int, params: Sequence[torch.nn.Parameter], spec: TrialSpec,
                    unflatten: Callable[[torch.Tensor], list[torch.Tensor]]) -> dict[str, Any]:
        """The lane's optimizer as `torch.optim`'s `state_dict()` over `params` (checkpoints);
        `unflatten` splits a lane's `[P]` row into its parameters' tensors."""
        optimizer = registry.build("optimizer", spec.optimizer, parameters=params)
        group = optimizer.param_groups[0]
        t = max(self.t - 1, 0)
        group["lr"] = float(self.host["lr"][lane][t]) if self.t else group["lr"]
        if "momentum" in self.host and self.t:
            group["momentum"] = float(self.host["momentum"][lane][t])
        if "beta1" in self.host and self.t:
            group["betas"] = (float(self.host["beta1"][lane][t]), group["betas"][1])
        if self.t:
            per_param = {key: unflatten(buf[lane]) for key, buf in self.state.items()}
            for j, param in enumerate(params):
                entry: dict[str, Any] = {}
                for key, tensors in per_param.items():
                    entry[key] = tensors[j].detach().clone(
                        memory_format=torch.contiguous_format).reshape(param.shape)
                if self.rule.counts_steps:
                    entry["step"] = torch.tensor(float(self.t))
                optimizer.state[param] = entry
        state: dict[str, Any] = optimizer.state_dict()
        return state

