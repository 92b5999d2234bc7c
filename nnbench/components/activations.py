"""Activation functions (registry kind "activation"): build(params) -> nn.Module.

`attrs["gain"](params)` gives the (nonlinearity, param) pair under which
`torch.nn.init.calculate_gain` knows the activation, so gain-aware inits (xavier,
kaiming) follow it; activations PyTorch defines no gain for use "linear" (gain 1).
`attrs["family"]` says which diagnostic applies: "relu" (dead units) or "saturating"
(saturated units). Output activations are not here: the loss owns them (no softmax
before cross-entropy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator
from torch import nn

from nnbench.messages import first_line
from nnbench.registry import ComponentInfo, NoParams, Params, register

KIND = "activation"
Gain = tuple[str, float | None]


def _add(name: str, build: Callable[[Any], nn.Module], doc: str, *,
         gain: Callable[[Any], Gain], family: str | None = None,
         params: type[Params] = NoParams) -> None:
    module = type(build(params()))
    register(ComponentInfo(kind=KIND, name=name, build=build, doc=doc, params=params,
                           attrs={"gain": gain, "family": family},
                           defaults=f"torch.nn.{module.__name__}'s defaults"))


class LeakyReLUParams(Params):
    negative_slope: float = Field(0.01, ge=0, lt=1, description="slope for x < 0")

    @field_validator("negative_slope")
    @classmethod
    def _not_relu(cls, slope: float) -> float:
        if slope == 0:  # beside relu in a grid, two configurations trained bit for bit alike
            raise ValueError("a slope of 0 is relu; allowed: a slope in (0, 1), or activation "
                             "relu")
        return slope


class ELUParams(Params):
    alpha: float = Field(1.0, gt=0, description="saturation value for x -> -inf is -alpha")


class GELUParams(Params):
    approximate: Literal["none", "tanh"] = Field("none", description="exact erf or tanh form")


_add("identity", lambda p: nn.Identity(), "f(x) = x (a linear network)",
     gain=lambda p: ("linear", None))
_add("sigmoid", lambda p: nn.Sigmoid(), "1 / (1 + e^-x); saturates, gradients vanish in deep nets",
     gain=lambda p: ("sigmoid", None), family="saturating")
_add("tanh", lambda p: nn.Tanh(), "(e^x - e^-x) / (e^x + e^-x); zero-centred, saturates",
     gain=lambda p: ("tanh", None), family="saturating")
_add("relu", lambda p: nn.ReLU(), "max(0, x); units can die",
     gain=lambda p: ("relu", None), family="relu")
_add("leaky_relu", lambda p: nn.LeakyReLU(p.negative_slope),
     "max(0, x) + negative_slope · min(0, x)", params=LeakyReLUParams,
     gain=lambda p: ("leaky_relu", p.negative_slope), family="relu")
_add("elu", lambda p: nn.ELU(p.alpha), "x if x > 0 else alpha · (e^x - 1)", params=ELUParams,
     gain=lambda p: ("linear", None), family="relu")
_add("selu", lambda p: nn.SELU(), "scaled ELU (Klambauer et al. 2017), self-normalising",
     gain=lambda p: ("selu", None), family="relu")
_add("gelu", lambda p: nn.GELU(approximate=p.approximate), "x · Φ(x) (Hendrycks & Gimpel 2016)",
     params=GELUParams, gain=lambda p: ("linear", None), family="relu")
_add("silu", lambda p: nn.SiLU(), "x · sigmoid(x), a.k.a. swish",
     gain=lambda p: ("linear", None), family="relu")


class GainError(ValueError):
    """An activation's `attrs["gain"]` gave what `calculate_gain` does not take."""


def gain_of(spec_name: str, params: Any) -> Gain:
    """The calculate_gain arguments for an activation with its parameters; GainError
    naming the activation when they are not such (a plugin's bug, found at registration
    for its example parameters, here for others)."""
    from nnbench.registry import gain_problem, get

    gain: Callable[[Any], Gain] = get(KIND, spec_name).attrs["gain"]
    given = gain(params)
    problem = gain_problem(given)
    if problem is not None:
        raise GainError(f"activation {spec_name!r}: its attrs['gain'] gave {given!r} for "
                        f"these parameters, which torch.nn.init.calculate_gain does not take "
                        f"({first_line(problem)})")
    return given
