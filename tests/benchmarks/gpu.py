"""The GPU benchmark (issue 21): nnbench's stacked engine end to end on an MNIST-shaped MLP.

    python -m tests.benchmarks.gpu                          # cuda if present: 32, 128, 512 lanes
    python -m tests.benchmarks.gpu --device cpu --smoke     # seconds: 2 and 4 lanes, 1 epoch
    python -m tests.benchmarks.gpu --lanes 512 --epochs 2 --json out.json
    python -m tests.benchmarks.gpu --precision tf32        # TensorFloat-32 (Ampere or later)
    nox -s gpu-bench -- --lanes 128 512

Workload: MLP 784-256-128-10 (relu, kaiming_normal), 54,000 training examples, batch 64,
SGD with momentum 0.9, 5 epochs. The data is generated here (`mnist_shaped`: 10 classes,
784 features, one shared split); lane i is a trial of its own: learning rate
0.005·2^((i mod 8)/4), init and data-order seed i.

For each lane count one group trains through `make_engine("stacked")` twice: the first
run is timed (build, train, finish: `engine.run` from start to its last result), the
second keeps checkpoints. The table gives the seconds (and how they split: building the
group, its epochs as the engine times them, finishing the lanes after the last epoch's
metrics: test split, fingerprints), model-epochs/s (lanes × epochs / seconds),
TFLOP/s of the training steps (6 × 234,752 multiply-add FLOPs per example: forward 2,
backward 4; evaluation not counted), that as a % of the matrix-product rate measured
with torch.mm on the same device in the same run (fp32's; TF32's under `--precision tf32`,
which trains every matrix product in TensorFloat-32 as `nnbench run --precision tf32`
does: an Ampere or later GPU only), peak memory (GPU: allocated by torch; CPU:
the process's resident set), bitwise repeat (lanes whose fingerprint, test metrics and
every epoch's metrics but its timing are equal in both runs) and agreement with the
serial engine (the first `--serial-lanes` trials trained serially: largest |Δ test
accuracy| and ‖Δw‖/‖w‖ over weight tensors), then the numerics. Last, the peak memory of
the smallest lane count's group for one epoch with one split seed and with 16 (lane i
split i mod 16): the examples are held once, so more split seeds cost only their rows.

It needs only torch, numpy, pyyaml and pydantic (no MLflow, Optuna or mnist1d: a GPU
machine may lack them); tests/benchmarks/test_gpu_bench.py runs the smoke size with those
unimportable, as part of `nox -s tests`.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from nnbench import registry, seeding
from nnbench.config import TrialSpec, parse_suite
from nnbench.data import DataShape, SplitParams, TensorData, split, split_sizes
from nnbench.data.checks import Source, source_key
from nnbench.registry import ComponentInfo
from nnbench.train import (
    CONTINUE,
    Decision,
    TrialResult,
    make_engine,
    resolve_device,
    torch_threads,
)

__all__ = ["Row", "main", "model_epoch_flops", "register_dataset", "run_benchmark", "trials"]

DATASET = "mnist_shaped"
INPUT, HIDDEN, CLASSES = 784, (256, 128), 10
BATCH_SIZE = 64
VAL_FRACTION = 0.1  # the split's default: 60,000 generated examples -> 54,000 train


@dataclass(frozen=True)
class Sizes:
    lanes: tuple[int, ...]  # lane counts, one group each
    epochs: int  # per trial
    examples: int  # training examples (after the validation split)
    serial_lanes: int  # lanes also trained by the serial engine
    matmul: dict[str, int]  # n of the n×n matrix product timed, per device type


SPLITS = 16  # split seeds of the memory comparison (issue 21: 16 seeds ≤ 1.5× one seed)
FULL = Sizes((32, 128, 512), 5, 54_000, 2, {"cuda": 8192, "cpu": 2048})
SMOKE = Sizes((2, 4), 1, 512, 2, {"cuda": 2048, "cpu": 512})
WEIGHT_RTOL, WEIGHT_ATOL = 1e-5, 1e-6  # stacked against serial, per weight tensor (norms)

SUITE = """\
name: gpu-bench
description: the GPU benchmark's MNIST-shaped workload (tests/benchmarks/gpu.py)
task:
  dataset: {{name: {dataset}, examples: {examples}, test: {test}}}
  model: {{name: mlp, hidden: [{hidden}]}}
  loss: cross_entropy
  metric: test_accuracy
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: {{name: sgd, lr: 0.01, momentum: 0.9}}
  epochs: {epochs}
  batch_size: {batch_size}
