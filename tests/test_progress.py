"""Progress a user reads while a long group trains: a line at most every 10 s with the
epoch reached, the trials still training, the best validation value so far and the time
left, made of the values the engine hands over per epoch (no extra host syncs), printed
as lines so that a piped run (CI logs, `nox -s ablate > log`) says how far it is."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from nnbench.config import load_suite
from nnbench.runner import _Pace, run_suite


def test_a_line_every_ten_seconds_with_epoch_trials_best_and_time_left(
        write_suite: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])  # the clock _Pace reads
    specs = load_suite(write_suite(epochs=30)).trials()
    pace = _Pace()
    for n in range(1, 4):
        pace.started(n)  # a group of three lanes
    lines = []
    for epoch in range(1, 31):
        clock[0] += 4.0  # 4 s per epoch of the group
        for i, spec in enumerate(specs[:3]):
            value = 0.5 + 0.01 * epoch - 0.1 * i if epoch < 20 else float("nan")
            lines.append(pace.epoch(spec, {"epoch": epoch, "val_accuracy": value}, 3))
    printed = [line for line in lines if line]
    assert len(printed) == 10  # 120 s of training: a line once 10 s passed, every 3 epochs
    assert printed[0] == ("epoch 3/30 | 3 trials training | best val_accuracy so far "
                          "0.5300 | about 1 min 48 s left")  # 12 s for 3 epochs, 27 to go
    # nan is never the best; at the last epoch, the finish is left, not "about 0 s"
    assert printed[-1] == ("epoch 30/30 | 3 trials training | best val_accuracy so far "
                           "0.6900 | finishing")


def test_a_piped_run_prints_progress_lines(write_suite: Callable[..., Path],
                                           tracking_uri: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Pace, "every", 0.0)  # a line at every epoch of this tiny suite
    console = Console(record=True, width=200, force_terminal=False)
    suite = load_suite(write_suite(epochs=2))
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=console)
    text = console.export_text()
    lines = re.findall(r"^epoch (\d)/2 \| (\d) trials? training \| best val_accuracy so far "
                       r"0\.\d{4} \| (about \d+ s left|finishing)$", text, re.M)
    # the suite's 4 trials as lanes of one group; at the last epoch no "about 0 s left"
    assert {(epoch, lanes, tail.split()[0]) for epoch, lanes, tail in lines} == {
        ("1", "4", "about"), ("2", "4", "finishing")}, text[-2000:]


def test_tuning_prints_progress_lines_while_a_batch_trains(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stacked batch of 4 trials of 600 epochs printed nothing for 28 s."""
    from nnbench.tuning import tune_suite
    from tests.test_tuning import _suite

    monkeypatch.setattr(_Pace, "every", 0.0)  # a line at every epoch of this tiny suite
    console = Console(record=True, width=200, force_terminal=False)
    suite = load_suite(_suite(tmp_path / "t.yaml", epochs=2, trials=3, seeds=1,
                              optimizers="[sgd]"))
    tune_suite(suite, tracking_uri=tracking_uri, device="cpu", console=console)
    text = console.export_text()
    # prefixed with the study, as the lines of its trials are
    lines = re.findall(r"^tuned/\S+: epoch (\d)/2 \| 3 trials training \| best "
                       r"val_accuracy so far 0\.\d{4} \| (about \d+ s left|finishing)$",
                       text, re.M)
    assert ("2", "finishing") in lines and ("1", "finishing") not in lines, text[-2000:]
