"""Regularizers that are components (registry kinds "norm", "clip", "early_stopping").

- norm: `none` or `batchnorm(momentum, eps)`, placed between each hidden layer and
  its activation, as in the notes' MyNet. build(params) -> NormFactory.
- clip: gradient clipping after backward: `none`, `norm(max_norm, norm_type)`
  (clip_grad_norm_), `value(clip_value)` (clip_grad_value_). build(params) -> ClipFn.
- early_stopping: `none` or `patience(monitor, patience, min_delta, restore_best)`.
  build(params) -> EarlyStopping (stateful; one per trial).
- `Dropout`: the dropout layer models insert; its masks come from the trial's own
  "dropout" generator (attached by the trainer), never from the global RNG, so every
  engine draws the same masks for the same trial.

Dropout (p), L1 (λ·Σ|w|) and the explicit L2 penalty (½λ·Σw²) are numbers on the
trial (`dropout`, `l1`, `l2`); coupled L2 is the optimizer's `weight_decay`, decoupled
decay is the `adamw` optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from nnbench.registry import ComponentInfo, NoParams, Params, register

NormFactory = Callable[[int, int], nn.Module]  # (features, spatial dims 1|2) -> module
ClipFn = Callable[[Iterable[torch.Tensor]], None]


# -- normalization ------------------------------------------------------------------------

class BatchNormParams(Params):
    momentum: float = Field(0.1, gt=0, le=1, description="weight of the new batch in the "
                                                         "running statistics")
    eps: float = Field(1e-5, gt=0, description="added to the variance")


def _batchnorm(p: BatchNormParams) -> NormFactory:
    def make(features: int, dims: int) -> nn.Module:
        cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        return cls(features, eps=p.eps, momentum=p.momentum)
    return make


register(ComponentInfo(kind="norm", name="none", build=lambda p: None,
                       doc="no normalization layer"))
register(ComponentInfo(kind="norm", name="batchnorm", build=_batchnorm, params=BatchNormParams,
                       doc="Ioffe & Szegedy 2015: BatchNorm before the activation",
                       defaults="torch's BatchNorm1d/2d (momentum 0.1, eps 1e-5, affine) and "
                                "the notes"))


class Dropout(nn.Module):
    """Inverted dropout with an explicit generator: keep each unit (`spatial`: each
    channel of each example) with probability 1 - p and scale it by 1 / (1 - p), as
    `torch.nn.functional.dropout`. The trainer attaches `generator` before training so
    masks do not depend on anything else drawn from torch's global generator; a model
    used outside the trainer without one draws from the global generator, as
    `nn.Dropout` does."""

    def __init__(self, p: float, spatial: bool = False) -> None:
        super().__init__()
        self.p, self.spatial = p, spatial
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * dropout_noise(tuple(x.shape), self.p, self.spatial, self.generator,
                                 x.device, x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, spatial={self.spatial}"


def dropout_noise(shape: tuple[int, ...], p: float, spatial: bool,
                  generator: torch.Generator | None,
                  device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Dropout's multiplier for a batch of `shape`: keep with probability 1 - p, scaled by
    1 / (1 - p); `spatial` keeps or drops whole channels ([B, C, 1, 1, ...])."""
    if spatial:
        shape = (*shape[:2], *([1] * (len(shape) - 2)))
    keep = torch.rand(shape, generator=generator, device=device) >= p
    return keep.to(dtype).div_(1 - p)


def attach_dropout_generator(model: nn.Module, generator: torch.Generator) -> None:
    """Every Dropout of `model` draws its masks from `generator`, in forward order."""
    for module in model.modules():
        if isinstance(module, Dropout):
            module.generator = generator


# -- gradient clipping ---------------------------------------------------------------------

class ClipNormParams(Params):
    max_norm: float = Field(1.0, gt=0, description="largest total gradient norm allowed")
    norm_type: float = Field(2.0, gt=0, allow_inf_nan=True,
                             description="p of the p-norm (.inf: the largest |g|)")


class ClipValueParams(Params):
    clip_value: float = Field(1.0, gt=0, description="gradients clamped to ±clip_value")


def _clip_norm(p: ClipNormParams) -> ClipFn:
    def clip(parameters: Iterable[torch.Tensor]) -> None:
        nn.utils.clip_grad_norm_(parameters, p.max_norm, norm_type=p.norm_type)
    return clip


def _clip_value(p: ClipValueParams) -> ClipFn:
    def clip(parameters: Iterable[torch.Tensor]) -> None:
        nn.utils.clip_grad_value_(parameters, p.clip_value)
    return clip


register(ComponentInfo(kind="clip", name="none", build=lambda p: None,
                       doc="no gradient clipping"))
register(ComponentInfo(kind="clip", name="norm", build=_clip_norm, params=ClipNormParams,
                       doc="rescale all gradients so their total norm ≤ max_norm",
                       defaults="clip_grad_norm_ (norm_type 2); max_norm 1.0 (torch has no "
                                "default)"))
register(ComponentInfo(kind="clip", name="value", build=_clip_value, params=ClipValueParams,
                       doc="clamp every gradient element to [-clip_value, clip_value]",
                       defaults="clip_grad_value_; clip_value 1.0 (torch has no default)"))


# -- early stopping ---------------------------------------------------------------------------

class PatienceParams(Params):
    monitor: Literal["val_loss", "val_accuracy", "val_rmse", "val_mae"] = Field(
        "val_loss", description="validation metric watched")
    patience: int = Field(5, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as better")
    restore_best: bool = Field(True, description="end with the weights of the best epoch")

    @model_validator(mode="after")
    def _reachable(self) -> PatienceParams:
        # an accuracy lies in [0, 1]: no epoch could beat the first by 1 or more, and the
        # trial stopped after patience + 1 epochs keeping the first epoch's weights
        if self.monitor == "val_accuracy" and self.min_delta >= 1:
            raise ValueError(f"min_delta {self.min_delta:g} is not below 1, val_accuracy's "
                             f"whole range [0, 1]: no epoch could count as better than the "
                             f"first; allowed: 0 <= min_delta < 1 (e.g. 0.001)")
        return self


class EarlyStopping:
    """Counts epochs without improvement of `monitor` (the notes' EarlyStopping class)."""

    def __init__(self, p: PatienceParams) -> None:
        self.params = p
        self.higher_is_better = p.monitor == "val_accuracy"
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, epoch: int, value: float) -> tuple[bool, bool]:
        """Record one epoch; returns (improved, stop)."""
        p = self.params
        gain = (value - self.best) if self.best is not None else float("inf")
        if not self.higher_is_better:
            gain = -gain if self.best is not None else gain
        if gain > p.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True, False
        self.bad_epochs += 1
        return False, self.bad_epochs >= p.patience


register(ComponentInfo(kind="early_stopping", name="none", build=lambda p: None, params=NoParams,
                       doc="train for all epochs"))
register(ComponentInfo(kind="early_stopping", name="patience", build=EarlyStopping,
                       params=PatienceParams,
                       doc="stop after `patience` epochs without improvement of `monitor`",
                       defaults="the notes' EarlyStopping (patience 5, min_delta 0, "
                                "val_loss); restore_best true (the notes keep the last "
                                "weights: restore_best: false)"))