seeds: 1
"""


# -- the generated data ----------------------------------------------------------------------

class MnistShapedParams(SplitParams):
    examples: int = Field(60_000, ge=20, description="examples generated for train + val")
    test: int = Field(10_000, ge=1, description="test examples generated")
    data_seed: int = Field(0, ge=0, description="seed of the generator (fixed data)")


@lru_cache(maxsize=2)
def _arrays(examples: int, test: int, data_seed: int) -> tuple[np.ndarray, ...]:
    """(x, y, x_test, y_test): each class a random 784-pixel prototype plus Gaussian noise,
    scaled to MNIST's range (pixels in about [0, 1])."""
    rng = np.random.default_rng(data_seed)
    prototypes = rng.random((CLASSES, INPUT), dtype=np.float32)
    arrays: list[np.ndarray] = []
    for n in (examples, test):
        y = rng.integers(0, CLASSES, n)
        x = rng.standard_normal((n, INPUT), dtype=np.float32)
        x *= 2.0
        x += prototypes[y]
        x *= 0.25
        arrays += [x, y]
    return tuple(arrays)


def _build(p: MnistShapedParams, seed: int, device: torch.device) -> TensorData:
    x, y, x_test, y_test = _arrays(p.examples, p.test, p.data_seed)
    return split(x, y, p, seed=seed, device=device, targets="class", num_classes=CLASSES,
                 x_test=x_test, y_test=y_test, source=_source(p))


def _source(p: MnistShapedParams) -> Source:
    return Source(where=f"dataset {DATASET!r}",
                  key=source_key(DATASET, p.examples, p.test, p.data_seed, np.__version__))


def _shape(p: MnistShapedParams) -> DataShape:
    return DataShape(examples=p.examples, test=p.test, input_shape=(INPUT,), targets="class",
                     num_classes=CLASSES)


def register_dataset() -> None:
    """Register `mnist_shaped` (once per process; a no-op when it is registered)."""
    try:
        registry.get("dataset", DATASET)
    except registry.UnknownComponentError:
        registry.register(ComponentInfo(
            kind="dataset", name=DATASET, build=_build, params=MnistShapedParams,
            doc="MNIST-shaped generated data: 784 features, 10 classes (the GPU benchmark)",
            attrs={"targets": "class", "input": "vector", "shape": _shape, "source": _source},
            example={"examples": 200, "test": 50}))


def _generated_sizes(train: int) -> tuple[int, int]:
    """(examples to generate for train + val, test examples) giving `train` training
    examples after the validation split (54,000 -> 60,000 and 10,000, as MNIST)."""
    params = MnistShapedParams.model_validate({"val_fraction": VAL_FRACTION})
    pool = round(train / (1 - VAL_FRACTION))
    test = max(1, round(train * 10_000 / 54_000))
    for candidate in (pool, pool - 1, pool + 1, pool - 2, pool + 2):
        shape = DataShape(examples=candidate, test=test, input_shape=(INPUT,),
                          targets="class", num_classes=CLASSES)
        if split_sizes(shape, params).train == train:
            return candidate, test
    raise ValueError(f"no generated size leaves exactly {train} training examples")


# -- the trials --------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _base_trial(epochs: int, examples: int) -> TrialSpec:
    """The workload as a suite validates it (once per size: validation hashes the source of
    the package that registered the dataset, this one)."""
    generated, test = _generated_sizes(examples)
    text = SUITE.format(dataset=DATASET, examples=generated, test=test,
                        hidden=", ".join(map(str, HIDDEN)), epochs=epochs,
                        batch_size=BATCH_SIZE)
    (base,) = parse_suite(text, "tests/benchmarks/gpu.py").trials()
    return base


def trials(lanes: int, epochs: int, examples: int, splits: int = 1) -> list[TrialSpec]:
    """`lanes` distinct trials of the workload: lane i has lr 0.005·2^((i mod 8)/4) and
    seed i for init, data order, augmentation and dropout; split seed i mod `splits`
    (default: every lane shares split 0). Lane i is the same trial whatever the lane
    count."""
    register_dataset()
    base = _base_trial(epochs, examples)
    out = []
    for i in range(lanes):
        optimizer = registry.resolve("optimizer", {**base.optimizer.to_dict(),
                                                   "lr": 0.005 * 2 ** ((i % 8) / 4)})
        spec = replace(base, optimizer=optimizer)
        out.append(spec.with_seeds({"split": i % splits, "init": i, "data_order": i,
                                    "augmentation": i, "dropout": i}))
    return out


