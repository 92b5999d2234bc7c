"""Optimizers (registry kind "optimizer"): build(params, parameters=...) -> torch.optim.Optimizer.

Every parameter is the torch optimizer's own, with its default and unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import torch
from pydantic import Field, model_validator

from nnbench.registry import ComponentInfo, Params, register

KIND = "optimizer"


class SGDParams(Params):
    lr: float = Field(0.01, gt=0, description="learning rate, per step")
    momentum: float = Field(0.0, ge=0, lt=1, description="momentum factor β")
    dampening: float = Field(0.0, ge=0, le=1, description="dampening for momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0)")
    weight_decay: float = Field(0.0, ge=0, description="coupled L2 coefficient λ, per step")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDParams:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov needs momentum > 0 and dampening 0, "
                f"got momentum={self.momentum}, dampening={self.dampening}")
        return self


def _build_sgd(params: SGDParams, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.SGD:
    return torch.optim.SGD(parameters, **params.model_dump())


Beta = Annotated[float, Field(ge=0, lt=1)]


class AdamParams(Params):
    lr: float = Field(0.001, gt=0, description="learning rate, per step")
    betas: tuple[Beta, Beta] = Field(
        (0.9, 0.999), description="decay rates of the 1st and 2nd moment estimates")
    eps: float = Field(1e-8, gt=0, description="added to the denominator")
    weight_decay: float = Field(0.0, ge=0, description="coupled L2 coefficient λ, per step")
    amsgrad: bool = Field(False, description="use the AMSGrad variant")


def _build_adam(params: AdamParams, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Adam:
    return torch.optim.Adam(parameters, **params.model_dump())


register(ComponentInfo(kind=KIND, name="sgd", build=_build_sgd, params=SGDParams,
                       doc="stochastic gradient descent with optional (Nesterov) momentum"))
register(ComponentInfo(kind=KIND, name="adam", build=_build_adam, params=AdamParams,
                       doc="Kingma & Ba 2015: bias-corrected 1st/2nd moment estimates"))
