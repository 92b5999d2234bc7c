"""The training loop: the only place in nnbench that calls `optimizer.step()`.

`train_trial(spec, device)` is a pure function of the spec (same spec, same
device, same library versions => bitwise-identical history and weights):

1. seed: the trial's seed forks and seeds the global RNG (module inits, dropout)
   and feeds explicit generators for the split, the init, the shuffling and the
   augmentations;
2. build data (tensors on `device`), model, objective, optimizer, schedule and
   regularizers from the registries; `normalize` is fitted on the training split;
3. per epoch: permute the training split on device; per batch: augment, forward,
   loss (+ L1 / L2 penalties), backward, clip, step (and the schedule when it is per
   batch); keep per-step losses and metric sums on device; then evaluate the val
   split and the diagnostics probe; read everything in ONE host sync; stop as
   `diverged` on a non-finite loss, or early when `early_stopping` says so;
4. restore the best weights if asked, evaluate the test split, hash the final
   weights (`fingerprint`).

Per-epoch metrics: train_/val_ loss and the objective's metrics (accuracy, or rmse
and mae), lr, epoch_seconds, and diagnostics: gap_* (validation worse than training
is positive), grad_norm.layerN (on a fixed probe batch, eval mode), dead_fraction
(ReLU family: units never positive on the probe) or saturated_fraction (sigmoid/tanh:
activations whose derivative is under 5% of its maximum), weight_sparsity
(|w| < 1e-3). A KeyboardInterrupt returns a `killed` result with the epochs done so
far, a StopTrial from the epoch callback a `pruned` one; any other exception returns
`failed` with its traceback; none escapes.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from nnbench import registry, seeding
from nnbench.components.activations import gain_of
from nnbench.components.augmentations import Augmentation, Normalize
from nnbench.components.losses import Objective
from nnbench.components.regularizers import ClipFn, EarlyStopping
from nnbench.components.schedules import Schedule
from nnbench.config import TrialSpec
from nnbench.data import TensorData

__all__ = ["Status", "StopTrial", "TrialResult", "evaluate_checkpoint", "metric_names",
           "resolve_device", "train_trial"]

Status = Literal["finished", "diverged", "failed", "killed", "pruned"]


class StopTrial(Exception):
    """Raised by an epoch callback to end a trial early as `pruned` (e.g. by Optuna)."""
EVAL_CHUNK = 8192  # examples per forward pass when evaluating
PROBE_SIZE = 256  # training examples in the diagnostics probe batch
SPARSE_BELOW = 1e-3  # |w| under this counts as zero (weight_sparsity)
SATURATED_BELOW = 0.05  # derivative under this share of its maximum counts as saturated

EpochCallback = Callable[[TrialSpec, dict[str, float]], None]


def metric_names(spec: TrialSpec) -> tuple[str, ...]:
    """The objective's metrics for this trial: ("accuracy",) or ("rmse", "mae")."""
    names: tuple[str, ...] = registry.get("loss", spec.loss.name).attrs["metrics"]
    return names


@dataclass(frozen=True)
class TrialResult:
    """What one trial produced; `history[i]` holds epoch i+1's metrics and `epoch`."""

    spec: TrialSpec
    status: Status
    history: list[dict[str, float]]
    final: dict[str, float]  # test_loss and test_<metric>; empty unless finished
    fingerprint: str  # sha256 of the final weights ("" if none were built)
    device: str
    wall_seconds: float
    num_params: int = 0
    reason: str = ""  # why it diverged / failed / was killed / stopped early
    diverged_epoch: int | None = None
    best_epoch: int | None = None  # by the early-stopping monitor, else by val_loss
    stopped_epoch: int | None = None  # when early stopping ended training
    checkpoint: bytes | None = field(default=None, repr=False)  # torch.save'd dict


@dataclass
class _Parts:
    data: TensorData
    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    clip: ClipFn | None
    augment: list[Augmentation]
    early: EarlyStopping | None
    shuffle: torch.Generator
    augment_gen: torch.Generator
    batch_size: int
    weights: list[torch.Tensor]  # Linear/Conv weights: what L1, L2 and sparsity see
    activation_type: type[nn.Module]
    family: str | None


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available else cpu; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unsupported device {name!r}; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; allowed: auto, cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    return device


