"""A trial's checkpoint as a model that stands alone: what MLflow logs as the trial's model.

`servable(checkpoint)` rebuilds the checkpoint's model on the CPU with its trained weights,
in evaluation mode, behind the preprocessing that evaluation applies (the `always`
augmentations, i.e. `normalize` with the statistics of the trial's training split). It
takes inputs as the trial's dataset gives them (`input_example`: the first test examples)
and returns what the network returns: class logits, or predictions in the (possibly
standardized) target units the trial trained on.
"""

from __future__ import annotations

import io

import torch
from torch import nn

from nnbench import registry, seeding
from nnbench.components.augmentations import Augmentation
from nnbench.components.losses import Objective
from nnbench.config import TrialSpec
from nnbench.data import TensorData
from nnbench.train.build import always, build_model, fit_augmentations

__all__ = ["EXAMPLES", "Servable", "servable"]

EXAMPLES = 5  # test examples kept as the model's input example


class Servable(nn.Module):
    """`model(step_n(...step_1(x)))`: the trained network behind the evaluation-time
    preprocessing steps (each an `always` augmentation fitted on the training split)."""

    def __init__(self, model: nn.Module, steps: list[Augmentation]) -> None:
        super().__init__()
        self.model = model
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step.apply(x, {})
        out: torch.Tensor = self.model(x)
        return out


def servable(checkpoint: bytes) -> tuple[Servable, torch.Tensor]:
    """The checkpoint's model on the CPU in eval mode, and an input example for it."""
    cpu = torch.device("cpu")
    state = torch.load(io.BytesIO(checkpoint), map_location=cpu, weights_only=True)
    spec = TrialSpec.from_canonical(state["spec"])
    with seeding.trial_rng(spec.seed_of("init"), cpu):  # draws nothing from the caller's RNG
        data: TensorData = registry.build("dataset", spec.dataset, seed=spec.seed_of("split"),
                                          device=cpu)
        steps = always(fit_augmentations(spec, data))
        objective: Objective = registry.build("loss", spec.loss)
        model = build_model(spec, data.input_shape,
                            objective.num_outputs(data.num_classes, data.target_dim))
    model.load_state_dict(state["model"])
    return Servable(model, steps).eval(), data.x_test[:EXAMPLES].clone()
