"""The serial engine: one trial at a time, the reference numerics.

`train_trial(spec, device)` is a pure function of the spec (same spec, same device,
same threads, same library versions => bitwise-identical history and weights; the
engine chooses the threads from the spec, the machine and, for a large step, a timing of
it that the suite's queue keeps: `SerialEngine.threads_for`):

1. seed: the trial's init seed forks and seeds the global RNG (module inits), and
   each source's seed feeds its explicit generator: the split, the init, the
   shuffling, the augmentations and the dropout masks (`config.sources`);
2. build data (tensors on `device`), model, objective, optimizer, schedule and
   regularizers from the registries (`build_parts`);
3. per epoch: permute the training split on device; per batch, one `train_step`
   (augment, forward, loss + L1 / L2 penalty, backward, clip, step; the dry build runs
   the same step on tiny tensors), then the schedule when it is per batch; keep
   per-step losses and metric sums on device; then evaluate the val split and the
   diagnostics probe; read everything in ONE host sync; the lane's lifecycle
   (`lifecycle.Lane`, shared with every engine) ends it as `diverged` on a non-finite
   loss, `pruned` when the listener answers stop, or early when `early_stopping` says
   so;
4. restore the best weights if asked, evaluate the test split, hash the final
   weights (`fingerprint`).

A KeyboardInterrupt returns a `killed` result with the epochs done so far; any other
exception returns `failed` with its traceback; none escapes.
"""

from __future__ import annotations

import io
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map_only

from nnbench import seeding
from nnbench.components.augmentations import Augmentation
from nnbench.components.losses import Objective
from nnbench.config import TrialSpec
from nnbench.data import TensorData
from nnbench.messages import first_line
from nnbench.train import build
from nnbench.train.build import Parts, Step, layer_weights, metric_names, weight_layers
from nnbench.train.lifecycle import (
    Activations,
    Ending,
    EpochListener,
    Lane,
    diagnostics,
    epoch_metrics,
    penalty,
)
from nnbench.train.metrics import EVAL_CHUNK, PROBE_SIZE, fingerprint
from nnbench.train.results import Numerics, TrialResult

__all__ = ["SerialEngine", "checkpoint_bytes", "evaluate", "evaluate_checkpoint",
           "held_out_metrics", "probe", "run_epoch", "train_epoch", "train_step", "train_trial"]

StepWatch = Callable[[str, torch.Tensor], None]


