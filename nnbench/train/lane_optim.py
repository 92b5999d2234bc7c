"""Per-lane optimizer update rules and hyperparameter tables for the stacked engine.

`torch.optim` takes one learning rate per parameter group; a stacked group needs one
per lane. Each rule here is the single-tensor update of its `torch.optim` class
(torch/optim/{sgd,adagrad,rmsprop,adam}.py, `_single_tensor_*`) rewritten with the
lane dimension first, over all of a model's parameters at once: they are one
`[lanes, P]` tensor (`StackedModel.flat`) and every hyperparameter a `[lanes, 1]`
column broadcast over it, so each term of a rule is one op whatever the number of
layers. tests/test_stacked.py checks each rule beside its `torch.optim` reference.

Schedules act through tables: for each lane, its own schedule is built by the
registry on a one-parameter optimizer of the lane's class and stepped through the
whole run, recording, per optimizer step, every value a PyTorch scheduler may
change (`lr`, and `momentum` / `betas` for OneCycleLR's momentum cycling). The
per-step scalars a rule needs (Adam's bias corrections and step sizes, Adagrad's
decayed lr) are computed on the host in double precision, as torch computes them
from Python floats, and held on the device as `[steps, lanes, 1]` tables: training
reads one row per step, with no host round trip.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nnbench import registry
from nnbench.config import TrialSpec
from nnbench.registry import ComponentSpec

__all__ = ["FLAGS", "LaneOptimizer", "schedule_tables"]

# Optimizer parameters that change which operations run: equal within a stacked group.
FLAGS: dict[str, tuple[str, ...]] = {
    "sgd": ("nesterov", "maximize"),
    "adagrad": ("maximize",),
    "rmsprop": ("centered", "maximize"),
    "adam": ("amsgrad", "maximize"),
    "adamw": ("amsgrad", "maximize"),
}
_TORCH_CLASS = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad,
                "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
                "adamw": torch.optim.AdamW}


def schedule_tables(spec: TrialSpec, steps_per_epoch: int) -> dict[str, list[float]]:
    """Per optimizer step (epochs × steps_per_epoch), the values the lane's schedule sets.

    Keys: `lr`, plus `momentum` (sgd, rmsprop) or `beta1` (adam, adamw). The schedule is
    the registry's own, stepped per batch or per epoch as the serial engine steps it.
    """
    return _schedule_tables(spec.optimizer, spec.schedule, spec.epochs, steps_per_epoch)


@functools.lru_cache(maxsize=256)
def _schedule_tables(optimizer_spec: ComponentSpec, schedule_spec: ComponentSpec, epochs: int,
                     steps_per_epoch: int) -> dict[str, list[float]]:
    name = optimizer_spec.name
    dummy = torch.nn.Parameter(torch.zeros(1))
    optimizer = registry.build("optimizer", optimizer_spec, parameters=[dummy])
    schedule = registry.build("schedule", schedule_spec, optimizer=optimizer,
                              epochs=epochs, steps_per_epoch=steps_per_epoch)
    group = optimizer.param_groups[0]
    tables: dict[str, list[float]] = {"lr": []}
    if name in ("sgd", "rmsprop"):
        tables["momentum"] = []
    elif name in ("adam", "adamw"):
        tables["beta1"] = []
    with warnings.catch_warnings():  # stepping a schedule without optimizer steps is the point
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        for _ in range(epochs):
            for _ in range(steps_per_epoch):
                tables["lr"].append(float(group["lr"]))
                if "momentum" in tables:
                    tables["momentum"].append(float(group["momentum"]))
                if "beta1" in tables:
                    tables["beta1"].append(float(group["betas"][0]))
                if schedule.interval == "batch":
                    schedule.scheduler.step()
            if schedule.interval == "epoch":
                schedule.scheduler.step()
    return tables


@dataclass
class _Hyper:
    """Constant per-lane hyperparameters, `[lanes, 1]` columns on the device."""

    values: dict[str, torch.Tensor]

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.values[key]


class LaneOptimizer:
    """One optimizer rule over a `[lanes, P]` parameter tensor, per-lane hyperparameters.

    `specs[i]` is lane i's trial (None for a padding lane, which never moves: lr 0).
    `step(grad)` applies step `t` (counted from 0) reading row t of the tables.
    """

    def __init__(self, specs: Sequence[TrialSpec | None], param: torch.Tensor,
                 steps_per_epoch: int, device: torch.device) -> None:
        real = [s for s in specs if s is not None]
        self.name = real[0].optimizer.name
        if self.name not in _TORCH_CLASS:
            raise ValueError(f"no per-lane rule for optimizer {self.name!r}")
        self.param = param
        self.device = device
        self.lanes = len(specs)
        kwargs = [s.optimizer.kwargs if s is not None else None for s in specs]
        template = real[0].optimizer.kwargs
        self.flags = {f: bool(template[f]) for f in FLAGS[self.name]}
        steps = real[0].epochs * steps_per_epoch
        # host tables (double precision, as torch's Python-float arithmetic), per lane
        host: dict[str, list[list[float]]] = {}
        for spec in specs:
            table = schedule_tables(spec, steps_per_epoch) if spec is not None else None
            for key in ("lr", "momentum", "beta1"):
                if table is not None and key in table:
                    host.setdefault(key, []).append(table[key])
                elif table is None:
                    host.setdefault(key, []).append([0.0] * steps)
        self.host = {k: v for k, v in host.items() if len(v) == self.lanes}

        def values(key: str, default: float = 0.0) -> list[float]:
            return [float(k[key]) if k is not None else default for k in kwargs]

        def column(floats: list[float]) -> torch.Tensor:
            return torch.tensor(floats, dtype=torch.float32, device=device)[:, None]

        self.weight_decay = values("weight_decay")
        hyper: dict[str, torch.Tensor] = {"weight_decay": column(self.weight_decay)}
        self.any_weight_decay = any(self.weight_decay)
        self.any_momentum = False
        if self.name == "sgd":
            hyper["dampening"] = column(values("dampening"))
            self.any_dampening = any(k is not None and k["dampening"] for k in kwargs)
            momentum_rows = self.host["momentum"]
            self.any_momentum = any(any(m != 0 for m in row) for row in momentum_rows)
        elif self.name == "adagrad":
            hyper["eps"] = column(values("eps", 1.0))
            self.lr_decay = values("lr_decay")
            hyper["initial_accumulator_value"] = column(values("initial_accumulator_value"))
        elif self.name == "rmsprop":
            hyper["alpha"] = column(values("alpha"))
            hyper["eps"] = column(values("eps", 1.0))
            self.any_momentum = any(any(m > 0 for m in row) for row in self.host["momentum"])
        else:  # adam, adamw
            self.beta2 = [float(k["betas"][1]) if k is not None else 0.0 for k in kwargs]
            hyper["beta2"] = column(self.beta2)
            hyper["eps"] = column(values("eps", 1.0))
        self.hyper = _Hyper(hyper)
        self.tables = self._device_tables(steps)
        self.state: dict[str, torch.Tensor] = {}
        self._init_state()
        self.t = 0  # optimizer steps taken

    # -- tables -------------------------------------------------------------------------

    def _device_tables(self, steps: int) -> dict[str, torch.Tensor]:
        """`[steps, lanes, 1]` float32 tables of every per-step scalar the rule reads."""
        lr = self.host["lr"]
        out: dict[str, list[list[float]]] = {}
        if self.name in ("sgd", "rmsprop"):
            out["lr"] = [list(row) for row in zip(*lr, strict=True)]
            out["momentum"] = [list(row) for row in zip(*self.host["momentum"], strict=True)]
        if self.name == "adagrad":
            out["clr"] = [[lr[i][t] / (1 + t * self.lr_decay[i]) for i in range(self.lanes)]
                          for t in range(steps)]
        if self.name in ("adam", "adamw"):
            beta1 = self.host["beta1"]
            out["beta1"] = [list(row) for row in zip(*beta1, strict=True)]
            step_size, bc2_sqrt, decay = [], [], []
            for t in range(steps):
                step = t + 1
                step_size.append([lr[i][t] / (1 - beta1[i][t] ** step)
                                  for i in range(self.lanes)])
                bc2_sqrt.append([(1 - self.beta2[i] ** step) ** 0.5 for i in range(self.lanes)])
                if self.name == "adamw":
                    decay.append([1 - lr[i][t] * self.weight_decay[i]
                                  for i in range(self.lanes)])
            out["step_size"], out["bias_correction2_sqrt"] = step_size, bc2_sqrt
            if self.name == "adamw":
                out["decay"] = decay
        return {k: torch.tensor(v, dtype=torch.float32, device=self.device)[:, :, None]
                for k, v in out.items()}

    def _init_state(self) -> None:
        def zeros() -> torch.Tensor:
            return torch.zeros_like(self.param, memory_format=torch.contiguous_format)

        if self.name == "sgd":
            if self.any_momentum:
                self.state["momentum_buffer"] = zeros()
        elif self.name == "adagrad":
            self.state["sum"] = zeros().add_(self.hyper["initial_accumulator_value"])
        elif self.name == "rmsprop":
            self.state["square_avg"] = zeros()
            if self.any_momentum:
                self.state["momentum_buffer"] = zeros()
            if self.flags["centered"]:
                self.state["grad_avg"] = zeros()
        else:
            self.state["exp_avg"] = zeros()
            self.state["exp_avg_sq"] = zeros()
            if self.flags["amsgrad"]:
                self.state["max_exp_avg_sq"] = zeros()

    # -- the update ---------------------------------------------------------------------

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        """One step of every lane; `grad` is laid out as the parameter, `[lanes, P]`."""
        if self.flags.get("maximize"):
            grad = -grad
        rule = {"sgd": self._sgd, "adagrad": self._adagrad,
                "rmsprop": self._rmsprop}.get(self.name, self._adam)
        rule(self.param, grad)
        self.t += 1

    def _row(self, key: str) -> torch.Tensor:
        """This step's `[lanes, 1]` column of table `key`."""
        return self.tables[key][self.t]

    def _coupled_decay(self, param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """grad + λ·w (coupled L2), as `grad.add(param, alpha=weight_decay)`."""
        if not self.any_weight_decay:
            return grad
        return grad.addcmul(param, self.hyper["weight_decay"])

    def _sgd(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        grad = self._coupled_decay(param, grad)
        if self.any_momentum:
            momentum = self._row("momentum")
            buf = self.state["momentum_buffer"]
            if self.t == 0:
                buf.copy_(grad)  # torch: the first step's buffer is the gradient itself
            elif self.any_dampening:
                # torch skips the buffer for momentum 0: buf = g, whatever the dampening
                damp = torch.where(momentum == 0, 0.0, self.hyper["dampening"])
                buf.mul_(momentum).addcmul_(grad, 1 - damp)
            else:
                buf.mul_(momentum).add_(grad)
            grad = grad.addcmul(buf, momentum) if self.flags["nesterov"] else buf
        param.addcmul_(grad, self._row("lr"), value=-1)

    def _adagrad(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        grad = self._coupled_decay(param, grad)
        state_sum = self.state["sum"]
        state_sum.addcmul_(grad, grad, value=1)
        std = state_sum.sqrt().add_(self.hyper["eps"])
        param.addcmul_(grad / std, self._row("clr"), value=-1)

    def _rmsprop(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        grad = self._coupled_decay(param, grad)
        alpha = self.hyper["alpha"]
        square_avg = self.state["square_avg"]
        square_avg.mul_(alpha).addcmul_(grad, grad * (1 - alpha))
        if self.flags["centered"]:
            grad_avg = self.state["grad_avg"]
            grad_avg.lerp_(grad, 1 - alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(self.hyper["eps"])
        lr = self._row("lr")
        if self.any_momentum:
            buf = self.state["momentum_buffer"]
            buf.mul_(self._row("momentum")).addcdiv_(grad, avg)
            param.addcmul_(buf, lr, value=-1)
        else:
            param.addcmul_(grad / avg, lr, value=-1)

    def _adam(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        if self.name == "adamw":
            if self.any_weight_decay:
                param.mul_(self._row("decay"))
        else:
            grad = self._coupled_decay(param, grad)
        exp_avg, exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - self._row("beta1"))
        beta2 = self.hyper["beta2"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad * (1 - beta2))
        second = exp_avg_sq
        if self.flags["amsgrad"]:
            second = self.state["max_exp_avg_sq"]
            torch.maximum(second, exp_avg_sq, out=second)
        denom = (second.sqrt() / self._row("bias_correction2_sqrt")).add_(self.hyper["eps"])
        param.addcmul_(exp_avg / denom, self._row("step_size"), value=-1)

    # -- lanes leaving the group ----------------------------------------------------------

    @torch.no_grad()
    def retire(self, lanes: Sequence[int]) -> None:
        """Lanes that stopped: from now on their lr is 0 and their state is cleared (one
        op per tensor whatever the number of lanes)."""
        if not lanes:
            return
        index = torch.tensor(list(lanes), device=self.device)
        ones = ("decay", "bias_correction2_sqrt", "eps")
        for key, table in self.tables.items():
            table[:, index] = 1.0 if key in ones else 0.0
        for key, value in self.hyper.values.items():
            value[index] = 1.0 if key in ones else 0.0
        for buf in self.state.values():
            buf[index] = 0.0

    def torch_state(self, lane: int, params: Sequence[torch.nn.Parameter], spec: TrialSpec,
                    unflatten: Callable[[torch.Tensor], list[torch.Tensor]]) -> dict[str, Any]:
        """The lane's optimizer as `torch.optim`'s `state_dict()` over `params` (checkpoints);
        `unflatten` splits a lane's `[P]` row into its parameters' tensors."""
        optimizer = registry.build("optimizer", spec.optimizer, parameters=params)
        group = optimizer.param_groups[0]
        t = max(self.t - 1, 0)
        group["lr"] = float(self.host["lr"][lane][t]) if self.t else group["lr"]
        if "momentum" in self.host and self.t:
            group["momentum"] = float(self.host["momentum"][lane][t])
        if "beta1" in self.host and self.t:
            group["betas"] = (float(self.host["beta1"][lane][t]), group["betas"][1])
        if self.t:
            per_param = {key: unflatten(buf[lane]) for key, buf in self.state.items()}
            for j, param in enumerate(params):
                entry: dict[str, Any] = {}
                for key, tensors in per_param.items():
                    entry[key] = tensors[j].detach().clone(
                        memory_format=torch.contiguous_format).reshape(param.shape)
                if self.name != "sgd":
                    entry["step"] = torch.tensor(float(self.t))
                optimizer.state[param] = entry
        state: dict[str, Any] = optimizer.state_dict()
        return state

