"""The training loop a user writes from the notes (seed 004, "项目实战" MNIST project):
DataLoader(shuffle=True), `.item()` per step, then an eval loop over a DataLoader with
batch 512. The baseline nnbench's engines are measured against."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnbench.data import TensorData


def notes_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorData,
                batch_size: int) -> Callable[[], tuple[float, float]]:
    """One epoch (train + validation) of the notes' loop; returns (val loss, val accuracy)."""
    criterion = nn.CrossEntropyLoss()
    train_loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch_size,
                              shuffle=True)
    eval_loader = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=512)

    def epoch() -> tuple[float, float]:
        model.train()
        correct = 0.0
        for x, target in train_loader:
            output = model(x)
            loss = criterion(output, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            _, predicted = torch.max(output.data, 1)
            correct += predicted.eq(target).sum().item()
        model.eval()
        eval_loss, eval_correct = 0.0, 0.0
        with torch.no_grad():
            for x, target in eval_loader:
                output = model(x)
                eval_loss += criterion(output, target).item()
                _, predicted = torch.max(output.data, 1)
                eval_correct += predicted.eq(target).sum().item()
        return eval_loss / len(eval_loader), eval_correct / len(data.y_val)

    return epoch