def train_step(p: Step, xb: torch.Tensor, yb: torch.Tensor, watch: StepWatch | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step (the notes' loop body); returns (data loss, outputs), detached.

    1. augment the batch; 2. forward; 3. loss (+ L1 / L2 penalty); 4. backward;
    5. clip; 6. optimizer step. `watch(stage, tensor)` is told of the augmented batch,
    the outputs and the loss as they are made (the dry build checks their shapes, and
    names the part that failed from the last stage it saw).
    """
    for aug in p.augment:
        xb = aug(xb, p.augment_gen)
    if watch is not None:
        watch("augmented", xb)
    outputs = p.model(xb)
    if watch is not None:
        watch("outputs", outputs)
    loss = p.objective(outputs, yb)
    extra = penalty(p.weights, p.l1, p.l2, lanes=False)
    p.optimizer.zero_grad(set_to_none=True)
    (loss + extra if extra is not None else loss).backward()
    if watch is not None:
        watch("backward", loss)
    if p.clip is not None:
        p.clip(p.model.parameters())
    p.optimizer.step()
    return loss.detach(), outputs.detach()


def train_epoch(p: Parts) -> tuple[torch.Tensor, torch.Tensor]:
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
        yb = y[start:start + batch_size]
        loss, outputs = train_step(p, x[start:start + batch_size], yb)
        if per_batch:
            p.schedule.scheduler.step()
        losses.append(loss)
        sums.append(p.objective.sums(outputs, yb))
    sizes = torch.full((len(losses),), float(batch_size), device=x.device)
    sizes[-1] = n - batch_size * (len(losses) - 1)  # the last batch may be smaller
    return (torch.stack(losses) * sizes).sum() / n, torch.stack(sums).sum(dim=0)


@torch.no_grad()
def evaluate(model: nn.Module, objective: Objective, data: TensorData, rows: torch.Tensor,
             steps: Sequence[Augmentation] = (), chunk_size: int = EVAL_CHUNK
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, metric sums) over the examples at `rows` (a split), on device, in eval
    mode, `chunk_size` examples per pass (the trial's `Parts.eval_chunk`); `steps`: the
    augmentations every batch gets (normalize)."""
    model.eval()
    loss_sum = torch.zeros((), device=data.x.device)
    sums = []
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start:start + chunk_size]
        xb, yb = data.inputs(chunk), data.y[chunk]
        for step in steps:
            xb = step.apply(xb, {})
        outputs = model(xb)
        loss_sum += objective(outputs, yb) * len(yb)
        sums.append(objective.sums(outputs, yb))
    return loss_sum / len(rows), torch.stack(sums).sum(dim=0)


def probe(p: Parts) -> dict[str, torch.Tensor]:
    """The diagnostics (`lifecycle.diagnostics`) of the fixed probe batch (the first
    PROBE_SIZE training examples, with the augmentations of stage `always`, normalize, as
    in training and evaluation), forward and backward in eval mode, with no
    randomness and the weights' gradients only (`autograd.grad`: no `.grad` touched): it
    never changes the training trajectory. It runs in passes of `p.eval_chunk` examples
    (one, unless the model is large on a CPU), whose gradients add up to the batch's. A
    frozen weight (requires_grad false) has no gradient: its layer's grad_norm is 0. A
    recurrent model on a GPU runs it without cuDNN, whose RNN backward refuses eval mode."""
    rows = p.data.train[:PROBE_SIZE]
    steps = build.always(p.augment)
    captured: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()[None]))
             for m in p.model.modules() if isinstance(m, p.activation_type)
             and p.family is not None]
    p.model.eval()
    trainable = [w for w in p.weights if w.requires_grad]  # a plugin's frozen layer: none
    # cuDNN's recurrent backward refuses eval mode: the probe's GRU on a GPU runs without it
    recurrent = p.data.x.is_cuda and any(isinstance(m, nn.RNNBase) for m in p.model.modules())
    found: dict[int, torch.Tensor] = {}
    activations = Activations([p.family], p.activation_type.__name__ == "Sigmoid")
    try:
        with torch.backends.cudnn.flags(enabled=False) if recurrent else nullcontext():
            for start in range(0, len(rows), p.eval_chunk):
                captured.clear()
                chunk = rows[start:start + p.eval_chunk]
                xb = p.data.inputs(chunk)
                for step in steps:  # normalized as in training
                    xb = step.apply(xb, {})
                # the objective is a mean: each pass weighs in by its share of the batch
                loss = p.objective(p.model(xb), p.data.y[chunk])
                share = len(chunk) / len(rows)
                grads = torch.autograd.grad(loss * share if share < 1 else loss, trainable,
                                            allow_unused=True) if trainable else ()
                for w, grad in zip(trainable, grads, strict=True):
                    if grad is not None:
                        found[id(w)] = found[id(w)] + grad if id(w) in found else grad
                activations.add(captured)
    finally:
        for hook in hooks:
            hook.remove()
    # per weight layer, its weights' gradients (none: frozen, or not reached by the loss)
    layer_grads = [[g[None] for w in layer_weights(layer) if (g := found.get(id(w))) is not None]
                   for layer in weight_layers(p.model)]
    return diagnostics(layer_grads, activations, [w[None] for w in p.weights])


def run_epoch(p: Parts, names: tuple[str, ...]) -> dict[str, float]:
    """Train one epoch, step an epoch schedule, validate, diagnose; read it all in one sync."""
    epoch_start = time.perf_counter()
    lr = float(p.optimizer.param_groups[0]["lr"])
    train_loss, train_sums = train_epoch(p)
    if p.schedule.interval == "epoch":
        p.schedule.scheduler.step()
    val_loss, val_sums = evaluate(p.model, p.objective, p.data, p.data.val,
                                  build.always(p.augment), p.eval_chunk)
    diagnosed = probe(p)
    target_dim = p.data.target_dim
    (metrics,) = epoch_metrics(
        names, [train_loss[None], val_loss[None]],
        [p.objective.finalize(train_sums, len(p.data.train), target_dim)[None],
         p.objective.finalize(val_sums, len(p.data.val), target_dim)[None]],
        diagnosed, [p.family])
    metrics.update(lr=lr, epoch_seconds=time.perf_counter() - epoch_start)
    return metrics


