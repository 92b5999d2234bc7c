"""Seeding and deterministic flags: the only module that touches global RNG state.

A trial's seed drives every random choice it makes. Data splits, shuffling and
weight inits take explicit `torch.Generator`s from `generator()`; what PyTorch only
draws from the global RNG (module default inits, dropout) runs inside
`trial_rng()`, which forks the global state, seeds it, and restores it afterwards,
so nothing leaks between trials or into the caller.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = [
    "configure_determinism",
    "derive_seed",
    "deterministic_flags",
    "generator",
    "numpy_rng_preserved",
    "trial_rng",
]

# cuBLAS needs this set before its first call to give reproducible results.
_CUBLAS_WORKSPACE = ":4096:8"


def configure_determinism() -> dict[str, str]:
    """Turn on PyTorch's deterministic algorithms; returns the flags as recorded in MLflow."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    # fp32 means fp32: no TensorFloat-32 in matmuls or cuDNN convolutions (cuDNN allows
    # it by default on Ampere and later GPUs)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return deterministic_flags()


def deterministic_flags() -> dict[str, str]:
    return {
        "use_deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
        "cudnn.deterministic": str(torch.backends.cudnn.deterministic),
        "cudnn.benchmark": str(torch.backends.cudnn.benchmark),
        "cuda.matmul.allow_tf32": str(torch.backends.cuda.matmul.allow_tf32),
        "cudnn.allow_tf32": str(torch.backends.cudnn.allow_tf32),
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
    }


def derive_seed(seed: int, purpose: str) -> int:
    """A stable 63-bit seed for one purpose ("split", "shuffle", ...) of a trial's seed.

    Different purposes get independent streams, so e.g. changing the number of
    init draws never shifts the shuffling order.
    """
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """An explicit generator on `device`, seeded from the trial seed and its purpose."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, purpose))
    return gen


@contextmanager
def trial_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global torch/numpy/random state for one trial and restore it afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), numpy_rng_preserved():
        global_seed = derive_seed(seed, "global")
        torch.manual_seed(global_seed)
        np.random.seed(global_seed % (1 << 32))
        random.seed(global_seed)
        yield


@contextmanager
def numpy_rng_preserved() -> Iterator[None]:
    """Run third-party code that reseeds numpy/random globally (e.g. mnist1d) without leaking."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