def _layers(model: nn.Module) -> list[nn.Linear | nn.Conv2d]:
    """The weight layers, input to output (what inits, L1/L2 and diagnostics act on)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def _build(spec: TrialSpec, device: torch.device) -> _Parts:
    data: TensorData = registry.build("dataset", spec.dataset, seed=spec.seed, device=device)
    augment = [registry.build("augmentation", a) for a in spec.augmentation]
    for aug in augment:  # statistics from the training split; val/test get `always` steps
        if isinstance(aug, Normalize):
            aug.fit(data.x_train)
    always = [a for a in augment if a.stage == "always"]
    if always:
        x_val, x_test = data.x_val, data.x_test
        for aug in always:
            x_val, x_test = aug.apply(x_val, {}), aug.apply(x_test, {})
        data = TensorData(data.x_train, data.y_train, x_val, data.y_val, x_test, data.y_test,
                          data.targets, data.num_classes)
    objective: Objective = registry.build("loss", spec.loss)
    activation_info = registry.get("activation", spec.activation.name)
    activation_params = activation_info.params.model_validate(spec.activation.kwargs)
    model: nn.Module = registry.build(
        "model", spec.model, input_shape=data.input_shape,
        outputs=objective.num_outputs(data.num_classes, data.target_dim),
        activation=lambda: registry.build("activation", spec.activation),
        gain=gain_of(spec.activation.name, activation_params),
        init=registry.build("init", spec.init), norm=registry.build("norm", spec.norm),
        dropout=spec.dropout, generator=seeding.generator(spec.seed, "init"),
    ).to(device)
    optimizer = registry.build("optimizer", spec.optimizer, parameters=model.parameters())
    n_train = len(data.y_train)
    batch_size = n_train if spec.batch_size == "full" else min(int(spec.batch_size), n_train)
    schedule = registry.build("schedule", spec.schedule, optimizer=optimizer,
                              epochs=spec.epochs, steps_per_epoch=math.ceil(n_train / batch_size))
    return _Parts(
        data=data, model=model, objective=objective.to(device), optimizer=optimizer,
        schedule=schedule, clip=registry.build("clip", spec.grad_clip),
        augment=augment, early=registry.build("early_stopping", spec.early_stopping),
        shuffle=seeding.generator(spec.seed, "shuffle", device),
        augment_gen=seeding.generator(spec.seed, "augment", device), batch_size=batch_size,
        weights=[m.weight for m in _layers(model)],
        activation_type=type(registry.build("activation", spec.activation)),
        family=activation_info.attrs.get("family"))


def _penalty(p: _Parts, spec: TrialSpec) -> torch.Tensor | None:
    """λ₁·Σ|w| + ½λ₂·Σw² over weights (not biases, not norm layers)."""
    penalty: torch.Tensor | None = None
    if spec.l1:
        penalty = spec.l1 * torch.stack([w.abs().sum() for w in p.weights]).sum()
    if spec.l2:
        l2 = 0.5 * spec.l2 * torch.stack([w.square().sum() for w in p.weights]).sum()
        penalty = l2 if penalty is None else penalty + l2
    return penalty


def _train_epoch(p: _Parts, spec: TrialSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the shuffled training split; returns (mean loss, metric sums) on device.

    The split is permuted once per epoch, so each batch is a contiguous slice (a view,
    no gather per step); per-step losses and metric sums stay on device and are reduced
    once at the end. The reported loss is the data loss, without the L1/L2 penalty.
    """
    n, batch_size = len(p.data.y_train), p.batch_size
    order = torch.randperm(n, generator=p.shuffle, device=p.data.x_train.device)
    x, y = p.data.x_train[order], p.data.y_train[order]
    per_batch = p.schedule.interval == "batch"
    losses: list[torch.Tensor] = []
    sums: list[torch.Tensor] = []
    p.model.train()
    for start in range(0, n, batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        for aug in p.augment:
            xb = aug(xb, p.augment_gen)
        outputs = p.model(xb)
        loss = p.objective(outputs, yb)
        penalty = _penalty(p, spec)
        p.optimizer.zero_grad(set_to_none=True)
        (loss + penalty if penalty is not None else loss).backward()
        if p.clip is not None:
            p.clip(p.model.parameters())
        p.optimizer.step()
        if per_batch:
            p.schedule.scheduler.step()
        losses.append(loss.detach())
        sums.append(p.objective.sums(outputs.detach(), yb))
    sizes = torch.full((len(losses),), float(batch_size), device=x.device)
    sizes[-1] = n - batch_size * (len(losses) - 1)  # the last batch may be smaller
    return (torch.stack(losses) * sizes).sum() / n, torch.stack(sums).sum(dim=0)


@torch.no_grad()
def _evaluate(p: _Parts, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, metric sums) over a split, on device, in eval mode."""
    p.model.eval()
    loss_sum = torch.zeros((), device=x.device)
    sums = []
    for start in range(0, len(y), EVAL_CHUNK):
        xb, yb = x[start:start + EVAL_CHUNK], y[start:start + EVAL_CHUNK]
        outputs = p.model(xb)
        loss_sum += p.objective(outputs, yb) * len(yb)
        sums.append(p.objective.sums(outputs, yb))
    return loss_sum / len(y), torch.stack(sums).sum(dim=0)


def _diagnostics(p: _Parts) -> dict[str, torch.Tensor]:
    """Gradient norm per layer, dead/saturated units, weight sparsity; on device, eval mode.

    Uses a fixed probe batch (the first PROBE_SIZE training examples) and no randomness,
    so it never changes the training trajectory.
    """
    x, y = p.data.x_train[:PROBE_SIZE], p.data.y_train[:PROBE_SIZE]
    captured: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
             for m in p.model.modules() if isinstance(m, p.activation_type)
             and p.family is not None]
    p.model.eval()
    try:
        p.objective(p.model(x), y).backward()
    finally:
        for hook in hooks:
            hook.remove()
    out = {f"grad_norm.layer{i}": layer.weight.grad.norm() if layer.weight.grad is not None
           else torch.zeros((), device=x.device) for i, layer in enumerate(_layers(p.model), 1)}
    p.optimizer.zero_grad(set_to_none=True)
    if captured and p.family == "relu":
        # a unit is dead when it is never positive on the probe (per feature / channel)
        dead = [(a <= 0).flatten(2).all(-1).all(0) if a.dim() > 2 else (a <= 0).all(0)
                for a in captured]
        out["dead_fraction"] = torch.cat(dead).float().mean()
    elif captured and p.family == "saturating":
        act = p.activation_type.__name__
        slopes = [a * (1 - a) / 0.25 if act == "Sigmoid" else 1 - a.square() for a in captured]
        out["saturated_fraction"] = torch.cat(
            [(s < SATURATED_BELOW).flatten().float() for s in slopes]).mean()
    flat = torch.cat([w.detach().flatten() for w in p.weights])
    out["weight_sparsity"] = (flat.abs() < SPARSE_BELOW).float().mean()
    return out


def run_epoch(p: _Parts, spec: TrialSpec, names: tuple[str, ...]) -> dict[str, float]:
    """Train one epoch, step an epoch schedule, validate, diagnose; read it all in one sync."""
    epoch_start = time.perf_counter()
    lr = float(p.optimizer.param_groups[0]["lr"])
    train_loss, train_sums = _train_epoch(p, spec)
    if p.schedule.interval == "epoch":
        p.schedule.scheduler.step()
    val_loss, val_sums = _evaluate(p, p.data.x_val, p.data.y_val)
    diagnostics = _diagnostics(p)
    keys = ["train_loss", "val_loss", *(f"train_{m}" for m in names),
            *(f"val_{m}" for m in names), *diagnostics]
    target_dim = p.data.target_dim
    values = torch.cat([
        torch.stack([train_loss.double(), val_loss.double()]),
        p.objective.finalize(train_sums, len(p.data.y_train), target_dim),
        p.objective.finalize(val_sums, len(p.data.y_val), target_dim),
        torch.stack([d.double() for d in diagnostics.values()]),
    ]).tolist()
    metrics = dict(zip(keys, values, strict=True))
    metrics["gap_loss"] = metrics["val_loss"] - metrics["train_loss"]
    for m in names:
        sign = 1 if m == "accuracy" else -1  # positive: validation is worse
        metrics[f"gap_{m}"] = sign * (metrics[f"train_{m}"] - metrics[f"val_{m}"])
    metrics.update(lr=lr, epoch_seconds=time.perf_counter() - epoch_start)
    return metrics


def fingerprint(model: nn.Module) -> str:
    """sha256 over every state_dict entry's name, dtype, shape and bytes (16 hex digits)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def _checkpoint(p: _Parts, spec: TrialSpec, metrics: dict[str, float], epoch: int) -> bytes:
    """The notes' section 3 checkpoint: weights, optimizer state, spec and metrics."""
    buffer = io.BytesIO()
    torch.save({"model": {k: v.detach().cpu() for k, v in p.model.state_dict().items()},
                "optimizer": p.optimizer.state_dict(), "spec": spec.canonical(),
                "metrics": metrics, "epoch": epoch}, buffer)
    return buffer.getvalue()


def train_trial(spec: TrialSpec, device: torch.device, on_epoch: EpochCallback | None = None,
                *, keep_checkpoint: bool = False) -> TrialResult:
    """Train one trial to completion (or divergence); never raises for the trial's own errors."""
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    parts: _Parts | None = None
    names = metric_names(spec)

    def result(status: Status, reason: str = "", final: dict[str, float] | None = None,
               **extra: Any) -> TrialResult:
        model = parts.model if parts else None
        return TrialResult(
            spec=spec, status=status, history=history, final=final or {},
            fingerprint=fingerprint(model) if model is not None else "",
            device=str(device), wall_seconds=time.perf_counter() - started,
            num_params=sum(q.numel() for q in model.parameters()) if model is not None else 0,
            reason=reason, **extra)

    try:
        with seeding.trial_rng(spec.seed, device):
            # 1-2. seeded build of every part from the registries
            parts = p = _build(spec, device)
            best_state: dict[str, torch.Tensor] | None = None
            best_epoch, best_value, stopped = 0, math.inf, None
            for epoch in range(1, spec.epochs + 1):
                # 3. one epoch of training, validation and diagnostics, one host sync
                metrics = run_epoch(p, spec, names)
                metrics["epoch"] = float(epoch)
                history.append(metrics)
                if on_epoch is not None:
                    on_epoch(spec, metrics)
                bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(metrics[k])]
                if bad:
                    return result("diverged", diverged_epoch=epoch,
                                  reason=f"{bad[0]} became {metrics[bad[0]]} at epoch {epoch}")
                if p.early is not None:
                    improved, stop = p.early.update(epoch, metrics[p.early.params.monitor])
                    if improved:
                        best_epoch = epoch
                        if p.early.params.restore_best:
                            best_state = {k: v.detach().clone()
                                          for k, v in p.model.state_dict().items()}
                    if stop:
                        stopped = epoch
                        break
                elif metrics["val_loss"] < best_value:
                    best_epoch, best_value = epoch, metrics["val_loss"]
            # 4. best weights if asked, then the held-out test split
            if best_state is not None:
                p.model.load_state_dict(best_state)
            test_loss, test_sums = _evaluate(p, p.data.x_test, p.data.y_test)
            values = torch.cat([test_loss.double()[None], p.objective.finalize(
                test_sums, len(p.data.y_test), p.data.target_dim)]).tolist()
            final = dict(zip(["test_loss", *(f"test_{m}" for m in names)], values, strict=True))
            reason = (f"early stopping at epoch {stopped}: "
                      f"{p.early.params.monitor if p.early else ''} did not improve for "
                      f"{p.early.params.patience if p.early else 0} epochs" if stopped else "")
            return result("finished", reason=reason, final=final, best_epoch=best_epoch,
                          stopped_epoch=stopped,
                          checkpoint=_checkpoint(p, spec, {**history[-1], **final},
                                                 len(history)) if keep_checkpoint else None)
    except StopTrial as stop:
        return result("pruned", reason=str(stop))
    except KeyboardInterrupt:
        return result("killed", reason=f"interrupted during epoch {len(history) + 1}")
    except Exception as err:  # a broken trial must not stop the suite
        return result("failed", reason="".join(
            traceback.format_exception(type(err), err, err.__traceback__))[-4000:])


def evaluate_checkpoint(blob: bytes, device: torch.device) -> dict[str, float]:
    """Rebuild a checkpoint's trial (data split, model) and evaluate its weights on test."""
    state = torch.load(io.BytesIO(blob), map_location=device, weights_only=True)
    spec = TrialSpec.from_canonical(state["spec"])
    with seeding.trial_rng(spec.seed, device):
        parts = _build(spec, device)
    parts.model.load_state_dict(state["model"])
    loss, sums = _evaluate(parts, parts.data.x_test, parts.data.y_test)
    values = torch.cat([loss.double()[None], parts.objective.finalize(
        sums, len(parts.data.y_test), parts.data.target_dim)]).tolist()
    names = ["test_loss", *(f"test_{m}" for m in metric_names(spec))]
    return dict(zip(names, values, strict=True))
