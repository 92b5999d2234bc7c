"""One lane's lifecycle: what every engine does to a trial around its training steps.

Written once, with the lanes first (`[lanes, ...]`; the serial engine is one lane), and
used by every engine:

- `Lane.epoch_ended`: after each epoch, in order: record the epoch, tell the listener,
  end as `diverged` on a non-finite train or val loss, as `pruned` when the listener
  says stop, or as `finished` when early stopping runs out of patience; else note the
  best epoch (and whether to keep the best weights aside: restore_best);
- `Lane.completed`: the ending of a lane that trained every epoch;
- `penalty`: the L1/L2 term added to the training loss;
- `diagnostics`: gradient norm per layer, dead or saturated units and weight sparsity,
  from the probe batch's gradients and its activations (`Activations`, summed up pass by
  pass);
- `epoch_metrics`: every lane's epoch metrics read in one host sync, gaps added.

An engine keeps the weights (best weights where `keep_best` says so), the test split
and the fingerprints; what it reports comes from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nnbench.components.regularizers import EarlyStopping
from nnbench.config import TrialSpec
from nnbench.train.metrics import SATURATED_BELOW, SPARSE_BELOW, add_gaps
from nnbench.train.results import CONTINUE, Decision, Status

__all__ = ["Activations", "Ending", "EpochListener", "Lane", "Verdict", "diagnostics",
           "epoch_metrics", "penalty"]

EpochListener = Callable[[TrialSpec, dict[str, float]], Decision]
UNIT_DIAGNOSTIC = {"relu": "dead_fraction", "saturating": "saturated_fraction"}


@dataclass(frozen=True)
class Ending:
    """How a lane ends: its status and the TrialResult fields that say why (`reason`,
    `diverged_epoch`, `best_epoch`, `stopped_epoch`)."""

    status: Status
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    """A lane's state after an epoch: its ending (None: it trains on), and whether its
    weights of this epoch are its best so far and must be kept aside (restore_best)."""

    ending: Ending | None = None
    keep_best: bool = False


@dataclass
class Lane:
    """One trial's life in an engine: its history, its best epoch and what ends it."""

    spec: TrialSpec
    early: EarlyStopping | None
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # by the early-stopping monitor, else by val_loss
    best_value: float = math.inf  # the best val_loss (without early stopping)
    has_best: bool = False  # best weights were kept aside (restore_best)
    done: bool = False  # the engine has handed back its result

    def epoch_ended(self, metrics: dict[str, float],
                    listener: EpochListener | None = None) -> Verdict:
        """1. record the epoch; 2. tell the listener; 3. diverged; 4. pruned; 5. early
        stopping (best epoch, patience); 6. else the best epoch by val_loss."""
        epoch = len(self.history) + 1
        metrics["epoch"] = float(epoch)
        self.history.append(metrics)
        decision = listener(self.spec, metrics) if listener is not None else CONTINUE
        bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(metrics[k])]
        if bad:
            return Verdict(Ending("diverged", {
                "diverged_epoch": epoch,
                "reason": f"{bad[0]} became {metrics[bad[0]]} at epoch {epoch}"}))
        if decision.stop:
            return Verdict(Ending("pruned", {"reason": decision.reason}))
        if self.early is None:
            if metrics["val_loss"] < self.best_value:
                self.best_epoch, self.best_value = epoch, metrics["val_loss"]
            return Verdict()
        improved, stop_now = self.early.update(epoch, metrics[self.early.params.monitor])
        keep = improved and self.early.params.restore_best
        if improved:
            self.best_epoch = epoch
            self.has_best = self.has_best or keep
        if not stop_now or epoch >= self.spec.epochs:  # at the last epoch it stops nothing:
            # the lane completes (stopped_epoch and the reason said it stopped early)
            return Verdict(keep_best=keep)
        params = self.early.params
        return Verdict(Ending("finished", {
            "best_epoch": self.best_epoch, "stopped_epoch": epoch,
            "reason": f"early stopping at epoch {epoch}: {params.monitor} did not improve "
                      f"for {params.patience} epochs"}), keep_best=keep)

    def interruption(self) -> str:
        """Why a lane an interrupt stopped ends: the epoch it was in, or, past its last,
        that only its end was not recorded."""
        if len(self.history) >= self.spec.epochs:
            return (f"interrupted after its last epoch ({len(self.history)}), before its "
                    f"end was recorded")
        return f"interrupted during epoch {len(self.history) + 1}"

    def weights_epoch(self) -> int:
        """The epoch whose weights the trial ends with: its best when they were kept aside
        to be restored (restore_best), else the last it trained."""
        return self.best_epoch if self.has_best else len(self.history)

    def checkpoint_metrics(self, final: dict[str, float]) -> dict[str, float]:
        """A checkpoint's metrics: those of the epoch of its weights, and the test split's."""
        return {**self.history[self.weights_epoch() - 1], **final}

    def completed(self) -> Ending:
        """The ending of a lane that trained every epoch."""
        return Ending("finished", {"best_epoch": self.best_epoch})


