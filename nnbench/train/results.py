"""What engines hand back: one `TrialResult` per trial, and the listener's answers.

Plain data with no torch import, so tracking, results and the runner read results
without importing the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from nnbench.config import TrialSpec

__all__ = ["CONTINUE", "Decision", "Numerics", "Status", "TrialResult", "stop"]

Status = Literal["finished", "diverged", "failed", "killed", "pruned"]


@dataclass(frozen=True)
class Decision:
    """A listener's answer after an epoch: go on, or stop the trial (status `pruned`)."""

    stop: bool = False
    reason: str = ""  # why the listener stopped it (shown and recorded)


CONTINUE = Decision()


def stop(reason: str) -> Decision:
    return Decision(stop=True, reason=reason)


@dataclass(frozen=True)
class Numerics:
    """How a trial's numbers were produced; part of its provenance.

    Results of different numerics are not bitwise comparable: the report never pools
    them silently.
    """

    engine: str = "serial"  # the engine's name: serial, stacked, or a registered one
    lanes: int = 1  # trials trained together as one batched model (1 for serial)
    precision: str = "fp32"  # fp32 | tf32 | bf16-autocast
    threads: int = 1  # torch intra-op threads while training (CPU)
    # the model's memory layout: "" torch's own, "channels_last" (build.channels_last)
    layout: str = ""

    def tags(self) -> dict[str, str]:
        return {"nnbench.engine": self.engine, "nnbench.lanes": str(self.lanes),
                "nnbench.precision": self.precision, "nnbench.threads": str(self.threads),
                **({"nnbench.layout": self.layout} if self.layout else {})}

    def label(self) -> str:
        """`stacked×32 fp32 1 thread`: how the report names a numerics group (`serial fp32 2
        threads channels-last`: a CPU conv net's layout, where it is not torch's own)."""
        lanes = f"×{self.lanes}" if self.lanes > 1 else ""
        layout = f" {self.layout.replace('_', '-')}" if self.layout else ""
        return (f"{self.engine}{lanes} {self.precision} {self.threads} "
                f"thread{'s' if self.threads != 1 else ''}{layout}")

    @classmethod
    def from_label(cls, label: str) -> Numerics | None:
        """The numerics a `label()` names (None: not one, e.g. "not recorded")."""
        words = label.split()
        if len(words) < 4 or not words[2].isdigit():
            return None
        engine, _, lanes = words[0].partition("×")
        return cls(engine=engine, lanes=int(lanes) if lanes.isdigit() else 1,
                   precision=words[1], threads=int(words[2]),
                   layout=" ".join(words[4:]).replace("-", "_"))


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
    # the epoch whose weights it ends with (the best, restored: restore_best), if it trained
    weights_epoch: int | None = None
    checkpoint: bytes | None = field(default=None, repr=False)  # torch.save'd dict
    numerics: Numerics = field(default_factory=Numerics)
