"""The component contract, public: check your own components exactly as nnbench checks its own.

    from nnbench import registry
    from nnbench.testing import check_component, parametrize_with_checks

    check_component(registry.get("model", "mynet"))   # raises ContractError, or returns

    @parametrize_with_checks([registry.get("model", "mynet"), registry.get("dataset", "mydata")])
    def test_my_components(info, check):              # one pytest case per (component, check)
        check(info)

(scikit-learn's `check_estimator` / `parametrize_with_checks`, for nnbench components.)
nnbench's own test (tests/components/test_contract.py) runs these checks over its whole
registry. `component_checks(info)` lists a component's checks:

- `registration`: what `register()` demands (known kind, name, one-line doc without a
  final period, a `Params` model that validates `example` with plain-JSON values, the
  attrs its kind needs);
- `resolves`: `{name, **example}` resolves to a spec naming the component;
- `<kind>`: the kind's behaviour on a small batch, e.g. a model builds with and without
  BatchNorm and dropout, maps (4, *input) to (4, outputs) with finite input gradients,
  lets the init reach every weight layer (Linear, Conv, GRU), draws its init from the
  generator it is given, and uses the activation, norm and dropout axes unless
  `attrs["ignored_axes"]` says it ignores them; a dataset builds a seeded split of
  float inputs and int64 labels (or float targets) whose kind matches its attrs;
- `rejects <param>=<value>`: one out-of-range value per bound (ge, gt, le, lt) of each
  numeric parameter is refused with a message naming the parameter.

A component that reads files gives `attrs["contract_example"](folder) -> params`, which
writes a small example there (the `file` dataset does).

`isolated_registry()` undoes registrations and plugin imports made inside it (tests).
"""

from __future__ import annotations

import math
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import annotated_types
import torch
from torch import nn

from nnbench import plugins, registry
from nnbench.data import DataShape, SplitParams
from nnbench.data.checks import declared_shape_problem
from nnbench.registry import ComponentError, ComponentInfo, ComponentSpec

if TYPE_CHECKING:
    import pytest

__all__ = ["Check", "ContractError", "check_component", "component_checks",
           "isolated_registry", "parametrize_with_checks"]

CPU = torch.device("cpu")


class ContractError(AssertionError):
    """A component breaks the contract; the message names it, the check and what failed."""


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise ContractError(message)


@dataclass(frozen=True)
class Check:
    """One named check of the contract, called with the component's ComponentInfo."""

    name: str
    run: Callable[[ComponentInfo], None]

    def __call__(self, info: ComponentInfo) -> None:
        try:
            if self.name == "registration":
                self.run(info)
            else:
                with _in_registry(info):
                    self.run(info)
        except ContractError as err:
            raise ContractError(f"{_title(info)} fails check {self.name!r}: {err}") from None
        except Exception as err:
            raise ContractError(f"{_title(info)} fails check {self.name!r}: "
                                f"{type(err).__name__}: {err}") from err

    def __repr__(self) -> str:
        return self.name


@contextmanager
def _in_registry(info: ComponentInfo) -> Iterator[None]:
    """Run with `info` registered under its name (temporarily, if it is not already)."""
    try:
        current: ComponentInfo | None = registry.get(info.kind, info.name)
    except registry.UnknownComponentError:
        current = None
    if current == info or (current is not None and not info.source
                           and current == replace(info, source=current.source)):
        yield
        return
    with isolated_registry():
        registry.unregister(info.kind, info.name)
        try:
            registry.register(info)
        except registry.RegistrationError as err:
            raise ContractError(f"cannot be registered: {err}") from None
        yield


def _title(info: ComponentInfo) -> str:
    source = "" if info.source in ("", registry.BUILTIN) else f" (from {info.source})"
    return f"{info.kind} '{info.name}'{source}"


@contextmanager
def _example(info: ComponentInfo) -> Iterator[dict[str, Any]]:
    """`{name, **example}`, with files written by `attrs["contract_example"]` if any."""
    make = info.attrs.get("contract_example")
    if make is None:
        yield {"name": info.name, **info.example}
        return
    with tempfile.TemporaryDirectory() as folder:
        yield {"name": info.name, **info.example, **make(Path(folder))}


