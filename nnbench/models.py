"""Models (registry kind "model"): build(params, input_shape=..., num_classes=..., ...) -> Module.

`mlp`: Flatten -> [Linear -> activation] per hidden size -> Linear to the logits,
as the notes' `MyNet`. Weights are set by the trial's init (gain from the
activation on hidden layers, linear gain on the output layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from nnbench.components.inits import InitFn
from nnbench.registry import ComponentInfo, Params, register

KIND = "model"


class MLPParams(Params):
    hidden: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (256, 128), description="width of each hidden layer, input to output")


def _build_mlp(params: MLPParams, *, input_shape: tuple[int, ...], num_classes: int,
               activation: Callable[[], nn.Module], nonlinearity: str, init: InitFn,
               generator: torch.Generator) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in params.hidden:
        linear = nn.Linear(width, size)
        init(linear, nonlinearity, generator)
        layers += [linear, activation()]
        width = size
    head = nn.Linear(width, num_classes)
    init(head, "linear", generator)
    layers.append(head)
    return nn.Sequential(*layers)


register(ComponentInfo(kind=KIND, name="mlp", build=_build_mlp, params=MLPParams,
                       doc="multilayer perceptron: Linear -> activation per hidden size"))
