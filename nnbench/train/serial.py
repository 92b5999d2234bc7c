"""The serial engine: one trial at a time, the reference numerics.

`train_trial(spec, device)` is a pure function of the spec (same spec, same device,
same threads, same library versions => bitwise-identical history and weights; the
engine chooses the threads from the spec and the machine, `SerialEngine.threads_for`):

1. seed: the trial's init seed forks and seeds the global RNG (module inits), and
   each source's seed feeds its explicit generator: the split, the init, the
   shuffling, the augmentations and the dropout masks (`config.sources`);
2. build data (tensors on `device`), model, objective, optimizer, schedule and
   regularizers from the registries (`build_parts`);
3. per epoch: permute the training split on device; per batch: augment, forward,
   loss (+ L1 / L2 penalties), backward, clip, step (and the schedule when it is per
   batch); keep per-step losses and metric sums on device; then evaluate the val
   split and the diagnostics probe; read everything in ONE host sync; stop as
   `diverged` on a non-finite loss, early when `early_stopping` says so, or `pruned`
   when the listener answers stop;
4. restore the best weights if asked, evaluate the test split, hash the final
   weights (`fingerprint`).

A KeyboardInterrupt returns a `killed` result with the epochs done so far; any other
exception returns `failed` with its traceback; none escapes.
"""

from __future__ import annotations

import io
import math
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from nnbench import seeding
from nnbench.components.augmentations import Augmentation
from nnbench.components.losses import Objective
from nnbench.config import TrialSpec
from nnbench.data import TensorData
from nnbench.train import build
from nnbench.train.build import Parts, layer_weights, metric_names, penalty, weight_layers
from nnbench.train.metrics import (
    EVAL_CHUNK,
    PROBE_SIZE,
    SATURATED_BELOW,
    SPARSE_BELOW,
    add_gaps,
    fingerprint,
)
from nnbench.train.results import CONTINUE, Decision, Numerics, Status, TrialResult

__all__ = ["SerialEngine", "checkpoint_bytes", "evaluate", "evaluate_checkpoint",
           "held_out_metrics", "run_epoch", "train_epoch", "train_trial"]

EpochListener = Callable[[TrialSpec, dict[str, float]], Decision]


def train_epoch(p: Parts, spec: TrialSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the shuffled training split; returns (mean loss, metric sums) on device.

    The split's rows are permuted and read once per epoch, so each batch is a contiguous
    slice (a view, no gather per step); per-step losses and metric sums stay on device and
    are reduced once at the end. The reported loss is the data loss, without the L1/L2 penalty.
    """
    n, batch_size = len(p.data.train), p.batch_size
    order = torch.randperm(n, generator=p.shuffle, device=p.data.x.device)
    rows = p.data.train[order]
    x, y = p.data.inputs(rows), p.data.y[rows]
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
        extra = penalty(p, spec)
        p.optimizer.zero_grad(set_to_none=True)
        (loss + extra if extra is not None else loss).backward()
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
def evaluate(model: nn.Module, objective: Objective, data: TensorData, rows: torch.Tensor,
             steps: Sequence[Augmentation] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, metric sums) over the examples at `rows` (a split), on device, in eval
    mode; `steps`: the augmentations every batch gets (normalize)."""
    model.eval()
    loss_sum = torch.zeros((), device=data.x.device)
    sums = []
    for start in range(0, len(rows), EVAL_CHUNK):
        chunk = rows[start:start + EVAL_CHUNK]
        xb, yb = data.inputs(chunk), data.y[chunk]
        for step in steps:
            xb = step.apply(xb, {})
        outputs = model(xb)
        loss_sum += objective(outputs, yb) * len(yb)
        sums.append(objective.sums(outputs, yb))
    return loss_sum / len(rows), torch.stack(sums).sum(dim=0)


def diagnostics(p: Parts) -> dict[str, torch.Tensor]:
    """Gradient norm per layer, dead/saturated units, weight sparsity; on device, eval mode.

    Uses a fixed probe batch (the first PROBE_SIZE training examples) and no randomness,
    so it never changes the training trajectory.
    """
    probe = p.data.train[:PROBE_SIZE]
    x, y = p.data.inputs(probe), p.data.y[probe]
    captured: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
             for m in p.model.modules() if isinstance(m, p.activation_type)
             and p.family is not None]
    p.model.eval()
    p.optimizer.zero_grad(set_to_none=True)  # the last training step's gradients are not ours
    try:
        p.objective(p.model(x), y).backward()
    finally:
        for hook in hooks:
            hook.remove()
    out = {f"grad_norm.layer{i}": _grad_norm(layer, x.device)
           for i, layer in enumerate(weight_layers(p.model), 1)}
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