def _spec(info: ComponentInfo, value: dict[str, Any]) -> ComponentSpec:
    return registry.resolve(info.kind, value)


# -- general checks --------------------------------------------------------------------------

def _registration(info: ComponentInfo) -> None:
    problems = registry.registration_problems(info)
    _expect(not problems, "; ".join(problems))
    _expect(not info.doc.rstrip().endswith("."),
            f"doc {info.doc!r} ends with a period; `nnbench list` shows it as a line")
    if info.source == registry.BUILTIN:  # nnbench's own say where their defaults come from
        _expect(not info.params.model_fields or bool(info.defaults),
                "has parameters but no `defaults`: say where they come from (PyTorch, the "
                "notes, a paper) and where they differ; `nnbench list` prints it")


def _resolves(info: ComponentInfo) -> None:
    with _example(info) as value:
        spec = _spec(info, value)
    _expect(spec.name == info.name, f"resolving {value!r} gave {spec.name!r}")


# -- one behaviour check per kind -----------------------------------------------------------------

def _activation(info: ComponentInfo) -> None:
    from nnbench.components.activations import gain_of

    with _example(info) as value:
        spec = _spec(info, value)
    module = registry.build("activation", spec)
    _expect(isinstance(module, nn.Module), f"build returned {type(module).__name__}, "
                                           f"expected an nn.Module")
    x = torch.randn(4, 5, requires_grad=True)
    y = module(x)
    y.sum().backward()
    _expect(y.shape == x.shape, f"maps shape {tuple(x.shape)} to {tuple(y.shape)}; an "
                                f"activation works elementwise")
    _expect(x.grad is not None and torch.isfinite(x.grad).all(), "gradients are not finite")
    nonlinearity, param = gain_of(info.name, info.params.model_validate(spec.kwargs))
    gain = nn.init.calculate_gain(nonlinearity, param)  # type: ignore[arg-type]
    _expect(gain > 0, f"attrs['gain'] gives calculate_gain({nonlinearity!r}, {param}) = {gain}")


INIT_LAYERS: tuple[Callable[[], nn.Module], ...] = (
    lambda: nn.Linear(6, 4), lambda: nn.Conv1d(2, 3, 3), lambda: nn.Conv2d(2, 3, 3),
    lambda: nn.GRU(3, 4, bidirectional=True))


def _init(info: ComponentInfo) -> None:
    from nnbench.components.inits import weights_and_biases

    with _example(info) as value:
        spec = _spec(info, value)
    init = registry.build("init", spec)
    for make in INIT_LAYERS:
        layer = make()
        init(layer, ("relu", None), torch.Generator().manual_seed(0))
        weights, biases = weights_and_biases(layer)
        name = type(layer).__name__
        _expect(all(torch.isfinite(w).all() for w in weights), f"{name} weights not finite")
        if info.name == "zeros":
            _expect(not any(w.any() for w in weights), f"{name} weights not all zero")
        if spec.kwargs.get("bias", "zeros") == "zeros" and info.name != "default":
            _expect(not any(b.any() for b in biases), f"{name} biases not zero with bias: zeros")
        again = make()
        init(again, ("relu", None), torch.Generator().manual_seed(0))
        same = all(torch.equal(a, b) for a, b in zip(weights, weights_and_biases(again)[0],
                                                       strict=True))
        _expect(same or info.name == "default",
                f"{name}: the same generator seed gave different weights; draw from the "
                f"generator passed in, never from the global RNG")


def _optimizer(info: ComponentInfo) -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    with _example(info) as value:
        optimizer = registry.build("optimizer", _spec(info, value), parameters=[w])
    _expect(isinstance(optimizer, torch.optim.Optimizer),
            f"build returned {type(optimizer).__name__}, expected a torch.optim.Optimizer")
    before = w.detach().clone()
    torch.autograd.backward((w**2).sum())
    optimizer.step()
    _expect(not torch.equal(w.detach(), before), "one step on a quadratic moved nothing")


