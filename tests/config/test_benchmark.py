"""Benchmark files are checked before compute: every problem names the file, the key path,
what was given and what is allowed; `nnbench bench` then exits 2 and creates nothing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nnbench import cli
from nnbench.config.benchmark import BenchmarkError, load_benchmark
from tests.conftest import BENCHMARK_TASK, REPO

LEVELS = "[{name: sgd, lr: 0.05}, {name: adam, lr: 0.001}]"


def _suite(root: Path, name: str, dataset: str = "{name: circles, n_samples: 200}",
           loss: str = "cross_entropy", levels: str = LEVELS, seeds: str = "2") -> Path:
    path = root / f"{name}.yaml"
    path.write_text(BENCHMARK_TASK.format(name=name, dataset=dataset, loss=loss, levels=levels,
                                          seeds=seeds, epochs=2))
    return path


def _bench(root: Path, body: str) -> Path:
    path = root / "bench.yaml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def two_tasks(tmp_path: Path) -> Path:
    _suite(tmp_path, "circ")
    _suite(tmp_path, "reg", dataset="{name: diabetes}", loss="mse")
    return tmp_path


GOOD = """\
name: mini
tasks:
  - {suite: circ.yaml, target: {metric: val_accuracy, value: 0.9}}
  - {suite: reg.yaml, target: {metric: val_rmse, value: 0.9}}
