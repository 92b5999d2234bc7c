"""One contract test per registry, parametrized over every registered component.

Adding a component adds it here automatically: it must build from its example
parameters, do its job on a small batch (forward/backward where that applies), and
reject out-of-range values of every bounded parameter with a message naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import torch
from torch import nn

from nnbench import registry
from nnbench.components.activations import gain_of
from nnbench.components.augmentations import Augmentation, Normalize
from nnbench.components.regularizers import EarlyStopping, attach_dropout_generator
from nnbench.components.schedules import Schedule
from nnbench.data import DataShape, SplitParams, TensorData, split_sizes, vision
from nnbench.registry import ComponentError, ComponentInfo

ALL = list(registry.list_components())
CPU = torch.device("cpu")


def _spec(info: ComponentInfo) -> registry.ComponentSpec:
    return registry.resolve(info.kind, {"name": info.name, **info.example})


def _activation(info: ComponentInfo) -> None:
    module = registry.build("activation", _spec(info))
    x = torch.randn(4, 5, requires_grad=True)
    y = module(x)
    y.sum().backward()
    assert y.shape == x.shape
    assert x.grad is not None and torch.isfinite(x.grad).all()
    params = info.params.model_validate(_spec(info).kwargs)
    nonlinearity, param = gain_of(info.name, params)
    assert nn.init.calculate_gain(nonlinearity, param) > 0  # type: ignore[arg-type]


def _init(info: ComponentInfo) -> None:
    init = registry.build("init", _spec(info))
    for layer in (nn.Linear(6, 4), nn.Conv2d(2, 3, 3)):
        init(layer, ("relu", None), torch.Generator().manual_seed(0))
        assert torch.isfinite(layer.weight).all()
        if info.name == "zeros":
            assert not layer.weight.any()
        if info.name != "default":
            assert layer.bias is not None
            assert not layer.bias.any()  # bias: zeros is the default


def _optimizer(info: ComponentInfo) -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = registry.build("optimizer", _spec(info), parameters=[w])
    before = w.detach().clone()
    (w**2).sum().backward()
    optimizer.step()
    assert not torch.equal(w.detach(), before)


def _schedule(info: ComponentInfo) -> None:
    w = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([w], lr=0.1)
    schedule: Schedule = registry.build("schedule", _spec(info), optimizer=optimizer, epochs=6,
                                        steps_per_epoch=3)
    steps = 6 * 3 if schedule.interval == "batch" else 6
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.scheduler.step()
    assert all(lr >= 0 and lr == lr for lr in lrs)


def _loss(info: ComponentInfo) -> None:
    objective = registry.build("loss", _spec(info))
    if info.attrs["targets"] == "class":
        outputs = torch.randn(8, objective.num_outputs(2, 1), requires_grad=True)
        targets = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    else:
        outputs = torch.randn(8, objective.num_outputs(0, 2), requires_grad=True)
        targets = torch.randn(8, 2)
    loss = objective(outputs, targets)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    sums = objective.sums(outputs.detach(), targets)
    values = objective.finalize(sums, 8, 1 if info.attrs["targets"] == "class" else 2)
    assert values.shape == (len(info.attrs["metrics"]),)
    assert (values >= 0).all()


def _dataset(info: ComponentInfo) -> None:
    data: TensorData = registry.build("dataset", _spec(info), seed=0, device=CPU)
    # the metadata contract (nnbench.data): what the dry build sees without the data
    params = info.params.model_validate(_spec(info).kwargs)
    shape: DataShape = info.attrs["shape"](params)
    assert (shape.input_shape, shape.targets, shape.num_classes, shape.target_dim) == \
        (data.input_shape, data.targets, data.num_classes, data.target_dim)
    if info.name not in vision._SHAPES:  # the tiny test files are not the official sizes
        assert isinstance(params, SplitParams)
        planned = split_sizes(shape, params)
        assert (planned.train, planned.val, planned.test) == tuple(data.sizes().values())
    sizes = data.sizes()
    assert min(sizes.values()) > 0
    assert data.x_train.dtype == torch.float32
    assert data.x_train.shape[1:] == data.x_val.shape[1:] == data.x_test.shape[1:]
    if info.attrs["targets"] == "class":
        assert data.y_train.dtype == torch.int64
        assert int(data.y_train.max()) < data.num_classes
    else:
        assert data.y_train.dtype == torch.float32 and data.y_train.dim() == 2
    expected_dims = {"vector": 1, "signal": 1, "image": 3}[info.attrs["input"]]
    assert len(data.input_shape) == expected_dims


def _model(info: ComponentInfo) -> None:
    shape = (1, 8, 8) if info.attrs.get("input") == "image" else (12,)
    batchnorm = registry.build("norm", registry.resolve("norm", "batchnorm"))
    for norm, dropout in ((None, 0.0), (batchnorm, 0.3)):
        model = registry.build(
            "model", _spec(info), input_shape=shape, outputs=3, activation=nn.ReLU,
            gain=("relu", None), init=registry.build("init", registry.resolve("init", "default")),
            norm=norm, dropout=dropout, generator=torch.Generator().manual_seed(0))
        # dropout masks come from the trial's own generator, attached by the engines
        attach_dropout_generator(model, torch.Generator().manual_seed(1))
        x = torch.randn(4, *shape, requires_grad=True)
        y = model(x)
        y.sum().backward()
        assert y.shape == (4, 3)
        assert x.grad is not None and torch.isfinite(x.grad).all()


def _norm(info: ComponentInfo) -> None:
    factory = registry.build("norm", _spec(info))
    if info.name == "none":
        assert factory is None
        return
    out = factory(8, 1)(torch.randn(4, 8) * 5 + 3)
    assert out.mean().abs() < 1e-5  # normalised per feature in training mode


def _clip(info: ComponentInfo) -> None:
    clip = registry.build("clip", _spec(info))
    if info.name == "none":
        assert clip is None
        return
    w = nn.Parameter(torch.zeros(4))
    w.grad = torch.tensor([30.0, -40.0, 0.5, 0.0])
    clip([w])
    params = _spec(info).kwargs
    if info.name == "norm":
        assert w.grad.norm() <= params["max_norm"] * (1 + 1e-6)
    else:
        assert w.grad.abs().max() <= params["clip_value"]


def _early_stopping(info: ComponentInfo) -> None:
    stopper = registry.build("early_stopping", _spec(info))
    if info.name == "none":
        assert stopper is None
        return
    assert isinstance(stopper, EarlyStopping)
    patience = _spec(info).kwargs["patience"]
    assert stopper.update(1, 1.0) == (True, False)
    results = [stopper.update(e, 2.0) for e in range(2, 2 + patience)]
    assert results[-1] == (False, True)
    assert all(r == (False, False) for r in results[:-1])
    assert stopper.best_epoch == 1


def _augmentation(info: ComponentInfo) -> None:
    aug: Augmentation = registry.build("augmentation", _spec(info))
    x = torch.rand(6, 3, 12, 12) if info.attrs["input"] == "image" else torch.randn(6, 40)
    if isinstance(aug, Normalize):
        aug.fit(x)
    first = aug(x, torch.Generator().manual_seed(1))
    again = aug(x, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)  # randomness comes only from the generator
    assert torch.isfinite(first).all()
    size = _spec(info).kwargs.get("size")
    assert first.shape == ((6, 3, size, size) if size else x.shape)


CONTRACTS: dict[str, Callable[[ComponentInfo], None]] = {
    "activation": _activation, "init": _init, "optimizer": _optimizer, "schedule": _schedule,
    "loss": _loss, "dataset": _dataset, "model": _model, "norm": _norm, "clip": _clip,
    "early_stopping": _early_stopping, "augmentation": _augmentation,
}


def test_every_kind_has_a_contract() -> None:
    assert set(registry.kinds()) == set(CONTRACTS)


@pytest.mark.parametrize("info", ALL, ids=[f"{i.kind}:{i.name}" for i in ALL])
def test_component_contract(info: ComponentInfo, vision_data: Path) -> None:
    assert info.doc and not info.doc.endswith(".")
    if info.params.model_fields:  # nnbench list prints where the defaults come from
        assert info.defaults, "say where the defaults come from (PyTorch, the notes, ...)"
    spec = _spec(info)
    assert spec.name == info.name
    CONTRACTS[info.kind](info)


def _bad_values(info: ComponentInfo) -> list[tuple[str, Any]]:
    """One out-of-range value per bound declared on a numeric parameter."""
    bad: list[tuple[str, Any]] = []
    for name, f in info.params.model_fields.items():
        for bound in f.metadata:
            value: Any = None
            if isinstance(bound, annotated_types.Gt):
                value = bound.gt
            elif isinstance(bound, annotated_types.Ge):
                value = float(bound.ge) - 1  # type: ignore[arg-type]
            elif isinstance(bound, annotated_types.Lt):
                value = bound.lt
            elif isinstance(bound, annotated_types.Le):
                value = float(bound.le) + 1  # type: ignore[arg-type]
            if value is not None:
                bad.append((name, value))
    return bad


BAD = [(info, name, value) for info in ALL for name, value in _bad_values(info)]


@pytest.mark.parametrize(("info", "param", "value"), BAD,
                         ids=[f"{i.kind}:{i.name}.{p}={v}" for i, p, v in BAD])
def test_out_of_range_parameters_are_rejected(info: ComponentInfo, param: str, value: Any) -> None:
    with pytest.raises(ComponentError) as caught:
        registry.resolve(info.kind, {"name": info.name, **info.example, param: value})
    keys = [key for key, _ in caught.value.problems]
    assert keys == [param]
    assert repr(value) in str(caught.value)


def test_bad_values_cover_the_issue_examples() -> None:
    probed = {(i.kind, i.name, p) for i, p, _ in BAD}
    assert ("schedule", "step", "gamma") in probed  # a gamma of 0
    assert ("norm", "batchnorm", "momentum") in probed
    assert ("optimizer", "sgd", "lr") in probed
