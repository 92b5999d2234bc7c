"""Per-source seeds in the engines, MLflow, the results tables and the report.

Each source of randomness draws from its own seed: varying `init` alone changes the
initial weights and nothing else (same split, same batch order), varying `data_order`
alone changes the batch order and nothing else, in the serial and the stacked engine;
a factorial of seeds trains as lanes of one stacked group, each lane as the serial
engine trains it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from rich.console import Console

from nnbench import seeding
from nnbench.components.regularizers import Dropout
from nnbench.config import TrialSpec, load_suite, parse_suite
from nnbench.results import load_results
from nnbench.results.variance import suite_decomposition
from nnbench.runner import run_suite
from nnbench.train import build
from nnbench.train.results import Numerics
from nnbench.train.stacked import _GroupRun
from tests.test_stacked import Recorder, _assert_lanes_match_serial

CPU = torch.device("cpu")
QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115 (lives for the test session)
SUITE = """\
name: {name}
task: {{dataset: {{name: mnist1d, num_samples: 600, val_fraction: 0.2}},
       model: {{name: mlp, hidden: [16]}}, metric: val_accuracy}}
fixed:
  activation: relu
  init: kaiming_normal
  optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}
  dropout: 0.1
  epochs: {epochs}
  batch_size: 32
{grid}seeds: {seeds}
"""


def _trials(seeds: str, *, grid: str = "", epochs: int = 2) -> list[TrialSpec]:
    return parse_suite(SUITE.format(name="s", seeds=seeds, grid=grid, epochs=epochs)).trials()


def _serial_streams(spec: TrialSpec) -> tuple[dict[str, torch.Tensor], torch.Tensor,
                                              torch.Tensor, torch.Tensor]:
    """Initial weights, first-epoch order, the split's val targets, dropout mask draws."""
    with seeding.trial_rng(spec.seed_of("init"), CPU):
        parts = build.build_parts(spec, CPU)
    order = torch.randperm(len(parts.data.y_train), generator=parts.shuffle)
    (mask_stream,) = {id(m.generator): m.generator for m in parts.model.modules()
                      if isinstance(m, Dropout)}.values()
    dropout = torch.rand(8, generator=mask_stream)
    return ({k: v.clone() for k, v in parts.model.state_dict().items()}, order,
            parts.data.y_val.clone(), dropout)


def _stacked_streams(specs: list[TrialSpec]) -> list[tuple[dict[str, torch.Tensor],
                                                           torch.Tensor, int]]:
    """Per lane of one stacked group: initial weights, first-epoch order, split index."""
    run = _GroupRun(specs, len(specs), CPU, Recorder(), Numerics(engine="stacked"), False)
    run._build()
    host = run._host_state()  # the group's weights, as each lane's model names them
    return [({k: torch.from_numpy(a[i].copy()) for k, (_, a) in host.items()},
             torch.randperm(run.n_train, generator=run.shuffle[i]), lane.split)
            for i, lane in enumerate(run.lanes)]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_varying_init_changes_the_weights_only_and_data_order_the_batches_only() -> None:
    base, init, order, split = (_trials(s)[i] for s, i in (
        ("{init: 2}", 0), ("{init: 2}", 1), ("{data_order: 2}", 1), ("{split: 2}", 1)))
    w0, o0, v0, d0 = _serial_streams(base)
    w1, o1, v1, d1 = _serial_streams(init)
    assert not _same(w0, w1) and torch.equal(o0, o1) and torch.equal(v0, v1)
    assert torch.equal(d0, d1)
    w2, o2, v2, d2 = _serial_streams(order)
    assert _same(w0, w2) and not torch.equal(o0, o2) and torch.equal(v0, v2)
    assert torch.equal(d0, d2)
    w3, o3, v3, _ = _serial_streams(split)
    assert _same(w0, w3) and torch.equal(o0, o3) and not torch.equal(v0, v3)
    w4, o4, v4, d4 = _serial_streams(_trials("{dropout: 2}")[1])
    assert _same(w0, w4) and torch.equal(o0, o4) and torch.equal(v0, v4)
    assert not torch.equal(d0, d4)
    # the stacked engine gives every lane the streams the serial engine gives the trial
    lanes = _stacked_streams([base, init, order, split])
    for spec, (weights, lane_order, _) in zip([base, init, order, split], lanes, strict=True):
        serial_weights, serial_order, _, _ = _serial_streams(spec)
        assert _same(weights, serial_weights) and torch.equal(lane_order, serial_order)
    assert [lane[2] for lane in lanes] == [0, 0, 0, 1]  # only the split lane has its own
    assert not _same(lanes[0][0], lanes[1][0]) and torch.equal(lanes[0][1], lanes[1][1])
    assert _same(lanes[0][0], lanes[2][0]) and not torch.equal(lanes[0][1], lanes[2][1])


