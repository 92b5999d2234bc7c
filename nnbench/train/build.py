"""Building a trial's parts from its spec: the one code path every engine starts from.

`build_parts(spec, device)` turns a `TrialSpec` into tensors and modules through the
registries (data split on `device`, augmentations with `normalize` fitted on the
training split, the model with its seeded init, the objective, optimizer, schedule,
clipping and early stopping). Call it inside `seeding.trial_rng(spec.seed_of("init"),
device)`: PyTorch's own default inits draw from the global RNG. Each source of
randomness draws from its own seed (`config.sources`): the split from `seed_of("split")`,
the init from `seed_of("init")`, the shuffling from `seed_of("data_order")`, the
augmentations and dropout masks from theirs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nnbench import registry, seeding
from nnbench.components.activations import gain_of
from nnbench.components.augmentations import Augmentation, Normalize
from nnbench.components.inits import InitFn
from nnbench.components.losses import Objective
from nnbench.components.regularizers import ClipFn, EarlyStopping, attach_dropout_generator
from nnbench.components.schedules import Schedule
from nnbench.config import TrialSpec
from nnbench.data import DataShape, TensorData
from nnbench.train.metrics import EVAL_CHUNK, eval_chunk

__all__ = ["Parts", "Step", "always", "batch_size_of", "build_model", "build_parts",
           "channels_last", "dataset_shape", "eval_bytes", "eval_flops", "example_flops",
           "fit_augmentations", "layer_weights", "metric_names", "placed", "produced_metrics",
           "resolve_device", "shaped_model", "step_flops", "timing_step", "weight_layers",
           "weights_of"]

# Layers whose weights the init fills, L1/L2 penalise and the diagnostics report on. A
# recurrent layer (GRU) is one weight layer: all its input-to-hidden and hidden-to-hidden
# matrices, every direction and stacked layer (see `layer_weights`).
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.RNNBase)


def metric_names(spec: TrialSpec) -> tuple[str, ...]:
    """The objective's metrics for this trial: ("accuracy",) or ("rmse", "mae")."""
    names: tuple[str, ...] = registry.get("loss", spec.loss.name).attrs["metrics"]
    return names


def produced_metrics(spec: TrialSpec, *, weight_layers: int,
                     has_activations: bool) -> frozenset[str]:
    """Every metric a trial of `spec` logs, per epoch or at the end (lr and timings aside).

    `weight_layers`: the model's Linear/Conv layers; `has_activations`: whether it has
    hidden activations (a model without hidden layers has none to diagnose). The engines'
    diagnostics (lifecycle.diagnostics) log dead_fraction for the ReLU family and
    saturated_fraction for saturating activations; tests/test_train.py holds the two
    together.
    """
    names = metric_names(spec)
    out = {f"{split}_{m}" for split in ("train", "val", "test") for m in ("loss", *names)}
    out |= {"gap_loss", "weight_sparsity", *(f"gap_{m}" for m in names)}
    out |= {f"grad_norm.layer{i}" for i in range(1, weight_layers + 1)}
    family = registry.get("activation", spec.activation.name).attrs.get("family")
    if has_activations and family == "relu":
        out.add("dead_fraction")
    if has_activations and family == "saturating":
        out.add("saturated_fraction")
    return frozenset(out)


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available else cpu; `cuda` without a GPU is an error, and so is
    a CUBLAS_WORKSPACE_CONFIG that deterministic cuBLAS rejects (training and evaluating
    run deterministic: it would raise at the first matrix product;
    `seeding.cublas_workspace_problem`)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unsupported device {name!r}; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index is not None):
        # (cpu:1 named a device torch treats as cpu: a trial's provenance would say cpu:1;
        # cpu:0 trained, and `evaluate` then failed to load its checkpoint there)
        raise ValueError(f"unsupported device {name!r}; allowed: auto, cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has "
                         f"{torch.cuda.device_count()} GPU(s); allowed: cuda:0.."
                         f"cuda:{torch.cuda.device_count() - 1}")
    problem = seeding.cublas_workspace_problem() if device.type == "cuda" else None
    if problem is not None:
        raise ValueError(problem)
    return device


WeightLayer = nn.Linear | nn.Conv1d | nn.Conv2d | nn.RNNBase


def weight_layers(model: nn.Module) -> list[WeightLayer]:
    """The weight layers, input to output (what inits, L1/L2 and diagnostics act on)."""
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]


