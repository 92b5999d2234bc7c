"""The `nnbench` command: list, show, validate, run, report; the ranges of its numeric
options, `--version`, `run --threads`, `list --plugin FILE.py`, a clean exit of `submit`."""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from nnbench import cli, cli_checks
from nnbench.messages import mlflow_ui
from tests.conftest import REPO, TINY_SUITE


def test_list_shows_every_kind_with_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    print("DEBUG", repr(out[-700:]))
    for kind, name in [("activation", "relu"), ("init", "kaiming_normal"), ("optimizer", "adam"),
                       ("schedule", "step"), ("loss", "cross_entropy"), ("dataset", "mnist1d"),
                       ("model", "mlp")]:
        assert kind in out
        assert name in out
    assert "lr: float = 0.01 (learning rate, per step)" in out


def test_list_filters_by_kind_and_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "optimizer", "ad*"]) == 0
    out = capsys.readouterr().out
    print("DEBUG", repr(out[-700:]))
    assert "adam" in out
    assert "sgd" not in out


def test_list_one_kind_in_a_fresh_process() -> None:
    out = subprocess.run([sys.executable, "-m", "nnbench.cli", "list", "optimizer"],
                         capture_output=True, text=True, check=True).stdout
    assert "sgd" in out
    assert "momentum: float = 0.0" in out
    assert "relu" not in out


def test_list_of_a_pattern_that_matches_nothing_says_so(
        capsys: pytest.CaptureFixture[str]) -> None:
    """It printed nothing and exited 0."""
    assert cli.main(["list", "model", "mpl"]) == 2
    assert capsys.readouterr().err.strip() == (
        "no model matches 'mpl' (a glob pattern, e.g. 'ada*'); did you mean 'mlp'? there "
        "are: cnn, cnn1d, gru, logistic, mlp, resnet")


def test_list_unknown_kind_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "optimiser"]) == 2
    assert capsys.readouterr().err.startswith(  # (it said "'optimiser' (str)")
        "unknown component kind 'optimiser'; did you mean 'optimizer'? known: activation, ")


