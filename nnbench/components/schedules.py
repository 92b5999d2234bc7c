"""Learning-rate schedules (registry kind "schedule").

build(params, optimizer=..., epochs=..., steps_per_epoch=...) -> LRScheduler,
stepped once per epoch by the trainer.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch.optim.lr_scheduler import ConstantLR, LRScheduler, StepLR

from nnbench.registry import ComponentInfo, NoParams, Params, register

KIND = "schedule"


def _build_constant(_params: NoParams, optimizer: torch.optim.Optimizer, epochs: int,
                    steps_per_epoch: int) -> LRScheduler:
    return ConstantLR(optimizer, factor=1.0, total_iters=0)


class StepParams(Params):
    step_size: int = Field(..., gt=0, description="epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="multiplier applied every step_size epochs")


def _build_step(params: StepParams, optimizer: torch.optim.Optimizer, epochs: int,
                steps_per_epoch: int) -> LRScheduler:
    return StepLR(optimizer, step_size=params.step_size, gamma=params.gamma)


register(ComponentInfo(kind=KIND, name="constant", build=_build_constant,
                       doc="the optimizer's lr throughout"))
register(ComponentInfo(kind=KIND, name="step", build=_build_step, params=StepParams,
                       doc="lr × gamma every step_size epochs (StepLR)"))
