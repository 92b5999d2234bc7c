"""One registry mechanism for every component kind: name -> ComponentInfo.

A component is registered as data (timm's `OptimInfo` style)::

    register(ComponentInfo(kind="activation", name="relu", build=..., doc="max(0, x)"))

Its parameters are a pydantic model (`params`): types, defaults, bounds and units
live there, so a suite file's `{name: sgd, lr: 0.1}` is validated by the same
class that documents it. `resolve()` turns a raw suite value into a
`ComponentSpec` (name + every parameter, defaults filled); `build()` turns a spec
back into the object. Unknown names raise `UnknownComponentError` with the closest
valid names; `nnbench list KIND` prints `list_components()`.

Plugins register through the same `register()` (`nnbench.plugins` imports them): every
registration is checked (`registration_problems`: known kind, name, doc line, a
`Params` model whose parameter types can enter a trial_id and that validates its
example, the attrs the kind needs) and records its `source`, "nnbench" for built-ins,
else the plugin module.

Parameter values enter the trial_id as pydantic's JSON form (`model_dump(mode="json")`:
a Path as its text, an Enum as its value, a datetime in ISO 8601, a nested model as a
mapping), which must read back as the same value. Types without such a form (sets,
whose order changes between processes; callables; arbitrary classes) are refused at
registration, a value whose form does not read back at validation; both name the
parameter and the allowed types (`PARAM_TYPES`).
"""

from __future__ import annotations

import collections.abc
import datetime
import enum
import fnmatch
import math
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import PurePath
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError, to_jsonable_python

from nnbench.messages import article, describe, did_you_mean, first_line, pydantic_problems

__all__ = [
    "KINDS",
    "PARAM_TYPES",
    "ComponentError",
    "ComponentInfo",
    "ComponentSpec",
    "NoParams",
    "Params",
    "RegistrationError",
    "UnknownComponentError",
    "build",
    "get",
    "kinds",
    "label",
    "list_components",
    "param_type_problems",
    "plain_params",
    "register",
    "registration_problems",
    "resolve",
]

# Every component kind and what its build(params, **context) returns.
KINDS: dict[str, str] = {
    "activation": "an nn.Module applied elementwise",
    "init": "an InitFn(layer, gain, generator) filling a layer's weights",
    "optimizer": "a torch.optim.Optimizer over `parameters`",
    "schedule": "a Schedule(scheduler, interval) over `optimizer`",
    "loss": "an Objective (loss, outputs per target, metric sums)",
    "norm": "a NormFactory(features, dims) -> nn.Module, or None",
    "clip": "a ClipFn(parameters), or None",
    "early_stopping": "an EarlyStopping, or None",
    "augmentation": "an Augmentation applied to training batches",
    "dataset": "a TensorData (seeded split on `device`)",
    "model": "an nn.Module from input_shape, outputs, activation, init, norm, dropout",
}
# attrs the trainer and validation read, per kind
REQUIRED_ATTRS: dict[str, tuple[str, ...]] = {
    "activation": ("gain",),
    "loss": ("targets", "metrics"),
    "dataset": ("targets", "input"),
    "augmentation": ("input",),
}
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
BUILTIN = "nnbench"  # the source of nnbench's own components
FLOAT32_MAX = 3.4028234663852886e38  # float32's largest finite number (torch.finfo)
FLOAT32_TINY = 1.1754943508222875e-38  # float32's smallest normal number (torch.finfo)


def below_float32_normal(value: float) -> bool:
    """A number other than 0 that float32, in which training computes, holds as 0 or as a
    subnormal some devices flush to 0 (an lr of 1e-50 trained nothing)."""
    return bool(value) and abs(value) < FLOAT32_TINY


