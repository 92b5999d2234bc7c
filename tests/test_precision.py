"""`--precision`: fp32 (default) or tf32 on a GPU that has TensorFloat-32; part of each
trial's numerics, refused where it cannot run, handed to the workers.

No GPU here: where a test needs one that has TF32, the capability check
(`seeding.tf32_problem`) is told the device has it; everything after it is nnbench's own
path (flags, numerics, MLflow tags, report)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient
from rich.console import Console

from nnbench import cli, seeding
from nnbench.config import load_suite
from nnbench.report import render_report
from nnbench.runner import run_suite
from tests.conftest import REPO

CUDA = torch.device("cuda")
BACKENDS: Any = torch.backends  # (fp32_precision: not in torch's type stubs)


@pytest.fixture(autouse=True)
def _fp32_after() -> Iterator[None]:
    """Every test leaves the process's flags as nnbench's default (fp32)."""
    generic = BACKENDS.fp32_precision
    yield
    BACKENDS.fp32_precision = generic
    seeding.configure_determinism()


@pytest.mark.parametrize("before", ["legacy flags", "matmul precision", "generic setting"])
def test_whatever_set_tf32_before_the_precision_is_set_and_read_without_error(
        before: str) -> None:
    """A plugin or the user's code may have set TensorFloat-32 either way torch allows before
    nnbench sets its precision. After the per-backend setting (torch 2.9 and later) reading
    the legacy flags raised RuntimeError, in nnbench and in torch itself (torch.export of a
    model to log): nnbench unsets it, then sets the legacy flags, and both read the same."""
    if before == "legacy flags":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif before == "matmul precision":
        torch.set_float32_matmul_precision("high")
    else:
        BACKENDS.fp32_precision = "tf32"
    flags = seeding.configure_determinism()
    assert (flags["cuda.matmul.allow_tf32"], flags["cudnn.allow_tf32"]) == ("False", "False")
    assert seeding.tf32_allowed() == (False, False)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision()) == (False, False, "highest")
    assert BACKENDS.cuda.matmul.fp32_precision == "ieee"  # the per-backend reading agrees
    exported = torch.export.export(torch.nn.Conv1d(1, 1, 1), (torch.ones(1, 1, 2),))
    assert exported.module()(torch.ones(1, 1, 2)).shape == (1, 1, 2)  # torch reads them too


def _gpu_of_capability(monkeypatch: pytest.MonkeyPatch, major: int) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _device=None: (major, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name",
                        lambda _device=None: {7: "Tesla V100", 9: "NVIDIA H200"}[major])


def test_tf32_runs_only_on_a_gpu_of_capability_8_or_later(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = seeding.tf32_problem(torch.device("cpu"))
    assert cpu == ("TensorFloat-32 runs on NVIDIA GPUs of compute capability 8.0 or later "
                   "(Ampere, Hopper); the device is cpu, which computes fp32 whatever is "
                   "asked; allowed here: fp32")
    _gpu_of_capability(monkeypatch, 7)
    assert seeding.tf32_problem(CUDA) == (
        "TensorFloat-32 runs on NVIDIA GPUs of compute capability 8.0 or later (Ampere, "
        "Hopper); Tesla V100 has 7.0; allowed here: fp32")
    with pytest.raises(ValueError, match=r"Tesla V100 has 7\.0"):
        seeding.configure_determinism("tf32", CUDA)
    _gpu_of_capability(monkeypatch, 9)
    assert seeding.tf32_problem(CUDA) is None
    with pytest.raises(ValueError, match=r"unknown precision 'bf16'; allowed: fp32, tf32"):
        seeding.configure_determinism("bf16")


def test_the_flags_and_the_recorded_precision_follow_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _gpu_of_capability(monkeypatch, 9)
    flags = seeding.configure_determinism("tf32", CUDA)
    assert (flags["cuda.matmul.allow_tf32"], flags["cudnn.allow_tf32"]) == ("True", "True")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision()) == (True, True, "high")
    assert seeding.precision_on(CUDA) == "tf32"
    assert seeding.precision_on(torch.device("cpu")) == "fp32"  # a CPU computes fp32
    flags = seeding.configure_determinism()
    assert (flags["cuda.matmul.allow_tf32"], flags["cudnn.allow_tf32"]) == ("False", "False")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision()) == (False, False, "highest")
    assert seeding.precision_on(CUDA) == "fp32"


@pytest.mark.parametrize("command", ["run", "tune", "worker", "bench", "submit"])
def test_tf32_on_a_cpu_is_refused_before_anything_is_created(
        command: str, write_suite: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(epochs=1, seeds=1)
    extra = ["--local"] if command == "submit" else []
    assert cli.main([command, str(suite), "--storage", f"sqlite:///{tmp_path / 'optuna.db'}",
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--device",
                     "cpu", "--precision", "tf32", *extra]) == 2
    err = capsys.readouterr().err
    assert "--precision tf32 (--device 'cpu'): TensorFloat-32 runs on NVIDIA GPUs of " \
           "compute capability 8.0 or later" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [suite.name]  # nothing created


def test_an_unknown_precision_is_refused_with_the_choices(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "s.yaml", "--precision", "fp16"])
    assert exit_.value.code == 2
    assert "argument --precision: invalid choice: 'fp16' (choose from fp32, tf32)" in \
        capsys.readouterr().err.replace("'fp32', 'tf32'", "fp32, tf32")


@pytest.mark.parametrize("engine", ["serial", "stacked"])
def test_a_tf32_run_records_its_precision_in_every_trial_and_the_report(
        engine: str, write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Trained here on the CPU, told it has TF32 (the numbers are fp32's: only the path
    from the setting to what users read is checked)."""
    monkeypatch.setattr(seeding, "tf32_problem", lambda _device: None)
    suite = load_suite(write_suite(epochs=1, seeds=1))
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, engine=engine,
                        precision="tf32", console=Console(quiet=True))
    assert summary.statuses == {"finished": 2}  # tanh, relu
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(suite.name)
    assert experiment is not None
    trials = client.search_runs([experiment.experiment_id], "tags.`nnbench.role` = 'trial'")
    assert [r.data.tags["nnbench.precision"] for r in trials] == ["tf32"] * 2
    (invocation,) = client.search_runs([experiment.experiment_id],
                                       "tags.`nnbench.role` = 'suite'")
    tags = invocation.data.tags
    assert (tags["nnbench.deterministic.cuda.matmul.allow_tf32"],
            tags["nnbench.deterministic.cudnn.allow_tf32"]) == ("True", "True")
    html = render_report(suite, tracking_uri=tracking_uri,
                         report_dir=tmp_path / "reports").read_text()
    label = f"{engine}{'×2' if engine == 'stacked' else ''} tf32 1 thread"
    assert label in html, label


