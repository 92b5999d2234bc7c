"""What a user sees in MLflow's own UI: `mlflow server` on a store nnbench wrote, opened in
headless Chromium at the address `nnbench run` prints.

Set NNBENCH_UPDATE_DOCS=1 to write the screenshots the README shows (docs/mlflow-runs.png,
docs/mlflow-summaries.png).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nnbench import cli
from tests.conftest import REPO, _free_port, launch_chromium

SEEDS = 4
UI_SUITE = """\
name: ui_demo
description: two activations, four seeds, one epoch
task:
  dataset: {name: digits}
  model: {name: mlp, hidden: [16]}
fixed:
  optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
  epochs: 1
  batch_size: 64
grid:
  activation: [tanh, relu]
seeds: 4
"""


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """`serve(tracking_uri)` starts `mlflow server` on a free port of 127.0.0.1 and returns
    its address once it answers /health; the server is stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def serve(tracking_uri: str, attempt: int = 1) -> str:
        port, log_path = _free_port(), tmp_path / f"mlflow-server-{attempt}.log"
        log = open(log_path, "wb")  # noqa: SIM115 (closed below)
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
            # without the job runner and its seven huey consumers (GenAI jobs; each a
            # Python process importing MLflow, about 25 s of CPU together): the runs table
            # and its search are the tracking server's own
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        log.close()
        started.append(process)
        address = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                text = log_path.read_text(errors="replace")
                if "address already in use" in text.lower() and attempt < 3:
                    # the free port was taken before the server bound it: another one
                    _stop(process)
                    return serve(tracking_uri, attempt + 1)
                pytest.fail(f"mlflow server exited ({process.returncode}):\n{text[-3000:]}")
            try:
                with urllib.request.urlopen(f"{address}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return address
            except (OSError, http.client.HTTPException):  # not up yet, or not HTTP yet
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow server did not answer /health within 120 s")
            time.sleep(0.25)

    yield serve
    for process in started:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and the workers it started: its own session (process group)."""
    with contextlib.suppress(ProcessLookupError):  # the whole group has already exited
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def _shown(value: float) -> str:
    """A metric as MLflow's UI writes it (JavaScript's shortest round trip)."""
    return str(int(value)) if value.is_integer() else repr(value)


@pytest.mark.slow
def test_printed_url_opens_the_trials_and_the_summaries_compare_configurations(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        mlflow_server: Callable[[str], str], capsys: pytest.CaptureFixture[str]) -> None:
    """One `nnbench run` and one `mlflow server`, seen in one browser:

    1. the address `nnbench run` prints opens the experiment's runs table, every trial a
       row with its dataset input, a param and a metric as columns;
    2. searching `tags.nnbench.role = 'summary'` shows one row per configuration, with the
       mean, interval, sd and n over seeds as columns: no Group-by needed."""
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import expect, sync_playwright

    path = write_suite(UI_SUITE, name="ui_demo")
    uri = tracking_uri
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", uri]) == 0
    printed = re.search(r"^MLflow runs: (\S+)$", capsys.readouterr().out, re.M)
    assert printed is not None
    url = printed.group(1)
    assert url.startswith("http://127.0.0.1:5000/#/experiments/")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ui_demo")
    assert experiment is not None
    summaries = {r.data.tags["nnbench.axis.activation"]: r for r in client.search_runs(
        [experiment.experiment_id], "tags.`nnbench.role` = 'summary'")}
    assert sorted(summaries) == ["relu", "tanh"]
    address = mlflow_server(uri)
    from nnbench.cli_checks import check_tracking_uri

    assert check_tracking_uri(address) == address  # a real server passes nnbench's check
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        expect.set_options(timeout=60_000)  # a busy machine: wait long, never sleep
        runs = _runs_table(browser, url.replace("http://127.0.0.1:5000", address), tmp_path)
        shown = _summary_rows(browser, address, experiment.experiment_id, summaries, tmp_path)
        browser.close()
    for shot, name in ((runs, "mlflow-runs.png"), (shown, "mlflow-summaries.png")):
        assert shot.stat().st_size > 20_000
        if os.environ.get("NNBENCH_UPDATE_DOCS"):
            shutil.copyfile(shot, REPO / "docs" / name)


def _runs_table(browser: Any, url: str, tmp_path: Path) -> Path:
    from playwright.sync_api import expect

    seeds = range(SEEDS)
    names = [f"activation={a} | seed {s}" for a in ("tanh", "relu") for s in seeds]
    page = browser.new_page(viewport={"width": 2200, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url)
    # the experiment's runs table, not the GenAI overview: every trial is a row of its own
    for name in names:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    assert re.search(r"#/experiments/\d+/runs\?", page.url), page.url
    # the trials, the invocation, a summary per configuration
    expect(page.get_by_text(f"{len(names) + 3} matching runs")).to_be_visible()
    # each trial's dataset input: its name and digest, in context Training
    datasets = page.get_by_text(re.compile(r"^digits \([0-9a-f]{16}\)$"))
    expect(datasets).to_have_count(len(names))
    expect(page.get_by_text(re.compile(r"^training$", re.I))).to_have_count(len(names))
    # a param and a metric, shown as columns the way a user picks them
    page.get_by_role("button", name="Columns", exact=True).click()
    picker = page.get_by_role("dialog", name="Popover content")
    for column in ("activation.name", "val_accuracy"):
        picker.get_by_text(column, exact=True).click()
    page.keyboard.press("Escape")
    for column in ("params.`activation.name`", "metrics.`val_accuracy`"):
        expect(page.locator(f'[role=columnheader][col-id="{column}"]')).to_be_visible()
    # the configuration's trials and its summary run, which holds the params they share
    for activation in ("tanh", "relu"):
        expect(page.get_by_role("gridcell", name=activation, exact=True)).to_have_count(
            SEEDS + 1)
    shot = tmp_path / "mlflow-runs.png"
    page.screenshot(path=str(shot))
    page.close()
    return shot


def _summary_rows(browser: Any, address: str, experiment_id: str, summaries: dict[str, Any],
                  tmp_path: Path) -> Path:
    from playwright.sync_api import expect

    search = urllib.parse.quote("tags.`nnbench.role` = 'summary'")
    stats = ("mean", "low", "high", "sd", "n")
    page = browser.new_page(viewport={"width": 1800, "height": 420})
    page.set_default_timeout(60_000)
    page.goto(f"{address}/#/experiments/{experiment_id}/runs"
              f"?workflowType=machine_learning&searchFilter={search}")
    for activation in summaries:
        expect(page.get_by_role("link", name=f"activation={activation} | mean over seeds",
                                exact=True)).to_be_visible()
    expect(page.get_by_text("2 matching runs")).to_be_visible()
    page.get_by_role("button", name="Close", exact=True).click()  # the assistant's panel
    page.get_by_role("button", name="Columns", exact=True).click()
    picker = page.get_by_role("dialog", name="Popover content")
    columns = [f"test_accuracy_{stat}" for stat in stats]
    # the configuration's values and its spread; not the trial-only columns
    for column in ("Dataset", "Source", "Models", "activation.name", *columns):
        picker.get_by_text(column, exact=True).click()
    page.keyboard.press("Escape")
    for column in ("params.`activation.name`", *(f"metrics.`{c}`" for c in columns)):
        header = page.locator(f'[role=columnheader][col-id="{column}"]')
        expect(header).to_be_visible()
        if column.startswith("metrics"):  # wide enough to read its name
            box = header.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + 165, box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
    # each summary's values in its cells (the grid draws names and values as separate rows)
    expect(page.get_by_role("gridcell", name=str(SEEDS), exact=True)).to_have_count(2)  # n
    for run in summaries.values():
        for stat in stats[:-1]:
            value = _shown(run.data.metrics[f"test_accuracy_{stat}"])
            expect(page.get_by_role("gridcell", name=value, exact=True).first).to_be_visible()
    shot = tmp_path / "mlflow-summaries.png"
    page.screenshot(path=str(shot))
    page.close()
    return shot
