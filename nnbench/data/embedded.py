"""Datasets that ship with a package and need no download.

`mnist1d`: Greydanus' MNIST-1D, generated offline by the `mnist1d` package with its
published settings (seed 42): 40-long signals, 10 classes, 80% train / 20% test.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from pydantic import Field

from nnbench import seeding
from nnbench.data import TensorData, split_train_val
from nnbench.registry import ComponentInfo, Params, register

KIND = "dataset"


class MNIST1DParams(Params):
    num_samples: int = Field(5000, ge=100, description="examples generated; 80% train, 20% test")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out, seeded")


@lru_cache(maxsize=4)
def _mnist1d_arrays(num_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    with seeding.numpy_rng_preserved():  # make_dataset reseeds numpy/random globally
        data = make_dataset(args)
    return data["x"], data["y"], data["x_test"], data["y_test"]


def _build_mnist1d(params: MNIST1DParams, seed: int, device: torch.device) -> TensorData:
    x, y, x_test, y_test = _mnist1d_arrays(params.num_samples)
    return split_train_val(
        torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64),
        torch.as_tensor(x_test, dtype=torch.float32), torch.as_tensor(y_test, dtype=torch.int64),
        val_fraction=params.val_fraction, num_classes=10, seed=seed, device=device)


register(ComponentInfo(
    kind=KIND, name="mnist1d", build=_build_mnist1d, params=MNIST1DParams,
    doc="MNIST-1D (Greydanus 2020): 40-long 1-D signals, 10 classes; generated offline"))
