"""Datasets (registry kind "dataset"): build(params, seed=..., device=...) -> TensorData.

Every dataset ends as tensors on the training device with a seeded train/val
split; the trainer indexes batches there. Raw arrays are generated or loaded
once per process and cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nnbench import seeding

__all__ = ["TensorData", "split_train_val"]


@dataclass(frozen=True)
class TensorData:
    """A dataset on the training device, split three ways."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def split_train_val(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                    y_test: torch.Tensor, *, val_fraction: float, num_classes: int, seed: int,
                    device: torch.device) -> TensorData:
    """Hold out `val_fraction` of the training examples, chosen by the trial's seed."""
    n_val = round(len(y) * val_fraction)
    if not 0 < n_val < len(y):
        raise ValueError(f"val_fraction={val_fraction} leaves no train or no val examples "
                         f"out of {len(y)}")
    order = torch.randperm(len(y), generator=seeding.generator(seed, "split"))
    val, train = order[:n_val], order[n_val:]
    return TensorData(
        x_train=x[train].to(device), y_train=y[train].to(device),
        x_val=x[val].to(device), y_val=y[val].to(device),
        x_test=x_test.to(device), y_test=y_test.to(device),
        num_classes=num_classes,
    )


from nnbench.data import embedded  # noqa: E402  (registers the datasets)

__all__ += ["embedded"]
