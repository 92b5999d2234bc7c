"""Models (registry kind "model"): build(params, **context) -> nn.Module producing raw outputs.

- `logistic`: Flatten -> Linear (no hidden layer).
- `mlp`: Flatten -> per hidden size: Linear -> [norm] -> activation -> [Dropout(p)] ->
  Linear to the outputs, as the notes' `MyNet`.
- `cnn`: per conv block: Conv2d -> [norm] -> activation -> [spatial Dropout(p)] -> MaxPool2d(2);
  then the mlp head. For image inputs (C, H, W).
- `cnn1d`: the MNIST-1D paper's conv net for signals (L,) or (C, L): per layer Conv1d
  (kernel, stride, padding) -> [norm] -> activation -> [spatial Dropout(p)]; flatten; the mlp
  head. Defaults: 25 channels × 3 layers, kernels 5/3/3, stride 2, padding 1 (5,210
  parameters on MNIST-1D, as the paper's ConvBase).
- `gru`: a (bidirectional) GRU over a signal's steps (L,) or (C, L) -> [Dropout(p) on its
  outputs] -> readout (flatten every step: the paper's GRUBase, 5,134 parameters; the
  last step; or the mean) -> the mlp head.
- `resnet`: a CIFAR-style residual network (He et al. 2016, section 4.2): a 3×3 stem,
  stages of basic blocks (conv3×3 -> [norm] -> act -> [Dropout2d] -> conv3×3 -> [norm],
  plus the shortcut: identity, or a 1×1 conv (+ norm) where the shape changes; then the
  activation), global average pooling, Linear. blocks (3, 3, 3) is ResNet-20.

Context: input_shape, outputs, activation (a factory), gain (of the activation, for
the init), init, norm (factory or None), dropout (p), generator (for the init). Hidden
layers are initialised knowing the activation that follows them (gain-aware inits may
use its gain), the output layer as one no activation follows (gain 1), GRU matrices gate
by gate with gain 1 (their gates are sigmoid/tanh whatever the activation). Dropout
masks come from the trial's own generator (`nnbench.components.regularizers.Dropout`).

Which axes a model uses: every model takes the init (every Linear, Conv and GRU is
initialised by it, and its weights are what L1/L2 and the diagnostics see). A model
that ignores activation, norm or dropout for some parameters says so in
`attrs["ignored_axes"](params) -> {axis: why}` (`ignored_axes(spec)`): logistic (no
hidden layer) ignores all three, a GRU without head layers ignores activation and norm.
Validation rejects a suite that varies an axis every configuration's model ignores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from nnbench import registry
from nnbench.components.inits import OUTPUT, Gain, InitFn
from nnbench.components.regularizers import Dropout, NormFactory
from nnbench.registry import ComponentInfo, ComponentSpec, NoParams, Params, register

__all__ = ["ignored_axes"]

KIND = "model"
Width = Annotated[int, Field(ge=1)]
LINEAR: Gain = OUTPUT  # the output layer: no activation follows it, gain 1
Factory = Callable[[], nn.Module]
NO_HIDDEN_LAYER = "it has no hidden layer"


def ignored_axes(spec: ComponentSpec) -> dict[str, str]:
    """{axis: why} for the activation / norm / dropout axes the model value does not use."""
    info = registry.get(KIND, spec.name)
    ignored: Callable[[Any], dict[str, str]] | None = info.attrs.get("ignored_axes")
    return dict(ignored(info.params.model_validate(spec.kwargs))) if ignored else {}


class MLPParams(Params):
    hidden: tuple[Width, ...] = Field(
        (256, 128), description="width of each hidden layer, input to output")


class CNNParams(Params):
    channels: tuple[Width, ...] = Field((16, 32), min_length=1,
                                        description="output channels of each conv block")
    kernel_size: int = Field(3, ge=1, description="square kernel; 'same' padding")
    hidden: tuple[Width, ...] = Field((64,), description="fully connected layers after the convs")


def _block(layer: nn.Module, features: int, activation: Factory, norm: NormFactory | None,
           dropout: float) -> list[nn.Module]:
    """layer -> [norm] -> activation -> [dropout]: the notes' order. Conv layers get the
    norm and dropout of their dimensionality (per channel)."""
    dims = 2 if isinstance(layer, nn.Conv2d) else 1
    modules = [layer]
    if norm is not None:
        modules.append(norm(features, dims))
    modules.append(activation())
    if dropout > 0:
        # whole channels after a convolution (as Dropout1d/2d), single units otherwise
        modules.append(Dropout(dropout, spatial=isinstance(layer, nn.Conv1d | nn.Conv2d)))
    return modules


def _head(width: int, hidden: tuple[int, ...], outputs: int, activation: Factory,
          norm: NormFactory | None, dropout: float) -> tuple[list[nn.Module], list[nn.Linear]]:
    modules: list[nn.Module] = []
    linears: list[nn.Linear] = []
    for size in hidden:
        linear = nn.Linear(width, size)
        linears.append(linear)
        modules += _block(linear, size, activation, norm, dropout)
        width = size
    out = nn.Linear(width, outputs)
    linears.append(out)
    return [*modules, out], linears


def _initialise(layers: list[nn.Module], gain: Gain, init: InitFn,
                generator: torch.Generator) -> None:
    """Hidden layers with the activation's gain, the last (output) layer with gain 1."""
    for i, layer in enumerate(layers):
        init(layer, LINEAR if i == len(layers) - 1 else gain, generator)