def weights_of(model: nn.Module) -> list[torch.Tensor]:
    """Every weight layer's weight tensors, layer by layer: what L1, L2 and sparsity see."""
    return [w for layer in weight_layers(model) for w in layer_weights(layer)]


def layer_weights(layer: WeightLayer) -> list[torch.Tensor]:
    """A weight layer's weight tensors (never biases): `weight`, or a recurrent layer's
    `weight_ih_l*` and `weight_hh_l*` matrices."""
    if isinstance(layer, nn.RNNBase):
        return [w for name, w in layer.named_parameters() if name.startswith("weight_")]
    return [layer.weight]


def batch_size_of(spec: TrialSpec, n_train: int) -> int:
    """Examples per step: the whole split for `full`, never more than the split."""
    return n_train if spec.batch_size == "full" else min(int(spec.batch_size), n_train)


@dataclass
class Step:
    """What one training step uses (`serial.train_step`): the dry build makes one for
    tiny tensors, `build_parts` one for the trial."""

    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    clip: ClipFn | None
    augment: list[Augmentation]
    augment_gen: torch.Generator
    weights: list[torch.Tensor]  # Linear/Conv/GRU weights: what L1, L2 and sparsity see
    l1: float | None  # λ₁ of the L1 penalty (None: off)
    l2: float | None  # λ₂ of the explicit L2 penalty (None: off)


@dataclass
class Parts(Step):
    """Everything one trial trains with, built from its spec."""

    data: TensorData
    schedule: Schedule
    early: EarlyStopping | None
    shuffle: torch.Generator
    batch_size: int
    activation_type: type[nn.Module]
    family: str | None
    # examples per evaluation (and probe) pass (`metrics.eval_chunk`; build_parts sizes it)
    eval_chunk: int = EVAL_CHUNK


def prepare_data(spec: TrialSpec, device: torch.device) -> tuple[TensorData, list[Augmentation]]:
    """The seeded split on `device` (the examples held once there, the split as rows) and
    the augmentations, `normalize` fitted on train. Augmentations of stage `always`
    (normalize) apply to every split, as its batches are read (`always`)."""
    data: TensorData = registry.build("dataset", spec.dataset, seed=spec.seed_of("split"),
                                       device=device)
    return data, fit_augmentations(spec, data)


def always(augment: list[Augmentation]) -> list[Augmentation]:
    """The augmentations that apply to evaluation batches too (normalize)."""
    return [a for a in augment if a.stage == "always"]


def fit_augmentations(spec: TrialSpec, data: TensorData) -> list[Augmentation]:
    """The spec's augmentations, `normalize` with the statistics of the training split
    (gathered only then: `x_train` is a copy of the split's examples)."""
    augment = [registry.build("augmentation", a) for a in spec.augmentation]
    normalize = [aug for aug in augment if isinstance(aug, Normalize)]
    if normalize:
        x_train = data.x_train
        for aug in normalize:
            aug.fit(x_train)
    return augment


def build_model(spec: TrialSpec, input_shape: tuple[int, ...], outputs: int, *,
                init: InitFn | None = None) -> nn.Module:
    """The spec's model with its activation, norm, dropout and seeded init (on the CPU;
    the init draws where `seeding.drawing_on` says). `init`: the spec's init, built by the
    caller (the stacked engine records its calls)."""
    activation_info = registry.get("activation", spec.activation.name)
    activation_params = activation_info.params.model_validate(spec.activation.kwargs)
    model: nn.Module = registry.build(
        "model", spec.model, input_shape=input_shape, outputs=outputs,
        activation=lambda: registry.build("activation", spec.activation),
        gain=gain_of(spec.activation.name, activation_params),
        init=init or registry.build("init", spec.init), norm=registry.build("norm", spec.norm),
        dropout=spec.dropout, generator=seeding.generator(spec.seed_of("init"), "init"),
    )
    if not isinstance(model, nn.Module):  # a plugin's: a function, its class, a tuple
        raise TypeError(f"model {spec.model.name!r}: its build returned "
                        f"{type(model).__name__}, not a torch.nn.Module instance")
    return model


def step_flops(spec: TrialSpec) -> float:
    """FLOPs of one training step of the trial's model: 3 × a forward pass of one example
    (`example_flops`) × the batch size. Cheap: no data is loaded (the dataset's `shape`),
    the model is built once per shape."""
    flops, batch, _ = _shape_flops(spec)
    return 3.0 * flops * batch