def model_epoch_flops(examples: int) -> float:
    """FLOPs of one epoch of training steps of one model: per example a forward pass of
    2·Σ fan_in·fan_out and a backward pass of twice that (biases, activations, the loss
    and the optimizer update not counted)."""
    widths = (INPUT, *HIDDEN, CLASSES)
    macs = sum(a * b for a, b in itertools.pairwise(widths))
    return 6.0 * macs * examples


# -- measuring ---------------------------------------------------------------------------------

class _Clock:
    """A listener that lets every trial train to its end and notes when the last epoch's
    metrics arrived (after it, the engine only finishes lanes)."""

    def __init__(self) -> None:
        self.last_epoch_at = 0.0

    def trial_started(self, spec: TrialSpec) -> bool:
        return True

    def epoch_finished(self, spec: TrialSpec, metrics: dict[str, float]) -> Decision:
        self.last_epoch_at = time.perf_counter()
        return CONTINUE


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _PeakMemory:
    """Peak memory of one run: torch's allocations on a GPU; on a CPU the process's
    resident set (VmHWM, reset through /proc/self/clear_refs where Linux allows it,
    else the peak since the process started)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.label = "peak GPU memory (allocated)" if device.type == "cuda" else \
            "peak resident set (process)"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.label = "peak resident set since the process started"

    def read(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def matmul_tflops(device: torch.device, n: int, *, tf32: bool = False,
                  seconds: float = 0.5) -> float:
    """The device's rate for an n×n fp32 matrix product (torch.mm), in TFLOP/s; `tf32`:
    with TensorFloat-32 allowed for the measurement (the flag is restored after)."""
    generator = seeding.generator(0, "gpu-bench matmul", device)
    a = torch.randn(n, n, device=device, generator=generator)
    b = torch.randn(n, n, device=device, generator=generator)
    out = torch.empty(n, n, device=device)
    before = seeding.tf32_allowed()
    seeding.set_tf32(tf32, before[1])
    try:
        for _ in range(2):
            torch.mm(a, b, out=out)
        _sync(device)
        reps, started = 0, time.perf_counter()
        while reps < 3 or time.perf_counter() - started < seconds:
            torch.mm(a, b, out=out)
            reps += 1
            if reps % 4 == 0 or reps < 4:
                _sync(device)
        _sync(device)
        elapsed = time.perf_counter() - started
    finally:
        seeding.set_tf32(*before)
    return 2.0 * n ** 3 * reps / elapsed / 1e12


def _weights(result: TrialResult) -> dict[str, torch.Tensor]:
    assert result.checkpoint is not None
    state = torch.load(io.BytesIO(result.checkpoint), map_location="cpu", weights_only=True)
    model: dict[str, torch.Tensor] = state["model"]
    return model


def _untimed(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """Every epoch's metrics but its timing (`epoch_seconds`), which never repeats."""
    return [{k: v for k, v in epoch.items() if not k.endswith("_seconds")} for epoch in history]


def _finished(results: list[TrialResult], what: str) -> dict[str, TrialResult]:
    for r in results:
        if r.status != "finished":
            raise RuntimeError(f"{what}: trial {r.spec.seed_label} ended {r.status}: "
                               f"{r.reason[-500:]}")
    return {r.spec.trial_id: r for r in results}


@dataclass(frozen=True)
class Row:
    """One lane count's measurements."""

    lanes: int
    epochs: int
    seconds: float  # build, train, finish: the first run of the group
    train_seconds: float  # of which the epochs (training, validation, diagnostics)
    finish_seconds: float  # of which finishing the lanes (after the last epoch's metrics)
    model_epochs_per_second: float
    tflops: float  # training steps only (model_epoch_flops)
    percent_of_matmul: float  # of the torch.mm rate (fp32, or TF32) measured in the same run
    peak_memory_bytes: int
    repeat_bitwise: int  # lanes whose weights (fingerprint) and metrics repeat exactly
    test_accuracy: float  # mean over lanes
    serial_lanes: int  # lanes also trained by the serial engine
    serial_accuracy_delta: float  # largest |Δ test accuracy| against serial
    serial_weight_rel: float  # largest ‖Δw‖/‖w‖ over weight tensors against serial
    serial_agrees: bool  # every weight tensor within WEIGHT_RTOL·‖w‖ + WEIGHT_ATOL