def test_list_takes_a_suite_axis_name_and_says_what_engines_are(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`nnbench list grad_clip` (the README's axis table names it so) asked "did you mean
    'clip'?"; `nnbench list engine` called engine an unknown component kind."""
    assert cli.main(["list", "grad_clip"]) == 0
    assert "clip\n  none" in capsys.readouterr().out
    assert cli.main(["list", "engine"]) == 2
    assert capsys.readouterr().err.strip() == (
        "engines are not components: choose one with --engine (serial, stacked, auto) on run, "
        "tune, worker, bench; 'nnbench run --help' says what each does")


def test_validate_and_show_the_default_suite(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(REPO / "suites" / "default.yaml")
    assert cli.main(["validate", path]) == 0
    assert "6 configurations × 4 seeds = 24 trials" in capsys.readouterr().out
    assert cli.main(["show", path]) == 0
    out = capsys.readouterr().out
    print("DEBUG", repr(out[-700:]))
    assert "default: 24 trials" in out
    assert out.count("xavier_normal") == 12
    assert out.count("sigmoid") == 8


def test_validate_counts_one_of_each_in_the_singular(
        write_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    """It said "ok — 1 configurations × 1 seeds = 1 trials", and "expected a activation
    name"."""
    path = write_suite(TINY_SUITE.format(name="one", epochs=1, seeds=1).replace(
        "grid:\n  activation: [tanh, relu]\n", ""))
    assert cli.main(["validate", str(path)]) == 0
    assert f"{path}: ok — 1 configuration × 1 seed = 1 trial\n" in capsys.readouterr().out
    path.write_text(path.read_text().replace("activation: relu", "activation: {name: 3}"))
    assert cli.main(["validate", str(path)]) == 2
    assert "fixed.activation.name: expected an activation name (" in capsys.readouterr().err


def test_show_of_a_tuned_suite_lists_its_points_and_their_reruns(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A tuned suite trains a study per point and then re-runs over `tune.seeds`; `show`
    listed its top-level default seed instead ("5 trials", seed 0)."""
    from nnbench.config import load_suite

    monkeypatch.setenv("COLUMNS", "250")
    path = REPO / "suites" / "tune_optimizers.yaml"
    assert cli.main(["show", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("tune_optimizers: 5 points, each tuned by Optuna (12 trials over "
                        "optimizer.lr; tpe sampler, maximize val_accuracy), then its best "
                        "values re-run over seeds 0, 1, 2, 3: 60 tuning trials and 20 "
                        "re-runs")
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in lines if "│" in line]
    points = load_suite(path).configurations()
    assert rows == [[str(i), p.config_id, label, "0, 1, 2, 3"] for i, (p, label) in enumerate(
        zip(points, ["sgd", "sgd(momentum=0.9)", "rmsprop", "adam", "adamw"], strict=True), 1)]


def test_two_suites_with_one_name_are_rejected(write_suite: Callable[..., Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    first, second = write_suite(filename="a.yaml"), write_suite(filename="b.yaml")
    assert cli.main(["validate", str(first), str(second)]) == 2
    err = capsys.readouterr().err
    assert "2 suite files share the name 'tiny'" in err
    assert str(first) in err and str(second) in err  # both files named


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


def test_a_working_directory_with_a_space_keeps_the_store_in_it(
        write_suite: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """MLflow's own default URI is %-encoded (`sqlite:////…/sp%20ace/mlflow.db`): MLflow
    made the directory `sp%20ace` beside `sp ace`, and nnbench an empty mlflow.db in it."""
    here = tmp_path / "sp ace"
    here.mkdir()
    path = write_suite(epochs=1, seeds=1)
    monkeypatch.chdir(here)
    assert cli.main(["run", str(path), "--device", "cpu"]) == 0
    assert cli.main(["report", str(path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sp ace", path.name]
    assert (here / "mlflow.db").stat().st_size > 0 and (here / "optuna.db").exists()
    out = capsys.readouterr().out
    print("DEBUG", repr(out[-700:]))
    store = f"sqlite:///{here / 'mlflow.db'}"
    assert f"view with: {mlflow_ui(store)}" in out, out


def test_an_interrupt_while_the_report_is_written_says_what_is_saved(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C after every trial was recorded, while the report was written: the console said
    only "interrupted", and the report was missing or stale."""
    path = write_suite(epochs=1, seeds=1)

    def interrupted(*_args: object, **_kwargs: object) -> Path:
        raise KeyboardInterrupt

    written = cli._report_if_changed
    monkeypatch.setattr(cli, "_report_if_changed", interrupted)
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri]) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert (f"suite tiny: interrupted while its report was made; every trained result is "
            f"recorded, and the report there (if any) is whole but may be the one from before: "
            f"`nnbench report {path} --tracking-uri {tracking_uri}` (or re-running this "
            f"command) writes it") in err, err
    monkeypatch.setattr(cli, "_report_if_changed", written)
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri]) == 0
    assert "2 already finished, 0 to train" in capsys.readouterr().err
    assert (tmp_path / "reports" / "tiny.html").exists()
    # `nnbench report` itself said only "interrupted"
    import nnbench.report

    monkeypatch.setattr(nnbench.report, "render_report", interrupted)
    assert cli.main(["report", str(path), "--tracking-uri", tracking_uri, "--report-dir",
                     str(tmp_path / "elsewhere")]) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert err == (f"suite tiny: interrupted while its report was made; every trained result "
                   f"is recorded, and the report there (if any) is whole but may be the one "
                   f"from before: `nnbench report {path} --tracking-uri {tracking_uri} "
                   f"--report-dir {tmp_path / 'elsewhere'}` writes it"), err


def test_an_interrupt_while_the_seed_summaries_are_written_says_what_is_saved(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C after the last trial, while the seed summaries were written (it waits for the
    block to end): the console said only "interrupted". A re-run trains nothing and writes
    the summaries and the report."""
    from nnbench.tracking import Tracker

    path = write_suite(epochs=1, seeds=1)
    refresh = Tracker.refresh_summaries

    def interrupted(self: Tracker, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Tracker, "refresh_summaries", interrupted)
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri]) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert ("suite tiny: interrupted; every trial that finished training (if any) is "
            "recorded; a re-run trains what is left and brings the seed summaries and the "
            "report up to date") in err, err
    assert not (tmp_path / "reports" / "tiny.html").exists()
    monkeypatch.setattr(Tracker, "refresh_summaries", refresh)
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri]) == 0
    assert "2 already finished, 0 to train" in capsys.readouterr().err
    assert (tmp_path / "reports" / "tiny.html").exists()
    summaries = [r for r in MlflowClient(tracking_uri).search_runs(["1"])
                 if r.data.tags.get("nnbench.role") == "summary"]
    assert len(summaries) == 2


def test_report_command_rebuilds_from_mlflow(write_suite: Callable[..., Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite(epochs=2, seeds=1)
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert cli.main(["run", str(path), "--tracking-uri", uri, "--report-dir", "out"]) == 0
    (tmp_path / "out" / "tiny.html").unlink()
    assert cli.main(["report", str(path), "--tracking-uri", uri, "--report-dir", "out"]) == 0
    assert "report:" in capsys.readouterr().out
    assert "activation=tanh" in (tmp_path / "out" / "tiny.html").read_text()


def test_report_of_a_suite_never_trained_into_the_store_is_refused(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """It wrote a report with "no finished trials yet" everywhere, listed it in the index
    and exited 0, like a report of results."""
    trained = write_suite(epochs=1, seeds=1)
    assert cli.main(["run", str(trained), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--report-dir", "out"]) == 0
    other = write_suite(name="never", epochs=1, seeds=1)
    capsys.readouterr()
    assert cli.main(["report", str(trained), str(other), "--tracking-uri", tracking_uri,
                     "--report-dir", "out"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{other}: {tracking_uri} has no experiment 'never': nothing of the suite was " \
           f"trained into this store; train it first (nnbench run {other}), or give the " \
           f"--tracking-uri it was trained into (this store's suites: tiny)" in err, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if "never" in p.name) == []
    assert "never" not in (tmp_path / "out" / "index.html").read_text()


def test_a_report_file_that_is_a_directory_is_refused_before_anything_trains(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`reports/tiny.html` a directory: every trial trained, then a traceback
    (IsADirectoryError) and half of the report's files written, exit 1."""
    path = write_suite(epochs=1, seeds=1)
    reports = tmp_path / "reports"
    (reports / "tiny.html").mkdir(parents=True)
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--report-dir", str(reports)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--report-dir '{reports}': {reports / 'tiny.html'} is a directory, where the " \
           f"report writes a file; move it away, or give another --report-dir" in err, err
    assert sorted(p.name for p in reports.iterdir()) == ["tiny.html"]  # nothing written
    assert MlflowClient(tracking_uri).get_experiment_by_name("tiny") is None  # nor trained
    (reports / "tiny.html").rmdir()
    # a site's own index.html: the report would have replaced it
    (reports / "index.html").write_text("<html><title>My site</title></html>")
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--report-dir", str(reports)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{reports / 'index.html'} is a page nnbench did not write (a site's own " \
           f"index.html?), and the report would replace it" in err, err
    (reports / "index.html").unlink()
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--report-dir", str(reports)]) == 0
    assert cli.main(["report", str(path), "--tracking-uri", tracking_uri,  # its own: fine
                     "--report-dir", str(reports)]) == 0
    # what the check looks at is what a report writes
    written = {p.name for p in reports.iterdir() if not p.name.startswith(".")}
    assert written == {f.format(name="tiny") for f in cli_checks.REPORT_FILES}


def test_cuda_without_gpu_is_a_usage_error(write_suite: Callable[..., Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert cli.main(["run", str(write_suite()), "--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


# -- numeric options: ranges checked before any work ---------------------------------------

def _numeric_options() -> list[tuple[str, argparse.Action]]:
    """(command, action) of every option of every subcommand that takes a number."""
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, action) for name, sub in subparsers.choices.items()
            for action in sub._actions if action.option_strings and action.type is not None
            and action.type is not os.path.expanduser]  # (--report-dir, --folder: paths)


def test_every_numeric_option_refuses_non_finite_negative_and_huge_values() -> None:
    options = _numeric_options()
    names = {f"{command} {action.option_strings[0]}" for command, action in options}
    assert {"run --lanes", "run --workers", "run --threads", "worker --threads",
            "tune --heartbeat-interval", "bench --grace-period", "submit --slurm-gpus",
            "submit --slurm-mem", "submit --slurm-time", "submit --slurm-cpus",
            "submit --slurm-parallelism", "submit --workers"} <= names
    for _, action in options:
        parse = action.type
        assert callable(parse)
        for bad in ("nan", "inf", "-inf", "-1", "1e999", "x", ""):
            with pytest.raises(argparse.ArgumentTypeError, match=r"^expected .*, got "):
                parse(bad)
        if action.default is not None:
            assert parse(str(action.default)) == action.default


@pytest.mark.parametrize(("argv", "message"), [
    (["submit", "--local", "--slurm-gpus", "-1"],
     "argument --slurm-gpus: expected an integer at least 0, got '-1'"),
    (["submit", "--local", "--slurm-mem", "nan"],
     "argument --slurm-mem: expected a finite number above 0, got 'nan'"),
    (["submit", "--local", "--slurm-mem", "inf"],
     "argument --slurm-mem: expected a finite number above 0, got 'inf'"),
    (["submit", "--local", "--slurm-mem=-inf"],
     "argument --slurm-mem: expected a finite number above 0, got '-inf'"),
    (["submit", "--local", "--slurm-mem", "0"],
     "argument --slurm-mem: expected a finite number above 0, got '0'"),
    (["submit", "--slurm-time", "0"],
     "argument --slurm-time: expected an integer at least 1 and at most 527040, got '0'"),
    (["submit", "--slurm-cpus", "0"], "argument --slurm-cpus: expected an integer at least 1"),
    (["submit", "--slurm-parallelism", "-2"], "argument --slurm-parallelism: expected an integ"),
    (["submit", "--workers", "0"], "argument --workers: expected an integer at least 1"),
    (["run", "--lanes", "0"], "argument --lanes: expected an integer at least 1, got '0'"),
    (["run", "--workers", "5000"],
     "argument --workers: expected an integer at least 1 and at most 1024, got '5000'"),
    (["run", "--threads", "0"],
     "argument --threads: expected an integer at least 1 and at most 1024, got '0'"),
    (["bench", "--threads", "2.5"], "argument --threads: expected an integer at least 1"),
    (["worker", "--heartbeat-interval", "0"],
     "argument --heartbeat-interval: expected an integer at least 1 and at most 86400"),
    (["tune", "--grace-period", "1e3"],
     "argument --grace-period: expected an integer at least 1 and at most 2592000, got '1e3'"),
    (["tune", "--lanes", "-3"], "argument --lanes: expected an integer at least 1, got '-3'"),
])
def test_an_out_of_range_number_is_refused_before_anything_is_created(
        argv: list[str], message: str, write_suite: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(epochs=1, seeds=1)
    command, *options = argv
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, str(suite), "--storage", f"sqlite:///{tmp_path / 'optuna.db'}",
                  "--device", "cpu", *options])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [suite.name]  # nothing created


def test_a_quoted_tilde_in_report_dir_is_the_home_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`--report-dir "~/rep"` made a directory named "~" in the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = cli._parse(["report", "s.yaml", "--report-dir", "~/rep"])
    assert args.report_dir == str(tmp_path / "home" / "rep")


@pytest.mark.parametrize(("options", "said"), [
    (["--engien", "stacked"], "--engien: did you mean --engine?"),
    (["--engin", "stacked"], "--engin: did you mean --engine?"),  # a prefix was taken
    (["--tracking=x"], "--tracking: did you mean --tracking-uri?"),
])
def test_a_mistyped_option_gets_its_command_s_usage_and_the_option_meant(
        options: list[str], said: str, write_suite: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """It got nnbench's top-level usage ("usage: nnbench [-h] [--version] COMMAND ...") and
    no hint; a prefix of an option (`--engin`) was silently taken for it."""
    suite = write_suite(epochs=1, seeds=1)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", str(suite), "--device", "cpu", *options])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: nnbench run [-h]"), err
    assert f"nnbench run: error: unrecognized arguments: {' '.join(options)}; {said}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [suite.name]  # nothing created


def test_a_missing_suite_file_names_the_closest_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("default.yaml", "seed_l2.yaml"):
        (tmp_path / name).write_text("name: x\n")
    assert cli.main(["validate", str(tmp_path / "defualt.yaml"), str(tmp_path / "seed_l2"),
                     str(tmp_path / "zzz.yaml"), str(tmp_path / "nowhere" / "a.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'defualt.yaml'}: no such suite file; did you mean " \
           f"{tmp_path / 'default.yaml'}?" in err, err
    assert f"; did you mean {tmp_path / 'seed_l2.yaml'}?" in err, err
    assert f"{tmp_path / 'zzz.yaml'}: no such suite file ({tmp_path} holds default.yaml, " \
           f"seed_l2.yaml)" in err, err
    assert f"{tmp_path / 'nowhere' / 'a.yaml'}: no such suite file (no directory " \
           f"{tmp_path / 'nowhere'})" in err, err
    # a name given at a project's root whose suites are in suites/ (`nox -s report --
    # default`)
    (tmp_path / "suites").mkdir()
    (tmp_path / "default.yaml").rename(tmp_path / "suites" / "default.yaml")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", "default"]) == 2
    assert "default: no such suite file; did you mean suites/default.yaml?" in \
        capsys.readouterr().err


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"nnbench {version('nnbench')}")
    if (REPO / ".git").exists():  # a checkout of nnbench: its commit too
        assert re.search(r"\(git [0-9a-f]{12}(, with uncommitted changes)?\)$", line), line


def test_run_takes_threads_like_worker(write_suite: Callable[..., Path], tracking_uri: str,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`--threads N` (README: "sets them outright") reaches the engine: the trials record it.
    Each trial's line says its time is its share of its stacked group's."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the engine's own policy would say 1
    path = write_suite(epochs=1, seeds=1)
    assert cli.main(["run", str(path), "--device", "cpu", "--engine", "stacked",
                     "--threads", "2", "--tracking-uri", tracking_uri]) == 0
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`nnbench.role` = 'trial'")
    assert [r.data.tags["nnbench.threads"] for r in runs] == ["2", "2"]
    lines = re.findall(r"\| seed 0: finished val_accuracy \d\.\d{4} \((\d+\.\d)s: 1/2 of its "
                       r"stacked group's (\d+\.\d)s\)$", capsys.readouterr().err, re.M)
    assert len(lines) == 2, lines
    for share, group in lines:
        assert abs(2 * float(share) - float(group)) <= 0.1, (share, group)


def test_list_takes_a_plugin_file_from_anywhere(capsys: pytest.CaptureFixture[str]) -> None:
    from nnbench.testing import isolated_registry

    plugin = REPO / "examples" / "own_model" / "mylab_nets.py"
    with isolated_registry():
        assert cli.main(["list", "model", "res*", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    print("DEBUG", repr(out[-700:]))
    assert "resmlp" in out and "[plugin mylab_nets]" in out
    with isolated_registry():
        assert cli.main(["list", "model", "--plugin", "mylab_nets"]) == 2  # not in the cwd
        assert cli.main(["list", "model", "--plugin", "nowhere/mylab_nets.py"]) == 2
        assert cli.main(["list", "model", "--plugin", str(REPO / "suites" / "default.yaml")]) == 2
    err = capsys.readouterr().err
    assert (f"--plugin '{REPO / 'suites' / 'default.yaml'}': a plugin is a Python module; give "
            f"its name (such as mylab.nets) or the path of its .py file") in err
    assert "no module named 'mylab_nets'" in err
    assert "or give the module's file: --plugin path/to/mylab_nets.py" in err
    assert "--plugin 'nowhere/mylab_nets.py': no such file" in err


def test_evaluate_a_run_that_is_not_in_the_store_says_so(
        tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Not the advice for a run without a checkpoint (`checkpoint: true`): there is no run."""
    run_id = "0123456789abcdef0123456789abcdef"
    assert cli.main(["evaluate", run_id, "--tracking-uri", tracking_uri]) == 2
    err = capsys.readouterr().err
    assert f"run {run_id} is not in {tracking_uri}" in err, err
    assert f"mlflow ui --backend-store-uri {tracking_uri}" in err and "checkpoint: true" \
        not in err, err


def test_status_reads_the_file_s_trials_and_writes_nothing(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """status counts the given file's trials (it counted every trial ever queued under the
    name), says which of them are not queued yet, and never writes: a suite that never ran
    made an empty study (and on a read-only storage, two minutes of retries)."""
    import optuna
    from rich.console import Console

    from nnbench.config import load_suite
    from nnbench.runner import run_suite

    path = write_suite(epochs=1, seeds=1)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri, storage=storage,
              console=Console(quiet=True))
    path.write_text(path.read_text().replace("seeds: 1", "seeds: 2"))
    capsys.readouterr()
    assert cli.main(["status", str(path), "--storage", storage]) == 0
    out = capsys.readouterr().out
    print("DEBUG", repr(out[-700:]))
    assert "2 done, 0 running on 0 worker(s), 0 queued, 0 failed" in out
    assert "2 trial(s) of this file not queued yet (the next run queues them)" in out
    studies = optuna.study.get_all_study_names(storage=storage)
    other = path.with_name("other.yaml")
    other.write_text(path.read_text().replace("name: tiny", "name: other"))
    assert cli.main(["status", str(other), "--storage", storage]) == 0
    assert f"other: no queue at {storage} yet (nothing has run)" in capsys.readouterr().out
    assert optuna.study.get_all_study_names(storage=storage) == studies

    # a storage that is the MLflow store, or a plain path: refused, nothing written
    mlflow_db = tracking_uri.removeprefix("sqlite:///")
    with sqlite3.connect(mlflow_db) as db:
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert cli.main(["status", str(path), "--storage", tracking_uri]) == 2
    with sqlite3.connect(mlflow_db) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                          ).fetchall() == tables  # no Optuna table in the MLflow store
    assert cli.main(["status", str(path), "--storage", str(tmp_path / "optuna.db")]) == 2
    err = capsys.readouterr().err
    assert f"--storage {tracking_uri!r}" in err and "is not a database URL" in err, err


def test_status_and_report_take_stores_this_user_cannot_write(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`status` and `report` only read the stores: a read-only copy of them (a colleague's
    store, a read-only mount) was refused as "mlflow.db is not writable by this user" and
    "optuna.db is not writable by this user". `run`, which writes, still refuses them."""
    from rich.console import Console

    from nnbench.config import load_suite
    from nnbench.runner import run_suite

    path = write_suite(epochs=1, seeds=1)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_suite(load_suite(path), device="cpu", tracking_uri=tracking_uri, storage=storage,
              console=Console(quiet=True))
    stores = {Path(tracking_uri.removeprefix("sqlite:///")), tmp_path / "optuna.db"}
    access = os.access

    def read_only(where: object, mode: int, **kwargs: object) -> bool:  # as for a non-owner
        if Path(str(where)) in stores and mode & os.W_OK:
            return False
        return access(where, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", read_only)
    capsys.readouterr()
    assert cli.main(["status", str(path), "--storage", storage, "--tracking-uri",
                     tracking_uri]) == 0
    assert "2 done, 0 running on 0 worker(s), 0 queued, 0 failed" in capsys.readouterr().out
    assert cli.main(["report", str(path), "--tracking-uri", tracking_uri, "--report-dir",
                     str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "tiny.html").is_file()
    assert cli.main(["run", str(path), "--storage", storage, "--tracking-uri",
                     tracking_uri]) == 2
    assert "is not writable by this user" in capsys.readouterr().err