def test_workers_get_the_coordinators_precision(
        write_suite: Callable[..., Path], tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from nnbench import workers

    monkeypatch.setattr(seeding, "tf32_problem", lambda _device: None)
    started: list[list[str]] = []

    def spawn_local(_suite_path: str, options: list[str], n: int, *_: object,
                    **__: object) -> list[int]:
        started.append(list(options))
        return [0] * n

    monkeypatch.setattr(workers, "spawn_local", spawn_local)
    path = write_suite(epochs=1, seeds=1)
    for precision in ("fp32", "tf32"):
        run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri, workers=2,
                  engine="serial", precision=precision, console=Console(quiet=True))
    assert [o[o.index("--precision") + 1] for o in started] == ["fp32", "tf32"]
    parser = cli._parser()
    for command in ("submit", "tune"):
        args = parser.parse_args([command, "s.yaml", "--storage", "sqlite:///q.db",
                                  "--precision", "tf32"])
        options = cli._worker_options(args, load_suite(REPO / "suites" / "default.yaml"),
                                      storage="sqlite:///q.db", tracking_uri="sqlite:///m.db")
        assert options[options.index("--precision") + 1] == "tf32"


def test_a_per_backend_setting_made_after_nnbench_set_its_precision_is_read_back() -> None:
    """A plugin may set cuDNN's convolutions per backend after configure_determinism (in its
    model's build, say): the legacy reading then raises in torch 2.9 and later, and the
    next trial's numerics must still be read."""
    seeding.configure_determinism()
    BACKENDS.cudnn.conv.fp32_precision = "tf32"
    assert seeding.tf32_allowed() == (False, True)
    assert seeding.precision_on(torch.device("cpu")) == "fp32"
