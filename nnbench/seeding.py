"""Seeding and deterministic flags: the only module that touches global RNG state.

A trial's seed drives every random choice it makes. Data splits, shuffling and
dropout take explicit `torch.Generator`s from `generator()`; what PyTorch only draws
from the global RNG runs inside `trial_rng()`, which forks the global state, seeds it,
and restores it afterwards, so nothing leaks between trials or into the caller.

Initial weights come from nnbench's own counter-based stream (`lane_uniform`): the i-th
number of a stream is a hash (SplitMix64) of the stream's seed and i, computed with
integer tensor ops. Many trials' weights are then one draw (a `[lanes, ...]` tensor, each
lane its own seed), bitwise equal to each trial's own draw on the same device: the
stacked engine draws a layer for all of its lanes at once, on the device, and starts
from the weights the serial engine would.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch

__all__ = [
    "PRECISIONS",
    "configure_determinism",
    "cublas_workspace_problem",
    "derive_seed",
    "deterministic_flags",
    "draw_device",
    "drawing_on",
    "generator",
    "lane_uniform",
    "numpy_rng_preserved",
    "precision_on",
    "reseed_global",
    "set_tf32",
    "stream_seed",
    "tf32_allowed",
    "tf32_problem",
    "trial_rng",
    "unit",
]

# cuBLAS needs this set before its first call to give reproducible results; PyTorch's
# deterministic algorithms accept these two values and raise at the first matmul otherwise.
_CUBLAS_WORKSPACE = ":4096:8"
_CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")
PRECISIONS = ("fp32", "tf32")  # of CUDA matrix products and cuDNN convolutions (also
# cli_checks.PRECISIONS, which the CLI reads without importing torch)


def cublas_workspace_problem() -> str | None:
    """Why training on a GPU could not be bitwise repeatable under this environment's
    CUBLAS_WORKSPACE_CONFIG (None: unset, which nnbench sets, or an accepted value)."""
    value = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if value is None or value in _CUBLAS_DETERMINISTIC:
        return None
    return (f"CUBLAS_WORKSPACE_CONFIG is {value!r} in the environment, but deterministic "
            f"cuBLAS (bitwise-repeatable training) needs one of "
            f"{', '.join(_CUBLAS_DETERMINISTIC)}; unset it (nnbench sets "
            f"{_CUBLAS_WORKSPACE}) or set one of those")


def configure_determinism(precision: str = "fp32",
                          device: torch.device | None = None) -> dict[str, str]:
    """Turn on PyTorch's deterministic algorithms and set the `precision` of CUDA matrix
    products and cuDNN convolutions; returns the flags as recorded in MLflow.

    fp32 means fp32: no TensorFloat-32 (cuDNN allows it by default on Ampere and later
    GPUs). tf32: both take their fp32 inputs rounded to TensorFloat-32 (a 10-bit mantissa)
    and accumulate in fp32, several times faster on tensor cores; still bitwise repeatable
    on one device. A CPU computes fp32 under either (`precision_on`): tf32 for a `device`
    without it is a ValueError (`tf32_problem`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    problem = tf32_problem(device) if precision == "tf32" and device is not None else None
    if problem is not None:
        raise ValueError(problem)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    set_tf32(precision == "tf32")
    return deterministic_flags()


# torch 2.9 and later also set TensorFloat-32 per backend (`fp32_precision`). Once anything
# (a plugin, the user's code) has used that, reading the legacy `allow_tf32` flags raises
# RuntimeError ("a mix of the legacy and new APIs"), and torch itself reads them (torch.export
# does): nnbench resets the per-backend settings to unset, then sets the legacy flags, which
# keeps both readings consistent
_PER_BACKEND_TF32 = hasattr(torch.backends, "fp32_precision")
_backends: Any = torch.backends  # (fp32_precision: not in torch's type stubs)


def set_tf32(matmul: bool, cudnn: bool | None = None) -> None:
    """Allow TensorFloat-32 in CUDA matrix products (`matmul`) and cuDNN convolutions and
    recurrent layers (`cudnn`, default: as `matmul`), or require IEEE fp32 there."""
    if _PER_BACKEND_TF32:
        _backends.fp32_precision = "none"  # unset, with every backend below it
    # matrix products: torch's generic setting, which keeps CUDA's and oneDNN's consistent
    # (else `get_float32_matmul_precision`, which torch.compile reads, raises)
    torch.set_float32_matmul_precision("high" if matmul else "highest")
    torch.backends.cudnn.allow_tf32 = matmul if cudnn is None else cudnn


def tf32_allowed() -> tuple[bool, bool]:
    """(CUDA matrix products, cuDNN convolutions): whether each may use TensorFloat-32 now
    (as `set_tf32` left them, or as a plugin's per-backend setting changed them since)."""
    try:
        return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    except RuntimeError:  # torch 2.9+: per-backend settings since; the legacy reading raises
        return (_backends.cuda.matmul.fp32_precision == "tf32",
                _backends.cudnn.conv.fp32_precision == "tf32")


def tf32_problem(device: torch.device) -> str | None:
    """Why `device` cannot train in TensorFloat-32 (None: it can): TF32 is a tensor-core
    format of NVIDIA GPUs of compute capability 8.0 and later (Ampere, Hopper)."""
    if device.type != "cuda":
        return (f"TensorFloat-32 runs on NVIDIA GPUs of compute capability 8.0 or later "
                f"(Ampere, Hopper); the device is {device.type}, which computes fp32 "
                f"whatever is asked; allowed here: fp32")
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        return (f"TensorFloat-32 runs on NVIDIA GPUs of compute capability 8.0 or later "
                f"(Ampere, Hopper); {torch.cuda.get_device_name(device)} has {major}.{minor}; "
                f"allowed here: fp32")
    return None


def precision_on(device: torch.device) -> str:
    """The precision trials on `device` train in under the flags set now
    (`configure_determinism`): tf32 where TF32 is allowed and the device has it, else fp32
    (what each trial's numerics record)."""
    return "tf32" if any(tf32_allowed()) and tf32_problem(device) is None else "fp32"


def deterministic_flags() -> dict[str, str]:
    return {
        "use_deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
        "cudnn.deterministic": str(torch.backends.cudnn.deterministic),
        "cudnn.benchmark": str(torch.backends.cudnn.benchmark),
        "cuda.matmul.allow_tf32": str(tf32_allowed()[0]),
        "cudnn.allow_tf32": str(tf32_allowed()[1]),
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
    """Seed the global torch/numpy/random state for one trial and restore it afterwards:
    the CPU's generator and `device`'s own, no other (`torch.manual_seed` also reseeds every
    GPU, which nothing restored)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), numpy_rng_preserved():
        global_seed = derive_seed(seed, "global")
        _seed_torch(global_seed, device)  # (fork_rng has initialised CUDA)
        np.random.seed(global_seed % (1 << 32))
        random.seed(global_seed)
        yield


def reseed_global(seed: int, device: torch.device) -> None:
    """Inside `trial_rng`: seed the global generators (the CPU's and `device`'s) again, from
    `seed`. The serial engine does so from the dropout seed once the model is built, so
    what draws from them while it trains (`nn.GRU`'s dropout between layers: the global
    CPU generator, or cuDNN's dropout state, which the CUDA generator reseeds) varies with
    the dropout seed, not the init seed."""
    _seed_torch(derive_seed(seed, "training"), device)


def _seed_torch(seed: int, device: torch.device) -> None:
    """Seed torch's CPU generator and `device`'s own, no other GPU's."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        torch.cuda.default_generators[index].manual_seed(seed)


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


# -- the counter-based stream of initial weights -----------------------------------------------

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix64(x: int) -> int:
    """SplitMix64's finaliser on a Python int (64 bits)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * _MIX1) & _MASK64
    x = ((x ^ (x >> 27)) * _MIX2) & _MASK64
    return x ^ (x >> 31)


def _signed(x: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    x &= _MASK64
    return x - (1 << 64) if x >> 63 else x


def stream_seed(seed: int, *parts: int) -> int:
    """The seed of sub-stream `parts` (e.g. layer, tensor) of stream `seed` (64 bits)."""
    x = _mix64(seed)
    for part in parts:
        x = _mix64(x ^ _mix64(part + _GAMMA))
    return x


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical (unsigned) shift of int64 values: torch's >> keeps the sign."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def lane_uniform(seeds: Sequence[int], shape: tuple[int, ...],
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """`[len(seeds), *shape]` float32 uniforms in (0, 1): row i is stream `seeds[i]`'s
    first numbers, (k + ½)·2⁻²⁴ for the top 24 bits k of each hash (float32 rounds k + ½
    to an even neighbour from 2²³ up; the one value that would become 1 is held at
    1 − 2⁻²⁴, so a normal's inverse CDF stays finite). Integer ops up to that conversion,
    elementwise after it, so a row does not depend on the other rows, nor on the device."""
    n = math.prod(shape)
    base = torch.tensor([_signed(s) for s in seeds], dtype=torch.int64, device=device)
    z = base[:, None] + torch.arange(1, n + 1, dtype=torch.int64, device=device) * \
        _signed(_GAMMA)
    z = (z ^ _shift_right(z, 30)) * _signed(_MIX1)
    z = (z ^ _shift_right(z, 27)) * _signed(_MIX2)
    z = z ^ _shift_right(z, 31)
    return unit(_shift_right(z, 40)).view(len(seeds), *shape)


def unit(top: torch.Tensor) -> torch.Tensor:
    """24-bit integers k as (k + ½)·2⁻²⁴ in float32, none of them 0 or 1 (see
    `lane_uniform`)."""
    return top.to(torch.float32).add_(0.5).mul_(2.0 ** -24).clamp_(max=1 - 2.0 ** -24)


_DRAW_DEVICE: ContextVar[torch.device | None] = ContextVar("nnbench_draw_device", default=None)


@contextmanager
def drawing_on(device: torch.device) -> Iterator[None]:
    """Draw initial weights on `device` while building a model elsewhere (the CPU), so a
    model moved there starts from the numbers a model drawn there would."""
    token = _DRAW_DEVICE.set(device)
    try:
        yield
    finally:
        _DRAW_DEVICE.reset(token)


def draw_device(default: torch.device) -> torch.device:
    return _DRAW_DEVICE.get() or default