def checkpoint_bytes(model: nn.Module | dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                     spec: TrialSpec, metrics: dict[str, float], epoch: int,
                     optimizer_epoch: int) -> bytes:
    """The notes' section 3 checkpoint: weights (a model or its state_dict) of `epoch`
    with that epoch's `metrics` (and the test split's), and the optimizer state after
    `optimizer_epoch`, the last trained (later than `epoch` when the best weights were
    restored: restore_best), and the spec."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    buffer = io.BytesIO()
    # the optimizer's state on the host too (a GPU's momentum buffers made a checkpoint
    # that torch.load without map_location refused on a machine without one)
    optimizer_state = tree_map_only(torch.Tensor, lambda t: t.detach().cpu(), optimizer_state)
    torch.save({"model": {k: v.detach().cpu() for k, v in state.items()},
                "optimizer": optimizer_state, "spec": spec.canonical(),
                "metrics": metrics, "epoch": epoch, "optimizer_epoch": optimizer_epoch},
               buffer)
    return buffer.getvalue()


def held_out_metrics(p: Parts, names: tuple[str, ...]) -> dict[str, float]:
    """test_loss and test_<metric> of the trial's model on the held-out test split (one
    host sync)."""
    objective, data = p.objective, p.data
    loss, sums = evaluate(p.model, objective, data, data.test, build.always(p.augment),
                          p.eval_chunk)
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
    parts: Parts | None = None
    lane = Lane(spec, None)
    names = metric_names(spec)
    used: Numerics = numerics or Numerics(threads=torch.get_num_threads(),
                                          precision=seeding.precision_on(device))

    def result(ending: Ending, final: dict[str, float] | None = None,
               checkpoint: bytes | None = None) -> TrialResult:
        model = parts.model if parts else None
        return TrialResult(
            spec=spec, status=ending.status, history=lane.history, final=final or {},
            fingerprint=fingerprint(model.state_dict().items()) if model is not None else "",
            device=str(device), wall_seconds=time.perf_counter() - started,
            num_params=sum(q.numel() for q in model.parameters()) if model is not None else 0,
            numerics=used, checkpoint=checkpoint,
            weights_epoch=lane.weights_epoch() if lane.history else None, **ending.fields)

    try:
        with seeding.trial_rng(spec.seed_of("init"), device):
            # 1-2. seeded build of every part from the registries
            parts = p = build.build_parts(spec, device)
            seeding.reseed_global(spec.seed_of("dropout"), device)  # (GRU's inner dropout)
            if build.channels_last(spec, p.model, device):
                used = replace(used, layout="channels_last")
            lane.early = p.early
            best_state: dict[str, torch.Tensor] | None = None
            ending: Ending | None = None
            while ending is None and len(lane.history) < spec.epochs:
                # 3. one epoch of training, validation and diagnostics, one host sync; the
                # lane's verdict (lifecycle): diverged, pruned, early stopping, best epoch
                verdict = lane.epoch_ended(run_epoch(p, names), on_epoch)
                if verdict.keep_best:
                    best_state = {k: v.detach().clone() for k, v in p.model.state_dict().items()}
                ending = verdict.ending
            ending = ending or lane.completed()
            if ending.status != "finished":
                return result(ending)
            # 4. best weights if asked, then the held-out test split
            if best_state is not None:
                p.model.load_state_dict(best_state)
            final = held_out_metrics(p, names)
            return result(ending, final, checkpoint_bytes(
                p.model, p.optimizer.state_dict(), spec, lane.checkpoint_metrics(final),
                lane.weights_epoch(), len(lane.history)) if keep_checkpoint else None)
    except KeyboardInterrupt:
        return result(Ending("killed", {
            "reason": lane.interruption()}))
    except Exception as err:  # a broken trial must not stop the suite
        return result(Ending("failed", {"reason": "".join(
            traceback.format_exception(type(err), err, err.__traceback__))[-4000:]}))


def evaluate_checkpoint(blob: bytes, device: torch.device) -> dict[str, float]:
    """Rebuild a checkpoint's trial (data split, model) and evaluate its weights on test."""
    state = torch.load(io.BytesIO(blob), map_location=device, weights_only=True)
    spec = TrialSpec.from_canonical(state["spec"])
    with seeding.trial_rng(spec.seed_of("init"), device):
        parts = build.build_parts(spec, device)
    parts.model.load_state_dict(state["model"])
    return held_out_metrics(parts, metric_names(spec))


