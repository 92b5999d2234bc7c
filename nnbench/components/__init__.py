"""Training components, one module per kind; importing this package registers them all.

Each module registers `ComponentInfo` entries with `nnbench.registry.register`;
`nnbench list KIND` shows them. Components never import the runner, tracking or
tuning.
"""

from nnbench.components import (
    activations,
    augmentations,
    inits,
    losses,
    optimizers,
    regularizers,
    schedules,
)

__all__ = ["activations", "augmentations", "inits", "losses", "optimizers", "regularizers",
           "schedules"]
