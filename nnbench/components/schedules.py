"""Learning-rate schedules (registry kind "schedule").

build(params, optimizer=..., epochs=..., steps_per_epoch=...) -> `Schedule`: a torch
LRScheduler and whether the trainer steps it once per epoch or once per batch
(`interval`). Every schedule takes `warmup`: that many intervals of linear warm-up
from `warmup_start_factor`·lr to lr in front of it (torch's LinearLR + SequentialLR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch.optim import lr_scheduler

from nnbench.registry import ComponentInfo, Params, register

KIND = "schedule"
WARMUP_START_FACTOR = 0.1  # where warm-up starts, as a share of lr (torch's LinearLR: 1/3)


@dataclass(frozen=True)
class Schedule:
    scheduler: lr_scheduler.LRScheduler
    interval: Literal["epoch", "batch"]  # when the trainer calls scheduler.step()


class _Common(Params):
    own_warmup: ClassVar[str] = ""  # a schedule that warms up its own way: what it is
    interval: Literal["epoch", "batch"] = Field(
        "epoch", description="step the schedule after every epoch or every batch")
    warmup: int = Field(0, ge=0, description="intervals of linear warm-up in front")
    warmup_start_factor: float = Field(
        WARMUP_START_FACTOR, gt=0, le=1, description="warm-up starts at this fraction of lr")

    def _unused_settings(self) -> dict[str, str]:
        """Warm-up settings where nothing warms up (the suite's check refuses one that no
        configuration uses: its trials would be labelled with it for nothing)."""
        if self.warmup:
            return {}
        if self.own_warmup:
            return {"warmup_start_factor": f"this schedule has its own warm-up "
                                           f"({self.own_warmup}); allowed: no "
                                           f"warmup_start_factor"}
        return {"warmup_start_factor": "there is no warm-up (warmup is 0); allowed: warmup > 0, "
                                       "or no warmup_start_factor"}


class ConstantParams(_Common):
    def _unused_settings(self) -> dict[str, str]:
        return {**super()._unused_settings(), **({} if self.warmup else {
            "interval": "the constant schedule without warm-up never changes the lr; allowed: "
                        "warmup > 0 (warm-up counted in intervals), or no interval"})}


class StepParams(_Common):
    step_size: int = Field(..., gt=0, description="intervals between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="lr multiplier every step_size")


class MultiStepParams(_Common):
    milestones: tuple[int, ...] = Field(..., min_length=1, description="intervals to decay at")
    gamma: float = Field(0.1, gt=0, le=1, description="lr multiplier at each milestone")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: tuple[int, ...]) -> tuple[int, ...]:
        if list(milestones) != sorted(set(milestones)) or milestones[0] < 1:
            raise ValueError("milestones must be increasing positive integers")
        return milestones


class ExponentialParams(_Common):
    gamma: float = Field(..., gt=0, le=1, description="lr multiplier every interval")


class CosineParams(_Common):
    T_max: int | None = Field(None, gt=0, description="intervals to the minimum; None: all")
    eta_min: float = Field(0.0, ge=0, description="minimum learning rate")


class OneCycleParams(_Common):
    own_warmup: ClassVar[str] = "pct_start, from max_lr / div_factor"
    interval: Literal["epoch", "batch"] = Field("batch", description="one-cycle steps per batch")
    max_lr: float = Field(..., gt=0, description="peak learning rate")
    pct_start: float = Field(0.3, gt=0, lt=1, description="share of the cycle spent increasing")
    anneal_strategy: Literal["cos", "linear"] = Field("cos", description="annealing shape")
    div_factor: float = Field(25.0, gt=0, description="initial lr = max_lr / div_factor")
    final_div_factor: float = Field(1e4, gt=0, description="final lr = initial / this")
    three_phase: bool = Field(False, description="add a third, symmetric phase")
    cycle_momentum: bool = Field(
        True, description="cycle the optimizer's momentum (SGD, RMSprop) or beta1 (Adam) "
                          "inversely to the lr, between base_momentum and max_momentum; it "
                          "replaces the optimizer's own momentum")
    base_momentum: float = Field(0.85, ge=0, lt=1, description="momentum at the lr peak")
    max_momentum: float = Field(0.95, ge=0, lt=1, description="momentum at the lr minimum")

    def _unused_settings(self) -> dict[str, str]:
        why = ("cycle_momentum is false, so the optimizer keeps its own momentum; allowed: "
               "cycle_momentum: true, or no {}")
        return {**super()._unused_settings(), **({} if self.cycle_momentum else {
            name: why.format(name) for name in ("base_momentum", "max_momentum")})}

    @model_validator(mode="after")
    def _own_warmup(self) -> OneCycleParams:
        if self.warmup:
            raise ValueError("onecycle has its own warm-up (pct_start); set warmup to 0")
        if self.three_phase and self.pct_start >= 0.5:  # torch checks nothing
            raise ValueError(f"pct_start {self.pct_start:g} with three_phase: true leaves no "
                             f"room for the third phase (the second, as long as the first, "
                             f"would end at or after the run's end, so the lr is never "
                             f"annealed); allowed: pct_start below 0.5, or three_phase: false")
        if self.div_factor < 1:  # torch checks nothing
            raise ValueError(f"div_factor {self.div_factor:g} starts the cycle at "
                             f"{self.max_lr / self.div_factor:g}, above max_lr "
                             f"{self.max_lr:g}: its first phase would lower the lr to max_lr "
                             f"instead of raising it; allowed: div_factor 1 or more (the "
                             f"cycle starts at max_lr / div_factor)")
        if self.cycle_momentum and self.base_momentum > self.max_momentum:
            raise ValueError(f"base_momentum ({self.base_momentum}) must not exceed "
                             f"max_momentum ({self.max_momentum})")
        return self


def _total(params: _Common, epochs: int, steps_per_epoch: int) -> int:
    return epochs * steps_per_epoch if params.interval == "batch" else epochs


def _main(name: str, p: Any, optimizer: torch.optim.Optimizer,
          total: int) -> lr_scheduler.LRScheduler:
    main_total = max(total - p.warmup, 1)
    match name:
        case "constant":
            return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        case "step":
            return lr_scheduler.StepLR(optimizer, step_size=p.step_size, gamma=p.gamma)
        case "multistep":
            return lr_scheduler.MultiStepLR(optimizer, milestones=list(p.milestones),
                                            gamma=p.gamma)
        case "exponential":
            return lr_scheduler.ExponentialLR(optimizer, gamma=p.gamma)
        case "cosine":
            return lr_scheduler.CosineAnnealingLR(optimizer, T_max=p.T_max or main_total,
                                                  eta_min=p.eta_min)
        case "onecycle":
            return lr_scheduler.OneCycleLR(
                optimizer, max_lr=p.max_lr, total_steps=total, pct_start=p.pct_start,
                anneal_strategy=p.anneal_strategy, div_factor=p.div_factor,
                final_div_factor=p.final_div_factor, three_phase=p.three_phase,
                cycle_momentum=p.cycle_momentum, base_momentum=p.base_momentum,
                max_momentum=p.max_momentum)
    raise ValueError(f"no builder for schedule {name!r}")


def _builder(name: str) -> Any:
    def build(params: _Common, optimizer: torch.optim.Optimizer, epochs: int,
              steps_per_epoch: int) -> Schedule:
        total = _total(params, epochs, steps_per_epoch)
        if params.warmup >= total:
            unit = "epochs" if params.interval == "epoch" else "batches"
            raise ValueError(f"warmup={params.warmup} {unit} leaves nothing of the {total} "
                             f"{unit} of training; allowed: warmup 0 to {total - 1}")
        if not params.warmup:
            return Schedule(_main(name, params, optimizer, total), params.interval)
        warm = lr_scheduler.LinearLR(optimizer, start_factor=params.warmup_start_factor,
                                     end_factor=1.0, total_iters=params.warmup)
        main = _main(name, params, optimizer, total)
        chained = lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[params.warmup])
        return Schedule(chained, params.interval)
    return build


_ENTRIES: list[tuple[str, type[Params], str, dict[str, Any]]] = [
    ("constant", ConstantParams, "the optimizer's lr throughout", {}),
    ("step", StepParams, "lr × gamma every step_size intervals (StepLR)", {"step_size": 2}),
    ("multistep", MultiStepParams, "lr × gamma at each milestone (MultiStepLR)",
     {"milestones": [2, 4]}),
    ("exponential", ExponentialParams, "lr × gamma every interval (ExponentialLR)",
     {"gamma": 0.9}),
    ("cosine", CosineParams, "cosine annealing from lr to eta_min (CosineAnnealingLR)", {}),
    ("onecycle", OneCycleParams, "Smith 2018: up to max_lr then down (OneCycleLR)",
     {"max_lr": 0.1}),
]
_DEFAULTS = {
    "constant": "lr unchanged",
    "step": "torch's StepLR (gamma 0.1)",
    "multistep": "torch's MultiStepLR (gamma 0.1)",
    "exponential": "torch's ExponentialLR (gamma required)",
    "cosine": "torch's CosineAnnealingLR (eta_min 0); T_max defaults to the whole run "
              "(torch requires it)",
    "onecycle": "torch's OneCycleLR (pct_start 0.3, cos, div 25 / 1e4, momentum cycled "
                "0.85-0.95); total steps = the whole run",
}
for name, params, doc, example in _ENTRIES:
    register(ComponentInfo(kind=KIND, name=name, build=_builder(name), params=params, doc=doc,
                           example=example,
                           defaults=f"{_DEFAULTS[name]}; stepped every "
                                    f"{params.model_fields['interval'].default}; no warm-up "
                                    f"unless warmup > 0"))
