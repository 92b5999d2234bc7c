"""Data checks: what every dataset's arrays must satisfy before any trial trains.

`split()` (nnbench.data) passes every dataset's raw arrays through `check_arrays`, so the
`file` dataset, the built-in ones, torchvision's and a plugin's are held to one rule set:

- every split has at least one example, and its inputs and targets one row each;
- inputs, and real-valued targets, are finite numbers within float32's range (training
  computes in float32: a float64 1e300 would become inf);
- class labels are whole numbers in 0..num_classes-1.

A problem raises `DataError` naming where the data came from (the file), the array, how
many values are wrong and the first one (its index and value), and what to do. Bad data
is never trained on: a NaN input would make the loss NaN, and the trial would be recorded
as "diverged", blaming the configuration for the data.

Checking is one pass over the data, paid once per content: a dataset that says where its
arrays come from (`attrs["source"](params) -> Source`, cheap, without loading them) gives
a `key` naming the content (the file's SHA-256 for `file`; the files' sizes and times for
torchvision's; parameters and package versions for generated ones). A passed check leaves
an empty marker under `$NNBENCH_CACHE/checks/`; later checks of that key, in this process or
any other, cost a `stat`, and `check_dataset` (the command line's pre-flight and `validate`)
skips loading the data altogether.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnbench import registry
from nnbench.data.cache import cache_dir
from nnbench.fresh import write_atomic
from nnbench.registry import ComponentSpec

__all__ = ["DataError", "Source", "as_numpy", "check_arrays", "check_class_labels", "check_dataset",
           "is_checked", "source_key"]

CHECKS_VERSION = 2  # part of every key: new rules re-check data that passed the old ones
FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataError(ValueError):
    """The data cannot be trained on: the message names the file, the array, the first
    offending index and value, and what to do."""


@dataclass(frozen=True)
class Source:
    """Where a dataset's arrays come from: for messages and the check's cache."""

    where: str  # what the user knows the data as: a file's path, "dataset 'mnist1d'"
    names: Mapping[str, str] = field(default_factory=dict)  # x, y, x_test, y_test -> shown
    key: str | None = None  # names the content checked; None: checked every time

    def name(self, role: str) -> str:
        return self.names.get(role, role)


# -- the checks ----------------------------------------------------------------------------------

def check_arrays(source: Source | None, *, x: Any, y: Any, x_test: Any = None,
                 y_test: Any = None, targets: str, num_classes: int = 0) -> None:
    """Raise DataError on the first problem of a dataset's arrays (numpy or torch), before
    the split; do nothing when `source.key` passed before."""
    if source is not None and source.key is not None and is_checked(source.key):
        return
    src = source or Source("the dataset's arrays")
    pairs = [("x", "y", x, y)]
    if x_test is not None and y_test is not None:
        pairs.append(("x_test", "y_test", x_test, y_test))
    for x_role, y_role, xs, ys in pairs:
        xa, ya = as_numpy(xs), as_numpy(ys)
        x_name, y_name = src.name(x_role), src.name(y_role)
        for name, array in ((x_name, xa), (y_name, ya)):
            if array.ndim == 0 or len(array) == 0:
                raise DataError(f"{src.where}: array {name!r} is empty (shape {array.shape}); "
                                f"every split needs at least one example")
        if len(xa) != len(ya):
            raise DataError(f"{src.where}: array {x_name!r} has {len(xa)} examples but "
                            f"{y_name!r} has {len(ya)}; one target per example")
        _check_finite(src.where, x_name, xa, "inputs")
        if targets == "class":
            check_class_labels(src.where, y_name, ya, num_classes or None)
        else:
            _check_finite(src.where, y_name, ya, "real targets")
            _check_squares(src.where, y_name, ya)
    if source is not None and source.key is not None:
        _mark_checked(source.key)


def check_class_labels(where: str, name: str, y: np.ndarray, num_classes: int | None) -> None:
    """Class labels: whole numbers in 0..num_classes-1 (only >= 0 when num_classes is None,
    i.e. taken from the largest label)."""
    if y.dtype.kind == "b":
        return
    if y.dtype.kind not in "iuf":
        raise DataError(f"{where}: array {name!r} has dtype {y.dtype}; class labels are "
                        f"integers 0..k-1")
    if y.dtype.kind == "f":
        _first_bad(where, name, ~np.isfinite(y), y, "non-finite labels",
                   "class labels are whole numbers 0..k-1; drop those examples")
        _first_bad(where, name, np.mod(y, 1) != 0, y, "labels that are not whole numbers",
                   "class labels must be integers 0..k-1; for real values set targets: real")
    lo, hi = y.min(), y.max()
    top = f"{num_classes - 1}" if num_classes is not None else "k-1"
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        bad = (y < 0) | (y >= num_classes) if num_classes is not None else y < 0
        given = f" (num_classes={num_classes})" if num_classes is not None else ""
        advice = ("class labels are 0..num_classes-1: relabel them, or raise num_classes"
                  if num_classes is not None else
                  "class labels start at 0: relabel them, e.g. y - y.min()")
        _first_bad(where, name, bad, y, f"labels outside 0..{top}{given}", advice)


def _check_finite(where: str, name: str, a: np.ndarray, what: str) -> None:
    if a.dtype.kind != "f":  # integers and booleans are always finite
        return
    # NaN propagates through both: two passes, no temporaries; compared as Python floats
    # (float16's own comparison with float32's range overflowed, with a warning)
    lo, hi = float(a.min()), float(a.max())
    if math.isfinite(lo) and math.isfinite(hi) and lo >= -FLOAT32_MAX and hi <= FLOAT32_MAX:
        return
    _first_bad(where, name, ~np.isfinite(a), a, "non-finite values",
               f"{what} must be finite numbers (a NaN or an infinity makes the loss NaN, "
               f"and the trial would be blamed for the data); drop or impute those rows")
    if a.dtype.itemsize <= 4:  # finite float32 (or narrower) values are within its range
        return
    _first_bad(where, name, np.abs(a) > FLOAT32_MAX, a, "values beyond float32's range "
               f"(±{FLOAT32_MAX:.3g})", "training computes in float32, where they become "
               "infinite; rescale the data")


SQUARE_MAX = math.sqrt(FLOAT32_MAX)  # about 1.84e19: a larger value's square is inf


def _check_squares(where: str, name: str, y: np.ndarray) -> None:
    """Real targets whose squares overflow float32: every trial diverged (inf loss) and the
    run blamed the trials; found with one pass when none is that large."""
    if y.dtype.kind not in "iuf" or max(abs(float(y.min())), abs(float(y.max()))) <= SQUARE_MAX:
        return
    _first_bad(where, name, np.abs(y.astype(np.float64)) > SQUARE_MAX, y,
               f"targets beyond ±{SQUARE_MAX:.3g}, whose squares overflow float32",
               "a squared-error loss on them is infinite and every trial would diverge; "
               "rescale the targets (e.g. divide by their standard deviation)")


def _first_bad(where: str, name: str, bad: np.ndarray, a: np.ndarray, what: str,
               advice: str) -> None:
    count = int(np.count_nonzero(bad))
    if not count:
        return
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
    at = ", ".join(str(i) for i in index)
    value = a[index]
    shown = f"{float(value):g}" if a.dtype.kind == "f" else str(value)
    raise DataError(f"{where}: array {name!r} holds {what} ({count} of {bad.size}); the "
                    f"first is {name}[{at}] = {shown}; {advice}")


def as_numpy(a: Any) -> np.ndarray:
    """An array or tensor as a numpy array (bfloat16 and float16 tensors as float32:
    bfloat16 has no numpy twin)."""
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()
    return np.asarray(a)


# -- once per content --------------------------------------------------------------------------

_CHECKED: set[str] = set()  # keys passed in this process


def _marker(key: str) -> Path:
    digest = hashlib.sha256(f"{CHECKS_VERSION}:{key}".encode()).hexdigest()[:32]
    return cache_dir() / "checks" / digest


def is_checked(key: str) -> bool:
    """Whether data with this key passed the checks, here or in an earlier process."""
    if key in _CHECKED:
        return True
    if _marker(key).is_file():
        _CHECKED.add(key)
        return True
    return False


def _mark_checked(key: str) -> None:
    """Remember a passed check; a cache that cannot be written costs only a re-check."""
    _CHECKED.add(key)
    with contextlib.suppress(OSError):
        write_atomic(_marker(key), key)  # what was checked, for whoever looks


def source_key(*parts: Any) -> str:
    """A key from plain values (JSON, sorted), for `Source.key`."""
    return json.dumps(parts, sort_keys=True, default=str)


# -- a dataset, as the command line checks it --------------------------------------------------

def check_dataset(spec: ComponentSpec, *, seed: int, load: bool = True) -> None:
    """Raise when a dataset would be refused: missing files (FileNotFoundError, with the
    paths expected), unreadable files or bad data (DataError).

    Data whose key passed before is not loaded at all. Otherwise `load=True` (before
    `run`, `tune`, `worker`, `bench`, `submit`) builds the dataset, which checks it on its
    way through `split()`; `load=False` (`validate`, which must stay light) checks the
    content only of datasets that read the user's files with numpy or torch
    (`attrs["check"](params)`), and only the files' presence for the others."""
    info = registry.get("dataset", spec.name)
    params = info.params.model_validate(spec.kwargs)
    source_of: Callable[[Any], Source] | None = info.attrs.get("source")
    source = source_of(params) if source_of is not None else None
    declared = info.attrs["shape"](params)
    # a build checks the arrays and marks their key; the declared shape is marked apart
    as_declared = None if source is None or source.key is None else \
        f"{source.key}:declared {declared}"
    if as_declared is not None and is_checked(as_declared):
        return
    if not load:
        check: Callable[[Any], None] | None = info.attrs.get("check")
        if check is not None:
            check(params)
        return
    data = registry.build("dataset", spec, seed=seed, device=torch.device("cpu"))
    problem = declared_shape_problem(info, params, declared, data)
    if problem is not None:
        raise DataError(f"dataset {spec.name!r}: {problem}; validate checked the suite "
                        f"against the declared shape: make attrs['shape'] describe what the "
                        f"build returns")
    if as_declared is not None:
        _mark_checked(as_declared)