class SerialEngine:
    """One trial at a time on one device: the reference numerics."""

    name = "serial"
    lane_limit = 1
    own_threads = True  # make_engine passes threads only when asked for, and the workers

    def __init__(self, device: torch.device, *, keep_checkpoints: bool = False,
                 threads: int | None = None, workers: int = 1,
                 kept_threads: int | None = None,
                 keep_threads: Callable[[int], int] | None = None, **_lanes: Any) -> None:
        """`threads`: every trial's intra-op threads (None: chosen per trial,
        `threads_for`); `workers`: processes sharing the cores; `kept_threads`: the
        threads a large trial of the suite trains with, kept by its queue (None: timed at
        the first, `chosen_threads`); `keep_threads(timed)`: keeps a timed count in the
        queue unless another worker's came first, and returns the one kept.
        `**_lanes`: the registry's lane options (max_lanes, population, fixed_lanes),
        which one trial at a time has no use for."""
        self.device = device
        self.keep_checkpoints = keep_checkpoints
        self.threads = threads
        self.workers = workers
        # a large trial's threads: kept by the suite's queue, or timed once (threads_for)
        self.chosen_threads = kept_threads
        self.keep_threads = keep_threads
        # why a large trial trains on chosen_threads, said once (describe)
        self._why: str | None = None if kept_threads is None else (
            "the count the suite's queue keeps from its first such trial (a fresh queue, "
            "--storage, chooses again)")
        self._told = False

    @classmethod
    def default_threads(cls, device: torch.device, workers: int = 1) -> int:
        """1: a small model's step is faster on one thread (and on a GPU the host thread
        only feeds the device). A trial whose steps are large may get more (`threads_for`)."""
        return 1

    def threads_for(self, spec: TrialSpec) -> int:
        """The trial's intra-op threads: those asked for; else, on a CPU, 1 when a training
        step takes under SPLIT_FLOPS (the default MLP's steps ran faster on 1:
        tests/benchmarks/test_engine_speed.py); above, of 1 to the worker's share of the
        cores, the count its step runs fastest with now (a ResNet-20 epoch on CIFAR-shaped
        data ran 1.8× faster on 2 threads than on 1 on a quiet 2-core machine, 1.3×
        slower with one busy process alongside): `chosen_threads`, kept by the suite's
        queue, else chosen at the engine's first large trial (`_timed`: the share where
        no other process is running, else timed) and kept for the rest (where the timing
        fails, the share: the trial says why)."""
        if self.threads:
            return self.threads
        share = self._large_share(spec)
        if share is None:
            return self.default_threads(self.device, self.workers)
        if self.chosen_threads is None:
            self.chosen_threads = self._timed(spec, share)
        return min(self.chosen_threads, share)

    def _large_share(self, spec: TrialSpec) -> int | None:
        """The worker's share of the cores where the trial's threads are chosen by timing
        (a CPU, a step of SPLIT_FLOPS or more, a share above 1); None where it gets the
        policy's default."""
        from nnbench.train.engine import SPLIT_FLOPS, shared_cores

        share = shared_cores(self.device, self.workers)
        if self.device.type != "cpu" or share == 1:
            return None
        try:
            flops = build.step_flops(spec)
        except Exception:  # a plugin's dataset without a shape, a model that cannot be
            return None  # built alone: the trial itself says why; the policy's default here
        return share if flops >= SPLIT_FLOPS else None

    def _timed(self, spec: TrialSpec, share: int) -> int:
        """The threads of the trial's step, of 1 to `share`: `share` where no other process
        wants a core now (more threads then only help a step this large; the timing, about
        0.35 s for ResNet-20, is spared), else the count its step is timed fastest with;
        kept in the suite's queue (another worker's, kept first, wins)."""
        from nnbench.train.engine import fastest_threads, others_running

        if others_running() == 0:
            fastest = share
            found = "the worker's share of the cores, as no other process was running"
        else:
            try:
                fastest, times = fastest_threads(build.timing_step(spec, self.device), share)
            except Exception as err:  # the trial itself fails on it and says why
                self._why = (f"the worker's share of the cores: timing their step failed "
                             f"({first_line(err, with_type=True)})")
                return share
            found = "the fastest now (a step on " + ", ".join(
                f"{count} {'thread' if count == 1 else 'threads'} {seconds:.3f} s"
                for count, seconds in times.items()) + ")"
        kept = self.keep_threads(fastest) if self.keep_threads is not None else fastest
        self._why = found if kept == fastest else (
            f"the count the suite's queue keeps, chosen by another worker first (here: {found})")
        return kept

    @classmethod
    def most_lanes(cls, device: torch.device) -> int:
        return 1

    def describe(self, trials: Sequence[TrialSpec]) -> list[str]:
        """Once: the threads its trials with large steps train on, and why (timed now, or
        kept by the suite's queue)."""
        if self._told or self.threads:
            return []
        for spec in trials:
            if self._large_share(spec) is not None:
                threads = self.threads_for(spec)
                self._told = True
                return [f"serial engine: {threads} thread(s) for each trial whose training "
                        f"step takes 1 GFLOP or more: {self._why}; --threads N sets them"]
        return []

    def run(self, trials: Sequence[TrialSpec], listener: Any) -> Iterator[TrialResult]:
        from nnbench.train.engine import torch_threads

        for spec in trials:
            chosen = self.threads_for(spec)  # (a large trial's first: timed, before it starts)
            if not listener.trial_started(spec):
                continue
            with torch_threads(self.device, chosen) as threads:
                numerics = Numerics(engine="serial", lanes=1,
                                    precision=seeding.precision_on(self.device),
                                    threads=threads)
                result = train_trial(spec, self.device, on_epoch=listener.epoch_finished,
                                     keep_checkpoint=self.keep_checkpoints, numerics=numerics)
            yield result
            if result.status == "killed":  # Ctrl-C: train nothing more
                return
