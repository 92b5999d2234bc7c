"""Data hygiene (nnbench.data.hygiene): examples shared between splits, counted exactly, and
each split's class balance; printed before training, shown in the report's Setup, and an
error under `data: {on_leakage: error}`."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nnbench import cli, registry
from nnbench.config import load_suite
from nnbench.data import TensorData, hygiene
from nnbench.data.hygiene import (
    PAIRS,
    check_suites,
    dataset_hygiene,
    row_keys,
    split_counts,
    suite_datasets,
)

CPU = torch.device("cpu")
RNG = np.random.default_rng(0)
# 100 training examples and an official test split of 20; labels cycle through 4 classes
X, Y = RNG.normal(size=(100, 6)).astype(np.float32), np.arange(100) % 4
X_TEST, Y_TEST = RNG.normal(size=(20, 6)).astype(np.float32), np.arange(20) % 4
# planted: each of the first 5 test inputs 10 times among the training inputs (rows 0..49),
# so every seed's 90-example train split holds a copy of each: 5 of 20 test examples leak
X_PLANTED = X.copy()
X_PLANTED[:50] = np.repeat(X_TEST[:5], 10, axis=0)


def _shared(a: torch.Tensor, b: torch.Tensor) -> int:
    """Brute force: rows of `a` equal to some row of `b`."""
    if not len(a) or not len(b):
        return 0
    return int((a[:, None, :] == b[None, :, :]).all(dim=-1).any(dim=1).sum())


def _suite(tmp_path: Path, data: Path, extra: str = "", seeds: int = 1) -> Path:
    path = tmp_path / "leaky.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: leaky
        task:
          dataset: {{name: file, path: {data}}}
          model: {{name: mlp, hidden: [8]}}
          metric: test_accuracy
        fixed:
          optimizer: {{name: sgd, lr: 0.05}}
          epochs: 1
          batch_size: 32
        seeds: {seeds}
        """) + extra)
    return path


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    path = tmp_path / "planted.npz"
    np.savez(path, x=X_PLANTED, y=Y, x_test=X_TEST, y_test=Y_TEST)
    return path


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Forget this process's results, as a new process would (the disk cache stays)."""
    monkeypatch.setattr(hygiene, "_KEPT", {})
    return lambda: hygiene._KEPT.clear()


# -- keys and counts -------------------------------------------------------------------------

def test_row_keys_match_identical_rows_only() -> None:
    a = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [-0.0, 1.0, 2.0]])  # 12-byte rows
    b = torch.tensor([[3.0, 4.0, 5.0], [3.0, 4.0, 5.5]])
    ka, kb = row_keys(a, b)
    assert ka[0] == ka[2]  # -0.0 is 0.0
    assert kb[0] == ka[1]
    assert len({ka[0], ka[1], kb[1]}) == 3
    empty, ones = row_keys(np.zeros((0, 4), np.float32), np.ones((2, 4), np.float32))
    assert empty == [] and ones[0] == ones[1]


def test_rows_whose_hashes_collide_are_compared_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    # with every multiplier 1 a row's hash is the sum of its words: [1, 2] and [2, 1] collide
    monkeypatch.setattr(hygiene, "_multipliers", lambda n: np.ones(n, dtype=np.uint64))
    a = np.array([[1, 2], [5, 6]], dtype=np.uint64)
    b = np.array([[2, 1], [1, 2], [7, 7]], dtype=np.uint64)
    ka, kb = row_keys(a, b)
    assert ka[0] != kb[0]  # same hash, different rows
    assert ka[0] == kb[1]  # the same row
    wide = np.zeros((2, 8), dtype=np.uint64)  # 64-byte rows: compared by their SHA-256
    wide[0, :2], wide[1, :2] = (1, 2), (2, 1)
    kw, = row_keys(wide)
    assert kw[0] != kw[1]


def test_split_counts_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    x = {s: torch.as_tensor(rng.integers(0, 3, size=(n, 5)).astype(np.float32))
         for s, n in (("train", 300), ("val", 40), ("test", 60))}  # few values: many repeats
    data = TensorData.of(x_train=x["train"], y_train=torch.zeros(300, dtype=torch.int64),
                         x_val=x["val"], y_val=torch.zeros(40, dtype=torch.int64),
                         x_test=x["test"], y_test=torch.zeros(60, dtype=torch.int64),
                         targets="class", num_classes=1)
    counts = split_counts(data)
    assert counts.overlaps == tuple(_shared(x[split], x[other]) for split, other in PAIRS)
    assert counts.repeats == {s: len(v) - len(torch.unique(v, dim=0)) for s, v in x.items()}
    assert not counts.distinct


