"""Metric helpers every engine shares: names of per-epoch metrics, gaps, fingerprints.

Diagnostics (see README, "What a trial logs per epoch"): gap_* (validation worse than
training is positive), grad_norm.layerN (on a fixed probe batch, eval mode),
dead_fraction (ReLU family: units never positive on the probe) or saturated_fraction
(sigmoid/tanh: activations whose derivative is under 5% of its maximum),
weight_sparsity (|w| < 1e-3).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import numpy as np
import torch

__all__ = ["EVAL_CHUNK", "EVAL_EXAMPLES", "PROBE_SIZE", "SATURATED_BELOW", "SPARSE_BELOW",
           "add_gaps", "eval_chunk", "fingerprint", "host_fingerprint"]

EVAL_CHUNK = 8192  # examples per forward pass when evaluating (one model)
# examples of all a stacked group's lanes together in one evaluation forward pass: 8192 per
# lane for 512 lanes of CIFAR-shaped images would hold hundreds of GB of activations
EVAL_EXAMPLES = 65_536
# on a CPU, FLOPs of one evaluation pass (every lane's examples together): a larger pass of
# a convolutional model spills its activations out of the caches. ResNet-20 on 500
# CIFAR-shaped images (82 MFLOP each), 2 cores: 0.21 s in one pass, 0.13 s in passes of
# 64 to 192 examples (5 to 16 GFLOP), 0.18 s in passes of 256; on 1 thread 0.35 s
# against 0.23 to 0.24 s. An MLP's passes stay at EVAL_CHUNK.
EVAL_FLOPS = 1e10


# bytes of the tensors one evaluation or probe pass makes, every lane's examples together:
# a probe keeps them for its backward (the `cnn` on CIFAR-shaped images makes 0.23 MB an
# example: 128 examples of each of 512 lanes, the examples' bound alone, held about 15 GB)
EVAL_BYTES = 4 * 2**30


def eval_chunk(lanes: int, example_flops: float = 0.0, example_bytes: float = 0.0) -> int:
    """Examples per lane in one evaluation (or probe) forward of a group of `lanes`:
    EVAL_CHUNK, or fewer so that the lanes together take at most EVAL_EXAMPLES, at most
    EVAL_FLOPS where `example_flops` (one example's forward FLOPs; 0: not counted) is
    given, and at most EVAL_BYTES where `example_bytes` (the bytes one example's forward
    makes, `build.eval_bytes`; 0: not counted) is; at least 1. The engines count the
    FLOPs on a CPU only (`build.eval_flops`): a GPU is fastest on large passes."""
    size = min(EVAL_CHUNK, EVAL_EXAMPLES // lanes)
    if example_flops > 0:
        size = min(size, int(EVAL_FLOPS // (example_flops * lanes)))
    if example_bytes > 0:
        size = min(size, int(EVAL_BYTES // (example_bytes * lanes)))
    return max(1, size)


PROBE_SIZE = 256  # training examples in the diagnostics probe batch
SPARSE_BELOW = 1e-3  # |w| under this counts as zero (weight_sparsity)
SATURATED_BELOW = 0.05  # derivative under this share of its maximum counts as saturated


def add_gaps(metrics: dict[str, float], names: tuple[str, ...]) -> None:
    """gap_loss and gap_<metric>: positive when validation is worse than training."""
    metrics["gap_loss"] = metrics["val_loss"] - metrics["train_loss"]
    for m in names:
        sign = 1 if m == "accuracy" else -1
        metrics[f"gap_{m}"] = sign * (metrics[f"train_{m}"] - metrics[f"val_{m}"])


def fingerprint(state: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over every state entry's name, dtype, shape and bytes (16 hex digits).

    `state` is a model's `state_dict().items()` (or one lane's slice of a stacked
    model under the same names), so fingerprints of both engines read the same way.
    """
    entries = []
    for name, tensor in state:
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        entries.append((name, tensor.dtype, tuple(tensor.shape),
                        t.view(torch.uint8).numpy().tobytes() if t.numel() else b""))
    return _digest(entries)


def host_fingerprint(state: Iterable[tuple[str, torch.dtype, np.ndarray]]) -> str:
    """`fingerprint` of a state already on the host: (name, torch dtype, array) entries
    (the stacked engine reads every lane's weights in one copy, then hashes each)."""
    return _digest([(name, dtype, tuple(a.shape), np.ascontiguousarray(a).tobytes())
                    for name, dtype, a in state])


def _digest(entries: Iterable[tuple[str, torch.dtype, tuple[int, ...], bytes]]) -> str:
    digest = hashlib.sha256()
    for name, dtype, shape, data in sorted(entries, key=lambda entry: entry[0]):
        numel = math.prod(shape)
        digest.update(f"{name}:{dtype}:{(numel,)}".encode())
        digest.update(data)
    return digest.hexdigest()[:16]
