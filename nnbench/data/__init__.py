"""Datasets (registry kind "dataset"): build(params, seed=..., device=...) -> TensorData.

Every dataset ends as tensors on the training device with a seeded split; the
trainer indexes batches there. Raw arrays are generated or loaded once per process
and cached. A dataset's `attrs` say what it holds: `targets` ("class" labels or
"real" values) and `input` ("vector", "image" (C, H, W) or "signal" (L,) / (C, L)).
A dataset whose targets or input depend on its parameters (`file`) also declares
`attrs["attrs_for"](params) -> {targets, input}`; `dataset_attrs(spec)` answers both kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from sklearn.model_selection import KFold

from nnbench import registry, seeding
from nnbench.registry import ComponentSpec, Params

__all__ = ["SplitParams", "TensorData", "dataset_attrs", "split"]

Targets = Literal["class", "real"]


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


class HeldOutParams(SplitParams):
    """For datasets without an official test split: a seeded test split too."""

    test_fraction: float = Field(0.2, gt=0, lt=1, description="share held out as test, seeded")


def split(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, params: SplitParams, *,
          seed: int, device: torch.device, targets: Targets, num_classes: int = 0,
          x_test: np.ndarray | torch.Tensor | None = None,
          y_test: np.ndarray | torch.Tensor | None = None) -> TensorData:
    """Seeded train/val(/test) split of (x, y); the official test split is kept when given."""
    x_all = torch.as_tensor(x, dtype=torch.float32)
    y_all = torch.as_tensor(y, dtype=torch.int64 if targets == "class" else torch.float32)
    if targets == "real" and y_all.dim() == 1:
        y_all = y_all[:, None]
    if x_test is None or y_test is None:
        assert isinstance(params, HeldOutParams)
        order = torch.randperm(len(y_all), generator=seeding.generator(seed, "test_split"))
        n_test = round(len(y_all) * params.test_fraction)
        test, rest = order[:n_test], order[n_test:]
        xt, yt, x_all, y_all = x_all[test], y_all[test], x_all[rest], y_all[rest]
    else:
        xt = torch.as_tensor(x_test, dtype=torch.float32)
        yt = torch.as_tensor(y_test, dtype=y_all.dtype)
        if targets == "real" and yt.dim() == 1:
            yt = yt[:, None]
    if params.folds:
        folds = KFold(params.folds, shuffle=True, random_state=seeding.derive_seed(seed, "folds")
                      % (1 << 32))
        train_idx, val_idx = list(folds.split(np.arange(len(y_all))))[params.fold]
        train, val = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    else:
        n_val = round(len(y_all) * params.val_fraction)
        if not 0 < n_val < len(y_all):
            raise ValueError(f"val_fraction={params.val_fraction} leaves no train or no val "
                             f"examples out of {len(y_all)}")
        order = torch.randperm(len(y_all), generator=seeding.generator(seed, "split"))
        val, train = order[:n_val], order[n_val:]
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
