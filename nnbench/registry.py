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
`Params` model that validates its example with JSON-plain values, the attrs the kind
needs) and records its `source`, "nnbench" for built-ins, else the plugin module.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from nnbench.messages import describe, did_you_mean, pydantic_problems

__all__ = [
    "KINDS",
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


class Params(BaseModel):
    """Base of every component's parameter model: unknown keys are errors, values frozen.

    Non-finite numbers (.inf, .nan) are rejected unless a field allows them
    (`Field(allow_inf_nan=True)`, e.g. clip's norm_type).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


def _freeze(value: Any) -> Any:
    """Lists become tuples so a spec is hashable and canonical."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


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
    if not isinstance(info.name, str) or not NAME_PATTERN.match(info.name):
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
        try:
            values = info.params.model_validate(dict(info.example)).model_dump()
            json.dumps(values, allow_nan=False)
        except ValidationError as err:
            problems.append(f"{what}: its params model {info.params.__name__} rejects its example "
                            f"{dict(info.example)!r} (required parameters need example values): "
                            f"{_first_error(err)}")
        except (TypeError, ValueError) as err:
            problems.append(f"{what}: the values of its params model {info.params.__name__} "
                            f"must be plain JSON (numbers, strings, booleans, lists) to enter "
                            f"the trial_id: {err}")
    missing = [a for a in REQUIRED_ATTRS.get(info.kind, ()) if a not in info.attrs]
    if missing:
        problems.append(f"{what}: a {info.kind} needs attrs {', '.join(missing)}")
    return problems


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


def register(info: ComponentInfo) -> ComponentInfo:
    """Add a component, recording its source (nnbench, or the plugin being loaded).

    Raises RegistrationError for an invalid component or a name already taken.
    """
    problems = registration_problems(info)
    if problems:
        raise RegistrationError("; ".join(problems))
    source = info.source or (_LOADING[-1][0] if _LOADING else _caller_source())
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
               if k not in fields or fields[k].is_required() or _freeze(fields[k].default) != v]
    return ComponentSpec(spec.name, tuple(changed)).label()


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
            raise ComponentError([("", f"a {kind} given as a mapping needs a 'name' key "
                                       f"({known}), got keys {sorted(map(str, value))}")])
        name = value["name"]
        if not isinstance(name, str):
            known = ", ".join(i.name for i in list_components(kind))
            raise ComponentError([("name", f"expected a {kind} name ({known}), "
                                           f"got {describe(name)}")])
        raw_params = {k: v for k, v in value.items() if k != "name"}
    else:
        known = ", ".join(i.name for i in list_components(kind))
        raise ComponentError([("", f"expected a {kind} name ({known}) or a mapping with "
                                   f"'name', got {describe(value)}")])
    info = get(kind, name)
    try:
        params = info.params.model_validate(raw_params)
    except ValidationError as err:
        raise ComponentError(pydantic_problems(
            err, what=f"{kind} '{name}'", allowed=list(info.params.model_fields))) from None
    return ComponentSpec(name, _freeze(params.model_dump()))


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
    load_builtins()
    from nnbench import plugins

    plugins.load_entry_points()