def _compare(stacked: dict[str, TrialResult],
             serial: dict[str, TrialResult]) -> tuple[float, float, bool]:
    accuracy_delta, weight_rel, agrees = 0.0, 0.0, True
    for trial_id, s in serial.items():
        t = stacked[trial_id]
        accuracy_delta = max(accuracy_delta,
                             abs(t.final["test_accuracy"] - s.final["test_accuracy"]))
        got = _weights(t)
        for name, expected in _weights(s).items():
            error = float((got[name].double() - expected.double()).norm())
            size = float(expected.double().norm())
            weight_rel = max(weight_rel, error / size if size else error)
            agrees = agrees and error <= WEIGHT_RTOL * size + WEIGHT_ATOL
    return accuracy_delta, weight_rel, agrees


@dataclass(frozen=True)
class _GroupRun:
    results: list[TrialResult]
    seconds: float  # engine.run from its call to its last result
    train_seconds: float  # the epochs, as the engine times them (epoch_seconds × lanes)
    finish_seconds: float  # after the last epoch's metrics: test split, fingerprints, ...


def _run_group(specs: list[TrialSpec], device: torch.device, *, keep_checkpoints: bool,
               threads: int | None) -> _GroupRun:
    """Train `specs` as one group of as many lanes, timed end to end."""
    lanes = len(specs)
    engine = make_engine("stacked", device, keep_checkpoints=keep_checkpoints,
                         population=specs, max_lanes=lanes, fixed_lanes=lanes, threads=threads)
    clock = _Clock()
    _sync(device)
    started = time.perf_counter()
    results = list(engine.run(specs, clock))
    _sync(device)
    ended = time.perf_counter()
    train = sum(epoch.get("epoch_seconds", 0.0) for epoch in results[0].history) * lanes
    return _GroupRun(results, ended - started, train, ended - clock.last_epoch_at)