# -- a dataset's hygiene ----------------------------------------------------------------------

def test_planted_duplicates_are_counted_per_seed(tmp_path: Path, planted: Path,
                                                 fresh_process: Callable[[], None]) -> None:
    spec, seeds = suite_datasets(load_suite(_suite(tmp_path, planted, seeds=3)))[0]
    found = dataset_hygiene(spec, seeds)
    assert found.seeds == (0, 1, 2)
    assert found.sizes == {"train": 90, "val": 10, "test": 20}
    for i, seed in enumerate(seeds):  # every seed's own split, against brute force
        data = registry.build("dataset", spec.dataset, seed=seed, device=CPU)
        split = {"train": data.x_train, "val": data.x_val, "test": data.x_test}
        for overlap in found.overlaps:
            assert overlap.counts[i] == _shared(split[overlap.split], split[overlap.other])
    test_train = found.overlaps[0]
    assert test_train.counts == (5, 5, 5)
    assert test_train.text(seeds) == "5 of 20 test examples are also in train"
    val_train = found.overlaps[1]
    if len(set(val_train.counts)) > 1:  # the val split differs by seed: so may its count
        low, high = min(val_train.counts), max(val_train.counts)
        assert val_train.text(seeds).startswith(f"{low}–{high} of 10 val examples are also "
                                                f"in train (seed 0: {val_train.counts[0]}, ")
    # class balance of seed 0's split: the official test split cycles through 4 classes
    assert found.balance["test"] == (5, 5, 5, 5)
    train_val = [a + b for a, b in zip(found.balance["train"], found.balance["val"],
                                       strict=True)]
    assert train_val == [25, 25, 25, 25]
    data = registry.build("dataset", spec.dataset, seed=0, device=CPU)
    assert found.balance["val"] == tuple(torch.bincount(data.y_val, minlength=4).tolist())
    assert found.balance_text("test") == "0: 5, 1: 5, 2: 5, 3: 5"


