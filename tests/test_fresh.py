"""A run with nothing to do: answered from file hashes when nothing changed; the report is
re-rendered exactly when its inputs (results, suite file, nnbench) changed."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from nnbench import cli, fresh
from tests.conftest import TINY_SUITE

NOTHING = "nothing changed since its report"


def _run(path: Path, uri: str, reports: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", uri,
                     "--report-dir", str(reports)])
    assert code == 0
    captured = capsys.readouterr()
    return captured.out + captured.err


@pytest.fixture
def done(write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
         capsys: pytest.CaptureFixture[str]) -> tuple[Path, str, Path]:
    path = write_suite(epochs=2)
    reports = tmp_path / "reports"
    code = cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--report-dir", str(reports)])
    assert code == 0
    captured = capsys.readouterr()
    assert "ran 4 trials (4 finished)" in captured.err
    (tmp_path / "first-run.out").write_text(captured.out)  # what the answer below repeats
    return path, tracking_uri, reports


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory,
             mlflow_store: Callable[[Path], str]) -> tuple[Path, str, Path]:
    """`done`, trained once for the tests that only read it: each asks a run that must be
    refused before anything is written."""
    root = tmp_path_factory.mktemp("finished")
    path = root / "tiny.yaml"
    path.write_text(TINY_SUITE.format(name="tiny", epochs=2, seeds=2), encoding="utf-8")
    uri, reports = mlflow_store(root / "mlflow.db"), root / "reports"
    said = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(said), \
            contextlib.redirect_stderr(said):
        patch.chdir(root)
        code = cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", uri,
                         "--report-dir", str(reports)])
    assert code == 0, said.getvalue()
    assert "ran 4 trials (4 finished)" in said.getvalue()
    return path, uri, reports


def test_a_second_run_answers_from_hashes_alone(done: tuple[Path, str, Path],
                                                tmp_path: Path) -> None:
    path, uri, reports = done
    report = reports / "tiny.html"
    before = report.stat().st_mtime_ns
    code = ("import sys\n"
            "from nnbench.cli import main\n"
            f"code = main(['run', {str(path)!r}, '--tracking-uri', {uri!r}, "
            f"'--report-dir', {str(reports)!r}])\n"
            "print('imported:', sorted(m for m in ('torch', 'mlflow', 'optuna', 'pandas') "
            "if m in sys.modules))\n"
            "sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert NOTHING in result.stderr
    assert f"report: {report.resolve()}" in result.stdout
    assert "imported: []" in result.stdout  # no torch, MLflow, Optuna or pandas
    # the runs address the first run printed, kept with the report's inputs
    assert "MLflow runs: http://127.0.0.1:5000/#/experiments/1/runs?workflowType=" \
        "machine_learning" in result.stdout
    # the lines of the run that trained, in its order (it had the store's line after the
    # runs address, without the experiment)
    assert result.stdout.splitlines()[:3] == \
        (tmp_path / "first-run.out").read_text().splitlines(), result.stdout
    # the `mlflow ui` it prints runs as given, from the working directory (after `nox -s
    # ablate` a plain `mlflow` was not on the user's PATH)
    command = result.stdout.split("view with: ")[1].splitlines()[0].split()
    assert command[1:] == ["ui", "--backend-store-uri", uri], command
    program = Path(command[0]) if "/" in command[0] else shutil.which(command[0])
    assert program is not None and os.access(tmp_path / program, os.X_OK), command
    assert report.stat().st_mtime_ns == before


@pytest.mark.parametrize("device", ["", "tpu", "cpu:1", "cpu:0"])
def test_a_bad_device_is_refused_even_with_nothing_to_train(
        finished: tuple[Path, str, Path], device: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The fast answer of a complete suite skipped every check: `--device ''` exited 0
    there and 2 where there was work."""
    path, uri, reports = finished
    assert cli.main(["run", str(path), "--device", device, "--tracking-uri", uri,
                     "--report-dir", str(reports)]) == 2
    assert f"--device {device!r}: unsupported device {device!r}; allowed: auto, cpu, cuda, " \
           f"cuda:N" in capsys.readouterr().err