def example_flops(spec: TrialSpec) -> float:
    """FLOPs of a forward pass of one example of the trial's model (torch's
    FlopCounterMode: matrix products and convolutions), from the dataset's `shape`;
    ValueError when the dataset declares none."""
    return _shape_flops(spec)[0]


def eval_bytes(spec: TrialSpec) -> float:
    """Bytes of the tensors a forward pass of one example of the trial's model makes (its
    ops' outputs: what a pass with gradients holds for the backward, about): what bounds
    an evaluation or probe pass's examples on any device (`metrics.eval_chunk`); 0 where
    the dataset declares no shape."""
    try:
        return _shape_flops(spec)[2]
    except Exception:  # as eval_flops
        return 0.0


def eval_flops(spec: TrialSpec, device: torch.device) -> float:
    """What sizes the trial's evaluation passes on `device` (`metrics.eval_chunk`): one
    example's forward FLOPs on a CPU, whose caches a large pass of a convolutional model
    overflows; 0 (not counted) on a GPU, or where the dataset declares no shape."""
    if device.type != "cpu":
        return 0.0
    try:
        return example_flops(spec)
    except Exception:  # a plugin's dataset without a shape, a model that cannot be built
        return 0.0  # alone: the trial itself says why


TIMING_FLOPS = 16e9  # one `timing_step`'s forward and backward: ResNet-20 on 65 examples