def test_a_factorial_of_seeds_trains_as_lanes_equal_to_serial() -> None:
    trials = _trials("{init: 2, data_order: 2, dropout: 2}", epochs=3)
    assert len(trials) == 8
    _assert_lanes_match_serial(trials)


def test_trials_log_their_sources_seeds_and_the_report_decomposes(
        write_suite: Callable[..., Path], tracking_uri: str, tmp_path: Path) -> None:
    path = write_suite(SUITE.format(name="sources", seeds="{init: 2, data_order: 2}",
                                    grid="grid:\n  activation: [tanh, relu]\n", epochs=2),
                       name="sources")
    suite = load_suite(path)
    summary = run_suite(suite, device="cpu", tracking_uri=tracking_uri, console=QUIET)
    assert summary.statuses["finished"] == 8
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("sources")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`nnbench.role` = 'trial'")
    seeds = {(r.data.params["seed.init"], r.data.params["seed.data_order"],
              r.data.params["seed.split"], r.data.params["seed"]) for r in runs}
    assert seeds == {(i, o, "0", "0") for i in "01" for o in "01"}
    assert any(r.info.run_name.endswith("| seed init=1, data_order=1, rest=0") for r in runs)
    # the nnbench.seed tag names every source's seed, as the run name does
    assert all(r.info.run_name.endswith(f"| seed {r.data.tags['nnbench.seed']}")
               for r in runs)
    assert len({r.data.tags["nnbench.seed"] for r in runs}) == 4
    assert "init=1, data_order=1, rest=0" in {r.data.tags["nnbench.seed"] for r in runs}
    # the results pair trials by their sources' seeds
    results = load_results(suite, tracking_uri)
    trials = results.trials
    assert set(trials["seed"]) == {f"init={i}, data_order={o}" for i in "01" for o in "01"}
    assert trials.groupby("seed")["config"].nunique().eq(2).all()
    assert {"seed.init", "seed.data_order", "seed.split"} <= set(trials.columns)
    decomposition = suite_decomposition(trials, suite)
    assert decomposition is not None
    assert [c.source for c in decomposition.components] == ["init", "data_order", "residual"]
    assert (decomposition.configurations, decomposition.trials) == (2, 8)
    from nnbench.report import render_report

    html = render_report(suite, tracking_uri=tracking_uri, report_dir=tmp_path / "reports",
                         results=results).read_text()
    assert 'id="variance"' in html and "Sources of randomness" in html
    assert "init 0, 1 × data_order 0, 1 (4 per configuration)" in html
    _renders_in_chromium(tmp_path / "reports" / "sources.html")


def _renders_in_chromium(report: Path) -> None:
    """What a reader sees: the section, one row per source and the residual, no errors."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import launch_chromium

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri(), wait_until="load")
        assert page.locator("#variance").is_visible()
        rows = page.locator("#variance-table tbody tr td:nth-child(1)").all_inner_texts()
        assert rows == ["init", "data_order", "residual"]
        shares = page.locator("#variance-table tbody tr td:nth-child(3)").all_inner_texts()
        assert all(0 <= float(share) <= 1 for share in shares), shares
        assert page.locator("#data-hygiene").is_visible()
        browser.close()
    assert errors == []


GRU_SUITE = """\
name: g
task: {{dataset: {{name: mnist1d, num_samples: 300, val_fraction: 0.2}},
       model: {{name: gru, hidden_size: 4, layers: 2, readout: last}}, metric: val_accuracy}}
fixed: {{init: default, optimizer: {{name: sgd, lr: 0.05}}, dropout: 0.5, epochs: 1,
        batch_size: 32}}
seeds: {seeds}
"""


def test_a_grus_dropout_between_layers_follows_the_dropout_seed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`nn.GRU(num_layers=2, dropout=p)` draws its masks between layers from the global
    generator, which the serial engine seeded from the init seed: two trials differing only
    in their init seed drew different masks, and only in their dropout seed the same ones.
    The weights are made the same whatever the init seed here, so that the trained weights
    differ only through the masks."""
    from nnbench.train import SerialEngine

    build_parts = build.build_parts

    def same_weights(spec: TrialSpec, device: torch.device) -> build.Parts:
        parts = build_parts(spec, device)
        fixed = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in parts.model.parameters():
                p.copy_(torch.rand(p.shape, generator=fixed) - 0.5)
        return parts

    monkeypatch.setattr(build, "build_parts", same_weights)
    trials = parse_suite(GRU_SUITE.format(seeds="{init: 2, dropout: 2}")).trials()
    by_seeds = {(t.seed_of("init"), t.seed_of("dropout")): t for t in trials}
    results = {r.spec.seed_of("init") * 10 + r.spec.seed_of("dropout"): r.fingerprint
               for r in SerialEngine(CPU).run(list(by_seeds.values()), Recorder())}
    assert len(results) == 4 and all(results.values())
    assert results[0] == results[10] and results[1] == results[11]  # the init seed: no part
    assert results[0] != results[1]  # the dropout seed: its masks