@pytest.mark.parametrize(("options", "said"), [
    (["--storage", "/not/a/url"], "--storage '/not/a/url' is not a database URL"),
    (["--storage", "{store}"], "is an MLflow store (it holds experiments"),
    (["--grace-period", "5", "--heartbeat-interval", "10"],
     "--grace-period: 5 s must be longer than --heartbeat-interval (10 s)"),
    (["--device", "cpu", "--precision", "tf32"], "--precision tf32 (--device 'cpu'): "),
    # silently ignored before
    (["--engine", "serial", "--lanes", "4"], "--lanes 4: --engine serial trains one trial at "
     "a time, so it has no lanes; drop --lanes, or choose an engine that stacks trials: "
     "stacked, auto"),
])
def test_a_bad_option_is_refused_even_with_nothing_to_train(
        finished: tuple[Path, str, Path], options: list[str], said: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The fast answer of a complete suite skipped these checks too: each exited 0 with
    "nothing to train or re-render", and 2 where there was work."""
    path, uri, reports = finished
    # the suite is still answered from hashes alone (no case before changed the store)
    assert fresh.fresh_report(str(path), str(reports), uri) is not None
    options = [o.replace("{store}", uri) for o in options]
    assert cli.main(["run", str(path), "--tracking-uri", uri, "--report-dir", str(reports),
                     *options]) == 2
    err = capsys.readouterr().err
    assert said in err and NOTHING not in err, err
    assert fresh.fresh_report(str(path), str(reports), uri) is not None


def test_a_store_written_without_a_changed_result_keeps_the_report(
        done: tuple[Path, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path, uri, reports = done
    report = reports / "tiny.html"
    before = report.stat().st_mtime_ns
    Path(uri.removeprefix("sqlite:///")).touch()  # as another suite's run would
    output = _run(path, uri, reports, capsys)
    assert NOTHING not in output
    assert "the report is up to date" in output
    assert report.stat().st_mtime_ns == before
    assert NOTHING in _run(path, uri, reports, capsys)  # and known fresh again


def test_a_changed_result_or_suite_file_re_renders_the_report(
        done: tuple[Path, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path, uri, reports = done
    report = reports / "tiny.html"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    run = client.search_runs([experiment.experiment_id],
                             filter_string="tags.`nnbench.role` = 'trial'")[0]
    client.log_metric(run.info.run_id, "val_accuracy", 0.987654, step=99)  # a result changes
    output = _run(path, uri, reports, capsys)
    assert NOTHING not in output and "up to date" not in output
    assert "0.9877" in report.read_text()
    assert NOTHING in _run(path, uri, reports, capsys)

    path.write_text(path.read_text().replace("tiny suite for tests", "an edited description"))
    output = _run(path, uri, reports, capsys)
    assert NOTHING not in output and "up to date" not in output
    assert "an edited description" in report.read_text()


def test_writers_of_one_report_file_at_once_each_replace_it_whole(tmp_path: Path) -> None:
    """Workers in one directory (two `nnbench tune` processes) render the same report at
    the same instant: no writer fails for the other's temporary file, the file is always
    one writer's text whole, and no temporary file is left behind."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from nnbench.fresh import write_atomic

    path = tmp_path / "reports" / "suite.html"
    texts = [f"<html>{i}</html>\n" * 2000 for i in range(8)]
    start = Barrier(len(texts))

    def write(text: str) -> list[str]:
        start.wait()
        seen = []
        for _ in range(40):
            write_atomic(path, text)
            seen.append(path.read_text(encoding="utf-8"))
        return seen

    with ThreadPoolExecutor(len(texts)) as pool:
        seen = [s for batch in pool.map(write, texts) for s in batch]
    assert set(seen) <= set(texts)
    assert [p.name for p in path.parent.iterdir()] == ["suite.html"]
    plain = tmp_path / "plain.html"  # the mode a plain write gives (the umask applies)
    plain.write_text("<html></html>", encoding="utf-8")
    assert path.stat().st_mode == plain.stat().st_mode
    # a writer SIGKILLed mid-write left its temporary file for good; one an hour old goes
    # at the next write, a younger one (a writer elsewhere, still writing) stays
    old, young = (path.with_name(f".suite.html.{pid}.{pid:032x}.tmp") for pid in (7, 8))
    for left in (old, young):
        left.write_text("<html>half")
    os.utime(old, (time.time() - 3700, time.time() - 3700))
    write_atomic(path, texts[0])
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(["suite.html", young.name])


def test_processes_recording_into_one_report_directory_lose_no_entry(tmp_path: Path) -> None:
    """Two processes finish suites into one report directory at the same time: every
    suite's entry is in the manifest afterwards (a read-modify-write without a lock lost
    the other process's entries)."""
    import json

    reports = tmp_path / "reports"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from nnbench import fresh\n"
        "tag, reports = sys.argv[1], sys.argv[2]\n"
        "for i in range(60):\n"
        "    fresh.record(f'/suites/{tag}-{i}.yaml', reports, 'sqlite:///x.db',\n"
        "                 Path(reports) / f'{tag}-{i}.html', f'digest-{i}')\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, tag, str(reports)])
               for tag in ("a", "b")]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    manifest = json.loads((reports / ".nnbench-inputs.json").read_text())
    assert set(manifest) == {f"/suites/{t}-{i}.yaml" for t in "ab" for i in range(60)}


def test_a_suite_edited_while_it_runs_is_looked_at_again(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A seed added to the file while `run` trained: the run recorded the edited file as
    its report's input, and the next run said 'nothing to train', its new trials never
    trained. Only a file still as the run loaded it is recorded."""
    from nnbench import runner

    path = write_suite(epochs=1, seeds=1)
    real = runner.run_suite

    def edited_meanwhile(*args: Any, **kwargs: Any) -> Any:
        path.write_text(path.read_text().replace("seeds: 1", "seeds: 2"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_suite", edited_meanwhile)
    output = _run(path, tracking_uri, tmp_path / "reports", capsys)
    assert "ran 2 trials (" in output
    monkeypatch.setattr(runner, "run_suite", real)
    output = _run(path, tracking_uri, tmp_path / "reports", capsys)
    assert NOTHING not in output
    assert "4 trials, 2 already finished, 2 to train" in output, output


def test_the_printed_mlflow_ui_command_is_quoted_for_the_shell(
        write_suite: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A store in a folder with a space: the printed `mlflow ui` command split there when
    pasted."""
    folder = tmp_path / "my runs"
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    output = _run(write_suite(epochs=1, seeds=1), uri, tmp_path / "reports", capsys)
    assert f"mlflow ui --backend-store-uri '{uri}'" in output
