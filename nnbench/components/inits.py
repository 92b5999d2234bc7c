"""Weight initialisations (registry kind "init").

build(params) -> `InitFn`, called once per Linear/Conv/GRU layer with the layer, the
gain of the activation that follows it (`(nonlinearity, param)` as
`torch.nn.init.calculate_gain` takes them; `OUTPUT` for the output layer, which no
activation follows) and the trial's init generator. Every init except `default` takes
`bias: zeros | default` (default keeps PyTorch's uniform(±1/√fan_in) bias, drawn from
the trial's seeded global RNG when the layer was built).

Defaults are PyTorch's (and the notes', which call `nn.init.*_` with defaults):

- `xavier_*`: gain 1 (Glorot & Bengio 2010; `xavier_normal_(w)`); `gain: activation`
  scales by the following activation's `calculate_gain` instead (with ReLU that is √2,
  which makes "xavier" nearly He's init: ask for it explicitly);
- `kaiming_*`: `nonlinearity: leaky_relu, a: 0`, i.e. He et al.'s ReLU gain √2
  (`kaiming_normal_(w)`); `nonlinearity: activation` takes the following activation's
  gain (tanh 5/3, selu 3/4, leaky_relu's slope; 1 where PyTorch defines none);
- `uniform`: U(0, 1); `normal`: N(0, 1) (`uniform_(w)`, `normal_(w)`).

The output layer always gets gain 1 (`calculate_gain("linear")`): no activation follows it.

Recurrent layers (nn.GRU, nn.LSTM, nn.RNN) stack one matrix per gate in each
`weight_ih_l*` / `weight_hh_l*`: every init fills them gate by gate, so fan-in and
fan-out are those of one gate (input or hidden size -> hidden size); `default` is
the layer's own reset (uniform ±1/√hidden).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol

import torch
from pydantic import Field, model_validator
from torch import nn

from nnbench.registry import ComponentInfo, NoParams, Params, register

KIND = "init"
Gain = tuple[str, float | None]
OUTPUT: Gain = ("output", None)  # the layer no activation follows: gain 1
NONLINEARITIES = ("leaky_relu", "relu", "linear", "sigmoid", "tanh", "selu", "activation")


class InitFn(Protocol):
    def __call__(self, layer: nn.Module, gain: Gain, generator: torch.Generator) -> None: ...


class BiasParams(Params):
    bias: Literal["zeros", "default"] = Field(
        "zeros", description="zeros, or PyTorch's default uniform(±1/√fan_in)")


class UniformParams(BiasParams):
    a: float = Field(0.0, description="lower bound (torch.nn.init.uniform_'s default)")
    b: float = Field(1.0, description="upper bound (torch.nn.init.uniform_'s default)")

    @model_validator(mode="after")
    def _ordered(self) -> UniformParams:
        if not self.a < self.b:
            raise ValueError(f"needs a < b, got a={self.a}, b={self.b}")
        return self


class NormalParams(BiasParams):
    mean: float = Field(0.0, description="mean of the weights")
    std: float = Field(1.0, gt=0, description="standard deviation of the weights "
                                              "(torch.nn.init.normal_'s default)")


class ConstantParams(BiasParams):
    value: float = Field(..., description="every weight gets this value")


class XavierParams(BiasParams):
    gain: Annotated[float, Field(gt=0)] | Literal["activation"] = Field(
        1.0, description="scale factor of hidden layers: 1 as Glorot & Bengio and PyTorch; "
                         "'activation': calculate_gain of the activation that follows")


class KaimingParams(BiasParams):
    mode: Literal["fan_in", "fan_out"] = Field(
        "fan_in", description="preserve variance forward (fan_in) or backward (fan_out)")
    nonlinearity: Literal["leaky_relu", "relu", "linear", "sigmoid", "tanh", "selu",
                          "activation"] = Field(
        "leaky_relu", description="gain of hidden layers as calculate_gain(nonlinearity, a); "
                                  "PyTorch's default leaky_relu with a=0 is ReLU's √2; "
                                  "'activation': the gain of the activation that follows")
    a: float = Field(0.0, ge=0, description="negative slope, for nonlinearity leaky_relu only")

    @model_validator(mode="after")
    def _slope_needs_leaky_relu(self) -> KaimingParams:
        if self.a and self.nonlinearity != "leaky_relu":
            raise ValueError(f"a={self.a} is only used with nonlinearity leaky_relu, not "
                             f"{self.nonlinearity!r}: it would have no effect")
        return self


def _calculate_gain(gain: Gain) -> float:
    if gain == OUTPUT:
        return 1.0
    nonlinearity: Any = gain[0]  # torch types it as a Literal of the names it knows
    return nn.init.calculate_gain(nonlinearity, gain[1])


def weights_and_biases(layer: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The weight matrices an init fills (one per gate for recurrent layers) and the biases."""
    if isinstance(layer, nn.RNNBase):
        gates = {"GRU": 3, "LSTM": 4}.get(type(layer).__name__, 1)
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []
        for name, param in layer.named_parameters():
            if name.startswith("weight_"):
                weights += list(param.chunk(gates, dim=0))  # views: filled in place
            elif name.startswith("bias_"):
                biases.append(param)
        return weights, biases
    weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"cannot initialise {type(layer).__name__}: no weight tensor")
    return [weight], [bias] if isinstance(bias, torch.Tensor) else []


