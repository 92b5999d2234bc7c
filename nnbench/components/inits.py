"""Weight initialisations (registry kind "init").

build(params) -> `InitFn`, called once per Linear/Conv layer with the layer, the
nonlinearity that follows it (for the gain) and the trial's init generator.
Biases are set to zero by every init except `default`, which keeps PyTorch's
own reset (drawn from the trial's seeded global RNG).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import torch
from pydantic import Field
from torch import nn

from nnbench.registry import ComponentInfo, NoParams, Params, register

KIND = "init"


class InitFn(Protocol):
    def __call__(self, layer: nn.Module, nonlinearity: str, generator: torch.Generator) -> None:
        ...


def _weights(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"cannot initialise {type(layer).__name__}: it has no weight tensor")
    bias = getattr(layer, "bias", None)
    return weight, bias if isinstance(bias, torch.Tensor) else None


def _gain_name(nonlinearity: str) -> Any:
    """The activation's name as torch.nn.init spells it (checked there; typed Literal)."""
    return nonlinearity


def _zero_bias(bias: torch.Tensor | None) -> None:
    if bias is not None:
        nn.init.zeros_(bias)


class XavierParams(Params):
    gain_from_activation: bool = Field(
        True, description="scale by calculate_gain(activation); False uses gain 1")


def _build_xavier_normal(params: XavierParams) -> InitFn:
    def apply(layer: nn.Module, nonlinearity: str, generator: torch.Generator) -> None:
        weight, bias = _weights(layer)
        gain = 1.0
        if params.gain_from_activation:
            gain = nn.init.calculate_gain(_gain_name(nonlinearity))
        with torch.no_grad():
            nn.init.xavier_normal_(weight, gain=gain, generator=generator)
            _zero_bias(bias)
    return apply


class KaimingParams(Params):
    mode: Literal["fan_in", "fan_out"] = Field(
        "fan_in", description="preserve variance forward (fan_in) or backward (fan_out)")


def _build_kaiming_normal(params: KaimingParams) -> InitFn:
    def apply(layer: nn.Module, nonlinearity: str, generator: torch.Generator) -> None:
        weight, bias = _weights(layer)
        with torch.no_grad():
            nn.init.kaiming_normal_(weight, mode=params.mode,
                                    nonlinearity=_gain_name(nonlinearity),
                                    generator=generator)
            _zero_bias(bias)
    return apply


def _build_default(_params: NoParams) -> InitFn:
    def apply(layer: nn.Module, nonlinearity: str, generator: torch.Generator) -> None:
        reset = getattr(layer, "reset_parameters", None)
        if reset is None:
            raise TypeError(f"{type(layer).__name__} has no reset_parameters()")
        reset()
    return apply


register(ComponentInfo(
    kind=KIND, name="default", build=_build_default,
    doc="PyTorch's own layer reset (kaiming_uniform a=sqrt(5), uniform bias)"))
register(ComponentInfo(
    kind=KIND, name="xavier_normal", build=_build_xavier_normal, params=XavierParams,
    doc="Glorot & Bengio 2010: N(0, gain²·2/(fan_in+fan_out)), bias 0"))
register(ComponentInfo(
    kind=KIND, name="kaiming_normal", build=_build_kaiming_normal, params=KaimingParams,
    doc="He et al. 2015: N(0, gain²/fan), gain from the activation, bias 0"))
