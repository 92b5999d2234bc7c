"""Counting the examples an MNIST-shaped dataset's splits share (nnbench.data.hygiene): a
train split of 60,000 × 784 float32 inputs, val 6,000 and test 10,000, with duplicates
planted across them, in one run (`nox -s benchmarks`, group `hygiene-60k`):

- `count`: what the pre-flight does per seed (`split_counts`: a 64-bit multiplicative
  hash per row, one integer matrix-vector product, rows sharing a hash compared exactly;
  then sets, three pairs);
- `sha256_whole`: one SHA-256 over the same bytes (each split in one call): the floor for
  any exact hashing of the data;
- `unique_rows`: the vectorised alternative, `np.unique` over rows viewed as one void
  value each (sorts the rows; returns the same counts).

The target is a few seconds at most. Measured on the 2-core machine with other jobs
running (OMP_NUM_THREADS=1, medians of 5, two runs): `count` 0.15 / 0.26 s,
`sha256_whole` 0.34 / 0.43 s, `unique_rows` 0.50 / 0.56 s; hashing each row with SHA-256
instead (the first version) took 0.75 s. At the smoke size (`nox -s tests`) train is
2,000 rows and each runs once, untimed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
import torch

from nnbench.data import TensorData
from nnbench.data.hygiene import PAIRS, split_counts
from tests.benchmarks.scale import FULL

TRAIN, VAL, TEST = (60_000, 6_000, 10_000) if FULL else (2_000, 200, 400)
FEATURES = 784
# planted: rows of test copied into train, of val into train, of test into val
PLANTED = {("test", "train"): 37, ("val", "train"): 11, ("test", "val"): 5}


@pytest.fixture(scope="module")
def data() -> TensorData:
    rng = np.random.default_rng(0)
    # MNIST-like values: k/255 for bytes k, so distinct rows differ somewhere
    x = {s: torch.as_tensor(rng.integers(0, 256, size=(n, FEATURES), dtype=np.uint8)
                            .astype(np.float32) / 255)
         for s, n in (("train", TRAIN), ("val", VAL), ("test", TEST))}
    x["train"][:37] = x["test"][:37]
    x["train"][37:48] = x["val"][:11]
    x["val"][100:105] = x["test"][100:105]
    y = {s: torch.arange(len(v)) % 10 for s, v in x.items()}
    return TensorData.of(x_train=x["train"], y_train=y["train"], x_val=x["val"], y_val=y["val"],
                         x_test=x["test"], y_test=y["test"], targets="class", num_classes=10)


def _unique_rows(data: TensorData) -> tuple[int, ...]:
    arrays = {s: getattr(data, f"x_{s}").numpy() for s in ("train", "val", "test")}
    rows = np.ascontiguousarray(np.concatenate(list(arrays.values())))
    as_void = rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()
    ids = np.unique(as_void, return_inverse=True)[1]
    bounds = np.cumsum([0, *(len(a) for a in arrays.values())])
    of = {s: ids[bounds[i]:bounds[i + 1]] for i, s in enumerate(arrays)}
    return tuple(int(np.isin(of[split], of[other]).sum()) for split, other in PAIRS)


@pytest.mark.benchmark(group="hygiene-60k")
def test_count(benchmark: Any, data: TensorData) -> None:
    counts = benchmark.pedantic(split_counts, args=(data,), rounds=5, warmup_rounds=1)
    assert counts.overlaps == tuple(PLANTED[pair] for pair in PAIRS)
    assert counts.repeats == {"train": 0, "val": 0, "test": 0}


@pytest.mark.benchmark(group="hygiene-60k")
def test_sha256_whole(benchmark: Any, data: TensorData) -> None:
    splits = [np.ascontiguousarray(x.numpy()) for x in (data.x_train, data.x_val, data.x_test)]
    digests = benchmark.pedantic(lambda: [hashlib.sha256(x.data).digest() for x in splits],
                                 rounds=5, warmup_rounds=1)
    assert len(set(digests)) == 3


@pytest.mark.benchmark(group="hygiene-60k")
def test_unique_rows(benchmark: Any, data: TensorData) -> None:
    counts = benchmark.pedantic(_unique_rows, args=(data,), rounds=5, warmup_rounds=1)
    assert counts == tuple(PLANTED[pair] for pair in PAIRS)
