"""Losses (registry kind "loss"): build(params) -> nn.Module taking (logits, targets).

`attrs["task"]` says which targets the loss expects ("classification" here), so
the trainer knows which metric follows (accuracy for classification).
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from nnbench.registry import ComponentInfo, Params, register

KIND = "loss"


class CrossEntropyParams(Params):
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="mass moved to uniform targets")


register(ComponentInfo(
    kind=KIND, name="cross_entropy",
    build=lambda params: nn.CrossEntropyLoss(label_smoothing=params.label_smoothing),
    params=CrossEntropyParams, attrs={"task": "classification"},
    doc="softmax + negative log-likelihood on raw logits (no softmax in the model)"))