def _no_hidden(hidden: tuple[int, ...]) -> dict[str, str]:
    if hidden:
        return {}
    return {"activation": NO_HIDDEN_LAYER, "norm": NO_HIDDEN_LAYER, "dropout": NO_HIDDEN_LAYER}


# -- logistic, mlp, cnn --------------------------------------------------------------------

def _build_mlp(params: MLPParams, *, input_shape: tuple[int, ...], outputs: int,
               activation: Factory, gain: Gain, init: InitFn,
               norm: NormFactory | None, dropout: float, generator: torch.Generator) -> nn.Module:
    modules, linears = _head(math.prod(input_shape), params.hidden, outputs, activation, norm,
                             dropout)
    _initialise(list(linears), gain, init, generator)
    return nn.Sequential(nn.Flatten(), *modules)


def _build_logistic(params: NoParams, **context: Any) -> nn.Module:
    return _build_mlp(MLPParams(hidden=()), **context)


def _build_cnn(params: CNNParams, *, input_shape: tuple[int, ...], outputs: int,
               activation: Factory, gain: Gain, init: InitFn,
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
        modules += [*_block(conv, out_channels, activation, norm, dropout), nn.MaxPool2d(2)]
        channels, height, width = out_channels, height // 2, width // 2
    head, linears = _head(channels * height * width, params.hidden, outputs, activation, norm,
                          dropout)
    _initialise([*layers, *linears], gain, init, generator)
    return nn.Sequential(*modules, nn.Flatten(), *head)


# -- cnn1d: the MNIST-1D paper's conv net ------------------------------------------------------

class CNN1DParams(Params):
    channels: tuple[Width, ...] = Field((25, 25, 25), min_length=1,
                                        description="output channels of each conv layer")
    kernel_sizes: tuple[Width, ...] = Field((5, 3, 3), min_length=1,
                                            description="kernel of each conv layer")
    stride: int = Field(2, ge=1, description="stride of every conv layer")
    padding: int = Field(1, ge=0, description="zeros added at both ends, every conv layer")
    hidden: tuple[Width, ...] = Field((), description="fully connected layers after the convs")

    @model_validator(mode="after")
    def _one_kernel_per_layer(self) -> CNN1DParams:
        if len(self.kernel_sizes) != len(self.channels):
            raise ValueError(f"one kernel size per conv layer: channels has "
                             f"{len(self.channels)} entries, kernel_sizes "
                             f"{len(self.kernel_sizes)}")
        return self


def _signal_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(channels, length) of a signal input: (L,) is one channel."""
    if len(input_shape) == 1:
        return 1, input_shape[0]
    if len(input_shape) == 2:
        return input_shape[0], input_shape[1]
    raise ValueError(f"{name} needs signal inputs (L,) or (C, L), the dataset gives "
                     f"{input_shape}")


def _build_cnn1d(params: CNN1DParams, *, input_shape: tuple[int, ...], outputs: int,
                 activation: Factory, gain: Gain, init: InitFn,
                 norm: NormFactory | None, dropout: float,
                 generator: torch.Generator) -> nn.Module:
    channels, length = _signal_shape("cnn1d", input_shape)
    modules: list[nn.Module] = [nn.Unflatten(1, (1, length))] if len(input_shape) == 1 else []
    layers: list[nn.Module] = []
    for i, (out_channels, kernel) in enumerate(zip(params.channels, params.kernel_sizes,
                                                   strict=True)):
        out_length = (length + 2 * params.padding - kernel) // params.stride + 1
        if out_length < 1:
            raise ValueError(f"cnn1d layer {i + 1} (kernel {kernel}, stride {params.stride}, "
                             f"padding {params.padding}) leaves nothing of a {length}-long "
                             f"input; use fewer layers or smaller kernels")
        conv = nn.Conv1d(channels, out_channels, kernel, stride=params.stride,
                         padding=params.padding)
        layers.append(conv)
        modules += _block(conv, out_channels, activation, norm, dropout)
        channels, length = out_channels, out_length
    head, linears = _head(channels * length, params.hidden, outputs, activation, norm, dropout)
    _initialise([*layers, *linears], gain, init, generator)
    return nn.Sequential(*modules, nn.Flatten(), *head)


# -- gru ---------------------------------------------------------------------------------------

class GRUParams(Params):
    hidden_size: int = Field(6, ge=1, description="units per direction")
    layers: int = Field(1, ge=1, le=64,  # validate's dry build of 1,000 took 21 s and 2 GB
                        description="stacked GRU layers (dropout between them)")
    bidirectional: bool = Field(True, description="read the signal both ways")
    readout: Literal["flatten", "last", "mean"] = Field(
        "flatten", description="flatten: every step's outputs (the paper); last: the final "
                               "hidden state; mean: the average over steps")
    hidden: tuple[Width, ...] = Field((), description="fully connected layers before the output")


class GRUNet(nn.Module):
    """GRU over the steps of a signal, then a readout and the head."""

    def __init__(self, gru: nn.GRU, dropout: float, readout: str, head: list[nn.Module]) -> None:
        super().__init__()
        self.gru = gru
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        self.readout = readout
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.unsqueeze(-1) if x.dim() == 2 else x.transpose(1, 2)  # (N, L, C)
        out, last = self.gru(steps)  # (N, L, D·H), (layers·D, N, H)
        if self.readout == "flatten":
            features = self.dropout(out).flatten(1)
        elif self.readout == "mean":
            features = self.dropout(out).mean(dim=1)
        else:  # the last layer's final state of each direction
            directions = 2 if self.gru.bidirectional else 1
            features = self.dropout(last[-directions:].transpose(0, 1).flatten(1))
        result: torch.Tensor = self.head(features)
        return result


def _build_gru(params: GRUParams, *, input_shape: tuple[int, ...], outputs: int,
               activation: Factory, gain: Gain, init: InitFn,
               norm: NormFactory | None, dropout: float, generator: torch.Generator) -> nn.Module:
    channels, length = _signal_shape("gru", input_shape)
    gru = nn.GRU(channels, params.hidden_size, num_layers=params.layers, batch_first=True,
                 bidirectional=params.bidirectional, dropout=dropout if params.layers > 1 else 0)
    width = params.hidden_size * (2 if params.bidirectional else 1)
    if params.readout == "flatten":
        width *= length
    head, linears = _head(width, params.hidden, outputs, activation, norm, dropout)
    init(gru, LINEAR, generator)
    _initialise(list(linears), gain, init, generator)
    return GRUNet(gru, dropout, params.readout, head)


def _gru_ignores(params: GRUParams) -> dict[str, str]:
    if params.hidden:
        return {}
    return {"activation": "its gates use fixed sigmoid and tanh; add head layers "
                          "(hidden: [64]) for an activation to act on",
            "norm": "it has no layer to normalize; add head layers (hidden: [64])"}


# -- resnet --------------------------------------------------------------------------------------

class ResNetParams(Params):
    blocks: tuple[Width, ...] = Field((3, 3, 3), min_length=1,
                                      description="basic blocks per stage; (3, 3, 3) is "
                                                  "ResNet-20, (5, 5, 5) ResNet-32")
    widths: tuple[Width, ...] = Field((16, 32, 64), min_length=1,
                                      description="channels of each stage; each stage after "
                                                  "the first halves the resolution")

    @model_validator(mode="after")
    def _one_width_per_stage(self) -> ResNetParams:
        if len(self.widths) != len(self.blocks):
            raise ValueError(f"one width per stage: blocks has {len(self.blocks)} entries, "
                             f"widths {len(self.widths)}")
        return self


class BasicBlock(nn.Module):
    """conv3×3 -> [norm] -> act -> [Dropout2d] -> conv3×3 -> [norm], + shortcut, -> act."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: Factory,
                 norm: NormFactory | None, dropout: float) -> None:
        super().__init__()
        bias = norm is None  # a norm layer's shift makes a conv bias redundant

        def normed(channels: int) -> nn.Module:
            return norm(channels, 2) if norm is not None else nn.Identity()

        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias)
        self.norm1 = normed(out_channels)
        self.act1 = activation()
        self.dropout = Dropout(dropout, spatial=True) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias)
        self.norm2 = normed(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias), normed(out_channels))
        self.act2 = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.act1(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        result: torch.Tensor = self.act2(out + self.shortcut(x))
        return result


def _build_resnet(params: ResNetParams, *, input_shape: tuple[int, ...], outputs: int,
                  activation: Factory, gain: Gain, init: InitFn,
                  norm: NormFactory | None, dropout: float,
                  generator: torch.Generator) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError(f"resnet needs image inputs (C, H, W), the dataset gives {input_shape}")
    channels, height, width = input_shape
    if min(height, width) >> (len(params.blocks) - 1) < 1:
        raise ValueError(f"{len(params.blocks)} stages halve {height}×{width} inputs below "
                         f"1 pixel; use fewer stages")
    stem = nn.Conv2d(channels, params.widths[0], 3, 1, 1, bias=norm is None)
    modules: list[nn.Module] = [stem]
    if norm is not None:
        modules.append(norm(params.widths[0], 2))
    modules.append(activation())
    channels = params.widths[0]
    for stage, (blocks, out_channels) in enumerate(zip(params.blocks, params.widths,
                                                       strict=True)):
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            modules.append(BasicBlock(channels, out_channels, stride, activation, norm, dropout))
            channels = out_channels
    out = nn.Linear(channels, outputs)
    model = nn.Sequential(*modules, nn.AdaptiveAvgPool2d(1), nn.Flatten(), out)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    _initialise([*convs, out], gain, init, generator)
    return model


register(ComponentInfo(kind=KIND, name="logistic", build=_build_logistic,
                       attrs={"ignored_axes": lambda p: _no_hidden(())},
                       doc="no hidden layer: softmax/logistic regression on the inputs",
                       defaults="PyTorch's Linear"))
register(ComponentInfo(kind=KIND, name="mlp", build=_build_mlp, params=MLPParams,
                       attrs={"ignored_axes": lambda p: _no_hidden(p.hidden)},
                       doc="multilayer perceptron: Linear -> [norm] -> activation -> [dropout]",
                       defaults="the notes' MNIST MLP widths (256, 128) and layer order"))
register(ComponentInfo(kind=KIND, name="cnn", build=_build_cnn, params=CNNParams,
                       attrs={"input": "image"},
                       doc="small conv net: Conv -> [norm] -> act -> [Dropout2d] -> pool, "
                           "then an mlp head",
                       defaults="nnbench's own small net; PyTorch's Conv2d/MaxPool2d(2)"))
register(ComponentInfo(kind=KIND, name="cnn1d", build=_build_cnn1d, params=CNN1DParams,
                       attrs={"input": "signal"},
                       doc="1-D conv net for signals (MNIST-1D paper: 3 × 25 channels, "
                           "kernels 5/3/3, stride 2), then an mlp head",
                       defaults="the MNIST-1D paper's ConvBase (Greydanus 2020)"))
register(ComponentInfo(kind=KIND, name="gru", build=_build_gru, params=GRUParams,
                       attrs={"input": "signal", "ignored_axes": _gru_ignores},
                       doc="GRU over a signal's steps (MNIST-1D paper: bidirectional, 6 units, "
                           "every step read out), then an mlp head",
                       defaults="the MNIST-1D paper's GRUBase (Greydanus 2020)"))
register(ComponentInfo(kind=KIND, name="resnet", build=_build_resnet, params=ResNetParams,
                       attrs={"input": "image"},
                       doc="CIFAR-style ResNet (He et al. 2016): basic blocks, [norm] and "
                           "activation in each, global average pool",
                       defaults="ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2)"))
