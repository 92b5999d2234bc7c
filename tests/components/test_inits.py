"""Inits do what PyTorch's `nn.init` functions (and the notes, which call them with their
defaults) do: xavier with gain 1, kaiming with ReLU's gain √2, uniform U(0, 1), normal
N(0, 1); the activation's gain only when asked for; the output layer with gain 1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from nnbench import registry
from nnbench.components.inits import OUTPUT, Gain

TANH: Gain = ("tanh", None)
RELU: Gain = ("relu", None)


def _init(value: Any, gain: Gain, shape: tuple[int, int] = (64, 32)) -> torch.Tensor:
    layer = nn.Linear(shape[1], shape[0])
    registry.build("init", registry.resolve("init", value))(
        layer, gain, torch.Generator().manual_seed(7))
    return layer.weight.detach()


def _torch(fill: Callable[..., torch.Tensor], shape: tuple[int, int] = (64, 32),
           **kwargs: Any) -> torch.Tensor:
    weight = torch.empty(shape)
    fill(weight, generator=torch.Generator().manual_seed(7), **kwargs)
    return weight


@pytest.mark.parametrize("name", ["xavier_normal", "xavier_uniform"])
@pytest.mark.parametrize("gain", [RELU, TANH, ("sigmoid", None)])
def test_xavier_is_gain_one_whatever_the_activation(name: str, gain: Gain) -> None:
    fill = getattr(nn.init, f"{name}_")
    assert torch.equal(_init(name, gain), _torch(fill))  # = nn.init.xavier_*_(w)


def test_xavier_takes_the_activation_gain_only_when_asked() -> None:
    asked = _init({"name": "xavier_normal", "gain": "activation"}, RELU)
    assert torch.equal(asked, _torch(nn.init.xavier_normal_,
                                     gain=nn.init.calculate_gain("relu")))
    assert torch.equal(_init({"name": "xavier_normal", "gain": 2.0}, TANH),
                       _torch(nn.init.xavier_normal_, gain=2.0))


@pytest.mark.parametrize("name", ["kaiming_normal", "kaiming_uniform"])
@pytest.mark.parametrize("gain", [RELU, TANH, ("linear", None)])
def test_kaiming_is_pytorchs_default_call_whatever_the_activation(name: str,
                                                                  gain: Gain) -> None:
    fill = getattr(nn.init, f"{name}_")
    assert torch.equal(_init(name, gain), _torch(fill))  # = nn.init.kaiming_*_(w)


def test_kaiming_takes_the_activation_gain_only_when_asked() -> None:
    asked = _init({"name": "kaiming_normal", "nonlinearity": "activation"}, TANH)
    assert torch.equal(asked, _torch(nn.init.kaiming_normal_, nonlinearity="tanh"))
    leaky = _init({"name": "kaiming_normal", "a": 0.2}, TANH)
    assert torch.equal(leaky, _torch(nn.init.kaiming_normal_, a=0.2))


@pytest.mark.parametrize(("value", "gain"), [
    ("xavier_normal", 1.0), ({"name": "xavier_normal", "gain": "activation"}, 1.0),
    ("kaiming_normal", 1.0), ({"name": "kaiming_normal", "nonlinearity": "activation"}, 1.0),
])
def test_the_output_layer_gets_gain_one(value: Any, gain: float) -> None:
    weight = _init(value, OUTPUT, shape=(10, 4000))
    fan_in, fan_out = 4000, 10
    expected = gain * ((2 / (fan_in + fan_out)) ** 0.5 if "xavier" in str(value)
                       else (1 / fan_in) ** 0.5)
    assert float(weight.std()) == pytest.approx(expected, rel=0.05)


def test_xavier_and_kaiming_differ_under_relu_as_the_papers_say() -> None:
    """Glorot & Bengio: Var = 2/(fan_in+fan_out); He et al.: Var = 2/fan_in. With ReLU the
    old default (xavier scaled by ReLU's gain) made the two nearly the same."""
    fan_in, fan_out = 512, 512
    xavier = float(_init("xavier_normal", RELU, (fan_out, fan_in)).std())
    kaiming = float(_init("kaiming_normal", RELU, (fan_out, fan_in)).std())
    assert xavier == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.02)
    assert kaiming == pytest.approx((2 / fan_in) ** 0.5, rel=0.02)
    assert kaiming / xavier == pytest.approx(2 ** 0.5, rel=0.03)


def test_uniform_and_normal_default_to_pytorchs() -> None:
    assert torch.equal(_init("uniform", RELU), _torch(nn.init.uniform_))
    assert torch.equal(_init("normal", RELU), _torch(nn.init.normal_))


def test_a_slope_without_leaky_relu_is_rejected() -> None:
    with pytest.raises(registry.ComponentError, match="only used with nonlinearity leaky_relu"):
        registry.resolve("init", {"name": "kaiming_normal", "nonlinearity": "relu", "a": 0.1})
