"""Optimizers (registry kind "optimizer"): build(params, parameters=...) -> torch.optim.Optimizer.

Every numerical parameter of the torch optimizer is reachable, with its default,
bounds and unit. Batch GD / SGD / mini-batch (the notes' table) is the trial's
`batch_size` (the whole split, 1, or n), not an optimizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, model_validator

from nnbench.registry import ComponentInfo, Params, get, register

KIND = "optimizer"
Beta = Annotated[float, Field(ge=0, lt=1)]


# the largest learning rate float32 holds: above it a step overflows to inf ("value cannot
# be converted to type float without overflow", naming no parameter)
_LR_MAX = float(torch.finfo(torch.float32).max)


def _lr(default: float) -> Any:
    return Field(default, gt=0, le=_LR_MAX, description="learning rate, per step")


def _weight_decay(default: float = 0.0, what: str = "coupled L2: λ·w added to the gradient"
                  ) -> Any:
    return Field(default, ge=0, description=what)


def _maximize() -> Any:
    return Field(False, description="maximize the objective instead")


class SGDParams(Params):
    lr: float = _lr(0.001)
    momentum: float = Field(0.0, ge=0, lt=1, description="momentum factor β")
    dampening: float = Field(0.0, ge=0, le=1, description="dampening for momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0)")
    weight_decay: float = _weight_decay()
    maximize: bool = _maximize()

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDParams:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov needs momentum > 0 and dampening 0, "
                f"got momentum={self.momentum}, dampening={self.dampening}")
        return self


class AdagradParams(Params):
    lr: float = _lr(0.01)
    lr_decay: float = Field(0.0, ge=0, description="lr / (1 + (t-1)·lr_decay) at step t")
    initial_accumulator_value: float = Field(0.0, ge=0, description="start of Σg²")
    eps: float = Field(1e-10, gt=0, description="added to √Σg²")
    weight_decay: float = _weight_decay()
    maximize: bool = _maximize()


class RMSpropParams(Params):
    lr: float = _lr(0.01)
    alpha: float = Field(0.99, ge=0, lt=1, description="decay of the squared-gradient average")
    eps: float = Field(1e-8, gt=0, description="added to the denominator")
    momentum: float = Field(0.0, ge=0, lt=1, description="momentum factor")
    centered: bool = Field(False, description="normalise by the gradient's estimated variance")
    weight_decay: float = _weight_decay()
    maximize: bool = _maximize()


class AdamParams(Params):
    lr: float = _lr(0.001)
    betas: tuple[Beta, Beta] = Field(
        (0.9, 0.999), description="decay rates of the 1st and 2nd moment estimates")
    eps: float = Field(1e-8, gt=0, description="added to the denominator")
    amsgrad: bool = Field(False, description="use the AMSGrad variant")
    weight_decay: float = _weight_decay()
    maximize: bool = _maximize()


class AdamWParams(AdamParams):
    weight_decay: float = _weight_decay(0.01, "decoupled decay: w -= lr·λ·w per step")


# -- per-lane rules: the stacked engine's form of each optimizer -------------------------------

class LaneRule:
    """An optimizer's update over stacked lanes: its `torch.optim` class's single-tensor
    update (torch/optim/*.py, `_single_tensor_*`) rewritten with the lanes first. The
    parameters are one `[lanes, P]` tensor and every hyperparameter a `[lanes, 1]` column,
    so each term is one op over every layer; per-step scalars (a schedule's values and
    what follows from them) are `[steps, lanes, 1]` tables computed on the host in double
    precision, as torch computes them from Python floats. tests/test_stacked.py checks
    every registered rule beside `torch.optim`, lane by lane.

    `kwargs[i]`: lane i's optimizer parameters (None: a padding lane, which never moves);
    `schedule[key][i][t]`: the value lane i's schedule sets for `key` (one of
    `schedules`) at step t; `flags`: the group's values of `flag_names` (equal in a group).
    """

    flag_names: tuple[str, ...] = ("maximize",)  # parameters that change which ops run
    schedules: tuple[str, ...] = ("lr",)  # group values a schedule may change per step
    ones: frozenset[str] = frozenset({"eps"})  # columns/tables a retired lane holds at 1
    counts_steps = True  # torch keeps a `step` in each parameter's state

    def __init__(self, kwargs: list[dict[str, Any] | None],
                 schedule: dict[str, list[list[float]]], steps: int, flags: dict[str, bool],
                 device: torch.device) -> None:
        self.kwargs, self.schedule, self.steps = kwargs, schedule, steps
        self.flags, self.device = flags, device
        self.lanes = len(kwargs)
        self.hyper: dict[str, torch.Tensor] = {}  # [lanes, 1] columns
        self.tables: dict[str, torch.Tensor] = {}  # [steps, lanes, 1]
        self.state: dict[str, torch.Tensor] = {}  # [lanes, P], torch's state names
        self.any_weight_decay = any(self.values("weight_decay"))  # on the host: no sync

    def values(self, key: str, default: float = 0.0) -> list[float]:
        """Each lane's `key` (a padding lane's: `default`)."""
        return [float(k[key]) if k is not None else default for k in self.kwargs]

    def column(self, values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.device)[:, None]

    def table(self, rows: list[list[float]]) -> torch.Tensor:
        """`rows[t][i]` (step t, lane i) as a `[steps, lanes, 1]` float32 table."""
        return torch.tensor(rows, dtype=torch.float32, device=self.device)[:, :, None]

    def per_step(self, key: str) -> torch.Tensor:
        """The schedule's `key` as a `[steps, lanes, 1]` float32 table (`table` of its lanes'
        lists, transposed by numpy: 0.06 s for 512 lanes of 4,220 steps, against 0.33 s
        through Python lists, the same numbers)."""
        rows = np.asarray(self.schedule[key], dtype=np.float64).T.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(rows)).to(self.device)[:, :, None]

    def zeros(self, param: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(param, memory_format=torch.contiguous_format)

    def start(self, param: torch.Tensor) -> None:
        """Fill `hyper`, `tables` and `state` for `param` ([lanes, P])."""
        raise NotImplementedError

    def update(self, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
        """Step t (from 0) of every lane, in place."""
        raise NotImplementedError

    def coupled_decay(self, param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """grad + λ·w (coupled L2), as `grad.add(param, alpha=weight_decay)`."""
        if not self.any_weight_decay:
            return grad
        return grad.addcmul(param, self.hyper["weight_decay"])


class SGDLanes(LaneRule):
    flag_names = ("nesterov", "maximize")
    schedules = ("lr", "momentum")
    counts_steps = False

    def start(self, param: torch.Tensor) -> None:
        self.hyper = {"weight_decay": self.column(self.values("weight_decay")),
                      "dampening": self.column(self.values("dampening"))}
        self.any_dampening = any(self.values("dampening"))
        self.any_momentum = any(m != 0 for row in self.schedule["momentum"] for m in row)
        self.tables = {"lr": self.per_step("lr"),
                       "momentum": self.per_step("momentum")}
        if self.any_momentum:
            self.state["momentum_buffer"] = self.zeros(param)

    def update(self, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
        grad = self.coupled_decay(param, grad)
        if self.any_momentum:
            momentum = self.tables["momentum"][t]
            buf = self.state["momentum_buffer"]
            if t == 0:
                buf.copy_(grad)  # torch: the first step's buffer is the gradient itself
            elif self.any_dampening:
                # torch skips the buffer for momentum 0: buf = g, whatever the dampening
                damp = torch.where(momentum == 0, 0.0, self.hyper["dampening"])
                buf.mul_(momentum).addcmul_(grad, 1 - damp)
            else:
                buf.mul_(momentum).add_(grad)
            grad = grad.addcmul(buf, momentum) if self.flags["nesterov"] else buf
        param.addcmul_(grad, self.tables["lr"][t], value=-1)


class AdagradLanes(LaneRule):
    def start(self, param: torch.Tensor) -> None:
        self.hyper = {"weight_decay": self.column(self.values("weight_decay")),
                      "eps": self.column(self.values("eps", 1.0))}
        lr, decay = self.schedule["lr"], self.values("lr_decay")
        self.tables = {"clr": self.table([[lr[i][t] / (1 + t * decay[i])
                                           for i in range(self.lanes)]
                                          for t in range(self.steps)])}
        initial = self.column(self.values("initial_accumulator_value"))
        self.state["sum"] = self.zeros(param).add_(initial)

    def update(self, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
        grad = self.coupled_decay(param, grad)
        state_sum = self.state["sum"]
        state_sum.addcmul_(grad, grad, value=1)
        std = state_sum.sqrt().add_(self.hyper["eps"])
        param.addcmul_(grad / std, self.tables["clr"][t], value=-1)


class RMSpropLanes(LaneRule):
    flag_names = ("centered", "maximize")
    schedules = ("lr", "momentum")

    def start(self, param: torch.Tensor) -> None:
        self.hyper = {"weight_decay": self.column(self.values("weight_decay")),
                      "alpha": self.column(self.values("alpha")),
                      "eps": self.column(self.values("eps", 1.0))}
        self.any_momentum = any(m > 0 for row in self.schedule["momentum"] for m in row)
        self.tables = {"lr": self.per_step("lr"),
                       "momentum": self.per_step("momentum")}
        self.state["square_avg"] = self.zeros(param)
        if self.any_momentum:
            self.state["momentum_buffer"] = self.zeros(param)
        if self.flags["centered"]:
            self.state["grad_avg"] = self.zeros(param)

    def update(self, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
        grad = self.coupled_decay(param, grad)
        alpha = self.hyper["alpha"]
        square_avg = self.state["square_avg"]
        square_avg.mul_(alpha).addcmul_(grad, grad * (1 - alpha))
        if self.flags["centered"]:
            grad_avg = self.state["grad_avg"]
            grad_avg.lerp_(grad, 1 - alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(self.hyper["eps"])
        lr = self.tables["lr"][t]
        if self.any_momentum:
            buf = self.state["momentum_buffer"]
            buf.mul_(self.tables["momentum"][t]).addcdiv_(grad, avg)
            param.addcmul_(buf, lr, value=-1)
        else:
            param.addcmul_(grad / avg, lr, value=-1)


class AdamLanes(LaneRule):
    flag_names = ("amsgrad", "maximize")
    schedules = ("lr", "beta1")
    ones = frozenset({"eps", "decay", "bias_correction2_sqrt"})
    decoupled = False  # AdamW: w *= 1 - lr·λ before the update, instead of coupled L2

    def start(self, param: torch.Tensor) -> None:
        beta2 = [float(k["betas"][1]) if k is not None else 0.0 for k in self.kwargs]
        self.hyper = {"weight_decay": self.column(self.values("weight_decay")),
                      "beta2": self.column(beta2), "eps": self.column(self.values("eps", 1.0))}
        lr, beta1 = self.schedule["lr"], self.schedule["beta1"]
        weight_decay = self.values("weight_decay")
        lanes = range(self.lanes)
        steps = range(self.steps)
        self.tables = {
            "beta1": self.per_step("beta1"),
            "step_size": self.table([[lr[i][t] / (1 - beta1[i][t] ** (t + 1)) for i in lanes]
                                     for t in steps]),
            "bias_correction2_sqrt": self.table([[(1 - beta2[i] ** (t + 1)) ** 0.5
                                                  for i in lanes] for t in steps])}
        if self.decoupled:
            self.tables["decay"] = self.table([[1 - lr[i][t] * weight_decay[i] for i in lanes]
                                               for t in steps])
        self.state["exp_avg"] = self.zeros(param)
        self.state["exp_avg_sq"] = self.zeros(param)
        if self.flags["amsgrad"]:
            self.state["max_exp_avg_sq"] = self.zeros(param)

    def update(self, param: torch.Tensor, grad: torch.Tensor, t: int) -> None:
        if not self.decoupled:
            grad = self.coupled_decay(param, grad)
        elif self.any_weight_decay:
            param.mul_(self.tables["decay"][t])
        exp_avg, exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - self.tables["beta1"][t])
        beta2 = self.hyper["beta2"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad * (1 - beta2))
        second = exp_avg_sq
        if self.flags["amsgrad"]:
            second = self.state["max_exp_avg_sq"]
            torch.maximum(second, exp_avg_sq, out=second)
        denom = (second.sqrt() / self.tables["bias_correction2_sqrt"][t]).add_(
            self.hyper["eps"])
        param.addcmul_(exp_avg / denom, self.tables["step_size"][t], value=-1)


class AdamWLanes(AdamLanes):
    decoupled = True


def _builder(cls: type[torch.optim.Optimizer]) -> Any:
    def build(params: Params, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return cls(parameters, **params.model_dump())
    return build


# name, torch class, parameters, doc, per-lane rule (attrs["lane_rule"]: the stacked engine's)
_ENTRIES: list[tuple[str, type[torch.optim.Optimizer], type[Params], str, type[LaneRule]]] = [
    ("sgd", torch.optim.SGD, SGDParams,
     "stochastic gradient descent with optional (Nesterov) momentum", SGDLanes),
    ("adagrad", torch.optim.Adagrad, AdagradParams,
     "Duchi et al. 2011: lr scaled by 1/√(Σ past g²) per parameter", AdagradLanes),
    ("rmsprop", torch.optim.RMSprop, RMSpropParams,
     "Hinton 2012: lr scaled by 1/√(moving average of g²)", RMSpropLanes),
    ("adam", torch.optim.Adam, AdamParams,
     "Kingma & Ba 2015: bias-corrected 1st/2nd moment estimates; weight_decay is coupled L2",
     AdamLanes),
    ("adamw", torch.optim.AdamW, AdamWParams,
     "Loshchilov & Hutter 2019: Adam with decoupled weight decay", AdamWLanes),
]
for name, cls, params, doc, lanes in _ENTRIES:
    register(ComponentInfo(kind=KIND, name=name, build=_builder(cls), params=params, doc=doc,
                           defaults=f"torch.optim.{cls.__name__}'s defaults",
                           attrs={"lane_rule": lanes}))


def lane_rule(name: str) -> type[LaneRule] | None:
    """The registered optimizer `name`'s per-lane rule (None: it has none, and trials
    using it train on the serial engine)."""
    rule: type[LaneRule] | None = get(KIND, name).attrs.get("lane_rule")
    return rule
