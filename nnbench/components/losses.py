"""Losses (registry kind "loss"): build(params) -> Objective, the loss with its metrics.

An Objective maps (model outputs, targets) to the mean loss, and to per-batch sums
from which the task's metrics follow: accuracy for class labels, RMSE and MAE for
real targets. `attrs["targets"]` says which targets a loss needs; `attrs["metrics"]`
which metrics it reports. Output activations belong here, not in the model: no
softmax before cross-entropy (it applies log-softmax itself); `bce` applies the
sigmoid it needs, `bce_with_logits` folds it into the loss.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from nnbench.registry import ComponentInfo, NoParams, Params, register

KIND = "loss"


class Objective(nn.Module):
    """A loss and the metrics that go with it."""

    metrics: tuple[str, ...] = ()

    def num_outputs(self, num_classes: int, target_dim: int) -> int:
        raise NotImplementedError

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-batch sums behind the metrics (one entry per metric), on device."""
        raise NotImplementedError

    def finalize(self, sums: torch.Tensor, n: int, target_dim: int) -> torch.Tensor:
        """Metric values from sums accumulated over n examples."""
        raise NotImplementedError

    # -- lanes: many models' outputs at once, `[lanes, batch, ...]` (the stacked engine) --

    def lane_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each lane's mean loss, `[lanes]`: this loss applied lane by lane."""
        from torch.func import vmap

        losses: torch.Tensor = vmap(self)(outputs, targets)
        return losses

    def lane_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each lane's `sums`, `[lanes, metrics]`."""
        from torch.func import vmap

        sums: torch.Tensor = vmap(self.sums)(outputs, targets)
        return sums


class _Classification(Objective):
    metrics = ("accuracy",)

    def finalize(self, sums: torch.Tensor, n: int, target_dim: int) -> torch.Tensor:
        return sums.double() / n


class CrossEntropy(_Classification):
    def __init__(self, label_smoothing: float) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def num_outputs(self, num_classes: int, target_dim: int) -> int:
        return num_classes

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=1) == targets).sum()[None]

    def lane_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One cross-entropy call over every lane's examples, averaged per lane."""
        lanes, batch = targets.shape
        each = F.cross_entropy(outputs.reshape(lanes * batch, -1), targets.reshape(-1),
                               reduction="none", label_smoothing=self.label_smoothing)
        return each.view(lanes, batch).mean(dim=1)

    def lane_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=-1) == targets).sum(dim=1, keepdim=True)


class Binary(_Classification):
    """Two classes with one output unit; `sigmoid_output` applies σ before BCELoss."""

    def __init__(self, sigmoid_output: bool) -> None:
        super().__init__()
        self.sigmoid_output = sigmoid_output

    def num_outputs(self, num_classes: int, target_dim: int) -> int:
        if num_classes != 2:
            raise ValueError(f"binary cross-entropy needs 2 classes, the dataset has "
                             f"{num_classes}; use cross_entropy")
        return 1

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, labels = outputs[:, 0], targets.to(outputs.dtype)
        if self.sigmoid_output:
            return F.binary_cross_entropy(torch.sigmoid(logits), labels)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ((outputs[:, 0] > 0).long() == targets).sum()[None]


class Regression(Objective):
    metrics = ("rmse", "mae")

    def __init__(self, kind: Literal["mse", "l1", "smooth_l1"], beta: float = 1.0) -> None:
        super().__init__()
        self.kind, self.beta = kind, beta

    def num_outputs(self, num_classes: int, target_dim: int) -> int:
        return target_dim

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.kind == "mse":
            return F.mse_loss(outputs, targets)
        if self.kind == "l1":
            return F.l1_loss(outputs, targets)
        return F.smooth_l1_loss(outputs, targets, beta=self.beta)

    def sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        error = (outputs.detach() - targets).double()
        return torch.stack([error.square().sum(), error.abs().sum()])

    def finalize(self, sums: torch.Tensor, n: int, target_dim: int) -> torch.Tensor:
        mean = sums.double() / (n * target_dim)
        return torch.stack([mean[0].sqrt(), mean[1]])


class CrossEntropyParams(Params):
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="mass moved to uniform targets")


class SmoothL1Params(Params):
    beta: float = Field(1.0, gt=0, description="|error| below beta is squared, above linear")


def _add(name: str, build: object, doc: str, targets: str, metrics: tuple[str, ...],
         params: type[Params] = NoParams) -> None:
    register(ComponentInfo(kind=KIND, name=name, build=build, doc=doc,  # type: ignore[arg-type]
                           params=params, attrs={"targets": targets, "metrics": metrics},
                           defaults="torch's defaults (mean reduction)"))


_add("cross_entropy", lambda p: CrossEntropy(p.label_smoothing),
     "softmax + negative log-likelihood on raw logits (no softmax in the model)",
     "class", ("accuracy",), CrossEntropyParams)
_add("bce_with_logits", lambda p: Binary(sigmoid_output=False),
     "binary cross-entropy on one logit (sigmoid folded in, numerically stable)",
     "class", ("accuracy",))
_add("bce", lambda p: Binary(sigmoid_output=True),
     "binary cross-entropy on a sigmoid output (BCELoss)", "class", ("accuracy",))
_add("mse", lambda p: Regression("mse"), "mean squared error", "real", ("rmse", "mae"))
_add("l1", lambda p: Regression("l1"), "mean absolute error", "real", ("rmse", "mae"))
_add("smooth_l1", lambda p: Regression("smooth_l1", p.beta),
     "Huber-like: squared below beta, absolute above", "real", ("rmse", "mae"), SmoothL1Params)
