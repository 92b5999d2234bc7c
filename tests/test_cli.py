"""The `nnbench` command: list, show, validate, run, report."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nnbench import cli
from tests.conftest import REPO


def test_list_shows_every_kind_with_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for kind, name in [("activation", "relu"), ("init", "kaiming_normal"), ("optimizer", "adam"),
                       ("schedule", "step"), ("loss", "cross_entropy"), ("dataset", "mnist1d"),
                       ("model", "mlp")]:
        assert kind in out
        assert name in out
    assert "lr: float = 0.01 (learning rate, per step)" in out


def test_list_filters_by_kind_and_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "optimizer", "ad*"]) == 0
    out = capsys.readouterr().out
    assert "adam" in out
    assert "sgd" not in out


def test_list_one_kind_in_a_fresh_process() -> None:
    out = subprocess.run([sys.executable, "-m", "nnbench.cli", "list", "optimizer"],
                         capture_output=True, text=True, check=True).stdout
    assert "sgd" in out
    assert "momentum: float = 0.0" in out
    assert "relu" not in out


def test_list_unknown_kind_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "optimiser"]) == 2
    assert "did you mean 'optimizer'?" in capsys.readouterr().err


def test_validate_and_show_the_default_suite(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(REPO / "suites" / "default.yaml")
    assert cli.main(["validate", path]) == 0
    assert "6 configurations × 4 seeds = 24 trials" in capsys.readouterr().out
    assert cli.main(["show", path]) == 0
    out = capsys.readouterr().out
    assert "default: 24 trials" in out
    assert out.count("xavier_normal") == 12
    assert out.count("sigmoid") == 8


def test_two_suites_with_one_name_are_rejected(write_suite: Callable[..., Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    first, second = write_suite(filename="a.yaml"), write_suite(filename="b.yaml")
    assert cli.main(["validate", str(first), str(second)]) == 2
    assert "share the name(s) ['tiny']" in capsys.readouterr().err


def test_run_prints_where_the_report_and_store_are(write_suite: Callable[..., Path],
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite(epochs=2, seeds=1)
    assert cli.main(["run", str(path), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    report = tmp_path / "reports" / "tiny.html"
    assert f"report: {report}" in captured.out
    assert f"MLflow store: sqlite:///{tmp_path / 'mlflow.db'}" in captured.out  # MLflow's default
    assert "mlflow ui --backend-store-uri" in captured.out
    runs = "MLflow runs: http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"
    assert runs in captured.out  # the suite's experiment, the first one of a fresh store
    assert report.exists()
    assert "[2/2]" in captured.err  # one line per finished trial

    report.unlink()
    assert cli.main(["run", str(path), "--device", "cpu"]) == 0  # nothing to train ...
    assert "0 to train" in capsys.readouterr().err
    assert report.exists()  # ... and the report is rendered again


def test_report_command_rebuilds_from_mlflow(write_suite: Callable[..., Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite(epochs=2, seeds=1)
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert cli.main(["run", str(path), "--tracking-uri", uri, "--report-dir", "out"]) == 0
    (tmp_path / "out" / "tiny.html").unlink()
    assert cli.main(["report", str(path), "--tracking-uri", uri, "--report-dir", "out"]) == 0
    assert "report:" in capsys.readouterr().out
    assert "activation=tanh" in (tmp_path / "out" / "tiny.html").read_text()


def test_cuda_without_gpu_is_a_usage_error(write_suite: Callable[..., Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert cli.main(["run", str(write_suite()), "--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()