def penalty(weights: Sequence[torch.Tensor], l1: float | torch.Tensor | None,
            l2: float | torch.Tensor | None, *, lanes: bool) -> torch.Tensor | None:
    """λ₁·Σ|w| + ½λ₂·Σw² over the weights (not biases, not norm layers); None when both
    are off. `lanes`: the weights have the lanes first and λ₁, λ₂ are per lane; the
    penalty is then one per lane ([lanes])."""
    def total(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(1).sum(1) if lanes else t.sum()

    out: torch.Tensor | None = None
    if l1 is not None:
        out = l1 * torch.stack([total(w.abs()) for w in weights]).sum(0)
    if l2 is not None:
        term = 0.5 * l2 * torch.stack([total(w.square()) for w in weights]).sum(0)
        out = term if out is None else out + term
    return out


class Activations:
    """The probe's hidden activations, summed up pass by pass (the probe may run in
    passes over its examples) into what the diagnostics read: per activation, each
    unit's (or channel's) largest value over the examples and positions, `[lanes,
    units]` (relu family: a unit is dead when it is never positive), and per lane how
    many of its values sit where the activation's slope is below SATURATED_BELOW of its
    maximum (saturating family). Each pass is reduced as it is met, so the passes'
    activations are never joined into one copy.

    `families`: each lane's activation family; `sigmoid`: which lanes' saturating
    activation is the sigmoid (slope a(1-a)/¼), the others tanh (1-a²).
    """

    def __init__(self, families: Sequence[str | None], sigmoid: torch.Tensor | bool) -> None:
        self.lanes = len(families)
        self.relu = "relu" in families
        self.saturating = "saturating" in families
        self.sigmoid = sigmoid
        self.passes: list[int] = []  # activations met by each pass
        self.peaks: list[torch.Tensor] = []  # per activation, [lanes, units]
        self.saturated: torch.Tensor | None = None  # per lane, values saturated (float32)
        self.values = 0  # values per lane the saturated count is out of

    def add(self, activations: Sequence[torch.Tensor]) -> None:
        """One pass's activations, in the order its forward met them, each `[lanes,
        batch, units or channels, ...]`. Every pass must meet the same activations: a
        model whose forward takes another path on other examples cannot be probed in
        passes (ValueError)."""
        self.passes.append(len(activations))
        if len(set(self.passes)) > 1:
            raise ValueError(f"the model's activations ran {self.passes} times in the probe's "
                             f"passes over its examples; the diagnostics need the same "
                             f"activations for every example")
        if any(a.shape[0] != self.lanes for a in activations):
            raise ValueError(f"the diagnostics take activations with the lanes first "
                             f"([{self.lanes}, batch, ...]); given "
                             f"{[tuple(a.shape) for a in activations]}")
        for i, a in enumerate(activations):
            if a.dim() == 5 and a.device.type == "cpu" and not a.is_contiguous() \
                    and a[0].is_contiguous(memory_format=torch.channels_last):
                # torch's CPU reductions over the examples and positions of a channels-last
                # [examples, C, H, W] tensor run about 10× slower than a copy to NCHW and a
                # reduction of that (a stacked engine's [lanes, ...] view reduces fast as is)
                a = a.contiguous()
            if self.relu:  # NaN is no unit's largest value: NaN > 0 and <= 0 are both false
                peak = a.amax(dim=(1, *range(3, a.dim())))
                if len(self.passes) == 1:
                    self.peaks.append(peak)
                elif peak.shape != self.peaks[i].shape:
                    raise ValueError(f"activation {i + 1} of the probe has {peak.shape[1]} "
                                     f"units in one pass and {self.peaks[i].shape[1]} in "
                                     f"another; the diagnostics need the same units for "
                                     f"every example")
                else:
                    self.peaks[i] = torch.maximum(self.peaks[i], peak)
            if self.saturating:
                flat = a.reshape(a.shape[0], -1)
                if isinstance(self.sigmoid, bool):
                    slope = flat * (1 - flat) / 0.25 if self.sigmoid else 1 - flat.square()
                else:
                    slope = torch.where(self.sigmoid[:, None], flat * (1 - flat) / 0.25,
                                        1 - flat.square())
                count = (slope < SATURATED_BELOW).sum(1, dtype=torch.float32)
                self.saturated = count if self.saturated is None else self.saturated + count
                self.values += flat.shape[1]

    def fractions(self) -> dict[str, torch.Tensor]:
        """dead_fraction (relu family) and saturated_fraction (saturating family), each
        `[lanes]`, over every unit or value of every activation met."""
        out = {}
        if self.peaks:
            out["dead_fraction"] = _mean(torch.cat([p <= 0 for p in self.peaks], dim=1))
        if self.saturated is not None:
            out["saturated_fraction"] = self.saturated / self.values
        return out


def diagnostics(layer_grads: Sequence[Sequence[torch.Tensor]], activations: Activations,
                weights: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every lane's diagnostics on the probe batch, on device, each `[lanes]`
    (see README, "What a trial logs per epoch").

    Every tensor has the lanes first. `layer_grads`: per weight layer, the gradients of
    its weights (a GRU's matrices taken together; none: 0); `activations`: the hidden
    activations' summaries (dead and saturated units); `weights`: the weights (sparsity).
    """
    out = {f"grad_norm.layer{i}": _grad_norm(grads, weights[0])
           for i, grads in enumerate(layer_grads, 1)}
    out.update(activations.fractions())
    flat = torch.cat([w.detach().flatten(1) for w in weights], dim=1)
    out["weight_sparsity"] = _mean(flat.abs() < SPARSE_BELOW)
    return out


def _grad_norm(grads: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Per lane, the L2 norm of one weight layer's weight gradients."""
    if not grads:
        return torch.zeros(like.shape[0], device=like.device)
    norms: list[torch.Tensor] = [g.flatten(1).norm(dim=1) for g in grads]
    if len(norms) == 1:
        return norms[0]
    total: torch.Tensor = torch.stack(norms).norm(dim=0)
    return total


def _mean(flags: torch.Tensor) -> torch.Tensor:
    """Per lane, the share of True in a `[lanes, n]` bool tensor (float32)."""
    return flags.sum(1, dtype=torch.float32) / flags.shape[1]


def epoch_metrics(names: tuple[str, ...], losses: Sequence[torch.Tensor],
                  scores: Sequence[torch.Tensor], diagnosed: Mapping[str, torch.Tensor],
                  families: Sequence[str | None]) -> list[dict[str, float]]:
    """Each lane's metrics of an epoch, read in ONE host sync: train_loss, val_loss
    (`losses`: [lanes] each), train_<metric>, val_<metric> (`scores`: [lanes, metrics]
    each), the diagnostics (only a lane's own family's unit diagnostic) and the gaps."""
    keys = ["train_loss", "val_loss", *(f"train_{m}" for m in names),
            *(f"val_{m}" for m in names), *diagnosed]
    # float32 columns join the float64 metrics exactly; one read for the whole table
    table = torch.cat([torch.stack(list(losses), dim=1), *scores,
                       torch.stack(list(diagnosed.values()), dim=1)], dim=1).tolist()
    out = []
    for row, family in zip(table, families, strict=True):
        metrics = dict(zip(keys, row, strict=True))
        for split in ("train", "val"):  # outputs of a diverged model score nothing: an
            # argmax of NaN logits "scored" the share of one class (val_accuracy 0.5)
            if not math.isfinite(metrics[f"{split}_loss"]):
                metrics.update({f"{split}_{m}": math.nan for m in names})
        for own, key in UNIT_DIAGNOSTIC.items():
            if key in metrics and family != own:
                del metrics[key]
        add_gaps(metrics, names)
        out.append(metrics)
    return out
