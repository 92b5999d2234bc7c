"""suites/mnist1d_paper.yaml: the MNIST-1D paper's table from a suite alone.

The full suite (158 epochs × 5 seeds) runs by hand (`nox -s ablate --
suites/mnist1d_paper.yaml`, about ten minutes on two cores); here its CI-sized variant
(2 epochs, 1 seed, every configuration and the reference kept) runs end to end, and the
report must put the published numbers beside the measured ones.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

from nnbench import cli
from nnbench.config import SuiteError, load_suite, parse_suite
from tests.conftest import REPO

PAPER = REPO / "suites" / "mnist1d_paper.yaml"
PUBLISHED = {"model=logistic": 0.32, "model=mlp(hidden=[100, 100])": 0.68,
             "model=cnn1d": 0.94, "model=gru": 0.91}


def test_the_suite_uses_the_papers_setup() -> None:
    suite = load_suite(PAPER)
    base = suite.base
    assert (base.optimizer.name, base.optimizer.kwargs["lr"], base.batch_size) == ("adam", 0.01,
                                                                                 100)
    assert base.init.name == "default" and base.l2 == 0 and base.dropout == 0
    train = round(4000 * (1 - base.dataset.kwargs["val_fraction"]))
    steps = base.epochs * math.ceil(train / 100)
    assert abs(steps - 6000) < train / 100  # the paper's 6000 steps, to within one epoch
    assert suite.reference is not None and suite.reference.tolerance == 0.03
    got = {", ".join(f"{k}={v}" for k, v in r.where.items()): r.value
           for r in suite.reference.results}
    assert got == PUBLISHED


def test_the_ci_sized_variant_reports_the_papers_numbers(tmp_path: Path,
                                                          tracking_uri: str) -> None:
    text = PAPER.read_text()
    small = text.replace("epochs: 158 ", "epochs: 2 ").replace("seeds: 5\n", "seeds: 1\n")
    assert small.count("epochs: 2 ") == 1 and "seeds: 1\n" in small
    path = tmp_path / "mnist1d_paper.yaml"
    path.write_text(small)
    assert [c.model for c in load_suite(path).configurations()] == \
        [c.model for c in load_suite(PAPER).configurations()]
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri]) == 0

    summary = json.loads((tmp_path / "reports" / "mnist1d_paper.summary.json").read_text())
    rows = {r["configuration"]: r for r in summary["reference"]}
    assert {k: r["published"] for k, r in rows.items()} == PUBLISHED
    for row in rows.values():
        assert row["n"] == 1 and 0 <= row["measured"] <= 1
        assert row["verdict"] in ("reproduced", "outside tolerance")
        assert row["verdict"] == ("reproduced" if abs(row["measured"] - row["published"])
                                  <= 0.03 else "outside tolerance")
    html = (tmp_path / "reports" / "mnist1d_paper.html").read_text()
    section = html.split('id="reference"')[1].split("<h2")[0]
    assert "Scaling Down Deep Learning with MNIST-1D" in section
    assert section.count("<tr><td>model=") == 4
    assert "<td class=\"num\">0.9400</td>" in section
    for count in ("410", "15,210", "5,210", "5,134"):  # each model's size, in the leaderboard
        assert f'<td class="num">{count}</td>' in html


BAD_REFERENCES = {
    "unknown_metric": ("metric: test_acc", "reference.metric: unknown metric 'test_acc' (str); "
                                           "did you mean 'test_accuracy'?"),
    "no_such_configuration": ("results: [{where: {model: cnn}, value: 0.5}]",
                              "reference.results[0].where.model: no configuration has "
                              "model=cnn"),
    "not_varied": ("results: [{where: {activation: relu}, value: 0.5}]",
                   "reference.results[0].where.activation: 'activation' is not varied"),
    "value": ("results: [{where: {model: logistic}, value: high}]",
              "reference.results[0].value: expected the published number, got 'high'"),
    "percentage": ("results: [{where: {model: logistic}, value: 32.0}]",
                   "reference.results[0].value: expected a test_accuracy in [0, 1] (a fraction, "
                   "not a percentage), got 32"),
    "metric_as_a_list": ("metric: [test_accuracy]",
                         "reference.metric: unknown metric ['test_accuracy'] (list)"),
    "tolerance": ("tolerance: -1", "reference.tolerance: expected a number >= 0"),
    "duplicate": ("results: [{where: {model: logistic}, value: 0.3}, "
                  "{where: {model: logistic}, value: 0.4}]",
                  "reference.results[1].where: the same configurations as "
                  "reference.results[0]"),
    "unknown_key": ("sauce: x", "reference.sauce: unknown key 'sauce'; did you mean 'source'?"),
}


@pytest.mark.parametrize("case", list(BAD_REFERENCES))
def test_a_bad_reference_block_is_reported(case: str) -> None:
    line, fragment = BAD_REFERENCES[case]
    base = {"source": "source: a paper", "metric": "metric: test_accuracy",
            "tolerance": "tolerance: 0.03",
            "results": "results: [{where: {model: logistic}, value: 0.32}]"}
    key = line.split(":")[0]
    base[key] = line
    reference = "\n".join(f"  {v}" for v in base.values())
    text = textwrap.dedent("""\
        name: ref
        task: {dataset: mnist1d, model: logistic}
        fixed: {optimizer: sgd, epochs: 1, batch_size: 32}
        grid: {model: [logistic, mlp]}
        reference:
        """) + reference + "\n"
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, "ref.yaml")
    assert any(fragment in line for line in caught.value.lines()), caught.value.lines()
