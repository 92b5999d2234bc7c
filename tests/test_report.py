"""The HTML report, built only from what MLflow holds."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from nnbench.config import load_suite
from nnbench.report import render_report
from nnbench.results import load_results, summarize
from nnbench.runner import run_suite

QUIET = Console(quiet=True)


def test_report_has_settings_table_figures_and_provenance(write_suite: Callable[..., Path],
                                                          tracking_uri: str,
                                                          tmp_path: Path) -> None:
    suite = load_suite(write_suite(epochs=3))
    run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    results = load_results(suite, tracking_uri)
    path = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path / "r")
    html = path.read_text()

    assert path == tmp_path / "r" / "tiny.html"
    assert "<h1>tiny</h1>" in html
    assert "src=\"http" not in html
    assert "href=\"http" not in html
    # one curves figure per configuration + the metric-by-configuration figure
    assert html.count('src="data:image/png;base64,') == 3
    for config in ("activation=tanh", "activation=relu"):
        assert f"<h3>{config}</h3>" in html
    table = summarize(results.trials, suite.higher_is_better)
    for row in table.itertuples():
        assert f"{row.mean:.4f}" in html
        assert f"{row.sd:.4f}" in html
    assert html.count('class="best"') == 1
    for run_id in results.trials["run_id"]:
        assert run_id in html
    assert results.trials["git_commit"].iloc[0] in html
    assert "torch 2." in html
    assert "use_deterministic_algorithms=True" in html
    assert "4 finished" in html


def test_partly_run_suite_says_what_is_missing(write_suite: Callable[..., Path],
                                               tracking_uri: str, tmp_path: Path) -> None:
    small = load_suite(write_suite(epochs=2, seeds=1))
    run_suite(small, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    bigger = load_suite(write_suite(epochs=2, seeds=3))  # same name, two more seeds
    html = render_report(bigger, tracking_uri=tracking_uri, report_dir=tmp_path).read_text()
    assert "4 not run yet" in html
    assert re.search(r"<td class=\"num\">1</td>", html)  # n = 1 finished seed per config


def test_report_of_a_suite_never_run(write_suite: Callable[..., Path], tracking_uri: str,
                                     tmp_path: Path) -> None:
    suite = load_suite(write_suite())
    html = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path).read_text()
    assert "No trial of this suite is in MLflow yet" in html
    assert "4 not run yet" in html


def test_summary_statistics_match_a_direct_computation() -> None:
    values = {"a": [0.5, 0.7, 0.9], "b": [0.1, 0.2]}
    rows = [{"config": c, "metric": v, "status": "finished", "trial_id": f"{c}{i}",
             "wall_seconds": 1.0} for c, vs in values.items() for i, v in enumerate(vs)]
    rows.append({"config": "b", "metric": math.nan, "status": "diverged", "trial_id": "b9",
                 "wall_seconds": 1.0})
    table = summarize(pd.DataFrame(rows), higher_is_better=True).set_index("config")
    assert list(table.index) == ["a", "b"]  # best first
    assert table.loc["a", "mean"] == pytest.approx(0.7)
    assert table.loc["a", "sd"] == pytest.approx(0.2)  # sample sd of 0.5, 0.7, 0.9
    assert table.loc["b", "mean"] == pytest.approx(0.15)
    assert table.loc["b", "sd"] == pytest.approx(math.sqrt(0.005))
    assert (table.loc["b", "n"], table.loc["b", "diverged"]) == (2, 1)
    lower = summarize(pd.DataFrame(rows), higher_is_better=False)
    assert list(lower["config"]) == ["b", "a"]