def _schedule(info: ComponentInfo) -> None:
    from nnbench.components.schedules import Schedule

    w = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([w], lr=0.1)
    with _example(info) as value:
        schedule = registry.build("schedule", _spec(info, value), optimizer=optimizer,
                                  epochs=6, steps_per_epoch=3)
    _expect(isinstance(schedule, Schedule), f"build returned {type(schedule).__name__}, "
                                            f"expected a Schedule")
    steps = 6 * 3 if schedule.interval == "batch" else 6
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.scheduler.step()
    _expect(all(lr >= 0 and lr == lr for lr in lrs), f"learning rates {lrs}")


def _loss(info: ComponentInfo) -> None:
    with _example(info) as value:
        objective = registry.build("loss", _spec(info, value))
    classes = info.attrs["targets"] == "class"
    if classes:
        outputs = torch.randn(8, objective.num_outputs(2, 1), requires_grad=True)
        targets = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    else:
        outputs = torch.randn(8, objective.num_outputs(0, 2), requires_grad=True)
        targets = torch.randn(8, 2)
    loss = objective(outputs, targets)
    loss.backward()
    _expect(loss.dim() == 0 and torch.isfinite(loss), f"loss {loss} is not a finite scalar")
    sums = objective.sums(outputs.detach(), targets)
    values = objective.finalize(sums, 8, 1 if classes else 2)
    _expect(values.shape == (len(info.attrs["metrics"]),),
            f"finalize gave shape {tuple(values.shape)} for metrics {info.attrs['metrics']}")
    _expect(bool((values >= 0).all()), f"negative metric values {values.tolist()}")


def _dataset(info: ComponentInfo) -> None:
    from nnbench.data import TensorData, dataset_attrs

    with _example(info) as value:
        spec = _spec(info, value)
        attrs = dataset_attrs(spec)
        data = registry.build("dataset", spec, seed=0, device=CPU)
        again = registry.build("dataset", spec, seed=0, device=CPU)
        metadata = info.attrs.get("metadata")
        meta = metadata(info.params.model_validate(spec.kwargs)) if metadata else None
        params = info.params.model_validate(spec.kwargs)
        shape_fn = info.attrs.get("shape")
        shape: DataShape | None = shape_fn(params) if shape_fn is not None else None
    _expect(isinstance(data, TensorData), f"build returned {type(data).__name__}, expected "
                                          f"a TensorData (nnbench.data.split makes one)")
    sizes = data.sizes()
    _expect(min(sizes.values()) > 0, f"an empty split: {sizes}")
    _expect(torch.equal(data.y_val, again.y_val) and torch.equal(data.x_train, again.x_train),
            "the same seed gave a different split")
    _expect(data.x_train.dtype == torch.float32, f"inputs are {data.x_train.dtype}, "
                                                 f"expected float32")
    _expect(data.x_train.shape[1:] == data.x_val.shape[1:] == data.x_test.shape[1:],
            "train, val and test inputs differ in shape")
    if attrs["targets"] == "class":
        _expect(data.y_train.dtype == torch.int64, f"labels are {data.y_train.dtype}")
        _expect(int(data.y_train.max()) < data.num_classes,
                f"label {int(data.y_train.max())} >= num_classes {data.num_classes}")
    else:
        _expect(data.y_train.dtype == torch.float32 and data.y_train.dim() == 2,
                "real targets must be float32 (N, k)")
    dims = {"vector": (1,), "signal": (1, 2), "image": (3,)}[attrs["input"]]
    _expect(len(data.input_shape) in dims, f"input {attrs['input']} but examples are shaped "
                                           f"{data.input_shape}")
    if meta is not None:
        _expect(tuple(meta.input_shape) == data.input_shape and meta.num_classes ==
                data.num_classes, f"metadata {meta} disagrees with the data built "
                                  f"({data.input_shape}, {data.num_classes} classes)")
    # the shape contract (nnbench.data): what validation's dry build sees without the data
    _expect(shape is not None, "attrs['shape'] is missing: a function of the params "
                               "returning a nnbench.data.DataShape (see nnbench.data)")
    _expect(isinstance(params, SplitParams), "params must subclass nnbench.data.SplitParams "
                                             "(or HeldOutParams): every dataset splits alike")
    assert shape is not None and isinstance(params, SplitParams)
    problem = declared_shape_problem(info, params, shape, data)  # (as `run` checks it)
    _expect(problem is None, str(problem))


