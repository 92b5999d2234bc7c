"""Datasets that ship with a package and need no download.

- `mnist1d`: Greydanus' MNIST-1D, generated offline by the `mnist1d` package with its
  published settings (seed 42): 40-long signals, 10 classes, 80% train / 20% test. The
  generated arrays are kept in the cache (`nnbench.data.cache`), so only the first
  process to need a `num_samples` pays for making them.
- `circles`, `moons`: scikit-learn's 2-D generators (the notes: n=2000, noise=0.1,
  factor=0.4).
- `digits` (8×8 images, 10 classes), `breast_cancer` (30 features, 2 classes),
  `diabetes` (10 features, a real target): scikit-learn's bundled sets.
- `regression`: the notes' L2 demo, 100 × 20 standard-normal inputs and targets drawn
  with torch seed 42.

Datasets without an official test split hold one out (`test_fraction`), seeded like
the validation split; the examples themselves never depend on the trial's seed. Their
arrays pass the data checks (`nnbench.data.checks`) like any file's, once per dataset,
parameters and versions of the packages that make them (`attrs["source"]`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from importlib.metadata import version
from typing import Any

import numpy as np
import torch
from pydantic import Field

from nnbench import seeding
from nnbench.data import DataShape, HeldOutParams, SplitParams, TensorData, split
from nnbench.data.cache import cached_file, read_arrays, write_arrays
from nnbench.data.checks import Source, source_key
from nnbench.registry import ComponentInfo, register

KIND = "dataset"

# the packages whose versions a dataset's generated values depend on
_PACKAGES = {"mnist1d": ("mnist1d", "numpy", "scipy"), "circles": ("scikit-learn", "numpy"),
             "moons": ("scikit-learn", "numpy"), "digits": ("scikit-learn", "numpy"),
             "breast_cancer": ("scikit-learn", "numpy"), "diabetes": ("scikit-learn", "numpy"),
             "regression": ("torch",)}


def _source(name: str, p: SplitParams) -> Source:
    """The key of a built-in dataset's check: its name, the parameters that shape its
    examples (not the split's) and the versions of the packages that make them."""
    own = {k: v for k, v in p.model_dump(mode="json").items()
           if k not in HeldOutParams.model_fields}
    versions = {package: version(package) for package in _PACKAGES[name]}
    return Source(where=f"dataset {name!r}", key=source_key(name, own, versions))


def _add(name: str, build: Callable[..., TensorData], params: type[SplitParams], doc: str, *,
         targets: str, input_kind: str, shape: Callable[[Any], DataShape],
         defaults: str = "") -> None:
    register(ComponentInfo(kind=KIND, name=name, build=build, params=params, doc=doc,
                           attrs={"targets": targets, "input": input_kind, "shape": shape,
                                  "source": lambda p: _source(name, p)},
                           defaults=defaults))


# -- MNIST-1D ---------------------------------------------------------------------------

class MNIST1DParams(SplitParams):
    # at most 200,000: generated in Python at about 7,000 a second on a 2-core CPU
    num_samples: int = Field(5000, ge=100, le=200_000,
                             description="examples generated; 80% train, 20% test")


@lru_cache(maxsize=4)
def _mnist1d_arrays(num_samples: int) -> tuple[np.ndarray, ...]:
    """The generated arrays, from the cache when an earlier process made them (generating
    them takes about 2 s of imports and work per process; reading them, milliseconds)."""
    path = cached_file("mnist1d", _mnist1d_versions(), f"{num_samples}.npz")
    arrays = read_arrays(path, _MNIST1D_KEYS)
    if arrays is None:
        arrays = _make_mnist1d(num_samples)
        write_arrays(path, dict(zip(_MNIST1D_KEYS, arrays, strict=True)))
    return arrays


_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def _mnist1d_versions() -> str:
    """What the generated examples depend on besides `num_samples`: the mnist1d package
    (its published settings and templates) and the numpy/scipy its transforms run on."""
    return "-".join(f"{name}{version(name)}" for name in ("mnist1d", "numpy", "scipy"))


def _make_mnist1d(num_samples: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    with seeding.numpy_rng_preserved():  # make_dataset reseeds numpy/random globally
        data = make_dataset(args)
    return tuple(data[key] for key in _MNIST1D_KEYS)


def _build_mnist1d(p: MNIST1DParams, seed: int, device: torch.device) -> TensorData:
    x, y, x_test, y_test = _mnist1d_arrays(p.num_samples)
    return split(x, y, p, seed=seed, device=device, targets="class", num_classes=10,
                 x_test=x_test, y_test=y_test, source=_source("mnist1d", p))


def _mnist1d_shape(p: MNIST1DParams) -> DataShape:
    total = p.num_samples // 10 * 10  # make_dataset draws num_samples // 10 per class
    train = int(total * 0.8)  # and keeps int(80%) for train (its train_split)
    return DataShape(examples=train, test=total - train, input_shape=(40,), targets="class",
                     num_classes=10)


_add("mnist1d", _build_mnist1d, MNIST1DParams, targets="class", input_kind="signal",
     shape=_mnist1d_shape, defaults="the mnist1d package's published settings (5000 "
                                    "samples, 80% train)",
     doc="MNIST-1D (Greydanus 2020): 40-long 1-D signals, 10 classes; generated offline")


# -- scikit-learn generators --------------------------------------------------------------

class CirclesParams(HeldOutParams):
    n_samples: int = Field(2000, ge=10, description="points generated")
    noise: float = Field(0.1, ge=0, description="sd of Gaussian noise added")
    factor: float = Field(0.4, gt=0, lt=1, description="inner / outer circle radius")
    data_seed: int = Field(42, ge=0, le=2**32 - 1,  # what scikit-learn's random_state takes
                           description="random_state of the generator (fixed data)")


class MoonsParams(HeldOutParams):
    n_samples: int = Field(2000, ge=10, description="points generated")
    noise: float = Field(0.1, ge=0, description="sd of Gaussian noise added")
    data_seed: int = Field(42, ge=0, le=2**32 - 1,  # what scikit-learn's random_state takes
                           description="random_state of the generator (fixed data)")


def _build_circles(p: CirclesParams, seed: int, device: torch.device) -> TensorData:
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=p.n_samples, noise=p.noise, factor=p.factor,
                        random_state=p.data_seed)
    return split(x, y, p, seed=seed, device=device, targets="class", num_classes=2,
                 source=_source("circles", p))


def _build_moons(p: MoonsParams, seed: int, device: torch.device) -> TensorData:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=p.n_samples, noise=p.noise, random_state=p.data_seed)
    return split(x, y, p, seed=seed, device=device, targets="class", num_classes=2,
                 source=_source("moons", p))


