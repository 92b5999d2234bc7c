"""The notes' worked numbers (seed 001), as tests to 1e-6.

Two optimizer steps on y = w²/2 from w = 1 (so the gradient is w), and the learning
rate curves of the notes' StepLR / MultiStepLR / ExponentialLR examples (lr 0.1,
200 epochs, SGD with momentum 0.9), built through nnbench's registries.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from nnbench import registry


def _two_steps(optimizer: dict[str, Any]) -> list[float]:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = registry.build("optimizer", registry.resolve("optimizer", optimizer), parameters=[w])
    values = []
    for _ in range(2):
        opt.zero_grad()
        (w**2 / 2).sum().backward()
        opt.step()
        values.append(float(w.detach()))
    return values


@pytest.mark.parametrize(("optimizer", "expected"), [
    ({"name": "sgd", "lr": 0.01, "momentum": 0.9}, [0.99, 0.9711]),
    ({"name": "adagrad", "lr": 0.01}, [0.99, 0.982965]),
    ({"name": "rmsprop", "lr": 0.01, "alpha": 0.9}, [0.968377, 0.945788]),
    ({"name": "adam", "lr": 0.01, "betas": [0.9, 0.99]}, [0.99, 0.980003]),
], ids=["sgd_momentum", "adagrad", "rmsprop", "adam"])
def test_two_optimizer_steps_match_the_notes(optimizer: dict[str, Any],
                                             expected: list[float]) -> None:
    assert _two_steps(optimizer) == pytest.approx(expected, abs=1e-6)


def _curve(schedule: dict[str, Any], epochs: int = 200) -> list[float]:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    built = registry.build("schedule", registry.resolve("schedule", schedule),
                           optimizer=optimizer, epochs=epochs, steps_per_epoch=10)
    lrs = []
    for _ in range(epochs):
        lrs.append(built.scheduler.get_last_lr()[0])
        for _ in range(10):  # the notes' 10 iterations per epoch
            optimizer.zero_grad()
            ((w * 1.0 - 0) ** 2 / 2).sum().backward()
            optimizer.step()
        built.scheduler.step()
    return lrs


def test_step_lr_curve() -> None:
    lrs = _curve({"name": "step", "step_size": 50, "gamma": 0.5})
    assert lrs == pytest.approx([0.1 * 0.5 ** (e // 50) for e in range(200)], abs=1e-12)
    assert (lrs[49], lrs[50], lrs[199]) == pytest.approx((0.1, 0.05, 0.0125))


def test_multistep_lr_curve() -> None:
    lrs = _curve({"name": "multistep", "milestones": [50, 125, 160], "gamma": 0.5})
    expected = [0.1 * 0.5 ** sum(e >= m for m in (50, 125, 160)) for e in range(200)]
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert (lrs[124], lrs[125], lrs[160]) == pytest.approx((0.05, 0.025, 0.0125))


def test_exponential_lr_curve() -> None:
    lrs = _curve({"name": "exponential", "gamma": 0.95})
    assert lrs == pytest.approx([0.1 * 0.95**e for e in range(200)], rel=1e-9)


def test_linear_warmup_in_front_of_cosine() -> None:
    lrs = _curve({"name": "cosine", "warmup": 5, "warmup_start_factor": 0.2}, epochs=25)
    assert lrs[:6] == pytest.approx([0.02, 0.036, 0.052, 0.068, 0.084, 0.1])
    assert lrs[6] < lrs[5]  # then the cosine decay over the remaining 20 epochs
    assert min(lrs[5:]) >= 0


def test_per_batch_schedule_steps_every_batch() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([w], lr=0.1)
    built = registry.build("schedule", registry.resolve(
        "schedule", {"name": "step", "step_size": 3, "gamma": 0.5, "interval": "batch"}),
        optimizer=optimizer, epochs=2, steps_per_epoch=4)
    assert built.interval == "batch"
    lrs = []
    for _ in range(8):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        built.scheduler.step()
    assert lrs == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 2)
