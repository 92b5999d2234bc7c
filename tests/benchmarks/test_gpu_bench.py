"""The GPU benchmark's command (tests/benchmarks/gpu.py) at its smoke size on the CPU, as a
fresh process in which MLflow, Optuna, mnist1d and nnbench's other heavy dependencies
cannot be imported: the command needs only torch, numpy, pyyaml and pydantic. Runs in
`nox -s tests`; the full size is `nox -s gpu-bench` on a GPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnbench import registry, seeding
from nnbench.testing import check_component, isolated_registry
from tests.benchmarks import gpu
from tests.conftest import REPO

# what a GPU machine may lack: everything nnbench depends on beyond torch, numpy, pyyaml and
# pydantic (an import of any of these raises ImportError in the benchmark's process)
BLOCKED = ("mlflow", "optuna", "mnist1d", "sklearn", "scipy", "pandas", "seaborn",
           "matplotlib", "torchvision", "jinja2", "rich", "psutil", "sqlalchemy", "submitit")
RUN = """\
import runpy, sys
for name in {blocked!r}:
    sys.modules[name] = None
sys.argv = ["python -m tests.benchmarks.gpu", *{args!r}]
runpy.run_module("tests.benchmarks.gpu", run_name="__main__", alter_sys=True)
"""


def test_smoke_size_runs_without_mlflow_optuna_or_mnist1d(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--smoke", "--json", str(out)]
    done = subprocess.run([sys.executable, "-c", RUN.format(blocked=BLOCKED, args=args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    rows = {r["lanes"]: r for r in result["rows"]}
    assert sorted(rows) == list(gpu.SMOKE.lanes)
    lines = done.stdout.splitlines()
    for lanes, row in rows.items():
        assert math.isfinite(row["model_epochs_per_second"]) and row["model_epochs_per_second"] > 0
        assert row["tflops"] > 0 and row["percent_of_matmul"] > 0
        assert 0 < row["train_seconds"] + row["finish_seconds"] <= row["seconds"]
        assert row["peak_memory_bytes"] > 0
        assert row["repeat_bitwise"] == lanes  # every lane's weights and metrics repeat
        assert row["serial_lanes"] == 2 and row["serial_agrees"], row
        assert row["serial_accuracy_delta"] <= 1e-4
        assert any(line.split()[:1] == [str(lanes)] and f"yes ({lanes}/{lanes})" in line
                   for line in lines), done.stdout
    seeds = result["split_seeds"]  # the smoke size: 2 lanes of 2 split seeds
    assert (seeds["lanes"], seeds["splits"]) == (2, 2) and seeds["many_bytes"] > 0
    assert "split seeds (peak resident set" in done.stdout and "2 seeds" in done.stdout
    numerics = result["numerics"]
    assert (numerics["engine"], numerics["precision"]) == ("stacked", "fp32")
    assert numerics["device"].startswith("cpu")
    assert "model-epochs/s" in done.stdout and "numerics: engine stacked" in done.stdout


def test_flop_count_matches_the_issue() -> None:
    # issue 21: 81.9 model-epochs/s at 512 lanes on 54k examples is 6.2 TFLOP/s
    assert gpu.model_epoch_flops(54_000) == 6 * (784 * 256 + 256 * 128 + 128 * 10) * 54_000
    assert round(81.9 * gpu.model_epoch_flops(54_000) / 1e12, 1) == 6.2


def test_generated_dataset_meets_the_contract() -> None:
    with isolated_registry():
        gpu.register_dataset()
        check_component(registry.get("dataset", gpu.DATASET))
        (spec,) = gpu.trials(1, 1, 540)
        data = registry.build("dataset", spec.dataset, seed=0, device=torch.device("cpu"))
        assert data.sizes() == {"train": 540, "val": 60, "test": 100}
        assert data.input_shape == (784,) and data.num_classes == 10


def test_tf32_is_refused_on_a_cpu_and_labelled_where_it_runs(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--precision tf32` on a CPU is a usage error; on a device that has TF32 (here the CPU,
    told it has) the numerics and the table say tf32, the share is of the rate measured
    (fp32's where the device has no TF32 rate) and agreement is not held to fp32's 1e-5."""
    with pytest.raises(SystemExit) as exit_:
        gpu.main(["--device", "cpu", "--smoke", "--precision", "tf32"])
    assert exit_.value.code == 2
    assert "--precision tf32 (--device cpu): TensorFloat-32 runs on NVIDIA GPUs" in \
        capsys.readouterr().err
    monkeypatch.setattr(seeding, "tf32_problem", lambda _device: None)
    try:
        out = gpu.run_benchmark(torch.device("cpu"), [2], 1, 256, 2, 64, threads=1,
                                precision="tf32")
    finally:
        seeding.configure_determinism()
    assert out["numerics"]["precision"] == "tf32"
    assert out["numerics"]["cuda.matmul.allow_tf32"] == "True"
    table = gpu.format_table(out)
    assert "% of mm fp32" in table and "(tf32)" in table, table
    assert "not checked: TF32 rounds every product's inputs" in table, table
    assert "numerics: engine stacked, precision tf32" in table
