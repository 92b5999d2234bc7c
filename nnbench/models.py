"""Models (registry kind "model"): build(params, **context) -> nn.Module producing raw outputs.

- `logistic`: Flatten -> Linear (no hidden layer).
- `mlp`: Flatten -> per hidden size: Linear -> [norm] -> activation -> [Dropout(p)] ->
  Linear to the outputs, as the notes' `MyNet`.
- `cnn`: per conv block: Conv2d -> [norm] -> activation -> [spatial Dropout(p)] -> MaxPool2d(2);
  then the mlp head. For image inputs (C, H, W).

Context: input_shape, outputs, activation (a factory), gain (of the activation, for
the init), init, norm (factory or None), dropout (p), generator (for the init). Hidden
layers are initialised knowing the activation that follows them (gain-aware inits may
use its gain), the output layer as one no activation follows (gain 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn

from nnbench.components.inits import OUTPUT, Gain, InitFn
from nnbench.components.regularizers import Dropout, NormFactory
from nnbench.registry import ComponentInfo, NoParams, Params, register

KIND = "model"
Width = Annotated[int, Field(ge=1)]
LINEAR: Gain = OUTPUT  # the output layer: no activation follows it, gain 1


class MLPParams(Params):
    hidden: tuple[Width, ...] = Field(
        (256, 128), description="width of each hidden layer, input to output")


class CNNParams(Params):
    channels: tuple[Width, ...] = Field((16, 32), min_length=1,
                                        description="output channels of each conv block")
    kernel_size: int = Field(3, ge=1, description="square kernel; 'same' padding")
    hidden: tuple[Width, ...] = Field((64,), description="fully connected layers after the convs")


def _block(layer: nn.Module, features: int, dims: int, activation: Callable[[], nn.Module],
           norm: NormFactory | None, dropout: float) -> list[nn.Module]:
    """layer -> [norm] -> activation -> [dropout]: the notes' order."""
    modules = [layer]
    if norm is not None:
        modules.append(norm(features, dims))
    modules.append(activation())
    if dropout > 0:
        modules.append(Dropout(dropout, spatial=dims == 2))
    return modules


def _head(width: int, hidden: tuple[int, ...], outputs: int, activation: Callable[[], nn.Module],
          norm: NormFactory | None, dropout: float) -> tuple[list[nn.Module], list[nn.Linear]]:
    modules: list[nn.Module] = []
    linears: list[nn.Linear] = []
    for size in hidden:
        linear = nn.Linear(width, size)
        linears.append(linear)
        modules += _block(linear, size, 1, activation, norm, dropout)
        width = size
    out = nn.Linear(width, outputs)
    linears.append(out)
    return [*modules, out], linears


def _initialise(layers: list[nn.Module], gain: Gain, init: InitFn,
                generator: torch.Generator) -> None:
    """Hidden layers with the activation's gain, the last (output) layer with gain 1."""
    for i, layer in enumerate(layers):
        init(layer, LINEAR if i == len(layers) - 1 else gain, generator)


def _build_mlp(params: MLPParams, *, input_shape: tuple[int, ...], outputs: int,
               activation: Callable[[], nn.Module], gain: Gain, init: InitFn,
               norm: NormFactory | None, dropout: float, generator: torch.Generator) -> nn.Module:
    modules, linears = _head(math.prod(input_shape), params.hidden, outputs, activation, norm,
                             dropout)
    _initialise(list(linears), gain, init, generator)
    return nn.Sequential(nn.Flatten(), *modules)


def _build_logistic(params: NoParams, **context: Any) -> nn.Module:
    return _build_mlp(MLPParams(hidden=()), **context)


def _build_cnn(params: CNNParams, *, input_shape: tuple[int, ...], outputs: int,
               activation: Callable[[], nn.Module], gain: Gain, init: InitFn,
               norm: NormFactory | None, dropout: float, generator: torch.Generator) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError(f"cnn needs image inputs (C, H, W), the dataset gives {input_shape}")
    channels, height, width = input_shape
    size = min(height, width)
    if size >> len(params.channels) < 1:
        raise ValueError(f"{len(params.channels)} conv blocks halve {height}×{width} inputs "
                         f"below 1 pixel; use at most {int(math.log2(size))} blocks")
    modules: list[nn.Module] = []
    layers: list[nn.Module] = []
    for out_channels in params.channels:
        conv = nn.Conv2d(channels, out_channels, params.kernel_size,
                         padding=params.kernel_size // 2)
        layers.append(conv)
        modules += [*_block(conv, out_channels, 2, activation, norm, dropout), nn.MaxPool2d(2)]
        channels, height, width = out_channels, height // 2, width // 2
    head, linears = _head(channels * height * width, params.hidden, outputs, activation, norm,
                          dropout)
    _initialise([*layers, *linears], gain, init, generator)
    return nn.Sequential(*modules, nn.Flatten(), *head)


register(ComponentInfo(kind=KIND, name="logistic", build=_build_logistic,
                       doc="no hidden layer: softmax/logistic regression on the inputs",
                       defaults="PyTorch's Linear"))
register(ComponentInfo(kind=KIND, name="mlp", build=_build_mlp, params=MLPParams,
                       doc="multilayer perceptron: Linear -> [norm] -> activation -> [dropout]",
                       defaults="the notes' MNIST MLP widths (256, 128) and layer order"))
register(ComponentInfo(kind=KIND, name="cnn", build=_build_cnn, params=CNNParams,
                       attrs={"input": "image"},
                       doc="small conv net: Conv -> [norm] -> act -> [Dropout2d] -> pool, "
                           "then an mlp head",
                       defaults="nnbench's own small net; PyTorch's Conv2d/MaxPool2d(2)"))
