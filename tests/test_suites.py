"""The suites in suites/: every one validates, and every one runs to completion in a
CI-sized variant (epochs and seeds shrunk, every configuration kept). The torchvision
suites run on tiny files in the datasets' real formats (the `vision_data` fixture)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nnbench import cli
from nnbench.config import load_suite
from nnbench.train import train_trial
from tests.conftest import REPO

SUITES = sorted((REPO / "suites").glob("*.yaml"))
NOTES_SUITES = {"seed_bn_circles", "seed_l2", "seed_optimizers", "seed_activations",
                "seed_inits", "seed_schedules", "seed_regularization", "seed_augmentation",
                "seed_mnist_mlp", "seed_cifar10_mlp"}
CI_EPOCHS = 3


def test_every_suite_of_the_notes_is_there() -> None:
    assert {p.stem for p in SUITES} >= NOTES_SUITES | {"default"}


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_validates(path: Path, vision_data: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """With the torchvision suites' files in place (validate refuses them missing, as run
    would: tests/data/test_checks.py)."""
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert f"{path}: ok" in capsys.readouterr().out
    assert load_suite(path).name == path.stem


@pytest.mark.slow
@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_runs_in_a_ci_sized_variant(path: Path, vision_data: Path) -> None:
    suite = load_suite(path)
    configurations = suite.configurations()
    for spec in configurations:
        small = replace(spec, epochs=min(spec.epochs, CI_EPOCHS), seed=suite.seeds[0])
        result = train_trial(small, torch.device("cpu"))
        assert result.status == "finished", f"{spec.label(suite.varied_axes)}: {result.reason}"
        assert result.final, "test metrics missing"


def test_vision_suites_fail_before_training_when_data_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from nnbench.data import vision

    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path / "empty"))
    vision._load.cache_clear()
    path = REPO / "suites" / "seed_cifar10_mlp.yaml"
    assert cli.main(["run", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: task.dataset: dataset 'cifar10' not found" in err
    assert str(tmp_path / "empty" / "cifar-10-batches-py" / "data_batch_1") in err
    assert not (tmp_path / "mlflow.db").exists()  # nothing logged
