"""A lab's own model, used by nnbench through a plugin (see README.md next to this file).

`resmlp` is the MNIST-1D paper's MLP (`MLPBase`): hidden layers joined by skip
connections, h = act(W1 x); h = h + act(W2 h); out = W3 h. It takes the same axes as
nnbench's own models: the activation, the init (every Linear, through `init`), the norm
(before each activation) and dropout (after it).

Nothing here is special to plugins: it is the `register(ComponentInfo(...))` call
nnbench's own models make. The suite names this module under `plugins:`; nnbench imports
it (from the suite's folder, the working directory or sys.path) before resolving names.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pydantic import Field
from torch import nn

from nnbench.registry import ComponentInfo, Params, register

__version__ = "1.0"

LINEAR = ("linear", None)  # the output layer's gain


class ResMLPParams(Params):
    width: int = Field(100, ge=1, description="units of every hidden layer")
    blocks: int = Field(1, ge=0, description="residual layers after the first hidden layer")


class ResMLP(nn.Module):
    """Linear -> [norm] -> act -> [dropout], then `blocks` residual layers, then the output."""

    def __init__(self, inputs: int, outputs: int, params: ResMLPParams,
                 activation: Callable[[], nn.Module],
                 norm: Callable[[int, int], nn.Module] | None, dropout: float) -> None:
        super().__init__()

        def layer(width_in: int) -> nn.Sequential:
            parts: list[nn.Module] = [nn.Linear(width_in, params.width)]
            if norm is not None:
                parts.append(norm(params.width, 1))
            parts.append(activation())
            if dropout > 0:
                parts.append(nn.Dropout(dropout))
            return nn.Sequential(*parts)

        self.first = layer(inputs)
        self.blocks = nn.ModuleList(layer(params.width) for _ in range(params.blocks))
        self.out = nn.Linear(params.width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x.flatten(1))
        for block in self.blocks:
            h = h + block(h)
        result: torch.Tensor = self.out(h)
        return result


def build_resmlp(params: ResMLPParams, *, input_shape: tuple[int, ...], outputs: int,
                 activation: Callable[[], nn.Module], gain: tuple[str, float | None],
                 init: Callable[..., None], norm: Callable[[int, int], nn.Module] | None,
                 dropout: float, generator: torch.Generator) -> nn.Module:
    model = ResMLP(math.prod(input_shape), outputs, params, activation, norm, dropout)
    for module in model.modules():  # hidden layers with the activation's gain
        if isinstance(module, nn.Linear) and module is not model.out:
            init(module, gain, generator)
    init(model.out, LINEAR, generator)  # the output layer with gain 1
    return model


register(ComponentInfo(kind="model", name="resmlp", build=build_resmlp, params=ResMLPParams,
                       doc="MLP with skip connections (the MNIST-1D paper's MLPBase)"))
