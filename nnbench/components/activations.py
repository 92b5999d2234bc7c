"""Activation functions (registry kind "activation"): build(params) -> nn.Module.

`attrs["nonlinearity"]` is the name `torch.nn.init.calculate_gain` knows the
activation by, so gain-aware inits (xavier, kaiming) follow the activation.
Output activations are not here: the loss owns them (no softmax before
cross-entropy).
"""

from __future__ import annotations

from torch import nn

from nnbench.registry import ComponentInfo, NoParams, register

KIND = "activation"


def _simple(name: str, module: type[nn.Module], doc: str, nonlinearity: str) -> None:
    register(ComponentInfo(kind=KIND, name=name, build=lambda _params: module(), doc=doc,
                           params=NoParams, attrs={"nonlinearity": nonlinearity}))


_simple("sigmoid", nn.Sigmoid, "1 / (1 + e^-x); saturates, gradients vanish in deep nets",
        "sigmoid")
_simple("tanh", nn.Tanh, "(e^x - e^-x) / (e^x + e^-x); zero-centred, saturates", "tanh")
_simple("relu", nn.ReLU, "max(0, x); units can die", "relu")
