"""Datasets (registry kind "dataset"): build(params, seed=..., device=...) -> TensorData.

Every dataset ends as tensors on the training device with a seeded split; the
trainer indexes batches there. Raw arrays are generated or loaded once per process
and cached; on the device the examples are held once, and a split is index tensors
into them (`TensorData`). A dataset whose targets or input depend on its parameters (`file`) also
declares `attrs["attrs_for"](params) -> {targets, input}`; `dataset_attrs(spec)` answers
for both kinds ("signal" inputs may be (L,) or (C, L)).

The dataset contract: what a new dataset registers
---------------------------------------------------
A dataset is a `ComponentInfo(kind="dataset", ...)` whose

- `params` subclass `SplitParams` (official test split) or `HeldOutParams` (a seeded
  `test_fraction` is held out), adding the dataset's own parameters;
- `build(params, seed=..., device=...)` returns `split(x, y, params, ...)`'s
  `TensorData` (so every dataset splits the same, seeded way, and its arrays pass the
  data checks of `nnbench.data.checks`: finite, labels in range, no empty split);
- `attrs["source"]` (optional, recommended) is a function of the validated params
  returning a `checks.Source` without loading the data: where the data comes from (for
  messages), the names of its arrays, and a key naming its content, so the checks run
  once per content and the examples are held once per device (`held`): the key must
  name exactly the arrays passed to `split()` (every parameter that changes them); it
  raises FileNotFoundError naming the files expected when they are
  missing (`nnbench validate` calls it). Pass the same `source=` to `split()`;
- `attrs["targets"]` is "class" (integer labels) or "real" (float values);
  `attrs["input"]` is "vector" (F,), "image" (C, H, W) or "signal" (L,);
- `attrs["shape"]` is a function of the validated params returning a `DataShape`:
  examples before the split (`examples`: the pool the train/val split is drawn from
  when `test` is given, else everything, of which `test_fraction` is held out), the
  official test size (`test`, None when held out), the per-example `input_shape`,
  `targets`, `num_classes` (0 for real targets) and `target_dim`. It must be cheap
  and must not generate or load the data: `nnbench validate` calls it for every
  configuration (the dry build), and `split_sizes(shape, params)` turns it into the
  exact train/val/test sizes `split()` will produce. A dataset whose sizes are only
  known from its files may read them from the files' headers, never the data.

tests/data/test_datasets.py checks every registered dataset's `shape` against what its
`build` returns, so a new dataset is held to the contract automatically.
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from nnbench import registry, seeding
from nnbench.data.checks import DataError, Source, check_arrays
from nnbench.registry import ComponentSpec, Params

__all__ = ["DataError", "DataShape", "HeldOutParams", "Joined", "Source", "SplitParams",
           "SplitSizes", "TensorData", "dataset_attrs", "held", "join", "shape_of", "split",
           "split_sizes"]

Targets = Literal["class", "real"]


@dataclass(frozen=True)
class DataShape:
    """What a dataset holds, without its data (`attrs["shape"](params)`)."""

    examples: int  # before the split: the train+val pool, or everything when test is None
    test: int | None  # official test examples; None: held out with test_fraction
    input_shape: tuple[int, ...]  # one example: (F,), (L,) or (C, H, W)
    targets: Targets
    num_classes: int  # 0 for real-valued targets
    target_dim: int = 1  # real values per example (1 for class labels)


@dataclass(frozen=True)
class SplitSizes:
    train: int
    val: int
    test: int


@dataclass(frozen=True)
class TensorData:
    """A dataset on the training device, split three ways by index.

    The examples (`x`, `y`: every example of the dataset, its official test split after
    the rest) are held once per device: every split seed of a dataset built on the same
    device shares them (`split` keeps them while any split uses them), given a content
    key (`Source.key`) or arrays the dataset keeps between builds. A split is a tensor
    of row numbers into them, so a group of lanes with different split seeds holds the
    data once and its splits as index tensors. `standardize` is a per-split affine map
    (`shift`, `scale`: the training split's statistics), applied to the rows as they are
    read: the same elementwise ops as scaling the split in advance, so the same numbers.

    `x_train`, `y_train`, ... are the splits made whole (a copy): for checks, fitting and
    exporting; training reads batches with `inputs(rows)` and `y[rows]`.
    """

    x: torch.Tensor
    y: torch.Tensor
    train: torch.Tensor  # int64 rows of x/y
    val: torch.Tensor
    test: torch.Tensor
    targets: Targets
    num_classes: int  # 0 for real-valued targets
    shift: torch.Tensor | None = None  # standardize: (x - shift) / scale, of input_shape
    scale: torch.Tensor | None = None

    @classmethod
    def of(cls, *, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
           y_val: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, targets: Targets,
           num_classes: int) -> TensorData:
        """A TensorData of three given splits (their rows, one after another)."""
        sizes = [len(y_train), len(y_val), len(y_test)]
        train, val, test = torch.split(torch.arange(sum(sizes), device=x_train.device), sizes)
        return cls(torch.cat([x_train, x_val, x_test]), torch.cat([y_train, y_val, y_test]),
                   train, val, test, targets=targets, num_classes=num_classes)

    def inputs(self, rows: torch.Tensor) -> torch.Tensor:
        """The examples at `rows` (any shape of row numbers), standardized if asked."""
        x = self.x[rows]
        if self.shift is not None and self.scale is not None:
            x = (x - self.shift) / self.scale
        return x

    @property
    def x_train(self) -> torch.Tensor:
        return self.inputs(self.train)

    @property
    def y_train(self) -> torch.Tensor:
        return self.y[self.train]

    @property
    def x_val(self) -> torch.Tensor:
        return self.inputs(self.val)

    @property
    def y_val(self) -> torch.Tensor:
        return self.y[self.val]

    @property
    def x_test(self) -> torch.Tensor:
        return self.inputs(self.test)

    @property
    def y_test(self) -> torch.Tensor:
        return self.y[self.test]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def target_dim(self) -> int:
        """Real-valued targets per example (1 for class labels)."""
        return 1 if self.targets == "class" else int(self.y.shape[1])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def to(self, device: torch.device) -> TensorData:
        moved = {k: getattr(self, k).to(device) for k in ("x", "y", "train", "val", "test")}
        if self.shift is not None and self.scale is not None:
            moved.update(shift=self.shift.to(device), scale=self.scale.to(device))
        return replace(self, **moved)


@dataclass(frozen=True)
class Joined:
    """Several splits of one dataset as one (the stacked engine's lanes): the examples
    once, each split's rows as a row of `train`/`val`/`test` ([splits, n])."""

    x: torch.Tensor
    y: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    shift: torch.Tensor | None  # [splits, *input_shape], or None without standardize
    scale: torch.Tensor | None


def join(datas: Sequence[TensorData]) -> Joined:
    """`datas` (same sizes) over one copy of their examples: those they share are held
    once (the usual case: `split` shares them); others are appended, rows offset."""
    bases: list[TensorData] = []  # the distinct copies of the examples
    offsets: list[int] = []  # each of `datas`: where its copy starts in the joined rows
    for data in datas:
        base = next((i for i, b in enumerate(bases) if data.x is b.x and data.y is b.y), None)
        if base is None:
            base = len(bases)
            bases.append(data)
        offsets.append(sum(len(b.y) for b in bases[:base]))
    x = bases[0].x if len(bases) == 1 else torch.cat([b.x for b in bases])
    y = bases[0].y if len(bases) == 1 else torch.cat([b.y for b in bases])

    def rows(name: str) -> torch.Tensor:
        return torch.stack([getattr(d, name) + offset for d, offset in zip(datas, offsets,
                                                                           strict=True)])

    scaled = [d for d in datas if d.shift is not None and d.scale is not None]
    if scaled and len(scaled) != len(datas):
        raise ValueError("splits to join must all be standardized, or none")
    shift = torch.stack([d.shift for d in datas]) if scaled else None  # type: ignore[misc]
    scale = torch.stack([d.scale for d in datas]) if scaled else None  # type: ignore[misc]
    return Joined(x, y, rows("train"), rows("val"), rows("test"), shift, scale)


_HELD: weakref.WeakValueDictionary[tuple[Any, ...], torch.Tensor] = \
    weakref.WeakValueDictionary()
_RECENT: collections.deque[torch.Tensor] = collections.deque(maxlen=2)  # x, y between trials
_HELD_LOCK = threading.Lock()


def _address(a: np.ndarray | torch.Tensor) -> tuple[Any, ...]:
    if isinstance(a, torch.Tensor):
        return ("tensor", a.data_ptr(), tuple(a.shape), a.stride(), str(a.dtype), str(a.device))
    return ("array", a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)


def _native_order(a: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """A big-endian array (`>f4`, as some tools save) in this machine's byte order: torch
    takes no other ("given numpy array has byte order different from the native")."""
    if isinstance(a, np.ndarray) and not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a


def held(arrays: Sequence[np.ndarray | torch.Tensor], dtype: torch.dtype,
         device: torch.device, content: str | None = None) -> torch.Tensor:
    """`arrays` as one tensor of `dtype` on `device`, made once while it is in use.

    `content`: a key naming what the arrays hold (a dataset's `Source.key`), so arrays a
    dataset makes anew at every build still give the same tensor. Without one the arrays'
    memory is the key (datasets keep their arrays), and the tensor keeps the arrays alive
    so that memory cannot be reused under the key while it is held. Either way the tensor
    is a copy made when it was first asked for: arrays changed in place afterwards are not
    seen while it is held (datasets' arrays are read-only by contract)."""
    shapes = tuple((tuple(a.shape), str(a.dtype)) for a in arrays)
    where = ("content", content) if content is not None else tuple(_address(a) for a in arrays)
    key = (where, shapes, str(dtype), str(device))
    with _HELD_LOCK:
        found = _HELD.get(key)
        if found is not None:
            return found
    parts = [torch.as_tensor(_native_order(a), dtype=dtype) for a in arrays]
    tensor = (parts[0] if len(parts) == 1 else torch.cat(parts)).to(device)
    if any(tensor.data_ptr() == _address(a)[1] for a in arrays):
        tensor = tensor.clone()  # never the caller's own memory (it may change it)
    if content is None:
        tensor._nnbench_sources = tuple(arrays)  # type: ignore[attr-defined]
    with _HELD_LOCK:
        tensor = _HELD.setdefault(key, tensor)
        _RECENT.append(tensor)
    return tensor


class SplitParams(Params):
    """How the examples are divided; shared by every dataset."""

    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out, seeded")
    folds: int = Field(0, ge=0, description="k-fold cross-validation: k > 1 replaces "
                                           "val_fraction; 0 = off")
    fold: int = Field(0, ge=0, description="which of the k folds is the validation split")
    standardize: bool = Field(False, description="scale inputs to mean 0, sd 1 with train "
                                                 "statistics")

    @model_validator(mode="after")
    def _fold_in_range(self) -> SplitParams:
        if self.folds == 1:
            raise ValueError("folds must be 0 (off) or at least 2")
        if self.folds and self.fold >= self.folds:
            raise ValueError(f"fold must be < folds, got fold={self.fold}, folds={self.folds}")
        if not self.folds and self.fold:
            raise ValueError("fold is set but folds is 0 (cross-validation off)")
        return self


DEFAULT_TEST_FRACTION = 0.2  # share of a dataset without a test split held out as test


class HeldOutParams(SplitParams):
    """For datasets without an official test split: a seeded test split too."""

    test_fraction: float = Field(DEFAULT_TEST_FRACTION, gt=0, lt=1,
                                 description="share held out as test, seeded")


def split_sizes(shape: DataShape, params: SplitParams) -> SplitSizes:
    """The train/val/test sizes `split()` produces for these params; ValueError when a
    split would be empty (what `split()` itself would raise, or train on)."""
    n = shape.examples
    if shape.test is None:
        if not hasattr(params, "test_fraction"):
            raise ValueError("a dataset without an official test split needs test_fraction")
        # a file dataset leaves test_fraction unset when its file has a test split
        test_fraction = params.test_fraction or DEFAULT_TEST_FRACTION
        n_test = round(n * test_fraction)
        if not 0 < n_test < n:
            raise ValueError(f"test_fraction={test_fraction} of {n} examples leaves "
                             f"{n_test} test examples and {n - n_test} for train and "
                             f"validation; both must be at least 1")
        pool = n - n_test
    else:
        n_test, pool = shape.test, n
    if params.folds:
        if params.folds > pool:
            raise ValueError(f"folds={params.folds} is more than the {pool} examples left "
                             f"for train and validation; use at most {pool} folds")
        # KFold's sizes: the first (pool % folds) folds hold one example more
        n_val = pool // params.folds + (1 if params.fold < pool % params.folds else 0)
    else:
        n_val = round(pool * params.val_fraction)
        if not 0 < n_val < pool:
            allowed = ("too few to split: give the dataset more examples" if pool < 2 else
                       "use val_fraction 0.5" if pool == 2 else
                       f"use a val_fraction between {1 / pool:.3g} and {1 - 1 / pool:.3g}")
            raise ValueError(f"val_fraction={params.val_fraction} of the {pool} examples left "
                             f"for train and validation gives {n_val} validation and "
                             f"{pool - n_val} training examples; both must be at least 1 "
                             f"({allowed})")
    if params.standardize and pool - n_val < 2:  # one example's sd: nan, every trial diverged
        raise ValueError(f"standardize: true needs at least 2 training examples for a "
                         f"standard deviation, and the split leaves {pool - n_val}; give the "
                         f"dataset more examples, or standardize: false")
    return SplitSizes(train=pool - n_val, val=n_val, test=n_test)


def shape_of(spec_name: str, params: Params) -> DataShape:
    """A registered dataset's `DataShape` for validated params (no data touched)."""
    from nnbench.registry import get

    shape: DataShape = get("dataset", spec_name).attrs["shape"](params)
    return shape


def split(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, params: SplitParams, *,
          seed: int, device: torch.device, targets: Targets, num_classes: int = 0,
          x_test: np.ndarray | torch.Tensor | None = None,
          y_test: np.ndarray | torch.Tensor | None = None,
          source: Source | None = None) -> TensorData:
    """Seeded train/val(/test) split of (x, y); the official test split is kept when given.

    The arrays are checked first (`nnbench.data.checks`: empty or mismatched splits,
    non-finite values, labels outside 0..num_classes-1), once per `source.key`; a problem
    raises DataError naming `source.where`, the array, and the first bad index and value.
    """
    check_arrays(source, x=x, y=y, x_test=x_test, y_test=y_test, targets=targets,
                 num_classes=num_classes)

    def array(a: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        return a if isinstance(a, torch.Tensor | np.ndarray) else np.asarray(a)

    xs = [array(x)] if x_test is None or y_test is None else [array(x), array(x_test)]
    ys = [array(y)] if len(xs) == 1 else [array(y), array(y_test)]  # type: ignore[arg-type]
    held_out = len(xs) == 1
    y_dtype = torch.int64 if targets == "class" else torch.float32
    pool = len(ys[0])
    sizes = split_sizes(DataShape(examples=pool, test=None if held_out else len(ys[1]),
                                  input_shape=tuple(xs[0].shape[1:]), targets=targets,
                                  num_classes=num_classes), params)
    content = None if source is None or source.key is None else source.key
    x_all = held(xs, torch.float32, device, None if content is None else f"{content}:x")
    if targets == "real":  # (N,) -> (N, 1): real targets are columns
        ys = [a.reshape(len(a), -1) if a.ndim == 1 else a for a in ys]
    y_all = held(ys, y_dtype, device, None if content is None else f"{content}:y")
    if held_out:
        order = torch.randperm(pool, generator=seeding.generator(seed, "test_split"))
        test, rest = order[:sizes.test], order[sizes.test:]
    else:
        test, rest = torch.arange(pool, pool + sizes.test), torch.arange(pool)
    if params.folds:
        from sklearn.model_selection import KFold  # only cross-validation needs sklearn

        folds = KFold(params.folds, shuffle=True, random_state=seeding.derive_seed(seed, "folds")
                      % (1 << 32))
        train_idx, val_idx = list(folds.split(np.arange(len(rest))))[params.fold]
        train, val = rest[torch.as_tensor(train_idx)], rest[torch.as_tensor(val_idx)]
    else:
        order = torch.randperm(len(rest), generator=seeding.generator(seed, "split"))
        val, train = rest[order[:sizes.val]], rest[order[sizes.val:]]
    shift = scale = None
    if params.standardize:  # the training split's statistics, computed on the host
        x_train = torch.as_tensor(_native_order(x), dtype=torch.float32)[train]
        shift, scale = x_train.mean(dim=0), x_train.std(dim=0).clamp_min(1e-8)
        shift, scale = shift.to(device), scale.to(device)
    return TensorData(x_all, y_all, train.to(device), val.to(device), test.to(device),
                      targets=targets, num_classes=num_classes, shift=shift, scale=scale)


def dataset_attrs(spec: ComponentSpec) -> dict[str, str]:
    """`targets` and `input` of a dataset value, for its parameters (no data loaded)."""
    info = registry.get("dataset", spec.name)
    attrs = {"targets": info.attrs["targets"], "input": info.attrs["input"]}
    attrs_for = info.attrs.get("attrs_for")
    if attrs_for is not None:
        attrs.update(attrs_for(info.params.model_validate(spec.kwargs)))
    return attrs


from nnbench.data import embedded, files, vision  # noqa: E402  (registers the datasets)

__all__ += ["embedded", "files", "vision"]
