"""The public component contract (nnbench.testing) over every registered component.

Adding a component adds it here automatically: `parametrize_with_checks` makes one case
per component and check (registration, resolving its example, its kind's behaviour,
each bounded parameter refusing an out-of-range value), exactly the checks a user runs
on their own components. Below: the checks catch broken components, with messages that
say what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import Field
from torch import nn

from nnbench import registry
from nnbench.registry import ComponentInfo, Params
from nnbench.testing import (
    CONTRACTS,
    ContractError,
    check_component,
    component_checks,
    isolated_registry,
    out_of_range_values,
    parametrize_with_checks,
)

ALL = list(registry.list_components())


def test_every_kind_has_a_contract() -> None:
    assert set(registry.kinds()) == set(CONTRACTS) == set(registry.KINDS)


@parametrize_with_checks(ALL)
def test_component_contract(info: ComponentInfo, check: object, vision_data: Path) -> None:
    check(info)  # type: ignore[operator]


def test_bad_values_cover_the_issue_examples() -> None:
    probed = {(i.kind, i.name, p) for i in ALL for p, _ in out_of_range_values(i)}
    assert ("schedule", "step", "gamma") in probed  # a gamma of 0
    assert ("norm", "batchnorm", "momentum") in probed
    assert ("optimizer", "sgd", "lr") in probed


def test_checks_are_named_per_component() -> None:
    names = [c.name for c in component_checks(registry.get("optimizer", "sgd"))]
    assert names[:3] == ["registration", "resolves", "optimizer"]
    assert "rejects lr=0" in names


# -- the checks catch broken components ----------------------------------------------------

class WidthParams(Params):
    width: int = Field(8, ge=1, description="hidden units")


def _forgets_init(params: WidthParams, *, input_shape: tuple[int, ...], outputs: int,
                  activation: Any, gain: Any, init: Any, norm: Any, dropout: float,
                  generator: torch.Generator) -> nn.Module:
    """Uses activation, norm and dropout, initialises its output layer only."""
    hidden = nn.Linear(12, params.width)
    out = nn.Linear(params.width, outputs)
    init(out, ("linear", None), generator)
    return nn.Sequential(nn.Flatten(), hidden, *([norm(params.width, 1)] if norm else []),
                         activation(), nn.Dropout(dropout), out)


def _uses_plain_relu(params: WidthParams, **context: Any) -> nn.Module:
    model = _forgets_init(params, **context)
    assert isinstance(model, nn.Sequential)
    model[-3] = nn.ReLU()  # not the activation it was given
    return model


def test_a_model_that_skips_the_init_or_the_activation_fails() -> None:
    info = ComponentInfo(kind="model", name="forgetful", build=_forgets_init,
                         params=WidthParams, doc="a model that forgets an init",
                         source="tests")
    with pytest.raises(ContractError) as caught:
        check_component(info)
    assert str(caught.value) == (
        "model 'forgetful' (from tests) fails check 'model': weight layer 1 (Linear("
        "in_features=12, out_features=8, bias=True)) was not initialised by the init axis; "
        "call init(layer, gain, generator) on every weight layer")
    plain = ComponentInfo(kind="model", name="plain", build=_uses_plain_relu,
                          params=WidthParams, doc="a model with its own relu")
    with pytest.raises(ContractError, match="does not use the activation it is given"):
        check_component(plain)


def test_a_doc_with_a_period_and_a_bad_params_model_fail() -> None:
    info = ComponentInfo(kind="activation", name="wobbly", build=lambda p: nn.ReLU(),
                         doc="ends with a period.", attrs={"gain": lambda p: ("relu", None)})
    with pytest.raises(ContractError, match=r"doc 'ends with a period\.' ends with a period"):
        check_component(info)
    bad = ComponentInfo(kind="activation", name="wobbly", build=lambda p: nn.ReLU(),
                        doc="relu", params=dict,  # type: ignore[arg-type]
                        attrs={"gain": lambda p: ("relu", None)})
    with pytest.raises(ContractError, match=r"params must be a subclass of "
                                            r"nnbench\.registry\.Params"):
        check_component(bad)


def test_an_unchecked_bound_fails() -> None:
    class Loose(Params):
        scale: float = Field(1.0, gt=0, description="declared > 0")

    def build(p: Loose) -> nn.Module:
        return nn.ReLU()

    info = ComponentInfo(kind="activation", name="loose", build=build, params=Loose,
                         doc="relu", attrs={"gain": lambda p: ("relu", None)})
    checks = {c.name: c for c in component_checks(info)}
    checks["rejects scale=0"](info)  # pydantic enforces the declared bound


def test_isolated_registry_undoes_registrations() -> None:
    with isolated_registry():
        registry.register(ComponentInfo(kind="activation", name="tmp_act",
                                        build=lambda p: nn.ReLU(), doc="relu again",
                                        attrs={"gain": lambda p: ("relu", None)}))
        assert registry.get("activation", "tmp_act").source == __name__
    with pytest.raises(registry.UnknownComponentError):
        registry.get("activation", "tmp_act")
