"""The training loop: the only place in nnbench that calls `optimizer.step()`.

`train_trial(spec, device)` is a pure function of the spec (same spec, same
device, same library versions => bitwise-identical history and weights):

1. seed: the trial's seed forks and seeds the global RNG and feeds explicit
   generators for the split, the init and the shuffling;
2. build data (tensors on `device`), model, loss, optimizer and schedule from
   the registries;
3. per epoch: shuffle indices on device, step through batches indexed on
   device, accumulate loss and correct counts on device; evaluate the val split;
   read every metric in one host sync; stop as `diverged` on a non-finite loss;
4. evaluate the test split, hash the final weights (`fingerprint`).

A KeyboardInterrupt returns a `killed` result with the epochs done so far; any
other exception returns `failed` with its traceback; neither escapes, so the
caller records every outcome.
"""

from __future__ import annotations

import hashlib
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from nnbench import registry, seeding
from nnbench.config import TrialSpec
from nnbench.data import TensorData

__all__ = ["EPOCH_METRICS", "FINAL_METRICS", "Status", "TrialResult", "train_trial"]

Status = Literal["finished", "diverged", "failed", "killed"]
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                 "epoch_seconds")
FINAL_METRICS = ("test_loss", "test_accuracy")
EVAL_CHUNK = 8192  # examples per forward pass when evaluating

EpochCallback = Callable[[TrialSpec, dict[str, float]], None]


@dataclass(frozen=True)
class TrialResult:
    """What one trial produced; `history[i]` holds epoch i+1's EPOCH_METRICS and `epoch`."""

    spec: TrialSpec
    status: Status
    history: list[dict[str, float]]
    final: dict[str, float]  # FINAL_METRICS; empty unless finished
    fingerprint: str  # sha256 of the final weights ("" if none were built)
    device: str
    wall_seconds: float
    num_params: int = 0
    reason: str = ""  # why it diverged / failed / was killed
    diverged_epoch: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class _Parts:
    data: TensorData
    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    shuffle: torch.Generator


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available else cpu; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; allowed: auto, cpu, cuda, cuda:N")
    return device


def _build(spec: TrialSpec, device: torch.device) -> _Parts:
    data: TensorData = registry.build("dataset", spec.dataset, seed=spec.seed, device=device)
    activation_info = registry.get("activation", spec.activation.name)
    model: nn.Module = registry.build(
        "model", spec.model, input_shape=data.input_shape, num_classes=data.num_classes,
        activation=lambda: registry.build("activation", spec.activation),
        nonlinearity=activation_info.attrs.get("nonlinearity", "linear"),
        init=registry.build("init", spec.init),
        generator=seeding.generator(spec.seed, "init"),
    ).to(device)
    optimizer = registry.build("optimizer", spec.optimizer, parameters=model.parameters())
    steps_per_epoch = math.ceil(len(data.y_train) / spec.batch_size)
    schedule = registry.build("schedule", spec.schedule, optimizer=optimizer,
                              epochs=spec.epochs, steps_per_epoch=steps_per_epoch)
    return _Parts(data=data, model=model, loss_fn=registry.build("loss", spec.loss),
                  optimizer=optimizer, schedule=schedule,
                  shuffle=seeding.generator(spec.seed, "shuffle", device))


def _train_epoch(p: _Parts, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the shuffled training split; returns (mean loss, accuracy) on device.

    The split is permuted once per epoch, so each batch is a contiguous slice (a
    view, no gather per step); per-step losses and hits stay on device and are
    reduced once at the end.
    """
    n = len(p.data.y_train)
    order = torch.randperm(n, generator=p.shuffle, device=p.data.x_train.device)
    x, y = p.data.x_train[order], p.data.y_train[order]
    losses: list[torch.Tensor] = []
    hits: list[torch.Tensor] = []
    p.model.train()
    for start in range(0, n, batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logits = p.model(xb)
        loss = p.loss_fn(logits, yb)
        p.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        p.optimizer.step()
        losses.append(loss.detach())
        hits.append((logits.detach().argmax(dim=1) == yb).sum())
    sizes = torch.full((len(losses),), float(batch_size), device=x.device)
    sizes[-1] = n - batch_size * (len(losses) - 1)  # the last batch may be smaller
    return (torch.stack(losses) * sizes).sum() / n, torch.stack(hits).sum().double() / n


@torch.no_grad()
def _evaluate(p: _Parts, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, accuracy) over a split, on device, in eval mode."""
    p.model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, len(y), EVAL_CHUNK):
        xb, yb = x[start:start + EVAL_CHUNK], y[start:start + EVAL_CHUNK]
        logits = p.model(xb)
        loss_sum += p.loss_fn(logits, yb) * len(yb)
        correct += (logits.argmax(dim=1) == yb).sum()
    return loss_sum / len(y), correct.double() / len(y)


def fingerprint(model: nn.Module) -> str:
    """sha256 over every state_dict entry's name, dtype, shape and bytes (16 hex digits)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def train_trial(spec: TrialSpec, device: torch.device,
                on_epoch: EpochCallback | None = None) -> TrialResult:
    """Train one trial to completion (or divergence); never raises for the trial's own errors."""
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    parts: _Parts | None = None

    def result(status: Status, reason: str = "", final: dict[str, float] | None = None,
               diverged_epoch: int | None = None) -> TrialResult:
        model = parts.model if parts else None
        return TrialResult(
            spec=spec, status=status, history=history, final=final or {},
            fingerprint=fingerprint(model) if model is not None else "",
            device=str(device), wall_seconds=time.perf_counter() - started,
            num_params=sum(q.numel() for q in model.parameters()) if model is not None else 0,
            reason=reason, diverged_epoch=diverged_epoch)

    try:
        with seeding.trial_rng(spec.seed, device):
            # 1-2. seeded build of every part from the registries
            parts = _build(spec, device)
            for epoch in range(1, spec.epochs + 1):
                # 3. one epoch of training, then validation, then one host sync
                epoch_start = time.perf_counter()
                lr = float(parts.optimizer.param_groups[0]["lr"])
                train_loss, train_acc = _train_epoch(parts, spec.batch_size)
                parts.schedule.step()
                val_loss, val_acc = _evaluate(parts, parts.data.x_val, parts.data.y_val)
                values = torch.stack([t.double() for t in (train_loss, train_acc, val_loss,
                                                           val_acc)]).tolist()
                metrics = dict(zip(EPOCH_METRICS[:4], values, strict=True))
                metrics.update(lr=lr, epoch_seconds=time.perf_counter() - epoch_start,
                               epoch=float(epoch))
                history.append(metrics)
                if on_epoch is not None:
                    on_epoch(spec, metrics)
                bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(metrics[k])]
                if bad:
                    return result("diverged", diverged_epoch=epoch, reason=(
                        f"{bad[0]} became {metrics[bad[0]]} at epoch {epoch}"))
            # 4. final evaluation on the held-out test split
            test_loss, test_acc = _evaluate(parts, parts.data.x_test, parts.data.y_test)
            values = torch.stack([test_loss.double(), test_acc]).tolist()
            final = dict(zip(FINAL_METRICS, values, strict=True))
            return result("finished", final=final)
    except KeyboardInterrupt:
        return result("killed", reason=f"interrupted during epoch {len(history) + 1}")
    except Exception as err:  # a broken trial must not stop the suite
        return result("failed", reason="".join(
            traceback.format_exception(type(err), err, err.__traceback__))[-4000:])