def _points(p: CirclesParams | MoonsParams) -> DataShape:
    return DataShape(examples=p.n_samples, test=None, input_shape=(2,), targets="class",
                     num_classes=2)


_add("circles", _build_circles, CirclesParams, targets="class", input_kind="vector",
     shape=_points, defaults="the notes' setup (n=2000, noise=0.1, factor=0.4), not sklearn's "
                             "(n=100, no noise, factor=0.8)",
     doc="two concentric noisy circles (sklearn make_circles), 2 classes")
_add("moons", _build_moons, MoonsParams, targets="class", input_kind="vector",
     shape=_points, defaults="n=2000, noise=0.1 like circles (sklearn: n=100, no noise)",
     doc="two interleaving half moons (sklearn make_moons), 2 classes")


# -- scikit-learn bundled sets ---------------------------------------------------------------

class TabularParams(HeldOutParams):
    standardize: bool = Field(True, description="scale inputs to mean 0, sd 1 with train "
                                                "statistics")


class DiabetesParams(TabularParams):
    standardize_target: bool = Field(
        True, description="scale the target to mean 0, sd 1 (over all examples)")


@lru_cache(maxsize=4)
def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    bunch: Any = getattr(datasets, f"load_{name}")()
    return np.asarray(bunch.data, dtype=np.float32), np.asarray(bunch.target)


