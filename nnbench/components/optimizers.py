"""Optimizers (registry kind "optimizer"): build(params, parameters=...) -> torch.optim.Optimizer.

Every numerical parameter of the torch optimizer is reachable, with its default,
bounds and unit. Batch GD / SGD / mini-batch (the notes' table) is the trial's
`batch_size` (the whole split, 1, or n), not an optimizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import torch
from pydantic import Field, model_validator

from nnbench.registry import ComponentInfo, Params, register

KIND = "optimizer"
Beta = Annotated[float, Field(ge=0, lt=1)]


def _weight_decay(default: float = 0.0, what: str = "coupled L2: λ·w added to the gradient"
                  ) -> Any:
    return Field(default, ge=0, description=what)


def _maximize() -> Any:
    return Field(False, description="maximize the objective instead")


class SGDParams(Params):
    lr: float = Field(0.001, gt=0, description="learning rate, per step")
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
    lr: float = Field(0.01, gt=0, description="learning rate, per step")
    lr_decay: float = Field(0.0, ge=0, description="lr / (1 + (t-1)·lr_decay) at step t")
    initial_accumulator_value: float = Field(0.0, ge=0, description="start of Σg²")
    eps: float = Field(1e-10, gt=0, description="added to √Σg²")
    weight_decay: float = _weight_decay()
    maximize: bool = _maximize()


class RMSpropParams(Params):
    lr: float = Field(0.01, gt=0, description="learning rate, per step")
    alpha: float = Field(0.99, ge=0, lt=1, description="decay of the squared-gradient average")
    eps: float = Field(1e-8, gt=0, description="added to the denominator")
    momentum: float = Field(0.0, ge=0, lt=1, description="momentum factor")
    centered: bool = Field(False, description="normalise by the gradient's estimated variance")
    weight_decay: float = _weight_decay()
    maximize: bool = _maximize()


class AdamParams(Params):
    lr: float = Field(0.001, gt=0, description="learning rate, per step")
    betas: tuple[Beta, Beta] = Field(
        (0.9, 0.999), description="decay rates of the 1st and 2nd moment estimates")
    eps: float = Field(1e-8, gt=0, description="added to the denominator")
    amsgrad: bool = Field(False, description="use the AMSGrad variant")
    weight_decay: float = _weight_decay()
    maximize: bool = _maximize()


class AdamWParams(AdamParams):
    weight_decay: float = _weight_decay(0.01, "decoupled decay: w -= lr·λ·w per step")


def _builder(cls: type[torch.optim.Optimizer]) -> Any:
    def build(params: Params, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return cls(parameters, **params.model_dump())
    return build


_ENTRIES: list[tuple[str, type[torch.optim.Optimizer], type[Params], str]] = [
    ("sgd", torch.optim.SGD, SGDParams,
     "stochastic gradient descent with optional (Nesterov) momentum"),
    ("adagrad", torch.optim.Adagrad, AdagradParams,
     "Duchi et al. 2011: lr scaled by 1/√(Σ past g²) per parameter"),
    ("rmsprop", torch.optim.RMSprop, RMSpropParams,
     "Hinton 2012: lr scaled by 1/√(moving average of g²)"),
    ("adam", torch.optim.Adam, AdamParams,
     "Kingma & Ba 2015: bias-corrected 1st/2nd moment estimates; weight_decay is coupled L2"),
    ("adamw", torch.optim.AdamW, AdamWParams,
     "Loshchilov & Hutter 2019: Adam with decoupled weight decay"),
]
for name, cls, params, doc in _ENTRIES:
    register(ComponentInfo(kind=KIND, name=name, build=_builder(cls), params=params, doc=doc,
                           defaults=f"torch.optim.{cls.__name__}'s defaults"))