def test_clean_data_is_counted_once_for_every_seed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   fresh_process: Callable[[], None]) -> None:
    np.savez(tmp_path / "clean.npz", x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    spec, seeds = suite_datasets(load_suite(_suite(tmp_path, tmp_path / "clean.npz",
                                                   seeds=4)))[0]
    built: list[int] = []
    build = registry.build

    def counting(kind: str, value: Any, **kwargs: Any) -> Any:
        built.append(kwargs["seed"])
        return build(kind, value, **kwargs)

    monkeypatch.setattr(registry, "build", counting)
    found = dataset_hygiene(spec, seeds)
    assert built == [0]  # no input repeats in seed 0's splits: none can under another seed
    assert not found.leaks
    assert all(o.counts == (0, 0, 0, 0) for o in found.overlaps)
    assert found.leakage_text() == ("no exact duplicates between splits: no test example is "
                                    "also in train or val, no val example is also in train "
                                    "(seeds 0, 1, 2, 3)")


def test_the_result_is_kept_by_content_for_other_processes(
        tmp_path: Path, planted: Path, monkeypatch: pytest.MonkeyPatch,
        fresh_process: Callable[[], None]) -> None:
    spec, seeds = suite_datasets(load_suite(_suite(tmp_path, planted)))[0]
    first = dataset_hygiene(spec, seeds)
    fresh_process()

    def no_data(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the data was loaded again")

    monkeypatch.setattr(registry, "build", no_data)
    assert dataset_hygiene(spec, seeds) == first  # read from the cache, data untouched
    monkeypatch.undo()
    np.savez(planted, x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)  # new content: counted anew
    fresh_process()
    spec, seeds = suite_datasets(load_suite(_suite(tmp_path, planted)))[0]
    assert not dataset_hygiene(spec, seeds).leaks


def test_a_coordinators_workers_only_refuse(tmp_path: Path, planted: Path,
                                             fresh_process: Callable[[], None]) -> None:
    np.savez(tmp_path / "clean.npz", x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    clean = load_suite(_suite(tmp_path, tmp_path / "clean.npz"))
    lines, problems = check_suites([clean])
    assert len(lines) == 2 and not problems  # the summary and the class balance
    assert check_suites([clean], quiet=True) == ([], [])
    leaky = load_suite(_suite(tmp_path, planted))
    assert check_suites([leaky], quiet=True) == ([], [])  # the coordinator warned
    strict = load_suite(_suite(tmp_path, planted, "data: {on_leakage: error}\n"))
    lines, problems = check_suites([strict], quiet=True)
    assert not lines and len(problems) == 1


def test_a_batch_size_larger_than_the_training_split_is_said(
        tmp_path: Path, fresh_process: Callable[[], None]) -> None:
    """`batch_size: 120` on a dataset of 90 training examples trains, each step on the whole
    split as `full` does, and used to say nothing: the warning names the size, the split and
    the dataset. One within the split says nothing; a worker (quiet) neither. (Two levels
    above the split would train alike: the suite's validation refuses them.)"""
    np.savez(tmp_path / "clean.npz", x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    data = tmp_path / "clean.npz"
    over = load_suite(_suite(tmp_path, data, "grid:\n  batch_size: [32, 120]\n"))
    lines, problems = check_suites([over])
    assert not problems and dataset_hygiene(*suite_datasets(over)[0]).sizes["train"] == 90
    assert lines[2:] == [
        f"warning: {over.path}: batch_size 120 is larger than the training split of "
        f"file(path={data}) (90 examples): each step takes the whole split, as batch_size: "
        f"full does"]
    assert check_suites([over], quiet=True) == ([], [])
    within = load_suite(_suite(tmp_path, data, "grid:\n  batch_size: [32, 90]\n"))
    assert len(check_suites([within])[0]) == 2  # the summary and the class balance only


def test_a_class_only_val_or_test_hold_is_said(tmp_path: Path,
                                              fresh_process: Callable[[], None]) -> None:
    """Labels 0..2 in the training file and 0..3 in the test file trained silently: class 3
    has no example to learn from, and its 5 test examples score wrong in every trial. The
    warning counts them; data whose splits share their classes says nothing more than the
    summary and the balance."""
    data = tmp_path / "unseen.npz"
    np.savez(data, x=X, y=np.arange(100) % 3, x_test=X_TEST, y_test=Y_TEST)
    suite = load_suite(_suite(tmp_path, data))
    lines, problems = check_suites([suite])
    assert not problems
    assert lines[1].endswith("test 0: 5, 1: 5, 2: 5, 3: 5")
    assert lines[2:] == [
        f"warning: {suite.path}: task.dataset file(path={data}): in seed 0's split, "
        f"examples of classes its training split has none of: test 5 of 20 (class 3); trials "
        f"on that split cannot learn them, and score each of them wrong"]
    assert check_suites([suite], quiet=True) == ([], [])
    np.savez(data, x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    assert len(check_suites([load_suite(_suite(tmp_path, data))])[0]) == 2


def test_real_targets_say_there_is_no_class_balance(tmp_path: Path,
                                                    fresh_process: Callable[[], None]) -> None:
    np.savez(tmp_path / "r.npz", x=X, y=RNG.normal(size=100).astype(np.float32))
    path = tmp_path / "real.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: real
        task:
          dataset: {{name: file, path: {tmp_path / 'r.npz'}, targets: real}}
          model: {{name: mlp, hidden: [8]}}
          loss: mse
        fixed: {{optimizer: {{name: sgd, lr: 0.05}}, epochs: 1, batch_size: 32}}
        """))
    spec, seeds = suite_datasets(load_suite(path))[0]
    found = dataset_hygiene(spec, seeds)
    assert found.balance == {}
    assert found.balance_text("train") == "real-valued targets: no classes to balance"
    assert found.lines()[1] == "  targets are real values: no class balance"


# -- the command line and the report ---------------------------------------------------------

def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_leakage_is_a_warning_before_training_and_in_the_report(
        tmp_path: Path, planted: Path, capsys: pytest.CaptureFixture[str],
        fresh_process: Callable[[], None]) -> None:
    path = _suite(tmp_path, planted)
    data = registry.build("dataset", load_suite(path).base.dataset, seed=0, device=CPU)
    val_train = _shared(data.x_val, data.x_train)
    test_val = _shared(data.x_test, data.x_val)
    leakage = (f"leakage: 5 of 20 test examples are also in train; {val_train} of 10 val "
               f"examples are also in train; {test_val} of 20 test examples are also in val "
               f"(identical inputs; seed 0)")
    assert val_train and test_val  # 50 copies of 5 test rows: the 10 val examples hold some
    assert cli.main(["run", str(path), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    warning = f"warning: {path}: data file(path={planted}): train 90, val 10, test 20 examples; "
    assert warning + leakage in err
    assert ("scores on shared examples measure memory, not generalisation (data: "
            "{on_leakage: error} refuses such data)") in err
    balance = ("class balance (seed 0's split): train " + ", ".join(
        f"{c}: {n}" for c, n in enumerate(torch.bincount(data.y_train).tolist())))
    assert balance in err
    assert "test 0: 5, 1: 5, 2: 5, 3: 5" in err
    assert err.index(leakage) < err.index("[1/1]")  # before training

    html = (tmp_path / "reports" / "leaky.html").read_text()
    setup = _text(html[html.index('id="header"'):html.index('id="leaderboard"')])
    assert f"file(path={planted}) : 90 train, 10 val, 20 test examples; {leakage}" in setup
    assert "leakage-warning" in html
    assert "test 20 5 (25.0%) 5 (25.0%) 5 (25.0%) 5 (25.0%)" in setup
    train_row = "train 90 " + " ".join(f"{n} ({100 * n / 90:.1f}%)"
                                       for n in torch.bincount(data.y_train).tolist())
    assert train_row in setup

    fresh_process()  # `nnbench report` in another process reads what the run found
    build = registry.build

    def no_data(kind: str, *args: Any, **kwargs: Any) -> Any:
        assert kind != "dataset", "the report loaded the data again"
        return build(kind, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "build", no_data)
        (tmp_path / "reports" / "leaky.html").unlink()
        assert cli.main(["report", str(path)]) == 0
    assert leakage in _text((tmp_path / "reports" / "leaky.html").read_text())


def test_the_report_says_when_the_data_cannot_be_read(tmp_path: Path, write_suite: Any,
                                                      tracking_uri: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      fresh_process: Callable[[], None]) -> None:
    from nnbench.report import render_report

    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path / "no-data"))
    suite = load_suite(write_suite(textwrap.dedent("""\
        name: mnist_elsewhere
        task: {dataset: mnist, model: {name: mlp, hidden: [8]}}
        fixed: {optimizer: {name: sgd, lr: 0.05}, epochs: 1, batch_size: 32}
        """)))
    html = _text(render_report(suite, tracking_uri=tracking_uri,
                               report_dir=tmp_path / "out").read_text())
    assert "Data hygiene" in html
    assert "mnist: not checked: the data cannot be read here (" in html


def test_on_leakage_error_refuses_before_anything_is_created(
        tmp_path: Path, planted: Path, capsys: pytest.CaptureFixture[str],
        fresh_process: Callable[[], None]) -> None:
    path = _suite(tmp_path, planted, "data: {on_leakage: error}\n")
    refusal = (f"{path}: data.on_leakage: error, and task.dataset file(path={planted}) has "
               f"leakage: 5 of 20 test examples are also in train; ")
    assert cli.main(["validate", str(path)]) == 2  # validate refuses what run refuses
    out, err = capsys.readouterr()
    assert err.startswith(refusal) and "ok" not in out
    assert cli.main(["run", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(refusal)
    assert "remove the shared examples from the data" in err
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "optuna.db").exists()
    assert not (tmp_path / "reports").exists()


def test_clean_data_under_on_leakage_error_trains(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  fresh_process: Callable[[], None]) -> None:
    np.savez(tmp_path / "clean.npz", x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    path = _suite(tmp_path, tmp_path / "clean.npz", "data: {on_leakage: error}\n")
    assert cli.main(["run", str(path), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert (f"{path}: data file(path={tmp_path / 'clean.npz'}): train 90, val 10, test 20 "
            f"examples; no exact duplicates between splits") in err
    html = _text((tmp_path / "reports" / "leaky.html").read_text())
    assert "no exact duplicates between splits" in html
    assert "leakage-warning" not in html


def test_on_leakage_is_checked_and_not_part_of_the_trial_ids(
        tmp_path: Path, planted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _suite(tmp_path, planted, "data: {on_leakage: strict}\n")
    assert cli.main(["validate", str(bad)]) == 2
    assert (f"{bad}: data.on_leakage: unknown on_leakage 'strict' (str); allowed: warn, error"
            in capsys.readouterr().err)
    unknown = _suite(tmp_path, planted, "data: {on_leak: error}\n")
    assert cli.main(["validate", str(unknown)]) == 2
    assert (f"{unknown}: data.on_leak: unknown key 'on_leak' (given 'error' (str)); did you "
            f"mean 'on_leakage'? allowed: on_leakage") in capsys.readouterr().err
    ids = [t.trial_id for t in load_suite(_suite(tmp_path, planted)).trials()]
    strict = load_suite(_suite(tmp_path, planted, "data: {on_leakage: error}\n"))
    assert strict.data.on_leakage == "error"
    assert [t.trial_id for t in strict.trials()] == ids