class _MarkedActivation(nn.ReLU):
    """The activation the model check passes, to see that the model uses it."""


def _model_inputs(info: ComponentInfo) -> list[tuple[int, ...]]:
    need = info.attrs.get("input")
    if need == "image":
        return [(3, 8, 8)]
    if need == "signal":
        return [(12,), (2, 12)]
    return [(12,)]


def _has(model: nn.Module, kinds: tuple[type, ...]) -> bool:
    return any(isinstance(m, kinds) for m in model.modules())


def _model(info: ComponentInfo) -> None:
    from nnbench.components.regularizers import Dropout, attach_dropout_generator
    from nnbench.models import ignored_axes
    from nnbench.train.build import layer_weights, weight_layers

    with _example(info) as value:
        spec = _spec(info, value)
    ignored = ignored_axes(spec)
    batchnorm = registry.build("norm", registry.resolve("norm", "batchnorm"))

    def build(shape: tuple[int, ...], init: str | dict[str, Any] = "default", seed: int = 0,
              norm: Any = None, dropout: float = 0.0) -> nn.Module:
        model: nn.Module = registry.build(
            "model", spec, input_shape=shape, outputs=3, activation=_MarkedActivation,
            gain=("relu", None), init=registry.build("init", registry.resolve("init", init)),
            norm=norm, dropout=dropout, generator=torch.Generator().manual_seed(seed))
        # dropout masks come from the trial's own generator, which the engines attach
        attach_dropout_generator(model, torch.Generator().manual_seed(seed + 1))
        return model

    for shape in _model_inputs(info):
        for norm, dropout in ((None, 0.0), (batchnorm, 0.3)):
            model = build(shape, norm=norm, dropout=dropout)
            x = torch.randn(4, *shape, requires_grad=True)
            y = model(x)
            y.sum().backward()
            _expect(y.shape == (4, 3), f"input {(4, *shape)} gave output {tuple(y.shape)}, "
                                       f"expected (4, outputs=3)")
            _expect(x.grad is not None and torch.isfinite(x.grad).all(),
                    "input gradients are not finite")
            model.eval()
            _expect(torch.equal(model(x), model(x)), "two forward passes in eval mode differ")
            for axis, present, kinds in (("norm", norm is not None, (nn.modules.batchnorm
                                                                      ._BatchNorm,)),
                                         ("dropout", dropout > 0,
                                          (Dropout, nn.modules.dropout._DropoutNd))):
                found = _has(model, kinds) or (axis == "dropout" and any(
                    isinstance(m, nn.RNNBase) and m.dropout > 0 for m in model.modules()))
                if present and axis not in ignored:
                    _expect(found, f"built with {axis} but has no {axis} layer; use the "
                                   f"`{axis}` context argument, or declare the axis in "
                                   f"attrs['ignored_axes']")
                if present and axis in ignored:
                    _expect(not found, f"declares {axis} ignored ({ignored[axis]}) but builds "
                                       f"a {axis} layer")
        uses_activation = _has(model, (_MarkedActivation,))
        if "activation" in ignored:
            _expect(not uses_activation, f"declares activation ignored "
                                         f"({ignored['activation']}) but uses it")
        else:
            _expect(uses_activation, "does not use the activation it is given; call the "
                                     "`activation` factory for each nonlinearity, or declare "
                                     "it in attrs['ignored_axes']")
        layers = weight_layers(build(shape, init={"name": "constant", "value": 0.125}))
        _expect(layers, "has no weight layer (Linear, Conv1d, Conv2d, GRU) for inits, L1/L2 "
                        "and diagnostics")
        for i, layer in enumerate(layers, 1):
            _expect(all(bool((w == 0.125).all()) for w in layer_weights(layer)),
                    f"weight layer {i} ({layer}) was not initialised by the init axis; call "
                    f"init(layer, gain, generator) on every weight layer")
        first = build(shape, init="kaiming_normal", seed=1).state_dict()
        second = build(shape, init="kaiming_normal", seed=1).state_dict()
        other = build(shape, init="kaiming_normal", seed=2).state_dict()
        _expect(all(torch.equal(first[k], second[k]) for k in first),
                "two builds with the same init generator differ")
        _expect(any(not torch.equal(first[k], other[k]) for k in first),
                "builds with different init generators are identical; draw the init from "
                "the `generator` passed in")