def timing_step(spec: TrialSpec, device: torch.device) -> Callable[[], None]:
    """A step to time the trial's training with (`engine.fastest_threads`): forward and
    backward of its model's structure (throwaway weights, `shaped_model`, laid out as the
    engines train it: `placed`) on zeros of its input shape, on as many examples of its
    batch as take about TIMING_FLOPS (at least 2: batch norm trains on no fewer). Neither
    it nor its steps touch the caller's RNG (dropout's masks). ValueError when the
    dataset declares no shape."""
    flops, batch, _ = _shape_flops(spec)
    shape = dataset_shape(spec)
    assert shape is not None  # _shape_flops counted it
    model = placed(shaped_model(spec, shape), spec, device)
    examples = min(batch, max(2, int(TIMING_FLOPS // (3 * max(flops, 1.0)))))
    x = torch.zeros(examples, *shape.input_shape, device=device)
    model.train()

    def step() -> None:
        with torch.random.fork_rng(devices=[]):
            model.zero_grad(set_to_none=True)
            model(x).float().sum().backward()

    return step


# shape -> (one example's forward FLOPs, batch, bytes of its forward's outputs)
_SHAPE_FLOPS: dict[str, tuple[float, int, float]] = {}


def _shape_flops(spec: TrialSpec) -> tuple[float, int, float]:
    key = json.dumps({"dataset": spec.dataset.to_dict(), "model": spec.model.to_dict(),
                      "activation": spec.activation.to_dict(), "norm": spec.norm.to_dict(),
                      "loss": spec.loss.to_dict(), "batch_size": spec.batch_size},
                     sort_keys=True)
    if key not in _SHAPE_FLOPS:
        _SHAPE_FLOPS[key] = _count_flops(spec)
    return _SHAPE_FLOPS[key]


def _count_flops(spec: TrialSpec) -> tuple[float, int, float]:
    from torch.utils.flop_counter import FlopCounterMode

    from nnbench.data import SplitParams, split_sizes

    shape = dataset_shape(spec)
    if shape is None:
        raise ValueError(f"dataset '{spec.dataset.name}' declares no shape metadata")
    model = shaped_model(spec, shape)
    model.eval()
    made = [0]  # bytes of every layer's output (what a backward keeps, about)

    def output(_module: nn.Module, _args: Any, out: Any) -> None:
        made[0] += sum(t.numel() * t.element_size() for t in torch.utils._pytree.tree_leaves(out)
                       if isinstance(t, torch.Tensor))

    hooks = [m.register_forward_hook(output) for m in model.modules()
             if next(m.children(), None) is None]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *shape.input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    params = registry.get("dataset", spec.dataset.name).params.model_validate(
        spec.dataset.kwargs)
    assert isinstance(params, SplitParams)  # the dataset contract (nnbench.data)
    return float(counter.get_total_flops()), batch_size_of(spec, split_sizes(
        shape, params).train), float(made[0])


def dataset_shape(spec: TrialSpec) -> DataShape | None:
    """The trial's dataset's `DataShape` from its metadata, no data loaded (None: the
    dataset declares none, `nnbench.data`)."""
    from nnbench.data import shape_of

    info = registry.get("dataset", spec.dataset.name)
    if info.attrs.get("shape") is None:
        return None
    return shape_of(spec.dataset.name, info.params.model_validate(spec.dataset.kwargs))


def shaped_model(spec: TrialSpec, shape: DataShape) -> nn.Module:
    """The trial's model for the dataset's shape, on the CPU, built without touching the
    caller's RNG (its structure, for counting and checking; not the trial's weights)."""
    objective: Objective = registry.build("loss", spec.loss)
    with torch.random.fork_rng(devices=[]), seeding.drawing_on(torch.device("cpu")):
        return build_model(spec, shape.input_shape,
                           objective.num_outputs(shape.num_classes, shape.target_dim))


def channels_last(spec: TrialSpec, model: nn.Module, device: torch.device) -> bool:
    """Whether the engines lay the trial's model out channels-last (NHWC): on a CPU, one of
    nnbench's own models with 2-D convolutions (cnn, resnet), which oneDNN's convolutions
    and batch norm run faster that way (a ResNet-20 step at batch 128: 0.087 s against
    0.110 s on 2 threads, 0.157 s against 0.192 s on 1). A plugin's model keeps torch's
    layout: its forward may `.view` an activation, which a channels-last one refuses, or
    hold a 5-D tensor, which has no such layout. The layout changes only the rounding of a
    convolution's sums; it is part of the trial's numerics (`Numerics.layout`)."""
    return (device.type == "cpu" and channels_last_safe()
            and registry.get("model", spec.model.name).source == registry.BUILTIN
            and any(isinstance(m, nn.Conv2d) for m in model.modules()))


def channels_last_safe() -> bool:
    """Whether this CPU trains channels-last conv nets safely: only one whose vector unit
    torch uses is AVX-512. On an AVX2-only AMD EPYC, oneDNN's backward of a channels-last
    ResNet (BatchNorm, a stride-2 block) aborted the process, "Fatal Python error:
    Aborted", every time (torch 2.14.1); torch's layout trained it. Such a CPU keeps
    torch's layout, which its trials' numerics say."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def placed(model: nn.Module, spec: TrialSpec, device: torch.device) -> nn.Module:
    """`model` on `device`, in the memory layout the engines train it in (`channels_last`)."""
    model = model.to(device)
    if channels_last(spec, model, device):
        model = model.to(memory_format=torch.channels_last)
    return model


def build_parts(spec: TrialSpec, device: torch.device) -> Parts:
    data, augment = prepare_data(spec, device)
    objective: Objective = registry.build("loss", spec.loss)
    with seeding.drawing_on(device):  # the initial weights the stacked engine draws there
        model = placed(build_model(spec, data.input_shape,
                                   objective.num_outputs(data.num_classes, data.target_dim)),
                       spec, device)
    attach_dropout_generator(model, seeding.generator(spec.seed_of("dropout"), "dropout", device))
    optimizer = registry.build("optimizer", spec.optimizer, parameters=model.parameters())
    n_train = len(data.train)
    batch_size = batch_size_of(spec, n_train)
    schedule = registry.build("schedule", spec.schedule, optimizer=optimizer,
                              epochs=spec.epochs, steps_per_epoch=math.ceil(n_train / batch_size))
    activation_info = registry.get("activation", spec.activation.name)
    return Parts(
        data=data, model=model, objective=objective.to(device), optimizer=optimizer,
        schedule=schedule, clip=registry.build("clip", spec.grad_clip),
        augment=augment, early=registry.build("early_stopping", spec.early_stopping),
        shuffle=seeding.generator(spec.seed_of("data_order"), "shuffle", device),
        augment_gen=seeding.generator(spec.seed_of("augmentation"), "augment", device),
        batch_size=batch_size,
        weights=weights_of(model),
        l1=spec.l1 or None, l2=spec.l2 or None,
        activation_type=type(registry.build("activation", spec.activation)),
        family=activation_info.attrs.get("family"),
        eval_chunk=eval_chunk(1, eval_flops(spec, device), eval_bytes(spec)))