def _weight_init(fill: Callable[[torch.Tensor, Any, Gain, torch.Generator], object]
                 ) -> Callable[[Any], InitFn]:
    """Wrap a weight filler into a builder that also handles the bias option."""

    def build(params: Any) -> InitFn:
        def apply(layer: nn.Module, gain: Gain, generator: torch.Generator) -> None:
            weights, biases = weights_and_biases(layer)
            with torch.no_grad():
                for weight in weights:
                    fill(weight, params, gain, generator)
                if params.bias == "zeros":
                    for bias in biases:
                        nn.init.zeros_(bias)
        return apply

    return build


def _kaiming(fill: Callable[..., torch.Tensor]) -> Callable[..., None]:
    def run(w: torch.Tensor, p: KaimingParams, gain: Gain, g: torch.Generator) -> None:
        if gain == OUTPUT:
            nonlinearity, a = "linear", 0.0
        elif p.nonlinearity == "activation":
            nonlinearity, a = gain[0], gain[1] or 0.0
        else:
            nonlinearity, a = p.nonlinearity, p.a
        fill(w, a=a, mode=p.mode, nonlinearity=nonlinearity, generator=g)
    return run


def _xavier(fill: Callable[..., torch.Tensor]) -> Callable[..., None]:
    def run(w: torch.Tensor, p: XavierParams, gain: Gain, g: torch.Generator) -> None:
        if gain == OUTPUT:
            scale = 1.0
        elif p.gain == "activation":
            scale = _calculate_gain(gain)
        else:
            scale = p.gain
        fill(w, gain=scale, generator=g)
    return run


def _build_default(_params: NoParams) -> InitFn:
    def apply(layer: nn.Module, gain: Gain, generator: torch.Generator) -> None:
        reset = getattr(layer, "reset_parameters", None)
        if reset is None:
            raise TypeError(f"{type(layer).__name__} has no reset_parameters()")
        reset()  # draws from the trial's seeded global RNG
    return apply


def _add(name: str, doc: str, params: type[Params], fill: Callable[..., object],
         defaults: str) -> None:
    register(ComponentInfo(kind=KIND, name=name, build=_weight_init(fill), doc=doc,
                           params=params, example={"value": 0.1} if name == "constant" else {},
                           defaults=f"{defaults}; bias 0 as in Glorot & Bengio and He et al. "
                                    f"(the notes keep PyTorch's uniform bias: bias: default)"))


register(ComponentInfo(kind=KIND, name="default", build=_build_default,
                       doc="PyTorch's own layer reset (kaiming_uniform a=√5, uniform bias)",
                       defaults="PyTorch's reset_parameters(), unchanged"))
_add("uniform", "U(a, b)", UniformParams,
     lambda w, p, gain, g: nn.init.uniform_(w, p.a, p.b, generator=g),
     "torch.nn.init.uniform_ and the notes: U(0, 1)")
_add("normal", "N(mean, std²)", NormalParams,
     lambda w, p, gain, g: nn.init.normal_(w, p.mean, p.std, generator=g),
     "torch.nn.init.normal_ and the notes: N(0, 1)")
_add("zeros", "all weights 0 (symmetric: hidden units stay identical)", BiasParams,
     lambda w, p, gain, g: nn.init.zeros_(w), "torch.nn.init.zeros_")
_add("ones", "all weights 1 (symmetric: hidden units stay identical)", BiasParams,
     lambda w, p, gain, g: nn.init.ones_(w), "torch.nn.init.ones_")
_add("constant", "all weights = value", ConstantParams,
     lambda w, p, gain, g: nn.init.constant_(w, p.value),
     "torch.nn.init.constant_ (value required; the notes use 5)")
_add("xavier_uniform", "Glorot & Bengio 2010: U(±gain·√(6/(fan_in+fan_out)))", XavierParams,
     _xavier(nn.init.xavier_uniform_),
     "torch.nn.init.xavier_uniform_ and the notes: gain 1 (gain: activation to scale)")
_add("xavier_normal", "Glorot & Bengio 2010: N(0, gain²·2/(fan_in+fan_out))", XavierParams,
     _xavier(nn.init.xavier_normal_),
     "torch.nn.init.xavier_normal_ and the notes: gain 1 (gain: activation to scale)")
_add("kaiming_uniform", "He et al. 2015: U(±gain·√(3/fan)), gain √2 (ReLU) unless told",
     KaimingParams, _kaiming(nn.init.kaiming_uniform_),
     "torch.nn.init.kaiming_uniform_ and the notes: fan_in, leaky_relu with a=0 (gain √2)")
_add("kaiming_normal", "He et al. 2015: N(0, gain²/fan), gain √2 (ReLU) unless told",
     KaimingParams, _kaiming(nn.init.kaiming_normal_),
     "torch.nn.init.kaiming_normal_ and the notes: fan_in, leaky_relu with a=0 (gain √2)")
