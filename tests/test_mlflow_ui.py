"""What a user sees in MLflow's own UI: `mlflow server` on a store nnbench wrote, opened in
headless Chromium at the address `nnbench run` prints.

Set NNBENCH_UPDATE_DOCS=1 to write the screenshot the README shows (docs/mlflow-runs.png).
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
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nnbench import cli
from tests.conftest import REPO, _free_port, chromium_path

UI_SUITE = """\
name: ui_demo
description: two activations, two seeds, one epoch
task:
  dataset: {name: digits}
  model: {name: mlp, hidden: [16]}
fixed:
  optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
  epochs: 1
  batch_size: 64
grid:
  activation: [tanh, relu]
seeds: 2
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
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
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


@pytest.mark.slow
def test_printed_url_opens_the_runs_table_with_trials_datasets_and_params(
        write_suite: Callable[..., Path], tmp_path: Path, tracking_uri: str,
        mlflow_server: Callable[[str], str], capsys: pytest.CaptureFixture[str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    path = write_suite(UI_SUITE, name="ui_demo")
    uri = tracking_uri
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", uri]) == 0
    printed = re.search(r"^MLflow runs: (\S+)$", capsys.readouterr().out, re.M)
    assert printed is not None
    url = printed.group(1)
    assert url.startswith("http://127.0.0.1:5000/#/experiments/")
    address = mlflow_server(uri)
    names = [f"activation={a} | seed {s}" for a in ("tanh", "relu") for s in (0, 1)]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 2200, "height": 640})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # a busy machine: wait long, never sleep
        page.goto(url.replace("http://127.0.0.1:5000", address))
        # the experiment's runs table, not the GenAI overview: every trial is a row of its own
        for name in names:
            expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
        assert re.search(r"#/experiments/\d+/runs\?", page.url), page.url
        expect(page.get_by_text("5 matching runs")).to_be_visible()  # 4 trials + invocation
        # each trial's dataset input: its name and digest, in context Training
        datasets = page.get_by_text(re.compile(r"^digits \([0-9a-f]{16}\)$"))
        expect(datasets).to_have_count(4)
        expect(page.get_by_text(re.compile(r"^training$", re.I))).to_have_count(4)
        # a param and a metric, shown as columns the way a user picks them
        page.get_by_role("button", name="Columns", exact=True).click()
        picker = page.get_by_role("dialog", name="Popover content")
        for column in ("activation.name", "val_accuracy"):
            picker.get_by_text(column, exact=True).click()
        page.keyboard.press("Escape")
        for column in ("params.`activation.name`", "metrics.`val_accuracy`"):
            expect(page.locator(f'[role=columnheader][col-id="{column}"]')).to_be_visible()
        expect(page.get_by_role("gridcell", name="tanh", exact=True)).to_have_count(2)
        expect(page.get_by_role("gridcell", name="relu", exact=True)).to_have_count(2)
        shot = tmp_path / "mlflow-runs.png"
        page.screenshot(path=str(shot))
        browser.close()
    assert shot.stat().st_size > 20_000
    if os.environ.get("NNBENCH_UPDATE_DOCS"):
        shutil.copyfile(shot, REPO / "docs" / "mlflow-runs.png")