def declared_shape_problem(info: Any, params: Any, declared: Any, data: Any) -> str | None:
    """How a built dataset differs from its declared shape (`attrs["shape"]`: what
    validate's dry build, its size checks and the batch-size warnings are computed from), or
    None: input shape, targets, classes, target dim, and the split's sizes as planned from
    the shape (`split_sizes`; but for datasets with `official_sizes`, torchvision's, whose
    files may hold fewer). A plugin declaring 200 examples of (2,) and building 50 of (3,)
    trained on data nothing had checked."""
    from nnbench.data import split_sizes

    built = (tuple(data.input_shape), data.targets, data.num_classes, data.target_dim)
    said = (tuple(declared.input_shape), declared.targets, declared.num_classes,
            declared.target_dim)
    if said != built:
        return (f"attrs['shape'] says input {said[0]}, {said[1]} targets, {said[2]} classes, "
                f"dim {said[3]}, but it builds input {built[0]}, {built[1]} targets, "
                f"{built[2]} classes, dim {built[3]}")
    if info.attrs.get("official_sizes"):
        return None
    planned = split_sizes(declared, params)
    sizes = data.sizes()
    if (planned.train, planned.val, planned.test) != tuple(sizes.values()):
        return (f"attrs['shape'] plans splits of train {planned.train}, val {planned.val}, "
                f"test {planned.test}, but it builds train {sizes['train']}, val "
                f"{sizes['val']}, test {sizes['test']}")
    return None
