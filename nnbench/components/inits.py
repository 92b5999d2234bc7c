"""Weight initialisations (registry kind "init").

build(params) -> `InitFn`, called once per Linear/Conv/GRU layer with the layer, the
gain of the activation that follows it (`(nonlinearity, param)` as
`torch.nn.init.calculate_gain` takes them; ("linear", None) for the output layer)
and the trial's init generator. Every init except `default` takes
`bias: zeros | default` (default keeps PyTorch's uniform(±1/√fan_in) bias, drawn from
the trial's seeded global RNG when the layer was built).

Recurrent layers (nn.GRU, nn.LSTM, nn.RNN) stack one matrix per gate in each
`weight_ih_l*` / `weight_hh_l*`: every init fills them gate by gate, so fan-in and
fan-out are those of one gate (input or hidden size -> hidden size); `default` is
the layer's own reset (uniform ±1/√hidden).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

import torch
from pydantic import Field, model_validator
from torch import nn

from nnbench.registry import ComponentInfo, NoParams, Params, register

KIND = "init"
Gain = tuple[str, float | None]


class InitFn(Protocol):
    def __call__(self, layer: nn.Module, gain: Gain, generator: torch.Generator) -> None: ...


class BiasParams(Params):
    bias: Literal["zeros", "default"] = Field(
        "zeros", description="zeros, or PyTorch's default uniform(±1/√fan_in)")


class UniformParams(BiasParams):
    a: float = Field(-0.05, description="lower bound")
    b: float = Field(0.05, description="upper bound")

    @model_validator(mode="after")
    def _ordered(self) -> UniformParams:
        if not self.a < self.b:
            raise ValueError(f"needs a < b, got a={self.a}, b={self.b}")
        return self


class NormalParams(BiasParams):
    mean: float = Field(0.0, description="mean of the weights")
    std: float = Field(0.01, gt=0, description="standard deviation of the weights")


class ConstantParams(BiasParams):
    value: float = Field(..., description="every weight gets this value")


class XavierParams(BiasParams):
    gain_from_activation: bool = Field(
        True, description="scale by calculate_gain(activation); False uses gain 1")


class KaimingParams(BiasParams):
    mode: Literal["fan_in", "fan_out"] = Field(
        "fan_in", description="preserve variance forward (fan_in) or backward (fan_out)")


def _calculate_gain(gain: Gain) -> float:
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
        nonlinearity: Any = gain[0]
        fill(w, a=gain[1] or 0.0, mode=p.mode, nonlinearity=nonlinearity, generator=g)
    return run


def _xavier(fill: Callable[..., torch.Tensor]) -> Callable[..., None]:
    def run(w: torch.Tensor, p: XavierParams, gain: Gain, g: torch.Generator) -> None:
        fill(w, gain=_calculate_gain(gain) if p.gain_from_activation else 1.0, generator=g)
    return run


def _build_default(_params: NoParams) -> InitFn:
    def apply(layer: nn.Module, gain: Gain, generator: torch.Generator) -> None:
        reset = getattr(layer, "reset_parameters", None)
        if reset is None:
            raise TypeError(f"{type(layer).__name__} has no reset_parameters()")
        reset()  # draws from the trial's seeded global RNG
    return apply


def _add(name: str, doc: str, params: type[Params], fill: Callable[..., object]) -> None:
    register(ComponentInfo(kind=KIND, name=name, build=_weight_init(fill), doc=doc,
                           params=params, example={"value": 0.1} if name == "constant" else {}))


register(ComponentInfo(kind=KIND, name="default", build=_build_default,
                       doc="PyTorch's own layer reset (kaiming_uniform a=√5, uniform bias)"))
_add("uniform", "U(a, b)", UniformParams,
     lambda w, p, gain, g: nn.init.uniform_(w, p.a, p.b, generator=g))
_add("normal", "N(mean, std²)", NormalParams,
     lambda w, p, gain, g: nn.init.normal_(w, p.mean, p.std, generator=g))
_add("zeros", "all weights 0 (symmetric: hidden units stay identical)", BiasParams,
     lambda w, p, gain, g: nn.init.zeros_(w))
_add("ones", "all weights 1 (symmetric: hidden units stay identical)", BiasParams,
     lambda w, p, gain, g: nn.init.ones_(w))
_add("constant", "all weights = value", ConstantParams,
     lambda w, p, gain, g: nn.init.constant_(w, p.value))
_add("xavier_uniform", "Glorot & Bengio 2010: U(±gain·√(6/(fan_in+fan_out)))", XavierParams,
     _xavier(nn.init.xavier_uniform_))
_add("xavier_normal", "Glorot & Bengio 2010: N(0, gain²·2/(fan_in+fan_out))", XavierParams,
     _xavier(nn.init.xavier_normal_))
_add("kaiming_uniform", "He et al. 2015: U(±gain·√(3/fan)), gain from the activation",
     KaimingParams, _kaiming(nn.init.kaiming_uniform_))
_add("kaiming_normal", "He et al. 2015: N(0, gain²/fan), gain from the activation",
     KaimingParams, _kaiming(nn.init.kaiming_normal_))
