"""examples/own_model: a user's own model in its own module, a suite using it through
`plugins:`, and nnbench's contract check run on it, as a user would run them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from nnbench import cli
from nnbench.testing import isolated_registry
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "own_model"


def test_the_examples_contract_tests_pass() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", str(EXAMPLE), "-q",
                           "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout and "failed" not in done.stdout
    # registration, resolves, model, and the two bounds (width >= 1, blocks >= 0)
    assert "6 passed" in done.stdout


def test_the_example_suite_runs_in_a_ci_sized_variant(tmp_path: Path, tracking_uri: str) -> None:
    folder = tmp_path / "own_model"
    shutil.copytree(EXAMPLE, folder)
    suite = folder / "own_model.yaml"
    text = suite.read_text()
    small = text.replace("epochs: 20\n", "epochs: 2\n").replace("seeds: 3\n", "seeds: 2\n")
    assert small != text
    suite.write_text(small.replace("num_samples: 5000", "num_samples: 1000"))
    with isolated_registry():
        assert cli.main(["run", str(suite), "--device", "cpu", "--tracking-uri", tracking_uri,
                         "--report-dir", str(tmp_path / "reports"), "--engine", "serial"]) == 0
    summary = json.loads((tmp_path / "reports" / "own_model.summary.json").read_text())
    assert summary["statuses"] == {"finished": 8}
    html = (tmp_path / "reports" / "own_model.html").read_text()
    assert "model=resmlp, norm=batchnorm" in html
    assert "<code>mylab_nets</code> 1.0 sha256:" in html
    assert "BatchNorm helps the residual MLP" in html
    # as its README runs it: one numerics, so the model comparison is not one of engines
    assert 'id="numerics-warning"' not in html and "Trained by: <b>serial fp32" in html