class Params(BaseModel):
    """Base of every component's parameter model: unknown keys are errors, values frozen.

    Non-finite numbers (.inf, .nan) are rejected unless a field allows them
    (`Field(allow_inf_nan=True)`, e.g. clip's norm_type).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def _unused_settings(self) -> dict[str, str]:
        """Parameters these values make have no effect: {name: why, and what is allowed}.
        A suite that gives one a value other than its default where every configuration
        ignores it is refused (validate's unused settings check). A private name: a plugin's
        parameter may be called `unused`."""
        return {}

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """A number is given as a number, a switch as true or false: YAML's `true` or
        `"0.05"` for lr, `1` or `"yes"` for standardize would pass pydantic's lax mode as 1.0,
        0.05 and True (the suite's own scalars are strict)."""
        if info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if annotation in (bool, bool | None) and not isinstance(value, bool | None):
            raise ValueError("expected true or false")
        numeric, items = _number_kinds(annotation)
        given = list(value) if items and isinstance(value, list | tuple) else \
            [value] if numeric else []
        for v in given:
            if isinstance(v, bool | str):
                raise ValueError(f"expected numbers, not a {type(v).__name__} ({v!r})" if items
                                 else f"expected a number, not a {type(v).__name__}")
            # training computes in float32: a larger number is inf there (an init constant
            # of 1e39 diverged every trial; a BatchNorm eps of 1e300 trained at chance)
            if isinstance(v, int | float) and abs(v) > FLOAT32_MAX and (  # (an int past
                    isinstance(v, int) or math.isfinite(v)):  # 1e308: no float, no isfinite)
                raise ValueError(f"beyond float32's range (±{FLOAT32_MAX:.3g}), in which "
                                 f"training computes (it would be inf there); allowed: a "
                                 f"magnitude up to {FLOAT32_MAX:.3g}")
            if isinstance(v, float) and below_float32_normal(v):
                raise ValueError(f"below float32's smallest normal number ({FLOAT32_TINY:.3g}), "
                                 f"in which training computes (it would be 0 there, or a "
                                 f"subnormal that devices may flush to 0); allowed: a "
                                 f"magnitude from {FLOAT32_TINY:.3g} (or 0, where the "
                                 f"parameter takes 0)")
        return value


def _number_kinds(annotation: Any) -> tuple[bool, bool]:
    """(the annotation takes a number and no bool or str, its items do): a lr's `float`,
    `float | None`, betas' `tuple[float, float]`, hidden's `list[int]`."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _number_kinds(get_args(annotation)[0])
    if origin in (Union, UnionType):
        kinds = [_number_kinds(a) for a in get_args(annotation) if a is not type(None)]
        if any(a in (bool, str) or get_origin(a) is Literal for a in get_args(annotation)):
            return False, False  # a word is one of its values (gain: "activation")
        return any(k[0] for k in kinds), any(k[1] for k in kinds)
    if origin in (list, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return False, bool(args) and all(_number_kinds(a)[0] for a in args)
    return annotation in (int, float), False


class NoParams(Params):
    """A component without parameters."""


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component: what it is called, how to build it, what it takes."""

    kind: str  # registry it belongs to: activation, init, optimizer, ...
    name: str  # the name used in suite files
    build: Callable[..., Any]  # build(params, **context) -> the object
    doc: str  # one line shown by `nnbench list`
    params: type[Params] = NoParams
    attrs: Mapping[str, Any] = field(default_factory=dict)  # kind-specific facts
    example: Mapping[str, Any] = field(default_factory=dict)  # values for required params
    # where the defaults come from (PyTorch, torchvision, the notes) and where they differ;
    # `nnbench list` prints it under the parameters
    defaults: str = ""
    source: str = ""  # who registered it: "nnbench", or the plugin module (set by register)


JSONScalar = str | int | float | bool | None


class _Mapping(tuple):  # type: ignore[type-arg]
    """A frozen mapping parameter (a dict, a nested model): its (key, value) pairs sorted by
    key; `_thaw` turns it back into a dict."""

    __slots__ = ()


def _freeze(value: Any) -> Any:
    """Lists become tuples, mappings sorted pairs, so a spec is hashable and canonical."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return _Mapping(sorted(((k, _freeze(v)) for k, v in value.items()),
                               key=lambda kv: str(kv[0])))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, _Mapping):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


# -- parameter types: what can enter a trial_id ------------------------------------------------

# the types a component's parameters may have (`registration_problems` refuses others)
PARAM_TYPES = ("bool, int, float, str, None, Literal, Enum, Path, datetime, date, time, "
               "timedelta, Decimal, UUID, Any; tuple, list, dict[str, ...] of these; a nested "
               "Params model")
_SCALAR_TYPES: tuple[type, ...] = (bool, int, float, str, type(None), PurePath, datetime.date,
                                   datetime.time, datetime.timedelta, Decimal, uuid.UUID)
_SEQUENCES = (tuple, list, collections.abc.Sequence, collections.abc.MutableSequence)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_SETS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
_UNORDERED = "a set's order changes between processes; use a tuple or list"


def param_type_problems(model: type[BaseModel], prefix: str = "",
                        seen: frozenset[type] = frozenset()) -> list[tuple[str, str, str]]:
    """(parameter, its type as `nnbench list` shows it, why) for each parameter of `model`
    whose type has no faithful, stable JSON form (empty when every one has)."""
    problems = []
    for name, f in model.model_fields.items():
        for why in _type_problems(f.annotation, seen | {model}):
            problems.append((f"{prefix}{name}", _type_text(f.annotation), why))
    return problems


def _type_problems(annotation: Any, seen: frozenset[type]) -> list[str]:
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any or annotation is object:
        return []  # each value is checked when given (`plain_params`)
    if origin is Annotated:
        return _type_problems(args[0], seen)
    if origin in (Union, UnionType):
        return [why for a in args for why in _type_problems(a, seen)]
    if origin is Literal:
        odd = [a for a in args if not isinstance(a, str | int | float | bool | enum.Enum)
               and a is not None]
        return [f"Literal value {odd[0]!r} ({type(odd[0]).__name__}) has no JSON form"] \
            if odd else []
    if origin in _SETS or (origin is None and isinstance(annotation, type)
                           and issubclass(annotation, set | frozenset)):
        return [_UNORDERED]
    if origin in _SEQUENCES:
        return [why for a in args if a is not Ellipsis for why in _type_problems(a, seen)]
    if origin in _MAPPINGS:
        key, value = (*args, Any, Any)[:2]
        why = _type_problems(value, seen)
        if key is not Any and not _string_key(key):
            why.insert(0, f"a mapping's keys must be str, int, Literal or Enum (JSON "
                          f"keys are text), not {_type_text(key)}")
        return why
    if origin is not None:
        return [f"{_type_text(annotation)} has no JSON form that reads back the same"]
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            odd = [m for m in annotation if not isinstance(m.value, str | int | float)]
            return [f"Enum {annotation.__name__} member {odd[0].name} has the value "
                    f"{odd[0].value!r}, which is not a str, int or float"] if odd else []
        if issubclass(annotation, BaseModel):
            if annotation in seen:
                return [f"{annotation.__name__} contains itself: its JSON form has no end"]
            return [f"its parameter {sub!r} ({t}): {why}" for sub, t, why in
                    param_type_problems(annotation, "", seen)]
        if issubclass(annotation, _SCALAR_TYPES) or annotation in (tuple, list, dict):
            return []
    return [f"{_type_text(annotation)} has no JSON form known to read back the same"]


def _string_key(key: Any) -> bool:
    origin = get_origin(key)
    if origin is Annotated:
        return _string_key(get_args(key)[0])
    if origin is Literal:
        return all(isinstance(a, str | int) for a in get_args(key))
    return isinstance(key, type) and issubclass(key, str | int | enum.Enum)


def _same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN (a round trip's NaN is another float object)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):  # specs store tuples
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:  # an odd __eq__: not the same
        return False


def plain_params(model: type[Params], params: BaseModel) -> tuple[dict[str, Any],
                                                                 list[tuple[str, str]]]:
    """Parameter values as they enter the trial_id: pydantic's JSON form, checked to read
    back as the same values. Returns (values, problems), problems as (parameter, why)."""
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    try:
        values = params.model_dump(mode="json")
    except (PydanticSerializationError, TypeError, ValueError):
        for name in model.model_fields:  # which one
            try:
                values[name] = params.model_dump(mode="json", include={name})[name]
            except (PydanticSerializationError, TypeError, ValueError) as err:
                problems.append((name, f"{describe(getattr(params, name))} has no JSON form "
                                       f"({first_line(err)})"))
        return values, problems
    try:
        back = model.model_validate(values)
    except ValidationError as err:
        e = err.errors()[0]
        name = str(e["loc"][0]) if e["loc"] else ""
        return values, [(name, f"{describe(getattr(params, name, None))} is written as "
                               f"{describe(values.get(name))}, which {model.__name__} does "
                               f"not read back: {e['msg']}")]
    except Exception as err:  # a validator raising what pydantic does not wrap
        return values, [("", f"its JSON form {describe(values)} does not read back: "
                             f"{first_line(err, with_type=True)}")]
    for name in model.model_fields:
        given, again = getattr(params, name), getattr(back, name)
        if not _same(given, again):
            problems.append((name, f"{describe(given)} is written as "
                                   f"{describe(values[name])}, which reads back as "
                                   f"{describe(again)}"))
    return values, problems


@dataclass(frozen=True, order=True)
class ComponentSpec:
    """A resolved component value: its name and every parameter (defaults filled in)."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.params}

    def to_dict(self) -> dict[str, Any]:
        """Canonical plain form: `{"name": ..., **params}` (what suite files and MLflow show)."""
        return {"name": self.name, **self.kwargs}

    def label(self) -> str:
        """Short human form: `sgd(lr=0.1, momentum=0.9)`, or just `relu`."""
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={_thaw(v)}" for k, v in self.params)
        return f"{self.name}({inner})"


class ComponentError(ValueError):
    """A component value is invalid. `problems` holds (key path below the value, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" if k else m for k, m in problems))


class UnknownComponentError(ComponentError, KeyError):
    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, known
        super().__init__([("", f"unknown {kind} {describe(name)}; {did_you_mean(name, known)}"
                               f"known: {', '.join(known)}")])

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return ValueError.__str__(self)


class RegistrationError(ValueError):
    """A component cannot be registered (unknown kind, duplicate name, bad params model...)."""


_REGISTRIES: dict[str, dict[str, ComponentInfo]] = {}
# plugins being imported (innermost last), each with the (kind, name) pairs it added
_LOADING: list[tuple[str, list[tuple[str, str]]]] = []


def _who(source: str) -> str:
    return "nnbench" if source == BUILTIN else f"plugin {source!r}"


def registration_problems(info: ComponentInfo) -> list[str]:
    """Why `info` cannot be registered (empty when it can); duplicates are checked apart."""
    if not isinstance(info, ComponentInfo):
        return [f"register() takes a nnbench.registry.ComponentInfo, got {type(info).__name__}"]
    what = f"{info.kind} {info.name!r}"
    problems = []
    if info.kind not in KINDS:
        problems.append(f"{what}: unknown kind {info.kind!r}; "
                        f"{did_you_mean(info.kind, KINDS)}known: {', '.join(KINDS)}")
    if not isinstance(info.name, str) or not NAME_PATTERN.fullmatch(info.name):
        problems.append(f"{what}: a name is a letter then letters, digits, '_' or '-'")
    if not callable(info.build):
        problems.append(f"{what}: build must be callable (params, **context) -> "
                        f"{KINDS.get(info.kind, 'the object')}, got {type(info.build).__name__}")
    if not isinstance(info.doc, str) or not info.doc.strip() or "\n" in info.doc:
        problems.append(f"{what}: doc must be one non-empty line (shown by `nnbench list`)")
    if not (isinstance(info.params, type) and issubclass(info.params, Params)):
        problems.append(f"{what}: params must be a subclass of nnbench.registry.Params "
                        f"(a pydantic model: unknown keys rejected, values frozen), "
                        f"got {info.params!r}")
    else:
        types = param_type_problems(info.params)
        for name, text, why in types:
            problems.append(f"{what}: parameter {name!r} of {info.params.__name__} has type "
                            f"{text}, which cannot enter the trial_id: {why}; allowed "
                            f"parameter types: {PARAM_TYPES}")
        try:
            example = info.params.model_validate(dict(info.example))
        except ValidationError as err:
            problems.append(f"{what}: its params model {info.params.__name__} rejects its example "
                            f"{dict(info.example)!r} (required parameters need example values): "
                            f"{_first_error(err)}")
        else:
            if info.kind == "activation" and callable(info.attrs.get("gain")):
                problems += _gain_problems(what, info.attrs["gain"], example)
            for name, why in ([] if types else plain_params(info.params, example)[1]):
                problems.append(f"{what}: {f'parameter {name!r}' if name else 'the parameters'}"
                                f" of {info.params.__name__} cannot enter the trial_id: its "
                                f"example or default {why}; allowed parameter types: "
                                f"{PARAM_TYPES}")
    missing = [a for a in REQUIRED_ATTRS.get(info.kind, ()) if a not in info.attrs]
    if missing:
        problems.append(f"{what}: a {info.kind} needs attrs {', '.join(missing)}")
    for attr, allowed in ATTR_VALUES.get(info.kind, {}).items():
        value = info.attrs.get(attr, _ABSENT)
        if value is _ABSENT:
            continue
        if allowed == "callable":
            if not callable(value):
                problems.append(f"{what}: attrs[{attr!r}] must be callable, got "
                                f"{type(value).__name__} {value!r}")
        elif allowed == "names":
            if not (isinstance(value, tuple | list) and all(isinstance(v, str) for v in value)):
                problems.append(f"{what}: attrs[{attr!r}] must be a tuple of metric names, "
                                f"got {value!r}")
        elif value not in allowed:
            problems.append(f"{what}: attrs[{attr!r}] is {value!r}; allowed: "
                            f"{', '.join(map(repr, allowed))}")
    return problems


def gain_problem(given: Any) -> Exception | None:
    """Why an activation's gain, as `attrs["gain"](params)` gave it, is not the arguments
    `torch.nn.init.calculate_gain` takes (None when it is): a bogus name failed the model's
    build, "cannot build model 'mlp': Unsupported nonlinearity"."""
    import torch

    try:
        nonlinearity, param = given
        torch.nn.init.calculate_gain(nonlinearity, param)
    except Exception as err:
        return err
    return None


def _gain_problems(what: str, gain: Callable[[Any], Any], example: Params) -> list[str]:
    try:
        problem = gain_problem(gain(example))
    except Exception as err:
        problem = err
    if problem is None:
        return []
    return [f"{what}: attrs['gain'](params) must return (nonlinearity, param) that "
            f"torch.nn.init.calculate_gain takes, e.g. ('relu', None) or ('leaky_relu', "
            f"0.01); for its example parameters: {first_line(problem, with_type=True)}"]


_ABSENT = object()
# what a kind's attrs may hold, where nnbench reads them: a value of a few, "callable", or
# "names" (a tuple of strings); a wrong one failed later, blamed on another component
# (an activation's gain tuple: "cannot build model 'mlp': 'tuple' object is not callable")
ATTR_VALUES: dict[str, dict[str, Any]] = {
    "activation": {"gain": "callable"},
    "loss": {"targets": ("class", "real"), "metrics": "names"},
    "dataset": {"targets": ("class", "real"), "input": ("vector", "signal", "image"),
                "shape": "callable", "source": "callable", "check": "callable"},
    "augmentation": {"input": ("image", "signal", "vector", "any")},
    "model": {"input": ("vector", "signal", "image", None), "ignored_axes": "callable"},
}


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    return f"{loc}: {e['msg']}" if loc else str(e["msg"])


def _caller_source() -> str:
    """The module that called register(): nnbench's own, or a user's module."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # type: ignore[assignment]
    module = str(frame.f_globals.get("__name__", "")) if frame is not None else ""
    return BUILTIN if module == BUILTIN or module.startswith(f"{BUILTIN}.") else module


def _loading_source() -> str:
    """Who registers, while a plugin module loads: the plugin, unless the registration is
    made by the import of another package's module that the plugin imports (a plugin that
    imports the lab's models module): then that module, whose source is what the
    component's trials must be keyed by (they were keyed by the importing plugin's, so an
    edit of the models left their ids unchanged, and whether the models' module could be
    named in `plugins:` beside it depended on which was loaded first)."""
    loading = _LOADING[-1][0]
    frame: Any = sys._getframe(2)
    first = None  # the innermost module being executed, outside this one
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if frame.f_code.co_name == "<module>" and name != __name__:
            first = first or name
            if name == loading:
                break
        frame = frame.f_back
    else:  # the plugin's own import is not under way (a registering_as block): the plugin
        return loading
    if first is None or first.partition(".")[0] == loading.partition(".")[0]:
        return loading  # (a package's own modules are one plugin, hashed together)
    if first == BUILTIN or first.startswith(f"{BUILTIN}."):
        return BUILTIN
    # only a module importable by its name from the path (not one a plugin executed from a
    # file: its source could not be hashed, nor the module imported again by a worker)
    from importlib.machinery import PathFinder

    module = sys.modules.get(first)
    top = PathFinder.find_spec(first.partition(".")[0])
    if module is None or not getattr(module, "__file__", None) or top is None:
        return loading
    return first


def register(info: ComponentInfo) -> ComponentInfo:
    """Add a component, recording its source (nnbench, or the plugin being loaded).

    Raises RegistrationError for an invalid component or a name already taken.
    """
    problems = registration_problems(info)
    if problems:
        raise RegistrationError("; ".join(problems))
    source = info.source or (_loading_source() if _LOADING else _caller_source())
    registry = _REGISTRIES.setdefault(info.kind, {})
    if info.name in registry:
        taken = registry[info.name].source
        raise RegistrationError(f"{info.kind} {info.name!r} is already registered by "
                                f"{_who(taken)}; choose another name")
    registry[info.name] = stored = replace(info, source=source)
    if _LOADING:
        _LOADING[-1][1].append((info.kind, info.name))
    return stored


@contextmanager
def registering_as(source: str) -> Iterator[list[tuple[str, str]]]:
    """Record registrations made inside as coming from `source` (a plugin module).

    Yields the (kind, name) pairs added; if the block raises, they are removed again,
    so a broken plugin leaves nothing behind.
    """
    added: list[tuple[str, str]] = []
    _LOADING.append((source, added))
    try:
        yield added
    except BaseException:
        for kind, name in added:
            _REGISTRIES[kind].pop(name, None)
        raise
    finally:
        _LOADING.pop()


def unregister(kind: str, name: str) -> None:
    """Remove a component (tests and plugin reloads); unknown names are ignored."""
    _REGISTRIES.get(kind, {}).pop(name, None)


def snapshot(*, load: bool = True) -> dict[str, dict[str, ComponentInfo]]:
    """A copy of every registry, for `restore` (tests that load plugins); `load=False`
    copies what is registered now, without loading the built-ins and entry points."""
    if load:
        _ensure_loaded()
    return {kind: dict(entries) for kind, entries in _REGISTRIES.items()}


def restore(saved: dict[str, dict[str, ComponentInfo]]) -> None:
    _REGISTRIES.clear()
    _REGISTRIES.update({kind: dict(entries) for kind, entries in saved.items()})


def kinds() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRIES)


def get(kind: str, name: str) -> ComponentInfo:
    _ensure_loaded()
    if kind not in _REGISTRIES:
        raise UnknownComponentError("component kind", kind, sorted(_REGISTRIES))
    registry = _REGISTRIES[kind]
    if name not in registry:
        raise UnknownComponentError(kind, name, sorted(registry))
    return registry[name]


def list_components(kind: str | None = None, pattern: str = "*") -> Iterator[ComponentInfo]:
    """Registered components of one kind (or all), names filtered by a glob pattern."""
    _ensure_loaded()
    for k in [kind] if kind else kinds():
        if k not in _REGISTRIES:
            raise UnknownComponentError("component kind", k, kinds())
        for name in sorted(_REGISTRIES[k]):
            if fnmatch.fnmatchcase(name, pattern):
                yield _REGISTRIES[k][name]


def describe_params(info: ComponentInfo) -> list[str]:
    """`lr: float = 0.01 (learning rate, per step)`, one line per parameter."""
    lines = []
    for pname, f in info.params.model_fields.items():
        annotation = _type_text(f.annotation)
        default = "required" if f.is_required() else repr(f.default)
        text = f"{pname}: {annotation} = {default}"
        if f.description:
            text += f" ({f.description})"
        lines.append(text)
    return lines


def _type_text(annotation: Any) -> str:
    """`float`, `zeros | default`, `tuple[int, ...]`, `float | activation`: how list shows types."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin is Annotated:
        return _type_text(args[0])
    if origin in (Union, UnionType):
        return " | ".join(_type_text(a) for a in args)
    if isinstance(annotation, list):  # Callable's parameters
        return f"[{', '.join(_type_text(a) for a in annotation)}]"
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_text(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def label(kind: str, spec: ComponentSpec) -> str:
    """`sgd(lr=0.1, momentum=0.9)`: the name and the parameters that differ from defaults."""
    fields = get(kind, spec.name).params.model_fields
    changed = [(k, v) for k, v in spec.params
               if k not in fields or fields[k].is_required() or _plain_default(fields[k]) != v]
    return ComponentSpec(spec.name, tuple(changed)).label()


def _plain_default(f: FieldInfo) -> Any:
    """A field's default as its values are stored (JSON form, frozen)."""
    try:
        return _freeze(to_jsonable_python(f.default))
    except PydanticSerializationError:
        return _freeze(f.default)


def resolve(kind: str, value: Any) -> ComponentSpec:
    """Validate a suite value (`"relu"` or `{"name": "leaky_relu", "negative_slope": 0.1}`).

    Raises ComponentError whose problems name the key below the value, what was
    given and what is allowed.
    """
    if isinstance(value, ComponentSpec):
        value = value.to_dict()
    if isinstance(value, str):
        name, raw_params = value, {}
    elif isinstance(value, Mapping):
        if "name" not in value:
            known = ", ".join(i.name for i in list_components(kind))
            raise ComponentError([("", f"{article(kind)} given as a mapping needs a 'name' key "
                                       f"({known}), got keys {sorted(map(str, value))}")])
        name = value["name"]
        if not isinstance(name, str):
            known = ", ".join(i.name for i in list_components(kind))
            raise ComponentError([("name", f"expected {article(kind)} name ({known}), "
                                           f"got {describe(name)}")])
        raw_params = {k: v for k, v in value.items() if k != "name"}
    else:
        known = ", ".join(i.name for i in list_components(kind))
        raise ComponentError([("", f"expected {article(kind)} name ({known}) or a mapping with "
                                   f"'name', got {describe(value)}")])
    info = get(kind, name)
    try:
        params = info.params.model_validate(raw_params)
    except ValidationError as err:
        raise ComponentError(pydantic_problems(
            err, what=f"{kind} '{name}'", allowed=list(info.params.model_fields))) from None
    except Exception as err:  # a validator raising what pydantic does not wrap (TypeError)
        from nnbench.plugins import describe_error

        raise ComponentError([("", f"{kind} '{name}' ({_who(info.source)}): its params model "
                                   f"{info.params.__name__} failed on {describe(raw_params)}: "
                                   f"{describe_error(err)}")]) from None
    plain, problems = plain_params(info.params, params)
    if problems:
        raise ComponentError([(key, f"{kind} '{name}': "
                                    f"{f'parameter {key!r}' if key else 'its parameters'} "
                                    f"cannot enter the trial_id: {why}; allowed parameter "
                                    f"types: {PARAM_TYPES}") for key, why in problems])
    return ComponentSpec(name, _freeze(plain))


def build(kind: str, spec: ComponentSpec, **context: Any) -> Any:
    """Build the component a spec names: `info.build(params, **context)`."""
    info = get(kind, spec.name)
    return info.build(info.params.model_validate(spec.kwargs), **context)


def load_builtins() -> None:
    """Register nnbench's own components (importing their modules registers them)."""
    import nnbench.components
    import nnbench.data
    import nnbench.models  # noqa: F401


def _ensure_loaded() -> None:
    # Importing the component modules here keeps `get()` usable from anywhere without
    # import-order surprises. Then the installed packages' entry points (group
    # `nnbench.components`), loaded once; a broken one raises PluginError every time.
    try:
        load_builtins()
    except Exception:
        from nnbench.transient import interrupted

        if interrupted():  # Ctrl-C swallowed mid-import (by C code) left a module half
            raise KeyboardInterrupt from None  # made: a RecursionError, not the suite's
        raise
    from nnbench import plugins

    plugins.load_entry_points()