def _built_unless_none(info: ComponentInfo) -> tuple[ComponentSpec, Any] | None:
    """The component built from its example, with its spec; None for the kind's `none`
    entry, which must build None (there is nothing more to check)."""
    with _example(info) as value:
        spec = _spec(info, value)
        built = registry.build(info.kind, spec)
    if info.name == "none":
        _expect(built is None, f"{info.kind} 'none' must build None")
        return None
    return spec, built


def _norm(info: ComponentInfo) -> None:
    if (built := _built_unless_none(info)) is None:
        return
    out = built[1](8, 1)(torch.randn(4, 8) * 5 + 3)
    _expect(out.mean().abs() < 1e-5, "does not normalise per feature in training mode")


def _clip(info: ComponentInfo) -> None:
    if (built := _built_unless_none(info)) is None:
        return
    spec, clip = built
    w = nn.Parameter(torch.zeros(4))
    w.grad = torch.tensor([30.0, -40.0, 0.5, 0.0])
    clip([w])
    if "max_norm" in spec.kwargs:
        _expect(w.grad.norm() <= spec.kwargs["max_norm"] * (1 + 1e-6), "norm not clipped")
    elif "clip_value" in spec.kwargs:
        _expect(w.grad.abs().max() <= spec.kwargs["clip_value"], "values not clipped")
    else:
        _expect(w.grad.abs().max() < 40.0, "a gradient of 40 was left as it was")


def _early_stopping(info: ComponentInfo) -> None:
    from nnbench.components.regularizers import EarlyStopping

    if (built := _built_unless_none(info)) is None:
        return
    spec, stopper = built
    _expect(isinstance(stopper, EarlyStopping), f"build returned {type(stopper).__name__}")
    patience = spec.kwargs["patience"]
    _expect(stopper.update(1, 1.0) == (True, False), "a first epoch must count as improved")
    results = [stopper.update(e, 2.0) for e in range(2, 2 + patience)]
    _expect(results[-1] == (False, True), f"no stop after {patience} bad epochs")
    _expect(all(r == (False, False) for r in results[:-1]), "stopped too early")
    _expect(stopper.best_epoch == 1, "best epoch not kept")


def _augmentation(info: ComponentInfo) -> None:
    from nnbench.components.augmentations import Augmentation, Normalize

    with _example(info) as value:
        spec = _spec(info, value)
    aug = registry.build("augmentation", spec)
    _expect(isinstance(aug, Augmentation), f"build returned {type(aug).__name__}, expected "
                                           f"an Augmentation")
    x = torch.rand(6, 3, 12, 12) if info.attrs["input"] == "image" else torch.randn(6, 40)
    if isinstance(aug, Normalize):
        aug.fit(x)
    first = aug(x, torch.Generator().manual_seed(1))
    again = aug(x, torch.Generator().manual_seed(1))
    _expect(torch.equal(first, again), "randomness must come only from the generator")
    _expect(torch.isfinite(first).all(), "non-finite outputs")
    size = spec.kwargs.get("size")
    expected = (6, 3, size, size) if size else tuple(x.shape)
    _expect(tuple(first.shape) == expected, f"output shape {tuple(first.shape)}, "
                                            f"expected {expected}")


CONTRACTS: dict[str, Callable[[ComponentInfo], None]] = {
    "activation": _activation, "init": _init, "optimizer": _optimizer, "schedule": _schedule,
    "loss": _loss, "dataset": _dataset, "model": _model, "norm": _norm, "clip": _clip,
    "early_stopping": _early_stopping, "augmentation": _augmentation,
}


# -- out-of-range parameters ----------------------------------------------------------------------