profile: {tau_max: 4}
"""


def _problems(path: Path) -> list[str]:
    with pytest.raises(BenchmarkError) as info:
        load_benchmark(path)
    return info.value.lines()


def test_a_valid_benchmark(two_tasks: Path) -> None:
    bench = load_benchmark(_bench(two_tasks, GOOD))
    assert [t.name for t in bench.tasks] == ["circ", "reg"]
    assert bench.axes == ("optimizer",) and bench.seeds == (0, 1)
    assert bench.levels == ("optimizer=sgd(lr=0.05)", "optimizer=adam")
    assert (bench.tau_min, bench.tau_max) == (1.0, 4.0)
    reg = bench.tasks[1].target
    assert reg.metric == "val_rmse" and not reg.higher_is_better and reg.label() == \
        "val_rmse ≤ 0.9"


def test_the_shipped_benchmark_validates(capsys: pytest.CaptureFixture[str]) -> None:
    path = REPO / "benchmarks" / "optimizers.yaml"
    assert cli.main(["bench", str(path), "--validate"]) == 0
    out = capsys.readouterr().out
    assert "4 tasks × 4 configurations of optimizer × 3 seeds = 48 trials" in out
    bench = load_benchmark(path)
    assert {t.suite.base.dataset.name for t in bench.tasks} == {"mnist1d", "digits", "circles",
                                                               "diabetes"}


@pytest.mark.parametrize(("body", "expected"), [
    (GOOD.replace("circ.yaml", "circle.yaml"),
     "tasks[0].suite: no such suite file 'circle.yaml' (looked for "),
    (GOOD.replace("circ.yaml", "."),
     "tasks[0].suite: '.' is a directory ("),  # was "no such suite file"
    (GOOD.replace("reg.yaml", "circ.yaml"),
     "tasks[1].suite: 'circ.yaml' is already tasks[0]; list each suite once"),
    (GOOD.replace("metric: val_rmse", "metric: val_accuracy"),
     "tasks[1].target.metric: suite 'reg' (loss mse) does not produce 'val_accuracy' (str); "
     "its validation metrics: val_loss, val_rmse, val_mae"),
    (GOOD.replace("metric: val_accuracy", "metric: test_accuracy"),
     "tasks[0].target.metric: 'test_accuracy' is not a validation metric"),
    (GOOD.replace("value: 0.9}}\n  - {suite: reg", "value: 90}}\n  - {suite: reg"),
     "tasks[0].target.value: expected an accuracy in (0, 1] (a fraction, not a percentage), "
     "got 90"),
    (GOOD.replace("val_rmse, value: 0.9", "val_rmse, value: 0"),
     "tasks[1].target.value: expected a val_rmse above 0"),
    (GOOD.replace("{metric: val_accuracy, value: 0.9}", "{metric: val_accuracy}"),
     "tasks[0].target.value: missing"),
    (GOOD.replace("profile: {tau_max: 4}", "profile: {tau_min: 3, tau_max: 2}"),
     "profile.tau_max: expected a number above profile.tau_min (3), got 2"),
    (GOOD.replace("profile: {tau_max: 4}", "profile: {tau: 4}"), "profile.tau: unknown key"),
    (GOOD.replace("name: mini", "name: circ"), "name: 'circ' is also the name of suite"),
    (GOOD.replace("  - {suite: reg.yaml, target: {metric: val_rmse, value: 0.9}}\n", ""),
     "tasks: expected a list of at least two tasks"),
    ("name: mini\ntask: []\n", "task: unknown key 'task' (given [] (list)); did you mean 'tasks'? "
                               "allowed: name, description, tasks, profile"),
    # a benchmark file as a task: it said "not a valid suite", then the suite's key errors
    (GOOD.replace("circ.yaml", "bench.yaml"),
     "tasks[0].suite: 'bench.yaml' is a benchmark file (it lists `tasks:`), not a suite; a "
     "task names a suite file"),
])
def test_problems_name_file_key_given_and_allowed(two_tasks: Path, body: str,
                                                  expected: str) -> None:
    path = _bench(two_tasks, body)
    lines = _problems(path)
    assert any(line.startswith(f"{path}: ") and expected in line for line in lines), lines


def test_a_profile_problem_does_not_hide_the_tasks_problems(two_tasks: Path) -> None:
    """`profile: {tau_min: 0.5}` stopped the check: the tasks' problems (a target of 90, a
    test metric) came only once it was fixed. The README says every problem is printed."""
    body = GOOD.replace("profile: {tau_max: 4}", "profile: {tau_min: 0.5}").replace(
        "value: 0.9}}\n  - {suite: reg", "value: 90}}\n  - {suite: reg").replace(
        "metric: val_rmse", "metric: test_rmse")
    path = _bench(two_tasks, body)
    keys = [line.removeprefix(f"{path}: ").partition(":")[0] for line in _problems(path)]
    assert keys == ["profile.tau_min", "tasks[0].target.value", "tasks[1].target.metric"], keys


def test_suites_must_vary_the_same_axis_levels_and_seeds(two_tasks: Path) -> None:
    _suite(two_tasks, "other_levels", dataset="{name: moons, n_samples: 200}",
           levels="[{name: sgd, lr: 0.05}, {name: rmsprop, lr: 0.001}]", seeds="3")
    path = _bench(two_tasks, GOOD.replace("reg.yaml", "other_levels.yaml").replace(
        "metric: val_rmse", "metric: val_accuracy"))
    text = "\n".join(_problems(path))
    assert ("tasks[1].suite: suite 'other_levels' does not vary optimizer over the same "
            "levels as 'circ' (tasks[0]): missing optimizer=adam; not in 'circ': "
            "optimizer=rmsprop(lr=0.001)") in text
    assert "tasks[1].suite: suite 'other_levels' has seeds [0, 1, 2]; every suite must have " \
           "the seeds of suite 'circ', [0, 1]" in text
    # the same seeds in another order pair as well: refused before ("'circ''s seeds")
    _suite(two_tasks, "reordered", dataset="{name: moons, n_samples: 200}",
           levels="[{name: sgd, lr: 0.05}, {name: adam, lr: 0.01}]", seeds="[1, 0]")
    reordered = _bench(two_tasks, GOOD.replace("reg.yaml", "reordered.yaml").replace(
        "metric: val_rmse", "metric: val_accuracy"))
    assert not any("seeds" in line for line in _problems(reordered)), _problems(reordered)

    (two_tasks / "other_axis.yaml").write_text(BENCHMARK_TASK.format(
        name="other_axis", dataset="{name: moons, n_samples: 200}", loss="cross_entropy",
        levels="[{name: sgd, lr: 0.05}]", seeds=2, epochs=2).replace(
        "grid:\n  optimizer: [{name: sgd, lr: 0.05}]", "grid:\n  activation: [relu, tanh]"))
    path = _bench(two_tasks, GOOD.replace("reg.yaml", "other_axis.yaml").replace(
        "metric: val_rmse", "metric: val_accuracy"))
    assert any("tasks[1].suite: suite 'other_axis' varies activation; every suite of the "
               "benchmark must vary what 'circ' (tasks[0]) varies: optimizer" in line
               for line in _problems(path))


def test_suites_with_per_source_seeds_are_refused(two_tasks: Path) -> None:
    _suite(two_tasks, "per_source", dataset="{name: moons, n_samples: 200}",
           seeds="{init: 2, data_order: 2}")
    path = _bench(two_tasks, GOOD.replace("reg.yaml", "per_source.yaml").replace(
        "metric: val_rmse", "metric: val_accuracy"))
    assert any("tasks[1].suite: suite 'per_source' gives sources of randomness their own "
               "seeds; a benchmark's suites give one seed per trial: allowed: seeds as a "
               "count or a list" in line for line in _problems(path))


def test_one_task_per_suite(two_tasks: Path) -> None:
    (two_tasks / "two_data.yaml").write_text(BENCHMARK_TASK.format(
        name="two_data", dataset="circles", loss="cross_entropy", levels=LEVELS, seeds=2,
        epochs=2).replace("seeds: 2", "ablate:\n  dataset: [moons]\nseeds: 2"))
    path = _bench(two_tasks, GOOD.replace("circ.yaml", "two_data.yaml"))
    assert any("tasks[0].suite: suite 'two_data' varies dataset; a task is one dataset, "
               "model and loss" in line for line in _problems(path))
    _suite(two_tasks, "circ_again")  # the same dataset, model and loss as circ
    path = _bench(two_tasks, GOOD.replace("reg.yaml", "circ_again.yaml").replace(
        "metric: val_rmse", "metric: val_accuracy"))
    assert any("tasks[1].suite: suite 'circ_again' trains the same task as suite 'circ'"
               in line for line in _problems(path))


def test_two_suites_with_one_name_are_refused(two_tasks: Path) -> None:
    (two_tasks / "reg.yaml").write_text((two_tasks / "reg.yaml").read_text().replace(
        "name: reg", "name: CIRC"))
    assert any("tasks[1].suite: suite 'CIRC' has the name of the suite of tasks[0]" in line
               for line in _problems(_bench(two_tasks, GOOD)))


def test_an_invalid_suite_brings_its_own_problems(two_tasks: Path) -> None:
    (two_tasks / "reg.yaml").write_text((two_tasks / "reg.yaml").read_text().replace(
        "activation: relu", "activation: reluu"))
    lines = _problems(_bench(two_tasks, GOOD))
    assert any("tasks[1].suite: 'reg.yaml' is not a valid suite (its problems follow)" in line
               for line in lines)
    # the suite's own problems, its path as given (relative to the working directory)
    assert any(line.startswith("reg.yaml: fixed.activation: ") and "did you mean 'relu'?" in line
               for line in lines), lines


def test_bench_exits_2_and_creates_nothing(two_tasks: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _bench(two_tasks, GOOD.replace("val_rmse", "test_rmse"))
    assert cli.main(["bench", str(path), "--device", "cpu", "--report-dir",
                     str(two_tasks / "reports")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: tasks[1].target.metric: 'test_rmse' is not a validation metric" in err
    assert not (two_tasks / "mlflow.db").exists() and not (two_tasks / "optuna.db").exists()
    assert not (two_tasks / "reports").exists()
    assert cli.main(["bench", str(two_tasks / "nope.yaml")]) == 2
    assert f"{two_tasks / 'nope.yaml'}: no such benchmark file" in capsys.readouterr().err
