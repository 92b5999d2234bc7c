"""The lab's components pass the same contract tests nnbench runs on its own registry.

    pytest examples/own_model        (from the repository root)
"""

from __future__ import annotations

import mylab_nets  # registers resmlp (pytest puts this folder on sys.path)

from nnbench import registry
from nnbench.registry import ComponentInfo
from nnbench.testing import Check, parametrize_with_checks

LAB = [info for info in registry.list_components() if info.source == mylab_nets.__name__]


def test_the_plugin_registered_its_model() -> None:
    assert [(i.kind, i.name) for i in LAB] == [("model", "resmlp")]


@parametrize_with_checks(LAB)
def test_contract(info: ComponentInfo, check: Check) -> None:
    check(info)