def _past(bound: float, toward: float) -> float:
    """A value beyond an inclusive bound: 1 past it, or the next float where 1 is lost to
    rounding (float32's largest + 1 is itself)."""
    step = bound + (1 if toward > 0 else -1)
    return step if step != bound else math.nextafter(bound, toward)


def out_of_range_values(info: ComponentInfo) -> list[tuple[str, Any]]:
    """One out-of-range value per bound declared on a numeric parameter."""
    bad: list[tuple[str, Any]] = []
    fields = getattr(info.params, "model_fields", {})  # a broken params model has none
    for name, f in fields.items():
        for bound in f.metadata:
            value: Any = None
            if isinstance(bound, annotated_types.Gt):
                value = bound.gt
            elif isinstance(bound, annotated_types.Ge):
                value = _past(float(bound.ge), -math.inf)  # type: ignore[arg-type]
            elif isinstance(bound, annotated_types.Lt):
                value = bound.lt
            elif isinstance(bound, annotated_types.Le):
                value = _past(float(bound.le), math.inf)  # type: ignore[arg-type]
            if value is not None:
                bad.append((name, value))
    return bad


def _rejects(param: str, value: Any) -> Callable[[ComponentInfo], None]:
    def run(info: ComponentInfo) -> None:
        with _example(info) as example:
            try:
                registry.resolve(info.kind, {**example, param: value})
            except ComponentError as err:
                keys = [key for key, _ in err.problems]
                _expect(keys == [param], f"the error names {keys}, not [{param!r}]")
                _expect(repr(value) in str(err), f"the error does not show the value given: "
                                                 f"{err}")
                return
        raise ContractError(f"{param}={value!r} is out of its declared range but was accepted")
    return run


# -- public entry points ------------------------------------------------------------------------

def component_checks(info: ComponentInfo) -> list[Check]:
    """Every check of the contract for one component, in order."""
    checks = [Check("registration", _registration), Check("resolves", _resolves)]
    behaviour = CONTRACTS.get(info.kind)
    if behaviour is not None:
        checks.append(Check(info.kind, behaviour))
    checks += [Check(f"rejects {param}={value!r}", _rejects(param, value))
               for param, value in out_of_range_values(info)]
    return checks


def check_component(info: ComponentInfo) -> None:
    """Run every check on a component; raises ContractError naming the first that fails."""
    for check in component_checks(info):
        check(info)


def parametrize_with_checks(infos: Iterable[ComponentInfo]) -> pytest.MarkDecorator:
    """`@pytest.mark.parametrize(("info", "check"), ...)`: one test per component and check,
    with ids like `model:mynet-registration`."""
    import pytest

    cases = [(info, check) for info in infos for check in component_checks(info)]
    return pytest.mark.parametrize(("info", "check"), cases,
                                   ids=[f"{i.kind}:{i.name}-{c.name}" for i, c in cases])


@contextmanager
def isolated_registry() -> Iterator[None]:
    """Undo, on exit, every registration and plugin load made inside, and forget the plugin
    modules imported inside (those found in folders added to sys.path inside, and the
    packages of components registered inside), so the next import reads them afresh."""
    saved = registry.snapshot()
    old_plugins = plugins._save()
    sources = {i.source for entries in saved.values() for i in entries.values()}
    modules, path = set(sys.modules), list(sys.path)
    try:
        yield
    finally:
        now = registry.snapshot(load=False)  # even when an entry point is broken
        new_sources = {i.source for entries in now.values() for i in entries.values()} - sources
        new_sources |= set(plugins.loaded()) - set(old_plugins[0])
        tops = {source.partition(".")[0] for source in new_sources}
        folders = [Path(p).resolve() for p in set(sys.path) - set(path) if p]
        for name in set(sys.modules) - modules:
            file = getattr(sys.modules[name], "__file__", None) or ""
            inside = any(Path(file).resolve().is_relative_to(f) for f in folders) if file \
                else False
            if inside or name.partition(".")[0] in tops:
                del sys.modules[name]
        registry.restore(saved)
        plugins._restore(old_plugins)
        sys.path[:] = path
