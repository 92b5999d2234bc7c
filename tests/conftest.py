"""Shared fixtures: a tiny suite that trains in about a second, and a private MLflow store."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# MLflow must not phone home from tests (the machines have no internet).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

REPO = Path(__file__).resolve().parent.parent

TINY_SUITE = """\
name: {name}
description: tiny suite for tests
task:
  dataset: {{name: mnist1d, num_samples: 600, val_fraction: 0.2}}
  model: {{name: mlp, hidden: [16]}}
  loss: cross_entropy
  metric: val_accuracy
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}
  epochs: {epochs}
  batch_size: 32
grid:
  activation: [tanh, relu]
seeds: {seeds}
"""


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[..., Path]:
    """Write a suite file: the tiny suite by default, or the given YAML text."""

    def write(text: str | None = None, *, name: str = "tiny", epochs: int = 3, seeds: int = 2,
              filename: str | None = None) -> Path:
        body = textwrap.dedent(text) if text is not None else TINY_SUITE.format(
            name=name, epochs=epochs, seeds=seeds)
        path = tmp_path / (filename or f"{name}.yaml")
        path.write_text(body, encoding="utf-8")
        return path

    return write


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write mlflow.db or reports/ into the repository."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
