"""A second `nnbench run` of the default suite with nothing to do, against
`python -c "import torch"`, both as fresh processes, in one run (`nox -s benchmarks`,
group `noop-run`). The target: within about twice the import. (`nox -s ablate` adds
nox's own start-up, about half a second, to the first row.)"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nnbench import cli
from tests.benchmarks.scale import FULL
from tests.conftest import REPO


@pytest.fixture(scope="module")
def finished_default(tmp_path_factory: pytest.TempPathFactory,
                     mlflow_store: Callable[[Path], str]) -> tuple[Path, Path]:
    """The default suite run once to the end (1 epoch; at smoke size 2 seeds instead of 4),
    by `nnbench run` in this process: only the second run, a fresh process, is timed."""
    root = tmp_path_factory.mktemp("noop")
    raw = yaml.safe_load((REPO / "suites" / "default.yaml").read_text())
    raw["fixed"]["epochs"] = 1
    if not FULL:
        raw["seeds"] = 2  # the fewest its claims accept
    path = root / "default.yaml"
    path.write_text(yaml.safe_dump(raw))
    mlflow_store(root / "mlflow.db")  # the default store of a run in `root`
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert cli.main(["run", str(path)]) == 0
    return root, path


def _time(benchmark: Any, command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)

    result: subprocess.CompletedProcess[str] = benchmark.pedantic(run, rounds=5,
                                                                  warmup_rounds=1)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.benchmark(group="noop-run")
def test_second_run_with_nothing_to_do(benchmark: Any,
                                       finished_default: tuple[Path, Path]) -> None:
    root, path = finished_default
    result = _time(benchmark, [sys.executable, "-m", "nnbench.cli", "run", str(path)], root)
    assert "nothing changed since its report" in result.stderr


@pytest.mark.benchmark(group="noop-run")
def test_import_torch(benchmark: Any, tmp_path: Path) -> None:
    _time(benchmark, [sys.executable, "-c", "import torch"], tmp_path)
