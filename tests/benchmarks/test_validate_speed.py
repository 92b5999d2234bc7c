"""`nnbench validate suites/*.yaml` in a fresh process against `python -c "import torch"`.

Validation imports torch (the dry build trains one step of every configuration on tiny
tensors) and nothing heavier than what that needs (no MLflow, Optuna, pandas,
scikit-learn or torchvision: tests/config/test_corpus.py checks it). The target is
about twice the time of importing torch; compare the two rows of the `validate` group
(`nox -s benchmarks`). Building the first torch optimizer imports torch._dynamo
(`torch.optim.Optimizer.add_param_group` is wrapped by `torch._disable_dynamo`), which
is most of the difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

SUITES = sorted(str(p) for p in (REPO / "suites").glob("*.yaml"))
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def _run(argv: list[str], cwd: Path) -> str:
    # validate names missing dataset files: the torchvision suites' are the tiny ones
    env = {**ENV, "NNBENCH_DATA": os.environ.get("NNBENCH_DATA", "")}
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.benchmark(group="validate")
def test_import_torch(benchmark: Any, tmp_path: Path) -> None:
    """The baseline: a Python process that only imports torch."""
    benchmark.pedantic(_run, args=([sys.executable, "-c", "import torch"], tmp_path),
                       rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="validate")
def test_validate_every_suite(benchmark: Any, tmp_path: Path, vision_data: Path) -> None:
    """`nnbench validate suites/*.yaml`: every suite file, with its dry build."""
    out = benchmark.pedantic(_run, args=([sys.executable, "-m", "nnbench.cli", "validate",
                                          *SUITES], tmp_path),
                             rounds=5, iterations=1, warmup_rounds=1)
    assert out.count(": ok") == len(SUITES)
