"""Datasets (registry kind "dataset"): build(params, seed=..., device=...) -> TensorData.

Every dataset ends as tensors on the training device with a seeded split; the
trainer indexes batches there. Raw arrays are generated or loaded once per process
and cached. A dataset whose targets or input depend on its parameters (`file`) also
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
  once per content; it raises FileNotFoundError naming the files expected when they are
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

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from nnbench import registry, seeding
from nnbench.data.checks import DataError, Source, check_arrays
from nnbench.registry import ComponentSpec, Params

__all__ = ["DataError", "DataShape", "HeldOutParams", "Source", "SplitParams", "SplitSizes",
           "TensorData", "dataset_attrs", "shape_of", "split", "split_sizes"]

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
    """A dataset on the training device, split three ways."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    targets: Targets
    num_classes: int  # 0 for real-valued targets

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def target_dim(self) -> int:
        """Real-valued targets per example (1 for class labels)."""
        return 1 if self.targets == "class" else int(self.y_train.shape[1])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def to(self, device: torch.device) -> TensorData:
        return replace(self, **{k: getattr(self, k).to(device) for k in
                                ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")})


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
            raise ValueError(f"val_fraction={params.val_fraction} of the {pool} examples left "
                             f"for train and validation gives {n_val} validation and "
                             f"{pool - n_val} training examples; both must be at least 1 "
                             f"(use a val_fraction between {1 / pool:.3g} and "
                             f"{1 - 1 / pool:.3g})")
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
    x_all = torch.as_tensor(x, dtype=torch.float32)
    y_all = torch.as_tensor(y, dtype=torch.int64 if targets == "class" else torch.float32)
    if targets == "real" and y_all.dim() == 1:
        y_all = y_all[:, None]
    held_out = x_test is None or y_test is None
    sizes = split_sizes(DataShape(examples=len(y_all),
                                  test=None if y_test is None or held_out else len(y_test),
                                  input_shape=tuple(x_all.shape[1:]), targets=targets,
                                  num_classes=num_classes), params)
    if held_out:
        order = torch.randperm(len(y_all), generator=seeding.generator(seed, "test_split"))
        test, rest = order[:sizes.test], order[sizes.test:]
        xt, yt, x_all, y_all = x_all[test], y_all[test], x_all[rest], y_all[rest]
    else:
        xt = torch.as_tensor(x_test, dtype=torch.float32)
        yt = torch.as_tensor(y_test, dtype=y_all.dtype)
        if targets == "real" and yt.dim() == 1:
            yt = yt[:, None]
    if params.folds:
        from sklearn.model_selection import KFold  # only cross-validation needs sklearn

        folds = KFold(params.folds, shuffle=True, random_state=seeding.derive_seed(seed, "folds")
                      % (1 << 32))
        train_idx, val_idx = list(folds.split(np.arange(len(y_all))))[params.fold]
        train, val = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    else:
        order = torch.randperm(len(y_all), generator=seeding.generator(seed, "split"))
        val, train = order[:sizes.val], order[sizes.val:]
    xs = [x_all[train], x_all[val], xt]
    if params.standardize:
        mean, std = xs[0].mean(dim=0), xs[0].std(dim=0).clamp_min(1e-8)
        xs = [(v - mean) / std for v in xs]
    return TensorData(x_train=xs[0], y_train=y_all[train], x_val=xs[1], y_val=y_all[val],
                      x_test=xs[2], y_test=yt, targets=targets,
                      num_classes=num_classes).to(device)


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