def run_benchmark(device: torch.device, lane_counts: Sequence[int], epochs: int,
                  examples: int, serial_lanes: int, matmul_size: int,
                  threads: int | None = None, precision: str = "fp32") -> dict[str, Any]:
    """Measure every lane count; returns {"rows": [Row...], "numerics": {...}, ...}.
    `precision`: fp32, or tf32 on a GPU that has it (`--precision`, as `nnbench run`'s)."""
    flags = seeding.configure_determinism(precision, device)  # as `nnbench run` trains
    with torch_threads(device, threads, "stacked"):  # the threads the stacked engine uses
        mm_fp32 = matmul_tflops(device, matmul_size)
        mm_tf32 = matmul_tflops(device, matmul_size, tf32=True) if device.type == "cuda" \
            else None
    # the rate of the precision trained in: TF32's where it is allowed (a GPU that has it)
    mm_rate = mm_tf32 if precision == "tf32" and mm_tf32 else mm_fp32
    # warm-up outside the timings: the data generated and checked, the engines' first calls
    registry.build("dataset", trials(1, epochs, examples)[0].dataset, seed=0,
                   device=torch.device("cpu"))
    _run_group(trials(2, 1, 128), device, keep_checkpoints=True, threads=threads)
    # the reference: the first lanes, one at a time (a lane is the same trial in every group)
    reference = trials(max(lane_counts), epochs, examples)[:serial_lanes]
    _sync(device)
    started = time.perf_counter()
    serial_results = list(make_engine("serial", device, keep_checkpoints=True)
                          .run(reference, _Clock()))
    _sync(device)
    serial_seconds = time.perf_counter() - started
    serial = _finished(serial_results, "serial engine")
    peak = _PeakMemory(device)
    rows, numerics = [], None
    for lanes in lane_counts:
        specs = trials(lanes, epochs, examples)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        peak.reset()
        run = _run_group(specs, device, keep_checkpoints=False, threads=threads)
        peak_bytes = peak.read()
        first, seconds = run.results, run.seconds
        timed = _finished(first, f"{lanes} lanes")
        repeat = _finished(
            _run_group(specs, device, keep_checkpoints=True, threads=threads).results,
            f"{lanes} lanes, repeated")
        same = sum(repeat[k].fingerprint == r.fingerprint and repeat[k].final == r.final
                   and _untimed(repeat[k].history) == _untimed(r.history)
                   for k, r in timed.items())
        accuracy_delta, weight_rel, agrees = _compare(
            repeat, {k: s for k, s in serial.items() if k in repeat})
        model_epochs = lanes * epochs / seconds
        tflops = model_epochs * model_epoch_flops(examples) / 1e12
        numerics = first[0].numerics
        rows.append(Row(
            lanes=lanes, epochs=epochs, seconds=seconds, train_seconds=run.train_seconds,
            finish_seconds=run.finish_seconds, model_epochs_per_second=model_epochs,
            tflops=tflops,
            percent_of_matmul=100 * tflops / mm_rate,
            peak_memory_bytes=peak_bytes, repeat_bitwise=same,
            test_accuracy=sum(r.final["test_accuracy"] for r in first) / lanes,
            serial_lanes=min(serial_lanes, lanes), serial_accuracy_delta=accuracy_delta,
            serial_weight_rel=weight_rel, serial_agrees=agrees))
        del run, first, timed, repeat
    assert numerics is not None
    # the data is held once whatever the split seeds: the same group with one split seed,
    # then with as many as it has lanes (up to SPLITS), one epoch each
    lanes = min(lane_counts)
    splits = min(SPLITS, lanes)
    seeds_peak = []
    for n in (1, splits):
        if device.type == "cuda":
            torch.cuda.empty_cache()
        peak.reset()
        _finished(_run_group(trials(lanes, 1, examples, n), device, keep_checkpoints=False,
                             threads=threads).results, f"{lanes} lanes, {n} split seeds")
        seeds_peak.append(peak.read())
    return {
        "rows": [asdict(r) for r in rows],
        "workload": {"model": f"MLP {'-'.join(map(str, (INPUT, *HIDDEN, CLASSES)))}",
                     "activation": "relu", "init": "kaiming_normal",
                     "optimizer": "sgd, momentum 0.9, lr 0.005·2^((lane mod 8)/4)",
                     "batch_size": BATCH_SIZE, "epochs": epochs, "train_examples": examples,
                     "data": f"generated by {DATASET}, one split shared by every lane",
                     "flops_per_model_epoch": model_epoch_flops(examples)},
        "numerics": {"engine": numerics.engine, "precision": numerics.precision,
                     "threads": numerics.threads, "device": _device_name(device),
                     "torch": torch.__version__, "cuda": torch.version.cuda or "",
                     "python": platform.python_version(), **flags},
        "matmul": {"size": matmul_size, "fp32_tflops": mm_fp32, "tf32_tflops": mm_tf32,
                   "percent_of": "TF32" if mm_rate is mm_tf32 else "fp32"},
        "memory": peak.label,
        "split_seeds": {"lanes": lanes, "splits": splits, "one_bytes": seeds_peak[0],
                        "many_bytes": seeds_peak[1], "ratio": seeds_peak[1] / seeds_peak[0]},
        "serial": {"lanes": len(serial), "seconds": serial_seconds,
                   "model_epochs_per_second": len(serial) * epochs / serial_seconds},
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return f"cpu ({model or platform.machine()}, {os.cpu_count()} cores)"


# -- the table ---------------------------------------------------------------------------------

def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _build_seconds(row: dict[str, Any]) -> float:
    return float(row["seconds"] - row["train_seconds"] - row["finish_seconds"])


def format_table(out: dict[str, Any]) -> str:
    """The result as plain text: the workload, one row per lane count, the numerics."""
    w, num, mm, serial = out["workload"], out["numerics"], out["matmul"], out["serial"]
    rows, seeds = out["rows"], out["split_seeds"]
    tf32 = num["precision"] == "tf32"
    header = ["lanes", "seconds", "build+train+finish", "model-epochs/s", "TFLOP/s",
              f"% of mm {mm['percent_of']}",
              out["memory"], "bitwise repeat", "test acc",
              "vs serial |Δacc|", "vs serial ‖Δw‖/‖w‖"]
    body = [[str(r["lanes"]), f"{r['seconds']:.2f}",
             f"{_build_seconds(r):.2f}+{r['train_seconds']:.2f}+{r['finish_seconds']:.2f}",
             f"{r['model_epochs_per_second']:.2f}",
             f"{r['tflops']:.3f}", f"{r['percent_of_matmul']:.1f}",
             _mib(r["peak_memory_bytes"]),
             f"{'yes' if r['repeat_bitwise'] == r['lanes'] else 'NO'} "
             f"({r['repeat_bitwise']}/{r['lanes']})",
             f"{r['test_accuracy']:.4f}", f"{r['serial_accuracy_delta']:.4f}",
             f"{r['serial_weight_rel']:.1e} "
             + ("(tf32)" if tf32 else "ok" if r["serial_agrees"] else "over 1e-5")]
            for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        f"nnbench GPU benchmark: {w['model']}, {w['train_examples']:,} training examples "
        f"({w['data']}), batch {w['batch_size']}, {w['optimizer']}; "
        f"{w['epochs']} epoch{'s' if w['epochs'] != 1 else ''}; "
        f"stacked engine end to end (build, train, finish)",
        "  ".join(h.rjust(n) for h, n in zip(header, widths, strict=True)),
        *("  ".join(c.rjust(n) for c, n in zip(line, widths, strict=True)) for line in body),
        f"TFLOP/s: training steps only, {w['flops_per_model_epoch'] / 1e9:.2f} GFLOP per "
        f"model-epoch (forward 2·Σ fan_in·fan_out per example, backward twice that)",
        f"matrix product (torch.mm {mm['size']}², measured in this run): fp32 "
        f"{mm['fp32_tflops']:.2f} TFLOP/s"
        + (f", TF32 {mm['tf32_tflops']:.2f} TFLOP/s" if mm["tf32_tflops"] else ""),
        f"split seeds ({out['memory']}, {seeds['lanes']} lanes, 1 epoch): 1 seed "
        f"{_mib(seeds['one_bytes'])}, {seeds['splits']} seeds {_mib(seeds['many_bytes'])} "
        f"({seeds['ratio']:.2f}×; the data is held once, splits are rows)",
        f"serial engine (the reference, {serial['lanes']} "
        f"lane{'s' if serial['lanes'] != 1 else ''}): "
        f"{serial['model_epochs_per_second']:.2f} model-epochs/s; agreement: each weight "
        + ("tensor's ‖Δw‖/‖w‖ (not checked: TF32 rounds every product's inputs to a 10-bit "
           "mantissa, so the stacked and serial sums part sooner than fp32's 1e-5)" if tf32
           else "tensor within 1e-5·‖w‖ + 1e-6"),
        f"numerics: engine {num['engine']}, precision {num['precision']}, threads "
        f"{num['threads']}, device {num['device']}, torch {num['torch']}"
        + (f" (CUDA {num['cuda']})" if num["device"].startswith("cuda") else "")
        + f", deterministic algorithms {num['use_deterministic_algorithms']}, "
          f"cuda.matmul.allow_tf32 {num['cuda.matmul.allow_tf32']}",
    ]
    return "\n".join(lines)


# -- the command -------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.gpu",
        description="nnbench's stacked engine end to end on an MNIST-shaped MLP: "
                    "model-epochs/s, TFLOP/s, memory, bitwise repeat, agreement with serial")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--lanes", type=int, nargs="+", default=None,
                        help=f"lane counts (default {list(FULL.lanes)}; smoke {list(SMOKE.lanes)})")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs per trial (default {FULL.epochs})")
    parser.add_argument("--examples", type=int, default=None,
                        help=f"training examples (default {FULL.examples:,})")
    parser.add_argument("--serial-lanes", type=int, default=None,
                        help="lanes also trained by the serial engine (default 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: the engine's policy)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes for a CPU check in seconds: 2 and 4 lanes, 1 epoch, "
                             "512 examples")
    parser.add_argument("--precision", choices=seeding.PRECISIONS, default="fp32",
                        help="of the matrix products (fp32, or tf32 on an Ampere or later "
                             "GPU), as `nnbench run --precision`")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    try:
        device = resolve_device(args.device or "auto")
    except ValueError as err:  # no GPU, or an environment that breaks the bitwise repeat
        parser.error(f"--device {args.device or 'auto'}: {err}")
    problem = seeding.tf32_problem(device) if args.precision == "tf32" else None
    if problem is not None:
        parser.error(f"--precision tf32 (--device {device}): {problem}")
    lanes: list[int] = args.lanes or list(sizes.lanes)
    epochs: int = sizes.epochs if args.epochs is None else args.epochs
    examples: int = sizes.examples if args.examples is None else args.examples
    serial_lanes: int = sizes.serial_lanes if args.serial_lanes is None else args.serial_lanes
    if min(lanes) < 1 or epochs < 1 or examples < BATCH_SIZE or serial_lanes < 0:
        parser.error(f"lanes and epochs must be at least 1, examples at least {BATCH_SIZE}, "
                     f"serial lanes at least 0")
    matmul_size = sizes.matmul[device.type]
    out = run_benchmark(device, lanes, epochs, examples, min(serial_lanes, min(lanes)),
                        matmul_size, args.threads, args.precision)
    print(format_table(out))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if all(r["repeat_bitwise"] == r["lanes"] for r in out["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
