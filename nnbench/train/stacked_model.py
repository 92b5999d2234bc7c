"""Many same-shaped models as one: the stacked engine's batched forward pass.

`StackedModel(lane_models, drawn=...)` takes one built `nn.Sequential` per lane (lanes of
one activation may share one) and every lane's initial weights drawn at once (`drawn`:
state_dict key -> `[lanes, ...]`; without it, each lane model's own weights, as the
serial engine built them), and holds them as `[lanes, ...]` tensors under the same
state_dict names. Its forward
pass reads like the unbatched one, layer by layer:

- activations flow as `[lanes, batch, features]`; a Linear is one `baddbmm` (its weight
  held as `[lanes, in, out]` and its bias as `[lanes, 1, out]`, so the step needs no
  transpose or unsqueeze);
- conv blocks flow as `[batch, lanes·channels, H, W]`: a Conv2d is one grouped
  convolution (groups = lanes), BatchNorm2d is batch norm over lanes·channels (each
  lane's channels keep their own statistics), max pooling and activations apply as is;
- BatchNorm1d runs on `[batch, lanes·features]`, so each lane normalises over its own
  batch;
- Dropout draws each lane's mask from that lane's own generator, as the serial model
  does; nothing is drawn from a global or shared stream.

Every parameter is a view into one `[lanes, P]` tensor (`flat`): the optimizer updates
all of them with one op per term, and `flat_grad` gathers their gradients the same way.

No operation mixes lanes: a lane's numbers depend on its own inputs and weights only.
Modules without a stacked form raise `Unstackable` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from nnbench.components.regularizers import Dropout

__all__ = ["ELEMENTWISE", "StackedModel", "Unstackable"]

# Activation modules that act elementwise: they apply to stacked tensors unchanged.
ELEMENTWISE = (nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU,
               nn.GELU, nn.SiLU)

Layout = Literal["lanes", "channels"]


def lane_index(lanes: Sequence[int], device: torch.device) -> torch.Tensor:
    """Lane numbers as an index on `device`. On a GPU through pinned memory, without
    blocking: `torch.tensor(lanes, device=cuda)` waits for the device (a sync wherever a
    lane improves or ends); the caching host allocator keeps the pinned copy until the
    transfer is done."""
    index = torch.tensor(list(lanes), dtype=torch.long)
    if device.type != "cuda":
        return index.to(device)
    return index.pin_memory().to(device, non_blocking=True)


class Unstackable(ValueError):
    """A model (or configuration) the stacked engine cannot train as lanes; says why."""


@dataclass
class _Op:
    kind: str  # flatten, linear, conv2d, batchnorm, activation, dropout, maxpool
    module: nn.Module  # the template module (its hyperparameters: stride, eps, ...)
    # activations that differ between lanes: (module, first lane, lanes) per run of
    # consecutive lanes with the same one
    per_lane: list[tuple[nn.Module, int, int]] = field(default_factory=list)
    params: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [lanes, ...]
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # local name -> state_dict key


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class _Slot:
    """How one state entry is held: `to_state` turns a lane's slice of `tensor` (or all
    lanes', lanes first) into the template model's layout."""

    key: str
    tensor: torch.Tensor  # [lanes, ...] as held
    to_state: Callable[[Any], Any] = _same  # also for numpy arrays


class StackedModel:
    """`lanes` models of one architecture; lane i's weights are `tensor[i]`.

    `lane_models[i]` is None for a padding lane (zero weights, never trained).
    """

    def __init__(self, lane_models: Sequence[nn.Module | None], device: torch.device,
                 drawn: dict[str, torch.Tensor] | None = None) -> None:
        """`drawn`: state_dict key -> every lane's tensor (`[lanes, ...]`, on `device`)
        drawn at once; those replace the lane models' own (which may then be shared)."""
        self._drawn = drawn or {}
        template = next(m for m in lane_models if m is not None)
        if not isinstance(template, nn.Sequential):
            raise Unstackable(f"{type(template).__name__} is not an nn.Sequential of layers")
        self.lanes = len(lane_models)
        self.device = device
        self.training = True
        self.ops: list[_Op] = []
        # each lane's tensors as they are (state_dict would detach each one: an op apiece)
        states = [{**dict(m.named_parameters()), **dict(m.named_buffers())}
                  if m is not None else None for m in lane_models]
        for index, module in enumerate(template):
            op = self._op(str(index), module, states)
            lane_modules = [m[index] if isinstance(m, nn.Sequential) and len(m) > index
                            else module for m in lane_models]
            kinds = {type(m) for m in lane_modules}
            if op.kind == "activation" and any(repr(m) != repr(module) for m in lane_modules):
                if not all(isinstance(m, ELEMENTWISE) for m in lane_modules):
                    raise Unstackable(f"lanes differ in layer {index}")
                for lane, m in enumerate(lane_modules):
                    if op.per_lane and repr(op.per_lane[-1][0]) == repr(m):
                        first, count = op.per_lane[-1][1:]
                        op.per_lane[-1] = (op.per_lane[-1][0], first, count + 1)
                    else:
                        op.per_lane.append((m, lane, 1))
            elif len(kinds) > 1 or any(len(m) != len(template) for m in lane_models
                                       if isinstance(m, nn.Sequential)):
                raise Unstackable(f"lanes differ in layer {index}")
            self.ops.append(op)
        self._flatten()
        # the parameters' state_dict keys, in the template model's order (that of `flat`)
        self.param_order = [op.names[local] for op in self.ops for local in op.params]
        self.param_keys = set(self.param_order)
        self.num_params = sum(t[0].numel() for op in self.ops for t in op.params.values())
        self.params: list[torch.Tensor] = [p for op in self.ops for p in op.params.values()]
        # what L1/L2, sparsity and grad_norm.layerN see: the Linear/Conv weights, in order
        self.weights: list[torch.Tensor] = [op.params["weight"] for op in self.ops
                                            if op.kind in ("linear", "conv2d")]
        self.dropout_generators: list[torch.Generator] = []
        self.dropout_p: list[float] = [0.0] * self.lanes
        self._dropout_columns()

    # -- building ---------------------------------------------------------------------------

    def _stack(self, key: str, states: Sequence[dict[str, torch.Tensor] | None],
               held: Callable[[torch.Tensor], torch.Tensor] = _same) -> torch.Tensor:
        if key in self._drawn:
            return held(self._drawn[key]).contiguous()
        template = next(s for s in states if s is not None)[key]
        with torch.no_grad():
            padding = torch.zeros_like(template)
            stacked = torch.stack([s[key] if s is not None else padding for s in states])
            return held(stacked.to(self.device)).contiguous()

    def _flatten(self) -> None:
        """Move every parameter into one `[lanes, P]` tensor; each becomes a leaf view of it
        (same storage: the optimizer's in-place update of `flat` is the parameters')."""
        params = [(op, name) for op in self.ops for name in op.params]
        self.flat = torch.cat([op.params[name].reshape(self.lanes, -1) for op, name in params],
                              dim=1) if params else torch.zeros(self.lanes, 0,
                                                                device=self.device)
        offset = 0
        for op, name in params:
            shape = op.params[name].shape
            size = op.params[name][0].numel()
            view = self.flat[:, offset:offset + size].view(shape)
            op.params[name] = view.detach().requires_grad_(True)
            offset += size

    def flat_grad(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """The gradients of `params` (in order) as one `[lanes, P]` tensor, laid out as
        `flat`."""
        return torch.cat([g.reshape(self.lanes, -1) for g in grads], dim=1)

    def unflatten(self, row: torch.Tensor) -> list[torch.Tensor]:
        """One lane's `[P]` row of a `flat`-shaped tensor (the weights, an optimizer
        buffer) as that lane's parameters, in the template model's order and shapes."""
        out, offset = [], 0
        for slot in self.slots():
            if slot.key in self.param_keys:
                size = slot.tensor[0].numel()
                part = row[offset:offset + size].view(slot.tensor.shape[1:])
                out.append(slot.to_state(part))
                offset += size
        return out

    def _op(self, prefix: str, module: nn.Module,
            states: Sequence[dict[str, torch.Tensor] | None]) -> _Op:
        def key(name: str) -> str:
            return f"{prefix}.{name}"

        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise Unstackable("Flatten other than start_dim=1, end_dim=-1")
            return _Op("flatten", module)
        if isinstance(module, nn.Linear | nn.Conv2d):
            kind = "linear" if isinstance(module, nn.Linear) else "conv2d"
            if isinstance(module, nn.Conv2d) and (module.groups != 1
                                                  or module.padding_mode != "zeros"):
                raise Unstackable("Conv2d with groups or non-zero padding mode")
            op = _Op(kind, module)
            for name in ("weight", "bias"):
                if getattr(module, name) is not None:
                    held = _LINEAR_HELD[name][0] if kind == "linear" else _same
                    op.params[name] = self._stack(key(name), states, held)
                    op.names[name] = key(name)
            return op
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            if not (module.affine and module.track_running_stats) or module.momentum is None:
                raise Unstackable("BatchNorm without affine weights, running statistics or "
                                  "a momentum")
            op = _Op("batchnorm", module)
            for name in ("weight", "bias"):
                op.params[name] = self._stack(key(name), states)
                op.names[name] = key(name)
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                op.buffers[name] = self._stack(key(name), states)
                op.names[name] = key(name)
            return op
        if isinstance(module, ELEMENTWISE):
            return _Op("activation", module)
        if isinstance(module, Dropout):
            return _Op("dropout", module)
        if isinstance(module, nn.MaxPool2d):
            return _Op("maxpool", module)
        raise Unstackable(f"layer {type(module).__name__} has no stacked form")

    def set_dropout(self, generators: Sequence[torch.Generator], p: Sequence[float]) -> None:
        """Each lane's dropout generator and probability (0 for padding lanes)."""
        self.dropout_generators, self.dropout_p = list(generators), list(p)
        self._dropout_columns()

    def _dropout_columns(self) -> None:
        """Each lane's dropout p and the value a kept unit becomes, as [L] tensors on the
        device (made when the probabilities are set, not per step). The value is
        1 / float32(1 - p), correctly rounded: what the serial engine's Dropout computes
        for a kept unit (1.0 divided by 1 - p; on a GPU, 1.0 times the reciprocal); 1 for
        p = 0, which keeps every unit."""
        p = torch.tensor(self.dropout_p, dtype=torch.float32)
        scale = torch.ones(self.lanes).div_(torch.tensor([1 - q for q in self.dropout_p],
                                                         dtype=torch.float32))
        self.dropout_p_column = p.to(self.device)
        self.dropout_scale = scale.to(self.device)

    # -- forward ------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> None:
        self.training = mode

    def eval(self) -> None:
        self.training = False

    def __call__(self, x: torch.Tensor,
                 capture: list[tuple[Layout, torch.Tensor]] | None = None) -> torch.Tensor:
        """`x`: `[lanes, batch, *input_shape]` -> outputs `[lanes, batch, outputs]`.

        `capture` collects every activation's output (with its layout) for diagnostics.
        """
        lanes, batch = x.shape[0], x.shape[1]
        layout: Layout = "lanes"
        for op in self.ops:
            if op.kind == "flatten":
                if layout == "channels":
                    x = x.reshape(batch, lanes, -1).transpose(0, 1)
                    layout = "lanes"
                else:
                    x = x.reshape(lanes, batch, -1)
            elif op.kind == "linear":  # weight [L, in, out], bias [L, 1, out]
                weight, bias = op.params["weight"], op.params.get("bias")
                x = torch.baddbmm(bias, x, weight) if bias is not None else torch.bmm(x, weight)
            elif op.kind == "conv2d":
                if layout == "lanes":  # [L, B, C, H, W] -> [B, L·C, H, W]
                    x = x.transpose(0, 1).reshape(batch, -1, *x.shape[3:])
                    layout = "channels"
                conv = op.module
                assert isinstance(conv, nn.Conv2d)
                weight, bias = op.params["weight"], op.params.get("bias")
                x = F.conv2d(x, weight.reshape(-1, *weight.shape[2:]),
                             bias.reshape(-1) if bias is not None else None, conv.stride,
                             conv.padding, conv.dilation, groups=lanes)
            elif op.kind == "batchnorm":
                x = self._batchnorm(op, x, layout, lanes, batch)
            elif op.kind == "activation":
                x = self._activation(op, x, layout, lanes, batch)
                if capture is not None:
                    capture.append((layout, x.detach()))
            elif op.kind == "dropout":
                x = self._dropout(op, x, layout, lanes, batch)
            elif op.kind == "maxpool":
                x = op.module(x)
        return x

    @staticmethod
    def _activation(op: _Op, x: torch.Tensor, layout: Layout, lanes: int,
                    batch: int) -> torch.Tensor:
        """The layer's activation; where lanes differ, each on its own lanes' slices."""
        if not op.per_lane:
            same: torch.Tensor = op.module(x)
            return same
        view = x.reshape(batch, lanes, -1) if layout == "channels" else x
        dim = 1 if layout == "channels" else 0
        # split (not narrow): its backward concatenates the slices' gradients instead of
        # filling a zero tensor per slice
        slices = torch.split(view, [count for _, _, count in op.per_lane], dim)
        parts = [module(part) for (module, _, _), part in zip(op.per_lane, slices, strict=True)]
        out = torch.cat(parts, dim)
        return out if layout == "lanes" else out.reshape(x.shape)

    def _batchnorm(self, op: _Op, x: torch.Tensor, layout: Layout, lanes: int,
                   batch: int) -> torch.Tensor:
        bn = op.module
        assert isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d)
        if self.training:
            op.buffers["num_batches_tracked"].add_(1)
        args = (op.buffers["running_mean"].view(-1), op.buffers["running_var"].view(-1),
                op.params["weight"].reshape(-1), op.params["bias"].reshape(-1))
        if layout == "channels":
            return F.batch_norm(x, *args, self.training, bn.momentum or 0.0, bn.eps)
        features = x.shape[2:]
        flat = x.transpose(0, 1).reshape(batch, -1)  # [B, L·F]: each lane's features apart
        out = F.batch_norm(flat, *args, self.training, bn.momentum or 0.0, bn.eps)
        return out.reshape(batch, lanes, *features).transpose(0, 1)

    def _dropout(self, op: _Op, x: torch.Tensor, layout: Layout, lanes: int,
                 batch: int) -> torch.Tensor:
        module = op.module
        assert isinstance(module, Dropout)
        if not self.training:
            return x
        if layout == "channels":  # each lane's mask over [B, C, 1, 1], side by side
            channels = x.shape[1] // lanes
            lane_shape: tuple[int, ...] = (batch, channels, *x.shape[2:])
        else:
            lane_shape = tuple(x.shape[1:])
        # each lane's uniforms from its own generator, as the serial engine's Dropout draws
        # them (`dropout_noise`: torch.rand, an empty tensor's uniform_): one op per lane;
        # compared and scaled for all lanes at once
        shape = _mask_shape(lane_shape, module.spatial)
        uniform = torch.ones((lanes, *shape), device=x.device)  # p = 0: every unit kept
        for row, p, generator in zip(uniform.unbind(), self.dropout_p,
                                     self.dropout_generators, strict=True):
            if p > 0:
                row.uniform_(generator=generator)
        column = (lanes, *[1] * len(shape))
        noise = (uniform >= self.dropout_p_column.view(column)).to(x.dtype) * \
            self.dropout_scale.view(column)
        if layout == "channels":  # lane by lane along the channels, as x is
            return x * noise.transpose(0, 1).reshape(batch, -1, *shape[2:])
        return x * noise

    # -- lanes in and out ------------------------------------------------------------------------

    def slots(self) -> list[_Slot]:
        """Every parameter and buffer: its state_dict key, stacked tensor and conversion."""
        out = []
        for op in self.ops:
            for local, tensor in [*op.params.items(), *op.buffers.items()]:
                to_state = _LINEAR_HELD[local][1] if op.kind == "linear" else _same
                out.append(_Slot(op.names[local], tensor, to_state))
        return out

    @torch.no_grad()
    def clear_lanes(self, lanes: Sequence[int]) -> None:
        """Turn lanes into padding: zero weights and statistics (running_var 1); one op
        per tensor whatever the number of lanes."""
        if not lanes:
            return
        index = lane_index(lanes, self.device)
        self.flat[index] = 0.0
        for op in self.ops:
            for local, tensor in op.buffers.items():
                tensor[index] = 1 if local == "running_var" else 0
        for lane in lanes:
            self.dropout_p[lane] = 0.0
        self.dropout_p_column[index] = 0.0
        self.dropout_scale[index] = 1.0


# a Linear's weight is held as [in, out] and its bias as [1, out] per lane: local name ->
# (state -> held, held -> state), for one lane's tensor or all lanes' (lanes first);
# held -> state also takes numpy arrays
_LINEAR_HELD: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor],
                              Callable[[Any], Any]]] = {
    "weight": (lambda w: w.swapaxes(-1, -2), lambda w: w.swapaxes(-1, -2)),
    "bias": (lambda b: b.unsqueeze(-2), lambda b: b.squeeze(-2)),
}


def _mask_shape(shape: tuple[int, ...], spatial: bool) -> tuple[int, ...]:
    return (*shape[:2], *([1] * (len(shape) - 2))) if spatial else shape