def _build_digits(p: HeldOutParams, seed: int, device: torch.device) -> TensorData:
    x, y = _bundled("digits")
    images = (x / 16.0).reshape(-1, 1, 8, 8)  # pixel values 0..16 -> [0, 1], (C, H, W)
    return split(images, y, p, seed=seed, device=device, targets="class", num_classes=10,
                 source=_source("digits", p))


def _build_breast_cancer(p: TabularParams, seed: int, device: torch.device) -> TensorData:
    x, y = _bundled("breast_cancer")
    return split(x, y, p, seed=seed, device=device, targets="class", num_classes=2,
                 source=_source("breast_cancer", p))


def _build_diabetes(p: DiabetesParams, seed: int, device: torch.device) -> TensorData:
    x, y = _bundled("diabetes")
    y = y.astype(np.float32)
    if p.standardize_target:
        y = (y - y.mean()) / y.std()
    return split(x, y, p, seed=seed, device=device, targets="real", source=_source("diabetes", p))


def _fixed_shape(examples: int, input_shape: tuple[int, ...], targets: str,
                 num_classes: int) -> Callable[[Any], DataShape]:
    def shape(p: HeldOutParams) -> DataShape:
        return DataShape(examples=examples, test=None, input_shape=input_shape,
                         targets="class" if targets == "class" else "real",
                         num_classes=num_classes)
    return shape


_add("digits", _build_digits, HeldOutParams, targets="class", input_kind="image",
     shape=_fixed_shape(1797, (1, 8, 8), "class", 10),
     defaults="sklearn's load_digits, pixels / 16; 20% test, 10% of the rest validation",
     doc="sklearn digits: 1797 8×8 grey images in [0, 1], 10 classes")
_add("breast_cancer", _build_breast_cancer, TabularParams, targets="class", input_kind="vector",
     shape=_fixed_shape(569, (30,), "class", 2),
     defaults="sklearn's load_breast_cancer, standardized with training statistics",
     doc="sklearn breast cancer Wisconsin: 569 × 30 features, 2 classes")
_add("diabetes", _build_diabetes, DiabetesParams, targets="real", input_kind="vector",
     shape=_fixed_shape(442, (10,), "real", 0),
     defaults="sklearn's load_diabetes, inputs and target standardized",
     doc="sklearn diabetes: 442 × 10 features, disease progression (real)")


# -- the notes' regression ---------------------------------------------------------------------

class RegressionParams(HeldOutParams):
    n_samples: int = Field(100, ge=10, description="examples")
    n_features: int = Field(20, ge=1, description="input features")
    data_seed: int = Field(42, ge=0, description="torch seed the notes draw X, y with")


@lru_cache(maxsize=4)
def _regression_arrays(n_samples: int, n_features: int,
                       data_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(data_seed)  # = torch.manual_seed(42); torch.randn(...)
    x = torch.randn(n_samples, n_features, generator=gen)
    y = torch.randn(n_samples, 1, generator=gen)
    return x, y


def _build_regression(p: RegressionParams, seed: int, device: torch.device) -> TensorData:
    x, y = _regression_arrays(p.n_samples, p.n_features, p.data_seed)
    return split(x, y, p, seed=seed, device=device, targets="real",
                 source=_source("regression", p))


def _regression_shape(p: RegressionParams) -> DataShape:
    return DataShape(examples=p.n_samples, test=None, input_shape=(p.n_features,),
                     targets="real", num_classes=0)


_add("regression", _build_regression, RegressionParams, targets="real", input_kind="vector",
     shape=_regression_shape, defaults="the notes' L2 demo (100 × 20, torch seed 42)",
     doc="the notes' L2 demo: X ~ N(0, 1) 100×20, y ~ N(0, 1) (pure noise: only overfitting)")