def _grad_norm(layer: build.WeightLayer, device: torch.device) -> torch.Tensor:
    """L2 norm of a weight layer's weight gradients (a GRU's matrices taken together)."""
    grads = [w.grad for w in layer_weights(layer) if w.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    norms: list[torch.Tensor] = [g.norm() for g in grads]
    if len(norms) == 1:
        return norms[0]
    total: torch.Tensor = torch.stack(norms).norm()
    return total


def run_epoch(p: Parts, spec: TrialSpec, names: tuple[str, ...]) -> dict[str, float]:
    """Train one epoch, step an epoch schedule, validate, diagnose; read it all in one sync."""
    epoch_start = time.perf_counter()
    lr = float(p.optimizer.param_groups[0]["lr"])
    train_loss, train_sums = train_epoch(p, spec)
    if p.schedule.interval == "epoch":
        p.schedule.scheduler.step()
    val_loss, val_sums = evaluate(p.model, p.objective, p.data, p.data.val,
                                  build.always(p.augment))
    diag = diagnostics(p)
    keys = ["train_loss", "val_loss", *(f"train_{m}" for m in names),
            *(f"val_{m}" for m in names), *diag]
    target_dim = p.data.target_dim
    values = torch.cat([
        torch.stack([train_loss.double(), val_loss.double()]),
        p.objective.finalize(train_sums, len(p.data.train), target_dim),
        p.objective.finalize(val_sums, len(p.data.val), target_dim),
        torch.stack([d.double() for d in diag.values()]),
    ]).tolist()
    metrics = dict(zip(keys, values, strict=True))
    add_gaps(metrics, names)
    metrics.update(lr=lr, epoch_seconds=time.perf_counter() - epoch_start)
    return metrics


def checkpoint_bytes(model: nn.Module | dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                     spec: TrialSpec, metrics: dict[str, float], epoch: int) -> bytes:
    """The notes' section 3 checkpoint: weights (a model or its state_dict), optimizer
    state, spec and metrics."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    buffer = io.BytesIO()
    torch.save({"model": {k: v.detach().cpu() for k, v in state.items()},
                "optimizer": optimizer_state, "spec": spec.canonical(),
                "metrics": metrics, "epoch": epoch}, buffer)
    return buffer.getvalue()


def held_out_metrics(model: nn.Module, objective: Objective, data: TensorData,
                     names: tuple[str, ...], steps: Sequence[Augmentation] = ()
                     ) -> dict[str, float]:
    """test_loss and test_<metric> of `model` on the held-out test split (one host sync);
    `steps`: the augmentations every batch gets (normalize)."""
    loss, sums = evaluate(model, objective, data, data.test, steps)
    values = torch.cat([loss.double()[None], objective.finalize(
        sums, len(data.test), data.target_dim)]).tolist()
    return dict(zip(["test_loss", *(f"test_{m}" for m in names)], values, strict=True))


def train_trial(spec: TrialSpec, device: torch.device,
                on_epoch: EpochListener | None = None, *, keep_checkpoint: bool = False,
                numerics: Numerics | None = None) -> TrialResult:
    """Train one trial to completion (or divergence); never raises for the trial's own errors.

    `on_epoch(spec, metrics)` is told of every epoch and answers `CONTINUE` or
    `stop(reason)` (the trial ends as `pruned`).
    """
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    parts: Parts | None = None
    names = metric_names(spec)
    numerics = numerics or Numerics(threads=torch.get_num_threads())

    def result(status: Status, reason: str = "", final: dict[str, float] | None = None,
               **extra: Any) -> TrialResult:
        model = parts.model if parts else None
        return TrialResult(
            spec=spec, status=status, history=history, final=final or {},
            fingerprint=fingerprint(model.state_dict().items()) if model is not None else "",
            device=str(device), wall_seconds=time.perf_counter() - started,
            num_params=sum(q.numel() for q in model.parameters()) if model is not None else 0,
            reason=reason, numerics=numerics, **extra)

    try:
        with seeding.trial_rng(spec.seed_of("init"), device):
            # 1-2. seeded build of every part from the registries
            parts = p = build.build_parts(spec, device)
            best_state: dict[str, torch.Tensor] | None = None
            best_epoch, best_value, stopped = 0, math.inf, None
            for epoch in range(1, spec.epochs + 1):
                # 3. one epoch of training, validation and diagnostics, one host sync
                metrics = run_epoch(p, spec, names)
                metrics["epoch"] = float(epoch)
                history.append(metrics)
                decision = on_epoch(spec, metrics) if on_epoch is not None else CONTINUE
                bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(metrics[k])]
                if bad:
                    return result("diverged", diverged_epoch=epoch,
                                  reason=f"{bad[0]} became {metrics[bad[0]]} at epoch {epoch}")
                if decision.stop:
                    return result("pruned", reason=decision.reason)
                if p.early is not None:
                    improved, stop_now = p.early.update(epoch, metrics[p.early.params.monitor])
                    if improved:
                        best_epoch = epoch
                        if p.early.params.restore_best:
                            best_state = {k: v.detach().clone()
                                          for k, v in p.model.state_dict().items()}
                    if stop_now:
                        stopped = epoch
                        break
                elif metrics["val_loss"] < best_value:
                    best_epoch, best_value = epoch, metrics["val_loss"]
            # 4. best weights if asked, then the held-out test split
            if best_state is not None:
                p.model.load_state_dict(best_state)
            final = held_out_metrics(p.model, p.objective, p.data, names,
                                     build.always(p.augment))
            reason = (f"early stopping at epoch {stopped}: "
                      f"{p.early.params.monitor if p.early else ''} did not improve for "
                      f"{p.early.params.patience if p.early else 0} epochs" if stopped else "")
            return result("finished", reason=reason, final=final, best_epoch=best_epoch,
                          stopped_epoch=stopped,
                          checkpoint=checkpoint_bytes(
                              p.model, p.optimizer.state_dict(), spec, {**history[-1], **final},
                              len(history)) if keep_checkpoint else None)
    except KeyboardInterrupt:
        return result("killed", reason=f"interrupted during epoch {len(history) + 1}")
    except Exception as err:  # a broken trial must not stop the suite
        return result("failed", reason="".join(
            traceback.format_exception(type(err), err, err.__traceback__))[-4000:])


def evaluate_checkpoint(blob: bytes, device: torch.device) -> dict[str, float]:
    """Rebuild a checkpoint's trial (data split, model) and evaluate its weights on test."""
    state = torch.load(io.BytesIO(blob), map_location=device, weights_only=True)
    spec = TrialSpec.from_canonical(state["spec"])
    with seeding.trial_rng(spec.seed_of("init"), device):
        parts = build.build_parts(spec, device)
    parts.model.load_state_dict(state["model"])
    return held_out_metrics(parts.model, parts.objective, parts.data, metric_names(spec),
                            build.always(parts.augment))


class SerialEngine:
    """One trial at a time on one device: the reference numerics."""

    name = "serial"
    lane_limit = 1
    own_threads = True  # make_engine passes threads only when asked for, and the workers

    def __init__(self, device: torch.device, *, keep_checkpoints: bool = False,
                 threads: int | None = None, workers: int = 1, **_lanes: Any) -> None:
        """`threads`: every trial's intra-op threads (None: chosen per trial,
        `threads_for`); `workers`: processes sharing the cores. `**_lanes`: the registry's
        lane options (max_lanes, population, fixed_lanes), which one trial at a time has no
        use for."""
        self.device = device
        self.keep_checkpoints = keep_checkpoints
        self.threads = threads
        self.workers = workers

    @classmethod
    def default_threads(cls, device: torch.device, workers: int = 1) -> int:
        """1: a small model's step is faster on one thread (and on a GPU the host thread
        only feeds the device). A trial whose steps are large gets more (`threads_for`)."""
        return 1

    def threads_for(self, spec: TrialSpec) -> int:
        """The trial's intra-op threads: those asked for; else, on a CPU, the worker's share
        of the cores when a training step takes at least SPLIT_FLOPS (a ResNet-20 step on
        CIFAR-shaped data ran 1.7× faster on 2 threads than on 1, on 2 cores), 1 below
        (the default MLP's steps ran faster on 1: tests/benchmarks/test_engine_speed.py).
        Chosen from the spec's shape alone, so a repeat chooses the same."""
        from nnbench.train.engine import SPLIT_FLOPS, shared_cores

        if self.threads:
            return self.threads
        if self.device.type != "cpu":
            return self.default_threads(self.device, self.workers)
        try:
            flops = build.step_flops(spec)
        except Exception:  # a plugin's dataset without a shape, a model that cannot be
            flops = 0.0  # built alone: the trial itself says why; the policy's default here
        if flops < SPLIT_FLOPS:
            return self.default_threads(self.device, self.workers)
        return shared_cores(self.device, self.workers)

    @classmethod
    def most_lanes(cls, device: torch.device) -> int:
        return 1

    def describe(self, trials: Sequence[TrialSpec]) -> list[str]:
        return []

    def run(self, trials: Sequence[TrialSpec], listener: Any) -> Iterator[TrialResult]:
        from nnbench.train.engine import torch_threads

        for spec in trials:
            if not listener.trial_started(spec):
                continue
            with torch_threads(self.device, self.threads_for(spec)) as threads:
                numerics = Numerics(engine="serial", lanes=1, precision="fp32",
                                    threads=threads)
                result = train_trial(spec, self.device, on_epoch=listener.epoch_finished,
                                     keep_checkpoint=self.keep_checkpoints, numerics=numerics)
            yield result
            if result.status == "killed":  # Ctrl-C: train nothing more
                return
